//! `softether-sidecar connect`: flags, validation, signals and exit codes around the engine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use netcfg::{resolv, Netns, Tap, TapConfig};
use tokio::sync::watch;

use crate::engine::lease_apply::{Ipv6Mode, NetOptions};
use crate::engine::mac::{stable_mac, Mac};
use crate::engine::recovery::RecoveryGate;
use crate::engine::run::{run_engine, EngineConfig, EngineError};
use crate::engine::status::{status_channel, StopMode};
use crate::observe::hooks::{self, HookCommand, HookContext};
use crate::observe::metrics::AttachmentLabels;
use crate::transport::connection::SessionError;
use crate::{cmd::args::ServerArgs, transport::random_seed};

/// Exit codes of `connect` (also listed in its `--help`).
pub mod exit {
    /// Stopped by SIGINT/SIGTERM; everything it added was removed.
    pub const OK: u8 = 0;
    /// Any other failure.
    pub const OTHER: u8 = 1;
    /// Bad usage (flags).
    pub const USAGE: u8 = 2;
    /// The server refused the login for good (bad password, unknown hub or user, ...).
    pub const LOGIN_REFUSED: u8 = 3;
    /// TLS trust failure or TLS setup error.
    pub const TLS: u8 = 4;
    /// Local network setup failed (TAP, netlink, nftables, resolv.conf).
    pub const LOCAL_NETWORK: u8 = 6;
    /// Stopped, but some of what it added could not be removed (see the log).
    pub const TEARDOWN_INCOMPLETE: u8 = 7;
}

/// Flags of `connect`.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// TAP interface name (created in the current network namespace; kernel-assigned tapN if absent).
    #[arg(long, value_name = "NAME")]
    pub tap: Option<String>,
    /// TAP MAC address, e.g. 5E:3B:6F:63:A8:3E (default: a stable 5E:… MAC derived from host, user and hub).
    #[arg(long, value_name = "MAC")]
    pub mac: Option<Mac>,
    /// Do not run DHCP: bridge frames only, configure nothing on the TAP.
    #[arg(long, conflicts_with_all = ["accept_default_gateway", "accept_static_routes", "accept_dns", "policy_route_table"])]
    pub no_dhcp: bool,
    /// Install the DHCP router as default route (metric 50), after pinning a /32 route to the
    /// server through the pre-existing default gateway.
    #[arg(long)]
    pub accept_default_gateway: bool,
    /// Install DHCP classless static routes (options 121/249); a 0.0.0.0/0 entry only with
    /// --accept-default-gateway. Also the IPv6 routers' Route Information routes (RFC 4191).
    #[arg(long)]
    pub accept_static_routes: bool,
    /// Write the lease's DNS servers and domain to --resolv-conf (backed up, restored on exit).
    #[arg(long)]
    pub accept_dns: bool,
    /// The resolv.conf that --accept-dns rewrites.
    #[arg(long, value_name = "PATH", default_value = resolv::RESOLV_CONF)]
    pub resolv_conf: PathBuf,
    /// Policy routing: `from <VPN_IP> lookup N` plus the VPN subnet and a default route via the
    /// VPN gateway in table N, so replies to VPN port forwards leave through the tunnel.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=0xffff_fffe))]
    pub policy_route_table: Option<u32>,
    /// CONNMARK connections arriving on the TAP (nftables) and route their replies through
    /// table N with an fwmark rule, for DNAT'd services in local namespaces/VMs. Requires
    /// --policy-route-table.
    #[arg(long)]
    pub connmark: bool,
    /// Base of the reconnect backoff (doubles per failure with ±20 % jitter, capped at 60 s; a
    /// refusing or unreachable server is probed every ≤ 0.5 s meanwhile and logged into as soon
    /// as it listens; "server busy"/"too many sessions" waits at least 60 s).
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = humantime::parse_duration)]
    pub reconnect_delay: Duration,
    /// TCP connections per session (SoftEther max_connection, 1-32): the first logs in, the
    /// others join with additional_connect, and frames are spread over all of them. The server
    /// may grant fewer (policy MaxConnection).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub max_connections: u32,
    /// Half-connection: each TCP connection carries one direction, as the server assigns
    /// (SoftEther half_connection); needs --max-connections 2 or more.
    #[arg(long)]
    pub half_connection: bool,
    /// TAP MTU (default: the lease's MTU option 26 when it is 576-1500, else 1500).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(576..=9000))]
    pub mtu: Option<u32>,
    /// Turn the TAP offloads off: one plain frame per TAP read and write instead of TCP
    /// super-frames cut and coalesced in user space (for comparison, or a kernel that misbehaves).
    #[arg(long, env = "SOFTETHER_NO_OFFLOAD", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_offload: bool,
    /// Keep every TCP ACK: by default a pure ACK is left out when a later ACK of the same
    /// connection in the same batch acknowledges more, which saves the local TCP stack and the
    /// server a frame each (for comparison, or to rule it out).
    #[arg(long, env = "SOFTETHER_NO_ACK_THINNING", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_ack_thinning: bool,
    /// No IPv6 on the TAP (disable_ipv6). By default router advertisements and DHCPv6 from
    /// the VPN configure addresses, on-link routes and (with the accept flags) the default
    /// route, DNS and policy routing, like the DHCPv4 lease.
    #[arg(long)]
    pub no_ipv6: bool,
    /// Serve Prometheus metrics (/metrics), /healthz and /readyz over HTTP on ADDR:PORT, e.g.
    /// 127.0.0.1:9560 (off unless given).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_addr: Option<SocketAddr>,
    /// Run this program (no shell) when the lease is acquired, changes address, is lost or is
    /// released (and on acquired6/changed6/lost6 for IPv6), with SOFTETHER_EVENT,
    /// SOFTETHER_ADDRESS, SOFTETHER_ADDRESS6, ... in its environment (README).
    #[arg(long, value_name = "PATH")]
    pub on_change: Option<PathBuf>,
    /// An argument for --on-change (repeat for several, in order).
    #[arg(
        long,
        value_name = "ARG",
        requires = "on_change",
        allow_hyphen_values = true
    )]
    pub on_change_arg: Vec<String>,
    /// Kill an --on-change run (its whole process group) after this long.
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = humantime::parse_duration)]
    pub on_change_timeout: Duration,
}

/// Flag combinations clap cannot express with a good message.
pub fn validate(args: &ConnectArgs) -> Result<(), String> {
    if args.connmark && args.policy_route_table.is_none() {
        return Err(
            "--connmark requires --policy-route-table N: marked replies are routed through table N"
                .into(),
        );
    }
    if args.half_connection && args.max_connections < 2 {
        return Err(
            "--half-connection requires --max-connections 2 or more: each TCP connection carries one direction"
                .into(),
        );
    }
    Ok(())
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && h.len() <= 255)
}

fn engine_config(args: &ConnectArgs) -> anyhow::Result<EngineConfig> {
    let server = &args.server;
    let mut session = server.session_config(args.max_connections)?;
    session.half_connection = args.half_connection;
    let mac = args
        .mac
        .unwrap_or_else(|| stable_mac(&server.host, &server.user, &server.hub));
    Ok(EngineConfig {
        session,
        mac,
        dhcp_hostname: (!args.no_dhcp).then(hostname),
        net: NetOptions {
            accept_default_gateway: args.accept_default_gateway,
            accept_static_routes: args.accept_static_routes,
            policy_table: args.policy_route_table,
            connmark: args.connmark,
            resolv_conf: args.accept_dns.then(|| args.resolv_conf.clone()),
            lease_mtu: args.mtu.is_none(),
            ipv6: if args.no_ipv6 {
                Ipv6Mode::Off
            } else if args.no_dhcp {
                // --no-dhcp configures nothing: the kernel only keeps its link-local address.
                Ipv6Mode::LinkLocalOnly
            } else {
                Ipv6Mode::Managed
            },
        },
        pin_server_route: true,
        mtu: args.mtu,
        offload: !args.no_offload,
        ack_thinning: !args.no_ack_thinning,
        reconnect_delay: args.reconnect_delay,
        seed: random_seed(),
        id: format!("connect_{}", std::process::id()),
        requested_ip: None,
        adopt_address: None,
        on_error: StopMode::Teardown,
        recovery: RecoveryGate::new(1),
    })
}

/// Resolves when SIGINT or SIGTERM arrives (first one wins).
fn spawn_signal_watch(tx: watch::Sender<Option<StopMode>>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutting down");
        let _ = tx.send(Some(StopMode::Teardown));
    });
    Ok(())
}

/// Runs `connect`; returns the process exit code.
pub async fn run_connect(args: ConnectArgs) -> u8 {
    if let Err(msg) = validate(&args) {
        eprintln!("softether-sidecar connect: {msg}");
        return exit::USAGE;
    }
    let config = match engine_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("softether-sidecar connect: {e:#}");
            return exit::USAGE;
        }
    };
    let (stop_tx, stop_rx) = watch::channel(None);
    if let Err(e) = spawn_signal_watch(stop_tx) {
        eprintln!("softether-sidecar connect: cannot install signal handlers: {e}");
        return exit::OTHER;
    }
    if args.accept_dns {
        if let Err(e) = resolv::recover_stale_backup(&args.resolv_conf) {
            eprintln!("softether-sidecar connect: {e}");
            return exit::LOCAL_NETWORK;
        }
    }
    // Bound before anything is created, so a taken port fails the start cleanly.
    let metrics_listener = match args.metrics_addr {
        Some(addr) => match crate::observe::http::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("softether-sidecar connect: cannot listen on --metrics-addr {addr}: {e}");
                return exit::OTHER;
            }
        },
        None => None,
    };
    let netns = Netns::Current;
    let tap_config = TapConfig {
        name: args.tap.clone(),
        persistent: false,
        vnet_hdr: !args.no_offload,
    };
    let tap = match Tap::create(&netns, &tap_config).await {
        Ok(tap) => tap,
        Err(e) => {
            eprintln!("softether-sidecar connect: cannot create the TAP: {e}");
            return exit::LOCAL_NETWORK;
        }
    };
    tracing::info!(tap = %tap.name(), mac = %config.mac, "TAP created");
    let (status, status_rx) = status_channel();
    let server = format!("{}:{}", args.server.host, args.server.port);
    if let Some(listener) = metrics_listener {
        let labels = AttachmentLabels {
            container_id: None,
            ifname: tap.name().to_owned(),
            server: server.clone(),
            hub: args.server.hub.clone(),
        };
        let endpoints = crate::observe::connect_endpoints(status_rx.clone(), labels, args.no_dhcp);
        tracing::info!(addr = ?listener.local_addr().ok(), "metrics endpoint listening");
        crate::observe::http::spawn(listener, Arc::new(endpoints));
    }
    let hook_runner = args.on_change.clone().map(|program| {
        let command = HookCommand {
            program,
            args: args.on_change_arg.clone(),
            timeout: args.on_change_timeout,
        };
        let context = HookContext {
            interface: tap.name().to_owned(),
            server,
            hub: args.server.hub.clone(),
            ..HookContext::default()
        };
        hooks::spawn_runner(command, context, status_rx.clone())
    });
    drop(status_rx);
    let outcome = run_engine(config, tap, netns, stop_rx, &status).await;
    drop(status);
    if let Some(runner) = hook_runner {
        hooks::finish(runner, hooks::EXIT_GRACE).await;
    }
    let code = match &outcome.result {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("softether-sidecar connect: {e}");
            exit_code(e)
        }
    };
    if code == exit::OK && !outcome.teardown_errors.is_empty() {
        return exit::TEARDOWN_INCOMPLETE;
    }
    code
}

fn exit_code(e: &EngineError) -> u8 {
    match e {
        EngineError::Session(SessionError::Tls { .. } | SessionError::TlsSetup(_)) => exit::TLS,
        EngineError::Session(_) => exit::LOGIN_REFUSED,
        EngineError::Netcfg(_) | EngineError::Tap(_) => exit::LOCAL_NETWORK,
        _ => exit::OTHER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ConnectArgs,
    }

    fn parse(extra: &[&str]) -> Result<ConnectArgs, clap::Error> {
        let mut argv = vec!["x", "--host", "h", "--user", "u"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).map(|c| c.args)
    }

    #[test]
    fn defaults() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.reconnect_delay, Duration::from_secs(5));
        assert_eq!(a.max_connections, 1);
        assert_eq!(a.resolv_conf, PathBuf::from("/etc/resolv.conf"));
        assert!(validate(&a).is_ok());
    }

    #[test]
    fn connmark_needs_a_table() {
        let a = parse(&["--connmark"]).unwrap();
        let msg = validate(&a).unwrap_err();
        assert!(msg.contains("--policy-route-table"), "{msg}");
        let a = parse(&["--connmark", "--policy-route-table", "200"]).unwrap();
        assert!(validate(&a).is_ok());
    }

    #[test]
    fn half_connection_needs_two_connections() {
        let a = parse(&["--half-connection"]).unwrap();
        let msg = validate(&a).unwrap_err();
        assert!(msg.contains("--max-connections"), "{msg}");
        let a = parse(&["--half-connection", "--max-connections", "2"]).unwrap();
        assert!(validate(&a).is_ok());
    }

    #[test]
    fn ranges_and_mac() {
        assert!(parse(&["--max-connections", "33"]).is_err());
        assert!(parse(&["--max-connections", "0"]).is_err());
        assert!(parse(&["--policy-route-table", "0"]).is_err());
        assert!(parse(&["--mac", "01:00:00:00:00:01"]).is_err());
        let a = parse(&["--mac", "5e:00:00:00:00:01", "--reconnect-delay", "250ms"]).unwrap();
        assert_eq!(a.mac.unwrap().0, [0x5e, 0, 0, 0, 0, 1]);
        assert_eq!(a.reconnect_delay, Duration::from_millis(250));
        assert!(parse(&["--no-dhcp", "--accept-default-gateway"]).is_err());
    }
}
