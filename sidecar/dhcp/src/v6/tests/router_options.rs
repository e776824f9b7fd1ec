//! Route Information options (RFC 4191) and address deprecation (preferred lifetimes), in
//! virtual time.

use super::*;

fn routes(s: &Ipv6Settings) -> Vec<(Ipv6Net, Ipv6Addr)> {
    s.routes
        .iter()
        .map(|r| (r.destination, r.gateway))
        .collect()
}

#[test]
fn route_information_options_become_routes_via_the_router_with_lifetimes() {
    let mut h = Harness::new();
    h.transmits();
    let ra = Ra::default()
        .lab_prefix()
        .route("fd00:77::", 48, 0, 100, 2)
        .route("fd00:88:1:2:3::", 80, 0b01, u32::MAX, 3)
        // ::/0 is the router lifetime's business; link-local is no destination.
        .route("::", 0, 0, 100, 1)
        .route("fe80::", 64, 0, 100, 2)
        // Reserved preference (10) voids the option; a prefix longer than the option is too.
        .route("fd00:99::", 48, 0b10, 100, 2)
        .route("fd00:aa:1:2:3::", 80, 0, 100, 2);
    assert!(h.feed(&ra.frame()));
    let s = h.updated();
    assert_eq!(
        routes(&s),
        [
            (net("fd00:77::/48"), router_ll()),
            (net("fd00:88:1:2:3::/80"), router_ll())
        ]
    );

    // A second router offers the /48 with high preference: it wins; then it withdraws.
    let other = ip("fe80::2");
    let high = Ra {
        src: other,
        lifetime: 0,
        ..Ra::default()
    }
    .route("fd00:77::", 48, 0b01, 50, 2);
    h.feed(&high.frame());
    assert_eq!(routes(&h.updated())[0], (net("fd00:77::/48"), other));
    let withdrawn = Ra {
        src: other,
        lifetime: 0,
        ..Ra::default()
    }
    .route("fd00:77::", 48, 0b01, 0, 2);
    h.feed(&withdrawn.frame());
    assert_eq!(routes(&h.updated())[0], (net("fd00:77::/48"), router_ll()));

    // The route's own lifetime (100 s) removes it; the infinite one stays.
    let mut expired = None;
    while let Some(_frames) = h.next_deadline(150.0) {
        if let [Ipv6Event::Updated(s)] = h.events().as_slice() {
            expired = Some((h.secs(), routes(s)));
        }
    }
    assert_eq!(
        expired,
        Some((100.0, vec![(net("fd00:88:1:2:3::/80"), router_ll())]))
    );
}

#[test]
fn a_zero_preferred_lifetime_deprecates_and_a_refresh_revives() {
    let mut h = Harness::new();
    h.transmits();
    h.feed(&Ra::default().prefix("fd00:6::", 64, 0xc0, 600, 0).frame());
    let s = h.updated();
    assert!(s.addresses[0].deprecated, "preferred 0: deprecated at once");
    // Refreshed with a preferred lifetime: usable again, deprecated once more 50 s later.
    h.advance(5.0);
    h.feed(&Ra::default().prefix("fd00:6::", 64, 0xc0, 600, 50).frame());
    assert!(!h.updated().addresses[0].deprecated);
    h.next_deadline(1000.0).unwrap();
    assert_eq!(h.secs(), 55.0);
    let s = h.updated();
    assert!(s.addresses[0].deprecated && s.addresses.len() == 1);
    // No busy loop on the passed preferred time: the next deadline is further on.
    assert!(h.client.poll_timeout().unwrap() > h.now);
    // The valid lifetime removes it (600 s after the refresh).
    let mut gone = None;
    while let Some(_frames) = h.next_deadline(1000.0) {
        if let [Ipv6Event::Updated(s)] = h.events().as_slice() {
            gone = Some((h.secs(), s.addresses.len()));
        }
    }
    assert_eq!(gone, Some((605.0, 0)));
}
