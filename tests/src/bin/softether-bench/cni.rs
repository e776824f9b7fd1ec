//! CNI ADD latency and the daemon's memory (plugin + `softether-sidecar run`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::Value;
use softether_lab::netns::Netns;
use softether_lab::Lab;

use crate::procfs::status_kb;
use crate::TAP;

pub(crate) const CNI_CYCLES: usize = 10;
pub(crate) const CNI_ATTACHMENTS: usize = 10;

#[derive(Debug, Default)]
pub(crate) struct CniNumbers {
    pub(crate) add_median_ms: f64,
    pub(crate) add_min_ms: f64,
    pub(crate) add_max_ms: f64,
    pub(crate) rss_idle_kb: Option<u64>,
    pub(crate) rss_attached_kb: Option<u64>,
}

struct Cni<'a> {
    lab: &'a Lab,
    plugin: PathBuf,
    config: Value,
}

impl Cni<'_> {
    /// Runs the plugin like libcni; Ok(stdout JSON) on exit 0.
    fn call(&self, command: &str, pod: &str) -> Result<Value> {
        // The config's own timeout (60 s) bounds the plugin.
        softether_lab::sidecar::plugin_call(
            self.lab,
            &self.plugin,
            &self.config,
            command,
            pod,
            TAP,
            Duration::from_secs(90),
        )
    }
}

fn pod_netns(n: usize) -> Result<Netns> {
    Netns::create(&format!("se-x-{}-{}", std::process::id(), 900 + n))
}

pub(crate) fn measure_cni(lab: &Lab, bin_dir: &Path) -> Result<CniNumbers> {
    let daemon =
        softether_lab::sidecar::start_daemon(lab, bin_dir, &lab.facts.dir.join("bench-cni"))?;
    let cni = Cni {
        lab,
        plugin: bin_dir.join("softether"),
        config: daemon.config.clone(),
    };
    let mut n = CniNumbers {
        rss_idle_kb: status_kb(daemon.process.id(), "VmRSS:"),
        ..CniNumbers::default()
    };
    let mut took = Vec::with_capacity(CNI_CYCLES);
    for i in 0..CNI_CYCLES {
        let pod = pod_netns(i)?;
        let started = Instant::now();
        cni.call("ADD", pod.name())?;
        took.push(started.elapsed().as_secs_f64() * 1e3);
        cni.call("DEL", pod.name())?;
    }
    took.sort_by(f64::total_cmp);
    n.add_median_ms = (took[CNI_CYCLES / 2 - 1] + took[CNI_CYCLES / 2]) / 2.0;
    n.add_min_ms = took[0];
    n.add_max_ms = took[CNI_CYCLES - 1];

    let mut pods = Vec::with_capacity(CNI_ATTACHMENTS);
    for i in 0..CNI_ATTACHMENTS {
        let pod = pod_netns(100 + i)?;
        cni.call("ADD", pod.name())?;
        pods.push(pod);
    }
    std::thread::sleep(Duration::from_secs(1));
    n.rss_attached_kb = status_kb(daemon.process.id(), "VmRSS:");
    for pod in &pods {
        cni.call("DEL", pod.name())?;
    }
    let _ = daemon.process.terminate(Duration::from_secs(10));
    Ok(n)
}
