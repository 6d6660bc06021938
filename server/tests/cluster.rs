//! The scenarios on in-process clusters over real tonic on 127.0.0.1 and real disk.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use common::{Cluster, key, value, wait_for};
use conclave_consensus::MembershipChange;
use conclave_server::node::{MapApplication, NodeError};
use tokio::sync::Mutex;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_and_five_nodes_elect_a_leader_and_replicate() {
    for voters in [vec![1, 2, 3], vec![1, 2, 3, 4, 5]] {
        let cluster = Cluster::start(&voters, 10_000).await;
        let leader = cluster.wait_for_leader().await;
        for i in 0..50 {
            cluster.write(i).await;
        }
        for id in &voters {
            cluster.wait_for_keys(*id, 0..50).await;
        }
        // The leader writes its own log through the group-commit writer; every queued
        // write is reported durable to the core in the end.
        let node = &cluster.nodes[&leader];
        wait_for("the leader's queued writes to be reported", || async {
            let status = node.status().await.unwrap();
            status.persisted_index == status.last_index
        })
        .await;
        // A linearizable read on the leader sees the last write.
        let read = cluster.nodes[&leader]
            .read(Bytes::from(key(49)))
            .await
            .unwrap();
        assert_eq!(read, value(49));
        // Log time advances on the idle cluster through the leader's tick entries.
        let node = &cluster.nodes[&leader];
        let time_query = Bytes::from_static(MapApplication::LOG_TIME_QUERY);
        let first = node.query_local(time_query.clone()).await.unwrap().1;
        wait_for("log time to advance", || {
            let (node, time_query, first) = (node, time_query.clone(), first.clone());
            async move { node.query_local(time_query).await.unwrap().1 > first }
        })
        .await;
        cluster.shutdown().await;
    }
}

/// A single voter has no follower to commit for it: every write commits only once the
/// driver reports the leader's own queued write durable to the core, and stop leaves
/// everything on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_commits_through_its_own_queued_writes_and_keeps_them() {
    let mut cluster = Cluster::start(&[1], 10_000).await;
    cluster.wait_for_leader().await;
    for i in 0..30 {
        cluster.write(i).await;
    }
    let status = cluster.nodes[&1].status().await.unwrap();
    assert!(status.hard_state.commit <= status.persisted_index);
    cluster.stop(1).await;
    cluster.restart(1, vec![1]).await;
    cluster.wait_for_keys(1, 0..30).await;
    cluster.wait_for_leader().await;
    cluster.write(30).await;
    cluster.wait_for_keys(1, 0..31).await;
    cluster.shutdown().await;
}

/// Writers that keep proposing distinct keys and record the acknowledged ones.
async fn run_writers(
    cluster: Arc<Mutex<Cluster>>,
    stop: Arc<AtomicBool>,
    first: u64,
) -> BTreeSet<u64> {
    let mut acknowledged = BTreeSet::new();
    let mut i = first;
    while !stop.load(Ordering::SeqCst) {
        let command = MapApplication::set_command(&key(i), &value(i));
        let node_and_result = {
            let cluster = cluster.lock().await;
            match cluster.leader().await {
                Some(leader) => {
                    let node = &cluster.nodes[&leader];
                    Some(tokio::time::timeout(common::DEADLINE, node.propose(command)).await)
                }
                None => None,
            }
        };
        if let Some(Ok(Ok(_))) = node_and_result {
            acknowledged.insert(i);
            i += 1;
        } else {
            tokio::task::yield_now().await;
        }
        if let Some(Ok(Err(NodeError::Storage(error)))) = node_and_result {
            panic!("storage failed: {error}");
        }
    }
    acknowledged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_under_load_loses_no_acknowledged_write() {
    let cluster = Arc::new(Mutex::new(Cluster::start(&[1, 2, 3], 10_000).await));
    let old_leader = cluster.lock().await.wait_for_leader().await;
    let stop = Arc::new(AtomicBool::new(false));
    let writers = tokio::spawn(run_writers(cluster.clone(), stop.clone(), 0));
    wait_for("some writes before the kill", || {
        let cluster = cluster.clone();
        async move {
            let cluster = cluster.lock().await;
            let status = cluster.nodes[&old_leader].status().await.unwrap();
            status.applied > 100
        }
    })
    .await;
    cluster.lock().await.stop(old_leader).await;
    wait_for("a new leader", || {
        let cluster = cluster.clone();
        async move {
            cluster
                .lock()
                .await
                .leader()
                .await
                .is_some_and(|l| l != old_leader)
        }
    })
    .await;
    let applied_at_takeover = {
        let cluster = cluster.lock().await;
        let leader = cluster.wait_for_leader().await;
        cluster.nodes[&leader].status().await.unwrap().applied
    };
    wait_for("writes under the new leader", || {
        let cluster = cluster.clone();
        async move {
            let cluster = cluster.lock().await;
            let Some(leader) = cluster.leader().await else {
                return false;
            };
            cluster.nodes[&leader].status().await.unwrap().applied > applied_at_takeover + 100
        }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let acknowledged = writers.await.unwrap();
    assert!(
        acknowledged.len() > 100,
        "too few writes: {}",
        acknowledged.len()
    );
    let cluster = Arc::into_inner(cluster).unwrap().into_inner();
    let leader = cluster.wait_for_leader().await;
    for i in &acknowledged {
        let found = cluster.nodes[&leader]
            .read(Bytes::from(key(*i)))
            .await
            .unwrap();
        assert_eq!(found, value(*i), "acknowledged write {i} lost");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_every_node_recovers_the_state() {
    // A low snapshot threshold makes recovery go through a snapshot plus a log suffix.
    let mut cluster = Cluster::start(&[1, 2, 3], 40).await;
    cluster.wait_for_leader().await;
    for i in 0..100 {
        cluster.write(i).await;
    }
    for id in [1, 2, 3] {
        cluster.stop(id).await;
    }
    for id in [1, 2, 3] {
        cluster.restart(id, vec![1, 2, 3]).await;
    }
    cluster.wait_for_leader().await;
    for id in [1, 2, 3] {
        cluster.wait_for_keys(id, 0..100).await;
    }
    cluster.write(100).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_follower_catches_up_through_a_snapshot() {
    let mut cluster = Cluster::start(&[1, 2, 3], 30).await;
    let leader = cluster.wait_for_leader().await;
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    for i in 0..40 {
        cluster.write(i).await;
    }
    cluster.stop(follower).await;
    std::fs::remove_dir_all(cluster.data_directory(follower)).unwrap();
    for i in 40..100 {
        cluster.write(i).await;
    }
    // The leader has compacted its log past everything the wiped follower could replay.
    let leader = cluster.wait_for_leader().await;
    let snapshots = cluster.data_directory(leader).join("snapshots");
    assert!(
        std::fs::read_dir(&snapshots).unwrap().count() > 0,
        "leader took no snapshot"
    );
    cluster.restart(follower, vec![1, 2, 3]).await;
    cluster.wait_for_keys(follower, 0..100).await;
    let installed = std::fs::read_dir(cluster.data_directory(follower).join("snapshots"))
        .unwrap()
        .count();
    assert!(installed > 0, "the follower caught up without a snapshot");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_under_load_lose_no_write() {
    let cluster = Arc::new(Mutex::new(Cluster::start(&[1, 2, 3], 200).await));
    cluster.lock().await.wait_for_leader().await;
    let stop = Arc::new(AtomicBool::new(false));
    let writers = tokio::spawn(run_writers(cluster.clone(), stop.clone(), 0));
    cluster.lock().await.start_joiner(4).await;
    // Membership changes go to whoever leads, retried while the leader changes.
    async fn change(cluster: &Arc<Mutex<Cluster>>, changes: Vec<MembershipChange>) {
        wait_for(&format!("{changes:?} applied"), || {
            let (cluster, changes) = (cluster.clone(), changes.clone());
            async move {
                let cluster = cluster.lock().await;
                let Some(leader) = cluster.leader().await else {
                    return false;
                };
                cluster.nodes[&leader]
                    .change_membership(changes)
                    .await
                    .is_ok()
            }
        })
        .await;
    }
    change(&cluster, vec![MembershipChange::AddLearner(4)]).await;
    wait_for("the learner to catch up", || {
        let cluster = cluster.clone();
        async move {
            let cluster = cluster.lock().await;
            let Some(leader) = cluster.leader().await else {
                return false;
            };
            let leader_applied = cluster.nodes[&leader].status().await.unwrap().applied;
            let learner = cluster.nodes[&4].status().await.unwrap();
            learner.membership.learners.contains(&4) && learner.applied + 50 >= leader_applied
        }
    })
    .await;
    change(&cluster, vec![MembershipChange::AddVoter(4)]).await;
    let removed = {
        let cluster = cluster.lock().await;
        let leader = cluster.wait_for_leader().await;
        [1, 2, 3].into_iter().find(|id| *id != leader).unwrap()
    };
    change(&cluster, vec![MembershipChange::Remove(removed)]).await;
    wait_for("leadership to move to node 4", || {
        let cluster = cluster.clone();
        async move {
            let cluster = cluster.lock().await;
            let Some(leader) = cluster.leader().await else {
                return false;
            };
            if leader == 4 {
                return true;
            }
            let _ = cluster.nodes[&leader].transfer_leadership(4).await;
            false
        }
    })
    .await;
    let applied_now = cluster.lock().await.nodes[&4]
        .status()
        .await
        .unwrap()
        .applied;
    wait_for("writes under node 4", || {
        let cluster = cluster.clone();
        async move {
            cluster.lock().await.nodes[&4]
                .status()
                .await
                .unwrap()
                .applied
                > applied_now + 50
        }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let acknowledged = writers.await.unwrap();
    let mut cluster = Arc::into_inner(cluster).unwrap().into_inner();
    cluster.stop(removed).await;
    let status = cluster.nodes[&4].status().await.unwrap();
    assert!(status.membership.voters.contains(&4));
    assert!(!status.membership.contains(removed));
    let leader = cluster.wait_for_leader().await;
    for i in &acknowledged {
        let found = cluster.nodes[&leader]
            .read(Bytes::from(key(*i)))
            .await
            .unwrap();
        assert_eq!(found, value(*i), "acknowledged write {i} lost");
    }
    cluster.shutdown().await;
}

/// The runtime that started a node may shut down before `Node::stop`: the peer server goes
/// with it, the driver sees its inbox close and ends cleanly (it keeps its timers on a
/// runtime of its own), and the process goes on.
#[test]
fn dropping_the_runtime_before_stop_ends_the_node_without_a_panic() {
    let build = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    };
    let runtime = build();
    let cluster = runtime.block_on(async {
        let cluster = Cluster::start(&[1, 2, 3], 10_000).await;
        cluster.wait_for_leader().await;
        cluster.write(0).await;
        cluster
    });
    let common::Cluster {
        nodes, directory, ..
    } = cluster;
    drop(runtime);
    let runtime = build();
    runtime.block_on(async {
        for (id, node) in nodes {
            wait_for(&format!("node {id}'s driver to end"), || async {
                node.status().await == Err(NodeError::Stopped)
            })
            .await;
            assert_eq!(node.stop().await, Ok(()), "node {id} ended without a panic");
        }
    });
    drop(directory);
}

/// Any node accepts requests: a follower forwards proposals to the leader (and returns the
/// leader's output) and serves linearizable reads at an index the leader confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_forward_proposals_and_serve_linearizable_reads() {
    let cluster = Cluster::start(&[1, 2, 3], 10_000).await;
    let leader = cluster.wait_for_leader().await;
    let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    wait_for("followers to know the leader", || async {
        for id in &followers {
            let status = cluster.nodes[id].status().await.unwrap();
            if status.soft_state.leader != Some(leader) {
                return false;
            }
        }
        true
    })
    .await;
    let follower = &cluster.nodes[&followers[0]];
    let other = &cluster.nodes[&followers[1]];
    // The output is the key's previous value, computed by the application: the second
    // write through the follower sees the first.
    let first = MapApplication::set_command(b"forwarded", b"one");
    assert_eq!(follower.propose(first).await.unwrap(), Bytes::new());
    let second = MapApplication::set_command(b"forwarded", b"two");
    assert_eq!(follower.propose(second).await.unwrap(), &b"one"[..]);
    // A write acknowledged through one follower is seen at once by a read on the other:
    // the leader confirms an index that covers it, and the reader waits to apply it.
    for round in 0..20u64 {
        let value = format!("round-{round}");
        let command = MapApplication::set_command(b"register", value.as_bytes());
        let writer = if round % 2 == 0 {
            follower
        } else {
            &cluster.nodes[&leader]
        };
        writer.propose(command).await.unwrap();
        let read = other.read(Bytes::from_static(b"register")).await.unwrap();
        assert_eq!(read, value.as_bytes(), "round {round}");
    }
    cluster.shutdown().await;
}
