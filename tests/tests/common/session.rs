//! Helpers for end-to-end tests that drive a SoftEther session from the library: run async
//! code inside a lab namespace, and play a tiny IPv4 host on the tunnel (ARP + ICMP).
#![allow(dead_code)] // each test binary uses a different subset

use std::future::Future;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dhcp_client::{arp, icmp};
use softether_sidecar::transport::driver::TunnelHandle;

/// Runs `make()`'s future on a fresh current-thread runtime on a thread that entered the
/// network namespace `ns` (sockets created there live in that namespace).
pub fn block_on_in_netns<Fut, T>(ns: &str, make: impl FnOnce() -> Fut + Send) -> T
where
    Fut: Future<Output = T>,
    T: Send,
{
    netcfg::Netns::named(ns)
        .run(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(make())
        })
        .unwrap_or_else(|e| panic!("cannot enter netns {ns}: {e}"))
}

/// A minimal IPv4 host behind a tunnel: answers ARP for its address, resolves and pings others.
pub struct TunnelHost {
    pub tunnel: TunnelHandle,
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    seq: u16,
}

impl TunnelHost {
    pub fn new(tunnel: TunnelHandle, mac: [u8; 6], ip: Ipv4Addr) -> Self {
        TunnelHost {
            tunnel,
            mac,
            ip,
            seq: 0,
        }
    }

    pub async fn send(&self, frame: Vec<u8>) {
        self.tunnel
            .outgoing
            .send(frame.into())
            .await
            .expect("tunnel driver gone");
    }

    /// Waits up to `timeout` for a frame for which `pick` returns `Some`, answering ARP
    /// requests for our address meanwhile.
    pub async fn wait_for<T>(
        &mut self,
        timeout: Duration,
        mut pick: impl FnMut(&[u8]) -> Option<T>,
    ) -> Option<T> {
        let until = Instant::now() + timeout;
        loop {
            let frame = tokio::time::timeout_at(until.into(), self.tunnel.incoming.recv())
                .await
                .ok()??;
            if let Some(found) = pick(&frame) {
                return Some(found);
            }
            if let Some(req) = arp::parse(&frame) {
                if req.operation == arp::ArpOperation::Request && req.target_ip == self.ip {
                    self.send(arp::reply(self.mac, self.ip, req.sender_mac, req.sender_ip))
                        .await;
                }
            }
        }
    }

    /// ARP for `target`; up to three tries, one second each.
    pub async fn resolve(&mut self, target: Ipv4Addr) -> Option<[u8; 6]> {
        for _ in 0..3 {
            self.send(arp::request(self.mac, self.ip, target)).await;
            let found = self
                .wait_for(Duration::from_secs(1), |f| {
                    arp::parse_reply(f).and_then(|(ip, mac)| (ip == target).then_some(mac))
                })
                .await;
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// One ICMP echo to `target` at `target_mac`; the round-trip time if answered in 2 s.
    pub async fn ping(&mut self, target: Ipv4Addr, target_mac: [u8; 6]) -> Option<Duration> {
        self.seq = self.seq.wrapping_add(1);
        let echo = icmp::Echo {
            src_mac: self.mac,
            dst_mac: target_mac,
            src_ip: self.ip,
            dst_ip: target,
            ident: 0x7e57,
            seq: self.seq,
        };
        let frame = echo
            .request_frame(b"softether-cni e2e")
            .expect("echo frame");
        let sent = Instant::now();
        self.send(frame).await;
        self.wait_for(Duration::from_secs(2), |f| {
            icmp::is_reply_to(f, &echo).then_some(())
        })
        .await?;
        Some(sent.elapsed())
    }

    /// Resolve + ping, with up to `tries` pings.
    pub async fn reach(&mut self, target: Ipv4Addr, tries: usize) -> Option<Duration> {
        let mac = self.resolve(target).await?;
        for _ in 0..tries {
            if let Some(rtt) = self.ping(target, mac).await {
                return Some(rtt);
            }
        }
        None
    }
}
