//! The conformance suite run against every built-in machine, and against broken machines
//! to show that it catches what it claims to.

use std::collections::HashMap;
use std::io::{Read, Write};

use conclave_statemachines::counter::{CounterCommand, CounterMachine, CounterQuery};
use conclave_statemachines::kv::*;
use conclave_statemachines::testing::{ConformanceFailure, ConformanceOptions, check_machine};
use conclave_statemachines::value::{ValueCommand, ValueMachine, ValueQuery};
use conclave_statemachines::{ApplyContext, Error, QueryContext, StateMachine, codec};

fn put(key: &str, value: &str, lease: i64) -> KvCommand {
    KvCommand::Put(PutRequest {
        key: key.into(),
        value: value.into(),
        lease,
        ..Default::default()
    })
}

fn kv_commands() -> Vec<KvCommand> {
    let all = |start_revision| {
        KvCommand::Watch(WatchRequest {
            key: vec![0],
            range_end: vec![0],
            start_revision,
            prev_kv: true,
            ..Default::default()
        })
    };
    let mut commands = vec![
        all(0),
        all(0),
        all(0),
        KvCommand::LeaseGrant {
            ttl_seconds: 2,
            id: 0,
        },
        KvCommand::LeaseGrant {
            ttl_seconds: 600,
            id: 42,
        },
        put("lease/short", "gone after expiry", 7),
        put("lease/long", "stays", 42),
    ];
    for round in 0..8 {
        let key = format!("key/{}", round % 3);
        commands.push(put(&key, &format!("v{round}"), 0));
        commands.push(KvCommand::Txn(TxnRequest {
            compare: vec![Compare {
                key: key.clone().into_bytes(),
                range_end: Vec::new(),
                result: CompareResult::Greater,
                target: CompareTarget::Version(1),
            }],
            success: vec![
                RequestOp::DeleteRange(DeleteRangeRequest {
                    key: key.clone().into_bytes(),
                    ..Default::default()
                }),
                RequestOp::Range(RangeRequest {
                    key: vec![0],
                    range_end: vec![0],
                    ..Default::default()
                }),
            ],
            failure: vec![RequestOp::Put(PutRequest {
                key: format!("txn/{round}").into_bytes(),
                value: b"failed".to_vec(),
                ..Default::default()
            })],
        }));
        if round == 4 {
            commands.push(KvCommand::Compact { revision: 5 });
            commands.push(all(3));
            commands.push(all(6));
        }
        commands.push(KvCommand::LeaseKeepAlive { id: 42 });
    }
    commands.push(KvCommand::DeleteRange(DeleteRangeRequest {
        key: b"key/".to_vec(),
        range_end: prefix_range_end(b"key/"),
        prev_kv: true,
    }));
    commands.push(KvCommand::LeaseRevoke { id: 42 });
    commands
}

#[test]
fn kv_passes_the_conformance_suite() {
    let queries = vec![
        KvQuery::Range(RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        }),
        KvQuery::Status,
        KvQuery::LeaseLeases,
        KvQuery::LeaseTimeToLive { id: 42, keys: true },
        KvQuery::Range(RangeRequest {
            key: vec![0],
            range_end: vec![0],
            revision: 3,
            ..Default::default()
        }),
    ];
    let report = check_machine(
        || KvMachine::new(KvConfig::default()),
        kv_commands(),
        queries,
        &ConformanceOptions::default(),
    )
    .unwrap();
    assert!(report.snapshot_points_checked >= report.entries);
    assert!(report.retries_checked > 5);
    assert!(
        report.event_batches > 10,
        "watches produced events: {report:?}"
    );
    assert_eq!(report.sessions_expired, 1);
    eprintln!("kv conformance: {report:?}");
}

#[test]
fn counter_passes_the_conformance_suite() {
    let mut commands = Vec::new();
    for round in 0..12 {
        commands.push(CounterCommand::AddAndGet { delta: round });
        commands.push(CounterCommand::GetAndAdd { delta: -1 });
        commands.push(CounterCommand::CompareAndSet {
            expected: round,
            update: round * 2,
        });
    }
    commands.push(CounterCommand::AddAndGet { delta: i64::MAX });
    let report = check_machine(
        CounterMachine::default,
        commands,
        vec![CounterQuery::Get],
        &ConformanceOptions::default(),
    )
    .unwrap();
    assert!(report.snapshot_points_checked >= report.entries);
}

#[test]
fn value_passes_the_conformance_suite() {
    let mut commands = vec![
        ValueCommand::Listen,
        ValueCommand::Listen,
        ValueCommand::Listen,
    ];
    for round in 0..10_u8 {
        commands.push(ValueCommand::GetAndSet {
            value: Some(vec![round]),
        });
        commands.push(ValueCommand::CompareAndSet {
            expected: Some(vec![round]),
            update: None,
        });
    }
    commands.push(ValueCommand::Unlisten);
    let report = check_machine(
        ValueMachine::default,
        commands,
        vec![ValueQuery::Get],
        &ConformanceOptions::default(),
    )
    .unwrap();
    assert!(report.event_batches > 5);
}

/// Reads the wall clock: the suite must reject it.
#[derive(Default)]
struct ClockReader;

impl StateMachine for ClockReader {
    const TYPE_NAME: &'static str = "clock-reader";
    type Command = ();
    type Query = ();
    type Output = u128;
    type Event = ();

    fn apply(&mut self, _context: &mut ApplyContext<'_, ()>, _command: ()) -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    }

    fn query(&self, _context: &QueryContext, _query: ()) -> u128 {
        0
    }

    fn snapshot(&self, _writer: &mut dyn Write) -> Result<(), Error> {
        Ok(())
    }

    fn restore(&mut self, _reader: &mut dyn Read) -> Result<(), Error> {
        Ok(())
    }
}

/// Counts commands but forgets the count in its snapshot: the suite must reject it.
#[derive(Default)]
struct Forgetful {
    count: u64,
}

impl StateMachine for Forgetful {
    const TYPE_NAME: &'static str = "forgetful";
    type Command = ();
    type Query = ();
    type Output = u64;
    type Event = ();

    fn apply(&mut self, _context: &mut ApplyContext<'_, ()>, _command: ()) -> u64 {
        self.count += 1;
        self.count
    }

    fn query(&self, _context: &QueryContext, _query: ()) -> u64 {
        self.count
    }

    fn snapshot(&self, _writer: &mut dyn Write) -> Result<(), Error> {
        Ok(())
    }

    fn restore(&mut self, _reader: &mut dyn Read) -> Result<(), Error> {
        Ok(())
    }
}

/// Snapshots a `HashMap` in iteration order: the bytes differ between instances.
#[derive(Default)]
struct HashOrdered {
    seen: HashMap<u64, u64>,
}

impl StateMachine for HashOrdered {
    const TYPE_NAME: &'static str = "hash-ordered";
    type Command = u64;
    type Query = ();
    type Output = usize;
    type Event = ();

    fn apply(&mut self, _context: &mut ApplyContext<'_, ()>, command: u64) -> usize {
        self.seen.insert(command, command);
        self.seen.len()
    }

    fn query(&self, _context: &QueryContext, _query: ()) -> usize {
        self.seen.len()
    }

    fn snapshot(&self, writer: &mut dyn Write) -> Result<(), Error> {
        let pairs: Vec<(&u64, &u64)> = self.seen.iter().collect();
        codec::write_frame(writer, &pairs, "pairs")
    }

    fn restore(&mut self, reader: &mut dyn Read) -> Result<(), Error> {
        let pairs: Vec<(u64, u64)> = codec::read_frame(reader, "pairs")?;
        self.seen = pairs.into_iter().collect();
        Ok(())
    }
}

#[test]
fn the_suite_rejects_a_machine_that_reads_the_clock() {
    let failure = check_machine(
        || ClockReader,
        vec![(); 10],
        vec![()],
        &ConformanceOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(failure, ConformanceFailure::Nondeterministic { .. }),
        "{failure}"
    );
}

#[test]
fn the_suite_rejects_a_machine_whose_snapshot_loses_state() {
    let failure = check_machine(
        Forgetful::default,
        vec![(); 10],
        vec![()],
        &ConformanceOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(failure, ConformanceFailure::SnapshotDiverged { .. }),
        "{failure}"
    );
}

#[test]
fn the_suite_rejects_a_machine_whose_snapshot_bytes_depend_on_hash_order() {
    let failure = check_machine(
        HashOrdered::default,
        (0..40).collect(),
        vec![()],
        &ConformanceOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            failure,
            ConformanceFailure::Nondeterministic { .. }
                | ConformanceFailure::SnapshotDiverged { .. }
        ),
        "{failure}"
    );
}
