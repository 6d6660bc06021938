//! Watches: a session's interest in a key range from a start revision on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::store::{Change, KeyRange};
use super::types::{EventKind, WatchEvent, WatchResponse};
use crate::machine::SessionId;

/// One watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Watch {
    pub(crate) session: SessionId,
    pub(crate) key: Vec<u8>,
    pub(crate) range_end: Vec<u8>,
    pub(crate) start_revision: i64,
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
        if revision < self.start_revision {
            return None;
        }
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
        })
    }
}

/// Every watch by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Watches {
    pub(crate) watches: BTreeMap<i64, Watch>,
    pub(crate) next_id: i64,
}

impl Watches {
    /// What every watch reports about one committed revision, with the receiving sessions.
    pub(crate) fn notify(
        &self,
        revision: i64,
        changes: &[Change],
    ) -> Vec<(SessionId, WatchResponse)> {
        self.watches
            .iter()
            .filter_map(|(id, watch)| {
                watch
                    .filter(*id, revision, changes)
                    .map(|response| (watch.session, response))
            })
            .collect()
    }

    pub(crate) fn remove_session(&mut self, session: SessionId) {
        self.watches.retain(|_, watch| watch.session != session);
    }
}
