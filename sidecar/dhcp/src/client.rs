//! The DHCPv4 client state machine (RFC 2131 §4.4), driven by frames and deadlines.

use crate::config::{Config, ConfigError};
use crate::lease::Lease;
use crate::message::{Destination, Outgoing};
use crate::reply::{self, Reply, DHCPACK, DHCPNAK, DHCPOFFER};
use crate::retransmit::{Backoff, SeededRng};
use dhcproto::v4::MessageType;
use std::collections::VecDeque;
use std::mem;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Where the client is in RFC 2131's state diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum State {
    /// No DISCOVER sent yet.
    Init,
    /// DISCOVER sent, waiting for an OFFER.
    Selecting,
    /// REQUEST for an offer sent, waiting for ACK/NAK.
    Requesting,
    /// REQUEST for a previously held address sent (no server id), waiting for ACK/NAK.
    InitReboot,
    /// ACK received: the lease is in use until T1.
    Bound,
    /// Past T1: unicast REQUESTs to the leasing server.
    Renewing,
    /// Past T2: broadcast REQUESTs to any server.
    Rebinding,
    /// After [`DhcpClient::release`]; [`DhcpClient::restart`] leaves it.
    Stopped,
}

/// Something the driver has to act on, from [`DhcpClient::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A lease was acquired: configure the interface.
    Bound(Lease),
    /// The lease was extended with the same configuration (only timers moved).
    Renewed(Lease),
    /// A renewal or rebind brought a different address, gateway, DNS, domain, MTU or routes.
    Changed {
        /// The lease held until now.
        old: Lease,
        /// The lease to apply instead.
        new: Lease,
    },
    /// The lease can no longer be used: remove its configuration. A new DISCOVER follows.
    Lost {
        /// The lease that was in use.
        lease: Lease,
        /// Why it ended.
        reason: LostReason,
    },
    /// A server refused a REQUEST while no lease was held; the client restarts with DISCOVER.
    Nak {
        /// The NAK's server identifier (option 54), if present.
        server_id: Option<Ipv4Addr>,
        /// The NAK's message (option 56), if present; untrusted text from the network.
        message: Option<String>,
    },
}

/// Why a lease was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LostReason {
    /// No ACK to RENEW/REBIND before the lease ran out.
    Expired,
    /// The server answered RENEW/REBIND with a NAK.
    Nak,
    /// [`DhcpClient::restart`] was called (e.g. the tunnel reconnected).
    Restarted,
}

/// One transaction: its xid and retransmit bookkeeping.
#[derive(Debug, Clone, Copy)]
struct Exchange {
    xid: u32,
    started: Instant,
    sent: u32,
    next_send: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Offer {
    address: Ipv4Addr,
    server_id: Ipv4Addr,
}

/// Each state carries the deadlines it waits for.
#[derive(Debug)]
enum Phase {
    Selecting(Exchange),
    Requesting(Exchange, Offer),
    InitReboot(Exchange, Ipv4Addr),
    Bound(Lease),
    Renewing(Exchange, Lease),
    Rebinding(Exchange, Lease),
    Stopped,
}

/// What a reply means, independent of the state it arrives in.
enum Verdict {
    Offer(Offer),
    Ack(Lease),
    Nak {
        server_id: Option<Ipv4Addr>,
        message: Option<String>,
    },
    Ignore,
}

/// Sans-IO DHCPv4 client; see the crate documentation for the calling contract.
#[derive(Debug)]
pub struct DhcpClient {
    config: Config,
    client_id: Vec<u8>,
    backoff: Backoff,
    rng: SeededRng,
    phase: Phase,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    /// Asked for first (INIT-REBOOT) on [`DhcpClient::restart`].
    previous_address: Option<Ipv4Addr>,
    naks_in_a_row: u32,
}

impl DhcpClient {
    /// Starts in INIT, or INIT-REBOOT when `config.requested_ip` is set. The first message is
    /// due immediately: call [`DhcpClient::poll_transmit`] next.
    pub fn new(config: Config, now: Instant) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut client = Self {
            client_id: config.effective_client_id(),
            backoff: Backoff {
                initial: config.initial_retransmit,
                max: config.max_retransmit,
            },
            rng: SeededRng::new(config.xid_seed),
            phase: Phase::Stopped,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            previous_address: config.requested_ip,
            naks_in_a_row: 0,
            config,
        };
        client.phase = client.initial_phase(now);
        Ok(client)
    }

    /// Cheap classifier: is this an IPv4 UDP 67→68 BOOTREPLY? A few byte comparisons, no
    /// allocation; useful to decide whether a tunnel frame needs the client at all.
    pub fn is_dhcp_reply(frame: &[u8]) -> bool {
        reply::bootp_offset(frame).is_some()
    }

    /// Feeds one Ethernet frame from the tunnel. Returns true if it was a DHCP reply for this
    /// client's current transaction (our xid and chaddr), whether or not it changed the state.
    /// Everything else returns false after a few byte comparisons.
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) -> bool {
        let Some(at) = reply::bootp_offset(frame) else {
            return false;
        };
        let Some(xid) = self.current_xid() else {
            return false;
        };
        if !reply::is_for(frame, at, xid, &self.config.mac) {
            return false;
        }
        let Some(reply) = reply::parse(frame) else {
            return false;
        };
        let verdict = self.judge(reply, now);
        let phase = mem::replace(&mut self.phase, Phase::Stopped);
        self.phase = self.on_verdict(phase, verdict, now);
        true
    }

    /// Runs every timer due at `now`: retransmits, T1, T2, expiry, fallbacks.
    pub fn handle_timeout(&mut self, now: Instant) {
        // A late call can cross several deadlines at once (T1, T2 and expiry after a long
        // stall); each pass takes one transition and there are at most four in a row.
        for _ in 0..8 {
            let phase = mem::replace(&mut self.phase, Phase::Stopped);
            let (next, again) = self.on_timeout(phase, now);
            self.phase = next;
            if !again {
                break;
            }
        }
    }

    /// Next frame to send through the tunnel, as a complete Ethernet frame. Runs due timers
    /// first, so calling this until `None` after every input is enough to stay current.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.handle_timeout(now);
        self.transmits.pop_front()
    }

    /// Next event for the driver (lease acquired, renewed, changed, lost, NAK).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`DhcpClient::handle_timeout`] must be called next; `None` when nothing is scheduled
    /// (stopped, or bound with an infinite lease).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Selecting(ex) | Phase::Requesting(ex, _) | Phase::InitReboot(ex, _) => {
                Some(ex.next_send)
            }
            Phase::Bound(lease) => lease.renew_deadline(),
            Phase::Renewing(ex, lease) => earliest(ex.next_send, lease.rebind_deadline()),
            Phase::Rebinding(ex, lease) => earliest(ex.next_send, lease.expires_at()),
            Phase::Stopped => None,
        }
    }

    /// The lease in use (bound, renewing or rebinding).
    pub fn lease(&self) -> Option<&Lease> {
        match &self.phase {
            Phase::Bound(lease) | Phase::Renewing(_, lease) | Phase::Rebinding(_, lease) => {
                Some(lease)
            }
            _ => None,
        }
    }

    /// The RFC 2131 state the client is in.
    pub fn state(&self) -> State {
        match &self.phase {
            Phase::Selecting(ex) if ex.sent == 0 => State::Init,
            Phase::Selecting(_) => State::Selecting,
            Phase::Requesting(..) => State::Requesting,
            Phase::InitReboot(..) => State::InitReboot,
            Phase::Bound(_) => State::Bound,
            Phase::Renewing(..) => State::Renewing,
            Phase::Rebinding(..) => State::Rebinding,
            Phase::Stopped => State::Stopped,
        }
    }

    /// The configuration the client was created with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Clean shutdown: returns the RELEASE frame (unicast to the leasing server) if a lease was
    /// held, drops queued frames and stops. No event is emitted; the caller initiated this.
    pub fn release(&mut self) -> Option<Vec<u8>> {
        self.transmits.clear();
        let lease = match mem::replace(&mut self.phase, Phase::Stopped) {
            Phase::Bound(lease) | Phase::Renewing(_, lease) | Phase::Rebinding(_, lease) => lease,
            _ => return None,
        };
        let xid = self.rng.next_u32();
        Outgoing {
            kind: MessageType::Release,
            xid,
            secs: 0,
            mac: self.config.mac,
            ciaddr: lease.address,
            broadcast_flag: false,
            requested_ip: None,
            server_id: Some(lease.server_id),
            client_id: &self.client_id,
            hostname: None,
            destination: unicast_to_server(&lease),
        }
        .to_frame()
        .ok()
    }

    /// Starts over, e.g. after the tunnel reconnected: a held lease is reported
    /// [`LostReason::Restarted`], queued frames are dropped, and the client asks for the last
    /// address it held (INIT-REBOOT) before falling back to DISCOVER. Also leaves `Stopped`.
    pub fn restart(&mut self, now: Instant) {
        self.transmits.clear();
        if let Phase::Bound(lease) | Phase::Renewing(_, lease) | Phase::Rebinding(_, lease) =
            mem::replace(&mut self.phase, Phase::Stopped)
        {
            self.events.push_back(Event::Lost {
                lease,
                reason: LostReason::Restarted,
            });
        }
        self.naks_in_a_row = 0;
        self.phase = self.initial_phase(now);
    }

    fn initial_phase(&mut self, now: Instant) -> Phase {
        let ex = self.new_exchange(now);
        match self.previous_address {
            Some(address) => Phase::InitReboot(ex, address),
            None => Phase::Selecting(ex),
        }
    }

    fn new_exchange(&mut self, now: Instant) -> Exchange {
        Exchange {
            xid: self.rng.next_u32(),
            started: now,
            sent: 0,
            next_send: now,
        }
    }

    fn current_xid(&self) -> Option<u32> {
        match &self.phase {
            Phase::Selecting(ex)
            | Phase::Requesting(ex, _)
            | Phase::InitReboot(ex, _)
            | Phase::Renewing(ex, _)
            | Phase::Rebinding(ex, _) => Some(ex.xid),
            Phase::Bound(_) | Phase::Stopped => None,
        }
    }

    fn judge(&self, reply: Reply, now: Instant) -> Verdict {
        // Without option 54 the ACK is attributed to the server we were talking to.
        let fallback_server = match &self.phase {
            Phase::Requesting(_, offer) => offer.server_id,
            Phase::Renewing(_, lease) | Phase::Rebinding(_, lease) => lease.server_id,
            _ => reply.src_ip,
        };
        match reply.message_type {
            Some(DHCPOFFER) => match reply.server_id {
                Some(server_id) if usable_address(reply.yiaddr) => Verdict::Offer(Offer {
                    address: reply.yiaddr,
                    server_id,
                }),
                _ => Verdict::Ignore,
            },
            Some(DHCPACK) => {
                Lease::from_ack(&reply, now, fallback_server).map_or(Verdict::Ignore, Verdict::Ack)
            }
            Some(DHCPNAK) => Verdict::Nak {
                server_id: reply.server_id,
                message: reply.message,
            },
            _ => Verdict::Ignore,
        }
    }

    fn on_verdict(&mut self, phase: Phase, verdict: Verdict, now: Instant) -> Phase {
        match (phase, verdict) {
            (Phase::Selecting(ex), Verdict::Offer(offer)) => {
                // Take the first offer; REQUEST keeps the DISCOVER's xid and goes out now.
                let ex = Exchange {
                    sent: 0,
                    next_send: now,
                    ..ex
                };
                Phase::Requesting(ex, offer)
            }
            (Phase::Requesting(_, offer), Verdict::Ack(lease))
                if lease.server_id == offer.server_id =>
            {
                self.bind(lease, None)
            }
            (Phase::Requesting(_, offer), Verdict::Nak { server_id, message })
                if server_id.is_none_or(|id| id == offer.server_id) =>
            {
                self.on_nak(server_id, message, now)
            }
            (Phase::InitReboot(..), Verdict::Ack(lease)) => self.bind(lease, None),
            (Phase::InitReboot(..), Verdict::Nak { server_id, message }) => {
                self.on_nak(server_id, message, now)
            }
            (Phase::Renewing(_, old) | Phase::Rebinding(_, old), Verdict::Ack(lease)) => {
                self.bind(lease, Some(old))
            }
            (Phase::Renewing(_, old) | Phase::Rebinding(_, old), Verdict::Nak { .. }) => {
                self.events.push_back(Event::Lost {
                    lease: old,
                    reason: LostReason::Nak,
                });
                self.previous_address = None;
                Phase::Selecting(self.new_exchange(now))
            }
            (phase, _) => phase,
        }
    }

    fn bind(&mut self, lease: Lease, old: Option<Lease>) -> Phase {
        self.naks_in_a_row = 0;
        self.previous_address = Some(lease.address);
        self.events.push_back(match old {
            None => Event::Bound(lease.clone()),
            Some(old) if old.same_configuration(&lease) => Event::Renewed(lease.clone()),
            Some(old) => Event::Changed {
                old,
                new: lease.clone(),
            },
        });
        Phase::Bound(lease)
    }

    fn on_nak(
        &mut self,
        server_id: Option<Ipv4Addr>,
        message: Option<String>,
        now: Instant,
    ) -> Phase {
        self.events.push_back(Event::Nak { server_id, message });
        self.previous_address = None;
        // Restart at once, but a server that NAKs every REQUEST must not get a tight loop.
        let delay = if self.naks_in_a_row == 0 {
            Duration::ZERO
        } else {
            self.config.initial_retransmit
        };
        self.naks_in_a_row = self.naks_in_a_row.saturating_add(1);
        let mut ex = self.new_exchange(now);
        ex.next_send = now + delay;
        Phase::Selecting(ex)
    }

    /// Returns the next phase and whether to look at it again at the same `now`.
    fn on_timeout(&mut self, phase: Phase, now: Instant) -> (Phase, bool) {
        match phase {
            Phase::Selecting(mut ex) => {
                if now >= ex.next_send {
                    self.send(
                        MessageType::Discover,
                        &ex,
                        now,
                        None,
                        None,
                        Sender::Unconfigured,
                    );
                    self.schedule(&mut ex, now);
                }
                (Phase::Selecting(ex), false)
            }
            Phase::Requesting(mut ex, offer) => {
                if now < ex.next_send {
                    return (Phase::Requesting(ex, offer), false);
                }
                if ex.sent >= self.config.request_attempts {
                    return (Phase::Selecting(self.new_exchange(now)), true);
                }
                let (ip, id) = (Some(offer.address), Some(offer.server_id));
                self.send(MessageType::Request, &ex, now, ip, id, Sender::Unconfigured);
                self.schedule(&mut ex, now);
                (Phase::Requesting(ex, offer), false)
            }
            Phase::InitReboot(mut ex, address) => {
                if now < ex.next_send {
                    return (Phase::InitReboot(ex, address), false);
                }
                if ex.sent >= self.config.init_reboot_attempts {
                    return (Phase::Selecting(self.new_exchange(now)), true);
                }
                let ip = Some(address);
                self.send(
                    MessageType::Request,
                    &ex,
                    now,
                    ip,
                    None,
                    Sender::Unconfigured,
                );
                self.schedule(&mut ex, now);
                (Phase::InitReboot(ex, address), false)
            }
            Phase::Bound(lease) => match lease.renew_deadline() {
                Some(t1) if now >= t1 => (Phase::Renewing(self.new_exchange(now), lease), true),
                _ => (Phase::Bound(lease), false),
            },
            Phase::Renewing(mut ex, lease) => {
                let t2 = lease.rebind_deadline();
                if t2.is_some_and(|t2| now >= t2) {
                    return (Phase::Rebinding(self.new_exchange(now), lease), true);
                }
                if now >= ex.next_send {
                    let from = Sender::Renewing(&lease);
                    self.send(MessageType::Request, &ex, now, None, None, from);
                    self.schedule_until(&mut ex, now, t2);
                }
                (Phase::Renewing(ex, lease), false)
            }
            Phase::Rebinding(mut ex, lease) => {
                let expiry = lease.expires_at();
                if expiry.is_some_and(|end| now >= end) {
                    self.events.push_back(Event::Lost {
                        lease,
                        reason: LostReason::Expired,
                    });
                    return (Phase::Selecting(self.new_exchange(now)), true);
                }
                if now >= ex.next_send {
                    let from = Sender::Rebinding(&lease);
                    self.send(MessageType::Request, &ex, now, None, None, from);
                    self.schedule_until(&mut ex, now, expiry);
                }
                (Phase::Rebinding(ex, lease), false)
            }
            Phase::Stopped => (Phase::Stopped, false),
        }
    }

    fn schedule(&mut self, ex: &mut Exchange, now: Instant) {
        ex.next_send = now + self.backoff.delay(ex.sent, &mut self.rng);
        ex.sent = ex.sent.saturating_add(1);
    }

    /// RFC 2131 §4.4.5: retry after half the time left before `end`, but no sooner than 60 s
    /// (or `max_retransmit` if that is shorter), and never past `end`.
    fn schedule_until(&mut self, ex: &mut Exchange, now: Instant, end: Option<Instant>) {
        let floor = self.config.max_retransmit.min(Duration::from_secs(60));
        let left = end.map_or(floor, |end| end.saturating_duration_since(now));
        let next = now + (left / 2).max(floor);
        ex.next_send = end.map_or(next, |end| next.min(end));
        ex.sent = ex.sent.saturating_add(1);
    }

    /// Queues a DISCOVER or REQUEST.
    fn send(
        &mut self,
        kind: MessageType,
        ex: &Exchange,
        now: Instant,
        requested_ip: Option<Ipv4Addr>,
        server_id: Option<Ipv4Addr>,
        from: Sender<'_>,
    ) {
        let secs = now.saturating_duration_since(ex.started).as_secs();
        let (ciaddr, destination) = match from {
            Sender::Unconfigured => (
                Ipv4Addr::UNSPECIFIED,
                Destination::Broadcast {
                    src_ip: Ipv4Addr::UNSPECIFIED,
                },
            ),
            Sender::Renewing(lease) => (lease.address, unicast_to_server(lease)),
            Sender::Rebinding(lease) => (
                lease.address,
                Destination::Broadcast {
                    src_ip: lease.address,
                },
            ),
        };
        let frame = Outgoing {
            kind,
            xid: ex.xid,
            secs: u16::try_from(secs).unwrap_or(u16::MAX),
            mac: self.config.mac,
            ciaddr,
            broadcast_flag: matches!(from, Sender::Unconfigured),
            requested_ip,
            server_id,
            client_id: &self.client_id,
            hostname: self.config.hostname.as_deref(),
            destination,
        }
        .to_frame();
        // Config validation makes encoding infallible; a failure would only lose this send.
        if let Ok(frame) = frame {
            self.transmits.push_back(frame);
        }
    }
}

/// Who the client is when it sends, which decides addressing.
#[derive(Clone, Copy)]
enum Sender<'a> {
    /// No address yet: broadcast from 0.0.0.0 with the broadcast flag set.
    Unconfigured,
    /// Before T2: unicast to the leasing server's MAC and address, from our address.
    Renewing(&'a Lease),
    /// After T2: broadcast to any server, from our address.
    Rebinding(&'a Lease),
}

fn unicast_to_server(lease: &Lease) -> Destination {
    Destination::Unicast {
        mac: lease.server_mac,
        ip: lease.server_id,
        src_ip: lease.address,
    }
}

fn usable_address(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast())
}

fn earliest(a: Instant, b: Option<Instant>) -> Option<Instant> {
    Some(b.map_or(a, |b| a.min(b)))
}

#[cfg(test)]
mod tests;
