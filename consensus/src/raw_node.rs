//! The public face of the core: inputs in, [`Ready`] batches out.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::config::Config;
use crate::error::Error;
use crate::progress::ProgressState;
use crate::raft::{CampaignKind, ProposalReceipt, Raft};
use crate::storage::Storage;
use crate::types::{
    Entry, HardState, Membership, MembershipChange, Message, NodeId, ReadState, Role, Snapshot,
    SoftState,
};

/// One batch of work for the application, taken with [`RawNode::ready`] and closed with
/// [`RawNode::advance`].
///
/// Carry it out in this order; each step says when a field may be acted on:
///
/// 1. `messages` may be sent **at once**, before or while persisting. They are the leader's
///    own traffic (appends, heartbeats, snapshots, TimeoutNow) once its term is durable (a
///    leader whose term is still in this batch's `hard_state`, e.g. a single voter that won
///    inside one call, puts them in `persisted_messages` instead). This is how the leader replicates new
///    entries to followers in parallel with its own fsync (thesis 10.2.1): its own copy
///    counts towards commitment only after `advance`, i.e. once it is durable.
/// 2. Persist, atomically with respect to a crash or in this order: `snapshot` (if any,
///    replacing the log and state machine), then `entries` (the first entry's index may be
///    at or below the stored last index: truncate the stored log from there first), then
///    `hard_state`. Sync to disk if `must_sync` (term and vote must be durable before step
///    3). Its `commit` may be saved lazily: a node that restarts knowing an older commit
///    index relearns the rest from the leader, which is safe (see `HardState::commit`). A crash between `entries` and `hard_state` may leave the stored term
///    below the last entry's term; the node then restarts in that entry's term with no vote.
/// 3. Only then send `persisted_messages`: votes and append acknowledgements promise that
///    the state in step 2 is durable.
/// 4. Apply `committed_entries` in order (they may include entries from step 2, so not
///    before it), and serve each `read_states` request once applied reaches its index.
/// 5. Call [`RawNode::advance`] with this batch.
///
/// A leader may instead hand `entries` to an asynchronous writer in step 2 and close the
/// batch with [`RawNode::advance_async`] before they are durable, then report them with
/// [`RawNode::entries_persisted`] (thesis 10.2.1; etcd-raft's asynchronous storage writes).
/// Step 3 still holds: `persisted_messages` wait until every entry handed out is durable.
///
/// Inputs (`tick`, `step`, `propose`, ...) may be given between `ready` and `advance`; their
/// outputs go into the next batch. A crash before step 2 completes loses the batch: the
/// node restarts from what storage holds, which the protocol tolerates because nothing that
/// depended on it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    /// The role and leader, if they changed since the previous batch. Not persisted.
    pub soft_state: Option<SoftState>,
    /// The term, vote and commit index to persist, if they changed.
    pub hard_state: Option<HardState>,
    /// A snapshot received from the leader, to install before `entries`.
    pub snapshot: Option<Snapshot>,
    /// Entries to append to the log (after truncating from the first one's index).
    pub entries: Vec<Entry>,
    /// Messages that may be sent immediately (see step 1).
    pub messages: Vec<Message>,
    /// Messages that may be sent only after `snapshot`, `entries` and `hard_state` are
    /// durable (see step 3).
    pub persisted_messages: Vec<Message>,
    /// Committed entries to apply, in order.
    pub committed_entries: Vec<Entry>,
    /// Reads whose index is confirmed; serve each once applied reaches its index.
    pub read_states: Vec<ReadState>,
    /// True if `hard_state` (term or vote), `entries` or `snapshot` must reach stable
    /// storage before `persisted_messages` go out.
    pub must_sync: bool,
    number: u64,
}

/// A summary of the node's state, for observability and sequential reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// This node's id.
    pub id: NodeId,
    /// The current term, vote and commit index.
    pub hard_state: HardState,
    /// The role and known leader.
    pub soft_state: SoftState,
    /// The highest index handed to the application in an advanced Ready. Sequential reads
    /// on any replica may be served at this index.
    pub applied: u64,
    /// The last log index.
    pub last_index: u64,
    /// The last index the application reported durable; on a leader that writes its log
    /// asynchronously it may lag `last_index` (and even the commit index, which followers'
    /// copies alone may reach).
    pub persisted_index: u64,
    /// The membership in force.
    pub membership: Membership,
    /// On a leader, each member's replication progress.
    pub progress: BTreeMap<NodeId, ProgressSummary>,
}

/// The leader's view of one member, as reported by [`RawNode::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressSummary {
    /// The highest index known to match the leader's log.
    pub matched: u64,
    /// The next index the leader will send.
    pub next: u64,
    /// How the leader replicates to it.
    pub state: ProgressState,
    /// Appends in flight.
    pub inflight_messages: usize,
    /// Entry bytes in flight.
    pub inflight_bytes: u64,
}

/// A Raft node as a pure state machine over storage `S`.
///
/// It does no I/O, reads no clock and uses no unseeded randomness: the same inputs always
/// produce the same `Ready` batches.
#[derive(Debug)]
pub struct RawNode<S> {
    raft: Raft<S>,
    previous_soft_state: SoftState,
    previous_hard_state: HardState,
    outstanding_ready: Option<u64>,
    ready_count: u64,
    applied: u64,
}

impl<S: Storage> RawNode<S> {
    /// Starts a node from the state in `storage`.
    pub fn new(config: Config, storage: S) -> Result<RawNode<S>, Error> {
        let raft = Raft::new(config, storage)?;
        let previous_hard_state = raft.hard_state();
        let applied = raft.log.applied;
        Ok(RawNode {
            previous_soft_state: raft.soft_state(),
            previous_hard_state,
            raft,
            outstanding_ready: None,
            ready_count: 0,
            applied,
        })
    }

    /// Advances logical time by one tick (election and heartbeat timers).
    pub fn tick(&mut self) -> Result<(), Error> {
        self.raft.tick()
    }

    /// Handles a message from a peer.
    pub fn step(&mut self, message: Message) -> Result<(), Error> {
        self.raft.step(message)
    }

    /// Starts an election now (pre-vote first if configured), as if the timer fired.
    pub fn campaign(&mut self) -> Result<(), Error> {
        let kind = if self.raft.config.pre_vote {
            CampaignKind::PreVote
        } else {
            CampaignKind::Election
        };
        self.raft.campaign(kind)
    }

    /// Appends a batch of commands to the leader's log and replicates it.
    pub fn propose(&mut self, payloads: Vec<Bytes>) -> Result<ProposalReceipt, Error> {
        self.raft.propose(payloads)
    }

    /// Asks for a linearizable read; `request_id` comes back in a [`ReadState`]. Reads
    /// asked between two `ready` calls share one heartbeat round.
    pub fn read_index(&mut self, request_id: u64) -> Result<(), Error> {
        self.raft.read_index(request_id)
    }

    /// Hands leadership to `target` once it has caught up (thesis 3.10).
    pub fn transfer_leadership(&mut self, target: NodeId) -> Result<(), Error> {
        self.raft.transfer_leadership(target)
    }

    /// Proposes a membership change; voter changes go through joint consensus.
    pub fn propose_membership(
        &mut self,
        changes: &[MembershipChange],
    ) -> Result<ProposalReceipt, Error> {
        self.raft.propose_membership(changes)
    }

    /// True if [`RawNode::ready`] would return a non-empty batch.
    pub fn has_ready(&self) -> bool {
        if self.outstanding_ready.is_some() {
            return false;
        }
        let raft = &self.raft;
        raft.soft_state() != self.previous_soft_state
            || raft.hard_state() != self.previous_hard_state
            || !raft.log.unstable_entries().is_empty()
            || raft.log.unstable_snapshot().is_some()
            || !raft.messages.is_empty()
            || !raft.persisted_messages.is_empty()
            || !raft.read_states.is_empty()
            || raft.has_committed_entries()
            || raft.read_round_due()
    }

    /// Takes the next batch of work. Panics if the previous batch was not advanced.
    pub fn ready(&mut self) -> Result<Ready, Error> {
        assert!(self.outstanding_ready.is_none(), "ready() before advance()");
        let committed_entries = self.raft.take_committed_entries()?;
        self.raft.start_requested_read_round();
        let raft = &mut self.raft;
        let soft_state = raft.soft_state();
        let hard_state = raft.hard_state();
        let entries = raft.log.unstable_entries().to_vec();
        let snapshot = raft.log.unstable_snapshot().cloned();
        let hard_changed = hard_state != self.previous_hard_state;
        let must_sync = !entries.is_empty()
            || snapshot.is_some()
            || hard_state.term != self.previous_hard_state.term
            || hard_state.vote != self.previous_hard_state.vote;
        self.ready_count += 1;
        let ready = Ready {
            soft_state: (soft_state != self.previous_soft_state).then_some(soft_state),
            hard_state: hard_changed.then_some(hard_state),
            snapshot,
            entries,
            messages: std::mem::take(&mut raft.messages),
            persisted_messages: std::mem::take(&mut raft.persisted_messages),
            committed_entries,
            read_states: std::mem::take(&mut raft.read_states),
            must_sync,
            number: self.ready_count,
        };
        self.previous_soft_state = soft_state;
        self.previous_hard_state = hard_state;
        self.outstanding_ready = Some(self.ready_count);
        Ok(ready)
    }

    /// Closes a batch: the application persisted, sent and applied it as documented on
    /// [`Ready`].
    pub fn advance(&mut self, ready: Ready) -> Result<(), Error> {
        let last = ready.entries.last().map(|entry| (entry.index, entry.term));
        self.close(&ready);
        if let Some((index, term)) = last {
            self.raft.log.stable_to(index, term);
        }
        self.raft.on_persisted()
    }

    /// Closes a batch whose `entries` are still being written: everything else was carried
    /// out as for [`RawNode::advance`] (the snapshot and the term and vote of `hard_state`
    /// are durable, `persisted_messages` were sent only once every entry handed out so far,
    /// in this batch and earlier ones, was durable). The entries are not handed out again;
    /// they stay readable in memory, and a leader does not count its own copy of them,
    /// until [`RawNode::entries_persisted`] reports them durable.
    ///
    /// This is how a leader writes its own log in parallel with replication (thesis
    /// 10.2.1): it sends `messages` at once, hands `entries` to a writer, and goes on
    /// stepping the followers' acknowledgements while its fsync runs. Writes must complete
    /// in the order they were handed out. An entry replaced before it was reported durable
    /// (a new leader overwrote it) is handed out again; the application must make the
    /// earlier writes complete before it truncates its log for the replacement.
    pub fn advance_async(&mut self, ready: Ready) -> Result<(), Error> {
        self.close(&ready);
        if let Some(last) = ready.entries.last() {
            self.raft.log.accept_in_progress(last.index, last.term);
        }
        Ok(())
    }

    /// Reports that every entry handed out up to (`index`, `term`) is durable (after
    /// [`RawNode::advance_async`]). A report for an entry that was replaced meanwhile
    /// changes nothing: the replacement's own report will cover the earlier entries.
    /// Panics if that entry was never handed out for writing.
    pub fn entries_persisted(&mut self, index: u64, term: u64) -> Result<(), Error> {
        assert!(
            !self.raft.log.is_not_handed_out(index, term),
            "entry {index} of term {term} reported durable before it was handed out"
        );
        if !self.raft.log.is_in_progress(index, term) {
            return Ok(());
        }
        self.raft.log.stable_to(index, term);
        self.raft.on_persisted()
    }

    /// The part of closing a batch that does not depend on how its entries were written.
    fn close(&mut self, ready: &Ready) {
        assert!(
            self.outstanding_ready == Some(ready.number),
            "advance() with a batch that is not the outstanding one"
        );
        self.outstanding_ready = None;
        if let Some(hard_state) = &ready.hard_state {
            self.raft.durable_term = hard_state.term;
        }
        if let Some(snapshot) = &ready.snapshot {
            self.raft.log.stable_snapshot_to(snapshot.metadata.index);
            self.applied = self.applied.max(snapshot.metadata.index);
        }
        if let Some(last) = ready.committed_entries.last() {
            self.applied = self.applied.max(last.index);
        }
    }

    /// The node's state.
    pub fn status(&self) -> Status {
        let raft = &self.raft;
        let progress = if raft.role == Role::Leader {
            raft.progress
                .iter()
                .map(|(id, p)| {
                    let summary = ProgressSummary {
                        matched: p.matched,
                        next: p.next,
                        state: p.state,
                        inflight_messages: p.inflights.count(),
                        inflight_bytes: p.inflights.bytes(),
                    };
                    (*id, summary)
                })
                .collect()
        } else {
            BTreeMap::new()
        };
        Status {
            id: raft.id,
            hard_state: raft.hard_state(),
            soft_state: raft.soft_state(),
            applied: self.applied,
            last_index: raft.log.last_index(),
            persisted_index: raft.log.persisted_last_index(),
            membership: raft.membership.clone(),
            progress,
        }
    }

    /// The storage, for reading.
    pub fn storage(&self) -> &S {
        &self.raft.log.storage
    }

    /// The storage, for the application to persist a Ready into.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.raft.log.storage
    }

    /// The entries in `low..high` of the whole log (durable and unstable), for checkers.
    pub fn log_entries(&self, low: u64, high: u64) -> Result<Vec<Entry>, Error> {
        self.raft.log.entries(low, high, u64::MAX)
    }

    /// The first index still held in the log.
    pub fn first_index(&self) -> Result<u64, Error> {
        self.raft.log.first_index()
    }

    /// The term of the entry at `index`.
    pub fn term(&self, index: u64) -> Result<u64, Error> {
        self.raft.log.term(index)
    }

    /// Gives the storage back, e.g. to restart the node after a simulated crash.
    pub fn into_storage(self) -> S {
        self.raft.log.storage
    }

    /// The configuration the node runs with.
    pub fn config(&self) -> &Config {
        &self.raft.config
    }

    /// Checks every internal invariant; tests and the simulator run it after each input.
    pub fn validate(&self) -> Result<(), Error> {
        self.raft.validate()
    }
}
