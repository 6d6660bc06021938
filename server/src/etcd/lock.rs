//! v3lockpb.Lock and v3electionpb.Election, run on the server as etcd's client-side recipes
//! over the kv machine, so that they interoperate with clients that run the recipes
//! themselves (etcdctl's `lock` and `elect`, the Go concurrency package):
//!
//! - a waiter's key is `<name>/<lease id in hex>`, put under its lease if it does not exist;
//! - the holder (or leader) is the key of the prefix with the lowest create revision;
//! - a waiter waits until no key of the prefix has a lower create revision than its own,
//!   watching for the deletion of the next older one each time.

use std::pin::Pin;
use std::sync::Arc;

use conclave_statemachines::codec;
use conclave_statemachines::kv::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, EventKind, KeyValue, KvCommand,
    KvQuery, KvResponse, PutRequest, RangeRequest, RequestOp, ResponseOp, SortOrder, SortTarget,
    TxnRequest, TxnResponse, WatchRequest, WatchResponse, prefix_range_end,
};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::proto::v3electionpb as election_pb;
use super::proto::v3electionpb::election_server::{Election, ElectionServer};
use super::proto::v3lockpb as lock_pb;
use super::proto::v3lockpb::lock_server::{Lock, LockServer};
use super::{Backend, KV_MACHINE_TYPE, convert, decode_output, encode, status, unexpected};
use crate::gateway::{Consistency, ManagedSession, SessionEvent};

/// etcd's error when a leader key no longer leads.
const ELECTION_NOT_LEADER: &str = "election: not leader";
/// etcd's error when an election has no leader.
const ELECTION_NO_LEADER: &str = "election: no leader";
/// etcd's error when a waiter's own key vanished while it waited (its lease expired).
const SESSION_EXPIRED: &str = "mutex: session is expired";

pub(super) fn lock_service(backend: Backend, message_bytes_max: usize) -> LockServer<LockService> {
    LockServer::new(LockService { backend })
        .max_decoding_message_size(message_bytes_max)
        .max_encoding_message_size(usize::MAX)
}

pub(super) fn election_service(
    backend: Backend,
    message_bytes_max: usize,
) -> ElectionServer<ElectionService> {
    ElectionServer::new(ElectionService { backend })
        .max_decoding_message_size(message_bytes_max)
        .max_encoding_message_size(usize::MAX)
}

/// The Lock service.
#[derive(Debug)]
pub(super) struct LockService {
    backend: Backend,
}

/// The Election service.
#[derive(Debug)]
pub(super) struct ElectionService {
    backend: Backend,
}

fn waiter_key(name: &[u8], lease: i64) -> Vec<u8> {
    let mut key = name.to_vec();
    key.push(b'/');
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    key
}

fn prefix_of(name: &[u8]) -> Vec<u8> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    prefix
}

fn created_at(key: &[u8], revision: i64) -> Compare {
    Compare {
        key: key.to_vec(),
        range_end: Vec::new(),
        result: CompareResult::Equal,
        target: CompareTarget::Create(revision),
    }
}

fn get(key: &[u8]) -> RequestOp {
    RequestOp::Range(RangeRequest {
        key: key.to_vec(),
        ..RangeRequest::default()
    })
}

/// The first-created key of `prefix` (the holder or leader).
fn first_created(prefix: &[u8]) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_range_end(prefix),
        limit: 1,
        sort_order: SortOrder::Ascend,
        sort_target: SortTarget::Create,
        ..RangeRequest::default()
    }
}

fn range_kvs(response: Option<&ResponseOp>) -> Vec<KeyValue> {
    match response {
        Some(ResponseOp::Range(range)) => range.kvs.clone(),
        _ => Vec::new(),
    }
}

impl Backend {
    async fn txn(&self, txn: TxnRequest) -> Result<TxnResponse, Status> {
        match self.kv_command(&KvCommand::Txn(txn)).await? {
            KvResponse::Txn(response) => Ok(response),
            other => Err(unexpected("txn", &other)),
        }
    }

    async fn range(&self, request: RangeRequest) -> Result<(i64, Vec<KeyValue>), Status> {
        match self
            .kv_query(&KvQuery::Range(request), Consistency::Linearizable)
            .await?
        {
            KvResponse::Range(range) => Ok((range.revision, range.kvs)),
            other => Err(unexpected("range", &other)),
        }
    }

    /// Puts `key` under `lease` unless it exists; returns its create revision and value.
    async fn put_waiter(
        &self,
        key: &[u8],
        lease: i64,
        value: &[u8],
    ) -> Result<(i64, Vec<u8>), Status> {
        let response = self
            .txn(TxnRequest {
                compare: vec![created_at(key, 0)],
                success: vec![RequestOp::Put(PutRequest {
                    key: key.to_vec(),
                    value: value.to_vec(),
                    lease,
                    ..PutRequest::default()
                })],
                failure: vec![get(key)],
            })
            .await?;
        if response.succeeded {
            return Ok((response.revision, value.to_vec()));
        }
        match range_kvs(response.responses.first()).into_iter().next() {
            Some(existing) => Ok((existing.create_revision, existing.value)),
            None => Err(Status::internal(
                "a key that failed to be created is missing",
            )),
        }
    }

    /// Waits until no key of `prefix` was created before `revision`, as etcd's waitDeletes.
    async fn wait_for_older(&self, prefix: &[u8], revision: i64) -> Result<(), Status> {
        loop {
            let request = RangeRequest {
                key: prefix.to_vec(),
                range_end: prefix_range_end(prefix),
                limit: 1,
                sort_order: SortOrder::Descend,
                sort_target: SortTarget::Create,
                max_create_revision: revision - 1,
                ..RangeRequest::default()
            };
            let (current, kvs) = self.range(request).await?;
            let Some(older) = kvs.into_iter().next() else {
                return Ok(());
            };
            let mut watch = KeyWatch::open(self, &older.key, &[], current + 1).await?;
            loop {
                let response = watch.next().await?;
                if response
                    .events
                    .iter()
                    .any(|event| event.kind == EventKind::Delete)
                {
                    break;
                }
            }
            watch.close().await;
        }
    }

    /// Fails unless `key` still exists (its lease may have expired while it waited).
    async fn check_still_held(&self, key: &[u8]) -> Result<i64, Status> {
        let (revision, kvs) = self
            .range(RangeRequest {
                key: key.to_vec(),
                ..RangeRequest::default()
            })
            .await?;
        if kvs.is_empty() {
            return Err(Status::unknown(SESSION_EXPIRED));
        }
        Ok(revision)
    }

    async fn delete_key(&self, key: &[u8]) -> Result<i64, Status> {
        let command = KvCommand::DeleteRange(DeleteRangeRequest {
            key: key.to_vec(),
            ..DeleteRangeRequest::default()
        });
        match self.kv_command(&command).await? {
            KvResponse::DeleteRange(delete) => Ok(delete.revision),
            other => Err(unexpected("delete", &other)),
        }
    }
}

/// A kv watch on one key or range, owned by its own server-side session.
struct KeyWatch {
    session: Arc<ManagedSession>,
    events: mpsc::Receiver<SessionEvent>,
    machine_name: String,
}

impl KeyWatch {
    async fn open(
        backend: &Backend,
        key: &[u8],
        range_end: &[u8],
        start_revision: i64,
    ) -> Result<KeyWatch, Status> {
        let gateway_status = |error| status::status_of_gateway_error(&error);
        let session = backend
            .gateway
            .open_managed_session(backend.config.watch_session_timeout_ms)
            .await
            .map_err(gateway_status)?;
        let events = session.events().await.map_err(gateway_status)?;
        let payload = encode(&KvCommand::Watch(WatchRequest {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            start_revision,
            ..WatchRequest::default()
        }))?;
        let answer = session
            .command(&backend.config.kv_machine_name, KV_MACHINE_TYPE, payload)
            .await
            .map_err(gateway_status)?;
        decode_output(answer.result)?;
        Ok(KeyWatch {
            session,
            events,
            machine_name: backend.config.kv_machine_name.clone(),
        })
    }

    /// The next response of the watch (its only one on this session).
    async fn next(&mut self) -> Result<WatchResponse, Status> {
        loop {
            match self.events.recv().await {
                Some(SessionEvent::Batch(batch)) => {
                    for event in batch.events {
                        if event.machine_name != self.machine_name {
                            continue;
                        }
                        let response: WatchResponse = codec::decode(&event.payload, "watch")
                            .map_err(|error| Status::internal(error.to_string()))?;
                        if response.canceled {
                            return Err(Status::out_of_range(
                                "etcdserver: mvcc: required revision has been compacted",
                            ));
                        }
                        return Ok(response);
                    }
                }
                Some(SessionEvent::Expired) => {
                    return Err(Status::unavailable("etcdserver: watch session expired"));
                }
                None => {
                    self.events = self
                        .session
                        .events()
                        .await
                        .map_err(|error| status::status_of_gateway_error(&error))?;
                }
            }
        }
    }

    async fn close(self) {
        let _ = self.session.close().await;
    }
}

/// Deletes a waiter's key if the wait is abandoned (the client went away or failed), as
/// etcd's recipe does, so that an abandoned waiter does not block the others until its
/// lease expires.
struct AbandonGuard {
    backend: Backend,
    key: Option<Vec<u8>>,
}

impl AbandonGuard {
    fn disarm(mut self) {
        self.key = None;
    }
}

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let backend = self.backend.clone();
            tokio::spawn(async move {
                let _ = backend.delete_key(&key).await;
            });
        }
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(
        &self,
        request: Request<lock_pb::LockRequest>,
    ) -> Result<Response<lock_pb::LockResponse>, Status> {
        let request = request.into_inner();
        let key = waiter_key(&request.name, request.lease);
        let (revision, _) = self.backend.put_waiter(&key, request.lease, &[]).await?;
        let guard = AbandonGuard {
            backend: self.backend.clone(),
            key: Some(key.clone()),
        };
        self.backend
            .wait_for_older(&prefix_of(&request.name), revision)
            .await?;
        let current = self.backend.check_still_held(&key).await?;
        guard.disarm();
        Ok(Response::new(lock_pb::LockResponse {
            header: Some(self.backend.header(current).await),
            key,
        }))
    }

    async fn unlock(
        &self,
        request: Request<lock_pb::UnlockRequest>,
    ) -> Result<Response<lock_pb::UnlockResponse>, Status> {
        let revision = self.backend.delete_key(&request.into_inner().key).await?;
        Ok(Response::new(lock_pb::UnlockResponse {
            header: Some(self.backend.header(revision).await),
        }))
    }
}

impl ElectionService {
    /// Sets the leader's value if `leader` still leads.
    async fn proclaim_value(
        &self,
        leader: &election_pb::LeaderKey,
        value: &[u8],
    ) -> Result<i64, Status> {
        let response = self
            .backend
            .txn(TxnRequest {
                compare: vec![created_at(&leader.key, leader.rev)],
                success: vec![RequestOp::Put(PutRequest {
                    key: leader.key.clone(),
                    value: value.to_vec(),
                    lease: leader.lease,
                    ..PutRequest::default()
                })],
                failure: Vec::new(),
            })
            .await?;
        if !response.succeeded {
            return Err(Status::failed_precondition(ELECTION_NOT_LEADER));
        }
        Ok(response.revision)
    }

    /// The current leader's key-value, if any.
    async fn leader_of(&self, name: &[u8]) -> Result<(i64, Option<KeyValue>), Status> {
        let (revision, kvs) = self.backend.range(first_created(&prefix_of(name))).await?;
        Ok((revision, kvs.into_iter().next()))
    }
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        request: Request<election_pb::CampaignRequest>,
    ) -> Result<Response<election_pb::CampaignResponse>, Status> {
        let request = request.into_inner();
        let key = waiter_key(&request.name, request.lease);
        let (revision, value) = self
            .backend
            .put_waiter(&key, request.lease, &request.value)
            .await?;
        let leader = election_pb::LeaderKey {
            name: request.name.clone(),
            key: key.clone(),
            rev: revision,
            lease: request.lease,
        };
        let guard = AbandonGuard {
            backend: self.backend.clone(),
            key: Some(key.clone()),
        };
        if value != request.value {
            self.proclaim_value(&leader, &request.value).await?;
        }
        self.backend
            .wait_for_older(&prefix_of(&request.name), revision)
            .await?;
        let current = self.backend.check_still_held(&key).await?;
        guard.disarm();
        Ok(Response::new(election_pb::CampaignResponse {
            header: Some(self.backend.header(current).await),
            leader: Some(leader),
        }))
    }

    async fn proclaim(
        &self,
        request: Request<election_pb::ProclaimRequest>,
    ) -> Result<Response<election_pb::ProclaimResponse>, Status> {
        let request = request.into_inner();
        let Some(leader) = request.leader else {
            return Err(Status::failed_precondition(ELECTION_NOT_LEADER));
        };
        let revision = self.proclaim_value(&leader, &request.value).await?;
        Ok(Response::new(election_pb::ProclaimResponse {
            header: Some(self.backend.header(revision).await),
        }))
    }

    async fn leader(
        &self,
        request: Request<election_pb::LeaderRequest>,
    ) -> Result<Response<election_pb::LeaderResponse>, Status> {
        let (revision, leader) = self.leader_of(&request.into_inner().name).await?;
        let Some(leader) = leader else {
            return Err(Status::not_found(ELECTION_NO_LEADER));
        };
        Ok(Response::new(election_pb::LeaderResponse {
            header: Some(self.backend.header(revision).await),
            kv: Some(convert::key_value(leader)),
        }))
    }

    type ObserveStream =
        Pin<Box<dyn Stream<Item = Result<election_pb::LeaderResponse, Status>> + Send>>;

    async fn observe(
        &self,
        request: Request<election_pb::LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let name = request.into_inner().name;
        let (sender, receiver) = mpsc::channel(16);
        let service = ElectionService {
            backend: self.backend.clone(),
        };
        tokio::spawn(async move {
            if let Err(status) = service.observe_into(&name, &sender).await {
                let _ = sender.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }

    async fn resign(
        &self,
        request: Request<election_pb::ResignRequest>,
    ) -> Result<Response<election_pb::ResignResponse>, Status> {
        let Some(leader) = request.into_inner().leader else {
            return Err(Status::failed_precondition(ELECTION_NOT_LEADER));
        };
        let response = self
            .backend
            .txn(TxnRequest {
                compare: vec![created_at(&leader.key, leader.rev)],
                success: vec![RequestOp::DeleteRange(DeleteRangeRequest {
                    key: leader.key.clone(),
                    ..DeleteRangeRequest::default()
                })],
                failure: Vec::new(),
            })
            .await?;
        Ok(Response::new(election_pb::ResignResponse {
            header: Some(self.backend.header(response.revision).await),
        }))
    }
}

impl ElectionService {
    /// Sends the leader each time it changes (a new leader or a new value), until the
    /// client goes away.
    async fn observe_into(
        &self,
        name: &[u8],
        sender: &mpsc::Sender<Result<election_pb::LeaderResponse, Status>>,
    ) -> Result<(), Status> {
        let prefix = prefix_of(name);
        let (revision, mut leader) = self.leader_of(name).await?;
        let mut watch = KeyWatch::open(
            &self.backend,
            &prefix,
            &prefix_range_end(&prefix),
            revision + 1,
        )
        .await?;
        let mut sent: Option<(Vec<u8>, i64)> = None;
        let outcome = loop {
            if let Some(current) = &leader {
                let identity = (current.key.clone(), current.mod_revision);
                if sent.as_ref() != Some(&identity) {
                    let response = election_pb::LeaderResponse {
                        header: Some(self.backend.header(current.mod_revision).await),
                        kv: Some(convert::key_value(current.clone())),
                    };
                    if sender.send(Ok(response)).await.is_err() {
                        break Ok(());
                    }
                    sent = Some(identity);
                }
            }
            let changed = tokio::select! {
                changed = watch.next() => changed,
                () = sender.closed() => break Ok(()),
            };
            match changed {
                Ok(response) => {
                    let at = RangeRequest {
                        revision: response.revision,
                        ..first_created(&prefix)
                    };
                    match self.backend.range(at).await {
                        Ok((_, kvs)) => leader = kvs.into_iter().next(),
                        Err(status) => break Err(status),
                    }
                }
                Err(status) => break Err(status),
            }
        };
        watch.close().await;
        outcome
    }
}
