//! The connection engine: log in, bridge, DHCP, configure, and reconnect until told to stop.
//!
//! It takes the TAP and the namespace to configure as inputs, so the same engine runs the
//! standalone client (its own namespace) and one pod per task in the CNI sidecar (TAP and
//! configuration in the pod's namespace, TLS from the sidecar's). It reports on a status
//! channel ([`super::status`]) and stops in one of two modes ([`StopMode`]).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dhcp_client::{Config as DhcpConfig, ConfigError as DhcpConfigError, DhcpClient};
use ipnet::Ipv4Net;
use netcfg::{NetcfgError, Netns, Tap};
use softether_proto::error::RetryClass;
use tokio::sync::watch;

use super::backoff::{Backoff, DEFAULT_CAP};
use super::bridge::{run_session, SessionContext, SessionEnd};
use super::lease_apply::{NetConfigurator, NetOptions};
use super::mac::Mac;
use super::status::{self, stop_requested, EngineStatus, Phase, StopMode, StopSignal};
use crate::transport::connection::{Established, SessionError};
use crate::transport::driver::{spawn_tunnel, TunnelExit, TunnelHandle};
use crate::transport::establish::establish;
use crate::transport::join::{resume, ResumeTicket};

/// A session that stayed up this long resets the backoff to the base delay.
const HEALTHY_SESSION: Duration = Duration::from_secs(30);
/// How long a RELEASE may take to leave before the session is closed anyway.
const RELEASE_FLUSH: Duration = Duration::from_millis(500);

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
    let started = Instant::now();
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

async fn prepare_link(config: &EngineConfig, net: &NetConfigurator) -> Result<(), NetcfgError> {
    let nl = net.netlink();
    let idx = net.tap_index();
    nl.set_link_mac(idx, config.mac.0).await?;
    if let Some(mtu) = config.mtu {
        nl.set_link_mtu(idx, mtu).await?;
    }
    nl.set_link_up(idx).await
}

fn max_frame(mtu: Option<u32>) -> usize {
    // Ethernet header + VLAN tag on top of the MTU.
    mtu.map_or(1500, |m| m as usize).max(1500) + 18
}

async fn run_configured(
    config: &EngineConfig,
    tap: Tap,
    net: &mut NetConfigurator,
    stop: &mut StopSignal,
    status: &watch::Sender<EngineStatus>,
    started: Instant,
) -> Result<StopMode, EngineError> {
    prepare_link(config, net).await?;
    let tap = Arc::new(tap.into_async()?);
    let mut dhcp = match &config.dhcp_hostname {
        Some(hostname) => {
            let mut c = DhcpConfig::new(config.mac.0, config.seed ^ 0xd4c9);
            c.hostname = hostname.clone();
            c.initial_retransmit = Duration::from_secs(2);
            c.max_retransmit = Duration::from_secs(16);
            c.requested_ip = config.requested_ip;
            Some(DhcpClient::new(c, Instant::now())?)
        }
        None => None,
    };
    let mut backoff = Backoff::new(config.reconnect_delay, DEFAULT_CAP, config.seed);
    let mut sessions = 0u32;
    // A session whose connections broke while the server kept it, rejoined without a login.
    let mut resumed: Option<Established> = None;
    loop {
        let was_resumed = resumed.is_some();
        let est = if let Some(est) = resumed.take() {
            Ok(est)
        } else {
            let server = format!("{}:{}", config.session.host, config.session.port);
            tracing::info!(%server, hub = %config.session.hub, user = %config.session.username, "connecting");
            status::set_phase(status, Phase::Connecting);
            tokio::select! {
                biased;
                mode = stop_requested(stop) => return Ok(mode),
                est = establish(&config.session) => est,
            }
        };
        let est = match est {
            Ok(est) => est,
            Err(e) => {
                let class = e.retry_class();
                let Some(delay) = backoff.next_delay(class) else {
                    return Err(EngineError::Session(e));
                };
                tracing::warn!(
                    reason = %e,
                    delay = %humantime::format_duration(round_ms(delay)),
                    attempt = backoff.attempts(),
                    "reconnecting after a failed login"
                );
                status::set_reconnecting(status, e.to_string(), delay);
                if let Some(mode) = wait_or_stop(delay, stop).await {
                    return Ok(mode);
                }
                continue;
            }
        };
        if !was_resumed {
            tracing::info!(
                server = %est.server_addr,
                session = %est.welcome.session_name,
                tls = %est.tls_version,
                "logged in"
            );
        }
        let still_bound = was_resumed && status.borrow().lease.is_some();
        status::set_phase(
            status,
            if still_bound {
                Phase::Bound
            } else {
                Phase::LoggedIn
            },
        );
        let ticket = ResumeTicket::of(&est);
        if config.pin_server_route && config.net.may_capture_server_traffic() {
            if let IpAddr::V4(ip) = est.server_addr.ip() {
                pin_server(net, ip).await?;
            }
        }
        let session_started = Instant::now();
        let mut tunnel = spawn_tunnel(est, config.seed.wrapping_add(u64::from(sessions)));
        let udp = tunnel.udp_indicator();
        status.send_modify(|s| s.udp = udp);
        // A resumed session still has its lease and the hub's tables: no new DHCP exchange.
        if sessions > 0 && !was_resumed {
            if let Some(d) = dhcp.as_mut() {
                d.restart(Instant::now());
            }
        }
        sessions += 1;
        let mut ctx = SessionContext {
            tap: &tap,
            dhcp: dhcp.as_mut(),
            net: Some(&mut *net),
            stop: &mut *stop,
            status,
            traffic: status.borrow().traffic.clone(),
            started,
            got_lease: false,
        };
        let end = run_session(&mut ctx, &mut tunnel, max_frame(config.mtu)).await;
        match end {
            SessionEnd::Stop(StopMode::Teardown) => {
                release_and_close(dhcp.as_mut(), tunnel).await;
                return Ok(StopMode::Teardown);
            }
            SessionEnd::Stop(StopMode::Detach) => {
                // No RELEASE: the lease stays with the address the pod keeps using.
                let _ = tunnel.close().await;
                return Ok(StopMode::Detach);
            }
            SessionEnd::Tap(e) => {
                let _ = tunnel.close().await;
                return Err(EngineError::Tap(e));
            }
            SessionEnd::Netcfg(e) => {
                let _ = tunnel.close().await;
                return Err(EngineError::Netcfg(e));
            }
            SessionEnd::TunnelEnded => {
                let (result, stats, udp) = tunnel.join_keeping_udp().await;
                // A broken connection (not a silent server) may have left the session alive on
                // the server: try to rejoin it once, at once, before the backoff and a full login.
                if matches!(&result, Err(e) if !matches!(e, TunnelExit::Timeout { .. })) {
                    let attempt = tokio::select! {
                        biased;
                        mode = stop_requested(stop) => return Ok(mode),
                        r = resume(&config.session, &ticket) => r,
                    };
                    match attempt {
                        Ok(mut est) => {
                            // The server kept its side of UDP acceleration with the session.
                            est.udp = udp;
                            tracing::info!(
                                session = %ticket.session_name(),
                                reason = %result.as_ref().err().map(ToString::to_string).unwrap_or_default(),
                                "connection lost, session resumed"
                            );
                            resumed = Some(est);
                            continue;
                        }
                        Err(e) => tracing::debug!("cannot resume the session: {e}"),
                    }
                }
                let reason = match result {
                    Ok(()) => "closed".to_owned(),
                    Err(e) => e.to_string(),
                };
                if session_started.elapsed() >= HEALTHY_SESSION {
                    backoff.reset();
                }
                let delay = backoff
                    .next_delay(RetryClass::Normal)
                    .unwrap_or(DEFAULT_CAP);
                tracing::warn!(
                    %reason,
                    delay = %humantime::format_duration(round_ms(delay)),
                    frames_in = stats.tunnel.frames_in,
                    frames_out = stats.tunnel.frames_out,
                    "session lost, reconnecting"
                );
                status::set_reconnecting(status, reason, delay);
                if let Some(mode) = wait_or_stop(delay, stop).await {
                    return Ok(mode);
                }
            }
        }
    }
}

async fn pin_server(net: &mut NetConfigurator, ip: Ipv4Addr) -> Result<(), NetcfgError> {
    if let Some(route) = net.pin_server_route(ip).await? {
        tracing::info!(
            server = %ip,
            via = ?route.gateway,
            dev = ?route.oif,
            "pinned a host route to the server through the existing path"
        );
    }
    Ok(())
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// Sleeps for `delay`; returns the stop mode if a stop was requested meanwhile (at once).
async fn wait_or_stop(delay: Duration, stop: &mut StopSignal) -> Option<StopMode> {
    tokio::select! {
        biased;
        mode = stop_requested(stop) => Some(mode),
        _ = tokio::time::sleep(delay) => None,
    }
}

/// Clean shutdown of a live session: RELEASE the lease, let it leave, close the tunnel.
async fn release_and_close(dhcp: Option<&mut DhcpClient>, tunnel: TunnelHandle) {
    if let Some(frame) = dhcp.and_then(|d| d.release()) {
        if tunnel.outgoing.send(frame.into()).await.is_ok() {
            // The driver flushes what it has taken from the channel when closing; wait until
            // it has taken the RELEASE (bounded).
            let deadline = Instant::now() + RELEASE_FLUSH;
            while tunnel.outgoing.capacity() < tunnel.outgoing.max_capacity()
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tracing::info!("lease released");
        }
    }
    let (result, _) = tunnel.close().await;
    if let Err(e) = result {
        tracing::debug!("closing the session: {e}");
    }
}
