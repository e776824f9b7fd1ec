//! CNI CHECK notices when the routes, policy rules or CONNMARK nft table that the lease
//! installed in the pod are gone: each removal makes CHECK fail naming the missing object,
//! restoring it by hand makes CHECK pass again (nothing re-ADDs).
//!
//! Needs `cargo build --workspace --bins` first, and root.

mod common;

use common::cni::{Attachment, Failed, NetworkList, Runtime};
use common::cni_lab::{network_list, pod_attachment, pod_leftovers, CniDirs, Sidecar};
use common::connect::{exec, extra_netns, must};
use serde_json::json;
use softether_lab::{Lab, LabOptions};

/// The sidecar's code for "the pod's netns is not as the attachment needs it".
const TAP_NETNS: u64 = 102;
const TABLE: u32 = 100;

/// CHECK must fail with [`TAP_NETNS`] and a message naming `needle`.
fn assert_check_names(rt: &Runtime, list: &NetworkList, att: &Attachment, needle: &str) {
    let inv: Failed = rt
        .check(list, att)
        .err()
        .unwrap_or_else(|| panic!("CHECK passed although {needle:?} is gone"));
    assert_eq!(
        (inv.code, inv.error_code()),
        (1, Some(TAP_NETNS)),
        "{needle}: {inv}"
    );
    assert!(
        inv.msg().contains(needle),
        "the error names {needle:?}: {inv}"
    );
}

#[test]
fn check_fails_when_a_route_rule_or_nft_table_is_gone() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let f = &lab.facts;
    let dirs = CniDirs::create(&lab);
    let sidecar = Sidecar::start(&lab, &dirs.socket, &dirs.state, 0);
    let rt = dirs.runtime(&lab);
    let pod = extra_netns();
    let ns = pod.name();
    let mut plugin = dirs.plugin_conf(&lab);
    plugin["acceptStaticRoutes"] = json!(true);
    plugin["acceptDefaultGateway"] = json!(true);
    plugin["policyRouteTable"] = json!(TABLE);
    plugin["connmark"] = json!(true);
    let list = network_list("vpnnet", "1.1.0", &plugin, false);
    let att = pod_attachment("chk0", ns);

    let result = rt
        .add(&list, &att)
        .unwrap_or_else(|inv| panic!("ADD: {inv}\n{}", sidecar.log_text()));
    let address = result["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .expect("ips[0].address")
        .to_owned();
    let check_ok = |when: &str| {
        rt.check(&list, &att).unwrap_or_else(|inv| {
            let rules = exec(ns, &["ip", "rule"]).1 + &exec(ns, &["ip", "-6", "rule"]).1;
            panic!(
                "CHECK {when}: {inv}\nrules in the pod:\n{rules}\n{}",
                sidecar.log_text()
            )
        });
    };
    check_ok("after ADD");

    // The pushed classless static route, in the main table.
    let dst = format!("{}/{}", f.pushed_route, f.pushed_route_prefix_len);
    let gw = f.pushed_route_gateway.to_string();
    let route = ["route", dst.as_str(), "via", gw.as_str(), "dev", "vpn0"];
    must(ns, &[&["ip", "route", "del"][..], &route[1..]].concat());
    assert_check_names(
        &rt,
        &list,
        &att,
        &format!("route {dst} via {gw} dev vpn0 table main is missing"),
    );
    must(ns, &[&["ip", "route", "add"][..], &route[1..]].concat());
    check_ok("after restoring the route");

    // `from <VPN address> lookup 100`.
    let table = TABLE.to_string();
    let rule = [
        "from",
        address.as_str(),
        "lookup",
        table.as_str(),
        "priority",
        "1000",
    ];
    must(ns, &[&["ip", "rule", "del"][..], &rule].concat());
    assert_check_names(
        &rt,
        &list,
        &att,
        &format!("rule from {address} lookup {TABLE} priority 1000 is missing"),
    );
    must(ns, &[&["ip", "rule", "add"][..], &rule].concat());
    check_ok("after restoring the rule");

    // The CONNMARK table.
    let tables = must(ns, &["nft", "list", "tables", "inet"]);
    let name = tables
        .split_whitespace()
        .find(|w| w.starts_with("softether_"))
        .unwrap_or_else(|| panic!("our nft table in the pod: {tables}"))
        .to_owned();
    must(ns, &["nft", "delete", "table", "inet", &name]);
    assert_check_names(
        &rt,
        &list,
        &att,
        &format!("nft table inet {name} is missing"),
    );

    rt.del(&list, &att)
        .unwrap_or_else(|inv| panic!("DEL: {inv}\n{}", sidecar.log_text()));
    assert_eq!(pod_leftovers(ns), Vec::<String>::new());
    assert_eq!(dirs.leftover_state(), Vec::<String>::new());
}
