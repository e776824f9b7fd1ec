//! Router advertisement options against the real server, from radvd on the lan host: the MTU
//! option becomes the TAP's IPv6 MTU, a Route Information option (RFC 4191) a route via the
//! router with `--accept-static-routes`, a zero preferred lifetime a deprecated address (which a
//! new preferred lifetime revives in place); radvd withdrawing its default route and routes (SIGTERM) removes them; the `--on-change` hook
//! sees the IPv6 variables; stopping leaves the namespace as it was.
//!
//! Needs `cargo build --workspace --bins` first, and root.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::connect::{client_snapshot, connect, exec, must, TAP};
use common::ipv6_lab::{self, lab, ping6, radvd, radvd_conf, wait_for, DNS6, LAN_HOST6, PREFIX};

const ROUTED: &str = "fd5e:7e4e:99::/48";

fn route6(ns: &str, dst: &str) -> String {
    exec(ns, &["ip", "-6", "route", "show", dst]).1
}

fn signal(pid: u32, sig: &str) {
    let sent = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {sig} {pid}");
}

#[test]
fn mtu_route_information_deprecation_withdrawal_and_hook_variables() {
    let lab = lab();
    let f = &lab.facts;
    let options = format!(
        "AdvDefaultLifetime 600; AdvLinkMTU 1400; route {ROUTED} {{ AdvRoutePreference high; AdvRouteLifetime 600; }};"
    );
    let router = radvd(
        &lab,
        &options,
        "AdvValidLifetime 600; AdvPreferredLifetime 0;",
    );
    let hook_log = f.dir.join("hook6.log");
    let hook = f.dir.join("hook6.sh");
    fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"$SOFTETHER_EVENT a6=$SOFTETHER_ADDRESS6 p6=$SOFTETHER_PREFIX6 all6=$SOFTETHER_ADDRESSES6 gw6=$SOFTETHER_GATEWAY6 dns6=$SOFTETHER_DNS6\" >> '{}'\n",
            hook_log.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
    let before = client_snapshot(&lab);
    let rules_before = must(&f.client_ns, &["ip", "-6", "rule"]);

    let mut client = connect(
        &lab,
        &[
            "--accept-default-gateway",
            "--accept-static-routes",
            "--on-change",
            hook.to_str().unwrap(),
        ],
    );
    let ns = f.client_ns.as_str();
    let address = wait_for(Duration::from_secs(40), || {
        ipv6_lab::global_addresses(ns, TAP)
            .into_iter()
            .find(|a| a.starts_with(PREFIX.trim_end_matches(':')))
    })
    .unwrap_or_else(|| panic!("no IPv6 address on {TAP}:\n{}", client.log_text()));
    let host = address.split('/').next().unwrap().to_owned();

    // Preferred lifetime 0: the address is there, deprecated, and still works as the only one.
    let shown = must(
        ns,
        &[
            "ip", "-6", "-o", "addr", "show", "dev", TAP, "scope", "global",
        ],
    );
    assert!(shown.contains("deprecated"), "{shown}");
    assert!(ping6(ns, LAN_HOST6), "ping -6 from the deprecated address");
    // The MTU option: the TAP's IPv6 MTU, below its link MTU.
    let conf_mtu = must(ns, &["cat", &format!("/proc/sys/net/ipv6/conf/{TAP}/mtu")]);
    let link_mtu = must(ns, &["cat", &format!("/sys/class/net/{TAP}/mtu")]);
    let (conf_mtu, link_mtu): (u32, u32) = (
        conf_mtu.trim().parse().unwrap(),
        link_mtu.trim().parse().unwrap(),
    );
    assert_eq!(conf_mtu, 1400.min(link_mtu), "link MTU {link_mtu}");
    // The Route Information option: a route via the router's link-local address.
    let routed = wait_for(Duration::from_secs(10), || {
        let r = route6(ns, ROUTED);
        r.contains("via fe80::").then_some(r)
    })
    .unwrap_or_else(|| panic!("no {ROUTED} route:\n{}", client.log_text()));
    assert!(routed.contains(&format!("dev {TAP}")), "{routed}");
    let default = route6(ns, "default");
    assert!(
        default.contains("via fe80::") && default.contains(TAP),
        "{default}"
    );

    // The hook saw the IPv6 facts (with the lease's `acquired`, or `acquired6` after it).
    let line = wait_for(Duration::from_secs(15), || {
        let text = fs::read_to_string(&hook_log).unwrap_or_default();
        text.lines()
            .find(|l| l.contains(&format!("a6={host} ")))
            .map(str::to_owned)
    })
    .unwrap_or_else(|| {
        panic!(
            "no hook run with {host}: {:?}",
            fs::read_to_string(&hook_log)
        )
    });
    assert!(
        line.starts_with("acquired ") || line.starts_with("acquired6 "),
        "{line}"
    );
    assert!(line.contains(&format!("all6={address} ")), "{line}");
    assert!(
        line.contains(" p6=64 ") && line.contains(" gw6=fe80::"),
        "{line}"
    );
    assert!(line.ends_with(&format!("dns6={DNS6}")), "{line}");

    // A preferred lifetime again (radvd rereads its configuration): the same address, in place,
    // no longer deprecated.
    radvd_conf(
        &lab,
        &options,
        "AdvValidLifetime 600; AdvPreferredLifetime 300;",
    );
    signal(router.id(), "-HUP");
    let revived = wait_for(Duration::from_secs(30), || {
        let shown = must(
            ns,
            &[
                "ip", "-6", "-o", "addr", "show", "dev", TAP, "scope", "global",
            ],
        );
        (!shown.contains("deprecated")).then_some(shown)
    })
    .unwrap_or_else(|| panic!("still deprecated:\n{}", client.log_text()));
    assert!(revived.contains(&address), "{revived}");

    // radvd stops: its last advertisement has router lifetime 0 and route lifetime 0.
    signal(router.id(), "-TERM");
    let withdrawn = wait_for(Duration::from_secs(15), || {
        (!route6(ns, "default").contains(TAP) && !route6(ns, ROUTED).contains("via")).then_some(())
    });
    assert!(
        withdrawn.is_some(),
        "default: {} routed: {}\n{}",
        route6(ns, "default"),
        route6(ns, ROUTED),
        client.log_text()
    );
    // The prefix stays (its lifetimes did not end): the address too.
    assert_eq!(ipv6_lab::global_addresses(ns, TAP), [address.as_str()]);

    assert!(client.stop().success(), "{}", client.log_text());
    assert_eq!(before, client_snapshot(&lab), "state left behind");
    assert_eq!(rules_before, must(&f.client_ns, &["ip", "-6", "rule"]));
    let events = fs::read_to_string(&hook_log).unwrap();
    assert!(
        events.lines().last().unwrap().starts_with("released "),
        "{events}"
    );
}
