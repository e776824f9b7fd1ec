//! The fake server's tunnel phase, and [`Pair`]: a client [`Tunnel`] and a [`FakeServer`]
//! joined by two byte queues on a fake clock — quinn-proto's `Pair` test harness, for a stream
//! protocol: time only moves when the test says so, timers fire in order, and loss is a cut
//! link (queues dropped, nothing delivered until it is restored).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{FakeServer, FakeServerConfig, Phase};
use crate::tunnel::{Tunnel, TunnelError, TunnelStats};

impl FakeServer {
    /// A server already past the handshake (as after a Welcome), its clock at `now`.
    pub fn in_tunnel_phase(config: FakeServerConfig, now: Instant) -> Self {
        let mut server = FakeServer::new(config);
        server.phase = Phase::Tunnel;
        server.clock = Some(now);
        server
    }

    /// Whether the handshake is over and tunnel records flow.
    pub fn in_tunnel(&self) -> bool {
        self.phase == Phase::Tunnel
    }

    /// Moves the server's clock to `now`. In the tunnel phase keep-alives come due, and a client
    /// silent for the session timeout is dropped (`Err`, and the server closes), as the real
    /// server does.
    pub fn advance(&mut self, now: Instant) -> Result<(), String> {
        self.clock = Some(now);
        if self.phase != Phase::Tunnel {
            return Ok(());
        }
        let result = self.tunnel_at(now).handle_timeout(now);
        result.map_err(|e| {
            self.phase = Phase::Closed;
            format!("client {e}")
        })
    }

    /// When [`FakeServer::advance`] has something to do next (tunnel phase only).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (&self.tunnel, self.phase) {
            (Some(t), Phase::Tunnel) => Some(t.poll_timeout()),
            _ => None,
        }
    }

    /// Queues an Ethernet frame to the client.
    pub fn send_frame(&mut self, frame: &[u8]) {
        if let Some(now) = self.clock {
            self.tunnel_at(now).queue_frame(frame);
        }
    }

    /// The next frame the client sent.
    pub fn poll_frame(&mut self) -> Option<Bytes> {
        self.tunnel.as_mut()?.poll_frame()
    }

    /// A silent server sends nothing more: no frames, no keep-alives (a hung server, or a
    /// blackhole on the way back).
    pub fn set_silent(&mut self, silent: bool) {
        self.silent = silent;
    }

    /// Ends the tunnel phase: nothing is sent or accepted any more.
    pub fn close(&mut self) {
        self.phase = Phase::Closed;
    }

    /// The server's tunnel counters (all zero before the tunnel phase).
    pub fn tunnel_stats(&self) -> TunnelStats {
        self.tunnel.as_ref().map(Tunnel::stats).unwrap_or_default()
    }

    fn tunnel_at(&mut self, now: Instant) -> &mut Tunnel {
        let (timeout, seed) = (self.config.timeout, self.config.seed);
        self.tunnel
            .get_or_insert_with(|| Tunnel::new(now, timeout, seed ^ 0x7e57))
    }

    pub(super) fn handle_tunnel_input(&mut self, data: &[u8]) -> Result<(), String> {
        if data.is_empty() {
            return Ok(());
        }
        let Some(now) = self.clock else {
            return Err("tunnel data before the server's clock was set (call advance)".into());
        };
        let result = self.tunnel_at(now).handle_input(now, data);
        result.map_err(|e| {
            self.phase = Phase::Closed;
            e.to_string()
        })
    }

    pub(super) fn poll_tunnel_transmit(&mut self) -> Option<Vec<u8>> {
        if self.phase != Phase::Tunnel {
            return None;
        }
        let now = self.clock?;
        let silent = self.silent;
        let tunnel = self.tunnel_at(now);
        if silent {
            // What a silent server "sends" is lost; its timers still move on.
            while tunnel.poll_transmit(now).is_some() {}
            return None;
        }
        tunnel.poll_transmit(now).map(|b| b.to_vec())
    }
}

/// A client tunnel and a fake server on one fake clock.
pub struct Pair {
    /// The fake clock; [`Pair::advance`] moves it.
    pub now: Instant,
    /// The client side: the crate's real tunnel machine.
    pub client: Tunnel,
    /// The server side.
    pub server: FakeServer,
    to_server: VecDeque<Bytes>,
    to_client: VecDeque<Vec<u8>>,
    link_up: bool,
    /// Frames the client received, in order.
    pub client_frames: Vec<Bytes>,
    /// Frames the server received, in order.
    pub server_frames: Vec<Bytes>,
    /// Why the client's tunnel failed, once it has.
    pub client_error: Option<TunnelError>,
    /// Why the server dropped the client, once it has.
    pub server_error: Option<String>,
    /// When each client record left, for keep-alive schedules.
    pub client_sent_at: Vec<Instant>,
}

impl Pair {
    /// Both sides in the tunnel phase at `now`, the session timeout from `config`.
    pub fn new(config: FakeServerConfig, now: Instant, seed: u64) -> Pair {
        let client = Tunnel::new(now, config.timeout, seed);
        Pair {
            now,
            client,
            server: FakeServer::in_tunnel_phase(config, now),
            to_server: VecDeque::new(),
            to_client: VecDeque::new(),
            link_up: true,
            client_frames: Vec::new(),
            server_frames: Vec::new(),
            client_error: None,
            server_error: None,
            client_sent_at: Vec::new(),
        }
    }

    /// Exchanges everything both sides have to send at the current time until neither has
    /// more. Bounded: a pair that keeps producing is a bug and stops after many rounds.
    pub fn drive(&mut self) {
        for _ in 0..10_000 {
            let mut progressed = false;
            if self.client_error.is_none() {
                while let Some(record) = self.client.poll_transmit(self.now) {
                    self.client_sent_at.push(self.now);
                    if self.link_up {
                        self.to_server.push_back(record);
                    }
                }
            }
            while let Some(bytes) = self.server.poll_transmit() {
                if self.link_up {
                    self.to_client.push_back(bytes);
                }
            }
            while let Some(record) = self.to_server.pop_front() {
                progressed = true;
                if let Err(e) = self.server.handle_input(&record) {
                    self.server_error.get_or_insert(e);
                }
            }
            while let Some(bytes) = self.to_client.pop_front() {
                progressed = true;
                if let Err(e) = self.client.handle_input(self.now, &bytes) {
                    self.client_error.get_or_insert(e);
                }
            }
            self.client_frames
                .extend(std::iter::from_fn(|| self.client.poll_frame()));
            self.server_frames
                .extend(std::iter::from_fn(|| self.server.poll_frame()));
            if !progressed {
                return;
            }
        }
    }

    /// Moves the clock forward by `by`, firing both sides' timers in order and exchanging what
    /// they send at each step.
    pub fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        for _ in 0..1_000_000 {
            let client = self
                .client_error
                .is_none()
                .then(|| self.client.poll_timeout());
            let next = [client, self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(at) if at <= target => self.step_to(at.max(self.now)),
                _ => break,
            }
        }
        self.step_to(target);
    }

    fn step_to(&mut self, at: Instant) {
        self.now = at;
        if self.client_error.is_none() {
            if let Err(e) = self.client.handle_timeout(at) {
                self.client_error = Some(e);
            }
        }
        if let Err(e) = self.server.advance(at) {
            self.server_error.get_or_insert(e);
        }
        self.drive();
    }

    /// Loses everything in flight and everything sent until [`Pair::restore`].
    pub fn cut(&mut self) {
        self.link_up = false;
        self.to_server.clear();
        self.to_client.clear();
    }

    /// Ends a [`Pair::cut`]: what is sent from now on arrives again.
    pub fn restore(&mut self) {
        self.link_up = true;
    }
}

#[cfg(test)]
#[path = "testing_pair_tests.rs"]
mod tests;
