//! Regression tests for issue 14's daemon defects: nothing a local client or a network config
//! can do stops or freezes `softether-sidecar run` (which carries every pod's VPN).
//!
//! - a flood of control connections under `prlimit --nofile=1024:1024`, and one under a limit
//!   so low that `accept()` fails with EMFILE: the daemon keeps running and serves `status`;
//! - requests carrying 8 fds each: the daemon's open fd count returns to its baseline;
//! - a FIFO, `/dev/zero` or a symlink to a FIFO as `passwordFile`: the ADDs fail with a clear
//!   error (code 7) while `status` still answers, and memory does not grow.
//!
//! Needs `cargo build --workspace --bins` first, and root.

mod common;

use std::io::{IoSlice, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::cni_lab::{network_list, pod_attachment, sidecar_status, CniDirs, Sidecar};
use common::connect::extra_netns;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use softether_lab::{Lab, LabOptions};

const STATUS_REQUEST: &[u8] = b"{\"protocol\":1,\"op\":\"status\",\"request\":{}}\n";

/// Lets this test process hold more than 1024 sockets.
fn raise_own_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Opens `n` idle connections to `socket` (each bounded by a connect timeout via the
/// daemon's own accept/refuse, reads are non-blocking).
fn flood(socket: &Path, n: usize) -> Vec<UnixStream> {
    (0..n)
        .map(|i| {
            let s = UnixStream::connect(socket)
                .unwrap_or_else(|e| panic!("connection {i} to the control socket: {e}"));
            s.set_nonblocking(true).expect("nonblocking");
            s
        })
        .collect()
}

/// `status` through the CLI, retried until it answers (bounded): the daemon must come back
/// to serving once the flood is gone.
fn status_answers(lab: &Lab, dirs: &CniDirs, sidecar: &Sidecar, within: Duration) {
    let until = Instant::now() + within;
    loop {
        let bin = common::workspace_bin("softether-sidecar");
        let (ok, out) = common::connect::exec(
            &lab.facts.client_ns,
            &[
                bin.to_str().unwrap(),
                "status",
                "--json",
                "--socket",
                dirs.socket.to_str().unwrap(),
            ],
        );
        if ok {
            return;
        }
        assert!(
            Instant::now() < until,
            "status did not answer within {within:?}: {out}\n{}",
            sidecar.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the daemon's fd count is at most `baseline` (bounded).
fn fds_back_to(sidecar: &Sidecar, baseline: usize) {
    let until = Instant::now() + Duration::from_secs(15);
    while sidecar.fd_count() > baseline {
        assert!(
            Instant::now() < until,
            "daemon holds {} fds, baseline {baseline}",
            sidecar.fd_count()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn control_socket_floods_and_fd_passing_neither_stop_nor_leak() {
    raise_own_nofile();
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let dirs = CniDirs::create(&lab);
    let sidecar = Sidecar::start_with_nofile(&lab, &dirs.socket, &dirs.state, 0, Some(1024));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", sidecar.pid())).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains("1024")),
        "{limits}"
    );
    sidecar_status(&lab.facts.client_ns, &dirs.socket);
    let baseline = sidecar.fd_count();

    // 1100 connections against 1024 fds: the excess over the connection bound is answered
    // with error 11 and closed, the daemon stays up.
    let conns = flood(&dirs.socket, 1100);
    assert!(alive(sidecar.pid()), "daemon died:\n{}", sidecar.log_text());
    // Connections beyond the bound get error 11 as soon as the daemon accepts them.
    let until = Instant::now() + Duration::from_secs(15);
    let refused = loop {
        let refused = conns
            .iter()
            .filter(|s| {
                let mut buf = [0u8; 512];
                let mut s: &UnixStream = s;
                matches!(s.read(&mut buf), Ok(n) if String::from_utf8_lossy(&buf[..n]).contains("\"code\":11"))
            })
            .count();
        if refused > 0 || Instant::now() > until {
            break refused;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(refused > 0, "no connection was refused with error 11");
    drop(conns);
    status_answers(&lab, &dirs, &sidecar, Duration::from_secs(15));
    fds_back_to(&sidecar, baseline);

    // 50 status requests with 8 fds each: every received fd is closed.
    let devnull = std::fs::File::open("/dev/null").unwrap();
    for i in 0..50 {
        let s = UnixStream::connect(&dirs.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let fds = [devnull.as_raw_fd(); 8];
        sendmsg::<()>(
            s.as_raw_fd(),
            &[IoSlice::new(STATUS_REQUEST)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .unwrap_or_else(|e| panic!("request {i}: {e}"));
        let mut reply = String::new();
        (&s).read_to_string(&mut reply).unwrap();
        assert!(reply.contains("file descriptors"), "request {i}: {reply}");
    }
    fds_back_to(&sidecar, baseline);
    assert!(alive(sidecar.pid()));

    // A limit below the connection bound: accept() itself fails with EMFILE; the daemon
    // pauses and retries instead of exiting.
    let low_dirs = CniDirs {
        socket: lab.facts.dir.join("cni/low.sock"),
        state: lab.facts.dir.join("cni/low-state"),
        password_file: dirs.password_file.clone(),
        bin: dirs.bin.clone(),
    };
    let low = Sidecar::start_with_nofile(&lab, &low_dirs.socket, &low_dirs.state, 1, Some(64));
    let conns = flood(&low_dirs.socket, 200);
    let until = Instant::now() + Duration::from_secs(15);
    while !low
        .log_text()
        .contains("accepting on the control socket failed")
    {
        assert!(
            Instant::now() < until,
            "no EMFILE seen:\n{}",
            low.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(alive(low.pid()), "daemon died:\n{}", low.log_text());
    drop(conns);
    status_answers(&lab, &low_dirs, &low, Duration::from_secs(20));
    assert!(alive(low.pid()));
}

#[test]
fn hostile_password_files_fail_the_add_without_stalling_the_daemon() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let dirs = CniDirs::create(&lab);
    let sidecar = Sidecar::start(&lab, &dirs.socket, &dirs.state, 0);
    let rt = dirs.runtime(&lab);
    let base = lab.facts.dir.join("cni");
    let fifo = base.join("pass.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let link = base.join("link-to-fifo");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    let rss_before = sidecar.status_kb("VmRSS");

    let conf = |password_file: &Path| {
        let mut plugin = dirs.plugin_conf(&lab);
        plugin["passwordFile"] = serde_json::json!(password_file);
        plugin["timeout"] = serde_json::json!(30);
        network_list("vpnnet", "1.0.0", &plugin, false)
    };
    let pods = [extra_netns(), extra_netns(), extra_netns(), extra_netns()];
    let cases: [(&Path, &str); 4] = [
        (&fifo, "FIFO"),
        (&fifo, "FIFO"),
        (Path::new("/dev/zero"), "character device"),
        (&link, "FIFO"),
    ];
    let failures: Vec<_> = std::thread::scope(|scope| {
        let adds: Vec<_> = cases
            .iter()
            .zip(&pods)
            .enumerate()
            .map(|(i, ((file, _), pod))| {
                let list = conf(file);
                let att = pod_attachment(&format!("hostile{i}"), pod.name());
                let rt = &rt;
                scope.spawn(move || rt.add(&list, &att))
            })
            .collect();
        // While they run, the daemon answers.
        sidecar_status(&lab.facts.client_ns, &dirs.socket);
        adds.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (result, (file, what)) in failures.into_iter().zip(cases) {
        let inv = result.expect_err("ADD with a hostile passwordFile must fail");
        assert_eq!(inv.error_code(), Some(7), "{}: {inv}", file.display());
        assert!(inv.msg().contains("passwordFile"), "{inv}");
        let text = inv.to_string();
        assert!(text.contains(what), "{}: {text}", file.display());
    }
    sidecar_status(&lab.facts.client_ns, &dirs.socket);
    let rss_after = sidecar.status_kb("VmRSS");
    assert!(
        rss_after < rss_before + 20 * 1024,
        "RSS grew from {rss_before} kB to {rss_after} kB"
    );
    assert!(dirs.status_attachments(&lab).is_empty());
    assert!(
        dirs.leftover_state().is_empty(),
        "{:?}",
        dirs.leftover_state()
    );
}
