//! `STATE_DIR/hubs.json`: what the sidecar learned about each hub it attached pods to, kept
//! across restarts. Today one fact: whether an IPv6 router was heard there, so that ADD waits
//! (briefly) for IPv6 on hubs that have it and never on hubs known to have none. Only the
//! sidecar reads and writes it; the plugin never needs it.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{io_err, read_json, write_atomically, StateDir, StateError};

/// The `version` of [`HubsRecord`]s written today.
pub const HUBS_VERSION: u32 = 1;
/// Hubs remembered at most; the least recently seen is dropped beyond this.
pub const MAX_HUBS: usize = 256;
/// Longest hub key kept (`server:port/hub`); longer keys are not remembered.
pub const MAX_HUB_KEY_LEN: usize = 512;
/// Larger files are not read (a record of [`MAX_HUBS`] entries is far smaller).
const MAX_FILE_BYTES: u64 = 1 << 20;
const FILE: &str = "hubs.json";

/// What is known about one hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubFacts {
    /// An IPv6 router was heard on the hub by the last attachment that could tell.
    pub ipv6: bool,
    /// Unix seconds of the last update.
    pub seen_at: u64,
}

/// Every hub the sidecar knows, keyed by `server:port/hub`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubsRecord {
    /// Format version, [`HUBS_VERSION`] when written today.
    pub version: u32,
    /// The facts per hub key.
    #[serde(default)]
    pub hubs: BTreeMap<String, HubFacts>,
}

impl HubsRecord {
    /// Records `ipv6` for `hub` at `now` (Unix seconds); drops the least recently seen hub
    /// beyond [`MAX_HUBS`]. Returns whether the IPv6 fact changed (or the hub is new).
    pub fn set_ipv6(&mut self, hub: &str, ipv6: bool, now: u64) -> bool {
        if hub.len() > MAX_HUB_KEY_LEN {
            return false;
        }
        let facts = HubFacts { ipv6, seen_at: now };
        let changed = self.hubs.insert(hub.to_owned(), facts).map(|f| f.ipv6) != Some(ipv6);
        while self.hubs.len() > MAX_HUBS {
            let oldest = self
                .hubs
                .iter()
                .min_by_key(|(_, f)| f.seen_at)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.hubs.remove(&k),
                None => break,
            };
        }
        changed
    }

    /// Whether an IPv6 router was heard on `hub`; `None`: never attached to it.
    pub fn ipv6(&self, hub: &str) -> Option<bool> {
        self.hubs.get(hub).map(|f| f.ipv6)
    }
}

impl StateDir {
    /// Where the hub facts live: `hubs.json` in the root.
    pub fn hubs_path(&self) -> PathBuf {
        self.root.join(FILE)
    }

    /// The hub facts; empty when there is no file yet. A file too large or with too many
    /// entries is refused (the caller starts empty).
    pub fn hubs(&self) -> Result<HubsRecord, StateError> {
        let path = self.hubs_path();
        let len = match fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HubsRecord::default()),
            Err(e) => return Err(io_err("stat", &path)(e)),
        };
        let invalid = |reason: String| StateError::Invalid {
            path: path.clone(),
            reason,
        };
        if len > MAX_FILE_BYTES {
            return Err(invalid(format!("{len} bytes, more than {MAX_FILE_BYTES}")));
        }
        let bytes = fs::read(&path).map_err(io_err("read", &path))?;
        let record: HubsRecord = read_json(&path, &bytes)?;
        if record.hubs.len() > MAX_HUBS {
            return Err(invalid(format!("more than {MAX_HUBS} hubs")));
        }
        Ok(record)
    }

    /// Writes the hub facts atomically.
    pub fn save_hubs(&self, record: &HubsRecord) -> Result<(), StateError> {
        let path = self.hubs_path();
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| StateError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomically(&path, &bytes)
    }
}
