//! What a leader knows about each follower's log, and the bound on messages in flight.

use std::collections::VecDeque;

/// How the leader currently replicates to a follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressState {
    /// The follower's match point is unknown: one Append at a time until one succeeds.
    Probe,
    /// The follower matches: Appends are pipelined up to the in-flight bounds.
    Replicate,
    /// The follower needs a snapshot at `pending_index`; Appends wait for it.
    Snapshot {
        /// The index of the snapshot that was sent.
        pending_index: u64,
    },
}

/// Appends in flight to one follower, each recorded by its last index and its bytes.
#[derive(Debug, Clone)]
pub struct Inflights {
    messages: VecDeque<(u64, u64)>,
    bytes: u64,
    messages_max: usize,
    bytes_max: u64,
}

impl Inflights {
    /// An empty window bounded by count and bytes.
    pub fn new(messages_max: usize, bytes_max: u64) -> Inflights {
        Inflights {
            messages: VecDeque::new(),
            bytes: 0,
            messages_max,
            bytes_max,
        }
    }

    /// True if no further Append may be sent.
    pub fn full(&self) -> bool {
        self.messages.len() >= self.messages_max || self.bytes >= self.bytes_max
    }

    /// Records an Append ending at `last_index` carrying `bytes`.
    pub fn add(&mut self, last_index: u64, bytes: u64) {
        assert!(!self.full(), "inflight window overflow");
        if let Some((previous, _)) = self.messages.back() {
            assert!(last_index > *previous, "inflight indexes must increase");
        }
        self.messages.push_back((last_index, bytes));
        self.bytes += bytes;
    }

    /// Frees every Append whose last index is at most `index` (acknowledged).
    pub fn free_to(&mut self, index: u64) {
        while let Some((last_index, bytes)) = self.messages.front().copied() {
            if last_index > index {
                break;
            }
            self.messages.pop_front();
            self.bytes -= bytes;
        }
    }

    /// Frees the oldest Append (a heartbeat response proves the follower is alive, so one
    /// slot opens even if an Append was lost).
    pub fn free_first(&mut self) {
        if let Some((_, bytes)) = self.messages.pop_front() {
            self.bytes -= bytes;
        }
    }

    /// Forgets everything in flight.
    pub fn reset(&mut self) {
        self.messages.clear();
        self.bytes = 0;
    }

    /// The number of Appends in flight.
    pub fn count(&self) -> usize {
        self.messages.len()
    }

    /// The entry bytes in flight.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// The leader's view of one follower.
#[derive(Debug, Clone)]
pub struct Progress {
    /// The highest index known to match the leader's log.
    pub matched: u64,
    /// The next index to send.
    pub next: u64,
    /// The replication state.
    pub state: ProgressState,
    /// In Probe: an Append was sent and no answer came yet.
    pub probe_sent: bool,
    /// The pipelining window.
    pub inflights: Inflights,
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
    /// Ticks spent waiting in the Snapshot state.
    pub snapshot_elapsed_ticks: u64,
    /// The highest read round this follower acknowledged.
    pub read_round_acked: u64,
}

impl Progress {
    /// A fresh progress that will probe from `next`.
    pub fn new(next: u64, inflight_messages_max: usize, inflight_bytes_max: u64) -> Progress {
        Progress {
            matched: 0,
            next,
            state: ProgressState::Probe,
            probe_sent: false,
            inflights: Inflights::new(inflight_messages_max, inflight_bytes_max),
            recent_active: false,
            snapshot_elapsed_ticks: 0,
            read_round_acked: 0,
        }
    }

    /// Switches to probing from the entry after the match point.
    pub fn become_probe(&mut self) {
        if let ProgressState::Snapshot { pending_index } = self.state {
            self.next = (self.matched + 1).max(pending_index + 1);
        } else {
            self.next = self.matched + 1;
        }
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflights.reset();
    }

    /// Switches to pipelining from the entry after the match point.
    pub fn become_replicate(&mut self) {
        self.next = self.matched + 1;
        self.state = ProgressState::Replicate;
        self.probe_sent = false;
        self.inflights.reset();
    }

    /// Switches to waiting for the snapshot at `pending_index`.
    pub fn become_snapshot(&mut self, pending_index: u64) {
        self.state = ProgressState::Snapshot { pending_index };
        self.probe_sent = false;
        self.snapshot_elapsed_ticks = 0;
        self.inflights.reset();
    }

    /// True if the leader must not send another Append now.
    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.full(),
            ProgressState::Snapshot { .. } => true,
        }
    }

    /// Records a successful append up to `index`; true if the match point moved.
    pub fn maybe_update(&mut self, index: u64) -> bool {
        let updated = index > self.matched;
        if updated {
            self.matched = index;
            self.probe_sent = false;
        }
        self.next = self.next.max(index + 1);
        updated
    }

    /// Handles a rejection of the Append whose previous index was `rejected`; `hint` is the
    /// next index to try. False if the rejection is stale.
    pub fn maybe_decrease_to(&mut self, rejected: u64, hint: u64) -> bool {
        if self.state == ProgressState::Replicate {
            // Pipelined appends can be rejected out of order; only one at or past the match
            // point is news.
            if rejected <= self.matched {
                return false;
            }
            self.next = self.matched + 1;
            return true;
        }
        // In probe only the answer to the last probe counts.
        if self.next == 0 || self.next - 1 != rejected {
            return false;
        }
        self.next = hint.min(rejected).max(self.matched + 1).max(1);
        self.probe_sent = false;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflights_bound_count_and_bytes() {
        let mut inflights = Inflights::new(2, 1000);
        inflights.add(5, 100);
        assert!(!inflights.full());
        inflights.add(9, 100);
        assert!(inflights.full());
        inflights.free_to(5);
        assert_eq!((inflights.count(), inflights.bytes()), (1, 100));
        inflights.add(12, 900);
        assert!(inflights.full());
        inflights.free_first();
        assert_eq!((inflights.count(), inflights.bytes()), (1, 900));
    }

    #[test]
    fn probe_ignores_stale_rejections_and_replicate_resets_to_match() {
        let mut progress = Progress::new(10, 4, 1000);
        assert!(!progress.maybe_decrease_to(5, 3));
        assert!(progress.maybe_decrease_to(9, 4));
        assert_eq!(progress.next, 4);
        progress.maybe_update(6);
        progress.become_replicate();
        assert_eq!(progress.next, 7);
        progress.next = 12;
        assert!(!progress.maybe_decrease_to(5, 1));
        assert!(progress.maybe_decrease_to(8, 1));
        assert_eq!(progress.next, 7);
    }
}
