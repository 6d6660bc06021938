//! The node's view of its log: the durable part read through [`Storage`], followed by the
//! unstable part (entries and maybe a snapshot) that a `Ready` hands out for persisting.

use crate::error::{Error, StorageError};
use crate::storage::{Storage, take_within_bytes};
use crate::types::{Entry, Snapshot};

/// The log as the core sees it.
#[derive(Debug)]
pub struct RaftLog<S> {
    /// The durable log.
    pub storage: S,
    /// A received snapshot not yet persisted by the application.
    unstable_snapshot: Option<Snapshot>,
    /// Entries not yet persisted; `unstable[0].index == unstable_offset`. Storage may hold
    /// stale entries at or after `unstable_offset`; they are never read.
    unstable: Vec<Entry>,
    /// The index of the first unstable entry; everything below it is durable and current.
    unstable_offset: u64,
    /// The index of the first unstable entry not yet handed to the application for writing.
    /// Entries in `unstable_offset..in_progress_offset` are being written (asynchronously,
    /// see `RawNode::advance_async`): they are not handed out again, and they stay readable
    /// here until the application reports them durable.
    in_progress_offset: u64,
    /// The highest index known to be committed.
    pub committed: u64,
    /// The highest index handed to the application for applying.
    pub applied: u64,
}

impl<S: Storage> RaftLog<S> {
    /// Opens the log over `storage`; `applied_index` of zero means the snapshot index.
    pub fn new(storage: S, applied_index: u64) -> Result<RaftLog<S>, Error> {
        let state = storage.initial_state()?;
        let snapshot_index = storage.first_index()? - 1;
        let last_index = storage.last_index()?;
        let committed = state.hard_state.commit.max(snapshot_index);
        if committed > last_index {
            return Err(Error::Invariant(format!(
                "persisted commit {committed} beyond last index {last_index}"
            )));
        }
        let applied = applied_index.max(snapshot_index);
        if applied > committed {
            return Err(Error::Config {
                field: "applied_index",
                reason: format!("{applied} exceeds the commit index {committed}"),
            });
        }
        Ok(RaftLog {
            storage,
            unstable_snapshot: None,
            unstable: Vec::new(),
            unstable_offset: last_index + 1,
            in_progress_offset: last_index + 1,
            committed,
            applied,
        })
    }

    /// The first index still held.
    pub fn first_index(&self) -> Result<u64, Error> {
        match &self.unstable_snapshot {
            Some(snapshot) => Ok(snapshot.metadata.index + 1),
            None => Ok(self.storage.first_index()?),
        }
    }

    /// The last index held.
    pub fn last_index(&self) -> u64 {
        self.unstable_offset + self.unstable.len() as u64 - 1
    }

    /// The last index the application has made durable and that is still current.
    pub fn persisted_last_index(&self) -> u64 {
        self.unstable_offset - 1
    }

    /// The term of the last entry.
    pub fn last_term(&self) -> Result<u64, Error> {
        self.term(self.last_index())
    }

    /// The term at `index`.
    pub fn term(&self, index: u64) -> Result<u64, Error> {
        if let Some(snapshot) = &self.unstable_snapshot {
            if index == snapshot.metadata.index {
                return Ok(snapshot.metadata.term);
            }
            if index < snapshot.metadata.index {
                return Err(StorageError::Compacted {
                    index,
                    first_index: snapshot.metadata.index + 1,
                }
                .into());
            }
        }
        if index >= self.unstable_offset {
            return match self.unstable.get((index - self.unstable_offset) as usize) {
                Some(entry) => Ok(entry.term),
                None => Err(StorageError::Unavailable {
                    index,
                    last_index: self.last_index(),
                }
                .into()),
            };
        }
        Ok(self.storage.term(index)?)
    }

    /// True if the entry at `index` has `term`.
    pub fn matches_term(&self, index: u64, term: u64) -> bool {
        self.term(index).ok() == Some(term)
    }

    /// Entries in `low..high` within `bytes_max` (at least one if the range is not empty).
    pub fn entries(&self, low: u64, high: u64, bytes_max: u64) -> Result<Vec<Entry>, Error> {
        if low >= high {
            return Ok(Vec::new());
        }
        assert!(
            high <= self.last_index() + 1,
            "entries beyond the last index"
        );
        let mut entries = Vec::new();
        if low < self.unstable_offset {
            let stable_high = high.min(self.unstable_offset);
            entries = self.storage.entries(low, stable_high, bytes_max)?;
            if (entries.len() as u64) < stable_high - low {
                return Ok(entries);
            }
        }
        if high > self.unstable_offset {
            let used_bytes: u64 = entries.iter().map(Entry::size_bytes).sum();
            let start = (low.max(self.unstable_offset) - self.unstable_offset) as usize;
            let end = (high - self.unstable_offset) as usize;
            if entries.is_empty() {
                return Ok(take_within_bytes(&self.unstable[start..end], bytes_max));
            }
            let mut total_bytes = used_bytes;
            for entry in &self.unstable[start..end] {
                total_bytes += entry.size_bytes();
                if total_bytes > bytes_max {
                    break;
                }
                entries.push(entry.clone());
            }
        }
        Ok(entries)
    }

    /// True if a log ending at (`last_index`, `last_term`) is at least as up to date as this
    /// one (paper 5.4.1).
    pub fn is_up_to_date(&self, last_index: u64, last_term: u64) -> Result<bool, Error> {
        let own_term = self.last_term()?;
        Ok(last_term > own_term || (last_term == own_term && last_index >= self.last_index()))
    }

    /// Appends entries that follow or overwrite part of the log.
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        assert!(
            first.index > self.committed,
            "overwriting committed index {}",
            first.index
        );
        assert!(
            first.index <= self.last_index() + 1,
            "gap before index {}",
            first.index
        );
        if first.index <= self.unstable_offset {
            // The new entries replace part of the durable log: they all become unstable.
            self.unstable_offset = first.index;
            self.unstable.clear();
        } else {
            self.unstable
                .truncate((first.index - self.unstable_offset) as usize);
        }
        // Replaced entries that were being written must be handed out again (the
        // application truncates its log from the first new entry).
        self.in_progress_offset = self.in_progress_offset.min(first.index);
        self.unstable.extend_from_slice(entries);
    }

    /// The index of the first entry of `entries` that the log lacks or holds with another
    /// term, or zero if the log holds them all.
    pub fn find_conflict(&self, entries: &[Entry]) -> u64 {
        entries
            .iter()
            .find(|entry| !self.matches_term(entry.index, entry.term))
            .map_or(0, |entry| entry.index)
    }

    /// The largest index at or below `index` whose term is at most `term`, with its term;
    /// used for fast backtracking of conflicting logs.
    pub fn find_conflict_by_term(&self, index: u64, term: u64) -> (u64, u64) {
        let mut index = index.min(self.last_index());
        loop {
            match self.term(index) {
                Ok(found) if found > term && index > 0 => index -= 1,
                Ok(found) => return (index, found),
                Err(_) => return (index, 0),
            }
        }
    }

    /// Handles an Append: returns the last index now known to match, or `None` if the
    /// entry before `entries` does not match.
    pub fn maybe_append(
        &mut self,
        previous_index: u64,
        previous_term: u64,
        commit: u64,
        entries: &[Entry],
    ) -> Option<u64> {
        if !self.matches_term(previous_index, previous_term) {
            return None;
        }
        let last_new_index = previous_index + entries.len() as u64;
        let conflict = self.find_conflict(entries);
        if conflict != 0 {
            assert!(
                conflict > self.committed,
                "conflict at committed index {conflict}"
            );
            let skip = (conflict - previous_index - 1) as usize;
            self.append(&entries[skip..]);
        }
        self.commit_to(commit.min(last_new_index));
        Some(last_new_index)
    }

    /// Raises the commit index to `index` if that is higher.
    pub fn commit_to(&mut self, index: u64) {
        if index > self.committed {
            assert!(
                index <= self.last_index(),
                "commit {index} past the last index"
            );
            self.committed = index;
        }
    }

    /// Replaces the log with a snapshot to be persisted.
    pub fn restore(&mut self, snapshot: Snapshot) {
        let index = snapshot.metadata.index;
        assert!(index > self.committed, "restoring an old snapshot");
        self.committed = index;
        self.applied = index;
        self.unstable.clear();
        self.unstable_offset = index + 1;
        self.in_progress_offset = index + 1;
        self.unstable_snapshot = Some(snapshot);
    }

    /// Entries waiting to be handed to the application for persisting.
    pub fn unstable_entries(&self) -> &[Entry] {
        &self.unstable[(self.in_progress_offset - self.unstable_offset) as usize..]
    }

    /// Records that the application is writing every unstable entry up to (`index`,
    /// `term`): they are not handed out again, and stay unstable until
    /// [`RaftLog::stable_to`]. Ignored if that entry was replaced meanwhile (the
    /// replacement is handed out in a later batch).
    pub fn accept_in_progress(&mut self, index: u64, term: u64) {
        if index >= self.in_progress_offset && self.matches_term(index, term) {
            self.in_progress_offset = index + 1;
        }
    }

    /// True if the entry (`index`, `term`) is unstable but was handed out for writing.
    pub fn is_in_progress(&self, index: u64, term: u64) -> bool {
        index >= self.unstable_offset
            && index < self.in_progress_offset
            && self.matches_term(index, term)
    }

    /// True if the entry (`index`, `term`) is unstable and was never handed out.
    pub fn is_not_handed_out(&self, index: u64, term: u64) -> bool {
        index >= self.in_progress_offset && self.matches_term(index, term)
    }

    /// The snapshot waiting to be persisted.
    pub fn unstable_snapshot(&self) -> Option<&Snapshot> {
        self.unstable_snapshot.as_ref()
    }

    /// Marks entries up to (`index`, `term`) durable, unless they were replaced meanwhile.
    pub fn stable_to(&mut self, index: u64, term: u64) {
        if index < self.unstable_offset || !self.matches_term(index, term) {
            return;
        }
        let count = (index + 1 - self.unstable_offset) as usize;
        if count > self.unstable.len() {
            return;
        }
        self.unstable.drain(..count);
        self.unstable_offset = index + 1;
        self.in_progress_offset = self.in_progress_offset.max(self.unstable_offset);
    }

    /// Marks the unstable snapshot at `index` durable.
    pub fn stable_snapshot_to(&mut self, index: u64) {
        if self.unstable_snapshot.as_ref().map(|s| s.metadata.index) == Some(index) {
            self.unstable_snapshot = None;
        }
    }

    /// The snapshot to send to a follower that needs compacted entries.
    pub fn snapshot(&self) -> Result<Snapshot, Error> {
        match &self.unstable_snapshot {
            Some(snapshot) => Ok(snapshot.clone()),
            None => Ok(self.storage.snapshot()?),
        }
    }

    /// Committed entries not yet handed out, within `bytes_max`.
    pub fn next_committed_entries(&self, bytes_max: u64) -> Result<Vec<Entry>, Error> {
        if self.applied >= self.committed {
            return Ok(Vec::new());
        }
        self.entries(self.applied + 1, self.committed + 1, bytes_max)
    }

    /// Checks the log's invariants.
    pub fn validate(&self) -> Result<(), Error> {
        let fail = |what: String| Err(Error::Invariant(what));
        if self.applied > self.committed {
            return fail(format!(
                "applied {} > committed {}",
                self.applied, self.committed
            ));
        }
        if self.committed > self.last_index() {
            return fail(format!(
                "committed {} > last {}",
                self.committed,
                self.last_index()
            ));
        }
        if self.in_progress_offset < self.unstable_offset
            || self.in_progress_offset > self.last_index() + 1
        {
            return fail(format!(
                "in-progress offset {} outside {}..={}",
                self.in_progress_offset,
                self.unstable_offset,
                self.last_index() + 1
            ));
        }
        for (position, entry) in self.unstable.iter().enumerate() {
            if entry.index != self.unstable_offset + position as u64 {
                return fail(format!("unstable entry {} out of place", entry.index));
            }
        }
        for pair in self.unstable.windows(2) {
            if pair[1].term < pair[0].term {
                return fail(format!("term decreases at index {}", pair[1].index));
            }
        }
        Ok(())
    }
}
