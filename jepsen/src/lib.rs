//! conclave-jepsen: the deterministic simulator (`sim`), the linearizability
//! checker (`check`) and the fault harness against real processes (`harness`).
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod check;
pub mod harness;
pub mod sim;
