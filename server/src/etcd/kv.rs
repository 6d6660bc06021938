//! etcdserverpb.KV: Range, Put, DeleteRange, Txn and Compact, each one kv command or query.

use conclave_statemachines::kv::{KvCommand, KvQuery, KvResponse};
use prost::Message;
use tonic::{Request, Response, Status};

use super::proto::etcdserverpb as pb;
use super::proto::etcdserverpb::kv_server::{Kv, KvServer};
use super::{Backend, convert, status, unexpected};
use crate::gateway::Consistency;

pub(super) fn service(backend: Backend, message_bytes_max: usize) -> KvServer<KvService> {
    KvServer::new(KvService { backend })
        .max_decoding_message_size(message_bytes_max)
        .max_encoding_message_size(usize::MAX)
}

/// The KV service.
#[derive(Debug)]
pub(super) struct KvService {
    backend: Backend,
}

impl KvService {
    /// Refuses requests above `request_bytes_max`, as etcd does before proposing them.
    fn check_size(&self, request: &impl Message) -> Result<(), Status> {
        if request.encoded_len() > self.backend.config.request_bytes_max {
            return Err(Status::invalid_argument(status::REQUEST_TOO_LARGE));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let request = request.into_inner();
        // Serializable reads are served by this replica from what it applied; the default
        // is linearizable (ReadIndex through the leader).
        let consistency = if request.serializable {
            Consistency::Sequential
        } else {
            Consistency::Linearizable
        };
        let query = KvQuery::Range(convert::range_request(&request));
        match self.backend.kv_query(&query, consistency).await? {
            KvResponse::Range(range) => {
                let header = self.backend.header(range.revision).await;
                Ok(Response::new(convert::range_response(range, Some(header))))
            }
            other => Err(unexpected("range", &other)),
        }
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let request = request.into_inner();
        self.check_size(&request)?;
        let command = KvCommand::Put(convert::put_request(request));
        match self.backend.kv_command(&command).await? {
            KvResponse::Put(put) => {
                let header = self.backend.header(put.revision).await;
                Ok(Response::new(convert::put_response(put, Some(header))))
            }
            other => Err(unexpected("put", &other)),
        }
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let request = request.into_inner();
        self.check_size(&request)?;
        let command = KvCommand::DeleteRange(convert::delete_request(request));
        match self.backend.kv_command(&command).await? {
            KvResponse::DeleteRange(delete) => {
                let header = self.backend.header(delete.revision).await;
                Ok(Response::new(convert::delete_response(
                    delete,
                    Some(header),
                )))
            }
            other => Err(unexpected("delete", &other)),
        }
    }

    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        let request = request.into_inner();
        self.check_size(&request)?;
        let command = KvCommand::Txn(convert::txn_request(request, 0)?);
        match self.backend.kv_command(&command).await? {
            KvResponse::Txn(txn) => {
                let header = self.backend.header(txn.revision).await;
                Ok(Response::new(convert::txn_response(txn, Some(header))))
            }
            other => Err(unexpected("txn", &other)),
        }
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let revision = request.into_inner().revision;
        match self
            .backend
            .kv_command(&KvCommand::Compact { revision })
            .await?
        {
            KvResponse::Compact { revision } => Ok(Response::new(pb::CompactionResponse {
                header: Some(self.backend.header(revision).await),
            })),
            other => Err(unexpected("compact", &other)),
        }
    }
}
