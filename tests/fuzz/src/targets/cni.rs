//! The CNI plugin's inputs: the `CNI_*` environment (with `CNI_ARGS`), the network config on
//! stdin (every key of this plugin, `args.cni`, `runtimeConfig`, the GC keys) and `prevResult`.

use std::collections::HashMap;

use softether_cni::cmd::version;
use softether_cni::netconf::{resolve_login, NetConf};
use softether_cni::spec::{CniArgs, CniError, CniResult, Env, Version};

use super::json_round_trip;

/// The environment used when the input carries none (an ADD).
const DEFAULT_ENV: &str = "CNI_COMMAND=ADD\nCNI_CONTAINERID=c1\nCNI_NETNS=/run/netns/p\nCNI_IFNAME=vpn0\nCNI_PATH=/opt/cni/bin\n";

/// Input: `KEY=VALUE` lines of the environment, a NUL byte, then stdin (the network config).
/// Without a NUL the whole input is stdin and the environment is an ADD's.
pub fn cni_config(data: &[u8]) {
    let (env_text, stdin) = match data.iter().position(|&b| b == 0) {
        Some(at) => (String::from_utf8_lossy(&data[..at]), &data[at + 1..]),
        None => (DEFAULT_ENV.into(), data),
    };
    let vars: HashMap<&str, &str> = env_text
        .lines()
        .filter_map(|line| line.split_once('='))
        .collect();
    let env = Env::from_lookup(|k| vars.get(k).map(|v| (*v).to_owned()));
    let args = match &env {
        Ok(env) => CniArgs::parse(&env.args),
        Err(e) => Err(e.clone()),
    };
    let _ = version::run(stdin);
    let conf = match NetConf::from_stdin(stdin) {
        Ok(conf) => conf,
        Err(e) => return report(e, None),
    };
    let requested = Some(conf.cni_version.as_str());
    match &args {
        Ok(args) => match resolve_login(&conf, args) {
            Ok(login) => json_round_trip(&login),
            Err(e) => report(e, requested),
        },
        Err(e) => report(e.clone(), requested),
    }
    if let Some(prev) = &conf.prev_result {
        match CniResult::from_prev_result(prev) {
            Ok(result) => {
                // What we print is the next plugin's (and CHECK's) prevResult.
                for v in Version::SUPPORTED {
                    CniResult::from_prev_result(&result.render(v))
                        .expect("a rendered result parses as a prevResult");
                }
                let _ = result.clone().chain(result).render(conf.cni_version);
            }
            Err(e) => report(e, requested),
        }
    }
}

/// What `main` prints for an error: the error object must always render.
fn report(e: CniError, version: Option<&str>) {
    let rendered = e.in_version(version).to_json();
    assert!(
        rendered.get("code").is_some(),
        "error object without a code"
    );
}
