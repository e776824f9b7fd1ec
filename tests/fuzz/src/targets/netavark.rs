//! The netavark plugin's input on stdin: the Network of `create` (options validated, the network
//! to store returned to Podman) and the `NetworkPluginExec` of `setup`/`teardown` (static MAC and
//! per-container options checked, turned into CNI ADD's validated config and DEL's lenient one).
//! Nothing here reaches the sidecar or a netns: the body stops where the commands would.

use serde_json::Map;
use softether_cni::netavark::types::{Network, PluginExec};
use softether_cni::netavark::{self, commands};
use softether_cni::netconf::{self, NetConf};
use softether_cni::spec::CniError;

/// The netns path netavark passes as the argument (not part of the fuzzed input).
const NETNS: &str = "/run/netns/p";

/// Input: the JSON on stdin. Every input is tried as both shapes (they differ in their required
/// fields), as `create` and as `setup`/`teardown`.
pub fn netavark_json(data: &[u8]) {
    if let Ok(network) = netavark::parse::<Network>(data, "network") {
        match commands::create(network) {
            Ok(stored) => stored_network_is_stable(&stored),
            Err(e) => report(e),
        }
    }
    if let Ok(exec) = netavark::parse::<PluginExec>(data, "setup input") {
        if let Err(e) = commands::setup_request(NETNS, &exec) {
            report(e);
        }
        match commands::teardown_request(NETNS, &exec) {
            Ok((_env, stdin)) => {
                let map = netconf::parse_stdin(stdin.as_bytes())
                    .expect("teardown's own network config decodes");
                // DEL salvages what it can from a config that does not validate.
                let _ = NetConf::from_map(map);
            }
            Err(e) => report(e),
        }
    }
}

/// What `create` prints Podman stores and hands back on every `setup`: it must decode, pass
/// `create` again and come out the same. `rest` (fields passed through untouched) is compared
/// by its keys: serde_json does not promise that a float survives a round trip to the bit.
fn stored_network_is_stable(stored: &Network) {
    let text = serde_json::to_vec(stored).expect("the stored network encodes");
    let again: Network = netavark::parse(&text, "network").expect("the stored network decodes");
    let again = commands::create(again).expect("the stored network passes create again");
    let typed = |n: &Network| Network {
        rest: Map::new(),
        ..n.clone()
    };
    assert_eq!(
        typed(&again),
        typed(stored),
        "create changed a stored network"
    );
    assert!(
        again.rest.keys().eq(stored.rest.keys()),
        "create changed the passed-through fields"
    );
}

/// What `netavark::exec` prints for an error: one non-empty line for the Podman user.
fn report(e: CniError) {
    let line = netavark::text(e);
    assert!(!line.trim().is_empty(), "empty error message");
}
