//! A small self-contained real-server lab for the `connect` end-to-end tests, until the shared
//! harness in tests/src covers the same ground: a SoftEther server namespace (hub LAB, user
//! alice, SecureNAT DHCP pushing 10.77.0.0/16), a lan namespace bridged into the hub with a host
//! at 192.168.30.250, and a client namespace with an underlay veth (198.18.7.0/30) to the server.
//! Everything is removed on drop, also when a test fails.
#![allow(dead_code)] // each test binary uses a different subset

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const SERVER_IP: &str = "198.18.7.1";
pub const CLIENT_UNDERLAY_IP: &str = "198.18.7.2";
pub const LAN_HOST_IP: &str = "192.168.30.250";
pub const SECURENAT_IP: &str = "192.168.30.1";
pub const PUSHED_ROUTE: &str = "10.77.0.0/16";
pub const PASSWORD: &str = "s3cret";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Lab knobs.
#[derive(Clone, Debug)]
pub struct LabOptions {
    /// SecureNAT DHCP lease time in seconds.
    pub lease_secs: u32,
    /// The router the DHCP server announces (default SecureNAT itself).
    pub gateway: &'static str,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            lease_secs: 7200,
            gateway: SECURENAT_IP,
        }
    }
}

pub struct Lab {
    pub srv: String,
    pub cli: String,
    pub lan: String,
    pub dir: PathBuf,
    server: Option<Child>,
    extra_netns: Vec<String>,
}

pub fn sh(cmd: &str) -> (bool, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .output()
        .expect("spawn sh");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text += &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

pub fn must(cmd: &str) -> String {
    let (ok, out) = sh(cmd);
    assert!(ok, "command failed: {cmd}\n{out}");
    out
}

pub fn require_root() {
    let uid = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .unwrap_or_default();
    assert_eq!(
        uid, "0",
        "the connect e2e tests need root (network namespaces, TAP)"
    );
    for tool in ["ip", "vpncmd", "nft", "ping"] {
        assert!(
            sh(&format!("command -v {tool}")).0,
            "missing prerequisite: {tool}"
        );
    }
    assert!(
        Path::new("/usr/libexec/softether/vpnserver/vpnserver").exists(),
        "missing prerequisite: softether-vpnserver (Debian package)"
    );
}

/// The built `softether-sidecar` binary.
pub fn sidecar_bin() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug/softether-sidecar");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p softether-sidecar` first",
        bin.display()
    );
    bin
}

impl Lab {
    pub fn start() -> Lab {
        Lab::start_with(LabOptions::default())
    }

    pub fn start_with(opts: LabOptions) -> Lab {
        require_root();
        let tag = format!(
            "{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let dir = std::env::temp_dir().join(format!("cx-lab-{tag}"));
        let mut lab = Lab {
            srv: format!("cxs-{tag}"),
            cli: format!("cxc-{tag}"),
            lan: format!("cxl-{tag}"),
            dir,
            server: None,
            extra_netns: Vec::new(),
        };
        lab.build(&opts);
        lab
    }

    fn build(&mut self, opts: &LabOptions) {
        let (s, c, l) = (&self.srv, &self.cli, &self.lan);
        for n in [s, c, l] {
            must(&format!("ip netns add {n} && ip -n {n} link set lo up"));
        }
        must(&format!(
            "ip -n {s} link add to-cli type veth peer name to-srv netns {c} && \
             ip -n {s} addr add {SERVER_IP}/30 dev to-cli && ip -n {s} link set to-cli up && \
             ip -n {c} addr add {CLIENT_UNDERLAY_IP}/30 dev to-srv && ip -n {c} link set to-srv up && \
             ip -n {s} link add lan-br type veth peer name eth0 netns {l} && ip -n {s} link set lan-br up && \
             ip -n {l} addr add {LAN_HOST_IP}/24 dev eth0 && ip -n {l} link set eth0 up"
        ));
        // TCP through SoftEther's local bridge stalls with offloads on.
        sh(&format!("ip netns exec {s} ethtool -K lan-br tx off rx off tso off gso off gro off; ip netns exec {l} ethtool -K eth0 tx off rx off tso off gso off gro off"));
        let d = self.dir.display().to_string();
        must(&format!(
            "mkdir -p {d}/db {d}/log {d}/run /var/lib/softether /var/log/softether /run/softether && \
             cp /usr/libexec/softether/vpnserver/vpnserver {d}/ && cp -L /usr/libexec/softether/vpnserver/hamcore.se2 {d}/"
        ));
        self.start_server();
        self.vpncmd("HubCreate LAB /PASSWORD:hubpw");
        self.hub("UserCreate alice /GROUP:none /REALNAME:none /NOTE:none");
        self.hub(&format!("UserPasswordSet alice /PASSWORD:{PASSWORD}"));
        self.hub("SecureNatEnable");
        self.hub(&format!(
            "DhcpSet /START:192.168.30.10 /END:192.168.30.200 /MASK:255.255.255.0 /EXPIRE:{} \
             /GW:{} /DNS:192.168.30.1 /DNS2:none /DOMAIN:vpn.test /LOG:yes \
             /PUSHROUTE:10.77.0.0/255.255.0.0/192.168.30.1",
            opts.lease_secs, opts.gateway
        ));
        self.vpncmd("BridgeCreate LAB /DEVICE:lan-br /TAP:no");
    }

    /// Starts vpnserver in the server namespace with its own config/log dirs, and waits until
    /// vpncmd can talk to it.
    pub fn start_server(&mut self) {
        let d = self.dir.display().to_string();
        let script = format!(
            "mount --bind {d}/db /var/lib/softether && mount --bind {d}/log /var/log/softether && \
             mount --bind {d}/run /run/softether && exec {d}/vpnserver execsvc"
        );
        let log = fs::File::create(self.dir.join("server.out")).expect("server log");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.srv,
                "unshare",
                "-m",
                "--propagation",
                "private",
            ])
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn vpnserver");
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if sh(&format!(
                "ip netns exec {} timeout 3 vpncmd localhost:443 /SERVER /CMD About",
                self.srv
            ))
            .0
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("vpnserver did not come up in 20 s");
    }

    /// Saves the configuration, stops the server (SIGTERM, bounded), then starts it again.
    pub fn restart_server(&mut self) {
        self.vpncmd("Flush");
        self.stop_server();
        self.start_server();
    }

    pub fn stop_server(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // The watchdog forks a worker; make sure nothing of the old server is left.
        sh(&format!("ip netns pids {} | xargs -r kill -9", self.srv));
        std::thread::sleep(Duration::from_millis(300));
    }

    pub fn vpncmd(&self, cmd: &str) -> String {
        must(&format!(
            "ip netns exec {} timeout 20 vpncmd localhost:443 /SERVER /CMD {cmd}",
            self.srv
        ))
    }

    pub fn hub(&self, cmd: &str) -> String {
        must(&format!(
            "ip netns exec {} timeout 20 vpncmd localhost:443 /SERVER /HUB:LAB /PASSWORD:hubpw /CMD {cmd}",
            self.srv
        ))
    }

    /// The hub's packet log (SoftEther writes one line per packet when /LOG is on).
    pub fn packet_log(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = fs::read_dir(self.dir.join("log/packet_log/LAB")) {
            for e in entries.flatten() {
                out += &fs::read_to_string(e.path()).unwrap_or_default();
            }
        }
        out
    }

    pub fn in_cli(&self, cmd: &str) -> (bool, String) {
        sh(&format!("ip netns exec {} {cmd}", self.cli))
    }

    pub fn in_lan(&self, cmd: &str) -> (bool, String) {
        sh(&format!("ip netns exec {} {cmd}", self.lan))
    }

    /// Another namespace owned (and removed) by this lab.
    pub fn add_netns(&mut self, suffix: &str) -> String {
        let name = format!("{}-{suffix}", self.cli);
        must(&format!(
            "ip netns add {name} && ip -n {name} link set lo up"
        ));
        self.extra_netns.push(name.clone());
        name
    }

    /// Everything `connect` could touch in the client namespace, for before/after diffs.
    pub fn client_snapshot(&self) -> String {
        let c = &self.cli;
        must(&format!(
            "ip -n {c} -j addr; echo; ip -n {c} -j route show table all; echo; \
             ip -n {c} -j -6 route show table all; echo; ip -n {c} -j rule; echo; \
             ip netns exec {c} nft -j list ruleset"
        ))
    }

    /// Starts `softether-sidecar connect` in the client namespace with the lab's server and
    /// credentials (password through SOFTETHER_PASSWORD) plus `extra` flags.
    pub fn connect(&self, extra: &[&str]) -> Client {
        self.connect_as(PASSWORD, extra)
    }

    pub fn connect_as(&self, password: &str, extra: &[&str]) -> Client {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let log_path = self.dir.join(format!("connect-{n}.log"));
        let log = fs::File::create(&log_path).expect("client log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.cli])
            .arg(sidecar_bin())
            .args([
                "connect", "--host", SERVER_IP, "--hub", "LAB", "--user", "alice",
            ])
            .args(["--insecure", "--tap", "vpn0", "--log", "info"])
            .args(extra)
            .env("SOFTETHER_PASSWORD", password)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn softether-sidecar connect");
        Client {
            child: Some(child),
            log: log_path,
            started: Instant::now(),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_server();
        for n in self
            .extra_netns
            .iter()
            .chain([&self.cli, &self.lan, &self.srv])
        {
            sh(&format!(
                "ip netns pids {n} | xargs -r kill -9; ip netns del {n}"
            ));
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A running `connect` process.
pub struct Client {
    child: Option<Child>,
    pub log: PathBuf,
    pub started: Instant,
}

impl Client {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Waits until the log contains `needle` `count` times; returns the elapsed time.
    pub fn wait_log_count(&mut self, needle: &str, count: usize, timeout: Duration) -> Duration {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log_text().matches(needle).count() >= count {
                return self.started.elapsed();
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "connect exited ({status}) before logging {needle:?} x{count}:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} x{count} within {timeout:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_log(&mut self, needle: &str, timeout: Duration) -> Duration {
        self.wait_log_count(needle, 1, timeout)
    }

    /// Waits for the process to exit by itself (bounded).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "connect still running after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then wait (bounded) for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let pid = self.pid().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.wait_exit(Duration::from_secs(15))
    }

    /// VmRSS of the process in kB.
    pub fn rss_kb(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// The leased address from the "lease acquired" log line (the last one).
    pub fn leased_address(&self) -> String {
        let log = self.log_text();
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains("lease acquired"))
            .expect("a lease acquired line");
        let at = line.find("address=").expect("address field") + "address=".len();
        let rest = &line[at..];
        rest[..rest.find('/').expect("prefix")].to_owned()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
