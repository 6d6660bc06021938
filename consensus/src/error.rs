//! The crate's error types: one enum for the core, one for storage.

use crate::NodeId;

/// An error that a storage implementation reports to the core.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The requested index lies before the first index: it was compacted into a snapshot.
    #[error("index {index} was compacted (first index is {first_index})")]
    Compacted {
        /// The index that was asked for.
        index: u64,
        /// The first index the storage still holds.
        first_index: u64,
    },
    /// The requested index lies after the last index.
    #[error("index {index} is past the last index {last_index}")]
    Unavailable {
        /// The index that was asked for.
        index: u64,
        /// The last index the storage holds.
        last_index: u64,
    },
    /// The snapshot is being built; the core retries later.
    #[error("snapshot temporarily unavailable")]
    SnapshotTemporarilyUnavailable,
    /// Any other failure of the underlying store; the core does not retry it.
    #[error("storage failure: {0}")]
    Other(String),
}

/// An error returned by the core's inputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A configuration field is out of range.
    #[error("invalid config field {field}: {reason}")]
    Config {
        /// The name of the field.
        field: &'static str,
        /// Why the value is rejected.
        reason: String,
    },
    /// The request needs the leader; `leader` is the leader this node knows of, if any.
    #[error("not the leader (known leader: {leader:?})")]
    NotLeader {
        /// The leader this node last heard from in its current term.
        leader: Option<NodeId>,
    },
    /// A leadership transfer is in progress; proposals wait until it ends.
    #[error("leadership transfer in progress")]
    TransferInProgress,
    /// The proposal would exceed `uncommitted_bytes_max`; retry once entries commit.
    #[error("uncommitted bytes would exceed {bytes_max}")]
    UncommittedBytesExceeded {
        /// The configured bound.
        bytes_max: u64,
    },
    /// `pending_reads_max` reads already wait for a heartbeat round; retry later.
    #[error("{reads_max} reads are already pending")]
    PendingReadsExceeded {
        /// The configured bound.
        reads_max: usize,
    },
    /// The batch holds more entries than `proposal_entries_max`, or none.
    #[error("proposal batch of {entries} entries is outside 1..={entries_max}")]
    BatchSize {
        /// Entries in the rejected batch.
        entries: usize,
        /// The configured bound.
        entries_max: usize,
    },
    /// A membership change is still in flight (not yet applied), or the leader has not yet
    /// committed an entry of its own term.
    #[error("a membership change is pending")]
    MembershipChangePending,
    /// The requested membership change is not allowed.
    #[error("invalid membership change: {0}")]
    InvalidMembershipChange(String),
    /// The transfer target is not a voter, or is this node.
    #[error("invalid leadership transfer target {0}")]
    InvalidTransferTarget(NodeId),
    /// The message came from or went to a node this core does not accept it for.
    #[error("message rejected: {0}")]
    InvalidMessage(String),
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// `validate()` found a broken invariant.
    #[error("invariant violated: {0}")]
    Invariant(String),
}
