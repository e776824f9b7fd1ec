//! The frame exchange of `probe`: prove that frames cross the session in both directions.
//!
//! DHCP through the tunnel finds the hub's gateway (when the hub has a DHCP server, such as
//! SecureNAT), an ARP request resolves its MAC, an ICMP echo checks round trips, and a RELEASE
//! gives the address back. Everything is bounded by one overall deadline.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dhcp_client::{arp, icmp, Config as DhcpConfig, DhcpClient, Event};
use serde::Serialize;

use crate::transport::driver::TunnelHandle;
use crate::transport::{clock, random_seed};

/// What the frame exchange found.
#[derive(Debug, Default, Clone, Serialize)]
pub struct FrameReport {
    pub mac: String,
    pub frames_sent: u64,
    pub frames_received: u64,
    pub dhcp_address: Option<String>,
    pub dhcp_server: Option<String>,
    pub dhcp_lease_secs: Option<u64>,
    pub dns_servers: Vec<String>,
    pub gateway: Option<String>,
    pub gateway_mac: Option<String>,
    pub ping_rtt_ms: Option<f64>,
    pub released: bool,
    pub note: Option<String>,
}

impl FrameReport {
    pub fn render_lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "{} sent, {} received, our MAC {}",
            self.frames_sent, self.frames_received, self.mac
        )];
        match (&self.dhcp_address, &self.dhcp_server) {
            (Some(addr), Some(server)) => lines.push(format!(
                "DHCP offered {addr} by {server} (lease {}s, dns {}){}",
                self.dhcp_lease_secs.unwrap_or(0),
                self.dns_servers.join(","),
                if self.released { ", released" } else { "" }
            )),
            _ => lines.push("no DHCP server answered (hub without SecureNAT/DHCP?)".into()),
        }
        if let (Some(gw), Some(mac)) = (&self.gateway, &self.gateway_mac) {
            lines.push(format!("gateway {gw} is at {mac}"));
        }
        if let Some(rtt) = self.ping_rtt_ms {
            lines.push(format!("ping gateway: {rtt:.2} ms"));
        }
        if let Some(note) = &self.note {
            lines.push(note.clone());
        }
        lines
    }
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

struct Exchange<'a> {
    tunnel: &'a mut TunnelHandle,
    mac: [u8; 6],
    deadline: Instant,
    report: FrameReport,
    /// RELEASE frame held back until the ARP/ping checks are done.
    pending_release: Option<Vec<u8>>,
}

impl Exchange<'_> {
    async fn send(&mut self, frame: Vec<u8>) -> bool {
        self.report.frames_sent += 1;
        self.tunnel.outgoing.send(frame.into()).await.is_ok()
    }

    /// Next received frame before `until` (or the overall deadline).
    async fn recv(&mut self, until: Instant) -> Option<bytes::Bytes> {
        let until = until.min(self.deadline);
        let frame = tokio::time::timeout_at(until.into(), self.tunnel.incoming.recv())
            .await
            .ok()??;
        self.report.frames_received += 1;
        Some(frame)
    }

    /// Answers ARP requests for our address so the gateway can reach us.
    async fn answer_arp(&mut self, frame: &[u8], our_ip: Option<Ipv4Addr>) {
        let (Some(ip), Some(req)) = (our_ip, arp::parse(frame)) else {
            return;
        };
        if req.operation == arp::ArpOperation::Request && req.target_ip == ip {
            let reply = arp::reply(self.mac, ip, req.sender_mac, req.sender_ip);
            self.send(reply).await;
        }
    }

    async fn dhcp(&mut self) -> Option<dhcp_client::Lease> {
        let mut config = DhcpConfig::new(self.mac, random_seed());
        config.initial_retransmit = Duration::from_millis(700);
        config.hostname = Some("softether-probe".into());
        let mut client = DhcpClient::new(config, clock::now()).ok()?;
        loop {
            let now = clock::now();
            while let Some(frame) = client.poll_transmit(now) {
                self.send(frame).await;
            }
            while let Some(event) = client.poll_event() {
                if let Event::Bound(lease) = event {
                    if let Some(release) = client.release() {
                        // Sent after the ARP/ping below; keep the frame for later.
                        return Some(self.keep_release(lease, release));
                    }
                    return Some(lease);
                }
            }
            if now >= self.deadline {
                return None;
            }
            let wake = client.poll_timeout().unwrap_or(self.deadline);
            match self.recv(wake).await {
                Some(frame) => {
                    client.handle_frame(clock::now(), &frame);
                }
                None => client.handle_timeout(clock::now()),
            }
        }
    }

    fn keep_release(&mut self, lease: dhcp_client::Lease, release: Vec<u8>) -> dhcp_client::Lease {
        self.pending_release = Some(release);
        lease
    }
}

/// Runs DHCP → ARP → ping → RELEASE through the tunnel, bounded by `wait` overall.
pub async fn exchange_frames(
    tunnel: &mut TunnelHandle,
    mac: [u8; 6],
    wait: Duration,
) -> FrameReport {
    let mut ex = Exchange {
        tunnel,
        mac,
        deadline: clock::now() + wait,
        report: FrameReport {
            mac: mac_text(mac),
            ..FrameReport::default()
        },
        pending_release: None,
    };
    let Some(lease) = ex.dhcp().await else {
        return ex.report;
    };
    ex.report.dhcp_address = Some(lease.interface_address().to_string());
    ex.report.dhcp_server = Some(lease.server_id.to_string());
    ex.report.dhcp_lease_secs = Some(lease.lease_time.as_secs());
    ex.report.dns_servers = lease.dns_servers.iter().map(|d| d.to_string()).collect();
    // RFC 3442 says to ignore the router option when classless routes come along, but SecureNAT
    // pushes split routes plus a router; for probing the gateway the router is what we want.
    if let Some(gw) = lease.default_gateway().or(lease.router) {
        ex.report.gateway = Some(gw.to_string());
        if let Some(gw_mac) = ex.resolve(lease.address, gw).await {
            ex.report.gateway_mac = Some(mac_text(gw_mac));
            ex.report.ping_rtt_ms = ex.ping(lease.address, gw, gw_mac).await;
        }
    }
    if let Some(release) = ex.pending_release.take() {
        ex.report.released = ex.send(release).await;
    }
    ex.report
}

impl Exchange<'_> {
    async fn resolve(&mut self, our_ip: Ipv4Addr, target: Ipv4Addr) -> Option<[u8; 6]> {
        for _ in 0..3 {
            self.send(arp::request(self.mac, our_ip, target)).await;
            let until = clock::now() + Duration::from_millis(700);
            while let Some(frame) = self.recv(until).await {
                if let Some((ip, mac)) = arp::parse_reply(&frame) {
                    if ip == target {
                        return Some(mac);
                    }
                }
                self.answer_arp(&frame, Some(our_ip)).await;
            }
            if clock::now() >= self.deadline {
                break;
            }
        }
        None
    }

    async fn ping(
        &mut self,
        our_ip: Ipv4Addr,
        target: Ipv4Addr,
        target_mac: [u8; 6],
    ) -> Option<f64> {
        let echo = icmp::Echo {
            src_mac: self.mac,
            dst_mac: target_mac,
            src_ip: our_ip,
            dst_ip: target,
            ident: 0x5e5e,
            seq: 1,
        };
        let frame = echo.request_frame(b"softether-sidecar probe").ok()?;
        let sent = clock::now();
        self.send(frame).await;
        let until = sent + Duration::from_secs(2);
        while let Some(frame) = self.recv(until).await {
            if icmp::is_reply_to(&frame, &echo) {
                return Some(clock::now().saturating_duration_since(sent).as_secs_f64() * 1000.0);
            }
            self.answer_arp(&frame, Some(our_ip)).await;
        }
        None
    }
}
