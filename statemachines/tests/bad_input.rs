//! Bad input: arbitrary bytes as entries, and arbitrary payloads for every built-in machine,
//! never panic the layer; a refused command leaves every machine's state as it was.
//!
//! More cases: `PROPTEST_CASES=20000 cargo test -p conclave-statemachines --test bad_input`.

use conclave_statemachines::counter::CounterQuery;
use conclave_statemachines::election::ElectionQuery;
use conclave_statemachines::kv::{KvCommand, KvConfig, KvQuery, PutRequest, RangeRequest};
use conclave_statemachines::lock::LockQuery;
use conclave_statemachines::queue::QueueQuery;
use conclave_statemachines::tree::TreeQuery;
use conclave_statemachines::value::ValueQuery;
use conclave_statemachines::{
    Entry, QueryRequest, Registry, Reply, SessionConfig, SessionError, SessionLayer, codec,
};
use proptest::prelude::*;

fn layer_with_data() -> SessionLayer {
    let registry = Registry::with_builtins(KvConfig::default()).unwrap();
    let mut layer = SessionLayer::new(SessionConfig::default(), registry).unwrap();
    layer.apply(1, 1_000, &Entry::Register { timeout_ms: 60_000 }.encode());
    let put = KvCommand::Put(PutRequest {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    });
    let entry = Entry::Command {
        session: 1,
        sequence: 1,
        machine_name: "kv".to_string(),
        machine_type: "kv".to_string(),
        payload: codec::encode(&put, "command").unwrap(),
    };
    layer.apply(2, 1_000, &entry.encode());
    layer
}

/// What every built-in machine answers to a read of its whole state.
fn observed_state(layer: &SessionLayer) -> Vec<Result<Vec<u8>, SessionError>> {
    let all = KvQuery::Range(RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    });
    let queries = [
        ("kv", codec::encode(&all, "query").unwrap()),
        ("kv", codec::encode(&KvQuery::LeaseLeases, "query").unwrap()),
        (
            "counter",
            codec::encode(&CounterQuery::Get, "query").unwrap(),
        ),
        ("value", codec::encode(&ValueQuery::Get, "query").unwrap()),
        (
            "tree",
            codec::encode(
                &TreeQuery::GetAllChildrenNumber { path: "/".into() },
                "query",
            )
            .unwrap(),
        ),
        (
            "lock",
            codec::encode(&LockQuery::Describe { name: "l".into() }, "query").unwrap(),
        ),
        (
            "election",
            codec::encode(&ElectionQuery::Leader { name: "e".into() }, "query").unwrap(),
        ),
        (
            "queue",
            codec::encode(&QueueQuery::Size { name: "q".into() }, "query").unwrap(),
        ),
    ];
    queries
        .into_iter()
        .map(|(machine, payload)| {
            layer.query(&QueryRequest {
                session: None,
                index_seen: 0,
                machine_name: machine.to_string(),
                machine_type: machine.to_string(),
                payload,
            })
        })
        .collect()
}

fn snapshot(layer: &SessionLayer) -> Vec<u8> {
    let mut bytes = Vec::new();
    layer.snapshot(&mut bytes).unwrap();
    bytes
}

proptest! {
    #[test]
    fn arbitrary_entry_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut layer = layer_with_data();
        let applied = layer.apply(3, 2_000, &bytes);
        prop_assert_eq!(applied.index, 3);
    }

    #[test]
    fn arbitrary_payloads_are_refused_cleanly_by_every_machine(
        machine in prop_oneof![
            Just("kv"),
            Just("counter"),
            Just("value"),
            Just("tree"),
            Just("lock"),
            Just("election"),
            Just("queue"),
        ],
        payload in proptest::collection::vec(any::<u8>(), 0..48),
    ) {
        let mut layer = layer_with_data();
        let before = observed_state(&layer);
        let entry = Entry::Command {
            session: 1,
            sequence: 2,
            machine_name: machine.to_string(),
            machine_type: machine.to_string(),
            payload,
        };
        let applied = layer.apply(3, 2_000, &entry.encode());
        let Reply::Output(output) = applied.reply else {
            panic!("a command in sequence is answered");
        };
        match output.result {
            Ok(_) => {}
            Err(SessionError::MalformedPayload { .. }) => {
                prop_assert_eq!(observed_state(&layer), before, "a refusal changed state");
            }
            Err(other) => panic!("unexpected refusal {other:?}"),
        }
        // Whatever happened, the layer still snapshots, and restores to the same bytes.
        let bytes = snapshot(&layer);
        let registry = Registry::with_builtins(KvConfig::default()).unwrap();
        let mut restored = SessionLayer::new(SessionConfig::default(), registry).unwrap();
        restored.restore(&mut bytes.as_slice()).unwrap();
        prop_assert_eq!(snapshot(&restored), bytes);
    }
}
