//! conclave-server: the node runtime that runs the Raft core over conclave-log and the
//! peer transport.
#![deny(missing_docs)]
