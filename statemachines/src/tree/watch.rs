//! The two watch tables of ZooKeeper's `DataTree` (data and child), with the trigger rules
//! of its `WatchManager`: one-shot watches fire once on their own path; persistent watches
//! stay; recursive watches also fire for descendants, except child-list changes.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::rules::parent_of;
use super::types::EventType;
use crate::machine::SessionId;

/// How a session watches a path in one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum WatchMode {
    /// Fires once, on the path itself.
    Standard,
    /// Fires every time, on the path itself.
    Persistent,
    /// Fires every time, on the path and below (never for child-list changes).
    PersistentRecursive,
}

/// One table: path -> watching sessions and their modes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchTable {
    paths: BTreeMap<String, BTreeMap<SessionId, WatchMode>>,
    count: u64,
    /// The paths each session watches, so a close touches only those. Derived: not in
    /// snapshots, rebuilt by [`WatchTable::rebuild_index`].
    #[serde(skip)]
    by_session: BTreeMap<SessionId, BTreeSet<String>>,
}

impl WatchTable {
    /// Number of (path, session) watches.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds a watch. A one-shot watch never downgrades a persistent one already there.
    pub fn add(&mut self, path: &str, session: SessionId, mode: WatchMode) {
        let watchers = self.paths.entry(path.to_string()).or_default();
        match watchers.get(&session) {
            Some(existing) if mode == WatchMode::Standard && *existing != WatchMode::Standard => {}
            Some(_) => {
                watchers.insert(session, mode);
            }
            None => {
                watchers.insert(session, mode);
                self.count += 1;
                self.by_session
                    .entry(session)
                    .or_default()
                    .insert(path.to_string());
            }
        }
    }

    fn unindex(&mut self, path: &str, session: SessionId) {
        if let Some(paths) = self.by_session.get_mut(&session) {
            paths.remove(path);
            if paths.is_empty() {
                self.by_session.remove(&session);
            }
        }
    }

    /// Rebuilds the per-session index from the table (after a restore).
    pub fn rebuild_index(&mut self) {
        self.by_session.clear();
        for (path, watchers) in &self.paths {
            for session in watchers.keys() {
                self.by_session
                    .entry(*session)
                    .or_default()
                    .insert(path.clone());
            }
        }
    }

    /// Whether a session watches a path in this table.
    pub fn contains(&self, path: &str, session: SessionId) -> bool {
        self.paths
            .get(path)
            .is_some_and(|watchers| watchers.contains_key(&session))
    }

    /// Removes a session's watch on a path; whether there was one.
    pub fn remove(&mut self, path: &str, session: SessionId) -> bool {
        let Some(watchers) = self.paths.get_mut(path) else {
            return false;
        };
        let removed = watchers.remove(&session).is_some();
        if watchers.is_empty() {
            self.paths.remove(path);
        }
        if removed {
            self.count -= 1;
            self.unindex(path, session);
        }
        removed
    }

    /// Removes every watch of a session.
    pub fn remove_session(&mut self, session: SessionId) {
        for path in self.by_session.remove(&session).unwrap_or_default() {
            if let Some(watchers) = self.paths.get_mut(&path) {
                if watchers.remove(&session).is_some() {
                    self.count -= 1;
                }
                if watchers.is_empty() {
                    self.paths.remove(&path);
                }
            }
        }
    }

    /// The sessions a change of type `event_type` at `path` notifies, removing the one-shot
    /// watches that fire. The path itself notifies every mode; its ancestors notify only
    /// recursive watches; recursive watches ignore child-list changes.
    pub fn trigger(&mut self, path: &str, event_type: EventType) -> BTreeSet<SessionId> {
        let mut notified = BTreeSet::new();
        let mut current = Some(path);
        let mut at_path = true;
        while let Some(local) = current {
            if let Some(watchers) = self.paths.get_mut(local) {
                let mut fired_once = Vec::new();
                watchers.retain(|&session, mode| match mode {
                    WatchMode::PersistentRecursive => {
                        if event_type != EventType::NodeChildrenChanged {
                            notified.insert(session);
                        }
                        true
                    }
                    WatchMode::Persistent if at_path => {
                        notified.insert(session);
                        true
                    }
                    WatchMode::Standard if at_path => {
                        notified.insert(session);
                        fired_once.push(session);
                        false
                    }
                    _ => true,
                });
                if watchers.is_empty() {
                    self.paths.remove(local);
                }
                self.count -= fired_once.len() as u64;
                for session in fired_once {
                    self.unindex(local, session);
                }
            }
            current = if local == "/" { None } else { parent_of(local) };
            at_path = false;
        }
        notified
    }

    /// Checks that the count matches the table.
    pub fn validate(&self) -> Result<(), String> {
        let counted: usize = self.paths.values().map(BTreeMap::len).sum();
        if counted as u64 != self.count {
            return Err(format!("watch count {} but {counted} watches", self.count));
        }
        if self.paths.values().any(BTreeMap::is_empty) {
            return Err("an empty watcher set is kept".to_string());
        }
        let mut rebuilt = self.clone();
        rebuilt.rebuild_index();
        if rebuilt.by_session != self.by_session {
            return Err("the per-session watch index differs from the table".to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_watches_fire_once_and_only_on_their_path() {
        let mut table = WatchTable::default();
        table.add("/a", 1, WatchMode::Standard);
        table.add("/a/b", 2, WatchMode::Standard);
        assert_eq!(
            table.trigger("/a/b", EventType::NodeDataChanged),
            BTreeSet::from([2])
        );
        assert!(table.trigger("/a/b", EventType::NodeDataChanged).is_empty());
        assert_eq!(table.len(), 1);
        assert_eq!(
            table.trigger("/a", EventType::NodeDeleted),
            BTreeSet::from([1])
        );
        assert!(table.is_empty());
        table.validate().unwrap();
    }

    #[test]
    fn persistent_watches_stay_and_recursive_ones_see_descendants() {
        let mut table = WatchTable::default();
        table.add("/a", 1, WatchMode::Persistent);
        table.add("/a", 2, WatchMode::PersistentRecursive);
        table.add("/a", 1, WatchMode::Standard);
        for _ in 0..2 {
            assert_eq!(
                table.trigger("/a", EventType::NodeDataChanged),
                BTreeSet::from([1, 2])
            );
        }
        assert_eq!(
            table.trigger("/a/b/c", EventType::NodeCreated),
            BTreeSet::from([2])
        );
        assert!(
            table
                .trigger("/a", EventType::NodeChildrenChanged)
                .contains(&1)
        );
        assert!(
            !table
                .trigger("/a", EventType::NodeChildrenChanged)
                .contains(&2)
        );
        table.remove_session(2);
        assert_eq!(table.len(), 1);
        table.validate().unwrap();
    }
}
