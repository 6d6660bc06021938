//! The fault harness against real processes.
//!
//! It starts a cluster of node processes on 127.0.0.1 ([`process`]), each reaching its
//! peers and clients reaching it through a fault-injecting TCP proxy ([`proxy`]) so that
//! partitions ([`partition`]) need no privileges; a seeded nemesis ([`nemesis`]) partitions,
//! kills, pauses, changes membership and transfers leadership in start/stop phases while
//! workers ([`workload`]) record every operation into a history ([`history`]) that the
//! linearizability checker judges; [`runner`] ties one run together and writes its report
//! folder (history, verdict, timeline, plots, node logs).

pub mod cli;
pub mod client;
pub mod cluster;
mod error;
pub mod history;
pub mod nemesis;
pub mod partition;
pub mod plot;
pub mod process;
pub mod proxy;
pub mod random;
pub mod runner;
pub mod workload;

pub use error::HarnessError;
