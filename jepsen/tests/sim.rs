//! The deterministic simulator over many seeds.
//!
//! CI runs 1,000 seeds of 3 nodes and 1,000 of 5. Longer runs:
//! `SIM_SEEDS=100000 cargo test -p conclave-jepsen --release --test sim -- --nocapture`
//! (`SIM_FIRST_SEED` moves the range). A failure prints its seed and the replay command:
//! `SIM_SEED=<seed> SIM_NODES=<n> cargo test -p conclave-jepsen --test sim replay -- --nocapture`.

use conclave_jepsen::sim::{SimOptions, run_seed, run_seeds};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
}

fn run_ci_seeds(node_count: usize) {
    let count = env_u64("SIM_SEEDS").unwrap_or(1000);
    let first = env_u64("SIM_FIRST_SEED").unwrap_or(0);
    let options = SimOptions::ci(node_count);
    match run_seeds(first, count, &options, 2) {
        Ok(summary) => {
            println!("{node_count} nodes: {summary:?}");
            assert_eq!(summary.seeds, count);
            let total = &summary.total;
            // The faults really happened, or the run proves nothing.
            assert!(total.crashes > 0 && total.partitions > 0, "{summary:?}");
            assert!(
                total.membership_changes > 0 && total.transfers > 0,
                "{summary:?}"
            );
            assert!(
                total.snapshots_installed > 0 && total.reads > 0,
                "{summary:?}"
            );
            assert!(total.committed > 0);
        }
        Err(failure) => panic!("{failure}"),
    }
}

/// A single voter (with learners joining, being promoted and swapped in): it wins inside
/// one call, so the only thing between its election and its appends is the durability of
/// its term (review finding 3).
#[test]
fn sim_one_node_ci_seeds() {
    run_ci_seeds(1);
}

#[test]
fn sim_three_nodes_ci_seeds() {
    run_ci_seeds(3);
}

#[test]
fn sim_five_nodes_ci_seeds() {
    run_ci_seeds(5);
}

/// Replays one seed (`SIM_SEED`, `SIM_NODES`); without them, checks that a seed replays
/// to the identical result.
#[test]
fn replay() {
    let nodes = env_u64("SIM_NODES").unwrap_or(3) as usize;
    let options = SimOptions::ci(nodes);
    if let Some(seed) = env_u64("SIM_SEED") {
        match run_seed(seed, &options) {
            Ok(report) => println!("seed {seed}: {report:?}"),
            Err(failure) => panic!("{failure}"),
        }
        return;
    }
    let first = run_seed(12345, &options);
    let second = run_seed(12345, &options);
    assert_eq!(first, second, "a seed must replay exactly");
    assert!(first.is_ok());
}
