//! conclave-consensus: Raft as a pure, synchronous, I/O-free state machine.
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]
