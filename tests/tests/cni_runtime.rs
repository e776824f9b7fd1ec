//! The `softether` plugin driven by a libcni-like runtime (`common/cni.rs`): ADD → CHECK → DEL
//! → DEL for every supported cniVersion, unchained and chained after a previous plugin, against
//! the real server and `softether-sidecar run`; the error codes for bad env / stdin / config /
//! version; STATUS; GC with either spelling of the valid-attachments key.
//!
//! Needs `cargo build --workspace --bins` first, and root.

mod common;

use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use common::cni::{version_at_least, Attachment, Runtime, VERSIONS};
use common::cni_lab::{
    netns_path, network_list, ping_lan, pod_attachment, pod_leftovers, pod_link, prev_plugin_calls,
    CniDirs, Sidecar, PREV_PLUGIN,
};
use common::connect::extra_netns;
use common::workspace_bin;
use serde_json::{json, Value};
use softether_lab::{Lab, LabOptions};

fn attachment(id: &str, pod: &str) -> Attachment {
    Attachment {
        args: vec![("K8S_POD_NAME".into(), id.into())],
        ..pod_attachment(id, pod)
    }
}

/// ADD → CHECK → DEL → DEL → DEL without netns, for every version, in one pod namespace.
fn every_version(chained: bool) {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let dirs = CniDirs::create(&lab);
    let sidecar = Sidecar::start(&lab, &dirs.socket, &dirs.state, 0);
    let rt = dirs.runtime(&lab);
    let pod = extra_netns();
    let f = &lab.facts;
    let mut plugin = dirs.plugin_conf(&lab);
    plugin["acceptStaticRoutes"] = json!(true);
    plugin["capabilities"] = json!({"mac": true});
    let ours = usize::from(chained);
    for (n, version) in VERSIONS.iter().enumerate() {
        let list = network_list("vpnnet", version, &plugin, chained);
        let id = format!("c{n}{}", if chained { "chained" } else { "" });
        let mut att = attachment(&id, pod.name());
        // Half the versions get the MAC through the `mac` capability, half derive it.
        let wanted_mac = (n % 2 == 0).then(|| format!("5E:00:00:00:0{n}:{ours:02X}"));
        if let Some(mac) = &wanted_mac {
            att.capability_args.insert("mac".into(), json!(mac));
        }

        let result = rt
            .add(&list, &att)
            .unwrap_or_else(|inv| panic!("{version} ADD: {inv}\n{}", sidecar.log_text()));
        let ctx = format!("{version} chained={chained}: {result}");
        assert_eq!(result["cniVersion"], *version, "{ctx}");
        let link = pod_link(pod.name(), "vpn0").expect("vpn0 in the pod");
        let pod_mac = link["address"].as_str().unwrap().to_uppercase();
        if let Some(mac) = &wanted_mac {
            assert_eq!(&pod_mac, mac, "runtimeConfig.mac is used: {ctx}");
        }
        let interfaces = result["interfaces"].as_array().expect("interfaces");
        assert_eq!(interfaces.len(), ours + 1, "{ctx}");
        let iface = &interfaces[ours];
        assert_eq!(iface["name"], "vpn0", "{ctx}");
        assert_eq!(
            iface["mac"].as_str().unwrap().to_uppercase(),
            pod_mac,
            "{ctx}"
        );
        assert_eq!(iface["sandbox"], netns_path(pod.name()).as_str(), "{ctx}");
        if !version_at_least(version, (1, 1, 0)) {
            assert!(
                iface.get("mtu").is_none(),
                "no 1.1 fields below 1.1.0: {ctx}"
            );
        }

        let ips = result["ips"].as_array().expect("ips");
        assert_eq!(ips.len(), ours + 1, "{ctx}");
        let four = json!("4");
        for ip in ips {
            let want = (!version_at_least(version, (1, 0, 0))).then_some(&four);
            assert_eq!(ip.get("version"), want, "ips[].version iff < 1.0.0: {ctx}");
        }
        let ip = &ips[ours];
        assert_eq!(
            ip["interface"], ours,
            "ips[].interface indexes interfaces: {ctx}"
        );
        let address: Ipv4Addr = ip["address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!((f.dhcp_start..=f.dhcp_end).contains(&address), "{ctx}");
        assert_eq!(ip["gateway"], f.dhcp_router.to_string(), "{ctx}");

        let routes = result["routes"].as_array().expect("routes");
        let pushed = format!("{}/{}", f.pushed_route, f.pushed_route_prefix_len);
        assert!(
            routes
                .iter()
                .any(|r| r["dst"] == pushed.as_str()
                    && r["gw"] == f.pushed_route_gateway.to_string()),
            "the pushed static route: {ctx}"
        );
        let dns = &result["dns"];
        let servers: Vec<&str> = dns["nameservers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(servers.contains(&f.dns.to_string().as_str()), "{ctx}");
        if chained {
            // The previous plugin's part of the result is kept, in front.
            assert_eq!(interfaces[0]["name"], "eth0", "{ctx}");
            assert_eq!(ips[0]["address"], "198.18.0.5/16", "{ctx}");
            assert_eq!(ips[0]["interface"], 0, "{ctx}");
            assert!(
                routes
                    .iter()
                    .any(|r| r["dst"] == "0.0.0.0/0" && r["gw"] == "198.18.0.1"),
                "{ctx}"
            );
            assert_eq!(servers[0], "198.18.0.1", "{ctx}");
        } else {
            assert_eq!(dns["domain"], f.domain.as_str(), "{ctx}");
        }
        let (ok, out) = ping_lan(&lab, pod.name(), 3);
        assert!(
            ok,
            "{version}: pod cannot reach the lan host: {out}\n{}",
            sidecar.log_text()
        );
        assert!(dirs.record(&att).exists(), "{ctx}");

        match rt.check(&list, &att) {
            Ok(()) => assert!(
                version_at_least(version, (0, 4, 0)),
                "CHECK accepted below 0.4.0: {ctx}"
            ),
            Err(inv) => {
                assert!(
                    !version_at_least(version, (0, 4, 0)),
                    "{version} CHECK: {inv}"
                );
                assert_eq!((inv.code, inv.error_code()), (1, Some(1)), "{inv}");
                assert_eq!(inv.json["cniVersion"], *version, "{inv}");
                assert!(inv.msg().contains("CHECK"), "{inv}");
            }
        }

        for round in 0..2 {
            rt.del(&list, &att)
                .unwrap_or_else(|inv| panic!("{version} DEL #{round}: {inv}"));
            assert!(pod_link(pod.name(), "vpn0").is_none(), "{ctx}");
            assert_eq!(pod_leftovers(pod.name()), Vec::<String>::new(), "{ctx}");
            assert!(!dirs.record(&att).exists(), "{ctx}");
            assert!(
                !dirs
                    .status_attachments(&lab)
                    .iter()
                    .any(|a| a["containerID"] == id.as_str()),
                "{ctx}"
            );
        }
        // The sandbox is gone: DEL without CNI_NETNS (and no cached result) still succeeds.
        let gone = Attachment {
            netns: None,
            ..att.clone()
        };
        rt.del(&list, &gone)
            .unwrap_or_else(|inv| panic!("{version} DEL without netns: {inv}"));
    }
    assert_eq!(dirs.leftover_state(), Vec::<String>::new());
    if chained {
        assert_chain_order(&rt, &dirs);
    }
}

/// ADD runs the chain in order, DEL in reverse; the previous plugin saw every call.
fn assert_chain_order(rt: &Runtime, dirs: &CniDirs) {
    let journal = rt.journal.lock().unwrap().clone();
    for (cmd, order) in [
        ("ADD", [PREV_PLUGIN, "softether"]),
        ("DEL", ["softether", PREV_PLUGIN]),
    ] {
        let calls: Vec<&str> = journal
            .iter()
            .filter(|(_, c, _)| c == cmd)
            .map(|(p, _, _)| p.as_str())
            .collect();
        for pair in calls.chunks(2) {
            assert_eq!(pair, order, "{cmd} order: {journal:?}");
        }
    }
    let seen = prev_plugin_calls(dirs);
    for (n, _) in VERSIONS.iter().enumerate() {
        assert!(seen.contains(&format!("ADD c{n}chained")), "{seen:?}");
        assert!(seen.contains(&format!("DEL c{n}chained")), "{seen:?}");
    }
}

#[test]
fn every_version_unchained_add_check_del_del() {
    every_version(false);
}

#[test]
fn every_version_chained_after_a_previous_plugin() {
    every_version(true);
}

/// A CNI_PATH directory with the plugin, removed on drop (no lab: nothing reaches a sidecar).
struct BinDir(PathBuf);

impl Drop for BinDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn bad_env_undecodable_stdin_invalid_config_and_version_errors() {
    let node = extra_netns();
    let dir = BinDir(std::env::temp_dir().join(format!("softether-cni-rt-{}", std::process::id())));
    fs::create_dir_all(&dir.0).unwrap();
    std::os::unix::fs::symlink(workspace_bin("softether"), dir.0.join("softether")).unwrap();
    let rt = Runtime::new(node.name(), vec![dir.0.clone()]);
    let sock = dir.0.join("no-sidecar.sock");
    let conf = json!({
        "cniVersion": "1.0.0", "name": "vpnnet", "type": "softether",
        "server": "198.18.0.1", "hub": "LAB", "user": "alice", "passwordFile": "/etc/nonexistent.pass",
        "sidecarSocket": sock, "stateDir": dir.0.join("state"), "timeout": 5
    });
    let att = Attachment {
        container_id: "c1".into(),
        netns: Some(format!(
            "/run/netns/softether-cni-missing-{}",
            std::process::id()
        )),
        ifname: "vpn0".into(),
        ..Attachment::default()
    };
    let run = |env: &[(String, String)], stdin: &[u8]| rt.exec_raw("softether", env, stdin);
    let add_env = rt.env_for("ADD", Some(&att));
    let stdin = conf.to_string();

    // Each missing variable → 4, named in the message; the error speaks the caller's version.
    for var in [
        "CNI_COMMAND",
        "CNI_CONTAINERID",
        "CNI_NETNS",
        "CNI_IFNAME",
        "CNI_PATH",
    ] {
        let env: Vec<_> = add_env.iter().filter(|(k, _)| k != var).cloned().collect();
        let inv = run(&env, stdin.as_bytes());
        assert_eq!((inv.code, inv.error_code()), (1, Some(4)), "{var}: {inv}");
        assert!(inv.msg().contains(var), "{var} named: {inv}");
        assert_eq!(inv.json["cniVersion"], "1.0.0", "{inv}");
        // An empty value counts as missing, as in skel.
        let mut env = add_env.clone();
        env.iter_mut().find(|(k, _)| k == var).unwrap().1.clear();
        let inv = run(&env, stdin.as_bytes());
        assert_eq!(inv.error_code(), Some(4), "{var} empty: {inv}");
    }
    for (var, bad) in [
        ("CNI_IFNAME", "a/b"),
        ("CNI_IFNAME", "sixteen-bytes-xx"),
        ("CNI_CONTAINERID", "-c1"),
        ("CNI_COMMAND", "ATTACH"),
    ] {
        let mut env = add_env.clone();
        env.iter_mut().find(|(k, _)| k == var).unwrap().1 = bad.into();
        let inv = run(&env, stdin.as_bytes());
        assert_eq!(inv.error_code(), Some(4), "{var}={bad}: {inv}");
        assert!(inv.msg().contains(var), "{inv}");
    }
    // DEL needs no CNI_NETNS; CHECK does.
    let check_env: Vec<_> = rt
        .env_for("CHECK", Some(&att))
        .into_iter()
        .filter(|(k, _)| k != "CNI_NETNS")
        .collect();
    let inv = run(&check_env, stdin.as_bytes());
    assert_eq!(inv.error_code(), Some(4), "{inv}");

    // Undecodable stdin → 6.
    for bad in [
        &b"not json"[..],
        b"{\"cniVersion\":\"1.0.0\",",
        b"",
        b"[1,2]",
        b"\xff\xfe",
    ] {
        let inv = run(&add_env, bad);
        assert_eq!(
            inv.error_code(),
            Some(6),
            "{:?}: {inv}",
            String::from_utf8_lossy(bad)
        );
    }

    // Invalid config → 7 naming the key.
    let invalid = [
        ("server", json!(null), "server"),
        ("port", json!(0), "port"),
        ("password", json!("hunter2"), "password"),
        ("connmark", json!(true), "connmark"),
        ("mtu", json!(100), "mtu"),
        ("timeout", json!(600), "timeout"),
        ("sidecarSocket", json!("relative.sock"), "sidecarSocket"),
        ("pinSha256", json!("abc"), "pinSha256"),
        ("name", json!("bad name!"), "name"),
    ];
    for (key, value, named) in invalid {
        let mut c = conf.clone();
        if value.is_null() {
            c.as_object_mut().unwrap().remove(key);
        } else {
            c[key] = value.clone();
        }
        let inv = run(&add_env, c.to_string().as_bytes());
        assert_eq!(inv.error_code(), Some(7), "{key}={value}: {inv}");
        assert!(
            inv.msg().contains(named)
                || inv.json["details"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(named),
            "{key} named: {inv}"
        );
        assert!(
            !inv.stdout.contains("hunter2"),
            "secrets never echoed: {inv}"
        );
    }

    // Unsupported versions → 1, for ADD, DEL and VERSION alike.
    for bad in ["0.1.0", "0.2.0", "1.2.0", "2.0.0", "banana"] {
        let mut c = conf.clone();
        c["cniVersion"] = json!(bad);
        for cmd in ["ADD", "DEL"] {
            let inv = run(&rt.env_for(cmd, Some(&att)), c.to_string().as_bytes());
            assert_eq!(inv.error_code(), Some(1), "{cmd} {bad}: {inv}");
        }
    }

    // VERSION needs nothing but CNI_COMMAND (Podman sends placeholders).
    for version in VERSIONS {
        let env = vec![
            ("CNI_COMMAND".to_owned(), "VERSION".to_owned()),
            ("CNI_NETNS".to_owned(), "dummy".to_owned()),
            ("CNI_PATH".to_owned(), "dummy".to_owned()),
        ];
        let inv =
            run(&env, json!({"cniVersion": version}).to_string().as_bytes()).expect_ok("VERSION");
        assert_eq!(inv.json["cniVersion"], version, "{inv}");
        assert_eq!(inv.json["supportedVersions"], json!(VERSIONS), "{inv}");
    }

    // STATUS with no sidecar behind the socket → 50; GC → 11 (try again later).
    let mut c = conf.clone();
    c["cniVersion"] = json!("1.1.0");
    let inv = run(&rt.env_for("STATUS", None), c.to_string().as_bytes());
    assert_eq!((inv.code, inv.error_code()), (1, Some(50)), "{inv}");
    c["cni.dev/valid-attachments"] = json!([]);
    let inv = run(&rt.env_for("GC", None), c.to_string().as_bytes());
    assert_eq!(inv.error_code(), Some(11), "{inv}");
    // Nothing was created in the (missing) pod netns, so nothing can leak; the state dir is empty.
    assert!(!dir.0.join("state/attachments").exists());
}

#[test]
fn status_and_gc_with_both_key_spellings() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let dirs = CniDirs::create(&lab);
    let mut sidecar = Sidecar::start(&lab, &dirs.socket, &dirs.state, 0);
    let rt = dirs.runtime(&lab);
    let plugin = dirs.plugin_conf(&lab);
    let vpnnet = network_list("vpnnet", "1.1.0", &plugin, false);
    let othernet = network_list("othernet", "1.1.0", &plugin, false);
    rt.status(&vpnnet)
        .unwrap_or_else(|inv| panic!("STATUS with the sidecar up: {inv}"));

    let pods: Vec<_> = (0..4).map(|_| extra_netns()).collect();
    let atts: Vec<Attachment> = pods
        .iter()
        .enumerate()
        .map(|(n, p)| attachment(&format!("gc{n}"), p.name()))
        .collect();
    for (n, att) in atts.iter().enumerate() {
        let list = if n == 3 { &othernet } else { &vpnnet };
        rt.add(list, att)
            .unwrap_or_else(|inv| panic!("ADD {n}: {inv}\n{}", sidecar.log_text()));
    }
    let listed = |dirs: &CniDirs| -> Vec<String> {
        dirs.status_attachments(&lab)
            .iter()
            .map(|a| a["containerID"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(listed(&dirs), ["gc0", "gc1", "gc2", "gc3"]);
    rt.status(&vpnnet)
        .unwrap_or_else(|inv| panic!("STATUS with sessions up: {inv}"));

    // The 1.1.0 tag's spelling: gc2 goes, gc3 (another network) stays.
    rt.gc_with_keys(
        &vpnnet,
        &[("gc0", "vpn0"), ("gc1", "vpn0")],
        &["cni.dev/attachments"],
    )
    .unwrap_or_else(|inv| panic!("GC: {inv}"));
    assert_eq!(listed(&dirs), ["gc0", "gc1", "gc3"]);
    assert!(
        pod_link(pods[2].name(), "vpn0").is_none(),
        "gc2's TAP removed"
    );
    assert_eq!(pod_leftovers(pods[2].name()), Vec::<String>::new());
    assert!(!dirs.record(&atts[2]).exists());
    // HEAD's spelling: gc1 goes, after its pod namespace is already gone (GC's usual case).
    softether_lab::netns::destroy(pods[1].name());
    assert!(!std::path::Path::new(&netns_path(pods[1].name())).exists());
    rt.gc_with_keys(&vpnnet, &[("gc0", "vpn0")], &["cni.dev/valid-attachments"])
        .unwrap_or_else(|inv| panic!("GC: {inv}\n{}", sidecar.log_text()));
    assert_eq!(listed(&dirs), ["gc0", "gc3"]);
    assert!(
        pod_link(&lab.facts.client_ns, "vpn0").is_none(),
        "the dead pod's TAP did not land in the node namespace"
    );
    assert!(!dirs.record(&atts[1]).exists());
    // libcni sends both: nothing more to remove; the kept attachment still works.
    rt.gc(&vpnnet, &[("gc0", "vpn0")])
        .unwrap_or_else(|inv| panic!("GC: {inv}"));
    assert_eq!(listed(&dirs), ["gc0", "gc3"]);
    assert!(pod_link(pods[0].name(), "vpn0").is_some());
    rt.check(&vpnnet, &atts[0])
        .unwrap_or_else(|inv| panic!("CHECK after GC: {inv}"));
    let (ok, out) = ping_lan(&lab, pods[0].name(), 3);
    assert!(ok, "kept attachment still reaches the lan: {out}");
    // An empty list for the other network removes all of its attachments.
    rt.gc(&othernet, &[])
        .unwrap_or_else(|inv| panic!("GC: {inv}"));
    assert_eq!(listed(&dirs), ["gc0"]);
    assert!(pod_link(pods[3].name(), "vpn0").is_none());

    // The runtime still DELs what GC removed (libcni does for cached results): all succeed.
    for (n, att) in atts.iter().enumerate() {
        let list = if n == 3 { &othernet } else { &vpnnet };
        rt.del(list, att)
            .unwrap_or_else(|inv| panic!("DEL {n}: {inv}"));
    }
    assert_eq!(listed(&dirs), Vec::<String>::new());
    for (n, p) in pods.iter().enumerate().filter(|(n, _)| *n != 1) {
        assert_eq!(pod_leftovers(p.name()), Vec::<String>::new(), "pod {n}");
    }
    assert_eq!(dirs.leftover_state(), Vec::<String>::new());

    sidecar.kill9();
    let inv = rt
        .status(&vpnnet)
        .expect_err("STATUS with the sidecar down");
    assert_eq!((inv.code, inv.error_code()), (1, Some(50)), "{inv}");
}

/// The spec's "if an interface with that name already exists, the plugin MUST error" — and the
/// failed ADD must not hurt the live attachment (its cleanup only removes what it created).
#[test]
fn duplicate_add_errors_and_leaves_the_live_attachment_alone() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let dirs = CniDirs::create(&lab);
    let sidecar = Sidecar::start(&lab, &dirs.socket, &dirs.state, 0);
    let rt = dirs.runtime(&lab);
    let list = network_list("vpnnet", "1.0.0", &dirs.plugin_conf(&lab), false);
    let (pod, other_pod) = (extra_netns(), extra_netns());
    let live = attachment("dup0", pod.name());
    let result = rt
        .add(&list, &live)
        .unwrap_or_else(|inv| panic!("ADD: {inv}\n{}", sidecar.log_text()));
    let mac = pod_link(pod.name(), "vpn0").expect("vpn0")["address"].clone();

    let same_ifname_other_container = attachment("dup1", pod.name());
    let same_container_other_pod = attachment("dup0", other_pod.name());
    for (what, att) in [
        ("the same attachment again", &live),
        (
            "another container, same netns and ifname",
            &same_ifname_other_container,
        ),
        (
            "the same container and ifname in another netns",
            &same_container_other_pod,
        ),
    ] {
        let inv = rt.add(&list, att).expect_err(what);
        assert_eq!(inv.code, 1, "{what}: {inv}");
        assert!(inv.error_code().is_some_and(|c| c >= 100), "{what}: {inv}");
        assert_eq!(
            pod_link(pod.name(), "vpn0").expect("vpn0 survives")["address"],
            mac,
            "{what}"
        );
        // Re-cache the live result (the runtime caches only successes, keyed per attachment).
        rt.check(&list, &live)
            .unwrap_or_else(|inv| panic!("CHECK after {what}: {inv}\n{}", sidecar.log_text()));
    }
    assert!(
        pod_link(other_pod.name(), "vpn0").is_none(),
        "the refused ADD removed its TAP"
    );
    let listed = dirs.status_attachments(&lab);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["state"], "up", "{listed:?}");
    assert_eq!(
        listed[0]["address"], result["ips"][0]["address"],
        "{listed:?}"
    );
    let (ok, out) = ping_lan(&lab, pod.name(), 3);
    assert!(ok, "{out}");

    // The runtime DELs the failed ADDs too (spec: DEL follows every ADD): they must not touch
    // the live attachment... except `dup0`, which *is* the live attachment's key.
    rt.del(&list, &same_ifname_other_container)
        .unwrap_or_else(|inv| panic!("DEL dup1: {inv}"));
    assert!(
        pod_link(pod.name(), "vpn0").is_some(),
        "DEL of dup1 left dup0's vpn0 alone"
    );
    rt.check(&list, &live)
        .unwrap_or_else(|inv| panic!("CHECK after DEL dup1: {inv}"));
    rt.del(&list, &live)
        .unwrap_or_else(|inv| panic!("DEL: {inv}"));
    assert_eq!(pod_leftovers(pod.name()), Vec::<String>::new());
    assert_eq!(pod_leftovers(other_pod.name()), Vec::<String>::new());
    assert_eq!(dirs.leftover_state(), Vec::<String>::new());
}
