//! Command-line flags shared by every subcommand that talks to a SoftEther server.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::transport::connection::SessionConfig;
use crate::transport::credentials::{self, AuthInput};
use crate::transport::proxy::Proxy;
use crate::transport::random_seed;
use crate::transport::tls::{parse_pin, TlsVerify};

/// The environment variable with the proxy password when there is no `--proxy-password-file`.
pub const PROXY_PASSWORD_ENV: &str = "SOFTETHER_PROXY_PASSWORD";

/// Connection and authentication flags. The password is never a flag: it comes from
/// `--password-file` or the `SOFTETHER_PASSWORD` environment variable.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// SoftEther server host name or IP address.
    #[arg(long)]
    pub host: String,
    /// Server TCP port.
    #[arg(long, default_value_t = 443)]
    pub port: u16,
    /// Virtual hub name.
    #[arg(long, default_value = "DEFAULT")]
    pub hub: String,
    /// User name.
    #[arg(long)]
    pub user: String,
    /// File whose first line is the password (else the SOFTETHER_PASSWORD environment variable).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Send the password itself (auth type 2, for RADIUS / NT domain users) instead of the SHA-0 challenge response.
    #[arg(long)]
    pub plain_password: bool,
    /// Log in anonymously (the hub user must have anonymous auth).
    #[arg(long, conflicts_with_all = ["password_file", "plain_password", "cert_file"])]
    pub anonymous: bool,
    /// Client certificate (PEM) for certificate authentication; needs --key-file.
    #[arg(long, value_name = "FILE", requires = "key_file")]
    pub cert_file: Option<PathBuf>,
    /// RSA private key (PEM, PKCS#8 or PKCS#1) for --cert-file.
    #[arg(long, value_name = "FILE", requires = "cert_file")]
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate (insecure; logged as a warning).
    #[arg(long, conflicts_with_all = ["pin_sha256", "ca_file"])]
    pub insecure: bool,
    /// Accept only the server certificate with this SHA-256 (64 hex digits, ':' allowed). `probe` prints it.
    #[arg(long, value_name = "HEX", conflicts_with = "ca_file")]
    pub pin_sha256: Option<String>,
    /// Verify the server certificate against the CA certificates in this PEM file (default: system roots).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Reach the server through this proxy: `http://[user@]host:port` (HTTP CONNECT, Basic
    /// auth), `socks5://[user@]host:port` or `socks4://[user@]host:port`. Never put the password
    /// in the URL.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// File whose first line is the proxy password (else the SOFTETHER_PROXY_PASSWORD environment variable).
    #[arg(long, value_name = "FILE", requires = "proxy")]
    pub proxy_password_file: Option<PathBuf>,
    /// Timeout for TCP connect + TLS handshake, and again for the SoftEther login.
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// UDP acceleration: `auto` offers it and uses UDP whenever the server grants it and the
    /// path works (TCP otherwise, without losing the session); `off` keeps every frame on TCP.
    #[arg(long, value_name = "MODE", value_enum, default_value_t = UdpAcceleration::Auto)]
    pub udp_acceleration: UdpAcceleration,
    /// Ask the server for data compression (zlib per frame, both directions; SoftEther's
    /// use_compress). Saves bandwidth on slow links at the cost of CPU.
    #[arg(long)]
    pub compress: bool,
}

/// `--udp-acceleration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UdpAcceleration {
    Auto,
    Off,
    /// Offer only version 1 (RC4 + SHA-1): for interoperability tests, not for users.
    #[value(hide = true)]
    V1,
}

impl UdpAcceleration {
    /// The highest version offered in the login; `None` = not offered.
    pub fn max_version(self) -> Option<u32> {
        match self {
            UdpAcceleration::Auto => Some(2),
            UdpAcceleration::V1 => Some(1),
            UdpAcceleration::Off => None,
        }
    }
}

impl ServerArgs {
    pub fn tls_verify(&self) -> anyhow::Result<TlsVerify> {
        Ok(if self.insecure {
            TlsVerify::Insecure
        } else if let Some(pin) = &self.pin_sha256 {
            TlsVerify::PinSha256(parse_pin(pin).map_err(|e| anyhow::anyhow!("--pin-sha256: {e}"))?)
        } else if let Some(ca) = &self.ca_file {
            TlsVerify::CaFile(ca.clone())
        } else {
            TlsVerify::SystemRoots
        })
    }

    pub fn auth_input(&self) -> AuthInput {
        AuthInput {
            password_file: self.password_file.clone(),
            plain_password: self.plain_password,
            anonymous: self.anonymous,
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
        }
    }

    /// Human name of the auth method, for reports.
    pub fn auth_name(&self) -> &'static str {
        if self.anonymous {
            "anonymous"
        } else if self.cert_file.is_some() {
            "certificate"
        } else if self.plain_password {
            "plain-password"
        } else {
            "password"
        }
    }

    /// The `--proxy` flags: the URL with the password from `--proxy-password-file` or
    /// `SOFTETHER_PROXY_PASSWORD`.
    pub fn proxy(&self) -> anyhow::Result<Option<Proxy>> {
        let Some(url) = &self.proxy else {
            return Ok(None);
        };
        let password = match &self.proxy_password_file {
            Some(f) => Some(
                credentials::read_password_file(f)
                    .map_err(|e| anyhow::anyhow!("--proxy-password-file: {e}"))?,
            ),
            None => std::env::var(PROXY_PASSWORD_ENV)
                .ok()
                .filter(|p| !p.is_empty()),
        };
        Proxy::parse(url, password)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("--proxy: {e}"))
    }

    pub fn session_config(&self, max_connection: u32) -> anyhow::Result<SessionConfig> {
        let credential = credentials::credential(&self.user, &self.auth_input())?;
        let proxy = self.proxy()?;
        Ok(SessionConfig {
            host: self.host.clone(),
            port: self.port,
            hub: self.hub.clone(),
            username: self.user.clone(),
            credential,
            tls: self.tls_verify()?,
            max_connection,
            connect_timeout: self.connect_timeout,
            handshake_timeout: self.connect_timeout,
            info: credentials::client_info(&self.user, &self.hub),
            seed: random_seed(),
            proxy,
            udp_acceleration: self.udp_acceleration.max_version(),
            compress: self.compress,
            half_connection: false,
        })
    }
}
