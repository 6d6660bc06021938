//! conclave-server: the node runtime that runs the Raft core of conclave-consensus over
//! conclave-log and the peer transport of conclave-transport.
//!
//! The module [`node`] holds the driver (a thread that carries out each `Ready` in the
//! documented order), the adapter of the log, meta file and snapshot store to the core's
//! `Storage` trait, the [`node::Application`] interface the replicated state implements,
//! and [`node::Node`], the handle clients of the node call. The module [`machines`] holds
//! [`machines::SessionApplication`], the application that runs the session layer and the
//! built-in machines of conclave-statemachines inside the node.
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod cli;
pub mod config;
pub mod etcd;
pub mod gateway;
pub mod machines;
pub mod native;
pub mod node;
pub mod ops;
pub mod server;
pub mod tls;
pub mod zookeeper;
