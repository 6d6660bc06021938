//! conclave-log, its meta file and its snapshot store behind the core's `Storage` trait.
//!
//! Layout under the data directory: `log/` (segments), `meta` (term, vote, commit index and
//! the bootstrap membership), `snapshots/` (the snapshot files, whose metadata field holds
//! the encoded membership at the snapshot's index). The log always starts right after the
//! newest snapshot: `open` repairs a crash between installing a snapshot and compacting or
//! clearing the log.
//!
//! Writes go two ways. The leader's own entries are queued with [`LogStorage::submit`] to
//! conclave-log's group-commit writer, which appends and fsyncs on its own threads while
//! the driver goes on (the returned ticket says when they are durable). Everything that
//! must be durable before the driver continues (a follower's entries before it
//! acknowledges, entries that replace part of the log) goes through
//! [`LogStorage::append_durably`] once no queued write is in flight.
//!
//! The meta file costs an fsync only when the term or the vote changes. The commit index is
//! saved with those, and otherwise lazily ([`LogStorage::persist_commit`], every
//! `commit_persist_interval_ticks` and at stop): it need not be durable for safety. A node
//! that restarts with an older commit index knows less, and relearns the rest from the
//! leader; `open` never lets it point past the durable log.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use conclave_consensus::{
    Entry, EntryKind, HardState, InitialState, Membership, Snapshot, SnapshotMetadata, Storage,
    StorageError,
};
use conclave_log::{
    FileSystem, GroupCommit, GroupCommitOptions, Log, LogOptions, MetaStore, RealFileSystem,
    SnapshotOptions, SnapshotStore, Ticket,
};

use crate::node::error::NodeError;

const KIND_NORMAL: u8 = 0;
const KIND_NOOP: u8 = 1;
const KIND_MEMBERSHIP: u8 = 2;

/// The durable state of one node.
#[derive(Debug)]
pub struct LogStorage {
    /// The log, owned by the group-commit writer; reads and truncations take its lock.
    log: GroupCommit,
    /// The last index written or queued for writing.
    submitted_last_index: u64,
    meta: MetaStore,
    snapshots: SnapshotStore,
    hard_state: HardState,
    /// The hard state the meta file holds.
    saved_hard_state: HardState,
    /// The membership the directory was initialised with; it stays in the meta file.
    bootstrap_membership: Membership,
    snapshot: Snapshot,
}

fn to_log_entry(entry: &Entry) -> conclave_log::Entry {
    let kind = match entry.kind {
        EntryKind::Normal => KIND_NORMAL,
        EntryKind::Noop => KIND_NOOP,
        EntryKind::Membership => KIND_MEMBERSHIP,
    };
    conclave_log::Entry::new(entry.index, entry.term, kind, entry.payload.clone())
}

fn from_log_entry(entry: conclave_log::Entry) -> Result<Entry, StorageError> {
    let kind = match entry.kind {
        KIND_NORMAL => EntryKind::Normal,
        KIND_NOOP => EntryKind::Noop,
        KIND_MEMBERSHIP => EntryKind::Membership,
        other => return Err(StorageError::Other(format!("unknown entry kind {other}"))),
    };
    Ok(Entry {
        index: entry.index,
        term: entry.term,
        kind,
        payload: entry.payload,
    })
}

fn storage_error(error: conclave_log::Error) -> StorageError {
    match error {
        conclave_log::Error::Compacted { index, first_index } => {
            StorageError::Compacted { index, first_index }
        }
        conclave_log::Error::Unavailable { index, last_index } => {
            StorageError::Unavailable { index, last_index }
        }
        other => StorageError::Other(other.to_string()),
    }
}

impl LogStorage {
    /// Opens (or initialises with `bootstrap` as the membership) the state in `directory`.
    pub fn open(directory: &Path, bootstrap: Membership) -> Result<LogStorage, NodeError> {
        let file_system: Arc<dyn FileSystem> = Arc::new(RealFileSystem);
        let log = Log::open(
            file_system.clone(),
            directory.join("log"),
            LogOptions::default(),
        )?;
        let meta = MetaStore::open(file_system.clone(), directory.join("meta"))?;
        let snapshots = SnapshotStore::open(
            file_system,
            directory.join("snapshots"),
            SnapshotOptions::default(),
        )?;
        let stored = match meta.load()? {
            Some(stored) => stored,
            None => {
                let initial = conclave_log::HardState {
                    membership: bootstrap.encode(),
                    ..conclave_log::HardState::default()
                };
                meta.save(&initial)?;
                initial
            }
        };
        let bootstrap_membership = decode_membership(&stored.membership)?;
        let snapshot = match snapshots.latest()? {
            Some(latest) => Snapshot {
                metadata: SnapshotMetadata {
                    index: latest.last_index,
                    term: latest.last_term,
                    membership: decode_membership(&latest.metadata)?,
                },
                data: snapshots.read(&latest)?,
            },
            None => Snapshot {
                metadata: SnapshotMetadata {
                    index: 0,
                    term: 0,
                    membership: bootstrap_membership.clone(),
                },
                data: Bytes::new(),
            },
        };
        let hard_state = HardState {
            term: stored.current_term,
            vote: stored.voted_for,
            commit: stored.commit_index,
        };
        let mut log = log;
        reconcile_log_with_snapshot(&mut log, &snapshot)?;
        let submitted_last_index = log.last_index();
        let writer_options = GroupCommitOptions::default();
        let mut storage = LogStorage {
            log: GroupCommit::start(log, writer_options)?,
            submitted_last_index,
            meta,
            snapshots,
            hard_state,
            saved_hard_state: hard_state,
            bootstrap_membership,
            snapshot,
        };
        let last_index = storage
            .last_index()
            .map_err(|e| NodeError::Storage(e.to_string()))?;
        storage.hard_state.commit = storage
            .hard_state
            .commit
            .clamp(storage.snapshot.metadata.index, last_index);
        Ok(storage)
    }

    /// True if `entries` continue what was written or queued, so that they can be queued
    /// behind it; false if they replace part of it (a truncation, which needs the writer
    /// idle).
    pub fn continues_submitted(&self, entries: &[Entry]) -> bool {
        entries
            .first()
            .is_none_or(|first| first.index == self.submitted_last_index + 1)
    }

    /// Queues entries that continue the log for the group-commit writer; the ticket says
    /// when they are durable. Writes complete in the order they were queued.
    pub fn submit(&mut self, entries: &[Entry]) -> Result<Ticket, NodeError> {
        assert!(
            self.continues_submitted(entries),
            "queued entries must continue the log"
        );
        let converted: Vec<conclave_log::Entry> = entries.iter().map(to_log_entry).collect();
        let ticket = self.log.submit_entries(converted)?;
        if let Some(last) = entries.last() {
            self.submitted_last_index = last.index;
        }
        Ok(ticket)
    }

    /// Appends entries and fsyncs them, first removing any stored entry at or after the
    /// first one's index. The caller makes sure that no queued write is in flight: the
    /// truncation must not overtake it.
    pub fn append_durably(&mut self, entries: &[Entry]) -> Result<(), NodeError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        assert!(
            first.index > self.snapshot.metadata.index,
            "append into the snapshot"
        );
        let converted: Vec<conclave_log::Entry> = entries.iter().map(to_log_entry).collect();
        self.log
            .with_log(|log| -> Result<(), conclave_log::Error> {
                assert!(
                    log.last_index() == self.submitted_last_index,
                    "a durable append while queued writes are in flight"
                );
                if first.index <= log.last_index() {
                    log.truncate_suffix(first.index)?;
                }
                log.append(&converted)?;
                log.sync()
            })?;
        self.submitted_last_index = first.index + entries.len() as u64 - 1;
        Ok(())
    }

    /// Records the hard state. It reaches the meta file (with an fsync) at once only when
    /// the term or the vote changed: votes and term changes must be durable before the
    /// messages that depend on them leave. A changed commit index alone waits for
    /// [`LogStorage::persist_commit`] (see the module documentation).
    pub fn set_hard_state(&mut self, hard_state: HardState) -> Result<(), NodeError> {
        self.hard_state = hard_state;
        let saved = self.saved_hard_state;
        if hard_state.term != saved.term || hard_state.vote != saved.vote {
            self.save_hard_state()?;
        }
        Ok(())
    }

    /// Saves the commit index if it moved since the meta file was last written; a lazy,
    /// periodic write that safety does not depend on.
    pub fn persist_commit(&mut self) -> Result<(), NodeError> {
        if self.hard_state.commit != self.saved_hard_state.commit {
            self.save_hard_state()?;
        }
        Ok(())
    }

    fn save_hard_state(&mut self) -> Result<(), NodeError> {
        let hard_state = self.hard_state;
        self.meta.save(&conclave_log::HardState {
            current_term: hard_state.term,
            voted_for: hard_state.vote,
            commit_index: hard_state.commit,
            membership: self.bootstrap_membership.encode(),
        })?;
        self.saved_hard_state = hard_state;
        Ok(())
    }

    /// The hard state as the meta file holds it.
    pub fn saved_hard_state(&self) -> HardState {
        self.saved_hard_state
    }

    /// Installs a snapshot received from the leader and drops the whole log, which the
    /// core now considers replaced. The caller makes sure no queued write is in flight.
    pub fn install_snapshot(&mut self, snapshot: Snapshot) -> Result<(), NodeError> {
        self.write_snapshot(&snapshot)?;
        let index = snapshot.metadata.index;
        self.log
            .with_log(|log| -> Result<(), conclave_log::Error> {
                let first = log.first_index();
                if !log.is_empty() {
                    log.truncate_suffix(first)?;
                }
                log.compact_prefix(index + 1)
            })?;
        self.submitted_last_index = index;
        self.hard_state.commit = self.hard_state.commit.max(index);
        self.snapshot = snapshot;
        Ok(())
    }

    /// Records a snapshot of the applied state at `index` and compacts the log up to it.
    pub fn compact(
        &mut self,
        index: u64,
        data: Bytes,
        membership: Membership,
    ) -> Result<(), NodeError> {
        if index <= self.snapshot.metadata.index {
            return Ok(());
        }
        let (durable_index, term) = self
            .log
            .with_log(|log| log.term(index).map(|term| (log.durable_index(), term)))?;
        assert!(index <= durable_index, "compaction past the durable log");
        let snapshot = Snapshot {
            metadata: SnapshotMetadata {
                index,
                term,
                membership,
            },
            data,
        };
        self.write_snapshot(&snapshot)?;
        self.log.with_log(|log| log.compact_prefix(index + 1))?;
        self.snapshot = snapshot;
        Ok(())
    }

    fn write_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), NodeError> {
        let metadata = &snapshot.metadata;
        let mut writer =
            self.snapshots
                .begin(metadata.index, metadata.term, metadata.membership.encode())?;
        for chunk in snapshot.data.chunks(1024 * 1024) {
            writer.write_chunk(chunk)?;
        }
        writer.finish(None)?;
        Ok(())
    }

    /// The newest snapshot (the initial, empty one when none was taken).
    pub fn current_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }
}

/// Makes the log start right after the snapshot, keeping entries that agree with it.
fn reconcile_log_with_snapshot(log: &mut Log, snapshot: &Snapshot) -> Result<(), NodeError> {
    let index = snapshot.metadata.index;
    let first = log.first_index();
    if first == index + 1 {
        return Ok(());
    }
    if first > index + 1 {
        return Err(NodeError::Storage(format!(
            "log starts at {first} but the snapshot ends at {index}"
        )));
    }
    let agrees = log.term(index).ok() == Some(snapshot.metadata.term);
    if !agrees && !log.is_empty() {
        log.truncate_suffix(first)?;
    }
    log.compact_prefix(index + 1)?;
    Ok(())
}

fn decode_membership(bytes: &[u8]) -> Result<Membership, NodeError> {
    if bytes.is_empty() {
        return Ok(Membership::default());
    }
    Membership::decode(bytes).map_err(|error| NodeError::Storage(format!("membership: {error}")))
}

impl Storage for LogStorage {
    fn initial_state(&self) -> Result<InitialState, StorageError> {
        Ok(InitialState {
            hard_state: self.hard_state,
            membership: self.snapshot.metadata.membership.clone(),
        })
    }

    fn first_index(&self) -> Result<u64, StorageError> {
        Ok(self.snapshot.metadata.index + 1)
    }

    fn last_index(&self) -> Result<u64, StorageError> {
        let last_index = self.log.with_log(|log| log.last_index());
        Ok(last_index.max(self.snapshot.metadata.index))
    }

    fn term(&self, index: u64) -> Result<u64, StorageError> {
        let snapshot_index = self.snapshot.metadata.index;
        if index == snapshot_index {
            return Ok(self.snapshot.metadata.term);
        }
        if index < snapshot_index {
            return Err(StorageError::Compacted {
                index,
                first_index: snapshot_index + 1,
            });
        }
        self.log
            .with_log(|log| log.term(index))
            .map_err(storage_error)
    }

    fn entries(&self, low: u64, high: u64, bytes_max: u64) -> Result<Vec<Entry>, StorageError> {
        let entries = self
            .log
            .with_log(|log| log.entries(low..high, bytes_max))
            .map_err(storage_error)?;
        entries.into_iter().map(from_log_entry).collect()
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        Ok(self.snapshot.clone())
    }

    fn snapshot_metadata(&self) -> Result<SnapshotMetadata, StorageError> {
        Ok(self.snapshot.metadata.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            kind: EntryKind::Normal,
            payload: Bytes::from(format!("e{index}")),
        }
    }

    fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
        range.map(|index| entry(index, term)).collect()
    }

    #[test]
    fn state_survives_reopen_and_bootstrap_applies_only_once() {
        let directory = tempfile::tempdir().unwrap();
        let voters = Membership::with_voters([1, 2, 3]);
        let mut storage = LogStorage::open(directory.path(), voters.clone()).unwrap();
        assert_eq!(storage.initial_state().unwrap().membership, voters);
        storage.append_durably(&entries(1..=10, 1)).unwrap();
        storage.append_durably(&entries(8..=9, 2)).unwrap();
        let hard_state = HardState {
            term: 2,
            vote: Some(3),
            commit: 9,
        };
        storage.set_hard_state(hard_state).unwrap();
        drop(storage);
        let storage = LogStorage::open(directory.path(), Membership::with_voters([7])).unwrap();
        let initial = storage.initial_state().unwrap();
        assert_eq!(initial.hard_state, hard_state);
        assert_eq!(
            initial.membership, voters,
            "bootstrap applies only to an empty directory"
        );
        assert_eq!(storage.last_index(), Ok(9));
        assert_eq!(storage.term(7), Ok(1));
        assert_eq!(storage.term(8), Ok(2));
        assert_eq!(storage.entries(8, 10, u64::MAX).unwrap(), entries(8..=9, 2));
    }

    #[test]
    fn compaction_keeps_the_snapshot_and_the_suffix_across_reopen() {
        let directory = tempfile::tempdir().unwrap();
        let voters = Membership::with_voters([1]);
        let mut storage = LogStorage::open(directory.path(), voters.clone()).unwrap();
        storage.append_durably(&entries(1..=10, 1)).unwrap();
        storage
            .set_hard_state(HardState {
                term: 1,
                vote: Some(1),
                commit: 10,
            })
            .unwrap();
        storage
            .compact(5, Bytes::from_static(b"state at 5"), voters.clone())
            .unwrap();
        assert_eq!(storage.first_index(), Ok(6));
        assert_eq!(storage.term(5), Ok(1));
        assert!(matches!(
            storage.entries(3, 6, u64::MAX),
            Err(StorageError::Compacted { .. })
        ));
        drop(storage);
        let storage = LogStorage::open(directory.path(), Membership::default()).unwrap();
        assert_eq!(storage.first_index(), Ok(6));
        assert_eq!(storage.last_index(), Ok(10));
        let snapshot = storage.snapshot().unwrap();
        assert_eq!(
            snapshot.metadata,
            SnapshotMetadata {
                index: 5,
                term: 1,
                membership: voters
            }
        );
        assert_eq!(snapshot.data, Bytes::from_static(b"state at 5"));
        assert_eq!(
            storage.entries(6, 11, u64::MAX).unwrap(),
            entries(6..=10, 1)
        );
    }

    #[test]
    fn an_installed_snapshot_replaces_the_log() {
        let directory = tempfile::tempdir().unwrap();
        let mut storage = LogStorage::open(directory.path(), Membership::default()).unwrap();
        storage.append_durably(&entries(1..=4, 1)).unwrap();
        let metadata = SnapshotMetadata {
            index: 20,
            term: 3,
            membership: Membership::with_voters([1, 2]),
        };
        let snapshot = Snapshot {
            metadata: metadata.clone(),
            data: Bytes::from_static(b"leader state"),
        };
        storage.install_snapshot(snapshot.clone()).unwrap();
        assert_eq!(
            (storage.first_index(), storage.last_index()),
            (Ok(21), Ok(20))
        );
        storage.append_durably(&entries(21..=22, 3)).unwrap();
        drop(storage);
        let storage = LogStorage::open(directory.path(), Membership::default()).unwrap();
        assert_eq!(storage.snapshot().unwrap(), snapshot);
        assert_eq!(
            storage.initial_state().unwrap().membership,
            metadata.membership
        );
        assert_eq!(storage.initial_state().unwrap().hard_state.commit, 20);
        assert_eq!(storage.term(20), Ok(3));
        assert_eq!(
            storage.entries(21, 23, u64::MAX).unwrap(),
            entries(21..=22, 3)
        );
    }

    #[test]
    fn open_repairs_a_crash_between_snapshot_install_and_log_clearing() {
        let directory = tempfile::tempdir().unwrap();
        let mut storage = LogStorage::open(directory.path(), Membership::with_voters([1])).unwrap();
        storage.append_durably(&entries(1..=10, 1)).unwrap();
        // The snapshot (of another leader's history: term 2 at index 8) reached the store,
        // but the process died before the log was cleared.
        let metadata = SnapshotMetadata {
            index: 8,
            term: 2,
            membership: Membership::with_voters([1]),
        };
        storage
            .write_snapshot(&Snapshot {
                metadata,
                data: Bytes::from_static(b"s"),
            })
            .unwrap();
        drop(storage);
        let storage = LogStorage::open(directory.path(), Membership::default()).unwrap();
        assert_eq!(
            (storage.first_index(), storage.last_index()),
            (Ok(9), Ok(8))
        );
        assert_eq!(storage.term(8), Ok(2));
        drop(storage);
        // When the log agrees with the snapshot, its suffix is kept.
        let other = tempfile::tempdir().unwrap();
        let mut storage = LogStorage::open(other.path(), Membership::with_voters([1])).unwrap();
        storage.append_durably(&entries(1..=10, 1)).unwrap();
        let metadata = SnapshotMetadata {
            index: 8,
            term: 1,
            membership: Membership::with_voters([1]),
        };
        storage
            .write_snapshot(&Snapshot {
                metadata,
                data: Bytes::from_static(b"s"),
            })
            .unwrap();
        drop(storage);
        let storage = LogStorage::open(other.path(), Membership::default()).unwrap();
        assert_eq!(
            (storage.first_index(), storage.last_index()),
            (Ok(9), Ok(10))
        );
    }

    #[test]
    fn only_term_and_vote_changes_cost_a_meta_write_and_commit_is_saved_lazily() {
        let directory = tempfile::tempdir().unwrap();
        let voters = Membership::with_voters([1, 2, 3]);
        let mut storage = LogStorage::open(directory.path(), voters.clone()).unwrap();
        storage.append_durably(&entries(1..=5, 2)).unwrap();
        let voted = HardState {
            term: 2,
            vote: Some(1),
            commit: 0,
        };
        storage.set_hard_state(voted).unwrap();
        assert_eq!(storage.saved_hard_state(), voted, "a vote is saved at once");
        let committed = HardState { commit: 4, ..voted };
        storage.set_hard_state(committed).unwrap();
        assert_eq!(
            storage.saved_hard_state(),
            voted,
            "a commit index alone waits for the lazy write"
        );
        drop(storage);
        // A crash before the lazy write: the node knows less of the commit, and no more.
        let mut storage = LogStorage::open(directory.path(), voters.clone()).unwrap();
        assert_eq!(storage.initial_state().unwrap().hard_state, voted);
        storage.set_hard_state(committed).unwrap();
        storage.persist_commit().unwrap();
        assert_eq!(storage.saved_hard_state(), committed);
        drop(storage);
        let storage = LogStorage::open(directory.path(), voters).unwrap();
        assert_eq!(storage.initial_state().unwrap().hard_state, committed);
    }

    #[test]
    fn queued_entries_are_readable_once_durable_and_survive_reopen() {
        let directory = tempfile::tempdir().unwrap();
        let voters = Membership::with_voters([1]);
        let mut storage = LogStorage::open(directory.path(), voters.clone()).unwrap();
        assert!(storage.continues_submitted(&entries(1..=3, 1)));
        assert!(!storage.continues_submitted(&entries(2..=3, 1)));
        let first = storage.submit(&entries(1..=3, 1)).unwrap();
        let second = storage.submit(&entries(4..=6, 1)).unwrap();
        assert!(storage.continues_submitted(&entries(7..=7, 1)));
        assert!(
            !storage.continues_submitted(&entries(5..=7, 2)),
            "a replacement is not queued behind the writes it replaces"
        );
        assert_eq!(first.wait().unwrap().last_index, 3);
        assert_eq!(second.wait().unwrap().last_index, 6);
        assert_eq!(storage.entries(1, 7, u64::MAX).unwrap(), entries(1..=6, 1));
        // Once nothing is in flight, a replacement truncates and appends durably.
        storage.append_durably(&entries(5..=7, 2)).unwrap();
        drop(storage);
        let storage = LogStorage::open(directory.path(), Membership::default()).unwrap();
        assert_eq!(storage.last_index(), Ok(7));
        assert_eq!(storage.term(4), Ok(1));
        assert_eq!(storage.term(5), Ok(2));
    }
}
