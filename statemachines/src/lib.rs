//! conclave-statemachines: the `StateMachine` trait, sessions and the built-in machines.
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]
