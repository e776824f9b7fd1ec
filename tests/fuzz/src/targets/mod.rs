//! The target bodies, grouped by the crate whose parsers they drive.

mod cni;
mod control;
mod dhcp;
mod frames;
mod netavark;
mod softether;

pub use cni::cni_config;
pub use control::{control_message, state_record};
pub use dhcp::dhcp_client;
pub use frames::tap_frames;
pub use netavark::netavark_json;
pub use softether::{handshake_reply, http_response, pack_decode, tunnel_stream};

/// Round trip through serde_json: whatever decodes must encode and decode to the same value.
fn json_round_trip<T>(value: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let text = serde_json::to_vec(value).expect("a decoded value encodes");
    let again: T = serde_json::from_slice(&text).expect("an encoded value decodes");
    assert_eq!(&again, value, "JSON round trip changed the value");
}
