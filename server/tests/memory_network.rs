//! A 3-node cluster over the in-memory network (no sockets): election, replication, and a
//! partitioned leader replaced by the majority side.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{key, value, wait_for};
use conclave_consensus::Role;
use conclave_server::node::{MapApplication, Node, NodeConfig};
use conclave_transport::MemoryNetwork;
use tokio::sync::mpsc;

async fn role(node: &Node) -> Role {
    node.status().await.unwrap().soft_state.role
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elects_replicates_and_survives_a_partitioned_leader() {
    let directory = tempfile::tempdir().unwrap();
    let network = MemoryNetwork::new();
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let (inbox, received) = mpsc::channel(1024);
        let transport = network.join(id, inbox);
        let mut config = NodeConfig::new(id, directory.path().join(id.to_string()));
        config.bootstrap_voters = vec![1, 2, 3];
        config.tick_interval_ms = 10;
        let application = Box::new(MapApplication::default());
        nodes.push(Node::start(config, application, Arc::new(transport), received).unwrap());
    }
    let find_leader = |excluded: Option<u64>| {
        let nodes = &nodes;
        async move {
            for node in nodes {
                if Some(node.id()) != excluded && role(node).await == Role::Leader {
                    return Some(node);
                }
            }
            None
        }
    };
    wait_for("a leader", || async { find_leader(None).await.is_some() }).await;
    let leader = find_leader(None).await.unwrap();
    for i in 0..20 {
        let command = MapApplication::set_command(&key(i), &value(i));
        leader.propose(command).await.unwrap();
    }
    let old = leader.id();
    network.isolate(old);
    wait_for("a leader on the majority side", || async {
        find_leader(Some(old)).await.is_some()
    })
    .await;
    let leader = find_leader(Some(old)).await.unwrap();
    assert_eq!(leader.read(Bytes::from(key(19))).await.unwrap(), value(19));
    leader
        .propose(MapApplication::set_command(b"after", b"partition"))
        .await
        .unwrap();
    network.heal();
    let rejoined = nodes.iter().find(|node| node.id() == old).unwrap();
    wait_for("the old leader to learn the new write", || async {
        rejoined
            .query_local(Bytes::from_static(b"after"))
            .await
            .unwrap()
            .1
            == "partition"
    })
    .await;
    for node in nodes {
        node.stop().await.unwrap();
    }
}

/// Forwarding works over the in-memory network too, and a follower cut off from the leader
/// reports that the outcome is unknown instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_forward_over_the_memory_network() {
    let directory = tempfile::tempdir().unwrap();
    let network = MemoryNetwork::new();
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let (inbox, received) = mpsc::channel(1024);
        let transport = network.join(id, inbox);
        let mut config = NodeConfig::new(id, directory.path().join(id.to_string()));
        config.bootstrap_voters = vec![1, 2, 3];
        config.tick_interval_ms = 10;
        // A follower cut off below keeps knowing the leader for a second: long enough for
        // its forwarded request to fail on the cut rather than for lack of a leader.
        config.election_timeout_ticks = 100;
        let application = Box::new(MapApplication::default());
        nodes.push(Node::start(config, application, Arc::new(transport), received).unwrap());
    }
    let known_leader = || async {
        let mut known = std::collections::BTreeSet::new();
        for node in &nodes {
            known.insert(node.status().await.unwrap().soft_state.leader);
        }
        match (known.len(), known.first()) {
            (1, Some(Some(leader))) => Some(*leader),
            _ => None,
        }
    };
    wait_for("a leader known to every node", || async {
        known_leader().await.is_some()
    })
    .await;
    let leader = known_leader().await.unwrap();
    let follower = nodes.iter().find(|node| node.id() != leader).unwrap();
    follower
        .propose(MapApplication::set_command(b"k", b"v"))
        .await
        .unwrap();
    assert_eq!(follower.read(Bytes::from_static(b"k")).await.unwrap(), "v");
    // Cut the follower off: its forwarded request cannot reach the leader.
    network.isolate(follower.id());
    let cut_off = follower
        .propose(MapApplication::set_command(b"k", b"w"))
        .await;
    assert_eq!(cut_off, Err(conclave_server::node::NodeError::Dropped));
    network.heal();
    for node in nodes {
        node.stop().await.unwrap();
    }
}
