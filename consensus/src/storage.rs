//! The storage trait through which the core reads the durable log, and an in-memory
//! implementation used by tests and the simulator.
//!
//! The core never writes to storage: the application persists what a `Ready` hands it
//! (entries, hard state, snapshot) and then calls `advance`. The core only reads.

use bytes::Bytes;

use crate::error::StorageError;
use crate::types::{Entry, HardState, Membership, Snapshot, SnapshotMetadata};

/// What a node starts from: its durable hard state and the membership of its snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitialState {
    /// The persisted term, vote and commit index.
    pub hard_state: HardState,
    /// The membership as of the snapshot (the core replays later membership entries).
    pub membership: Membership,
}

/// Read access to the durable log.
///
/// To be correct an implementation must: return only entries that are durable; keep
/// `first_index() == snapshot_metadata().index + 1`; answer `term(first_index() - 1)` with
/// the snapshot's term; and never hold a gap between the snapshot and the entries.
pub trait Storage {
    /// The persisted hard state and the snapshot's membership.
    fn initial_state(&self) -> Result<InitialState, StorageError>;
    /// The index of the first entry still held (the snapshot index plus one).
    fn first_index(&self) -> Result<u64, StorageError>;
    /// The index of the last entry held, or the snapshot index if there are none.
    fn last_index(&self) -> Result<u64, StorageError>;
    /// The term of the entry at `index`, for `first_index() - 1 <= index <= last_index()`.
    fn term(&self, index: u64) -> Result<u64, StorageError>;
    /// Entries in `low..high`, stopping once the next entry would exceed `bytes_max` (but
    /// always returning at least one entry if the range is not empty).
    fn entries(&self, low: u64, high: u64, bytes_max: u64) -> Result<Vec<Entry>, StorageError>;
    /// The latest snapshot, to send to a follower that needs compacted entries.
    fn snapshot(&self) -> Result<Snapshot, StorageError>;
    /// The metadata of the latest snapshot.
    fn snapshot_metadata(&self) -> Result<SnapshotMetadata, StorageError>;
}

/// An in-memory log: a snapshot followed by a contiguous run of entries.
#[derive(Debug, Clone, Default)]
pub struct MemoryStorage {
    hard_state: HardState,
    snapshot: Snapshot,
    /// Entries after the snapshot; `entries[0].index == snapshot.metadata.index + 1`.
    entries: Vec<Entry>,
}

impl MemoryStorage {
    /// An empty log whose initial (index 0) snapshot carries `membership`.
    pub fn new(membership: Membership) -> MemoryStorage {
        MemoryStorage {
            hard_state: HardState::default(),
            snapshot: Snapshot {
                metadata: SnapshotMetadata {
                    index: 0,
                    term: 0,
                    membership,
                },
                data: Bytes::new(),
            },
            entries: Vec::new(),
        }
    }

    /// The persisted hard state.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// Persists the hard state.
    pub fn set_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }

    /// Every entry held, in order.
    pub fn all_entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Appends `entries`, first truncating any held entries at or after the first new index.
    /// The new entries must start at most one past the last index and after the snapshot.
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let snapshot_index = self.snapshot.metadata.index;
        assert!(
            first.index > snapshot_index,
            "append at {} into the snapshot",
            first.index
        );
        let last_index = snapshot_index + self.entries.len() as u64;
        assert!(
            first.index <= last_index + 1,
            "gap: append at {} after {last_index}",
            first.index
        );
        for pair in entries.windows(2) {
            assert!(pair[1].index == pair[0].index + 1, "entries not contiguous");
        }
        self.entries
            .truncate((first.index - snapshot_index - 1) as usize);
        self.entries.extend_from_slice(entries);
    }

    /// Replaces the whole log with `snapshot` (a follower installing a leader's snapshot).
    /// Entries after the snapshot that agree with it are kept.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) {
        let index = snapshot.metadata.index;
        let term = snapshot.metadata.term;
        let keeps_suffix = self.term(index).ok() == Some(term);
        if keeps_suffix {
            let skip = (index - self.snapshot.metadata.index) as usize;
            self.entries.drain(..skip);
        } else {
            self.entries.clear();
        }
        self.hard_state.commit = self.hard_state.commit.max(index);
        self.snapshot = snapshot;
    }

    /// Compacts the log up to `index` (which the application has applied), recording a
    /// snapshot with `data` and the `membership` in force at `index`.
    pub fn compact(&mut self, index: u64, data: Bytes, membership: Membership) {
        let snapshot_index = self.snapshot.metadata.index;
        if index <= snapshot_index {
            return;
        }
        assert!(
            index <= self.hard_state.commit,
            "compact at {index} beyond the commit index"
        );
        let term = self.entries[(index - snapshot_index - 1) as usize].term;
        self.entries.drain(..(index - snapshot_index) as usize);
        self.snapshot = Snapshot {
            metadata: SnapshotMetadata {
                index,
                term,
                membership,
            },
            data,
        };
    }
}

impl Storage for MemoryStorage {
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
        Ok(self.snapshot.metadata.index + self.entries.len() as u64)
    }

    fn term(&self, index: u64) -> Result<u64, StorageError> {
        let snapshot_index = self.snapshot.metadata.index;
        if index < snapshot_index {
            return Err(StorageError::Compacted {
                index,
                first_index: snapshot_index + 1,
            });
        }
        if index == snapshot_index {
            return Ok(self.snapshot.metadata.term);
        }
        match self.entries.get((index - snapshot_index - 1) as usize) {
            Some(entry) => Ok(entry.term),
            None => Err(StorageError::Unavailable {
                index,
                last_index: snapshot_index + self.entries.len() as u64,
            }),
        }
    }

    fn entries(&self, low: u64, high: u64, bytes_max: u64) -> Result<Vec<Entry>, StorageError> {
        let snapshot_index = self.snapshot.metadata.index;
        let last_index = snapshot_index + self.entries.len() as u64;
        if low <= snapshot_index {
            return Err(StorageError::Compacted {
                index: low,
                first_index: snapshot_index + 1,
            });
        }
        if high > last_index + 1 {
            return Err(StorageError::Unavailable {
                index: high - 1,
                last_index,
            });
        }
        let start = (low - snapshot_index - 1) as usize;
        let end = (high - snapshot_index - 1) as usize;
        Ok(take_within_bytes(&self.entries[start..end], bytes_max))
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        Ok(self.snapshot.clone())
    }

    fn snapshot_metadata(&self) -> Result<SnapshotMetadata, StorageError> {
        Ok(self.snapshot.metadata.clone())
    }
}

/// The longest prefix of `entries` within `bytes_max`, but at least one entry.
pub(crate) fn take_within_bytes(entries: &[Entry], bytes_max: u64) -> Vec<Entry> {
    let mut total_bytes = 0;
    let mut count = 0;
    for entry in entries {
        total_bytes += entry.size_bytes();
        if count > 0 && total_bytes > bytes_max {
            break;
        }
        count += 1;
    }
    entries[..count].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EntryKind;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            kind: EntryKind::Normal,
            payload: Bytes::from(vec![0; 100]),
        }
    }

    #[test]
    fn append_truncates_conflicting_suffix() {
        let mut storage = MemoryStorage::new(Membership::with_voters([1]));
        storage.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
        storage.append(&[entry(2, 2)]);
        assert_eq!(storage.last_index(), Ok(2));
        assert_eq!(storage.term(2), Ok(2));
        assert_eq!(storage.term(0), Ok(0));
        assert!(matches!(
            storage.term(3),
            Err(StorageError::Unavailable { .. })
        ));
    }

    #[test]
    fn entries_respect_byte_budget_but_return_at_least_one() {
        let mut storage = MemoryStorage::new(Membership::with_voters([1]));
        storage.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
        assert_eq!(storage.entries(1, 4, 1).map(|e| e.len()), Ok(1));
        assert_eq!(storage.entries(1, 4, 2 * 124).map(|e| e.len()), Ok(2));
        assert_eq!(storage.entries(1, 4, u64::MAX).map(|e| e.len()), Ok(3));
    }

    #[test]
    fn compact_and_snapshot_move_first_index() {
        let mut storage = MemoryStorage::new(Membership::with_voters([1]));
        storage.append(&[entry(1, 1), entry(2, 1), entry(3, 2)]);
        storage.set_hard_state(HardState {
            term: 2,
            vote: None,
            commit: 3,
        });
        storage.compact(
            2,
            Bytes::from_static(b"state"),
            Membership::with_voters([1]),
        );
        assert_eq!(storage.first_index(), Ok(3));
        assert_eq!(storage.term(2), Ok(1));
        assert!(matches!(
            storage.entries(2, 3, 10),
            Err(StorageError::Compacted { .. })
        ));
        let snapshot = Snapshot {
            metadata: SnapshotMetadata {
                index: 10,
                term: 3,
                membership: Membership::with_voters([1, 2]),
            },
            data: Bytes::new(),
        };
        storage.apply_snapshot(snapshot);
        assert_eq!(storage.first_index(), Ok(11));
        assert_eq!(storage.last_index(), Ok(10));
        assert_eq!(storage.initial_state().map(|s| s.hard_state.commit), Ok(10));
    }
}
