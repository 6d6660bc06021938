//! The one error type of the crate.

/// Why a client call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// A configuration field is out of range.
    #[error("invalid client config field {field}: {reason}")]
    Config {
        /// The field's name.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// No endpoint answered (or none knew a leader) before the deadline.
    #[error("no endpoint could serve the request before the deadline: {last_error}")]
    Unavailable {
        /// The last failure seen, for people.
        last_error: String,
    },
    /// The caller's deadline passed. A command keeps being retried with its sequence in the
    /// background, so it takes effect at most once (and usually once).
    #[error("request timed out")]
    Timeout,
    /// The session expired or was closed; its locks, ephemerals and candidacies are gone.
    #[error("session {session} expired or was closed")]
    SessionExpired {
        /// The session.
        session: u64,
    },
    /// The session layer refused the command (unknown machine type, type mismatch...); the
    /// sequence was consumed all the same.
    #[error("refused by the server ({code}): {message}")]
    Rejected {
        /// The `ErrorCode` name.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The server answered with an error status that retrying does not fix.
    #[error("server error {code}: {message}")]
    Server {
        /// The `conclave-error-code` name, or the gRPC code when absent.
        code: String,
        /// The server's message.
        message: String,
    },
    /// A payload or output did not encode or decode with the machine's codec.
    #[error("codec: {0}")]
    Codec(String),
    /// The machine answered with its own refusal (a lock not held, a node that exists...).
    #[error("machine refused: {0}")]
    Machine(String),
    /// The machine answered something this call did not expect (a client/server mismatch).
    #[error("unexpected answer: {0}")]
    Unexpected(String),
    /// The client or session was closed by its owner.
    #[error("closed")]
    Closed,
}

/// The crate's result type.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
