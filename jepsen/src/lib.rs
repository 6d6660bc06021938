//! conclave-jepsen: the deterministic simulator (`sim`), the linearizability
//! checker (`check`) and, later, the fault harness against real processes.
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod check;
pub mod sim;
