//! TLS client configuration for SoftEther servers.
//!
//! SoftEther's default server certificate is a self-signed `CA:TRUE` certificate without a
//! subjectAltName, which webpki path validation always rejects (`CaUsedAsEndEntity`). So besides
//! ordinary verification against the system roots or a user CA file, we offer pinning by the
//! SHA-256 of the DER certificate (the normal secure path for SoftEther) and an explicit
//! "insecure" mode. Every mode records the certificate the server presented, so `probe` can print
//! its fingerprint even when verification fails, and so redirected or additional connections can
//! insist on the byte-identical certificate (softether-protocol.md §1).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ring::digest;

use super::user_file::{self, FileKind, UserFileError};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How the server certificate is checked.
#[derive(Clone, PartialEq, Eq)]
pub enum TlsVerify {
    /// Verify the chain and host name against the system trust store.
    SystemRoots,
    /// Verify the chain and host name against the CA certificates in this PEM file.
    CaFile(PathBuf),
    /// Accept exactly the certificate whose DER SHA-256 is this value.
    PinSha256([u8; 32]),
    /// Accept exactly this DER certificate (used after a cluster redirect).
    ExactCert(Vec<u8>),
    /// Accept any certificate (still checks the handshake signature). Logged loudly.
    Insecure,
}

impl fmt::Debug for TlsVerify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsVerify::SystemRoots => write!(f, "SystemRoots"),
            TlsVerify::CaFile(p) => write!(f, "CaFile({})", p.display()),
            TlsVerify::PinSha256(pin) => write!(f, "PinSha256({})", hex::encode(pin)),
            TlsVerify::ExactCert(der) => write!(f, "ExactCert(sha256 {})", cert_sha256_hex(der)),
            TlsVerify::Insecure => write!(f, "Insecure"),
        }
    }
}

/// Errors building the TLS configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    #[error("unusable CA file: {0}")]
    CaFile(#[from] UserFileError),
    #[error("CA file {path} contains no usable PEM certificate")]
    CaFileEmpty { path: PathBuf },
    #[error("no system CA bundle found (looked at $SSL_CERT_FILE and {looked}); install ca-certificates or use --ca-file / --pin-sha256")]
    NoSystemRoots { looked: String },
    #[error("TLS configuration error: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot build the certificate verifier: {0}")]
    Verifier(String),
}

/// Parses a `--pin-sha256` value: 64 hex digits, optionally separated by `:`.
pub fn parse_pin(text: &str) -> Result<[u8; 32], String> {
    let cleaned: String = text
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect();
    let bytes = hex::decode(&cleaned).map_err(|e| format!("pin is not hex: {e}"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("pin must be 32 bytes (64 hex digits), got {}", b.len()))
}

/// SHA-256 of a DER certificate.
pub fn cert_sha256(der: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// SHA-256 of a DER certificate as lowercase hex (the format `--pin-sha256` accepts).
pub fn cert_sha256_hex(der: &[u8]) -> String {
    hex::encode(cert_sha256(der))
}

/// The certificate the server presented during the last handshake, shared with the caller.
#[derive(Clone, Default, Debug)]
pub struct PresentedCert(Arc<Mutex<Option<Vec<u8>>>>);

impl PresentedCert {
    pub fn get(&self) -> Option<Vec<u8>> {
        self.0.lock().map(|g| g.clone()).unwrap_or(None)
    }
    fn set(&self, der: &[u8]) {
        if let Ok(mut g) = self.0.lock() {
            *g = Some(der.to_vec());
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// [`client_config`] off the runtime threads (with the user-file deadline) when `verify`
/// reads a file (a CA file, the system bundle); inline otherwise.
pub async fn client_config_async(
    verify: &TlsVerify,
    presented: PresentedCert,
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let file = match verify {
        TlsVerify::CaFile(path) => path.clone(),
        TlsVerify::SystemRoots => PathBuf::from("the system CA bundle"),
        _ => return client_config(verify, presented),
    };
    let verify = verify.clone();
    user_file::off_runtime(&file, move || client_config(&verify, presented)).await
}

/// Builds a rustls client config for `verify`, recording the presented cert into `presented`.
pub fn client_config(
    verify: &TlsVerify,
    presented: PresentedCert,
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let provider = provider();
    let inner: Inner = match verify {
        TlsVerify::SystemRoots => Inner::WebPki(webpki_verifier(system_roots()?, &provider)?),
        TlsVerify::CaFile(path) => Inner::WebPki(webpki_verifier(ca_file_roots(path)?, &provider)?),
        TlsVerify::PinSha256(pin) => Inner::Pin(*pin),
        TlsVerify::ExactCert(der) => Inner::Pin(cert_sha256(der)),
        TlsVerify::Insecure => Inner::AcceptAny,
    };
    let verifier = Arc::new(RecordingVerifier {
        inner,
        presented,
        provider: provider.clone(),
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // A config is built per dial, so its session cache could never resume anything; rustls's
    // default one (256 entries) is allocated up front and lives as long as the connection:
    // measured as most of an idle CNI attachment's heap (README, "Memory").
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// The server name to put into the TLS handshake: a DNS name gets SNI, an IP literal does not.
pub fn server_name(host: &str) -> ServerName<'static> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return ServerName::IpAddress(ip.into());
    }
    ServerName::try_from(host.to_string())
        .unwrap_or_else(|_| ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into()))
}

fn webpki_verifier(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, TlsSetupError> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsSetupError::Verifier(e.to_string()))
}

const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

fn system_roots() -> Result<RootCertStore, TlsSetupError> {
    let env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    for path in env
        .iter()
        .map(PathBuf::as_path)
        .chain(SYSTEM_BUNDLES.iter().map(Path::new))
    {
        if path.is_file() {
            return ca_file_roots(path);
        }
    }
    Err(TlsSetupError::NoSystemRoots {
        looked: SYSTEM_BUNDLES.join(", "),
    })
}

fn ca_file_roots(path: &Path) -> Result<RootCertStore, TlsSetupError> {
    let data = user_file::read(path, FileKind::Certificates).map_err(TlsSetupError::CaFile)?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&data).flatten() {
        // A bundle may contain certificates webpki cannot parse; skip those, keep the rest.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(TlsSetupError::CaFileEmpty {
            path: path.to_path_buf(),
        });
    }
    Ok(roots)
}

#[derive(Debug)]
enum Inner {
    WebPki(Arc<WebPkiServerVerifier>),
    Pin([u8; 32]),
    AcceptAny,
}

/// Wraps the chosen policy, remembering the end-entity certificate first so that a failed
/// verification can still report the fingerprint to pin.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Inner,
    presented: PresentedCert,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.presented.set(end_entity.as_ref());
        match &self.inner {
            Inner::WebPki(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            Inner::Pin(pin) => {
                if cert_sha256(end_entity.as_ref()) == *pin {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(rustls::Error::InvalidCertificate(
                        rustls::CertificateError::ApplicationVerificationFailure,
                    ))
                }
            }
            Inner::AcceptAny => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_parsing_accepts_colons_and_rejects_wrong_length() {
        let hex64 = "00".repeat(32);
        assert_eq!(parse_pin(&hex64).unwrap(), [0u8; 32]);
        let colons = vec!["ab"; 32].join(":");
        assert_eq!(parse_pin(&colons).unwrap(), [0xab; 32]);
        assert!(parse_pin("abcd").unwrap_err().contains("32 bytes"));
        assert!(parse_pin("zz").unwrap_err().contains("hex"));
    }

    #[test]
    fn sha256_of_empty_cert_matches_known_digest() {
        assert_eq!(
            cert_sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn debug_shows_pin_not_secrets() {
        let v = TlsVerify::PinSha256([1; 32]);
        assert!(format!("{v:?}").contains("0101"));
    }

    #[test]
    fn server_name_for_ip_and_dns() {
        assert!(matches!(
            server_name("198.18.0.1"),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("vpn.example.org"),
            ServerName::DnsName(_)
        ));
    }
}
