//! [`Node`]: the handle through which clients, tests and frontends use a running node.
//!
//! Any node accepts requests. A proposal or linearizable read made on a follower is
//! forwarded to the leader it knows: the command over the transport's `Forward` call (the
//! leader replicates it and answers with the output), the read as a ReadIndex (the leader
//! confirms its commit index with a quorum and answers with it; the follower serves the
//! read once it has applied that index, as etcd-raft does). One hop only: a node that is
//! no longer the leader answers `NotLeader`, which reaches the caller.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use conclave_consensus::{Membership, MembershipChange, Message, NodeId, Status};
use conclave_transport::{
    ForwardError, ForwardFuture, ForwardHandler, ForwardRequest, Forwarded, GrpcTransport,
    Transport, TransportConfig,
};
use tokio::sync::{mpsc, oneshot};

use crate::node::application::Application;
use crate::node::apply::Applier;
use crate::node::config::NodeConfig;
use crate::node::driver::{Channels, Driver, Request};
use crate::node::error::NodeError;
use crate::node::storage::LogStorage;

/// A running node. Dropping it stops the driver (without waiting); [`Node::stop`] waits.
pub struct Node {
    id: NodeId,
    requests: mpsc::Sender<Request>,
    transport: Arc<dyn Transport>,
    /// Carries out the requests followers forward to this node.
    forwarder: Arc<Forwarder>,
    driver: Option<JoinHandle<Result<(), NodeError>>>,
    server_stop: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Node")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Opens the node's storage and starts its driver thread. `inbox` receives the messages
    /// that `transport`'s server side delivers for this node. The driver keeps its timers on
    /// a runtime of its own; when `inbox` closes (the runtime that delivered it shut down),
    /// the driver ends.
    pub fn start(
        config: NodeConfig,
        application: Box<dyn Application>,
        transport: Arc<dyn Transport>,
        inbox: mpsc::Receiver<Message>,
    ) -> Result<Node, NodeError> {
        config.validate()?;
        let bootstrap = if config.bootstrap_voters.is_empty() {
            Membership::default()
        } else {
            Membership::with_voters(config.bootstrap_voters.iter().copied())
        };
        let storage = LogStorage::open(&config.data_directory, bootstrap)?;
        let (requests, request_receiver) = mpsc::channel(config.request_queue_max);
        let id = config.id;
        let (work, work_receiver) = std::sync::mpsc::sync_channel(config.apply_queue_batches_max);
        let (taken, taken_receiver) = mpsc::unbounded_channel();
        let thresholds = (
            config.snapshot_entries_threshold,
            config.snapshot_bytes_threshold,
        );
        let applier = Applier::new(application, storage.current_snapshot(), thresholds, taken)?;
        let channels = Channels {
            inbox,
            requests: request_receiver,
            work,
            taken: taken_receiver,
        };
        let driver = Driver::new(config, storage, transport.clone(), channels)?;
        let apply_thread = std::thread::Builder::new()
            .name(format!("conclave-apply-{id}"))
            .spawn(move || applier.run(work_receiver))
            .map_err(|error| NodeError::Storage(format!("spawn apply task: {error}")))?;
        let driver = std::thread::Builder::new()
            .name(format!("conclave-node-{id}"))
            .spawn(move || {
                let result = driver.run();
                // The driver dropped the apply queue: the apply task answers its waiters.
                let applied = apply_thread.join().map_err(|_| NodeError::Stopped);
                result.and(applied.and_then(|inner| inner))
            })
            .map_err(|error| NodeError::Storage(format!("spawn driver: {error}")))?;
        let forwarder = Arc::new(Forwarder {
            requests: requests.downgrade(),
        });
        transport.set_forward_handler(forwarder.clone());
        Ok(Node {
            id,
            requests,
            transport,
            forwarder,
            driver: Some(driver),
            server_stop: None,
        })
    }

    /// Starts a node that talks gRPC: serves the peer protocol on `listener` and reaches the
    /// peers at `peers` (id to `host:port`).
    pub fn start_grpc(
        config: NodeConfig,
        application: Box<dyn Application>,
        listener: tokio::net::TcpListener,
        peers: &BTreeMap<NodeId, String>,
        transport_config: TransportConfig,
    ) -> Result<Node, NodeError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NodeError::Config {
            field: "runtime",
            reason: "start inside tokio".into(),
        })?;
        let transport = GrpcTransport::new(config.id, transport_config.clone(), runtime.clone())
            .map_err(|error| NodeError::Config {
                field: "transport",
                reason: error.to_string(),
            })?;
        for (id, address) in peers {
            if *id != config.id {
                transport.add_peer(*id, address.clone());
            }
        }
        let (inbox, inbox_receiver) = mpsc::channel(config.inbox_messages_max);
        let (server_stop, stopped) = oneshot::channel::<()>();
        let id = config.id;
        let mut node = Node::start(config, application, Arc::new(transport), inbox_receiver)?;
        let handler: Arc<dyn ForwardHandler> = node.forwarder.clone();
        runtime.spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            let serving = conclave_transport::serve_with_forwarding(
                listener,
                id,
                inbox,
                handler,
                transport_config,
                shutdown,
            );
            if let Err(error) = serving.await {
                tracing::error!(node = id, %error, "peer server failed");
            }
        });
        node.server_stop = Some(server_stop);
        Ok(node)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Tells the transport where peer `id` is reached (before adding it to the cluster).
    pub fn add_peer_address(&self, id: NodeId, address: String) {
        self.transport.add_peer(id, address);
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, NodeError>>) -> Request,
    ) -> Result<T, NodeError> {
        ask(&self.requests, make).await
    }

    /// Replicates `command` and returns the application's output once it is applied (here,
    /// or on the leader when this node is a follower and forwards it). On a follower that
    /// knows no leader: `NotLeader { leader: None }`. When forwarding fails on the way, the
    /// outcome is unknown: `Dropped` (retry through the session layer for exactly-once).
    pub async fn propose(&self, command: Bytes) -> Result<Bytes, NodeError> {
        match self
            .ask(|reply| Request::Propose(command.clone(), reply))
            .await
        {
            Err(NodeError::NotLeader {
                leader: Some(leader),
            }) if leader != self.id => {
                let forwarded = self
                    .transport
                    .forward(leader, ForwardRequest::Propose(command))
                    .await;
                match forwarded.map_err(node_error)? {
                    Forwarded::Output(output) => Ok(output),
                    Forwarded::ReadIndex(_) => Err(NodeError::Dropped),
                }
            }
            other => other,
        }
    }

    /// A linearizable read: confirms leadership with a quorum (batched with other reads),
    /// waits until that index is applied, then queries the application. On a follower, the
    /// leader confirms the index (a forwarded ReadIndex) and this node serves the read once
    /// it has applied that index.
    pub async fn read(&self, query: Bytes) -> Result<Bytes, NodeError> {
        match self.ask(|reply| Request::Read(query.clone(), reply)).await {
            Err(NodeError::NotLeader {
                leader: Some(leader),
            }) if leader != self.id => {
                let forwarded = self
                    .transport
                    .forward(leader, ForwardRequest::ReadIndex)
                    .await;
                let index = match forwarded.map_err(node_error)? {
                    Forwarded::ReadIndex(index) => index,
                    Forwarded::Output(_) => return Err(NodeError::Dropped),
                };
                self.ask(|reply| Request::ReadAt(index, query, reply)).await
            }
            other => other,
        }
    }

    /// Proposes a membership change; returns once its entry is applied on this node.
    pub async fn change_membership(&self, changes: Vec<MembershipChange>) -> Result<(), NodeError> {
        self.ask(|reply| Request::ChangeMembership(changes, reply))
            .await
    }

    /// Asks the leader to hand leadership to `target`.
    pub async fn transfer_leadership(&self, target: NodeId) -> Result<(), NodeError> {
        self.ask(|reply| Request::TransferLeadership(target, reply))
            .await
    }

    /// A sequential read of this replica's applied state: returns the applied index and the
    /// application's answer. It may be stale but never goes backwards on this replica.
    pub async fn query_local(&self, query: Bytes) -> Result<(u64, Bytes), NodeError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::LocalQuery(query, reply))
            .await
            .map_err(|_| NodeError::Stopped)?;
        answer.await.map_err(|_| NodeError::Stopped)
    }

    /// The core's status.
    pub async fn status(&self) -> Result<Status, NodeError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Status(reply))
            .await
            .map_err(|_| NodeError::Stopped)?;
        answer.await.map_err(|_| NodeError::Stopped)
    }

    /// Stops the driver after its current batch and the peer server, and waits for both.
    pub async fn stop(mut self) -> Result<(), NodeError> {
        let _ = self.requests.send(Request::Stop).await;
        if let Some(stop) = self.server_stop.take() {
            let _ = stop.send(());
        }
        match self.driver.take() {
            Some(driver) => tokio::task::spawn_blocking(move || driver.join())
                .await
                .map_err(|_| NodeError::Stopped)?
                .map_err(|_| NodeError::Stopped)?,
            None => Ok(()),
        }
    }
}

async fn ask<T>(
    requests: &mpsc::Sender<Request>,
    make: impl FnOnce(oneshot::Sender<Result<T, NodeError>>) -> Request,
) -> Result<T, NodeError> {
    let (reply, answer) = oneshot::channel();
    requests
        .send(make(reply))
        .await
        .map_err(|_| NodeError::Stopped)?;
    answer.await.map_err(|_| NodeError::Stopped)?
}

/// What a forwarding failure means to the caller on the follower.
fn node_error(error: ForwardError) -> NodeError {
    match error {
        ForwardError::NotLeader { leader } => NodeError::NotLeader { leader },
        ForwardError::Refused(reason) => NodeError::Refused(reason),
        // The request may or may not have been carried out.
        ForwardError::Dropped | ForwardError::Stopped | ForwardError::Unreachable(_) => {
            NodeError::Dropped
        }
    }
}

/// What a failure on the leader means to the follower that forwarded the request.
fn forward_error(error: NodeError) -> ForwardError {
    match error {
        NodeError::NotLeader { leader } => ForwardError::NotLeader { leader },
        NodeError::Dropped => ForwardError::Dropped,
        NodeError::Refused(reason) => ForwardError::Refused(reason),
        NodeError::Stopped | NodeError::Storage(_) => ForwardError::Stopped,
        other @ (NodeError::Config { .. } | NodeError::Application(_)) => {
            ForwardError::Refused(other.to_string())
        }
    }
}

/// Carries out forwarded requests on this node only (it never forwards again). It holds a
/// weak sender, so that it does not keep the driver's queue open after the node is gone.
struct Forwarder {
    requests: mpsc::WeakSender<Request>,
}

impl ForwardHandler for Forwarder {
    fn handle(&self, _from: NodeId, request: ForwardRequest) -> ForwardFuture {
        let requests = self.requests.upgrade();
        Box::pin(async move {
            let Some(requests) = requests else {
                return Err(ForwardError::Stopped);
            };
            let result = match request {
                ForwardRequest::Propose(command) => {
                    ask(&requests, |reply| Request::Propose(command, reply))
                        .await
                        .map(Forwarded::Output)
                }
                ForwardRequest::ReadIndex => ask(&requests, Request::ReadIndex)
                    .await
                    .map(Forwarded::ReadIndex),
            };
            result.map_err(forward_error)
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.requests.try_send(Request::Stop);
        if let Some(stop) = self.server_stop.take() {
            let _ = stop.send(());
        }
    }
}
