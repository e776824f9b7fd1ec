//! Measurements (printed, not asserted): time to a usable lease and RSS under iperf3 load.

mod connect_lab;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use connect_lab::{Lab, LAN_HOST_IP};

#[test]
fn rss_under_iperf3_load_and_time_to_lease() {
    let lab = Lab::start();
    let mut client = lab.connect(&[]);
    let took = client.wait_log("lease acquired", Duration::from_secs(30));
    println!("time from start to a usable lease: {} ms", took.as_millis());
    let idle_rss = client.rss_kb().unwrap_or(0);
    let mut server = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.lan,
            "iperf3",
            "-s",
            "-1",
            "-B",
            LAN_HOST_IP,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 -s");
    std::thread::sleep(Duration::from_millis(500));
    let run = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.cli,
            "timeout",
            "20",
            "iperf3",
            "-c",
            LAN_HOST_IP,
        ])
        .args(["-t", "5", "-f", "m", "--connect-timeout", "3000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("iperf3 -c");
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        peak = peak.max(client.rss_kb().unwrap_or(0));
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = run.wait_with_output().expect("iperf3 output");
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("sender") || l.contains("receiver"))
        .collect();
    println!("RSS idle: {idle_rss} kB, peak during iperf3: {peak} kB");
    println!("iperf3 through the tunnel: {}", summary.join(" | "));
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        out.status.success(),
        "iperf3 failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(client.stop().success());
}
