//! The `CNI_*` environment: which command, for which container, and `CNI_ARGS`.
//!
//! Validation follows Go `skel` (`cni.md` §2.2) so runtimes see the same
//! code-4 errors they would from the reference plugins.

use std::fmt;

use softether_control::state_dir::{self, KeyError, MAX_CONTAINER_ID_LEN};

use super::error::CniError;

/// The CNI verb in `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Gc,
    Status,
}

impl Command {
    fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            _ => return None,
        })
    }

    /// Variables skel requires besides `CNI_COMMAND`.
    fn required_vars(self) -> &'static [&'static str] {
        match self {
            Command::Add | Command::Check => {
                &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]
            }
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
            Command::Gc | Command::Status => &["CNI_PATH"],
            Command::Version => &[],
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Gc => "GC",
            Command::Status => "STATUS",
        })
    }
}

/// The validated environment of one invocation. Fields a command does not
/// need are `None` (VERSION ignores everything but `CNI_COMMAND`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub command: Command,
    pub container_id: Option<String>,
    /// `None` on DEL when the runtime no longer has a netns.
    pub netns: Option<String>,
    pub ifname: Option<String>,
    /// Raw `CNI_ARGS`; parse with [`CniArgs::parse`] when the command needs it.
    pub args: String,
    pub path: Vec<String>,
    /// `CNI_NETNS_OVERRIDE=1`: skip the "netns is the plugin's own" check (skel).
    pub netns_override: bool,
}

impl Env {
    /// Reads the process environment.
    pub fn from_process() -> Result<Env, CniError> {
        Env::from_lookup(|k| std::env::var(k).ok())
    }

    /// Builds the environment from a lookup function (tests pass a map).
    /// Empty values count as unset, as in skel.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let get = |k: &str| lookup(k).filter(|v| !v.is_empty());
        let raw_command = get("CNI_COMMAND").ok_or_else(|| {
            CniError::invalid_env(
                "CNI_COMMAND is not set",
                "expected one of ADD, DEL, CHECK, VERSION, GC, STATUS",
            )
        })?;
        let command = Command::parse(&raw_command).ok_or_else(|| {
            CniError::invalid_env(
                format!("CNI_COMMAND {raw_command:?} is not a CNI command"),
                "expected one of ADD, DEL, CHECK, VERSION, GC, STATUS",
            )
        })?;
        if command == Command::Version {
            // Runtimes call VERSION with placeholder values (Podman: CNI_NETNS=dummy).
            return Ok(Env {
                command,
                container_id: None,
                netns: None,
                ifname: None,
                args: String::new(),
                path: Vec::new(),
                netns_override: false,
            });
        }
        let missing: Vec<&str> = command
            .required_vars()
            .iter()
            .copied()
            .filter(|k| get(k).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(CniError::invalid_env(
                format!(
                    "required environment variables missing for {command}: {}",
                    missing.join(", ")
                ),
                "",
            ));
        }
        let per_container = matches!(command, Command::Add | Command::Del | Command::Check);
        let container_id = if per_container {
            get("CNI_CONTAINERID")
        } else {
            None
        };
        if let Some(id) = &container_id {
            match validate_container_id(id) {
                // Nothing can exist for an id ADD refuses, so DEL must still succeed; it
                // checks again and says so (`cmd::del`).
                Err(_) if command == Command::Del && container_id_only_too_long(id) => {}
                checked => checked?,
            }
        }
        let ifname = if per_container {
            get("CNI_IFNAME")
        } else {
            None
        };
        if let Some(name) = &ifname {
            validate_ifname(name)?;
        }
        Ok(Env {
            command,
            container_id,
            netns: if per_container {
                get("CNI_NETNS")
            } else {
                None
            },
            ifname,
            args: get("CNI_ARGS").unwrap_or_default(),
            path: get("CNI_PATH")
                .unwrap_or_default()
                .split(':')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            netns_override: matches!(get("CNI_NETNS_OVERRIDE").as_deref(), Some("1" | "true")),
        })
    }
}

impl Env {
    /// `CNI_CONTAINERID`, which [`Env::from_lookup`] guarantees for ADD, DEL and CHECK.
    pub fn required_container_id(&self) -> Result<&str, CniError> {
        required(&self.container_id, "CNI_CONTAINERID")
    }

    /// `CNI_IFNAME`, guaranteed for ADD, DEL and CHECK.
    pub fn required_ifname(&self) -> Result<&str, CniError> {
        required(&self.ifname, "CNI_IFNAME")
    }

    /// `CNI_NETNS`, guaranteed for ADD and CHECK (DEL may run without one).
    pub fn required_netns(&self) -> Result<&str, CniError> {
        required(&self.netns, "CNI_NETNS")
    }
}

fn required<'a>(value: &'a Option<String>, var: &str) -> Result<&'a str, CniError> {
    value
        .as_deref()
        .ok_or_else(|| CniError::invalid_env(format!("{var} is not set"), ""))
}

/// `CNI_CONTAINERID`: the state directory's rule (`softether_control::state_dir`), shared
/// with the sidecar: `[A-Za-z0-9][A-Za-z0-9_.-]*` as the spec says, and at most
/// [`MAX_CONTAINER_ID_LEN`] bytes so the attachment's record can be written.
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    state_dir::validate_container_id(id).map_err(|e| {
        let shown: String = id.chars().take(MAX_CONTAINER_ID_LEN).collect();
        let elided = if shown.len() < id.len() { "…" } else { "" };
        CniError::invalid_env(
            format!("CNI_CONTAINERID {shown:?}{elided} is invalid"),
            match e {
                KeyError::ContainerIdTooLong { .. } => e.to_string(),
                _ => {
                    "must start with a letter or digit, then only letters, digits, '_', '.' or '-'"
                        .to_owned()
                }
            },
        )
    })
}

/// Whether `id` follows the spec's pattern but is longer than this plugin accepts.
pub fn container_id_only_too_long(id: &str) -> bool {
    matches!(
        state_dir::validate_container_id(id),
        Err(KeyError::ContainerIdTooLong { .. })
    )
}

/// `CNI_IFNAME`: what the kernel accepts as a link name (skel `ValidateInterfaceName`); the
/// state directory's rule, shared with the sidecar.
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    state_dir::validate_ifname(name).map_err(|e| {
        let why = match e {
            KeyError::Ifname { why, .. } => why,
            _ => "",
        };
        CniError::invalid_env(format!("CNI_IFNAME {name:?} is invalid: {why}"), "")
    })
}

/// Our per-pod `CNI_ARGS` keys. Podman forwards its own `CNI_ARGS` environment
/// (`CNI_ARGS="SOFTETHER_USER=alice" podman run …`); these override the
/// network config but are themselves overridden by `args.cni`.
pub const ARG_USER: &str = "SOFTETHER_USER";
pub const ARG_PASSWORD_FILE: &str = "SOFTETHER_PASSWORD_FILE";
pub const ARG_HUB: &str = "SOFTETHER_HUB";
/// Refused: passwords never travel in `CNI_ARGS` (it shows up in process lists and runtime logs).
pub const ARG_PASSWORD: &str = "SOFTETHER_PASSWORD";

/// Keys runtimes send that we read or knowingly ignore.
const KNOWN_FOREIGN_KEYS: &[&str] = &[
    "IgnoreUnknown",
    "MAC",
    "IP",
    "K8S_POD_NAMESPACE",
    "K8S_POD_NAME",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
];

/// Parsed `CNI_ARGS` (`K=V;K2=V2`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub user: Option<String>,
    pub password_file: Option<String>,
    pub hub: Option<String>,
    /// `MAC=` as sent by Podman for `--mac-address`.
    pub mac: Option<String>,
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
}

impl CniArgs {
    /// Like libcni `LoadArgs`: unknown keys are an error unless
    /// `IgnoreUnknown=1|true` is present (runtimes always send it).
    pub fn parse(raw: &str) -> Result<CniArgs, CniError> {
        let mut pairs = Vec::new();
        for item in raw.split(';').filter(|s| !s.is_empty()) {
            let (k, v) = item.split_once('=').ok_or_else(|| {
                CniError::invalid_env(
                    format!("CNI_ARGS item {item:?} is not KEY=VALUE"),
                    "CNI_ARGS must look like K1=V1;K2=V2",
                )
            })?;
            pairs.push((k, v));
        }
        let ignore_unknown = pairs.iter().any(|(k, v)| {
            *k == "IgnoreUnknown" && matches!(v.to_ascii_lowercase().as_str(), "1" | "true")
        });
        let mut args = CniArgs::default();
        for (k, v) in pairs {
            let value = Some(v.to_owned()).filter(|v| !v.is_empty());
            match k {
                ARG_USER => args.user = value,
                ARG_PASSWORD_FILE => args.password_file = value,
                ARG_HUB => args.hub = value,
                ARG_PASSWORD => {
                    return Err(CniError::invalid_env(
                        format!("CNI_ARGS key {ARG_PASSWORD} is refused: inline passwords are not accepted"),
                        format!("write the password to a file on the node and pass {ARG_PASSWORD_FILE}=<path>"),
                    ))
                }
                "MAC" => args.mac = value,
                "K8S_POD_NAMESPACE" => args.pod_namespace = value,
                "K8S_POD_NAME" => args.pod_name = value,
                _ if KNOWN_FOREIGN_KEYS.contains(&k) || ignore_unknown => {}
                _ => {
                    return Err(CniError::invalid_env(
                        format!("CNI_ARGS key {k:?} is unknown"),
                        "add IgnoreUnknown=1 to CNI_ARGS to ignore keys this plugin does not use",
                    ))
                }
            }
        }
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::error::ErrorCode;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> Result<Env, CniError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::from_lookup(|k| map.get(k).cloned())
    }

    const FULL: &[(&str, &str)] = &[
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/run/netns/x"),
        ("CNI_IFNAME", "vpn0"),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
    ];

    fn with_command(cmd: &'static str, skip: &str) -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<_> = FULL.iter().copied().filter(|(k, _)| *k != skip).collect();
        v.push(("CNI_COMMAND", cmd));
        v
    }

    #[test]
    fn add_with_everything_parses() {
        let env = env_of(&with_command("ADD", "")).unwrap();
        assert_eq!(env.command, Command::Add);
        assert_eq!(env.container_id.as_deref(), Some("abc123"));
        assert_eq!(env.netns.as_deref(), Some("/run/netns/x"));
        assert_eq!(env.ifname.as_deref(), Some("vpn0"));
        assert_eq!(env.path, vec!["/opt/cni/bin", "/usr/lib/cni"]);
    }

    #[test]
    fn each_missing_var_is_named_with_code_4() {
        for cmd in ["ADD", "CHECK"] {
            for (var, _) in FULL {
                let e = env_of(&with_command(cmd, var)).unwrap_err();
                assert_eq!(e.code(), ErrorCode::InvalidEnv);
                assert!(e.msg().contains(var), "{cmd} without {var}: {}", e.msg());
            }
        }
        for var in ["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"] {
            let e = env_of(&with_command("DEL", var)).unwrap_err();
            assert!(e.msg().contains(var), "DEL without {var}: {}", e.msg());
        }
        for cmd in ["GC", "STATUS"] {
            let e = env_of(&[("CNI_COMMAND", cmd)]).unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidEnv);
            assert!(e.msg().contains("CNI_PATH"));
        }
    }

    #[test]
    fn all_missing_vars_are_listed_together() {
        let e = env_of(&[("CNI_COMMAND", "ADD")]).unwrap_err();
        for var in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"] {
            assert!(e.msg().contains(var));
        }
    }

    #[test]
    fn missing_or_unknown_command_is_code_4() {
        let e = env_of(&[]).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidEnv);
        assert!(e.msg().contains("CNI_COMMAND"));
        let e = env_of(&[("CNI_COMMAND", "UPDATE")]).unwrap_err();
        assert!(e.msg().contains("UPDATE"));
    }

    #[test]
    fn del_without_netns_is_fine_and_empty_netns_is_none() {
        let env = env_of(&with_command("DEL", "CNI_NETNS")).unwrap();
        assert_eq!(env.netns, None);
        let mut v = with_command("DEL", "CNI_NETNS");
        v.push(("CNI_NETNS", ""));
        assert_eq!(env_of(&v).unwrap().netns, None);
    }

    #[test]
    fn gc_and_status_need_only_path() {
        for cmd in ["GC", "STATUS"] {
            let env = env_of(&[("CNI_COMMAND", cmd), ("CNI_PATH", "/x")]).unwrap();
            assert_eq!(env.container_id, None);
        }
    }

    #[test]
    fn version_ignores_garbage() {
        let env = env_of(&[
            ("CNI_COMMAND", "VERSION"),
            ("CNI_NETNS", "dummy"),
            ("CNI_IFNAME", "not a valid / name at all"),
            ("CNI_CONTAINERID", "!!"),
            ("CNI_ARGS", "garbage"),
        ])
        .unwrap();
        assert_eq!(env.command, Command::Version);
    }

    #[test]
    fn container_id_pattern() {
        for ok in ["a", "0abc", "abc_def.ghi-jkl", "Z9"] {
            validate_container_id(ok).unwrap();
        }
        for bad in ["-abc", "_a", ".a", "a b", "a/b", "a:b", "é"] {
            assert_eq!(
                validate_container_id(bad).unwrap_err().code(),
                ErrorCode::InvalidEnv,
                "{bad}"
            );
        }
        validate_container_id(&"a".repeat(MAX_CONTAINER_ID_LEN)).unwrap();
    }

    #[test]
    fn over_long_container_id_is_refused_before_anything_but_del() {
        let long: &'static str = Box::leak("a".repeat(300).into_boxed_str());
        for command in ["ADD", "CHECK"] {
            let mut v = with_command(command, "CNI_CONTAINERID");
            v.push(("CNI_CONTAINERID", long));
            let e = env_of(&v).unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidEnv);
            assert!(e.details().contains("longer than 128"), "{}", e.details());
            assert!(e.msg().len() < 200, "the id is elided: {}", e.msg());
        }
        // DEL: nothing can exist for it, so DEL gets through to say so.
        let mut v = with_command("DEL", "CNI_CONTAINERID");
        v.push(("CNI_CONTAINERID", long));
        assert_eq!(env_of(&v).unwrap().container_id.as_deref(), Some(long));
        // A DEL id that breaks the pattern is still refused.
        let mut v = with_command("DEL", "CNI_CONTAINERID");
        v.push(("CNI_CONTAINERID", "-bad"));
        assert!(env_of(&v).is_err());
    }

    #[test]
    fn interface_name_rules() {
        for ok in ["eth0", "vpn0", "a", "123456789012345", "x.y", "a-b_c"] {
            validate_ifname(ok).unwrap();
        }
        for bad in ["1234567890123456", ".", "..", "a/b", "a:b", "a b", "a\tb"] {
            let e = validate_ifname(bad).unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidEnv, "{bad}");
            assert!(e.msg().contains("CNI_IFNAME"));
        }
    }

    #[test]
    fn invalid_ifname_in_env_is_code_4() {
        let mut v = with_command("ADD", "CNI_IFNAME");
        v.push(("CNI_IFNAME", "way-too-long-ifname"));
        assert!(env_of(&v).unwrap_err().msg().contains("CNI_IFNAME"));
    }

    #[test]
    fn cni_args_known_keys() {
        let a = CniArgs::parse(
            "IgnoreUnknown=1;K8S_POD_NAME=web;SOFTETHER_USER=alice;SOFTETHER_PASSWORD_FILE=/etc/p;SOFTETHER_HUB=HUB1;MAC=02:00:00:00:00:01;X=y",
        )
        .unwrap();
        assert_eq!(a.user.as_deref(), Some("alice"));
        assert_eq!(a.password_file.as_deref(), Some("/etc/p"));
        assert_eq!(a.hub.as_deref(), Some("HUB1"));
        assert_eq!(a.mac.as_deref(), Some("02:00:00:00:00:01"));
        assert_eq!(a.pod_name.as_deref(), Some("web"));
        assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
    }

    #[test]
    fn cni_args_unknown_key_needs_ignore_unknown() {
        let e = CniArgs::parse("FOO=bar").unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidEnv);
        assert!(e.msg().contains("FOO"));
        CniArgs::parse("FOO=bar;IgnoreUnknown=true").unwrap();
        CniArgs::parse("K8S_POD_NAME=x;IP=10.0.0.2").unwrap();
    }

    #[test]
    fn cni_args_malformed_and_password_refused() {
        assert_eq!(
            CniArgs::parse("novalue").unwrap_err().code(),
            ErrorCode::InvalidEnv
        );
        let e = CniArgs::parse("IgnoreUnknown=1;SOFTETHER_PASSWORD=hunter2").unwrap_err();
        assert!(e.msg().contains("SOFTETHER_PASSWORD"));
        assert!(!e.msg().contains("hunter2") && !e.details().contains("hunter2"));
        assert!(e.details().contains("SOFTETHER_PASSWORD_FILE"));
    }
}
