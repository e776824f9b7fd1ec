//! CHECK: the session is up, the interface carries the leased address, and the routes,
//! policy rules and nft table the lease implies are in place.

use ipnet::Ipv4Net;
use netcfg::pod_netns;
use netcfg::{Netlink, Netns};

use super::{bad_request, netns_error, Registry};
use crate::daemon::verify::{missing_objects, missing_objects6};
use crate::daemon::{ipv6, session};
use crate::engine::lease_apply::plan;
use softether_control::state_dir::AttachmentKey;
use softether_control::{code, CheckRequest, IpPrefix, Mac, WireError};

impl Registry {
    /// CHECK: the session is up, the interface carries the leased address, and the routes,
    /// policy rules and nft table the lease implies are in place.
    pub async fn check(&self, req: CheckRequest) -> Result<(), WireError> {
        let key = AttachmentKey::new(&req.attachment.container_id, &req.attachment.ifname)
            .map_err(bad_request)?;
        let (record, live, up) = {
            let map = self.lock();
            match map.get(&key) {
                Some(entry) => (
                    entry.record.clone(),
                    entry.session.status.borrow().clone(),
                    entry.session.is_up(),
                ),
                None => {
                    return Err(netns_error(
                        format!("the sidecar has no attachment {key}"),
                        "",
                    ))
                }
            }
        };
        let lease = match (up, live.lease) {
            (true, Some(lease)) => lease,
            _ => {
                return Err(WireError::new(
                    code::TRY_AGAIN_LATER,
                    format!("the VPN session of {key} is {}", live.phase.as_str()),
                    live.last_error.unwrap_or_default(),
                ))
            }
        };
        let nl = Netlink::open(Netns::from_path(&req.netns))
            .await
            .map_err(|e| netns_error(format!("cannot open netlink in {}", req.netns), e))?;
        let info = nl
            .link_by_name(&key.ifname)
            .await
            .map_err(|e| netns_error(format!("cannot read {}", key.ifname), e))?
            .ok_or_else(|| {
                netns_error(format!("{} is missing in {}", key.ifname, req.netns), "")
            })?;
        let mac = info
            .mac
            .as_deref()
            .and_then(|m| <[u8; 6]>::try_from(m).ok())
            .map(Mac);
        let want_mac = req.mac.or_else(|| record.mac.parse().ok());
        if mac != want_mac {
            return Err(netns_error(format!("{} has the wrong MAC", key.ifname), ""));
        }
        let mut have: Vec<String> = nl
            .addresses(info.index)
            .await
            .map_err(|e| netns_error("cannot list addresses".into(), e))?
            .iter()
            .map(Ipv4Net::to_string)
            .collect();
        if req.ips.iter().any(|ip| ip.addr.is_ipv6()) {
            let have6 = nl
                .addresses6(info.index)
                .await
                .map_err(|e| netns_error("cannot list IPv6 addresses".into(), e))?;
            have.extend(have6.iter().map(ToString::to_string));
        }
        let mut want: Vec<String> = req.ips.iter().map(IpPrefix::to_string).collect();
        want.push(lease.interface_address().to_string());
        for ip in want {
            if !have.contains(&ip) {
                return Err(netns_error(
                    format!("{} lacks address {ip}", key.ifname),
                    format!("present: {have:?}"),
                ));
            }
        }
        let opts = session::net_options(&record.link);
        let planned = plan(&lease, &opts, info.index);
        let firewall = pod_netns::firewall(&req.netns, &key.container_id, &key.ifname);
        let mut missing = missing_objects(&nl, &firewall, &planned, &key.ifname)
            .await
            .map_err(|e| netns_error(format!("cannot inspect {}", req.netns), e))?;
        let planned6 = ipv6::pod_plan(&live.ipv6.settings, &opts, info.index);
        missing.extend(
            missing_objects6(&nl, &planned6, info.index, &key.ifname)
                .await
                .map_err(|e| netns_error(format!("cannot inspect IPv6 in {}", req.netns), e))?,
        );
        if !missing.is_empty() {
            return Err(netns_error(missing.join("; "), format!("in {}", req.netns)));
        }
        Ok(())
    }
}
