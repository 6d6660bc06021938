//! A cluster under test: the node processes, the proxy on every link, and the admin calls
//! (status, membership, leadership transfer) the nemesis needs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use conclave_transport::client_api::cluster_client::ClusterClient;
use conclave_transport::client_api::{
    AddLearnerRequest, PromoteRequest, RemoveRequest, Role, StatusRequest, StatusResponse,
    TransferLeaderRequest,
};
use tonic::transport::{Channel, Endpoint};

use super::HarnessError;
use super::process::{CommandTemplate, NodeLayout, Processes, free_port};
use super::proxy::{CLIENTS, Link, Proxy};

/// How long one admin call may take before the node counts as unreachable.
const ADMIN_CALL_TIMEOUT: Duration = Duration::from_millis(1_000);

/// The processes and proxies of a cluster.
pub struct Cluster {
    /// The node processes.
    pub processes: Processes,
    /// The proxy of every link.
    pub proxy: Proxy,
}

impl Cluster {
    /// Lays out `node_count` nodes under `folder` (data in `folder/data/n<id>`, logs in
    /// `folder/nodes/n<id>.log`), starts the proxies, and prepares (does not start) the
    /// processes.
    pub async fn prepare(
        node_count: u64,
        template: CommandTemplate,
        folder: &Path,
    ) -> Result<Self, HarnessError> {
        if !(1..=9).contains(&node_count) {
            return Err(HarnessError::Config(format!(
                "node count {node_count} is outside 1..=9"
            )));
        }
        let ids: Vec<u64> = (1..=node_count).collect();
        let mut listens = BTreeMap::new();
        for &id in &ids {
            let client: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
            let peer: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
            listens.insert(id, (client, peer));
        }
        let mut links: Vec<(Link, SocketAddr)> = Vec::new();
        for &to in &ids {
            let (client, peer) = listens[&to];
            links.push(((CLIENTS, to), client));
            for &from in ids.iter().filter(|&&from| from != to) {
                links.push(((from, to), peer));
            }
        }
        let proxy = Proxy::start(&links).await?;
        let clients_via_proxy: BTreeMap<u64, SocketAddr> = ids
            .iter()
            .filter_map(|&id| proxy.address((CLIENTS, id)).map(|address| (id, address)))
            .collect();
        let layouts = ids
            .iter()
            .map(|&id| NodeLayout {
                id,
                data_dir: folder.join("data").join(format!("n{id}")),
                log_path: folder.join("nodes").join(format!("n{id}.log")),
                client_listen: listens[&id].0,
                peer_listen: listens[&id].1,
                peers_via_proxy: ids
                    .iter()
                    .filter(|&&other| other != id)
                    .filter_map(|&other| proxy.address((id, other)).map(|address| (other, address)))
                    .collect(),
                clients_via_proxy: clients_via_proxy.clone(),
            })
            .collect();
        let processes = Processes::new(template, layouts)?;
        Ok(Self { processes, proxy })
    }

    /// Every node id.
    pub fn ids(&self) -> Vec<u64> {
        self.processes.ids()
    }

    /// The address workers use for node `id`: through the proxy, so partitions can cut it.
    pub fn client_address(&self, id: u64) -> Result<SocketAddr, HarnessError> {
        self.proxy
            .address((CLIENTS, id))
            .ok_or(HarnessError::UnknownNode(id))
    }

    /// The address the harness's own admin calls use: straight to the node, so that the
    /// harness can find the leader through any partition.
    pub fn admin_address(&self, id: u64) -> Result<SocketAddr, HarnessError> {
        Ok(self.processes.layout(id)?.client_listen)
    }

    async fn admin_client(&self, id: u64) -> Option<ClusterClient<Channel>> {
        let address = self.admin_address(id).ok()?;
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .ok()?
            .connect_timeout(ADMIN_CALL_TIMEOUT)
            .timeout(ADMIN_CALL_TIMEOUT);
        let channel = endpoint.connect().await.ok()?;
        Some(ClusterClient::new(channel))
    }

    /// Node `id`'s status, or `None` when it does not answer in time (down or paused).
    pub async fn status(&self, id: u64) -> Option<StatusResponse> {
        if self.processes.is_paused(id) {
            return None;
        }
        let mut client = self.admin_client(id).await?;
        let call = client.status(StatusRequest {});
        let response = tokio::time::timeout(ADMIN_CALL_TIMEOUT, call)
            .await
            .ok()?
            .ok()?;
        Some(response.into_inner())
    }

    /// The leader of the highest term that some node reports itself as leader of.
    pub async fn leader(&self) -> Option<u64> {
        let mut best: Option<(u64, u64)> = None;
        for id in self.ids() {
            if let Some(status) = self.status(id).await
                && status.role == Role::Leader as i32
                && best.is_none_or(|(term, _)| status.term > term)
            {
                best = Some((status.term, id));
            }
        }
        best.map(|(_, id)| id)
    }

    /// Waits until some node is leader and every running node answers, or the deadline.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u64, HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(leader) = self.leader().await {
                return Ok(leader);
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout("a leader".to_string()));
            }
            // Polling at a fraction of an election timeout finds a new leader promptly
            // without loading the nodes.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Removes node `id` from the voters, through the leader.
    pub async fn remove_member(&self, id: u64) -> Result<(), HarnessError> {
        let leader = self.require_leader().await?;
        let mut client = self.require_admin(leader).await?;
        client
            .remove(RemoveRequest { id })
            .await
            .map_err(|status| HarnessError::Config(format!("remove {id}: {status}")))?;
        Ok(())
    }

    /// Adds node `id` back: as a learner, then promoted to voter.
    pub async fn add_member(&self, id: u64) -> Result<(), HarnessError> {
        let layout = self.processes.layout(id)?;
        let leader = self.require_leader().await?;
        // The leader reaches the new member through its own proxy link.
        let peer_address = self
            .proxy
            .address((leader, id))
            .map_or(layout.peer_listen.to_string(), |address| {
                address.to_string()
            });
        let client_address = self.client_address(id)?.to_string();
        let mut client = self.require_admin(leader).await?;
        client
            .add_learner(AddLearnerRequest {
                id,
                peer_address,
                client_address,
            })
            .await
            .map_err(|status| HarnessError::Config(format!("add learner {id}: {status}")))?;
        client
            .promote(PromoteRequest { id })
            .await
            .map_err(|status| HarnessError::Config(format!("promote {id}: {status}")))?;
        Ok(())
    }

    /// Asks the leader to hand leadership to `target`.
    pub async fn transfer_leader(&self, target: u64) -> Result<(), HarnessError> {
        let leader = self.require_leader().await?;
        let mut client = self.require_admin(leader).await?;
        client
            .transfer_leader(TransferLeaderRequest { id: target })
            .await
            .map_err(|status| HarnessError::Config(format!("transfer to {target}: {status}")))?;
        Ok(())
    }

    async fn require_leader(&self) -> Result<u64, HarnessError> {
        self.leader()
            .await
            .ok_or_else(|| HarnessError::Timeout("a leader for an admin call".to_string()))
    }

    async fn require_admin(&self, id: u64) -> Result<ClusterClient<Channel>, HarnessError> {
        self.admin_client(id)
            .await
            .ok_or_else(|| HarnessError::Timeout(format!("node {id}'s admin API")))
    }
}
