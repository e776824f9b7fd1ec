//! One attachment's session task: SoftEther login from the sidecar's own namespace, the
//! TAP ⇄ tunnel frame pump, DHCP through the tunnel, the lease applied inside the pod netns,
//! reconnect with backoff.
//!
//! PROVISIONAL: a minimal engine built directly on `establish`, `tunnel_driver` and
//! `dhcp-client`, until the standalone client's session engine (`crate::client`) lands; then
//! this module should become a thin adapter over it (which needs from the engine: lease/phase/
//! stats events, a requested address for re-adoption, and a stop mode that keeps the pod's
//! configuration). Not yet here: resolv.conf, re-applying a changed MTU.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dhcp_client::{Config as DhcpConfig, DhcpClient, Event, Lease};
use ipnet::Ipv4Net;
use netcfg::{AsyncTap, Firewall, Netlink, Netns, PolicyRule, RouteSpec, Tap, TABLE_MAIN};
use softether_proto::error::RetryClass;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::protocol::{code, LinkSettings, LoginSettings, WireError};
use super::state::{unix_now, AttachmentRecord, StateDir};
use crate::credentials::{self, AuthInput};
use crate::establish::{establish, SessionConfig, SessionError};
use crate::server_args::random_seed;
use crate::tls::{parse_pin, TlsVerify};
use crate::tunnel_driver::{spawn_tunnel, TunnelHandle};

/// Priority of the "from <lease address> lookup <policyRouteTable>" rule.
const POLICY_RULE_PRIORITY: u32 = 1000;
/// Priority of the "fwmark <table> lookup <table>" rule (CONNMARK-restored replies).
const FWMARK_RULE_PRIORITY: u32 = 1001;

/// The nft table (`softether_<id>`) of an attachment, in its pod netns.
pub fn firewall_of(netns: &str, container_id: &str, ifname: &str) -> Firewall {
    Firewall::new(Netns::from_path(netns), &format!("{container_id}_{ifname}"))
}
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// What the session is doing, for `status` and for the attach request waiting on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    Dhcp,
    Up,
    Reconnecting,
    Stopped,
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::Dhcp => "dhcp",
            Phase::Up => "up",
            Phase::Reconnecting => "reconnecting",
            Phase::Stopped => "stopped",
            Phase::Failed => "failed",
        }
    }
}

/// The live view of a session.
#[derive(Debug, Clone)]
pub struct Live {
    pub phase: Phase,
    /// Unix seconds when `phase` was entered.
    pub since: u64,
    pub lease: Option<Lease>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub reconnects: u32,
    /// Set in `Failed`: the error the attach request returns.
    pub error: Option<WireError>,
    /// The last transient problem, for `status`.
    pub last_error: Option<String>,
}

/// How to end a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// DEL/GC: release the lease and delete the TAP.
    Release,
    /// Daemon shutdown: keep the TAP (persistent) and the record for re-adoption.
    Abandon,
}

pub struct SessionHandle {
    pub live: watch::Receiver<Live>,
    stop: Option<oneshot::Sender<StopMode>>,
    task: JoinHandle<()>,
}

impl SessionHandle {
    /// Asks the task to stop and waits (bounded) for it.
    pub async fn stop(mut self, mode: StopMode) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(mode);
        }
        if tokio::time::timeout(STEP_TIMEOUT, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

/// Starts the session task for `record`, which owns `tap` from now on.
pub fn spawn(record: AttachmentRecord, mac: [u8; 6], tap: Tap, state: StateDir) -> SessionHandle {
    let (live_tx, live_rx) = watch::channel(Live {
        phase: Phase::Connecting,
        since: unix_now(),
        lease: None,
        bytes_in: 0,
        bytes_out: 0,
        reconnects: 0,
        error: None,
        last_error: None,
    });
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut session = Session {
            record,
            mac,
            state,
            live: live_tx,
        };
        session.run(tap, stop_rx).await;
    });
    SessionHandle {
        live: live_rx,
        stop: Some(stop_tx),
        task,
    }
}

/// Login settings → the establish layer's config; reads the password file now (code 7 if it
/// cannot be used).
pub fn session_config(login: &LoginSettings) -> Result<SessionConfig, WireError> {
    let input = AuthInput {
        password_file: Some(login.password_file.clone()),
        plain_password: login.plain_password,
        ..AuthInput::default()
    };
    let credential = credentials::credential(&login.user, &input).map_err(|e| {
        WireError::new(
            code::INVALID_CONFIG,
            format!("passwordFile cannot be used: {e}"),
            "the file must exist on the node, be readable by softether-sidecar and hold the password",
        )
    })?;
    let tls = if login.insecure {
        TlsVerify::Insecure
    } else if let Some(pin) = &login.pin_sha256 {
        TlsVerify::PinSha256(
            parse_pin(pin).map_err(|e| WireError::new(code::INVALID_CONFIG, "pinSha256", e))?,
        )
    } else if let Some(ca) = &login.ca_file {
        TlsVerify::CaFile(ca.clone())
    } else {
        TlsVerify::SystemRoots
    };
    Ok(SessionConfig {
        host: login.server.clone(),
        port: login.port,
        hub: login.hub.clone(),
        username: login.user.clone(),
        credential,
        tls,
        max_connection: u32::from(login.max_connections.max(1)),
        connect_timeout: STEP_TIMEOUT,
        handshake_timeout: STEP_TIMEOUT,
        info: credentials::client_info(&login.user, &login.hub),
        seed: random_seed(),
    })
}

/// Errors retrying cannot fix, as the attach error to return.
fn permanent(err: &SessionError) -> Option<WireError> {
    if err.retry_class() != RetryClass::Never {
        return None;
    }
    Some(match err.server_code() {
        Some(c) => WireError::new(
            code::SOFTETHER_LOGIN,
            format!("SoftEther login refused: {}", c.name()),
            err.to_string(),
        ),
        None => WireError::new(
            code::SOFTETHER_LOGIN,
            "SoftEther session refused",
            err.to_string(),
        ),
    })
}

enum PumpEnd {
    Stop(StopMode),
    Lost(String),
}

struct Session {
    record: AttachmentRecord,
    mac: [u8; 6],
    state: StateDir,
    live: watch::Sender<Live>,
}

impl Session {
    fn set_phase(&self, phase: Phase) {
        self.live.send_modify(|l| {
            if l.phase != phase {
                l.phase = phase;
                l.since = unix_now();
            }
        });
    }

    fn fail(&self, err: WireError) {
        tracing::warn!(attachment = %self.label(), "session failed: {err}");
        self.live.send_modify(|l| {
            l.phase = Phase::Failed;
            l.since = unix_now();
            l.error = Some(err);
        });
    }

    fn label(&self) -> String {
        format!("{}/{}", self.record.container_id, self.record.ifname)
    }

    async fn run(&mut self, tap: Tap, mut stop: oneshot::Receiver<StopMode>) {
        let netns = Netns::from_path(&self.record.netns);
        let tap_name = tap.name().to_owned();
        let prepared = async {
            let tap = tap.into_async()?;
            let nl = Netlink::open(netns.clone()).await?;
            let index = nl.link_index(&tap_name).await?;
            if let Some(mtu) = self.record.link.mtu {
                nl.set_link_mtu(index, u32::from(mtu)).await?;
            }
            nl.set_link_up(index).await?;
            Ok::<_, netcfg::NetcfgError>((tap, nl, index))
        }
        .await;
        let (tap, nl, index) = match prepared {
            Ok(p) => p,
            Err(e) => {
                return self.fail(WireError::new(
                    code::TAP_NETNS,
                    format!("cannot set up {tap_name} in {}", self.record.netns),
                    e.to_string(),
                ))
            }
        };
        let mut dhcp: Option<DhcpClient> = None;
        let mut delay = BACKOFF_FIRST;
        let end = loop {
            let config = match session_config(&self.record.login) {
                Ok(c) => c,
                Err(e) => break self.give_up_or_wait(e, &mut stop, &mut delay).await,
            };
            let est = tokio::select! {
                est = establish(&config) => est,
                mode = &mut stop => break Some(mode.unwrap_or(StopMode::Abandon)),
            };
            let est = match est {
                Ok(est) => est,
                Err(e) => match permanent(&e) {
                    Some(w) => break self.give_up_or_wait(w, &mut stop, &mut delay).await,
                    None => {
                        self.live
                            .send_modify(|l| l.last_error = Some(e.to_string()));
                        tracing::info!(attachment = %self.label(), "connect failed, retrying in {delay:?}: {e}");
                        if let Some(mode) = sleep_or_stop(delay, &mut stop).await {
                            break Some(mode);
                        }
                        delay = (delay * 2).min(BACKOFF_CAP);
                        continue;
                    }
                },
            };
            delay = BACKOFF_FIRST;
            self.set_phase(Phase::Dhcp);
            let now = Instant::now();
            let client = match dhcp.as_mut() {
                Some(c) => {
                    c.restart(now);
                    c
                }
                None => {
                    let mut cfg = DhcpConfig::new(self.mac, random_seed());
                    cfg.requested_ip = self.record.last_address.map(|a| a.addr());
                    match DhcpClient::new(cfg, now) {
                        Ok(c) => dhcp.insert(c),
                        Err(e) => {
                            self.fail(WireError::new(code::DHCP, "DHCP client", e.to_string()));
                            break None;
                        }
                    }
                }
            };
            let mut tunnel = spawn_tunnel(est, random_seed());
            match self
                .pump(&tap, &mut tunnel, client, &nl, index, &mut stop)
                .await
            {
                PumpEnd::Stop(mode) => {
                    if mode == StopMode::Release {
                        if let Some(frame) = client.release() {
                            let _ = tunnel.outgoing.send(Bytes::from(frame)).await;
                        }
                    }
                    let _ = tunnel.close().await;
                    break Some(mode);
                }
                PumpEnd::Lost(why) => {
                    let _ = tunnel.close().await;
                    tracing::info!(attachment = %self.label(), "session lost: {why}; reconnecting");
                    self.live.send_modify(|l| {
                        l.reconnects += 1;
                        l.last_error = Some(why);
                    });
                    self.set_phase(Phase::Reconnecting);
                    if let Some(mode) = sleep_or_stop(BACKOFF_FIRST, &mut stop).await {
                        break Some(mode);
                    }
                }
            }
        };
        if end == Some(StopMode::Release) {
            if self.record.link.connmark {
                let fw = firewall_of(
                    &self.record.netns,
                    &self.record.container_id,
                    &self.record.ifname,
                );
                if let Err(e) = fw.remove().await {
                    tracing::warn!(attachment = %self.label(), "cannot remove the nft table: {e}");
                }
            }
            let tap = tap.into_tap();
            let _ = tap.set_persistent(false);
            drop(tap);
            if let Ok(Some(_)) = nl.link_index_opt(&tap_name).await {
                let _ = nl.delete_link(&tap_name).await;
            }
        }
        if end.is_some() {
            self.set_phase(Phase::Stopped);
        }
    }

    /// A permanent error: the first attach fails with it; an adopted session keeps retrying
    /// slowly (the password file may be fixed) until stopped.
    async fn give_up_or_wait(
        &self,
        err: WireError,
        stop: &mut oneshot::Receiver<StopMode>,
        delay: &mut Duration,
    ) -> Option<StopMode> {
        let adopted = self.live.borrow().lease.is_some() || self.record.last_address.is_some();
        if !adopted {
            self.fail(err);
            return None;
        }
        self.live
            .send_modify(|l| l.last_error = Some(err.to_string()));
        *delay = BACKOFF_CAP;
        sleep_or_stop(BACKOFF_CAP, stop).await
    }

    async fn pump(
        &mut self,
        tap: &AsyncTap,
        tunnel: &mut TunnelHandle,
        dhcp: &mut DhcpClient,
        nl: &Netlink,
        index: u32,
        stop: &mut oneshot::Receiver<StopMode>,
    ) -> PumpEnd {
        let mut buf = vec![0u8; 65536];
        loop {
            let now = Instant::now();
            while let Some(frame) = dhcp.poll_transmit(now) {
                let _ = tunnel.outgoing.try_send(Bytes::from(frame));
            }
            while let Some(event) = dhcp.poll_event() {
                self.on_dhcp_event(event, nl, index).await;
            }
            let timer = dhcp.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                read = tap.recv(&mut buf) => match read {
                    Ok(n) => {
                        let frame = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                        if tunnel.outgoing.try_send(frame).is_ok() {
                            self.live.send_modify(|l| l.bytes_out += n as u64);
                        }
                    }
                    Err(e) => return PumpEnd::Lost(format!("reading {} failed: {e}", tap.name())),
                },
                frame = tunnel.incoming.recv() => match frame {
                    None => return PumpEnd::Lost("tunnel closed".into()),
                    Some(frame) => {
                        if !(DhcpClient::is_dhcp_reply(&frame) && dhcp.handle_frame(Instant::now(), &frame))
                            && tap.send(&frame).await.is_ok()
                        {
                            self.live.send_modify(|l| l.bytes_in += frame.len() as u64);
                        }
                    }
                },
                _ = sleep_until_opt(timer) => dhcp.handle_timeout(Instant::now()),
                mode = &mut *stop => return PumpEnd::Stop(mode.unwrap_or(StopMode::Abandon)),
            }
        }
    }

    async fn on_dhcp_event(&mut self, event: Event, nl: &Netlink, index: u32) {
        match event {
            Event::Bound(lease) | Event::Changed { new: lease, .. } => {
                let old = self.live.borrow().lease.clone();
                let firewall = (self.record.link.connmark).then(|| {
                    firewall_of(
                        &self.record.netns,
                        &self.record.container_id,
                        &self.record.ifname,
                    )
                });
                if let Err(e) = apply_lease(
                    nl,
                    index,
                    &lease,
                    old.as_ref(),
                    &self.record.link,
                    (firewall.as_ref(), &self.record.ifname),
                )
                .await
                {
                    tracing::warn!(attachment = %self.label(), "cannot apply the lease: {e}");
                    self.live
                        .send_modify(|l| l.last_error = Some(format!("applying the lease: {e}")));
                }
                let address = lease.interface_address();
                if self.record.last_address != Some(address) {
                    self.record.last_address = Some(address);
                    if let Err(e) = self.state.save(&self.record) {
                        tracing::warn!(attachment = %self.label(), "cannot persist the lease: {e}");
                    }
                }
                tracing::info!(attachment = %self.label(), %address, "lease bound");
                self.live.send_modify(|l| l.lease = Some(lease));
                self.set_phase(Phase::Up);
            }
            Event::Renewed(lease) => self.live.send_modify(|l| l.lease = Some(lease)),
            Event::Lost { lease, reason } => {
                tracing::info!(attachment = %self.label(), "lease lost ({reason:?})");
                // A restart after reconnect asks for the same address again; keep the
                // configuration meanwhile so the pod only sees a pause.
                if reason != dhcp_client::LostReason::Restarted {
                    let _ = nl.del_address(index, lease.interface_address()).await;
                    self.live.send_modify(|l| l.lease = None);
                }
                self.set_phase(Phase::Dhcp);
            }
            _ => {}
        }
    }
}

/// Address, default route (if accepted), static routes (if accepted) and the source rule for
/// the policy table, inside the pod netns.
async fn apply_lease(
    nl: &Netlink,
    index: u32,
    lease: &Lease,
    old: Option<&Lease>,
    link: &LinkSettings,
    (firewall, tap): (Option<&Firewall>, &str),
) -> Result<(), netcfg::NetcfgError> {
    let address = lease.interface_address();
    let table = link.policy_route_table.unwrap_or(TABLE_MAIN);
    if let Some(old) = old.filter(|o| o.interface_address() != address) {
        let _ = nl.del_address(index, old.interface_address()).await;
        if link.policy_route_table.is_some() {
            let _ = nl
                .del_rule(&PolicyRule::from_address(
                    old.address,
                    table,
                    POLICY_RULE_PRIORITY,
                ))
                .await;
        }
    }
    if !nl.addresses(index).await?.contains(&address) {
        nl.add_address(index, address).await?;
    }
    if link.accept_default_gateway {
        if let Some(gw) = gateway_of(lease) {
            nl.replace_route(&RouteSpec::default_route().via(gw).dev(index).table(table))
                .await?;
        }
    }
    if link.accept_static_routes {
        for (dst, gw) in routes_of(lease) {
            nl.replace_route(&RouteSpec::to(dst).via(gw).dev(index).table(table))
                .await?;
        }
    }
    if link.policy_route_table.is_some() {
        let rule = PolicyRule::from_address(lease.address, table, POLICY_RULE_PRIORITY);
        if !nl.rules().await?.contains(&rule) {
            nl.add_rule(&rule).await?;
        }
        // The subnet route lives in main; the policy table needs it too.
        nl.replace_route(&RouteSpec::to(address.trunc()).dev(index).table(table))
            .await?;
        if let Some(fw) = firewall {
            // Replies to connections that came in through the VPN (a server port forward)
            // leave through it again: mark = table number.
            fw.apply_connmark(tap, table).await?;
            let rule = PolicyRule::fwmark(table, u32::MAX, table, FWMARK_RULE_PRIORITY);
            if !nl.rules().await?.contains(&rule) {
                nl.add_rule(&rule).await?;
            }
        }
    }
    Ok(())
}

/// The default gateway: RFC 3442's 0.0.0.0/0 classless entry, else the router option (a
/// server pushing split routes plus a router still gives a user who asked for it a default
/// route; same rule as the `connect` engine).
pub fn gateway_of(lease: &Lease) -> Option<Ipv4Addr> {
    lease.default_gateway().or(lease.router)
}

/// Classless static routes other than the default route.
pub fn routes_of(lease: &Lease) -> Vec<(Ipv4Net, Ipv4Addr)> {
    lease
        .classless_routes
        .iter()
        .filter(|(net, _)| net.prefix_len() != 0)
        .copied()
        .collect()
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn sleep_or_stop(
    delay: Duration,
    stop: &mut oneshot::Receiver<StopMode>,
) -> Option<StopMode> {
    tokio::select! {
        _ = tokio::time::sleep(delay) => None,
        mode = stop => Some(mode.unwrap_or(StopMode::Abandon)),
    }
}
