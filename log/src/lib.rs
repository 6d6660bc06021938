//! conclave-log: the segmented append-only log under Conclave's Raft.
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]
