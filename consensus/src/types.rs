//! The plain data types that cross the core's boundary: log entries, the durable hard state,
//! membership, snapshots and messages. They are plain structs so that the transport can map
//! them onto its wire format field by field.

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::Error;

/// The identity of a node in the cluster. Zero is not a valid id.
pub type NodeId = u64;

/// What an entry means to the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A command for the state machines; the core never looks inside the payload.
    Normal,
    /// The empty entry a new leader appends so that it can commit entries of its term.
    Noop,
    /// A membership change; the payload is a [`Membership`] encoded with
    /// [`Membership::encode`], holding the whole configuration that applies once the entry is
    /// applied.
    Membership,
}

/// One entry of the replicated log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The position in the log, starting at 1.
    pub index: u64,
    /// The term of the leader that created the entry.
    pub term: u64,
    /// How the core treats the entry.
    pub kind: EntryKind,
    /// The opaque command (or the encoded membership).
    pub payload: Bytes,
}

/// A fixed per-entry overhead counted against byte budgets, so that empty entries still cost
/// something and batches of them stay bounded.
pub const ENTRY_OVERHEAD_BYTES: u64 = 24;

impl Entry {
    /// The bytes this entry counts for against message and batch budgets.
    pub fn size_bytes(&self) -> u64 {
        self.payload.len() as u64 + ENTRY_OVERHEAD_BYTES
    }
}

/// The state that must be durable before messages that depend on it are sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: u64,
    /// The candidate this node voted for in `term`, if any.
    pub vote: Option<NodeId>,
    /// The highest index known to be committed. A leader writing asynchronously may know a
    /// commit index past its own durable log (the followers' copies made the quorum);
    /// storage must not let a restarted node start with a commit index past its last index.
    /// It should be persisted, but may be persisted lazily: safety does not depend on it.
    /// After a restart the node knows what was committed only from this field; knowing
    /// less only delays applying (the leader tells it again), and weakens the campaign
    /// guard (no campaign while a membership entry lies in `(applied, commit]`) to the
    /// entries it knows are committed, the limitation in the crate README.
    pub commit: u64,
}

/// The cluster configuration: who votes and who only receives the log.
///
/// While `voters_outgoing` is non-empty the cluster is in joint consensus: elections and
/// commitment need a majority of `voters` and a majority of `voters_outgoing`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    /// The voters of the (new) configuration.
    pub voters: BTreeSet<NodeId>,
    /// The voters of the old configuration during joint consensus; empty otherwise.
    pub voters_outgoing: BTreeSet<NodeId>,
    /// Nodes that receive the log but neither vote nor count for commitment.
    pub learners: BTreeSet<NodeId>,
}

impl Membership {
    /// A simple (non-joint) configuration of the given voters and no learners.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        Membership {
            voters: voters.into_iter().collect(),
            ..Membership::default()
        }
    }

    /// True while the cluster is in joint consensus.
    pub fn is_joint(&self) -> bool {
        !self.voters_outgoing.is_empty()
    }

    /// True if `id` votes in either half of the configuration.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.voters_outgoing.contains(&id)
    }

    /// True if `id` is a voter or a learner.
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.learners.contains(&id)
    }

    /// Every node that receives the log: voters of both halves and learners, in id order.
    pub fn members(&self) -> BTreeSet<NodeId> {
        let mut members = self.voters.clone();
        members.extend(self.voters_outgoing.iter().copied());
        members.extend(self.learners.iter().copied());
        members
    }

    /// Checks the structural rules: some voter exists, no id zero, and no learner also votes.
    pub fn validate(&self) -> Result<(), Error> {
        if self.voters.is_empty() {
            return Err(Error::InvalidMembershipChange("no voters".into()));
        }
        if self.members().contains(&0) {
            return Err(Error::InvalidMembershipChange("node id 0".into()));
        }
        if let Some(id) = self.learners.iter().find(|id| self.is_voter(**id)) {
            return Err(Error::InvalidMembershipChange(format!(
                "{id} is voter and learner"
            )));
        }
        Ok(())
    }

    /// Encodes as three length-prefixed lists of little-endian u64 ids.
    pub fn encode(&self) -> Bytes {
        let count = self.voters.len() + self.voters_outgoing.len() + self.learners.len();
        let mut buffer = BytesMut::with_capacity(12 + 8 * count);
        for set in [&self.voters, &self.voters_outgoing, &self.learners] {
            buffer.put_u32_le(set.len() as u32);
            for id in set {
                buffer.put_u64_le(*id);
            }
        }
        buffer.freeze()
    }

    /// Decodes what [`Membership::encode`] produced.
    pub fn decode(mut bytes: &[u8]) -> Result<Membership, Error> {
        let mut sets: [BTreeSet<NodeId>; 3] = Default::default();
        for set in &mut sets {
            if bytes.remaining() < 4 {
                return Err(Error::InvalidMembershipChange(
                    "truncated membership".into(),
                ));
            }
            let count = bytes.get_u32_le() as usize;
            if bytes.remaining() < count * 8 {
                return Err(Error::InvalidMembershipChange(
                    "truncated membership".into(),
                ));
            }
            for _ in 0..count {
                set.insert(bytes.get_u64_le());
            }
        }
        if bytes.has_remaining() {
            return Err(Error::InvalidMembershipChange("trailing bytes".into()));
        }
        let [voters, voters_outgoing, learners] = sets;
        Ok(Membership {
            voters,
            voters_outgoing,
            learners,
        })
    }
}

/// One step of a membership change requested through `propose_membership`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    /// Make the node a voter (promoting it if it is a learner).
    AddVoter(NodeId),
    /// Add the node as a learner. A current voter cannot be demoted this way.
    AddLearner(NodeId),
    /// Remove the node, whether voter or learner.
    Remove(NodeId),
}

/// What a snapshot covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotMetadata {
    /// The last log index the snapshot includes.
    pub index: u64,
    /// The term of the entry at `index`.
    pub term: u64,
    /// The membership in force after applying every entry up to `index`.
    pub membership: Membership,
}

/// A snapshot of the state machines at `metadata.index`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// What the snapshot covers.
    pub metadata: SnapshotMetadata,
    /// The state machines' serialized state; opaque to the core.
    pub data: Bytes,
}

/// The kind of a Raft message; which fields of [`Message`] are meaningful depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// Asks whether the receiver would vote for the sender in `term` (Raft thesis 9.6),
    /// without anyone changing term. Uses `index`/`log_term` as the sender's last entry.
    PreVote,
    /// Answers a pre-vote; `reject` says whether it was refused.
    PreVoteResponse,
    /// RequestVote (paper 5.2). Uses `index`/`log_term` as the sender's last entry and
    /// `forced` when a leadership transfer asked for the election.
    Vote,
    /// Answers a vote; `reject` says whether it was refused.
    VoteResponse,
    /// AppendEntries (paper 5.3): `index`/`log_term` name the entry before `entries`.
    Append,
    /// Answers an append: on success `index` is the last index the follower now matches; on
    /// rejection `index` is the rejected `index` and the hints name where to retry.
    AppendResponse,
    /// Leader liveness and commit propagation; `read_round` identifies the read round.
    Heartbeat,
    /// Answers a heartbeat, echoing `read_round`.
    HeartbeatResponse,
    /// InstallSnapshot: `snapshot` carries the whole snapshot.
    Snapshot,
    /// Tells the receiver to start an election at once (leadership transfer).
    TimeoutNow,
}

/// A message between two cores. Fields not used by `kind` are zero, empty or `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// What the message asks or answers.
    pub kind: MessageKind,
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The sender's term (for pre-votes, the term it would campaign in).
    pub term: u64,
    /// For Append: the index of the entry before `entries`. For Vote/PreVote: the sender's
    /// last index. For AppendResponse: see [`MessageKind::AppendResponse`].
    pub index: u64,
    /// The term of the entry at `index` (Append, Vote, PreVote).
    pub log_term: u64,
    /// Entries to append (Append only).
    pub entries: Vec<Entry>,
    /// The sender's commit index (Append, Heartbeat). For a Heartbeat it is capped at what
    /// the receiver is known to match, so a follower never commits entries it may not have;
    /// the receiver also commits no further than its own last index (a follower that lost
    /// its log holds less than the leader believes).
    pub commit: u64,
    /// True if the request was refused (responses only).
    pub reject: bool,
    /// On a rejected append: the follower's best guess of the last index that may match.
    pub reject_hint_index: u64,
    /// On a rejected append: the term of the follower's entry at `reject_hint_index`.
    pub reject_hint_term: u64,
    /// The snapshot to install (Snapshot only).
    pub snapshot: Option<Snapshot>,
    /// The read round a heartbeat belongs to, echoed by the response; zero if none.
    pub read_round: u64,
    /// On Vote/PreVote: the election was asked for by a leadership transfer, so receivers
    /// must not ignore it because they recently heard from a leader.
    pub forced: bool,
}

impl Message {
    /// A message of `kind` with every optional field empty.
    pub fn new(kind: MessageKind, from: NodeId, to: NodeId, term: u64) -> Message {
        Message {
            kind,
            from,
            to,
            term,
            index: 0,
            log_term: 0,
            entries: Vec::new(),
            commit: 0,
            reject: false,
            reject_hint_index: 0,
            reject_hint_term: 0,
            snapshot: None,
            read_round: 0,
            forced: false,
        }
    }
}

/// A node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asks for pre-votes before starting a real election.
    PreCandidate,
    /// Asks for votes in a new term.
    Candidate,
    /// Replicates its log to the others.
    Leader,
}

/// Volatile state the application may want to observe (not persisted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftState {
    /// The leader this node knows of in its current term.
    pub leader: Option<NodeId>,
    /// This node's role.
    pub role: Role,
}

/// A confirmed read: the state machine may serve the read identified by `request_id` once
/// it has applied at least `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadState {
    /// The identifier the application passed to `read_index`.
    pub request_id: u64,
    /// The commit index at the time leadership was confirmed for the read.
    pub index: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_round_trips_and_rejects_truncation() {
        let membership = Membership {
            voters: [1, 2, 3].into(),
            voters_outgoing: [1, 2].into(),
            learners: [9].into(),
        };
        let bytes = membership.encode();
        assert_eq!(Membership::decode(&bytes), Ok(membership));
        assert!(Membership::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn membership_validate_rejects_voter_learner_overlap() {
        let membership = Membership {
            voters: [1, 2].into(),
            voters_outgoing: BTreeSet::new(),
            learners: [2].into(),
        };
        assert!(membership.validate().is_err());
        assert!(Membership::default().validate().is_err());
        assert_eq!(Membership::with_voters([1]).validate(), Ok(()));
    }
}
