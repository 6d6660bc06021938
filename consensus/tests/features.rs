//! Tests of the features beyond the basic paper rules: snapshots, leadership transfer,
//! learners and joint consensus. Each is named after the thesis section it checks.

mod common;

use bytes::Bytes;
use common::{Cluster, kinds, payload, quiet};
use conclave_consensus::{
    Config, Error, Membership, MembershipChange, MessageKind, ProgressState, Role, Storage,
};

fn plain(config: &mut Config) {
    quiet(config);
    config.pre_vote = false;
}

#[test]
fn thesis_5_leader_sends_a_snapshot_when_the_needed_entries_are_compacted() {
    let mut cluster = Cluster::new(&[1, 2, 3], plain);
    cluster.campaign(1);
    cluster.isolate(3);
    for round in 0..5 {
        cluster.propose(1, &format!("entry-{round}"));
    }
    cluster.stabilize();
    let commit = cluster.commit(1);
    let membership = Membership::with_voters([1, 2, 3]);
    cluster
        .node(1)
        .storage_mut()
        .compact(commit, Bytes::from_static(b"state"), membership);
    cluster.heal();
    // The heartbeat answer from node 3 resumes replication, which needs compacted entries.
    cluster.tick(1, 1);
    let mut rounds = 0;
    while !cluster
        .queue
        .iter()
        .any(|m| m.kind == MessageKind::Snapshot)
    {
        cluster.deliver_if(|_| true);
        rounds += 1;
        assert!(rounds < 10, "no snapshot sent");
    }
    let snapshots: Vec<_> = cluster
        .queue
        .iter()
        .filter(|m| m.kind == MessageKind::Snapshot && m.to == 3)
        .collect();
    assert_eq!(snapshots.len(), 1);
    assert_eq!(
        snapshots[0].snapshot.as_ref().map(|s| s.metadata.index),
        Some(commit)
    );
    cluster.stabilize();
    // Node 3 installed the snapshot, then caught up through appends.
    let storage = cluster.nodes[&3].storage();
    assert_eq!(storage.first_index(), Ok(commit + 1));
    assert_eq!(
        storage.snapshot().map(|s| s.data),
        Ok(Bytes::from_static(b"state"))
    );
    assert_eq!(cluster.commit(3), commit);
    let progress = cluster.nodes[&1].status().progress[&3];
    assert_eq!(
        (progress.matched, progress.state),
        (commit, ProgressState::Replicate)
    );
    // Later entries replicate normally.
    let index = cluster.propose(1, "after");
    cluster.stabilize();
    assert_eq!(cluster.commit(3), index);
}

#[test]
fn thesis_3_10_leadership_transfer_catches_the_target_up_then_sends_timeout_now() {
    let mut cluster = Cluster::new(&[1, 2, 3], quiet);
    cluster.campaign(1);
    cluster.isolate(3);
    cluster.propose(1, "x");
    cluster.stabilize();
    cluster.heal();
    cluster.node(1).transfer_leadership(3).expect("transfer");
    // While the transfer runs, proposals are refused.
    assert_eq!(
        cluster.node(1).propose(vec![payload("y")]),
        Err(Error::TransferInProgress)
    );
    let ready = cluster.take_ready(1);
    assert_eq!(kinds(&ready.messages), vec![(MessageKind::Append, 3)]);
    cluster.carry_out(1, ready);
    // Appends and answers go back and forth until the target has caught up; only then does
    // the leader tell it to campaign now.
    let mut rounds = 0;
    while !cluster
        .queue
        .iter()
        .any(|m| m.kind == MessageKind::TimeoutNow)
    {
        assert!(cluster.queue.iter().all(|m| m.kind != MessageKind::Vote));
        cluster.deliver_if(|m| m.to == 3 || m.to == 1);
        rounds += 1;
        assert!(rounds < 10, "transfer never sent TimeoutNow");
    }
    let target = &cluster.nodes[&3];
    assert_eq!(
        target.status().last_index,
        cluster.nodes[&1].status().last_index
    );
    cluster.stabilize();
    assert_eq!(cluster.leader(), Some(3));
    assert_eq!(cluster.role(1), Role::Follower);
}

#[test]
fn thesis_3_10_transfer_to_an_unreachable_target_is_abandoned_after_an_election_timeout() {
    let mut cluster = Cluster::new(&[1, 2, 3], quiet);
    cluster.campaign(1);
    cluster.isolate(3);
    cluster.node(1).transfer_leadership(3).expect("transfer");
    for _ in 0..10 {
        cluster.tick(1, 1);
        cluster.stabilize();
    }
    assert_eq!(cluster.leader(), Some(1));
    cluster
        .node(1)
        .propose(vec![payload("y")])
        .expect("proposals flow again");
    assert_eq!(
        cluster.node(1).transfer_leadership(1),
        Err(Error::InvalidTransferTarget(1))
    );
}

#[test]
fn thesis_4_2_1_learner_receives_the_log_but_does_not_count() {
    let mut cluster = Cluster::new(&[1, 2], plain);
    cluster.add_node(
        4,
        conclave_consensus::MemoryStorage::new(Membership::default()),
    );
    cluster.campaign(1);
    cluster
        .node(1)
        .propose_membership(&[MembershipChange::AddLearner(4)])
        .expect("add");
    cluster.stabilize();
    let index = cluster.propose(1, "x");
    cluster.stabilize();
    assert_eq!(cluster.commit(4), index);
    assert_eq!(cluster.nodes[&4].status().membership.learners, [4].into());
    // The learner never campaigns, however long it waits.
    cluster.isolate(4);
    cluster.tick(4, 100);
    cluster.stabilize();
    assert_eq!(cluster.role(4), Role::Follower);
    // Without node 2, the leader and the learner are not a quorum: nothing commits.
    cluster.heal();
    cluster.isolate(2);
    let index = cluster.propose(1, "y");
    cluster.stabilize();
    assert!(cluster.commit(1) < index);
}

#[test]
fn thesis_4_3_voter_change_goes_through_joint_consensus_and_leaves_it_automatically() {
    let mut cluster = Cluster::new(&[1, 2, 3], plain);
    cluster.add_node(
        4,
        conclave_consensus::MemoryStorage::new(Membership::default()),
    );
    cluster.campaign(1);
    cluster
        .node(1)
        .propose_membership(&[MembershipChange::AddLearner(4)])
        .expect("learner");
    cluster.stabilize();
    cluster
        .node(1)
        .propose_membership(&[MembershipChange::AddVoter(4), MembershipChange::Remove(3)])
        .expect("promote and remove");
    // A second change waits until the first is applied.
    assert_eq!(
        cluster
            .node(1)
            .propose_membership(&[MembershipChange::Remove(2)]),
        Err(Error::MembershipChangePending)
    );
    cluster.stabilize();
    let entries = cluster.applied[&1]
        .iter()
        .filter(|e| e.kind == conclave_consensus::EntryKind::Membership)
        .map(|e| Membership::decode(&e.payload).expect("membership"))
        .collect::<Vec<_>>();
    assert_eq!(entries.len(), 3, "learner, joint, final");
    assert_eq!(entries[1].voters, [1, 2, 4].into());
    assert_eq!(entries[1].voters_outgoing, [1, 2, 3].into());
    assert_eq!(entries[2].voters, [1, 2, 4].into());
    assert!(!entries[2].is_joint());
    assert_eq!(cluster.nodes[&1].status().membership, entries[2]);
}

#[test]
fn thesis_4_2_2_removed_leader_steps_down_after_committing_its_removal() {
    let mut cluster = Cluster::new(&[1, 2, 3], plain);
    cluster.campaign(1);
    cluster
        .node(1)
        .propose_membership(&[MembershipChange::Remove(1)])
        .expect("remove");
    cluster.stabilize();
    assert_ne!(cluster.role(1), Role::Leader);
    // It handed over to a caught-up voter with TimeoutNow, so a new leader exists at once.
    let leader = cluster.leader().expect("a new leader");
    assert!(leader == 2 || leader == 3);
    let index = cluster.propose(leader, "after");
    cluster.stabilize();
    assert_eq!(cluster.commit(leader), index);
    assert!(!cluster.nodes[&leader].status().membership.contains(1));
}

#[test]
fn membership_rejects_demoting_a_voter_and_empty_configurations() {
    let mut cluster = Cluster::new(&[1, 2], plain);
    cluster.campaign(1);
    assert!(matches!(
        cluster
            .node(1)
            .propose_membership(&[MembershipChange::AddLearner(2)]),
        Err(Error::InvalidMembershipChange(_))
    ));
    assert!(matches!(
        cluster
            .node(1)
            .propose_membership(&[MembershipChange::Remove(1), MembershipChange::Remove(2)]),
        Err(Error::InvalidMembershipChange(_))
    ));
}

#[test]
fn restart_keeps_term_vote_and_log_and_loses_nothing_committed() {
    let mut cluster = Cluster::new(&[1, 2, 3], plain);
    cluster.campaign(1);
    let index = cluster.propose(1, "durable");
    cluster.stabilize();
    let status = cluster.nodes[&2].status();
    let node = cluster.nodes.remove(&2).expect("node");
    let storage = node.into_storage();
    cluster.applied.remove(&2);
    cluster.add_node(2, storage);
    let restarted = cluster.nodes[&2].status();
    assert_eq!(restarted.hard_state, status.hard_state);
    assert_eq!(restarted.last_index, status.last_index);
    cluster.stabilize();
    // The restarted node re-applies its committed log from the start.
    assert_eq!(cluster.applied[&2].last().map(|e| e.index), Some(index));
}

#[test]
fn thesis_4_2_3_removed_node_that_missed_its_removal_cannot_disrupt_the_cluster() {
    let mut cluster = Cluster::new(&[1, 2, 3, 4], quiet);
    cluster.campaign(1);
    // Node 4 is cut off while the others remove it, so it never learns of the removal.
    cluster.isolate(4);
    cluster
        .node(1)
        .propose_membership(&[MembershipChange::Remove(4)])
        .expect("remove");
    cluster.stabilize();
    for _ in 0..3 {
        cluster.tick(1, 1);
        cluster.stabilize();
    }
    let term = cluster.nodes[&1].status().hard_state.term;
    assert!(!cluster.nodes[&1].status().membership.contains(4));
    assert!(cluster.nodes[&4].status().membership.contains(4));
    // Back on the network it times out again and again; the others keep their leader.
    cluster.heal();
    for _ in 0..5 {
        cluster.tick(4, 20);
        cluster.tick(1, 1);
        cluster.stabilize();
    }
    assert_eq!(cluster.leader(), Some(1));
    assert_eq!(cluster.nodes[&1].status().hard_state.term, term);
    let index = cluster.propose(1, "still-working");
    cluster.stabilize();
    assert_eq!(cluster.commit(2), index);
}

#[test]
fn thesis_6_4_1_restarted_node_refuses_votes_for_one_election_timeout() {
    let mut cluster = Cluster::new(&[1, 2, 3], quiet);
    cluster.campaign(1);
    let term = cluster.nodes[&2].status().hard_state.term;
    let node = cluster.nodes.remove(&2).expect("node");
    cluster.add_node(2, node.into_storage());
    // Just restarted: it may have acknowledged node 1's lease before the crash.
    let mut request = conclave_consensus::Message::new(MessageKind::Vote, 3, 2, term + 1);
    request.index = 100;
    request.log_term = term;
    cluster.deliver(request.clone());
    assert_eq!(cluster.nodes[&2].status().hard_state.term, term);
    // After an election timeout of its own ticks the lease it may have granted is over.
    cluster.tick(2, 10);
    cluster.process();
    cluster.queue.clear();
    request.term = cluster.nodes[&2].status().hard_state.term + 1;
    cluster.deliver(request);
    let ready = cluster.take_ready(2);
    assert!(
        ready
            .persisted_messages
            .iter()
            .any(|m| m.kind == MessageKind::VoteResponse && !m.reject)
    );
}

#[test]
fn ready_contract_follower_installs_a_snapshot_before_acknowledging_it() {
    let mut cluster = Cluster::new(&[1, 2], plain);
    let snapshot = conclave_consensus::Snapshot {
        metadata: conclave_consensus::SnapshotMetadata {
            index: 50,
            term: 3,
            membership: Membership::with_voters([1, 2]),
        },
        data: Bytes::from_static(b"state@50"),
    };
    let mut message = conclave_consensus::Message::new(MessageKind::Snapshot, 1, 2, 3);
    message.snapshot = Some(snapshot.clone());
    cluster.deliver(message);
    let ready = cluster.take_ready(2);
    assert_eq!(ready.snapshot, Some(snapshot));
    assert!(ready.must_sync);
    assert!(ready.entries.is_empty() && ready.committed_entries.is_empty());
    assert!(
        ready.messages.is_empty(),
        "nothing may leave before the snapshot is durable"
    );
    assert_eq!(
        kinds(&ready.persisted_messages),
        vec![(MessageKind::AppendResponse, 1)]
    );
    assert_eq!(ready.persisted_messages[0].index, 50);
    assert_eq!(ready.hard_state.map(|h| (h.term, h.commit)), Some((3, 50)));
    cluster.carry_out(2, ready);
    assert_eq!(cluster.nodes[&2].status().applied, 50);
    assert_eq!(cluster.nodes[&2].storage().first_index(), Ok(51));
}

#[test]
fn ready_contract_commit_only_change_needs_no_sync() {
    let mut cluster = Cluster::new(&[1, 2], plain);
    cluster.campaign(1);
    let index = cluster.propose(1, "x");
    cluster.process();
    // Node 2 receives the entry, then learns that it committed.
    cluster.deliver_if(|m| m.to == 2);
    cluster.deliver_if(|m| m.to == 1);
    let mut heartbeat = conclave_consensus::Message::new(MessageKind::Heartbeat, 1, 2, 1);
    heartbeat.commit = index;
    cluster.queue.clear();
    cluster.deliver(heartbeat);
    let ready = cluster.take_ready(2);
    assert!(
        !ready.must_sync,
        "a commit index change alone needs no fsync"
    );
    assert_eq!(ready.hard_state.map(|h| h.commit), Some(index));
    assert_eq!(ready.committed_entries.last().map(|e| e.index), Some(index));
}
