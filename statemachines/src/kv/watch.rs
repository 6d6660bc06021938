//! Watches: a session's interest in a key range from a start revision on.
//!
//! A watch that starts in the past owes the history from its start to the current revision.
//! It catches up in steps of at most `watch_catch_up_revisions_per_entry` revisions per
//! applied entry (shared by all watches that are behind), so that one watch from an old
//! revision cannot put the whole history into one event batch. While it is behind, live
//! changes are not sent to it: its catch-up reaches them in order. A watch that falls behind
//! the compact revision is canceled with the compact revision, as etcd does.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::store::{Change, KeyRange, Store};
use super::types::{EventKind, WatchEvent, WatchResponse};
use crate::machine::SessionId;

/// One watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Watch {
    pub(crate) session: SessionId,
    pub(crate) key: Vec<u8>,
    pub(crate) range_end: Vec<u8>,
    /// The first revision this watch has not been sent yet.
    pub(crate) next_revision: i64,
    pub(crate) no_put: bool,
    pub(crate) no_delete: bool,
    pub(crate) prev_kv: bool,
}

impl Watch {
    /// The events of one revision's changes that this watch reports, or `None` if none.
    pub(crate) fn filter(
        &self,
        watch_id: i64,
        revision: i64,
        changes: &[Change],
    ) -> Option<WatchResponse> {
        let range = KeyRange::new(&self.key, &self.range_end);
        let events: Vec<WatchEvent> = changes
            .iter()
            .filter(|change| range.contains(&change.kv.key))
            .filter(|change| match change.kind {
                EventKind::Put => !self.no_put,
                EventKind::Delete => !self.no_delete,
            })
            .map(|change| WatchEvent {
                kind: change.kind,
                kv: change.kv.clone(),
                prev_kv: if self.prev_kv {
                    change.prev_kv.clone()
                } else {
                    None
                },
            })
            .collect();
        if events.is_empty() {
            return None;
        }
        Some(WatchResponse {
            watch_id,
            revision,
            events,
            canceled: false,
            compact_revision: 0,
        })
    }
}

/// Every watch by id, and which of them still owe history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Watches {
    watches: BTreeMap<i64, Watch>,
    next_id: i64,
    /// Watches whose `next_revision` is at or below the current revision; derived from
    /// `watches` (rebuilt on restore).
    behind: BTreeSet<i64>,
}

type Published = Vec<(SessionId, WatchResponse)>;

impl Watches {
    pub(crate) fn new(next_id: i64) -> Self {
        Watches {
            watches: BTreeMap::new(),
            next_id,
            behind: BTreeSet::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.watches.len()
    }

    pub(crate) fn next_id(&self) -> i64 {
        self.next_id
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&i64, &Watch)> {
        self.watches.iter()
    }

    pub(crate) fn owner(&self, watch_id: i64) -> Option<SessionId> {
        self.watches.get(&watch_id).map(|watch| watch.session)
    }

    /// Adds a watch under a fresh id, or under `id` when restoring.
    pub(crate) fn insert(&mut self, id: Option<i64>, watch: Watch, current_revision: i64) -> i64 {
        let id = id.unwrap_or(self.next_id);
        self.next_id = self.next_id.max(id + 1);
        if watch.next_revision <= current_revision {
            self.behind.insert(id);
        }
        self.watches.insert(id, watch);
        id
    }

    pub(crate) fn remove(&mut self, watch_id: i64) {
        self.watches.remove(&watch_id);
        self.behind.remove(&watch_id);
    }

    pub(crate) fn remove_session(&mut self, session: SessionId) {
        let doomed: Vec<i64> = self
            .watches
            .iter()
            .filter(|(_, watch)| watch.session == session)
            .map(|(id, _)| *id)
            .collect();
        for id in doomed {
            self.remove(id);
        }
    }

    /// Checks the derived index and the id counter (for tests).
    pub(crate) fn validate(&self, current_revision: i64) -> Result<(), String> {
        let behind: BTreeSet<i64> = self
            .watches
            .iter()
            .filter(|(_, watch)| watch.next_revision <= current_revision)
            .map(|(id, _)| *id)
            .collect();
        if behind != self.behind {
            return Err("the behind-watch index disagrees with the watches".to_string());
        }
        if self
            .watches
            .keys()
            .next_back()
            .is_some_and(|last| *last >= self.next_id)
        {
            return Err("a watch id is at or above the next id".to_string());
        }
        Ok(())
    }

    pub(crate) fn any_behind(&self) -> bool {
        !self.behind.is_empty()
    }

    /// What the watches that are up to date report about a revision just committed.
    pub(crate) fn notify(&mut self, revision: i64, changes: &[Change]) -> Published {
        let mut published = Vec::new();
        for (id, watch) in self.watches.iter_mut() {
            // Behind watches reach this revision through catch-up; future ones start later.
            if watch.next_revision != revision || self.behind.contains(id) {
                continue;
            }
            watch.next_revision = revision + 1;
            if let Some(response) = watch.filter(*id, revision, changes) {
                published.push((watch.session, response));
            }
        }
        published
    }

    /// Sends behind watches the next revisions of history, at most `revisions_max` in all.
    pub(crate) fn catch_up(&mut self, store: &Store, revisions_max: u64) -> Published {
        let current = store.revision();
        let mut budget = i64::try_from(revisions_max).unwrap_or(i64::MAX);
        let mut published = Vec::new();
        let behind: Vec<i64> = self.behind.iter().copied().collect();
        for id in behind {
            let Some(watch) = self.watches.get_mut(&id) else {
                continue;
            };
            if budget == 0 {
                break;
            }
            let last = current.min(watch.next_revision.saturating_add(budget - 1));
            let range = KeyRange::new(&watch.key, &watch.range_end);
            let changes = store.changes_between(range, watch.next_revision, last);
            for group in changes.chunk_by(|left, right| left.revision.main == right.revision.main) {
                if let Some(response) = watch.filter(id, group[0].revision.main, group) {
                    published.push((watch.session, response));
                }
            }
            budget -= last - watch.next_revision + 1;
            watch.next_revision = last + 1;
            if watch.next_revision > current {
                self.behind.remove(&id);
            }
        }
        published
    }

    /// Cancels the behind watches whose next revision was compacted away.
    pub(crate) fn cancel_compacted(&mut self, compact_revision: i64, revision: i64) -> Published {
        let doomed: Vec<i64> = self
            .behind
            .iter()
            .copied()
            .filter(|id| {
                self.watches
                    .get(id)
                    .is_some_and(|watch| watch.next_revision < compact_revision)
            })
            .collect();
        let mut published = Vec::new();
        for id in doomed {
            if let Some(watch) = self.watches.get(&id) {
                let response = WatchResponse {
                    watch_id: id,
                    revision,
                    events: Vec::new(),
                    canceled: true,
                    compact_revision,
                };
                published.push((watch.session, response));
            }
            self.remove(id);
        }
        published
    }
}
