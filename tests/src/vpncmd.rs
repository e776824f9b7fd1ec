//! Driving the server's admin interface with the Debian `vpncmd`, one command per invocation.
//!
//! vpncmd prompts on stdin when a password is wrong or a parameter is missing; stdin is closed and every call
//! has a deadline so such mistakes fail fast. Its exit status is the SoftEther error code (0 = success).
//! Arguments starting with `/` are parsed as options, so file arguments must be relative paths: calls run
//! with the lab directory as working directory.

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::command;
use crate::netns;
use crate::prereq::VPNCMD;

const VPNCMD_TIMEOUT: Duration = Duration::from_secs(30);

/// How to reach one server's admin interface.
#[derive(Debug, Clone)]
pub struct Vpncmd {
    /// Namespace the server listens in (vpncmd connects to `localhost:<port>` from there).
    pub ns: String,
    /// Admin port.
    pub port: u16,
    /// Server administrator password (empty right after first start).
    pub password: String,
    /// Working directory for relative file arguments.
    pub cwd: PathBuf,
}

impl Vpncmd {
    /// Runs a server-wide command (`vpncmd /SERVER /CMD <args>`); error on a non-zero SoftEther error code.
    pub fn server(&self, args: &[&str]) -> Result<String> {
        self.run(None, args)
    }

    /// Runs a command with virtual hub `hub` selected (`/ADMINHUB:<hub>`).
    pub fn hub(&self, hub: &str, args: &[&str]) -> Result<String> {
        self.run(Some(hub), args)
    }

    /// Like [`Vpncmd::server`], retried until `timeout` — for the first call after the server starts.
    pub fn server_retry(&self, args: &[&str], timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.server(args) {
                Ok(out) => return Ok(out),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    fn run(&self, hub: Option<&str>, args: &[&str]) -> Result<String> {
        let target = format!("localhost:{}", self.port);
        let password = format!("/PASSWORD:{}", self.password);
        let adminhub = hub.map(|h| format!("/ADMINHUB:{h}"));
        let mut argv: Vec<&str> = vec![VPNCMD, &target, "/SERVER", &password];
        if let Some(h) = &adminhub {
            argv.push(h);
        }
        argv.push("/CMD");
        argv.extend_from_slice(args);
        let mut cmd = netns::command_in(&self.ns, &argv);
        cmd.current_dir(&self.cwd);
        let out = command::run(&mut cmd, VPNCMD_TIMEOUT)?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() || !stdout.contains("The command completed successfully") {
            bail!(
                "vpncmd {} failed ({}): {}",
                args.join(" "),
                out.status,
                tail(&stdout, 6)
            );
        }
        Ok(stdout)
    }
}

/// The last `n` non-empty lines of `s` (vpncmd prints a banner first; the error is at the end).
fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Parses vpncmd's two-column `Item|Value` tables into (item, value) pairs, trimmed.
pub fn parse_table(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| l.split_once('|'))
        .filter(|(k, _)| !k.starts_with('-'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_skips_blank_lines() {
        assert_eq!(tail("a\n\nb\nc\n\n", 2), "b | c");
        assert_eq!(tail("", 3), "");
    }

    #[test]
    fn parses_tables() {
        let t = parse_table("Item|Value\n----+-----\nIP Address |10.99.0.1\nnoise\n");
        assert_eq!(t[1], ("IP Address".into(), "10.99.0.1".into()));
        assert_eq!(t.len(), 2);
    }
}
