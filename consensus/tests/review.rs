//! Regression tests for the safety and liveness findings of the 2026-11-25 review of the core.
//! Each test is named after the finding it covers and fails on the code before the fix.

mod common;

use bytes::Bytes;
use common::{Cluster, quiet};
use conclave_consensus::{
    Config, Entry, EntryKind, Error, HardState, Membership, MembershipChange, MemoryStorage,
    MessageKind, ReadMode, Role,
};

fn plain(config: &mut Config) {
    quiet(config);
    config.pre_vote = false;
}

/// For clusters restarted from prepared storage: without check-quorum, restarted nodes vote
/// at once instead of waiting out the lease they may have granted before the crash.
fn restarted(config: &mut Config) {
    plain(config);
    config.check_quorum = false;
}

/// Applies at most one small entry per Ready, so membership entries can sit committed but
/// not yet applied.
fn small_pages(config: &mut Config) {
    restarted(config);
    config.committed_entries_bytes_max = 1;
}

fn entry(index: u64, term: u64, kind: EntryKind, payload: Bytes) -> Entry {
    Entry {
        index,
        term,
        kind,
        payload,
    }
}

/// A storage as a crashed leader of term 1 left it: `entries` in the log, `commit` durable.
fn storage_with(membership: &Membership, entries: &[Entry], commit: u64) -> MemoryStorage {
    let mut storage = MemoryStorage::new(membership.clone());
    storage.append(entries);
    storage.set_hard_state(HardState {
        term: 1,
        vote: Some(1),
        commit,
    });
    storage
}

/// Voters {1,2,3}; the joint entry removes 1: voters {2,3}, outgoing {1,2,3}.
fn removal_of_one() -> (Membership, Membership, Membership) {
    let old = Membership::with_voters([1, 2, 3]);
    let joint = Membership {
        voters: [2, 3].into(),
        voters_outgoing: [1, 2, 3].into(),
        learners: Default::default(),
    };
    let leave = Membership::with_voters([2, 3]);
    (old, joint, leave)
}

/// Item 3: a single voter wins inside `campaign` before its new term is durable; its appends
/// to a learner must wait until the term is persisted, or a crash before the write lands lets
/// it win the same term again and send a different entry at the same (index, term).
#[test]
fn review_3_single_voter_leader_sends_nothing_before_its_term_is_durable() {
    let membership = Membership {
        voters: [1].into(),
        voters_outgoing: Default::default(),
        learners: [2].into(),
    };
    let mut config = Config::new(1);
    plain(&mut config);
    let mut node =
        conclave_consensus::RawNode::new(config, MemoryStorage::new(membership)).expect("node");
    node.campaign().expect("campaign");
    assert_eq!(node.status().soft_state.role, Role::Leader);
    node.propose(vec![Bytes::from_static(b"a")])
        .expect("propose");
    let ready = node.ready().expect("ready");
    assert_eq!(ready.hard_state.map(|h| h.term), Some(1));
    assert!(
        ready.messages.is_empty(),
        "sent before term 1 is durable: {:?}",
        ready.messages
    );
    assert!(
        ready
            .persisted_messages
            .iter()
            .any(|m| m.kind == MessageKind::Append && m.to == 2),
        "the appends go out after persisting"
    );
    node.storage_mut().append(&ready.entries);
    if let Some(hard_state) = ready.hard_state {
        node.storage_mut().set_hard_state(hard_state);
    }
    node.advance(ready).expect("advance");
    // Once the term is durable, the leader's own traffic leaves at once again.
    node.tick().expect("tick");
    let ready = node.ready().expect("ready");
    assert!(
        ready
            .messages
            .iter()
            .any(|m| m.kind == MessageKind::Heartbeat && m.to == 2)
    );
}

/// Item 1: a node that knows a membership entry is committed but has not applied it yet must
/// not campaign under the configuration it applied, which may already be out of date.
#[test]
fn review_1_no_campaign_while_a_committed_membership_entry_is_unapplied() {
    let (old, joint, _) = removal_of_one();
    let mut log = vec![entry(1, 1, EntryKind::Noop, Bytes::new())];
    for index in 2..5 {
        log.push(entry(index, 1, EntryKind::Normal, Bytes::from_static(b"x")));
    }
    log.push(entry(5, 1, EntryKind::Membership, joint.encode()));
    let mut cluster = Cluster::new(&[], small_pages);
    for id in [2, 3] {
        cluster.add_node(id, storage_with(&old, &log, 5));
    }
    // Apply pages of one entry: the membership entry at 5 stays unapplied for a few batches.
    for _ in 0..4 {
        let ready = cluster.take_ready(2);
        cluster.carry_out(2, ready);
        cluster.node(2).campaign().expect("campaign");
        assert_eq!(cluster.role(2), Role::Follower, "campaigned under {old:?}");
        cluster.tick(2, 40);
        assert_eq!(cluster.role(2), Role::Follower, "timer campaigned");
    }
    let ready = cluster.take_ready(2);
    cluster.carry_out(2, ready);
    assert_eq!(cluster.nodes[&2].status().membership, joint);
    cluster.campaign(2);
    assert_eq!(cluster.role(2), Role::Leader);
}

/// Items 5 and 6: a leader that finds the cluster joint with no leave entry pending proposes
/// the leave itself, even if it applied the joint entry as a follower.
#[test]
fn review_5_new_leader_leaves_a_joint_configuration_it_applied_as_follower() {
    let (old, joint, leave) = removal_of_one();
    let log = [
        entry(1, 1, EntryKind::Noop, Bytes::new()),
        entry(2, 1, EntryKind::Membership, joint.encode()),
    ];
    let mut cluster = Cluster::new(&[], restarted);
    for id in [2, 3] {
        cluster.add_node(id, storage_with(&old, &log, 2));
    }
    cluster.process();
    assert_eq!(cluster.nodes[&2].status().membership, joint);
    cluster.campaign(2);
    assert_eq!(cluster.role(2), Role::Leader);
    cluster.stabilize();
    assert_eq!(cluster.nodes[&2].status().membership, leave);
    assert_eq!(cluster.nodes[&3].status().membership, leave);
    cluster
        .node(2)
        .propose_membership(&[MembershipChange::AddLearner(1)])
        .expect("the next change is possible");
}

/// Item 6: the old leader's leave entry sits uncommitted in the new leader's log; applying the
/// joint entry must not append a second leave.
#[test]
fn review_6_new_leader_does_not_duplicate_a_pending_leave_entry() {
    let (old, joint, leave) = removal_of_one();
    let log = [
        entry(1, 1, EntryKind::Noop, Bytes::new()),
        entry(2, 1, EntryKind::Membership, joint.encode()),
        entry(3, 1, EntryKind::Membership, leave.encode()),
    ];
    let mut cluster = Cluster::new(&[], small_pages);
    for id in [2, 3] {
        cluster.add_node(id, storage_with(&old, &log, 1));
    }
    cluster.campaign(2);
    assert_eq!(cluster.role(2), Role::Leader);
    cluster.stabilize();
    let leaves = cluster.nodes[&2]
        .storage()
        .all_entries()
        .iter()
        .filter(|e| e.kind == EntryKind::Membership)
        .count();
    assert_eq!(leaves, 2, "joint and one leave");
    assert_eq!(cluster.nodes[&2].status().membership, leave);
}

fn lease(config: &mut Config) {
    quiet(config);
    config.read_mode = ReadMode::LeaseBased;
}

/// Item 2: once a leader sent TimeoutNow, the target may win a forced election at once (forced
/// votes ignore leases), so the old leader's lease is void for the rest of its term.
#[test]
fn review_2_no_lease_reads_after_timeout_now() {
    let mut cluster = Cluster::new(&[1, 2, 3], lease);
    cluster.campaign(1);
    cluster.tick(1, 1);
    cluster.stabilize();
    cluster.node(1).read_index(7).expect("read");
    let ready = cluster.take_ready(1);
    assert_eq!(ready.read_states.len(), 1, "the lease holds");
    cluster.carry_out(1, ready);
    cluster.node(1).transfer_leadership(2).expect("transfer");
    let ready = cluster.take_ready(1);
    assert!(
        ready
            .messages
            .iter()
            .any(|m| m.kind == MessageKind::TimeoutNow)
    );
    cluster.carry_out(1, ready);
    // TimeoutNow is lost. The read round for read 8 is acknowledged, which used to renew
    // the lease; a delayed TimeoutNow may still start a forced election, so it must not.
    cluster.queue.retain(|m| m.kind != MessageKind::TimeoutNow);
    cluster.node(1).read_index(8).expect("read");
    let ready = cluster.take_ready(1);
    assert!(ready.read_states.is_empty(), "served from a void lease");
    cluster.carry_out(1, ready);
    cluster.stabilize();
    assert_eq!(
        cluster.read_states[&1].last().map(|r| r.request_id),
        Some(8)
    );
    cluster.node(1).read_index(9).expect("read");
    let ready = cluster.take_ready(1);
    assert!(ready.read_states.is_empty(), "served from a renewed lease");
    cluster.carry_out(1, ready);
    cluster.stabilize();
    assert_eq!(
        cluster.read_states[&1].last().map(|r| r.request_id),
        Some(9)
    );
}

/// Item 4: tick phase alone needs one tick of margin, so a zero drift allowance is refused.
#[test]
fn review_4_lease_drift_ticks_must_be_at_least_one() {
    let mut config = Config::new(1);
    config.lease_drift_ticks = 0;
    assert!(matches!(
        config.validate(),
        Err(Error::Config {
            field: "lease_drift_ticks",
            ..
        })
    ));
    config.lease_drift_ticks = 1;
    assert_eq!(config.validate(), Ok(()));
}

/// Item 7: a crash between persisting entries and the hard state leaves the stored term below
/// the last entry's term. That is a legal state: the node resumes in the entry's term without
/// a vote (it cast none there, or that vote's term would have been persisted first).
#[test]
fn review_7_restart_after_entries_persisted_without_their_hard_state() {
    let membership = Membership::with_voters([1, 2, 3]);
    let log = [
        entry(1, 1, EntryKind::Noop, Bytes::new()),
        entry(2, 2, EntryKind::Noop, Bytes::new()),
    ];
    let storage = storage_with(&membership, &log, 1);
    let mut config = Config::new(2);
    plain(&mut config);
    let node = conclave_consensus::RawNode::new(config, storage).expect("restart");
    assert_eq!(node.validate(), Ok(()));
    let hard_state = node.status().hard_state;
    assert_eq!((hard_state.term, hard_state.vote), (2, None));
}

/// Item 8: without check-quorum a partitioned leader never steps down; its queue of reads
/// waiting for a round is bounded by `pending_reads_max`.
#[test]
fn review_8_pending_reads_are_bounded_on_a_partitioned_leader() {
    fn bounded(config: &mut Config) {
        plain(config);
        config.check_quorum = false;
        config.pending_reads_max = 3;
    }
    let mut cluster = Cluster::new(&[1, 2, 3], bounded);
    cluster.campaign(1);
    cluster.isolate(1);
    for request_id in 0..3 {
        cluster.node(1).read_index(request_id).expect("read");
        cluster.tick(1, 5);
        cluster.stabilize();
    }
    assert_eq!(cluster.role(1), Role::Leader);
    assert_eq!(
        cluster.node(1).read_index(3),
        Err(Error::PendingReadsExceeded { reads_max: 3 })
    );
    assert!(cluster.read_states[&1].is_empty());
}

/// Found by the simulator after the review: the removed voter 1 applied the leave entry and
/// holds a longer log than the only new voter 2, which still runs the joint configuration
/// and needs 1's vote (refused: 2's log is behind). A removed node therefore campaigns
/// (through pre-vote) under the configuration it applied, wins with 2's vote, catches 2 up
/// and hands over.
#[test]
fn removed_node_with_the_longer_log_finishes_the_hand_over() {
    let old = Membership::with_voters([1, 2]);
    let joint = Membership {
        voters: [2].into(),
        voters_outgoing: [1].into(),
        learners: Default::default(),
    };
    let leave = Membership::with_voters([2]);
    let log = [
        entry(1, 1, EntryKind::Noop, Bytes::new()),
        entry(2, 1, EntryKind::Membership, joint.encode()),
        entry(3, 1, EntryKind::Membership, leave.encode()),
        entry(4, 1, EntryKind::Normal, Bytes::from_static(b"x")),
    ];
    let mut cluster = Cluster::new(&[], restarted);
    cluster.add_node(1, storage_with(&old, &log, 3));
    cluster.add_node(2, storage_with(&old, &log[..2], 2));
    cluster.process();
    assert_eq!(cluster.nodes[&1].status().membership, leave);
    assert_eq!(cluster.nodes[&2].status().membership, joint);
    for _ in 0..100 {
        if cluster.role(2) == Role::Leader {
            break;
        }
        cluster.tick(1, 1);
        cluster.tick(2, 1);
        cluster.stabilize();
    }
    assert_eq!(cluster.role(2), Role::Leader);
    assert_ne!(cluster.role(1), Role::Leader);
    cluster.stabilize();
    assert_eq!(cluster.nodes[&2].status().membership, leave);
    let index = cluster.propose(2, "after");
    cluster.stabilize();
    assert_eq!(cluster.commit(2), index);
}
