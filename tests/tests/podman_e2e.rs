//! Real Podman 4.3 from Debian (CNI backend) with the `softether` plugin and `softether-sidecar
//! run`, against the real server: `podman run --network softether-vpn` gives the container the
//! VPN interface with a leased 10.99.0.x address and it reaches the lan host; removing the
//! container (attached `--rm`, conmon's cleanup of an exited detached container, `podman rm -f`)
//! runs DEL and the sidecar forgets the attachment.
//!
//! Podman and the sidecar both run in the lab's client ("node") namespace; Podman's setup is
//! private (see `common/podman.rs`). Needs `cargo build --workspace --bins` first, and root;
//! fails (never skips) when Podman or busybox-static is missing.

mod common;

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cni_lab;
use common::connect::must;
use common::podman::{Podman, IMAGE, NETWORK};
use serde_json::{json, Value};
use softether_lab::{Lab, LabOptions};

const POLL: Duration = Duration::from_millis(200);
/// Inside the container: `--network softether-vpn:interface_name=vpn0`.
const IFNAME: &str = "vpn0";

/// The shared `softether-sidecar run` (SIGKILLed on drop) with its socket and state dir in
/// Podman's private directory.
struct Sidecar {
    daemon: cni_lab::Sidecar,
    socket: PathBuf,
    state: PathBuf,
    client_ns: String,
}

impl Sidecar {
    fn start(lab: &Lab, dir: &Path) -> Sidecar {
        let socket = dir.join("sidecar.sock");
        let state = dir.join("state");
        Sidecar {
            daemon: cni_lab::Sidecar::start(lab, &socket, &state, 0),
            socket,
            state,
            client_ns: lab.facts.client_ns.clone(),
        }
    }

    fn log_text(&self) -> String {
        self.daemon.log_text()
    }

    /// `softether-sidecar status --json`: the attachment list.
    fn attachments(&self) -> Vec<Value> {
        cni_lab::sidecar_status(&self.client_ns, &self.socket)["attachments"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits (bounded) until the attachment list satisfies `done`; returns it.
    fn wait_attachments(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let list = self.attachments();
            if done(&list) {
                return list;
            }
            assert!(
                Instant::now() < until,
                "{what}: {list:?}\n{}",
                self.log_text()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Attachment records and tombstones left in the state directory.
    fn leftover_state(&self) -> Vec<String> {
        cni_lab::state_leftovers(&self.state)
    }
}

struct Setup {
    // Fields drop in order: containers go (DEL through the still running sidecar) before the
    // sidecar, the sidecar before the lab.
    podman: Podman,
    sidecar: Sidecar,
    lab: Lab,
}

impl Setup {
    fn new() -> Setup {
        let lab = Lab::start(LabOptions::default()).expect("lab");
        let podman = Podman::new(&lab.facts.client_ns);
        let sidecar = Sidecar::start(&lab, podman.dir());
        let f = &lab.facts;
        let password_file = podman.dir().join("alice.pass");
        fs::write(&password_file, format!("{}\n", f.alice.password)).expect("password file");
        podman.write_network(
            "1.0.0",
            json!({
                "type": "softether",
                "server": f.server_ip.to_string(), "port": f.port, "hub": f.hub,
                "user": f.alice.name, "passwordFile": password_file,
                "pinSha256": f.server_cert_sha256,
                "sidecarSocket": sidecar.socket, "stateDir": sidecar.state, "timeout": 60
            }),
        );
        let listed = podman.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
        assert!(
            listed.lines().any(|l| l == format!("{NETWORK} softether")),
            "podman does not list the network (plugin not found?): {listed}"
        );
        let started = Instant::now();
        podman.import_busybox();
        println!("podman import: {} ms", started.elapsed().as_millis());
        Setup {
            podman,
            sidecar,
            lab,
        }
    }

    fn network_arg(&self) -> String {
        format!("--network={NETWORK}:interface_name={IFNAME}")
    }

    /// Links in the client namespace (the plugin and sidecar must leave none behind there).
    fn client_links(&self) -> Vec<String> {
        let out = must(&self.lab.facts.client_ns, &["ip", "-o", "link", "show"]);
        let mut names: Vec<String> = out
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().to_owned())
            .collect();
        names.sort();
        names
    }

    /// The address `ip -o -4 addr show vpn0` printed, checked against the lab's DHCP pool.
    fn leased_address(&self, ip_addr_output: &str) -> Ipv4Addr {
        let line = ip_addr_output
            .lines()
            .find(|l| l.contains(&format!(" {IFNAME} ")) && l.contains(" inet "))
            .unwrap_or_else(|| panic!("no IPv4 address on {IFNAME}:\n{ip_addr_output}"));
        let cidr = line
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .expect("address after inet");
        assert!(cidr.ends_with("/24"), "{line}");
        let ip: Ipv4Addr = cidr.trim_end_matches("/24").parse().expect("IPv4");
        let f = &self.lab.facts;
        assert!(
            (f.dhcp_start..=f.dhcp_end).contains(&ip),
            "{ip} not from the hub's DHCP pool"
        );
        ip
    }

    fn assert_released(&self, links_before: &[String]) {
        self.sidecar
            .wait_attachments("attachment not released", |l| l.is_empty());
        // The daemon drops the attachment from its list first, then stops the session and
        // removes the record: wait for the record too.
        let state_clean = common::wait_until(Duration::from_secs(30), || {
            self.sidecar.leftover_state().is_empty()
        });
        assert!(state_clean, "{:?}", self.sidecar.leftover_state());
        assert!(
            self.sidecar.log_text().contains("op=\"detach\""),
            "no DEL reached the sidecar:\n{}",
            self.sidecar.log_text()
        );
        assert_eq!(self.client_links(), links_before, "links in the client ns");
        assert!(
            self.podman.wait_no_conmon(Duration::from_secs(10)),
            "conmon left behind: {:?}",
            self.podman.conmon_pids()
        );
    }
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// `podman run --rm` (attached): inside, busybox `ip` shows vpn0 with a leased address and busybox
/// ping reaches the lan host; when the container exits Podman runs DEL and everything is released.
/// Then a detached container that exits by itself: conmon's `podman container cleanup` runs DEL.
#[test]
fn podman_run_rm_gets_vpn_and_reaches_lan_host_then_releases() {
    let s = Setup::new();
    let links_before = s.client_links();
    let lan = s.lab.facts.lan_host.to_string();
    let script = format!(
        "ip -o -4 addr show {IFNAME} && ip -o link show {IFNAME} && ip route && \
         ping -c 3 -W 2 {lan}"
    );
    let started = Instant::now();
    let out = s.podman.run(&[
        "run",
        "--rm",
        &s.network_arg(),
        IMAGE,
        "/bin/busybox",
        "sh",
        "-c",
        &script,
    ]);
    let took = started.elapsed();
    let output = text(&out);
    assert!(
        out.status.success(),
        "podman run failed ({}):\n{output}\nsidecar:\n{}",
        out.status,
        s.sidecar.log_text()
    );
    println!(
        "podman run --rm (ADD + ping x3 + DEL): {} ms",
        took.as_millis()
    );
    println!("{output}");
    s.leased_address(&output);
    assert!(output.contains(" 0% packet loss"), "{output}");
    s.assert_released(&links_before);

    // Detached, exits by itself: no `podman` command is running when it stops, so the DEL comes
    // from the exit command conmon runs (it inherits CONTAINERS_CONF and the namespace).
    let id = s.podman.ok(&[
        "run",
        "-d",
        &s.network_arg(),
        IMAGE,
        "/bin/busybox",
        "sleep",
        "2",
    ]);
    s.sidecar
        .wait_attachments("detached container not attached", |l| {
            l.iter().any(|a| a["containerID"] == id.as_str())
        });
    s.assert_released(&links_before);
    let state = s
        .podman
        .ok(&["inspect", "--format", "{{.State.Status}}", &id]);
    assert_eq!(state, "exited");
    s.podman.ok(&["rm", &id]);
}

/// A long-running detached container: the sidecar reports the attachment (Podman's container id
/// and netns), `podman exec` sees the address, `podman inspect` reports the CNI result's IP and
/// MAC, ping through the VPN works; `podman rm -f` runs DEL: attachment, TAP and netns are gone.
#[test]
fn podman_detached_inspect_exec_then_rm_force_releases() {
    let s = Setup::new();
    let links_before = s.client_links();
    let started = Instant::now();
    let id = s.podman.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        &s.network_arg(),
        IMAGE,
        "/bin/busybox",
        "sleep",
        "600",
    ]);
    println!("podman run -d (ADD): {} ms", started.elapsed().as_millis());

    let list = s
        .sidecar
        .wait_attachments("container not up", |l| l.iter().any(|a| a["state"] == "up"));
    assert_eq!(list.len(), 1, "{list:?}");
    let att = &list[0];
    assert_eq!(att["containerID"], id.as_str(), "{att}");
    assert_eq!(att["ifname"], IFNAME, "{att}");
    assert_eq!(att["network"], NETWORK, "{att}");
    let sandbox = att["netns"].as_str().expect("netns").to_owned();
    assert!(sandbox.starts_with("/run/netns/netns-"), "{att}");
    let mac = att["mac"].as_str().expect("mac").to_lowercase();

    let shown = s.podman.ok(&[
        "exec",
        "web",
        "/bin/busybox",
        "ip",
        "-o",
        "-4",
        "addr",
        "show",
        IFNAME,
    ]);
    let ip = s.leased_address(&shown);
    assert_eq!(att["address"], format!("{ip}/24").as_str(), "{att}");
    let link = s.podman.ok(&[
        "exec",
        "web",
        "/bin/busybox",
        "ip",
        "-o",
        "link",
        "show",
        IFNAME,
    ]);
    assert!(link.contains(&mac), "{link} vs {mac}");

    let inspected: Value = serde_json::from_str(&s.podman.ok(&[
        "inspect",
        "--format",
        "{{json .NetworkSettings}}",
        "web",
    ]))
    .expect("inspect JSON");
    let net = &inspected["Networks"][NETWORK];
    assert_eq!(net["IPAddress"], ip.to_string().as_str(), "{inspected}");
    assert_eq!(net["IPPrefixLen"], 24, "{inspected}");
    assert_eq!(net["MacAddress"], mac.as_str(), "{inspected}");
    assert_eq!(net["Gateway"], s.lab.facts.gateway.to_string().as_str());
    assert_eq!(inspected["SandboxKey"], sandbox.as_str());

    let lan = s.lab.facts.lan_host.to_string();
    let out = s.podman.run(&[
        "exec",
        "web",
        "/bin/busybox",
        "ping",
        "-c",
        "3",
        "-W",
        "2",
        &lan,
    ]);
    assert!(
        out.status.success(),
        "ping through the VPN failed:\n{}",
        text(&out)
    );
    let pod_ns = sandbox.trim_start_matches("/run/netns/");
    must(pod_ns, &["ip", "link", "show", IFNAME]);

    let started = Instant::now();
    s.podman.ok(&["rm", "--force", "--time", "0", "web"]);
    println!("podman rm -f (DEL): {} ms", started.elapsed().as_millis());
    s.assert_released(&links_before);
    assert!(
        !Path::new(&sandbox).exists(),
        "Podman's netns {sandbox} left behind"
    );
    assert_eq!(s.podman.ok(&["ps", "--all", "--quiet"]), "");
}
