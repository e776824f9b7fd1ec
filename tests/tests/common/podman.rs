//! Real Podman 4.3 (Debian 12; CNI backend, or netavark with a netavark that has the plugin API)
//! for end-to-end tests, set up privately so the host's Podman state is never touched:
//!
//! - one directory per instance (`/tmp/softether-podman-<pid>-<n>`) holding `containers.conf`
//!   (named by `CONTAINERS_CONF`), the CNI config dir `net.d`, a plugin dir `bin` with the
//!   workspace's `softether`, and Podman's `--root`, `--runroot` and `--tmpdir`; with the netavark
//!   backend also `networks/` (network JSON files) and `helpers/netavark` (a wrapper adding
//!   `--plugin-directory bin`);
//! - every `podman` runs with only its network namespace switched to the lab's client ("node")
//!   namespace (`nsenter --net=…`, not `ip netns exec`: that would also give it a private mount
//!   namespace, and the bind mounts of the container netns under /run/netns must be visible to
//!   the next `podman`, to conmon's cleanup and to the sidecar). So the plugin and the container's
//!   new namespace are created from the client namespace, exactly like on a node;
//! - runtime `runc`, cgroup manager `cgroupfs`, file events and tight ulimits (docs/cni.md §13:
//!   crun cannot do hybrid cgroups v1, and Podman's default rlimits exceed the hard limits here);
//! - a busybox image imported from Debian's busybox-static (`podman import`, no registry).
//!
//! Dropping it removes every container and image, kills conmon leftovers of this instance (by pid)
//! and deletes the directory.
#![allow(dead_code)] // each test binary uses a different subset

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use softether_lab::command;
use softether_lab::prereq::{self, Tool};

use super::{helper_pids, unmount_below, workspace_bin};

/// The network name, also the conflist's file name.
pub const NETWORK: &str = "softether-vpn";
/// The image `import_busybox` creates.
pub const IMAGE: &str = "localhost/bbtest:latest";
/// Deadline of one `podman` command (a `run` includes the plugin's ADD: login + DHCP).
pub const PODMAN_TIMEOUT: Duration = Duration::from_secs(120);
/// Debian's statically linked busybox (package busybox-static).
const BUSYBOX: &str = "/bin/busybox";
/// Applets linked in the image, so `ip`, `ping`, `sh` work by name too.
const APPLETS: &[&str] = &["sh", "ip", "ping", "sleep", "cat", "ls", "echo"];

const TOOLS: &[Tool] = &[
    Tool {
        program: "/usr/bin/podman",
        package: "podman",
    },
    Tool {
        program: "runc",
        package: "runc",
    },
    Tool {
        program: "conmon",
        package: "conmon",
    },
    Tool {
        program: "nsenter",
        package: "util-linux",
    },
    Tool {
        program: BUSYBOX,
        package: "busybox-static",
    },
];

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A private Podman installation whose commands run in network namespace `netns`.
pub struct Podman {
    dir: PathBuf,
    netns: String,
}

impl Podman {
    /// Checks the prerequisites (missing Podman is a failure, never a skip) and writes the private
    /// configuration (CNI backend). Podman's own state directories are created by its first command.
    pub fn new(netns: &str) -> Podman {
        let podman = Podman::prepare(netns);
        podman.write_conf(
            "",
            &format!(
                "network_backend = \"cni\"\n\
                 cni_plugin_dirs = [\"{bin}\", \"/usr/lib/cni\"]\n\
                 network_config_dir = \"{netd}\"\n",
                bin = podman.dir.join("bin").display(),
                netd = podman.dir.join("net.d").display(),
            ),
        );
        podman
    }

    /// Like [`Podman::new`] with the netavark backend: `helper_binaries_dir` holds a `netavark`
    /// wrapper that runs `netavark` (a build with the plugin API) with `--plugin-directory
    /// <dir>/bin` (where `softether` is) and no firewall driver (a plugin network needs none, and
    /// the host's firewall stays untouched); networks are JSON files in `networks/`
    /// ([`Podman::write_netavark_network`]).
    pub fn with_netavark(netns: &str, netavark: &Path) -> Podman {
        let podman = Podman::prepare(netns);
        let helpers = podman.dir.join("helpers");
        fs::create_dir_all(&helpers).expect("helpers dir");
        let wrapper = helpers.join("netavark");
        fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\n# written by tests/tests/common/podman.rs\n\
                 NETAVARK_FW=none exec '{}' --plugin-directory '{}' \"$@\"\n",
                netavark.display(),
                podman.dir.join("bin").display()
            ),
        )
        .expect("netavark wrapper");
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).expect("chmod wrapper");
        podman.write_conf(
            &format!("helper_binaries_dir = [\"{}\"]\n", helpers.display()),
            &format!(
                "network_backend = \"netavark\"\nnetwork_config_dir = \"{}\"\n",
                podman.dir.join("networks").display()
            ),
        );
        podman
    }

    fn prepare(netns: &str) -> Podman {
        prereq::require_root().unwrap_or_else(|e| panic!("{e:#}"));
        prereq::require_tools(TOOLS).unwrap_or_else(|e| panic!("{e:#}"));
        let dir = PathBuf::from(format!(
            "/tmp/softether-podman-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        for sub in ["bin", "net.d", "networks"] {
            fs::create_dir_all(dir.join(sub)).expect("podman test dir");
        }
        std::os::unix::fs::symlink(workspace_bin("softether"), dir.join("bin/softether"))
            .expect("plugin symlink");
        Podman {
            dir,
            netns: netns.to_owned(),
        }
    }

    /// `containers.conf` with extra `[engine]` and `[network]` lines.
    fn write_conf(&self, engine: &str, network: &str) {
        let conf = format!(
            "# written by tests/tests/common/podman.rs\n\
             [containers]\n\
             default_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\
             [engine]\n\
             runtime = \"runc\"\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n\
             {engine}\
             [network]\n\
             {network}"
        );
        fs::write(self.dir.join("containers.conf"), conf).expect("containers.conf");
    }

    /// Writes `networks/<name>.json` (netavark backend): what `podman network create` stores.
    pub fn write_netavark_network(&self, network: &Value) {
        let name = network["name"].as_str().expect("network name");
        fs::write(
            self.dir.join(format!("networks/{name}.json")),
            serde_json::to_string_pretty(network).expect("json"),
        )
        .expect("network file");
    }

    /// The instance's directory (for extra files such as password files).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `net.d/<NETWORK>.conflist` with `plugin` as its only plugin.
    pub fn write_network(&self, cni_version: &str, plugin: Value) {
        let conflist = serde_json::json!({
            "cniVersion": cni_version,
            "name": NETWORK,
            "plugins": [plugin],
        });
        fs::write(
            self.dir.join(format!("net.d/{NETWORK}.conflist")),
            serde_json::to_string_pretty(&conflist).expect("json"),
        )
        .expect("conflist");
    }

    /// `podman <global flags> <args>` in the namespace, with the private configuration.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.netns))
            .arg("/usr/bin/podman")
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args(args)
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"));
        cmd
    }

    /// Runs podman (bounded by [`PODMAN_TIMEOUT`]); returns its output whatever the status.
    pub fn run(&self, args: &[&str]) -> Output {
        command::run(&mut self.command(args), PODMAN_TIMEOUT)
            .unwrap_or_else(|e| panic!("podman {args:?}: {e:#}"))
    }

    /// Runs podman, panicking with its output unless it succeeds; returns trimmed stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args:?} failed ({}):\nstderr: {}\nstdout: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Builds a rootfs from Debian's static busybox (+ applet symlinks) and imports it as [`IMAGE`].
    pub fn import_busybox(&self) {
        self.import_busybox_with_cmd(r#"["/bin/sh"]"#);
    }

    /// [`Podman::import_busybox`] with the image's default command `cmd` (a JSON array).
    pub fn import_busybox_with_cmd(&self, cmd: &str) {
        let binary = fs::read(BUSYBOX).expect("read /bin/busybox");
        // A dynamically linked busybox (package `busybox`) would not run in the empty rootfs.
        assert!(
            !binary.windows(7).any(|w| w == b".interp"),
            "{BUSYBOX} is dynamically linked: install busybox-static"
        );
        let rootfs = self.dir.join("rootfs");
        fs::create_dir_all(rootfs.join("bin")).expect("rootfs");
        fs::write(rootfs.join("bin/busybox"), binary).expect("copy busybox");
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(
            rootfs.join("bin/busybox"),
            fs::Permissions::from_mode(0o755),
        )
        .expect("chmod busybox");
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
                .expect("applet symlink");
        }
        let tar = self.dir.join("rootfs.tar");
        command::run_ok(
            Command::new("tar")
                .arg("-C")
                .arg(&rootfs)
                .arg("-cf")
                .arg(&tar)
                .arg("."),
            Duration::from_secs(30),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        self.ok(&[
            "import",
            "--quiet",
            "--change",
            &format!("CMD {cmd}"),
            tar.to_str().expect("utf-8 path"),
            IMAGE,
        ]);
    }

    /// `podman save` of [`IMAGE`] as a docker-archive tar at `path` (what `ctr images import`
    /// reads; the archive names the image, so it keeps its name there).
    pub fn save(&self, path: &Path) {
        self.ok(&[
            "save",
            "--quiet",
            "--format",
            "docker-archive",
            "--output",
            path.to_str().expect("utf-8 path"),
            IMAGE,
        ]);
    }

    /// Pids of conmon processes belonging to this instance (their command line names our dir).
    pub fn conmon_pids(&self) -> Vec<i32> {
        helper_pids("conmon", &self.dir.to_string_lossy())
    }

    /// Waits (bounded) until no conmon of this instance is left; returns whether that happened.
    pub fn wait_no_conmon(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        loop {
            if self.conmon_pids().is_empty() {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        if self.dir.join("root").exists() {
            // Force-remove runs the plugin's DEL for containers still attached.
            let _ = command::run(
                &mut self.command(&["rm", "--all", "--force", "--time", "0"]),
                PODMAN_TIMEOUT,
            );
            let _ = command::run(
                &mut self.command(&["rmi", "--all", "--force"]),
                PODMAN_TIMEOUT,
            );
        }
        if !self.wait_no_conmon(Duration::from_secs(5)) {
            for pid in self.conmon_pids() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        unmount_below(&self.dir);
        let _ = fs::remove_dir_all(&self.dir);
    }
}
