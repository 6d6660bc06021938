//! conclave-client: the async Rust client of a Conclave cluster.
//!
//! A [`Client`] knows some endpoints and finds the leader (following the leader hint the
//! servers return); a [`Session`] keeps itself alive in the background, applies commands
//! exactly once (a retry after a timeout or failover resends the same sequence), and
//! delivers its events in order and without duplicates across reconnects. Typed handles
//! ([`Machine`]) reach every built-in machine and users' machines; [`recipes`] build locks,
//! elections, watches, barriers, queues and service discovery on top.
//!
//! ```no_run
//! use conclave_client::{ClientConfig, Consistency, connect};
//!
//! # async fn run() -> conclave_client::Result<()> {
//! let (_client, session) = connect(ClientConfig::new(["127.0.0.1:7001"])).await?;
//! let visits = session.counter("visits");
//! assert!(visits.add_and_get(1).await? >= 1);
//! let now = visits.get(Consistency::Sequential).await?;
//! # let _ = now;
//! session.close().await
//! # }
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod builtins;
mod config;
mod connection;
mod error;
mod handle;
pub mod recipes;
mod session;

pub use config::ClientConfig;
pub use error::{ClientError, Result};
pub use handle::{Events, Machine, UntypedMachine};
pub use session::{Client, Consistency, Notice, Session, connect};

/// The machine types, commands and outputs of the built-in machines.
pub use conclave_statemachines as machines;
