//! Sans-IO SoftEther protocol (in progress).
pub mod error;
pub mod handshake;
pub mod http;
pub mod login;
pub mod pack;
pub mod password;
pub(crate) mod prng;
pub mod rsa;
pub mod sha0;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tunnel;
pub mod welcome;
