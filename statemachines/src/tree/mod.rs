//! The tree machine: ZooKeeper 3.8's data tree as clients observe it.
//!
//! Znodes carry data, an ACL and the full [`Stat`]; the zxid is the log index of the entry
//! that made the change and times are log time. Writes check their arguments in the order
//! of ZooKeeper's `PrepRequestProcessor`, so each failure yields the same
//! `KeeperException` code ([`TreeError::code`]). Watches are state and are set through the
//! log (the read commands with `watch: true`, `AddWatch`); they fire as events published to
//! the watching sessions with the index of the entry that fired them, which the frontend
//! delivers before that entry's reply. Ephemerals go with their session; containers go once
//! their last child does; TTL nodes go once they have no children and have not changed for
//! their TTL of log time.

mod rules;
mod types;
mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

pub use rules::{SYSTEM_PATHS, fixup_acl, ip_matches, is_permitted, is_valid_path};
pub use types::*;
pub use watch::{WatchMode, WatchTable};

use crate::codec;
use crate::error::Error;
use crate::machine::{ApplyContext, QueryContext, SessionId, StateMachine};
use rules::{child_path, name_of, parent_of};

/// The tree's bounds and options; checked by [`TreeConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeConfig {
    /// Largest data of one node (ZooKeeper's `jute.maxbuffer`, 1 MiB); larger is
    /// `BadArguments`.
    pub data_bytes_max: usize,
    /// Longest path; longer is `BadArguments`.
    pub path_bytes_max: usize,
    /// Most nodes, system nodes included; a create beyond is `QuotaExceeded`.
    pub nodes_max: u64,
    /// Most watches over both tables; a watch beyond is `QuotaExceeded`.
    pub watches_max: u64,
    /// Most identities one session may add; more is `QuotaExceeded`.
    pub identities_per_session_max: usize,
    /// Most operations in one multi; more is `BadArguments`.
    pub multi_ops_max: usize,
    /// Whether TTL nodes may be created (ZooKeeper's `extendedTypesEnabled`); when false a
    /// TTL create is `Unimplemented`.
    pub ttl_nodes_enabled: bool,
    /// Identities that pass every ACL check (ZooKeeper's super digest), e.g.
    /// `digest:super:<base64 sha1>`.
    pub super_identities: Vec<Id>,
}

impl Default for TreeConfig {
    fn default() -> Self {
        TreeConfig {
            data_bytes_max: 1024 * 1024,
            path_bytes_max: 4096,
            nodes_max: 10_000_000,
            watches_max: 1_000_000,
            identities_per_session_max: 16,
            multi_ops_max: 1_000,
            ttl_nodes_enabled: true,
            super_identities: Vec::new(),
        }
    }
}

impl TreeConfig {
    /// Refuses zero bounds and a node bound that leaves no room besides the system nodes.
    pub fn validate(&self) -> Result<(), Error> {
        let positive = [
            ("data_bytes_max", self.data_bytes_max as u64),
            ("path_bytes_max", self.path_bytes_max as u64),
            ("watches_max", self.watches_max),
            (
                "identities_per_session_max",
                self.identities_per_session_max as u64,
            ),
            ("multi_ops_max", self.multi_ops_max as u64),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(Error::Config {
                    field,
                    reason: "must be at least 1".to_string(),
                });
            }
        }
        if self.nodes_max <= SYSTEM_PATHS.len() as u64 {
            return Err(Error::Config {
                field: "nodes_max",
                reason: format!("must exceed the {} system nodes", SYSTEM_PATHS.len()),
            });
        }
        Ok(())
    }
}

/// One znode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Node {
    data: Vec<u8>,
    acl: Vec<Acl>,
    /// `data_length` and `num_children` are filled in by [`Node::stat`].
    stat: Stat,
    children: BTreeSet<String>,
}

impl Node {
    fn new(data: Vec<u8>, acl: Vec<Acl>, zxid: i64, time_ms: i64, ephemeral_owner: i64) -> Self {
        Node {
            data,
            acl,
            stat: Stat {
                czxid: zxid,
                mzxid: zxid,
                ctime: time_ms,
                mtime: time_ms,
                ephemeral_owner,
                pzxid: zxid,
                ..Stat::default()
            },
            children: BTreeSet::new(),
        }
    }

    fn stat(&self) -> Stat {
        Stat {
            data_length: self.data.len() as i32,
            num_children: self.children.len() as i32,
            ..self.stat
        }
    }
}

/// One reversible step. Steps never copy a node's child set, so a write under a parent
/// with many children costs the same as under an empty one.
enum Undo {
    /// A node was inserted at this path.
    Inserted(String),
    /// A childless node was removed.
    Removed(String, Node),
    /// A child name was added to (`true`) or removed from (`false`) a parent whose stat was
    /// `stat` before.
    Linked {
        parent: String,
        name: String,
        added: bool,
        stat: Stat,
    },
    /// A node's data or ACL, and its stat, were replaced; these are the previous ones.
    Content {
        path: String,
        data: Option<Vec<u8>>,
        acl: Option<Vec<Acl>>,
        stat: Stat,
    },
}

/// What one command changed: the undo log (for a failing multi) and the changes to report
/// to watchers once it commits.
#[derive(Default)]
struct Changes {
    undo: Vec<Undo>,
    events: Vec<(EventType, String)>,
}

/// The ZooKeeper-style tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeMachine {
    config: TreeConfig,
    nodes: BTreeMap<String, Node>,
    /// Derived from the nodes: each session's ephemerals, the TTL nodes, the containers.
    ephemerals: BTreeMap<SessionId, BTreeSet<String>>,
    /// TTL nodes by the log time after which they may go: (`mtime` + TTL, path).
    ttl_deadlines: BTreeSet<(i64, String)>,
    containers: BTreeSet<String>,
    identities: BTreeMap<SessionId, Vec<Id>>,
    data_watches: WatchTable,
    child_watches: WatchTable,
}

impl Default for TreeMachine {
    fn default() -> Self {
        TreeMachine::new(TreeConfig::default())
    }
}

/// The snapshot header frame.
#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    node_count: u64,
}

fn version_matches(expected: i32, current: i32) -> bool {
    expected == -1 || expected == current
}

/// The next version, wrapping as a Java `int` does.
fn next_version(current: i32) -> i32 {
    current.wrapping_add(1)
}

impl TreeMachine {
    /// A tree holding only `/`, `/zookeeper`, `/zookeeper/quota` and `/zookeeper/config`.
    pub fn new(config: TreeConfig) -> Self {
        let mut tree = TreeMachine {
            config,
            nodes: BTreeMap::new(),
            ephemerals: BTreeMap::new(),
            ttl_deadlines: BTreeSet::new(),
            containers: BTreeSet::new(),
            identities: BTreeMap::new(),
            data_watches: WatchTable::default(),
            child_watches: WatchTable::default(),
        };
        for path in SYSTEM_PATHS {
            let acl = if path == "/zookeeper/config" {
                Acl::read_only()
            } else {
                Acl::open()
            };
            tree.nodes
                .insert(path.to_string(), Node::new(Vec::new(), acl, 0, 0, 0));
            if let Some(parent) = parent_of(path).filter(|_| path != "/")
                && let Some(parent) = tree.nodes.get_mut(parent)
            {
                parent.children.insert(name_of(path).to_string());
            }
        }
        tree
    }

    /// The number of nodes, system nodes included.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Replaces the node at `path` (or removes it with `None`), keeping the derived indexes
    /// in step; returns the previous node. The parent's child set is the caller's business.
    fn put_node(&mut self, path: &str, node: Option<Node>) -> Option<Node> {
        let previous = match node {
            Some(node) => self.nodes.insert(path.to_string(), node),
            None => self.nodes.remove(path),
        };
        if let Some(previous) = &previous {
            self.index_node(path, &previous.stat, false);
        }
        if let Some(stat) = self.nodes.get(path).map(|node| node.stat) {
            self.index_node(path, &stat, true);
        }
        previous
    }

    /// Adds a node to (or removes it from) the index its `ephemeralOwner` calls for.
    fn index_node(&mut self, path: &str, stat: &Stat, present: bool) {
        let (set, session) = match EphemeralType::of(stat.ephemeral_owner) {
            EphemeralType::Void => return,
            EphemeralType::Normal(session) => {
                (self.ephemerals.entry(session).or_default(), Some(session))
            }
            EphemeralType::Container => (&mut self.containers, None),
            EphemeralType::Ttl(ttl_ms) => {
                let key = (stat.mtime.saturating_add(ttl_ms), path.to_string());
                if present {
                    self.ttl_deadlines.insert(key);
                } else {
                    self.ttl_deadlines.remove(&key);
                }
                return;
            }
        };
        if present {
            set.insert(path.to_string());
        } else {
            set.remove(path);
        }
        if let Some(session) = session
            && self
                .ephemerals
                .get(&session)
                .is_some_and(BTreeSet::is_empty)
        {
            self.ephemerals.remove(&session);
        }
    }

    /// Adds or removes a child name of `parent`, updating its stat, and logs the undo.
    fn link(&mut self, changes: &mut Changes, parent: &str, name: &str, zxid: i64, added: bool) {
        let Some(node) = self.nodes.get_mut(parent) else {
            return;
        };
        let stat = node.stat;
        if added {
            node.children.insert(name.to_string());
            node.stat.cversion = next_version(node.stat.cversion);
            node.stat.pzxid = zxid;
        } else {
            node.children.remove(name);
            // A delete leaves cversion alone, as ZooKeeper's DataTree.deleteNode does.
            node.stat.pzxid = node.stat.pzxid.max(zxid);
        }
        changes.undo.push(Undo::Linked {
            parent: parent.to_string(),
            name: name.to_string(),
            added,
            stat,
        });
    }

    /// Replaces a node's data, ACL and stat in place, and logs the undo.
    fn replace_content(
        &mut self,
        changes: &mut Changes,
        path: &str,
        data: Option<Vec<u8>>,
        acl: Option<Vec<Acl>>,
        stat: Stat,
    ) {
        let Some(node) = self.nodes.get_mut(path) else {
            return;
        };
        let undo = Undo::Content {
            path: path.to_string(),
            data: data.map(|data| std::mem::replace(&mut node.data, data)),
            acl: acl.map(|acl| std::mem::replace(&mut node.acl, acl)),
            stat: std::mem::replace(&mut node.stat, stat),
        };
        if let Undo::Content { stat: previous, .. } = &undo {
            // A data change moves a TTL node's deadline.
            self.index_node(path, previous, false);
            self.index_node(path, &stat, true);
        }
        changes.undo.push(undo);
    }

    fn rollback(&mut self, changes: Changes) {
        for undo in changes.undo.into_iter().rev() {
            match undo {
                Undo::Inserted(path) => {
                    self.put_node(&path, None);
                }
                Undo::Removed(path, node) => {
                    self.put_node(&path, Some(node));
                }
                Undo::Linked {
                    parent,
                    name,
                    added,
                    stat,
                } => {
                    if let Some(node) = self.nodes.get_mut(&parent) {
                        if added {
                            node.children.remove(&name);
                        } else {
                            node.children.insert(name);
                        }
                        node.stat = stat;
                    }
                }
                Undo::Content {
                    path,
                    data,
                    acl,
                    stat,
                } => {
                    if let Some(node) = self.nodes.get_mut(&path) {
                        if let Some(data) = data {
                            node.data = data;
                        }
                        if let Some(acl) = acl {
                            node.acl = acl;
                        }
                        let replaced = std::mem::replace(&mut node.stat, stat);
                        self.index_node(&path, &replaced, false);
                        self.index_node(&path, &stat, true);
                    }
                }
            }
        }
    }

    fn identities_of(&self, session: Option<SessionId>) -> &[Id] {
        session
            .and_then(|session| self.identities.get(&session))
            .map_or(&[], Vec::as_slice)
    }

    fn permitted(&self, session: Option<SessionId>, acl: &[Acl], perm: u32) -> bool {
        let identities = self.identities_of(session);
        let is_super = identities
            .iter()
            .any(|identity| self.config.super_identities.contains(identity));
        is_permitted(acl, perm, identities, is_super)
    }

    fn create(
        &mut self,
        context: &ApplyContext<'_, WatchedEvent>,
        request: &CreateRequest,
        changes: &mut Changes,
    ) -> Result<(String, Stat), TreeError> {
        let path = &request.path;
        let bad_arguments = || TreeError::BadArguments { path: path.clone() };
        if request.mode.is_ttl() && !self.config.ttl_nodes_enabled {
            return Err(TreeError::Unimplemented);
        }
        let ttl_valid = if request.mode.is_ttl() {
            request.ttl_ms > 0 && request.ttl_ms <= TTL_MS_MAX
        } else {
            request.ttl_ms < 0
        };
        if !ttl_valid {
            return Err(bad_arguments());
        }
        let session = context.session();
        if request.mode.is_ephemeral() && session.is_none() {
            return Err(TreeError::SessionExpired);
        }
        let parent_path = parent_of(path).ok_or_else(bad_arguments)?.to_string();
        if request.data.len() > self.config.data_bytes_max
            || path.len() > self.config.path_bytes_max
        {
            return Err(bad_arguments());
        }
        let acl = fixup_acl(&request.acl, self.identities_of(session))
            .ok_or_else(|| TreeError::InvalidAcl { path: path.clone() })?;
        let parent = self
            .nodes
            .get(&parent_path)
            .ok_or_else(|| TreeError::NoNode { path: path.clone() })?;
        if !self.permitted(session, &parent.acl, perms::CREATE) {
            return Err(TreeError::NoAuth);
        }
        let final_path = if request.mode.is_sequential() {
            format!("{path}{:010}", parent.stat.cversion)
        } else {
            path.clone()
        };
        if !is_valid_path(&final_path) {
            return Err(bad_arguments());
        }
        if self.nodes.contains_key(&final_path) {
            return Err(TreeError::NodeExists { path: final_path });
        }
        if matches!(
            EphemeralType::of(parent.stat.ephemeral_owner),
            EphemeralType::Normal(_)
        ) {
            return Err(TreeError::NoChildrenForEphemerals { path: final_path });
        }
        if self.nodes.len() as u64 >= self.config.nodes_max {
            return Err(TreeError::QuotaExceeded { path: final_path });
        }
        let ephemeral_owner = match request.mode {
            CreateMode::Container => CONTAINER_EPHEMERAL_OWNER,
            mode if mode.is_ttl() => EphemeralType::ttl_owner(request.ttl_ms),
            mode if mode.is_ephemeral() => session.map_or(0, |session| session as i64),
            _ => 0,
        };
        let zxid = context.index() as i64;
        self.link(changes, &parent_path, name_of(&final_path), zxid, true);
        let time_ms = context.log_time_ms() as i64;
        let node = Node::new(request.data.clone(), acl, zxid, time_ms, ephemeral_owner);
        let stat = node.stat();
        self.put_node(&final_path, Some(node));
        changes.undo.push(Undo::Inserted(final_path.clone()));
        changes
            .events
            .push((EventType::NodeCreated, final_path.clone()));
        Ok((final_path, stat))
    }

    fn delete(
        &mut self,
        context: &ApplyContext<'_, WatchedEvent>,
        path: &str,
        version: i32,
        changes: &mut Changes,
    ) -> Result<(), TreeError> {
        let parent_path = parent_of(path)
            .filter(|_| !SYSTEM_PATHS.contains(&path))
            .ok_or_else(|| TreeError::BadArguments {
                path: path.to_string(),
            })?;
        let no_node = || TreeError::NoNode {
            path: path.to_string(),
        };
        let parent = self.nodes.get(parent_path).ok_or_else(no_node)?;
        if !self.permitted(context.session(), &parent.acl, perms::DELETE) {
            return Err(TreeError::NoAuth);
        }
        let node = self.nodes.get(path).ok_or_else(no_node)?;
        if !version_matches(version, node.stat.version) {
            return Err(TreeError::BadVersion {
                path: path.to_string(),
            });
        }
        if !node.children.is_empty() {
            return Err(TreeError::NotEmpty {
                path: path.to_string(),
            });
        }
        self.remove_leaf(context.index() as i64, path, changes);
        Ok(())
    }

    /// Removes a childless node and unlinks it from its parent.
    fn remove_leaf(&mut self, zxid: i64, path: &str, changes: &mut Changes) {
        let parent_path = parent_of(path).map(str::to_string);
        let removed = self.nodes.get(path);
        assert!(
            removed.is_some_and(|node| node.children.is_empty()),
            "only existing leaves are removed: {path}"
        );
        if let Some(parent_path) = parent_path {
            self.link(changes, &parent_path, name_of(path), zxid, false);
        }
        if let Some(node) = self.put_node(path, None) {
            changes.undo.push(Undo::Removed(path.to_string(), node));
        }
        changes
            .events
            .push((EventType::NodeDeleted, path.to_string()));
    }

    fn set_data(
        &mut self,
        context: &ApplyContext<'_, WatchedEvent>,
        path: &str,
        data: &[u8],
        version: i32,
        changes: &mut Changes,
    ) -> Result<Stat, TreeError> {
        let node = self.checked_node(context.session(), path, perms::WRITE)?;
        if data.len() > self.config.data_bytes_max {
            return Err(TreeError::BadArguments {
                path: path.to_string(),
            });
        }
        if !version_matches(version, node.stat.version) {
            return Err(TreeError::BadVersion {
                path: path.to_string(),
            });
        }
        let mut stat = node.stat;
        stat.version = next_version(stat.version);
        stat.mzxid = context.index() as i64;
        stat.mtime = context.log_time_ms() as i64;
        self.replace_content(changes, path, Some(data.to_vec()), None, stat);
        let stat = self.nodes.get(path).map(Node::stat).unwrap_or(stat);
        changes
            .events
            .push((EventType::NodeDataChanged, path.to_string()));
        Ok(stat)
    }

    fn set_acl(
        &mut self,
        context: &ApplyContext<'_, WatchedEvent>,
        path: &str,
        acl: &[Acl],
        version: i32,
        changes: &mut Changes,
    ) -> Result<Stat, TreeError> {
        if !is_valid_path(path) {
            return Err(TreeError::BadArguments {
                path: path.to_string(),
            });
        }
        let acl = fixup_acl(acl, self.identities_of(context.session())).ok_or_else(|| {
            TreeError::InvalidAcl {
                path: path.to_string(),
            }
        })?;
        let node = self.checked_node(context.session(), path, perms::ADMIN)?;
        if !version_matches(version, node.stat.aversion) {
            return Err(TreeError::BadVersion {
                path: path.to_string(),
            });
        }
        let mut stat = node.stat;
        stat.aversion = next_version(stat.aversion);
        self.replace_content(changes, path, None, Some(acl), stat);
        let stat = self.nodes.get(path).map(Node::stat).unwrap_or(stat);
        Ok(stat)
    }

    /// A valid path, an existing node, and the permission on it, in ZooKeeper's order.
    fn checked_node(
        &self,
        session: Option<SessionId>,
        path: &str,
        perm: u32,
    ) -> Result<&Node, TreeError> {
        if !is_valid_path(path) {
            return Err(TreeError::BadArguments {
                path: path.to_string(),
            });
        }
        let node = self.nodes.get(path).ok_or_else(|| TreeError::NoNode {
            path: path.to_string(),
        })?;
        if !self.permitted(session, &node.acl, perm) {
            return Err(TreeError::NoAuth);
        }
        Ok(node)
    }

    fn apply_op(
        &mut self,
        context: &ApplyContext<'_, WatchedEvent>,
        op: &Op,
        changes: &mut Changes,
    ) -> Result<OpResult, TreeError> {
        Ok(match op {
            Op::Create(request) => {
                let (path, stat) = self.create(context, request, changes)?;
                OpResult::Create { path, stat }
            }
            Op::Delete { path, version } => {
                self.delete(context, path, *version, changes)?;
                OpResult::Delete
            }
            Op::SetData {
                path,
                data,
                version,
            } => OpResult::SetData {
                stat: self.set_data(context, path, data, *version, changes)?,
            },
            Op::Check { path, version } => {
                let node = self.checked_node(context.session(), path, perms::READ)?;
                if !version_matches(*version, node.stat.version) {
                    return Err(TreeError::BadVersion { path: path.clone() });
                }
                OpResult::Check
            }
        })
    }

    /// Runs a multi: every op sees the ones before it; the first failure undoes them all.
    fn multi(
        &mut self,
        context: &ApplyContext<'_, WatchedEvent>,
        ops: &[Op],
        changes: &mut Changes,
    ) -> TreeOutput {
        if ops.len() > self.config.multi_ops_max {
            return Err(TreeError::BadArguments {
                path: String::new(),
            });
        }
        let mut results = Vec::with_capacity(ops.len());
        let mut failed_at = None;
        for (position, op) in ops.iter().enumerate() {
            match self.apply_op(context, op, changes) {
                Ok(result) => results.push(result),
                Err(error) => {
                    failed_at = Some(position);
                    results.push(OpResult::Error(error));
                    break;
                }
            }
        }
        let Some(failed_at) = failed_at else {
            return Ok(TreeResponse::Multi(results));
        };
        self.rollback(std::mem::take(changes));
        let results = (0..ops.len())
            .map(|position| match position.cmp(&failed_at) {
                std::cmp::Ordering::Less => OpResult::Error(TreeError::Ok),
                std::cmp::Ordering::Equal => results[failed_at].clone(),
                std::cmp::Ordering::Greater => OpResult::Error(TreeError::RuntimeInconsistency),
            })
            .collect();
        Ok(TreeResponse::MultiFailed(results))
    }

    /// Fires the watches of committed changes, in order, as ZooKeeper's `DataTree` does.
    fn fire(
        &mut self,
        context: &mut ApplyContext<'_, WatchedEvent>,
        events: &[(EventType, String)],
    ) {
        for (event_type, path) in events {
            let parent = parent_of(path).filter(|_| path != "/").map(str::to_string);
            let notified = self.data_watches.trigger(path, *event_type);
            publish(context, &notified, *event_type, path);
            if *event_type == EventType::NodeDeleted {
                let children = self.child_watches.trigger(path, *event_type);
                let rest: BTreeSet<SessionId> = children.difference(&notified).copied().collect();
                publish(context, &rest, *event_type, path);
            }
            if matches!(event_type, EventType::NodeCreated | EventType::NodeDeleted)
                && let Some(parent) = parent
            {
                let changed = EventType::NodeChildrenChanged;
                let notified = self.child_watches.trigger(&parent, changed);
                publish(context, &notified, changed, &parent);
            }
        }
    }

    /// Deletes containers left without children by `events` (and, in turn, their parent
    /// containers), firing their events.
    fn remove_empty_containers(
        &mut self,
        context: &mut ApplyContext<'_, WatchedEvent>,
        events: &[(EventType, String)],
    ) {
        let mut candidates: Vec<String> = events
            .iter()
            .filter(|(event_type, _)| *event_type == EventType::NodeDeleted)
            .filter_map(|(_, path)| parent_of(path).map(str::to_string))
            .collect();
        while let Some(path) = candidates.pop() {
            let empty_container = self.nodes.get(&path).is_some_and(|node| {
                node.stat.ephemeral_owner == CONTAINER_EPHEMERAL_OWNER
                    && node.stat.cversion > 0
                    && node.children.is_empty()
            });
            if empty_container {
                self.remove_system(context, &path);
                candidates.extend(parent_of(&path).map(str::to_string));
            }
        }
    }

    /// A removal that no client asked for (ephemeral, container, TTL): no checks, events
    /// fired at once.
    fn remove_system(&mut self, context: &mut ApplyContext<'_, WatchedEvent>, path: &str) {
        let mut changes = Changes::default();
        self.remove_leaf(context.index() as i64, path, &mut changes);
        self.fire(context, &changes.events);
    }

    fn commit(&mut self, context: &mut ApplyContext<'_, WatchedEvent>, changes: Changes) {
        self.fire(context, &changes.events);
        self.remove_empty_containers(context, &changes.events);
    }

    fn add_watch(
        &mut self,
        session: Option<SessionId>,
        path: &str,
        table: WatcherType,
        mode: WatchMode,
    ) -> Result<(), TreeError> {
        let session = session.ok_or(TreeError::SessionExpired)?;
        // Re-setting a watch the session already has adds nothing, so the bound allows it.
        let adds_data = matches!(table, WatcherType::Data | WatcherType::Any)
            && !self.data_watches.contains(path, session);
        let adds_child = matches!(table, WatcherType::Children | WatcherType::Any)
            && !self.child_watches.contains(path, session);
        let added = u64::from(adds_data) + u64::from(adds_child);
        if added > 0
            && self.data_watches.len() + self.child_watches.len() + added > self.config.watches_max
        {
            return Err(TreeError::QuotaExceeded {
                path: path.to_string(),
            });
        }
        if matches!(table, WatcherType::Data | WatcherType::Any) {
            self.data_watches.add(path, session, mode);
        }
        if matches!(table, WatcherType::Children | WatcherType::Any) {
            self.child_watches.add(path, session, mode);
        }
        Ok(())
    }

    fn read(&self, session: Option<SessionId>, query: &TreeQuery) -> TreeOutput {
        match query {
            TreeQuery::GetData { path } => {
                let node = self.existing_readable(session, path)?;
                Ok(TreeResponse::Data {
                    data: node.data.clone(),
                    stat: node.stat(),
                })
            }
            TreeQuery::Exists { path } => {
                if path.contains('\0') {
                    return Err(TreeError::BadArguments { path: path.clone() });
                }
                Ok(self
                    .nodes
                    .get(path)
                    .map_or(TreeResponse::Absent, |node| TreeResponse::Stat(node.stat())))
            }
            TreeQuery::GetChildren { path } => {
                let node = self.existing_readable(session, path)?;
                Ok(TreeResponse::Children {
                    children: node.children.iter().cloned().collect(),
                    stat: node.stat(),
                })
            }
            TreeQuery::GetAcl { path } => {
                let node = self
                    .nodes
                    .get(path)
                    .ok_or_else(|| TreeError::NoNode { path: path.clone() })?;
                if !self.permitted(session, &node.acl, perms::READ | perms::ADMIN) {
                    return Err(TreeError::NoAuth);
                }
                let mut acl = node.acl.clone();
                if !self.permitted(session, &node.acl, perms::ADMIN) {
                    // As ZooKeeper's getACL: a reader without ADMIN does not see digest
                    // hashes ("user:hash" becomes "user:x").
                    for entry in acl.iter_mut().filter(|entry| entry.id.scheme == "digest") {
                        if let Some((user, _)) = entry.id.id.split_once(':') {
                            entry.id.id = format!("{user}:x");
                        }
                    }
                }
                Ok(TreeResponse::Acl {
                    acl,
                    stat: node.stat(),
                })
            }
            TreeQuery::GetEphemerals { prefix } => {
                let session = session.ok_or(TreeError::SessionExpired)?;
                let all = prefix.trim().is_empty() || prefix.trim() == "/";
                let paths = self
                    .ephemerals
                    .get(&session)
                    .into_iter()
                    .flatten()
                    .filter(|path| all || path.starts_with(prefix.as_str()))
                    .cloned()
                    .collect();
                Ok(TreeResponse::Paths(paths))
            }
            TreeQuery::MultiRead(queries) => {
                if queries.len() > self.config.multi_ops_max {
                    return Err(TreeError::BadArguments {
                        path: String::new(),
                    });
                }
                let answers = queries
                    .iter()
                    .map(|read| match read {
                        ReadOp::GetData { path } => {
                            self.read(session, &TreeQuery::GetData { path: path.clone() })
                        }
                        ReadOp::GetChildren { path } => {
                            self.read(session, &TreeQuery::GetChildren { path: path.clone() })
                        }
                    })
                    .collect();
                Ok(TreeResponse::MultiRead(answers))
            }
            TreeQuery::GetAllChildrenNumber { path } => {
                self.existing_readable(session, path)?;
                let prefix = if path == "/" {
                    "/".to_string()
                } else {
                    format!("{path}/")
                };
                let count = self
                    .nodes
                    .range(prefix.clone()..)
                    .take_while(|(candidate, _)| candidate.starts_with(&prefix))
                    .filter(|(candidate, _)| candidate.as_str() != "/")
                    .count();
                Ok(TreeResponse::Count(count as u64))
            }
        }
    }

    /// An existing node the session may read (`getData`, `getChildren`): NoNode first,
    /// then NoAuth, as ZooKeeper's `FinalRequestProcessor`.
    fn existing_readable(
        &self,
        session: Option<SessionId>,
        path: &str,
    ) -> Result<&Node, TreeError> {
        let node = self.nodes.get(path).ok_or_else(|| TreeError::NoNode {
            path: path.to_string(),
        })?;
        if !self.permitted(session, &node.acl, perms::READ) {
            return Err(TreeError::NoAuth);
        }
        Ok(node)
    }

    /// A read command, setting the watch only when the read succeeds (or, for `exists`, also
    /// when the node is absent).
    fn read_and_watch(
        &mut self,
        session: Option<SessionId>,
        query: TreeQuery,
        watch: bool,
    ) -> TreeOutput {
        let response = self.read(session, &query)?;
        if watch {
            let (path, table) = match &query {
                TreeQuery::GetChildren { path } => (path, WatcherType::Children),
                TreeQuery::GetData { path } | TreeQuery::Exists { path } => {
                    (path, WatcherType::Data)
                }
                _ => return Ok(response),
            };
            self.add_watch(session, path, table, WatchMode::Standard)?;
        }
        Ok(response)
    }

    fn remove_watches(
        &mut self,
        session: Option<SessionId>,
        path: &str,
        watcher_type: WatcherType,
    ) -> TreeOutput {
        let session = session.ok_or(TreeError::SessionExpired)?;
        let mut removed = false;
        if matches!(watcher_type, WatcherType::Data | WatcherType::Any) {
            removed |= self.data_watches.remove(path, session);
        }
        if matches!(watcher_type, WatcherType::Children | WatcherType::Any) {
            removed |= self.child_watches.remove(path, session);
        }
        if removed {
            Ok(TreeResponse::Done)
        } else {
            Err(TreeError::NoWatcher {
                path: path.to_string(),
            })
        }
    }

    fn add_auth(&mut self, session: Option<SessionId>, id: Id) -> TreeOutput {
        let session = session.ok_or(TreeError::SessionExpired)?;
        let valid = match id.scheme.as_str() {
            "digest" => id
                .id
                .split_once(':')
                .is_some_and(|(user, _)| !user.is_empty()),
            "ip" => rules::ip_matches(&id.id, &id.id),
            _ => false,
        };
        if !valid {
            return Err(TreeError::AuthFailed);
        }
        let identities = self.identities.entry(session).or_default();
        if !identities.contains(&id) {
            if identities.len() >= self.config.identities_per_session_max {
                return Err(TreeError::QuotaExceeded {
                    path: String::new(),
                });
            }
            identities.push(id);
        }
        Ok(TreeResponse::Done)
    }

    fn rebuild_indexes(&mut self) {
        self.ephemerals.clear();
        self.ttl_deadlines.clear();
        self.containers.clear();
        let stats: Vec<(String, Stat)> = self
            .nodes
            .iter()
            .map(|(path, node)| (path.clone(), node.stat))
            .collect();
        for (path, stat) in stats {
            self.index_node(&path, &stat, true);
        }
    }
}

fn publish(
    context: &mut ApplyContext<'_, WatchedEvent>,
    sessions: &BTreeSet<SessionId>,
    event_type: EventType,
    path: &str,
) {
    for &session in sessions {
        context.publish(
            session,
            WatchedEvent {
                event_type,
                path: path.to_string(),
            },
        );
    }
}

impl StateMachine for TreeMachine {
    const TYPE_NAME: &'static str = "tree";
    type Command = TreeCommand;
    type Query = TreeQuery;
    type Output = TreeOutput;
    type Event = WatchedEvent;

    fn apply(
        &mut self,
        context: &mut ApplyContext<'_, WatchedEvent>,
        command: TreeCommand,
    ) -> TreeOutput {
        let session = context.session();
        let mut changes = Changes::default();
        let output = match command {
            TreeCommand::Create(request) => self
                .create(context, &request, &mut changes)
                .map(|(path, stat)| TreeResponse::Created { path, stat }),
            TreeCommand::Delete { path, version } => self
                .delete(context, &path, version, &mut changes)
                .map(|()| TreeResponse::Deleted),
            TreeCommand::SetData {
                path,
                data,
                version,
            } => self
                .set_data(context, &path, &data, version, &mut changes)
                .map(TreeResponse::Stat),
            TreeCommand::SetAcl { path, acl, version } => self
                .set_acl(context, &path, &acl, version, &mut changes)
                .map(TreeResponse::Stat),
            TreeCommand::Multi(ops) => self.multi(context, &ops, &mut changes),
            TreeCommand::AddAuth(id) => self.add_auth(session, id),
            TreeCommand::GetData { path, watch } => {
                self.read_and_watch(session, TreeQuery::GetData { path }, watch)
            }
            TreeCommand::Exists { path, watch } => {
                self.read_and_watch(session, TreeQuery::Exists { path }, watch)
            }
            TreeCommand::GetChildren { path, watch } => {
                self.read_and_watch(session, TreeQuery::GetChildren { path }, watch)
            }
            TreeCommand::AddWatch { path, mode } => {
                let mode = match mode {
                    AddWatchMode::Persistent => WatchMode::Persistent,
                    AddWatchMode::PersistentRecursive => WatchMode::PersistentRecursive,
                };
                // As ZooKeeper's DataTree.addWatch: a recursive watch lives in the data
                // table only, so removing "children" watches never touches it.
                let table = match mode {
                    WatchMode::PersistentRecursive => WatcherType::Data,
                    _ => WatcherType::Any,
                };
                self.add_watch(session, &path, table, mode)
                    .map(|()| TreeResponse::Done)
            }
            TreeCommand::RemoveWatches { path, watcher_type } => {
                self.remove_watches(session, &path, watcher_type)
            }
            TreeCommand::Sync { path } => Ok(TreeResponse::Synced(path)),
        };
        // A failed single write made no change; a failed multi rolled back already.
        if output.is_err() {
            self.rollback(changes);
        } else {
            self.commit(context, changes);
        }
        output
    }

    fn query(&self, context: &QueryContext, query: TreeQuery) -> TreeOutput {
        self.read(context.session, &query)
    }

    fn session_closed(&mut self, context: &mut ApplyContext<'_, WatchedEvent>, session: SessionId) {
        self.identities.remove(&session);
        self.data_watches.remove_session(session);
        self.child_watches.remove_session(session);
        let paths: Vec<String> = self
            .ephemerals
            .get(&session)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        let mut events = Vec::new();
        for path in paths {
            self.remove_system(context, &path);
            events.push((EventType::NodeDeleted, path));
        }
        self.remove_empty_containers(context, &events);
    }

    fn time_advanced(&mut self, context: &mut ApplyContext<'_, WatchedEvent>) {
        let now_ms = context.log_time_ms() as i64;
        // Only nodes past their deadline are looked at: those without children go; those
        // with children stay due and are looked at again on the next advance.
        let expired: Vec<String> = self
            .ttl_deadlines
            .iter()
            .take_while(|(deadline_ms, _)| *deadline_ms < now_ms)
            .filter(|(_, path)| {
                self.nodes
                    .get(path)
                    .is_some_and(|node| node.children.is_empty())
            })
            .map(|(_, path)| path.clone())
            .collect();
        let mut events = Vec::new();
        for path in expired {
            self.remove_system(context, &path);
            events.push((EventType::NodeDeleted, path));
        }
        self.remove_empty_containers(context, &events);
    }

    fn snapshot(&self, writer: &mut dyn Write) -> Result<(), Error> {
        let header = SnapshotHeader {
            node_count: self.nodes.len() as u64,
        };
        codec::write_frame(writer, &header, "tree snapshot header")?;
        for entry in &self.nodes {
            codec::write_frame(writer, &entry, "tree node")?;
        }
        codec::write_frame(writer, &self.identities, "tree identities")?;
        codec::write_frame(writer, &self.data_watches, "tree data watches")?;
        codec::write_frame(writer, &self.child_watches, "tree child watches")
    }

    fn restore(&mut self, reader: &mut dyn Read) -> Result<(), Error> {
        let header: SnapshotHeader = codec::read_frame(reader, "tree snapshot header")?;
        let mut nodes = BTreeMap::new();
        for _ in 0..header.node_count {
            let (path, node): (String, Node) = codec::read_frame(reader, "tree node")?;
            nodes.insert(path, node);
        }
        self.nodes = nodes;
        self.identities = codec::read_frame(reader, "tree identities")?;
        self.data_watches = codec::read_frame(reader, "tree data watches")?;
        self.child_watches = codec::read_frame(reader, "tree child watches")?;
        self.data_watches.rebuild_index();
        self.child_watches.rebuild_index();
        self.rebuild_indexes();
        Ok(())
    }

    fn validate(&self) -> Result<(), String> {
        for path in SYSTEM_PATHS {
            if !self.nodes.contains_key(path) {
                return Err(format!("system node {path} is missing"));
            }
        }
        let mut children_total = 0;
        for (path, node) in &self.nodes {
            children_total += node.children.len();
            for child in &node.children {
                if !self.nodes.contains_key(&child_path(path, child)) {
                    return Err(format!("{path} lists a missing child {child}"));
                }
            }
            if path != "/" {
                let listed = parent_of(path)
                    .and_then(|parent| self.nodes.get(parent))
                    .is_some_and(|parent| parent.children.contains(name_of(path)));
                if !listed {
                    return Err(format!("{path} is not listed by its parent"));
                }
            }
            if let EphemeralType::Normal(session) = EphemeralType::of(node.stat.ephemeral_owner) {
                if !node.children.is_empty() {
                    return Err(format!("ephemeral {path} has children"));
                }
                if !self
                    .ephemerals
                    .get(&session)
                    .is_some_and(|paths| paths.contains(path))
                {
                    return Err(format!("ephemeral {path} is not indexed"));
                }
            }
        }
        if children_total + 1 != self.nodes.len() {
            return Err("the child links do not form a tree".to_string());
        }
        let mut rebuilt = self.clone();
        rebuilt.rebuild_indexes();
        if rebuilt.ephemerals != self.ephemerals
            || rebuilt.ttl_deadlines != self.ttl_deadlines
            || rebuilt.containers != self.containers
        {
            return Err("derived indexes differ from the nodes".to_string());
        }
        self.data_watches.validate()?;
        self.child_watches.validate()
    }
}
