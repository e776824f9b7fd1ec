//! The DHCPv6 client state machine (RFC 8415 §18): stateful (Solicit → Advertise → Request →
//! Reply, Renew at T1, Rebind at T2, Release) or stateless (Information-request → Reply,
//! refreshed after the Information Refresh Time). The router advertisement's M/O flags decide
//! which one runs (see [`super::Ipv6Client`]).

use super::dhcp6_wire::{
    self, IaAddress, Outgoing6, Reply6, ADVERTISE, REPLY, STATUS_NOT_ON_LINK,
    STATUS_NO_ADDRS_AVAIL, STATUS_NO_BINDING, STATUS_SUCCESS,
};
use super::retrans::{Retrans, Timing};
use crate::retransmit::SeededRng;
use dhcproto::v6::MessageType;
use std::mem;
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

/// RFC 8415 §7.6: default and minimum Information Refresh Time.
const IRT_DEFAULT: Duration = Duration::from_secs(86_400);
const IRT_MINIMUM: Duration = Duration::from_secs(600);
/// Lifetimes shorter than this are stretched, so a broken server cannot make the client spin.
const MIN_LIFETIME: Duration = Duration::from_secs(10);
const INFINITY: u32 = u32::MAX;

/// Where the DHCPv6 client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dhcp6State {
    /// No router asked for DHCPv6 (M and O clear), or not started yet.
    Idle,
    /// SOLICIT sent, waiting for an ADVERTISE.
    Soliciting,
    /// REQUEST sent, waiting for a REPLY.
    Requesting,
    /// Address leased, until T1.
    Bound,
    /// Past T1: RENEW to the leasing server.
    Renewing,
    /// Past T2: REBIND to any server.
    Rebinding,
    /// Information-request sent (stateless, O flag).
    Informing,
    /// Stateless configuration received; refreshed later.
    Informed,
    /// The client was stopped.
    Stopped,
}

/// Addresses and options from a DHCPv6 Reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Binding {
    pub server_id: Vec<u8>,
    /// Each with its own valid-until (`None`: infinite).
    pub addresses: Vec<(Ipv6Addr, Option<Instant>)>,
    pub dns: Vec<Ipv6Addr>,
    pub domains: Vec<String>,
    pub renew_at: Option<Instant>,
    pub rebind_at: Option<Instant>,
}

impl Binding {
    /// The last valid-until: when nothing is left (`None`: infinite).
    fn expires_at(&self) -> Option<Instant> {
        let mut latest = None;
        for (_, until) in &self.addresses {
            match until {
                None => return None,
                Some(t) => latest = Some(latest.map_or(*t, |l: Instant| l.max(*t))),
            }
        }
        latest
    }
}

#[derive(Debug, Clone)]
struct Offer {
    server_id: Vec<u8>,
    preference: u8,
    addresses: Vec<Ipv6Addr>,
}

#[derive(Debug)]
enum Phase {
    Idle,
    Soliciting(Retrans, Option<Offer>),
    Requesting(Retrans, Offer),
    Bound(Binding),
    Renewing(Retrans, Binding),
    Rebinding(Retrans, Binding),
    /// With the previous stateless values, kept in use while refreshing.
    Informing(Retrans, Option<Binding>),
    /// DNS, domains and when to ask again.
    Informed(Binding, Instant),
    Stopped,
}

#[derive(Debug)]
pub(crate) struct Dhcp6Client {
    mac: [u8; 6],
    duid: Vec<u8>,
    iaid: u32,
    rng: SeededRng,
    phase: Phase,
    pub(crate) transmits: Vec<Vec<u8>>,
}

impl Dhcp6Client {
    pub(crate) fn new(mac: [u8; 6], iaid: u32, seed: u64) -> Self {
        Dhcp6Client {
            mac,
            duid: dhcp6_wire::duid_ll(mac),
            iaid,
            rng: SeededRng::new(seed ^ 0x6666_6666),
            phase: Phase::Idle,
            transmits: Vec::new(),
        }
    }

    pub(crate) fn state(&self) -> Dhcp6State {
        match &self.phase {
            Phase::Idle => Dhcp6State::Idle,
            Phase::Soliciting(..) => Dhcp6State::Soliciting,
            Phase::Requesting(..) => Dhcp6State::Requesting,
            Phase::Bound(_) => Dhcp6State::Bound,
            Phase::Renewing(..) => Dhcp6State::Renewing,
            Phase::Rebinding(..) => Dhcp6State::Rebinding,
            Phase::Informing(..) => Dhcp6State::Informing,
            Phase::Informed(..) => Dhcp6State::Informed,
            Phase::Stopped => Dhcp6State::Stopped,
        }
    }

    pub(crate) fn duid(&self) -> &[u8] {
        &self.duid
    }

    /// What the client currently holds (addresses, DNS, domains).
    pub(crate) fn binding(&self) -> Option<&Binding> {
        match &self.phase {
            Phase::Bound(b) | Phase::Renewing(_, b) | Phase::Rebinding(_, b) => Some(b),
            Phase::Informed(b, _) | Phase::Informing(_, Some(b)) => Some(b),
            _ => None,
        }
    }

    /// A router advertised M/O: start stateful (M) or stateless (O only) configuration. A
    /// running stateful client is never downgraded; a stateless one moves to stateful on M.
    pub(crate) fn on_flags(&mut self, managed: bool, other: bool, now: Instant) {
        let start_stateful = managed
            && matches!(
                self.phase,
                Phase::Idle | Phase::Informing(..) | Phase::Informed(..)
            );
        if start_stateful {
            self.phase = Phase::Soliciting(self.exchange(Timing::SOLICIT, now, None), None);
        } else if other && matches!(self.phase, Phase::Idle) {
            self.phase =
                Phase::Informing(self.exchange(Timing::INFORMATION_REQUEST, now, None), None);
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Soliciting(ex, _) | Phase::Requesting(ex, _) | Phase::Informing(ex, _) => {
                Some(ex.next_send)
            }
            Phase::Bound(b) => earliest([b.renew_at, first_expiry(b)]),
            Phase::Renewing(ex, b) => earliest([Some(ex.next_send), b.rebind_at, first_expiry(b)]),
            Phase::Rebinding(ex, b) => earliest([Some(ex.next_send), first_expiry(b)]),
            Phase::Informed(_, refresh) => Some(*refresh),
            Phase::Idle | Phase::Stopped => None,
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        // Each pass takes one transition; a late call can cross T1, T2 and expiry at once.
        for _ in 0..8 {
            let phase = mem::replace(&mut self.phase, Phase::Stopped);
            let (next, again) = self.on_timeout(phase, now);
            self.phase = next;
            if !again {
                break;
            }
        }
    }

    fn on_timeout(&mut self, phase: Phase, now: Instant) -> (Phase, bool) {
        match phase {
            Phase::Soliciting(mut ex, best) => {
                if now < ex.next_send {
                    return (Phase::Soliciting(ex, best), false);
                }
                // The first RT collects Advertises (RFC 8415 §18.2.1); then take the best.
                if let Some(offer) = best {
                    return (self.request(offer, now), true);
                }
                self.send(MessageType::Solicit, &ex, now, None, &[]);
                ex.sent_at(now, &mut self.rng, true);
                (Phase::Soliciting(ex, None), false)
            }
            Phase::Requesting(mut ex, offer) => {
                if ex.exhausted(now) {
                    let ex = self.exchange(Timing::SOLICIT, now, None);
                    return (Phase::Soliciting(ex, None), true);
                }
                if now >= ex.next_send {
                    let server = offer.server_id.clone();
                    self.send(
                        MessageType::Request,
                        &ex,
                        now,
                        Some(&server),
                        &offer.addresses,
                    );
                    ex.sent_at(now, &mut self.rng, false);
                }
                (Phase::Requesting(ex, offer), false)
            }
            Phase::Informing(mut ex, old) => {
                if now >= ex.next_send {
                    self.send(MessageType::InformationRequest, &ex, now, None, &[]);
                    ex.sent_at(now, &mut self.rng, false);
                }
                (Phase::Informing(ex, old), false)
            }
            Phase::Informed(binding, refresh) => {
                if now < refresh {
                    return (Phase::Informed(binding, refresh), false);
                }
                let ex = self.exchange(Timing::INFORMATION_REQUEST, now, None);
                // Keep using the old values until the new Reply arrives: nothing expires here.
                (Phase::Informing(ex, Some(binding)), true)
            }
            Phase::Bound(mut b) => {
                if drop_expired(&mut b, now) {
                    return (self.lost(now), true);
                }
                match b.renew_at {
                    Some(t1) if now >= t1 => {
                        let ex = self.exchange(Timing::RENEW, now, b.rebind_at);
                        (Phase::Renewing(ex, b), true)
                    }
                    _ => (Phase::Bound(b), false),
                }
            }
            Phase::Renewing(mut ex, mut b) => {
                if drop_expired(&mut b, now) {
                    return (self.lost(now), true);
                }
                if b.rebind_at.is_some_and(|t2| now >= t2) {
                    let ex = self.exchange(Timing::REBIND, now, b.expires_at());
                    return (Phase::Rebinding(ex, b), true);
                }
                if now >= ex.next_send {
                    let addrs = addresses(&b);
                    let server = b.server_id.clone();
                    self.send(MessageType::Renew, &ex, now, Some(&server), &addrs);
                    ex.sent_at(now, &mut self.rng, false);
                }
                (Phase::Renewing(ex, b), false)
            }
            Phase::Rebinding(mut ex, mut b) => {
                if drop_expired(&mut b, now) {
                    return (self.lost(now), true);
                }
                if now >= ex.next_send {
                    self.send(MessageType::Rebind, &ex, now, None, &addresses(&b));
                    ex.sent_at(now, &mut self.rng, false);
                }
                (Phase::Rebinding(ex, b), false)
            }
            phase @ (Phase::Idle | Phase::Stopped) => (phase, false),
        }
    }

    /// Feeds a frame accepted by [`dhcp6_wire::is_dhcpv6_reply`]. True if it answered our
    /// current transaction (xid and client id), whether or not it changed anything.
    pub(crate) fn handle_frame(&mut self, now: Instant, frame: &[u8]) -> bool {
        let Some(xid) = self.current_xid() else {
            return false;
        };
        let Some(reply) = dhcp6_wire::parse_reply(frame, self.iaid) else {
            return false;
        };
        if reply.xid != xid || reply.client_id.as_deref() != Some(&self.duid[..]) {
            return false;
        }
        let Some(server_id) = reply.server_id.clone() else {
            return true;
        };
        let phase = mem::replace(&mut self.phase, Phase::Stopped);
        self.phase = self.on_reply(phase, reply, server_id, now);
        true
    }

    fn on_reply(&mut self, phase: Phase, reply: Reply6, server_id: Vec<u8>, now: Instant) -> Phase {
        match (phase, reply.kind) {
            (Phase::Soliciting(ex, best), ADVERTISE) => {
                let Some(offer) = offer(&reply, server_id) else {
                    return Phase::Soliciting(ex, best);
                };
                // Preference 255, or any Advertise after the first RT: request at once.
                if offer.preference == 255 || ex.sent > 1 {
                    return self.request(offer, now);
                }
                let best = match best {
                    Some(b) if b.preference >= offer.preference => b,
                    _ => offer,
                };
                Phase::Soliciting(ex, Some(best))
            }
            (Phase::Requesting(ex, offer), REPLY) if offer.server_id == server_id => {
                match self.bind(&reply, server_id, now) {
                    Some(b) => Phase::Bound(b),
                    None if ia_status(&reply) == Some(STATUS_NOT_ON_LINK)
                        || ia_status(&reply) == Some(STATUS_NO_ADDRS_AVAIL) =>
                    {
                        Phase::Soliciting(self.delayed_solicit(now), None)
                    }
                    None => Phase::Requesting(ex, offer),
                }
            }
            (Phase::Renewing(ex, old), REPLY) => {
                self.on_extension_reply(&reply, server_id, old, now, |old| Phase::Renewing(ex, old))
            }
            (Phase::Rebinding(ex, old), REPLY) => {
                self.on_extension_reply(&reply, server_id, old, now, |old| {
                    Phase::Rebinding(ex, old)
                })
            }
            (Phase::Informing(ex, old), REPLY) => {
                if reply.status.is_some_and(|s| s != STATUS_SUCCESS) {
                    return Phase::Informing(ex, old);
                }
                let refresh = reply
                    .refresh_secs
                    .map_or(IRT_DEFAULT, |s| Duration::from_secs(u64::from(s)))
                    .max(IRT_MINIMUM);
                let info = Binding {
                    server_id,
                    addresses: Vec::new(),
                    dns: reply.dns,
                    domains: reply.domains,
                    renew_at: None,
                    rebind_at: None,
                };
                let refresh_at = if reply.refresh_secs == Some(INFINITY) {
                    // Far enough to never matter, near enough not to overflow Instant.
                    now + Duration::from_secs(u64::from(u32::MAX))
                } else {
                    now + refresh
                };
                Phase::Informed(info, refresh_at)
            }
            (phase, _) => phase,
        }
    }

    /// A Reply to Renew or Rebind: the extended binding, a new Request when the server lost
    /// ours (NoBinding, RFC 8415 §18.2.10.1), else the old binding kept until it expires.
    fn on_extension_reply(
        &mut self,
        reply: &Reply6,
        server_id: Vec<u8>,
        old: Binding,
        now: Instant,
        keep: impl FnOnce(Binding) -> Phase,
    ) -> Phase {
        if let Some(b) = self.bind(reply, server_id.clone(), now) {
            return Phase::Bound(b);
        }
        if ia_status(reply) == Some(STATUS_NO_BINDING) {
            let offer = Offer {
                server_id,
                preference: 0,
                addresses: addresses(&old),
            };
            return self.request(offer, now);
        }
        keep(old)
    }

    /// A Reply granting at least one address in our IA_NA, as a binding.
    fn bind(&self, reply: &Reply6, server_id: Vec<u8>, now: Instant) -> Option<Binding> {
        if reply.status.is_some_and(|s| s != STATUS_SUCCESS) {
            return None;
        }
        let ia = reply.ia_na.as_ref()?;
        if ia.status.is_some_and(|s| s != STATUS_SUCCESS) || (ia.t2 != 0 && ia.t1 > ia.t2) {
            return None;
        }
        let granted: Vec<&IaAddress> = ia
            .addresses
            .iter()
            .filter(|a| {
                a.valid_secs > 0
                    && a.preferred_secs <= a.valid_secs
                    && super::addr::is_usable_unicast(a.addr)
            })
            .collect();
        if granted.is_empty() {
            return None;
        }
        let lifetime = |secs: u32| {
            (secs != INFINITY).then(|| now + Duration::from_secs(u64::from(secs)).max(MIN_LIFETIME))
        };
        let shortest_preferred = granted.iter().map(|a| a.preferred_secs).min().unwrap_or(0);
        // T1/T2 of 0 leave the choice to the client: 0.5 and 0.8 of the preferred lifetime.
        let timer = |t: u32, fraction: u32| match t {
            INFINITY => None,
            0 if shortest_preferred == INFINITY => None,
            0 => Some(
                now + (Duration::from_secs(u64::from(shortest_preferred)) * fraction / 10)
                    .max(MIN_LIFETIME / 2),
            ),
            t => Some(now + Duration::from_secs(u64::from(t)).max(MIN_LIFETIME / 2)),
        };
        Some(Binding {
            server_id,
            addresses: granted
                .iter()
                .map(|a| (a.addr, lifetime(a.valid_secs)))
                .collect(),
            dns: reply.dns.clone(),
            domains: reply.domains.clone(),
            renew_at: timer(ia.t1, 5),
            rebind_at: timer(ia.t2, 8),
        })
    }

    fn request(&mut self, offer: Offer, now: Instant) -> Phase {
        Phase::Requesting(self.exchange(Timing::REQUEST, now, None), offer)
    }

    fn lost(&mut self, now: Instant) -> Phase {
        Phase::Soliciting(self.exchange(Timing::SOLICIT, now, None), None)
    }

    /// A Solicit after a refusal waits one SOL_TIMEOUT so a refusing server is not hammered.
    fn delayed_solicit(&mut self, now: Instant) -> Retrans {
        let mut ex = self.exchange(Timing::SOLICIT, now, None);
        ex.next_send = now + Timing::SOLICIT.initial;
        ex
    }

    fn exchange(&mut self, timing: Timing, now: Instant, end: Option<Instant>) -> Retrans {
        Retrans::new(timing, self.rng.next_u32(), now, end)
    }

    fn current_xid(&self) -> Option<u32> {
        match &self.phase {
            Phase::Soliciting(ex, _)
            | Phase::Requesting(ex, _)
            | Phase::Renewing(ex, _)
            | Phase::Rebinding(ex, _)
            | Phase::Informing(ex, _) => Some(ex.xid),
            _ => None,
        }
    }

    /// The Release for a held binding (sent once, not retransmitted: the caller is leaving).
    pub(crate) fn release(&mut self) -> Option<Vec<u8>> {
        let phase = mem::replace(&mut self.phase, Phase::Stopped);
        let (Phase::Bound(b) | Phase::Renewing(_, b) | Phase::Rebinding(_, b)) = phase else {
            return None;
        };
        let xid = self.rng.next_u32();
        Outgoing6 {
            kind: MessageType::Release,
            xid,
            elapsed_centis: 0,
            mac: self.mac,
            duid: &self.duid,
            server_id: Some(&b.server_id),
            ia_na: Some((self.iaid, &addresses(&b))),
        }
        .to_frame()
        .ok()
    }

    /// After a reconnect: a held binding is confirmed with Rebind (RFC 8415 §18.2.12) and kept
    /// meanwhile; stateless information is asked for again; anything else starts over.
    pub(crate) fn restart(&mut self, now: Instant) {
        self.transmits.clear();
        self.phase = match mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Bound(b) | Phase::Renewing(_, b) | Phase::Rebinding(_, b) => {
                let ex = self.exchange(Timing::REBIND, now, b.expires_at());
                Phase::Rebinding(ex, b)
            }
            Phase::Informed(b, _) | Phase::Informing(_, Some(b)) => {
                let ex = self.exchange(Timing::INFORMATION_REQUEST, now, None);
                Phase::Informing(ex, Some(b))
            }
            Phase::Informing(_, None) => {
                Phase::Informing(self.exchange(Timing::INFORMATION_REQUEST, now, None), None)
            }
            Phase::Soliciting(..) | Phase::Requesting(..) => self.lost(now),
            Phase::Idle | Phase::Stopped => Phase::Idle,
        };
    }

    fn send(
        &mut self,
        kind: MessageType,
        ex: &Retrans,
        now: Instant,
        server_id: Option<&[u8]>,
        addrs: &[Ipv6Addr],
    ) {
        let ia_na = (kind != MessageType::InformationRequest).then_some((self.iaid, addrs));
        let frame = Outgoing6 {
            kind,
            xid: ex.xid,
            elapsed_centis: ex.elapsed_centis(now),
            mac: self.mac,
            duid: &self.duid,
            server_id,
            ia_na,
        }
        .to_frame();
        // Options are bounded by construction; a failure would only lose this send.
        if let Ok(frame) = frame {
            self.transmits.push(frame);
        }
    }
}

fn offer(reply: &Reply6, server_id: Vec<u8>) -> Option<Offer> {
    if reply.status.is_some_and(|s| s != STATUS_SUCCESS) {
        return None;
    }
    let ia = reply.ia_na.as_ref()?;
    if ia.status.is_some_and(|s| s != STATUS_SUCCESS) || ia.addresses.is_empty() {
        return None;
    }
    Some(Offer {
        server_id,
        preference: reply.preference,
        addresses: ia.addresses.iter().map(|a| a.addr).collect(),
    })
}

fn ia_status(reply: &Reply6) -> Option<u16> {
    reply
        .ia_na
        .as_ref()
        .and_then(|ia| ia.status)
        .or(reply.status)
}

fn addresses(b: &Binding) -> Vec<Ipv6Addr> {
    b.addresses.iter().map(|(a, _)| *a).collect()
}

fn first_expiry(b: &Binding) -> Option<Instant> {
    b.addresses.iter().filter_map(|(_, t)| *t).min()
}

/// Removes expired addresses; true when none is left.
fn drop_expired(b: &mut Binding, now: Instant) -> bool {
    b.addresses
        .retain(|(_, until)| until.is_none_or(|t| now < t));
    b.addresses.is_empty()
}

fn earliest<const N: usize>(times: [Option<Instant>; N]) -> Option<Instant> {
    times.into_iter().flatten().min()
}
