//! `softether-sidecar connect` flags against the real server, one test per flag or behaviour:
//! --tap, --mac (and the stable derived MAC), --no-dhcp, --mtu, --max-connections,
//! --reconnect-delay with INIT-REBOOT after a server outage, a signal during the backoff wait,
//! and --accept-default-gateway together with --accept-static-routes.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::connect::{
    client_snapshot, connect, connect_with_tap, exec, hub_packet_log, in_dhcp_pool, must, TAP,
};
use softether_lab::{Lab, LabOptions};
use softether_sidecar::engine::mac::stable_mac;

const LEASE_WAIT: Duration = Duration::from_secs(30);
/// A static address in the VPN subnet, outside the DHCP pool, for the --no-dhcp test.
const STATIC_ADDRESS: &str = "10.99.0.170/24";

fn lab() -> Lab {
    Lab::start(LabOptions::default()).expect("lab")
}

/// `ip -j link show dev <name>` in the client namespace, or `None` if there is no such link.
fn client_link(lab: &Lab, name: &str) -> Option<serde_json::Value> {
    let (ok, out) = exec(
        &lab.facts.client_ns,
        &["ip", "-j", "link", "show", "dev", name],
    );
    if !ok {
        return None;
    }
    let links: serde_json::Value = serde_json::from_str(&out).expect("ip -j link output");
    links.get(0).cloned()
}

fn link_mac(link: &serde_json::Value) -> String {
    link["address"].as_str().expect("link address").to_owned()
}

/// IPv4 addresses on `name` in the client namespace, as `a.b.c.d/len`.
fn ipv4_addresses(lab: &Lab, name: &str) -> Vec<String> {
    let out = must(
        &lab.facts.client_ns,
        &["ip", "-j", "-4", "addr", "show", "dev", name],
    );
    let links: serde_json::Value = serde_json::from_str(&out).expect("ip -j addr output");
    links
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or("?"), a["prefixlen"]))
        .collect()
}

fn ping_lan_host(lab: &Lab, extra: &[&str]) -> (bool, String) {
    let lan_host = lab.facts.lan_host.to_string();
    let mut argv = vec!["ping", "-c", "3", "-i", "0.2", "-W", "2"];
    argv.extend_from_slice(extra);
    argv.push(&lan_host);
    exec(&lab.facts.client_ns, &argv)
}

/// SecureNAT's DHCP table (`DhcpTable`) with MACs normalized to lower-case `aa:bb:...`.
fn dhcp_table(lab: &Lab) -> String {
    lab.vpncmd(&["DhcpTable"])
        .expect("DhcpTable")
        .to_ascii_lowercase()
        .replace('-', ":")
}

/// BOOTREQUESTs from `mac` in a hub packet log, grouped by transaction id in the order the
/// exchanges started: `(xid, frames)`.
fn client_dhcp_exchanges(packet_log: &str, mac: &str) -> Vec<(String, usize)> {
    let source = format!(",{},", mac.replace(':', "").to_ascii_uppercase());
    // Lines start with the timestamp; the log may span several files.
    let mut lines: Vec<&str> = packet_log
        .lines()
        .filter(|l| l.contains(&source) && l.contains(",DHCPv4,Request,"))
        .collect();
    lines.sort_unstable();
    let mut exchanges: Vec<(String, usize)> = Vec::new();
    for line in lines {
        let xid = line
            .split("TransactionId=")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_default()
            .to_owned();
        match exchanges.iter_mut().find(|(x, _)| *x == xid) {
            Some((_, n)) => *n += 1,
            None => exchanges.push((xid, 1)),
        }
    }
    exchanges
}

/// Parses humantime output such as `1s 873ms` or `2s`.
fn parse_delay(text: &str) -> Duration {
    text.split_whitespace()
        .map(|token| {
            let split = token
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or_else(|| panic!("no unit in {text:?}"));
            let n: u64 = token[..split]
                .parse()
                .unwrap_or_else(|e| panic!("{text:?}: {e}"));
            match &token[split..] {
                "h" => Duration::from_secs(n * 3600),
                "m" => Duration::from_secs(n * 60),
                "s" => Duration::from_secs(n),
                "ms" => Duration::from_millis(n),
                "us" => Duration::from_micros(n),
                "ns" => Duration::from_nanos(n),
                unit => panic!("unit {unit:?} in {text:?}"),
            }
        })
        .sum()
}

#[test]
fn tap_flag_names_the_tap_else_the_kernel_assigns_tap_n() {
    let lab = lab();
    let password = lab.facts.alice.password.clone();
    let name = format!("setap{}", std::process::id() % 100_000);
    let mut client = connect_with_tap(&lab, &password, Some(&name), &[]);
    client.wait_log("lease acquired", LEASE_WAIT);
    assert_eq!(client.tap_name(), name);
    assert!(client_link(&lab, &name).is_some(), "no TAP named {name}");
    let address = client.leased_address();
    assert!(
        ipv4_addresses(&lab, &name)
            .iter()
            .any(|a| a.starts_with(&format!("{address}/"))),
        "lease {address} not on {name}"
    );
    assert!(client.stop().success(), "{}", client.log_text());
    assert!(client_link(&lab, &name).is_none(), "{name} left behind");

    let mut client = connect_with_tap(&lab, &password, None, &[]);
    client.wait_log("lease acquired", LEASE_WAIT);
    let assigned = client.tap_name();
    let digits = assigned.strip_prefix("tap").unwrap_or("");
    assert!(
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
        "kernel-assigned name expected, got {assigned:?}"
    );
    assert!(client_link(&lab, &assigned).is_some(), "no link {assigned}");
    let (ok, out) = ping_lan_host(&lab, &[]);
    assert!(ok, "{out}\n{}", client.log_text());
    assert!(client.stop().success(), "{}", client.log_text());
    assert!(
        client_link(&lab, &assigned).is_none(),
        "{assigned} left behind"
    );
}

#[test]
fn mac_flag_sets_the_tap_mac_and_the_lease_is_for_it() {
    let lab = lab();
    let mac = "5e:12:34:56:78:9a";
    let mut client = connect(&lab, &["--mac", mac]);
    client.wait_log("lease acquired", LEASE_WAIT);
    let link = client_link(&lab, TAP).expect("TAP");
    assert_eq!(link_mac(&link), mac);
    let address = client.leased_address();
    let table = dhcp_table(&lab);
    let entry = table
        .lines()
        .find(|l| l.contains(mac))
        .unwrap_or_else(|| panic!("{mac} not in DhcpTable:\n{table}"));
    assert!(
        table.contains(&address.to_string()),
        "{address} not in DhcpTable ({entry}):\n{table}"
    );
    assert!(client.stop().success(), "{}", client.log_text());
}

#[test]
fn derived_mac_is_stable_and_the_second_run_gets_the_same_address() {
    let lab = lab();
    let f = &lab.facts;
    let expected = format!(
        "{:x}",
        stable_mac(&f.server_ip.to_string(), &f.alice.name, &f.hub)
    );
    assert!(expected.starts_with("5e:"), "{expected}");
    let mut runs: Vec<(String, Ipv4Addr)> = Vec::new();
    for _ in 0..2 {
        let mut client = connect(&lab, &[]);
        client.wait_log("lease acquired", LEASE_WAIT);
        let mac = link_mac(&client_link(&lab, TAP).expect("TAP"));
        runs.push((mac, client.leased_address()));
        assert!(client.stop().success(), "{}", client.log_text());
    }
    assert_eq!(runs[0].0, expected, "derived MAC");
    assert_eq!(runs[0], runs[1], "MAC and address of two runs");
    assert!(in_dhcp_pool(&lab, runs[0].1));
    assert!(dhcp_table(&lab).contains(&expected));
}

#[test]
fn no_dhcp_bridges_frames_but_configures_nothing() {
    let lab = lab();
    let before = client_snapshot(&lab);
    let mut client = connect(&lab, &["--no-dhcp"]);
    client.wait_log("logged in", LEASE_WAIT);
    // Give a DHCP client, had one been running, time for a DISCOVER and its answer.
    std::thread::sleep(Duration::from_secs(3));
    let link = client_link(&lab, TAP).expect("TAP");
    let flags = link["flags"].to_string();
    assert!(flags.contains("\"UP\""), "TAP not up: {flags}");
    assert!(ipv4_addresses(&lab, TAP).is_empty(), "address on the TAP");
    must(
        &lab.facts.client_ns,
        &["ip", "addr", "add", STATIC_ADDRESS, "dev", TAP],
    );
    let (ok, out) = ping_lan_host(&lab, &[]);
    assert!(
        ok,
        "no frames bridged with a static address:\n{out}\n{}",
        client.log_text()
    );
    let log = client.log_text();
    assert!(!log.contains("lease acquired"), "{log}");
    assert!(client.stop().success(), "{}", client.log_text());
    // The TAP (and the test's address with it) is gone; nothing else was touched.
    assert_eq!(before, client_snapshot(&lab), "state left behind");
    let packets = hub_packet_log(&lab);
    assert!(
        !packets.contains("DHCPv4"),
        "DHCP frames with --no-dhcp:\n{packets}"
    );
}

#[test]
fn mtu_flag_sets_the_tap_mtu_and_full_size_pings_pass() {
    let lab = lab();
    let mut client = connect(&lab, &["--mtu", "1400"]);
    client.wait_log("lease acquired", LEASE_WAIT);
    let link = client_link(&lab, TAP).expect("TAP");
    assert_eq!(link["mtu"].as_u64(), Some(1400), "{link}");
    // 1372 bytes of payload + 8 ICMP + 20 IP = 1400: fits exactly, not fragmented.
    let (ok, out) = ping_lan_host(&lab, &["-s", "1372", "-M", "do"]);
    assert!(ok, "{out}\n{}", client.log_text());
    let (ok, _) = ping_lan_host(&lab, &["-s", "1373", "-M", "do"]);
    assert!(!ok, "a 1401-byte packet must not fit a 1400 MTU");
    assert!(client.stop().success(), "{}", client.log_text());
}

#[test]
fn max_connections_4_gives_a_session_of_4_tcp_connections() {
    let lab = lab();
    let mut client = connect(&lab, &["--max-connections", "4"]);
    client.wait_log("lease acquired", LEASE_WAIT);
    let sessions = lab.user_sessions().expect("SessionList");
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    for _ in 0..3 {
        let (ok, out) = ping_lan_host(&lab, &[]);
        assert!(ok, "{out}\n{}", client.log_text());
    }
    let info = lab
        .vpncmd(&["SessionGet", &sessions[0]])
        .expect("SessionGet");
    let line = info
        .lines()
        .find(|l| l.contains("Number of TCP Connections"))
        .unwrap_or_else(|| panic!("no connection count in:\n{info}"));
    assert_eq!(line.rsplit('|').next().map(str::trim), Some("4"), "{line}");
    assert!(client.stop().success(), "{}", client.log_text());
}

#[test]
fn reconnect_delay_is_the_backoff_base_and_the_previous_address_comes_back() {
    let mut lab = lab();
    let mut client = connect(&lab, &["--reconnect-delay", "2s"]);
    client.wait_log("lease acquired", LEASE_WAIT);
    let first = client.leased_address();
    lab.kill_server();
    client.wait_log("session lost, reconnecting", Duration::from_secs(20));
    let delay = parse_delay(&client.log_field("session lost, reconnecting", "delay"));
    assert!(
        (Duration::from_millis(1600)..=Duration::from_millis(2400)).contains(&delay),
        "first retry after {delay:?}, expected 2 s ± 20 %"
    );
    lab.restart_server().expect("restart the server");
    client.wait_log_count("lease acquired", 2, Duration::from_secs(90));
    let second = client.leased_address();
    assert_eq!(
        first, second,
        "the previous address was not asked for first"
    );
    // The hub saw a single client frame in the exchange that got the lease back: a REQUEST for
    // the old address (INIT-REBOOT); a DISCOVER would have needed a DISCOVER and a REQUEST.
    let tap_mac = link_mac(&client_link(&lab, TAP).expect("TAP"));
    let exchanges = client_dhcp_exchanges(&hub_packet_log(&lab), &tap_mac);
    assert_eq!(
        exchanges.first().map(|e| e.1),
        Some(2),
        "the first lease came from DISCOVER + REQUEST: {exchanges:?}"
    );
    let (_, last) = exchanges.last().expect("DHCP exchanges in the packet log");
    assert_eq!(
        *last, 1,
        "client frames per DHCP exchange (transaction id, count): {exchanges:?}"
    );
    let (ok, out) = ping_lan_host(&lab, &[]);
    assert!(ok, "{out}\n{}", client.log_text());
    assert!(client.stop().success(), "{}", client.log_text());
}

#[test]
fn signal_during_the_backoff_wait_exits_at_once_and_leaves_no_trace() {
    let mut lab = lab();
    let before = client_snapshot(&lab);
    let mut client = connect(
        &lab,
        &[
            "--reconnect-delay",
            "30s",
            "--accept-default-gateway",
            "--accept-static-routes",
        ],
    );
    client.wait_log("lease acquired", LEASE_WAIT);
    lab.kill_server();
    client.wait_log("session lost, reconnecting", Duration::from_secs(20));
    let asked = Instant::now();
    client.terminate();
    let status = client.wait_exit(Duration::from_secs(5));
    let took = asked.elapsed();
    assert!(status.success(), "exit {status}: {}", client.log_text());
    assert!(
        took < Duration::from_secs(2),
        "took {took:?} to stop: {}",
        client.log_text()
    );
    assert_eq!(before, client_snapshot(&lab), "state left behind");
}

#[test]
fn default_gateway_and_static_routes_together() {
    let lab = lab();
    let f = &lab.facts;
    let mut client = connect(
        &lab,
        &["--accept-default-gateway", "--accept-static-routes"],
    );
    client.wait_log("lease acquired", LEASE_WAIT);
    let routes = must(&f.client_ns, &["ip", "route", "show"]);
    // Exactly one default route into the tunnel: the router's, whether it came from option 3
    // or from a 0.0.0.0/0 classless entry.
    let tunnel_defaults: Vec<&str> = routes
        .lines()
        .filter(|l| l.starts_with("default") && l.contains(&format!("dev {TAP} ")))
        .map(str::trim_end)
        .collect();
    let expected = format!("default via {} dev {TAP} proto static metric 50", f.gateway);
    assert_eq!(tunnel_defaults, [expected.as_str()], "{routes}");
    let pushed = format!(
        "{}/{} via {} dev {TAP}",
        f.pushed_route, f.pushed_route_prefix_len, f.pushed_route_gateway
    );
    assert!(routes.contains(&pushed), "{routes}");
    assert!(
        routes.contains(&format!("{} dev {}", f.server_ip, f.client_if)),
        "server route not pinned: {routes}"
    );
    let (ok, out) = ping_lan_host(&lab, &[]);
    assert!(ok, "{out}");
    assert!(client.stop().success(), "{}", client.log_text());
}
