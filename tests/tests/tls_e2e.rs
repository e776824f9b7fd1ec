//! TLS edge cases of the client against real TLS peers (openssl s_server) in a namespace of our
//! own: legacy-only cipher configurations give a clear error instead of a hang, a TLS server that
//! is not SoftEther is recognised as such, and a peer that never answers times out on schedule.

mod common;

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use softether_lab::netns::{spawn_in, Netns};
use softether_lab::ClientCert;

static COUNTER: AtomicU32 = AtomicU32::new(0);

struct Peer {
    ns: Netns,
    cert: ClientCert,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn peer_namespace() -> Peer {
    let id = format!(
        "{}-tls{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let dir = std::env::temp_dir().join(format!("softether-tls-{id}"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cert = ClientCert::generate(&dir, "tls-peer").expect("openssl certificate");
    let ns = Netns::create(&format!("se-x-{id}")).expect("netns");
    Peer {
        ns,
        cert,
        _dir: TempDir(dir),
    }
}

fn wait_listening(ns: &str, port: u16) {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        let ok = Command::new("ip")
            .args(["netns", "exec", ns, "bash", "-c"])
            .arg(format!("exec 3<>/dev/tcp/127.0.0.1/{port}"))
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing listens on 127.0.0.1:{port} in {ns}");
}

fn probe(ns: &str, port: u16, extra: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(common::workspace_bin("softether-sidecar"))
        .args([
            "probe",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--user",
            "u",
        ])
        .args(["--insecure", "--log", "error"])
        .args(extra)
        .env("SOFTETHER_PASSWORD", "pw")
        .output()
        .expect("run probe");
    (out, started.elapsed())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn s_server(peer: &Peer, port: u16, args: &[&str]) -> softether_lab::KillOnDrop {
    let cert = peer.cert.cert_pem.display().to_string();
    let key = peer.cert.key_pkcs8_pem.display().to_string();
    let accept = format!("127.0.0.1:{port}");
    let mut argv = vec![
        "openssl", "s_server", "-quiet", "-accept", &accept, "-cert", &cert, "-key", &key,
    ];
    argv.extend_from_slice(args);
    let child = spawn_in(peer.ns.name(), &argv).expect("openssl s_server");
    wait_listening(peer.ns.name(), port);
    child
}

#[test]
fn legacy_only_ciphers_fail_fast_with_a_clear_message() {
    let peer = peer_namespace();
    // What an old SoftEther 4.x config or an admin-pinned cipher looks like: TLS 1.2 only,
    // static-RSA CBC cipher, which rustls deliberately does not implement.
    let _server = s_server(&peer, 4433, &["-tls1_2", "-cipher", "AES128-SHA"]);
    let (out, took) = probe(peer.ns.name(), 4433, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("no common TLS cipher"), "{err}");
    assert!(
        err.contains("ECDHE"),
        "the message must say what the server needs: {err}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn a_tls_server_that_is_not_softether_is_named_as_such() {
    let peer = peer_namespace();
    // A plain HTTPS web server: TLS works, but the answer to the signature POST is an HTML error.
    let script = format!(
        "import http.server, ssl\n\
         srv = http.server.HTTPServer(('127.0.0.1', 4434), http.server.SimpleHTTPRequestHandler)\n\
         ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n\
         ctx.load_cert_chain('{}', '{}')\n\
         srv.socket = ctx.wrap_socket(srv.socket, server_side=True)\n\
         srv.serve_forever()\n",
        peer.cert.cert_pem.display(),
        peer.cert.key_pkcs8_pem.display()
    );
    let _server = spawn_in(peer.ns.name(), &["python3", "-c", &script]).expect("https server");
    wait_listening(peer.ns.name(), 4434);
    let (out, took) = probe(peer.ns.name(), 4434, &[]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.to_lowercase().contains("not a softether"), "{err}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn a_silent_peer_times_out_on_schedule() {
    let peer = peer_namespace();
    // Accepts TCP and never speaks: the TLS handshake must time out, not hang.
    let _listener = spawn_in(
        peer.ns.name(),
        &["python3", "-c", "import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('127.0.0.1',4435))\ns.listen(8)\nc=s.accept()\ntime.sleep(60)"],
    )
    .expect("listener");
    wait_listening(peer.ns.name(), 4435);
    let (out, took) = probe(peer.ns.name(), 4435, &["--connect-timeout", "2s"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("timed out"), "{err}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "took {took:?}"
    );
}
