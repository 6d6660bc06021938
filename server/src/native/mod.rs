//! The native gRPC frontend: `conclave.client.v1.Client` and `conclave.client.v1.Cluster`
//! (see `transport/proto/client.proto`) on top of the [`Gateway`].
//!
//! The frontend only translates: every session, command and query goes through the gateway
//! (which retries what certainly did not commit and forwards through the node), and every
//! failure becomes one gRPC status with an `ErrorCode` and, for `NotLeader`, the leader
//! hint. Bounds: the request size is the tonic decoding limit and the in-flight requests
//! per connection are tonic's per-connection concurrency limit, both set by
//! [`crate::server`] from [`NativeConfig`].

mod status;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use conclave_consensus::{MembershipChange, NodeId, Role, Status as CoreStatus};
use conclave_statemachines::{Entry, QueryRequest};
use conclave_transport::client_api as api;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

use crate::gateway::{Consistency, Gateway, SessionEvent};
use crate::machines::SessionApplication;
use crate::ops::Metrics;

/// The frontend's name in the request metrics.
const FRONTEND: &str = "native";

/// The bounds of the native frontend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeConfig {
    /// The largest request message accepted, in bytes; larger ones fail with
    /// RESOURCE_EXHAUSTED before they are decoded.
    pub request_bytes_max: usize,
    /// The most requests one connection may have in flight; further ones wait.
    pub requests_in_flight_per_connection_max: usize,
    /// How many event batches an Events stream buffers for a slow reader.
    pub event_batches_buffered_max: usize,
}

impl Default for NativeConfig {
    fn default() -> Self {
        NativeConfig {
            request_bytes_max: 4 * 1024 * 1024,
            requests_in_flight_per_connection_max: 256,
            event_batches_buffered_max: 256,
        }
    }
}

/// Where each member is reached, by node id; filled from the configuration's initial
/// cluster and by `AddLearner`. It is this node's knowledge, not replicated state.
#[derive(Debug, Clone, Default)]
pub struct AddressBook {
    members: Arc<RwLock<BTreeMap<NodeId, MemberAddresses>>>,
}

/// The addresses of one member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberAddresses {
    /// Where peers reach it.
    pub peer: String,
    /// Where clients reach it (empty when unknown).
    pub client: String,
}

impl AddressBook {
    /// Records (or replaces) member `id`'s addresses.
    pub fn insert(&self, id: NodeId, addresses: MemberAddresses) {
        self.write().insert(id, addresses);
    }

    /// Member `id`'s addresses, if known.
    pub fn get(&self, id: NodeId) -> Option<MemberAddresses> {
        self.read().get(&id).cloned()
    }

    /// Member `id`'s client address, if known.
    pub fn client_address(&self, id: NodeId) -> Option<String> {
        self.get(id)
            .map(|addresses| addresses.client)
            .filter(|address| !address.is_empty())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<NodeId, MemberAddresses>> {
        // A poisoned lock means a panic while inserting into a map of strings, which leaves
        // the map consistent: go on with it.
        self.members
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<NodeId, MemberAddresses>> {
        self.members
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The native service: implements both generated service traits.
#[derive(Debug, Clone)]
pub struct NativeService {
    gateway: Gateway,
    application: SessionApplication,
    addresses: AddressBook,
    metrics: Metrics,
    config: NativeConfig,
}

impl NativeService {
    /// The service over `gateway`; `application` is the node's application (a clone), from
    /// which backups are taken.
    pub fn new(
        gateway: Gateway,
        application: SessionApplication,
        addresses: AddressBook,
        metrics: Metrics,
        config: NativeConfig,
    ) -> NativeService {
        NativeService {
            gateway,
            application,
            addresses,
            metrics,
            config,
        }
    }

    /// The `Client` service, with the request size bound.
    pub fn client_server(&self) -> api::client_server::ClientServer<NativeService> {
        api::client_server::ClientServer::new(self.clone())
            .max_decoding_message_size(self.config.request_bytes_max)
    }

    /// The `Cluster` service, with the request size bound.
    pub fn cluster_server(&self) -> api::cluster_server::ClusterServer<NativeService> {
        api::cluster_server::ClusterServer::new(self.clone())
            .max_decoding_message_size(self.config.request_bytes_max)
    }

    /// Records the outcome of one call in the metrics and passes it on.
    fn observe<T>(
        &self,
        method: &'static str,
        started: Instant,
        result: Result<T, Status>,
    ) -> Result<Response<T>, Status> {
        self.metrics
            .observe_request(FRONTEND, method, result.is_ok(), started.elapsed());
        result.map(Response::new)
    }

    fn refuse(&self, error: crate::gateway::GatewayError) -> Status {
        status::gateway_status(error, &self.addresses)
    }

    async fn membership_change(
        &self,
        change: MembershipChange,
    ) -> Result<api::MembershipResponse, Status> {
        self.gateway
            .node()
            .change_membership(vec![change])
            .await
            .map_err(|error| self.refuse(error.into()))?;
        let core = self
            .gateway
            .status()
            .await
            .map_err(|error| self.refuse(error))?;
        Ok(api::MembershipResponse {
            members: self.members(&core),
        })
    }

    fn members(&self, core: &CoreStatus) -> Vec<api::Member> {
        let membership = &core.membership;
        let mut members = Vec::new();
        let groups = [
            (&membership.voters, api::MemberRole::Voter),
            (&membership.voters_outgoing, api::MemberRole::OutgoingVoter),
            (&membership.learners, api::MemberRole::Learner),
        ];
        for (ids, role) in groups {
            for id in ids {
                if role == api::MemberRole::OutgoingVoter && membership.voters.contains(id) {
                    continue;
                }
                let addresses = self.addresses.get(*id).unwrap_or_default();
                members.push(api::Member {
                    id: *id,
                    role: role as i32,
                    peer_address: addresses.peer,
                    client_address: addresses.client,
                });
            }
        }
        members
    }
}

fn consistency(value: i32) -> Result<Consistency, Status> {
    match api::Consistency::try_from(value) {
        Ok(api::Consistency::Unspecified | api::Consistency::Linearizable) => {
            Ok(Consistency::Linearizable)
        }
        Ok(api::Consistency::Lease) => Ok(Consistency::Lease),
        Ok(api::Consistency::Sequential) => Ok(Consistency::Sequential),
        Err(_) => Err(status::invalid_argument(format!(
            "unknown consistency {value} (use LINEARIZABLE, LEASE or SEQUENTIAL)"
        ))),
    }
}

fn role(role: Role) -> api::Role {
    match role {
        Role::Follower => api::Role::Follower,
        Role::PreCandidate => api::Role::PreCandidate,
        Role::Candidate => api::Role::Candidate,
        Role::Leader => api::Role::Leader,
    }
}

fn require_session(session: u64) -> Result<(), Status> {
    if session == 0 {
        return Err(status::invalid_argument("session must be non-zero"));
    }
    Ok(())
}

fn require_node_id(id: u64) -> Result<(), Status> {
    if id == 0 {
        return Err(status::invalid_argument("node id must be non-zero"));
    }
    Ok(())
}

/// The item type of the server streams.
type StreamOf<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl api::client_server::Client for NativeService {
    async fn open_session(
        &self,
        request: Request<api::OpenSessionRequest>,
    ) -> Result<Response<api::OpenSessionResponse>, Status> {
        let started = Instant::now();
        let timeout_ms = request.into_inner().timeout_ms;
        let result = self
            .gateway
            .open_session(timeout_ms)
            .await
            .map(|(session, timeout_ms)| api::OpenSessionResponse {
                session,
                timeout_ms,
            })
            .map_err(|error| self.refuse(error));
        self.observe("open_session", started, result)
    }

    async fn keep_alive(
        &self,
        request: Request<api::KeepAliveRequest>,
    ) -> Result<Response<api::KeepAliveResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let result = match require_session(request.session) {
            Err(refused) => Err(refused),
            Ok(()) => self
                .gateway
                .keep_alive(
                    request.session,
                    request.command_sequence_acknowledged,
                    request.event_index_acknowledged,
                )
                .await
                .map(|event_index_last| api::KeepAliveResponse { event_index_last })
                .map_err(|error| self.refuse(error)),
        };
        self.observe("keep_alive", started, result)
    }

    async fn close_session(
        &self,
        request: Request<api::CloseSessionRequest>,
    ) -> Result<Response<api::CloseSessionResponse>, Status> {
        let started = Instant::now();
        let session = request.into_inner().session;
        let result = match require_session(session) {
            Err(refused) => Err(refused),
            Ok(()) => self
                .gateway
                .close_session(session)
                .await
                .map(|()| api::CloseSessionResponse {})
                .map_err(|error| self.refuse(error)),
        };
        self.observe("close_session", started, result)
    }

    async fn command(
        &self,
        request: Request<api::CommandRequest>,
    ) -> Result<Response<api::CommandResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let result = self.command_inner(request).await;
        self.observe("command", started, result)
    }

    async fn query(
        &self,
        request: Request<api::QueryRequest>,
    ) -> Result<Response<api::QueryResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let result = self.query_inner(request).await;
        self.observe("query", started, result)
    }

    type EventsStream = StreamOf<api::EventsResponse>;

    async fn events(
        &self,
        request: Request<api::EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let result = self.events_inner(request).await;
        self.observe("events", started, result)
    }
}

impl NativeService {
    async fn command_inner(
        &self,
        request: api::CommandRequest,
    ) -> Result<api::CommandResponse, Status> {
        require_session(request.session)?;
        if request.sequence == 0 {
            return Err(status::invalid_argument(
                "sequence must be at least 1 (sequence numbers start at 1)",
            ));
        }
        let entry = Entry::Command {
            session: request.session,
            sequence: request.sequence,
            machine_name: request.machine_name,
            machine_type: request.machine_type,
            payload: request.payload.to_vec(),
        };
        let answer = self
            .gateway
            .command(&entry)
            .await
            .map_err(|error| self.refuse(error))?;
        let result = match answer.result {
            Ok(output) => api::command_response::Result::Output(output.into()),
            Err(error) => api::command_response::Result::Error(status::command_error(&error)),
        };
        Ok(api::CommandResponse {
            index: answer.index,
            result: Some(result),
        })
    }

    async fn query_inner(&self, request: api::QueryRequest) -> Result<api::QueryResponse, Status> {
        let consistency = consistency(request.consistency)?;
        let query = QueryRequest {
            session: (request.session != 0).then_some(request.session),
            index_seen: request.index_seen,
            machine_name: request.machine_name,
            machine_type: request.machine_type,
            payload: request.payload.to_vec(),
        };
        let answer = self
            .gateway
            .query(&query, consistency)
            .await
            .map_err(|error| self.refuse(error))?;
        Ok(api::QueryResponse {
            index_applied: answer.index_applied.unwrap_or(0),
            output: answer.output.into(),
        })
    }

    async fn events_inner(
        &self,
        request: api::EventsRequest,
    ) -> Result<StreamOf<api::EventsResponse>, Status> {
        require_session(request.session)?;
        let mut events = self
            .gateway
            .subscribe(request.session)
            .await
            .map_err(|error| self.refuse(error))?;
        let (sender, receiver) = mpsc::channel(self.config.event_batches_buffered_max);
        let acknowledged = request.event_index_acknowledged;
        tokio::spawn(async move {
            loop {
                let item = match events.recv().await {
                    Some(SessionEvent::Batch(batch)) if batch.index <= acknowledged => continue,
                    Some(SessionEvent::Batch(batch)) => {
                        api::events_response::Item::Batch(api::EventBatch {
                            index: batch.index,
                            events: batch
                                .events
                                .into_iter()
                                .map(|event| api::Event {
                                    machine_name: event.machine_name,
                                    payload: event.payload.into(),
                                })
                                .collect(),
                        })
                    }
                    Some(SessionEvent::Expired) => {
                        let expired = api::events_response::Item::Expired(api::SessionExpired {});
                        let _ = sender
                            .send(Ok(api::EventsResponse {
                                item: Some(expired),
                            }))
                            .await;
                        return;
                    }
                    None => {
                        // The gateway dropped this subscription: another Events call took
                        // the session's stream, or this reader fell too far behind.
                        let _ = sender
                            .send(Err(status::status(
                                Code::Unavailable,
                                api::ErrorCode::ResourceExhausted,
                                "the event stream was replaced by a newer Events call or fell \
                                 behind; call Events again with the last index received",
                            )))
                            .await;
                        return;
                    }
                };
                let response = api::EventsResponse { item: Some(item) };
                if sender.send(Ok(response)).await.is_err() {
                    // The client went away; its next Events call resends what it did not
                    // acknowledge.
                    return;
                }
            }
        });
        Ok(Box::pin(ReceiverStream::new(receiver)))
    }
}

#[tonic::async_trait]
impl api::cluster_server::Cluster for NativeService {
    async fn status(
        &self,
        _request: Request<api::StatusRequest>,
    ) -> Result<Response<api::StatusResponse>, Status> {
        let started = Instant::now();
        let result = match self.gateway.status().await {
            Err(error) => Err(self.refuse(error)),
            Ok(core) => {
                let leader_id = core.soft_state.leader.unwrap_or(0);
                Ok(api::StatusResponse {
                    id: core.id,
                    role: role(core.soft_state.role) as i32,
                    leader_id,
                    leader_client_address: self
                        .addresses
                        .client_address(leader_id)
                        .unwrap_or_default(),
                    term: core.hard_state.term,
                    commit_index: core.hard_state.commit,
                    applied_index: core.applied,
                    last_index: core.last_index,
                    members: self.members(&core),
                })
            }
        };
        self.observe("status", started, result)
    }

    async fn add_learner(
        &self,
        request: Request<api::AddLearnerRequest>,
    ) -> Result<Response<api::MembershipResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let result = async {
            require_node_id(request.id)?;
            if request.peer_address.is_empty() {
                return Err(status::invalid_argument(
                    "peer_address is required (host:port)",
                ));
            }
            self.gateway
                .node()
                .add_peer_address(request.id, request.peer_address.clone());
            self.addresses.insert(
                request.id,
                MemberAddresses {
                    peer: request.peer_address,
                    client: request.client_address,
                },
            );
            self.membership_change(MembershipChange::AddLearner(request.id))
                .await
        }
        .await;
        self.observe("add_learner", started, result)
    }

    async fn promote(
        &self,
        request: Request<api::PromoteRequest>,
    ) -> Result<Response<api::MembershipResponse>, Status> {
        let started = Instant::now();
        let id = request.into_inner().id;
        let result = match require_node_id(id) {
            Err(refused) => Err(refused),
            Ok(()) => self.membership_change(MembershipChange::AddVoter(id)).await,
        };
        self.observe("promote", started, result)
    }

    async fn remove(
        &self,
        request: Request<api::RemoveRequest>,
    ) -> Result<Response<api::MembershipResponse>, Status> {
        let started = Instant::now();
        let id = request.into_inner().id;
        let result = match require_node_id(id) {
            Err(refused) => Err(refused),
            Ok(()) => self.membership_change(MembershipChange::Remove(id)).await,
        };
        self.observe("remove", started, result)
    }

    async fn transfer_leader(
        &self,
        request: Request<api::TransferLeaderRequest>,
    ) -> Result<Response<api::TransferLeaderResponse>, Status> {
        let started = Instant::now();
        let id = request.into_inner().id;
        let result = match require_node_id(id) {
            Err(refused) => Err(refused),
            Ok(()) => self
                .gateway
                .node()
                .transfer_leadership(id)
                .await
                .map(|()| api::TransferLeaderResponse {})
                .map_err(|error| self.refuse(error.into())),
        };
        self.observe("transfer_leader", started, result)
    }

    type SnapshotStream = StreamOf<api::SnapshotChunk>;

    async fn snapshot(
        &self,
        _request: Request<api::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let started = Instant::now();
        let result = self.snapshot_inner().await;
        self.observe("snapshot", started, result)
    }
}

/// The size of one chunk of a backup.
const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

impl NativeService {
    /// Serializes the session layer and every machine as the local replica has applied
    /// them, on the layer's thread, so the backup is one consistent state at one index.
    async fn snapshot_inner(&self) -> Result<StreamOf<api::SnapshotChunk>, Status> {
        let core = self
            .gateway
            .status()
            .await
            .map_err(|error| self.refuse(error))?;
        let application = self.application.clone();
        let taken = tokio::task::spawn_blocking(move || {
            application.with_layer(|layer| {
                let mut bytes = Vec::new();
                layer
                    .snapshot(&mut bytes)
                    .map(|()| (layer.index_applied(), bytes))
            })
        })
        .await
        .map_err(|error| {
            status::status(Code::Internal, api::ErrorCode::Internal, error.to_string())
        })?;
        let (index, bytes) = taken.map_err(|error| {
            status::status(
                Code::Internal,
                api::ErrorCode::Internal,
                format!("snapshot failed: {error}"),
            )
        })?;
        let crc32 = crc32fast::hash(&bytes);
        let size_bytes = bytes.len() as u64;
        let bytes = bytes::Bytes::from(bytes);
        let mut chunks = Vec::new();
        let mut offset = 0;
        loop {
            let end = (offset + SNAPSHOT_CHUNK_BYTES).min(bytes.len());
            let last = end == bytes.len();
            chunks.push(Ok(api::SnapshotChunk {
                index,
                term: core.hard_state.term,
                offset: offset as u64,
                data: bytes.slice(offset..end),
                last,
                size_bytes: if last { size_bytes } else { 0 },
                crc32: if last { crc32 } else { 0 },
            }));
            if last {
                break;
            }
            offset = end;
        }
        Ok(Box::pin(tokio_stream::iter(chunks)))
    }
}
