//! Unit tests of the core's rules, named after the section of the Raft paper (or Ongaro's
//! thesis) they check. Each asserts the exact Ready output the rule implies.

mod common;

use bytes::Bytes;
use common::{Cluster, kinds, payload, quiet};
use conclave_consensus::{
    Config, EntryKind, Error, HardState, Membership, MemoryStorage, Message, MessageKind,
    ProgressState, RawNode, ReadMode, Role,
};

fn no_pre_vote(config: &mut Config) {
    quiet(config);
    config.pre_vote = false;
    config.check_quorum = false;
}

#[test]
fn paper_5_2_follower_times_out_and_requests_votes_after_persisting_term_and_vote() {
    let mut cluster = Cluster::new(&[1, 2, 3], no_pre_vote);
    // The randomized timeout lies in [10, 20): 20 ticks always fire it.
    cluster.tick(1, 20);
    let ready = cluster.take_ready(1);
    assert_eq!(
        ready.hard_state,
        Some(HardState {
            term: 1,
            vote: Some(1),
            commit: 0
        })
    );
    assert!(ready.must_sync);
    // Vote requests promise the vote for itself is durable: never sent before persisting.
    assert!(ready.messages.is_empty());
    assert_eq!(
        kinds(&ready.persisted_messages),
        vec![(MessageKind::Vote, 2), (MessageKind::Vote, 3)]
    );
    assert_eq!(ready.soft_state.map(|s| s.role), Some(Role::Candidate));
}

#[test]
fn paper_5_2_candidate_with_a_majority_becomes_leader_and_appends_a_noop() {
    let mut cluster = Cluster::new(&[1, 2, 3], no_pre_vote);
    cluster.node(1).campaign().expect("campaign");
    let ready = cluster.take_ready(1);
    cluster.carry_out(1, ready);
    // Only node 2 answers: 2 of 3 is a majority.
    cluster.deliver_if(|m| m.to == 2);
    let grants: Vec<Message> = std::mem::take(&mut cluster.queue);
    assert_eq!(kinds(&grants), vec![(MessageKind::VoteResponse, 1)]);
    assert!(!grants[0].reject);
    for grant in grants {
        cluster.deliver(grant);
    }
    let ready = cluster.take_ready(1);
    assert_eq!(ready.soft_state.map(|s| s.role), Some(Role::Leader));
    assert_eq!(ready.entries.len(), 1);
    assert_eq!(ready.entries[0].kind, EntryKind::Noop);
    assert_eq!((ready.entries[0].index, ready.entries[0].term), (1, 1));
    // The leader's appends may go out before its own fsync (thesis 10.2.1).
    assert_eq!(
        kinds(&ready.messages),
        vec![(MessageKind::Append, 2), (MessageKind::Append, 3)]
    );
    assert!(ready.persisted_messages.is_empty());
}

#[test]
fn paper_5_2_a_node_votes_at_most_once_per_term() {
    let mut cluster = Cluster::new(&[1, 2, 3], no_pre_vote);
    let mut request = Message::new(MessageKind::Vote, 1, 3, 1);
    cluster.deliver(request.clone());
    request.from = 2;
    cluster.deliver(request);
    let ready = cluster.take_ready(3);
    let responses = ready.persisted_messages.clone();
    assert_eq!(responses.len(), 2);
    assert!(!responses[0].reject, "first candidate gets the vote");
    assert!(
        responses[1].reject,
        "second candidate of the same term is refused"
    );
    assert_eq!(ready.hard_state.map(|h| h.vote), Some(Some(1)));
}

#[test]
fn paper_5_3_leader_replicates_and_commits_once_a_majority_persisted() {
    let mut cluster = Cluster::new(&[1, 2, 3], no_pre_vote);
    cluster.campaign(1);
    let index = cluster.propose(1, "x");
    cluster.stabilize();
    for id in [1, 2, 3] {
        assert_eq!(cluster.commit(id), index);
        assert_eq!(cluster.applied_payloads(id), vec![payload("x")]);
    }
}

#[test]
fn ready_contract_leader_own_entry_counts_only_after_advance() {
    let mut cluster = Cluster::new(&[1, 2, 3], no_pre_vote);
    cluster.campaign(1);
    let index = cluster.propose(1, "x");
    // The leader sends its appends but has not persisted its own copy yet.
    let leader_ready = cluster.take_ready(1);
    assert_eq!(leader_ready.entries.len(), 1);
    cluster.queue.extend(leader_ready.messages.iter().cloned());
    // Node 3 is cut off: only node 2 acknowledges.
    cluster.isolate(3);
    cluster.deliver_if(|m| m.to == 2);
    let acks = std::mem::take(&mut cluster.queue);
    assert!(
        acks.iter()
            .any(|m| m.kind == MessageKind::AppendResponse && m.index == index)
    );
    for ack in acks {
        cluster.deliver(ack);
    }
    // One durable copy (node 2) out of three is not a majority: not committed.
    assert_eq!(cluster.commit(1), index - 1);
    // Once the leader's fsync completes, its own copy counts.
    let mut leader_ready = leader_ready;
    leader_ready.messages.clear();
    cluster.carry_out(1, leader_ready);
    assert_eq!(cluster.commit(1), index);
}

#[test]
fn ready_contract_follower_acks_wait_for_persistence() {
    let mut cluster = Cluster::new(&[1, 2, 3], no_pre_vote);
    cluster.campaign(1);
    cluster.propose(1, "x");
    cluster.process();
    let appends: Vec<Message> = std::mem::take(&mut cluster.queue);
    let to_two = appends
        .into_iter()
        .find(|m| m.to == 2)
        .expect("append to 2");
    cluster.deliver(to_two);
    let ready = cluster.take_ready(2);
    assert_eq!(ready.entries.len(), 1);
    assert!(ready.must_sync);
    assert!(ready.messages.is_empty());
    assert_eq!(
        kinds(&ready.persisted_messages),
        vec![(MessageKind::AppendResponse, 1)]
    );
}

#[test]
fn paper_5_3_follower_rejects_mismatch_with_a_term_hint_for_fast_backtracking() {
    // Node 2 holds entries of term 1 at 1..=3; the leader probes at index 5 with term 3.
    let mut storage = MemoryStorage::new(Membership::with_voters([1, 2]));
    storage.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
    storage.set_hard_state(HardState {
        term: 3,
        vote: None,
        commit: 0,
    });
    let mut config = Config::new(2);
    quiet(&mut config);
    let mut node = RawNode::new(config, storage).expect("node");
    let mut append = Message::new(MessageKind::Append, 1, 2, 3);
    append.index = 5;
    append.log_term = 3;
    node.step(append).expect("step");
    let ready = node.ready().expect("ready");
    let response = &ready.persisted_messages[0];
    assert!(response.reject);
    assert_eq!(response.index, 5);
    // The hint skips straight to the follower's last entry whose term is at most 3.
    assert_eq!(
        (response.reject_hint_index, response.reject_hint_term),
        (3, 1)
    );
}

#[test]
fn paper_5_3_leader_brings_a_conflicting_follower_into_line() {
    let mut cluster = Cluster::new(&[1, 2, 3], no_pre_vote);
    cluster.campaign(1);
    // Node 1 appends entries that never leave it.
    cluster.isolate(1);
    for text in ["lost-a", "lost-b", "lost-c"] {
        cluster.propose(1, text);
    }
    cluster.stabilize();
    // Node 2 wins a later term with 3 and commits different entries.
    cluster.heal();
    cluster.isolate(1);
    cluster.campaign(2);
    cluster.propose(2, "kept");
    cluster.stabilize();
    cluster.heal();
    cluster.tick(2, 1);
    cluster.stabilize();
    let leader_log = cluster.nodes[&2].log_entries(1, cluster.nodes[&2].status().last_index + 1);
    let follower_log = cluster.nodes[&1].log_entries(1, cluster.nodes[&1].status().last_index + 1);
    assert_eq!(leader_log.expect("log"), follower_log.expect("log"));
    assert_eq!(cluster.applied_payloads(1), vec![payload("kept")]);
}

#[test]
fn paper_5_4_1_vote_is_denied_to_a_candidate_with_a_less_up_to_date_log() {
    let mut cluster = Cluster::new(&[1, 2, 3], no_pre_vote);
    cluster.campaign(1);
    cluster.propose(1, "x");
    cluster.stabilize();
    // Node 3 misses nothing, but a candidate claiming an older last term is refused.
    let mut request = Message::new(MessageKind::Vote, 2, 3, 5);
    request.index = 100;
    request.log_term = 0;
    cluster.deliver(request);
    let ready = cluster.take_ready(3);
    let response = ready.persisted_messages.last().expect("response");
    assert_eq!(response.kind, MessageKind::VoteResponse);
    assert!(response.reject);
    assert_eq!(ready.hard_state.map(|h| (h.term, h.vote)), Some((5, None)));
}

/// Figure 8: a leader must not commit an entry of an earlier term by counting replicas.
#[test]
fn paper_5_4_2_figure_8_exact_commit_rule() {
    // A focused variant: the leader of term 3 holds a term-1 entry at index 2 that two of
    // three nodes have; it commits nothing until its own term's entry is on a majority.
    let mut storages = Vec::new();
    for _ in 0..3 {
        let mut storage = MemoryStorage::new(Membership::with_voters([1, 2, 3]));
        storage.append(&[entry(1, 1)]);
        storages.push(storage);
    }
    storages[0].append(&[entry(2, 1)]);
    storages[1].append(&[entry(2, 1)]);
    for storage in &mut storages {
        storage.set_hard_state(HardState {
            term: 2,
            vote: None,
            commit: 1,
        });
    }
    let mut cluster = Cluster::new(&[], no_pre_vote);
    for (position, storage) in storages.into_iter().enumerate() {
        cluster.add_node(position as u64 + 1, storage);
    }
    cluster.node(1).campaign().expect("campaign");
    cluster.process();
    // Votes come back, but every Append from the new leader is lost.
    cluster.deliver_if(|m| m.kind == MessageKind::Vote);
    cluster.deliver_if(|m| m.kind == MessageKind::VoteResponse);
    assert_eq!(cluster.role(1), Role::Leader);
    let ready = cluster.take_ready(1);
    cluster.carry_out(1, ready);
    cluster.queue.clear();
    // Node 2 acknowledges index 2 (a term-1 entry) for the new leader of term 3.
    let mut ack = Message::new(MessageKind::AppendResponse, 2, 1, 3);
    ack.index = 2;
    cluster.deliver(ack);
    assert_eq!(
        cluster.commit(1),
        1,
        "an old-term entry is not committed by counting"
    );
    // Once node 2 also has the term-3 no-op at index 3, everything up to 3 commits.
    let mut ack = Message::new(MessageKind::AppendResponse, 2, 1, 3);
    ack.index = 3;
    cluster.deliver(ack);
    assert_eq!(cluster.commit(1), 3);
}

#[test]
fn thesis_9_6_pre_vote_does_not_raise_terms_of_a_partitioned_node() {
    let mut cluster = Cluster::new(&[1, 2, 3], quiet);
    cluster.campaign(1);
    assert_eq!(cluster.role(1), Role::Leader);
    let term = cluster.nodes[&1].status().hard_state.term;
    cluster.isolate(3);
    for _ in 0..5 {
        cluster.tick(3, 20);
        cluster.stabilize();
    }
    assert_eq!(cluster.nodes[&3].status().hard_state.term, term);
    assert_eq!(cluster.role(3), Role::PreCandidate);
    // Rejoining does not depose the leader.
    cluster.heal();
    cluster.tick(1, 1);
    cluster.stabilize();
    assert_eq!(cluster.leader(), Some(1));
    assert_eq!(cluster.nodes[&1].status().hard_state.term, term);
}

#[test]
fn thesis_6_2_check_quorum_leader_steps_down_without_a_quorum() {
    let mut cluster = Cluster::new(&[1, 2, 3], quiet);
    cluster.campaign(1);
    cluster.isolate(1);
    // Two election timeouts: the first resets activity, the second finds no quorum.
    for _ in 0..20 {
        cluster.tick(1, 1);
        cluster.stabilize();
    }
    assert_eq!(cluster.role(1), Role::Follower);
}

#[test]
fn thesis_4_2_3_vote_requests_are_ignored_while_a_leader_is_heard() {
    let mut cluster = Cluster::new(&[1, 2, 3], quiet);
    cluster.campaign(1);
    let term = cluster.nodes[&2].status().hard_state.term;
    let mut request = Message::new(MessageKind::Vote, 3, 2, term + 1);
    request.index = 100;
    request.log_term = term;
    cluster.deliver(request);
    assert_eq!(cluster.nodes[&2].status().hard_state.term, term);
    assert!(!cluster.nodes[&2].has_ready());
}

#[test]
fn thesis_6_4_read_index_batches_reads_into_one_heartbeat_round() {
    let mut cluster = Cluster::new(&[1, 2, 3], quiet);
    cluster.campaign(1);
    cluster.stabilize();
    let commit = cluster.commit(1);
    cluster.node(1).read_index(10).expect("read");
    cluster.node(1).read_index(11).expect("read");
    let ready = cluster.take_ready(1);
    let heartbeats: Vec<&Message> = ready
        .messages
        .iter()
        .filter(|m| m.kind == MessageKind::Heartbeat)
        .collect();
    assert_eq!(heartbeats.len(), 2, "one heartbeat per peer for both reads");
    assert!(
        ready.read_states.is_empty(),
        "not confirmed before a quorum answers"
    );
    cluster.carry_out(1, ready);
    cluster.deliver_if(|m| m.to == 2);
    cluster.deliver_if(|m| m.kind == MessageKind::HeartbeatResponse);
    let reads = &cluster.read_states[&1];
    assert_eq!(
        reads
            .iter()
            .map(|r| (r.request_id, r.index))
            .collect::<Vec<_>>(),
        vec![(10, commit), (11, commit)]
    );
}

#[test]
fn thesis_6_4_read_index_on_a_follower_names_the_leader() {
    let mut cluster = Cluster::new(&[1, 2, 3], quiet);
    cluster.campaign(1);
    assert_eq!(
        cluster.node(2).read_index(1),
        Err(Error::NotLeader { leader: Some(1) })
    );
}

#[test]
fn thesis_6_4_1_lease_read_is_served_without_a_round_while_the_lease_holds() {
    fn lease(config: &mut Config) {
        quiet(config);
        config.read_mode = ReadMode::LeaseBased;
    }
    let mut cluster = Cluster::new(&[1, 2, 3], lease);
    cluster.campaign(1);
    cluster.tick(1, 1);
    cluster.stabilize();
    cluster.node(1).read_index(7).expect("read");
    let ready = cluster.take_ready(1);
    assert_eq!(ready.read_states.len(), 1);
    assert!(ready.messages.is_empty());
    cluster.carry_out(1, ready);
    // Cut off, the lease expires after election_timeout - drift ticks: back to rounds.
    cluster.isolate(1);
    cluster.tick(1, 9);
    cluster.stabilize();
    cluster.node(1).read_index(8).expect("read");
    let ready = cluster.take_ready(1);
    assert!(ready.read_states.is_empty());
}

#[test]
fn pipelining_is_bounded_by_inflight_messages_max() {
    fn bounded(config: &mut Config) {
        no_pre_vote(config);
        config.inflight_messages_max = 2;
    }
    let mut cluster = Cluster::new(&[1, 2], bounded);
    cluster.campaign(1);
    for round in 0..5 {
        cluster.propose(1, &format!("entry-{round}"));
    }
    let ready = cluster.take_ready(1);
    let appends = ready
        .messages
        .iter()
        .filter(|m| m.kind == MessageKind::Append)
        .count();
    assert_eq!(appends, 2, "two appends in flight, the rest wait for acks");
    cluster.carry_out(1, ready);
    cluster.stabilize();
    assert_eq!(cluster.applied_payloads(2).len(), 5);
    let progress = cluster.nodes[&1].status().progress[&2];
    assert_eq!(progress.state, ProgressState::Replicate);
    assert_eq!(progress.inflight_messages, 0);
}

#[test]
fn uncommitted_bytes_bound_rejects_proposals() {
    fn bounded(config: &mut Config) {
        no_pre_vote(config);
        config.uncommitted_bytes_max = 200;
    }
    let mut cluster = Cluster::new(&[1, 2], bounded);
    cluster.campaign(1);
    cluster.isolate(1);
    let big = Bytes::from(vec![0u8; 150]);
    cluster
        .node(1)
        .propose(vec![big.clone()])
        .expect("first fits");
    assert_eq!(
        cluster.node(1).propose(vec![big]),
        Err(Error::UncommittedBytesExceeded { bytes_max: 200 })
    );
}

#[test]
fn proposals_on_a_follower_are_refused_with_the_leader_hint() {
    let mut cluster = Cluster::new(&[1, 2, 3], quiet);
    cluster.campaign(1);
    assert_eq!(
        cluster.node(2).propose(vec![payload("x")]),
        Err(Error::NotLeader { leader: Some(1) })
    );
}

fn entry(index: u64, term: u64) -> conclave_consensus::Entry {
    conclave_consensus::Entry {
        index,
        term,
        kind: EntryKind::Normal,
        payload: Bytes::new(),
    }
}

/// Thesis 10.2.1: the leader may write its own log in parallel with replication. Its
/// entries, handed to a writer and closed with `advance_async`, are not handed out again;
/// followers' durable copies alone may commit them; the leader's own copy counts only once
/// `entries_persisted` reports it.
#[test]
fn thesis_10_2_1_leader_writes_its_own_log_asynchronously() {
    let mut cluster = Cluster::new(&[1, 2, 3], no_pre_vote);
    cluster.campaign(1);
    let index = cluster.propose(1, "x");
    let ready = cluster.take_ready(1);
    let entries = ready.entries.clone();
    assert_eq!(entries.last().map(|e| e.index), Some(index));
    cluster.queue.extend(ready.messages.iter().cloned());
    cluster.node(1).advance_async(ready).expect("advance");
    cluster.node(1).validate().expect("invariants hold");
    assert!(
        !cluster.node(1).has_ready(),
        "entries being written are not handed out again"
    );
    assert_eq!(cluster.nodes[&1].status().persisted_index, index - 1);
    // Only node 2 acknowledges: with the leader's copy still being written, 1 of 3 copies
    // is durable, which commits nothing.
    cluster.isolate(3);
    cluster.deliver_if(|m| m.to == 2);
    let acks = std::mem::take(&mut cluster.queue);
    for ack in acks {
        cluster.deliver(ack);
    }
    assert_eq!(cluster.commit(1), index - 1);
    // The write completes: the leader's copy makes the majority.
    cluster.node(1).storage_mut().append(&entries);
    let term = entries[0].term;
    cluster
        .node(1)
        .entries_persisted(index, term)
        .expect("persisted");
    cluster.node(1).validate().expect("invariants hold");
    assert_eq!(cluster.nodes[&1].status().persisted_index, index);
    assert_eq!(cluster.commit(1), index);
    // A second entry commits through the two followers' copies alone, before the leader's
    // own write completes.
    cluster.heal();
    let second = cluster.propose(1, "y");
    let ready = cluster.take_ready(1);
    let entries = ready.entries.clone();
    cluster.queue.extend(ready.messages.iter().cloned());
    cluster.node(1).advance_async(ready).expect("advance");
    let mut applied_on_leader = Vec::new();
    for _ in 0..10 {
        let messages = std::mem::take(&mut cluster.queue);
        for message in messages {
            cluster.deliver(message);
        }
        for id in [2, 3] {
            while cluster.node(id).has_ready() {
                let ready = cluster.take_ready(id);
                cluster.carry_out(id, ready);
            }
        }
        // The leader's own batches carry no new entries; it keeps replicating meanwhile.
        while cluster.node(1).has_ready() {
            let ready = cluster.take_ready(1);
            assert!(ready.entries.is_empty());
            assert!(ready.persisted_messages.is_empty());
            cluster.queue.extend(ready.messages.iter().cloned());
            applied_on_leader.extend(ready.committed_entries.iter().map(|e| e.payload.clone()));
            cluster.node(1).advance_async(ready).expect("advance");
        }
    }
    assert_eq!(cluster.commit(1), second);
    assert_eq!(cluster.nodes[&1].status().persisted_index, second - 1);
    assert_eq!(
        applied_on_leader.last(),
        Some(&payload("y")),
        "a committed entry is applied even before the leader's own copy is durable"
    );
    cluster.node(1).storage_mut().append(&entries);
    cluster
        .node(1)
        .entries_persisted(second, term)
        .expect("persisted");
    assert_eq!(cluster.nodes[&1].status().persisted_index, second);
}

/// An entry replaced while being written (a new leader overwrote it) is handed out again,
/// and the late report of the old write changes nothing.
#[test]
fn thesis_10_2_1_a_replaced_entry_is_handed_out_again_and_its_late_report_ignored() {
    let mut cluster = Cluster::new(&[1, 2, 3], no_pre_vote);
    cluster.campaign(1);
    cluster.isolate(1);
    let lost = cluster.propose(1, "lost");
    let ready = cluster.take_ready(1);
    let old_term = ready.entries[0].term;
    cluster.node(1).advance_async(ready).expect("advance");
    // Node 2 wins the next term without node 1 and commits another entry at that index.
    cluster.campaign(2);
    cluster.propose(2, "kept");
    cluster.stabilize();
    cluster.heal();
    cluster.tick(2, 1);
    // Let messages flow, carrying out node 2's and 3's batches, until node 1 is handed
    // the replacement.
    let mut replacement = None;
    for _ in 0..20 {
        for id in [2, 3] {
            while cluster.node(id).has_ready() {
                let ready = cluster.take_ready(id);
                cluster.carry_out(id, ready);
            }
        }
        let messages = std::mem::take(&mut cluster.queue);
        for message in messages {
            cluster.deliver(message);
        }
        if cluster.node(1).has_ready() {
            let ready = cluster.take_ready(1);
            if ready.entries.iter().any(|e| e.index == lost) {
                replacement = Some(ready);
                break;
            }
            cluster.carry_out(1, ready);
        }
    }
    let replacement = replacement.expect("node 1 is handed the replacement entry");
    let entry = replacement
        .entries
        .iter()
        .find(|e| e.index == lost)
        .expect("replacement");
    assert!(entry.term > old_term, "the new leader's entry replaces it");
    // The old write's report arrives late: nothing changes.
    cluster
        .node(1)
        .entries_persisted(lost, old_term)
        .expect("late report");
    assert_eq!(cluster.nodes[&1].status().persisted_index, lost - 1);
    cluster.carry_out(1, replacement);
    cluster.stabilize();
    let status = cluster.nodes[&1].status();
    assert_eq!(status.persisted_index, status.last_index);
    assert_eq!(cluster.applied_payloads(1), vec![payload("kept")]);
}

#[test]
#[should_panic(expected = "reported durable before it was handed out")]
fn entries_persisted_before_they_were_handed_out_is_a_bug() {
    let mut cluster = Cluster::new(&[1, 2, 3], no_pre_vote);
    cluster.campaign(1);
    let index = cluster.propose(1, "x");
    let term = cluster.nodes[&1].status().hard_state.term;
    let _ = cluster.node(1).entries_persisted(index, term);
}

/// Paper 5.3, AppendEntries rule 5 (commit = min(leaderCommit, last new entry)), applied to
/// heartbeats: a follower that lost its log (a wiped directory) may be sent a commit index
/// past its last entry; it commits no further than its log reaches.
#[test]
fn paper_5_3_heartbeat_commit_never_passes_the_followers_last_index() {
    let mut config = Config::new(2);
    quiet(&mut config);
    let storage = MemoryStorage::new(Membership::with_voters([1, 2, 3]));
    let mut node = RawNode::new(config.clone(), storage).expect("node");
    let mut heartbeat = Message::new(MessageKind::Heartbeat, 1, 2, 4);
    heartbeat.commit = 7;
    node.step(heartbeat.clone()).expect("step");
    node.validate().expect("invariants hold");
    assert_eq!(node.status().hard_state.commit, 0);
    let ready = node.ready().expect("ready");
    assert_eq!(
        kinds(&ready.persisted_messages),
        vec![(MessageKind::HeartbeatResponse, 1)]
    );
    // With three entries of the leader's term, it commits up to its last one.
    let mut storage = MemoryStorage::new(Membership::with_voters([1, 2, 3]));
    storage.append(&[entry(1, 4), entry(2, 4), entry(3, 4)]);
    let mut node = RawNode::new(config, storage).expect("node");
    node.step(heartbeat).expect("step");
    node.validate().expect("invariants hold");
    assert_eq!(node.status().hard_state.commit, 3);
}

/// The core mixes the node id into `Config::seed`: nodes configured with the same seed
/// draw different election timeouts (else they could split their votes forever), while
/// the same seed and id replay the same timeouts.
#[test]
fn thesis_3_4_nodes_with_the_same_seed_draw_different_election_timeouts() {
    fn timeouts(id: u64, seed: u64) -> Vec<u64> {
        let mut config = Config::new(id);
        no_pre_vote(&mut config);
        config.seed = seed;
        let storage = MemoryStorage::new(Membership::with_voters([1, 2, 3]));
        let mut node = RawNode::new(config, storage).expect("node");
        // Without pre-vote each campaign starts a term and draws a new timeout; nobody
        // answers, so each election times out after exactly the drawn number of ticks.
        let mut drawn = Vec::new();
        let mut ticks = 0;
        let mut term = node.status().hard_state.term;
        while drawn.len() < 8 {
            node.tick().expect("tick");
            ticks += 1;
            let now = node.status().hard_state.term;
            if now != term {
                drawn.push(ticks);
                ticks = 0;
                term = now;
            }
            assert!(ticks <= 20, "a timeout lies in [10, 20) ticks");
        }
        drawn
    }
    for seed in [0, 7, 42] {
        let one = timeouts(1, seed);
        let two = timeouts(2, seed);
        assert!(one.iter().all(|t| (10..20).contains(t)), "{one:?}");
        assert_ne!(
            one, two,
            "seed {seed}: nodes 1 and 2 draw the same timeouts"
        );
        assert_eq!(one, timeouts(1, seed), "a seed and id replay exactly");
    }
}
