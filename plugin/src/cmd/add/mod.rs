//! ADD: create the persistent TAP `CNI_IFNAME` in the pod netns, hand its fd
//! to the sidecar (which logs in and runs DHCP), then return the lease as the
//! CNI result (chained after `prevResult`). On any failure the TAP is removed
//! again and one error object is printed.
//!
//! Everything that can be checked locally (env, config, prevResult) is checked
//! before anything is created, so persistent mistakes surface as 4/7 rather
//! than hiding behind a transient 11. The sidecar checks the password file.

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

use crate::netconf::{resolve_login, NetConf, MAC_EXPECTED};
use crate::pod_tap::{derived_mac, PodTaps};
use crate::sidecar_client::{
    AttachRequest, AttachResult, AttachmentRef, LinkSettings, SidecarClient, SidecarError,
};
use crate::spec::result::{Interface, IpConfig, Route};
use crate::spec::Output;
use crate::spec::{CniArgs, CniError, CniResult, Env, ErrorCode};
use softether_control::Mac;

pub fn run(
    env: &Env,
    conf: &NetConf,
    client: &mut dyn SidecarClient,
    taps: &dyn PodTaps,
) -> Result<Output, CniError> {
    let result = attach(env, conf, client, taps)?;
    Ok(Output::Json(result.render(conf.cni_version)))
}

/// ADD without the rendering: the version-neutral result (chained after `prevResult`), for
/// callers that print it in another shape (the netavark plugin's StatusBlock).
pub fn attach(
    env: &Env,
    conf: &NetConf,
    client: &mut dyn SidecarClient,
    taps: &dyn PodTaps,
) -> Result<CniResult, CniError> {
    let started = Instant::now();
    let deadline = started + conf.timeout;
    let container_id = env.required_container_id()?;
    let ifname = env.required_ifname()?;
    let netns = env.required_netns()?;
    let prev = conf
        .prev_result
        .as_ref()
        .map(CniResult::from_prev_result)
        .transpose()?;
    if let Some(prev) = &prev {
        if prev
            .interfaces
            .iter()
            .any(|i| i.name == ifname && i.sandbox.as_deref() == Some(netns))
        {
            return Err(CniError::invalid_config(
                format!("prevResult already has an interface {ifname:?} in {netns}"),
                "another plugin in the chain created CNI_IFNAME; give this network a different interface name",
            ));
        }
    }
    if !env.netns_override && is_own_netns(netns) {
        return Err(CniError::invalid_env(
            format!("CNI_NETNS {netns} is the plugin's own network namespace"),
            "refusing to put the VPN interface on the host; set CNI_NETNS_OVERRIDE=1 if this is intended",
        ));
    }
    let cni_args = CniArgs::parse(&env.args)?;
    let mac = match (conf.runtime_mac, &cni_args.mac) {
        (Some(mac), _) => mac,
        (None, Some(raw)) => raw.parse::<Mac>().map_err(|_| {
            CniError::invalid_env(
                format!("CNI_ARGS MAC={raw:?} is invalid"),
                format!("expected {MAC_EXPECTED}"),
            )
        })?,
        (None, None) => Mac(derived_mac(container_id, ifname)),
    };
    let login = resolve_login(conf, &cni_args)?;
    let request = AttachRequest {
        attachment: AttachmentRef {
            network: conf.name.clone(),
            container_id: container_id.to_owned(),
            ifname: ifname.to_owned(),
        },
        netns: netns.to_owned(),
        login,
        link: LinkSettings {
            mtu: conf.mtu,
            mac: Some(mac),
            accept_default_gateway: conf.accept_default_gateway,
            accept_static_routes: conf.accept_static_routes,
            policy_route_table: conf.policy_route_table,
            connmark: conf.connmark,
            on_change: conf.on_change.clone(),
            // Absent means on: the wire stays as it was for the default.
            ipv6: (!conf.ipv6).then_some(false),
        },
        timeout_ms: deadline
            .saturating_duration_since(Instant::now())
            .as_millis() as u64,
        pod_namespace: cni_args.pod_namespace.clone(),
        pod_name: cni_args.pod_name.clone(),
    };
    let tap = taps.create(netns, ifname, mac.octets())?;
    let attached = client.attach(&request, tap.as_fd(), deadline);
    drop(tap);
    let attached = attached.inspect_err(|_| {
        // Leave nothing behind: ADD failed, and the runtime's DEL may never know the TAP.
        if let Err(del) = taps.delete(netns, ifname, mac.octets()) {
            crate::logging::warn(format_args!(
                "ADD failed and removing {ifname} failed too: {del}"
            ));
        }
    });
    let attached = attached.map_err(|e| match e {
        SidecarError::Refused(err) => err,
        SidecarError::Protocol { .. } => {
            CniError::new(ErrorCode::SidecarProtocol, e.to_string(), "")
        }
        SidecarError::Timeout { .. } => CniError::try_again_later(
            e.to_string(),
            format!(
                "ADD gave up after the configured timeout of {}s",
                conf.timeout.as_secs()
            ),
        ),
        SidecarError::Unreachable { .. } | SidecarError::Io { .. } => {
            CniError::try_again_later(e.to_string(), "")
        }
        // Only an absurd config value can make an attach request that long.
        SidecarError::TooLarge { .. } => CniError::invalid_config(e.to_string(), ""),
    })?;
    let ours = to_cni_result(attached, ifname, netns);
    Ok(match prev {
        Some(prev) => prev.chain(ours),
        None => ours,
    })
}

/// Our interface is index 0 of our own result; chaining shifts it.
/// CNI results carry the MAC in lowercase.
fn to_cni_result(attached: AttachResult, ifname: &str, netns: &str) -> CniResult {
    CniResult {
        interfaces: vec![Interface {
            name: ifname.to_owned(),
            mac: Some(format!("{:x}", attached.mac)),
            mtu: attached.mtu,
            sandbox: Some(netns.to_owned()),
            ..Interface::default()
        }],
        ips: attached
            .ips
            .into_iter()
            .map(|ip| IpConfig {
                address: ip.address,
                gateway: ip.gateway,
                interface: Some(0),
            })
            .collect(),
        routes: attached
            .routes
            .into_iter()
            .map(|r| Route {
                dst: r.dst,
                gw: r.gw,
                mtu: None,
                advmss: None,
                priority: r.priority,
                table: r.table,
                scope: None,
            })
            .collect(),
        dns: attached.dns,
    }
}

/// skel's `ErrInvalidNetNS` check: same inode as our own netns. A path we
/// cannot stat is left for the sidecar to report.
fn is_own_netns(netns: &str) -> bool {
    let (Ok(target), Ok(own)) = (
        std::fs::metadata(Path::new(netns)),
        std::fs::metadata("/proc/self/ns/net"),
    ) else {
        return false;
    };
    target.dev() == own.dev() && target.ino() == own.ino()
}

#[cfg(test)]
mod tests;
