//! Running external programs with a deadline, so a wedged helper (vpncmd waiting for a password on stdin,
//! a ping that never returns) fails the test instead of hanging it.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Default deadline for helper commands (ip, ethtool, vpncmd, openssl).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `cmd` with stdin closed, capturing stdout/stderr, killing its whole process group at `timeout`.
///
/// Returns the output even when the exit status is non-zero; see [`run_ok`] for the strict variant.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    run_with_input(cmd, None, timeout)
}

/// Like [`run`], with `input` written to the command's stdin (then closed), as a runtime feeds
/// a plugin its JSON.
pub fn run_with_input(
    cmd: &mut Command,
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output> {
    let desc = describe(cmd);
    let mut child = crate::sys::own_session(cmd)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{desc}`"))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        let input = input.to_vec();
        // A writer thread: a child that does not read must not block us past the deadline.
        thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&input);
        });
    }
    let deadline = Instant::now() + timeout;
    let out_reader = spawn_reader(child.stdout.take());
    let err_reader = spawn_reader(child.stderr.take());
    let status = match wait_deadline(&mut child, timeout)? {
        Some(status) => status,
        None => {
            kill_group(&mut child);
            bail!("`{desc}` did not finish within {timeout:?}");
        }
    };
    // A background process the command started may keep the pipes open; don't wait for it forever.
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    let (Ok(stdout), Ok(stderr)) = (out_reader.recv_timeout(left), err_reader.recv_timeout(left))
    else {
        bail!(
            "`{desc}` exited ({status}) but a process it started still holds its stdout/stderr; \
             redirect that process's output"
        );
    };
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Like [`run`], but a non-zero exit status is an error carrying the command's stderr and stdout.
pub fn run_ok(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let desc = describe(cmd);
    let out = run(cmd, timeout)?;
    if !out.status.success() {
        bail!(
            "`{desc}` failed ({}):\nstderr: {}\nstdout: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(out)
}

/// Convenience: `run_ok` on an argv slice, returning stdout as a String.
pub fn run_argv(argv: &[&str]) -> Result<String> {
    let (prog, args) = argv.split_first().context("empty command line")?;
    let out = run_ok(Command::new(prog).args(args), DEFAULT_TIMEOUT)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits for `child` until `timeout`; `None` when it is still running at the deadline.
pub fn wait_deadline(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("waitpid failed")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILLs the process group led by `child` (spawned as a group leader: `process_group(0)` or a
/// new session) and reaps the leader. Errors are ignored: this is used on teardown paths that
/// must keep going.
///
/// Returns only once no member of the group exists any more (bounded, 5 s): a SIGKILLed daemon's worker
/// processes keep their listening sockets until the kernel has finished tearing them down, and callers
/// (e.g. "server killed" tests) need them gone.
pub fn kill_group(child: &mut Child) {
    let pgid = i32::try_from(child.id()).ok().map(Pid::from_raw);
    if let Some(pgid) = pgid {
        let _ = killpg(pgid, Signal::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
    let Some(pgid) = pgid else { return };
    let deadline = Instant::now() + Duration::from_secs(5);
    // Members reparented to init are reaped by it; until then they are zombies that still count.
    while killpg(pgid, None).is_ok() && Instant::now() < deadline {
        let _ = killpg(pgid, Signal::SIGKILL);
        thread::sleep(Duration::from_millis(10));
    }
}

/// Human-readable command line for error messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn spawn_reader<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let out = run(
            Command::new("sh").args(["-c", "echo hi; echo err >&2; exit 3"]),
            DEFAULT_TIMEOUT,
        )
        .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"hi\n");
        assert_eq!(out.stderr, b"err\n");
        assert!(run_ok(&mut Command::new("false"), DEFAULT_TIMEOUT).is_err());
    }

    #[test]
    fn background_holder_of_the_pipes_does_not_hang_the_caller() {
        let start = Instant::now();
        let err = run(
            Command::new("sh").args(["-c", "sleep 5 & echo started"]),
            Duration::from_millis(500),
        )
        .unwrap_err();
        assert!(err.to_string().contains("still holds"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn kills_at_deadline() {
        let start = Instant::now();
        let err = run(Command::new("sleep").arg("30"), Duration::from_millis(200)).unwrap_err();
        assert!(err.to_string().contains("did not finish"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
