//! softether-sidecar library.
