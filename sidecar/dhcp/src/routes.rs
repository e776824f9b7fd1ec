//! RFC 3442 classless static routes (options 121 and 249 share this encoding).
//!
//! Each route is `prefix_len, significant destination octets (ceil(prefix_len / 8)), router (4)`.
//! A malformed option is rejected as a whole: installing half of a server's routes could send
//! traffic somewhere the administrator did not intend.

use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// A classless route: destination network and the router to reach it through
/// (`0.0.0.0` means the destination is on-link).
pub type ClasslessRoute = (Ipv4Net, Ipv4Addr);

/// Decodes option 121/249 data. `None` if the data is empty, truncated or has a prefix length
/// above 32. Destination bits beyond the prefix length are cleared.
pub fn decode_classless_routes(mut data: &[u8]) -> Option<Vec<ClasslessRoute>> {
    if data.is_empty() {
        return None;
    }
    let mut routes = Vec::new();
    while let Some((&prefix_len, rest)) = data.split_first() {
        if prefix_len > 32 {
            return None;
        }
        let significant = usize::from(prefix_len).div_ceil(8);
        let dest_bytes = rest.get(..significant)?;
        let router = rest.get(significant..significant + 4)?;
        let mut dest = [0u8; 4];
        dest.get_mut(..significant)?.copy_from_slice(dest_bytes);
        let net = Ipv4Net::new(Ipv4Addr::from(dest), prefix_len).ok()?.trunc();
        let router = Ipv4Addr::new(router[0], router[1], router[2], router[3]);
        routes.push((net, router));
        data = rest.get(significant + 4..)?;
    }
    Some(routes)
}

/// Encodes routes in the RFC 3442 format (used for option 249 in tests and by fake servers).
pub fn encode_classless_routes(routes: &[ClasslessRoute]) -> Vec<u8> {
    let mut out = Vec::with_capacity(routes.len() * 9);
    for (net, router) in routes {
        let net = net.trunc();
        let significant = usize::from(net.prefix_len()).div_ceil(8);
        out.push(net.prefix_len());
        out.extend_from_slice(&net.addr().octets()[..significant]);
        out.extend_from_slice(&router.octets());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn rfc3442_examples() {
        // 0.0.0.0/0 via 10.0.0.1, 10.0.0.0/8 via 10.0.0.2, 10.17.0.0/16 on-link, 192.168.1.0/25
        let data = [
            0, 10, 0, 0, 1, //
            8, 10, 10, 0, 0, 2, //
            16, 10, 17, 0, 0, 0, 0, //
            25, 192, 168, 1, 0, 10, 0, 0, 3,
        ];
        let routes = decode_classless_routes(&data).unwrap();
        assert_eq!(
            routes,
            vec![
                (net("0.0.0.0/0"), Ipv4Addr::new(10, 0, 0, 1)),
                (net("10.0.0.0/8"), Ipv4Addr::new(10, 0, 0, 2)),
                (net("10.17.0.0/16"), Ipv4Addr::UNSPECIFIED),
                (net("192.168.1.0/25"), Ipv4Addr::new(10, 0, 0, 3)),
            ]
        );
        assert_eq!(encode_classless_routes(&routes), data);
    }

    #[test]
    fn host_bits_beyond_prefix_are_cleared() {
        let routes = decode_classless_routes(&[9, 10, 255, 1, 2, 3, 4]).unwrap();
        assert_eq!(routes[0].0, net("10.128.0.0/9"));
    }

    #[test]
    fn malformed_data_is_rejected_whole() {
        assert_eq!(decode_classless_routes(&[]), None);
        assert_eq!(decode_classless_routes(&[33, 1, 2, 3, 4, 5, 6, 7, 8]), None);
        assert_eq!(decode_classless_routes(&[24, 10, 0]), None);
        assert_eq!(decode_classless_routes(&[0, 10, 0, 0, 1, 8, 10, 1]), None);
        assert_eq!(decode_classless_routes(&[32, 1, 2, 3, 4, 5, 6, 7]), None);
    }

    #[test]
    fn never_panics_on_any_short_input() {
        let mut seed = 1u32;
        for len in 0..40 {
            for _ in 0..200 {
                let data: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                        (seed >> 16) as u8 % 40
                    })
                    .collect();
                let _ = decode_classless_routes(&data);
            }
        }
    }
}
