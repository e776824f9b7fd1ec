//! What a successful CNI command prints on stdout.

use serde_json::Value;

/// What a successful command prints on stdout; only `main` prints it.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A JSON object (ADD result, VERSION reply).
    Json(Value),
    /// DEL, CHECK, GC and STATUS print nothing on success.
    Nothing,
}
