//! The etcd v3 frontend: etcd's gRPC API (etcdserverpb KV, Watch, Lease, Cluster,
//! Maintenance; v3lockpb Lock; v3electionpb Election; grpc.health.v1 Health) served over the
//! [`Gateway`], so that etcdctl, the etcd-client crate and python etcd3 work unchanged.
//!
//! The frontend translates and nothing else: the kv machine (one named machine, by default
//! `etcd`) already has etcd's MVCC semantics, leases and error strings, so each call maps onto
//! one kv command or query, and each kv error onto the gRPC status etcd returns for it
//! ([`status`]). Locks and elections are etcd's client-side recipes run on the server over
//! the same kv machine (keys `name/<lease id in hex>`), so that they interoperate with
//! clients that run the recipes themselves.
//!
//! Entry point: [`serve`].

mod cluster;
mod convert;
mod kv;
mod lease;
mod lock;
mod status;
mod watch;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use conclave_consensus::NodeId;
use conclave_statemachines::kv::{KvCommand, KvError, KvOutput, KvQuery, KvResponse};
use conclave_statemachines::{QueryRequest, codec};
use tokio_stream::wrappers::TcpListenerStream;

use crate::gateway::{Consistency, Gateway, GatewayError};

pub use status::status_of_kv_error;

/// The generated etcd v3 API (messages, servers and clients), from `proto/etcd/`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    /// mvccpb: key-values and watch events.
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    /// etcdserverpb: the KV, Watch, Lease, Cluster and Maintenance services.
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
    /// v3lockpb: the Lock service.
    pub mod v3lockpb {
        tonic::include_proto!("v3lockpb");
    }
    /// v3electionpb: the Election service.
    pub mod v3electionpb {
        tonic::include_proto!("v3electionpb");
    }
}

/// The type name of the kv machine in the registry.
const KV_MACHINE_TYPE: &str = "kv";

/// The bounds and identity of the etcd frontend; [`EtcdConfig::validate`] checks them.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// The name of the kv machine that holds the etcd keyspace.
    pub kv_machine_name: String,
    /// The cluster id reported in every response header.
    pub cluster_id: u64,
    /// The member's name in member lists.
    pub member_name: String,
    /// The client URLs of every member (for MemberList and `endpoint status --cluster`), by
    /// node id; a member without an entry is listed without client URLs.
    pub member_client_urls: BTreeMap<NodeId, Vec<String>>,
    /// The peer URLs of every member, by node id.
    pub member_peer_urls: BTreeMap<NodeId, Vec<String>>,
    /// The largest request etcd accepts (`--max-request-bytes`, 1.5 MiB by default); gRPC
    /// messages may be `grpc_overhead_bytes` larger before the transport refuses them.
    pub request_bytes_max: usize,
    /// The allowance above `request_bytes_max` for gRPC framing (etcd uses 512 KiB).
    pub grpc_overhead_bytes: usize,
    /// The largest watch response sent whole when the watch asked for fragments; larger
    /// revisions are split into several responses.
    pub watch_response_bytes_max: usize,
    /// How often a watch created with `progress_notify` receives an empty progress
    /// response when it had no events (etcd: 10 minutes).
    pub watch_progress_notify_interval: Duration,
    /// The timeout, in log-time milliseconds, of the server-side session that owns the
    /// watches of one stream (and of each waiting lock or campaign).
    pub watch_session_timeout_ms: u64,
    /// How many watches one Watch stream may hold.
    pub watches_per_stream_max: usize,
    /// The version reported by Maintenance.Status (etcdctl prints it).
    pub version: String,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            kv_machine_name: "etcd".to_string(),
            cluster_id: 0x00c0_9c1a_7e00_0001,
            member_name: String::new(),
            member_client_urls: BTreeMap::new(),
            member_peer_urls: BTreeMap::new(),
            request_bytes_max: 1_572_864,
            grpc_overhead_bytes: 524_288,
            watch_response_bytes_max: 1_572_864,
            watch_progress_notify_interval: Duration::from_secs(600),
            watch_session_timeout_ms: 10_000,
            watches_per_stream_max: 10_000,
            version: "3.5.0".to_string(),
        }
    }
}

impl EtcdConfig {
    /// Refuses bounds that cannot work.
    pub fn validate(&self) -> Result<(), EtcdError> {
        let refuse = |field: &'static str, reason: &str| {
            Err(EtcdError::Config {
                field,
                reason: reason.to_string(),
            })
        };
        if self.kv_machine_name.is_empty() {
            return refuse("kv_machine_name", "must not be empty");
        }
        if self.request_bytes_max < 1_024 {
            return refuse("request_bytes_max", "must be at least 1024");
        }
        if self.watch_response_bytes_max < 1_024 {
            return refuse("watch_response_bytes_max", "must be at least 1024");
        }
        if self.watch_progress_notify_interval < Duration::from_millis(10) {
            return refuse("watch_progress_notify_interval", "must be at least 10 ms");
        }
        if self.watch_session_timeout_ms < 300 {
            return refuse("watch_session_timeout_ms", "must be at least 300");
        }
        if self.watches_per_stream_max == 0 {
            return refuse("watches_per_stream_max", "must be at least 1");
        }
        Ok(())
    }
}

/// Why the etcd frontend could not serve.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// A configuration field is out of range.
    #[error("invalid etcd config field {field}: {reason}")]
    Config {
        /// The field's name.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// The gRPC server failed.
    #[error("etcd gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves etcd's v3 API on `listener` through `gateway` until `shutdown` completes.
pub async fn serve(
    gateway: Gateway,
    listener: tokio::net::TcpListener,
    config: EtcdConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), EtcdError> {
    config.validate()?;
    let backend = Backend::new(gateway, config);
    let message_bytes_max = backend.config.request_bytes_max + backend.config.grpc_overhead_bytes;
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    tonic::transport::Server::builder()
        .add_service(kv::service(backend.clone(), message_bytes_max))
        .add_service(watch::service(backend.clone(), message_bytes_max))
        .add_service(lease::service(backend.clone(), message_bytes_max))
        .add_service(cluster::cluster_service(backend.clone(), message_bytes_max))
        .add_service(cluster::maintenance_service(
            backend.clone(),
            message_bytes_max,
        ))
        .add_service(lock::lock_service(backend.clone(), message_bytes_max))
        .add_service(lock::election_service(backend, message_bytes_max))
        .add_service(health_service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}

/// What every service shares: the gateway and the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Backend {
    gateway: Gateway,
    config: std::sync::Arc<EtcdConfig>,
}

impl Backend {
    fn new(gateway: Gateway, config: EtcdConfig) -> Backend {
        Backend {
            gateway,
            config: std::sync::Arc::new(config),
        }
    }

    /// A response header at `revision`, with the member's id and the current term.
    async fn header(&self, revision: i64) -> proto::etcdserverpb::ResponseHeader {
        let raft_term = match self.gateway.status().await {
            Ok(status) => status.hard_state.term,
            Err(_) => 0,
        };
        proto::etcdserverpb::ResponseHeader {
            cluster_id: self.config.cluster_id,
            member_id: self.gateway.node().id(),
            revision,
            raft_term,
        }
    }

    /// Runs a kv command through the gateway's pooled sessions.
    async fn kv_command(&self, command: &KvCommand) -> Result<KvResponse, tonic::Status> {
        let payload = encode(command)?;
        let answer = self
            .gateway
            .command_without_session(&self.config.kv_machine_name, KV_MACHINE_TYPE, payload)
            .await
            .map_err(|error| status::status_of_gateway_error(&error))?;
        decode_output(answer.result)
    }

    /// Answers a kv query at `consistency`.
    async fn kv_query(
        &self,
        query: &KvQuery,
        consistency: Consistency,
    ) -> Result<KvResponse, tonic::Status> {
        let request = QueryRequest {
            session: None,
            index_seen: 0,
            machine_name: self.config.kv_machine_name.clone(),
            machine_type: KV_MACHINE_TYPE.to_string(),
            payload: encode(query)?,
        };
        let answer = self
            .gateway
            .query(&request, consistency)
            .await
            .map_err(|error| status::status_of_gateway_error(&error))?;
        decode_output(Ok(answer.output))
    }

    /// The current revision, read from the local replica.
    async fn revision_local(&self) -> Result<i64, tonic::Status> {
        match self
            .kv_query(&KvQuery::Status, Consistency::Sequential)
            .await?
        {
            KvResponse::Status { revision, .. } => Ok(revision),
            other => Err(unexpected("status", &other)),
        }
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, tonic::Status> {
    codec::encode(value, "kv request")
        .map_err(|error| tonic::Status::internal(format!("encode: {error}")))
}

/// Decodes the kv machine's output (or the session layer's refusal) into a response or the
/// gRPC status etcd would answer.
fn decode_output(
    result: Result<Vec<u8>, conclave_statemachines::SessionError>,
) -> Result<KvResponse, tonic::Status> {
    let bytes =
        result.map_err(|error| status::status_of_gateway_error(&GatewayError::Rejected(error)))?;
    let output: KvOutput = codec::decode(&bytes, "kv output")
        .map_err(|error| tonic::Status::internal(format!("decode: {error}")))?;
    output.map_err(|error: KvError| status_of_kv_error(&error))
}

fn unexpected(what: &str, response: &KvResponse) -> tonic::Status {
    tonic::Status::internal(format!("the kv machine answered {what} with {response:?}"))
}
