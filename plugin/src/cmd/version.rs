//! VERSION: report the spec versions we speak. Never touches the sidecar and
//! never fails: runtimes call it with placeholder env (Podman: `CNI_NETNS=dummy`)
//! whenever they load a network, so a bad answer hides the whole network.

use serde_json::Value;

use crate::spec::version::version_reply;

pub fn run(stdin: &[u8]) -> Value {
    let requested = serde_json::from_slice::<Value>(stdin).ok();
    version_reply(
        requested
            .as_ref()
            .and_then(|v| v.get("cniVersion"))
            .and_then(Value::as_str),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_supported_versions_and_survives_garbage() {
        for v in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
            let out = run(format!("{{\"cniVersion\":\"{v}\"}}").as_bytes());
            assert_eq!(out["cniVersion"], v);
            assert_eq!(out["supportedVersions"].as_array().unwrap().len(), 5);
        }
        for junk in ["", "garbage", "[]", "{\"cniVersion\":7}"] {
            assert_eq!(run(junk.as_bytes())["cniVersion"], "1.1.0");
        }
    }
}
