//! Writes the seed corpus (`corpus/<target>/seed-*`) from the project's own encoders, fake
//! servers and examples, so every seed is a valid input that reaches deep into its parser.
//! Run after changing a format: `cargo test -p softether-fuzz --test seeds -- --ignored`.
//! Files not named `seed-*` (minimized fuzzer finds, past crashers) are left alone.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode};
use dhcproto::Encodable;
use etherparse::PacketBuilder;
use serde_json::{json, Value};
use softether_proto::handshake::{ClientHandshake, ClientInfo, Credential, LoginRequest, Request};
use softether_proto::http::HttpParser;
use softether_proto::pack::{Pack, Value as PackValue};
use softether_proto::testing::{FakeAuth, FakeReply, FakeServer, FakeServerConfig, FakeUser};
use softether_proto::tunnel::Tunnel;

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    fs::create_dir_all(&dir).unwrap();
    // Every seed must pass its own target before it is committed.
    let body = softether_fuzz::TARGETS
        .iter()
        .find(|t| t.name == target)
        .unwrap()
        .body;
    body(data);
    fs::write(dir.join(format!("seed-{name}")), data).unwrap();
}

#[test]
#[ignore = "writes the committed seed corpus; run by hand after a format change"]
fn write_seed_corpus() {
    softether_seeds();
    dhcp_seeds();
    cni_seeds();
    netavark_seeds();
    control_seeds();
    state_seeds();
    frame_seeds();
}

// ---- the data plane's frames (netcfg offload and ACK thinning, the spreader) ----

/// A TCP frame (IPv4 or IPv6) of the flow 10.0.0.1:40000 → 10.0.0.2:5201, built by etherparse.
fn tcp_frame(v6: bool, ack: u32, payload: &[u8]) -> Vec<u8> {
    let eth = etherparse::PacketBuilder::ethernet2([2; 6], [4; 6]);
    let ip = if v6 {
        eth.ipv6([0xfd; 16], [0xfe; 16], 64)
    } else {
        eth.ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
    };
    let mut out = Vec::new();
    ip.tcp(40000, 5201, 1000, 500)
        .ack(ack)
        .options_raw(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2])
        .unwrap()
        .write(&mut out, payload)
        .unwrap();
    out
}

/// `len_hi, len_lo, frame` for each frame.
fn frames_input(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        out.extend_from_slice(&(f.len() as u16).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

fn frame_seeds() {
    use netcfg::offload::{VnetHdr, F_NEEDS_CSUM, GSO_TCPV4};
    let acks: Vec<Vec<u8>> = (1..6).map(|n| tcp_frame(false, n * 2896, b"")).collect();
    write("tap_frames", "acks", &frames_input(&acks));
    let v6: Vec<Vec<u8>> = (1..4).map(|n| tcp_frame(true, n * 100, b"")).collect();
    write("tap_frames", "acks-v6", &frames_input(&v6));
    // Data segments of one flow (same sequence number: the coalescer passes them through).
    let segments: Vec<Vec<u8>> = (0..4).map(|_| tcp_frame(false, 1, &[0x5a; 1448])).collect();
    write("tap_frames", "segments", &frames_input(&segments));
    // A TAP read: a TSO header and a 4,000-byte segment cut at 1448.
    let big = tcp_frame(false, 1, &[0x33; 4000]);
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: (14 + 20 + 32) as u16,
        gso_size: 1448,
        csum_start: 14 + 20,
        csum_offset: 16,
    };
    let mut read = hdr.to_bytes().to_vec();
    read.extend_from_slice(&big);
    write("tap_frames", "tso-read", &frames_input(&[read]));
}

// ---- softether-proto ----

fn login(additional: bool) -> Request {
    let info = ClientInfo {
        server_host: "198.18.0.1".into(),
        ..Default::default()
    };
    if additional {
        return Request::AdditionalConnect {
            session_key: [0x11; 20],
            info,
        };
    }
    Request::Login(LoginRequest {
        hub: "DEFAULT".into(),
        username: "anon".into(),
        credential: Credential::Anonymous,
        max_connection: 2,
        half_connection: false,
        use_compress: false,
        udp_accel: None,
        info,
    })
}

/// The fake server's HTTP responses (one per element) for one handshake.
fn server_responses(config: FakeServerConfig, additional: bool) -> Vec<Vec<u8>> {
    let mut server = FakeServer::new(FakeServerConfig {
        users: vec![FakeUser {
            name: "anon".into(),
            auth: FakeAuth::Anonymous,
        }],
        ..config
    });
    let mut client = ClientHandshake::new(login(additional), 5);
    let mut responses = Vec::new();
    for _ in 0..20 {
        while let Some(b) = client.poll_transmit() {
            server.handle_input(&b).unwrap();
        }
        while let Some(b) = server.poll_transmit() {
            let _ = client.handle_input(&b);
            responses.push(b);
        }
    }
    assert!(client.is_finished() || client.is_failed());
    responses
}

fn bodies(responses: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut parser = HttpParser::new(1 << 20);
    parser.push(&responses.concat());
    let mut out = Vec::new();
    while let Ok(Some(msg)) = parser.next_message() {
        out.push(msg.body);
    }
    out
}

fn softether_seeds() {
    let welcome = server_responses(
        FakeServerConfig {
            noops_before_reply: 1,
            message: "hello from the hub".into(),
            policies: vec![("Access".into(), 1), ("AutoDisconnect".into(), 600)],
            trailing: vec![
                0, 0, 0, 1, 0, 0, 0, 14, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
            ],
            ..Default::default()
        },
        false,
    );
    let redirect = server_responses(
        FakeServerConfig {
            reply: FakeReply::Redirect {
                ip: "198.18.0.2".parse().unwrap(),
                ports: vec![443, 992],
                ticket: [7; 20],
                cert_der: vec![0x30, 0x03, 1, 2, 3],
            },
            ..Default::default()
        },
        false,
    );
    let refused = server_responses(
        FakeServerConfig {
            reply: FakeReply::Error(softether_proto::error::ErrorCode(9)),
            ..Default::default()
        },
        false,
    );
    let joined = server_responses(
        FakeServerConfig {
            join_direction: 1,
            ..Default::default()
        },
        true,
    );
    for (name, responses) in [
        ("welcome", &welcome),
        ("redirect", &redirect),
        ("refused", &refused),
        ("joined", &joined),
    ] {
        for chunk in [0u8, 255] {
            let mut input = vec![chunk];
            input.extend(responses.concat());
            write("http_response", &format!("{name}-chunk{chunk}"), &input);
        }
        let packs = bodies(responses);
        write(
            "handshake_reply",
            &format!("{name}-hello"),
            &[&[0][..], &packs[0]].concat(),
        );
        for (i, pack) in packs.iter().enumerate().skip(1) {
            write("pack_decode", &format!("{name}-{i}"), pack);
            let mode = if name == "joined" { 3 } else { 2 | 4 };
            write(
                "handshake_reply",
                &format!("{name}-reply{i}"),
                &[&[mode][..], pack].concat(),
            );
        }
        write("pack_decode", &format!("{name}-hello"), &packs[0]);
    }

    let mut every_type = Pack::new();
    every_type.add_str("hello", "SoftEther VPN Server");
    every_type.add_int64("big", 1 << 40);
    every_type.add_unistr("u", "ü");
    every_type.add_values("Port", vec![PackValue::Int(443), PackValue::Int(992)]);
    every_type.add_ipv4("Ip", "198.18.0.1".parse().unwrap());
    every_type.add_ipv6("Ip6", "fd00::1".parse().unwrap(), 3);
    write("pack_decode", "every-type", &every_type.encode());

    let now = Instant::now();
    let mut tx = Tunnel::new(now, Duration::from_secs(20), 1);
    for i in 0..6usize {
        tx.queue_frame(&vec![i as u8; 14 + i * 100]);
    }
    let mut stream = tx.poll_transmit(now).unwrap().to_vec();
    // A keep-alive record and an empty record.
    stream.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 0]);
    for chunk in [0u8, 7, 255] {
        write(
            "tunnel_stream",
            &format!("records-chunk{chunk}"),
            &[&[chunk][..], &stream].concat(),
        );
    }
}

// ---- dhcp-client ----

const SERVER_MAC: [u8; 6] = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];

fn reply(kind: MessageType, extra: &[DhcpOption]) -> Vec<u8> {
    let server = "192.168.30.1".parse().unwrap();
    let zero = "0.0.0.0".parse().unwrap();
    let offered = if kind == MessageType::Nak {
        zero
    } else {
        "192.168.30.10".parse().unwrap()
    };
    // xid and chaddr are patched in by the harness (op 0).
    let mut msg = Message::new_with_id(0, zero, offered, zero, zero, &[0; 6]);
    msg.set_opcode(Opcode::BootReply);
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::ServerIdentifier(server));
    if kind != MessageType::Nak {
        opts.insert(DhcpOption::SubnetMask("255.255.255.0".parse().unwrap()));
        opts.insert(DhcpOption::Router(vec![server]));
        opts.insert(DhcpOption::DomainNameServer(vec![server]));
        opts.insert(DhcpOption::AddressLeaseTime(200));
    }
    for o in extra {
        opts.insert(o.clone());
    }
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(SERVER_MAC, [0xff; 6])
        .ipv4(server.octets(), [255; 4], 64)
        .udp(67, 68)
        .write(&mut frame, &msg.to_vec().unwrap())
        .unwrap();
    frame
}

fn frame_op(op: u8, frame: &[u8]) -> Vec<u8> {
    let mut out = vec![op];
    out.extend_from_slice(&(frame.len() as u16).to_be_bytes());
    out.extend_from_slice(frame);
    out
}

fn wait(secs: u16) -> Vec<u8> {
    let mut out = vec![2];
    out.extend_from_slice(&secs.to_be_bytes());
    out
}

fn dhcp_seeds() {
    let offer = reply(MessageType::Offer, &[]);
    let ack = reply(MessageType::Ack, &[]);
    let rich_ack = reply(
        MessageType::Ack,
        &[
            DhcpOption::ClasslessStaticRoute(vec![(
                "10.0.0.0/8".parse().unwrap(),
                "192.168.30.1".parse().unwrap(),
            )]),
            DhcpOption::InterfaceMtu(1400),
            DhcpOption::DomainName("vpn.example".into()),
            DhcpOption::Renewal(50),
            DhcpOption::Rebinding(150),
        ],
    );
    let nak = reply(MessageType::Nak, &[DhcpOption::Message("no".into())]);
    let full_cycle = [
        vec![0],
        frame_op(0, &offer),
        frame_op(0, &ack),
        wait(101),
        frame_op(0, &rich_ack),
        wait(180),
        wait(300),
        vec![3],
        frame_op(0, &ack),
        vec![7],
    ]
    .concat();
    write("dhcp_client", "full-cycle", &full_cycle);
    let reboot = [
        vec![1 | 2],
        frame_op(0, &nak),
        frame_op(0, &offer),
        frame_op(0, &rich_ack),
        wait(60),
    ]
    .concat();
    write("dhcp_client", "init-reboot-nak", &reboot);

    let ip = |s: &str| -> std::net::Ipv4Addr { s.parse().unwrap() };
    let echo = dhcp_client::icmp::Echo {
        src_mac: SERVER_MAC,
        dst_mac: [0x02, 0x11, 0x22, 0x33, 0x44, 0x55],
        src_ip: ip("192.168.30.1"),
        dst_ip: ip("192.168.30.10"),
        ident: 1,
        seq: 1,
    };
    let other_traffic = [
        vec![4],
        frame_op(
            1,
            &dhcp_client::arp::request(SERVER_MAC, ip("192.168.30.1"), ip("192.168.30.10")),
        ),
        frame_op(1, &echo.reply_frame(b"ping").unwrap()),
        frame_op(1, &offer),
        frame_op(0, &offer),
        wait(4),
    ]
    .concat();
    write("dhcp_client", "other-traffic", &other_traffic);
}

// ---- softether-cni ----

/// One plugin's config as the runtime hands it over: the list's name and version added.
fn plugin_config(conflist: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(conflist);
    let list: Value = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    let mut conf = list["plugins"][0].clone();
    conf["name"] = list["name"].clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    conf
}

fn cni_input(env: &str, conf: &Value) -> Vec<u8> {
    if conf.get("name").is_some() {
        softether_cni::netconf::NetConf::from_stdin(conf.to_string().as_bytes()).unwrap();
    }
    [env.as_bytes(), &[0], conf.to_string().as_bytes()].concat()
}

fn cni_seeds() {
    let add = "CNI_COMMAND=ADD\nCNI_CONTAINERID=c1\nCNI_NETNS=/run/netns/p\nCNI_IFNAME=vpn0\nCNI_PATH=/opt/cni/bin\nCNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;MAC=02:00:5e:10:00:01;SOFTETHER_USER=bob\n";
    let podman = plugin_config("podman/softether-vpn.conflist");
    write("cni_config", "add-podman", &cni_input(add, &podman));
    let mut forward = plugin_config("port-forward/softether-portforward.conflist");
    forward["runtimeConfig"] = json!({"mac": "02:00:5e:10:00:02"});
    forward["args"] = json!({"cni": {"user": "carol", "hub": "VPN"}});
    forward["mtu"] = json!(1400);
    write("cni_config", "add-port-forward", &cni_input(add, &forward));

    let mut check = podman.clone();
    check["prevResult"] = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "vpn0", "mac": "02:00:5e:10:00:01", "sandbox": "/run/netns/p"}],
        "ips": [{"address": "192.168.30.10/24", "gateway": "192.168.30.1", "interface": 0}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "192.168.30.1"}, {"dst": "10.0.0.0/8", "mtu": 1400, "table": 100}],
        "dns": {"nameservers": ["192.168.30.1"], "domain": "vpn.example", "search": ["a"], "options": ["ndots:2"]}
    });
    let check_env = add.replace("ADD", "CHECK");
    write(
        "cni_config",
        "check-prev-result",
        &cni_input(&check_env, &check),
    );

    let mut old = check.clone();
    old["cniVersion"] = json!("0.3.1");
    old["prevResult"]["cniVersion"] = json!("0.3.1");
    old["prevResult"]["ips"][0]["version"] = json!("4");
    write(
        "cni_config",
        "del-0.3.1",
        &cni_input(&add.replace("ADD", "DEL"), &old),
    );

    let mut gc = podman.clone();
    gc["cniVersion"] = json!("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "vpn0"}]);
    gc["cni.dev/attachments"] = json!([{"containerID": "c2", "ifname": "vpn0"}]);
    write(
        "cni_config",
        "gc",
        &cni_input("CNI_COMMAND=GC\nCNI_PATH=/opt/cni/bin\n", &gc),
    );
    write(
        "cni_config",
        "status",
        &cni_input("CNI_COMMAND=STATUS\n", &gc),
    );
    write(
        "cni_config",
        "version",
        &cni_input(
            "CNI_COMMAND=VERSION\nCNI_NETNS=dummy\n",
            &json!({"cniVersion": "1.1.0"}),
        ),
    );
    // No NUL: the whole input is stdin, with an ADD's environment.
    write("cni_config", "stdin-only", podman.to_string().as_bytes());
}

// ---- softether-control ----

// ---- the netavark plugin ----

/// The `Options=` of examples/podman5/vpn.network: what quadlet passes to
/// `podman network create -d softether --opt …`.
fn quadlet_options() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/podman5/vpn.network");
    let text = fs::read_to_string(path).unwrap();
    let options: serde_json::Map<String, Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("Options="))
        .filter_map(|o| o.split_once('='))
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
    assert!(
        options.contains_key("server"),
        "vpn.network has no server option"
    );
    Value::Object(options)
}

/// What Podman hands `create` (as in tests/tests/netavark_e2e.rs), and the network it stores.
fn netavark_seeds() {
    let mut options = quadlet_options();
    options["timeout"] = json!("60");
    options["sidecarSocket"] = json!("/run/softether-cni/sidecar.sock");
    let network = json!({
        "name": "vpn",
        "id": "5e7c0ffee5e7c0ffee5e7c0ffee5e7c0ffee5e7c0ffee5e7c0ffee5e7c0ffee0",
        "driver": "softether",
        "created": "2026-01-02T03:04:05.000000000Z",
        "ipv6_enabled": false, "internal": false, "dns_enabled": true,
        "labels": {"app": "web"}, "options": options, "ipam_options": {}
    });
    write(
        "netavark_json",
        "create-quadlet",
        network.to_string().as_bytes(),
    );
    let stored =
        softether_cni::netavark::commands::create(serde_json::from_value(network.clone()).unwrap())
            .expect("the example network is accepted");
    let stored = serde_json::to_value(stored).unwrap();
    write(
        "netavark_json",
        "stored-network",
        stored.to_string().as_bytes(),
    );

    for (name, key, value) in [
        (
            "create-subnet",
            "subnets",
            json!([{"subnet": "10.89.0.0/24", "gateway": "10.89.0.1"}]),
        ),
        (
            "create-routes",
            "routes",
            json!([{"destination": "10.0.0.0/8", "gateway": "10.89.0.1"}]),
        ),
        ("create-ipv6", "ipv6_enabled", json!(true)),
        ("create-internal", "internal", json!(true)),
        (
            "create-ipam",
            "ipam_options",
            json!({"driver": "host-local"}),
        ),
    ] {
        let mut refused = network.clone();
        refused[key] = value;
        write("netavark_json", name, refused.to_string().as_bytes());
    }
    for (name, key, value) in [
        ("option-unknown", "colour", "blue"),
        ("option-password", "password", "secret"),
        ("option-bool", "insecure", "yes"),
        ("option-integer", "mtu", "-1"),
        ("option-port", "port", "70000"),
    ] {
        let mut refused = network.clone();
        refused["options"][key] = json!(value);
        write("netavark_json", name, refused.to_string().as_bytes());
    }

    // netavark's NetworkPluginExec for `setup`/`teardown` on the stored network.
    let exec = json!({
        "container_id": "4a1b0c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b",
        "container_name": "web",
        "port_mappings": [{"host_ip": "", "container_port": 80, "host_port": 8080, "range": 1, "protocol": "tcp"}],
        "network": stored,
        "network_options": {"interface_name": "eth0", "aliases": ["web"]}
    });
    write("netavark_json", "setup", exec.to_string().as_bytes());
    let mut per_container = exec.clone();
    per_container["network_options"]["static_mac"] = json!("02:00:5e:10:00:01");
    per_container["network_options"]["options"] = json!({"user": "bob", "passwordFile": "/etc/softether-cni/secrets/bob.password", "hub": "VPN"});
    write(
        "netavark_json",
        "setup-per-container",
        per_container.to_string().as_bytes(),
    );
    for (name, key, value) in [
        ("setup-static-ip", "static_ips", json!(["10.89.0.5"])),
        ("setup-bad-mac", "static_mac", json!("ff:ff:ff:ff:ff:ff")),
        ("setup-bad-option", "options", json!({"mtu": "1400"})),
        ("setup-no-ifname", "interface_name", json!("")),
    ] {
        let mut refused = exec.clone();
        refused["network_options"][key] = value;
        write("netavark_json", name, refused.to_string().as_bytes());
    }
    // teardown of a network whose options no longer validate (DEL salvages socket and state dir).
    let mut stale = exec.clone();
    stale["network"]["options"]["port"] = json!("not-a-port");
    stale["network"]["options"]["stateDir"] = json!("/var/lib/softether-cni");
    write(
        "netavark_json",
        "teardown-stale-options",
        stale.to_string().as_bytes(),
    );
}

fn control_seeds() {
    let attach = json!({
        "network": "softether-vpn", "containerID": "c1", "ifname": "vpn0", "netns": "/run/netns/p",
        "login": {"server": "198.18.0.1", "port": 443, "hub": "DEFAULT", "user": "alice",
                  "passwordFile": "/etc/softether-cni/alice.pass", "insecure": true,
                  "pinSha256": "00".repeat(32), "caFile": "/etc/ca.pem", "maxConnections": 2},
        "link": {"mtu": 1400, "mac": "02:00:5E:10:00:01", "acceptDefaultGateway": true,
                 "acceptStaticRoutes": true, "policyRouteTable": 100, "connmark": true},
        "timeoutMs": 60000, "podNamespace": "default", "podName": "web"
    });
    let requests = [
        ("attach", attach),
        (
            "detach",
            json!({"network": "n", "containerID": "c1", "ifname": "vpn0", "netns": "/run/netns/p"}),
        ),
        (
            "check",
            json!({"network": "n", "containerID": "c1", "ifname": "vpn0", "netns": "/run/netns/p",
                         "mac": "02:00:5E:10:00:01", "ips": ["192.168.30.10/24", "fd00::1/64"]}),
        ),
        (
            "gc",
            json!({"network": "n", "valid": [{"containerID": "c1", "ifname": "vpn0"}]}),
        ),
        ("status", Value::Null),
        ("list", Value::Null),
    ];
    serde_json::from_value::<softether_control::AttachRequest>(requests[0].1.clone()).unwrap();
    serde_json::from_value::<softether_control::CheckRequest>(requests[2].1.clone()).unwrap();
    for (op, payload) in requests {
        // The wire shape the plugin sends: {"protocol":N,"op":…,"request":…} and a newline.
        let envelope =
            json!({"protocol": softether_control::PROTOCOL_VERSION, "op": op, "request": payload});
        let mut line = serde_json::to_vec(&envelope).unwrap();
        line.push(b'\n');
        softether_control::decode_request(&line).unwrap();
        write("control_message", &format!("request-{op}"), &line);
    }
    let replies = [
        (
            "attach",
            json!({"ok": {"mac": "02:00:5E:10:00:01", "mtu": 1400,
            "ips": [{"address": "192.168.30.10/24", "gateway": "192.168.30.1"}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "192.168.30.1", "table": 100, "priority": 5}],
            "dns": {"nameservers": ["192.168.30.1"], "domain": "vpn.example", "search": ["a"], "options": ["x"]}}}),
        ),
        (
            "status",
            json!({"ok": {"state": "degraded", "reason": "1 session reconnecting"}}),
        ),
        (
            "gc",
            json!({"ok": {"removed": [{"containerID": "c2", "ifname": "vpn0"}], "errors": ["x"]}}),
        ),
        (
            "list",
            json!({"ok": {"attachments": [{"network": "n", "containerID": "c1", "netns": "/run/netns/p",
            "ifname": "vpn0", "mac": "02:00:5E:10:00:01", "address": "192.168.30.10/24", "server": "s",
            "hub": "DEFAULT", "user": "alice", "state": "up", "since": 1, "bytesIn": 2, "bytesOut": 3,
            "reconnects": 0, "lastError": "e"}]}}),
        ),
        (
            "error",
            json!({"error": {"code": 101, "msg": "no lease", "details": "after 30s"}}),
        ),
    ];
    let line = replies[0].1.to_string();
    softether_control::parse_reply::<softether_control::AttachResult>(&line)
        .unwrap()
        .unwrap();
    let line = replies[3].1.to_string();
    softether_control::parse_reply::<softether_control::ListReply>(&line)
        .unwrap()
        .unwrap();
    for (name, reply) in replies {
        write(
            "control_message",
            &format!("reply-{name}"),
            format!("{reply}\n").as_bytes(),
        );
    }
}

fn state_seeds() {
    let record = json!({
        "version": 1, "network": "softether-vpn", "containerID": "c1", "ifname": "vpn0",
        "netns": "/run/netns/p", "mac": "02:00:5E:10:00:01",
        "login": {"server": "198.18.0.1", "port": 443, "hub": "DEFAULT", "user": "alice",
                  "passwordFile": "/etc/softether-cni/alice.pass", "maxConnections": 1},
        "link": {"mtu": 1400, "acceptDefaultGateway": true, "policyRouteTable": 100, "connmark": true},
        "lastAddress": "192.168.30.10/24", "podNamespace": "default", "podName": "web",
        "createdAt": 1700000000u64
    });
    let tombstone = json!({"containerID": "c1", "ifname": "vpn0", "network": "softether-vpn",
                           "netns": "/run/netns/p", "deletedAt": 1700000001u64});
    serde_json::from_value::<softether_control::state_dir::AttachmentRecord>(record.clone())
        .unwrap();
    serde_json::from_value::<softether_control::state_dir::Tombstone>(tombstone.clone()).unwrap();
    write(
        "state_record",
        "record",
        serde_json::to_string_pretty(&record).unwrap().as_bytes(),
    );
    write(
        "state_record",
        "tombstone",
        tombstone.to_string().as_bytes(),
    );
}
