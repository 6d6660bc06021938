//! conclave-statemachines: the `StateMachine` trait, sessions and the built-in machines.
//!
//! This crate is pure and deterministic: no clocks, no I/O, no threads, no randomness. Time
//! is log time, handed in with every entry. The node applies every committed entry through
//! a [`SessionLayer`], which routes commands to named machines held in a [`Registry`]:
//!
//! ```
//! use conclave_statemachines::counter::{CounterCommand, CounterMachine, CounterOutput};
//! use conclave_statemachines::{Entry, Registry, Reply, SessionConfig, SessionLayer, codec};
//!
//! let mut registry = Registry::new();
//! registry.register(CounterMachine::default).unwrap();
//! let mut layer = SessionLayer::new(SessionConfig::default(), registry).unwrap();
//!
//! // The session id is the index of the register entry.
//! let applied = layer.apply(1, 1_000, &Entry::Register { timeout_ms: 5_000 }.encode());
//! assert_eq!(applied.reply, Reply::Registered { session: 1, timeout_ms: 5_000 });
//!
//! let command = Entry::Command {
//!     session: 1,
//!     sequence: 1,
//!     machine_name: "visits".to_string(),
//!     machine_type: "counter".to_string(),
//!     payload: codec::encode(&CounterCommand::AddAndGet { delta: 2 }, "command").unwrap(),
//! };
//! let Reply::Output(output) = layer.apply(2, 1_010, &command.encode()).reply else { panic!() };
//! let value: CounterOutput = codec::decode(&output.result.unwrap(), "output").unwrap();
//! assert_eq!(value, CounterOutput::Value(2));
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod client;
pub mod codec;
pub mod counter;
pub mod election;
pub mod envelope;
pub mod error;
pub mod kv;
pub mod lock;
pub mod machine;
pub mod queue;
pub mod registry;
pub mod session;
mod session_index;
pub mod testing;
pub mod tree;
pub mod value;

/// The README's code blocks run as doctests, so the how-to cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use client::ClientSession;
pub use envelope::{
    Applied, CommandOutput, Entry, EventBatch, EventCursor, FORMAT_VERSION, MachineEvent,
    QueryRequest, Reply,
};
pub use error::{Error, SessionError};
pub use machine::{ApplyContext, Index, QueryContext, SessionId, SessionView, StateMachine};
pub use registry::{BuiltinConfigs, Registry};
pub use session::{SessionConfig, SessionLayer};
