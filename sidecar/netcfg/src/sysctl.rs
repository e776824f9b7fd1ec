//! Per-interface IPv6 sysctls (`/proc/sys/net/ipv6/conf/IF/KEY`), written inside a namespace.
//!
//! `/proc/sys/net` shows the network namespace of the thread that opens the file, so each
//! write happens on a [`Netns::run_async`] thread (never a tokio worker, which must not
//! `setns`).
//!
//! We take IPv6 configuration of our TAPs away from the kernel: `accept_ra=0` and
//! `autoconf=0` stop it from acting on router advertisements (default routes, SLAAC
//! addresses) that would otherwise duplicate what the sidecar configures and outlive it.
//! The kernel still forms the link-local address and answers neighbour solicitations, which
//! is what the sidecar relies on.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::PathBuf;

use crate::error::{NetcfgError, Result};
use crate::netns::Netns;

/// The per-interface IPv6 settings this crate writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipv6Conf {
    /// `accept_ra`: act on router advertisements.
    AcceptRa,
    /// `autoconf`: form SLAAC addresses.
    Autoconf,
    /// `disable_ipv6`: no IPv6 at all on the interface (no link-local, no ND).
    DisableIpv6,
    /// `addr_gen_mode`: how the link-local address is formed (0: EUI-64 of the MAC). Read when
    /// the link comes up.
    AddrGenMode,
    /// `mtu`: the IPv6 MTU of the link (at most the link MTU; the kernel refuses more).
    Mtu,
}

impl Ipv6Conf {
    fn key(self) -> &'static str {
        match self {
            Self::AcceptRa => "accept_ra",
            Self::Autoconf => "autoconf",
            Self::DisableIpv6 => "disable_ipv6",
            Self::AddrGenMode => "addr_gen_mode",
            Self::Mtu => "mtu",
        }
    }
}

/// Writes `value` to `/proc/sys/net/ipv6/conf/IFNAME/KEY` in `netns`. Returns `Ok(false)`
/// when the kernel has no IPv6 (`/proc/sys/net/ipv6` absent): nothing to turn off.
pub async fn set_ipv6_conf(
    netns: &Netns,
    ifname: &str,
    conf: Ipv6Conf,
    value: u32,
) -> Result<bool> {
    let path = conf_path(ifname, conf)?;
    let target = path.clone();
    let written = netns.run_async(move || write_value(&target, value)).await?;
    match written {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !ipv6_present(netns).await? => Ok(false),
        Err(source) => Err(NetcfgError::Sysctl {
            path,
            netns: netns.to_string(),
            source,
        }),
    }
}

/// `accept_ra=0` and `autoconf=0` on `ifname`: the kernel leaves router advertisements to
/// us. `Ok(false)` when the kernel has no IPv6.
pub async fn disable_kernel_autoconf(netns: &Netns, ifname: &str) -> Result<bool> {
    if !set_ipv6_conf(netns, ifname, Ipv6Conf::AcceptRa, 0).await? {
        return Ok(false);
    }
    set_ipv6_conf(netns, ifname, Ipv6Conf::Autoconf, 0).await
}

/// `addr_gen_mode=0`: the link-local address is the EUI-64 of the MAC (whatever the
/// namespace's default, e.g. stable-privacy), so a client that sends from `fe80::EUI-64`
/// sends from an address the kernel owns and answers neighbour solicitations for. Takes
/// effect when the link comes up. `Ok(false)` when the kernel has no IPv6.
pub async fn eui64_link_local(netns: &Netns, ifname: &str) -> Result<bool> {
    set_ipv6_conf(netns, ifname, Ipv6Conf::AddrGenMode, 0).await
}

async fn ipv6_present(netns: &Netns) -> Result<bool> {
    netns
        .run_async(|| std::path::Path::new("/proc/sys/net/ipv6").exists())
        .await
}

fn write_value(path: &std::path::Path, value: u32) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(path)?;
    f.write_all(format!("{value}\n").as_bytes())
}

/// The sysctl file for an interface name the kernel would accept (1–15 bytes, no `/`, not
/// `.`/`..`), so a name can never point elsewhere in `/proc`.
fn conf_path(ifname: &str, conf: Ipv6Conf) -> Result<PathBuf> {
    let valid = !ifname.is_empty()
        && ifname.len() <= 15
        && ifname != "."
        && ifname != ".."
        && !ifname
            .bytes()
            .any(|b| b == b'/' || b == 0 || b.is_ascii_whitespace());
    if !valid {
        return Err(NetcfgError::InvalidArgument {
            what: "interface name",
            detail: format!("{ifname:?} is not a valid Linux interface name"),
        });
    }
    Ok(PathBuf::from("/proc/sys/net/ipv6/conf")
        .join(ifname)
        .join(conf.key()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_confined_to_the_interface_directory() {
        assert_eq!(
            conf_path("vpn0", Ipv6Conf::AcceptRa).unwrap(),
            PathBuf::from("/proc/sys/net/ipv6/conf/vpn0/accept_ra")
        );
        for bad in ["", ".", "..", "a/b", "sixteen-chars-xx", "a b"] {
            assert!(conf_path(bad, Ipv6Conf::Autoconf).is_err(), "{bad:?}");
        }
    }
}
