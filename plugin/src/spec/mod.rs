//! CNI spec types: versions, the error object, the `CNI_*` environment and
//! results. Nothing here knows about SoftEther.

pub mod env;
pub mod error;
pub mod output;
pub mod result;
pub mod version;

pub use env::{CniArgs, Command, Env};
pub use error::{CniError, ErrorCode};
pub use output::Output;
pub use result::CniResult;
pub use version::Version;
