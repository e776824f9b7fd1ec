//! `connect --proxy` through real proxies from Debian (tinyproxy for HTTP CONNECT with Basic
//! auth, dante for SOCKS5 and SOCKS4) while the client's direct path to the VPN server is
//! dropped by nftables: lease, traffic, a reconnect through the proxy, and refusals named.

mod common;

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::connect::{connect, exec, must};
use softether_lab::netns::{self, KillOnDrop};
use softether_lab::{Lab, LabOptions};

const HTTP_PORT: u16 = 8888;
const SOCKS_PORT: u16 = 1080;
const PROXY_USER: &str = "proxyuser";
const PROXY_PASSWORD: &str = "proxy-secret-42";

/// Drops the client's own TCP to the VPN server's port (with a counter), so only a proxy can
/// carry the session.
fn block_direct_path(lab: &Lab) {
    let f = &lab.facts;
    let ns = &f.client_ns;
    must(ns, &["nft", "add", "table", "inet", "seproxytest"]);
    must(
        ns,
        &[
            "nft",
            "add chain inet seproxytest out { type filter hook output priority 0 ; }",
        ],
    );
    must(
        ns,
        &[
            "nft",
            &format!(
                "add rule inet seproxytest out ip daddr {} tcp dport {} counter drop",
                f.server_ip, f.port
            ),
        ],
    );
}

/// Lifts the block (the lab's own "is the server back" probe runs from the client namespace).
fn unblock_direct_path(lab: &Lab) {
    must(
        &lab.facts.client_ns,
        &["nft", "delete", "table", "inet", "seproxytest"],
    );
}

/// Packets of direct attempts the block dropped.
fn direct_attempts(lab: &Lab) -> u64 {
    let out = must(
        &lab.facts.client_ns,
        &["nft", "list", "table", "inet", "seproxytest"],
    );
    out.split("packets ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Waits until `ip:port` accepts TCP from the client namespace (bounded).
fn wait_listening(lab: &Lab, ip: Ipv4Addr, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = SocketAddr::from((ip, port));
    loop {
        let ok = netns::run_in(&lab.facts.client_ns, move || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
        })
        .expect("probe from the client namespace");
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "{addr} never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// tinyproxy in the server's namespace, allowing CONNECT to the VPN port only, with Basic auth.
fn start_tinyproxy(lab: &Lab) -> (KillOnDrop, std::path::PathBuf) {
    let f = &lab.facts;
    let log = f.dir.join("tinyproxy.log");
    let conf = f.dir.join("tinyproxy.conf");
    fs::write(
        &conf,
        format!(
            "Port {HTTP_PORT}\nListen {ip}\nTimeout 600\nMaxClients 20\nAllow 198.18.0.0/15\n\
             ConnectPort {port}\nBasicAuth {PROXY_USER} {PROXY_PASSWORD}\nLogLevel Info\n\
             LogFile \"{log}\"\n",
            ip = f.server_ip,
            port = f.port,
            log = log.display()
        ),
    )
    .expect("tinyproxy config");
    let proxy = lab
        .spawn_in(
            &f.server_ns,
            &["tinyproxy", "-d", "-c", conf.to_str().expect("utf-8")],
        )
        .expect("tinyproxy");
    wait_listening(lab, f.server_ip, HTTP_PORT);
    (proxy, log)
}

/// dante (SOCKS4 and SOCKS5, no authentication) in the server's namespace.
fn start_dante(lab: &Lab) -> KillOnDrop {
    let f = &lab.facts;
    let conf = f.dir.join("danted.conf");
    fs::write(
        &conf,
        format!(
            "logoutput: stderr\ninternal: {ip} port = {SOCKS_PORT}\nexternal: {ip}\n\
             clientmethod: none\nsocksmethod: none\nuser.privileged: root\n\
             user.unprivileged: nobody\n\
             client pass {{\n  from: 0.0.0.0/0 to: 0.0.0.0/0\n  log: error\n}}\n\
             socks pass {{\n  from: 0.0.0.0/0 to: {ip}/32 port = {port}\n  command: connect\n  log: error\n}}\n",
            ip = f.server_ip,
            port = f.port,
        ),
    )
    .expect("danted config");
    let proxy = lab
        .spawn_in(
            &f.server_ns,
            &["danted", "-f", conf.to_str().expect("utf-8")],
        )
        .expect("danted");
    wait_listening(lab, f.server_ip, SOCKS_PORT);
    proxy
}

fn ping_lan(lab: &Lab) -> (bool, String) {
    exec(
        &lab.facts.client_ns,
        &[
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            &lab.facts.lan_host.to_string(),
        ],
    )
}

#[test]
fn http_proxy_with_basic_auth_carries_the_session_and_its_reconnects() {
    let mut lab = Lab::start(LabOptions::default()).expect("lab");
    block_direct_path(&lab);
    let (_proxy, proxy_log) = start_tinyproxy(&lab);
    let pw_file = lab.facts.dir.join("proxy.pw");
    fs::write(&pw_file, format!("{PROXY_PASSWORD}\n")).expect("password file");
    let url = format!("http://{PROXY_USER}@{}:{HTTP_PORT}", lab.facts.server_ip);
    let mut client = connect(
        &lab,
        &[
            "--proxy",
            &url,
            "--proxy-password-file",
            pw_file.to_str().expect("utf-8"),
            "--reconnect-delay",
            "500ms",
        ],
    );
    client.wait_log("lease acquired", Duration::from_secs(30));
    let (ok, out) = ping_lan(&lab);
    assert!(
        ok,
        "no traffic through the proxied session:\n{out}\n{}",
        client.log_text()
    );
    // A reconnect goes through the proxy too (probes included). The lab checks the restarted
    // server from the client namespace, so the block is lifted around the restart only.
    assert_eq!(
        direct_attempts(&lab),
        0,
        "the client tried the server directly"
    );
    lab.kill_server();
    client.wait_log("session lost", Duration::from_secs(30));
    unblock_direct_path(&lab);
    lab.restart_server().expect("restart the server");
    block_direct_path(&lab);
    client.wait_log_count("lease acquired", 2, Duration::from_secs(60));
    let (ok, out) = ping_lan(&lab);
    assert!(
        ok,
        "no traffic after the reconnect:\n{out}\n{}",
        client.log_text()
    );
    let log = client.log_text();
    assert!(client.stop().success(), "{log}");
    assert!(
        !log.contains(PROXY_PASSWORD),
        "the proxy password leaked into the log"
    );
    assert_eq!(
        direct_attempts(&lab),
        0,
        "the client tried the server directly"
    );
    let proxied = fs::read_to_string(&proxy_log).unwrap_or_default();
    assert!(
        proxied.contains("CONNECT") || proxied.contains("Established connection"),
        "tinyproxy saw no tunnel:\n{proxied}"
    );
}

#[test]
fn socks5_and_socks4_proxies_carry_the_session() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    block_direct_path(&lab);
    let _proxy = start_dante(&lab);
    for scheme in ["socks5", "socks4"] {
        let url = format!("{scheme}://{}:{SOCKS_PORT}", lab.facts.server_ip);
        let mut client = connect(&lab, &["--proxy", &url]);
        client.wait_log("lease acquired", Duration::from_secs(30));
        let (ok, out) = ping_lan(&lab);
        assert!(ok, "{scheme}: no traffic:\n{out}\n{}", client.log_text());
        assert!(client.stop().success(), "{scheme}: {}", client.log_text());
    }
    assert_eq!(
        direct_attempts(&lab),
        0,
        "the client tried the server directly"
    );
}

#[test]
fn proxy_refusals_are_named() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    block_direct_path(&lab);
    let (_proxy, _) = start_tinyproxy(&lab);
    let dir = &lab.facts.dir;
    let wrong = dir.join("wrong.pw");
    fs::write(&wrong, "not-the-password\n").expect("password file");
    let url = format!("http://{PROXY_USER}@{}:{HTTP_PORT}", lab.facts.server_ip);

    // Wrong proxy password: refused for good, the status line named, the password never shown.
    let mut client = connect(
        &lab,
        &[
            "--proxy",
            &url,
            "--proxy-password-file",
            wrong.to_str().expect("utf-8"),
        ],
    );
    let status = client.wait_exit(Duration::from_secs(30));
    let log = client.log_text();
    assert_eq!(status.code(), Some(3), "{log}");
    // tinyproxy answers 401 where RFC 7235 says 407; either is an authentication failure.
    assert!(log.contains("proxy authentication failed"), "{log}");
    assert!(!log.contains("not-the-password"), "{log}");

    // No credentials at all: the same refusal, named.
    let anon = format!("http://{}:{HTTP_PORT}", lab.facts.server_ip);
    let mut client = connect(&lab, &["--proxy", &anon]);
    assert_eq!(client.wait_exit(Duration::from_secs(30)).code(), Some(3));
    assert!(
        client.log_text().contains("proxy authentication failed"),
        "{}",
        client.log_text()
    );

    // Nothing listens where the proxy should be: retried, and said so.
    let nowhere = format!("socks5://{}:1", lab.facts.server_ip);
    let mut client = connect(&lab, &["--proxy", &nowhere, "--reconnect-delay", "200ms"]);
    client.wait_log("cannot reach the proxy", Duration::from_secs(30));
    client.terminate();
    client.wait_exit(Duration::from_secs(10));

    // A password in the URL is refused before anything happens (exit 2: bad usage).
    let inline = format!(
        "http://{PROXY_USER}:{PROXY_PASSWORD}@{}:{HTTP_PORT}",
        lab.facts.server_ip
    );
    let mut client = connect(&lab, &["--proxy", &inline]);
    let status = client.wait_exit(Duration::from_secs(10));
    let log = client.log_text();
    assert_ne!(status.code(), Some(0), "{log}");
    assert!(log.contains("must not carry a password"), "{log}");
    assert!(!log.contains(PROXY_PASSWORD), "{log}");
}
