//! The proxy URL both sides read: the plugin checks the `proxy` key of a network config with
//! it, the sidecar connects with it (`softether_sidecar::transport::proxy`).
//!
//! `http://[user@]host:port`, `socks5://[user@]host:port`, `socks4://[user@]host:port`; IPv6
//! hosts in brackets. The password is never part of the URL (it would land in argv, configs
//! and logs): it comes from a file or the environment, and a URL with `user:password@` is
//! refused.

use std::fmt;
use std::str::FromStr;

/// Which proxy protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    /// HTTP `CONNECT`.
    Http,
    /// SOCKS5; the proxy resolves host names.
    Socks5,
    /// SOCKS4, or SOCKS4a for host names.
    Socks4,
}

/// A parsed proxy URL (no password).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyUrl {
    /// Protocol.
    pub kind: ProxyKind,
    /// Proxy host name or address (IPv6 without brackets).
    pub host: String,
    /// Proxy port.
    pub port: u16,
    /// User name for the proxy, if it wants one.
    pub user: Option<String>,
}

impl FromStr for ProxyUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<ProxyUrl, String> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            format!("proxy URL {url:?} needs a scheme: http://, socks5:// or socks4://")
        })?;
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "http" => ProxyKind::Http,
            "socks5" | "socks5h" => ProxyKind::Socks5,
            "socks4" | "socks4a" => ProxyKind::Socks4,
            other => {
                return Err(format!(
                    "proxy scheme {other:?} is not http, socks5 or socks4"
                ))
            }
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((u, _)) if u.contains(':') => {
                return Err("the proxy URL must not carry a password (it would show in argv, \
                            configs and logs); use a proxy password file or SOFTETHER_PROXY_PASSWORD"
                    .into())
            }
            Some(("", _)) => return Err("empty proxy user name before '@'".into()),
            Some((u, hp)) => (Some(u.to_string()), hp),
            None => (None, rest),
        };
        let (host, port) = split_host_port(hostport)
            .ok_or_else(|| format!("proxy address {hostport:?} is not host:port"))?;
        Ok(ProxyUrl {
            kind,
            host,
            port,
            user,
        })
    }
}

impl ProxyUrl {
    /// Whether a password can go with this URL; `Err` says why not.
    pub fn check_password_allowed(&self) -> Result<(), String> {
        match (self.kind, &self.user) {
            (ProxyKind::Socks4, _) => {
                Err("SOCKS4 has no passwords; drop the proxy password or use socks5://".into())
            }
            (_, None) => Err(
                "a proxy password needs a user name in the URL (scheme://user@host:port)".into(),
            ),
            _ => Ok(()),
        }
    }
}

fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = match s.strip_prefix('[') {
        Some(rest) => rest.split_once("]:")?,
        None => s.rsplit_once(':')?,
    };
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    (!host.is_empty() && !host.contains('/')).then(|| (host.to_string(), port))
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.kind {
            ProxyKind::Http => "http",
            ProxyKind::Socks5 => "socks5",
            ProxyKind::Socks4 => "socks4",
        };
        write!(f, "{scheme}://")?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_print_back() {
        let p: ProxyUrl = "http://alice@proxy.example:3128".parse().unwrap();
        assert_eq!(p.kind, ProxyKind::Http);
        assert_eq!((p.host.as_str(), p.port), ("proxy.example", 3128));
        assert_eq!(p.user.as_deref(), Some("alice"));
        assert_eq!(p.to_string(), "http://alice@proxy.example:3128");
        assert!(p.check_password_allowed().is_ok());
        let v6: ProxyUrl = "socks5://[fd00::1]:1080/".parse().unwrap();
        assert_eq!(
            (v6.kind, v6.host.as_str(), v6.port),
            (ProxyKind::Socks5, "fd00::1", 1080)
        );
        assert_eq!(v6.to_string(), "socks5://[fd00::1]:1080");
        let s4: ProxyUrl = "SOCKS4://u@h:1".parse().unwrap();
        assert_eq!(s4.kind, ProxyKind::Socks4);
        assert!(s4
            .check_password_allowed()
            .unwrap_err()
            .contains("SOCKS4 has no passwords"));
        let anon: ProxyUrl = "http://h:1".parse().unwrap();
        assert!(anon
            .check_password_allowed()
            .unwrap_err()
            .contains("needs a user name"));
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason_and_no_secret() {
        for (url, needle) in [
            ("http://alice:pw@h:1", "must not carry a password"),
            ("ftp://h:1", "not http"),
            ("h:1", "scheme"),
            ("http://h", "host:port"),
            ("http://h:0", "host:port"),
            ("http://h:99999", "host:port"),
            ("http://h:1/path", "host:port"),
            ("http://@h:1", "empty proxy user"),
        ] {
            let err = url.parse::<ProxyUrl>().unwrap_err();
            assert!(err.contains(needle), "{url}: {err}");
            assert!(!err.contains("pw@"), "{err}");
        }
    }
}
