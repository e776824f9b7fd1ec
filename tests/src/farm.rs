//! [`Farm`]: a SoftEther server farm (cluster) of one controller and one member, for redirect tests.
//!
//! ```text
//!  controller ns (se-fc-<id>)            client ns (se-fcl-<id>)             member ns (se-fm-<id>)
//!  eth0 <net>.2/29 ──veth──┐             bridge fbr <net>.1/29           ┌──veth── eth0 <net>.3/29
//!  vpnserver :443          └── to-ctl ── fbr ── to-mem ──────────────────┘        vpnserver :443
//!  ClusterSettingController /ONLY:yes      (tests run clients here)      ClusterSettingMember <net>.2:443
//!  static hub "LAB", user alice                                          hosts every session of "LAB"
//! ```
//!
//! The controller is "controller only": it hosts no session itself, so every client login to it is answered
//! with a redirect (member IP, ports, one-time ticket, member certificate). SecureNAT is not available on
//! cluster hubs (vpncmd answers error 33, "Unsupported"), so the hub has no DHCP server; the member's hub
//! packet log (on by default for DHCP) shows which frames reached it — see [`Farm::member_packet_log`].
//!
//! Both servers are the Debian `vpnserver` run like the lab's ([`ServerProcess`]): a per-server copy in a
//! private mount namespace. Everything is torn down when the [`Farm`] drops, also on panic; leftovers of
//! crashed runs are swept on the next start.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::certs;
use crate::command::run_argv;
use crate::facts::LabUser;
use crate::netns::Netns;
use crate::prereq;
use crate::server::{Resources, ServerProcess};
use crate::vpncmd::Vpncmd;

static FARM_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Prefix of farm directories under the system temp dir (`softether-farm-<pid>-<n>`).
pub const DIR_PREFIX: &str = "softether-farm-";

/// Namespace name prefixes (also listed in `netns::NS_PREFIXES` so the sweeper knows them).
pub const CONTROLLER_NS_PREFIX: &str = "se-fc-";
/// See [`CONTROLLER_NS_PREFIX`].
pub const MEMBER_NS_PREFIX: &str = "se-fm-";
/// See [`CONTROLLER_NS_PREFIX`].
pub const CLIENT_NS_PREFIX: &str = "se-fcl-";

/// Both servers listen on this port; the member announces only it in redirects.
pub const PORT: u16 = 443;
const BRIDGE: &str = "fbr";
const SERVER_IF: &str = "eth0";
const PREFIX_LEN: u8 = 29;
const START_TIMEOUT: Duration = Duration::from_secs(30);
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a test needs to know about a running farm. All addresses are inside the farm's namespaces.
#[derive(Debug, Clone)]
pub struct FarmFacts {
    /// `<pid>-<counter>`, embedded in every name below.
    pub id: String,
    /// Namespace for clients under test; reaches both servers.
    pub client_ns: String,
    /// Namespace running the cluster controller.
    pub controller_ns: String,
    /// Namespace running the cluster member.
    pub member_ns: String,
    /// Client namespace's address (on its bridge).
    pub client_ip: Ipv4Addr,
    /// Controller's address; clients log in here.
    pub controller_ip: Ipv4Addr,
    /// Member's address, announced by the controller in redirects (`ClusterSettingMember /IP:`).
    pub member_ip: Ipv4Addr,
    /// Prefix length of the shared underlay segment (29).
    pub prefix_len: u8,
    /// Port of both servers ([`PORT`]).
    pub port: u16,
    /// Static virtual hub, defined on the controller, hosted on the member.
    pub hub: String,
    /// Password user on the hub.
    pub user: LabUser,
    /// Controller administrator password (also the member's cluster join password).
    pub controller_admin_password: String,
    /// Member administrator password.
    pub member_admin_password: String,
    /// Controller's TLS certificate (PEM, from `ServerCertGet`).
    pub controller_cert_pem: PathBuf,
    /// SHA-256 of the controller certificate's DER, lowercase hex.
    pub controller_cert_sha256: String,
    /// Member's TLS certificate (PEM, from `ServerCertGet`); the one announced in redirects.
    pub member_cert_pem: PathBuf,
    /// SHA-256 of the member certificate's DER, lowercase hex.
    pub member_cert_sha256: String,
    /// Farm directory (server copies, configs, logs, certificates).
    pub dir: PathBuf,
}

/// A running controller + member farm. Dropping it kills both servers and every process in its namespaces,
/// deletes the namespaces and removes its directory.
#[derive(Debug)]
pub struct Farm {
    /// Names, addresses, credentials, certificate pins.
    pub facts: FarmFacts,
    controller: Vpncmd,
    member: Vpncmd,
    controller_log: PathBuf,
    member_log: PathBuf,
    _res: Resources,
}

impl Farm {
    /// Builds the farm: namespaces and links, two servers, controller mode, member joined, static hub with
    /// the user. Takes several seconds.
    pub fn start() -> Result<Farm> {
        prereq::check_lab()?;
        crate::lab::sweep_stale();
        let pid = std::process::id();
        let n = FARM_COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("{pid}-{n}");
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{id}"));
        let mut res = Resources::new(&dir)?;

        let client_ns = format!("{CLIENT_NS_PREFIX}{id}");
        let controller_ns = format!("{CONTROLLER_NS_PREFIX}{id}");
        let member_ns = format!("{MEMBER_NS_PREFIX}{id}");
        for name in [&client_ns, &controller_ns, &member_ns] {
            res.namespaces.push(Netns::create(name)?);
        }
        let [client_ip, controller_ip, member_ip] = segment_addresses(pid, n);
        wire_segment(
            &client_ns,
            client_ip,
            &[
                ("to-ctl", &controller_ns, controller_ip),
                ("to-mem", &member_ns, member_ip),
            ],
        )?;

        let mut admins = Vec::new();
        for (role, ns, ip) in [
            ("controller", &controller_ns, controller_ip),
            ("member", &member_ns, member_ip),
        ] {
            let sdir = dir.join(role);
            let mut server = ServerProcess::prepare(ns, &sdir)?;
            server.start()?;
            res.servers.push(server);
            let server = res.servers.last_mut().context("server just pushed")?;
            server
                .wait_listening(&client_ns, &ip.to_string(), PORT, START_TIMEOUT)
                .with_context(|| format!("starting the {role}"))?;
            let mut admin = Vpncmd {
                ns: ns.clone(),
                port: PORT,
                password: String::new(),
                cwd: sdir,
            };
            let password = format!("farm-{role}-{id}");
            admin.server_retry(&["ServerPasswordSet", &password], Duration::from_secs(10))?;
            admin.password = password;
            // No phoning home: the namespaces have no route out anyway, but don't even try.
            admin.batch(&[cmd(&["KeepDisable"]), cmd(&["VpnAzureSetEnable", "no"])])?;
            admins.push(admin);
        }
        let member = admins.pop().context("member admin")?;
        let controller = admins.pop().context("controller admin")?;
        let log_dirs: Vec<PathBuf> = res.servers.iter().map(|s| s.state().log()).collect();

        let facts = FarmFacts {
            id: id.clone(),
            client_ns,
            controller_ns,
            member_ns,
            client_ip,
            controller_ip,
            member_ip,
            prefix_len: PREFIX_LEN,
            port: PORT,
            hub: "LAB".to_owned(),
            user: LabUser::new("alice", "alice-Farm-1"),
            controller_admin_password: controller.password.clone(),
            member_admin_password: member.password.clone(),
            controller_cert_pem: dir.join("controller").join("server-cert.pem"),
            controller_cert_sha256: String::new(),
            member_cert_pem: dir.join("member").join("server-cert.pem"),
            member_cert_sha256: String::new(),
            dir,
        };
        let mut farm = Farm {
            facts,
            controller,
            member,
            controller_log: log_dirs.first().cloned().unwrap_or_default(),
            member_log: log_dirs.get(1).cloned().unwrap_or_default(),
            _res: res,
        };
        farm.form_cluster().context("forming the server farm")?;
        farm.configure_hub()
            .context("creating the static hub on the controller")?;
        Ok(farm)
    }

    fn form_cluster(&mut self) -> Result<()> {
        let f = &self.facts;
        // Changing the cluster role restarts the server inside its process; the admin connection drops, so
        // each role change is its own vpncmd call, followed by polling until the new role is in effect.
        self.controller
            .server(&["ClusterSettingController", "/WEIGHT:100", "/ONLY:yes"])?;
        poll(
            JOIN_TIMEOUT,
            "the controller to restart as cluster controller",
            || {
                Ok(self
                    .controller
                    .server(&["ClusterSettingGet"])
                    .is_ok_and(|out| {
                        table_value(&out, "Current Configuration") == Some("Cluster Controller")
                    }))
            },
        )?;
        self.member.server(&[
            "ClusterSettingMember",
            &format!("{}:{PORT}", f.controller_ip),
            &format!("/IP:{}", f.member_ip),
            &format!("/PORTS:{PORT}"),
            &format!("/PASSWORD:{}", f.controller_admin_password),
            "/WEIGHT:100",
        ])?;
        poll(JOIN_TIMEOUT, "the member to join the controller", || {
            Ok(self.cluster_member_count()? >= 1)
        })?;
        Ok(())
    }

    fn configure_hub(&mut self) -> Result<()> {
        let hub = self.facts.hub.clone();
        let user = self.facts.user.clone();
        self.controller.batch(&[
            cmd(&[
                "HubCreateStatic",
                &hub,
                &format!("/PASSWORD:hub-{}", self.facts.id),
            ]),
            cmd(&["HubDelete", "DEFAULT"]),
            cmd(&["Hub", &hub]),
            cmd(&[
                "UserCreate",
                &user.name,
                "/GROUP:none",
                "/REALNAME:none",
                "/NOTE:none",
            ]),
            cmd(&[
                "UserPasswordSet",
                &user.name,
                &format!("/PASSWORD:{}", user.password),
            ]),
            cmd(&["ServerCertGet", "server-cert.pem"]),
            cmd(&["Flush"]),
        ])?;
        // Read after the member's role change: its certificate is the one the controller announces.
        self.member
            .batch(&[cmd(&["ServerCertGet", "server-cert.pem"])])?;
        self.facts.controller_cert_sha256 =
            certs::sha256_fingerprint(&self.facts.controller_cert_pem)?;
        self.facts.member_cert_sha256 = certs::sha256_fingerprint(&self.facts.member_cert_pem)?;
        if self.facts.controller_cert_sha256 == self.facts.member_cert_sha256 {
            bail!("controller and member have the same certificate; redirect pinning would prove nothing");
        }
        Ok(())
    }

    /// Number of joined members (rows of type `Member` in the controller's `ClusterMemberList`).
    pub fn cluster_member_count(&self) -> Result<usize> {
        let out = self.controller.server(&["ClusterMemberList"])?;
        Ok(out
            .lines()
            .filter(|l| l.split('|').nth(1).map(str::trim) == Some("Member"))
            .count())
    }

    /// Runs a server-wide vpncmd command on the controller.
    pub fn controller_vpncmd(&self, args: &[&str]) -> Result<String> {
        self.controller.server(args)
    }

    /// Runs a vpncmd command on the controller with the farm hub selected.
    pub fn controller_hub_vpncmd(&self, args: &[&str]) -> Result<String> {
        self.controller.hub(&self.facts.hub, args)
    }

    /// Runs a server-wide vpncmd command on the member.
    pub fn member_vpncmd(&self, args: &[&str]) -> Result<String> {
        self.member.server(args)
    }

    /// Controller's server_log/, security_log/, packet_log/ directory.
    pub fn controller_log_dir(&self) -> &Path {
        &self.controller_log
    }

    /// Member's server_log/, security_log/, packet_log/ directory.
    pub fn member_log_dir(&self) -> &Path {
        &self.member_log
    }

    /// The hub's packet log on the member (one CSV line per logged frame, naming the session and MACs).
    pub fn member_packet_log(&self) -> String {
        packet_log(&self.member_log, &self.facts.hub)
    }

    /// The hub's packet log on the controller (stays empty: the controller hosts no sessions).
    pub fn controller_packet_log(&self) -> String {
        packet_log(&self.controller_log, &self.facts.hub)
    }
}

fn packet_log(log_dir: &Path, hub: &str) -> String {
    let mut out = String::new();
    if let Ok(entries) = fs::read_dir(log_dir.join("packet_log").join(hub)) {
        for e in entries.flatten() {
            out += &fs::read_to_string(e.path()).unwrap_or_default();
        }
    }
    out
}

fn cmd(argv: &[&str]) -> Vec<String> {
    argv.iter().map(|a| (*a).to_owned()).collect()
}

fn table_value<'a>(out: &'a str, item: &str) -> Option<&'a str> {
    out.lines()
        .filter_map(|l| l.split_once('|'))
        .find(|(k, _)| k.trim() == item)
        .map(|(_, v)| v.trim())
}

/// Calls `done` every 500 ms until it returns true (errors count as "not yet") or `timeout` passes.
fn poll(timeout: Duration, what: &str, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match done() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() >= deadline {
            let why = last_err.map(|e| format!(": {e:#}")).unwrap_or_default();
            bail!("timed out after {timeout:?} waiting for {what}{why}");
        }
        thread::sleep(Duration::from_millis(500));
    }
}

/// Picks the /29 for a farm inside 198.18.0.0/15 from pid and counter: (client, controller, member) are
/// .1, .2, .3 of it. The segment lives only in the farm's namespaces; distinct subnets keep captures of
/// parallel runs apart.
pub fn segment_addresses(pid: u32, n: u32) -> [Ipv4Addr; 3] {
    const SLOTS: u32 = (1 << 17) / 8; // /15 split into /29s
    let slot = (pid.wrapping_mul(89).wrapping_add(n)) % SLOTS;
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + slot * 8;
    [1, 2, 3].map(|i| Ipv4Addr::from(base + i))
}

/// Creates a bridge in `hub_ns` holding `hub_ip`, and for each (port name, namespace, address) a veth whose
/// `eth0` end sits in that namespace with that address and whose other end is a bridge port.
fn wire_segment(hub_ns: &str, hub_ip: Ipv4Addr, peers: &[(&str, &str, Ipv4Addr)]) -> Result<()> {
    let ip_n = |ns: &str, args: &[&str]| -> Result<()> {
        let mut argv = vec!["ip", "-n", ns];
        argv.extend_from_slice(args);
        run_argv(&argv).map(drop)
    };
    let cidr = |ip: Ipv4Addr| format!("{ip}/{PREFIX_LEN}");
    ip_n(hub_ns, &["link", "add", BRIDGE, "type", "bridge"])?;
    ip_n(hub_ns, &["addr", "add", &cidr(hub_ip), "dev", BRIDGE])?;
    ip_n(hub_ns, &["link", "set", BRIDGE, "up"])?;
    for (port, ns, ip) in peers {
        ip_n(
            ns,
            &[
                "link", "add", SERVER_IF, "type", "veth", "peer", "name", port, "netns", hub_ns,
            ],
        )?;
        ip_n(ns, &["addr", "add", &cidr(*ip), "dev", SERVER_IF])?;
        ip_n(ns, &["link", "set", SERVER_IF, "up"])?;
        ip_n(hub_ns, &["link", "set", port, "master", BRIDGE, "up"])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns;

    #[test]
    fn segment_is_a_29_in_198_18_slash_15() {
        for (pid, n) in [(0, 0), (1, 5), (u32::MAX, u32::MAX), (123_456, 7)] {
            let [c, ctl, m] = segment_addresses(pid, n).map(u32::from);
            assert_eq!(c & !7, ctl & !7);
            assert_eq!(c & !7, m & !7);
            assert_eq!((c & 7, ctl & 7, m & 7), (1, 2, 3));
            assert_eq!(c >> 17, u32::from(Ipv4Addr::new(198, 18, 0, 0)) >> 17);
        }
        assert_ne!(segment_addresses(10, 0), segment_addresses(10, 1));
    }

    #[test]
    fn farm_namespaces_are_swept() {
        for p in [CONTROLLER_NS_PREFIX, MEMBER_NS_PREFIX, CLIENT_NS_PREFIX] {
            let name = format!("{p}42-0");
            assert_eq!(
                netns::owner_pid(&name, netns::NS_PREFIXES),
                Some(42),
                "{name}"
            );
        }
    }

    #[test]
    fn reads_table_values() {
        let out = "Item|Value\n----+----\nCurrent Configuration          |Cluster Controller\n";
        assert_eq!(
            table_value(out, "Current Configuration"),
            Some("Cluster Controller")
        );
        assert_eq!(table_value(out, "Missing"), None);
    }
}
