//! The core's configuration: every bound is a named field checked by [`Config::validate`].

use crate::error::Error;
use crate::types::NodeId;

/// How `read_index` confirms that this node is still the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// One heartbeat round acknowledged by a quorum confirms leadership for every read
    /// queued before the round started (Raft thesis 6.4). Safe whatever the clocks do.
    Safe,
    /// Serve from the leader's lease without a round (thesis 6.4.1). Needs `check_quorum`.
    /// The lease starts when a quorum-acknowledged heartbeat round was sent and lasts
    /// `election_timeout_ticks - lease_drift_ticks` of the leader's ticks. It is safe as
    /// long as no follower's ticks run faster than the leader's by more than
    /// `lease_drift_ticks - 1` per election timeout (one tick of the allowance covers the
    /// phase of ticks, so `lease_drift_ticks` must be at least 1), because a follower that
    /// acknowledged the round refuses votes for `election_timeout_ticks` of its own ticks
    /// after it. A node
    /// that restarts refuses votes for its first election timeout for the same reason (it
    /// may have acknowledged a lease just before it crashed). A leader that sent TimeoutNow
    /// serves no lease read for the rest of its term: the target's forced election ignores
    /// leases.
    LeaseBased,
}

/// The configuration of one core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This node's id (non-zero).
    pub id: NodeId,
    /// The minimum election timeout; each term draws a timeout in `[min, 2 * min)`.
    pub election_timeout_ticks: u64,
    /// A leader sends heartbeats every this many ticks; must be below the election timeout.
    pub heartbeat_interval_ticks: u64,
    /// The seed of the PRNG that randomizes election timeouts (mixed with `id`).
    pub seed: u64,
    /// Run a pre-vote round before each election (thesis 9.6).
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum within an election timeout steps down, and
    /// followers that heard from a leader within the timeout ignore vote requests.
    pub check_quorum: bool,
    /// How `read_index` is served.
    pub read_mode: ReadMode,
    /// The clock drift margin subtracted from the lease (see [`ReadMode::LeaseBased`]).
    pub lease_drift_ticks: u64,
    /// The most entry bytes in one Append message (at least one entry is always sent).
    pub message_bytes_max: u64,
    /// The most entries in one Append message.
    pub message_entries_max: usize,
    /// The most Append messages in flight to one follower while replicating.
    pub inflight_messages_max: usize,
    /// The most entry bytes in flight to one follower while replicating.
    pub inflight_bytes_max: u64,
    /// The most bytes of proposed but uncommitted entries a leader accepts.
    pub uncommitted_bytes_max: u64,
    /// The most entries in one `propose` batch.
    pub proposal_entries_max: usize,
    /// The most bytes of committed entries handed out in one `Ready`.
    pub committed_entries_bytes_max: u64,
    /// The most reads a leader keeps waiting for their heartbeat round; without
    /// check-quorum a partitioned leader would otherwise queue them forever.
    pub pending_reads_max: usize,
    /// The index the application has already applied when the core starts (zero means the
    /// snapshot's index).
    pub applied_index: u64,
    /// Test-only wrong rules for proving that the simulator catches bugs.
    #[cfg(feature = "bug-injection")]
    pub injected_bug: Option<crate::InjectedBug>,
}

impl Config {
    /// A configuration with conservative defaults for node `id`.
    pub fn new(id: NodeId) -> Config {
        Config {
            id,
            election_timeout_ticks: 10,
            heartbeat_interval_ticks: 2,
            seed: 0,
            pre_vote: true,
            check_quorum: true,
            read_mode: ReadMode::Safe,
            lease_drift_ticks: 2,
            message_bytes_max: 1024 * 1024,
            message_entries_max: 4096,
            inflight_messages_max: 256,
            inflight_bytes_max: 64 * 1024 * 1024,
            uncommitted_bytes_max: 256 * 1024 * 1024,
            proposal_entries_max: 4096,
            committed_entries_bytes_max: 64 * 1024 * 1024,
            pending_reads_max: 4096,
            applied_index: 0,
            #[cfg(feature = "bug-injection")]
            injected_bug: None,
        }
    }

    /// Checks every field; the core refuses to start on an error.
    pub fn validate(&self) -> Result<(), Error> {
        fn check(ok: bool, field: &'static str, reason: &str) -> Result<(), Error> {
            if ok {
                Ok(())
            } else {
                Err(Error::Config {
                    field,
                    reason: reason.to_string(),
                })
            }
        }
        check(self.id != 0, "id", "must be non-zero")?;
        check(
            self.heartbeat_interval_ticks > 0,
            "heartbeat_interval_ticks",
            "must be > 0",
        )?;
        check(
            self.election_timeout_ticks > self.heartbeat_interval_ticks,
            "election_timeout_ticks",
            "must exceed heartbeat_interval_ticks",
        )?;
        check(
            self.election_timeout_ticks <= 1_000_000,
            "election_timeout_ticks",
            "must be at most 1,000,000",
        )?;
        check(
            self.lease_drift_ticks >= 1,
            "lease_drift_ticks",
            "must be at least 1 (tick phase alone needs one tick of margin)",
        )?;
        check(
            self.lease_drift_ticks < self.election_timeout_ticks,
            "lease_drift_ticks",
            "must be below election_timeout_ticks",
        )?;
        check(
            self.read_mode == ReadMode::Safe || self.check_quorum,
            "read_mode",
            "lease-based reads need check_quorum",
        )?;
        check(
            self.message_bytes_max > 0,
            "message_bytes_max",
            "must be > 0",
        )?;
        check(
            self.message_entries_max > 0,
            "message_entries_max",
            "must be > 0",
        )?;
        check(
            self.inflight_messages_max > 0,
            "inflight_messages_max",
            "must be > 0",
        )?;
        check(
            self.inflight_bytes_max >= self.message_bytes_max,
            "inflight_bytes_max",
            "must be at least message_bytes_max",
        )?;
        check(
            self.uncommitted_bytes_max > 0,
            "uncommitted_bytes_max",
            "must be > 0",
        )?;
        check(
            self.proposal_entries_max > 0,
            "proposal_entries_max",
            "must be > 0",
        )?;
        check(
            self.pending_reads_max > 0,
            "pending_reads_max",
            "must be > 0",
        )?;
        check(
            self.committed_entries_bytes_max > 0,
            "committed_entries_bytes_max",
            "must be > 0",
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_each_bound_is_checked() {
        assert_eq!(Config::new(1).validate(), Ok(()));
        let mut config = Config::new(0);
        assert!(matches!(
            config.validate(),
            Err(Error::Config { field: "id", .. })
        ));
        config = Config::new(1);
        config.election_timeout_ticks = config.heartbeat_interval_ticks;
        assert!(matches!(
            config.validate(),
            Err(Error::Config {
                field: "election_timeout_ticks",
                ..
            })
        ));
        config = Config::new(1);
        config.check_quorum = false;
        config.read_mode = ReadMode::LeaseBased;
        assert!(matches!(
            config.validate(),
            Err(Error::Config {
                field: "read_mode",
                ..
            })
        ));
        config = Config::new(1);
        config.inflight_messages_max = 0;
        assert!(matches!(
            config.validate(),
            Err(Error::Config {
                field: "inflight_messages_max",
                ..
            })
        ));
        config = Config::new(1);
        config.inflight_bytes_max = config.message_bytes_max - 1;
        assert!(matches!(
            config.validate(),
            Err(Error::Config {
                field: "inflight_bytes_max",
                ..
            })
        ));
    }
}
