//! conclave-consensus: Raft as a pure, synchronous, I/O-free state machine.
//!
//! The core does no network or disk I/O, reads no clock and uses no unseeded randomness:
//! time is [`RawNode::tick`], input is [`RawNode::step`] and the proposal calls, and all
//! output comes out of [`RawNode::ready`] as a [`Ready`] batch that the application carries
//! out (persist, send, apply) before calling [`RawNode::advance`]. The same inputs always
//! give the same outputs, which is what lets the simulator replay a seed exactly.
//!
//! ```
//! use bytes::Bytes;
//! use conclave_consensus::{Config, MemoryStorage, Membership, RawNode, Role};
//!
//! // A single-node cluster elects itself and commits a proposal.
//! let storage = MemoryStorage::new(Membership::with_voters([1]));
//! let mut node = RawNode::new(Config::new(1), storage).unwrap();
//! node.campaign().unwrap();
//! let mut committed = Vec::new();
//! let mut proposed = false;
//! while node.has_ready() || !proposed {
//!     if !proposed && node.status().soft_state.role == Role::Leader {
//!         node.propose(vec![Bytes::from_static(b"hello")]).unwrap();
//!         proposed = true;
//!     }
//!     let ready = node.ready().unwrap();
//!     // Persist: snapshot, entries, hard state; then send and apply.
//!     node.storage_mut().append(&ready.entries);
//!     if let Some(hard_state) = ready.hard_state {
//!         node.storage_mut().set_hard_state(hard_state);
//!     }
//!     committed.extend(ready.committed_entries.iter().map(|e| e.payload.clone()));
//!     node.advance(ready).unwrap();
//! }
//! assert!(committed.contains(&Bytes::from_static(b"hello")));
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod config;
mod error;
mod log;
mod prng;
mod progress;
mod quorum;
mod raft;
mod raw_node;
mod storage;
mod types;

pub use config::{Config, ReadMode};
pub use error::{Error, StorageError};
pub use prng::Prng;
pub use progress::ProgressState;
pub use raft::ProposalReceipt;
pub use raw_node::{ProgressSummary, RawNode, Ready, Status};
pub use storage::{InitialState, MemoryStorage, Storage};
pub use types::{
    ENTRY_OVERHEAD_BYTES, Entry, EntryKind, HardState, Membership, MembershipChange, Message,
    MessageKind, NodeId, ReadState, Role, Snapshot, SnapshotMetadata, SoftState,
};

/// Deliberately wrong rules, compiled only with the test-only `bug-injection` feature, so
/// that tests can prove the simulator catches safety violations.
#[cfg(feature = "bug-injection")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedBug {
    /// Commit an entry of an earlier term once a quorum holds it (violates Figure 8).
    CommitOldTermByCounting,
    /// Grant votes without the log up-to-date check (violates paper 5.4.1).
    VoteWithoutLogCheck,
    /// Campaign while a committed membership entry is not yet applied, i.e. under a
    /// configuration that may be out of date (review finding 1).
    CampaignWithUnappliedMembership,
}
