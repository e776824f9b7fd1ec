//! Network configuration inside a network namespace: the TAP device, addresses, routes,
//! policy rules (rtnetlink), the CONNMARK table (nftables) and resolv.conf.
//!
//! Used by the standalone client (acting on its own namespace, [`Netns::Current`]) and by the
//! per-pod sidecar (acting on a pod's namespace, [`Netns::Path`]). Nothing here knows about
//! SoftEther or DHCP: callers translate a lease into these calls.
//!
//! # The netns thread pattern
//!
//! Every kernel object we use belongs to the namespace of the thread that *created* it: a
//! netlink socket, a TAP fd (at `TUNSETIFF`), an `nft` child process. So each entry point
//! takes a [`Netns`], and [`Netns::run_async`] runs the creating step on a fresh OS thread
//! that `setns(CLONE_NEWNET)`s first and exits right after. The resulting fd is then used
//! from ordinary tokio tasks; no tokio worker ever changes namespace.
//!
//! # How to drive it
//!
//! ```no_run
//! # async fn demo() -> Result<(), netcfg::NetcfgError> {
//! use netcfg::{Netlink, Netns, PolicyRule, RouteSpec, Tap, TapConfig, Firewall};
//! let ns = Netns::from_path("/proc/1234/ns/net");
//! let tap = Tap::create(&ns, &TapConfig { name: Some("vpn0".into()), persistent: false, vnet_hdr: false }).await?;
//! let nl = Netlink::open(ns.clone()).await?;
//! let idx = nl.link_index(tap.name()).await?;
//! nl.set_link_up(idx).await?;
//! nl.add_address(idx, "10.8.0.5/24".parse().unwrap()).await?;
//! nl.replace_route(&RouteSpec::default_route().via("10.8.0.1".parse().unwrap()).dev(idx).table(200)).await?;
//! nl.add_rule(&PolicyRule::from_address("10.8.0.5".parse().unwrap(), 200, 1000)).await?;
//! Firewall::new(ns, "pod-1234").apply_connmark(tap.name(), 0x100).await?;
//! nl.add_rule(&PolicyRule::fwmark(0x100, 0xffff_ffff, 200, 1001)).await?;
//! let tap = tap.into_async()?;
//! let mut frame = [0u8; 1518];
//! let n = tap.recv(&mut frame).await.expect("read");
//! # let _ = n; Ok(()) }
//! ```
//!
//! Modules: `sys` (private, the only `unsafe`: TUN ioctls, reactor registration), [`netns`],
//! [`tap`], [`netlink`], [`firewall`], [`resolv`], [`sysctl`] (per-interface IPv6 switches),
//! [`offload`] (TAP offloads in user space), [`ack_thinning`] (redundant ACKs of a batch),
//! [`error`], and [`pod_netns`]: what a CNI
//! attachment leaves in its pod's namespace (persistent TAP, policy rules, nft table), created
//! and removed by the same code in the plugin and the sidecar.

#![warn(missing_docs)]

pub mod ack_thinning;
pub mod error;
pub mod firewall;
pub mod netlink;
pub mod netns;
pub mod offload;
pub mod pod_netns;
pub mod resolv;
mod sys;
pub mod sysctl;
pub mod tap;

pub use error::{NetcfgError, Result};
pub use firewall::{Firewall, TableListing};
pub use netlink::{
    DefaultRoute, FwMark, LinkInfo, Netlink, NetlinkOnDemand, PolicyRule, PolicyRule6, Route6Spec,
    RouteLookup, RouteSpec, TABLE_MAIN,
};
pub use netns::Netns;
pub use pod_netns::{PodRouting, TapRemoval};
pub use resolv::DnsConfig;
pub use tap::{AsyncTap, Tap, TapConfig, TapOffload};
