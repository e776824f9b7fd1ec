//! The `softether` binary as a netavark plugin (Podman 5's only network backend), driven by a
//! real netavark ≥ 1.6 (built by tests/netavark.sh; Debian 12's 1.4 has no plugin API) exactly as
//! Podman drives it: `netavark --config DIR --rootless=false --aardvark-binary=… --plugin-directory
//! DIR setup|teardown NETNS` with Podman's NetworkOptions JSON on stdin, run in the lab's client
//! ("node") namespace next to `softether-sidecar run`; the network is what `softether create`
//! returned for `podman network create -d softether -o …`. Then Debian's Podman 4.3 with
//! `network_backend = "netavark"` and that netavark: `podman run --network vpn` / `podman rm`.
//!
//! Needs `cargo build --workspace --bins` and tests/netavark.sh first (tests/run does both), and
//! root; fails (never skips) when netavark or Podman is missing.

mod common;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::cni_lab::{
    netns_path, ping_lan, pod_leftovers, pod_link, sidecar_status, state_leftovers, CniDirs,
    Sidecar,
};
use common::connect::{extra_netns, must};
use common::podman::{Podman, IMAGE};
use common::workspace_bin;
use serde_json::{json, Value};
use softether_lab::facts::subnet;
use softether_lab::{command, Lab, LabOptions};

/// Where tests/netavark.sh puts its build unless SOFTETHER_TEST_NETAVARK names another binary.
const NETAVARK: &str = "/var/cache/softether-cni-tests/netavark-1.17.2/bin/netavark";
/// The network's name (`podman network create … vpn`), also its file name.
const NETWORK: &str = "vpn";
/// Deadline of one netavark call (setup includes the login and the DHCP exchange).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(200);

static CONTAINERS: AtomicU32 = AtomicU32::new(0);

fn netavark_bin() -> PathBuf {
    let path = std::env::var_os("SOFTETHER_TEST_NETAVARK")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(NETAVARK));
    assert!(
        path.is_file(),
        "{} is missing: run `bash tests/netavark.sh` (tests/run does) to build a netavark with \
         the plugin API",
        path.display()
    );
    path
}

/// A 64-hex container id, unique per call, like Podman's.
fn container_id() -> String {
    format!(
        "{:08x}{:056x}",
        std::process::id(),
        CONTAINERS.fetch_add(1, Ordering::Relaxed) + 0xc0ffee
    )
}

/// What `podman network create -d softether -o KEY=VALUE… vpn` hands the plugin's `create`
/// (Podman ≥ 4.5), and what the plugin printed back: the network Podman stores.
fn create_network(dirs: &CniDirs, lab: &Lab, options: Value) -> Value {
    let f = &lab.facts;
    let mut opts = json!({
        "server": f.server_ip.to_string(), "port": f.port.to_string(), "hub": f.hub,
        "user": f.alice.name, "passwordFile": dirs.password_file,
        "pinSha256": f.server_cert_sha256, "timeout": "60",
        "sidecarSocket": dirs.socket, "stateDir": dirs.state
    });
    for (k, v) in options.as_object().expect("object") {
        opts[k] = v.clone();
    }
    let input = json!({
        "name": NETWORK,
        "id": "5e7c0ffee5e7c0ffee5e7c0ffee5e7c0ffee5e7c0ffee5e7c0ffee5e7c0ffee0",
        "driver": "softether",
        "created": "2026-01-02T03:04:05.000000000Z",
        "ipv6_enabled": false, "internal": false, "dns_enabled": true,
        "labels": {}, "options": opts, "ipam_options": {}
    });
    let out = command::run_with_input(
        Command::new(workspace_bin("softether")).arg("create"),
        Some(input.to_string().as_bytes()),
        Duration::from_secs(30),
    )
    .expect("softether create");
    assert!(out.status.success(), "create: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// netavark as Podman runs it, in the node namespace.
struct Netavark {
    bin: PathBuf,
    run_dir: PathBuf,
    plugins: PathBuf,
    node_ns: String,
}

impl Netavark {
    fn new(lab: &Lab, dirs: &CniDirs) -> Netavark {
        let run_dir = lab.facts.dir.join("netavark-run");
        std::fs::create_dir_all(&run_dir).expect("netavark run dir");
        Netavark {
            bin: netavark_bin(),
            run_dir,
            // The CNI bin dir holding `softether` doubles as the netavark plugin directory.
            plugins: dirs.bin.clone(),
            node_ns: lab.facts.client_ns.clone(),
        }
    }

    /// `netavark … setup|teardown NETNS` with Podman's global options (firewall driver `none`,
    /// as `firewall_driver = "none"` in containers.conf: a plugin network needs no firewall).
    fn call(&self, command: &str, netns: &str, input: &Value) -> Output {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.node_ns))
            .arg(&self.bin)
            .arg("--config")
            .arg(&self.run_dir)
            .arg("--rootless=false")
            .arg("--aardvark-binary=/usr/libexec/podman/aardvark-dns")
            .arg("--firewall-driver")
            .arg("none")
            .arg("--plugin-directory")
            .arg(&self.plugins)
            .arg(command)
            .arg(netns);
        command::run_with_input(&mut cmd, Some(input.to_string().as_bytes()), CALL_TIMEOUT)
            .unwrap_or_else(|e| panic!("netavark {command}: {e:#}"))
    }

    /// A successful setup's answer: network name → StatusBlock.
    fn setup(&self, netns: &str, input: &Value) -> Value {
        let out = self.call("setup", netns, input);
        assert!(out.status.success(), "netavark setup: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
    }

    fn teardown(&self, netns: &str, input: &Value) {
        let out = self.call("teardown", netns, input);
        assert!(out.status.success(), "netavark teardown: {}", text(&out));
    }
}

/// Podman's NetworkOptions for one container on `network` with interface `ifname`.
fn network_options(container_id: &str, network: &Value, ifname: &str) -> Value {
    let name = network["name"].as_str().expect("name");
    json!({
        "container_id": container_id,
        "container_name": "web",
        "container_hostname": "web",
        "networks": {name: {"interface_name": ifname, "aliases": ["web"]}},
        "network_info": {name: network}
    })
}

/// The sidecar's attachments, polled until `done` holds (bounded).
fn wait_attachments(lab: &Lab, dirs: &CniDirs, what: &str, done: impl Fn(&[Value]) -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let list = sidecar_status(&lab.facts.client_ns, &dirs.socket)["attachments"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if done(&list) {
            return;
        }
        assert!(Instant::now() < until, "{what}: {list:?}");
        std::thread::sleep(POLL);
    }
}

/// The leased address of a StatusBlock's `ifname`, checked against the lab's pool and gateway.
fn leased(lab: &Lab, block: &Value, ifname: &str) -> Ipv4Addr {
    let subnet = &block["interfaces"][ifname]["subnets"][0];
    let ipnet = subnet["ipnet"]
        .as_str()
        .unwrap_or_else(|| panic!("{block}"));
    let (ip, len) = ipnet.split_once('/').expect("prefix");
    assert_eq!(len, "24", "{block}");
    let ip: Ipv4Addr = ip.parse().expect("IPv4");
    let f = &lab.facts;
    assert!(
        (f.dhcp_start..=f.dhcp_end).contains(&ip),
        "{ip} not from the pool"
    );
    assert_eq!(subnet["gateway"], f.gateway.to_string().as_str(), "{block}");
    ip
}

#[test]
fn netavark_setup_leases_and_pings_then_teardown_leaves_nothing_twice() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let dirs = CniDirs::create(&lab);
    let sidecar = Sidecar::start(&lab, &dirs.socket, &dirs.state, 0);
    let netavark = Netavark::new(&lab, &dirs);
    let network = create_network(&dirs, &lab, json!({}));
    assert_eq!(network["ipam_options"], json!({"driver": "none"}));
    let pod = extra_netns();
    let netns = netns_path(pod.name());
    let id = container_id();
    let input = network_options(&id, &network, "eth0");

    let started = Instant::now();
    let status = netavark.setup(&netns, &input);
    println!(
        "netavark setup (plugin + login + DHCP): {} ms",
        started.elapsed().as_millis()
    );
    println!("{status}");
    let block = &status[NETWORK];
    let ip = leased(&lab, block, "eth0");
    // The lab's dnsmasq hands out the gateway as DNS server and its domain.
    assert_eq!(
        block["dns_server_ips"],
        json!([lab.facts.gateway.to_string()])
    );
    assert_eq!(block["dns_search_domains"], json!([subnet::DOMAIN]));
    let mac = block["interfaces"]["eth0"]["mac_address"]
        .as_str()
        .expect("mac");
    let link = pod_link(pod.name(), "eth0").expect("eth0 in the pod");
    assert_eq!(link["address"], mac, "{link}");
    let addrs = must(pod.name(), &["ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(addrs.contains(&format!("{ip}/24")), "{addrs}");
    assert!(
        dirs.state
            .join(format!("attachments/{id}:eth0.json"))
            .is_file(),
        "the sidecar's record"
    );
    wait_attachments(&lab, &dirs, "attachment not up", |l| {
        l.iter()
            .any(|a| a["containerID"] == id.as_str() && a["state"] == "up")
    });
    let (ok, out) = ping_lan(&lab, pod.name(), 5);
    assert!(ok, "ping through the VPN: {out}\n{}", sidecar.log_text());

    let started = Instant::now();
    netavark.teardown(&netns, &input);
    println!("netavark teardown: {} ms", started.elapsed().as_millis());
    wait_attachments(&lab, &dirs, "attachment not released", |l| l.is_empty());
    assert_eq!(state_leftovers(&dirs.state), Vec::<String>::new());
    assert_eq!(pod_leftovers(pod.name()), Vec::<String>::new());
    // Podman may tear down again (e.g. `podman rm` after a failed cleanup): nothing to do, success.
    netavark.teardown(&netns, &input);
    assert_eq!(state_leftovers(&dirs.state), Vec::<String>::new());
}

#[test]
fn netavark_bad_options_fail_cleanly_and_teardown_works_with_the_sidecar_down() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let dirs = CniDirs::create(&lab);
    let mut sidecar = Sidecar::start(&lab, &dirs.socket, &dirs.state, 0);
    let netavark = Netavark::new(&lab, &dirs);
    let pod = extra_netns();
    let netns = netns_path(pod.name());

    // A network file edited by hand (or by an older plugin) with values `create` refuses.
    let good = create_network(&dirs, &lab, json!({}));
    for (key, value, expected) in [
        (
            "port",
            "0",
            "softether network option \"port\": invalid value 0",
        ),
        (
            "colour",
            "blue",
            "softether network option \"colour\": unknown option",
        ),
        ("password", "hunter2", "inline passwords are not accepted"),
    ] {
        let mut network = good.clone();
        network["options"][key] = json!(value);
        let out = netavark.call(
            "setup",
            &netns,
            &network_options(&container_id(), &network, "eth0"),
        );
        assert!(!out.status.success(), "{key}={value}: {}", text(&out));
        let err: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("netavark's error object ({e}): {}", text(&out)));
        let msg = err["error"].as_str().expect("error string");
        println!("{key}={value}: {msg}");
        assert!(
            msg.contains("plugin \"softether\" failed") && msg.contains(expected),
            "{key}: {msg}"
        );
        assert!(!text(&out).contains("hunter2"), "{}", text(&out));
        assert_eq!(pod_leftovers(pod.name()), Vec::<String>::new());
    }
    assert_eq!(state_leftovers(&dirs.state), Vec::<String>::new());

    // The sidecar dies while the container runs: teardown still succeeds and leaves the pod clean.
    let id = container_id();
    let input = network_options(&id, &good, "vpn0");
    leased(&lab, &netavark.setup(&netns, &input)[NETWORK], "vpn0");
    sidecar.kill9();
    netavark.teardown(&netns, &input);
    assert_eq!(pod_leftovers(pod.name()), Vec::<String>::new());
    let tombstone = dirs.state.join(format!("tombstones/{id}:vpn0.json"));
    assert!(tombstone.is_file(), "DEL's tombstone for the sidecar");
    netavark.teardown(&netns, &input);
    // The restarted sidecar buries the tombstone and forgets the attachment.
    let _sidecar = Sidecar::start(&lab, &dirs.socket, &dirs.state, 1);
    let until = Instant::now() + Duration::from_secs(30);
    while !state_leftovers(&dirs.state).is_empty() {
        assert!(
            Instant::now() < until,
            "left: {:?}",
            state_leftovers(&dirs.state)
        );
        std::thread::sleep(POLL);
    }
    wait_attachments(&lab, &dirs, "attachment not forgotten", |l| l.is_empty());
}

/// Podman 4.3 (Debian 12) on the netavark backend with a netavark that has the plugin API: the
/// network file is what `softether create` returned (what `podman network create -d softether`
/// stores on Podman ≥ 4.5); `podman run --network vpn` gets the VPN interface and reaches the lan
/// host, `--network vpn:interface_name=vpn0,mac=…` gets that name and MAC; `podman rm -f` releases
/// everything.
#[test]
fn podman_on_netavark_runs_a_container_on_the_vpn_and_rm_releases() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let dirs = CniDirs::create(&lab);
    let sidecar = Sidecar::start(&lab, &dirs.socket, &dirs.state, 0);
    // Dropped first: a container still there is torn down through the running sidecar.
    let podman = Podman::with_netavark(&lab.facts.client_ns, &netavark_bin());
    podman.write_netavark_network(&create_network(&dirs, &lab, json!({})));
    let backend = podman.ok(&["info", "--format", "{{.Host.NetworkBackend}}"]);
    assert_eq!(backend, "netavark");
    let listed = podman.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    assert!(
        listed.lines().any(|l| l == format!("{NETWORK} softether")),
        "podman does not list the network: {listed}"
    );
    podman.import_busybox();

    // `podman run -d --name NAME --network NETWORK_ARG IMAGE sleep 600`; its container id.
    let run = |name: &str, network: &str| {
        podman.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            network,
            IMAGE,
            "/bin/busybox",
            "sleep",
            "600",
        ])
    };
    // busybox in a container: `podman exec NAME /bin/busybox ARGS…`.
    let exec = |name: &str, args: &[&str]| {
        podman.run(&[&["exec", name, "/bin/busybox"][..], args].concat())
    };
    let inspect = |name: &str| -> Value {
        let out = podman.ok(&["inspect", "--format", "{{json .NetworkSettings}}", name]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("inspect JSON ({e}): {out}"))
    };

    // The plain form: the interface is eth0, the MAC derived from container id and name.
    let started = Instant::now();
    let id = run("web", NETWORK);
    println!(
        "podman run -d on netavark (setup): {} ms",
        started.elapsed().as_millis()
    );
    wait_attachments(&lab, &dirs, "container not up", |l| {
        l.iter()
            .any(|a| a["containerID"] == id.as_str() && a["state"] == "up")
    });
    let inspected = inspect("web");
    let net = &inspected["Networks"][NETWORK];
    let ip = net["IPAddress"].as_str().expect("IPAddress").to_owned();
    assert_eq!(net["IPPrefixLen"], 24, "{inspected}");
    assert_eq!(net["Gateway"], lab.facts.gateway.to_string().as_str());
    let shown = text(&exec("web", &["ip", "-o", "-4", "addr", "show", "eth0"]));
    assert!(shown.contains(&format!("{ip}/24")), "{shown}");
    let mac = net["MacAddress"].as_str().expect("MacAddress").to_owned();
    let link = text(&exec("web", &["ip", "-o", "link", "show", "eth0"]));
    assert!(link.contains(&mac), "{link} vs {mac}");
    let lan = lab.facts.lan_host.to_string();
    let out = exec("web", &["ping", "-c", "3", "-W", "2", &lan]);
    assert!(
        out.status.success(),
        "ping through the VPN: {}\n{}",
        text(&out),
        sidecar.log_text()
    );
    // Podman writes the StatusBlock's DNS servers and search domains into resolv.conf.
    let resolv = text(&exec("web", &["cat", "/etc/resolv.conf"]));
    assert!(
        resolv.contains(&format!("search {}", subnet::DOMAIN))
            && resolv.contains(&format!("nameserver {}", lab.facts.gateway)),
        "{resolv}"
    );
    let sandbox = inspected["SandboxKey"]
        .as_str()
        .expect("SandboxKey")
        .to_owned();

    // Interface name and MAC chosen by the user (netavark's static_mac).
    let fixed_id = run(
        "fixed",
        &format!("{NETWORK}:interface_name=vpn0,mac=5e:00:00:00:00:42"),
    );
    wait_attachments(&lab, &dirs, "second container not up", |l| {
        l.iter()
            .any(|a| a["containerID"] == fixed_id.as_str() && a["state"] == "up")
    });
    let fixed = &inspect("fixed")["Networks"][NETWORK];
    assert_eq!(fixed["MacAddress"], "5e:00:00:00:00:42", "{fixed}");
    let link = text(&exec("fixed", &["ip", "-o", "link", "show", "vpn0"]));
    assert!(link.contains("5e:00:00:00:00:42"), "{link}");
    podman.ok(&["rm", "--force", "--time", "0", "fixed"]);

    let started = Instant::now();
    podman.ok(&["rm", "--force", "--time", "0", "web"]);
    println!(
        "podman rm -f on netavark (teardown): {} ms",
        started.elapsed().as_millis()
    );
    wait_attachments(&lab, &dirs, "attachment not released", |l| l.is_empty());
    assert_eq!(state_leftovers(&dirs.state), Vec::<String>::new());
    assert!(
        !Path::new(&sandbox).exists(),
        "Podman's netns {sandbox} left behind"
    );
    assert!(
        podman.wait_no_conmon(Duration::from_secs(10)),
        "conmon left behind"
    );
}

/// IPv6 from the VPN's router (the lab's dnsmasq, `common/ipv6_lab.rs`) through real netavark:
/// the StatusBlock lists the SLAAC address with the router's link-local gateway beside the lease,
/// and the RDNSS server; teardown leaves nothing.
#[test]
fn netavark_status_block_lists_the_ipv6_subnet() {
    use common::ipv6_lab::{self, global_addresses, wait_for, DNS6, PREFIX};
    let lab = ipv6_lab::lab();
    let _dnsmasq = ipv6_lab::router(&lab, &format!("{PREFIX},ra-only,64,600"));
    let dirs = CniDirs::create(&lab);
    let sidecar = Sidecar::start(&lab, &dirs.socket, &dirs.state, 0);
    let netavark = Netavark::new(&lab, &dirs);
    let network = create_network(&dirs, &lab, json!({}));
    let prefix = PREFIX.trim_end_matches(':');
    // The first container teaches the sidecar that the hub has a router (its own block may
    // come before the advertisement); the second one's block lists IPv6.
    let first_pod = extra_netns();
    let first = network_options(&container_id(), &network, "eth0");
    netavark.setup(&netns_path(first_pod.name()), &first);
    wait_for(Duration::from_secs(30), || {
        global_addresses(first_pod.name(), "eth0")
            .into_iter()
            .find(|a| a.starts_with(prefix))
    })
    .unwrap_or_else(|| panic!("no IPv6 in the first container:\n{}", sidecar.log_text()));

    let pod = extra_netns();
    let netns = netns_path(pod.name());
    let input = network_options(&container_id(), &network, "eth0");
    let status = netavark.setup(&netns, &input);
    let block = &status[NETWORK];
    leased(&lab, block, "eth0");
    let subnets = block["interfaces"]["eth0"]["subnets"]
        .as_array()
        .expect("subnets");
    let v6 = subnets
        .iter()
        .find(|s| s["ipnet"].as_str().is_some_and(|n| n.starts_with(prefix)))
        .unwrap_or_else(|| panic!("no IPv6 subnet: {block}\n{}", sidecar.log_text()));
    let ipnet = v6["ipnet"].as_str().unwrap();
    assert!(ipnet.ends_with("/64"), "{block}");
    assert!(
        v6["gateway"]
            .as_str()
            .is_some_and(|g| g.starts_with("fe80::")),
        "{block}"
    );
    assert_eq!(global_addresses(pod.name(), "eth0"), [ipnet], "{block}");
    assert!(
        block["dns_server_ips"]
            .as_array()
            .unwrap()
            .contains(&json!(DNS6)),
        "{block}"
    );
    for (ns, input) in [(netns, input), (netns_path(first_pod.name()), first)] {
        netavark.teardown(&ns, &input);
    }
    wait_attachments(&lab, &dirs, "attachments not released", |l| l.is_empty());
    assert_eq!(pod_leftovers(pod.name()), Vec::<String>::new());
}
