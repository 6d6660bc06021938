//! The node's error type.

use conclave_consensus::NodeId;

/// Why a request to the node failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// This node is not the leader; `leader` is the one it knows of.
    #[error("not the leader (known leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows of, if any.
        leader: Option<NodeId>,
    },
    /// The proposal was overwritten by another leader's entry: it was not committed.
    #[error("proposal dropped by a leader change")]
    Dropped,
    /// The core refused the request.
    #[error("refused by the core: {0}")]
    Refused(String),
    /// The node stopped (or failed) before answering.
    #[error("node stopped")]
    Stopped,
    /// The storage failed; the node stops.
    #[error("storage: {0}")]
    Storage(String),
    /// A configuration field is out of range.
    #[error("invalid node config field {field}: {reason}")]
    Config {
        /// The field's name.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// The application failed to snapshot or restore.
    #[error("application: {0}")]
    Application(String),
}

impl From<conclave_consensus::Error> for NodeError {
    fn from(error: conclave_consensus::Error) -> NodeError {
        match error {
            conclave_consensus::Error::NotLeader { leader } => NodeError::NotLeader { leader },
            other => NodeError::Refused(other.to_string()),
        }
    }
}

impl From<conclave_log::Error> for NodeError {
    fn from(error: conclave_log::Error) -> NodeError {
        NodeError::Storage(error.to_string())
    }
}
