//! Proptest model test of the tree: random creates (all non-TTL modes), deletes and sets
//! with right, wrong and any versions, multis, one-shot and recursive watches, and session
//! closes, checked op by op against a plain map model that knows ZooKeeper's check order,
//! sequential counters, versions and which watch fires for which change.
//!
//! More cases: `PROPTEST_CASES=2000 cargo test -p conclave-statemachines --test tree_model`.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::Harness;
use conclave_statemachines::tree::*;
use proptest::prelude::*;

#[derive(Debug, Clone, PartialEq)]
struct ModelNode {
    data: Vec<u8>,
    version: i32,
    cversion: i32,
    owner: Option<u64>,
}

#[derive(Debug, Clone, Default)]
struct Model {
    nodes: BTreeMap<String, ModelNode>,
    /// Data-table watches: `true` for persistent-recursive, `false` for one-shot.
    data_watches: BTreeMap<(String, u64), bool>,
    /// One-shot child watches.
    child_watches: BTreeSet<(String, u64)>,
    /// Committed changes not yet fired.
    changes: Vec<(EventType, String)>,
}

fn parent(path: &str) -> String {
    let cut = path.rfind('/').unwrap_or(0);
    if cut == 0 {
        "/".into()
    } else {
        path[..cut].to_string()
    }
}

fn children(model: &Model, path: &str) -> usize {
    model
        .nodes
        .keys()
        .filter(|candidate| candidate.as_str() != "/" && parent(candidate) == path)
        .count()
}

#[derive(Debug, Clone)]
enum Target {
    Pool(String),
    Existing(usize),
}

#[derive(Debug, Clone)]
enum Action {
    Create {
        target: Target,
        suffix: Option<String>,
        mode: CreateMode,
        session: u64,
    },
    Delete {
        target: Target,
        version: Option<i32>,
        session: u64,
    },
    Set {
        target: Target,
        version: Option<i32>,
        data: u8,
        session: u64,
    },
    Multi(Vec<Action>),
    Close {
        session: u64,
    },
    /// 0: getData, 1: exists, 2: getChildren (one-shot, watch set); 3: recursive addWatch.
    Watch {
        target: Target,
        kind: u8,
        session: u64,
    },
}

fn pool_path() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop_oneof![Just("a"), Just("b"), Just("c")], 1..4)
        .prop_map(|names| format!("/{}", names.join("/")))
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        pool_path().prop_map(Target::Pool),
        (0usize..64).prop_map(Target::Existing)
    ]
}

fn version() -> impl Strategy<Value = Option<i32>> {
    // None: the node's current version; Some(-1): any; Some(n): probably wrong.
    prop_oneof![Just(None), Just(Some(-1)), (0i32..3).prop_map(Some)]
}

fn mode() -> impl Strategy<Value = CreateMode> {
    prop_oneof![
        Just(CreateMode::Persistent),
        Just(CreateMode::Ephemeral),
        Just(CreateMode::PersistentSequential),
        Just(CreateMode::EphemeralSequential),
    ]
}

fn write_action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (target(), proptest::option::of(prop_oneof![Just("a"), Just("s-")]), mode(), 1u64..4)
            .prop_map(|(target, suffix, mode, session)| Action::Create {
                target,
                suffix: suffix.map(str::to_string),
                mode,
                session
            }),
        2 => (target(), version(), 1u64..4)
            .prop_map(|(target, version, session)| Action::Delete { target, version, session }),
        2 => (target(), version(), any::<u8>(), 1u64..4)
            .prop_map(|(target, version, data, session)| Action::Set { target, version, data, session }),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        8 => write_action(),
        2 => proptest::collection::vec(write_action(), 1..4).prop_map(Action::Multi),
        1 => (1u64..4).prop_map(|session| Action::Close { session }),
        3 => (target(), 0u8..4, 1u64..4)
            .prop_map(|(target, kind, session)| Action::Watch { target, kind, session }),
    ]
}

impl Model {
    fn new() -> Self {
        let mut model = Model::default();
        for path in SYSTEM_PATHS {
            model.nodes.insert(
                path.to_string(),
                ModelNode {
                    data: vec![],
                    version: 0,
                    cversion: 0,
                    owner: None,
                },
            );
        }
        model
    }

    fn resolve(&self, target: &Target) -> String {
        match target {
            Target::Pool(path) => path.clone(),
            Target::Existing(position) => {
                let user: Vec<&String> = self
                    .nodes
                    .keys()
                    .filter(|path| !SYSTEM_PATHS.contains(&path.as_str()))
                    .collect();
                if user.is_empty() {
                    "/a".to_string()
                } else {
                    user[position % user.len()].clone()
                }
            }
        }
    }

    /// The command the action becomes, given the model state (to pick current versions).
    fn op(&self, action: &Action) -> Op {
        let current = |path: &str, version: &Option<i32>| {
            version.unwrap_or_else(|| self.nodes.get(path).map_or(0, |node| node.version))
        };
        match action {
            Action::Create {
                target,
                suffix,
                mode,
                ..
            } => {
                let mut path = self.resolve(target);
                if let Some(suffix) = suffix {
                    path = format!("{path}/{suffix}");
                }
                Op::Create(CreateRequest::new(&path, b"", *mode))
            }
            Action::Delete {
                target, version, ..
            } => {
                let path = self.resolve(target);
                Op::Delete {
                    version: current(&path, version),
                    path,
                }
            }
            Action::Set {
                target,
                version,
                data,
                ..
            } => {
                let path = self.resolve(target);
                Op::SetData {
                    version: current(&path, version),
                    data: vec![*data],
                    path,
                }
            }
            Action::Multi(_) | Action::Close { .. } | Action::Watch { .. } => {
                unreachable!("not an op")
            }
        }
    }

    fn apply(&mut self, op: &Op, session: u64) -> Result<OpResult, i32> {
        match op {
            Op::Create(request) => {
                let parent_path = parent(&request.path);
                let parent_node = self.nodes.get(&parent_path).ok_or(-101)?.clone();
                let path = if request.mode.is_sequential() {
                    format!("{}{:010}", request.path, parent_node.cversion)
                } else {
                    request.path.clone()
                };
                if self.nodes.contains_key(&path) {
                    return Err(-110);
                }
                if parent_node.owner.is_some() {
                    return Err(-108);
                }
                if let Some(parent) = self.nodes.get_mut(&parent_path) {
                    parent.cversion += 1;
                }
                let owner = request.mode.is_ephemeral().then_some(session);
                self.nodes.insert(
                    path.clone(),
                    ModelNode {
                        data: vec![],
                        version: 0,
                        cversion: 0,
                        owner,
                    },
                );
                self.changes.push((EventType::NodeCreated, path.clone()));
                Ok(OpResult::Create {
                    path,
                    stat: Stat::default(),
                })
            }
            Op::Delete { path, version } => {
                self.nodes.get(&parent(path)).ok_or(-101)?;
                let node = self.nodes.get(path).ok_or(-101)?;
                if *version != -1 && *version != node.version {
                    return Err(-103);
                }
                if children(self, path) > 0 {
                    return Err(-111);
                }
                self.nodes.remove(path);
                self.changes.push((EventType::NodeDeleted, path.clone()));
                Ok(OpResult::Delete)
            }
            Op::SetData {
                path,
                data,
                version,
            } => {
                let node = self.nodes.get_mut(path).ok_or(-101)?;
                if *version != -1 && *version != node.version {
                    return Err(-103);
                }
                node.version += 1;
                node.data = data.clone();
                self.changes
                    .push((EventType::NodeDataChanged, path.clone()));
                Ok(OpResult::SetData {
                    stat: Stat::default(),
                })
            }
            Op::Check { .. } => unreachable!("not generated"),
        }
    }
}

impl Model {
    /// Data-table trigger: watches on the path itself, recursive ones on its ancestors.
    fn trigger_data(&mut self, path: &str) -> BTreeSet<u64> {
        let mut notified = BTreeSet::new();
        let mut current = path.to_string();
        loop {
            let here: Vec<((String, u64), bool)> = self
                .data_watches
                .iter()
                .filter(|((watched, _), _)| *watched == current)
                .map(|(key, recursive)| (key.clone(), *recursive))
                .collect();
            for ((watched, session), recursive) in here {
                if recursive {
                    notified.insert(session);
                } else if watched == path {
                    notified.insert(session);
                    self.data_watches.remove(&(watched, session));
                }
            }
            if current == "/" {
                return notified;
            }
            current = parent(&current);
        }
    }

    fn trigger_child(&mut self, path: &str) -> BTreeSet<u64> {
        let fired: BTreeSet<u64> = self
            .child_watches
            .iter()
            .filter(|(watched, _)| watched == path)
            .map(|(_, session)| *session)
            .collect();
        self.child_watches.retain(|(watched, _)| watched != path);
        fired
    }

    /// The events the pending changes fire, in the machine's order.
    fn fire(&mut self) -> Vec<(u64, WatchedEvent)> {
        let mut events = Vec::new();
        let mut push = |sessions: &BTreeSet<u64>, event_type: EventType, path: &str| {
            for session in sessions {
                events.push((
                    *session,
                    WatchedEvent {
                        event_type,
                        path: path.to_string(),
                    },
                ));
            }
        };
        for (event_type, path) in std::mem::take(&mut self.changes) {
            let data = self.trigger_data(&path);
            push(&data, event_type, &path);
            if event_type == EventType::NodeDeleted {
                let child: BTreeSet<u64> = self
                    .trigger_child(&path)
                    .difference(&data)
                    .copied()
                    .collect();
                push(&child, event_type, &path);
            }
            if event_type != EventType::NodeDataChanged {
                let parent_path = parent(&path);
                let child = self.trigger_child(&parent_path);
                push(&child, EventType::NodeChildrenChanged, &parent_path);
            }
        }
        events
    }

    fn watch(&mut self, path: String, kind: u8, session: u64) -> TreeCommand {
        let exists = self.nodes.contains_key(&path);
        match kind {
            0 | 1 => {
                if kind == 1 || exists {
                    self.data_watches
                        .entry((path.clone(), session))
                        .or_insert(false);
                }
                if kind == 0 {
                    TreeCommand::GetData { path, watch: true }
                } else {
                    TreeCommand::Exists { path, watch: true }
                }
            }
            2 => {
                if exists {
                    self.child_watches.insert((path.clone(), session));
                }
                TreeCommand::GetChildren { path, watch: true }
            }
            _ => {
                self.data_watches.insert((path.clone(), session), true);
                TreeCommand::AddWatch {
                    path,
                    mode: AddWatchMode::PersistentRecursive,
                }
            }
        }
    }

    fn close(&mut self, session: u64) -> Vec<(u64, WatchedEvent)> {
        self.data_watches
            .retain(|(_, watcher), _| *watcher != session);
        self.child_watches
            .retain(|(_, watcher)| *watcher != session);
        let owned: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, node)| node.owner == Some(session))
            .map(|(path, _)| path.clone())
            .collect();
        for path in owned {
            self.nodes.remove(&path);
            self.changes.push((EventType::NodeDeleted, path));
        }
        self.fire()
    }
}

fn session_of(action: &Action) -> u64 {
    match action {
        Action::Create { session, .. }
        | Action::Delete { session, .. }
        | Action::Set { session, .. } => *session,
        _ => 1,
    }
}

/// Compares a machine result with the model's, ignoring the stats the model does not keep.
fn same(machine: &OpResult, model: &Result<OpResult, i32>) -> bool {
    match (machine, model) {
        (OpResult::Create { path, .. }, Ok(OpResult::Create { path: expected, .. })) => {
            path == expected
        }
        (OpResult::Delete, Ok(OpResult::Delete)) => true,
        (OpResult::SetData { .. }, Ok(OpResult::SetData { .. })) => true,
        (OpResult::Error(error), Err(code)) => error.code() == *code,
        _ => false,
    }
}

fn to_op_result(output: TreeOutput) -> OpResult {
    match output {
        Ok(TreeResponse::Created { path, stat }) => OpResult::Create { path, stat },
        Ok(TreeResponse::Deleted) => OpResult::Delete,
        Ok(TreeResponse::Stat(stat)) => OpResult::SetData { stat },
        Err(error) => OpResult::Error(error),
        other => panic!("unexpected {other:?}"),
    }
}

fn check_state(harness: &Harness<TreeMachine>, model: &Model) -> Result<(), TestCaseError> {
    let count = harness.query(1, TreeQuery::GetAllChildrenNumber { path: "/".into() });
    prop_assert_eq!(count, Ok(TreeResponse::Count(model.nodes.len() as u64 - 1)));
    for (path, node) in &model.nodes {
        let Ok(TreeResponse::Data { data, stat }) =
            harness.query(1, TreeQuery::GetData { path: path.clone() })
        else {
            return Err(TestCaseError::fail(format!("{path} missing")));
        };
        prop_assert_eq!(&data, &node.data, "{}", path);
        prop_assert_eq!(stat.version, node.version, "{}", path);
        prop_assert_eq!(stat.cversion, node.cversion, "{}", path);
        prop_assert_eq!(
            stat.num_children as usize,
            children(model, path),
            "{}",
            path
        );
        prop_assert_eq!(
            stat.ephemeral_owner,
            node.owner.map_or(0, |owner| owner as i64),
            "{}",
            path
        );
    }
    Ok(())
}

proptest! {

    #[test]
    fn tree_matches_the_model(actions in proptest::collection::vec(action(), 1..60)) {
        let mut harness = Harness::new(TreeMachine::default());
        let mut model = Model::new();
        for action in &actions {
            match action {
                Action::Close { session } => {
                    let events = harness.close(*session);
                    harness.sessions.insert(*session, ());
                    prop_assert_eq!(events, model.close(*session));
                }
                Action::Watch { target, kind, session } => {
                    let path = model.resolve(target);
                    let command = model.watch(path, *kind, *session);
                    let (_, events) = harness.run(*session, command);
                    prop_assert!(events.is_empty());
                }
                Action::Multi(actions) => {
                    let session = session_of(&actions[0]);
                    let mut scratch = model.clone();
                    let mut expected = Vec::new();
                    let mut ops = Vec::new();
                    for action in actions {
                        let op = scratch.op(action);
                        let result = scratch.apply(&op, session);
                        let failed = result.is_err();
                        expected.push(result);
                        ops.push(op);
                        if failed {
                            break;
                        }
                    }
                    let (output, events) = harness.run(session, TreeCommand::Multi(ops.clone()));
                    match output {
                        Ok(TreeResponse::Multi(results)) => {
                            prop_assert!(expected.iter().all(Result::is_ok) && expected.len() == ops.len());
                            for (result, expected) in results.iter().zip(&expected) {
                                prop_assert!(same(result, expected), "{:?} vs {:?}", result, expected);
                            }
                            model = scratch;
                            prop_assert_eq!(events, model.fire());
                        }
                        Ok(TreeResponse::MultiFailed(results)) => {
                            let failed_at = expected.len() - 1;
                            prop_assert!(expected[failed_at].is_err());
                            prop_assert_eq!(results.len(), ops.len());
                            prop_assert!(events.is_empty(), "a failed multi fires nothing");
                            for (position, result) in results.iter().enumerate() {
                                let code = match result { OpResult::Error(error) => error.code(), _ => 1 };
                                let want = match position.cmp(&failed_at) {
                                    std::cmp::Ordering::Less => 0,
                                    std::cmp::Ordering::Equal => *expected[failed_at].as_ref().unwrap_err(),
                                    std::cmp::Ordering::Greater => -2,
                                };
                                prop_assert_eq!(code, want);
                            }
                        }
                        other => return Err(TestCaseError::fail(format!("multi gave {other:?}"))),
                    }
                }
                single => {
                    let session = session_of(single);
                    let op = model.op(single);
                    let expected = model.apply(&op, session);
                    let command = match op {
                        Op::Create(request) => TreeCommand::Create(request),
                        Op::Delete { path, version } => TreeCommand::Delete { path, version },
                        Op::SetData { path, data, version } => TreeCommand::SetData { path, data, version },
                        Op::Check { .. } => unreachable!(),
                    };
                    let (output, events) = harness.run(session, command);
                    let result = to_op_result(output);
                    prop_assert_eq!(events, model.fire());
                    prop_assert!(same(&result, &expected), "{:?}: {:?} vs {:?}", single, result, expected);
                }
            }
            check_state(&harness, &model)?;
        }
    }
}
