//! The daemon bench's readings and its Markdown table.

use anyhow::Result;

use crate::{proc_kb, FIRST};

/// One reading of the daemon's memory, KiB.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    /// VmRSS: everything resident, the binary's file-backed pages included.
    pub rss: u64,
    /// RssAnon: heap, stacks and other private memory.
    pub anon: u64,
    /// VmHWM: the peak RSS so far.
    pub peak: u64,
}

impl Memory {
    pub fn read(pid: u32) -> Result<Memory> {
        Ok(Memory {
            rss: proc_kb(pid, "VmRSS:")?,
            anon: proc_kb(pid, "RssAnon:")?,
            peak: proc_kb(pid, "VmHWM:")?,
        })
    }
}

pub struct Report {
    pub attachments: usize,
    pub busy: usize,
    pub baseline: Memory,
    /// After one attachment with traffic came and went.
    pub warm: Memory,
    /// After [`FIRST`] attachments.
    pub first: Option<Memory>,
    pub attached: Memory,
    pub loaded: Memory,
    pub after_traffic: Memory,
    pub deleted: Memory,
}

fn mib(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

impl Report {
    /// KiB per attachment beyond the first [`FIRST`], RSS and anon.
    fn slope(&self, m: &Memory) -> String {
        let Some(first) = self.first else {
            return "n/a".into();
        };
        let extra = self.attachments.saturating_sub(FIRST).max(1) as f64;
        let per = |now: u64, then: u64| (now as f64 - then as f64) / extra;
        format!(
            "{:.0} / {:.0}",
            per(m.rss, first.rss),
            per(m.anon, first.anon)
        )
    }

    fn row(&self, what: &str, m: &Memory, per_attachment: bool) {
        let slope = if per_attachment {
            self.slope(m)
        } else {
            "—".into()
        };
        println!("| {what} | {} / {} | {slope} |", mib(m.rss), mib(m.anon));
    }

    pub fn print(&self) {
        let (n, busy) = (self.attachments, self.busy);
        println!();
        println!(
            "| daemon (`softether-sidecar run`), {n} attachments, iperf3 on {busy} | RSS / anon, MiB | KiB per extra attachment, RSS / anon |"
        );
        println!("|---|---:|---:|");
        self.row("no attachments (baseline)", &self.baseline, false);
        self.row(
            "one attachment with iperf3 came and went (warm)",
            &self.warm,
            false,
        );
        if let Some(first) = &self.first {
            self.row(&format!("{FIRST} attachments"), first, false);
        }
        self.row(&format!("{n} idle attachments"), &self.attached, true);
        self.row(&format!("right after iperf3 on {busy}"), &self.loaded, true);
        self.row("3 s later", &self.after_traffic, true);
        let vs = |now: u64, base: u64| (now as f64 / base as f64 - 1.0) * 100.0;
        println!(
            "| all deleted | {} / {} | {:+.0} % / {:+.0} % vs baseline, {:+.0} % / {:+.0} % vs warm |",
            mib(self.deleted.rss),
            mib(self.deleted.anon),
            vs(self.deleted.rss, self.baseline.rss),
            vs(self.deleted.anon, self.baseline.anon),
            vs(self.deleted.rss, self.warm.rss),
            vs(self.deleted.anon, self.warm.anon)
        );
        println!("| peak RSS (VmHWM), MiB | {} | — |", mib(self.deleted.peak));
    }
}
