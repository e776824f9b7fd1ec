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
const SUCCESS: &str = "The command completed successfully";

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

    /// Runs several commands in one vpncmd session (`/IN:` batch file, server admin mode), much faster than
    /// one process and TLS login per command. A command may select a hub (`Hub LAB`) for the following
    /// ones. vpncmd keeps going after a failed command and exits 0, so each command's output is checked;
    /// the error names the first failed command. Arguments must not contain whitespace or quotes.
    pub fn batch(&self, commands: &[Vec<String>]) -> Result<String> {
        let mut script = String::new();
        for cmd in commands {
            if cmd
                .iter()
                .any(|a| a.contains(char::is_whitespace) || a.contains('"'))
            {
                bail!("vpncmd batch argument with whitespace or quote: {cmd:?}");
            }
            script.push_str(&cmd.join(" "));
            script.push('\n');
        }
        let name = format!("vpncmd-batch-{}.txt", std::process::id());
        std::fs::write(self.cwd.join(&name), script)?;
        let target = format!("localhost:{}", self.port);
        let password = format!("/PASSWORD:{}", self.password);
        let input = format!("/IN:{name}");
        let argv = [VPNCMD, &target, "/SERVER", &password, &input];
        let mut cmd = netns::command_in(&self.ns, &argv);
        cmd.current_dir(&self.cwd);
        let out = command::run(&mut cmd, VPNCMD_TIMEOUT)?;
        let _ = std::fs::remove_file(self.cwd.join(&name));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let results = split_batch_output(&stdout);
        if !out.status.success() || results.len() != commands.len() {
            bail!(
                "vpncmd batch ran {} of {} commands ({}): {}",
                results.len(),
                commands.len(),
                out.status,
                tail(&stdout, 8)
            );
        }
        if let Some((cmd, output)) = results.iter().find(|(_, o)| !o.contains(SUCCESS)) {
            bail!("vpncmd {cmd} failed: {}", tail(output, 4));
        }
        Ok(stdout)
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
        if !out.status.success() || !stdout.contains(SUCCESS) {
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

/// Splits a batch transcript at its prompts (`VPN Server>cmd`, `VPN Server/HUB>cmd`) into
/// (command line, output) pairs.
fn split_batch_output(out: &str) -> Vec<(String, String)> {
    let mut results: Vec<(String, String)> = Vec::new();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("VPN Server") {
            if let Some((_, cmd)) = rest.split_once('>') {
                results.push((cmd.trim().to_owned(), String::new()));
                continue;
            }
        }
        if let Some((_, output)) = results.last_mut() {
            output.push_str(line);
            output.push('\n');
        }
    }
    results
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
    fn splits_batch_transcripts() {
        let out =
            "banner\nVPN Server>Hub LAB\nHub command\nThe command completed successfully.\n\n\
                   VPN Server/LAB>UserCreate a\nError occurred. (Error code: 66)\n";
        let r = split_batch_output(out);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].0, "Hub LAB");
        assert!(r[0].1.contains(SUCCESS));
        assert_eq!(r[1].0, "UserCreate a");
        assert!(r[1].1.contains("Error code: 66"));
    }

    #[test]
    fn parses_tables() {
        let t = parse_table("Item|Value\n----+-----\nIP Address |10.99.0.1\nnoise\n");
        assert_eq!(t[1], ("IP Address".into(), "10.99.0.1".into()));
        assert_eq!(t.len(), 2);
    }
}
