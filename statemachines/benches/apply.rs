//! Apply throughput in memory, through the session layer as the node drives it.
//!
//! `cargo bench -p conclave-statemachines --bench apply`; figures in the README.

use std::hint::black_box;

use conclave_statemachines::kv::*;
use conclave_statemachines::{
    Entry, QueryRequest, Registry, Reply, SessionConfig, SessionLayer, codec,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// A layer with the built-ins, one session (id 1) and `keys` keys in the kv machine "kv".
struct Bench {
    layer: SessionLayer,
    index: u64,
    sequence: u64,
}

impl Bench {
    fn new(keys: usize) -> Self {
        let registry = Registry::with_builtins(KvConfig::default()).unwrap();
        let mut layer = SessionLayer::new(SessionConfig::default(), registry).unwrap();
        let registered = layer.apply(1, 1, &Entry::Register { timeout_ms: 60_000 }.encode());
        assert!(matches!(
            registered.reply,
            Reply::Registered { session: 1, .. }
        ));
        let mut bench = Bench {
            layer,
            index: 1,
            sequence: 0,
        };
        for key in 0..keys {
            let put = PutRequest {
                key: format!("key/{key:06}").into_bytes(),
                value: vec![7; 64],
                ..Default::default()
            };
            bench.command(&KvCommand::Put(put));
        }
        bench
    }

    fn command(&mut self, command: &KvCommand) -> Reply {
        self.sequence += 1;
        self.index += 1;
        let entry = Entry::Command {
            session: 1,
            sequence: self.sequence,
            machine_name: "kv".to_string(),
            machine_type: "kv".to_string(),
            payload: codec::encode(command, "command").unwrap(),
        };
        let reply = self
            .layer
            .apply(self.index, self.index, &entry.encode())
            .reply;
        // Acknowledge outputs the way a client's keep-alives would, so the cache stays small.
        if self.sequence.is_multiple_of(256) {
            self.keep_alive();
        }
        reply
    }

    fn keep_alive(&mut self) -> Reply {
        self.index += 1;
        let entry = Entry::KeepAlive {
            session: 1,
            command_sequence_acknowledged: self.sequence,
            event_index_acknowledged: self.index,
        };
        self.layer
            .apply(self.index, self.index, &entry.encode())
            .reply
    }
}

fn kv_succeeded(reply: &Reply) -> bool {
    let Reply::Output(output) = reply else {
        return false;
    };
    let Ok(bytes) = &output.result else {
        return false;
    };
    codec::decode::<KvOutput>(bytes, "output").is_ok_and(|output| output.is_ok())
}

fn kv_put(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("apply");
    group.throughput(Throughput::Elements(1));
    let mut bench = Bench::new(0);
    let mut counter = 0_u64;
    group.bench_function("kv_put", |bencher| {
        bencher.iter(|| {
            counter += 1;
            let put = PutRequest {
                key: format!("key/{:06}", counter % 10_000).into_bytes(),
                value: vec![7; 64],
                ..Default::default()
            };
            let reply = bench.command(&KvCommand::Put(put));
            debug_assert!(kv_succeeded(&reply));
            // Keep history bounded, as an operator's periodic compaction would.
            if counter.is_multiple_of(50_000) {
                // The store is at revision 1 + counter; keep the last thousand revisions.
                let revision = counter as i64 - 1_000;
                let compacted = bench.command(&KvCommand::Compact { revision });
                assert!(kv_succeeded(&compacted), "{compacted:?}");
            }
            black_box(reply)
        })
    });
    group.finish();
}

fn kv_range(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("apply");
    let bench = Bench::new(10_000);
    let request = |key: &str| RangeRequest {
        key: key.as_bytes().to_vec(),
        range_end: prefix_range_end(key.as_bytes()),
        ..Default::default()
    };
    let query = |range: RangeRequest| QueryRequest {
        session: Some(1),
        index_seen: bench.layer.index_applied(),
        machine_name: "kv".to_string(),
        machine_type: "kv".to_string(),
        payload: codec::encode(&KvQuery::Range(range), "query").unwrap(),
    };
    group.throughput(Throughput::Elements(1));
    let single = query(RangeRequest {
        key: b"key/004242".to_vec(),
        ..Default::default()
    });
    group.bench_function("kv_range_one_key_of_10k", |bencher| {
        bencher.iter(|| black_box(bench.layer.query(&single).unwrap()))
    });
    let hundred = query(request("key/0042"));
    group.throughput(Throughput::Elements(100));
    group.bench_function("kv_range_100_keys_of_10k", |bencher| {
        bencher.iter(|| black_box(bench.layer.query(&hundred).unwrap()))
    });
    group.finish();
}

fn kv_txn(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("apply");
    group.throughput(Throughput::Elements(1));
    let mut bench = Bench::new(1_000);
    let mut counter = 0_u64;
    group.bench_function("kv_txn_compare_put_get", |bencher| {
        bencher.iter(|| {
            counter += 1;
            let key = format!("key/{:06}", counter % 1_000).into_bytes();
            let txn = TxnRequest {
                compare: vec![Compare {
                    key: key.clone(),
                    range_end: Vec::new(),
                    result: CompareResult::Greater,
                    target: CompareTarget::Version(0),
                }],
                success: vec![
                    RequestOp::Put(PutRequest {
                        key: key.clone(),
                        value: vec![1; 64],
                        ..Default::default()
                    }),
                    RequestOp::Range(RangeRequest {
                        key,
                        ..Default::default()
                    }),
                ],
                failure: Vec::new(),
            };
            let reply = bench.command(&KvCommand::Txn(txn));
            if counter.is_multiple_of(50_000) {
                // The store is at revision 1 + 1000 + counter; keep the last thousand.
                let revision = counter as i64;
                let compacted = bench.command(&KvCommand::Compact { revision });
                assert!(kv_succeeded(&compacted), "{compacted:?}");
            }
            black_box(reply)
        })
    });
    group.finish();
}

fn session_keep_alive(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("apply");
    group.throughput(Throughput::Elements(1));
    let mut bench = Bench::new(0);
    group.bench_function("session_keep_alive", |bencher| {
        bencher.iter(|| black_box(bench.keep_alive()))
    });
    group.finish();
}

criterion_group!(benches, kv_put, kv_range, kv_txn, session_keep_alive);
criterion_main!(benches);
