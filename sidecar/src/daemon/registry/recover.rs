//! Startup: finish the tombstones the plugin wrote while the daemon was down, then re-adopt
//! every remaining attachment record (reopening its TAP and starting its session).

use netcfg::pod_netns;
use netcfg::{Netlink, Netns, PodRouting, Tap};

use super::{remove_link, Entry, Registry};
use crate::daemon::session;
use crate::engine::status::StopMode;
use softether_control::state_dir::{AttachmentKey, AttachmentRecord, Tombstone};
use softether_control::Mac;

impl Registry {
    /// Startup: finish the plugin's tombstones, then re-adopt every remaining record.
    pub async fn recover(&self) {
        match self.state.tombstones_list() {
            Ok(list) => {
                for t in list {
                    match t {
                        Ok(t) => self.bury(t).await,
                        Err(e) => tracing::warn!("skipping tombstone: {e}"),
                    }
                }
            }
            Err(e) => tracing::warn!("cannot list tombstones: {e}"),
        }
        let records = match self.state.records() {
            Ok(r) => r,
            Err(e) => return tracing::warn!("cannot list attachment records: {e}"),
        };
        for rec in records {
            match rec {
                Ok(rec) => self.adopt(rec).await,
                Err(e) => tracing::warn!("skipping attachment record: {e}"),
            }
        }
    }

    async fn bury(&self, t: Tombstone) {
        let Ok(key) = AttachmentKey::new(&t.container_id, &t.ifname) else {
            return tracing::warn!("ignoring tombstone with a bad key {:?}", t.container_id);
        };
        tracing::info!(attachment = %key, "processing the plugin's DEL from while we were down");
        let record = self.state.record(&key).unwrap_or_else(|e| {
            tracing::warn!(attachment = %key, "{e}");
            None
        });
        let routing = record.as_ref().map(pod_routing_of).unwrap_or_default();
        let netns = record.map(|r| r.netns).or(t.netns);
        if let Some(ns) = netns.filter(|ns| std::path::Path::new(ns).exists()) {
            remove_link(&ns, &key.ifname).await;
            // The plugin removes these itself when it can; repeat it, deleting is idempotent.
            for e in routing.remove(&ns).await {
                tracing::warn!(attachment = %key, "{e}");
            }
        }
        // The lease itself expires on the server: releasing needs a session from the
        // attachment's MAC, which is not worth opening just to say goodbye.
        self.forget(&key, StopMode::Teardown).await;
    }

    async fn adopt(&self, rec: AttachmentRecord) {
        let Ok(key) = rec.key() else {
            return tracing::warn!("ignoring record with a bad key {:?}", rec.container_id);
        };
        let ns = Netns::from_path(&rec.netns);
        let exists = match Netlink::open(ns.clone()).await {
            Ok(nl) => nl
                .link_index_opt(&key.ifname)
                .await
                .ok()
                .flatten()
                .is_some(),
            Err(_) => false,
        };
        if !exists {
            tracing::info!(attachment = %key, netns = %rec.netns, "interface or netns gone; forgetting the attachment");
            let _ = self.state.remove(&key);
            return;
        }
        let Ok(mac) = rec.mac.parse::<Mac>() else {
            return tracing::warn!(attachment = %key, "record has a bad MAC {:?}", rec.mac);
        };
        let tap = match Tap::open_persistent(&ns, &key.ifname).await {
            Ok(t) => t,
            Err(e) => return tracing::warn!(attachment = %key, "cannot reopen the TAP: {e}"),
        };
        tracing::info!(attachment = %key, address = ?rec.last_address, "re-adopting attachment");
        let hooks = self.hooks_dir.as_deref();
        let handle = session::spawn(rec.clone(), mac.octets(), tap, self.state.clone(), hooks);
        self.lock().insert(
            key,
            Entry {
                record: rec,
                session: handle,
            },
        );
    }
}

/// What an attachment's engine installed besides the TAP (`lease_apply::plan`), rebuilt from
/// its record.
fn pod_routing_of(rec: &AttachmentRecord) -> PodRouting {
    PodRouting {
        policy_table: rec.link.policy_route_table,
        address: rec.last_address.map(|a| a.addr()),
        connmark_id: rec
            .link
            .connmark
            .then(|| pod_netns::engine_id(&rec.container_id, &rec.ifname)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::engine::lease_apply::plan;

    #[test]
    fn teardown_finds_exactly_what_the_plan_installed() {
        let rec = session::tests::record(Some("192.168.30.10/24"));
        let lease = crate::engine::test_lease::bound_lease(Instant::now(), Duration::from_secs(60));
        let mut installed = plan(&lease, &session::net_options(&rec.link), 7).rules;
        let routing = pod_routing_of(&AttachmentRecord {
            last_address: Some(lease.interface_address()),
            ..rec.clone()
        });
        assert_eq!(routing.connmark_id.as_deref(), Some("c1_vpn0"));
        assert_eq!(routing.own_rules(&installed), installed);
        // Another attachment's from-rule in the same table is not ours.
        installed.push(netcfg::PolicyRule::from_address(
            std::net::Ipv4Addr::new(10, 99, 0, 1),
            100,
            pod_netns::RULE_PRIORITY_FROM,
        ));
        assert_eq!(routing.own_rules(&installed).len(), 2);
        // Without a policy table or connmark there is nothing besides the TAP.
        let mut bare = rec;
        bare.link.policy_route_table = None;
        bare.link.connmark = false;
        assert!(pod_routing_of(&bare).is_empty());
    }
}
