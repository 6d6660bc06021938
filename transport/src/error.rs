//! The crate's error type.

/// Why a peer message was refused or a transport could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A field holds a value the core could never have produced.
    #[error("malformed peer message: {0}")]
    Malformed(String),
    /// The message is addressed to another node.
    #[error("message for node {to} arrived at node {local}")]
    WrongReceiver {
        /// The node the message names as receiver.
        to: u64,
        /// The node that received it.
        local: u64,
    },
    /// A configuration field is out of range.
    #[error("invalid transport config field {field}: {reason}")]
    Config {
        /// The field's name.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// The listener or the server failed.
    #[error("transport i/o: {0}")]
    Io(String),
}
