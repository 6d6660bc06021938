//! Proposals per second through a 3-node cluster on loopback (real tonic, real disk with
//! fsync on every batch), with 1, 16, 64 and 256 concurrent proposers of 256-byte commands
//! into the replicated map. Prints throughput, p50 and p99 latency, and the process's CPU
//! time per proposal (all three nodes share the process).
//!
//! `cargo bench -p conclave-server --bench proposals`; `CONCLAVE_BENCH_SECONDS` sets the
//! measured time per concurrency (default 5), `CONCLAVE_BENCH_DIRECTORY` the data directory
//! (default: a temporary directory).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use conclave_consensus::Role;
use conclave_server::node::{MapApplication, Node, NodeConfig};
use conclave_transport::TransportConfig;

const PROPOSERS: [usize; 4] = [1, 16, 64, 256];
const COMMAND_BYTES: usize = 256;

fn cpu_seconds() -> f64 {
    // utime and stime (fields 14 and 15 of /proc/self/stat) in clock ticks of 1/100 s.
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(after_name) = stat.rsplit(')').next() else {
        return 0.0;
    };
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

async fn start_cluster(directory: &std::path::Path) -> Vec<Node> {
    let mut listeners = BTreeMap::new();
    let mut addresses = BTreeMap::new();
    for id in 1..=3u64 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        addresses.insert(id, listener.local_addr().expect("address").to_string());
        listeners.insert(id, listener);
    }
    let mut nodes = Vec::new();
    for (id, listener) in listeners {
        let mut config = NodeConfig::new(id, directory.join(format!("node-{id}")));
        config.bootstrap_voters = vec![1, 2, 3];
        config.snapshot_entries_threshold = 1_000_000;
        let application = Box::new(MapApplication::default());
        let node = Node::start_grpc(
            config,
            application,
            listener,
            &addresses,
            TransportConfig::default(),
        )
        .expect("start node");
        nodes.push(node);
    }
    nodes
}

async fn leader(nodes: &[Node]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for (position, node) in nodes.iter().enumerate() {
            if node.status().await.map(|s| s.soft_state.role) == Ok(Role::Leader) {
                return position;
            }
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * fraction) as usize]
}

fn main() {
    let seconds: u64 = std::env::var("CONCLAVE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let temporary = tempfile::tempdir().expect("temporary directory");
    let directory = std::env::var("CONCLAVE_BENCH_DIRECTORY")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| temporary.path().to_path_buf());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let nodes = Arc::new(start_cluster(&directory).await);
        let leader_position = leader(&nodes).await;
        println!("proposers | proposals/s | p50 | p99 | CPU µs per proposal (3 nodes, 1 process)");
        for proposers in PROPOSERS {
            let stop_at = Instant::now() + Duration::from_secs(seconds);
            let cpu_before = cpu_seconds();
            let started = Instant::now();
            let mut tasks = Vec::new();
            for proposer in 0..proposers {
                let nodes = nodes.clone();
                tasks.push(tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let mut sequence = 0u64;
                    while Instant::now() < stop_at {
                        let key = format!("p{proposer}-{}", sequence % 1000);
                        let value = vec![b'v'; COMMAND_BYTES - 4 - key.len()];
                        let command: Bytes = MapApplication::set_command(key.as_bytes(), &value);
                        let begun = Instant::now();
                        if nodes[leader_position].propose(command).await.is_ok() {
                            latencies.push(begun.elapsed());
                        }
                        sequence += 1;
                    }
                    latencies
                }));
            }
            let mut latencies = Vec::new();
            for task in tasks {
                latencies.extend(task.await.expect("proposer"));
            }
            let elapsed = started.elapsed().as_secs_f64();
            let cpu = cpu_seconds() - cpu_before;
            latencies.sort();
            let count = latencies.len().max(1) as f64;
            println!(
                "{proposers} | {:.0} | {:.2} ms | {:.2} ms | {:.0}",
                latencies.len() as f64 / elapsed,
                percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
                percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
                cpu * 1_000_000.0 / count,
            );
        }
        let nodes = Arc::into_inner(nodes).expect("proposers finished");
        for node in nodes {
            node.stop().await.expect("stop");
        }
    });
}
