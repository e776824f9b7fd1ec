//! Readings from /proc: memory and CPU of the processes under test.

use std::fs;

/// A `/proc/<pid>/status` field in kB.
pub(crate) fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub(crate) fn sum_kb(pids: &[u32], field: &str) -> Option<u64> {
    let values: Vec<u64> = pids.iter().filter_map(|p| status_kb(*p, field)).collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// utime + stime of `pid` in seconds.
pub(crate) fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised comm: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100);
    Some(ticks as f64 / hz as f64)
}

pub(crate) fn sum_cpu(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|p| cpu_secs(*p)).sum()
}

/// Voluntary plus involuntary context switches of all threads of `pids`: how often they slept
/// and woke (or were preempted), which batching is meant to cut.
pub(crate) fn sum_context_switches(pids: &[u32]) -> u64 {
    let thread_switches = |status: String| -> u64 {
        status
            .lines()
            .filter(|l| {
                l.starts_with("voluntary_ctxt_switches:")
                    || l.starts_with("nonvoluntary_ctxt_switches:")
            })
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum()
    };
    pids.iter()
        .filter_map(|pid| fs::read_dir(format!("/proc/{pid}/task")).ok())
        .flat_map(|tasks| tasks.flatten())
        .filter_map(|task| fs::read_to_string(task.path().join("status")).ok())
        .map(thread_switches)
        .sum()
}

/// Pids whose command name starts with `comm` and whose network namespace is `ns`.
pub(crate) fn pids_in_ns(ns: &str, comm: &str) -> Vec<u32> {
    let target = fs::metadata(format!("/run/netns/{ns}")).ok().map(|m| {
        use std::os::unix::fs::MetadataExt;
        (m.dev(), m.ino())
    });
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let name = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let net = fs::metadata(format!("/proc/{pid}/ns/net")).ok().map(|m| {
                use std::os::unix::fs::MetadataExt;
                (m.dev(), m.ino())
            });
            name.starts_with(comm) && net.is_some() && net == target
        })
        .collect()
}
