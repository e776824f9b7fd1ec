//! The connection engine: open the namespace's configuration, bring the TAP up, then hand
//! over to the reconnect loop ([`super::supervisor`]); tear down or detach at the end.
//!
//! It takes the TAP and the namespace to configure as inputs, so the same engine runs the
//! standalone client (its own namespace) and one pod per task in the CNI sidecar (TAP and
//! configuration in the pod's namespace, TLS from the sidecar's). It reports on a status
//! channel ([`super::status`]) and stops in one of two modes ([`StopMode`]).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dhcp_client::v6::{Ipv6Client, Ipv6Config};
use dhcp_client::{Config as DhcpConfig, ConfigError as DhcpConfigError, DhcpClient};
use ipnet::Ipv4Net;
use netcfg::{NetcfgError, Netns, Tap};
use tokio::sync::watch;

use super::lease_apply::{Ipv6Mode, NetConfigurator, NetOptions};
use super::mac::Mac;
use super::recovery::RecoveryGate;
use super::status::{self, EngineStatus, Phase, StopMode, StopSignal};
use super::supervisor::{Exit, Supervisor};
use crate::transport::clock::now;
use crate::transport::connection::{SessionError, TlsDialer};

/// Everything the engine needs besides the TAP, the namespace and the stop signal.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub session: crate::transport::connection::SessionConfig,
    pub mac: Mac,
    /// `None`: no DHCP (`--no-dhcp`); frames are bridged and nothing is configured.
    pub dhcp_hostname: Option<Option<String>>,
    pub net: NetOptions,
    /// Pin a /32 route to the server through the pre-existing path before any default route
    /// moves into the tunnel. Only meaningful when TLS leaves from the configured namespace.
    pub pin_server_route: bool,
    /// `--mtu`; else the kernel default (1500).
    pub mtu: Option<u32>,
    /// Use the TAP offloads (checksum, TSO4/6 super-frames, coalesced writes) when the TAP fd
    /// has `IFF_VNET_HDR`; `--no-offload` / `SOFTETHER_NO_OFFLOAD=1` turn them off.
    pub offload: bool,
    /// Leave out pure TCP ACKs that a later ACK of the same batch supersedes
    /// ([`netcfg::ack_thinning`]); `--no-ack-thinning` / `SOFTETHER_NO_ACK_THINNING=1` turn it off.
    pub ack_thinning: bool,
    pub reconnect_delay: Duration,
    /// Seeds backoff jitter, DHCP xids and tunnel padding.
    pub seed: u64,
    /// Names the nft table (`softether_<id>`).
    pub id: String,
    /// Ask for this address first (DHCP INIT-REBOOT), e.g. the one a previous run held.
    pub requested_ip: Option<Ipv4Addr>,
    /// The address a previous run installed on this TAP: take over its address, rules and
    /// nft table (see [`NetConfigurator::adopt`]) instead of treating them as foreign.
    pub adopt_address: Option<Ipv4Net>,
    /// What to do with the configuration when the engine fails (a non-retryable error):
    /// `connect` tears down; a re-adopted CNI attachment keeps the pod's configuration.
    pub on_error: StopMode,
    /// Shared by the engines of one process: bounded concurrent logins and one probe per
    /// server while it is down ([`RecoveryGate`]).
    pub recovery: Arc<RecoveryGate>,
}

/// Why the engine stopped other than by request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Retrying cannot help (bad credentials, unknown hub, TLS trust failure, ...).
    #[error("{0}")]
    Session(#[source] SessionError),
    /// TAP, netlink, nftables or resolv.conf failed in the target namespace.
    #[error("network configuration failed: {0}")]
    Netcfg(#[from] NetcfgError),
    #[error("TAP I/O failed: {0}")]
    Tap(#[source] std::io::Error),
    #[error("DHCP client configuration: {0}")]
    Dhcp(#[from] DhcpConfigError),
}

/// What happened, for the caller's exit status.
#[derive(Debug)]
pub struct EngineOutcome {
    pub result: Result<(), EngineError>,
    /// How the configuration was left: removed (`Teardown`) or kept (`Detach`).
    pub mode: StopMode,
    /// Teardown problems: things that may have been left behind.
    pub teardown_errors: Vec<NetcfgError>,
}

/// Runs until a stop is requested or a non-retryable error, reporting on `status`. On
/// [`StopMode::Teardown`] (and on error with `on_error: Teardown`) it RELEASEs the lease and
/// removes everything it added; on [`StopMode::Detach`] it leaves the configuration in place.
pub async fn run_engine(
    config: EngineConfig,
    tap: Tap,
    netns: Netns,
    mut stop: StopSignal,
    status: &watch::Sender<EngineStatus>,
) -> EngineOutcome {
    let started = now();
    let tap_name = tap.name().to_owned();
    let opened = async {
        let mut net =
            NetConfigurator::open(netns, &tap_name, config.net.clone(), &config.id).await?;
        if let Some(address) = config.adopt_address {
            net.adopt(address).await?;
        }
        Ok::<_, NetcfgError>(net)
    };
    let mut net = match opened.await {
        Ok(net) => net,
        Err(e) => {
            status::set_phase(status, Phase::Stopped);
            return EngineOutcome {
                result: Err(e.into()),
                mode: config.on_error,
                teardown_errors: Vec::new(),
            };
        }
    };
    let ended = run_configured(&config, tap, &mut net, &mut stop, status, started).await;
    let (result, mode) = match ended {
        Ok(mode) => (Ok(()), mode),
        Err(e) => (Err(e), config.on_error),
    };
    let mut teardown_errors = Vec::new();
    match mode {
        StopMode::Teardown => {
            status::set_released(status);
            teardown_errors = net.teardown().await;
            for e in &teardown_errors {
                tracing::warn!("teardown: {e}");
            }
            tracing::info!(tap = %tap_name, clean = teardown_errors.is_empty(), "disconnected, configuration removed");
        }
        StopMode::Detach => {
            tracing::info!(tap = %tap_name, "disconnected, configuration kept");
        }
    }
    status::set_phase(status, Phase::Stopped);
    EngineOutcome {
        result,
        mode,
        teardown_errors,
    }
}

/// Brings the link up, builds the DHCP client, and hands over to the reconnect loop.
async fn run_configured(
    config: &EngineConfig,
    tap: Tap,
    net: &mut NetConfigurator,
    stop: &mut StopSignal,
    status: &watch::Sender<EngineStatus>,
    started: Instant,
) -> Result<StopMode, EngineError> {
    net.prepare_link(config.mac.0, config.mtu).await?;
    let mut tap = tap;
    let offload = tap.setup_offload(config.offload);
    tracing::info!(tap = %tap.name(), ?offload, "TAP frame mode");
    let tap = Arc::new(tap.into_async()?);
    let dhcp = match &config.dhcp_hostname {
        Some(hostname) => {
            let mut c = DhcpConfig::new(config.mac.0, config.seed ^ 0xd4c9);
            c.hostname = hostname.clone();
            c.initial_retransmit = Duration::from_secs(2);
            c.max_retransmit = Duration::from_secs(16);
            c.requested_ip = config.requested_ip;
            Some(DhcpClient::new(c, now())?)
        }
        None => None,
    };
    let ipv6 = ipv6_client(config, dhcp.is_some());
    match Supervisor::new(
        config,
        TlsDialer::for_config(&config.session),
        tap,
        Some(net),
        dhcp,
        ipv6,
        stop,
        status,
        started,
    )
    .run()
    .await
    {
        Exit::Stop(mode) => Ok(mode),
        Exit::Failed(e) => Err(e),
    }
}

/// The IPv6 client when IPv6 is managed (and DHCP runs: `--no-dhcp` configures nothing).
fn ipv6_client(config: &EngineConfig, dhcp: bool) -> Option<Ipv6Client> {
    let managed = dhcp && config.net.ipv6 == Ipv6Mode::Managed;
    managed.then(|| Ipv6Client::new(Ipv6Config::new(config.mac.0, config.seed ^ 0x6a6a), now()))
}

/// `SOFTETHER_NO_OFFLOAD` set to anything but empty or `0` turns the TAP offloads off (the
/// daemon's knob; `connect` also has `--no-offload`).
pub fn offload_from_env() -> bool {
    !env_flag("SOFTETHER_NO_OFFLOAD")
}

/// `SOFTETHER_NO_ACK_THINNING` set to anything but empty or `0` keeps every ACK (the daemon's
/// knob; `connect` also has `--no-ack-thinning`).
pub fn ack_thinning_from_env() -> bool {
    !env_flag("SOFTETHER_NO_ACK_THINNING")
}

/// A boolean environment switch, as clap's `FalseyValueParser` reads `connect`'s.
fn env_flag(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !(v.is_empty() || v == "0"))
}
