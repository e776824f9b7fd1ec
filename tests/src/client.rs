//! The official SoftEther VPN Client (Debian `softether-vpnclient`) as a reference client inside a lab
//! namespace: proves the hub's data path end to end, and gives tests a known-good peer on the hub.
//!
//! Like the server, it runs from a private copy with private state directories (see [`crate::server`]).
//! It manages itself through `vpncmd /CLIENT localhost` on port 9930 of its namespace, so run at most one
//! per namespace.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::command;
use crate::netns;
use crate::prereq::{self, VPNCLIENT_DIR, VPNCMD};
use crate::server::{copy_binary, spawn_private, StateDirs};
use crate::Lab;

/// Account name used inside the client's config.
const ACCOUNT: &str = "lab";

/// How the official client authenticates.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// Password user. `plain: false` sends the hashed password (authtype 1, "standard"); `plain: true` sends
    /// the password itself (authtype 2, vpncmd's "radius" type), which the server also checks against the
    /// local user's password hash first.
    Password {
        /// User name.
        user: String,
        /// Password.
        password: String,
        /// Send the plain-text password (authtype 2) instead of the hash.
        plain: bool,
    },
    /// Certificate user (authtype 3): client certificate and private key, PEM.
    Cert {
        /// User name.
        user: String,
        /// Certificate, PEM.
        cert_pem: PathBuf,
        /// Private key, PEM (PKCS#8 works).
        key_pem: PathBuf,
    },
    /// Anonymous user (authtype 0).
    Anonymous {
        /// User name.
        user: String,
    },
}

impl ClientAuth {
    /// The hub user name.
    pub fn user(&self) -> &str {
        match self {
            ClientAuth::Password { user, .. }
            | ClientAuth::Cert { user, .. }
            | ClientAuth::Anonymous { user } => user,
        }
    }
}

/// A running official vpnclient; killed (process group) on drop.
#[derive(Debug)]
pub struct OfficialClient {
    ns: String,
    dir: PathBuf,
    _state: StateDirs,
    child: Option<Child>,
}

impl OfficialClient {
    /// Starts a vpnclient in `ns` from a copy under `<lab dir>/<name>/`, and waits until it answers vpncmd.
    pub fn start(lab: &Lab, ns: &str, name: &str) -> Result<Self> {
        prereq::require_tools(prereq::CLIENT_TOOLS)?;
        let dir = lab.facts.dir.join(name);
        let state = copy_binary(VPNCLIENT_DIR, "vpnclient", &dir)?;
        let child = spawn_private(ns, &dir, "vpnclient", &state)?;
        let client = OfficialClient {
            ns: ns.to_owned(),
            dir,
            _state: state,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Err(e) = client.vpncmd(&["VersionGet"]) {
            if Instant::now() >= deadline {
                return Err(e.context("official vpnclient did not come up"));
            }
            thread::sleep(Duration::from_millis(200));
        }
        Ok(client)
    }

    /// Runs a `vpncmd /CLIENT localhost /CMD <args>` command; error on a non-zero SoftEther error code.
    pub fn vpncmd(&self, args: &[&str]) -> Result<String> {
        let mut argv = vec![VPNCMD, "localhost", "/CLIENT", "/CMD"];
        argv.extend_from_slice(args);
        let mut cmd = netns::command_in(&self.ns, &argv);
        cmd.current_dir(&self.dir);
        let out = command::run(&mut cmd, Duration::from_secs(30))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() || !stdout.contains("The command completed successfully") {
            bail!(
                "client vpncmd {} failed ({}): {}",
                args.join(" "),
                out.status,
                stdout.trim()
            );
        }
        Ok(stdout)
    }

    /// Creates virtual NIC `nic` (Linux interface `vpn_<nic>` in the client's namespace), connects it to the
    /// lab hub with `auth`, and waits (≤ 20 s) for the session. Returns the interface name; it is left down
    /// and unaddressed for the caller to configure.
    pub fn connect(&self, lab: &Lab, nic: &str, auth: &ClientAuth) -> Result<String> {
        let f = &lab.facts;
        self.vpncmd(&["NicCreate", nic])?;
        let server = format!("/SERVER:{}:{}", f.server_ip, f.port);
        self.vpncmd(&[
            "AccountCreate",
            ACCOUNT,
            &server,
            &format!("/HUB:{}", f.hub),
            &format!("/USERNAME:{}", auth.user()),
            &format!("/NICNAME:{nic}"),
        ])?;
        match auth {
            ClientAuth::Password {
                password, plain, ..
            } => {
                let kind = if *plain {
                    "/TYPE:radius"
                } else {
                    "/TYPE:standard"
                };
                self.vpncmd(&[
                    "AccountPasswordSet",
                    ACCOUNT,
                    &format!("/PASSWORD:{password}"),
                    kind,
                ])?;
            }
            ClientAuth::Cert {
                cert_pem, key_pem, ..
            } => {
                // vpncmd treats arguments starting with '/' as options: pass paths relative to our dir.
                let cert = self.stage(cert_pem, "client-cert.pem")?;
                let key = self.stage(key_pem, "client-key.pem")?;
                self.vpncmd(&[
                    "AccountCertSet",
                    ACCOUNT,
                    &format!("/LOADCERT:{cert}"),
                    &format!("/LOADKEY:{key}"),
                ])?;
            }
            ClientAuth::Anonymous { .. } => {
                self.vpncmd(&["AccountAnonymousSet", ACCOUNT])?;
            }
        }
        self.vpncmd(&["AccountConnect", ACCOUNT])?;
        self.wait_established(Duration::from_secs(20))?;
        Ok(format!("vpn_{nic}"))
    }

    fn stage(&self, src: &Path, name: &str) -> Result<String> {
        std::fs::copy(src, self.dir.join(name))
            .with_context(|| format!("copying {} for vpncmd", src.display()))?;
        Ok(name.to_owned())
    }

    /// Polls `AccountStatusGet` until the session is established.
    pub fn wait_established(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self
                .vpncmd(&["AccountStatusGet", ACCOUNT])
                .unwrap_or_default();
            if status.contains("Session Established") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("official client session not established within {timeout:?}: {status}");
            }
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// Disconnects the account (the process keeps running).
    pub fn disconnect(&self) -> Result<()> {
        self.vpncmd(&["AccountDisconnect", ACCOUNT]).map(drop)
    }

    /// Directory holding this client's copy, config and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for OfficialClient {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            command::kill_group(&mut c);
        }
    }
}
