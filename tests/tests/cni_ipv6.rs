//! IPv6 for CNI pods against the real server: dnsmasq on the lan host advertises a ULA prefix
//! (the setup `connect_ipv6` uses, `common/ipv6_lab.rs`); pods get SLAAC addresses, the default
//! route via the router and inet6 policy rules, `ping -6` the lan host through the VPN; the
//! CNI result lists both families (0.3.1 with `version: "6"`, 1.0.0); CHECK passes and fails
//! once a v6 route is deleted; DEL leaves nothing, also with the sidecar down. The first pod of a
//! fresh sidecar already gets both families (ADD waits for the answer to its router
//! solicitation, bounded, and the sidecar remembers the hub in `hubs.json`). A hub without IPv6
//! answers ADD IPv4-only, waiting at most once; `ipv6: false` turns IPv6 off on the pod interface.
//!
//! Needs `cargo build --workspace --bins` first, and root.

mod common;

use std::time::{Duration, Instant};

use common::cni::{Attachment, NetworkList, Runtime};
use common::cni_lab::{network_list, pod_attachment, pod_leftovers, CniDirs, Sidecar};
use common::connect::{extra_netns, must};
use common::ipv6_lab::{self, global_addresses, ping6, wait_for, DNS6, LAN_HOST6, PREFIX};
use serde_json::{json, Value};
use softether_lab::{Lab, LabOptions};

const TABLE: u32 = 300;

/// The `ips` entries of one family in a result.
fn ips_of(result: &Value, v6: bool) -> Vec<Value> {
    result["ips"]
        .as_array()
        .expect("ips")
        .iter()
        .filter(|ip| ip["address"].as_str().unwrap_or_default().contains(':') == v6)
        .cloned()
        .collect()
}

/// Non-default `ip -6 rule` entries in `pod`.
fn rules6(pod: &str) -> Vec<String> {
    must(pod, &["ip", "-6", "rule"])
        .lines()
        .filter(|l| !l.starts_with("0:") && !l.starts_with("32766:"))
        .map(str::to_owned)
        .collect()
}

/// The lines of the sidecar log about IPv6 in ADD results, `waited_ms` per ADD, in order.
fn add_waits(sidecar: &Sidecar) -> Vec<u64> {
    sidecar
        .log_text()
        .lines()
        .filter(|l| l.contains("IPv6 for the ADD result"))
        .filter_map(|l| {
            let rest = &l[l.find("waited_ms=")? + "waited_ms=".len()..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

fn add_timed(
    rt: &Runtime,
    list: &NetworkList,
    att: &Attachment,
    sidecar: &Sidecar,
) -> (Value, Duration) {
    let started = Instant::now();
    let result = rt
        .add(list, att)
        .unwrap_or_else(|inv| panic!("ADD: {inv}\n{}", sidecar.log_text()));
    (result, started.elapsed())
}

#[test]
fn pods_get_slaac_ipv6_in_the_result_check_verifies_it_and_del_removes_it() {
    let lab = ipv6_lab::lab();
    let _dnsmasq = ipv6_lab::router(&lab, &format!("{PREFIX},ra-only,64,600"));
    let dirs = CniDirs::create(&lab);
    let mut sidecar = Sidecar::start(&lab, &dirs.socket, &dirs.state, 0);
    let rt = dirs.runtime(&lab);
    let mut plugin = dirs.plugin_conf(&lab);
    plugin["acceptDefaultGateway"] = json!(true);
    plugin["policyRouteTable"] = json!(TABLE);
    plugin["connmark"] = json!(true);
    let prefix = PREFIX.trim_end_matches(':');
    let mut measured = Vec::new();

    // The first pod of a fresh sidecar on the hub: ADD waits for the advertisement answering the
    // session's first router solicitation (bounded), so its result lists IPv6 too.
    let first_pod = extra_netns();
    let first = pod_attachment("v6first", first_pod.name());
    let list10 = network_list("vpn6", "1.0.0", &plugin, false);
    let (result, elapsed) = add_timed(&rt, &list10, &first, &sidecar);
    let first_waited = *add_waits(&sidecar).last().unwrap();
    let ctx = format!("{result}\n{}", sidecar.log_text());
    let six = ips_of(&result, true);
    assert_eq!(six.len(), 1, "the first pod's result lists IPv6: {ctx}");
    let address = six[0]["address"].as_str().unwrap().to_owned();
    assert!(address.starts_with(prefix), "{ctx}");
    assert_eq!(
        global_addresses(first_pod.name(), "vpn0"),
        [address.as_str()],
        "{ctx}"
    );
    // The sidecar remembers the hub has IPv6, in the state directory (for its next start).
    let facts = std::fs::read_to_string(dirs.state.join("hubs.json")).expect("hubs.json");
    let facts: Value = serde_json::from_str(&facts).unwrap();
    let hubs = facts["hubs"].as_object().unwrap();
    assert!(
        hubs.len() == 1 && hubs.values().all(|h| h["ipv6"] == true),
        "{facts}"
    );
    eprintln!(
        "first pod: ADD {} ms, waited {first_waited} ms for IPv6 after the lease, {address}",
        elapsed.as_millis()
    );
    measured.push(("1.0.0 (first pod)", elapsed, first_waited));

    // Later pods on the same hub wait (briefly) for the advertisement: both families, always.
    for (version, id) in [("1.0.0", "v6pod10"), ("0.3.1", "v6pod031")] {
        let pod = extra_netns();
        let att = pod_attachment(id, pod.name());
        let list = network_list("vpn6", version, &plugin, false);
        let (result, elapsed) = add_timed(&rt, &list, &att, &sidecar);
        measured.push((version, elapsed, *add_waits(&sidecar).last().unwrap()));
        let ctx = format!("{version}: {result}\n{}", sidecar.log_text());
        assert_eq!(ips_of(&result, false).len(), 1, "{ctx}");
        let six = ips_of(&result, true);
        assert_eq!(six.len(), 1, "one SLAAC address: {ctx}");
        let v6 = six[0]["address"].as_str().unwrap();
        assert!(v6.starts_with(prefix) && v6.ends_with("/64"), "{ctx}");
        let gateway = six[0]["gateway"].as_str().expect("IPv6 gateway");
        assert!(
            gateway.starts_with("fe80::"),
            "the router's link-local address: {ctx}"
        );
        let want_version = version.starts_with("0.").then_some(json!("6"));
        assert_eq!(six[0].get("version"), want_version.as_ref(), "{ctx}");
        assert_eq!(global_addresses(pod.name(), "vpn0"), [v6], "{ctx}");
        let routes = result["routes"].as_array().unwrap();
        let route = |dst: &str, gw: Option<&str>| {
            routes.iter().any(|r| {
                r["dst"] == dst
                    && r.get("gw").and_then(Value::as_str) == gw
                    && r.get("table").is_none()
            })
        };
        assert!(
            route(&format!("{prefix}::/64"), None),
            "on-link prefix: {ctx}"
        );
        assert!(
            route("::/0", Some(gateway)),
            "default route via the router: {ctx}"
        );
        let servers = &result["dns"]["nameservers"];
        assert!(servers.as_array().unwrap().contains(&json!(DNS6)), "{ctx}");
        assert!(
            ping6(pod.name(), LAN_HOST6),
            "ping -6 through the VPN: {ctx}"
        );
        // Policy routing and CONNMARK for inet6, as `connect` installs them.
        let host = v6.split('/').next().unwrap();
        let rules = rules6(pod.name()).join("\n");
        assert!(
            rules.contains(&format!("from {host} lookup {TABLE}"))
                && rules.contains(&format!("fwmark {TABLE:#x} lookup {TABLE}")),
            "{rules}"
        );
        let table = must(
            pod.name(),
            &["ip", "-6", "route", "show", "table", &TABLE.to_string()],
        );
        assert!(table.contains("default via fe80::"), "{table}");

        if version == "1.0.0" {
            let listed = dirs.status_attachments(&lab);
            let me = listed
                .iter()
                .find(|a| a["containerID"] == id)
                .expect("in status");
            assert_eq!(me["addresses6"], json!([v6]), "status --json: {me}");
            assert_eq!(me["gateway6"], json!(gateway), "status --json: {me}");
            // The text table lists them last, in column ADDRESS6.
            let bin = common::workspace_bin("softether-sidecar");
            let socket = dirs.socket.to_str().unwrap();
            let table = must(
                &lab.facts.client_ns,
                &[bin.to_str().unwrap(), "status", "--socket", socket],
            );
            let header = table.lines().next().unwrap_or_default();
            let row = table
                .lines()
                .find(|l| l.starts_with(id))
                .unwrap_or_default();
            assert!(header.trim_end().ends_with("ADDRESS6"), "{table}");
            assert!(row.trim_end().ends_with(&format!(" {v6}")), "{table}");
            rt.check(&list, &att)
                .unwrap_or_else(|inv| panic!("CHECK: {inv}\n{}", sidecar.log_text()));
            must(
                pod.name(),
                &[
                    "ip",
                    "-6",
                    "route",
                    "del",
                    &format!("{prefix}::/64"),
                    "dev",
                    "vpn0",
                ],
            );
            let inv = rt
                .check(&list, &att)
                .expect_err("CHECK after a v6 route was deleted");
            assert!(
                inv.msg().contains(&format!("route {prefix}::/64")),
                "CHECK names the route: {inv}"
            );
        }
        rt.del(&list, &att)
            .unwrap_or_else(|inv| panic!("DEL: {inv}\n{}", sidecar.log_text()));
        assert_eq!(pod_leftovers(pod.name()), Vec::<String>::new(), "{version}");
        assert_eq!(rules6(pod.name()), Vec::<String>::new(), "{version}");
    }
    // DEL with the sidecar down: the plugin removes the TAP and the inet6 rules itself.
    assert!(
        !rules6(first_pod.name()).is_empty(),
        "the first pod has inet6 rules"
    );
    sidecar.kill9();
    rt.del(&list10, &first)
        .expect("DEL of the first pod with the sidecar down");
    assert_eq!(rules6(first_pod.name()), Vec::<String>::new());
    assert_eq!(pod_leftovers(first_pod.name()), Vec::<String>::new());
    eprintln!("| cniVersion | ADD ms | waited for IPv6 after the lease, ms |");
    for (version, elapsed, waited) in measured {
        eprintln!("| {version} | {} | {waited} |", elapsed.as_millis());
    }
}

#[test]
fn a_hub_without_ipv6_answers_ipv4_only_waiting_once_even_across_restarts_and_ipv6_false_turns_it_off(
) {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let dirs = CniDirs::create(&lab);
    let sidecar = Sidecar::start(&lab, &dirs.socket, &dirs.state, 0);
    let rt = dirs.runtime(&lab);
    let on = dirs.plugin_conf(&lab);
    let mut off = on.clone();
    off["ipv6"] = json!(false);
    let mut table = Vec::new();
    for round in 0..2 {
        for (name, plugin) in [("ipv6 on", &on), ("ipv6: false", &off)] {
            let pod = extra_netns();
            let att = pod_attachment(&format!("nov6{round}{}", name.len()), pod.name());
            let list = network_list("vpn4", "1.0.0", plugin, false);
            let (result, elapsed) = add_timed(&rt, &list, &att, &sidecar);
            assert!(ips_of(&result, true).is_empty(), "{result}");
            assert_eq!(ips_of(&result, false).len(), 1, "{result}");
            let disabled = must(
                pod.name(),
                &["cat", "/proc/sys/net/ipv6/conf/vpn0/disable_ipv6"],
            );
            assert_eq!(
                disabled.trim(),
                if plugin == &off { "1" } else { "0" },
                "{name}"
            );
            table.push((name, elapsed));
            rt.del(&list, &att).expect("DEL");
            assert_eq!(pod_leftovers(pod.name()), Vec::<String>::new());
        }
    }
    // No router ever answered on this hub: the first ADD waited (bounded) for the answer to
    // its solicitation and the sidecar remembered the hub has no IPv6; later ADDs never wait.
    let waits = add_waits(&sidecar);
    let log = sidecar.log_text();
    assert_eq!(waits.len(), 2, "{log}");
    let bounded = log
        .lines()
        .filter(|l| l.contains("IPv6 for the ADD result"))
        .map(|l| l.contains("why=\"no router answered the first solicitation\""));
    assert_eq!(bounded.collect::<Vec<_>>(), [true, false], "{log}");
    assert_eq!(waits[1], 0, "{log}");
    let facts = std::fs::read_to_string(dirs.state.join("hubs.json")).expect("hubs.json");
    assert!(facts.contains("\"ipv6\": false"), "{facts}");
    eprintln!(
        "first ADD on the hub waited {} ms for an advertisement",
        waits[0]
    );

    // A restarted sidecar (same state directory) knows the hub: its first ADD does not wait.
    let mut sidecar = sidecar;
    sidecar.kill9();
    let sidecar = Sidecar::start(&lab, &dirs.socket, &dirs.state, 1);
    let pod = extra_netns();
    let att = pod_attachment("nov6restarted", pod.name());
    let list = network_list("vpn4", "1.0.0", &on, false);
    let (result, elapsed) = add_timed(&rt, &list, &att, &sidecar);
    assert!(ips_of(&result, true).is_empty(), "{result}");
    let log = sidecar.log_text();
    assert!(
        log.contains("waited_ms=0 addresses=0 why=\"hub known to have no IPv6 router\""),
        "{log}"
    );
    table.push(("ipv6 on, sidecar restarted", elapsed));
    rt.del(&list, &att).expect("DEL");
    eprintln!("| hub without IPv6 | ADD ms |");
    for (name, elapsed) in table {
        eprintln!("| {name} | {} |", elapsed.as_millis());
    }
}

#[test]
fn a_stateful_dhcpv6_address_is_waited_for_and_released_on_del() {
    let lab = ipv6_lab::lab();
    let _dnsmasq = ipv6_lab::router(&lab, "fd5e:7e4e:1::100,fd5e:7e4e:1::1ff,64,600");
    let dirs = CniDirs::create(&lab);
    let sidecar = Sidecar::start(&lab, &dirs.socket, &dirs.state, 0);
    let rt = dirs.runtime(&lab);
    let plugin = dirs.plugin_conf(&lab);
    let list = network_list("vpn6", "1.0.0", &plugin, false);
    let prefix = PREFIX.trim_end_matches(':');
    let in_range = |a: &str| {
        let host: std::net::Ipv6Addr = a.split('/').next().unwrap().parse().unwrap();
        a.starts_with(prefix) && (0x100..=0x1ff).contains(&host.segments()[7])
    };

    // The first pod (the hub is new to the sidecar: waits for the answer to its solicitation).
    let first_pod = extra_netns();
    let first = pod_attachment("dh6first", first_pod.name());
    add_timed(&rt, &list, &first, &sidecar);
    wait_for(Duration::from_secs(30), || {
        global_addresses(first_pod.name(), "vpn0")
            .into_iter()
            .find(|a| in_range(a))
    })
    .unwrap_or_else(|| {
        panic!(
            "no DHCPv6 address in the first pod:\n{}",
            sidecar.log_text()
        )
    });

    let pod = extra_netns();
    let att = pod_attachment("dh6pod", pod.name());
    let (result, elapsed) = add_timed(&rt, &list, &att, &sidecar);
    let waited = *add_waits(&sidecar).last().unwrap();
    let ctx = format!("{result}\n{}", sidecar.log_text());
    let six = ips_of(&result, true);
    assert_eq!(six.len(), 1, "the DHCPv6 address, no SLAAC one: {ctx}");
    let address = six[0]["address"].as_str().unwrap();
    assert!(in_range(address), "{ctx}");
    assert_eq!(global_addresses(pod.name(), "vpn0"), [address], "{ctx}");
    assert!(
        result["dns"]["nameservers"]
            .as_array()
            .unwrap()
            .contains(&json!(DNS6)),
        "DHCPv6 DNS: {ctx}"
    );
    assert!(
        ping6(pod.name(), LAN_HOST6),
        "ping -6 through the VPN: {ctx}"
    );
    rt.check(&list, &att).expect("CHECK");
    eprintln!(
        "| stateful DHCPv6 | ADD {} ms | waited {waited} ms after the lease |",
        elapsed.as_millis()
    );

    rt.del(&list, &att).expect("DEL");
    assert_eq!(pod_leftovers(pod.name()), Vec::<String>::new());
    // The Release reached dnsmasq: it forgets the lease (bounded wait).
    let leases = lab.facts.dir.join("dnsmasq6.leases");
    let host = address.split('/').next().unwrap().to_owned();
    let released = wait_for(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&leases).unwrap_or_default();
        (!text.contains(&host)).then_some(())
    });
    assert!(
        released.is_some(),
        "lease for {host} still in {}",
        leases.display()
    );
    rt.del(&list, &first).expect("DEL of the first pod");
}
