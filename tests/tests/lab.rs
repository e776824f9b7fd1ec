//! Root tests of the lab harness itself: the lab comes up configured, its data path works, labs run in
//! parallel, and teardown leaves nothing behind. They fail (never skip) when not run as root.

use std::path::PathBuf;
use std::thread;

use softether_lab::{netns, ClientAuth, Lab, LabOptions, LabUser, OfficialClient};

fn start() -> Lab {
    Lab::start(LabOptions::default()).expect("lab starts (needs root and the Debian packages)")
}

/// What a lab leaves on the host while running; all of it must vanish on drop.
struct Footprint {
    namespaces: Vec<String>,
    dir: PathBuf,
    server_pid: u32,
}

fn footprint(lab: &Lab) -> Footprint {
    let f = &lab.facts;
    Footprint {
        namespaces: vec![f.server_ns.clone(), f.client_ns.clone(), f.lan_ns.clone()],
        dir: f.dir.clone(),
        server_pid: lab.server_pid().expect("server running"),
    }
}

fn assert_gone(fp: &Footprint) {
    let existing = netns::list().unwrap();
    for ns in &fp.namespaces {
        assert!(!existing.contains(ns), "namespace {ns} left behind");
        assert!(
            !PathBuf::from(format!("/run/netns/{ns}")).exists(),
            "/run/netns/{ns} left behind"
        );
    }
    assert!(!fp.dir.exists(), "lab dir {} left behind", fp.dir.display());
    assert!(
        !netns::pid_alive(fp.server_pid as i32),
        "vpnserver {} still alive",
        fp.server_pid
    );
    // No process anywhere still runs the lab's private vpnserver copy.
    let needle = fp.dir.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline);
            assert!(
                !cmdline.contains(&needle),
                "process {:?} still runs from the lab dir: {cmdline}",
                entry.file_name()
            );
        }
    }
}

#[test]
fn lab_comes_up_configured() {
    let lab = start();
    let f = &lab.facts;
    assert!(
        lab.server_reachable().unwrap(),
        "server port reachable from the client namespace"
    );

    let hubs = lab.vpncmd_server(&["HubList"]).unwrap();
    assert!(hubs.contains(&f.hub), "{hubs}");
    assert!(!hubs.contains("DEFAULT"), "{hubs}");

    let users = lab.vpncmd(&["UserList"]).unwrap();
    for u in [&f.alice.name, &f.bob.name, &f.carol, &f.anonymous] {
        assert!(
            users.contains(&format!("|{u}")),
            "user {u} missing: {users}"
        );
    }
    assert!(
        users.contains("Individual Certificate Authentication"),
        "{users}"
    );
    assert!(users.contains("Anonymous Authentication"), "{users}");

    let nat = lab.vpncmd(&["SecureNatStatusGet"]).unwrap();
    assert!(nat.contains("Virtual Hub Name"), "{nat}");
    let dhcp = lab.vpncmd(&["DhcpGet"]).unwrap();
    assert!(
        dhcp.contains("10.99.0.10") && dhcp.contains("10.98.0.0/255.255.255.0/10.99.0.1"),
        "{dhcp}"
    );
    let host = lab.vpncmd(&["SecureNatHostGet"]).unwrap();
    assert!(host.contains("10.99.0.1"), "{host}");
    let bridges = lab.vpncmd(&["BridgeList"]).unwrap();
    assert!(
        bridges.contains(&f.bridge_if) && bridges.contains("Operating"),
        "{bridges}"
    );

    assert_eq!(f.server_cert_sha256.len(), 64);
    assert!(f.carol_cert.key_pkcs8_der.exists() && f.carol_cert.cert_der.exists());
    let key = std::fs::read_to_string(&f.carol_cert.key_pkcs8_pem).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");

    let addrs = lab
        .exec_in_ok(
            &f.lan_ns,
            &["ip", "-4", "-o", "addr", "show", "dev", &f.lan_if],
        )
        .unwrap();
    assert!(addrs.contains("10.99.0.200/24"), "{addrs}");
    assert!(lab.user_sessions().unwrap().is_empty());
    // No IPv6 DAD: link-local addresses are final at once, so namespace snapshots are stable.
    for ns in [&f.client_ns, &f.server_ns, &f.lan_ns] {
        let v6 = lab.exec_in_ok(ns, &["ip", "-6", "addr"]).unwrap();
        assert!(!v6.contains("tentative"), "{ns}: {v6}");
    }
}

/// The local bridge and SecureNAT work: the LAN host reaches SecureNAT's virtual host through the hub.
#[test]
fn lan_host_reaches_securenat_through_the_bridge() {
    let lab = start();
    let f = &lab.facts;
    assert!(
        lab.lan_ping(f.gateway, 10).unwrap(),
        "ping 10.99.0.1 from the lan namespace"
    );
    let neigh = lab
        .exec_in_ok(&f.lan_ns, &["ip", "neigh", "show", &f.gateway.to_string()])
        .unwrap();
    assert!(
        neigh.to_lowercase().contains("lladdr 5e:"),
        "SecureNAT's 5E: MAC learnt: {neigh}"
    );
}

/// The fingerprint the lab reports is the certificate a TLS client actually sees from the client netns.
#[test]
fn server_cert_fingerprint_matches_the_wire() {
    let lab = start();
    let f = &lab.facts;
    let target = format!("{}:{}", f.server_ip, f.port);
    let script = format!(
        "openssl s_client -connect {target} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
    );
    let out = lab
        .exec_in_ok(&f.client_ns, &["timeout", "10", "sh", "-c", &script])
        .unwrap();
    let wire: String = out
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_lowercase();
    assert_eq!(wire, f.server_cert_sha256);
}

#[test]
fn kill_and_restart_server() {
    let mut lab = start();
    let old_pid = lab.server_pid().unwrap();
    lab.kill_server();
    assert!(
        !lab.server_reachable().unwrap(),
        "killed server must not accept"
    );
    assert!(!netns::pid_alive(old_pid as i32));
    lab.restart_server().unwrap();
    assert!(lab.server_reachable().unwrap());
    let users = lab.vpncmd(&["UserList"]).unwrap();
    assert!(users.contains("|carol"), "config survives SIGKILL: {users}");
    assert!(
        lab.lan_ping(lab.facts.gateway, 10).unwrap(),
        "bridge + SecureNAT back after restart"
    );
}

#[test]
fn parallel_labs_do_not_collide_and_teardown_is_clean() {
    let handles: Vec<_> = (0..2).map(|_| thread::spawn(start)).collect();
    let labs: Vec<Lab> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let (a, b) = (&labs[0].facts, &labs[1].facts);
    assert_ne!(a.server_ns, b.server_ns);
    assert_ne!(a.server_ip, b.server_ip);
    assert_ne!(a.dir, b.dir);
    for lab in &labs {
        assert!(lab.server_reachable().unwrap());
        lab.vpncmd(&["UserGet", "alice"]).unwrap();
    }
    let prints: Vec<Footprint> = labs.iter().map(footprint).collect();
    drop(labs);
    for fp in &prints {
        assert_gone(fp);
    }
}

#[test]
fn teardown_on_panic_is_clean() {
    let (tx, rx) = std::sync::mpsc::channel();
    let result = thread::spawn(move || {
        let lab = start();
        let mut sleeper = lab
            .spawn_in(&lab.facts.client_ns, &["sleep", "300"])
            .unwrap();
        tx.send((footprint(&lab), sleeper.id())).unwrap();
        let _ = sleeper.child_mut();
        std::mem::forget(sleeper); // even a leaked child inside a lab namespace must die with the lab
        panic!("simulated test failure");
    })
    .join();
    assert!(result.is_err());
    let (fp, sleeper_pid) = rx.recv().unwrap();
    assert_gone(&fp);
    assert!(
        !netns::pid_alive(sleeper_pid as i32) || is_zombie(sleeper_pid),
        "sleeper killed"
    );
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
        .unwrap_or(false)
}

/// Full data path with the official client: client netns → TLS session → hub → local bridge → lan netns,
/// for each kind of lab user (hashed password, plain password, certificate, anonymous).
#[test]
fn official_client_reaches_lan_host_for_every_user_kind() {
    let lab = start();
    let f = &lab.facts;
    let kinds = [
        ClientAuth::Password {
            user: f.alice.name.clone(),
            password: f.alice.password.clone(),
            plain: false,
        },
        ClientAuth::Password {
            user: f.bob.name.clone(),
            password: f.bob.password.clone(),
            plain: true,
        },
        ClientAuth::Cert {
            user: f.carol.clone(),
            cert_pem: f.carol_cert.cert_pem.clone(),
            key_pem: f.carol_cert.key_pkcs8_pem.clone(),
        },
        ClientAuth::Anonymous {
            user: f.anonymous.clone(),
        },
    ];
    for (i, auth) in kinds.iter().enumerate() {
        let client = OfficialClient::start(&lab, &f.client_ns, &format!("vpnclient-{i}")).unwrap();
        let ifname = client.connect(&lab, "lab", auth).unwrap();
        let addr = format!("10.99.0.{}/24", 150 + i);
        lab.exec_in_ok(&f.client_ns, &["ip", "addr", "add", &addr, "dev", &ifname])
            .unwrap();
        lab.exec_in_ok(&f.client_ns, &["ip", "link", "set", &ifname, "up"])
            .unwrap();
        assert!(
            lab.ping_until(&f.client_ns, f.lan_host, 5).unwrap(),
            "{auth:?}: client → lan host"
        );
        assert!(
            lab.ping_until(&f.client_ns, f.gateway, 5).unwrap(),
            "{auth:?}: client → SecureNAT"
        );
        let sessions = lab.user_sessions().unwrap();
        let sid = format!("SID-{}-", auth.user().to_uppercase());
        assert!(
            sessions.iter().any(|s| s.starts_with(&sid)),
            "{auth:?}: {sessions:?}"
        );
        client.disconnect().unwrap();
        drop(client);
    }
}

#[test]
fn options_are_applied() {
    let lab = Lab::start(LabOptions {
        port: 8443,
        dhcp_lease_secs: 30,
        session_timeout_secs: Some(15),
        extra_users: vec![LabUser::new("dave", "dave-Secret-4")],
        extra_hub_commands: vec![vec!["SetMaxSession".into(), "7".into()]],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(lab.facts.port, 8443);
    assert!(lab.server_reachable().unwrap(), "custom port listens");
    let dhcp = lab.vpncmd(&["DhcpGet"]).unwrap();
    assert!(
        dhcp.lines()
            .any(|l| l.starts_with("Lease Limit") && l.ends_with("|30")),
        "{dhcp}"
    );
    let policy = lab.vpncmd(&["UserGet", "dave"]).unwrap();
    let timeout = policy
        .lines()
        .find(|l| l.starts_with("TimeOut"))
        .unwrap_or_default();
    assert!(timeout.ends_with("|15 seconds"), "{policy}");
    let status = lab.vpncmd(&["StatusGet"]).unwrap();
    assert!(status.contains("7"), "{status}");
}

#[test]
fn failed_setup_reports_the_command_and_cleans_up() {
    let err = Lab::start(LabOptions {
        extra_hub_commands: vec![vec![
            "UserPasswordSet".into(),
            "nobody".into(),
            "/PASSWORD:x".into(),
        ]],
        ..Default::default()
    })
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("UserPasswordSet nobody"), "{msg}");
    let id = msg
        .strip_prefix("starting lab ")
        .and_then(|r| r.split(':').next())
        .expect("error names the lab id");
    let existing = netns::list().unwrap();
    for role in ["srv", "cli", "lan"] {
        let ns = format!("se-{role}-{id}");
        assert!(!existing.contains(&ns), "{ns} left behind");
    }
    let dir = std::env::temp_dir().join(format!("softether-lab-{id}"));
    assert!(!dir.exists(), "{} left behind", dir.display());
}

/// Leftovers of a crashed run (owner pid dead) are removed by the next lab start's sweep.
#[test]
fn stale_namespaces_of_dead_processes_are_swept() {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let stale = format!("se-x-{dead_pid}-0");
    let live = format!("se-x-{}-999", std::process::id());
    for ns in [&stale, &live] {
        let st = std::process::Command::new("ip")
            .args(["netns", "add", ns])
            .status()
            .unwrap();
        assert!(st.success());
    }
    softether_lab::lab::sweep_stale();
    let after = netns::list().unwrap();
    netns::destroy(&live);
    assert!(!after.contains(&stale), "stale namespace swept");
    assert!(after.contains(&live), "namespace of a live process kept");
}

/// With `server_cert_from_lab_ca` the server presents a CA-issued leaf that a verifying TLS client accepts
/// for the server IP and name; the default self-signed certificate does not verify.
#[test]
fn lab_ca_server_cert_verifies() {
    let lab = Lab::start(LabOptions {
        server_cert_from_lab_ca: true,
        ..Default::default()
    })
    .unwrap();
    let f = &lab.facts;
    let ca = f.lab_ca.as_ref().expect("lab CA facts");
    let script = format!(
        "openssl s_client -connect {}:{} -CAfile {} -verify_return_error -verify_ip {} </dev/null",
        f.server_ip,
        f.port,
        ca.ca_pem.display(),
        f.server_ip
    );
    let out = lab
        .exec_in(&f.client_ns, &["timeout", "10", "sh", "-c", &script])
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("Verify return code: 0 (ok)"),
        "{text}"
    );
    let fp = softether_lab::certs::sha256_fingerprint(&ca.server_cert_pem).unwrap();
    assert_eq!(
        fp, f.server_cert_sha256,
        "ServerCertGet returns the installed certificate"
    );
}

/// Without root the lab refuses with a clear error (tests then fail; they never skip).
#[test]
fn refuses_without_root() {
    let dir = tempdir_for_test("noroot");
    let bin = dir.join("softether-lab");
    std::fs::copy(env!("CARGO_BIN_EXE_softether-lab"), &bin).unwrap();
    let chmod = |p: &std::path::Path, mode| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    chmod(&dir, 0o755);
    chmod(&bin, 0o755);
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .arg("up")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("needs root"), "{stderr}");
}

fn tempdir_for_test(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("softether-lab-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
