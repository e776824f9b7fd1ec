//! Everything under `deploy/` and `examples/` that a user applies or copies is checked here:
//!
//! - every Kubernetes manifest against the official schemas (PyPI `kubernetes-validate`, strict
//!   mode: unknown fields are errors), installed on first use into a venv under `target/`;
//! - NetworkAttachmentDefinitions (a CRD, no built-in schema) by hand: shape, the embedded JSON
//!   config, only known plugin keys (the plugin itself ignores unknown keys, so a typo would pass it);
//! - cross-file consistency: DaemonSet socket/state paths vs. the network configs, password files vs.
//!   the Secret mount and the example Secret, the image (deploy/Containerfile FROM scratch, built by
//!   deploy/build-image) vs. the DaemonSet;
//! - the plugin binary accepts every shipped network config: VERSION lists the config's versions,
//!   and ADD into a fresh namespace with the sidecar socket pointed nowhere fails with 11 ("sidecar
//!   unreachable") instead of 4/7, which proves env and config passed validation;
//! - examples/podman5: the quadlet network's options pass the plugin's netavark `create` as
//!   Podman sends them, and the container unit names that network;
//! - documented flags exist (`softether-sidecar run/status/connect --help`), systemd units verify.
//!
//! Needs `cargo build -p softether-cni -p softether-sidecar` first, root (namespaces), `python3`
//! with `venv` and network access to PyPI on the first run. Missing tooling fails the test.

#[path = "deploy_manifests/exec.rs"]
mod exec;
#[path = "deploy_manifests/files.rs"]
mod files;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use exec::{add_reaches_the_sidecar, built, plugin, plugin_with_args, run, sidecar_help, text};
use files::*;

#[test]
fn kubernetes_manifests_pass_the_strict_schemas() {
    let dir = TempDir::new("schemas");
    let mut files = Vec::new();
    for (n, doc) in manifests()
        .iter()
        .filter(|d| d.kind() != NAD_KIND)
        .enumerate()
    {
        // One document per file, so each error names one object.
        let file = dir
            .0
            .join(format!("{n}-{}-{}.json", doc.kind(), doc.name()));
        fs::write(&file, doc.doc.to_string()).unwrap();
        files.push(file);
    }
    let kinds: BTreeSet<&str> = manifests().iter().map(Doc::kind).collect();
    for kind in ["Namespace", "DaemonSet", "Secret", "Pod", NAD_KIND] {
        assert!(
            kinds.contains(kind),
            "no {kind} among the manifests: {kinds:?}"
        );
    }
    for version in KUBERNETES_VERSIONS {
        let out = validate(&files, version);
        assert!(
            out.status.success(),
            "manifests do not validate against Kubernetes {version}:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    // The validator must actually reject things (an unknown field in strict mode).
    let bad = dir.0.join("bad.json");
    let mut doc = docs_of("DaemonSet")[0].doc.clone();
    doc["spec"]["template"]["spec"]["hostNetwrok"] = json!(true);
    fs::write(&bad, doc.to_string()).unwrap();
    assert!(!validate(&[bad], KUBERNETES_VERSIONS[1]).status.success());
}

#[test]
fn network_attachment_definitions_are_well_formed() {
    let nads = docs_of(NAD_KIND);
    assert!(!nads.is_empty());
    for nad in nads {
        let at = nad.file.display();
        let d = &nad.doc;
        assert_eq!(d["apiVersion"], "k8s.cni.cncf.io/v1", "{at}");
        let name = nad.name();
        let dns_label = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        assert!(
            dns_label,
            "{at}: metadata.name {name:?} is not a DNS-1123 label"
        );
        let top: BTreeSet<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
        assert!(
            top.is_subset(&BTreeSet::from(["apiVersion", "kind", "metadata", "spec"])),
            "{at}"
        );
        let spec: Vec<&String> = d["spec"].as_object().unwrap().keys().collect();
        assert_eq!(spec, ["config"], "{at}: spec has only `config`");
        let conf: Value = serde_json::from_str(d["spec"]["config"].as_str().unwrap()).unwrap();
        assert_eq!(
            conf["name"], name,
            "{at}: config name and metadata.name differ"
        );
    }
}

#[test]
fn network_configs_use_safe_versions_and_known_keys() {
    let configs = network_configs();
    assert!(
        configs.len() >= 4,
        "expected NADs and conflists, found {}",
        configs.len()
    );
    for (at, conf) in &configs {
        // cni.md: libcni <= 1.1 cannot convert a 1.1.0 result, so ship 1.0.0 + cniVersions.
        assert_eq!(conf["cniVersion"], "1.0.0", "{at}");
        assert_eq!(
            conf["cniVersions"],
            json!(["0.4.0", "1.0.0", "1.1.0"]),
            "{at}"
        );
        let ours = softether_plugins(conf);
        assert_eq!(ours.len(), 1, "{at}: one softether plugin");
        for key in ours[0].as_object().unwrap().keys() {
            assert!(
                PLUGIN_KEYS.contains(&key.as_str()),
                "{at}: unknown plugin key {key:?}"
            );
        }
        for p in plugins(conf) {
            assert!(p.get("password").is_none(), "{at}: inline password");
        }
    }
}

/// `--flag VALUE` from a command list.
fn flag<'a>(cmd: &'a [Value], name: &str) -> Option<&'a str> {
    let i = cmd.iter().position(|a| a == name)?;
    cmd.get(i + 1)?.as_str()
}

#[test]
fn daemonset_matches_the_network_configs_and_the_secret() {
    let ds = &docs_of("DaemonSet")[0].doc;
    let pod = &ds["spec"]["template"]["spec"];
    let labels = ds["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .unwrap();
    for (k, v) in ds["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            labels.get(k),
            Some(v),
            "selector label {k} not on the template"
        );
    }
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    assert_eq!(pod["tolerations"], json!([{"operator": "Exists"}]));
    let volumes = pod["volumes"].as_array().unwrap();
    let volume = |name: &str| volumes.iter().find(|v| v["name"] == name).unwrap();
    let init = &pod["initContainers"][0];
    let script = init["command"].to_string();
    assert!(
        script.contains("mv -f") && script.contains(".tmp"),
        "install by rename: {script}"
    );
    let sidecar = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["command"][0] == "softether-sidecar")
        .expect("a container running softether-sidecar");
    assert_eq!(sidecar["securityContext"]["privileged"], true);
    let cmd = sidecar["command"].as_array().unwrap();
    assert_eq!(cmd[1], "run");
    let socket = flag(cmd, "--socket").expect("--socket");
    let state = flag(cmd, "--state-dir").expect("--state-dir");
    // Probes use the metrics endpoint, bound to the node's loopback (hostNetwork: metrics
    // name container ids and must not reach the node network by default).
    let metrics = flag(cmd, "--metrics-addr").expect("--metrics-addr");
    assert!(metrics.starts_with("127.0.0.1:"), "{metrics}");
    let port: u16 = metrics.rsplit(':').next().unwrap().parse().unwrap();
    for (probe, path) in [
        ("startupProbe", "/readyz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        let p = &sidecar[probe]["httpGet"];
        assert_eq!(
            (&p["host"], &p["port"], &p["path"]),
            (&json!("127.0.0.1"), &json!(port), &json!(path)),
            "{probe}"
        );
    }
    let annotations = &ds["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"], port.to_string());
    // Every mount names a volume; socket dir, state dir and /run/netns are the host's own paths.
    let mount_of = |path: &str| -> &Value {
        sidecar["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("nothing mounted at {path}"))
    };
    let socket_dir = Path::new(socket).parent().unwrap().to_str().unwrap();
    for path in [socket_dir, state, "/run/netns"] {
        let vol = volume(mount_of(path)["name"].as_str().unwrap());
        assert_eq!(
            vol["hostPath"]["path"], path,
            "{path} must be the same hostPath"
        );
    }
    assert_eq!(
        mount_of("/run/netns")["mountPropagation"],
        "HostToContainer"
    );
    let secret_mount = mount_of(SECRET_MOUNT.trim_end_matches('/'));
    let secret_vol = volume(secret_mount["name"].as_str().unwrap());
    assert_eq!(secret_vol["secret"]["defaultMode"], 0o400);
    let secret_name = secret_vol["secret"]["secretName"].as_str().unwrap();
    let secret = docs_of("Secret")
        .into_iter()
        .find(|s| s.name() == secret_name)
        .unwrap();
    let keys = secret.doc["stringData"].as_object().unwrap();

    // Password files named by NADs and by pods' cni-args are keys of that Secret.
    let mut password_files = Vec::new();
    for (at, conf) in network_configs() {
        let ours = softether_plugins(&conf)[0];
        if at.ends_with(".conflist") || at.ends_with(".json") {
            continue; // Podman: host paths, not the Secret.
        }
        let sock = ours["sidecarSocket"]
            .as_str()
            .unwrap_or("/run/softether-cni/sidecar.sock");
        let st = ours["stateDir"]
            .as_str()
            .unwrap_or("/var/lib/softether-cni");
        assert_eq!(
            (sock, st),
            (socket, state),
            "{at}: sidecarSocket/stateDir vs DaemonSet"
        );
        password_files.push((at, ours["passwordFile"].as_str().unwrap().to_owned()));
    }
    for (at, element) in pod_network_elements() {
        if let Some(file) = element["cni-args"]["passwordFile"].as_str() {
            password_files.push((at, file.to_owned()));
        }
    }
    for (at, file) in password_files {
        let key = file.strip_prefix(SECRET_MOUNT).unwrap_or_else(|| {
            panic!("{at}: passwordFile {file} is not under the Secret mount {SECRET_MOUNT}")
        });
        assert!(
            keys.contains_key(key),
            "{at}: {key} missing from Secret {secret_name}"
        );
    }
}

#[test]
fn the_plugin_accepts_every_shipped_network_config() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test creates network namespaces: run as root"
    );
    let mut checked = 0;
    for (at, conf) in network_configs() {
        let (ok, version) = plugin(
            &[("CNI_COMMAND", "VERSION")],
            &json!({"cniVersion": "1.0.0"}),
        );
        assert!(ok, "VERSION: {version}");
        let supported = version["supportedVersions"].as_array().unwrap();
        for v in conf["cniVersions"].as_array().unwrap() {
            assert!(supported.contains(v), "{at}: cniVersions {v} not supported");
        }
        // What the runtime sends: the plugin object plus cniVersion and name from the list; with
        // libcni >= 1.2 the highest common entry of cniVersions (1.1.0) instead of cniVersion.
        let mut stdin = softether_plugins(&conf)[0].clone();
        stdin["name"] = conf["name"].clone();
        stdin.as_object_mut().unwrap().remove("capabilities");
        for version in [&conf["cniVersion"], &json!("1.1.0")] {
            stdin["cniVersion"] = version.clone();
            let out = add_reaches_the_sidecar(&at, &stdin, "IgnoreUnknown=1");
            assert_eq!(out["code"], 11, "{at} (cniVersion {version}): {out}");
            assert!(
                out["msg"].as_str().unwrap().contains("sidecar unreachable"),
                "{out}"
            );
            checked += 1;
        }
        // Multus: per-pod cni-args of pods that select this network become args.cni.
        for (pod, element) in pod_network_elements() {
            if element["name"] != conf["name"] || element.get("cni-args").is_none() {
                continue;
            }
            let mut with_args = stdin.clone();
            with_args["args"] = json!({ "cni": element["cni-args"] });
            let out = add_reaches_the_sidecar(&pod, &with_args, "IgnoreUnknown=1");
            assert_eq!(out["code"], 11, "{pod}: {out}");
            checked += 1;
        }
    }
    // Podman: every CNI_ARGS="..." the READMEs show, as Podman 4 passes it (appended to its own).
    let podman = network_configs()
        .into_iter()
        .find(|(at, _)| at.ends_with("softether-vpn.conflist"))
        .expect("examples/podman/softether-vpn.conflist")
        .1;
    let mut stdin = softether_plugins(&podman)[0].clone();
    stdin["cniVersion"] = podman["cniVersion"].clone();
    stdin["name"] = podman["name"].clone();
    for args in documented_cni_args() {
        let cni_args = format!("IgnoreUnknown=1;K8S_POD_NAME=bob;{args}");
        let out = add_reaches_the_sidecar(&args, &stdin, &cni_args);
        assert_eq!(out["code"], 11, "CNI_ARGS={args}: {out}");
        checked += 1;
    }
    // And the harness tells an invalid config apart: connmark without policyRouteTable is 7.
    let mut bad = stdin.clone();
    bad["connmark"] = json!(true);
    bad.as_object_mut().unwrap().remove("policyRouteTable");
    assert_eq!(add_reaches_the_sidecar("bad", &bad, "")["code"], 7);
    assert!(checked >= 8, "only {checked} configurations checked");
}

/// Quadlet turns examples/podman5/vpn.network into `podman network create -d softether --opt
/// KEY=VALUE … NAME`, and Podman hands our `create` the network with those options as strings
/// (what tests/tests/netavark_e2e.rs sends against the lab). The plugin must accept every
/// option the example ships and give the network back unchanged, without subnets of its own.
#[test]
fn the_quadlet_network_passes_the_plugins_create() {
    let root = repo_root();
    let unit = fs::read_to_string(root.join("examples/podman5/vpn.network")).unwrap();
    let value = |key: &str| -> Vec<&str> {
        let prefix = format!("{key}=");
        unit.lines()
            .filter_map(|l| l.strip_prefix(prefix.as_str()))
            .collect()
    };
    assert_eq!(value("Driver"), ["softether"], "vpn.network Driver");
    let name = value("NetworkName");
    assert_eq!(
        name.len(),
        1,
        "vpn.network names its network once: {name:?}"
    );
    let options: serde_json::Map<String, Value> = value("Options")
        .into_iter()
        .map(|o| o.split_once('=').expect("Options=KEY=VALUE"))
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
    assert!(options.len() >= 5, "vpn.network options: {options:?}");
    let network = json!({
        "name": name[0],
        "id": "5e7c0ffee5e7c0ffee5e7c0ffee5e7c0ffee5e7c0ffee5e7c0ffee5e7c0ffee0",
        "driver": "softether",
        "created": "2026-01-02T03:04:05.000000000Z",
        "ipv6_enabled": false, "internal": false, "dns_enabled": true,
        "labels": {}, "options": options, "ipam_options": {}
    });
    let (ok, stored) = plugin_with_args(&["create"], &[], &network);
    assert!(ok, "create refused the quadlet network: {stored}");
    for key in ["name", "id", "driver"] {
        assert_eq!(stored[key], network[key], "{key} changed: {stored}");
    }
    assert_eq!(stored["options"], network["options"], "{stored}");
    assert!(
        stored["subnets"].as_array().is_none_or(|s| s.is_empty()),
        "{stored}"
    );
    // And the container unit joins that network (quadlet resolves vpn.network to it).
    let container = fs::read_to_string(root.join("examples/podman5/vpn-web.container")).unwrap();
    assert!(
        container.lines().any(|l| l == "Network=vpn.network"),
        "vpn-web.container does not use vpn.network"
    );
}

#[test]
fn documented_flags_exist_and_systemd_units_verify() {
    let root = repo_root();
    let connect = sidecar_help("connect");
    let readme = fs::read_to_string(root.join("examples/connect/README.md")).unwrap();
    let documented = long_flags(&connect_commands(&readme));
    let missing: Vec<_> = connect.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "examples/connect/README.md lacks {missing:?}"
    );
    let unknown: Vec<_> = documented.difference(&connect).collect();
    assert!(
        unknown.is_empty(),
        "examples/connect/README.md names unknown flags {unknown:?}"
    );

    let units = shipped_files(&[".service"]);
    assert!(units.len() >= 2, "{units:?}");
    let tmp = TempDir::new("units");
    for unit in units {
        let body = fs::read_to_string(&unit).unwrap();
        let exec = body
            .split("ExecStart=")
            .nth(1)
            .expect("ExecStart")
            .replace("\\\n", " ");
        let exec = exec.lines().next().unwrap();
        let sub = if exec.contains(" run ") {
            "run"
        } else {
            "connect"
        };
        let flags = long_flags(exec);
        assert!(
            flags.is_subset(&sidecar_help(sub)),
            "{}: {flags:?}",
            unit.display()
        );
        // systemd-analyze wants the binary to exist: point it at the built one.
        let local = body
            .replace(
                "/usr/local/bin/softether-sidecar",
                built("softether-sidecar", "softether-sidecar")
                    .to_str()
                    .unwrap(),
            )
            .replace("EnvironmentFile=", "EnvironmentFile=-");
        let name = unit
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .replace("@.", "@test.");
        fs::write(tmp.0.join(&name), local).unwrap();
        let out = run(Command::new("systemd-analyze")
            .arg("verify")
            .arg(tmp.0.join(&name)));
        let complaints = text(&out.stderr);
        assert!(
            out.status.success() && !complaints.contains(&name),
            "systemd-analyze verify {}:\n{complaints}",
            unit.display()
        );
    }
}

#[test]
fn the_image_is_built_from_scratch_with_both_binaries_and_no_registry() {
    let root = repo_root();
    let file = fs::read_to_string(root.join("deploy/Containerfile")).unwrap();
    let script = fs::read_to_string(root.join("deploy/build-image")).unwrap();
    // No base image to pull: every stage starts from scratch.
    let froms: Vec<&str> = file.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms, ["FROM scratch"], "Containerfile stages");
    for needle in ["ADD rootfs.tar /", "ENTRYPOINT [\"softether-sidecar\"]"] {
        assert!(file.contains(needle), "Containerfile lacks {needle:?}");
    }
    for needle in [
        "cargo build --release --locked -p softether-cni -p softether-sidecar",
        "/usr/local/bin/softether\"",
        "/usr/local/bin/softether-sidecar\"",
        "/usr/sbin/nft",
        "/etc/ssl/certs/ca-certificates.crt",
        "ldd",
        "buildah",
    ] {
        assert!(
            script.contains(needle),
            "deploy/build-image lacks {needle:?}"
        );
    }
    // The DaemonSet runs the binaries where the image puts them, under the script's default name.
    let manifest = fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("workspace version");
    assert!(
        script.contains("tag=\"localhost/softether-cni:$version\""),
        "build-image default tag"
    );
    let ds = docs_of("DaemonSet")[0].doc.to_string();
    assert!(
        ds.contains("cp /usr/local/bin/softether "),
        "init container copies the image's plugin"
    );
    assert!(
        ds.contains(&format!("\"image\":\"localhost/softether-cni:{version}\"")),
        "the DaemonSet names the image build-image makes"
    );
}
