//! A DHCP server that sends an MTU (option 26): `connect` applies it to the TAP unless `--mtu`
//! was given. SecureNAT's DHCP server cannot send option 26, so this test switches it off and
//! runs dnsmasq on the lan host, which sits on the hub through the local bridge.

mod common;

use std::time::Duration;

use common::connect::{connect, must, TAP};
use softether_lab::{Lab, LabOptions};

fn tap_mtu(lab: &Lab) -> u32 {
    let out = must(
        &lab.facts.client_ns,
        &["cat", &format!("/sys/class/net/{TAP}/mtu")],
    );
    out.trim().parse().expect("mtu")
}

#[test]
fn lease_mtu_is_applied_unless_the_user_fixed_one() {
    let lab = Lab::start(LabOptions {
        extra_hub_commands: vec![vec!["DhcpDisable".into()]],
        ..Default::default()
    })
    .expect("lab");
    let f = &lab.facts;
    let leases = f.dir.join("dnsmasq.leases");
    let lease_file = format!("--dhcp-leasefile={}", leases.display());
    let lan_if = format!("--interface={}", f.lan_if);
    let router = format!("--dhcp-option=3,{}", f.gateway);
    let _dnsmasq = lab
        .spawn_in(
            &f.lan_ns,
            &[
                "dnsmasq",
                "--no-daemon",
                "--conf-file=/dev/null",
                "--port=0",
                "--bind-interfaces",
                &lan_if,
                "--dhcp-range=10.99.0.100,10.99.0.120,255.255.255.0,120",
                &router,
                "--dhcp-option=26,1400",
                &lease_file,
            ],
        )
        .expect("dnsmasq");

    let mut client = connect(&lab, &[]);
    client.wait_log("lease acquired", Duration::from_secs(30));
    let address = client.leased_address();
    assert!(
        address.octets()[3] >= 100 && address.octets()[3] <= 120,
        "lease {address} must come from dnsmasq"
    );
    assert_eq!(tap_mtu(&lab), 1400, "option 26 applied");
    assert!(
        lab.ping_from(&f.client_ns, f.lan_host, 3).expect("ping"),
        "lan host through the tunnel"
    );
    client.stop();

    // An explicit --mtu wins over the lease.
    let mut client = connect(&lab, &["--mtu", "1300"]);
    client.wait_log("lease acquired", Duration::from_secs(30));
    assert_eq!(tap_mtu(&lab), 1300, "--mtu overrides option 26");
    client.stop();
}
