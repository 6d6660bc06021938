//! etcdserverpb.Lease: leases live in the kv machine with a TTL in log time, so grant,
//! revoke and keep-alive are kv commands and time-to-live and listing are kv queries.

use std::pin::Pin;

use conclave_statemachines::kv::{KvCommand, KvError, KvQuery, KvResponse};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::proto::etcdserverpb as pb;
use super::proto::etcdserverpb::lease_server::{Lease, LeaseServer};
use super::{Backend, status_of_kv_error, unexpected};
use crate::gateway::Consistency;

pub(super) fn service(backend: Backend, message_bytes_max: usize) -> LeaseServer<LeaseService> {
    LeaseServer::new(LeaseService { backend })
        .max_decoding_message_size(message_bytes_max)
        .max_encoding_message_size(usize::MAX)
}

/// The Lease service.
#[derive(Debug)]
pub(super) struct LeaseService {
    backend: Backend,
}

/// How many keep-alive responses may wait for a slow client before the stream stops reading.
const KEEP_ALIVE_RESPONSES_BUFFERED_MAX: usize = 16;

/// Renews `id`; an unknown lease answers TTL 0, as etcd's keep-alive stream does.
async fn keep_alive(backend: &Backend, id: i64) -> Result<pb::LeaseKeepAliveResponse, Status> {
    let answer = backend.kv_command(&KvCommand::LeaseKeepAlive { id }).await;
    let (revision, ttl) = match answer {
        Ok(KvResponse::LeaseKeptAlive {
            revision,
            ttl_seconds,
            ..
        }) => (revision, ttl_seconds),
        Ok(other) => return Err(unexpected("keep-alive", &other)),
        Err(status) if is_lease_not_found(&status) => (backend.revision_local().await?, 0),
        Err(status) => return Err(status),
    };
    Ok(pb::LeaseKeepAliveResponse {
        header: Some(backend.header(revision).await),
        id,
        ttl,
    })
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let request = request.into_inner();
        let command = KvCommand::LeaseGrant {
            ttl_seconds: request.ttl,
            id: request.id,
        };
        match self.backend.kv_command(&command).await? {
            KvResponse::LeaseGranted {
                revision,
                id,
                ttl_seconds,
            } => Ok(Response::new(pb::LeaseGrantResponse {
                header: Some(self.backend.header(revision).await),
                id,
                ttl: ttl_seconds,
                error: String::new(),
            })),
            other => Err(unexpected("lease grant", &other)),
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let id = request.into_inner().id;
        match self
            .backend
            .kv_command(&KvCommand::LeaseRevoke { id })
            .await?
        {
            KvResponse::LeaseRevoked { revision } => Ok(Response::new(pb::LeaseRevokeResponse {
                header: Some(self.backend.header(revision).await),
            })),
            other => Err(unexpected("lease revoke", &other)),
        }
    }

    type LeaseKeepAliveStream =
        Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut requests = request.into_inner();
        let backend = self.backend.clone();
        let (sender, receiver) = tokio::sync::mpsc::channel(KEEP_ALIVE_RESPONSES_BUFFERED_MAX);
        tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                let response = match request {
                    Ok(request) => keep_alive(&backend, request.id).await,
                    Err(status) => Err(status),
                };
                let failed = response.is_err();
                if sender.send(response).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let request = request.into_inner();
        let query = KvQuery::LeaseTimeToLive {
            id: request.id,
            keys: request.keys,
        };
        let answer = self
            .backend
            .kv_query(&query, Consistency::Linearizable)
            .await;
        match answer {
            Ok(KvResponse::LeaseTimeToLive {
                revision,
                id,
                ttl_seconds,
                granted_ttl_seconds,
                keys,
            }) => Ok(Response::new(pb::LeaseTimeToLiveResponse {
                header: Some(self.backend.header(revision).await),
                id,
                ttl: ttl_seconds,
                granted_ttl: granted_ttl_seconds,
                keys,
            })),
            Ok(other) => Err(unexpected("time-to-live", &other)),
            // etcd answers an unknown (or expired) lease with TTL -1 rather than an error.
            Err(status) if is_lease_not_found(&status) => {
                Ok(Response::new(pb::LeaseTimeToLiveResponse {
                    header: Some(self.backend.header(0).await),
                    id: request.id,
                    ttl: -1,
                    granted_ttl: 0,
                    keys: Vec::new(),
                }))
            }
            Err(status) => Err(status),
        }
    }

    async fn lease_leases(
        &self,
        _request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        match self
            .backend
            .kv_query(&KvQuery::LeaseLeases, Consistency::Linearizable)
            .await?
        {
            KvResponse::Leases { revision, ids } => Ok(Response::new(pb::LeaseLeasesResponse {
                header: Some(self.backend.header(revision).await),
                leases: ids.into_iter().map(|id| pb::LeaseStatus { id }).collect(),
            })),
            other => Err(unexpected("lease listing", &other)),
        }
    }
}

/// Whether `status` is the kv machine's unknown-lease error.
fn is_lease_not_found(status: &Status) -> bool {
    status.message() == status_of_kv_error(&KvError::LeaseNotFound).message()
}
