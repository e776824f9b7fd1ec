//! The session layer against the real SoftEther VPN Server (issue 2): frames built by the test
//! cross the tunnel to SecureNAT's gateway and to the lan host behind the local bridge; an idle
//! session outlives the hub's timeout thanks to keepalives; a dead server is detected.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::session::{block_on_in_netns, TunnelHost};
use softether_lab::{Lab, LabOptions};
use softether_proto::handshake::Credential;
use softether_proto::password::hash_password;
use softether_sidecar::transport::credentials::client_info;
use softether_sidecar::transport::driver::{spawn_tunnel, TunnelExit};
use softether_sidecar::transport::tls::TlsVerify;
use softether_sidecar::transport::{connection::SessionConfig, establish::establish};

/// A static address inside the hub subnet but outside SecureNAT's DHCP range.
const STATIC_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 150);
const MAC: [u8; 6] = [0x5e, 0x00, 0x7e, 0x57, 0x00, 0x01];

fn config(lab: &Lab) -> SessionConfig {
    let f = &lab.facts;
    SessionConfig {
        host: f.server_ip.to_string(),
        port: f.port,
        hub: f.hub.clone(),
        username: f.alice.name.clone(),
        credential: Credential::HashedPassword(hash_password(&f.alice.name, &f.alice.password)),
        tls: TlsVerify::PinSha256(
            softether_sidecar::transport::tls::parse_pin(&f.server_cert_sha256).expect("lab pin"),
        ),
        max_connection: 1,
        connect_timeout: Duration::from_secs(10),
        handshake_timeout: Duration::from_secs(10),
        info: client_info(&f.alice.name, &f.hub),
        seed: 7,
        proxy: None,
        udp_acceleration: None,
        compress: false,
        half_connection: false,
    }
}

#[test]
fn frames_reach_the_securenat_gateway_and_the_lan_host_and_back() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let f = lab.facts.clone();
    let config = config(&lab);
    block_on_in_netns(&f.client_ns, || async move {
        let est = establish(&config).await.expect("login");
        let mut host = TunnelHost::new(spawn_tunnel(est, 1), MAC, STATIC_IP);
        let gw_mac = host
            .resolve(f.gateway)
            .await
            .expect("ARP reply from the SecureNAT gateway");
        assert_ne!(gw_mac, [0; 6]);
        let rtt = host
            .ping(f.gateway, gw_mac)
            .await
            .expect("echo reply from the gateway");
        println!("gateway {} at {gw_mac:02x?}: rtt {rtt:?}", f.gateway);
        // The lan host sits behind the hub's local bridge; it ARPs for us before answering,
        // which TunnelHost answers.
        let rtt = host
            .reach(f.lan_host, 3)
            .await
            .expect("echo reply from the lan host");
        println!("lan host {}: rtt {rtt:?}", f.lan_host);
        let stats = host.tunnel.stats();
        let (result, stats_at_close) = host.tunnel.close().await;
        result.expect("clean close");
        assert!(stats_at_close.tunnel.frames_in >= 4, "{stats:?}");
        assert!(stats_at_close.tunnel.frames_out >= 4, "{stats:?}");
    });
}

#[test]
fn idle_session_outlives_the_hub_timeout_thanks_to_keepalives() {
    let lab = Lab::start(LabOptions {
        session_timeout_secs: Some(5),
        ..Default::default()
    })
    .expect("lab");
    let f = lab.facts.clone();
    let config = config(&lab);
    block_on_in_netns(&f.client_ns, || async move {
        let est = establish(&config).await.expect("login");
        assert_eq!(
            est.welcome.timeout,
            Duration::from_secs(5),
            "hub policy TimeOut=5"
        );
        let mut host = TunnelHost::new(spawn_tunnel(est, 2), MAC, STATIC_IP);
        // Three timeouts without a single data frame from us.
        tokio::time::sleep(Duration::from_secs(15)).await;
        assert!(!host.tunnel.is_finished(), "session died while idle");
        let stats = host.tunnel.stats();
        assert!(stats.tunnel.keepalives_out >= 3, "{stats:?}");
        assert!(
            host.reach(f.gateway, 3).await.is_some(),
            "session unusable after idling"
        );
        host.tunnel.close().await.0.expect("clean close");
    });
}

#[test]
fn killed_server_is_detected_promptly() {
    let mut lab = Lab::start(LabOptions {
        session_timeout_secs: Some(5),
        ..Default::default()
    })
    .expect("lab");
    let client_ns = lab.facts.client_ns.clone();
    let config = config(&lab);
    let lab = &mut lab;
    let (result, took) = block_on_in_netns(&client_ns, || async move {
        let est = establish(&config).await.expect("login");
        let handle = spawn_tunnel(est, 3);
        lab.kill_server();
        let killed = Instant::now();
        let (result, _) = tokio::time::timeout(Duration::from_secs(8), handle.join())
            .await
            .expect("tunnel did not notice the dead server within 8 s");
        (result, killed.elapsed())
    });
    println!("server kill detected after {took:?}: {result:?}");
    assert!(
        matches!(
            result,
            Err(TunnelExit::ServerClosed { .. } | TunnelExit::Timeout { .. })
        ),
        "{result:?}"
    );
    assert!(
        took <= Duration::from_secs(7),
        "timeout is 5 s; took {took:?}"
    );
}

#[test]
fn silent_server_is_detected_by_the_session_timeout() {
    let lab = Lab::start(LabOptions {
        session_timeout_secs: Some(5),
        ..Default::default()
    })
    .expect("lab");
    let f = lab.facts.clone();
    let config = config(&lab);
    let lab = &lab;
    let (result, took) = block_on_in_netns(&f.client_ns, || async move {
        let est = establish(&config).await.expect("login");
        let handle = spawn_tunnel(est, 4);
        // Blackhole the server: drop everything it receives and sends, without resetting anything.
        let rules = "add table inet blackhole\n\
                     add chain inet blackhole in { type filter hook input priority -300; policy drop; }\n\
                     add chain inet blackhole out { type filter hook output priority -300; policy drop; }\n";
        let nft = lab
            .exec_in(
                &f.server_ns,
                &["sh", "-c", &format!("printf '{rules}' | nft -f -")],
            )
            .expect("nft");
        assert!(
            nft.status.success(),
            "nft: {}",
            String::from_utf8_lossy(&nft.stderr)
        );
        let silenced = Instant::now();
        let (result, _) = tokio::time::timeout(Duration::from_secs(10), handle.join())
            .await
            .expect("tunnel did not detect the silent server within 10 s");
        (result, silenced.elapsed())
    });
    println!("silent server detected after {took:?}: {result:?}");
    assert!(
        matches!(result, Err(TunnelExit::Timeout { .. })),
        "{result:?}"
    );
    assert!(
        took >= Duration::from_secs(3) && took <= Duration::from_secs(7),
        "took {took:?}"
    );
}

#[test]
fn a_session_spreads_over_several_tcp_connections() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let f = lab.facts.clone();
    let mut config = config(&lab);
    config.max_connection = 4;
    let lab = &lab;
    block_on_in_netns(&f.client_ns, || async move {
        let est = establish(&config).await.expect("login");
        assert_eq!(
            est.additional.len(),
            3,
            "3 additional_connect joins expected"
        );
        let session = est.welcome.session_name.clone();
        let mut host = TunnelHost::new(spawn_tunnel(est, 5), MAC, STATIC_IP);
        assert_eq!(host.tunnel.connections(), 4);
        for _ in 0..5 {
            assert!(
                host.reach(f.lan_host, 3).await.is_some(),
                "lan host unreachable"
            );
        }
        let info = lab.vpncmd(&["SessionGet", &session]).expect("SessionGet");
        let line = info
            .lines()
            .find(|l| l.contains("Number of TCP Connections"))
            .unwrap_or_else(|| panic!("no connection count in:\n{info}"));
        assert!(line.trim_end().ends_with('4'), "{line}");
        let stats = host.tunnel.stats();
        assert!(stats.tunnel.keepalives_out + stats.tunnel.frames_out > 0);
        host.tunnel.close().await.0.expect("clean close");
    });
}
