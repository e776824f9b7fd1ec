//! Checks that the machine can host a lab: running as root, and every external tool present.
//! A missing tool is an error naming the Debian package to install — never a silent skip.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// Directory of the Debian `softether-vpnserver` package's real binary (next to its `hamcore.se2`).
pub const VPNSERVER_DIR: &str = "/usr/libexec/softether/vpnserver";
/// Directory of the Debian `softether-vpnclient` package's real binary.
pub const VPNCLIENT_DIR: &str = "/usr/libexec/softether/vpnclient";
/// The Debian `softether-vpncmd` package's real binary.
pub const VPNCMD: &str = "/usr/libexec/softether/vpncmd/vpncmd";

/// A program the lab runs, and the Debian package that ships it.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// Program name (looked up in PATH) or absolute path.
    pub program: &'static str,
    /// Debian 12 package providing it.
    pub package: &'static str,
}

/// Everything [`crate::Lab::start`] needs.
pub const LAB_TOOLS: &[Tool] = &[
    Tool {
        program: "/usr/libexec/softether/vpnserver/vpnserver",
        package: "softether-vpnserver",
    },
    Tool {
        program: "/usr/libexec/softether/vpnserver/hamcore.se2",
        package: "softether-vpnserver",
    },
    Tool {
        program: VPNCMD,
        package: "softether-vpncmd",
    },
    Tool {
        program: "ip",
        package: "iproute2",
    },
    Tool {
        program: "nft",
        package: "nftables",
    },
    Tool {
        program: "ethtool",
        package: "ethtool",
    },
    Tool {
        program: "openssl",
        package: "openssl",
    },
    Tool {
        program: "ping",
        package: "iputils-ping",
    },
    Tool {
        program: "unshare",
        package: "util-linux",
    },
    Tool {
        program: "sysctl",
        package: "procps",
    },
    Tool {
        program: "mount",
        package: "mount",
    },
    Tool {
        program: "bash",
        package: "bash",
    },
];

/// Tools only needed by [`crate::OfficialClient`].
pub const CLIENT_TOOLS: &[Tool] = &[
    Tool {
        program: "/usr/libexec/softether/vpnclient/vpnclient",
        package: "softether-vpnclient",
    },
    Tool {
        program: "/usr/libexec/softether/vpnclient/hamcore.se2",
        package: "softether-vpnclient",
    },
];

/// Fails unless the effective user is root (namespaces, veths and bind mounts need it).
pub fn require_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the SoftEther test lab needs root (network namespaces, veth pairs, bind mounts); \
             run the tests as root, e.g. `sudo bash tests/run`"
        );
    }
    Ok(())
}

/// Fails with one message listing every missing tool and the `apt-get install` line that fixes it.
pub fn require_tools(tools: &[Tool]) -> Result<()> {
    let missing: Vec<&Tool> = tools
        .iter()
        .filter(|t| find_program(t.program).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut pkgs: Vec<&str> = missing.iter().map(|t| t.package).collect();
    pkgs.sort_unstable();
    pkgs.dedup();
    let names: Vec<&str> = missing.iter().map(|t| t.program).collect();
    bail!(
        "missing tools for the SoftEther test lab: {}; install them with \
         `apt-get install --no-install-recommends {}`",
        names.join(", "),
        pkgs.join(" ")
    )
}

/// Root + all lab tools.
pub fn check_lab() -> Result<()> {
    require_root()?;
    require_tools(LAB_TOOLS)
}

/// Resolves a program name through PATH (plus the sbin dirs, which a non-login root shell may lack).
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = Path::new(program);
        return p.exists().then(|| p.to_path_buf());
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file());
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tool_names_package() {
        let err = require_tools(&[Tool {
            program: "no-such-tool-xyz",
            package: "pkg-xyz",
        }])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("no-such-tool-xyz") && err.contains("apt-get install"),
            "{err}"
        );
        assert!(err.contains("pkg-xyz"), "{err}");
    }

    #[test]
    fn finds_sh() {
        assert!(find_program("sh").is_some());
        assert!(find_program("/bin/sh").is_some());
    }
}
