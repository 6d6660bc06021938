//! Entries committed per second by a 3-node cluster of cores over an in-memory network and
//! `MemoryStorage`, with batches of 64 entries of 256 bytes. Measures the core alone: the
//! driver below does nothing but carry out Readies.
//!
//! `cargo bench -p conclave-consensus --bench commit_throughput`

use std::collections::BTreeMap;
use std::hint::black_box;

use bytes::Bytes;
use conclave_consensus::{Config, Membership, MemoryStorage, Message, NodeId, RawNode, Role};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const BATCH_ENTRIES: usize = 64;
const ENTRY_BYTES: usize = 256;
/// Batches proposed per measured iteration (pipelined, like a loaded leader).
const BATCHES_PER_ITERATION: usize = 16;

struct Cluster {
    nodes: BTreeMap<NodeId, RawNode<MemoryStorage>>,
    queue: Vec<Message>,
}

impl Cluster {
    fn new() -> Cluster {
        let membership = Membership::with_voters([1, 2, 3]);
        let mut nodes = BTreeMap::new();
        for id in 1..=3 {
            let mut config = Config::new(id);
            config.message_entries_max = 1024;
            config.message_bytes_max = 1024 * 1024;
            config.proposal_entries_max = BATCH_ENTRIES;
            let node =
                RawNode::new(config, MemoryStorage::new(membership.clone())).expect("node starts");
            nodes.insert(id, node);
        }
        let mut cluster = Cluster {
            nodes,
            queue: Vec::new(),
        };
        cluster
            .nodes
            .get_mut(&1)
            .expect("node 1")
            .campaign()
            .expect("campaign");
        cluster.run_until(|c| c.nodes[&1].status().soft_state.role == Role::Leader);
        cluster
    }

    fn handle_readies(&mut self) {
        for node in self.nodes.values_mut() {
            if !node.has_ready() {
                continue;
            }
            let ready = node.ready().expect("ready");
            self.queue.extend(ready.messages.iter().cloned());
            let storage = node.storage_mut();
            storage.append(&ready.entries);
            if let Some(hard_state) = ready.hard_state {
                storage.set_hard_state(hard_state);
            }
            self.queue.extend(ready.persisted_messages.iter().cloned());
            black_box(&ready.committed_entries);
            node.advance(ready).expect("advance");
        }
    }

    fn run_until(&mut self, done: impl Fn(&Cluster) -> bool) {
        while !done(self) {
            self.handle_readies();
            for message in std::mem::take(&mut self.queue) {
                let to = message.to;
                self.nodes
                    .get_mut(&to)
                    .expect("node")
                    .step(message)
                    .expect("step");
            }
        }
    }

    fn commit_batches(&mut self, batches: &[Vec<Bytes>]) {
        let mut last = 0;
        for batch in batches {
            let leader = self.nodes.get_mut(&1).expect("leader");
            last = leader.propose(batch.clone()).expect("propose").last_index;
        }
        self.run_until(|c| c.nodes[&1].status().hard_state.commit >= last);
        // Keep memory flat across iterations, as a snapshotting server would.
        for node in self.nodes.values_mut() {
            let status = node.status();
            let index = status.applied;
            node.storage_mut()
                .compact(index, Bytes::new(), status.membership);
        }
    }
}

fn commit_throughput(criterion: &mut Criterion) {
    let payload = Bytes::from(vec![7u8; ENTRY_BYTES]);
    let batch: Vec<Bytes> = (0..BATCH_ENTRIES).map(|_| payload.clone()).collect();
    let batches: Vec<Vec<Bytes>> = (0..BATCHES_PER_ITERATION).map(|_| batch.clone()).collect();
    let mut group = criterion.benchmark_group("consensus");
    group.throughput(Throughput::Elements(
        (BATCH_ENTRIES * BATCHES_PER_ITERATION) as u64,
    ));
    let mut cluster = Cluster::new();
    group.bench_function("commit_3_nodes_64x256B_batches", |bencher| {
        bencher.iter(|| cluster.commit_batches(&batches));
    });
    group.finish();
}

criterion_group!(benches, commit_throughput);
criterion_main!(benches);
