//! Helpers for the observability tests: HTTP GETs inside a namespace (curl), `promtool check
//! metrics`, and a real Prometheus (Debian's `prometheus`) scraping a target in the lab.
#![allow(dead_code)] // each test binary uses a different subset

use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use softether_lab::netns::{self, KillOnDrop};
use softether_lab::Lab;

use super::connect::exec;

/// `GET url` from namespace `ns`: (HTTP status, 0 when nothing answered; body).
pub fn http_get(ns: &str, url: &str) -> (u16, String) {
    let (_, out) = exec(ns, &["curl", "-s", "-m", "5", "-w", "\n%{http_code}", url]);
    let (body, code) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// Polls `GET url` until `want(status)`, bounded; returns the last (status, body).
pub fn wait_http(
    ns: &str,
    url: &str,
    timeout: Duration,
    want: impl Fn(u16) -> bool,
) -> (u16, String) {
    let until = Instant::now() + timeout;
    loop {
        let got = http_get(ns, url);
        if want(got.0) || Instant::now() > until {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `curl url | promtool check metrics` in `ns`: (passed, promtool's output).
pub fn promtool_check(ns: &str, url: &str) -> (bool, String) {
    exec(
        ns,
        &[
            "bash",
            "-o",
            "pipefail",
            "-c",
            &format!("curl -sf -m 5 '{url}' | promtool check metrics"),
        ],
    )
}

/// The value of the first sample of `name` whose label text contains every `labels` item.
pub fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Prometheus in namespace `ns`, scraping `target` (host:port) every second; killed on drop.
pub struct Prometheus {
    _process: KillOnDrop,
    ns: String,
    api: String,
    pub log: std::path::PathBuf,
}

impl Prometheus {
    pub fn start(lab: &Lab, ns: &str, target: &str, listen: &str) -> Prometheus {
        let dir = lab.facts.dir.join("prometheus");
        fs::create_dir_all(dir.join("data")).expect("prometheus dir");
        let config = dir.join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: softether\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("prometheus config");
        let log = dir.join("prometheus.log");
        let out = fs::File::create(&log).expect("prometheus log");
        let mut cmd = netns::command_in(
            ns,
            &[
                "prometheus",
                &format!("--config.file={}", config.display()),
                &format!("--storage.tsdb.path={}", dir.join("data").display()),
                &format!("--web.listen-address={listen}"),
            ],
        );
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out);
        let process = netns::spawn_command(cmd).unwrap_or_else(|e| panic!("{e:#}"));
        let p = Prometheus {
            _process: process,
            ns: ns.to_owned(),
            api: format!("http://{listen}"),
            log,
        };
        let (code, body) = wait_http(
            ns,
            &format!("{}/-/ready", p.api),
            Duration::from_secs(60),
            |c| c == 200,
        );
        assert_eq!(code, 200, "prometheus not ready: {body}\n{}", p.log_text());
        p
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An instant query: the `data.result` vector.
    pub fn query(&self, expr: &str) -> Vec<Value> {
        self.try_query(expr)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.log_text()))
    }

    fn try_query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let (ok, out) = exec(
            &self.ns,
            &[
                "curl",
                "-sS",
                "-m",
                "10",
                &format!("{}/api/v1/query", self.api),
                "--data-urlencode",
                &format!("query={expr}"),
            ],
        );
        if !ok {
            return Err(format!("query {expr}: {out}"));
        }
        let v: Value = serde_json::from_str(&out).map_err(|e| format!("{expr} ({e}): {out}"))?;
        if v["status"] != "success" {
            return Err(format!("{expr}: {out}"));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// Polls `expr` until `done(result)`, bounded; returns the last result. A query that fails
    /// (e.g. curl timing out on a busy machine) counts as not done yet.
    pub fn wait_query(
        &self,
        expr: &str,
        timeout: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let until = Instant::now() + timeout;
        loop {
            let r = self.try_query(expr);
            if let Ok(r) = &r {
                if done(r) {
                    return r.clone();
                }
            }
            assert!(
                Instant::now() < until,
                "{expr} never satisfied; last {r:?}\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// The value of one series in a query result.
pub fn series_value(series: &Value) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN)
}
