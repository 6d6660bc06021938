//! The deterministic simulator: a cluster of Raft cores over a simulated network, disk and
//! clock, all driven by one seed, with the safety invariants checked after every step.
//!
//! A run has two phases. In the *safety* phase the network drops, delays, reorders and
//! duplicates messages, partitions (also one way) and heals; nodes crash, losing the disk
//! write in flight and all volatile state, and restart from their disk; the membership
//! changes (a learner is added, promoted by joint consensus, a voter removed) and leadership
//! is transferred; logs are compacted so that lagging nodes need snapshots. In the
//! *liveness* phase the faults stop and a proposal must commit within a bounded number of
//! ticks. See `jepsen/SIM.md`.

mod checker;
mod history;
mod network;
mod node;
mod simulation;

use std::panic::{AssertUnwindSafe, catch_unwind};

use conclave_consensus::Config;

pub use history::HistoryOptions;
pub use network::NetworkFaults;

/// How often each fault is injected, per million time units (ten units per tick).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultRates {
    /// A random running node crashes.
    pub crash_per_million: u64,
    /// A random crashed node restarts.
    pub restart_per_million: u64,
    /// The network splits (or one link is cut one way).
    pub partition_per_million: u64,
    /// Every link is restored.
    pub heal_per_million: u64,
    /// The leader is asked for a membership change.
    pub membership_per_million: u64,
    /// The leader is asked to transfer leadership.
    pub transfer_per_million: u64,
    /// A random node compacts its log into a snapshot.
    pub compact_per_million: u64,
}

/// The parameters of a simulation run (everything else comes from the seed).
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Voters at the start (3 or 5).
    pub node_count: usize,
    /// Length of the fault phase, in ticks.
    pub safety_ticks: u64,
    /// The bound on the liveness phase: a proposal must commit within it.
    pub liveness_ticks_max: u64,
    /// Network faults in the safety phase.
    pub network: NetworkFaults,
    /// Fault frequencies in the safety phase.
    pub fault_rates: FaultRates,
    /// The slowest disk write, in time units.
    pub disk_latency_units_max: u64,
    /// The client proposes once per this many time units on average.
    pub propose_every_units: u64,
    /// The client stops proposing while the leader has more uncommitted entries than this.
    pub backlog_entries_max: u64,
    /// The client reads once per this many time units on average.
    pub read_every_units: u64,
    /// The most membership changes per run (each adds a fresh node id).
    pub membership_changes_max: u64,
    /// Adjusts every node's configuration (tests use it to inject bugs).
    pub configure_node: Option<fn(&mut Config)>,
    /// Print every node's state once per tick to stderr (for replaying a failure).
    pub trace: bool,
    /// The history mode: every node also applies committed entries through a real session
    /// layer, clients run register operations on it, and the checker judges their history
    /// at the end of the run (`None`: the hash-chain machine only).
    pub history: Option<HistoryOptions>,
}

impl SimOptions {
    /// The options CI runs with, for a cluster of `node_count` voters.
    pub fn ci(node_count: usize) -> SimOptions {
        SimOptions {
            node_count,
            safety_ticks: 300,
            liveness_ticks_max: 500,
            network: NetworkFaults {
                drop_per_mille: 50,
                duplicate_per_mille: 20,
                delay_units_max: 30,
            },
            fault_rates: FaultRates {
                crash_per_million: 1_500,
                restart_per_million: 10_000,
                partition_per_million: 1_500,
                heal_per_million: 4_000,
                membership_per_million: 1_500,
                transfer_per_million: 1_000,
                compact_per_million: 5_000,
            },
            disk_latency_units_max: 8,
            propose_every_units: 8,
            backlog_entries_max: 32,
            read_every_units: 40,
            membership_changes_max: 4,
            configure_node: None,
            trace: std::env::var_os("SIM_TRACE").is_some(),
            history: None,
        }
    }

    /// The CI options of the history mode, for a cluster of `node_count` voters.
    pub fn ci_history(node_count: usize) -> SimOptions {
        SimOptions {
            history: Some(HistoryOptions::ci()),
            ..SimOptions::ci(node_count)
        }
    }
}

/// What a successful run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimReport {
    /// Entries proposed by the client.
    pub proposed: u64,
    /// The highest committed index.
    pub committed: u64,
    /// Messages sent.
    pub messages: u64,
    /// Crashes injected.
    pub crashes: u64,
    /// Partitions injected.
    pub partitions: u64,
    /// Membership changes accepted by a leader.
    pub membership_changes: u64,
    /// Leadership transfers accepted by a leader.
    pub transfers: u64,
    /// Snapshots installed by followers.
    pub snapshots_installed: u64,
    /// Reads confirmed.
    pub reads: u64,
    /// Ticks from the end of the faults until a new proposal committed.
    pub liveness_ticks: u64,
    /// History mode: client operations given to the linearizability checker.
    pub operations_checked: u64,
    /// History mode: of those, operations whose outcome stayed unknown.
    pub operations_unknown: u64,
    /// History mode: requests sent again after a timeout (same session and sequence for
    /// commands, so the session layer must apply them once).
    pub operations_retried: u64,
}

/// A failed run: the seed, what broke, and how to replay it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimFailure {
    /// The seed that failed.
    pub seed: u64,
    /// The voters at the start.
    pub node_count: usize,
    /// What broke (an invariant, a panic of the core, or missing liveness).
    pub message: String,
    /// The run was in the history mode (replayed by `tests/sim_history.rs`).
    pub history: bool,
}

impl SimFailure {
    /// The command that replays this failure exactly.
    pub fn replay_command(&self) -> String {
        format!(
            "SIM_SEED={} SIM_NODES={} cargo test -p conclave-jepsen --test {} replay -- --nocapture",
            self.seed,
            self.node_count,
            if self.history { "sim_history" } else { "sim" }
        )
    }
}

impl std::fmt::Display for SimFailure {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "simulation failed: seed {} with {} nodes: {}\nreplay with: {}",
            self.seed,
            self.node_count,
            self.message,
            self.replay_command()
        )
    }
}

/// Runs one seed; a panic inside the core counts as a failure of that seed.
pub fn run_seed(seed: u64, options: &SimOptions) -> Result<SimReport, SimFailure> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        simulation::Simulation::new(seed, options)?.run()
    }));
    let message = match outcome {
        Ok(Ok(report)) => return Ok(report),
        Ok(Err(message)) => message,
        Err(panic) => {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            format!("the core panicked: {text}")
        }
    };
    Err(SimFailure {
        seed,
        node_count: options.node_count,
        message,
        history: options.history.is_some(),
    })
}

/// Totals over many seeds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedsSummary {
    /// Seeds run.
    pub seeds: u64,
    /// The sum of every run's report fields.
    pub total: SimReport,
    /// The longest liveness phase seen, in ticks.
    pub liveness_ticks_max: u64,
}

/// Runs seeds `first..first + count` on `threads` threads; returns the failure with the
/// smallest seed, if any.
pub fn run_seeds(
    first: u64,
    count: u64,
    options: &SimOptions,
    threads: usize,
) -> Result<SeedsSummary, SimFailure> {
    let threads = threads.max(1) as u64;
    let results: Vec<Result<SeedsSummary, SimFailure>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|worker| {
                scope.spawn(move || {
                    let mut summary = SeedsSummary::default();
                    let mut seed = first + worker;
                    while seed < first + count {
                        let report = run_seed(seed, options)?;
                        summary.add(&report);
                        seed += threads;
                    }
                    Ok(summary)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker.join().unwrap_or_else(|_| {
                    Err(SimFailure {
                        seed: first,
                        node_count: options.node_count,
                        message: "a simulator thread panicked".into(),
                        history: options.history.is_some(),
                    })
                })
            })
            .collect()
    });
    let mut summary = SeedsSummary::default();
    let mut failure: Option<SimFailure> = None;
    for result in results {
        match result {
            Ok(part) => summary.merge(&part),
            Err(error) => {
                if failure.as_ref().is_none_or(|f| error.seed < f.seed) {
                    failure = Some(error);
                }
            }
        }
    }
    match failure {
        Some(failure) => Err(failure),
        None => Ok(summary),
    }
}

impl SeedsSummary {
    fn add(&mut self, report: &SimReport) {
        self.seeds += 1;
        self.liveness_ticks_max = self.liveness_ticks_max.max(report.liveness_ticks);
        let total = &mut self.total;
        total.proposed += report.proposed;
        total.committed += report.committed;
        total.messages += report.messages;
        total.crashes += report.crashes;
        total.partitions += report.partitions;
        total.membership_changes += report.membership_changes;
        total.transfers += report.transfers;
        total.snapshots_installed += report.snapshots_installed;
        total.reads += report.reads;
        total.liveness_ticks += report.liveness_ticks;
        total.operations_checked += report.operations_checked;
        total.operations_unknown += report.operations_unknown;
        total.operations_retried += report.operations_retried;
    }

    fn merge(&mut self, other: &SeedsSummary) {
        self.seeds += other.seeds;
        self.liveness_ticks_max = self.liveness_ticks_max.max(other.liveness_ticks_max);
        let (total, part) = (&mut self.total, &other.total);
        total.proposed += part.proposed;
        total.committed += part.committed;
        total.messages += part.messages;
        total.crashes += part.crashes;
        total.partitions += part.partitions;
        total.membership_changes += part.membership_changes;
        total.transfers += part.transfers;
        total.snapshots_installed += part.snapshots_installed;
        total.reads += part.reads;
        total.liveness_ticks += part.liveness_ticks;
        total.operations_checked += part.operations_checked;
        total.operations_unknown += part.operations_unknown;
        total.operations_retried += part.operations_retried;
    }
}
