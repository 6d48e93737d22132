//! The crate's single error type.

use serde_json::Value;

/// Everything that can go wrong talking to an OVSDB server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The target string is not `unix:<path>` or `tcp:<host>:<port>`.
    #[error("invalid OVSDB target {0:?} (expected unix:<path> or tcp:<host>:<port>)")]
    InvalidTarget(String),
    /// Socket-level failure.
    #[error("I/O error talking to {target}: {source}")]
    Io {
        /// The target as given.
        target: String,
        #[source]
        /// The underlying socket error.
        source: std::io::Error,
    },
    /// The connection dropped; a request in flight may or may not have been
    /// applied by the server, and it is never re-sent.
    #[error("connection to the OVSDB server closed")]
    Disconnected,
    /// No reply (or no connection) within the request timeout.
    #[error("OVSDB request {method} timed out after {timeout:?}")]
    Timeout {
        /// The JSON-RPC method.
        method: String,
        /// The timeout that expired.
        timeout: std::time::Duration,
    },
    /// The server answered a JSON-RPC request with an error object.
    #[error("OVSDB {method} failed: {error}{}", details.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Rpc {
        /// The JSON-RPC method.
        method: String,
        /// OVSDB error tag, e.g. `unknown database`.
        error: String,
        /// The server's `details`, if any.
        details: Option<String>,
    },
    /// A transaction was rejected; nothing in it was applied.
    #[error("transaction failed at operation {}: {error}{}",
        op_index.map(|i| format!("{i} ({})", op.as_deref().unwrap_or("?"))).unwrap_or_else(|| "commit".into()),
        details.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Transaction {
        /// Index of the failing operation, `None` when the commit itself failed.
        op_index: Option<usize>,
        /// The failing operation's `op` name.
        op: Option<String>,
        /// OVSDB error tag, e.g. `constraint violation`.
        error: String,
        /// The server's `details`, if any.
        details: Option<String>,
    },
    /// A message from the server that does not follow the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A row or datum that cannot be converted to or from its Rust type.
    #[error("cannot decode {what}: {reason}")]
    Decode {
        /// What was being decoded.
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// The server's schema is incompatible with the model compiled in.
    #[error("schema mismatch for {db}: {reason}")]
    SchemaMismatch {
        /// The database.
        db: String,
        /// What does not match.
        reason: String,
    },
    /// `ensure_owned` lost a race with another writer several times in a row.
    #[error("concurrent modification of rows owned by {0}, gave up after retries")]
    Conflict(String),
    /// A caller-side mistake, e.g. a reference to an undefined row name.
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl Error {
    pub(crate) fn decode(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Decode {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Build a [`Error::Rpc`] from the `error` member of a JSON-RPC reply.
    pub(crate) fn from_rpc(method: &str, err: &Value) -> Self {
        let (error, details) = match err {
            Value::String(s) => (s.clone(), None),
            Value::Object(o) => (
                o.get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error")
                    .to_string(),
                o.get("details").and_then(Value::as_str).map(str::to_string),
            ),
            other => (other.to_string(), None),
        };
        Error::Rpc {
            method: method.to_string(),
            error,
            details,
        }
    }

    /// The OVSDB error tag (`constraint violation`, `timed out`, `not owner`, ...)
    /// when the server reported one.
    pub fn ovsdb_error(&self) -> Option<&str> {
        match self {
            Error::Rpc { error, .. } | Error::Transaction { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_the_ovsdb_error_and_details() {
        let e = Error::Transaction {
            op_index: Some(2),
            op: Some("update".into()),
            error: "constraint violation".into(),
            details: Some("name is empty".into()),
        };
        assert_eq!(
            e.to_string(),
            "transaction failed at operation 2 (update): constraint violation: name is empty"
        );
        let e = Error::from_rpc(
            "get_schema",
            &serde_json::json!({"error": "unknown database", "details": "X"}),
        );
        assert_eq!(
            e.to_string(),
            "OVSDB get_schema failed: unknown database (X)"
        );
        assert_eq!(e.ovsdb_error(), Some("unknown database"));
    }
}
