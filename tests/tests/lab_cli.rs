//! `softether-lab`'s command line, without starting a lab (issue 14: `up --help` started one).

use std::process::Command;

#[test]
fn up_help_prints_usage_and_starts_nothing() {
    let out = Command::new(env!("CARGO_BIN_EXE_softether-lab"))
        .args(["up", "--help"])
        .output()
        .expect("run softether-lab");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("usage: softether-lab up [--json]"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(" up: server "),
        "a lab was started: {stdout}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_softether-lab"))
        .args(["up", "--bogus"])
        .output()
        .expect("run softether-lab");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument \"--bogus\""));
}
