//! Session options against the real server (issue 12):
//! - `--compress`: the server's SessionGet shows "Use of Compression: Yes", and a TCP transfer
//!   through the tunnel arrives intact — first over compressed TCP blocks, then once UDP
//!   acceleration is active, both ways, where both ends send zlib payloads flagged as compressed:
//!   the datagrams to and from the server's acceleration port carry the transfer in far fewer
//!   bytes than its size (half of it compresses well);
//! - `--half-connection`: SessionGet shows half-duplex mode with one uplink and one downlink
//!   connection, and transfers both ways arrive intact.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::connect::{connect, Connect};
use softether_lab::vpncmd::parse_table;
use softether_lab::{Lab, LabOptions};

const PORT: u16 = 5001;
/// Half random (incompressible), half repetitive (compressible).
const SIZE: usize = 4 << 20;

const RECEIVER: &str = r#"
import hashlib, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
s.settimeout(60)
c, _ = s.accept()
c.settimeout(60)
h, n = hashlib.sha256(), 0
while True:
    d = c.recv(65536)
    if not d:
        break
    h.update(d)
    n += len(d)
c.sendall(f"{n} {h.hexdigest()}\n".encode())
c.close()
"#;

const SENDER: &str = r#"
import hashlib, random, socket, sys
size = int(sys.argv[3])
data = random.Random(7).randbytes(size // 2) + bytes(range(256)) * (size // 512)
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)
c.sendall(data)
c.shutdown(socket.SHUT_WR)
reply = b""
while not reply.endswith(b"\n"):
    d = c.recv(100)
    if not d:
        break
    reply += d
print(f"{len(data)} {hashlib.sha256(data).hexdigest()}")
print(reply.decode().strip())
"#;

/// Sends [`SIZE`] bytes from the client namespace to the LAN host over TCP through the tunnel;
/// returns (what was sent, what the receiver counted), each as "bytes sha256".
fn transfer(lab: &Lab) -> (String, String) {
    let f = &lab.facts;
    transfer_between(lab, &f.client_ns, &f.lan_ns, f.lan_host)
}

/// The other way: from the LAN host to our leased address.
fn transfer_down(lab: &Lab, client: &Connect) -> (String, String) {
    let f = &lab.facts;
    transfer_between(lab, &f.lan_ns, &f.client_ns, client.leased_address())
}

fn transfer_between(
    lab: &Lab,
    sender_ns: &str,
    receiver_ns: &str,
    receiver: Ipv4Addr,
) -> (String, String) {
    let host = receiver.to_string();
    let port = PORT.to_string();
    let _receiver = lab
        .spawn_in(receiver_ns, &["python3", "-c", RECEIVER, &host, &port])
        .expect("receiver");
    // The receiver needs a moment to listen: retry the connection (bounded).
    let start = Instant::now();
    loop {
        let out = lab
            .exec_in(
                sender_ns,
                &["python3", "-c", SENDER, &host, &port, &SIZE.to_string()],
            )
            .expect("sender");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines();
        if let (true, Some(sent), Some(got)) = (out.status.success(), lines.next(), lines.next()) {
            return (sent.to_owned(), got.to_owned());
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "transfer failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The server binds its acceleration sockets in this range (`UDP_SERVER_PORT_LOWER/HIGHER`).
const SERVER_UDP_PORTS: &str = "40000-44999";

/// Counts, in the server namespace, the bytes of UDP datagrams to (`up`) and from (`down`) the
/// acceleration ports.
fn install_udp_byte_counters(lab: &Lab) {
    let rules = format!(
        "add table inet udpbytes\n\
         add chain inet udpbytes in {{ type filter hook input priority 0; }}\n\
         add chain inet udpbytes out {{ type filter hook output priority 0; }}\n\
         add counter inet udpbytes up\n\
         add counter inet udpbytes down\n\
         add rule inet udpbytes in udp dport {SERVER_UDP_PORTS} counter name up\n\
         add rule inet udpbytes out udp sport {SERVER_UDP_PORTS} counter name down\n"
    );
    common::nft::apply(lab, &lab.facts.server_ns, &rules);
}

fn udp_bytes(lab: &Lab, name: &str) -> u64 {
    common::nft::counter(lab, &lab.facts.server_ns, "udpbytes", name, "bytes")
}

/// Runs `transfer` and returns how many bytes crossed the acceleration port in direction `name`.
fn udp_bytes_during(lab: &Lab, name: &str, transfer: impl FnOnce()) -> u64 {
    let before = udp_bytes(lab, name);
    transfer();
    udp_bytes(lab, name) - before
}

fn session_value(lab: &Lab, item: &str) -> Option<String> {
    let sessions = lab.user_sessions().expect("SessionList");
    let out = lab
        .vpncmd(&["SessionGet", sessions.first()?])
        .expect("SessionGet");
    parse_table(&out)
        .into_iter()
        .find(|(k, _)| k == item)
        .map(|(_, v)| v)
}

/// Polls `SessionGet` until `item` reads `want` (bounded).
fn wait_session_value(lab: &Lab, item: &str, want: &str) {
    let start = Instant::now();
    loop {
        let now = session_value(lab, item);
        if now.as_deref() == Some(want) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "{item} stayed {now:?}, wanted {want}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn compressed_session_transfers_intact_over_tcp_and_udp() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let mut client = connect(&lab, &["--compress"]);
    client.wait_log("lease acquired", Duration::from_secs(30));
    let compression = session_value(&lab, "Use of Compression").unwrap_or_default();
    assert!(
        compression.starts_with("Yes"),
        "Use of Compression: {compression:?}"
    );

    let (sent, got) = transfer(&lab);
    assert_eq!(sent, got, "transfer over compressed TCP blocks");

    client.wait_log("UDP acceleration active", Duration::from_secs(40));
    wait_session_value(&lab, "UDP Acceleration is Active", "Yes");
    assert!(session_value(&lab, "Use of Compression")
        .unwrap_or_default()
        .starts_with("Yes"));
    install_udp_byte_counters(&lab);
    // Half the payload is random: compressed, the datagrams carry a bit more than half of it;
    // uncompressed they would carry all of it plus headers.
    let size = SIZE as u64;
    let up = udp_bytes_during(&lab, "up", || {
        let (sent, got) = transfer(&lab);
        assert_eq!(sent, got, "upload with UDP acceleration");
    });
    assert!(
        up > size / 3 && up < size * 8 / 10,
        "upload: {up} bytes of UDP for {size} bytes of data (compressed frames over UDP)"
    );
    let down = udp_bytes_during(&lab, "down", || {
        let (sent, got) = transfer_down(&lab, &client);
        assert_eq!(sent, got, "download with UDP acceleration");
    });
    assert!(
        down > size / 3 && down < size * 8 / 10,
        "download: {down} bytes of UDP for {size} bytes of data (compressed frames inflated)"
    );
    let log = client.log_text();
    assert_eq!(log.matches("logged in").count(), 1, "{log}");
    let status = client.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn half_connection_uses_one_connection_each_way() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    // UDP off so that every frame uses the TCP connections under test.
    let mut client = connect(
        &lab,
        &[
            "--half-connection",
            "--max-connections",
            "2",
            "--udp-acceleration",
            "off",
        ],
    );
    client.wait_log("lease acquired", Duration::from_secs(30));
    let half = session_value(&lab, "Half Duplex TCP Connection Mode").unwrap_or_default();
    assert!(
        half.starts_with("Yes"),
        "Half Duplex TCP Connection Mode: {half:?}"
    );
    assert_eq!(
        session_value(&lab, "Number of TCP Connections").as_deref(),
        Some("2")
    );
    assert_eq!(
        session_value(&lab, "Number of Uplink TCP Connections").as_deref(),
        Some("1")
    );
    assert_eq!(
        session_value(&lab, "Number of Downlink TCP Connections").as_deref(),
        Some("1")
    );
    let (sent, got) = transfer(&lab);
    assert_eq!(sent, got, "upload");
    let (sent, got) = transfer_down(&lab, &client);
    assert_eq!(sent, got, "download");
    let log = client.log_text();
    assert_eq!(log.matches("logged in").count(), 1, "{log}");
    let status = client.stop();
    assert!(status.success(), "{status:?}");
}
