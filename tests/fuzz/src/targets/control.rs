//! softether-control: the request line the daemon reads from the control socket and the reply
//! line the plugin reads back; and the state-dir records the daemon reads at start.

use serde_json::Value;
use softether_control::state_dir::AttachmentKey;
use softether_control::{
    decode_request, parse_reply, AttachResult, GcReport, ListReply, Request, SidecarStatus,
    MAX_GC_REQUEST_BYTES,
};

use super::json_round_trip;

/// Input: bytes from the control socket. The daemon decodes the first line as a typed
/// [`Request`] (`decode_request`, the same call the daemon makes); the plugin decodes a reply
/// line as each op's answer.
pub fn control_message(data: &[u8]) {
    let line = data.split(|&b| b == b'\n').next().unwrap_or_default();
    if line.len() <= MAX_GC_REQUEST_BYTES {
        match decode_request(line) {
            Ok(Request::Attach(r)) => {
                json_round_trip(&*r);
                let _ = AttachmentKey::new(&r.attachment.container_id, &r.attachment.ifname);
            }
            Ok(Request::Detach(r)) => {
                json_round_trip(&r);
                let _ = AttachmentKey::new(&r.attachment.container_id, &r.attachment.ifname);
            }
            Ok(Request::Check(r)) => json_round_trip(&r),
            Ok(Request::Gc(r)) => json_round_trip(&r),
            Ok(Request::Status(_) | Request::List(_)) => {}
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    let Ok(reply) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Ok(r)) = parse_reply::<AttachResult>(reply) {
        json_round_trip(&r);
    }
    if let Ok(Ok(r)) = parse_reply::<SidecarStatus>(reply) {
        json_round_trip(&r);
    }
    if let Ok(Ok(r)) = parse_reply::<GcReport>(reply) {
        json_round_trip(&r);
    }
    if let Ok(Ok(r)) = parse_reply::<ListReply>(reply) {
        json_round_trip(&r);
    }
    if let Ok(Err(e)) = parse_reply::<Value>(reply) {
        let _ = e.to_string();
    }
}

/// The state-dir record types and the one function that parses a record file. The daemon
/// and the plugin read records with `serde_json::from_slice` through these softether-control
/// types (`state_dir`).
mod records {
    pub use softether_control::state_dir::{AttachmentRecord, HubsRecord, Tombstone};

    pub fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Input: the contents of a file in the state directory (an attachment record, a tombstone or
/// `hubs.json`; the daemon reads them at start, and the plugin writes tombstones).
pub fn state_record(data: &[u8]) {
    if let Ok(record) = records::parse::<records::AttachmentRecord>(data) {
        json_round_trip(&record);
        if let Ok(key) = record.key() {
            assert!(!key.file_name().contains('/'), "a record key names a path");
        }
    }
    if let Ok(mut hubs) = records::parse::<records::HubsRecord>(data) {
        json_round_trip(&hubs);
        // The daemon updates what it read: the bound holds after that whatever the file said.
        hubs.set_ipv6("fuzz:443/HUB", true, u64::MAX);
        assert!(hubs.hubs.len() <= softether_control::state_dir::MAX_HUBS);
    }
    if let Ok(tombstone) = records::parse::<records::Tombstone>(data) {
        json_round_trip(&tombstone);
        if let Ok(key) = AttachmentKey::new(&tombstone.container_id, &tombstone.ifname) {
            assert!(
                !key.file_name().contains('/'),
                "a tombstone key names a path"
            );
        }
    }
}
