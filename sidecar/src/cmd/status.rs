//! The `status` subcommand: what a running daemon holds, as a table or JSON.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use softether_control::ListReply;

use crate::daemon::{query_list, DEFAULT_SOCKET};

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The daemon's control socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Print the attachments as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Exit codes: 0 listed; 1 the daemon did not answer.
pub async fn run_status(args: StatusArgs) -> u8 {
    match query_list(&args.socket).await {
        Ok(list) => {
            if args.json {
                println!("{}", serde_json::to_string(&list).unwrap_or_default());
            } else {
                print!("{}", render_list(&list));
            }
            0
        }
        Err(e) => {
            eprintln!("softether-sidecar status: {e}");
            1
        }
    }
}

/// The human-readable `status` table.
pub fn render_list(list: &ListReply) -> String {
    let mut out = format!(
        "{:<16} {:<24} {:<8} {:<18} {:<22} {:<12} {:<20} {:>10} {:>10} {:>5} {:<11}\n",
        "CONTAINER",
        "NETNS",
        "IFNAME",
        "ADDRESS",
        "SERVER",
        "STATE",
        "SINCE",
        "BYTES_IN",
        "BYTES_OUT",
        "RECON",
        "UDP"
    );
    for a in &list.attachments {
        let since =
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(a.since));
        out.push_str(&format!(
            "{:<16} {:<24} {:<8} {:<18} {:<22} {:<12} {:<20} {:>10} {:>10} {:>5} {:<11}\n",
            a.container_id.chars().take(16).collect::<String>(),
            a.netns,
            a.ifname,
            a.address
                .map(|x| x.to_string())
                .unwrap_or_else(|| "-".into()),
            a.server,
            a.state,
            since,
            a.bytes_in,
            a.bytes_out,
            a.reconnects,
            a.udp_acceleration.as_deref().unwrap_or("-")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use softether_control::AttachmentStatus;

    #[test]
    fn the_table_shows_the_udp_acceleration_state() {
        let row = |udp: Option<&str>| AttachmentStatus {
            network: "vpnnet".into(),
            container_id: "c1".into(),
            netns: "/run/netns/p".into(),
            ifname: "vpn0".into(),
            mac: "5E:00:00:00:00:01".into(),
            address: None,
            server: "198.18.0.1:443".into(),
            hub: "H".into(),
            user: "u".into(),
            state: "up".into(),
            since: 0,
            bytes_in: 1,
            bytes_out: 2,
            reconnects: 0,
            last_error: None,
            udp_acceleration: udp.map(str::to_owned),
        };
        let list = ListReply {
            attachments: vec![row(Some("active")), row(None)],
        };
        let text = render_list(&list);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].trim_end().ends_with("UDP"), "{text}");
        assert!(lines[1].trim_end().ends_with("active"), "{text}");
        assert!(lines[2].trim_end().ends_with('-'), "{text}");
        let json = serde_json::to_value(&list.attachments[0]).unwrap();
        assert_eq!(json["udpAcceleration"], "active");
    }
}
