//! # softether-lab: a real SoftEther VPN Server in network namespaces, for end-to-end tests
//!
//! [`Lab::start`] builds, per call, an isolated little network on one Debian 12 host (root required):
//!
//! ```text
//!  client ns (se-cli-<pid>-<n>)        server ns (se-srv-<pid>-<n>)                lan ns (se-lan-<pid>-<n>)
//!  to-srv 198.18.x.2/30 ──veth── to-cli 198.18.x.1/30                              eth0 10.99.0.200/24
//!  (tests run clients here)             vpnserver :443, hub "LAB"                     │
//!                                         ├─ SecureNAT 10.99.0.1 (DHCP .10-.99)       │
//!                                         └─ local bridge on lan-br ────veth──────────┘
//! ```
//!
//! - The server is the Debian `vpnserver`, copied into a per-lab directory and run in a private mount
//!   namespace (the Debian build hard-codes `/var/lib/softether` etc.; see [`server`]). Several labs can run
//!   in parallel, in one process (threads) or many.
//! - Hub users: `alice` and `bob` (passwords), `carol` (certificate; cert + PKCS#8 key generated at start),
//!   `anon` (anonymous). SecureNAT: virtual host 10.99.0.1/24, DHCP 10.99.0.10–99, gateway/DNS 10.99.0.1,
//!   domain `lab.test`, pushed route 10.98.0.0/24 via 10.99.0.1, NAT off. See [`LabFacts`] / [`subnet`].
//! - Everything is torn down when the [`Lab`] drops (also on panic): server killed, every process in the
//!   namespaces killed, namespaces (and so the veths) deleted, directory removed. Leftovers of crashed runs
//!   (names embed the pid) are swept on the next start.
//!
//! ```no_run
//! use softether_lab::{Lab, LabOptions};
//! let lab = Lab::start(LabOptions { dhcp_lease_secs: 30, ..Default::default() })?;
//! let f = &lab.facts;
//! // Connect a client from the client namespace to f.server_ip:f.port, hub f.hub, user f.alice ...
//! lab.run_in(&f.client_ns, || { /* sockets / tokio runtime created here live in the client ns */ })?;
//! assert!(lab.lan_ping(f.gateway, 5)?); // LAN host reaches SecureNAT through the local bridge
//! println!("{}", lab.vpncmd(&["SessionList"])?);
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! Helpers: [`Lab::exec_in`] / [`Lab::spawn_in`] (programs in a namespace; spawned ones die on drop),
//! [`Lab::vpncmd`] (hub admin commands), [`Lab::kill_server`] / [`Lab::restart_server`] (crash and recover),
//! [`Lab::user_sessions`], [`Lab::ping_from`], [`Lab::run_in`] (a closure on a thread inside a namespace).
//! [`OfficialClient`] runs the Debian vpnclient as a known-good peer on the hub (all four user kinds).
//! [`LabOptions`] tunes lease time, session `TimeOut` policy, extra users, port, NAT, the DHCP router, a
//! lab-CA-issued server certificate ([`LabCa`]) and arbitrary extra vpncmd commands. [`Farm`] builds a
//! cluster (controller + member) for redirect tests. The binary `softether-lab up --json` starts one lab
//! and prints [`LabFacts::to_json`] for demos.
//!
//! Modules: [`lab`] (the Lab), [`topology`] (veths, addresses, offloads), [`server`] (private vpnserver
//! process), [`vpncmd`] (admin commands, batches), [`client`], [`certs`] (openssl), [`netns`] (namespaces,
//! running programs in them, stale sweeping), [`command`] (programs with deadlines), [`prereq`],
//! [`sidecar`] (this project's `softether-sidecar` pointed at a lab: `connect`/`probe` as alice, a `run`
//! daemon with its CNI config), [`wan`] (an emulated WAN on the underlay for the WAN bench:
//! [`delay_line`], tbf, nftables loss).
//!
//! Prerequisites are checked up front ([`prereq`]): a missing tool is an error naming its Debian package, and
//! not being root is an error (lab tests fail, never skip).

pub mod certs;
pub mod client;
pub mod command;
pub mod delay_line;
pub mod facts;
pub mod farm;
pub mod lab;
pub mod netns;
pub mod prereq;
pub mod pyvenv;
pub mod server;
pub mod sidecar;
pub mod topology;
pub mod vpncmd;
pub mod wan;

mod sys;

pub use certs::{ClientCert, LabCa};
pub use client::{ClientAuth, OfficialClient};
pub use facts::{subnet, LabFacts, LabUser};
pub use farm::{Farm, FarmFacts};
pub use lab::{Lab, LabOptions};
pub use netns::KillOnDrop;
