//! An emulated WAN on a lab's underlay, for the WAN bench: the client↔server veth is replaced by two
//! veths through a third namespace where a [`DelayLine`] forwards frames with a fixed one-way delay;
//! `tc tbf` on both endpoints shapes the rate, and nftables (netdev ingress of both endpoints,
//! `numgen random mod 1000 < N`) drops a share of frames in each direction.
//!
//! ```text
//!  client ns                wan ns (se-x-<pid>-wan<n>)                      server ns
//!  to-srv (tbf) ──veth── wan-c ══ delay line (packet sockets) ══ wan-s ──veth── to-cli (tbf)
//!  loss: netdev ingress                                           loss: netdev ingress
//! ```
//! Addresses and names of the endpoints stay what the lab gave them, so clients are unaware. The
//! frames must be MTU-sized and finished (no GSO, no partial checksums) for packet sockets to
//! forward them, so offloads are off on all four ends.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::socket::{
    bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockProtocol, SockType,
};

use crate::command::run_argv;
use crate::delay_line::DelayLine;
use crate::netns::{self, Netns};
use crate::topology::{disable_offloads, CLIENT_IF, SERVER_IF};
use crate::Lab;

const WAN_CLIENT_IF: &str = "wan-c";
const WAN_SERVER_IF: &str = "wan-s";

static WAN_COUNTER: AtomicU32 = AtomicU32::new(0);

/// The emulated link's shape.
#[derive(Debug, Clone, Copy)]
pub struct WanShape {
    /// Added in each direction (RTT = 2 × this + the lab's own).
    pub one_way_delay: Duration,
    /// tbf rate in each direction, Mbit/s.
    pub rate_mbit: u32,
    /// Bytes the delay line may hold per direction (beyond it frames are tail-dropped).
    pub queue_budget: usize,
}

impl Default for WanShape {
    fn default() -> Self {
        WanShape {
            one_way_delay: Duration::from_millis(15),
            rate_mbit: 100,
            // 4 MiB: twice the bandwidth-delay product of 1 Gbit/s × 15 ms.
            queue_budget: 4 << 20,
        }
    }
}

/// A WAN inserted into a lab's underlay; removed (namespace deleted, delay line stopped) on drop.
/// The lab's underlay is not restored: drop the lab after it.
#[derive(Debug)]
pub struct Wan {
    client_ns: String,
    server_ns: String,
    line: DelayLine,
    _ns: Netns,
}

impl Wan {
    /// Rewires `lab`'s underlay through a new namespace with `shape`; loss starts at 0.
    pub fn insert(lab: &Lab, shape: WanShape) -> Result<Wan> {
        let f = &lab.facts;
        let name = format!(
            "se-x-{}-wan{}",
            std::process::id(),
            WAN_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let ns = Netns::create(&name)?;
        let (cns, sns) = (f.client_ns.as_str(), f.server_ns.as_str());
        // Deleting one end of the lab's veth deletes both.
        run_argv(&["ip", "-n", cns, "link", "del", CLIENT_IF])?;
        run_argv(&[
            "ip",
            "-n",
            cns,
            "link",
            "add",
            CLIENT_IF,
            "type",
            "veth",
            "peer",
            "name",
            WAN_CLIENT_IF,
            "netns",
            &name,
        ])?;
        run_argv(&[
            "ip",
            "-n",
            sns,
            "link",
            "add",
            SERVER_IF,
            "type",
            "veth",
            "peer",
            "name",
            WAN_SERVER_IF,
            "netns",
            &name,
        ])?;
        let client_addr = format!("{}/30", f.client_ip);
        let server_addr = format!("{}/30", f.server_ip);
        run_argv(&[
            "ip",
            "-n",
            cns,
            "addr",
            "add",
            &client_addr,
            "dev",
            CLIENT_IF,
        ])?;
        run_argv(&[
            "ip",
            "-n",
            sns,
            "addr",
            "add",
            &server_addr,
            "dev",
            SERVER_IF,
        ])?;
        for (n, dev) in [
            (cns, CLIENT_IF),
            (sns, SERVER_IF),
            (name.as_str(), WAN_CLIENT_IF),
            (name.as_str(), WAN_SERVER_IF),
        ] {
            disable_offloads(n, dev)?;
            run_argv(&["ip", "-n", n, "link", "set", dev, "up"])?;
        }
        let burst = (shape.rate_mbit as usize * 1_000_000 / 8 / 250).max(64 * 1024);
        for (n, dev) in [(cns, CLIENT_IF), (sns, SERVER_IF)] {
            run_argv(&[
                "tc",
                "-n",
                n,
                "qdisc",
                "replace",
                "dev",
                dev,
                "root",
                "tbf",
                "rate",
                &format!("{}mbit", shape.rate_mbit),
                "burst",
                &burst.to_string(),
                "latency",
                "50ms",
            ])?;
            let rules = format!(
                "add table netdev wanloss\n\
                 add chain netdev wanloss ingress {{ type filter hook ingress device \"{dev}\" priority 0; }}\n"
            );
            nft(n, &rules)?;
        }
        let (a, b) = netns::run_in(&name, || -> Result<(OwnedFd, OwnedFd)> {
            Ok((packet_socket(WAN_CLIENT_IF)?, packet_socket(WAN_SERVER_IF)?))
        })??;
        let line = DelayLine::start(a, b, shape.one_way_delay, shape.queue_budget)?;
        Ok(Wan {
            client_ns: cns.to_owned(),
            server_ns: sns.to_owned(),
            line,
            _ns: ns,
        })
    }

    /// Drops `per_mille` of the frames arriving at each endpoint (both directions); 0 = none.
    pub fn set_loss(&self, per_mille: u32) -> Result<()> {
        for ns in [&self.client_ns, &self.server_ns] {
            let mut rules = "flush chain netdev wanloss ingress\n".to_owned();
            if per_mille > 0 {
                rules.push_str(&format!(
                    "add rule netdev wanloss ingress numgen random mod 1000 < {per_mille} drop\n"
                ));
            }
            nft(ns, &rules)?;
        }
        Ok(())
    }

    /// Frames forwarded and dropped by the delay line so far (both directions).
    pub fn line_counters(&self) -> (u64, u64) {
        self.line.stats.iter().fold((0, 0), |(f, d), s| {
            (
                f + s.forwarded.load(Ordering::Relaxed),
                d + s.dropped.load(Ordering::Relaxed) + s.send_errors.load(Ordering::Relaxed),
            )
        })
    }
}

fn nft(ns: &str, rules: &str) -> Result<()> {
    let out = netns::exec_in(ns, &["sh", "-c", &format!("printf '{rules}' | nft -f -")])?;
    if !out.status.success() {
        bail!(
            "nft in {ns}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// An `AF_PACKET` socket bound to `dev` (in the calling thread's namespace) for every protocol.
fn packet_socket(dev: &str) -> Result<OwnedFd> {
    let index =
        nix::net::if_::if_nametoindex(dev).with_context(|| format!("no interface {dev}"))?;
    let fd = socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::EthAll,
    )
    .context("packet socket")?;
    let addr = crate::sys::packet_bind_addr(index).context("interface index")?;
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr)
        .with_context(|| format!("binding to {dev}"))?;
    // Best effort: room for bursts while the thread sleeps until the next frame is due.
    let _ = setsockopt(&fd, sockopt::RcvBufForce, &(4 << 20));
    let _ = setsockopt(&fd, sockopt::SndBufForce, &(4 << 20));
    Ok(fd)
}
