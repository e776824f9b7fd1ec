//! Measurements (printed, not asserted): time to a usable lease and RSS under iperf3 load.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::connect::connect;
use softether_lab::{netns, Lab, LabOptions};

#[test]
fn rss_under_iperf3_load_and_time_to_lease() {
    let lab = Lab::start(LabOptions::default()).expect("lab");
    let f = &lab.facts;
    let mut client = connect(&lab, &[]);
    let took = client.wait_log("lease acquired", Duration::from_secs(30));
    println!("time from start to a usable lease: {} ms", took.as_millis());
    let idle_rss = client.rss_kb().unwrap_or(0);
    let lan_host = f.lan_host.to_string();
    let mut iperf_server = netns::command_in(&f.lan_ns, &["iperf3", "-s", "-1", "-B", &lan_host]);
    iperf_server
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let server = netns::spawn_command(iperf_server).expect("iperf3 -s");
    std::thread::sleep(Duration::from_millis(500));
    let run = {
        let (ns, lan_host) = (f.client_ns.clone(), lan_host.clone());
        std::thread::spawn(move || {
            netns::exec_in(
                &ns,
                &[
                    "timeout",
                    "20",
                    "iperf3",
                    "-c",
                    &lan_host,
                    "-t",
                    "5",
                    "-f",
                    "m",
                    "--connect-timeout",
                    "3000",
                ],
            )
        })
    };
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        peak = peak.max(client.rss_kb().unwrap_or(0));
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = run
        .join()
        .expect("iperf3 thread")
        .expect("iperf3 -c output");
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("sender") || l.contains("receiver"))
        .collect();
    println!("RSS idle: {idle_rss} kB, peak during iperf3: {peak} kB");
    println!("iperf3 through the tunnel: {}", summary.join(" | "));
    drop(server);
    assert!(
        out.status.success(),
        "iperf3 failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(client.stop().success());
}
