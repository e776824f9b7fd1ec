//! softether-control: the request line the daemon reads from the control socket and the reply
//! line the plugin reads back; and the state-dir records the daemon reads at start.

use serde_json::Value;
use softether_control::{
    parse_reply, AttachRequest, AttachResult, CheckRequest, DetachRequest, Envelope, GcReport,
    GcRequest, ListReply, SidecarStatus, MAX_REQUEST_BYTES,
};
use softether_sidecar::daemon::state::AttachmentKey;

use super::json_round_trip;

/// Input: bytes from the control socket. The daemon decodes the first line as an [`Envelope`]
/// and its payload as the op's request; the plugin decodes a reply line as each op's answer.
pub fn control_message(data: &[u8]) {
    let line = data.split(|&b| b == b'\n').next().unwrap_or_default();
    if line.len() <= MAX_REQUEST_BYTES {
        if let Ok(envelope) = serde_json::from_slice::<Envelope>(line) {
            // No round trip of the envelope itself: its payload is an opaque JSON value, and
            // serde_json (without `float_roundtrip`) may parse a float 1 ulp off what it printed.
            // Every payload type, whatever the op says: the daemon picks one by `op`.
            let payload = envelope.request;
            if let Ok(r) = serde_json::from_value::<AttachRequest>(payload.clone()) {
                json_round_trip(&r);
                let _ = AttachmentKey::new(&r.attachment.container_id, &r.attachment.ifname);
            }
            if let Ok(r) = serde_json::from_value::<DetachRequest>(payload.clone()) {
                json_round_trip(&r);
                let _ = AttachmentKey::new(&r.attachment.container_id, &r.attachment.ifname);
            }
            if let Ok(r) = serde_json::from_value::<CheckRequest>(payload.clone()) {
                json_round_trip(&r);
            }
            if let Ok(r) = serde_json::from_value::<GcRequest>(payload) {
                json_round_trip(&r);
            }
        }
    }
    let Ok(reply) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Ok(r)) = parse_reply::<AttachResult>(reply) {
        json_round_trip(&r);
    }
    if let Ok(Ok(r)) = parse_reply::<SidecarStatus>(reply) {
        json_round_trip(&r);
    }
    if let Ok(Ok(r)) = parse_reply::<GcReport>(reply) {
        json_round_trip(&r);
    }
    if let Ok(Ok(r)) = parse_reply::<ListReply>(reply) {
        json_round_trip(&r);
    }
    if let Ok(Err(e)) = parse_reply::<Value>(reply) {
        let _ = e.to_string();
    }
}

/// The state-dir record types and the one function that parses a record file. The daemon
/// reads records with `serde_json::from_slice` (`daemon::state::read_all`,
/// `daemon::registry::read_record`); when the types move to softether-control, repoint these
/// two `use`s (or this function, if a parse function comes with them) and nothing else.
mod records {
    pub use softether_sidecar::daemon::state::{AttachmentRecord, Tombstone};

    pub fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Input: the contents of a file in the state directory (an attachment record or a tombstone;
/// the daemon reads both at start, and the plugin writes tombstones).
pub fn state_record(data: &[u8]) {
    if let Ok(record) = records::parse::<records::AttachmentRecord>(data) {
        json_round_trip(&record);
        if let Ok(key) = record.key() {
            assert!(!key.file_name().contains('/'), "a record key names a path");
        }
    }
    if let Ok(tombstone) = records::parse::<records::Tombstone>(data) {
        json_round_trip(&tombstone);
        if let Ok(key) = AttachmentKey::new(&tombstone.container_id, &tombstone.ifname) {
            assert!(
                !key.file_name().contains('/'),
                "a tombstone key names a path"
            );
        }
    }
}
