//! `softether-sidecar probe`: log in, report what the server said, exchange a few frames, leave.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use softether_proto::error::RetryClass;

use crate::cmd::probe_frames::{exchange_frames, FrameReport};
use crate::transport::connection::{Established, SessionError};
use crate::transport::driver::spawn_tunnel;
use crate::transport::establish::establish;
use crate::transport::tls::cert_sha256_hex;
use crate::transport::udp_accel::UdpMode;
use crate::{cmd::args::ServerArgs, transport::random_seed};

/// Policy items worth a line in the human-readable report when set.
const POLICY_HIGHLIGHTS: &[&str] = &[
    "Access",
    "DHCPForce",
    "CheckMac",
    "CheckIP",
    "ArpDhcpOnly",
    "NoRouting",
    "NoBridge",
    "MaxConnection",
    "TimeOut",
    "MaxMac",
    "MaxIP",
    "MaxUpload",
    "MaxDownload",
    "MultiLogins",
    "AutoDisconnect",
    "VLanId",
];

#[derive(Debug, Serialize)]
pub struct ProbeReport {
    pub ok: bool,
    pub server: String,
    pub server_address: String,
    pub redirected_to: Option<String>,
    pub server_product: String,
    pub server_version: u32,
    pub server_build: u32,
    pub tls_version: String,
    pub cipher_suite: String,
    pub server_cert_sha256: String,
    pub hub: String,
    pub user: String,
    pub auth: String,
    pub session_name: String,
    pub connection_name: String,
    pub max_connection: u32,
    pub timeout_ms: u128,
    pub use_encrypt: bool,
    pub use_compress: bool,
    pub half_connection: bool,
    pub qos: bool,
    pub vlan_id: u32,
    pub policy: BTreeMap<String, u32>,
    pub message: String,
    pub login_ms: u128,
    pub frames: FrameReport,
    pub udp_acceleration: UdpReport,
}

/// UDP acceleration as negotiated, and its state when the probe ended.
#[derive(Debug, Default, Serialize)]
pub struct UdpReport {
    /// Offered in the login (`--udp-acceleration auto`).
    pub offered: bool,
    /// Granted by the server's Welcome and usable.
    pub granted: bool,
    pub version: Option<u32>,
    pub cipher: Option<String>,
    /// The server's UDP endpoint.
    pub server: Option<String>,
    /// `off`, `probing`, `stabilising`, `active` or `lost`.
    pub state: String,
}

/// A failed probe, printed as one line (or one JSON object).
#[derive(Debug, Serialize)]
pub struct ProbeFailure {
    pub ok: bool,
    pub error: String,
    pub softether_error: Option<SoftEtherErrorJson>,
    pub retryable: bool,
    pub server_cert_sha256: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SoftEtherErrorJson {
    pub code: u32,
    pub name: &'static str,
}

impl ProbeFailure {
    pub fn from_session_error(err: &SessionError) -> Self {
        let presented = match err {
            SessionError::Tls {
                presented_sha256, ..
            } => presented_sha256.clone(),
            _ => None,
        };
        ProbeFailure {
            ok: false,
            error: err.to_string(),
            softether_error: err.server_code().map(|c| SoftEtherErrorJson {
                code: c.0,
                name: c.name(),
            }),
            retryable: err.retry_class() != RetryClass::Never,
            server_cert_sha256: presented,
        }
    }

    /// Process exit code: 3 the server refused us for good, 4 TLS trust problems, 5 transient.
    pub fn exit_code(err: &SessionError) -> i32 {
        match err {
            SessionError::Tls { .. } | SessionError::TlsSetup(_) => 4,
            _ if err.retry_class() == RetryClass::Never => 3,
            _ => 5,
        }
    }
}

/// Runs the probe. `frame_wait` bounds the frame exchange.
pub async fn run_probe(
    args: &ServerArgs,
    frame_wait: Duration,
    udp_wait: Duration,
) -> anyhow::Result<Result<ProbeReport, SessionError>> {
    let config = args.session_config(1)?;
    let started = Instant::now();
    let est = match establish(&config).await {
        Ok(est) => est,
        Err(e) => return Ok(Err(e)),
    };
    let login_ms = started.elapsed().as_millis();
    let mut report = base_report(args, &est, login_ms);
    report.udp_acceleration = UdpReport {
        offered: config.udp_acceleration.is_some(),
        granted: est.udp.is_some(),
        version: est.udp.as_ref().map(|u| u.version),
        cipher: est.udp.as_ref().map(|u| u.cipher_name().to_owned()),
        server: est.udp.as_ref().map(|u| u.server.to_string()),
        state: String::new(),
    };
    let mac = probe_mac(&est);
    let mut tunnel = spawn_tunnel(est, random_seed());
    report.frames = exchange_frames(&mut tunnel, mac, frame_wait).await;
    let deadline = Instant::now() + udp_wait;
    while report.udp_acceleration.granted
        && tunnel.udp_mode() != UdpMode::Active
        && Instant::now() < deadline
        && !tunnel.is_finished()
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    report.udp_acceleration.state = tunnel.udp_mode().as_str().to_owned();
    let (result, _stats) = tunnel.close().await;
    if let Err(e) = result {
        report.frames.note = Some(format!("tunnel ended early: {e}"));
    }
    Ok(Ok(report))
}

/// A locally administered MAC in SoftEther's 5E: range, derived from the session so it is stable
/// for one probe but never collides with a real client's.
fn probe_mac(est: &Established) -> [u8; 6] {
    let d = ring::digest::digest(&ring::digest::SHA256, est.welcome.session_name.as_bytes());
    let h = d.as_ref();
    [0x5e, h[0], h[1], h[2], h[3], h[4]]
}

fn base_report(args: &ServerArgs, est: &Established, login_ms: u128) -> ProbeReport {
    let w = &est.welcome;
    ProbeReport {
        ok: true,
        server: format!("{}:{}", args.host, args.port),
        server_address: est.server_addr.to_string(),
        redirected_to: est.redirected_to.map(|a| a.to_string()),
        server_product: est.hello.product.clone(),
        server_version: est.hello.version,
        server_build: est.hello.build,
        tls_version: est.tls_version.clone(),
        cipher_suite: est.cipher_suite.clone(),
        server_cert_sha256: cert_sha256_hex(&est.server_cert_der),
        hub: args.hub.clone(),
        user: args.user.clone(),
        auth: args.auth_name().to_string(),
        session_name: w.session_name.clone(),
        connection_name: w.connection_name.clone(),
        max_connection: w.max_connection,
        timeout_ms: w.timeout.as_millis(),
        use_encrypt: w.use_encrypt,
        use_compress: w.use_compress,
        half_connection: w.half_connection,
        qos: w.qos,
        vlan_id: w.vlan_id,
        policy: w.policy.items.iter().cloned().collect(),
        message: w.message.clone(),
        login_ms,
        frames: FrameReport::default(),
        udp_acceleration: UdpReport::default(),
    }
}

/// The human-readable report.
pub fn render_text(r: &ProbeReport) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<20} {v}\n"));
    line("server", format!("{} ({})", r.server, r.server_address));
    if let Some(to) = &r.redirected_to {
        line("redirected to", to.clone());
    }
    line(
        "server product",
        format!(
            "{} (version {}.{:02}, build {})",
            r.server_product,
            r.server_version / 100,
            r.server_version % 100,
            r.server_build
        ),
    );
    line("tls", format!("{} {}", r.tls_version, r.cipher_suite));
    line("server cert sha256", r.server_cert_sha256.clone());
    line(
        "login",
        format!(
            "user {} on hub {} ({}), {} ms",
            r.user, r.hub, r.auth, r.login_ms
        ),
    );
    line(
        "session",
        format!("{} / {}", r.session_name, r.connection_name),
    );
    line(
        "options",
        format!(
            "max_connection={} timeout={}ms encrypt={} compress={} half_connection={} qos={} vlan={}",
            r.max_connection, r.timeout_ms, r.use_encrypt, r.use_compress, r.half_connection, r.qos, r.vlan_id
        ),
    );
    let highlights: Vec<String> = POLICY_HIGHLIGHTS
        .iter()
        .filter_map(|name| r.policy.get(*name).map(|v| format!("{name}={v}")))
        .collect();
    line("policy", highlights.join(" "));
    if !r.message.is_empty() {
        line("hub message", r.message.replace('\n', " / "));
    }
    for l in r.frames.render_lines() {
        line("frames", l);
    }
    let u = &r.udp_acceleration;
    line(
        "udp acceleration",
        match (u.offered, u.granted) {
            (false, _) => "off (--udp-acceleration off)".to_owned(),
            (true, false) => "not granted by the server".to_owned(),
            (true, true) => format!(
                "{} (v{} {}, server {})",
                u.state,
                u.version.unwrap_or(1),
                u.cipher.as_deref().unwrap_or("-"),
                u.server.as_deref().unwrap_or("-")
            ),
        },
    );
    out
}

/// The `probe` subcommand: the report (text or JSON) and its exit code.
pub async fn probe_command(
    server: &ServerArgs,
    json: bool,
    frame_wait: Duration,
    udp_wait: Duration,
) -> u8 {
    match run_probe(server, frame_wait, udp_wait).await {
        Ok(Ok(report)) => {
            if json {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
            } else {
                print!("{}", render_text(&report));
            }
            0
        }
        Ok(Err(err)) => {
            let failure = ProbeFailure::from_session_error(&err);
            if json {
                println!("{}", serde_json::to_string(&failure).unwrap_or_default());
            }
            eprintln!("probe failed: {err}");
            ProbeFailure::exit_code(&err) as u8
        }
        Err(err) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "error": format!("{err:#}")})
                );
            }
            eprintln!("probe failed: {err:#}");
            1
        }
    }
}
