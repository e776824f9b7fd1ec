//! Fuzz targets for every parser of untrusted input, in one place so that one body serves both
//! the libFuzzer binaries (`fuzz_targets/*.rs`, built by `cargo fuzz` with the `libfuzzer`
//! feature; run them with `bash tests/fuzz/run`) and the stable replay test
//! (`tests/replay.rs`), which feeds every file of `corpus/<target>/` to its body on every
//! `cargo test --workspace`.
//!
//! A body never returns an error: malformed input must come back from the product code as an
//! `Err` (or be ignored), and anything else — a panic, an overflow, an unbounded allocation, a
//! hang — is a finding. Where a parser has an encoder, the body also checks that what decodes
//! re-encodes to the same value.
//!
//! Adding a target: a `pub fn name(data: &[u8])` in [`targets`], a row in [`TARGETS`], a
//! `fuzz_targets/name.rs` + `[[bin]]` in Cargo.toml (the replay test checks that the three
//! agree), and seeds in `corpus/name/` (written by `tests/seeds.rs`).

pub mod targets;

/// One fuzz target: its name (binary, corpus directory) and its body.
pub struct Target {
    pub name: &'static str,
    pub body: fn(&[u8]),
}

/// Every target, in the order `tests/fuzz/run` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "pack_decode",
        body: targets::pack_decode,
    },
    Target {
        name: "http_response",
        body: targets::http_response,
    },
    Target {
        name: "handshake_reply",
        body: targets::handshake_reply,
    },
    Target {
        name: "tunnel_stream",
        body: targets::tunnel_stream,
    },
    Target {
        name: "dhcp_client",
        body: targets::dhcp_client,
    },
    Target {
        name: "cni_config",
        body: targets::cni_config,
    },
    Target {
        name: "control_message",
        body: targets::control_message,
    },
    Target {
        name: "state_record",
        body: targets::state_record,
    },
    Target {
        name: "netavark_json",
        body: targets::netavark_json,
    },
    Target {
        name: "tap_frames",
        body: targets::tap_frames,
    },
];
