//! Logs go to stderr only: stdout carries the result or error object.
//! libcni forwards a plugin's stderr into the runtime's log, so warnings are
//! always printed and debug lines only with `SOFTETHER_CNI_DEBUG=1`.

use std::fmt::Display;

pub fn warn(msg: impl Display) {
    eprintln!("softether-cni[{}]: warning: {msg}", std::process::id());
}

pub fn debug(msg: impl Display) {
    if std::env::var_os("SOFTETHER_CNI_DEBUG").is_some_and(|v| v == "1") {
        eprintln!("softether-cni[{}]: debug: {msg}", std::process::id());
    }
}
