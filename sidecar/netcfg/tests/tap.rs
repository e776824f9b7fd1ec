//! Root tests: TAP creation inside a namespace, persistence, async frame I/O.

mod common;

use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

use common::{unique, TestNetns};
use netcfg::{Netlink, Tap, TapConfig};

#[tokio::test]
async fn tap_is_created_in_the_netns_not_in_the_host() {
    let ns = TestNetns::new();
    let name = unique("st");
    let tap = Tap::create(
        &ns.netns(),
        &TapConfig {
            name: Some(name.clone()),
            persistent: false,
            vnet_hdr: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(tap.name(), name);
    let shown = ns.ip(&["-d", "link", "show", "dev", &name]);
    assert!(shown.contains("tun type tap"), "{shown}");
    assert!(!host_has_link(&name), "TAP leaked into the host netns");
    drop(tap);
    assert!(
        !ns.ip_ok(&["link", "show", "dev", &name]),
        "non-persistent TAP outlived its fd"
    );
}

#[tokio::test]
async fn kernel_assigns_a_name_when_none_given() {
    let ns = TestNetns::new();
    let tap = Tap::create(&ns.netns(), &TapConfig::default())
        .await
        .unwrap();
    assert!(tap.name().starts_with("tap"), "{}", tap.name());
    assert!(ns.ip_ok(&["link", "show", "dev", tap.name()]));
}

#[tokio::test]
async fn persistent_tap_survives_and_can_be_reopened_then_deleted() {
    let ns = TestNetns::new();
    let name = unique("st");
    let config = TapConfig {
        name: Some(name.clone()),
        persistent: true,
        vnet_hdr: false,
    };
    drop(Tap::create(&ns.netns(), &config).await.unwrap());
    assert!(
        ns.ip_ok(&["link", "show", "dev", &name]),
        "persistent TAP vanished"
    );

    // Creating again is exclusive: the name is taken.
    let err = Tap::create(&ns.netns(), &config).await.unwrap_err();
    assert_eq!(err.errno(), Some(libc::EBUSY), "{err}");

    // Re-attach from a different thread and fd; TUNGETIFF on a passed-around fd agrees.
    let netns = ns.netns();
    let reopened = std::thread::spawn({
        let name = name.clone();
        move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(Tap::open_persistent(&netns, &name)).unwrap()
        }
    })
    .join()
    .unwrap();
    assert_eq!(reopened.name(), name);
    let via_fd = Tap::from_fd(reopened.into_fd()).unwrap();
    assert_eq!(via_fd.name(), name);
    drop(via_fd);

    Tap::delete_persistent(&ns.netns(), &name).await.unwrap();
    assert!(
        !ns.ip_ok(&["link", "show", "dev", &name]),
        "TAP not deleted"
    );
    // Deleting again is fine.
    Tap::delete_persistent(&ns.netns(), &name).await.unwrap();
    assert!(!ns.ip_ok(&["link", "show", "dev", &name]));
}

const TAP_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const NEIGHBOUR_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const NEIGHBOUR_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x02];

#[tokio::test]
async fn async_tap_reads_kernel_arp_and_writes_a_reply() {
    let ns = TestNetns::new();
    let tap = Tap::create(&ns.netns(), &TapConfig::default())
        .await
        .unwrap()
        .into_async()
        .unwrap();
    let nl = Netlink::open(ns.netns()).await.unwrap();
    let idx = nl.link_index(tap.name()).await.unwrap();
    nl.add_address(idx, "198.18.0.1/24".parse().unwrap())
        .await
        .unwrap();
    nl.set_link_up(idx).await.unwrap();

    let mut buf = [0u8; 2048];
    assert_eq!(
        tap.try_recv(&mut buf).map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::WouldBlock),
        "nothing should be queued yet"
    );

    // A UDP datagram to the neighbour makes the kernel ARP for it on the TAP.
    ns.netns()
        .run(|| {
            let sock = UdpSocket::bind((TAP_IP, 0)).unwrap();
            sock.send_to(b"hello", (NEIGHBOUR_IP, 9)).unwrap();
        })
        .unwrap();
    let arp = read_until(&tap, &mut buf, |f| is_arp_request_for(f, NEIGHBOUR_IP)).await;
    let tap_mac: [u8; 6] = arp[6..12].try_into().unwrap();

    // Answer it; the kernel then releases the queued UDP frame, addressed to our MAC.
    tap.send(&arp_reply(tap_mac)).await.unwrap();
    let udp = read_until(&tap, &mut buf, is_udp_to_neighbour).await;
    assert_eq!(&udp[..6], &NEIGHBOUR_MAC);
    assert!(udp.ends_with(b"hello"));
}

/// Read frames (at most 50, 5 s each) until one matches.
async fn read_until(
    tap: &netcfg::AsyncTap,
    buf: &mut [u8],
    pred: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    for _ in 0..50 {
        let n = tokio::time::timeout(Duration::from_secs(5), tap.recv(buf))
            .await
            .expect("no frame from the TAP within 5 s")
            .unwrap();
        if pred(&buf[..n]) {
            return buf[..n].to_vec();
        }
        // Drain whatever else is queued without waiting, as a batching driver would.
        while let Ok(m) = tap.try_recv(buf) {
            if pred(&buf[..m]) {
                return buf[..m].to_vec();
            }
        }
    }
    panic!("expected frame not seen in 50 frames");
}

fn is_arp_request_for(f: &[u8], target: Ipv4Addr) -> bool {
    f.len() >= 42
        && f[12..14] == [0x08, 0x06]
        && f[20..22] == [0, 1]
        && f[38..42] == target.octets()
}

fn is_udp_to_neighbour(f: &[u8]) -> bool {
    f.len() >= 42 && f[12..14] == [0x08, 0x00] && f[23] == 17 && f[30..34] == NEIGHBOUR_IP.octets()
}

fn arp_reply(tap_mac: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&tap_mac);
    f.extend_from_slice(&NEIGHBOUR_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    f.extend_from_slice(&NEIGHBOUR_MAC);
    f.extend_from_slice(&NEIGHBOUR_IP.octets());
    f.extend_from_slice(&tap_mac);
    f.extend_from_slice(&TAP_IP.octets());
    f
}

fn host_has_link(name: &str) -> bool {
    // The test process itself lives in the host namespace.
    std::process::Command::new("ip")
        .args(["link", "show", "dev", name])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[tokio::test]
async fn persistent_tap_can_be_deleted_over_netlink_while_attached() {
    let ns = TestNetns::new();
    let name = unique("st");
    let config = TapConfig {
        name: Some(name.clone()),
        persistent: true,
        vnet_hdr: false,
    };
    let tap = Tap::create(&ns.netns(), &config).await.unwrap();
    let busy = Tap::delete_persistent(&ns.netns(), &name)
        .await
        .unwrap_err();
    assert_eq!(busy.errno(), Some(libc::EBUSY), "{busy}");
    let nl = Netlink::open(ns.netns()).await.unwrap();
    nl.delete_link(&name).await.unwrap();
    assert!(!ns.ip_ok(&["link", "show", "dev", &name]));
    drop(tap);
}

#[tokio::test]
async fn missing_netns_is_an_error_naming_it() {
    common::require_root();
    let ns = netcfg::Netns::named(&unique("netcfg-missing-"));
    let err = Tap::create(&ns, &TapConfig::default()).await.unwrap_err();
    assert!(
        matches!(err, netcfg::NetcfgError::EnterNetns { .. }),
        "{err}"
    );
    let err = Netlink::open(ns).await.unwrap_err();
    assert!(err.to_string().contains("netcfg-missing-"), "{err}");
}
