//! The subcommands of `softether-sidecar`: flags, exit codes and output. Each file is one
//! command; [`args`] holds the server flags they share.

pub mod args;
pub mod connect;
pub mod probe;
pub mod probe_frames;
pub mod run;
pub mod status;
