//! The node's configuration; every bound is a named field checked by
//! [`NodeConfig::validate`].

use std::path::PathBuf;

use conclave_consensus::NodeId;

use crate::node::error::NodeError;

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id (non-zero).
    pub id: NodeId,
    /// Where the log, meta file and snapshots live.
    pub data_directory: PathBuf,
    /// The voters of a new cluster. A node whose data directory is empty starts with this
    /// membership; with an empty list it starts with none and waits to be added (join).
    /// Ignored once the directory holds state.
    pub bootstrap_voters: Vec<NodeId>,
    /// The length of one core tick.
    pub tick_interval_ms: u64,
    /// The core's minimum election timeout, in ticks.
    pub election_timeout_ticks: u64,
    /// The core's heartbeat interval, in ticks.
    pub heartbeat_interval_ticks: u64,
    /// An idle leader appends a tick entry carrying its clock after this many ticks
    /// without a proposal, so that log time advances.
    pub time_tick_interval_ticks: u64,
    /// The most client requests waiting for the driver; further requests wait to enqueue.
    pub request_queue_max: usize,
    /// The most proposals gathered into one `propose` call.
    pub proposal_batch_entries_max: usize,
    /// The most peer messages stepped before the driver looks at its Ready again.
    pub inbox_messages_max: usize,
    /// The most batches of work queued for the apply task before the driver waits.
    pub apply_queue_batches_max: usize,
    /// Take a snapshot once this many entries were applied since the last one.
    pub snapshot_entries_threshold: u64,
    /// Or once this many payload bytes were applied since the last one.
    pub snapshot_bytes_threshold: u64,
    /// The largest command accepted from a client.
    pub command_bytes_max: usize,
    /// How often a commit index that moved is saved to the meta file. Term and vote are
    /// saved at once when they change; the commit index need not be durable for safety
    /// (a restarted node relearns it from the leader), so it costs at most one meta write
    /// per interval, and one at stop.
    pub commit_persist_interval_ticks: u64,
}

impl NodeConfig {
    /// Defaults for node `id` storing in `data_directory`.
    pub fn new(id: NodeId, data_directory: impl Into<PathBuf>) -> NodeConfig {
        NodeConfig {
            id,
            data_directory: data_directory.into(),
            bootstrap_voters: Vec::new(),
            tick_interval_ms: 20,
            election_timeout_ticks: 10,
            heartbeat_interval_ticks: 2,
            time_tick_interval_ticks: 50,
            request_queue_max: 4096,
            proposal_batch_entries_max: 1024,
            inbox_messages_max: 1024,
            apply_queue_batches_max: 1024,
            snapshot_entries_threshold: 10_000,
            snapshot_bytes_threshold: 64 * 1024 * 1024,
            command_bytes_max: 1024 * 1024,
            commit_persist_interval_ticks: 50,
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), NodeError> {
        fn check(ok: bool, field: &'static str, reason: &str) -> Result<(), NodeError> {
            if ok {
                Ok(())
            } else {
                Err(NodeError::Config {
                    field,
                    reason: reason.to_string(),
                })
            }
        }
        check(self.id != 0, "id", "must be non-zero")?;
        check(
            !self.bootstrap_voters.contains(&0),
            "bootstrap_voters",
            "node id 0",
        )?;
        check(self.tick_interval_ms > 0, "tick_interval_ms", "must be > 0")?;
        check(
            self.time_tick_interval_ticks > 0,
            "time_tick_interval_ticks",
            "must be > 0",
        )?;
        check(
            self.request_queue_max > 0,
            "request_queue_max",
            "must be > 0",
        )?;
        check(
            self.proposal_batch_entries_max > 0,
            "proposal_batch_entries_max",
            "must be > 0",
        )?;
        check(
            self.inbox_messages_max > 0,
            "inbox_messages_max",
            "must be > 0",
        )?;
        check(
            self.apply_queue_batches_max > 0,
            "apply_queue_batches_max",
            "must be > 0",
        )?;
        check(
            self.snapshot_entries_threshold > 0,
            "snapshot_entries_threshold",
            "must be > 0",
        )?;
        check(
            self.snapshot_bytes_threshold > 0,
            "snapshot_bytes_threshold",
            "must be > 0",
        )?;
        check(
            self.command_bytes_max > 0,
            "command_bytes_max",
            "must be > 0",
        )?;
        check(
            self.commit_persist_interval_ticks > 0,
            "commit_persist_interval_ticks",
            "must be > 0",
        )?;
        Ok(())
    }

    /// The core's configuration derived from this one.
    pub fn consensus_config(&self) -> conclave_consensus::Config {
        let mut config = conclave_consensus::Config::new(self.id);
        config.election_timeout_ticks = self.election_timeout_ticks;
        config.heartbeat_interval_ticks = self.heartbeat_interval_ticks;
        // `config.seed` stays as it is: the core already mixes the node id into it, and
        // mixing the same id in here cancelled that out, giving every node the same
        // election timeouts and, now and then, endless split votes.
        config.proposal_entries_max = config
            .proposal_entries_max
            .max(self.proposal_batch_entries_max);
        config
    }
}
