//! Test lab harness (in progress).
