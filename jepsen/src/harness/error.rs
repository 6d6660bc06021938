//! The harness's one error type.

use std::path::PathBuf;

/// What can go wrong while running the fault harness.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A configuration field is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A file or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A node process could not be started.
    #[error("cannot start node {node} ({program}): {source}")]
    Spawn {
        /// The node id.
        node: u64,
        /// The program of the command template.
        program: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A signal could not be delivered to a node process.
    #[error("cannot signal node {node}: {reason}")]
    Signal {
        /// The node id.
        node: u64,
        /// Why.
        reason: String,
    },
    /// The node id is not part of the cluster.
    #[error("unknown node {0}")]
    UnknownNode(u64),
    /// The cluster did not reach a state before its deadline.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// The report folder could not be written.
    #[error("cannot write {path}: {reason}")]
    Report {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The checker failed on a recorded history (not a verdict: an error).
    #[error("checking {workload}: {reason}")]
    Check {
        /// The workload.
        workload: String,
        /// Why.
        reason: String,
    },
}

impl HarnessError {
    /// Wraps an I/O error with what the harness was doing.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
