//! The crate's errors: [`Error`] for operating failures of the host (snapshot I/O, decoding,
//! configuration) and [`SessionError`] for the typed rejections a client receives.

use serde::{Deserialize, Serialize};

use crate::machine::{Index, SessionId};

/// An operating error of the session layer or of a machine's snapshot and restore.
///
/// Errors compare with `==` so that tests assert on them; I/O errors keep their kind and text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Reading or writing a snapshot stream failed.
    #[error("snapshot i/o failed ({kind:?}): {message}")]
    Io {
        /// The kind of the underlying `std::io::Error`.
        kind: std::io::ErrorKind,
        /// The text of the underlying error.
        message: String,
    },
    /// Bytes could not be decoded as the named thing.
    #[error("cannot decode {what}: {reason}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// Why the codec refused it.
        reason: String,
    },
    /// A value could not be encoded as the named thing.
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// Why the codec refused it.
        reason: String,
    },
    /// A snapshot stream is not in the format this version writes.
    #[error("bad snapshot: {reason}")]
    SnapshotFormat {
        /// What was wrong with it.
        reason: String,
    },
    /// A snapshot names a machine type that no factory is registered for.
    #[error("no factory registered for machine type {type_name:?}")]
    UnknownMachineType {
        /// The type name found in the snapshot.
        type_name: String,
    },
    /// A configuration field is out of its allowed range.
    #[error("invalid configuration: {field}: {reason}")]
    Config {
        /// The field's name.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// Two factories were registered for one machine type.
    #[error("a factory for machine type {type_name:?} is already registered")]
    DuplicateMachineType {
        /// The type name registered twice.
        type_name: String,
    },
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Error::Io {
            kind: error.kind(),
            message: error.to_string(),
        }
    }
}

/// A rejection returned to a client instead of an output. These travel in replies, so they
/// are serializable; the frontends map them to their protocols' error codes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum SessionError {
    /// The session never existed, was closed, or expired.
    #[error("unknown session {session} (closed, expired or never registered)")]
    UnknownSession {
        /// The session id the request named.
        session: SessionId,
    },
    /// A register entry asked for a timeout outside the configured bounds.
    #[error("session timeout {timeout_ms} ms is outside [{timeout_ms_min}, {timeout_ms_max}]")]
    TimeoutOutOfBounds {
        /// The requested timeout.
        timeout_ms: u64,
        /// The configured lower bound.
        timeout_ms_min: u64,
        /// The configured upper bound.
        timeout_ms_max: u64,
    },
    /// The number of open sessions reached `sessions_max`.
    #[error("too many sessions (at most {sessions_max})")]
    TooManySessions {
        /// The configured bound.
        sessions_max: u64,
    },
    /// Sequence numbers start at 1.
    #[error("command sequence numbers start at 1")]
    SequenceZero,
    /// The sequence was applied and its output was acknowledged (so dropped) by the client.
    #[error("sequence {sequence} was already applied and acknowledged")]
    SequenceAcknowledged {
        /// The retried sequence.
        sequence: u64,
    },
    /// The sequence is further ahead of the next expected one than the session may buffer.
    #[error(
        "sequence {sequence} is too far ahead of the next expected {sequence_next} (at most {commands_ahead_max} buffered)"
    )]
    SequenceTooFarAhead {
        /// The sequence that arrived.
        sequence: u64,
        /// The sequence the session waits for.
        sequence_next: u64,
        /// The configured bound on buffered commands.
        commands_ahead_max: u64,
    },
    /// The client has not acknowledged enough outputs; it must send a keep-alive first.
    #[error(
        "too many unacknowledged outputs (at most {outputs_unacknowledged_max}); send a keep-alive"
    )]
    TooManyUnacknowledgedOutputs {
        /// The configured bound.
        outputs_unacknowledged_max: u64,
    },
    /// No factory is registered for the requested machine type.
    #[error("unknown machine type {machine_type:?}")]
    UnknownMachineType {
        /// The requested type.
        machine_type: String,
    },
    /// A machine of that name exists with another type.
    #[error("machine {machine_name:?} has type {existing_type:?}, not {requested_type:?}")]
    MachineTypeMismatch {
        /// The machine's name.
        machine_name: String,
        /// The type it was created with.
        existing_type: String,
        /// The type the request named.
        requested_type: String,
    },
    /// The machine name is empty or longer than `machine_name_bytes_max`.
    #[error("invalid machine name (1 to {machine_name_bytes_max} bytes)")]
    InvalidMachineName {
        /// The configured bound.
        machine_name_bytes_max: u64,
    },
    /// The number of machines reached `machines_max`.
    #[error("too many machines (at most {machines_max})")]
    TooManyMachines {
        /// The configured bound.
        machines_max: u64,
    },
    /// The entry or query envelope could not be decoded.
    #[error("malformed envelope: {reason}")]
    MalformedEnvelope {
        /// Why decoding failed.
        reason: String,
    },
    /// The envelope's format version is not one this build reads.
    #[error("unsupported envelope version {version}")]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
    },
    /// The machine could not decode the payload as its command or query type.
    #[error("malformed payload for machine type {machine_type:?}: {reason}")]
    MalformedPayload {
        /// The machine type that refused it.
        machine_type: String,
        /// Why decoding failed.
        reason: String,
    },
    /// The machine's output or event could not be encoded (a bug in the machine's types).
    #[error("cannot encode the output of machine type {machine_type:?}: {reason}")]
    OutputEncode {
        /// The machine type.
        machine_type: String,
        /// Why encoding failed.
        reason: String,
    },
    /// A sequential query named an index this replica has not applied yet; retry later or
    /// on another replica.
    #[error("index {index_required} not applied yet (applied {index_applied})")]
    NotYetApplied {
        /// The highest index the session has seen.
        index_required: Index,
        /// The highest index this replica applied.
        index_applied: Index,
    },
}
