//! The clients under test: ours (`softether-sidecar connect`) and the official `vpnclient`, each
//! connected and addressed in the lab's client namespace.

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use softether_lab::netns::{self, KillOnDrop};
use softether_lab::vpncmd::parse_table;
use softether_lab::{ClientAuth, Lab, OfficialClient};

use crate::procfs::pids_in_ns;
use crate::{OFFICIAL_ADDRESS, POLL, TAP};

/// A client under test, connected and addressed in the lab's client namespace.
pub(crate) trait Subject {
    /// Process ids whose memory and CPU count.
    fn pids(&self) -> Vec<u32>;
    /// Time from process start to a usable address.
    fn time_to_address(&self) -> Duration;
}

pub(crate) struct Ours {
    process: Option<KillOnDrop>,
    took: Duration,
}

impl Ours {
    pub(crate) fn start(lab: &Lab, bin_dir: &Path, extra: &[&str]) -> Result<Ours> {
        let f = &lab.facts;
        let log = f.dir.join("bench-connect.log");
        let out = fs::File::create(&log)?;
        let extra = [&["--tap", TAP, "--log", "info"], extra].concat();
        let bin = bin_dir.join("softether-sidecar");
        let mut cmd =
            softether_lab::sidecar::as_alice(lab, &bin, "connect", &f.alice.password, &extra);
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let started = Instant::now();
        let mut process = netns::spawn_command(cmd)?;
        let deadline = started + Duration::from_secs(30);
        loop {
            if fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("lease acquired")
            {
                break;
            }
            if let Ok(Some(status)) = process.child_mut().try_wait() {
                bail!(
                    "connect exited ({status}):\n{}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "no lease within 30 s:\n{}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(POLL);
        }
        let took = started.elapsed();
        Ok(Ours {
            took,
            process: Some(process),
        })
    }
}

impl Subject for Ours {
    fn pids(&self) -> Vec<u32> {
        // `ip netns exec` execs the binary, so the child is connect itself.
        self.process.iter().map(KillOnDrop::id).collect()
    }
    fn time_to_address(&self) -> Duration {
        self.took
    }
}

impl Drop for Ours {
    fn drop(&mut self) {
        // SIGTERM so connect releases the lease and removes what it added before the next subject runs.
        if let Some(p) = self.process.take() {
            let _ = p.terminate(Duration::from_secs(15));
        }
    }
}

pub(crate) struct Official {
    ns: String,
    client: Option<OfficialClient>,
    took: Duration,
}

impl Official {
    pub(crate) fn start(lab: &Lab) -> Result<Official> {
        // A fresh copy and NIC name per start: a client's config remembers its NICs, and the WAN
        // bench starts the official client once per round.
        static STARTS: AtomicU32 = AtomicU32::new(0);
        let n = STARTS.fetch_add(1, Ordering::Relaxed);
        let f = &lab.facts;
        let started = Instant::now();
        let client = OfficialClient::start(lab, &f.client_ns, &format!("bench-vpnclient-{n}"))?;
        let auth = ClientAuth::Password {
            user: f.alice.name.clone(),
            password: f.alice.password.clone(),
            plain: false,
        };
        let nic = client.connect(lab, &format!("bench{n}"), &auth)?;
        lab.exec_in_ok(
            &f.client_ns,
            &["ip", "addr", "add", OFFICIAL_ADDRESS, "dev", &nic],
        )?;
        lab.exec_in_ok(&f.client_ns, &["ip", "link", "set", &nic, "up"])?;
        Ok(Official {
            ns: f.client_ns.clone(),
            client: Some(client),
            took: started.elapsed(),
        })
    }
}

impl Subject for Official {
    fn pids(&self) -> Vec<u32> {
        pids_in_ns(&self.ns, "vpnclient")
    }
    fn time_to_address(&self) -> Duration {
        self.took
    }
}

impl Drop for Official {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let _ = c.disconnect();
        }
    }
}

/// The server needs 10 s of continuous UDP before it uses it.
const UDP_WAIT: Duration = Duration::from_secs(60);

/// The hub's user sessions now: pass them to [`wait_udp_active`] before starting a subject, so
/// that a previous subject's session (the server keeps it a while) does not count.
pub(crate) fn sessions_before(lab: &Lab) -> Result<Vec<String>> {
    lab.user_sessions()
}

/// Each side sends its frames over UDP only after 10 s of continuous UDP of its own
/// (`UDP_ACCELERATION_REQUIRE_CONTINUOUS`), while the server's session report says "active" as
/// soon as the link answers, about 1 s after the login. Measuring from that report, the first
/// upload ran over TCP and switched to UDP half-way: the flow then stayed at ~650 Mbit/s, where
/// a flow started after the switch ran at ~850 (ours; the official client's switch lands at a
/// different moment). So the runs start this long after the report.
const BOTH_SIDES_SWITCHED: Duration = Duration::from_secs(11);

/// Waits until a user session not in `before` reports "UDP Acceleration is Active: Yes", then
/// [`BOTH_SIDES_SWITCHED`] more.
pub(crate) fn wait_udp_active(lab: &Lab, before: &[String]) -> Result<()> {
    let start = Instant::now();
    loop {
        for s in lab.user_sessions()? {
            if before.contains(&s) {
                continue;
            }
            let out = lab.vpncmd(&["SessionGet", &s])?;
            if parse_table(&out)
                .iter()
                .any(|(k, v)| k == "UDP Acceleration is Active" && v == "Yes")
            {
                std::thread::sleep(BOTH_SIDES_SWITCHED);
                return Ok(());
            }
        }
        if start.elapsed() > UDP_WAIT {
            anyhow::bail!("not active after {UDP_WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
