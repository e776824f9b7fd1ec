//! Certificates for the lab, made with the `openssl` command line tool.

use std::fs;
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
