//! In-process clusters for the node tests: real tonic on 127.0.0.1 (ports from binding port
//! 0), real disk in temporary directories, and helpers that wait on conditions with
//! deadlines.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use conclave_consensus::{NodeId, Role};
use conclave_server::node::{Application, MapApplication, Node, NodeConfig, NodeError};
use conclave_transport::TransportConfig;

pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `condition` until it holds or the deadline passes.
pub async fn wait_for<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn key(i: u64) -> Vec<u8> {
    format!("key-{i:06}").into_bytes()
}

pub fn value(i: u64) -> Vec<u8> {
    format!("value-{i}").into_bytes()
}

pub struct Cluster {
    pub directory: tempfile::TempDir,
    pub addresses: BTreeMap<NodeId, String>,
    pub nodes: BTreeMap<NodeId, Node>,
    pub voters: Vec<NodeId>,
    pub snapshot_entries_threshold: u64,
    pub transport_config: TransportConfig,
    /// Builds each node's application (at start and at every restart).
    pub application: fn() -> Box<dyn Application>,
}

fn map_application() -> Box<dyn Application> {
    Box::new(MapApplication::default())
}

impl Cluster {
    pub async fn start(voters: &[NodeId], snapshot_entries_threshold: u64) -> Cluster {
        Cluster::start_with(voters, snapshot_entries_threshold, map_application).await
    }

    /// Starts a cluster whose nodes run the application `application` builds.
    pub async fn start_with(
        voters: &[NodeId],
        snapshot_entries_threshold: u64,
        application: fn() -> Box<dyn Application>,
    ) -> Cluster {
        let mut cluster = Cluster {
            directory: tempfile::tempdir().unwrap(),
            addresses: BTreeMap::new(),
            nodes: BTreeMap::new(),
            voters: voters.to_vec(),
            snapshot_entries_threshold,
            transport_config: TransportConfig::default(),
            application,
        };
        let mut listeners = BTreeMap::new();
        for id in voters {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            cluster
                .addresses
                .insert(*id, listener.local_addr().unwrap().to_string());
            listeners.insert(*id, listener);
        }
        for (id, listener) in listeners {
            cluster.launch(id, listener, voters.to_vec());
        }
        cluster
    }

    pub fn data_directory(&self, id: NodeId) -> PathBuf {
        self.directory.path().join(format!("node-{id}"))
    }

    pub fn config(&self, id: NodeId, bootstrap_voters: Vec<NodeId>) -> NodeConfig {
        let mut config = NodeConfig::new(id, self.data_directory(id));
        config.bootstrap_voters = bootstrap_voters;
        config.tick_interval_ms = 10;
        config.election_timeout_ticks = 15;
        config.heartbeat_interval_ticks = 3;
        config.time_tick_interval_ticks = 20;
        config.snapshot_entries_threshold = self.snapshot_entries_threshold;
        config
    }

    fn launch(&mut self, id: NodeId, listener: tokio::net::TcpListener, bootstrap: Vec<NodeId>) {
        let config = self.config(id, bootstrap);
        let node = Node::start_grpc(
            config,
            (self.application)(),
            listener,
            &self.addresses,
            self.transport_config.clone(),
        )
        .unwrap();
        self.nodes.insert(id, node);
    }

    /// Starts `id` again on its old address (after `stop`), from its data directory.
    pub async fn restart(&mut self, id: NodeId, bootstrap: Vec<NodeId>) {
        let address = self.addresses[&id].clone();
        let deadline = Instant::now() + DEADLINE;
        let listener = loop {
            match tokio::net::TcpListener::bind(&address).await {
                Ok(listener) => break listener,
                Err(error) => {
                    assert!(Instant::now() < deadline, "rebind {address}: {error}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        self.launch(id, listener, bootstrap);
    }

    /// Starts a new node that joins (empty membership) and tells every node its address.
    pub async fn start_joiner(&mut self, id: NodeId) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        for node in self.nodes.values() {
            node.add_peer_address(id, address.clone());
        }
        self.addresses.insert(id, address);
        self.launch(id, listener, Vec::new());
    }

    pub async fn stop(&mut self, id: NodeId) {
        if let Some(node) = self.nodes.remove(&id) {
            node.stop().await.unwrap();
        }
    }

    /// The leader of the highest term among running nodes, if one is known.
    pub async fn leader(&self) -> Option<NodeId> {
        let mut best: Option<(u64, NodeId)> = None;
        for (id, node) in &self.nodes {
            let Ok(status) = node.status().await else {
                continue;
            };
            if status.soft_state.role == Role::Leader
                && best.is_none_or(|(term, _)| status.hard_state.term > term)
            {
                best = Some((status.hard_state.term, *id));
            }
        }
        best.map(|(_, id)| id)
    }

    pub async fn wait_for_leader(&self) -> NodeId {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(leader) = self.leader().await {
                return leader;
            }
            assert!(Instant::now() < deadline, "no leader elected");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Writes `key(i) = value(i)` through whichever node leads, retrying until acknowledged.
    pub async fn write(&self, i: u64) {
        let deadline = Instant::now() + DEADLINE;
        let command = MapApplication::set_command(&key(i), &value(i));
        loop {
            let leader = self.leader().await;
            if let Some(node) = leader.and_then(|id| self.nodes.get(&id)) {
                match node.propose(command.clone()).await {
                    Ok(_) => return,
                    Err(NodeError::NotLeader { .. } | NodeError::Dropped | NodeError::Stopped) => {}
                    Err(NodeError::Refused(_)) => {}
                    Err(error) => panic!("write {i}: {error}"),
                }
            }
            assert!(Instant::now() < deadline, "write {i} never acknowledged");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until node `id` has applied every key in `range` with its value.
    pub async fn wait_for_keys(&self, id: NodeId, range: std::ops::Range<u64>) {
        let node = &self.nodes[&id];
        wait_for(&format!("node {id} to hold keys {range:?}"), || {
            let range = range.clone();
            async move {
                for i in range {
                    match node.query_local(Bytes::from(key(i))).await {
                        Ok((_, found)) if found == value(i) => {}
                        _ => return false,
                    }
                }
                true
            }
        })
        .await;
    }

    pub async fn shutdown(mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }
}
