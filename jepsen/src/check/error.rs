//! The checker's one error type.

/// Everything that can go wrong while reading a history or configuring a check.
///
/// A history that is not linearizable is not an error: it is a verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// A line of a history file could not be parsed.
    #[error("line {line}: {reason}")]
    Parse {
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The events do not form a well-formed history (for example a completion
    /// without an invocation, or two invocations in flight on one process).
    #[error("malformed history at event {event}: {reason}")]
    Malformed {
        /// The 0-based index of the offending event.
        event: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// An operation does not fit the chosen model (unknown function, wrong
    /// argument type).
    #[error("operation {operation} ({function}) does not fit the {model} model: {reason}")]
    Model {
        /// The model's name.
        model: &'static str,
        /// The 0-based index of the operation in the history.
        operation: usize,
        /// The operation's function.
        function: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A configuration field is out of range.
    #[error("invalid checker configuration: {0}")]
    Config(String),
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {message}")]
    Io {
        /// The file involved.
        path: String,
        /// The operating system's message.
        message: String,
    },
}
