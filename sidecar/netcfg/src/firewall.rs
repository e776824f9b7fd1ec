//! CONNMARK for DNAT'd replies: an nftables table of our own inside the target namespace.
//!
//! Connections arriving on the VPN TAP get a conntrack mark; packets of those connections
//! travelling in the reply direction (forwarded from a local namespace/VM, or generated
//! locally) get the mark copied into their packet mark, and the `fwmark MARK lookup TABLE`
//! policy rule ([`crate::PolicyRule::fwmark`]) sends them back through the tunnel even though
//! their source address is not the VPN address.
//!
//! Why the `nft` binary fed JSON we build with `serde_json`, and not the `nftables` crate:
//! the rule set is three rules in one table, so the crate's typed schema (and its ~25
//! dependencies, schemars included) buys little; its helpers put `-j` before custom args and
//! swap `<`/`>` (crates.md caveat 3), and we must spawn `nft` ourselves anyway from a thread
//! that entered the namespace. serde_json still does all quoting, so an interface name can
//! never inject nft syntax. The pure-netlink alternative (rustables) is GPL and cannot express
//! `ct direction reply`. Runtime requirement: `nft` (>= 0.9.x with JSON) on the node/image, and
//! nf_tables + nft_ct in the kernel.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::error::{NetcfgError, Result};
use crate::netns::Netns;

const TABLE_PREFIX: &str = "softether_";
/// `priority mangle` for the hooks we use.
const PRIORITY_MANGLE: i32 = -150;

/// One namespace's CONNMARK table, `inet softether_<id>`.
#[derive(Clone, Debug)]
pub struct Firewall {
    netns: Netns,
    table: String,
    nft: PathBuf,
}

/// What `nft list table` shows for our table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableListing {
    /// `(chain name, number of rules)` in listing order.
    pub chains: Vec<(String, usize)>,
}

impl Firewall {
    /// The table for attachment `id` (any string: it is sanitised into an nft name) in
    /// `netns`, using `nft` from `PATH`.
    pub fn new(netns: Netns, id: &str) -> Self {
        Self {
            netns,
            table: table_name(id),
            nft: PathBuf::from("nft"),
        }
    }

    /// Use a specific `nft` binary.
    pub fn with_nft_binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.nft = path.into();
        self
    }

    /// The nft table name (family `inet`).
    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// Create or refresh the table in one atomic batch; applying twice leaves one copy.
    ///
    /// ```text
    /// nft -f - <<EOF
    /// add table inet softether_ID
    /// flush table inet softether_ID
    /// add chain inet softether_ID prerouting { type filter hook prerouting priority mangle; }
    /// add chain inet softether_ID output { type route hook output priority mangle; }
    /// add rule inet softether_ID prerouting iifname "TAP" ct state new ct mark set MARK
    /// add rule inet softether_ID prerouting ct direction reply meta mark set ct mark
    /// add rule inet softether_ID output ct direction reply meta mark set ct mark
    /// EOF
    /// ```
    pub async fn apply_connmark(&self, tap: &str, mark: u32) -> Result<()> {
        if tap.is_empty() || tap.len() >= crate::sys::IFNAMSIZ {
            return Err(NetcfgError::InvalidArgument {
                what: "TAP name for CONNMARK",
                detail: format!("{tap:?} is not a valid interface name"),
            });
        }
        if mark == 0 {
            return Err(NetcfgError::InvalidArgument {
                what: "CONNMARK mark",
                detail: "0 is the unmarked value; pick a non-zero mark".into(),
            });
        }
        let batch = connmark_batch(&self.table, tap, mark);
        self.run("apply", &["-j", "-f", "-"], Some(batch.to_string()))
            .await
            .map(drop)
    }

    /// `nft delete table inet softether_ID`; Ok if it does not exist (the batch adds the
    /// table first, so the delete always has something to remove).
    pub async fn remove(&self) -> Result<()> {
        let t = self.table_ref();
        let batch = json!({ "nftables": [ { "add": t.clone() }, { "delete": t } ] });
        self.run("delete", &["-j", "-f", "-"], Some(batch.to_string()))
            .await
            .map(drop)
    }

    /// Whether our table exists (`nft list tables inet`).
    pub async fn exists(&self) -> Result<bool> {
        let out = self
            .run("list tables", &["-j", "list", "tables", "inet"], None)
            .await?;
        let listing = parse_json(&out).map_err(|detail| self.error("list tables", detail))?;
        let found = objects(&listing, "table")
            .any(|t| t.get("name").and_then(Value::as_str) == Some(self.table.as_str()));
        Ok(found)
    }

    /// Chains and rule counts of our table, or `None` if it does not exist
    /// (`nft list table inet softether_ID`).
    pub async fn list(&self) -> Result<Option<TableListing>> {
        if !self.exists().await? {
            return Ok(None);
        }
        let out = self
            .run(
                "list table",
                &["-j", "list", "table", "inet", &self.table],
                None,
            )
            .await?;
        let listing = parse_json(&out).map_err(|detail| self.error("list table", detail))?;
        let mut chains: Vec<(String, usize)> = objects(&listing, "chain")
            .filter_map(|c| c.get("name").and_then(Value::as_str))
            .map(|n| (n.to_owned(), 0))
            .collect();
        for rule in objects(&listing, "rule") {
            let chain = rule.get("chain").and_then(Value::as_str);
            if let Some(entry) = chains.iter_mut().find(|(n, _)| Some(n.as_str()) == chain) {
                entry.1 += 1;
            }
        }
        Ok(Some(TableListing { chains }))
    }

    fn table_ref(&self) -> Value {
        json!({ "table": { "family": "inet", "name": self.table } })
    }

    /// Spawn `nft ARGS` from a thread inside the namespace (the child inherits the thread's
    /// namespace) and return its stdout; a non-zero exit is an error carrying stderr.
    async fn run(&self, op: &'static str, args: &[&str], stdin: Option<String>) -> Result<String> {
        let nft = self.nft.clone();
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        let output = self
            .netns
            .run_async(move || -> std::io::Result<std::process::Output> {
                let mut child = Command::new(&nft)
                    .args(&args)
                    .stdin(if stdin.is_some() {
                        Stdio::piped()
                    } else {
                        Stdio::null()
                    })
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()?;
                if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
                    pipe.write_all(input.as_bytes())?;
                }
                child.wait_with_output()
            })
            .await?
            .map_err(|e| self.error(op, format!("cannot run {}: {e}", self.nft.display())))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(self.error(op, format!("{}: {}", output.status, stderr.trim())));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn error(&self, op: &'static str, detail: String) -> NetcfgError {
        NetcfgError::Nft {
            op,
            table: format!("inet {}", self.table),
            netns: self.netns.to_string(),
            detail,
        }
    }
}

/// The JSON batch documented on [`Firewall::apply_connmark`].
fn connmark_batch(table: &str, tap: &str, mark: u32) -> Value {
    let chain = |name: &str, kind: &str, hook: &str| {
        json!({ "add": { "chain": {
            "family": "inet", "table": table, "name": name,
            "type": kind, "hook": hook, "prio": PRIORITY_MANGLE, "policy": "accept"
        } } })
    };
    let rule = |chain: &str, comment: &str, expr: Value| {
        json!({ "add": { "rule": {
            "family": "inet", "table": table, "chain": chain, "comment": comment, "expr": expr
        } } })
    };
    let reply_direction = json!({ "match": {
        "op": "==", "left": { "ct": { "key": "direction" } }, "right": "reply"
    } });
    let restore_mark = json!({ "mangle": {
        "key": { "meta": { "key": "mark" } }, "value": { "ct": { "key": "mark" } }
    } });
    let table_obj = json!({ "table": { "family": "inet", "name": table } });
    json!({ "nftables": [
        { "add": table_obj.clone() },
        { "flush": table_obj },
        chain("prerouting", "filter", "prerouting"),
        chain("output", "route", "output"),
        rule("prerouting", "mark connections arriving on the VPN TAP", json!([
            { "match": { "op": "==", "left": { "meta": { "key": "iifname" } }, "right": tap } },
            { "match": { "op": "in", "left": { "ct": { "key": "state" } }, "right": "new" } },
            { "mangle": { "key": { "ct": { "key": "mark" } }, "value": mark } },
        ])),
        rule("prerouting", "restore mark on forwarded replies",
            json!([reply_direction.clone(), restore_mark.clone()])),
        rule("output", "restore mark on local replies", json!([reply_direction, restore_mark])),
    ] })
}

/// `softether_<id>` with anything outside `[A-Za-z0-9_]` replaced; long or altered ids are
/// shortened and suffixed with a hash of the original so distinct ids stay distinct.
fn table_name(id: &str) -> String {
    let clean: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean == id && !id.is_empty() && id.len() <= 64 {
        return format!("{TABLE_PREFIX}{id}");
    }
    let short: String = clean.chars().take(40).collect();
    format!("{TABLE_PREFIX}{short}_{:08x}", fnv1a32(id.as_bytes()))
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn parse_json(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("unparsable nft JSON output: {e}"))
}

/// The `{"KIND": {...}}` entries of an `{"nftables": [...]}` listing.
fn objects<'a>(listing: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    listing
        .get("nftables")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(move |entry| entry.get(kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_sanitised_and_distinct() {
        assert_eq!(table_name("pod1"), "softether_pod1");
        let a = table_name("a-b");
        let b = table_name("a.b");
        assert!(a.starts_with("softether_a_b_") && a != b);
        let long = table_name(&"f".repeat(80));
        assert!(long.len() <= TABLE_PREFIX.len() + 40 + 9);
        assert!(table_name("").starts_with("softether__"));
    }

    #[test]
    fn batch_quotes_interface_names_as_json_strings() {
        let batch = connmark_batch("softether_x", "tap\"; flush ruleset", 0x100);
        let text = batch.to_string();
        assert!(text.contains(r#""right":"tap\"; flush ruleset""#));
        let cmds = batch["nftables"].as_array().unwrap();
        assert_eq!(cmds.len(), 7);
        assert!(cmds[1].get("flush").is_some());
        assert_eq!(cmds[4]["add"]["rule"]["expr"][2]["mangle"]["value"], 0x100);
    }

    #[test]
    fn objects_finds_entries_of_a_kind() {
        let v: Value = serde_json::from_str(
            r#"{"nftables":[{"metainfo":{}},{"table":{"name":"t"}},{"chain":{"name":"c"}}]}"#,
        )
        .unwrap();
        assert_eq!(objects(&v, "chain").count(), 1);
        assert_eq!(objects(&Value::Null, "chain").count(), 0);
    }
}
