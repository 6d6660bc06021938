//! The kv machine's rules, one test per rule, against etcd's observable behaviour.

use std::collections::BTreeMap;

use conclave_statemachines::kv::*;
use conclave_statemachines::{ApplyContext, QueryContext, SessionId, StateMachine};

struct Kv {
    machine: KvMachine,
    index: u64,
    time_ms: u64,
    sessions: BTreeMap<SessionId, ()>,
    events: Vec<(SessionId, WatchResponse)>,
}

impl Kv {
    fn new() -> Self {
        Kv::with(KvConfig::default())
    }

    fn with(config: KvConfig) -> Self {
        Kv {
            machine: KvMachine::new(config),
            index: 10,
            time_ms: 0,
            sessions: [(1, ()), (2, ())].into_iter().collect(),
            events: Vec::new(),
        }
    }

    fn run_as(&mut self, session: Option<SessionId>, command: KvCommand) -> KvOutput {
        self.index += 1;
        let mut context = ApplyContext::new(self.index, self.time_ms, session, &self.sessions);
        let output = self.machine.apply(&mut context, command);
        self.events.extend(context.take_events());
        self.machine.validate().unwrap();
        output
    }

    fn run(&mut self, command: KvCommand) -> KvOutput {
        self.run_as(Some(1), command)
    }

    fn advance(&mut self, milliseconds: u64) {
        self.index += 1;
        self.time_ms += milliseconds;
        let mut context = ApplyContext::new(self.index, self.time_ms, None, &self.sessions);
        self.machine.time_advanced(&mut context);
        self.events.extend(context.take_events());
        self.machine.validate().unwrap();
    }

    fn query(&self, query: KvQuery) -> KvOutput {
        let context = QueryContext {
            index: self.index,
            log_time_ms: self.time_ms,
            session: None,
        };
        self.machine.query(&context, query)
    }

    fn put(&mut self, key: &str, value: &str) -> PutResponse {
        let request = PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        };
        match self.run(KvCommand::Put(request)) {
            Ok(KvResponse::Put(response)) => response,
            other => panic!("put failed: {other:?}"),
        }
    }

    fn put_with(&mut self, request: PutRequest) -> KvOutput {
        self.run(KvCommand::Put(request))
    }

    fn delete(&mut self, key: &str, range_end: &[u8]) -> DeleteRangeResponse {
        let request = DeleteRangeRequest {
            key: key.into(),
            range_end: range_end.to_vec(),
            prev_kv: true,
        };
        match self.run(KvCommand::DeleteRange(request)) {
            Ok(KvResponse::DeleteRange(response)) => response,
            other => panic!("delete failed: {other:?}"),
        }
    }

    fn range(&self, request: RangeRequest) -> Result<RangeResponse, KvError> {
        match self.query(KvQuery::Range(request)) {
            Ok(KvResponse::Range(response)) => Ok(response),
            Ok(other) => panic!("not a range response: {other:?}"),
            Err(error) => Err(error),
        }
    }

    fn get(&self, key: &str) -> Option<KeyValue> {
        let response = self
            .range(RangeRequest {
                key: key.into(),
                ..Default::default()
            })
            .unwrap();
        response.kvs.into_iter().next()
    }

    fn keys(&self, key: &[u8], range_end: &[u8]) -> Vec<String> {
        let request = RangeRequest {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            ..Default::default()
        };
        let response = self.range(request).unwrap();
        response
            .kvs
            .iter()
            .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
            .collect()
    }

    fn revision(&self) -> i64 {
        match self.query(KvQuery::Status) {
            Ok(KvResponse::Status { revision, .. }) => revision,
            other => panic!("{other:?}"),
        }
    }

    fn txn(&mut self, txn: TxnRequest) -> KvOutput {
        self.run(KvCommand::Txn(txn))
    }

    fn grant(&mut self, ttl_seconds: i64, id: i64) -> KvOutput {
        self.run(KvCommand::LeaseGrant { ttl_seconds, id })
    }
}

fn put_op(key: &str, value: &str) -> RequestOp {
    RequestOp::Put(PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    })
}

fn get_op(key: &str) -> RequestOp {
    RequestOp::Range(RangeRequest {
        key: key.into(),
        ..Default::default()
    })
}

fn delete_op(key: &str, range_end: &str) -> RequestOp {
    RequestOp::DeleteRange(DeleteRangeRequest {
        key: key.into(),
        range_end: range_end.into(),
        prev_kv: false,
    })
}

fn compare(key: &str, result: CompareResult, target: CompareTarget) -> Compare {
    Compare {
        key: key.into(),
        range_end: Vec::new(),
        result,
        target,
    }
}

fn txn_succeeded(output: KvOutput) -> (bool, Vec<ResponseOp>, i64) {
    match output {
        Ok(KvResponse::Txn(response)) => {
            (response.succeeded, response.responses, response.revision)
        }
        other => panic!("txn failed: {other:?}"),
    }
}

#[test]
fn an_empty_store_is_at_revision_one_and_only_effective_writes_add_one() {
    let mut kv = Kv::new();
    assert_eq!(kv.revision(), 1);
    assert_eq!(kv.put("a", "1").revision, 2);
    assert_eq!(kv.put("a", "2").revision, 3);
    assert_eq!(
        kv.delete("missing", b"").revision,
        3,
        "deleting nothing adds no revision"
    );
    assert_eq!(kv.delete("missing", b"").deleted, 0);
    kv.grant(60, 0).unwrap();
    let (_, _, revision) = txn_succeeded(kv.txn(TxnRequest {
        success: vec![get_op("a")],
        ..Default::default()
    }));
    assert_eq!(
        revision, 3,
        "reads, grants and read-only transactions add none"
    );
    kv.run(KvCommand::Compact { revision: 2 }).unwrap();
    assert_eq!(kv.revision(), 3, "compaction adds none");
    let writes = vec![put_op("b", "1"), put_op("c", "1"), delete_op("a", "")];
    let (_, _, revision) = txn_succeeded(kv.txn(TxnRequest {
        success: writes,
        ..Default::default()
    }));
    assert_eq!(revision, 4, "a transaction with writes adds exactly one");
    assert_eq!(kv.delete("b", b"d").revision, 5);
}

#[test]
fn keys_track_create_mod_and_version_and_a_delete_resets_them() {
    let mut kv = Kv::new();
    kv.put("k", "1");
    kv.put("other", "x");
    kv.put("k", "2");
    let kv_now = kv.get("k").unwrap();
    assert_eq!(
        (kv_now.create_revision, kv_now.mod_revision, kv_now.version),
        (2, 4, 2)
    );
    kv.delete("k", b"");
    assert_eq!(kv.get("k"), None);
    kv.put("k", "3");
    let reborn = kv.get("k").unwrap();
    assert_eq!(
        (reborn.create_revision, reborn.mod_revision, reborn.version),
        (6, 6, 1)
    );
}

#[test]
fn ranges_cover_single_keys_intervals_prefixes_and_everything() {
    let mut kv = Kv::new();
    for key in ["a", "ab", "abc", "b", "c"] {
        kv.put(key, key);
    }
    assert_eq!(kv.keys(b"ab", b""), vec!["ab"]);
    assert_eq!(kv.keys(b"ab", b"b"), vec!["ab", "abc"]);
    assert_eq!(
        kv.keys(b"a", &prefix_range_end(b"a")),
        vec!["a", "ab", "abc"]
    );
    assert_eq!(kv.keys(b"b", &[0]), vec!["b", "c"]);
    assert_eq!(kv.keys(&[0], &[0]), vec!["a", "ab", "abc", "b", "c"]);
    assert!(
        kv.keys(b"c", b"a").is_empty(),
        "an inverted interval is empty"
    );
    assert_eq!(prefix_range_end(&[b'a', 0xff]), vec![b'b']);
    assert_eq!(prefix_range_end(&[0xff]), vec![0]);
}

#[test]
fn ranges_limit_count_sort_and_strip() {
    let mut kv = Kv::new();
    kv.put("a", "3");
    kv.put("b", "1");
    kv.put("c", "2");
    kv.put("b", "4");
    let all = |request: RangeRequest| RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..request
    };
    let limited = kv
        .range(all(RangeRequest {
            limit: 2,
            ..Default::default()
        }))
        .unwrap();
    assert_eq!(
        (limited.kvs.len(), limited.more, limited.count),
        (2, true, 3)
    );
    let exact = kv
        .range(all(RangeRequest {
            limit: 3,
            ..Default::default()
        }))
        .unwrap();
    assert!(!exact.more);
    let count_only = kv
        .range(all(RangeRequest {
            count_only: true,
            ..Default::default()
        }))
        .unwrap();
    assert!(count_only.kvs.is_empty());
    assert_eq!(count_only.count, 3);
    let keys_only = kv
        .range(all(RangeRequest {
            keys_only: true,
            ..Default::default()
        }))
        .unwrap();
    assert!(
        keys_only
            .kvs
            .iter()
            .all(|kv| kv.value.is_empty() && kv.version > 0)
    );

    let sorted = |order, target| {
        let response = kv
            .range(all(RangeRequest {
                sort_order: order,
                sort_target: target,
                ..Default::default()
            }))
            .unwrap();
        response
            .kvs
            .iter()
            .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        sorted(SortOrder::Descend, SortTarget::Key),
        vec!["c", "b", "a"]
    );
    assert_eq!(
        sorted(SortOrder::None, SortTarget::Value),
        vec!["c", "a", "b"],
        "values 2, 3, 4"
    );
    assert_eq!(
        sorted(SortOrder::Descend, SortTarget::Mod),
        vec!["b", "c", "a"]
    );
    assert_eq!(
        sorted(SortOrder::Ascend, SortTarget::Create),
        vec!["a", "b", "c"]
    );
    assert_eq!(
        sorted(SortOrder::Descend, SortTarget::Version),
        vec!["b", "c", "a"]
    );

    let newest = kv
        .range(all(RangeRequest {
            sort_order: SortOrder::Descend,
            sort_target: SortTarget::Mod,
            limit: 1,
            ..Default::default()
        }))
        .unwrap();
    assert_eq!(newest.kvs[0].key, b"b", "the limit applies after sorting");
    let recent = kv
        .range(all(RangeRequest {
            min_mod_revision: 4,
            ..Default::default()
        }))
        .unwrap();
    assert_eq!(recent.kvs.len(), 2);
    let old = kv
        .range(all(RangeRequest {
            max_create_revision: 2,
            ..Default::default()
        }))
        .unwrap();
    assert_eq!(old.kvs.len(), 1);
}

#[test]
fn put_options_follow_etcd() {
    let mut kv = Kv::new();
    let first = kv.put("k", "v1");
    assert_eq!(first.prev_kv, None);
    let with_prev = kv.put_with(PutRequest {
        key: "k".into(),
        value: "v2".into(),
        prev_kv: true,
        ..Default::default()
    });
    let Ok(KvResponse::Put(response)) = with_prev else {
        panic!()
    };
    assert_eq!(response.prev_kv.unwrap().value, b"v1");

    let keep_value = PutRequest {
        key: "k".into(),
        ignore_value: true,
        ..Default::default()
    };
    kv.put_with(keep_value.clone()).unwrap();
    let kept = kv.get("k").unwrap();
    assert_eq!((kept.value.as_slice(), kept.version), (&b"v2"[..], 3));
    let missing = PutRequest {
        key: "nope".into(),
        ..keep_value.clone()
    };
    assert_eq!(kv.put_with(missing), Err(KvError::KeyNotFound));
    let both = PutRequest {
        value: "x".into(),
        ..keep_value
    };
    assert_eq!(kv.put_with(both), Err(KvError::ValueProvided));
    assert_eq!(kv.put_with(PutRequest::default()), Err(KvError::EmptyKey));
    let unknown_lease = PutRequest {
        key: "k".into(),
        lease: 77,
        ..Default::default()
    };
    assert_eq!(kv.put_with(unknown_lease), Err(KvError::LeaseNotFound));

    let Ok(KvResponse::LeaseGranted { id, .. }) = kv.grant(60, 0) else {
        panic!()
    };
    kv.put_with(PutRequest {
        key: "k".into(),
        value: "v3".into(),
        lease: id,
        ..Default::default()
    })
    .unwrap();
    let keep_lease = PutRequest {
        key: "k".into(),
        value: "v4".into(),
        ignore_lease: true,
        ..Default::default()
    };
    kv.put_with(keep_lease.clone()).unwrap();
    assert_eq!(kv.get("k").unwrap().lease, id);
    assert_eq!(
        kv.put_with(PutRequest {
            lease: id,
            ..keep_lease
        }),
        Err(KvError::LeaseProvided)
    );
    assert_eq!(
        KvError::KeyNotFound.to_string(),
        "etcdserver: key not found",
        "errors carry etcd's text for the frontend"
    );
}

#[test]
fn delete_range_returns_what_it_removed() {
    let mut kv = Kv::new();
    for key in ["a", "b", "c"] {
        kv.put(key, key);
    }
    let response = kv.delete("a", b"c");
    assert_eq!(response.deleted, 2);
    let keys: Vec<&[u8]> = response
        .prev_kvs
        .iter()
        .map(|kv| kv.key.as_slice())
        .collect();
    assert_eq!(keys, vec![&b"a"[..], &b"b"[..]]);
    assert_eq!(kv.keys(&[0], &[0]), vec!["c"]);
}

#[test]
fn txn_compares_every_target_and_missing_keys_compare_as_zero() {
    let mut kv = Kv::new();
    kv.put("k", "m");
    let holds = |kv: &mut Kv, compare: Compare| {
        txn_succeeded(kv.txn(TxnRequest {
            compare: vec![compare],
            ..Default::default()
        }))
        .0
    };
    use CompareResult::*;
    use CompareTarget as T;
    assert!(holds(&mut kv, compare("k", Equal, T::Value(b"m".to_vec()))));
    assert!(holds(
        &mut kv,
        compare("k", Greater, T::Value(b"a".to_vec()))
    ));
    assert!(holds(&mut kv, compare("k", Less, T::Value(b"z".to_vec()))));
    assert!(holds(&mut kv, compare("k", Equal, T::Version(1))));
    assert!(holds(&mut kv, compare("k", Equal, T::Create(2))));
    assert!(holds(&mut kv, compare("k", Equal, T::Mod(2))));
    assert!(holds(&mut kv, compare("k", Equal, T::Lease(0))));
    assert!(!holds(&mut kv, compare("k", NotEqual, T::Version(1))));
    assert!(holds(&mut kv, compare("missing", Equal, T::Version(0))));
    assert!(holds(&mut kv, compare("missing", Equal, T::Create(0))));
    assert!(
        !holds(&mut kv, compare("missing", Equal, T::Value(Vec::new()))),
        "a missing value never matches"
    );
    assert!(!holds(
        &mut kv,
        compare("missing", NotEqual, T::Value(b"x".to_vec()))
    ));

    kv.put("k2", "n");
    let over_range = |result, version| Compare {
        key: "k".into(),
        range_end: "l".into(),
        result,
        target: T::Version(version),
    };
    assert!(
        holds(&mut kv, over_range(Equal, 1)),
        "every key in [k, l) has version 1"
    );
    kv.put("k2", "o");
    assert!(!holds(&mut kv, over_range(Equal, 1)));
}

#[test]
fn txn_runs_one_branch_and_later_ops_see_earlier_writes() {
    let mut kv = Kv::new();
    kv.put("x", "1");
    let txn = TxnRequest {
        compare: vec![compare(
            "x",
            CompareResult::Equal,
            CompareTarget::Value(b"1".to_vec()),
        )],
        success: vec![
            put_op("y", "new"),
            get_op("y"),
            delete_op("x", ""),
            get_op("x"),
        ],
        failure: vec![put_op("z", "never")],
    };
    let (succeeded, responses, revision) = txn_succeeded(kv.txn(txn.clone()));
    assert!(succeeded);
    assert_eq!(revision, 3);
    let ResponseOp::Range(read_y) = &responses[1] else {
        panic!()
    };
    assert_eq!(read_y.kvs[0].value, b"new");
    assert_eq!(read_y.kvs[0].mod_revision, 3);
    let ResponseOp::Range(read_x) = &responses[3] else {
        panic!()
    };
    assert!(read_x.kvs.is_empty());
    assert!(responses.iter().all(|response| match response {
        ResponseOp::Range(range) => range.revision == 3,
        ResponseOp::Put(put) => put.revision == 3,
        ResponseOp::DeleteRange(delete) => delete.revision == 3,
        ResponseOp::Txn(_) => false,
    }));
    let (succeeded, _, revision) = txn_succeeded(kv.txn(txn));
    assert!(!succeeded);
    assert_eq!(revision, 4);
    assert_eq!(kv.get("z").unwrap().value, b"never");
}

#[test]
fn nested_txns_decide_on_the_store_before_the_transaction() {
    let mut kv = Kv::new();
    let nested = TxnRequest {
        compare: vec![compare(
            "a",
            CompareResult::Equal,
            CompareTarget::Version(0),
        )],
        success: vec![put_op("b", "a was absent before the txn")],
        failure: vec![put_op("b", "a existed")],
    };
    let outer = TxnRequest {
        success: vec![put_op("a", "1"), RequestOp::Txn(nested)],
        ..Default::default()
    };
    let (_, responses, revision) = txn_succeeded(kv.txn(outer));
    let ResponseOp::Txn(inner) = &responses[1] else {
        panic!()
    };
    assert!(inner.succeeded);
    assert_eq!(inner.revision, revision);
    assert_eq!(kv.get("b").unwrap().value, b"a was absent before the txn");
    assert_eq!(
        kv.get("a").unwrap().mod_revision,
        kv.get("b").unwrap().mod_revision
    );
}

#[test]
fn txn_refuses_duplicate_keys_and_too_many_ops() {
    let mut kv = Kv::new();
    let twice = TxnRequest {
        success: vec![put_op("a", "1"), put_op("a", "2")],
        ..Default::default()
    };
    assert_eq!(kv.txn(twice), Err(KvError::DuplicateKey));
    let put_in_delete = TxnRequest {
        success: vec![delete_op("a", "c"), put_op("b", "2")],
        ..Default::default()
    };
    assert_eq!(kv.txn(put_in_delete), Err(KvError::DuplicateKey));
    let nested_put_in_outer_delete = TxnRequest {
        success: vec![
            delete_op("a", "c"),
            RequestOp::Txn(TxnRequest {
                success: vec![put_op("b", "1")],
                ..Default::default()
            }),
        ],
        ..Default::default()
    };
    assert_eq!(
        kv.txn(nested_put_in_outer_delete),
        Err(KvError::DuplicateKey)
    );
    let exclusive_branches = TxnRequest {
        success: vec![RequestOp::Txn(TxnRequest {
            success: vec![put_op("a", "then")],
            failure: vec![put_op("a", "else")],
            ..Default::default()
        })],
        failure: vec![put_op("a", "outer else")],
        ..Default::default()
    };
    assert!(
        kv.txn(exclusive_branches).is_ok(),
        "then and else exclude each other"
    );
    let overlapping_deletes = TxnRequest {
        success: vec![delete_op("a", "c"), delete_op("b", "d")],
        ..Default::default()
    };
    assert!(kv.txn(overlapping_deletes).is_ok());

    let mut small = Kv::with(KvConfig {
        txn_ops_max: 2,
        ..KvConfig::default()
    });
    let three = TxnRequest {
        success: vec![get_op("a"), get_op("b"), get_op("c")],
        ..Default::default()
    };
    assert_eq!(
        small.txn(three.clone()),
        Err(KvError::TooManyOps { txn_ops_max: 2 })
    );
    let nested = TxnRequest {
        failure: vec![RequestOp::Txn(three)],
        ..Default::default()
    };
    assert_eq!(
        small.txn(nested),
        Err(KvError::TooManyOps { txn_ops_max: 2 })
    );
    assert_eq!(
        KvError::DuplicateKey.to_string(),
        "etcdserver: duplicate key given in txn request"
    );
    assert_eq!(
        KvError::TooManyOps { txn_ops_max: 2 }.to_string(),
        "etcdserver: too many operations in txn request"
    );
}

#[test]
fn a_failing_op_fails_the_whole_txn_before_anything_is_written() {
    let mut kv = Kv::new();
    let txn = TxnRequest {
        success: vec![
            put_op("a", "1"),
            RequestOp::Put(PutRequest {
                key: "b".into(),
                lease: 99,
                ..Default::default()
            }),
        ],
        ..Default::default()
    };
    assert_eq!(kv.txn(txn), Err(KvError::LeaseNotFound));
    assert_eq!(kv.revision(), 1);
    assert_eq!(kv.get("a"), None);
    let future_read = TxnRequest {
        success: vec![
            put_op("a", "1"),
            RequestOp::Range(RangeRequest {
                key: "a".into(),
                revision: 5,
                ..Default::default()
            }),
        ],
        ..Default::default()
    };
    assert_eq!(
        kv.txn(future_read),
        Err(KvError::FutureRevision {
            current_revision: 1
        })
    );
    assert_eq!(kv.get("a"), None);
}

#[test]
fn history_is_readable_until_compacted() {
    let mut kv = Kv::new();
    kv.put("k", "v2");
    kv.put("k", "v3");
    kv.delete("k", b"");
    kv.put("k", "v5");
    let at = |kv: &Kv, revision| {
        kv.range(RangeRequest {
            key: "k".into(),
            revision,
            ..Default::default()
        })
    };
    assert_eq!(at(&kv, 1).unwrap().kvs, vec![]);
    assert_eq!(at(&kv, 3).unwrap().kvs[0].value, b"v3");
    assert_eq!(
        at(&kv, 3).unwrap().revision,
        5,
        "the header carries the current revision"
    );
    assert!(at(&kv, 4).unwrap().kvs.is_empty());
    assert_eq!(
        at(&kv, 6),
        Err(KvError::FutureRevision {
            current_revision: 5
        })
    );

    kv.run(KvCommand::Compact { revision: 3 }).unwrap();
    assert_eq!(
        at(&kv, 2),
        Err(KvError::Compacted {
            compact_revision: 3
        })
    );
    assert_eq!(
        at(&kv, 3).unwrap().kvs[0].value,
        b"v3",
        "the compact revision itself stays readable"
    );
    assert!(at(&kv, 4).unwrap().kvs.is_empty());
    assert_eq!(
        kv.run(KvCommand::Compact { revision: 3 }),
        Err(KvError::Compacted {
            compact_revision: 3
        })
    );
    assert_eq!(
        kv.run(KvCommand::Compact { revision: 9 }),
        Err(KvError::FutureRevision {
            current_revision: 5
        })
    );
    kv.run(KvCommand::Compact { revision: 4 }).unwrap();
    assert_eq!(at(&kv, 4).unwrap().kvs, vec![]);
    assert_eq!(at(&kv, 5).unwrap().kvs[0].value, b"v5");
    assert_eq!(
        KvError::Compacted {
            compact_revision: 4
        }
        .to_string(),
        "etcdserver: mvcc: required revision has been compacted"
    );
}

#[test]
fn watches_replay_history_filter_and_group_a_revision() {
    let mut kv = Kv::new();
    kv.put("w/a", "1");
    kv.put("other", "x");
    kv.delete("w/a", b"");
    let watch = WatchRequest {
        key: "w/".into(),
        range_end: prefix_range_end(b"w/"),
        start_revision: 2,
        prev_kv: true,
        ..Default::default()
    };
    let Ok(KvResponse::WatchCreated { watch_id, revision }) = kv.run(KvCommand::Watch(watch))
    else {
        panic!()
    };
    assert_eq!(revision, 4);
    let history: Vec<(i64, EventKind)> = kv
        .events
        .drain(..)
        .map(|(session, response)| {
            assert_eq!((session, response.watch_id), (1, watch_id));
            (response.revision, response.events[0].kind)
        })
        .collect();
    assert_eq!(history, vec![(2, EventKind::Put), (4, EventKind::Delete)]);

    let txn = TxnRequest {
        success: vec![put_op("w/b", "1"), put_op("w/c", "1"), put_op("zzz", "1")],
        ..Default::default()
    };
    kv.txn(txn).unwrap();
    assert_eq!(kv.events.len(), 1, "one response per revision");
    let (_, response) = kv.events.pop().unwrap();
    assert_eq!(response.revision, 5);
    assert_eq!(
        response
            .events
            .iter()
            .map(|event| event.kv.key.clone())
            .collect::<Vec<_>>(),
        vec![b"w/b".to_vec(), b"w/c".to_vec()]
    );

    kv.put("w/b", "2");
    let (_, response) = kv.events.pop().unwrap();
    assert_eq!(response.events[0].prev_kv.as_ref().unwrap().value, b"1");

    let puts_filtered = WatchRequest {
        key: "w/".into(),
        range_end: prefix_range_end(b"w/"),
        no_put: true,
        ..Default::default()
    };
    let Ok(KvResponse::WatchCreated {
        watch_id: deletes_only,
        ..
    }) = kv.run_as(Some(2), KvCommand::Watch(puts_filtered))
    else {
        panic!()
    };
    kv.put("w/c", "2");
    assert!(
        kv.events
            .iter()
            .all(|(_, response)| response.watch_id != deletes_only)
    );
    kv.events.clear();
    kv.delete("w/c", b"");
    assert!(
        kv.events
            .iter()
            .any(|(session, response)| *session == 2 && response.watch_id == deletes_only)
    );

    assert_eq!(
        kv.run_as(Some(2), KvCommand::CancelWatch { watch_id }),
        Err(KvError::WatchNotFound { watch_id }),
        "only the owner cancels"
    );
    kv.run(KvCommand::CancelWatch { watch_id }).unwrap();
    kv.events.clear();
    kv.put("w/d", "1");
    assert!(
        kv.events.is_empty(),
        "the canceled watch reports nothing and the remaining one filters puts"
    );
}

#[test]
fn watch_errors_and_session_cleanup() {
    let mut kv = Kv::new();
    kv.put("a", "1");
    kv.put("a", "2");
    kv.run(KvCommand::Compact { revision: 3 }).unwrap();
    let from = |start_revision| {
        KvCommand::Watch(WatchRequest {
            key: "a".into(),
            start_revision,
            ..Default::default()
        })
    };
    assert_eq!(
        kv.run(from(2)),
        Err(KvError::Compacted {
            compact_revision: 3
        })
    );
    assert!(
        kv.run(from(3)).is_ok(),
        "etcd watches from the compact revision on"
    );
    let replayed: Vec<i64> = kv
        .events
        .drain(..)
        .map(|(_, response)| response.revision)
        .collect();
    assert_eq!(
        replayed,
        vec![3],
        "the put retained at the compact revision is replayed"
    );
    assert_eq!(kv.run_as(None, from(0)), Err(KvError::NoSession));
    kv.run(from(0)).unwrap();
    let mut context = ApplyContext::new(99, 0, Some(1), &kv.sessions);
    kv.machine.session_closed(&mut context, 1);
    kv.put("a", "3");
    assert!(kv.events.is_empty(), "a closed session's watches are gone");
}

#[test]
fn leases_have_a_minimum_ttl_keep_alive_and_report_time_to_live() {
    let mut kv = Kv::with(KvConfig {
        lease_ttl_seconds_min: 5,
        lease_ttl_seconds_max: 100,
        ..KvConfig::default()
    });
    let Ok(KvResponse::LeaseGranted {
        id, ttl_seconds, ..
    }) = kv.grant(1, 0)
    else {
        panic!()
    };
    assert_eq!(ttl_seconds, 5, "a short TTL is raised to the minimum");
    assert_eq!(id, kv.index as i64, "ids come from the log index");
    assert_eq!(
        kv.grant(101, 0),
        Err(KvError::LeaseTtlTooLarge {
            lease_ttl_seconds_max: 100
        })
    );
    assert_eq!(kv.grant(10, id), Err(KvError::LeaseExists));
    kv.grant(10, 7).unwrap();
    assert_eq!(
        kv.query(KvQuery::LeaseLeases),
        Ok(KvResponse::Leases {
            revision: 1,
            ids: vec![7, id]
        })
    );

    kv.put_with(PutRequest {
        key: "owned".into(),
        value: "v".into(),
        lease: id,
        ..Default::default()
    })
    .unwrap();
    kv.advance(3_500);
    let ttl = kv.query(KvQuery::LeaseTimeToLive { id, keys: true });
    assert_eq!(
        ttl,
        Ok(KvResponse::LeaseTimeToLive {
            revision: 2,
            id,
            ttl_seconds: 2,
            granted_ttl_seconds: 5,
            keys: vec![b"owned".to_vec()]
        })
    );
    kv.run(KvCommand::LeaseKeepAlive { id }).unwrap();
    kv.advance(4_000);
    assert!(
        kv.get("owned").is_some(),
        "the keep-alive moved the expiry to 8.5 s"
    );
    assert_eq!(
        kv.run(KvCommand::LeaseKeepAlive { id: 12345 }),
        Err(KvError::LeaseNotFound)
    );
    assert_eq!(
        kv.query(KvQuery::LeaseTimeToLive {
            id: 12345,
            keys: false
        }),
        Err(KvError::LeaseNotFound)
    );
}

#[test]
fn revoke_and_expiry_delete_attached_keys_as_one_revision() {
    let mut kv = Kv::with(KvConfig {
        lease_ttl_seconds_min: 1,
        ..KvConfig::default()
    });
    kv.grant(10, 1).unwrap();
    kv.grant(20, 2).unwrap();
    for key in ["a", "b"] {
        kv.put_with(PutRequest {
            key: key.into(),
            value: "v".into(),
            lease: 1,
            ..Default::default()
        })
        .unwrap();
    }
    kv.put_with(PutRequest {
        key: "c".into(),
        value: "v".into(),
        lease: 2,
        ..Default::default()
    })
    .unwrap();
    // Re-putting "b" without the lease detaches it.
    kv.put("b", "free");
    kv.run(KvCommand::Watch(WatchRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    }))
    .unwrap();
    let before = kv.revision();
    kv.advance(10_000);
    assert_eq!(kv.revision(), before + 1, "expiry deletes as one revision");
    assert_eq!(kv.keys(&[0], &[0]), vec!["b", "c"]);
    assert_eq!(kv.events.len(), 1);
    assert_eq!(kv.events[0].1.events.len(), 1);
    assert_eq!(
        kv.run(KvCommand::LeaseRevoke { id: 1 }),
        Err(KvError::LeaseNotFound)
    );

    kv.put_with(PutRequest {
        key: "d".into(),
        value: "v".into(),
        lease: 2,
        ..Default::default()
    })
    .unwrap();
    kv.events.clear();
    let revoked = kv.run(KvCommand::LeaseRevoke { id: 2 }).unwrap();
    assert_eq!(
        revoked,
        KvResponse::LeaseRevoked {
            revision: before + 3
        }
    );
    assert_eq!(kv.events.len(), 1);
    assert_eq!(
        kv.events[0].1.events.len(),
        2,
        "both keys' deletes arrive together"
    );
    assert_eq!(kv.keys(&[0], &[0]), vec!["b"]);
    kv.grant(5, 3).unwrap();
    let empty_revoke = kv.run(KvCommand::LeaseRevoke { id: 3 }).unwrap();
    assert_eq!(
        empty_revoke,
        KvResponse::LeaseRevoked {
            revision: before + 3
        },
        "no keys, no revision"
    );
}

#[test]
fn snapshots_restore_an_equal_machine_and_are_deterministic() {
    let mut kv = Kv::new();
    kv.put("a", "1");
    kv.put("b", "2");
    kv.delete("a", b"");
    kv.grant(30, 5).unwrap();
    kv.put_with(PutRequest {
        key: "c".into(),
        value: "3".into(),
        lease: 5,
        ..Default::default()
    })
    .unwrap();
    kv.run(KvCommand::Watch(WatchRequest {
        key: "c".into(),
        ..Default::default()
    }))
    .unwrap();
    kv.run(KvCommand::Compact { revision: 3 }).unwrap();
    let mut bytes = Vec::new();
    kv.machine.snapshot(&mut bytes).unwrap();
    let mut restored = KvMachine::new(KvConfig::default());
    restored.restore(&mut bytes.as_slice()).unwrap();
    assert_eq!(restored, kv.machine);
    let mut again = Vec::new();
    restored.snapshot(&mut again).unwrap();
    assert_eq!(again, bytes);
}

#[test]
fn deeply_nested_txns_are_refused_when_decoded_not_by_crashing() {
    use conclave_statemachines::codec;
    // KvCommand::Txn, then per level: no compares, one success op that is a nested txn;
    // the innermost txn is empty; then each level's empty failure list. Built by hand so
    // that the test itself needs no deep recursion to encode it.
    let payload = |depth: usize| {
        let mut bytes = vec![3_u8];
        for _ in 0..depth {
            bytes.extend_from_slice(&[0, 1, 3]);
        }
        bytes.extend_from_slice(&[0, 0, 0]);
        bytes.extend(std::iter::repeat_n(0_u8, depth));
        bytes
    };
    let allowed: KvCommand = codec::decode(&payload(TXN_DEPTH_MAX as usize), "command").unwrap();
    let mut kv = Kv::new();
    assert!(kv.run(allowed).is_ok());
    for depth in [TXN_DEPTH_MAX as usize + 1, 200_000] {
        let refused = codec::decode::<KvCommand>(&payload(depth), "command");
        assert!(refused.is_err(), "depth {depth} must be refused");
    }
    let again: Result<KvCommand, _> = codec::decode(&payload(3), "command");
    assert!(
        again.is_ok(),
        "the depth counter is back to zero after a refusal"
    );
}

#[test]
fn watches_from_old_revisions_catch_up_in_bounded_steps_without_gaps() {
    let config = KvConfig {
        watch_catch_up_revisions_per_entry: 3,
        ..KvConfig::default()
    };
    let mut kv = Kv::with(config);
    for round in 0..10 {
        kv.put("k", &round.to_string());
    }
    let watch = WatchRequest {
        key: "k".into(),
        start_revision: 2,
        ..Default::default()
    };
    kv.run(KvCommand::Watch(watch)).unwrap();
    let drain = |kv: &mut Kv| -> Vec<i64> {
        kv.events
            .drain(..)
            .map(|(_, response)| response.revision)
            .collect()
    };
    assert_eq!(
        drain(&mut kv),
        vec![2, 3, 4],
        "creation sends the first step"
    );
    kv.put("k", "live");
    assert_eq!(
        drain(&mut kv),
        vec![5, 6, 7],
        "a behind watch gets history, not the live put"
    );
    kv.advance(1);
    assert_eq!(drain(&mut kv), vec![8, 9, 10]);
    kv.advance(1);
    assert_eq!(
        drain(&mut kv),
        vec![11, 12],
        "caught up, including the put made meanwhile"
    );
    kv.put("k", "after");
    assert_eq!(
        drain(&mut kv),
        vec![13],
        "an up-to-date watch gets live changes"
    );
}

#[test]
fn a_watch_left_behind_by_compaction_is_canceled_with_the_compact_revision() {
    let config = KvConfig {
        watch_catch_up_revisions_per_entry: 2,
        ..KvConfig::default()
    };
    let mut kv = Kv::with(config);
    for round in 0..10 {
        kv.put("k", &round.to_string());
    }
    let watch = WatchRequest {
        key: "k".into(),
        start_revision: 2,
        ..Default::default()
    };
    let Ok(KvResponse::WatchCreated { watch_id, .. }) = kv.run(KvCommand::Watch(watch)) else {
        panic!()
    };
    kv.run(KvCommand::Compact { revision: 8 }).unwrap();
    let responses: Vec<WatchResponse> = kv.events.drain(..).map(|(_, response)| response).collect();
    let revisions: Vec<i64> = responses.iter().map(|response| response.revision).collect();
    assert_eq!(revisions, vec![2, 3, 4, 5, 11]);
    let last = responses.last().unwrap();
    assert!(last.canceled && last.events.is_empty());
    assert_eq!((last.watch_id, last.compact_revision), (watch_id, 8));
    assert_eq!(
        kv.run(KvCommand::CancelWatch { watch_id }),
        Err(KvError::WatchNotFound { watch_id }),
        "the canceled watch is gone"
    );
}

#[test]
fn history_is_bounded_and_compaction_makes_room() {
    // Each put of a 1-byte key and 100-byte value counts 149 bytes (48 of metadata).
    let config = KvConfig {
        history_bytes_max: 1_000,
        ..KvConfig::default()
    };
    let mut kv = Kv::with(config);
    let value = "v".repeat(100);
    let mut accepted = 0;
    let refused = loop {
        let request = PutRequest {
            key: "k".into(),
            value: value.clone().into(),
            ..Default::default()
        };
        match kv.put_with(request) {
            Ok(_) => accepted += 1,
            Err(error) => break error,
        }
    };
    assert_eq!(accepted, 6, "6 × 149 bytes fit in 1000, a seventh does not");
    assert_eq!(
        refused,
        KvError::NoSpace {
            history_bytes_max: 1_000
        }
    );
    assert_eq!(
        refused.to_string(),
        "etcdserver: mvcc: database space exceeded"
    );
    let txn = TxnRequest {
        success: vec![put_op("t", &value)],
        ..Default::default()
    };
    assert_eq!(
        kv.txn(txn),
        Err(KvError::NoSpace {
            history_bytes_max: 1_000
        })
    );
    let reads_only = TxnRequest {
        success: vec![get_op("k")],
        ..Default::default()
    };
    assert!(kv.txn(reads_only).is_ok(), "reads are not writes");

    let revision = kv.revision();
    kv.run(KvCommand::Compact { revision }).unwrap();
    kv.put("k", "small");
    assert_eq!(kv.get("k").unwrap().value, b"small");
}
