//! The four plugin commands on parsed input; no stdin/stdout here (see `super::exec`).
//!
//! `setup` is CNI ADD (`cmd::add::attach`) and `teardown` is CNI DEL (`cmd::del::run`) on the
//! config [`options::cni_config`] builds: the same TAP, sidecar request, lease, rollback on
//! failure and, with the sidecar down, the same TAP removal and tombstone.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::Value;

use super::options;
use super::types::{Info, NetAddress, NetInterface, Network, PluginExec, StatusBlock, API_VERSION};
use crate::cmd::{add, del};
use crate::netconf::NetConf;
use crate::pod_tap::PodTaps;
use crate::sidecar_client::Connect;
use crate::spec::{CniError, CniResult, Command, Env};
use softether_control::Mac;

pub fn info() -> Info {
    Info {
        version: env!("CARGO_PKG_VERSION"),
        api_version: API_VERSION,
    }
}

/// Validates the options and returns the network as it is to be stored: name, id, driver and
/// options unchanged, no subnets or routes (the VPN's DHCP server assigns addresses), IPAM
/// `none` (Podman allocates nothing) and DNS off (there is no aardvark-dns on this network).
/// What Podman would otherwise do itself (subnets, routes, IPv6, IPAM, `--internal`) is refused.
pub fn create(mut network: Network) -> Result<Network, CniError> {
    options::validated(&network.name, network.options.as_ref(), None, None)?;
    let refuse = |what: &str, flag: &str| {
        CniError::invalid_config(
            format!("a softether network has no {what} of its own: the VPN's DHCP server assigns the address"),
            format!("remove {flag}"),
        )
    };
    if network.subnets.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(refuse("subnets", "--subnet, --gateway and --ip-range"));
    }
    if network.routes.as_ref().is_some_and(|r| !r.is_empty()) {
        return Err(refuse("static routes", "--route"));
    }
    if network.ipv6_enabled {
        return Err(CniError::invalid_config(
            "a softether network has no IPv6 subnet of its own: the VPN's routers assign IPv6 addresses",
            "remove --ipv6; IPv6 from the VPN is on by default (-o ipv6=false turns it off)",
        ));
    }
    if network.rest.get("internal") == Some(&Value::Bool(true)) {
        return Err(CniError::invalid_config(
            "a softether network cannot be internal: its whole point is the route to the VPN",
            "remove --internal",
        ));
    }
    match network.ipam_options.as_ref().and_then(|o| o.get("driver")) {
        None => {}
        Some(d) if d.is_empty() || d == "none" => {}
        Some(d) => return Err(refuse(&format!("IPAM (driver {d:?})"), "--ipam-driver")),
    }
    network.subnets = Some(Vec::new());
    network.routes = None;
    network.ipam_options = Some(BTreeMap::from([("driver".to_owned(), "none".to_owned())]));
    network.dns_enabled = false;
    Ok(network)
}

/// CNI ADD for the container's interface; the lease as a StatusBlock.
pub fn setup(
    netns: &str,
    exec: &PluginExec,
    connect: Connect<'_>,
    taps: &dyn PodTaps,
) -> Result<StatusBlock, CniError> {
    let (env, conf) = setup_request(netns, exec)?;
    let result = add::attach(&env, &conf, connect(&conf.sidecar_socket).as_mut(), taps)?;
    Ok(status_block(&result, &exec.network_options.interface_name))
}

/// `setup`'s input checked and turned into CNI ADD's environment and validated config, before
/// anything touches the pod or the sidecar (the fuzz target `netavark_json` drives it).
pub fn setup_request(netns: &str, exec: &PluginExec) -> Result<(Env, NetConf), CniError> {
    let opts = &exec.network_options;
    if opts.static_ips.as_ref().is_some_and(|ips| !ips.is_empty()) {
        return Err(CniError::invalid_config(
            "a softether network does not take static addresses: the VPN's DHCP server assigns the address",
            "remove --ip",
        ));
    }
    let mac = opts
        .static_mac
        .as_deref()
        .map(|raw| {
            raw.parse::<Mac>().map_err(|_| {
                CniError::invalid_config(
                    format!("static_mac {raw:?} is not a unicast MAC address"),
                    format!("expected {}", crate::netconf::MAC_EXPECTED),
                )
            })
        })
        .transpose()?;
    let conf = options::validated(
        &exec.network.name,
        exec.network.options.as_ref(),
        opts.options.as_ref(),
        mac.map(|m| m.to_string()).as_deref(),
    )?;
    Ok((env(Command::Add, exec, netns)?, conf))
}

/// CNI DEL: idempotent, succeeds with the sidecar down (TAP removed here, tombstone written).
pub fn teardown(
    netns: &str,
    exec: &PluginExec,
    connect: Connect<'_>,
    taps: &dyn PodTaps,
) -> Result<(), CniError> {
    let (env, stdin) = teardown_request(netns, exec)?;
    del::run(&env, stdin.as_bytes(), connect, taps).map(|_| ())
}

/// `teardown`'s input turned into CNI DEL's environment and network config (stdin), leniently:
/// a network that no longer validates still names its socket and state dir.
pub fn teardown_request(netns: &str, exec: &PluginExec) -> Result<(Env, String), CniError> {
    let opts = &exec.network_options;
    let conf = options::cni_config(
        &exec.network.name,
        exec.network.options.as_ref(),
        opts.options.as_ref(),
        // Normalized when it parses, so DEL compares it with the TAP's MAC; otherwise DEL
        // falls back to the derived MAC, as ADD would never have run with it.
        opts.static_mac
            .as_deref()
            .and_then(|m| m.parse::<Mac>().ok())
            .map(|m| m.to_string())
            .as_deref(),
        true,
    )?;
    Ok((
        env(Command::Del, exec, netns)?,
        Value::Object(conf).to_string(),
    ))
}

/// The CNI environment of this call: the container id is the attachment key, the interface is
/// `network_options.interface_name`.
fn env(command: Command, exec: &PluginExec, netns: &str) -> Result<Env, CniError> {
    let ifname = &exec.network_options.interface_name;
    if ifname.is_empty() || exec.container_id.is_empty() || netns.is_empty() {
        return Err(CniError::invalid_env(
            "container_id, network_options.interface_name and the netns path must not be empty",
            "",
        ));
    }
    Ok(Env {
        command,
        container_id: Some(exec.container_id.clone()),
        netns: Some(netns.to_owned()),
        ifname: Some(ifname.clone()),
        args: String::new(),
        path: Vec::new(),
        netns_override: false,
    })
}

/// Our interface (the only one in a result without `prevResult`) with its addresses and
/// gateways (IPv4 and IPv6: each address with its prefix, the IPv6 gateway is the router's
/// link-local address), and the lease's DNS (IPv6 servers after the IPv4 ones). The DHCP domain name counts as a search domain when the lease
/// has no search list.
pub fn status_block(result: &CniResult, ifname: &str) -> StatusBlock {
    let mut interfaces = BTreeMap::new();
    if let Some((index, iface)) = result
        .interfaces
        .iter()
        .enumerate()
        .find(|(_, i)| i.name == ifname)
    {
        let subnets = result
            .ips
            .iter()
            .filter(|ip| ip.interface == Some(index))
            .map(|ip| NetAddress {
                gateway: ip.gateway,
                ipnet: ip.address,
            })
            .collect();
        interfaces.insert(
            ifname.to_owned(),
            NetInterface {
                mac_address: iface.mac.clone().unwrap_or_default().to_lowercase(),
                subnets: Some(subnets),
            },
        );
    }
    let dns = &result.dns;
    let search = if dns.search.is_empty() {
        dns.domain.iter().cloned().collect()
    } else {
        dns.search.clone()
    };
    StatusBlock {
        dns_search_domains: Some(search),
        dns_server_ips: Some(
            dns.nameservers
                .iter()
                .filter_map(|s| s.parse::<IpAddr>().ok())
                .collect(),
        ),
        interfaces: Some(interfaces),
    }
}
