//! The multi-version store: every key keeps its history of changes, each stamped with the
//! revision (and the position inside the revision) that made it, until compaction.

use std::collections::BTreeMap;
use std::ops::Bound;

use serde::{Deserialize, Serialize};

use super::types::{
    EventKind, KeyValue, KvError, RangeRequest, RangeResponse, SortOrder, SortTarget,
};

/// Where a change sits: its transaction's revision and its position inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct Revision {
    pub(crate) main: i64,
    pub(crate) sub: i64,
}

/// A key's state in one of its lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Live {
    pub(crate) create_revision: i64,
    pub(crate) version: i64,
    pub(crate) value: Vec<u8>,
    pub(crate) lease: i64,
}

/// One change to a key: a new state, or a tombstone (`live` is `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KeyEntry {
    pub(crate) revision: Revision,
    pub(crate) live: Option<Live>,
}

/// A change as watches report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) revision: Revision,
    pub(crate) kind: EventKind,
    pub(crate) kv: KeyValue,
    pub(crate) prev_kv: Option<KeyValue>,
}

/// The key interval of a request: one key, `[key, end)`, or everything from `key` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyRange<'a> {
    Single(&'a [u8]),
    Between(&'a [u8], &'a [u8]),
    From(&'a [u8]),
}

impl<'a> KeyRange<'a> {
    /// etcd's forms: an empty end means one key, an end of `[0]` means "to the end" (so
    /// key `[0]` with end `[0]` is every key).
    pub(crate) fn new(key: &'a [u8], range_end: &'a [u8]) -> Self {
        match range_end {
            [] => KeyRange::Single(key),
            [0] => KeyRange::From(key),
            end => KeyRange::Between(key, end),
        }
    }

    pub(crate) fn contains(&self, candidate: &[u8]) -> bool {
        match *self {
            KeyRange::Single(key) => candidate == key,
            KeyRange::Between(start, end) => candidate >= start && candidate < end,
            KeyRange::From(start) => candidate >= start,
        }
    }

    /// Whether two intervals share a key (used by the duplicate-key check of transactions).
    pub(crate) fn intersects(&self, other: &KeyRange<'_>) -> bool {
        let (start, end) = self.bounds();
        let (other_start, other_end) = other.bounds();
        let starts_before_other_ends = match other_end {
            Bound::Excluded(end) => start < end,
            Bound::Included(end) => start <= end,
            Bound::Unbounded => true,
        };
        let other_starts_before_end = match end {
            Bound::Excluded(end) => other_start < end,
            Bound::Included(end) => other_start <= end,
            Bound::Unbounded => true,
        };
        starts_before_other_ends && other_starts_before_end
    }

    fn bounds(&self) -> (&'a [u8], Bound<&'a [u8]>) {
        match *self {
            KeyRange::Single(key) => (key, Bound::Included(key)),
            KeyRange::Between(start, end) => (start, Bound::Excluded(end)),
            KeyRange::From(start) => (start, Bound::Unbounded),
        }
    }
}

/// The keys, their histories, the current revision and the compaction point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Store {
    keys: BTreeMap<Vec<u8>, Vec<KeyEntry>>,
    revision: i64,
    compact_revision: i64,
    /// The size of all retained history, as [`entry_bytes`] counts it; derived.
    history_bytes: u64,
}

/// What one history entry counts against `history_bytes_max`: its key, its value and a
/// fixed allowance for the revision and metadata.
pub(crate) fn entry_bytes(key_bytes: usize, value_bytes: usize) -> u64 {
    const ENTRY_OVERHEAD_BYTES: u64 = 48;
    key_bytes as u64 + value_bytes as u64 + ENTRY_OVERHEAD_BYTES
}

fn history_entry_bytes(key: &[u8], entry: &KeyEntry) -> u64 {
    entry_bytes(
        key.len(),
        entry.live.as_ref().map_or(0, |live| live.value.len()),
    )
}

/// The write side of one revision: every change made by one put, delete, transaction or
/// lease revocation.
#[derive(Debug)]
pub(crate) struct WriteBatch {
    pub(crate) main: i64,
    sub: i64,
    pub(crate) changes: Vec<Change>,
}

fn to_key_value(key: &[u8], entry: &KeyEntry) -> Option<KeyValue> {
    entry.live.as_ref().map(|live| KeyValue {
        key: key.to_vec(),
        create_revision: live.create_revision,
        mod_revision: entry.revision.main,
        version: live.version,
        value: live.value.clone(),
        lease: live.lease,
    })
}

/// The key's state as of revision `at`.
fn visible_at(key: &[u8], entries: &[KeyEntry], at: i64) -> Option<KeyValue> {
    let position = entries.partition_point(|entry| entry.revision.main <= at);
    position
        .checked_sub(1)
        .and_then(|last| to_key_value(key, &entries[last]))
}

impl Default for Store {
    fn default() -> Self {
        // An empty etcd store is at revision 1.
        Store {
            keys: BTreeMap::new(),
            revision: 1,
            compact_revision: 0,
            history_bytes: 0,
        }
    }
}

impl Store {
    pub(crate) fn revision(&self) -> i64 {
        self.revision
    }

    /// Checks the store's invariants (for tests).
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.revision < 1 || self.compact_revision > self.revision {
            return Err("revision or compact revision out of order".to_string());
        }
        let mut history_bytes = 0;
        for (key, entries) in &self.keys {
            let name = String::from_utf8_lossy(key);
            if entries.is_empty() {
                return Err(format!("key {name} has no history"));
            }
            if entries
                .windows(2)
                .any(|pair| pair[0].revision.main >= pair[1].revision.main)
                || entries
                    .iter()
                    .any(|entry| entry.revision.main > self.revision)
            {
                return Err(format!(
                    "key {name}: revisions out of order or in the future"
                ));
            }
            let compacted = entries
                .iter()
                .filter(|entry| entry.revision.main <= self.compact_revision)
                .count();
            if compacted > 1 || (compacted == 1 && entries[0].live.is_none()) {
                return Err(format!(
                    "key {name} keeps history compaction should have dropped"
                ));
            }
            for (position, entry) in entries.iter().enumerate() {
                history_bytes += history_entry_bytes(key, entry);
                let Some(live) = &entry.live else { continue };
                let previous = position.checked_sub(1).map(|previous| &entries[previous]);
                let continues = previous.and_then(|previous| previous.live.as_ref());
                let consistent = match (previous, continues) {
                    (Some(_), Some(before)) => {
                        live.version == before.version + 1
                            && live.create_revision == before.create_revision
                    }
                    // After a tombstone a new life starts at version 1.
                    (Some(_), None) => {
                        live.version == 1 && live.create_revision == entry.revision.main
                    }
                    // The first retained entry may continue a compacted life.
                    (None, _) => live.version >= 1 && live.create_revision <= entry.revision.main,
                };
                if !consistent {
                    return Err(format!(
                        "key {name}: version or create revision inconsistent"
                    ));
                }
            }
        }
        if history_bytes != self.history_bytes {
            return Err("history byte count drifted".to_string());
        }
        Ok(())
    }

    /// The live keys with their lease, for cross-checks.
    pub(crate) fn live_leased_keys(&self) -> Vec<(Vec<u8>, i64)> {
        self.keys
            .iter()
            .filter_map(|(key, entries)| {
                let live = entries.last()?.live.as_ref()?;
                (live.lease != 0).then(|| (key.clone(), live.lease))
            })
            .collect()
    }

    pub(crate) fn history_bytes(&self) -> u64 {
        self.history_bytes
    }

    pub(crate) fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    /// Checks that `revision` (0: current) can be read and returns the one to read at.
    pub(crate) fn check_read_revision(&self, revision: i64) -> Result<i64, KvError> {
        if revision < 0 {
            return Err(KvError::InvalidArgument {
                reason: "negative revision".to_string(),
            });
        }
        if revision == 0 {
            return Ok(self.revision);
        }
        if revision > self.revision {
            return Err(KvError::FutureRevision {
                current_revision: self.revision,
            });
        }
        if revision < self.compact_revision {
            return Err(KvError::Compacted {
                compact_revision: self.compact_revision,
            });
        }
        Ok(revision)
    }

    fn histories<'s>(
        &'s self,
        range: KeyRange<'s>,
    ) -> Box<dyn Iterator<Item = (&'s Vec<u8>, &'s Vec<KeyEntry>)> + 's> {
        match range {
            KeyRange::Single(key) => Box::new(self.keys.get_key_value(key).into_iter()),
            KeyRange::Between(start, end) if start >= end => Box::new(std::iter::empty()),
            KeyRange::Between(start, end) => Box::new(
                self.keys
                    .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end))),
            ),
            KeyRange::From(start) => Box::new(
                self.keys
                    .range::<[u8], _>((Bound::Included(start), Bound::Unbounded)),
            ),
        }
    }

    /// The live keys of a range as of revision `at`, in key order.
    pub(crate) fn visible(&self, range: KeyRange<'_>, at: i64) -> Vec<KeyValue> {
        self.histories(range)
            .filter_map(|(key, entries)| visible_at(key, entries, at))
            .collect()
    }

    /// The latest state of a key, including changes of a write batch in progress.
    pub(crate) fn latest(&self, key: &[u8]) -> Option<KeyValue> {
        let entries = self.keys.get(key)?;
        entries.last().and_then(|entry| to_key_value(key, entry))
    }

    /// Serves a range at revision `at` (already checked); `revision` is the one to report.
    pub(crate) fn range(&self, request: &RangeRequest, at: i64, revision: i64) -> RangeResponse {
        let range = KeyRange::new(&request.key, &request.range_end);
        let mut kvs = self.visible(range, at);
        let count = kvs.len() as i64;
        kvs.retain(|kv| passes_revision_filters(request, kv));
        sort(&mut kvs, request.sort_order, request.sort_target);
        let mut more = false;
        if request.limit > 0 && kvs.len() as i64 > request.limit {
            kvs.truncate(request.limit as usize);
            more = true;
        }
        if request.count_only {
            kvs.clear();
        } else if request.keys_only {
            for kv in &mut kvs {
                kv.value.clear();
            }
        }
        RangeResponse {
            revision,
            kvs,
            more,
            count,
        }
    }

    /// Starts the write batch of the next revision.
    pub(crate) fn begin(&self) -> WriteBatch {
        WriteBatch {
            main: self.revision + 1,
            sub: 0,
            changes: Vec::new(),
        }
    }

    /// Ends a write batch: the revision moves only if something changed.
    pub(crate) fn commit(&mut self, batch: &WriteBatch) {
        if !batch.changes.is_empty() {
            assert_eq!(batch.main, self.revision + 1, "one write batch at a time");
            self.revision = batch.main;
        }
    }

    fn push(&mut self, batch: &mut WriteBatch, key: &[u8], live: Option<Live>) -> Change {
        let revision = Revision {
            main: batch.main,
            sub: batch.sub,
        };
        batch.sub += 1;
        let entries = self.keys.entry(key.to_vec()).or_default();
        let prev_kv = entries.last().and_then(|entry| to_key_value(key, entry));
        assert!(
            entries
                .last()
                .is_none_or(|entry| entry.revision.main < revision.main),
            "a key changes at most once per revision (the duplicate-key check ensures it)"
        );
        let entry = KeyEntry { revision, live };
        let (kind, kv) = match to_key_value(key, &entry) {
            Some(kv) => (EventKind::Put, kv),
            None => (
                EventKind::Delete,
                KeyValue {
                    key: key.to_vec(),
                    create_revision: 0,
                    mod_revision: revision.main,
                    version: 0,
                    value: Vec::new(),
                    lease: 0,
                },
            ),
        };
        self.history_bytes += history_entry_bytes(key, &entry);
        entries.push(entry);
        let change = Change {
            revision,
            kind,
            kv,
            prev_kv,
        };
        batch.changes.push(change.clone());
        change
    }

    /// Puts a key; returns the new and the previous key-value.
    pub(crate) fn put(
        &mut self,
        batch: &mut WriteBatch,
        key: &[u8],
        value: Vec<u8>,
        lease: i64,
    ) -> (KeyValue, Option<KeyValue>) {
        let previous = self.latest(key);
        let live = Live {
            create_revision: previous
                .as_ref()
                .map_or(batch.main, |kv| kv.create_revision),
            version: previous.as_ref().map_or(1, |kv| kv.version + 1),
            value,
            lease,
        };
        let change = self.push(batch, key, Some(live));
        (change.kv, change.prev_kv)
    }

    /// Deletes the live keys of a range; returns what they held.
    pub(crate) fn delete_range(
        &mut self,
        batch: &mut WriteBatch,
        range: KeyRange<'_>,
    ) -> Vec<KeyValue> {
        let doomed: Vec<Vec<u8>> = self
            .histories(range)
            .filter(|(_, entries)| entries.last().is_some_and(|entry| entry.live.is_some()))
            .map(|(key, _)| key.clone())
            .collect();
        doomed
            .iter()
            .filter_map(|key| self.push(batch, key, None).prev_kv)
            .collect()
    }

    /// Drops history that no read at or after `revision` can see.
    pub(crate) fn compact(&mut self, revision: i64) {
        assert!(revision > self.compact_revision && revision <= self.revision);
        let mut freed_bytes = 0;
        self.keys.retain(|key, entries| {
            let visible = entries.partition_point(|entry| entry.revision.main <= revision);
            let mut keep_from = visible.saturating_sub(1);
            // A tombstone at or before the compaction point hides nothing older any more.
            if visible > 0 && entries[visible - 1].live.is_none() {
                keep_from = visible;
            }
            freed_bytes += entries
                .drain(..keep_from)
                .map(|entry| history_entry_bytes(key, &entry))
                .sum::<u64>();
            !entries.is_empty()
        });
        self.history_bytes -= freed_bytes;
        self.compact_revision = revision;
    }

    /// The changes of revisions `from..=to` in a range, in revision order.
    pub(crate) fn changes_between(&self, range: KeyRange<'_>, from: i64, to: i64) -> Vec<Change> {
        let mut changes = Vec::new();
        for (key, entries) in self.histories(range) {
            let first = entries.partition_point(|entry| entry.revision.main < from);
            for position in first..entries.len() {
                let entry = &entries[position];
                if entry.revision.main > to {
                    break;
                }
                let prev_kv = position
                    .checked_sub(1)
                    .and_then(|previous| to_key_value(key, &entries[previous]));
                let (kind, kv) = match to_key_value(key, entry) {
                    Some(kv) => (EventKind::Put, kv),
                    None => (
                        EventKind::Delete,
                        KeyValue {
                            key: key.clone(),
                            create_revision: 0,
                            mod_revision: entry.revision.main,
                            version: 0,
                            value: Vec::new(),
                            lease: 0,
                        },
                    ),
                };
                changes.push(Change {
                    revision: entry.revision,
                    kind,
                    kv,
                    prev_kv,
                });
            }
        }
        changes.sort_by_key(|change| change.revision);
        changes
    }

    /// The parts of the store that go into a snapshot header.
    pub(crate) fn header(&self) -> (i64, i64, u64) {
        (self.revision, self.compact_revision, self.keys.len() as u64)
    }

    pub(crate) fn histories_all(&self) -> impl Iterator<Item = (&Vec<u8>, &Vec<KeyEntry>)> {
        self.keys.iter()
    }

    pub(crate) fn from_parts(
        revision: i64,
        compact_revision: i64,
        keys: BTreeMap<Vec<u8>, Vec<KeyEntry>>,
    ) -> Self {
        let history_bytes = keys
            .iter()
            .flat_map(|(key, entries)| entries.iter().map(move |entry| (key, entry)))
            .map(|(key, entry)| history_entry_bytes(key, entry))
            .sum();
        Store {
            keys,
            revision,
            compact_revision,
            history_bytes,
        }
    }
}

fn passes_revision_filters(request: &RangeRequest, kv: &KeyValue) -> bool {
    (request.min_mod_revision == 0 || kv.mod_revision >= request.min_mod_revision)
        && (request.max_mod_revision == 0 || kv.mod_revision <= request.max_mod_revision)
        && (request.min_create_revision == 0 || kv.create_revision >= request.min_create_revision)
        && (request.max_create_revision == 0 || kv.create_revision <= request.max_create_revision)
}

fn sort(kvs: &mut [KeyValue], order: SortOrder, target: SortTarget) {
    // Results come in key order; like etcd, another target with no order means ascending.
    let order = match (order, target) {
        (SortOrder::None, SortTarget::Key) => return,
        (SortOrder::None, _) => SortOrder::Ascend,
        (order, _) => order,
    };
    // A stable sort keeps key order among equal targets, so the result is deterministic.
    match target {
        SortTarget::Key => {}
        SortTarget::Version => kvs.sort_by_key(|kv| kv.version),
        SortTarget::Create => kvs.sort_by_key(|kv| kv.create_revision),
        SortTarget::Mod => kvs.sort_by_key(|kv| kv.mod_revision),
        SortTarget::Value => kvs.sort_by(|left, right| left.value.cmp(&right.value)),
    }
    if order == SortOrder::Descend {
        kvs.reverse();
    }
}
