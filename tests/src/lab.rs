//! [`Lab`]: three namespaces around a private SoftEther VPN Server, configured for end-to-end tests.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::certs::{self, ClientCert, LabCa};
use crate::facts::{subnet, LabFacts, LabUser};
use crate::netns::{self, KillOnDrop, Netns};
use crate::prereq;
use crate::server::{Resources, ServerProcess};
use crate::topology::{
    prefix_to_mask, underlay_pair, wire_lan, wire_underlay, BRIDGE_IF, CLIENT_IF, LAN_IF, SERVER_IF,
};
use crate::vpncmd::Vpncmd;

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Prefix of lab directories under the system temp dir (`softether-lab-<pid>-<n>`).
pub const DIR_PREFIX: &str = "softether-lab-";

/// DNS name in the lab-CA-issued server certificate ([`LabOptions::server_cert_from_lab_ca`]).
pub const LAB_SERVER_NAME: &str = "vpn.lab.test";

/// Knobs for [`Lab::start`]. Construct with `LabOptions { field: x, ..Default::default() }`.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Server port clients connect to (default 443). Ports other than the default listeners
    /// (443, 992, 1194, 5555) get a `ListenerCreate`.
    pub port: u16,
    /// Virtual hub name (default "LAB").
    pub hub: String,
    /// SecureNAT DHCP lease time in seconds (default 7200; use e.g. 30 for renewal tests).
    pub dhcp_lease_secs: u32,
    /// If set, the `TimeOut` policy (seconds without communication before the server drops a session)
    /// applied to every created user.
    pub session_timeout_secs: Option<u32>,
    /// Additional password users.
    pub extra_users: Vec<LabUser>,
    /// Enable SecureNAT's NAT function (default off: only the virtual host, DHCP and ICMP/ARP answer; the
    /// server namespace has no route beyond the lab either way).
    pub securenat_nat: bool,
    /// Extra vpncmd commands run with the hub selected, after the standard setup; arguments must not contain
    /// whitespace (e.g.
    /// `vec!["UserPolicySet".into(), "alice".into(), "/NAME:MaxConnection".into(), "/VALUE:1".into()]`).
    pub extra_hub_commands: Vec<Vec<String>>,
    /// Deadline for the server to accept connections (default 30 s).
    pub start_timeout: Duration,
    /// Router SecureNAT's DHCP server announces (option 3). Default `None`: the SecureNAT virtual host
    /// ([`subnet::GATEWAY`]). E.g. [`subnet::LAN_HOST`] for tests where the LAN host routes.
    pub dhcp_router: Option<Ipv4Addr>,
    /// Replace the server's default self-signed certificate with one issued by a lab CA
    /// ([`LabFacts::lab_ca`]), for tests of CA-based server verification (default false).
    pub server_cert_from_lab_ca: bool,
    /// Last address of SecureNAT's DHCP pool (default [`subnet::DHCP_END`], 90 addresses); at
    /// most 10.99.0.199, below the LAN host.
    pub dhcp_pool_end: Option<Ipv4Addr>,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            port: 443,
            hub: "LAB".to_owned(),
            dhcp_lease_secs: 7200,
            session_timeout_secs: None,
            extra_users: Vec::new(),
            securenat_nat: false,
            extra_hub_commands: Vec::new(),
            start_timeout: Duration::from_secs(30),
            dhcp_router: None,
            server_cert_from_lab_ca: false,
            dhcp_pool_end: None,
        }
    }
}

/// A running lab. Dropping it kills the server and every process in its namespaces, deletes the namespaces
/// (and with them all veths), and removes its directory — also when a test panics.
#[derive(Debug)]
pub struct Lab {
    /// Names, addresses, credentials. See [`LabFacts`].
    pub facts: LabFacts,
    opts: LabOptions,
    admin: Vpncmd,
    res: Resources,
}

impl Lab {
    /// Builds a lab: checks prerequisites (root, tools), sweeps leftovers of dead processes, creates the
    /// namespaces and links, starts and configures the server. Takes about two seconds. On failure
    /// everything built so far is torn down; the error starts with `starting lab <id>`.
    pub fn start(opts: LabOptions) -> Result<Lab> {
        prereq::check_lab()?;
        sweep_stale();
        let pid = std::process::id();
        let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        // The id in the error lets a caller check that a failed start left nothing behind.
        Self::build(opts, pid, n).with_context(|| format!("starting lab {pid}-{n}"))
    }

    fn build(opts: LabOptions, pid: u32, n: u32) -> Result<Lab> {
        let id = format!("{pid}-{n}");
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{id}"));
        let mut res = Resources::new(&dir)?;

        let server_ns = format!("se-srv-{id}");
        let client_ns = format!("se-cli-{id}");
        let lan_ns = format!("se-lan-{id}");
        for name in [&server_ns, &client_ns, &lan_ns] {
            res.namespaces.push(Netns::create(name)?);
        }
        let (server_ip, client_ip) = underlay_pair(pid, n);
        wire_underlay(&server_ns, &client_ns, server_ip, client_ip)?;
        wire_lan(&server_ns, &lan_ns)?;

        let mut server = ServerProcess::prepare(&server_ns, &dir.join("server"))?;
        server.start()?;
        res.servers.push(server);
        let server = res.servers.last_mut().context("server just pushed")?;
        server.wait_listening(&client_ns, &server_ip.to_string(), 443, opts.start_timeout)?;

        let admin_password = format!("lab-admin-{id}");
        let mut admin = Vpncmd {
            ns: server_ns.clone(),
            port: 443,
            password: String::new(),
            cwd: dir.clone(),
        };
        admin.server_retry(
            &["ServerPasswordSet", &admin_password],
            Duration::from_secs(10),
        )?;
        admin.password = admin_password.clone();
        if ![443, 992, 1194, 5555].contains(&opts.port) {
            admin.server(&["ListenerCreate", &opts.port.to_string()])?;
            server.wait_listening(
                &client_ns,
                &server_ip.to_string(),
                opts.port,
                opts.start_timeout,
            )?;
        }
        admin.port = opts.port;

        let carol_cert = ClientCert::generate(&dir.join("certs"), "carol")?;
        let lab_ca = if opts.server_cert_from_lab_ca {
            Some(LabCa::generate(
                &dir.join("certs"),
                server_ip,
                LAB_SERVER_NAME,
            )?)
        } else {
            None
        };
        let facts = LabFacts {
            id,
            server_ns,
            client_ns,
            lan_ns,
            server_ip,
            client_ip,
            underlay_prefix_len: 30,
            client_if: CLIENT_IF.to_owned(),
            server_if: SERVER_IF.to_owned(),
            port: opts.port,
            hub: opts.hub.clone(),
            admin_password,
            alice: LabUser::new("alice", "alice-Secret-1"),
            bob: LabUser::new("bob", "bob-Secret-2"),
            carol: "carol".to_owned(),
            carol_cert,
            anonymous: "anon".to_owned(),
            extra_users: opts.extra_users.clone(),
            server_cert_pem: dir.join("server-cert.pem"),
            server_cert_sha256: String::new(),
            lab_ca,
            dhcp_lease_secs: opts.dhcp_lease_secs,
            subnet: subnet::NETWORK,
            subnet_prefix_len: subnet::PREFIX_LEN,
            gateway: subnet::GATEWAY,
            dhcp_router: opts.dhcp_router.unwrap_or(subnet::GATEWAY),
            dhcp_start: subnet::DHCP_START,
            dhcp_end: opts.dhcp_pool_end.unwrap_or(subnet::DHCP_END),
            dns: subnet::GATEWAY,
            domain: subnet::DOMAIN.to_owned(),
            pushed_route: subnet::PUSHED_ROUTE,
            pushed_route_prefix_len: subnet::PUSHED_ROUTE_PREFIX_LEN,
            pushed_route_gateway: subnet::GATEWAY,
            lan_host: subnet::LAN_HOST,
            lan_if: LAN_IF.to_owned(),
            bridge_if: BRIDGE_IF.to_owned(),
            dir,
        };
        let mut lab = Lab {
            facts,
            opts,
            admin,
            res,
        };
        lab.configure()
            .context("configuring the lab's vpnserver with vpncmd")?;
        Ok(lab)
    }

    fn configure(&mut self) -> Result<()> {
        let f = &self.facts;
        let hub = f.hub.as_str();
        let mut b = Batch::default();
        // No phoning home: the namespace has no route out anyway, but don't even try.
        b.add(&["KeepDisable"]);
        b.add(&["VpnAzureSetEnable", "no"]);
        b.add(&["HubCreate", hub, &format!("/PASSWORD:hub-{}", f.id)]);
        if hub != "DEFAULT" {
            b.add(&["HubDelete", "DEFAULT"]);
        }
        b.add(&["Hub", hub]);
        let mut users = vec![f.alice.clone(), f.bob.clone()];
        users.extend(f.extra_users.iter().cloned());
        let new_user = |b: &mut Batch, name: &str| {
            b.add(&[
                "UserCreate",
                name,
                "/GROUP:none",
                "/REALNAME:none",
                "/NOTE:none",
            ]);
        };
        for u in &users {
            new_user(&mut b, &u.name);
            b.add(&[
                "UserPasswordSet",
                &u.name,
                &format!("/PASSWORD:{}", u.password),
            ]);
        }
        new_user(&mut b, &f.carol);
        // vpncmd reads arguments starting with '/' as options: the path is relative to the lab dir.
        let cert_rel = f
            .carol_cert
            .cert_pem
            .strip_prefix(&f.dir)
            .unwrap_or(&f.carol_cert.cert_pem);
        b.add(&[
            "UserCertSet",
            &f.carol,
            &format!("/LOADCERT:{}", cert_rel.display()),
        ]);
        new_user(&mut b, &f.anonymous);
        b.add(&["UserAnonymousSet", &f.anonymous]);
        if let Some(t) = self.opts.session_timeout_secs {
            let mut all: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
            all.extend([f.carol.as_str(), f.anonymous.as_str()]);
            for u in all {
                b.add(&["UserPolicySet", u, "/NAME:TimeOut", &format!("/VALUE:{t}")]);
            }
        }

        b.add(&["SecureNatEnable"]);
        let mask = prefix_to_mask(f.subnet_prefix_len);
        b.add(&[
            "SecureNatHostSet",
            "/MAC:none",
            &format!("/IP:{}", f.gateway),
            &format!("/MASK:{mask}"),
        ]);
        b.add(&[
            "DhcpSet",
            &format!("/START:{}", f.dhcp_start),
            &format!("/END:{}", f.dhcp_end),
            &format!("/MASK:{mask}"),
            &format!("/EXPIRE:{}", f.dhcp_lease_secs),
            &format!("/GW:{}", f.dhcp_router),
            &format!("/DNS:{}", f.dns),
            "/DNS2:none",
            &format!("/DOMAIN:{}", f.domain),
            "/LOG:yes",
            &format!(
                "/PUSHROUTE:{}/{}/{}",
                f.pushed_route,
                prefix_to_mask(f.pushed_route_prefix_len),
                f.pushed_route_gateway
            ),
        ]);
        b.add(&[if self.opts.securenat_nat {
            "NatEnable"
        } else {
            "NatDisable"
        }]);
        b.add(&[
            "BridgeCreate",
            hub,
            &format!("/DEVICE:{}", f.bridge_if),
            "/TAP:no",
        ]);
        for cmd in &self.opts.extra_hub_commands {
            b.0.push(cmd.clone());
        }
        if let Some(ca) = &f.lab_ca {
            let rel = |p: &Path| p.strip_prefix(&f.dir).unwrap_or(p).display().to_string();
            b.add(&[
                "ServerCertSet",
                &format!("/LOADCERT:{}", rel(&ca.server_cert_pem)),
                &format!("/LOADKEY:{}", rel(&ca.server_key_pem)),
            ]);
        }
        let cert_file = f.server_cert_pem.file_name().context("server cert path")?;
        b.add(&["ServerCertGet", &cert_file.to_string_lossy()]);
        // The server writes its config lazily; a SIGKILLed server must come back with all of the above.
        b.add(&["Flush"]);
        self.admin.batch(&b.0)?;
        self.facts.server_cert_sha256 = certs::sha256_fingerprint(&self.facts.server_cert_pem)?;
        Ok(())
    }

    /// Runs a vpncmd command with the lab hub selected (e.g. `&["SessionList"]`); returns its output.
    pub fn vpncmd(&self, args: &[&str]) -> Result<String> {
        self.admin.hub(&self.facts.hub, args)
    }

    /// Runs a server-wide vpncmd command (e.g. `&["HubList"]`).
    pub fn vpncmd_server(&self, args: &[&str]) -> Result<String> {
        self.admin.server(args)
    }

    /// Names of the hub's current sessions (`SessionList`), excluding SecureNAT and local-bridge sessions.
    pub fn user_sessions(&self) -> Result<Vec<String>> {
        let out = self.vpncmd(&["SessionList"])?;
        Ok(crate::vpncmd::parse_table(&out)
            .into_iter()
            .filter(|(k, v)| {
                k == "Session Name"
                    && !v.starts_with("SID-SECURENAT")
                    && !v.starts_with("SID-LOCALBRIDGE")
            })
            .map(|(_, v)| v)
            .collect())
    }

    /// Runs `argv` in namespace `ns`; returns the output whatever the exit status (60 s deadline).
    pub fn exec_in(&self, ns: &str, argv: &[&str]) -> Result<Output> {
        netns::exec_in(ns, argv)
    }

    /// Runs `argv` in namespace `ns`; non-zero exit is an error; returns stdout.
    pub fn exec_in_ok(&self, ns: &str, argv: &[&str]) -> Result<String> {
        netns::exec_in_ok(ns, argv)
    }

    /// Starts `argv` in namespace `ns` in the background; killed when the handle drops (and at lab teardown).
    pub fn spawn_in(&self, ns: &str, argv: &[&str]) -> Result<KillOnDrop> {
        netns::spawn_in(ns, argv)
    }

    /// Runs `f` on a thread inside namespace `ns` (see [`netns::run_in`]).
    pub fn run_in<F, R>(&self, ns: &str, f: F) -> Result<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        netns::run_in(ns, f)
    }

    /// `ping -c <count> -W 2 <dst>` from `ns`; true when at least one reply came back.
    pub fn ping_from(&self, ns: &str, dst: Ipv4Addr, count: u32) -> Result<bool> {
        let out = netns::exec_in(
            ns,
            &[
                "ping",
                "-n",
                "-c",
                &count.to_string(),
                "-W",
                "2",
                &dst.to_string(),
            ],
        )?;
        Ok(out.status.success())
    }

    /// Pings `dst` from the LAN host, retrying (up to `attempts` single pings) while the bridge settles.
    pub fn lan_ping(&self, dst: Ipv4Addr, attempts: u32) -> Result<bool> {
        self.ping_until(&self.facts.lan_ns, dst, attempts)
    }

    /// Single pings (2 s reply deadline each) from `ns` to `dst` until one is answered, at most `attempts`.
    pub fn ping_until(&self, ns: &str, dst: Ipv4Addr, attempts: u32) -> Result<bool> {
        for _ in 0..attempts {
            if self.ping_from(ns, dst, 1)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether a TCP connect from the client namespace to the server port succeeds right now.
    pub fn server_reachable(&self) -> Result<bool> {
        crate::server::tcp_probe(
            &self.facts.client_ns,
            &self.facts.server_ip.to_string(),
            self.facts.port,
        )
    }

    /// SIGKILLs the vpnserver (monitor and worker), simulating a crash; sessions drop without goodbye.
    pub fn kill_server(&mut self) {
        if let Some(s) = self.res.servers.first_mut() {
            s.kill();
        }
    }

    /// Starts the server again with the same configuration and waits until it accepts connections.
    pub fn restart_server(&mut self) -> Result<()> {
        self.kill_server();
        self.start_server()?;
        // The listener opens before the hub and bridge are back; wait for the hub to answer.
        self.admin
            .server_retry(&["HubList"], Duration::from_secs(10))?;
        Ok(())
    }

    /// Starts the killed server again and returns when its listener was first seen accepting
    /// (polled every 100 ms), without waiting for the hub: for measuring recovery times.
    pub fn start_server(&mut self) -> Result<std::time::Instant> {
        let f = &self.facts;
        let server = self.res.servers.first_mut().context("lab has no server")?;
        server.start()?;
        server.wait_listening(
            &f.client_ns,
            &f.server_ip.to_string(),
            f.port,
            self.opts.start_timeout,
        )?;
        Ok(std::time::Instant::now())
    }

    /// Pid of the running vpnserver monitor process, if any.
    pub fn server_pid(&self) -> Option<u32> {
        self.res.servers.first().and_then(ServerProcess::pid)
    }

    /// Private directory with `vpn_server.config` (bind-mounted over /var/lib/softether for the server).
    pub fn server_config_dir(&self) -> Option<PathBuf> {
        self.res.servers.first().map(|s| s.state().db())
    }

    /// Private directory with the server's server_log/, security_log/, packet_log/.
    pub fn server_log_dir(&self) -> Option<PathBuf> {
        self.res.servers.first().map(|s| s.state().log())
    }
}

/// vpncmd commands collected for one [`Vpncmd::batch`] run.
#[derive(Default)]
struct Batch(Vec<Vec<String>>);

impl Batch {
    fn add(&mut self, argv: &[&str]) {
        self.0.push(argv.iter().map(|a| (*a).to_owned()).collect());
    }
}

/// Removes namespaces and lab and farm directories left behind by processes that no longer exist.
pub fn sweep_stale() {
    netns::sweep_stale();
    let tmp = std::env::temp_dir();
    let Ok(entries) = fs::read_dir(&tmp) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = netns::owner_pid(&name, &[DIR_PREFIX, crate::farm::DIR_PREFIX]) {
            if !netns::pid_alive(pid) {
                let _ = fs::remove_dir_all(tmp.join(Path::new(&name)));
            }
        }
    }
}
