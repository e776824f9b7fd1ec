//! Root tests: which frame mode a TAP fd ends up in ([`Tap::setup_offload`]) for every mix of
//! who created the TAP (a plugin with or without `IFF_VNET_HDR`) and who attaches.

mod common;

use common::{unique, TestNetns};
use netcfg::{Tap, TapConfig, TapOffload};

async fn create(ns: &TestNetns, name: &str, persistent: bool, vnet_hdr: bool) -> Tap {
    let config = TapConfig {
        name: Some(name.to_owned()),
        persistent,
        vnet_hdr,
    };
    Tap::create(&ns.netns(), &config).await.unwrap()
}

#[tokio::test]
async fn a_vnet_hdr_tap_takes_the_offloads_or_keeps_the_header_without_them() {
    let ns = TestNetns::new();
    let mut tap = create(&ns, &unique("so"), false, true).await;
    assert_eq!(tap.offload(), TapOffload::Plain, "nothing set up yet");
    assert_eq!(tap.setup_offload(true), TapOffload::Offload);
    assert_eq!(tap.setup_offload(false), TapOffload::Header);
    assert_eq!(tap.setup_offload(true), TapOffload::Offload);
}

#[tokio::test]
async fn a_tap_from_an_older_plugin_stays_plain_until_it_is_reattached() {
    let ns = TestNetns::new();
    let name = unique("so");
    // An older plugin: persistent TAP without IFF_VNET_HDR, its fd passed to the daemon.
    let passed = create(&ns, &name, true, false).await;
    let mut tap = Tap::from_fd(passed.into_fd()).unwrap();
    assert_eq!(tap.setup_offload(true), TapOffload::Plain);
    drop(tap);
    // A daemon restart re-attaches by name and gets the header.
    let mut tap = Tap::open_persistent(&ns.netns(), &name).await.unwrap();
    assert_eq!(tap.setup_offload(true), TapOffload::Offload);
    tap.set_persistent(false).unwrap();
}

#[tokio::test]
async fn a_fd_passed_from_a_new_plugin_keeps_its_header() {
    let ns = TestNetns::new();
    let name = unique("so");
    let passed = create(&ns, &name, true, true).await;
    let mut tap = Tap::from_fd(passed.into_fd()).unwrap();
    assert_eq!(tap.setup_offload(true), TapOffload::Offload);
    tap.set_persistent(false).unwrap();
}
