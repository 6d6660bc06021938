//! One test per rule of the tree machine, checked against ZooKeeper 3.8's behaviour.

mod common;

use common::Harness;
use conclave_statemachines::tree::*;
use conclave_statemachines::{Entry, Registry, Reply, SessionConfig, SessionLayer, codec};

fn tree() -> Harness<TreeMachine> {
    Harness::new(TreeMachine::default())
}

fn create(path: &str, mode: CreateMode) -> TreeCommand {
    TreeCommand::Create(CreateRequest::new(path, b"d", mode))
}

fn created(
    harness: &mut Harness<TreeMachine>,
    session: u64,
    path: &str,
    mode: CreateMode,
) -> (String, Stat) {
    match harness.output(session, create(path, mode)) {
        Ok(TreeResponse::Created { path, stat }) => (path, stat),
        other => panic!("create {path} failed: {other:?}"),
    }
}

fn stat(harness: &Harness<TreeMachine>, path: &str) -> Option<Stat> {
    match harness.query(1, TreeQuery::Exists { path: path.into() }) {
        Ok(TreeResponse::Stat(stat)) => Some(stat),
        Ok(TreeResponse::Absent) => None,
        other => panic!("exists {path}: {other:?}"),
    }
}

fn event(session: u64, event_type: EventType, path: &str) -> (u64, WatchedEvent) {
    (
        session,
        WatchedEvent {
            event_type,
            path: path.into(),
        },
    )
}

fn set(path: &str, data: &[u8], version: i32) -> TreeCommand {
    TreeCommand::SetData {
        path: path.into(),
        data: data.to_vec(),
        version,
    }
}

fn delete(path: &str, version: i32) -> TreeCommand {
    TreeCommand::Delete {
        path: path.into(),
        version,
    }
}

#[test]
fn system_nodes_exist_from_the_start() {
    let harness = tree();
    for path in SYSTEM_PATHS {
        assert!(stat(&harness, path).is_some(), "{path}");
    }
    assert_eq!(
        harness.query(1, TreeQuery::GetChildren { path: "/".into() }),
        Ok(TreeResponse::Children {
            children: vec!["zookeeper".into()],
            stat: stat(&harness, "/").unwrap()
        })
    );
    assert_eq!(
        harness.query(1, TreeQuery::GetAllChildrenNumber { path: "/".into() }),
        Ok(TreeResponse::Count(3))
    );
}

#[test]
fn create_sets_the_stat_and_updates_the_parent() {
    let mut harness = tree();
    harness.time_ms = 5_000;
    let (path, stat_a) = created(&mut harness, 1, "/a", CreateMode::Persistent);
    let index = harness.index as i64;
    assert_eq!(path, "/a");
    assert_eq!(
        stat_a,
        Stat {
            czxid: index,
            mzxid: index,
            ctime: 5_000,
            mtime: 5_000,
            pzxid: index,
            data_length: 1,
            ..Stat::default()
        }
    );
    let root = stat(&harness, "/").unwrap();
    assert_eq!(
        (root.cversion, root.pzxid, root.num_children),
        (1, index, 2)
    );
    created(&mut harness, 1, "/a/b", CreateMode::Persistent);
    let parent = stat(&harness, "/a").unwrap();
    assert_eq!(
        (parent.cversion, parent.pzxid, parent.num_children),
        (1, harness.index as i64, 1)
    );
    assert_eq!(parent.mzxid, index, "a child create is not a data change");
}

#[test]
fn sequential_suffix_is_the_parents_count_of_creations() {
    let mut harness = tree();
    created(&mut harness, 1, "/q", CreateMode::Persistent);
    let (first, _) = created(&mut harness, 1, "/q/job-", CreateMode::PersistentSequential);
    assert_eq!(first, "/q/job-0000000000");
    harness.output(1, delete(&first, -1)).unwrap();
    assert_eq!(
        stat(&harness, "/q").unwrap().cversion,
        1,
        "a delete leaves cversion alone"
    );
    created(&mut harness, 1, "/q/plain", CreateMode::Persistent);
    let (third, _) = created(&mut harness, 2, "/q/", CreateMode::EphemeralSequential);
    assert_eq!(third, "/q/0000000002");
    let owner = stat(&harness, &third).unwrap().ephemeral_owner;
    assert_eq!(owner, 2);
}

#[test]
fn ephemerals_have_no_children_and_go_with_their_session() {
    let mut harness = tree();
    created(&mut harness, 1, "/app", CreateMode::Persistent);
    created(&mut harness, 2, "/app/e1", CreateMode::Ephemeral);
    created(&mut harness, 2, "/app/e2", CreateMode::Ephemeral);
    created(&mut harness, 3, "/app/other", CreateMode::Ephemeral);
    assert_eq!(
        harness.output(2, create("/app/e1/child", CreateMode::Persistent)),
        Err(TreeError::NoChildrenForEphemerals {
            path: "/app/e1/child".into()
        })
    );
    assert_eq!(
        harness.query(2, TreeQuery::GetEphemerals { prefix: "/".into() }),
        Ok(TreeResponse::Paths(vec![
            "/app/e1".into(),
            "/app/e2".into()
        ]))
    );
    assert_eq!(
        harness.query(
            2,
            TreeQuery::GetEphemerals {
                prefix: "/app/e2".into()
            }
        ),
        Ok(TreeResponse::Paths(vec!["/app/e2".into()]))
    );
    harness
        .output(
            4,
            TreeCommand::GetChildren {
                path: "/app".into(),
                watch: true,
            },
        )
        .unwrap();
    harness
        .output(
            4,
            TreeCommand::Exists {
                path: "/app/e1".into(),
                watch: true,
            },
        )
        .unwrap();
    let events = harness.close(2);
    assert_eq!(
        events,
        vec![
            event(4, EventType::NodeDeleted, "/app/e1"),
            event(4, EventType::NodeChildrenChanged, "/app"),
        ]
    );
    assert!(stat(&harness, "/app/e2").is_none());
    assert!(stat(&harness, "/app/other").is_some());
}

#[test]
fn create_checks_run_in_zookeepers_order() {
    let mut harness = tree();
    let bad = |path: &str| TreeError::BadArguments { path: path.into() };
    assert_eq!(
        harness.output(1, create("nope", CreateMode::Persistent)),
        Err(bad("nope"))
    );
    // An invalid ACL is found before the missing parent.
    let mut request = CreateRequest::new("/missing/x", b"", CreateMode::Persistent);
    request.acl = Vec::new();
    assert_eq!(
        harness.output(1, TreeCommand::Create(request)),
        Err(TreeError::InvalidAcl {
            path: "/missing/x".into()
        })
    );
    assert_eq!(
        harness.output(1, create("/missing/x", CreateMode::Persistent)),
        Err(TreeError::NoNode {
            path: "/missing/x".into()
        })
    );
    // The path is validated after the parent lookup and the sequence suffix.
    assert_eq!(
        harness.output(1, create("/a/", CreateMode::Persistent)),
        Err(TreeError::NoNode { path: "/a/".into() })
    );
    assert_eq!(
        harness.output(1, create("/./", CreateMode::Persistent)),
        Err(TreeError::NoNode { path: "/./".into() })
    );
    assert_eq!(
        harness.output(1, create("/.", CreateMode::Persistent)),
        Err(bad("/."))
    );
    // NoAuth on the parent comes before NodeExists.
    let mut locked = CreateRequest::new("/locked", b"", CreateMode::Persistent);
    locked.acl = Acl::read_only();
    harness.output(1, TreeCommand::Create(locked)).unwrap();
    created(&mut harness, 1, "/open", CreateMode::Persistent);
    harness
        .output(1, create("/open/x", CreateMode::Persistent))
        .unwrap();
    assert_eq!(
        harness.output(1, create("/locked/x", CreateMode::Persistent)),
        Err(TreeError::NoAuth)
    );
    assert_eq!(
        harness.output(1, create("/open/x", CreateMode::Persistent)),
        Err(TreeError::NodeExists {
            path: "/open/x".into()
        })
    );
    assert_eq!(
        harness.output(1, create("/", CreateMode::Persistent)),
        Err(TreeError::NodeExists { path: "/".into() })
    );
    // TTLs: only for TTL modes, in (0, 2^40).
    let mut ttl = CreateRequest::new("/t", b"", CreateMode::PersistentWithTtl);
    for bad_ttl in [-1, 0, TTL_MS_MAX + 1] {
        ttl.ttl_ms = bad_ttl;
        assert_eq!(
            harness.output(1, TreeCommand::Create(ttl.clone())),
            Err(bad("/t"))
        );
    }
    let mut not_ttl = CreateRequest::new("/p", b"", CreateMode::Persistent);
    not_ttl.ttl_ms = 10;
    assert_eq!(
        harness.output(1, TreeCommand::Create(not_ttl)),
        Err(bad("/p"))
    );
    let mut disabled = Harness::new(TreeMachine::new(TreeConfig {
        ttl_nodes_enabled: false,
        ..TreeConfig::default()
    }));
    ttl.ttl_ms = 100;
    assert_eq!(
        disabled.output(1, TreeCommand::Create(ttl)),
        Err(TreeError::Unimplemented)
    );
    // Data over the bound.
    let mut small = Harness::new(TreeMachine::new(TreeConfig {
        data_bytes_max: 4,
        ..TreeConfig::default()
    }));
    let big = CreateRequest::new("/big", b"12345", CreateMode::Persistent);
    assert_eq!(small.output(1, TreeCommand::Create(big)), Err(bad("/big")));
    assert_eq!(
        harness
            .output(1, create("/open/x", CreateMode::Persistent))
            .unwrap_err()
            .code(),
        -110
    );
}

#[test]
fn set_data_is_conditional_on_the_version() {
    let mut harness = tree();
    created(&mut harness, 1, "/v", CreateMode::Persistent);
    assert_eq!(
        harness.output(1, set("/v", b"x", 3)),
        Err(TreeError::BadVersion { path: "/v".into() })
    );
    harness.time_ms += 10;
    let Ok(TreeResponse::Stat(after)) = harness.output(1, set("/v", b"xy", 0)) else {
        panic!()
    };
    assert_eq!(
        (after.version, after.mzxid, after.mtime, after.data_length),
        (1, harness.index as i64, harness.time_ms as i64, 2)
    );
    let Ok(TreeResponse::Stat(any)) = harness.output(1, set("/v", b"z", -1)) else {
        panic!()
    };
    assert_eq!(any.version, 2);
    assert_eq!(
        harness.output(1, set("/nope", b"", -1)),
        Err(TreeError::NoNode {
            path: "/nope".into()
        })
    );
    assert_eq!(
        harness.output(1, set("/v/", b"", -1)),
        Err(TreeError::BadArguments { path: "/v/".into() })
    );
    assert_eq!(
        harness.query(1, TreeQuery::GetData { path: "/v".into() }),
        Ok(TreeResponse::Data {
            data: b"z".to_vec(),
            stat: any
        })
    );
}

#[test]
fn delete_checks_version_then_children_and_protects_system_nodes() {
    let mut harness = tree();
    created(&mut harness, 1, "/d", CreateMode::Persistent);
    created(&mut harness, 1, "/d/c", CreateMode::Persistent);
    assert_eq!(
        harness.output(1, delete("/d", 5)),
        Err(TreeError::BadVersion { path: "/d".into() })
    );
    assert_eq!(
        harness.output(1, delete("/d", 0)),
        Err(TreeError::NotEmpty { path: "/d".into() })
    );
    assert_eq!(
        harness.output(1, delete("/d/x", -1)),
        Err(TreeError::NoNode {
            path: "/d/x".into()
        })
    );
    assert_eq!(
        harness.output(1, delete("/x/y", -1)),
        Err(TreeError::NoNode {
            path: "/x/y".into()
        })
    );
    for path in SYSTEM_PATHS {
        assert_eq!(
            harness.output(1, delete(path, -1)),
            Err(TreeError::BadArguments { path: path.into() })
        );
    }
    let cversion = stat(&harness, "/d").unwrap().cversion;
    harness.output(1, delete("/d/c", 0)).unwrap();
    let parent = stat(&harness, "/d").unwrap();
    assert_eq!(
        (parent.cversion, parent.pzxid, parent.num_children),
        (cversion, harness.index as i64, 0)
    );
    harness.output(1, delete("/d", -1)).unwrap();
    assert!(stat(&harness, "/d").is_none());
}

#[test]
fn multi_is_all_or_nothing_with_zookeepers_result_codes() {
    let mut harness = tree();
    created(&mut harness, 1, "/m", CreateMode::Persistent);
    harness
        .output(
            2,
            TreeCommand::GetChildren {
                path: "/m".into(),
                watch: true,
            },
        )
        .unwrap();
    let ops = vec![
        Op::Create(CreateRequest::new("/m/a", b"1", CreateMode::Persistent)),
        Op::SetData {
            path: "/m/a".into(),
            data: b"2".to_vec(),
            version: 0,
        },
        Op::Check {
            path: "/m".into(),
            version: 7,
        },
        Op::Delete {
            path: "/m".into(),
            version: -1,
        },
    ];
    let (output, events) = harness.run(1, TreeCommand::Multi(ops.clone()));
    assert_eq!(
        output,
        Ok(TreeResponse::MultiFailed(vec![
            OpResult::Error(TreeError::Ok),
            OpResult::Error(TreeError::Ok),
            OpResult::Error(TreeError::BadVersion { path: "/m".into() }),
            OpResult::Error(TreeError::RuntimeInconsistency),
        ]))
    );
    assert!(events.is_empty(), "a failed multi fires nothing");
    assert!(stat(&harness, "/m/a").is_none());
    assert_eq!(
        stat(&harness, "/m").unwrap().cversion,
        0,
        "the parent is rolled back"
    );
    let ops = vec![
        Op::Create(CreateRequest::new("/m/a", b"1", CreateMode::Persistent)),
        Op::SetData {
            path: "/m/a".into(),
            data: b"2".to_vec(),
            version: 0,
        },
        Op::Check {
            path: "/m/a".into(),
            version: 1,
        },
        Op::Create(CreateRequest::new(
            "/m/s-",
            b"",
            CreateMode::PersistentSequential,
        )),
    ];
    let (output, events) = harness.run(1, TreeCommand::Multi(ops));
    let Ok(TreeResponse::Multi(results)) = output else {
        panic!("{output:?}")
    };
    let zxid = harness.index as i64;
    assert!(
        matches!(&results[0], OpResult::Create { path, stat } if path == "/m/a" && stat.czxid == zxid)
    );
    assert!(
        matches!(&results[1], OpResult::SetData { stat } if stat.version == 1 && stat.mzxid == zxid)
    );
    assert_eq!(results[2], OpResult::Check);
    assert!(matches!(&results[3], OpResult::Create { path, .. } if path == "/m/s-0000000001"));
    assert_eq!(
        events,
        vec![event(2, EventType::NodeChildrenChanged, "/m")],
        "the child watch is one-shot"
    );
}

#[test]
fn one_shot_watches_fire_the_events_zookeeper_fires() {
    let mut harness = tree();
    let watch_exists = |harness: &mut Harness<TreeMachine>, session, path: &str| {
        harness.output(
            session,
            TreeCommand::Exists {
                path: path.into(),
                watch: true,
            },
        )
    };
    assert_eq!(
        watch_exists(&mut harness, 2, "/w"),
        Ok(TreeResponse::Absent)
    );
    let (_, events) = harness.run(1, create("/w", CreateMode::Persistent));
    assert_eq!(events, vec![event(2, EventType::NodeCreated, "/w")]);
    harness
        .output(
            2,
            TreeCommand::GetData {
                path: "/w".into(),
                watch: true,
            },
        )
        .unwrap();
    harness
        .output(
            3,
            TreeCommand::GetData {
                path: "/w".into(),
                watch: true,
            },
        )
        .unwrap();
    let (_, events) = harness.run(1, set("/w", b"new", -1));
    assert_eq!(
        events,
        vec![
            event(2, EventType::NodeDataChanged, "/w"),
            event(3, EventType::NodeDataChanged, "/w")
        ]
    );
    let (_, events) = harness.run(1, set("/w", b"again", -1));
    assert!(events.is_empty(), "one-shot watches are gone");
    // A failed read leaves no watch.
    assert!(
        harness
            .output(
                2,
                TreeCommand::GetData {
                    path: "/nothing".into(),
                    watch: true
                }
            )
            .is_err()
    );
    let (_, events) = harness.run(1, create("/nothing", CreateMode::Persistent));
    assert!(events.is_empty());
    // Data and child watches on a deleted node: one NodeDeleted per session.
    harness
        .output(
            2,
            TreeCommand::GetData {
                path: "/w".into(),
                watch: true,
            },
        )
        .unwrap();
    harness
        .output(
            2,
            TreeCommand::GetChildren {
                path: "/w".into(),
                watch: true,
            },
        )
        .unwrap();
    harness
        .output(
            3,
            TreeCommand::GetChildren {
                path: "/w".into(),
                watch: true,
            },
        )
        .unwrap();
    harness
        .output(
            4,
            TreeCommand::GetChildren {
                path: "/".into(),
                watch: true,
            },
        )
        .unwrap();
    let (_, events) = harness.run(1, delete("/w", -1));
    assert_eq!(
        events,
        vec![
            event(2, EventType::NodeDeleted, "/w"),
            event(3, EventType::NodeDeleted, "/w"),
            event(4, EventType::NodeChildrenChanged, "/"),
        ]
    );
}

#[test]
fn persistent_and_recursive_watches_stay_and_recursive_skip_child_changes() {
    let mut harness = tree();
    created(&mut harness, 1, "/p", CreateMode::Persistent);
    let add = |mode| TreeCommand::AddWatch {
        path: "/p".into(),
        mode,
    };
    harness.output(2, add(AddWatchMode::Persistent)).unwrap();
    harness
        .output(3, add(AddWatchMode::PersistentRecursive))
        .unwrap();
    let (_, events) = harness.run(1, create("/p/c", CreateMode::Persistent));
    assert_eq!(
        events,
        vec![
            event(3, EventType::NodeCreated, "/p/c"),
            event(2, EventType::NodeChildrenChanged, "/p")
        ]
    );
    let (_, events) = harness.run(1, set("/p/c", b"", -1));
    assert_eq!(events, vec![event(3, EventType::NodeDataChanged, "/p/c")]);
    for _ in 0..2 {
        let (_, events) = harness.run(1, set("/p", b"", -1));
        assert_eq!(
            events,
            vec![
                event(2, EventType::NodeDataChanged, "/p"),
                event(3, EventType::NodeDataChanged, "/p")
            ]
        );
    }
    assert_eq!(
        harness.output(
            2,
            TreeCommand::RemoveWatches {
                path: "/p".into(),
                watcher_type: WatcherType::Any
            }
        ),
        Ok(TreeResponse::Done)
    );
    assert_eq!(
        harness.output(
            2,
            TreeCommand::RemoveWatches {
                path: "/p".into(),
                watcher_type: WatcherType::Any
            }
        ),
        Err(TreeError::NoWatcher { path: "/p".into() })
    );
    let (_, events) = harness.run(1, delete("/p/c", -1));
    assert_eq!(events, vec![event(3, EventType::NodeDeleted, "/p/c")]);
    // A recursive watch is a data watch only: removing child watches finds nothing.
    let remove = |watcher_type| TreeCommand::RemoveWatches {
        path: "/p".into(),
        watcher_type,
    };
    assert_eq!(
        harness.output(3, remove(WatcherType::Children)),
        Err(TreeError::NoWatcher { path: "/p".into() })
    );
    assert_eq!(
        harness.output(3, remove(WatcherType::Data)),
        Ok(TreeResponse::Done)
    );
}

#[test]
fn acls_check_digest_ip_auth_and_super() {
    let super_id = Id::new("digest", "super:secret=");
    let mut harness = Harness::new(TreeMachine::new(TreeConfig {
        super_identities: vec![super_id.clone()],
        ..TreeConfig::default()
    }));
    let alice = Id::new("digest", "alice:hash=");
    harness
        .output(1, TreeCommand::AddAuth(alice.clone()))
        .unwrap();
    harness
        .output(2, TreeCommand::AddAuth(Id::new("ip", "10.0.0.7")))
        .unwrap();
    harness.output(4, TreeCommand::AddAuth(super_id)).unwrap();
    assert_eq!(
        harness.output(3, TreeCommand::AddAuth(Id::new("bogus", "x"))),
        Err(TreeError::AuthFailed)
    );
    // auth: expands to the creator's digest identity.
    let mut request = CreateRequest::new("/private", b"s", CreateMode::Persistent);
    request.acl = vec![
        Acl {
            perms: perms::ALL,
            id: Id::new("auth", ""),
        },
        Acl {
            perms: perms::READ,
            id: Id::new("ip", "10.0.0.0/8"),
        },
    ];
    harness
        .output(1, TreeCommand::Create(request.clone()))
        .unwrap();
    assert_eq!(
        harness.output(3, TreeCommand::Create(request)),
        Err(TreeError::InvalidAcl {
            path: "/private".into()
        })
    );
    let Ok(TreeResponse::Acl { acl, .. }) = harness.query(
        1,
        TreeQuery::GetAcl {
            path: "/private".into(),
        },
    ) else {
        panic!()
    };
    assert_eq!(
        acl[0],
        Acl {
            perms: perms::ALL,
            id: alice
        }
    );
    let read = |harness: &Harness<TreeMachine>, session| {
        harness.query(
            session,
            TreeQuery::GetData {
                path: "/private".into(),
            },
        )
    };
    assert!(read(&harness, 1).is_ok());
    assert!(read(&harness, 2).is_ok(), "ip 10.0.0.7 is in 10.0.0.0/8");
    assert_eq!(read(&harness, 3), Err(TreeError::NoAuth));
    assert!(read(&harness, 4).is_ok(), "super reads everything");
    assert_eq!(
        harness.output(2, set("/private", b"", -1)),
        Err(TreeError::NoAuth)
    );
    // A reader without ADMIN sees digest ids without their hash.
    let Ok(TreeResponse::Acl { acl, .. }) = harness.query(
        2,
        TreeQuery::GetAcl {
            path: "/private".into(),
        },
    ) else {
        panic!()
    };
    assert_eq!(acl[0].id, Id::new("digest", "alice:x"));
    assert_eq!(acl[1].id, Id::new("ip", "10.0.0.0/8"));
    assert_eq!(
        harness.query(
            3,
            TreeQuery::GetAcl {
                path: "/private".into()
            }
        ),
        Err(TreeError::NoAuth)
    );
    assert_eq!(
        harness.output(3, delete("/private", -1)),
        Ok(TreeResponse::Deleted),
        "delete needs DELETE on the parent"
    );
    created(&mut harness, 1, "/acl", CreateMode::Persistent);
    let set_acl = |acl: Vec<Acl>, version| TreeCommand::SetAcl {
        path: "/acl".into(),
        acl,
        version,
    };
    assert_eq!(
        harness.output(1, set_acl(Acl::read_only(), 3)),
        Err(TreeError::BadVersion {
            path: "/acl".into()
        })
    );
    let Ok(TreeResponse::Stat(after)) = harness.output(1, set_acl(Acl::read_only(), 0)) else {
        panic!()
    };
    assert_eq!(after.aversion, 1);
    assert_eq!(
        harness.output(1, set_acl(Acl::open(), -1)),
        Err(TreeError::NoAuth),
        "ADMIN is gone"
    );
    assert!(harness.output(4, set_acl(Acl::open(), -1)).is_ok());
    assert_eq!(
        harness.output(1, set_acl(Vec::new(), -1)),
        Err(TreeError::InvalidAcl {
            path: "/acl".into()
        })
    );
}

#[test]
fn containers_go_when_their_last_child_goes() {
    let mut harness = tree();
    created(&mut harness, 1, "/c", CreateMode::Container);
    created(&mut harness, 1, "/unused", CreateMode::Container);
    assert_eq!(stat(&harness, "/c").unwrap().ephemeral_owner, i64::MIN);
    created(&mut harness, 1, "/c/inner", CreateMode::Container);
    created(&mut harness, 1, "/c/inner/x", CreateMode::Persistent);
    harness
        .output(
            2,
            TreeCommand::Exists {
                path: "/c".into(),
                watch: true,
            },
        )
        .unwrap();
    let (_, events) = harness.run(1, delete("/c/inner/x", -1));
    assert!(stat(&harness, "/c/inner").is_none());
    assert!(
        stat(&harness, "/c").is_none(),
        "the removal cascades to the parent container"
    );
    assert_eq!(events, vec![event(2, EventType::NodeDeleted, "/c")]);
    assert!(
        stat(&harness, "/unused").is_some(),
        "a container that never had children stays"
    );
}

#[test]
fn ttl_nodes_go_after_their_ttl_without_children() {
    let mut harness = tree();
    let mut request = CreateRequest::new("/ttl", b"", CreateMode::PersistentWithTtl);
    request.ttl_ms = 1_000;
    harness.output(1, TreeCommand::Create(request)).unwrap();
    assert_eq!(
        EphemeralType::of(stat(&harness, "/ttl").unwrap().ephemeral_owner),
        EphemeralType::Ttl(1_000)
    );
    created(&mut harness, 1, "/ttl/child", CreateMode::Persistent);
    harness.advance(5_000);
    assert!(
        stat(&harness, "/ttl").is_some(),
        "a TTL node with children stays"
    );
    harness.output(1, delete("/ttl/child", -1)).unwrap();
    harness
        .output(
            2,
            TreeCommand::Exists {
                path: "/ttl".into(),
                watch: true,
            },
        )
        .unwrap();
    let events = harness.advance(1);
    assert!(
        stat(&harness, "/ttl").is_none(),
        "a child delete is not a data change"
    );
    assert_eq!(events, vec![event(2, EventType::NodeDeleted, "/ttl")]);
    // A data change restarts the TTL.
    let mut request = CreateRequest::new("/fresh", b"", CreateMode::PersistentSequentialWithTtl);
    request.ttl_ms = 1_000;
    let Ok(TreeResponse::Created { path, .. }) = harness.output(1, TreeCommand::Create(request))
    else {
        panic!()
    };
    harness.advance(600);
    harness.output(1, set(&path, b"touch", -1)).unwrap();
    harness.advance(600);
    harness.advance(400);
    assert!(
        stat(&harness, &path).is_some(),
        "exactly the TTL since the last change: stays"
    );
    harness.advance(1);
    assert!(stat(&harness, &path).is_none());
}

#[test]
fn all_children_count_and_error_codes() {
    let mut harness = tree();
    created(&mut harness, 1, "/n", CreateMode::Persistent);
    created(&mut harness, 1, "/n/a", CreateMode::Persistent);
    created(&mut harness, 1, "/n/a/b", CreateMode::Persistent);
    created(&mut harness, 1, "/na", CreateMode::Persistent);
    assert_eq!(
        harness.query(1, TreeQuery::GetAllChildrenNumber { path: "/n".into() }),
        Ok(TreeResponse::Count(2))
    );
    assert_eq!(
        harness.query(1, TreeQuery::GetAllChildrenNumber { path: "/".into() }),
        Ok(TreeResponse::Count(7))
    );
    let codes: Vec<i32> = [
        TreeError::Ok,
        TreeError::RuntimeInconsistency,
        TreeError::NoAuth,
        TreeError::SessionExpired,
        TreeError::AuthFailed,
    ]
    .iter()
    .map(TreeError::code)
    .collect();
    assert_eq!(codes, vec![0, -2, -102, -112, -115]);
    assert_eq!(
        CreateMode::from_flag(6),
        Some(CreateMode::PersistentSequentialWithTtl)
    );
    assert_eq!(CreateMode::from_flag(7), None);
    assert_eq!(EventType::NodeChildrenChanged.code(), 4);
}

#[test]
fn watch_events_carry_the_index_of_the_write_that_fired_them() {
    let mut registry = Registry::new();
    registry.register(TreeMachine::default).unwrap();
    let mut layer = SessionLayer::new(SessionConfig::default(), registry).unwrap();
    for index in 1..=2 {
        layer.apply(
            index,
            1_000,
            &Entry::Register { timeout_ms: 10_000 }.encode(),
        );
    }
    let command = |session, sequence, command: TreeCommand| {
        Entry::Command {
            session,
            sequence,
            machine_name: "zk".into(),
            machine_type: "tree".into(),
            payload: codec::encode(&command, "command").unwrap(),
        }
        .encode()
    };
    layer.apply(
        3,
        1_001,
        &command(
            2,
            1,
            TreeCommand::Exists {
                path: "/x".into(),
                watch: true,
            },
        ),
    );
    let applied = layer.apply(
        4,
        1_002,
        &command(1, 1, create("/x", CreateMode::Ephemeral)),
    );
    assert!(matches!(applied.reply, Reply::Output(_)));
    assert_eq!(applied.events.len(), 1);
    assert_eq!((applied.events[0].index, applied.events[0].session), (4, 2));
    let fired: WatchedEvent = codec::decode(&applied.events[0].events[0].payload, "event").unwrap();
    assert_eq!(
        fired,
        WatchedEvent {
            event_type: EventType::NodeCreated,
            path: "/x".into()
        }
    );
    // The owner's close deletes the ephemeral, and the watcher hears of it.
    layer.apply(
        5,
        1_003,
        &command(
            2,
            2,
            TreeCommand::Exists {
                path: "/x".into(),
                watch: true,
            },
        ),
    );
    let closed = layer.apply(6, 1_004, &Entry::Close { session: 1 }.encode());
    assert_eq!(closed.events.len(), 1);
    let fired: WatchedEvent = codec::decode(&closed.events[0].events[0].payload, "event").unwrap();
    assert_eq!(fired.event_type, EventType::NodeDeleted);
}

#[test]
fn multi_read_answers_each_read_on_its_own() {
    let mut harness = tree();
    created(&mut harness, 1, "/r", CreateMode::Persistent);
    let query = TreeQuery::MultiRead(vec![
        ReadOp::GetData { path: "/r".into() },
        ReadOp::GetChildren {
            path: "/missing".into(),
        },
        ReadOp::GetChildren { path: "/".into() },
    ]);
    let Ok(TreeResponse::MultiRead(answers)) = harness.query(1, query) else {
        panic!()
    };
    assert!(matches!(&answers[0], Ok(TreeResponse::Data { data, .. }) if data == b"d"));
    assert_eq!(
        answers[1],
        Err(TreeError::NoNode {
            path: "/missing".into()
        })
    );
    assert!(
        matches!(&answers[2], Ok(TreeResponse::Children { children, .. }) if children.len() == 2)
    );
    assert_eq!(answers.len(), 3);
}

#[test]
fn the_watch_bound_counts_distinct_watches() {
    let mut harness = Harness::new(TreeMachine::new(TreeConfig {
        watches_max: 2,
        ..TreeConfig::default()
    }));
    let exists = |path: &str| TreeCommand::Exists {
        path: path.into(),
        watch: true,
    };
    harness.output(1, exists("/a")).unwrap();
    harness.output(1, exists("/b")).unwrap();
    assert_eq!(
        harness.output(1, exists("/a")),
        Ok(TreeResponse::Absent),
        "already set"
    );
    assert_eq!(
        harness.output(2, exists("/a")),
        Err(TreeError::QuotaExceeded { path: "/a".into() })
    );
    let persistent = TreeCommand::AddWatch {
        path: "/a".into(),
        mode: AddWatchMode::Persistent,
    };
    assert_eq!(
        harness.output(1, persistent),
        Err(TreeError::QuotaExceeded { path: "/a".into() }),
        "a persistent watch also needs a child-table slot"
    );
}
