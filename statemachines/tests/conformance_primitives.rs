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
