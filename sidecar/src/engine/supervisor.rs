//! The thin async loop around the reconnect machine ([`super::reconnect`]): it performs each
//! [`Action`] — log in, resume, run the session's bridge, probe, wait — and reports how it went.
//! Every await here also watches the stop signal.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dhcp_client::v6::Ipv6Client;
use dhcp_client::DhcpClient;
use netcfg::NetcfgError;
use tokio::sync::watch;

use super::bridge::{run_session, FramePort, SessionContext, SessionEnd};
use super::lease_apply::NetConfigurator;
use super::reconnect::{Action, Event, Policy, Reconnect};
use super::recovery::{RecoveryGate, PROBE_TIMEOUT};
use super::run::{EngineConfig, EngineError};
use super::status::{self, stop_requested, EngineStatus, Phase, StopMode, StopSignal};
use crate::transport::clock::now;
use crate::transport::connection::{Dialer, Established, SessionConfig, SessionError};
use crate::transport::driver::{spawn_tunnel, LiveStats, TunnelExit, TunnelHandle};
use crate::transport::establish::establish_with;
use crate::transport::join::{resume_with, ResumeTicket};
use crate::transport::proxy::Proxy;
use crate::transport::udp_accel::UdpChannel;

/// How a RELEASE may take to leave before the session is closed anyway.
const RELEASE_FLUSH: Duration = Duration::from_millis(500);

/// Why the loop returned.
pub(crate) enum Exit {
    Stop(StopMode),
    Failed(EngineError),
}

/// The session a login or resume produced, waiting for [`Action::RunSession`].
struct Pending<S> {
    est: Established<S>,
    resumed: bool,
}

/// Everything the loop's actions use.
pub(crate) struct Supervisor<'a, D: Dialer, T: FramePort> {
    pub config: &'a EngineConfig,
    pub dialer: D,
    pub tap: Arc<T>,
    /// `None` in the in-process tests: nothing is configured.
    pub net: Option<&'a mut NetConfigurator>,
    pub dhcp: Option<DhcpClient>,
    /// Router discovery / DHCPv6 beside DHCPv4, when IPv6 is managed.
    pub ipv6: Option<Ipv6Client>,
    pub stop: &'a mut StopSignal,
    pub status: &'a watch::Sender<EngineStatus>,
    pub started: Instant,
    /// Boxed (as `kept_udp`): set only between a login and its session, and ~3 KiB that
    /// every session task would otherwise carry inline.
    pending: Option<Box<Pending<D::Stream>>>,
    ticket: Option<ResumeTicket>,
    sessions: u32,
    /// The last failed login, returned when the machine gives up.
    last_error: Option<SessionError>,
    /// Why the last session ended, with its counters, until logged.
    lost: Option<(String, LiveStats)>,
    /// The UDP acceleration channel of a lost session, for its resume.
    kept_udp: Option<Box<UdpChannel>>,
}

impl<'a, D: Dialer, T: FramePort> Supervisor<'a, D, T> {
    #[allow(clippy::too_many_arguments)] // the engine's whole context, named once
    pub fn new(
        config: &'a EngineConfig,
        dialer: D,
        tap: Arc<T>,
        net: Option<&'a mut NetConfigurator>,
        dhcp: Option<DhcpClient>,
        ipv6: Option<Ipv6Client>,
        stop: &'a mut StopSignal,
        status: &'a watch::Sender<EngineStatus>,
        started: Instant,
    ) -> Self {
        Supervisor {
            config,
            dialer,
            tap,
            net,
            dhcp,
            ipv6,
            stop,
            status,
            started,
            pending: None,
            ticket: None,
            sessions: 0,
            last_error: None,
            lost: None,
            kept_udp: None,
        }
    }

    /// Runs the machine until a stop or a failure retrying cannot fix.
    pub async fn run(mut self) -> Exit {
        // By reference: `async fn f(mut self)` kept `self` twice in its future.
        self.run_machine().await
    }

    async fn run_machine(&mut self) -> Exit {
        let mut machine = Reconnect::new(Policy::new(
            self.config.reconnect_delay,
            login_budget(&self.config.session),
            self.config.seed,
        ));
        let mut action = machine.start(now());
        loop {
            // Logging in, resuming and probing are short and rare, and their futures are
            // large (TLS handshake, login packs: 14–23 KiB): on the heap only while they run,
            // so a session's task holds only what the running session needs (with `pending`
            // and `kept_udp` boxed too, the session task went from 43 to 16 KiB, for each of
            // the daemon's attachments).
            let event = match action {
                Action::Login { deadline } => Box::pin(self.login(deadline)).await,
                Action::Resume { deadline } => Box::pin(self.resume(deadline)).await,
                Action::RunSession => self.run_session().await,
                Action::Probe => Box::pin(self.probe()).await,
                Action::Wait { until, delay } => {
                    if let Some(delay) = delay {
                        self.report_wait(delay, machine.attempts());
                    }
                    let sleep = tokio::time::sleep_until(until.into());
                    if let Err(exit) = or_stop(self.stop, sleep).await {
                        return exit;
                    }
                    action = machine.handle_timeout(now());
                    continue;
                }
                Action::Stop => {
                    let e = self
                        .last_error
                        .take()
                        .unwrap_or(SessionError::Disconnected {
                            addr: SocketAddr::from(([0, 0, 0, 0], self.config.session.port)),
                            stage: "login",
                        });
                    return Exit::Failed(EngineError::Session(e));
                }
            };
            match event {
                Ok(event) => {
                    action = machine.handle(now(), event);
                    if event == (Event::Probed { accepting: true })
                        && matches!(action, Action::Login { .. })
                    {
                        let (host, port) = (&self.config.session.host, self.config.session.port);
                        tracing::info!(server = %host, port, "server accepts connections again, logging in");
                    }
                }
                Err(exit) => return exit,
            }
        }
    }

    async fn login(&mut self, deadline: Instant) -> Result<Event, Exit> {
        let session = &self.config.session;
        let server = format!("{}:{}", session.host, session.port);
        tracing::info!(%server, hub = %session.hub, user = %session.username, "connecting");
        status::set_phase(self.status, Phase::Connecting);
        let attempt = establish_with(&self.dialer, session);
        let result = match gated(&self.config.recovery, self.stop, deadline, attempt).await? {
            Some(r) => r,
            None => Err(SessionError::Timeout {
                stage: "login",
                addr: SocketAddr::from(([0, 0, 0, 0], session.port)),
                after: login_budget(session),
            }),
        };
        match result {
            Ok(est) => {
                status::set_logged_in(self.status);
                tracing::info!(
                    server = %est.server_addr,
                    session = %est.welcome.session_name,
                    tls = %est.tls_version,
                    "logged in"
                );
                self.pending = Some(Box::new(Pending {
                    est,
                    resumed: false,
                }));
                Ok(Event::Connected)
            }
            Err(e) => {
                super::login_failures::count(&e);
                let event = Event::LoginFailed {
                    class: e.retry_class(),
                    unreachable: e.is_unreachable(),
                };
                self.last_error = Some(e);
                Ok(event)
            }
        }
    }

    async fn resume(&mut self, deadline: Instant) -> Result<Event, Exit> {
        let Some(ticket) = self.ticket.clone() else {
            return Ok(Event::ResumeFailed { unreachable: false });
        };
        let attempt = resume_with(&self.dialer, &self.config.session, &ticket);
        match gated(&self.config.recovery, self.stop, deadline, attempt).await? {
            Some(Ok(mut est)) => {
                est.udp = self.kept_udp.take().map(|udp| *udp);
                let reason = self.lost.take().map(|(r, _)| r).unwrap_or_default();
                tracing::info!(session = %ticket.session_name(), %reason, "connection lost, session resumed");
                status::count_resume(self.status);
                self.pending = Some(Box::new(Pending { est, resumed: true }));
                Ok(Event::Connected)
            }
            Some(Err(e)) => {
                tracing::debug!("cannot resume the session: {e}");
                Ok(Event::ResumeFailed {
                    unreachable: e.is_unreachable(),
                })
            }
            None => {
                tracing::debug!("cannot resume the session: timed out");
                Ok(Event::ResumeFailed { unreachable: false })
            }
        }
    }

    async fn probe(&mut self) -> Result<Event, Exit> {
        let (host, port) = (&self.config.session.host, self.config.session.port);
        let gate = self.config.recovery.clone();
        let probe = self.dialer.probe(host, port, PROBE_TIMEOUT);
        let accepting = or_stop(self.stop, gate.probe(host, port, probe)).await?;
        tracing::debug!(server = %host, port, accepting, "probed the server");
        Ok(Event::Probed { accepting })
    }

    fn report_wait(&mut self, delay: Duration, attempt: u32) {
        let delay_text = humantime::format_duration(round_ms(delay));
        let reason = match self.lost.take() {
            Some((reason, stats)) => {
                tracing::warn!(
                    %reason,
                    delay = %delay_text,
                    frames_in = stats.tunnel.frames_in,
                    frames_out = stats.tunnel.frames_out,
                    "session lost, reconnecting"
                );
                reason
            }
            None => {
                let reason = self
                    .last_error
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| "login timed out".to_owned());
                tracing::warn!(
                    %reason,
                    delay = %delay_text,
                    attempt,
                    "reconnecting after a failed login"
                );
                reason
            }
        };
        status::set_reconnecting(self.status, reason, delay);
    }

    /// Bridges the pending session until it ends; a stop or a local failure ends the loop.
    async fn run_session(&mut self) -> Result<Event, Exit> {
        let Some(pending) = self.pending.take() else {
            return Ok(Event::SessionLost { resumable: false });
        };
        let Pending { est, resumed } = *pending;
        let still_bound = resumed && self.status.borrow().lease.is_some();
        status::set_phase(
            self.status,
            if still_bound {
                Phase::Bound
            } else {
                Phase::LoggedIn
            },
        );
        self.ticket = Some(ResumeTicket::of(&est));
        if self.config.pin_server_route && self.config.net.may_capture_server_traffic() {
            // Through a proxy the traffic to keep off the tunnel goes to the proxy.
            let peer = match &self.config.session.proxy {
                Some(p) => proxy_address(p).await.unwrap_or(est.server_addr.ip()),
                None => est.server_addr.ip(),
            };
            if let Some(net) = self.net.as_deref_mut() {
                match peer {
                    IpAddr::V4(ip) => pin_server(net, ip)
                        .await
                        .map_err(|e| Exit::Failed(e.into()))?,
                    IpAddr::V6(ip) => net.set_server_over_ipv6(ip),
                }
            }
        }
        let seed = self.config.seed.wrapping_add(u64::from(self.sessions));
        let mut tunnel = spawn_tunnel(est, seed);
        let udp = tunnel.udp_indicator();
        self.status.send_modify(|s| s.udp = udp);
        // A resumed session still has its lease and the hub's tables: no new DHCP exchange.
        if self.sessions > 0 && !resumed {
            if let Some(d) = self.dhcp.as_mut() {
                d.restart(now());
            }
            if let Some(v6) = self.ipv6.as_mut() {
                v6.restart(now());
            }
        }
        self.sessions += 1;
        let mut ctx = SessionContext {
            tap: &self.tap,
            dhcp: self.dhcp.as_mut(),
            ipv6: self.ipv6.as_mut(),
            net: self.net.as_deref_mut(),
            stop: &mut *self.stop,
            status: self.status,
            traffic: self.status.borrow().traffic.clone(),
            started: self.started,
            got_lease: false,
            ack_thinning: self.config.ack_thinning,
        };
        let end = run_session(&mut ctx, &mut tunnel, max_frame(self.config.mtu)).await;
        match end {
            SessionEnd::Stop(StopMode::Teardown) => {
                release_and_close(self.dhcp.as_mut(), tunnel).await;
                Err(Exit::Stop(StopMode::Teardown))
            }
            SessionEnd::Stop(StopMode::Detach) => {
                // No RELEASE: the lease stays with the address the pod keeps using.
                let _ = tunnel.close().await;
                Err(Exit::Stop(StopMode::Detach))
            }
            SessionEnd::Tap(e) => {
                let _ = tunnel.close().await;
                Err(Exit::Failed(EngineError::Tap(e)))
            }
            SessionEnd::Netcfg(e) => {
                let _ = tunnel.close().await;
                Err(Exit::Failed(EngineError::Netcfg(e)))
            }
            SessionEnd::TunnelEnded => {
                // The server keeps its side of UDP acceleration with the session: a resume
                // takes the channel over.
                let (result, stats, udp) = tunnel.join_keeping_udp().await;
                self.kept_udp = udp.map(Box::new);
                // A broken connection (not a silent server) may have left the session alive on
                // the server: the machine tries to rejoin it before backing off.
                let resumable =
                    matches!(&result, Err(e) if !matches!(e, TunnelExit::Timeout { .. }));
                let reason = match result {
                    Ok(()) => "closed".to_owned(),
                    Err(e) => e.to_string(),
                };
                self.lost = Some((reason, stats));
                Ok(Event::SessionLost { resumable })
            }
        }
    }
}

/// Races `fut` against the stop signal.
/// The proxy's address, for the host route that keeps the session's own traffic off the
/// tunnel (`None`: it does not resolve; the server's address is pinned instead).
async fn proxy_address(proxy: &Proxy) -> Option<IpAddr> {
    let url = proxy.url();
    let lookup = tokio::net::lookup_host((url.host.as_str(), url.port));
    match tokio::time::timeout(Duration::from_secs(2), lookup).await {
        Ok(Ok(mut addrs)) => addrs.next().map(|a| a.ip()),
        _ => None,
    }
}

async fn or_stop<O>(
    stop: &mut StopSignal,
    fut: impl std::future::Future<Output = O>,
) -> Result<O, Exit> {
    tokio::select! {
        biased;
        mode = stop_requested(stop) => Err(Exit::Stop(mode)),
        out = fut => Ok(out),
    }
}

/// Runs a login or resume: waits for a login slot (not counted against `deadline`), then
/// `attempt` until `deadline`; `None` when that passed. Any stop request wins.
async fn gated<O>(
    gate: &RecoveryGate,
    stop: &mut StopSignal,
    deadline: Instant,
    attempt: impl std::future::Future<Output = O>,
) -> Result<Option<O>, Exit> {
    let queued = now();
    let _permit = or_stop(stop, gate.login_permit()).await?;
    let deadline = deadline + now().saturating_duration_since(queued);
    // Boxed once: wrapping the attempt by value in timeout and or_stop kept up to three
    // copies of its (multi-KiB) state in this future.
    let attempt = tokio::time::timeout_at(deadline.into(), Box::pin(attempt));
    Ok(or_stop(stop, attempt).await?.ok())
}

/// The whole budget of one login: up to four hops of redirects, then the additional
/// connections (spaced out after the first few), each with its connect + handshake budget.
fn login_budget(session: &SessionConfig) -> Duration {
    let per_connection = session.connect_timeout + session.handshake_timeout;
    let joins = session.max_connection.clamp(1, 32);
    per_connection * (4 + joins) + Duration::from_millis(300) * joins
}

fn max_frame(mtu: Option<u32>) -> usize {
    // Ethernet header + VLAN tag on top of the MTU.
    mtu.map_or(1500, |m| m as usize).max(1500) + 18
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

/// Clean shutdown of a live session: RELEASE the lease, let it leave, close the tunnel.
async fn release_and_close(dhcp: Option<&mut DhcpClient>, tunnel: TunnelHandle) {
    if let Some(frame) = dhcp.and_then(|d| d.release()) {
        if tunnel.outgoing.send(frame.into()).await.is_ok() {
            // The driver flushes what it has taken from the channel when closing; wait until
            // it has taken the RELEASE (bounded).
            let deadline = now() + RELEASE_FLUSH;
            while tunnel.outgoing.capacity() < tunnel.outgoing.max_capacity() && now() < deadline {
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

#[cfg(test)]
#[path = "supervisor_tests.rs"]
mod tests;
