//! The Raft state machine: roles, elections, replication, commitment, reads, leadership
//! transfer and membership. Inputs mutate it; outputs accumulate until a `Ready` takes them.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use crate::config::{Config, ReadMode};
use crate::error::{Error, StorageError};
use crate::log::RaftLog;
use crate::prng::Prng;
use crate::progress::{Progress, ProgressState};
use crate::quorum::{VoteResult, joint_index, joint_vote};
use crate::storage::Storage;
use crate::types::{
    Entry, EntryKind, HardState, Membership, MembershipChange, Message, MessageKind, NodeId,
    ReadState, Role, Snapshot, SoftState,
};

/// Why an election starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CampaignKind {
    /// A pre-vote round (thesis 9.6).
    PreVote,
    /// A real election.
    Election,
    /// A real election asked for by the leader (TimeoutNow); bypasses leader leases.
    Transfer,
}

/// What `propose` appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProposalReceipt {
    /// The index of the first entry of the batch.
    pub first_index: u64,
    /// The index of the last entry of the batch.
    pub last_index: u64,
    /// The term the entries were proposed in; if the entry at `last_index` later has another
    /// term, the proposal was lost.
    pub term: u64,
}

/// A read waiting for its heartbeat round to be acknowledged by a quorum.
#[derive(Debug, Clone, Copy)]
struct PendingRead {
    request_id: u64,
    /// The round that confirms it; zero until a round starts.
    round: u64,
    /// The commit index when its round started.
    index: u64,
}

/// The Raft core of one node.
#[derive(Debug)]
pub(crate) struct Raft<S> {
    pub(crate) id: NodeId,
    pub(crate) term: u64,
    pub(crate) vote: Option<NodeId>,
    pub(crate) leader: Option<NodeId>,
    pub(crate) role: Role,
    pub(crate) log: RaftLog<S>,
    pub(crate) config: Config,
    /// The membership of the last applied membership entry (or of the snapshot).
    pub(crate) membership: Membership,
    /// The leader's view of every member (kept for this node even when it is not a member).
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    votes: BTreeMap<NodeId, bool>,
    election_elapsed_ticks: u64,
    heartbeat_elapsed_ticks: u64,
    randomized_election_timeout_ticks: u64,
    pub(crate) transfer_target: Option<NodeId>,
    /// A leader proposes no membership change until this index is applied.
    pending_membership_index: u64,
    uncommitted_bytes: u64,
    term_start_index: u64,
    read_round: u64,
    read_round_requested: bool,
    pending_reads: VecDeque<PendingRead>,
    round_start_ticks: VecDeque<(u64, u64)>,
    lease_start_tick: Option<u64>,
    /// Set once this leader sent TimeoutNow in its term: the target may win a forced election
    /// (forced votes ignore leases) at any moment, even after the transfer was abandoned, so
    /// no lease read is served for the rest of the term.
    lease_void: bool,
    /// A TimeoutNow received in this term while a committed membership entry was unapplied:
    /// the forced campaign runs once that entry is applied.
    deferred_transfer_term: Option<u64>,
    /// The term of the last hard state the application made durable (`RawNode::advance`).
    /// A leader sends its own traffic before persisting only once its term is durable.
    pub(crate) durable_term: u64,
    /// A restarted node behaves for one election timeout as if it had just heard from a
    /// leader: it may have acknowledged a leader's lease before the crash.
    restart_quarantine: bool,
    ticks: u64,
    /// Messages that may be sent at once (the leader's own traffic).
    pub(crate) messages: Vec<Message>,
    /// Messages that may be sent only once the Ready's state is durable.
    pub(crate) persisted_messages: Vec<Message>,
    pub(crate) read_states: Vec<ReadState>,
    prng: Prng,
}

impl<S: Storage> Raft<S> {
    pub(crate) fn new(config: Config, storage: S) -> Result<Raft<S>, Error> {
        config.validate()?;
        let state = storage.initial_state()?;
        let log = RaftLog::new(storage, config.applied_index)?;
        // A crash between persisting entries and the hard state may leave the stored term
        // below the last entry's term. This node cast no vote in any later term (that vote
        // would have been persisted with its term first), so it resumes in the last entry's
        // term without a vote.
        let last_log_term = log.last_term()?;
        let (term, vote) = if state.hard_state.term < last_log_term {
            (last_log_term, None)
        } else {
            (state.hard_state.term, state.hard_state.vote)
        };
        let id = config.id;
        let seed = config.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut raft = Raft {
            id,
            term,
            vote,
            leader: None,
            role: Role::Follower,
            log,
            membership: state.membership,
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            election_elapsed_ticks: 0,
            heartbeat_elapsed_ticks: 0,
            randomized_election_timeout_ticks: config.election_timeout_ticks,
            transfer_target: None,
            pending_membership_index: 0,
            uncommitted_bytes: 0,
            term_start_index: 0,
            read_round: 0,
            read_round_requested: false,
            pending_reads: VecDeque::new(),
            round_start_ticks: VecDeque::new(),
            lease_start_tick: None,
            lease_void: false,
            deferred_transfer_term: None,
            durable_term: state.hard_state.term,
            restart_quarantine: config.check_quorum && state.hard_state.term > 0,
            ticks: 0,
            messages: Vec::new(),
            persisted_messages: Vec::new(),
            read_states: Vec::new(),
            prng: Prng::new(seed),
            config,
        };
        // A node joining an existing cluster starts with no membership: it never campaigns
        // and learns the configuration from the leader's log or snapshot.
        if !raft.membership.voters.is_empty() {
            raft.membership.validate()?;
        }
        raft.replay_applied_membership()?;
        raft.reset_progress();
        raft.reset_election_timeout();
        Ok(raft)
    }

    /// Membership entries the application says it already applied take effect at start.
    fn replay_applied_membership(&mut self) -> Result<(), Error> {
        let first = self.log.first_index()?;
        if self.log.applied < first {
            return Ok(());
        }
        let entries = self.log.entries(first, self.log.applied + 1, u64::MAX)?;
        for entry in entries.iter().filter(|e| e.kind == EntryKind::Membership) {
            self.membership = Membership::decode(&entry.payload)?;
        }
        Ok(())
    }

    pub(crate) fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed,
        }
    }

    pub(crate) fn soft_state(&self) -> SoftState {
        SoftState {
            leader: self.leader,
            role: self.role,
        }
    }

    fn promotable(&self) -> bool {
        (self.membership.is_voter(self.id) || self.is_ex_member())
            && self.log.unstable_snapshot().is_none()
    }

    /// True if the configuration in force (committed, as it was applied) no longer lists
    /// this node at all: it was removed. A removed node may hold a longer log than the new
    /// voters, who may still run the joint configuration and need its vote, which it gives
    /// only to a log as up to date as its own. So it may campaign, under the configuration
    /// it applied and always through pre-vote (no term inflation, no disruption of a
    /// cluster whose logs moved past it); if it wins, it hands over to a caught-up voter.
    fn is_ex_member(&self) -> bool {
        !self.membership.voters.is_empty() && !self.membership.contains(self.id)
    }

    fn send(&mut self, message: Message) {
        assert!(message.to != self.id, "message to self");
        // A leader's own traffic may leave before this Ready is persisted only once its term is
        // durable: a single voter wins inside one call, and if it crashed before persisting
        // the term it could win that term again and send a different entry at the same
        // (index, term). Everything else, including a leader's answers to others, waits.
        let leader_traffic = matches!(
            message.kind,
            MessageKind::Append
                | MessageKind::Heartbeat
                | MessageKind::Snapshot
                | MessageKind::TimeoutNow
        );
        if self.role == Role::Leader && self.durable_term == self.term && leader_traffic {
            self.messages.push(message);
        } else {
            self.persisted_messages.push(message);
        }
    }

    fn reset_election_timeout(&mut self) {
        let minimum = self.config.election_timeout_ticks;
        self.randomized_election_timeout_ticks = self.prng.range(minimum, 2 * minimum);
    }

    fn reset_progress(&mut self) {
        let next = self.log.last_index() + 1;
        let (messages_max, bytes_max) = (
            self.config.inflight_messages_max,
            self.config.inflight_bytes_max,
        );
        let mut members = self.membership.members();
        members.insert(self.id);
        self.progress = members
            .into_iter()
            .map(|id| (id, Progress::new(next, messages_max, bytes_max)))
            .collect();
        let persisted = self.log.persisted_last_index();
        if let Some(own) = self.progress.get_mut(&self.id) {
            own.matched = persisted;
            own.next = next;
            own.recent_active = true;
        }
    }

    fn reset(&mut self, term: u64) {
        self.restart_quarantine = false;
        if term != self.term {
            self.term = term;
            self.vote = None;
            self.deferred_transfer_term = None;
        }
        self.leader = None;
        self.election_elapsed_ticks = 0;
        self.heartbeat_elapsed_ticks = 0;
        self.reset_election_timeout();
        self.transfer_target = None;
        self.votes.clear();
        self.reset_progress();
        self.uncommitted_bytes = 0;
        self.pending_reads.clear();
        self.read_round_requested = false;
        self.round_start_ticks.clear();
        self.lease_start_tick = None;
        self.lease_void = false;
    }

    pub(crate) fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        self.reset(term);
        self.role = Role::Follower;
        self.leader = leader;
    }

    fn become_pre_candidate(&mut self) {
        assert!(self.role != Role::Leader, "leader cannot pre-campaign");
        // A pre-candidate changes neither term nor vote: it only asks.
        self.role = Role::PreCandidate;
        self.votes.clear();
        self.leader = None;
    }

    fn become_candidate(&mut self) {
        assert!(self.role != Role::Leader, "leader cannot campaign");
        self.reset(self.term + 1);
        self.vote = Some(self.id);
        self.role = Role::Candidate;
    }

    fn become_leader(&mut self) -> Result<(), Error> {
        assert!(
            self.role == Role::Candidate,
            "only a candidate becomes leader"
        );
        self.reset(self.term);
        self.role = Role::Leader;
        self.leader = Some(self.id);
        let matched = self.log.persisted_last_index();
        if let Some(own) = self.progress.get_mut(&self.id) {
            own.matched = matched;
            own.become_replicate();
            own.next = self.log.last_index() + 1;
        }
        // The no-op lets the leader commit entries of earlier terms (paper 5.4.2) and
        // learn the commit index for reads (thesis 6.4).
        let receipt = self.append_entries(&[(EntryKind::Noop, Bytes::new())]);
        self.term_start_index = receipt.last_index;
        // No membership change until everything up to the no-op is applied, because an
        // unapplied change may still sit in the log.
        self.pending_membership_index = receipt.last_index;
        Ok(())
    }

    pub(crate) fn campaign(&mut self, kind: CampaignKind) -> Result<(), Error> {
        if !self.promotable() || self.role == Role::Leader {
            return Ok(());
        }
        // Configurations take effect when applied. A committed but unapplied membership
        // entry means the applied configuration may be out of date: an election under it
        // could win with voters the cluster no longer has (etcd: "candidate should wait for
        // applying all configuration changes"). This relies on `HardState::commit` being
        // persisted, so a restarted node still knows what it knew to be committed.
        let (applied, committed) = (self.log.applied, self.log.committed);
        if !self.bug_campaigns_with_unapplied_membership()
            && self.membership_entry_between(applied, committed)?
        {
            return Ok(());
        }
        let (request_kind, request_term) = if kind == CampaignKind::PreVote {
            self.become_pre_candidate();
            (MessageKind::PreVote, self.term + 1)
        } else {
            self.become_candidate();
            (MessageKind::Vote, self.term)
        };
        self.votes.insert(self.id, true);
        if joint_vote(&self.membership, &self.votes) == VoteResult::Won {
            return self.win_election(kind == CampaignKind::PreVote);
        }
        let last_index = self.log.last_index();
        let last_term = self.log.last_term()?;
        let voters: Vec<NodeId> = self.voters_except_self();
        for to in voters {
            let mut request = Message::new(request_kind, self.id, to, request_term);
            request.index = last_index;
            request.log_term = last_term;
            request.forced = kind == CampaignKind::Transfer;
            self.send(request);
        }
        Ok(())
    }

    /// True if an entry in `(low, high]` is a membership entry; reads the log in pages of
    /// `committed_entries_bytes_max`.
    fn membership_entry_between(&self, low: u64, high: u64) -> Result<bool, Error> {
        let mut next = low + 1;
        while next <= high {
            let page = self
                .log
                .entries(next, high + 1, self.config.committed_entries_bytes_max)?;
            let Some(last) = page.last() else {
                break;
            };
            if page.iter().any(|entry| entry.kind == EntryKind::Membership) {
                return Ok(true);
            }
            next = last.index + 1;
        }
        Ok(false)
    }

    fn win_election(&mut self, pre_vote: bool) -> Result<(), Error> {
        if pre_vote {
            return self.campaign(CampaignKind::Election);
        }
        self.become_leader()?;
        self.broadcast_append()
    }

    fn voters_except_self(&self) -> Vec<NodeId> {
        let mut voters = self.membership.voters.clone();
        voters.extend(self.membership.voters_outgoing.iter().copied());
        voters.into_iter().filter(|id| *id != self.id).collect()
    }

    fn peers(&self) -> Vec<NodeId> {
        self.progress
            .keys()
            .copied()
            .filter(|id| *id != self.id)
            .collect()
    }

    pub(crate) fn tick(&mut self) -> Result<(), Error> {
        self.ticks += 1;
        if self.role == Role::Leader {
            return self.tick_leader();
        }
        self.election_elapsed_ticks += 1;
        if self.election_elapsed_ticks >= self.config.election_timeout_ticks {
            // Any lease granted before a restart has run out.
            self.restart_quarantine = false;
        }
        if self.promotable()
            && self.election_elapsed_ticks >= self.randomized_election_timeout_ticks
        {
            self.election_elapsed_ticks = 0;
            let kind = if self.config.pre_vote || self.is_ex_member() {
                CampaignKind::PreVote
            } else {
                CampaignKind::Election
            };
            self.campaign(kind)?;
        }
        Ok(())
    }

    fn tick_leader(&mut self) -> Result<(), Error> {
        self.heartbeat_elapsed_ticks += 1;
        self.election_elapsed_ticks += 1;
        if self.election_elapsed_ticks >= self.config.election_timeout_ticks {
            self.election_elapsed_ticks = 0;
            if self.config.check_quorum {
                if !self.quorum_active() {
                    self.become_follower(self.term, None);
                    return Ok(());
                }
                let id = self.id;
                for (peer, progress) in &mut self.progress {
                    progress.recent_active = *peer == id;
                }
            }
            // A transfer that did not finish within an election timeout is abandoned so
            // that proposals flow again.
            self.transfer_target = None;
        }
        let timeout = self.config.election_timeout_ticks;
        for progress in self.progress.values_mut() {
            if let ProgressState::Snapshot { .. } = progress.state {
                progress.snapshot_elapsed_ticks += 1;
                // The snapshot or its answer was lost: probe again, which resends it.
                if progress.snapshot_elapsed_ticks >= timeout {
                    progress.become_probe();
                }
            }
        }
        if self.heartbeat_elapsed_ticks >= self.config.heartbeat_interval_ticks {
            self.heartbeat_elapsed_ticks = 0;
            self.broadcast_heartbeat();
        }
        Ok(())
    }

    fn quorum_active(&self) -> bool {
        let active: BTreeMap<NodeId, bool> = self
            .progress
            .iter()
            .map(|(id, progress)| (*id, *id == self.id || progress.recent_active))
            .collect();
        joint_vote(&self.membership, &active) == VoteResult::Won
    }

    fn in_leader_lease(&self) -> bool {
        self.config.check_quorum
            && (self.leader.is_some() || self.restart_quarantine)
            && self.election_elapsed_ticks < self.config.election_timeout_ticks
    }

    pub(crate) fn step(&mut self, message: Message) -> Result<(), Error> {
        if message.to != self.id {
            return Err(Error::InvalidMessage(format!(
                "addressed to {}",
                message.to
            )));
        }
        if message.term > self.term {
            let is_vote_request = matches!(message.kind, MessageKind::Vote | MessageKind::PreVote);
            if is_vote_request && !message.forced && self.in_leader_lease() {
                // Thesis 4.2.3: a node that heard from a leader within the minimum election
                // timeout ignores vote requests, so removed or partitioned nodes cannot
                // disrupt a working cluster.
                return Ok(());
            }
            match message.kind {
                MessageKind::PreVote => {}
                MessageKind::PreVoteResponse if !message.reject => {}
                MessageKind::Append | MessageKind::Heartbeat | MessageKind::Snapshot => {
                    self.become_follower(message.term, Some(message.from));
                }
                _ => self.become_follower(message.term, None),
            }
        } else if message.term < self.term {
            let from_old_leader =
                matches!(message.kind, MessageKind::Append | MessageKind::Heartbeat);
            if from_old_leader && (self.config.check_quorum || self.config.pre_vote) {
                // Tell a deposed leader about the new term; otherwise, with pre-vote, it
                // might never learn it and this node could never be elected.
                let response = Message::new(
                    MessageKind::AppendResponse,
                    self.id,
                    message.from,
                    self.term,
                );
                self.send(response);
            } else if message.kind == MessageKind::PreVote {
                let mut response = Message::new(
                    MessageKind::PreVoteResponse,
                    self.id,
                    message.from,
                    self.term,
                );
                response.reject = true;
                self.send(response);
            }
            return Ok(());
        }
        match message.kind {
            MessageKind::PreVote | MessageKind::Vote => self.handle_vote_request(&message),
            _ => match self.role {
                Role::Leader => self.step_leader(message),
                Role::PreCandidate | Role::Candidate => self.step_candidate(message),
                Role::Follower => self.step_follower(message),
            },
        }
    }

    fn handle_vote_request(&mut self, request: &Message) -> Result<(), Error> {
        let is_pre_vote = request.kind == MessageKind::PreVote;
        let response_kind = if is_pre_vote {
            MessageKind::PreVoteResponse
        } else {
            MessageKind::VoteResponse
        };
        let can_vote = self.vote == Some(request.from)
            || (self.vote.is_none() && self.leader.is_none())
            || (is_pre_vote && request.term > self.term);
        let up_to_date = self.log.is_up_to_date(request.index, request.log_term)?
            || self.bug_grants_votes_without_log_check();
        if can_vote && up_to_date {
            // Paper 5.2 and 5.4.1: one vote per term, only for a log at least as up to date.
            self.send(Message::new(
                response_kind,
                self.id,
                request.from,
                request.term,
            ));
            if !is_pre_vote {
                self.election_elapsed_ticks = 0;
                self.vote = Some(request.from);
            }
        } else {
            let mut response = Message::new(response_kind, self.id, request.from, self.term);
            response.reject = true;
            self.send(response);
        }
        Ok(())
    }

    fn step_candidate(&mut self, message: Message) -> Result<(), Error> {
        let expected = if self.role == Role::PreCandidate {
            MessageKind::PreVoteResponse
        } else {
            MessageKind::VoteResponse
        };
        match message.kind {
            MessageKind::Append => {
                self.become_follower(message.term, Some(message.from));
                self.handle_append(message)
            }
            MessageKind::Heartbeat => {
                self.become_follower(message.term, Some(message.from));
                self.handle_heartbeat(&message)
            }
            MessageKind::Snapshot => {
                self.become_follower(message.term, Some(message.from));
                self.handle_snapshot(message)
            }
            kind if kind == expected => {
                self.votes.entry(message.from).or_insert(!message.reject);
                match joint_vote(&self.membership, &self.votes) {
                    VoteResult::Won => self.win_election(self.role == Role::PreCandidate),
                    VoteResult::Lost => {
                        self.become_follower(self.term, None);
                        Ok(())
                    }
                    VoteResult::Pending => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    fn step_follower(&mut self, message: Message) -> Result<(), Error> {
        match message.kind {
            MessageKind::Append => {
                self.election_elapsed_ticks = 0;
                self.leader = Some(message.from);
                self.handle_append(message)
            }
            MessageKind::Heartbeat => {
                self.election_elapsed_ticks = 0;
                self.leader = Some(message.from);
                self.handle_heartbeat(&message)
            }
            MessageKind::Snapshot => {
                self.election_elapsed_ticks = 0;
                self.leader = Some(message.from);
                self.handle_snapshot(message)
            }
            MessageKind::TimeoutNow => {
                let (applied, committed) = (self.log.applied, self.log.committed);
                if !self.bug_campaigns_with_unapplied_membership()
                    && self.membership_entry_between(applied, committed)?
                {
                    // The leader handed over after committing a membership change this node
                    // has not applied yet: campaign once it has (see take_committed_entries).
                    self.deferred_transfer_term = Some(self.term);
                    return Ok(());
                }
                self.campaign(CampaignKind::Transfer)
            }
            _ => Ok(()),
        }
    }

    fn handle_append(&mut self, message: Message) -> Result<(), Error> {
        let mut response = Message::new(
            MessageKind::AppendResponse,
            self.id,
            message.from,
            self.term,
        );
        if message.index < self.log.committed {
            response.index = self.log.committed;
            self.send(response);
            return Ok(());
        }
        match self.log.maybe_append(
            message.index,
            message.log_term,
            message.commit,
            &message.entries,
        ) {
            Some(last_index) => response.index = last_index,
            None => {
                // Fast backtracking: point the leader at the last entry that can match.
                let hint_index = message.index.min(self.log.last_index());
                let (hint_index, hint_term) =
                    self.log.find_conflict_by_term(hint_index, message.log_term);
                response.index = message.index;
                response.reject = true;
                response.reject_hint_index = hint_index;
                response.reject_hint_term = hint_term;
            }
        }
        self.send(response);
        Ok(())
    }

    fn handle_heartbeat(&mut self, message: &Message) -> Result<(), Error> {
        // The leader caps a heartbeat's commit at what it believes this node matches, which
        // is stale if this node lost its log (a wiped data directory). As in the paper's
        // AppendEntries rule 5 (commit = min(leaderCommit, index of last new entry)), commit
        // no further than the log reaches: knowing less of the commit is always safe, and
        // the leader's next append repairs the log (through a snapshot if needed).
        self.log
            .commit_to(message.commit.min(self.log.last_index()));
        let mut response = Message::new(
            MessageKind::HeartbeatResponse,
            self.id,
            message.from,
            self.term,
        );
        response.read_round = message.read_round;
        self.send(response);
        Ok(())
    }

    fn handle_snapshot(&mut self, message: Message) -> Result<(), Error> {
        let Some(snapshot) = message.snapshot else {
            return Err(Error::InvalidMessage(
                "snapshot message without snapshot".into(),
            ));
        };
        let mut response = Message::new(
            MessageKind::AppendResponse,
            self.id,
            message.from,
            self.term,
        );
        response.index = if self.restore(snapshot)? {
            self.log.last_index()
        } else {
            self.log.committed
        };
        self.send(response);
        Ok(())
    }

    /// Installs a snapshot unless the log already covers it; true if installed.
    fn restore(&mut self, snapshot: Snapshot) -> Result<bool, Error> {
        let index = snapshot.metadata.index;
        if index <= self.log.committed {
            return Ok(false);
        }
        if self.log.matches_term(index, snapshot.metadata.term) {
            // The log already holds the snapshot's last entry: it only learns the commit.
            self.log.commit_to(index);
            return Ok(false);
        }
        snapshot.metadata.membership.validate()?;
        self.membership = snapshot.metadata.membership.clone();
        self.log.restore(snapshot);
        self.reset_progress();
        Ok(true)
    }

    fn step_leader(&mut self, message: Message) -> Result<(), Error> {
        if !self.progress.contains_key(&message.from) {
            return Ok(());
        }
        match message.kind {
            MessageKind::AppendResponse => self.handle_append_response(&message),
            MessageKind::HeartbeatResponse => self.handle_heartbeat_response(&message),
            _ => Ok(()),
        }
    }

    fn handle_append_response(&mut self, message: &Message) -> Result<(), Error> {
        let from = message.from;
        if message.reject {
            let mut next_probe = message.reject_hint_index + 1;
            if message.reject_hint_term > 0 {
                let (index, _) = self
                    .log
                    .find_conflict_by_term(message.reject_hint_index, message.reject_hint_term);
                next_probe = index + 1;
            }
            let Some(progress) = self.progress.get_mut(&from) else {
                return Ok(());
            };
            progress.recent_active = true;
            if progress.maybe_decrease_to(message.index, next_probe) {
                if progress.state == ProgressState::Replicate {
                    progress.become_probe();
                }
                self.maybe_send_append(from, true)?;
            }
            return Ok(());
        }
        let last_index = self.log.last_index();
        let Some(progress) = self.progress.get_mut(&from) else {
            return Ok(());
        };
        progress.recent_active = true;
        let was_paused = progress.is_paused();
        if !progress.maybe_update(message.index) {
            return Ok(());
        }
        match progress.state {
            ProgressState::Probe => progress.become_replicate(),
            ProgressState::Snapshot { pending_index } if progress.matched >= pending_index => {
                progress.become_replicate();
            }
            ProgressState::Replicate => progress.inflights.free_to(message.index),
            ProgressState::Snapshot { .. } => {}
        }
        let caught_up = progress.matched == last_index;
        if self.maybe_commit()? {
            self.broadcast_append()?;
        } else if was_paused {
            self.maybe_send_append(from, false)?;
        }
        // Pipelining: keep sending while the in-flight window has room.
        while self.maybe_send_append(from, false)? {}
        if self.transfer_target == Some(from) && caught_up {
            self.send_timeout_now(from);
        }
        if self.role == Role::Leader && self.is_removed() {
            self.maybe_hand_over()?;
        }
        Ok(())
    }

    fn handle_heartbeat_response(&mut self, message: &Message) -> Result<(), Error> {
        let last_index = self.log.last_index();
        let Some(progress) = self.progress.get_mut(&message.from) else {
            return Ok(());
        };
        progress.recent_active = true;
        progress.probe_sent = false;
        if progress.state == ProgressState::Replicate && progress.inflights.full() {
            progress.inflights.free_first();
        }
        progress.read_round_acked = progress.read_round_acked.max(message.read_round);
        if progress.matched < last_index {
            self.maybe_send_append(message.from, true)?;
        }
        self.release_confirmed_reads();
        Ok(())
    }

    /// Commits the highest index a quorum matches, but only if it is of the current term
    /// (paper 5.4.2, Figure 8): counting replicas of an older term's entry is not enough.
    pub(crate) fn maybe_commit(&mut self) -> Result<bool, Error> {
        let progress = &self.progress;
        let index = joint_index(&self.membership, |id| {
            progress.get(&id).map_or(0, |p| p.matched)
        });
        if index == u64::MAX || index <= self.log.committed {
            return Ok(false);
        }
        if self.log.term(index)? != self.term && !self.bug_commits_old_terms() {
            return Ok(false);
        }
        self.log.commit_to(index);
        Ok(true)
    }

    #[cfg(feature = "bug-injection")]
    fn bug_commits_old_terms(&self) -> bool {
        self.config.injected_bug == Some(crate::InjectedBug::CommitOldTermByCounting)
    }

    #[cfg(not(feature = "bug-injection"))]
    fn bug_commits_old_terms(&self) -> bool {
        false
    }

    #[cfg(feature = "bug-injection")]
    fn bug_campaigns_with_unapplied_membership(&self) -> bool {
        self.config.injected_bug == Some(crate::InjectedBug::CampaignWithUnappliedMembership)
    }

    #[cfg(not(feature = "bug-injection"))]
    fn bug_campaigns_with_unapplied_membership(&self) -> bool {
        false
    }

    #[cfg(feature = "bug-injection")]
    fn bug_grants_votes_without_log_check(&self) -> bool {
        self.config.injected_bug == Some(crate::InjectedBug::VoteWithoutLogCheck)
    }

    #[cfg(not(feature = "bug-injection"))]
    fn bug_grants_votes_without_log_check(&self) -> bool {
        false
    }

    fn broadcast_append(&mut self) -> Result<(), Error> {
        for peer in self.peers() {
            self.maybe_send_append(peer, true)?;
        }
        Ok(())
    }

    /// Sends the next Append (or a snapshot) to `to` if its progress allows; true if sent.
    fn maybe_send_append(&mut self, to: NodeId, send_if_empty: bool) -> Result<bool, Error> {
        let Some(progress) = self.progress.get(&to) else {
            return Ok(false);
        };
        if progress.is_paused() {
            return Ok(false);
        }
        let next = progress.next;
        let last_index = self.log.last_index();
        let previous_term = self.log.term(next - 1);
        let high = (last_index + 1).min(next + self.config.message_entries_max as u64);
        let entries = self.log.entries(next, high, self.config.message_bytes_max);
        let (previous_term, entries) = match (previous_term, entries) {
            (Ok(term), Ok(entries)) => (term, entries),
            (Err(Error::Storage(StorageError::Compacted { .. })), _)
            | (_, Err(Error::Storage(StorageError::Compacted { .. }))) => {
                return self.send_snapshot(to);
            }
            (Err(error), _) | (_, Err(error)) => return Err(error),
        };
        if entries.is_empty() && !send_if_empty {
            return Ok(false);
        }
        let mut append = Message::new(MessageKind::Append, self.id, to, self.term);
        append.index = next - 1;
        append.log_term = previous_term;
        append.commit = self.log.committed;
        let last_sent = entries.last().map(|entry| entry.index);
        let bytes: u64 = entries.iter().map(Entry::size_bytes).sum();
        append.entries = entries;
        self.send(append);
        if let Some(progress) = self.progress.get_mut(&to) {
            match (progress.state, last_sent) {
                (ProgressState::Replicate, Some(last)) => {
                    progress.next = last + 1;
                    progress.inflights.add(last, bytes);
                }
                (ProgressState::Probe, _) => progress.probe_sent = true,
                _ => {}
            }
        }
        Ok(true)
    }

    fn send_snapshot(&mut self, to: NodeId) -> Result<bool, Error> {
        let snapshot = match self.log.snapshot() {
            Ok(snapshot) => snapshot,
            Err(Error::Storage(StorageError::SnapshotTemporarilyUnavailable)) => return Ok(false),
            Err(error) => return Err(error),
        };
        let pending_index = snapshot.metadata.index;
        let mut message = Message::new(MessageKind::Snapshot, self.id, to, self.term);
        message.snapshot = Some(snapshot);
        self.send(message);
        if let Some(progress) = self.progress.get_mut(&to) {
            progress.become_snapshot(pending_index);
        }
        Ok(true)
    }

    fn send_timeout_now(&mut self, to: NodeId) {
        self.lease_start_tick = None;
        self.lease_void = true;
        self.send(Message::new(
            MessageKind::TimeoutNow,
            self.id,
            to,
            self.term,
        ));
    }

    /// Starts a heartbeat round; every read queued so far is confirmed by it.
    fn broadcast_heartbeat(&mut self) {
        self.read_round += 1;
        let round = self.read_round;
        // A round that started a lease length ago can no longer start a valid lease; without
        // check-quorum a partitioned leader would otherwise keep every round forever.
        let lease_ticks = self.config.election_timeout_ticks - self.config.lease_drift_ticks;
        while let Some((_, start)) = self.round_start_ticks.front().copied() {
            if self.ticks - start < lease_ticks {
                break;
            }
            self.round_start_ticks.pop_front();
        }
        self.round_start_ticks.push_back((round, self.ticks));
        if self.committed_in_current_term() {
            let committed = self.log.committed;
            for read in self.pending_reads.iter_mut().filter(|read| read.round == 0) {
                read.round = round;
                read.index = committed;
            }
            self.read_round_requested = false;
        }
        for peer in self.peers() {
            let matched = self.progress.get(&peer).map_or(0, |p| p.matched);
            let mut heartbeat = Message::new(MessageKind::Heartbeat, self.id, peer, self.term);
            heartbeat.commit = matched.min(self.log.committed);
            heartbeat.read_round = round;
            self.send(heartbeat);
        }
        if let Some(own) = self.progress.get_mut(&self.id) {
            own.read_round_acked = round;
        }
        self.release_confirmed_reads();
    }

    fn committed_in_current_term(&self) -> bool {
        self.log.term(self.log.committed).ok() == Some(self.term)
    }

    fn release_confirmed_reads(&mut self) {
        let progress = &self.progress;
        let confirmed = joint_index(&self.membership, |id| {
            progress.get(&id).map_or(0, |p| p.read_round_acked)
        });
        while let Some((round, tick)) = self.round_start_ticks.front().copied() {
            if round > confirmed {
                break;
            }
            self.round_start_ticks.pop_front();
            self.lease_start_tick = Some(tick);
        }
        while let Some(read) = self.pending_reads.front().copied() {
            if read.round == 0 || read.round > confirmed {
                break;
            }
            self.pending_reads.pop_front();
            self.read_states.push(ReadState {
                request_id: read.request_id,
                index: read.index,
            });
        }
    }

    fn lease_valid(&self) -> bool {
        let lease_ticks = self.config.election_timeout_ticks - self.config.lease_drift_ticks;
        !self.lease_void
            && self
                .lease_start_tick
                .is_some_and(|start| self.ticks - start < lease_ticks)
    }

    pub(crate) fn read_index(&mut self, request_id: u64) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        let lease = self.config.read_mode == ReadMode::LeaseBased && self.lease_valid();
        if lease && self.committed_in_current_term() {
            self.read_states.push(ReadState {
                request_id,
                index: self.log.committed,
            });
            return Ok(());
        }
        let reads_max = self.config.pending_reads_max;
        if self.pending_reads.len() >= reads_max {
            return Err(Error::PendingReadsExceeded { reads_max });
        }
        self.pending_reads.push_back(PendingRead {
            request_id,
            round: 0,
            index: 0,
        });
        self.read_round_requested = true;
        Ok(())
    }

    /// Starts the read round requested since the last Ready (one round per Ready batch).
    pub(crate) fn start_requested_read_round(&mut self) {
        if self.role == Role::Leader
            && self.read_round_requested
            && self.committed_in_current_term()
        {
            self.broadcast_heartbeat();
        }
    }

    pub(crate) fn read_round_due(&self) -> bool {
        self.role == Role::Leader && self.read_round_requested && self.committed_in_current_term()
    }

    fn check_can_propose(&self) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        if self.transfer_target.is_some() || self.is_removed() {
            return Err(Error::TransferInProgress);
        }
        Ok(())
    }

    pub(crate) fn propose(&mut self, payloads: Vec<Bytes>) -> Result<ProposalReceipt, Error> {
        self.check_can_propose()?;
        let entries_max = self.config.proposal_entries_max;
        if payloads.is_empty() || payloads.len() > entries_max {
            return Err(Error::BatchSize {
                entries: payloads.len(),
                entries_max,
            });
        }
        let bytes: u64 = payloads
            .iter()
            .map(|payload| payload.len() as u64 + crate::types::ENTRY_OVERHEAD_BYTES)
            .sum();
        let bytes_max = self.config.uncommitted_bytes_max;
        if self.uncommitted_bytes > 0 && self.uncommitted_bytes + bytes > bytes_max {
            return Err(Error::UncommittedBytesExceeded { bytes_max });
        }
        let batch: Vec<(EntryKind, Bytes)> = payloads
            .into_iter()
            .map(|payload| (EntryKind::Normal, payload))
            .collect();
        let receipt = self.append_entries(&batch);
        self.uncommitted_bytes += bytes;
        self.broadcast_append()?;
        Ok(receipt)
    }

    fn append_entries(&mut self, batch: &[(EntryKind, Bytes)]) -> ProposalReceipt {
        let first_index = self.log.last_index() + 1;
        let entries: Vec<Entry> = batch
            .iter()
            .enumerate()
            .map(|(offset, (kind, payload))| Entry {
                index: first_index + offset as u64,
                term: self.term,
                kind: *kind,
                payload: payload.clone(),
            })
            .collect();
        self.log.append(&entries);
        ProposalReceipt {
            first_index,
            last_index: self.log.last_index(),
            term: self.term,
        }
    }

    pub(crate) fn propose_membership(
        &mut self,
        changes: &[MembershipChange],
    ) -> Result<ProposalReceipt, Error> {
        self.check_can_propose()?;
        if self.pending_membership_index > self.log.applied || self.membership.is_joint() {
            return Err(Error::MembershipChangePending);
        }
        let mut next = self.membership.clone();
        for change in changes {
            match *change {
                MembershipChange::AddVoter(id) => {
                    next.learners.remove(&id);
                    next.voters.insert(id);
                }
                MembershipChange::AddLearner(id) => {
                    if next.voters.contains(&id) {
                        return Err(Error::InvalidMembershipChange(format!(
                            "{id} is a voter; remove it before adding it as a learner"
                        )));
                    }
                    next.learners.insert(id);
                }
                MembershipChange::Remove(id) => {
                    next.voters.remove(&id);
                    next.learners.remove(&id);
                }
            }
        }
        // Voter changes go through joint consensus (paper section 6): the entry holds the
        // joint configuration, and the leader proposes the final one once it applies it.
        if next.voters != self.membership.voters {
            next.voters_outgoing = self.membership.voters.clone();
        }
        next.validate()?;
        if next == self.membership {
            return Err(Error::InvalidMembershipChange("no change".into()));
        }
        let receipt = self.append_entries(&[(EntryKind::Membership, next.encode())]);
        self.pending_membership_index = receipt.last_index;
        self.broadcast_append()?;
        Ok(receipt)
    }

    /// Makes an applied membership entry take effect.
    pub(crate) fn apply_membership(&mut self, membership: Membership) -> Result<(), Error> {
        membership.validate()?;
        self.membership = membership;
        let next = self.log.last_index() + 1;
        let (messages_max, bytes_max) = (
            self.config.inflight_messages_max,
            self.config.inflight_bytes_max,
        );
        let members = self.membership.members();
        for id in &members {
            self.progress
                .entry(*id)
                .or_insert_with(|| Progress::new(next, messages_max, bytes_max));
        }
        let own = self.id;
        self.progress
            .retain(|id, _| members.contains(id) || *id == own);
        if self.role != Role::Leader {
            return Ok(());
        }
        if self
            .transfer_target
            .is_some_and(|target| !self.membership.voters.contains(&target))
        {
            self.transfer_target = None;
        }
        // The caller commits and replicates (new members included) after the whole batch.
        if self.is_removed() {
            self.maybe_hand_over()?;
        }
        Ok(())
    }

    /// True if the membership in force (non-joint) no longer has this node as a voter.
    fn is_removed(&self) -> bool {
        !self.membership.voters.is_empty()
            && !self.membership.is_joint()
            && !self.membership.is_voter(self.id)
    }

    /// Leaves joint consensus automatically (etcd's auto-leave): a leader that applied
    /// everything up to its last membership change and finds the configuration joint, with
    /// no leave entry already in `(applied, last]`, appends the leave entry. This covers a
    /// leader elected after the joint entry was applied elsewhere, whose predecessor's
    /// leave entry was lost, without ever appending a second leave entry.
    /// Returns true if it appended; the caller replicates.
    fn maybe_leave_joint(&mut self) -> Result<bool, Error> {
        if self.role != Role::Leader
            || !self.membership.is_joint()
            || self.pending_membership_index > self.log.applied
        {
            return Ok(false);
        }
        if self.membership_entry_between(self.log.applied, self.log.last_index())? {
            return Ok(false);
        }
        let leave = Membership {
            voters: self.membership.voters.clone(),
            voters_outgoing: Default::default(),
            learners: self.membership.learners.clone(),
        };
        let receipt = self.append_entries(&[(EntryKind::Membership, leave.encode())]);
        self.pending_membership_index = receipt.last_index;
        Ok(true)
    }

    /// Runs the forced campaign of a TimeoutNow that arrived before a committed membership
    /// entry was applied, once everything committed is applied, if still in that term.
    fn maybe_run_deferred_transfer(&mut self) -> Result<(), Error> {
        if self.deferred_transfer_term != Some(self.term)
            || self.role != Role::Follower
            || self.log.applied < self.log.committed
        {
            return Ok(());
        }
        self.deferred_transfer_term = None;
        self.campaign(CampaignKind::Transfer)
    }

    /// A removed leader hands over to a voter that holds its whole log, then steps down.
    /// Until one does, it keeps leading (accepting no proposals): the new voters may not yet
    /// know that their configuration committed, and would then still need the removed
    /// voters' votes, which go only to a log as up to date as theirs.
    fn maybe_hand_over(&mut self) -> Result<(), Error> {
        let last_index = self.log.last_index();
        let successor = self
            .membership
            .voters
            .iter()
            .filter_map(|id| self.progress.get(id).map(|p| (p.matched, *id)))
            .max();
        match successor {
            Some((matched, id)) if matched == last_index => {
                self.send_timeout_now(id);
                self.become_follower(self.term, None);
            }
            Some((_, id)) => {
                self.maybe_send_append(id, true)?;
            }
            None => self.become_follower(self.term, None),
        }
        Ok(())
    }

    pub(crate) fn transfer_leadership(&mut self, target: NodeId) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        if target == self.id || !self.membership.voters.contains(&target) {
            return Err(Error::InvalidTransferTarget(target));
        }
        if self.transfer_target == Some(target) {
            return Ok(());
        }
        self.transfer_target = Some(target);
        // The transfer must finish within an election timeout (thesis 3.10).
        self.election_elapsed_ticks = 0;
        let matched = self.progress.get(&target).map_or(0, |p| p.matched);
        if matched == self.log.last_index() {
            self.send_timeout_now(target);
        } else {
            self.maybe_send_append(target, true)?;
        }
        Ok(())
    }

    /// Called once the application made a Ready durable: the leader's own log now counts.
    pub(crate) fn on_persisted(&mut self) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Ok(());
        }
        let persisted = self.log.persisted_last_index();
        if let Some(own) = self.progress.get_mut(&self.id) {
            own.maybe_update(persisted);
        }
        if self.maybe_commit()? {
            self.broadcast_append()?;
        }
        Ok(())
    }

    /// Committed entries for the next Ready; membership entries take effect here.
    pub(crate) fn take_committed_entries(&mut self) -> Result<Vec<Entry>, Error> {
        let entries = self
            .log
            .next_committed_entries(self.config.committed_entries_bytes_max)?;
        let Some(last) = entries.last() else {
            return Ok(entries);
        };
        self.log.applied = last.index;
        let mut membership_applied = false;
        for entry in &entries {
            if self.role == Role::Leader && entry.index > self.term_start_index {
                self.uncommitted_bytes = self.uncommitted_bytes.saturating_sub(entry.size_bytes());
            }
            if entry.kind == EntryKind::Membership {
                let membership = Membership::decode(&entry.payload)?;
                self.apply_membership(membership)?;
                membership_applied = true;
            }
        }
        let left_joint = self.maybe_leave_joint()?;
        if self.role == Role::Leader && (membership_applied || left_joint) {
            self.maybe_commit()?;
            self.broadcast_append()?;
        }
        self.maybe_run_deferred_transfer()?;
        Ok(entries)
    }

    pub(crate) fn has_committed_entries(&self) -> bool {
        self.log.committed > self.log.applied
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        self.log.validate()?;
        if !self.membership.voters.is_empty() {
            self.membership.validate()?;
        }
        let fail = |what: String| Err(Error::Invariant(what));
        if self.term < self.log.last_term()? {
            return fail(format!("term {} below last log term", self.term));
        }
        if self.role == Role::Leader {
            if self.leader != Some(self.id) || self.vote != Some(self.id) {
                return fail("leader without its own vote or leadership".into());
            }
            let last_index = self.log.last_index();
            for id in self.membership.members() {
                let Some(progress) = self.progress.get(&id) else {
                    return fail(format!("leader has no progress for member {id}"));
                };
                if progress.matched >= progress.next || progress.matched > last_index {
                    return fail(format!("progress of {id} inconsistent: {progress:?}"));
                }
                if progress.inflights.count() > self.config.inflight_messages_max {
                    return fail(format!("inflight bound broken for {id}"));
                }
            }
            if self.pending_reads.len() > self.config.pending_reads_max {
                return fail("pending reads bound broken".into());
            }
        }
        if self.role == Role::Candidate && self.vote != Some(self.id) {
            return fail("candidate that did not vote for itself".into());
        }
        Ok(())
    }
}
