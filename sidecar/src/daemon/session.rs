//! One attachment's session task: a thin adapter over the connection engine
//! ([`crate::engine::run::run_engine`]), the same one `softether-sidecar connect` runs.
//!
//! What the adapter adds for the CNI sidecar: the attachment record → engine options (login
//! from the sidecar's namespace, TAP and configuration in the pod's, no pinned server route),
//! the last address persisted in the record whenever the lease changes (so a restarted
//! sidecar asks for the same address and adopts the pod's configuration), engine errors as
//! CNI error codes, for an attachment that has had a lease, retrying after a
//! non-retryable error instead of giving up (the password file may be fixed meanwhile), and
//! closing the session of a pod whose network namespace disappeared without a DEL.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use netcfg::{Netns, Tap};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::netns_watch;
use crate::engine::lease_apply::{Ipv6Mode, NetOptions};
use crate::engine::mac::Mac;
use crate::engine::recovery::{RecoveryGate, DAEMON_CONCURRENT_LOGINS};
use crate::engine::run::{run_engine, EngineConfig, EngineError};
use crate::engine::status::{self, status_channel, EngineStatus, Phase, StopMode};
use crate::observe::hooks::{self, HookCommand, HookContext};
use crate::observe::metrics::AttachmentLabels;
use crate::transport::connection::SessionConfig;
use crate::transport::credentials::{self, AuthInput};
use crate::transport::proxy::Proxy;
use crate::transport::random_seed;
use crate::transport::tls::{client_config_async, parse_pin, TlsVerify};
use crate::transport::user_file;
use softether_control::state_dir::{AttachmentRecord, StateDir};
// The engine id names the attachment's nft table (`softether_<id>`) in the pod netns; the
// plugin removes that table itself on a DEL while we are down, so the id is shared.
use netcfg::pod_netns::engine_id;
use softether_control::{code, LinkSettings, LoginSettings, WireError};

/// Login and handshake timeouts, and the bound on stopping a session.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Base of the reconnect backoff: pods should come back quickly after a server restart.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// How long an attachment that had a lease waits before retrying after a refused login.
const REFUSED_RETRY: Duration = Duration::from_secs(30);

/// The running session of one attachment.
pub struct SessionHandle {
    /// The engine's live state (kept across engine restarts).
    pub status: watch::Receiver<EngineStatus>,
    /// Set when the session gave up: the error an ADD waiting on it returns.
    pub failure: watch::Receiver<Option<WireError>>,
    /// Set when the pod's namespace disappeared without a DEL and the session was closed.
    gone: Arc<AtomicBool>,
    stop: watch::Sender<Option<StopMode>>,
    task: JoinHandle<()>,
}

impl SessionHandle {
    /// The word for `softether-sidecar status`.
    pub fn state_name(&self) -> &'static str {
        if self.is_gone() {
            "gone"
        } else if self.failure.borrow().is_some() {
            "failed"
        } else {
            self.status.borrow().phase.as_str()
        }
    }

    /// The pod's namespace disappeared without a DEL; the session is closed and the
    /// attachment waits for a DEL or GC to remove its record.
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    pub fn is_up(&self) -> bool {
        if self.is_gone() {
            return false;
        }
        let s = self.status.borrow();
        s.phase == Phase::Bound && s.lease.is_some()
    }

    /// Unix seconds since the current phase began.
    pub fn since(&self) -> u64 {
        let since = self.status.borrow().since;
        since.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }

    /// Asks the task to stop and waits (bounded) for it.
    pub async fn stop(mut self, mode: StopMode) {
        let _ = self.stop.send(Some(mode));
        if tokio::time::timeout(STEP_TIMEOUT, &mut self.task)
            .await
            .is_err()
        {
            tracing::warn!("session did not stop within {STEP_TIMEOUT:?}; aborting it");
            self.task.abort();
        }
        // The session's buffers are free now; without this the daemon stayed at its peak
        // after all attachments were deleted (issue 11: 28 MiB).
        crate::memory::release_free_heap();
    }
}

/// Starts the session task for `record`, which owns `tap` from now on.
pub fn spawn(
    record: AttachmentRecord,
    mac: [u8; 6],
    tap: Tap,
    state: StateDir,
    hooks_dir: Option<&std::path::Path>,
) -> SessionHandle {
    let (status_tx, status_rx) = status_channel();
    if let Some((command, context)) = hook_of(&record, hooks_dir) {
        hooks::spawn_runner(command, context, status_rx.clone());
    }
    let (failure_tx, failure_rx) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(None);
    let status = status_rx.clone();
    let gone = Arc::new(AtomicBool::new(false));
    let gone_flag = gone.clone();
    let task = tokio::spawn(async move {
        let attachment = Attachment {
            record,
            mac: Mac(mac),
            state,
            gone: gone_flag,
        };
        attachment
            .run(tap, stop_rx, &status_tx, status, &failure_tx)
            .await;
    });
    SessionHandle {
        status: status_rx,
        failure: failure_rx,
        gone,
        stop: stop_tx,
        task,
    }
}

/// The metric labels of an attachment (no user name, no secrets).
pub fn metric_labels(record: &AttachmentRecord) -> AttachmentLabels {
    AttachmentLabels {
        container_id: Some(record.container_id.clone()),
        ifname: record.ifname.clone(),
        server: format!("{}:{}", record.login.server, record.login.port),
        hub: record.login.hub.clone(),
    }
}

/// The network's `onChange` hook for this attachment, if it has one and it lies in
/// `hooks_dir`. It runs in the sidecar's namespace; `SOFTETHER_NETNS` names the pod's.
fn hook_of(
    record: &AttachmentRecord,
    hooks_dir: Option<&std::path::Path>,
) -> Option<(HookCommand, HookContext)> {
    let (program, args) = record.link.on_change.split_first()?;
    let program = match hooks::allowed_program(program.as_ref(), hooks_dir) {
        Ok(p) => p,
        Err(why) => {
            tracing::warn!(container = %record.container_id, "not running onChange {program:?}: {why}");
            return None;
        }
    };
    let command = HookCommand {
        program,
        args: args.to_vec(),
        timeout: hooks::DEFAULT_TIMEOUT,
    };
    let labels = metric_labels(record);
    let context = HookContext {
        interface: labels.ifname,
        container_id: labels.container_id,
        netns: Some(record.netns.clone()),
        server: labels.server,
        hub: labels.hub,
    };
    Some((command, context))
}

/// Login settings → the establish layer's config; reads the password file and checks the CA
/// file now (code 7 if either cannot be used), off the runtime threads with a deadline: the
/// paths come from the network config, so they may name a FIFO, a device or a huge file.
pub async fn session_config(login: &LoginSettings) -> Result<SessionConfig, WireError> {
    let input = AuthInput {
        password_file: Some(login.password_file.clone()),
        plain_password: login.plain_password,
        ..AuthInput::default()
    };
    let credential = credentials::credential_async(&login.user, &input).await.map_err(|e| {
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
        let verify = TlsVerify::CaFile(ca.clone());
        client_config_async(&verify, Default::default())
            .await
            .map_err(|e| {
                WireError::new(
                    code::INVALID_CONFIG,
                    format!("caFile cannot be used: {e}"),
                    "the file must be a regular PEM file of at most 1 MiB on the node",
                )
            })?;
        verify
    } else {
        TlsVerify::SystemRoots
    };
    let proxy = match &login.proxy {
        None => None,
        Some(url) => {
            let password = match &login.proxy_password_file {
                Some(f) => {
                    let owned = f.clone();
                    let read =
                        user_file::off_runtime(f, move || credentials::read_password_file(&owned));
                    Some(read.await.map_err(|e| {
                        WireError::new(
                            code::INVALID_CONFIG,
                            format!("proxyPasswordFile cannot be used: {e}"),
                            "the file must be a regular file on the node, readable by softether-sidecar, holding the proxy password",
                        )
                    })?)
                }
                None => None,
            };
            Some(
                Proxy::parse(url, password)
                    .map_err(|e| WireError::new(code::INVALID_CONFIG, format!("proxy: {e}"), ""))?,
            )
        }
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
        proxy,
        udp_acceleration: login.udp_acceleration.is_auto().then_some(2),
        compress: login.compress,
        half_connection: login.half_connection,
    })
}

/// The CNI link settings as the engine's options (the same struct `connect`'s flags fill).
/// The pod's resolv.conf belongs to the runtime: DNS goes into the CNI result instead. IPv6
/// is managed like `connect`'s unless the network says `ipv6: false`, which turns it off on
/// the pod interface (like `connect --no-ipv6`).
pub fn net_options(link: &LinkSettings) -> NetOptions {
    NetOptions {
        accept_default_gateway: link.accept_default_gateway,
        accept_static_routes: link.accept_static_routes,
        policy_table: link.policy_route_table,
        connmark: link.connmark,
        resolv_conf: None,
        lease_mtu: link.mtu.is_none(),
        ipv6: if link.ipv6_enabled() {
            Ipv6Mode::Managed
        } else {
            Ipv6Mode::Off
        },
    }
}

/// The pod name as DHCP hostname when it is a plausible one.
fn dhcp_hostname(record: &AttachmentRecord) -> Option<String> {
    record.pod_name.clone().filter(|n| {
        !n.is_empty() && n.len() <= 63 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// The engine options for `record`. An attachment with a recorded address asks for it again
/// and adopts what is installed for it; on a non-retryable error it keeps the pod's
/// configuration (no gap for the pod) while a fresh ADD tears down.
pub async fn engine_config(record: &AttachmentRecord, mac: Mac) -> Result<EngineConfig, WireError> {
    let adopted = record.last_address;
    Ok(EngineConfig {
        session: session_config(&record.login).await?,
        mac,
        dhcp_hostname: Some(dhcp_hostname(record)),
        net: net_options(&record.link),
        // TLS leaves from the sidecar's namespace: pod routes cannot capture it.
        pin_server_route: false,
        mtu: record.link.mtu.map(u32::from),
        offload: crate::engine::run::offload_from_env(),
        ack_thinning: crate::engine::run::ack_thinning_from_env(),
        reconnect_delay: RECONNECT_DELAY,
        seed: random_seed(),
        id: engine_id(&record.container_id, &record.ifname),
        requested_ip: adopted.map(|a| a.addr()),
        adopt_address: adopted,
        on_error: if adopted.is_some() {
            StopMode::Detach
        } else {
            StopMode::Teardown
        },
        recovery: daemon_recovery_gate(),
    })
}

/// One [`RecoveryGate`] for every attachment of this daemon: when the server comes back, the
/// pods log in a few at a time after one shared probe instead of storming it.
fn daemon_recovery_gate() -> Arc<RecoveryGate> {
    static GATE: std::sync::OnceLock<Arc<RecoveryGate>> = std::sync::OnceLock::new();
    GATE.get_or_init(|| RecoveryGate::new(DAEMON_CONCURRENT_LOGINS))
        .clone()
}

/// An engine error as the CNI error an ADD returns.
fn wire_error(err: &EngineError, record: &AttachmentRecord) -> WireError {
    match err {
        EngineError::Session(e) => match e.server_code() {
            Some(c) => WireError::new(
                code::SOFTETHER_LOGIN,
                format!("SoftEther login refused: {}", c.name()),
                e.to_string(),
            ),
            None => WireError::new(
                code::SOFTETHER_LOGIN,
                "SoftEther session refused",
                e.to_string(),
            ),
        },
        EngineError::Dhcp(e) => WireError::new(code::DHCP, "DHCP client", e.to_string()),
        other => WireError::new(
            code::TAP_NETNS,
            format!("cannot set up {} in {}", record.ifname, record.netns),
            other.to_string(),
        ),
    }
}

struct Attachment {
    record: AttachmentRecord,
    mac: Mac,
    state: StateDir,
    gone: Arc<AtomicBool>,
}

impl Attachment {
    fn label(&self) -> String {
        format!("{}/{}", self.record.container_id, self.record.ifname)
    }

    async fn run(
        mut self,
        tap: Tap,
        mut stop: watch::Receiver<Option<StopMode>>,
        status_tx: &watch::Sender<EngineStatus>,
        status: watch::Receiver<EngineStatus>,
        failure: &watch::Sender<Option<WireError>>,
    ) {
        let netns = Netns::from_path(&self.record.netns);
        // What the record's namespace path names now: the session lives only while it still
        // names that namespace.
        let attached = match netns_watch::identity(&self.record.netns).await {
            Ok(Some(id)) => Some(id),
            Ok(None) => return self.mark_gone(status_tx),
            Err(e) => {
                tracing::warn!(attachment = %self.label(), "cannot stat {}: {e}; not watching it", self.record.netns);
                None
            }
        };
        let mut tap = Some(tap);
        loop {
            let had_lease = self.record.last_address.is_some();
            let error = match engine_config(&self.record, self.mac).await {
                Err(e) => e,
                Ok(config) => {
                    let tap = match tap.take() {
                        Some(t) => t,
                        None => match Tap::open_persistent(&netns, &self.record.ifname).await {
                            Ok(t) => t,
                            Err(e) => {
                                if self.netns_gone(attached).await {
                                    return self.mark_gone(status_tx);
                                }
                                let _ = failure.send(Some(WireError::new(
                                    code::TAP_NETNS,
                                    format!("cannot reopen {}", self.record.ifname),
                                    e.to_string(),
                                )));
                                return;
                            }
                        },
                    };
                    // The engine stops on the owner's request, or (detaching: nothing is left
                    // to tear down) when the pod's namespace disappears.
                    let (engine_stop, engine_stop_rx) = watch::channel(None);
                    let engine = run_engine(config, tap, netns.clone(), engine_stop_rx, status_tx);
                    let path = self.record.netns.clone();
                    let gone = self.gone.clone();
                    let mut owner_stop = stop.clone();
                    let relay = async move {
                        let netns_gone = async {
                            match attached {
                                Some(id) => netns_watch::wait_gone(&path, id).await,
                                None => std::future::pending().await,
                            }
                        };
                        let mode = tokio::select! {
                            mode = crate::engine::status::stop_requested(&mut owner_stop) => mode,
                            () = netns_gone => {
                                gone.store(true, Ordering::Relaxed);
                                StopMode::Detach
                            }
                        };
                        let _ = engine_stop.send(Some(mode));
                        std::future::pending::<std::convert::Infallible>().await
                    };
                    let outcome = tokio::select! {
                        outcome = engine => outcome,
                        never = self.persist_leases(status.clone()) => match never {},
                        never = relay => match never {},
                    };
                    if self.gone.load(Ordering::Relaxed) {
                        return self.mark_gone(status_tx);
                    }
                    match outcome.result {
                        Ok(()) => return,
                        Err(e) => wire_error(&e, &self.record),
                    }
                }
            };
            if self.netns_gone(attached).await {
                return self.mark_gone(status_tx);
            }
            if !had_lease {
                tracing::warn!(attachment = %self.label(), "session failed: {error}");
                let _ = failure.send(Some(error));
                return;
            }
            tracing::warn!(attachment = %self.label(), "session failed, keeping the pod's configuration and retrying in {REFUSED_RETRY:?}: {error}");
            status_tx.send_modify(|s| s.last_error = Some(error.to_string()));
            let wait = tokio::time::sleep(REFUSED_RETRY);
            tokio::select! {
                _ = wait => {}
                _ = stop.wait_for(Option::is_some) => return,
            }
        }
    }

    /// Whether the record's namespace path no longer names the attached namespace.
    async fn netns_gone(&self, attached: Option<netns_watch::NetnsIdentity>) -> bool {
        match (attached, netns_watch::identity(&self.record.netns).await) {
            (_, Ok(None)) => true,
            (Some(id), Ok(Some(now))) => id != now,
            _ => false,
        }
    }

    /// Ends the session task for a pod whose namespace is gone: no server session is held
    /// for it; the record stays until a DEL or GC removes it.
    fn mark_gone(&self, status_tx: &watch::Sender<EngineStatus>) {
        self.gone.store(true, Ordering::Relaxed);
        status::set_phase(status_tx, Phase::Gone);
        tracing::warn!(attachment = %self.label(), netns = %self.record.netns, "the pod's network namespace disappeared without a DEL; session closed, the record waits for DEL or GC");
        status_tx.send_modify(|s| {
            s.last_error = Some(format!("network namespace {} is gone", self.record.netns));
        });
    }

    /// Records each new lease address in the attachment record, and a hub with IPv6 routers
    /// in the daemon's memory (see `daemon::ipv6`). Never returns.
    async fn persist_leases(
        &mut self,
        mut status: watch::Receiver<EngineStatus>,
    ) -> std::convert::Infallible {
        let hub = crate::daemon::ipv6::hub_key(&self.record.login);
        loop {
            if status.borrow().ipv6.router_heard {
                crate::daemon::ipv6::daemon_hubs().remember(&hub, true);
            }
            let address = status
                .borrow_and_update()
                .lease
                .as_ref()
                .map(|l| l.interface_address());
            if let Some(address) = address {
                if self.record.last_address != Some(address) {
                    tracing::info!(attachment = %self.label(), %address, "lease bound");
                    self.record.last_address = Some(address);
                    if let Err(e) = self.state.save(&self.record) {
                        tracing::warn!(attachment = %self.label(), "cannot persist the lease: {e}");
                    }
                }
            }
            if status.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn record(last: Option<&str>) -> AttachmentRecord {
        let dir = std::env::temp_dir().join(format!("session-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let password = dir.join("pass");
        std::fs::write(&password, "secret\n").unwrap();
        let base =
            softether_control::testing::record("c1", "vpn0", "/run/netns/x", "5E:00:00:00:00:01");
        AttachmentRecord {
            login: softether_control::testing::login(password),
            link: LinkSettings {
                mtu: Some(1400),
                policy_route_table: Some(100),
                connmark: true,
                ..LinkSettings::default()
            },
            last_address: last.map(|a| a.parse().unwrap()),
            pod_name: Some("web-1".into()),
            ..base
        }
    }

    #[tokio::test]
    async fn fresh_attachment_tears_down_on_error_and_asks_nothing() {
        let c = engine_config(&record(None), Mac([0x5e, 0, 0, 0, 0, 1]))
            .await
            .unwrap();
        assert_eq!(c.on_error, StopMode::Teardown);
        assert_eq!((c.requested_ip, c.adopt_address), (None, None));
        assert!(!c.pin_server_route);
        assert_eq!(c.mtu, Some(1400));
        assert_eq!(c.net.policy_table, Some(100));
        assert!(c.net.connmark && c.net.resolv_conf.is_none());
        assert_eq!(c.dhcp_hostname, Some(Some("web-1".into())));
        assert_eq!(c.id, "c1_vpn0");
        // IPv6 is managed unless the network turns it off.
        assert_eq!(c.net.ipv6, Ipv6Mode::Managed);
        let mut off = record(None);
        off.link.ipv6 = Some(false);
        let c = engine_config(&off, Mac([0x5e, 0, 0, 0, 0, 1]))
            .await
            .unwrap();
        assert_eq!(c.net.ipv6, Ipv6Mode::Off);
    }

    #[tokio::test]
    async fn readopted_attachment_asks_for_its_address_and_keeps_config() {
        let c = engine_config(
            &record(Some("192.168.30.12/24")),
            Mac([0x5e, 0, 0, 0, 0, 1]),
        )
        .await
        .unwrap();
        assert_eq!(c.on_error, StopMode::Detach);
        assert_eq!(c.requested_ip, Some("192.168.30.12".parse().unwrap()));
        assert_eq!(c.adopt_address, Some("192.168.30.12/24".parse().unwrap()));
    }

    #[tokio::test]
    async fn missing_password_file_is_code_7() {
        let mut r = record(None);
        r.login.password_file = "/nonexistent/pass".into();
        let e = engine_config(&r, Mac([0x5e, 0, 0, 0, 0, 1]))
            .await
            .unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
    }

    #[tokio::test]
    async fn device_as_password_or_ca_file_is_code_7() {
        let mut r = record(None);
        r.login.password_file = "/dev/zero".into();
        let e = session_config(&r.login).await.unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(e.msg.contains("character device"), "{e:?}");
        let mut r = record(None);
        r.login.insecure = false;
        r.login.ca_file = Some("/dev/zero".into());
        let e = session_config(&r.login).await.unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(e.msg.contains("caFile"), "{e:?}");
    }
}
