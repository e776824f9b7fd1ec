//! Turning user input into a SoftEther credential and a stable client identity.
//!
//! Passwords come only from a file or the `SOFTETHER_PASSWORD` environment variable, never from
//! argv. For hashed-password auth the password is hashed immediately and the plaintext dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ring::digest;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use softether_proto::handshake::{ClientInfo, Credential, RsaPrivateKey};
use softether_proto::password::hash_password;

use super::user_file::{self, FileKind, UserFileError};

/// Environment variable that may carry the password.
pub const PASSWORD_ENV: &str = "SOFTETHER_PASSWORD";

/// How the user asked to authenticate.
#[derive(Debug, Clone, Default)]
pub struct AuthInput {
    pub password_file: Option<PathBuf>,
    pub plain_password: bool,
    pub anonymous: bool,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    #[error("unusable password file: {0}")]
    PasswordFile(#[source] UserFileError),
    #[error("password file {path} is not UTF-8 text")]
    PasswordNotUtf8 { path: PathBuf },
    #[error(transparent)]
    File(#[from] UserFileError),
    #[error("no credential: give --password-file, set {PASSWORD_ENV}, use --cert-file/--key-file, or --anonymous")]
    Missing,
    #[error("--cert-file and --key-file must be given together")]
    CertWithoutKey,
    #[error("cannot read certificate {path}: {detail}")]
    Cert { path: PathBuf, detail: String },
    #[error(
        "cannot use private key {path}: {detail} (an RSA key in PKCS#8 or PKCS#1 PEM is required)"
    )]
    Key { path: PathBuf, detail: String },
}

/// Reads a password file: the first line, without its line ending. Only a regular file of
/// at most 4 KiB is read (see [`user_file`]); this blocks, use [`credential_async`] on a
/// runtime thread.
pub fn read_password_file(path: &Path) -> Result<String, CredentialError> {
    let bytes = user_file::read(path, FileKind::Password).map_err(CredentialError::PasswordFile)?;
    let text = String::from_utf8(bytes).map_err(|_| CredentialError::PasswordNotUtf8 {
        path: path.to_path_buf(),
    })?;
    Ok(text.lines().next().unwrap_or("").to_string())
}

/// [`credential`] with its file reads on the blocking pool, bounded by
/// [`user_file::READ_DEADLINE`]: what the daemon calls, so a hostile `passwordFile` cannot
/// stall its runtime.
pub async fn credential_async(
    username: &str,
    input: &AuthInput,
) -> Result<Credential, CredentialError> {
    let named = input
        .password_file
        .clone()
        .or_else(|| input.cert_file.clone())
        .unwrap_or_default();
    let (username, input) = (username.to_string(), input.clone());
    user_file::off_runtime(&named, move || credential(&username, &input)).await
}

/// Builds the credential for `username` from the user's choices.
pub fn credential(username: &str, input: &AuthInput) -> Result<Credential, CredentialError> {
    if input.anonymous {
        return Ok(Credential::Anonymous);
    }
    match (&input.cert_file, &input.key_file) {
        (Some(cert), Some(key)) => return load_certificate(cert, key),
        (None, None) => {}
        _ => return Err(CredentialError::CertWithoutKey),
    }
    let password = match &input.password_file {
        Some(path) => read_password_file(path)?,
        None => std::env::var(PASSWORD_ENV).map_err(|_| CredentialError::Missing)?,
    };
    Ok(if input.plain_password {
        Credential::PlainPassword(password)
    } else {
        Credential::HashedPassword(hash_password(username, &password))
    })
}

fn load_certificate(cert: &Path, key: &Path) -> Result<Credential, CredentialError> {
    let cert_err = |detail: String| CredentialError::Cert {
        path: cert.to_path_buf(),
        detail,
    };
    let cert_pem = user_file::read(cert, FileKind::Certificates)?;
    let cert_der = CertificateDer::from_pem_slice(&cert_pem)
        .map_err(|e| cert_err(e.to_string()))?
        .as_ref()
        .to_vec();
    let key_err = |detail: String| CredentialError::Key {
        path: key.to_path_buf(),
        detail,
    };
    let key_pem = user_file::read(key, FileKind::PrivateKey)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| key_err(e.to_string()))?;
    let der = match &key_der {
        PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der(),
        PrivateKeyDer::Pkcs1(k) => k.secret_pkcs1_der(),
        _ => return Err(key_err("not an RSA key".into())),
    };
    let pair = RsaPrivateKey::from_der(der).map_err(|e| key_err(e.to_string()))?;
    Ok(Credential::Certificate {
        cert_der,
        key: Arc::new(pair),
    })
}

/// A stable client identity: the same host, user and hub always present the same ids, so the
/// server's MultiLogins accounting and MAC/IP tables recognise a reconnecting client.
pub fn client_info(username: &str, hub: &str) -> ClientInfo {
    let machine = std::fs::read_to_string("/etc/machine-id")
        .or_else(|_| std::fs::read_to_string("/var/lib/dbus/machine-id"))
        .unwrap_or_default();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let seed = format!(
        "{}\0{}\0{}\0{}",
        machine.trim(),
        hostname,
        username,
        hub.to_ascii_uppercase()
    );
    let id = |label: &str| digest::digest(&digest::SHA256, format!("{label}\0{seed}").as_bytes());
    let mut info = ClientInfo {
        hostname,
        ..ClientInfo::default()
    };
    info.unique_id
        .copy_from_slice(&id("unique_id").as_ref()[..20]);
    info.node_unique_id
        .copy_from_slice(&id("UniqueId").as_ref()[..16]);
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_file_first_line_without_newline() {
        let dir = std::env::temp_dir().join(format!("se-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pw");
        std::fs::write(&f, "s3cret\nignored\n").unwrap();
        assert_eq!(read_password_file(&f).unwrap(), "s3cret");
        let input = AuthInput {
            password_file: Some(f.clone()),
            ..AuthInput::default()
        };
        match credential("alice", &input).unwrap() {
            Credential::HashedPassword(h) => assert_eq!(h, hash_password("alice", "s3cret")),
            other => panic!("unexpected {other:?}"),
        }
        let plain = AuthInput {
            plain_password: true,
            ..input
        };
        assert!(
            matches!(credential("alice", &plain).unwrap(), Credential::PlainPassword(p) if p == "s3cret")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_file_names_the_path() {
        let input = AuthInput {
            password_file: Some(PathBuf::from("/nonexistent/pw")),
            ..AuthInput::default()
        };
        let err = credential("alice", &input).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/pw"), "{err}");
    }

    #[test]
    fn cert_needs_key() {
        let input = AuthInput {
            cert_file: Some(PathBuf::from("/x")),
            ..AuthInput::default()
        };
        assert!(matches!(
            credential("c", &input),
            Err(CredentialError::CertWithoutKey)
        ));
    }

    #[test]
    fn identity_is_stable_and_user_specific() {
        let a = client_info("alice", "HUB");
        let b = client_info("alice", "hub");
        let c = client_info("bob", "HUB");
        assert_eq!(a.unique_id, b.unique_id);
        assert_ne!(a.unique_id, c.unique_id);
        assert_ne!(a.node_unique_id, [0; 16]);
    }
}
