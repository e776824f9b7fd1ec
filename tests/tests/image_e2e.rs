//! The DaemonSet's image, run: the archive `deploy/build-image --archive` wrote (buildah,
//! deploy/Containerfile, no registry; `tests/image` builds it and names it in
//! SOFTETHER_TEST_IMAGE_ARCHIVE) loaded into a private Podman in the lab's client ("node")
//! namespace, then:
//!
//! - `--version` of the image's default entrypoint (`softether-sidecar`);
//! - the init container's command from deploy/kubernetes/daemonset.yaml installs the plugin into
//!   a host directory (the `cni-bin` mount), byte for byte the release build;
//! - the sidecar container as the DaemonSet runs it (its command, privileged, host network and
//!   PID, the mounts at their manifest paths backed by test directories, /run/netns with slave
//!   propagation) serves a pod that a CNI runtime attaches with the plugin the init step
//!   installed: lease, CONNMARK table (the image's `nft`), ping to the lan host, `status`
//!   through the image's binary, DEL releases.
//!
//! Slow (a release build with LTO and an image build): ignored by `cargo test`, run by
//! `bash tests/image`, which prints the build time and the image size.

mod common;
#[allow(dead_code)]
#[path = "deploy_manifests/exec.rs"]
mod exec;
#[allow(dead_code)]
#[path = "deploy_manifests/files.rs"]
mod files;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cni::Runtime;
use common::cni_lab::{network_list, ping_lan, pod_attachment, pod_leftovers, state_leftovers};
use common::connect::{extra_netns, must};
use common::podman::Podman;
use serde_json::{json, Value};
use softether_lab::{Lab, LabOptions};

/// The name the DaemonSet uses.
const IMAGE: &str = "localhost/softether-cni:0.1.0";
const POLL: Duration = Duration::from_millis(200);

/// The DaemonSet's pod spec.
fn daemonset_pod() -> Value {
    files::docs_of("DaemonSet")[0].doc["spec"]["template"]["spec"].clone()
}

/// `command` of a container spec as strings.
fn command_of(container: &Value) -> Vec<String> {
    container["command"]
        .as_array()
        .expect("command")
        .iter()
        .map(|a| a.as_str().expect("string").to_owned())
        .collect()
}

/// `podman run` arguments: the container's command as `--entrypoint` + arguments after `IMAGE`.
fn run_args(mounts: &[String], flags: &[&str], command: &[String]) -> Vec<String> {
    let mut args: Vec<String> = vec!["run".into()];
    args.extend(flags.iter().map(|f| f.to_string()));
    args.extend(
        mounts
            .iter()
            .flat_map(|m| ["--volume".to_owned(), m.clone()]),
    );
    args.push(format!("--entrypoint={}", command[0]));
    args.push(IMAGE.to_owned());
    args.extend(command[1..].iter().cloned());
    args
}

fn run(podman: &Podman, args: &[String]) -> String {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    podman.ok(&args)
}

#[test]
#[ignore = "slow (release build + image build): run by `bash tests/image`"]
fn image_runs_installs_the_plugin_and_its_sidecar_serves_a_pod() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let podman = Podman::new(&lab.facts.client_ns);
    let dir = podman.dir().to_path_buf();

    let root = files::repo_root();
    let archive = std::env::var_os("SOFTETHER_TEST_IMAGE_ARCHIVE")
        .map(PathBuf::from)
        .expect("SOFTETHER_TEST_IMAGE_ARCHIVE: run `bash tests/image`, which builds the image");
    podman.ok(&[
        "load",
        "--quiet",
        "--input",
        archive.to_str().expect("utf-8"),
    ]);
    let size: u64 = podman
        .ok(&["image", "inspect", "--format", "{{.Size}}", IMAGE])
        .parse()
        .expect("image size");
    println!("| image size (podman) | {:.1} MB |", size as f64 / 1e6);

    // The default entrypoint.
    let version = podman.ok(&["run", "--rm", "--network", "none", IMAGE, "--version"]);
    assert_eq!(
        version,
        format!("softether-sidecar {}", env!("CARGO_PKG_VERSION"))
    );

    // The init step, with its manifest command and mount.
    let pod_spec = daemonset_pod();
    let init = &pod_spec["initContainers"][0];
    let init_mount = init["volumeMounts"][0]["mountPath"]
        .as_str()
        .expect("mount");
    let host_bin = dir.join("host-opt-cni-bin");
    fs::create_dir_all(&host_bin).expect("host bin dir");
    let out = run(
        &podman,
        &run_args(
            &[format!("{}:{init_mount}", host_bin.display())],
            &["--rm", "--network", "none"],
            &command_of(init),
        ),
    );
    assert!(out.contains("installed"), "{out}");
    let installed = host_bin.join("softether");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let release = target.join("release/softether");
    assert_eq!(
        fs::read(&installed).expect("installed plugin"),
        fs::read(&release).expect("release plugin"),
        "the init step installed something else than the release build"
    );
    assert_eq!(
        fs::metadata(&installed).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let names: Vec<String> = fs::read_dir(&host_bin)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["softether"], "temporary files left: {names:?}");

    // The sidecar container as the DaemonSet runs it; host paths are test directories.
    let sidecar = pod_spec["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "sidecar")
        .expect("sidecar container")
        .clone();
    let backing = |volume: &str| -> PathBuf {
        match volume {
            "netns" => PathBuf::from("/run/netns"),
            other => dir.join(format!("host-{other}")),
        }
    };
    let mut mounts = Vec::new();
    for m in sidecar["volumeMounts"].as_array().unwrap() {
        let (name, path) = (
            m["name"].as_str().unwrap(),
            m["mountPath"].as_str().unwrap(),
        );
        let host = backing(name);
        fs::create_dir_all(&host).expect("host dir");
        let opts = match (m["readOnly"].as_bool(), m["mountPropagation"].as_str()) {
            (_, Some("HostToContainer")) => ":rslave",
            (Some(true), _) => ":ro",
            _ => "",
        };
        mounts.push(format!("{}:{path}{opts}", host.display()));
    }
    let password = backing("secrets").join("alice.password");
    fs::write(&password, format!("{}\n", lab.facts.alice.password)).expect("password");
    fs::set_permissions(&password, fs::Permissions::from_mode(0o400)).expect("chmod");
    let command = command_of(&sidecar);
    let mut flags = vec!["--detach", "--name", "sidecar", "--privileged"];
    flags.extend(["--network", "host", "--pid", "host"]);
    run(&podman, &run_args(&mounts, &flags, &command));
    let socket_in_container =
        command[command.iter().position(|a| a == "--socket").unwrap() + 1].clone();
    let socket = backing("socket-dir").join(
        Path::new(&socket_in_container)
            .file_name()
            .expect("socket name"),
    );
    let state = backing("state-dir");
    let status = |json: bool| {
        let mut args = vec!["exec", "sidecar", "softether-sidecar", "status"];
        if json {
            args.push("--json");
        }
        args.extend(["--socket", &socket_in_container]);
        podman.run(&args)
    };
    let until = Instant::now() + Duration::from_secs(60);
    while !status(false).status.success() {
        assert!(
            Instant::now() < until,
            "the image's sidecar does not answer: {}",
            podman.ok(&["logs", "sidecar"])
        );
        std::thread::sleep(POLL);
    }

    // A pod attached with the installed plugin, as a CNI runtime on the node does.
    let f = &lab.facts;
    let plugin = json!({
        "type": "softether",
        "server": f.server_ip.to_string(), "port": f.port, "hub": f.hub, "user": f.alice.name,
        "passwordFile": "/etc/softether-cni/secrets/alice.password", "insecure": true,
        "acceptStaticRoutes": true, "timeout": 90,
        // CONNMARK: the sidecar runs the image's `nft` (with the libraries build-image copied).
        "policyRouteTable": 100, "connmark": true,
        "sidecarSocket": socket, "stateDir": state
    });
    let list = network_list("softether-vpn", "1.0.0", &plugin, false);
    let runtime = Runtime::new(&f.client_ns, vec![host_bin.clone()]);
    let pod = extra_netns();
    let att = pod_attachment("image-e2e-pod", pod.name());
    let result = runtime
        .add(&list, &att)
        .unwrap_or_else(|e| panic!("ADD: {e}\n{}", podman.ok(&["logs", "sidecar"])));
    assert!(result.to_string().contains("10.99.0."), "{result}");
    let tables = must(pod.name(), &["nft", "list", "tables", "inet"]);
    assert!(
        !tables.trim().is_empty(),
        "no CONNMARK table from the image's nft: {}",
        podman.ok(&["logs", "sidecar"])
    );
    let (ok, out) = ping_lan(&lab, pod.name(), 5);
    assert!(ok, "ping through the image's sidecar: {out}");
    let listed: Value =
        serde_json::from_slice(&status(true).stdout).expect("status --json from the image");
    assert_eq!(
        listed["attachments"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );

    runtime.del(&list, &att).expect("DEL");
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let listed: Value = serde_json::from_slice(&status(true).stdout).unwrap_or(Value::Null);
        if listed["attachments"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(Instant::now() < until, "not released: {listed}");
        std::thread::sleep(POLL);
    }
    assert_eq!(pod_leftovers(pod.name()), Vec::<String>::new());
    assert_eq!(state_leftovers(&state), Vec::<String>::new());
    podman.ok(&["stop", "--time", "10", "sidecar"]);
}
