//! The configuration a DHCPACK grants, with its timers (RFC 2131 §4.4.5).

use crate::reply::Reply;
use crate::routes::ClasslessRoute;
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Option 51 value 0xffffffff: the lease never expires and is never renewed.
pub const INFINITE_LEASE: Duration = Duration::from_secs(u32::MAX as u64);
/// Shorter leases are stretched to this so a broken server cannot make the client spin.
pub const MIN_LEASE: Duration = Duration::from_secs(10);

/// An address lease and the network configuration that came with it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// The leased address (`yiaddr`).
    pub address: Ipv4Addr,
    /// From option 1; the classful default when the server sent none or a non-contiguous mask.
    pub prefix_len: u8,
    /// First address of option 3 as sent; see [`Lease::default_gateway`] for what to install.
    pub router: Option<Ipv4Addr>,
    /// Option 6, in the server's order.
    pub dns_servers: Vec<Ipv4Addr>,
    /// Option 15, if it is a valid domain name.
    pub domain_name: Option<String>,
    /// Option 26 (values below 68 are ignored).
    pub mtu: Option<u16>,
    /// Option 54: the server that granted the lease (RENEW and RELEASE go to it).
    pub server_id: Ipv4Addr,
    /// Ethernet source of the ACK: where unicast RENEW and RELEASE frames are sent.
    pub server_mac: [u8; 6],
    /// [`INFINITE_LEASE`] for a permanent lease.
    pub lease_time: Duration,
    /// T1, relative to `acquired_at`.
    pub renew_at: Duration,
    /// T2, relative to `acquired_at`.
    pub rebind_at: Duration,
    /// Option 121, or option 249 when 121 is absent; empty if neither was (validly) sent.
    pub classless_routes: Vec<ClasslessRoute>,
    /// When the ACK was received.
    pub acquired_at: Instant,
}

impl Lease {
    /// Builds a lease from an ACK. `fallback_server` is used when the ACK has no option 54.
    pub(crate) fn from_ack(
        reply: &Reply,
        now: Instant,
        fallback_server: Ipv4Addr,
    ) -> Option<Lease> {
        let address = reply.yiaddr;
        if address.is_unspecified() || address.is_broadcast() || address.is_multicast() {
            return None;
        }
        let lease_time = match reply.lease_secs {
            None | Some(u32::MAX) => INFINITE_LEASE,
            Some(secs) => Duration::from_secs(u64::from(secs)).max(MIN_LEASE),
        };
        let (renew_at, rebind_at) = timers(lease_time, reply.renewal_secs, reply.rebinding_secs);
        let prefix_len = reply
            .subnet_mask
            .and_then(mask_to_prefix)
            .unwrap_or_else(|| classful_prefix(address));
        Some(Lease {
            address,
            prefix_len,
            router: reply.routers.first().copied(),
            dns_servers: reply.dns_servers.clone(),
            domain_name: reply.domain_name.clone(),
            mtu: reply.mtu,
            server_id: reply.server_id.unwrap_or(fallback_server),
            server_mac: reply.src_mac,
            lease_time,
            renew_at,
            rebind_at,
            // RFC 3442 asks clients to prefer 121; 249 is Microsoft's pre-standard code.
            classless_routes: reply
                .routes_121
                .clone()
                .or_else(|| reply.routes_249.clone())
                .unwrap_or_default(),
            acquired_at: now,
        })
    }

    /// Address and prefix as an interface address (e.g. `10.0.0.5/24`).
    pub fn interface_address(&self) -> Ipv4Net {
        // prefix_len is always <= 32 by construction.
        Ipv4Net::new(self.address, self.prefix_len.min(32))
            .unwrap_or_else(|_| Ipv4Net::from(self.address))
    }

    /// The default route to install: RFC 3442 says that when classless routes are present the
    /// router option is ignored, so the gateway is the 0.0.0.0/0 entry of those routes, if any.
    pub fn default_gateway(&self) -> Option<Ipv4Addr> {
        if self.classless_routes.is_empty() {
            return self.router;
        }
        self.classless_routes
            .iter()
            .find(|(net, _)| net.prefix_len() == 0)
            .map(|(_, gw)| *gw)
    }

    /// Whether the lease never expires ([`INFINITE_LEASE`]).
    pub fn is_infinite(&self) -> bool {
        self.lease_time >= INFINITE_LEASE
    }

    /// T1: when RENEWING starts. `None` for an infinite lease.
    pub fn renew_deadline(&self) -> Option<Instant> {
        self.deadline(self.renew_at)
    }

    /// T2: when REBINDING starts. `None` for an infinite lease.
    pub fn rebind_deadline(&self) -> Option<Instant> {
        self.deadline(self.rebind_at)
    }

    /// When the address must no longer be used. `None` for an infinite lease.
    pub fn expires_at(&self) -> Option<Instant> {
        self.deadline(self.lease_time)
    }

    fn deadline(&self, after: Duration) -> Option<Instant> {
        if self.is_infinite() {
            return None;
        }
        self.acquired_at.checked_add(after)
    }

    /// Same network configuration (address, prefix, gateway, DNS, domain, MTU, routes), ignoring
    /// timers and which server answered.
    pub fn same_configuration(&self, other: &Lease) -> bool {
        self.address == other.address
            && self.prefix_len == other.prefix_len
            && self.router == other.router
            && self.dns_servers == other.dns_servers
            && self.domain_name == other.domain_name
            && self.mtu == other.mtu
            && self.classless_routes == other.classless_routes
    }
}

/// T1/T2 from options 58/59, falling back to 0.5 and 0.875 of the lease when absent or
/// inconsistent (RFC 2131 requires T1 < T2 < lease).
fn timers(lease: Duration, t1: Option<u32>, t2: Option<u32>) -> (Duration, Duration) {
    let secs = |s: u32| Duration::from_secs(u64::from(s));
    let rebind = t2
        .map(secs)
        .filter(|&t2| !t2.is_zero() && t2 < lease)
        .unwrap_or(lease / 8 * 7);
    let renew = t1
        .map(secs)
        .filter(|&t1| !t1.is_zero() && t1 <= rebind)
        .unwrap_or((lease / 2).min(rebind));
    (renew, rebind)
}

fn mask_to_prefix(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let prefix = bits.leading_ones();
    // Contiguous means every bit after the leading ones is zero.
    (bits.checked_shl(prefix).unwrap_or(0) == 0).then_some(prefix as u8)
}

fn classful_prefix(address: Ipv4Addr) -> u8 {
    match address.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply() -> Reply {
        Reply {
            yiaddr: Ipv4Addr::new(10, 1, 2, 3),
            subnet_mask: Some(Ipv4Addr::new(255, 255, 0, 0)),
            routers: vec![Ipv4Addr::new(10, 1, 0, 1)],
            lease_secs: Some(3600),
            server_id: Some(Ipv4Addr::new(10, 1, 0, 1)),
            ..Reply::default()
        }
    }

    #[test]
    fn default_timers_are_half_and_seven_eighths() {
        let now = Instant::now();
        let l = Lease::from_ack(&reply(), now, Ipv4Addr::UNSPECIFIED).unwrap();
        assert_eq!(l.renew_at, Duration::from_secs(1800));
        assert_eq!(l.rebind_at, Duration::from_secs(3150));
        assert_eq!(l.expires_at(), Some(now + Duration::from_secs(3600)));
        assert_eq!(l.interface_address().to_string(), "10.1.2.3/16");
    }

    #[test]
    fn explicit_and_inconsistent_timers() {
        let d = Duration::from_secs;
        assert_eq!(timers(d(100), Some(30), Some(60)), (d(30), d(60)));
        // T2 beyond the lease and T1 beyond T2 fall back to defaults.
        assert_eq!(
            timers(d(100), Some(90), Some(200)),
            (d(50), d(87) + Duration::from_millis(500))
        );
        assert_eq!(timers(d(100), Some(80), Some(70)), (d(50), d(70)));
        assert_eq!(timers(d(100), None, Some(40)), (d(40), d(40)));
    }

    #[test]
    fn infinite_and_tiny_leases() {
        let mut r = reply();
        r.lease_secs = Some(u32::MAX);
        let l = Lease::from_ack(&r, Instant::now(), Ipv4Addr::UNSPECIFIED).unwrap();
        assert!(l.is_infinite());
        assert_eq!((l.renew_deadline(), l.expires_at()), (None, None));
        r.lease_secs = Some(0);
        let l = Lease::from_ack(&r, Instant::now(), Ipv4Addr::UNSPECIFIED).unwrap();
        assert_eq!(l.lease_time, MIN_LEASE);
    }

    #[test]
    fn masks_and_fallbacks() {
        assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
        assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
        assert_eq!(mask_to_prefix(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
        assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 0, 255, 0)), None);
        let mut r = reply();
        r.subnet_mask = Some(Ipv4Addr::new(255, 0, 255, 0));
        r.server_id = None;
        let l = Lease::from_ack(&r, Instant::now(), Ipv4Addr::new(10, 9, 9, 9)).unwrap();
        assert_eq!(l.prefix_len, 8);
        assert_eq!(l.server_id, Ipv4Addr::new(10, 9, 9, 9));
        r.yiaddr = Ipv4Addr::UNSPECIFIED;
        assert!(Lease::from_ack(&r, Instant::now(), Ipv4Addr::UNSPECIFIED).is_none());
    }

    #[test]
    fn classless_routes_override_router_for_gateway() {
        let mut r = reply();
        let now = Instant::now();
        let on_link: ClasslessRoute = ("10.2.0.0/16".parse().unwrap(), Ipv4Addr::UNSPECIFIED);
        r.routes_249 = Some(vec![on_link]);
        let l = Lease::from_ack(&r, now, Ipv4Addr::UNSPECIFIED).unwrap();
        assert_eq!(l.classless_routes, vec![on_link]);
        assert_eq!(
            l.default_gateway(),
            None,
            "router option ignored when routes are present"
        );
        let default: ClasslessRoute = ("0.0.0.0/0".parse().unwrap(), Ipv4Addr::new(10, 1, 0, 254));
        r.routes_121 = Some(vec![default]);
        let l = Lease::from_ack(&r, now, Ipv4Addr::UNSPECIFIED).unwrap();
        assert_eq!(l.classless_routes, vec![default], "121 wins over 249");
        assert_eq!(l.default_gateway(), Some(Ipv4Addr::new(10, 1, 0, 254)));
    }
}
