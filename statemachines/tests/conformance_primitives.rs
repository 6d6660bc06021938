//! The conformance suite (determinism, snapshot at every index, invariants, exactly-once,
//! session expiry) run against the tree, lock, election and queue machines.

use conclave_statemachines::testing::{ConformanceOptions, check_machine};
use conclave_statemachines::tree::*;

fn tree_commands() -> Vec<TreeCommand> {
    let create = |path: &str, mode| TreeCommand::Create(CreateRequest::new(path, b"x", mode));
    let mut commands = vec![
        create("/app", CreateMode::Persistent),
        TreeCommand::AddWatch {
            path: "/app".into(),
            mode: AddWatchMode::PersistentRecursive,
        },
        TreeCommand::GetChildren {
            path: "/app".into(),
            watch: true,
        },
        TreeCommand::Exists {
            path: "/app/missing".into(),
            watch: true,
        },
        create("/app/box", CreateMode::Container),
        TreeCommand::AddAuth(Id::new("digest", "user:hash=")),
    ];
    let mut ttl = CreateRequest::new("/app/ttl", b"", CreateMode::PersistentWithTtl);
    ttl.ttl_ms = 200;
    commands.push(TreeCommand::Create(ttl));
    for round in 0..10 {
        commands.push(create("/app/e-", CreateMode::EphemeralSequential));
        commands.push(create("/app/box/item-", CreateMode::PersistentSequential));
        commands.push(TreeCommand::SetData {
            path: "/app".into(),
            data: vec![round],
            version: -1,
        });
        commands.push(TreeCommand::Multi(vec![
            Op::Check {
                path: "/app".into(),
                version: i32::from(round) + 1,
            },
            Op::Create(CreateRequest::new(
                &format!("/app/m{round}"),
                b"",
                CreateMode::Persistent,
            )),
            Op::Delete {
                path: format!("/app/box/item-{:010}", round),
                version: -1,
            },
        ]));
        commands.push(TreeCommand::GetData {
            path: "/app".into(),
            watch: true,
        });
    }
    commands
}

#[test]
fn tree_passes_the_conformance_suite() {
    let queries = vec![
        TreeQuery::GetChildren {
            path: "/app".into(),
        },
        TreeQuery::GetEphemerals { prefix: "/".into() },
        TreeQuery::GetAllChildrenNumber { path: "/".into() },
        TreeQuery::GetData {
            path: "/app".into(),
        },
    ];
    let report = check_machine(
        TreeMachine::default,
        tree_commands(),
        queries,
        &ConformanceOptions::default(),
    )
    .unwrap();
    assert!(report.event_batches > 10, "watches fired: {report:?}");
    assert_eq!(report.sessions_expired, 1);
}

#[test]
fn lock_passes_the_conformance_suite() {
    use conclave_statemachines::lock::*;
    let mut commands = Vec::new();
    for round in 0..10u64 {
        let name = format!("lock-{}", round % 2);
        commands.push(LockCommand::Lock {
            name: name.clone(),
            reentrant: round % 3 == 0,
            wait_ms: if round % 2 == 0 { None } else { Some(100) },
        });
        commands.push(LockCommand::ReadLock {
            name: "rw".into(),
            wait_ms: None,
        });
        commands.push(LockCommand::WriteLock {
            name: "rw".into(),
            wait_ms: Some(50),
        });
        commands.push(LockCommand::Acquire {
            name: "sem".into(),
            permits: 1 + round % 2,
            capacity: 3,
            wait_ms: None,
        });
        if round % 2 == 1 {
            commands.push(LockCommand::Unlock { name });
            commands.push(LockCommand::ReadWriteUnlock { name: "rw".into() });
            commands.push(LockCommand::Release {
                name: "sem".into(),
                permits: 1,
            });
        }
    }
    let queries = vec![
        LockQuery::Describe {
            name: "lock-0".into(),
        },
        LockQuery::Describe { name: "rw".into() },
        LockQuery::Describe { name: "sem".into() },
    ];
    let report = check_machine(
        LockMachine::default,
        commands,
        queries,
        &ConformanceOptions::default(),
    )
    .unwrap();
    assert!(
        report.event_batches > 3,
        "grants reached waiters: {report:?}"
    );
    assert_eq!(report.sessions_expired, 1);
}

#[test]
fn election_passes_the_conformance_suite() {
    use conclave_statemachines::election::*;
    let mut commands = vec![ElectionCommand::Observe { name: "e".into() }];
    for round in 0..12u64 {
        commands.push(ElectionCommand::Campaign {
            name: "e".into(),
            value: vec![round as u8],
        });
        if round % 3 == 2 {
            commands.push(ElectionCommand::Resign { name: "e".into() });
        }
        commands.push(ElectionCommand::Proclaim {
            name: "e".into(),
            epoch: round + 4,
            value: vec![round as u8, 1],
        });
    }
    let queries = vec![
        ElectionQuery::Leader { name: "e".into() },
        ElectionQuery::Candidates { name: "e".into() },
    ];
    let report = check_machine(
        ElectionMachine::default,
        commands,
        queries,
        &ConformanceOptions::default(),
    )
    .unwrap();
    assert!(
        report.event_batches > 3,
        "observers heard changes: {report:?}"
    );
    assert_eq!(report.sessions_expired, 1);
}

#[test]
fn queue_passes_the_conformance_suite() {
    use conclave_statemachines::queue::*;
    let mut commands = vec![QueueCommand::Poll {
        name: "q".into(),
        visibility_timeout_ms: 100,
        wait: true,
    }];
    for round in 0..12u64 {
        commands.push(QueueCommand::Offer {
            name: "q".into(),
            data: vec![round as u8],
        });
        commands.push(QueueCommand::Poll {
            name: "q".into(),
            visibility_timeout_ms: 30 + round * 10,
            wait: round % 2 == 0,
        });
        if round % 3 == 0 {
            commands.push(QueueCommand::Ack {
                name: "q".into(),
                id: round / 2 + 1,
                delivery: 1,
            });
        }
    }
    let queries = vec![
        QueueQuery::Peek { name: "q".into() },
        QueueQuery::Size { name: "q".into() },
    ];
    let report = check_machine(
        QueueMachine::default,
        commands,
        queries,
        &ConformanceOptions::default(),
    )
    .unwrap();
    assert!(report.event_batches > 0, "waiters were woken: {report:?}");
    assert_eq!(report.sessions_expired, 1);
}
