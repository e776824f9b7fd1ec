//! Sans-IO SoftEther protocol (in progress).
pub mod pack;
pub mod password;
pub(crate) mod prng;
pub mod sha0;
pub mod error;
pub mod http;
pub mod rsa;
