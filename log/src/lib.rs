//! conclave-log: the segmented append-only log under Conclave's Raft.
//!
//! The crate owns everything Raft keeps on disk: the log of entries
//! ([`Log`]), the group-commit writer that lets many threads share one fsync
//! per batch ([`GroupCommit`]), the hard state ([`MetaStore`]) and snapshots
//! ([`SnapshotStore`]). All file access goes through [`FileSystem`], with a
//! real implementation and a fault-injecting in-memory one
//! ([`MemoryFileSystem`]). The on-disk format is in `FORMAT.md`.
//!
//! ```
//! use std::sync::Arc;
//! use conclave_log::{Entry, Log, LogOptions, MemoryFileSystem};
//!
//! let file_system = Arc::new(MemoryFileSystem::new(1));
//! let mut log = Log::open(file_system.clone(), "/data/log", LogOptions::default())?;
//! log.append(&[Entry::new(1, 1, 0, "a"), Entry::new(2, 1, 0, "b")])?;
//! log.sync()?;
//! assert_eq!(log.entry(2)?.payload, "b");
//! log.truncate_suffix(2)?; // a Raft conflict at index 2
//! assert_eq!(log.last_index(), 1);
//! drop(log);
//!
//! file_system.crash(true); // lose whatever was not synced
//! let log = Log::open(file_system, "/data/log", LogOptions::default())?;
//! assert_eq!(log.last_index(), 1);
//! # Ok::<(), conclave_log::Error>(())
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod entry;
mod error;
pub mod format;
mod fs;
mod group_commit;
mod log;
mod meta;
mod options;
mod segment;
mod snapshot;

pub use entry::Entry;
pub use error::{Error, Result};
pub use fs::{
    FaultPlan, FileSystem, MemoryFileSystem, RealFileSystem, StorageLevel, SyncHandle, WritableFile,
};
pub use group_commit::{AppendReceipt, BatchStatistics, GroupCommit, Ticket};
pub use log::{Log, PendingSync, RecoveryReport};
pub use meta::{HardState, MetaStore};
pub use options::{GroupCommitOptions, LogOptions, RecoveryMode, SyncPolicy};
pub use snapshot::{SnapshotMeta, SnapshotOptions, SnapshotStore, SnapshotWriter};
