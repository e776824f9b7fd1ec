//! The `status` subcommand: what a running daemon holds, as a table or JSON.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use softether_control::{AttachmentStatus, ListReply};

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

/// The human-readable `status` table: one line per attachment, and for one that is not up an
/// indented line saying why and when it retries.
pub fn render_list(list: &ListReply) -> String {
    render_list_at(list, std::time::SystemTime::now())
}

fn render_list_at(list: &ListReply, now: std::time::SystemTime) -> String {
    let row = |cols: [&str; 15]| {
        let line = format!(
            "{:<16} {:<24} {:<8} {:<18} {:<22} {:<12} {:<20} {:>10} {:>10} {:>5} {:>10} {:>9} {:>9} {:<11} {}",
            cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7], cols[8],
            cols[9], cols[10], cols[11], cols[12], cols[13], cols[14]
        );
        format!("{}\n", line.trim_end())
    };
    let mut out = row([
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
        "LEASE_LEFT",
        "RATE_IN",
        "RATE_OUT",
        "UDP",
        "ADDRESS6",
    ]);
    for a in &list.attachments {
        let since =
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(a.since))
                .to_string();
        let address = a
            .address
            .map(|x| x.to_string())
            .unwrap_or_else(|| "-".into());
        let lease_left = a
            .lease_expires
            .map(|t| {
                let at = std::time::UNIX_EPOCH + Duration::from_secs(t);
                let left = at.duration_since(now).unwrap_or_default();
                humantime::format_duration(Duration::from_secs(left.as_secs())).to_string()
            })
            .unwrap_or_else(|| "-".into());
        // IPv6 from the VPN's routers: all addresses, comma-separated (last column, any width).
        let address6 = if a.addresses6.is_empty() {
            "-".to_owned()
        } else {
            let all: Vec<String> = a.addresses6.iter().map(ToString::to_string).collect();
            all.join(",")
        };
        let container: String = a.container_id.chars().take(16).collect();
        out.push_str(&row([
            &container,
            &a.netns,
            &a.ifname,
            &address,
            &a.server,
            &a.state,
            &since,
            &a.bytes_in.to_string(),
            &a.bytes_out.to_string(),
            &a.reconnects.to_string(),
            &lease_left,
            &format!("{}/s", human_bytes(a.rate_in)),
            &format!("{}/s", human_bytes(a.rate_out)),
            a.udp_acceleration.as_deref().unwrap_or("-"),
            &address6,
        ]));
        if a.state != "up" {
            out.push_str(&format!("  not up: {}\n", why_not_up(a)));
        }
    }
    out
}

/// "last error ...; next retry in N s", or what is known.
fn why_not_up(a: &AttachmentStatus) -> String {
    let mut why = match &a.last_error {
        Some(e) => format!("last error: {}", e.replace('\n', " ")),
        None => format!("session {}", a.state),
    };
    if let Some(n) = a.next_retry_secs {
        why.push_str(&format!("; next retry in {n} s"));
    }
    why
}

/// 1536 → "1.5K" (powers of 1024).
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["", "K", "M", "G"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment(state: &str) -> AttachmentStatus {
        AttachmentStatus {
            network: "n".into(),
            container_id: "c1".into(),
            netns: "/run/netns/p".into(),
            ifname: "vpn0".into(),
            mac: "5E:00:00:00:00:01".into(),
            address: None,
            server: "198.18.0.1:443".into(),
            hub: "HUB".into(),
            user: "u".into(),
            state: state.into(),
            since: 0,
            bytes_in: 10,
            bytes_out: 20,
            reconnects: 3,
            last_error: Some("server 198.18.0.1:443 closed the connection".into()),
            next_retry_secs: Some(4),
            lease_expires: Some(3600),
            rate_in: 1536,
            rate_out: 0,
            udp_acceleration: Some("active".into()),
            addresses6: Vec::new(),
            gateway6: None,
        }
    }

    #[test]
    fn table_lists_the_ipv6_addresses_last() {
        let mut a = attachment("up");
        a.addresses6 = vec![
            "fd00:6::1/64".parse().unwrap(),
            "fd00:6::100/128".parse().unwrap(),
        ];
        let text = render_list_at(
            &ListReply {
                attachments: vec![a],
            },
            std::time::UNIX_EPOCH,
        );
        let row = text.lines().nth(1).unwrap();
        assert!(row.ends_with(" fd00:6::1/64,fd00:6::100/128"), "{text}");
    }

    #[test]
    fn table_says_why_an_attachment_is_down_and_shows_lease_and_rates() {
        let list = ListReply {
            attachments: vec![attachment("reconnecting"), attachment("up")],
        };
        let now = std::time::UNIX_EPOCH + Duration::from_secs(3600 - 90);
        let text = render_list_at(&list, now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].contains("LEASE_LEFT") && lines[0].contains("RATE_IN"));
        assert!(
            lines[1].contains("1m 30s") && lines[1].contains("1.5K/s") && lines[1].contains("0B/s"),
            "{text}"
        );
        assert_eq!(
            lines[2],
            "  not up: last error: server 198.18.0.1:443 closed the connection; next retry in 4 s"
        );
        assert!(lines[3].contains(" up "), "{text}");
        assert!(
            lines[0].trim_end().ends_with("UDP         ADDRESS6"),
            "{text}"
        );
        assert!(lines[3].trim_end().ends_with("active      -"), "{text}");
        let json = serde_json::to_value(&list.attachments[0]).unwrap();
        assert_eq!(json["udpAcceleration"], "active");
    }
}
