//! Certificates for the lab, made with the `openssl` command line tool.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::command::run_argv;

/// A self-signed RSA 2048 client certificate and its private key, in PEM and DER.
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// X.509 certificate, PEM.
    pub cert_pem: PathBuf,
    /// X.509 certificate, DER.
    pub cert_der: PathBuf,
    /// Private key as unencrypted PKCS#8 ("BEGIN PRIVATE KEY"), PEM.
    pub key_pkcs8_pem: PathBuf,
    /// Private key as unencrypted PKCS#8, DER.
    pub key_pkcs8_der: PathBuf,
}

impl ClientCert {
    /// Generates `<dir>/<name>.{crt.pem,crt.der,key.pem,key.der}` with subject `CN=<name>`.
    pub fn generate(dir: &Path, name: &str) -> Result<Self> {
        fs::create_dir_all(dir)?;
        let p = |ext: &str| dir.join(format!("{name}.{ext}"));
        let c = ClientCert {
            cert_pem: p("crt.pem"),
            cert_der: p("crt.der"),
            key_pkcs8_pem: p("key.pem"),
            key_pkcs8_der: p("key.der"),
        };
        let s = |p: &PathBuf| p.to_string_lossy().into_owned();
        let subj = format!("/CN={name}");
        run_argv(&[
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-sha256",
            "-days",
            "3650",
            "-subj",
            &subj,
            "-keyout",
            &s(&c.key_pkcs8_pem),
            "-out",
            &s(&c.cert_pem),
        ])
        .with_context(|| format!("generating client certificate for {name}"))?;
        run_argv(&[
            "openssl",
            "x509",
            "-in",
            &s(&c.cert_pem),
            "-outform",
            "DER",
            "-out",
            &s(&c.cert_der),
        ])?;
        run_argv(&[
            "openssl",
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            &s(&c.key_pkcs8_pem),
            "-outform",
            "DER",
            "-out",
            &s(&c.key_pkcs8_der),
        ])?;
        Ok(c)
    }

    /// Paths as JSON (for `softether-lab up --json`).
    pub fn to_json(&self) -> Value {
        json!({
            "cert_pem": self.cert_pem, "cert_der": self.cert_der,
            "key_pkcs8_pem": self.key_pkcs8_pem, "key_pkcs8_der": self.key_pkcs8_der,
        })
    }
}

/// A throw-away certificate authority and a server certificate it issued, for tests of CA-based server
/// verification (the server's default self-signed certificate is CA:TRUE without subjectAltName, which
/// webpki-style validation rejects).
#[derive(Debug, Clone)]
pub struct LabCa {
    /// CA certificate, PEM (what a client is given as its trust anchor).
    pub ca_pem: PathBuf,
    /// Server certificate issued by the CA (subjectAltName: the server IP and [`LabCa::server_name`]), PEM.
    pub server_cert_pem: PathBuf,
    /// The server certificate's private key, PKCS#8 PEM.
    pub server_key_pem: PathBuf,
    /// DNS name in the server certificate (also its CN).
    pub server_name: String,
}

impl LabCa {
    /// Generates the CA and a server certificate for `server_ip` / `server_name` under `dir`.
    pub fn generate(dir: &Path, server_ip: Ipv4Addr, server_name: &str) -> Result<Self> {
        fs::create_dir_all(dir)?;
        let s = |p: &Path| p.to_string_lossy().into_owned();
        let ca_pem = dir.join("lab-ca.crt.pem");
        let ca_key = dir.join("lab-ca.key.pem");
        run_argv(&[
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-sha256",
            "-days",
            "3650",
            "-subj",
            "/CN=softether-lab test CA",
            "-keyout",
            &s(&ca_key),
            "-out",
            &s(&ca_pem),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ])
        .context("generating the lab CA")?;
        let server_cert_pem = dir.join("server.crt.pem");
        let server_key_pem = dir.join("server.key.pem");
        let csr = dir.join("server.csr");
        let ext = dir.join("server.ext");
        fs::write(
            &ext,
            format!(
                "subjectAltName=IP:{server_ip},DNS:{server_name}\nbasicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
            ),
        )?;
        let subj = format!("/CN={server_name}");
        run_argv(&[
            "openssl",
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &subj,
            "-keyout",
            &s(&server_key_pem),
            "-out",
            &s(&csr),
        ])?;
        run_argv(&[
            "openssl",
            "x509",
            "-req",
            "-in",
            &s(&csr),
            "-CA",
            &s(&ca_pem),
            "-CAkey",
            &s(&ca_key),
            "-CAcreateserial",
            "-days",
            "3650",
            "-sha256",
            "-extfile",
            &s(&ext),
            "-out",
            &s(&server_cert_pem),
        ])
        .context("issuing the lab server certificate")?;
        Ok(LabCa {
            ca_pem,
            server_cert_pem,
            server_key_pem,
            server_name: server_name.to_owned(),
        })
    }
}

/// SHA-256 of a PEM certificate's DER encoding, lowercase hex without separators.
pub fn sha256_fingerprint(cert_pem: &Path) -> Result<String> {
    let out = run_argv(&[
        "openssl",
        "x509",
        "-in",
        &cert_pem.to_string_lossy(),
        "-noout",
        "-fingerprint",
        "-sha256",
    ])?;
    parse_fingerprint(&out).with_context(|| format!("unexpected openssl fingerprint output: {out}"))
}

fn parse_fingerprint(out: &str) -> Option<String> {
    let (_, hex) = out.trim().split_once('=')?;
    let hex: String = hex
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openssl_fingerprint() {
        let out = "sha256 Fingerprint=26:84:B0:91:D5:B0:75:20:6B:0B:27:1F:DC:C9:ED:68:BF:07:F3:69:93:43:79:\
                   8B:F9:FE:E6:4B:2C:18:40:E7\n";
        assert_eq!(
            parse_fingerprint(out).unwrap(),
            "2684b091d5b075206b0b271fdcc9ed68bf07f3699343798bf9fee64b2c1840e7"
        );
        assert!(parse_fingerprint("garbage").is_none());
    }
}
