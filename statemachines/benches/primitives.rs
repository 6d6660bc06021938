//! Apply throughput in memory of the tree, lock, election and queue machines, through the
//! session layer as the node drives it (envelope and payload encoding included).
//!
//! `cargo bench -p conclave-statemachines --bench primitives`; figures in the README.

use std::hint::black_box;

use conclave_statemachines::election::{ElectionCommand, ElectionOutput};
use conclave_statemachines::lock::{LockCommand, LockOutput};
use conclave_statemachines::queue::{QueueCommand, QueueOutput, QueueResponse};
use conclave_statemachines::tree::{CreateMode, CreateRequest, TreeCommand, TreeOutput, TreeQuery};
use conclave_statemachines::{
    Entry, QueryRequest, Registry, Reply, SessionConfig, SessionLayer, codec,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A layer with every built-in machine and one session (id 1).
struct Bench {
    layer: SessionLayer,
    index: u64,
    sequence: u64,
}

impl Bench {
    fn new() -> Self {
        let registry = Registry::with_builtins(Default::default()).unwrap();
        let mut layer = SessionLayer::new(SessionConfig::default(), registry).unwrap();
        let registered = layer.apply(1, 1, &Entry::Register { timeout_ms: 60_000 }.encode());
        assert!(matches!(
            registered.reply,
            Reply::Registered { session: 1, .. }
        ));
        Bench {
            layer,
            index: 1,
            sequence: 0,
        }
    }

    /// Applies a command to the machine `machine` (name = type) and decodes its output.
    fn command<C: Serialize, O: DeserializeOwned>(&mut self, machine: &str, command: &C) -> O {
        self.sequence += 1;
        self.index += 1;
        let entry = Entry::Command {
            session: 1,
            sequence: self.sequence,
            machine_name: machine.to_string(),
            machine_type: machine.to_string(),
            payload: codec::encode(command, "command").unwrap(),
        };
        let reply = self
            .layer
            .apply(self.index, self.index, &entry.encode())
            .reply;
        // Acknowledge outputs and events the way a client's keep-alives would.
        if self.sequence.is_multiple_of(256) {
            self.index += 1;
            let keep_alive = Entry::KeepAlive {
                session: 1,
                command_sequence_acknowledged: self.sequence,
                event_index_acknowledged: self.index,
            };
            self.layer
                .apply(self.index, self.index, &keep_alive.encode());
        }
        let Reply::Output(output) = reply else {
            panic!("{reply:?}")
        };
        codec::decode(&output.result.unwrap(), "output").unwrap()
    }
}

fn tree_node(number: u64) -> String {
    format!("/bench/node-{number:06}")
}

fn tree_with_nodes(nodes: u64) -> Bench {
    let mut bench = Bench::new();
    let create = |path: &str| {
        TreeCommand::Create(CreateRequest::new(path, &[7; 64], CreateMode::Persistent))
    };
    let output: TreeOutput = bench.command("tree", &create("/bench"));
    output.unwrap();
    for number in 0..nodes {
        let output: TreeOutput = bench.command("tree", &create(&tree_node(number)));
        output.unwrap();
    }
    bench
}

fn tree(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("primitives");
    group.throughput(Throughput::Elements(2));
    let mut bench = tree_with_nodes(10_000);
    let mut counter = 10_000_u64;
    group.bench_function("tree_create_and_delete_of_10k", |bencher| {
        bencher.iter(|| {
            // Create one node and delete the oldest, so the tree stays at 10k nodes.
            let request = CreateRequest::new(&tree_node(counter), &[7; 64], CreateMode::Persistent);
            let created: TreeOutput = bench.command("tree", &TreeCommand::Create(request));
            let delete = TreeCommand::Delete {
                path: tree_node(counter - 10_000),
                version: -1,
            };
            let deleted: TreeOutput = bench.command("tree", &delete);
            counter += 1;
            black_box((created.unwrap(), deleted.unwrap()))
        })
    });
    group.throughput(Throughput::Elements(1));
    // The live nodes are now the last 10k created.
    let oldest_live = counter - 10_000;
    let mut touched = 0_u64;
    group.bench_function("tree_set_data_of_10k", |bencher| {
        bencher.iter(|| {
            touched += 1;
            let set = TreeCommand::SetData {
                path: tree_node(oldest_live + touched % 10_000),
                data: vec![1; 64],
                version: -1,
            };
            let output: TreeOutput = bench.command("tree", &set);
            black_box(output)
        })
    });
    let get = |path: String| QueryRequest {
        session: Some(1),
        index_seen: 0,
        machine_name: "tree".into(),
        machine_type: "tree".into(),
        payload: codec::encode(&TreeQuery::GetData { path }, "query").unwrap(),
    };
    let live = tree_node(oldest_live + 5_000);
    let request = get(live);
    assert!(
        codec::decode::<TreeOutput>(&bench.layer.query(&request).unwrap(), "output")
            .unwrap()
            .is_ok()
    );
    group.bench_function("tree_get_data_of_10k", |bencher| {
        bencher.iter(|| black_box(bench.layer.query(&request).unwrap()))
    });
    group.finish();
}

fn lock(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("primitives");
    group.throughput(Throughput::Elements(2));
    let mut bench = Bench::new();
    group.bench_function("lock_acquire_and_release", |bencher| {
        bencher.iter(|| {
            let lock = LockCommand::Lock {
                name: "bench".into(),
                reentrant: false,
                wait_ms: None,
            };
            let acquired: LockOutput = bench.command("lock", &lock);
            let released: LockOutput = bench.command(
                "lock",
                &LockCommand::Unlock {
                    name: "bench".into(),
                },
            );
            black_box((acquired.unwrap(), released.unwrap()))
        })
    });
    group.finish();
}

fn election(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("primitives");
    group.throughput(Throughput::Elements(2));
    let mut bench = Bench::new();
    group.bench_function("election_campaign_and_resign", |bencher| {
        bencher.iter(|| {
            let campaign = ElectionCommand::Campaign {
                name: "bench".into(),
                value: vec![1; 32],
            };
            let elected: ElectionOutput = bench.command("election", &campaign);
            let resigned: ElectionOutput = bench.command(
                "election",
                &ElectionCommand::Resign {
                    name: "bench".into(),
                },
            );
            black_box((elected.unwrap(), resigned.unwrap()))
        })
    });
    group.finish();
}

fn queue(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("primitives");
    group.throughput(Throughput::Elements(3));
    let mut bench = Bench::new();
    group.bench_function("queue_offer_poll_and_ack", |bencher| {
        bencher.iter(|| {
            let offer = QueueCommand::Offer {
                name: "bench".into(),
                data: vec![1; 64],
            };
            let offered: QueueOutput = bench.command("queue", &offer);
            let poll = QueueCommand::Poll {
                name: "bench".into(),
                visibility_timeout_ms: 30_000,
                wait: false,
            };
            let polled: QueueOutput = bench.command("queue", &poll);
            let Ok(QueueResponse::Delivered(delivery)) = polled else {
                panic!("{polled:?}")
            };
            let ack = QueueCommand::Ack {
                name: "bench".into(),
                id: delivery.id,
                delivery: delivery.delivery,
            };
            let acked: QueueOutput = bench.command("queue", &ack);
            black_box((offered.unwrap(), acked.unwrap()))
        })
    });
    group.finish();
}

criterion_group!(benches, tree, lock, election, queue);
criterion_main!(benches);
