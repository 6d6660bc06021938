//! etcdserverpb.Watch: one bidirectional stream holds many watches. Each stream owns one
//! server-side [`ManagedSession`]; its watches are kv-machine watches of that session, whose
//! events arrive as the session's event batches, in log order. The stream keeps its own
//! watch ids (chosen by the client or counted from 0, as etcd does) and maps them onto the
//! machine's.
//!
//! Progress: a progress response promises that every later event of the stream has a
//! higher revision. The stream answers with the lowest revision it has reported for any of
//! its watches (the creation revision, or the revision of the latest event sent), which
//! keeps that promise without knowing whether events still travel towards it; with no
//! watches it answers the local replica's revision.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;

use conclave_statemachines::kv::{KvCommand, KvError, KvResponse, WatchRequest, WatchResponse};
use conclave_statemachines::{EventBatch, codec};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::proto::etcdserverpb as pb;
use super::proto::etcdserverpb::watch_server::{Watch, WatchServer};
use super::{Backend, KV_MACHINE_TYPE, convert, decode_output, encode, status};
use crate::gateway::{ManagedSession, SessionEvent};

pub(super) fn service(backend: Backend, message_bytes_max: usize) -> WatchServer<WatchService> {
    WatchServer::new(WatchService { backend })
        .max_decoding_message_size(message_bytes_max)
        .max_encoding_message_size(usize::MAX)
}

/// The Watch service.
#[derive(Debug)]
pub(super) struct WatchService {
    backend: Backend,
}

/// How many responses may wait for a slow client before the stream stops reading events
/// (the session's events then wait in the gateway, and beyond its bound are resent).
const RESPONSES_BUFFERED_MAX: usize = 64;

/// etcd's reason for a watch id that the stream already uses.
const DUPLICATE_WATCH_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";

/// etcd's watch id for responses that belong to no watch (progress on request).
const WATCH_ID_NONE: i64 = -1;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let requests = request.into_inner();
        let (sender, receiver) = mpsc::channel(RESPONSES_BUFFERED_MAX);
        let stream = WatchStream {
            backend: self.backend.clone(),
            sender,
            session: None,
            events: None,
            watches: BTreeMap::new(),
            by_machine_id: HashMap::new(),
            next_id: 0,
        };
        tokio::spawn(stream.run(requests));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }
}

/// One watch of a stream.
#[derive(Debug)]
struct StreamWatch {
    machine_id: i64,
    fragment: bool,
    progress_notify: bool,
    /// Every event of this watch at or below this revision was sent.
    revision_reported: i64,
    /// Whether an event was sent since the last progress tick.
    sent_since_tick: bool,
}

struct WatchStream {
    backend: Backend,
    sender: mpsc::Sender<Result<pb::WatchResponse, Status>>,
    session: Option<Arc<ManagedSession>>,
    events: Option<mpsc::Receiver<SessionEvent>>,
    watches: BTreeMap<i64, StreamWatch>,
    by_machine_id: HashMap<i64, i64>,
    next_id: i64,
}

/// Why a stream ends.
enum End {
    /// The client went away or closed its side.
    Client,
    /// The stream fails with this status.
    Failed(Status),
}

impl WatchStream {
    async fn run(mut self, mut requests: Streaming<pb::WatchRequest>) {
        let mut ticker = tokio::time::interval(self.backend.config.watch_progress_notify_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let end = loop {
            let step = tokio::select! {
                request = requests.next() => match request {
                    Some(Ok(request)) => self.handle_request(request).await,
                    Some(Err(_)) | None => Err(End::Client),
                },
                event = next_event(&mut self.events) => self.handle_event(event).await,
                _ = ticker.tick() => self.progress_tick().await,
            };
            if let Err(end) = step {
                break end;
            }
        };
        if let End::Failed(status) = end {
            let _ = self.sender.send(Err(status)).await;
        }
        // Closing the session removes its watches from the machine at once.
        if let Some(session) = self.session.take() {
            let _ = session.close().await;
        }
    }

    async fn send(&self, response: pb::WatchResponse) -> Result<(), End> {
        self.sender
            .send(Ok(response))
            .await
            .map_err(|_| End::Client)
    }

    async fn handle_request(&mut self, request: pb::WatchRequest) -> Result<(), End> {
        use pb::watch_request::RequestUnion;
        match request.request_union {
            Some(RequestUnion::CreateRequest(create)) => self.create(create).await,
            Some(RequestUnion::CancelRequest(cancel)) => self.cancel(cancel.watch_id).await,
            Some(RequestUnion::ProgressRequest(_)) => {
                let revision = self.progress_revision().await?;
                let header = self.backend.header(revision).await;
                self.send(pb::WatchResponse {
                    header: Some(header),
                    watch_id: WATCH_ID_NONE,
                    ..pb::WatchResponse::default()
                })
                .await
            }
            None => Ok(()),
        }
    }

    /// The session that owns this stream's watches, opened on first use.
    async fn session(&mut self) -> Result<Arc<ManagedSession>, End> {
        if let Some(session) = &self.session {
            return Ok(session.clone());
        }
        let session = self
            .backend
            .gateway
            .open_managed_session(self.backend.config.watch_session_timeout_ms)
            .await
            .map_err(|error| End::Failed(status::status_of_gateway_error(&error)))?;
        let events = session
            .events()
            .await
            .map_err(|error| End::Failed(status::status_of_gateway_error(&error)))?;
        self.session = Some(session.clone());
        self.events = Some(events);
        Ok(session)
    }

    /// A response that creates and at once cancels watch `watch_id`, for a create that
    /// failed.
    async fn refuse_create(&self, watch_id: i64, reason: &str) -> Result<(), End> {
        let header = self.backend.header(0).await;
        self.send(pb::WatchResponse {
            header: Some(header),
            watch_id,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..pb::WatchResponse::default()
        })
        .await
    }

    async fn create(&mut self, create: pb::WatchCreateRequest) -> Result<(), End> {
        let watch_id = if create.watch_id != 0 {
            create.watch_id
        } else {
            while self.watches.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id
        };
        if self.watches.contains_key(&watch_id) {
            return self.refuse_create(watch_id, DUPLICATE_WATCH_ID).await;
        }
        if self.watches.len() >= self.backend.config.watches_per_stream_max {
            let reason = format!(
                "too many watches on one stream (at most {})",
                self.backend.config.watches_per_stream_max
            );
            return self.refuse_create(watch_id, &reason).await;
        }
        use pb::watch_create_request::FilterType;
        let filters: Vec<FilterType> = create
            .filters
            .iter()
            .filter_map(|filter| FilterType::try_from(*filter).ok())
            .collect();
        let request = WatchRequest {
            key: create.key.clone(),
            range_end: create.range_end.clone(),
            start_revision: create.start_revision,
            no_put: filters.contains(&FilterType::Noput),
            no_delete: filters.contains(&FilterType::Nodelete),
            prev_kv: create.prev_kv,
        };
        let session = self.session().await?;
        let payload = encode(&KvCommand::Watch(request)).map_err(End::Failed)?;
        let answer = session
            .command(
                &self.backend.config.kv_machine_name,
                KV_MACHINE_TYPE,
                payload,
            )
            .await
            .map_err(|error| End::Failed(status::status_of_gateway_error(&error)))?;
        match decode_output(answer.result) {
            Ok(KvResponse::WatchCreated {
                revision,
                watch_id: machine_id,
            }) => {
                let revision_reported = if create.start_revision > 0 {
                    (create.start_revision - 1).min(revision)
                } else {
                    revision
                };
                self.watches.insert(
                    watch_id,
                    StreamWatch {
                        machine_id,
                        fragment: create.fragment,
                        progress_notify: create.progress_notify,
                        revision_reported,
                        sent_since_tick: false,
                    },
                );
                self.by_machine_id.insert(machine_id, watch_id);
                if create.watch_id == 0 {
                    self.next_id = watch_id + 1;
                }
                let header = self.backend.header(revision).await;
                self.send(pb::WatchResponse {
                    header: Some(header),
                    watch_id,
                    created: true,
                    ..pb::WatchResponse::default()
                })
                .await
            }
            Ok(other) => Err(End::Failed(super::unexpected("watch", &other))),
            Err(refused) => {
                // etcd creates a watch on a compacted revision and cancels it at once,
                // telling the compact revision.
                let compacted = KvError::Compacted {
                    compact_revision: 0,
                }
                .to_string();
                if refused.message() == compacted {
                    let compact_revision = self.compact_revision().await?;
                    let header = self.backend.header(0).await;
                    self.send(pb::WatchResponse {
                        header: Some(header),
                        watch_id,
                        created: true,
                        ..pb::WatchResponse::default()
                    })
                    .await?;
                    return self
                        .send(pb::WatchResponse {
                            header: Some(header),
                            watch_id,
                            canceled: true,
                            compact_revision,
                            cancel_reason: compacted,
                            ..pb::WatchResponse::default()
                        })
                        .await;
                }
                self.refuse_create(watch_id, refused.message()).await
            }
        }
    }

    async fn compact_revision(&self) -> Result<i64, End> {
        let query = conclave_statemachines::kv::KvQuery::Status;
        match self
            .backend
            .kv_query(&query, crate::gateway::Consistency::Linearizable)
            .await
            .map_err(End::Failed)?
        {
            KvResponse::Status {
                compact_revision, ..
            } => Ok(compact_revision),
            other => Err(End::Failed(super::unexpected("status", &other))),
        }
    }

    async fn cancel(&mut self, watch_id: i64) -> Result<(), End> {
        // etcd ignores a cancel for a watch the stream does not have.
        let Some(watch) = self.watches.remove(&watch_id) else {
            return Ok(());
        };
        self.by_machine_id.remove(&watch.machine_id);
        let session = self.session().await?;
        let payload = encode(&KvCommand::CancelWatch {
            watch_id: watch.machine_id,
        })
        .map_err(End::Failed)?;
        let answer = session
            .command(
                &self.backend.config.kv_machine_name,
                KV_MACHINE_TYPE,
                payload,
            )
            .await
            .map_err(|error| End::Failed(status::status_of_gateway_error(&error)))?;
        let revision = match decode_output(answer.result) {
            Ok(KvResponse::WatchCanceled { revision, .. }) => revision,
            // The machine already dropped it (canceled by compaction on the way).
            _ => 0,
        };
        let header = self.backend.header(revision).await;
        self.send(pb::WatchResponse {
            header: Some(header),
            watch_id,
            canceled: true,
            ..pb::WatchResponse::default()
        })
        .await
    }

    async fn handle_event(&mut self, event: Option<SessionEvent>) -> Result<(), End> {
        match event {
            Some(SessionEvent::Batch(batch)) => self.deliver(batch).await,
            Some(SessionEvent::Expired) => Err(End::Failed(Status::unavailable(
                "etcdserver: the watch stream's session expired; create the watches again",
            ))),
            None => {
                // The gateway cut the subscription off (this stream fell behind): subscribe
                // again; the session resends what it had not acknowledged, without
                // duplicates.
                let session = self.session().await?;
                let events = session
                    .events()
                    .await
                    .map_err(|error| End::Failed(status::status_of_gateway_error(&error)))?;
                self.events = Some(events);
                Ok(())
            }
        }
    }

    async fn deliver(&mut self, batch: EventBatch) -> Result<(), End> {
        for event in batch.events {
            if event.machine_name != self.backend.config.kv_machine_name {
                continue;
            }
            let response: WatchResponse = codec::decode(&event.payload, "watch event")
                .map_err(|error| End::Failed(Status::internal(error.to_string())))?;
            let Some(watch_id) = self.by_machine_id.get(&response.watch_id).copied() else {
                continue;
            };
            let header = self.backend.header(response.revision).await;
            if response.canceled {
                self.by_machine_id.remove(&response.watch_id);
                self.watches.remove(&watch_id);
                self.send(pb::WatchResponse {
                    header: Some(header),
                    watch_id,
                    canceled: true,
                    compact_revision: response.compact_revision,
                    cancel_reason: KvError::Compacted {
                        compact_revision: response.compact_revision,
                    }
                    .to_string(),
                    ..pb::WatchResponse::default()
                })
                .await?;
                continue;
            }
            let Some(watch) = self.watches.get_mut(&watch_id) else {
                continue;
            };
            watch.revision_reported = watch.revision_reported.max(response.revision);
            watch.sent_since_tick = true;
            let fragment = watch.fragment;
            let whole = pb::WatchResponse {
                header: Some(header),
                watch_id,
                events: response.events.into_iter().map(convert::event).collect(),
                ..pb::WatchResponse::default()
            };
            if fragment {
                for part in fragments(whole, self.backend.config.watch_response_bytes_max) {
                    self.send(part).await?;
                }
            } else {
                self.send(whole).await?;
            }
        }
        Ok(())
    }

    /// The revision a progress response may promise (see the module's documentation).
    async fn progress_revision(&self) -> Result<i64, End> {
        match self
            .watches
            .values()
            .map(|watch| watch.revision_reported)
            .min()
        {
            Some(revision) => Ok(revision),
            None => self.backend.revision_local().await.map_err(End::Failed),
        }
    }

    async fn progress_tick(&mut self) -> Result<(), End> {
        let mut quiet = Vec::new();
        for (watch_id, watch) in &mut self.watches {
            if watch.progress_notify && !watch.sent_since_tick {
                quiet.push((*watch_id, watch.revision_reported));
            }
            watch.sent_since_tick = false;
        }
        for (watch_id, revision) in quiet {
            let header = self.backend.header(revision).await;
            self.send(pb::WatchResponse {
                header: Some(header),
                watch_id,
                ..pb::WatchResponse::default()
            })
            .await?;
        }
        Ok(())
    }
}

/// The next event of the session, or never while no session is open.
async fn next_event(events: &mut Option<mpsc::Receiver<SessionEvent>>) -> Option<SessionEvent> {
    match events {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// Splits `whole` into responses of at most `bytes_max` (each holding at least one event),
/// every one but the last marked `fragment`, as etcd does for watches that asked for it.
fn fragments(whole: pb::WatchResponse, bytes_max: usize) -> Vec<pb::WatchResponse> {
    if whole.encoded_len() <= bytes_max || whole.events.len() < 2 {
        return vec![whole];
    }
    let empty = pb::WatchResponse {
        events: Vec::new(),
        ..whole.clone()
    };
    let mut parts = Vec::new();
    let mut current = empty.clone();
    for event in whole.events {
        let grown = current.encoded_len() + event.encoded_len() + 8;
        if !current.events.is_empty() && grown > bytes_max {
            let mut full = std::mem::replace(&mut current, empty.clone());
            full.fragment = true;
            parts.push(full);
        }
        current.events.push(event);
    }
    parts.push(current);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcd::proto::mvccpb;

    fn event(value_bytes: usize) -> mvccpb::Event {
        mvccpb::Event {
            r#type: 0,
            kv: Some(mvccpb::KeyValue {
                key: b"k".to_vec(),
                value: vec![7; value_bytes],
                ..mvccpb::KeyValue::default()
            }),
            prev_kv: None,
        }
    }

    #[test]
    fn large_revisions_split_into_fragments_in_order() {
        let whole = pb::WatchResponse {
            watch_id: 3,
            events: (0..10).map(|_| event(300)).collect(),
            ..pb::WatchResponse::default()
        };
        let parts = fragments(whole.clone(), 1_024);
        assert!(parts.len() > 1);
        for part in &parts {
            assert!(part.encoded_len() <= 1_024, "{}", part.encoded_len());
            assert_eq!(part.watch_id, 3);
        }
        let (last, rest) = parts.split_last().unwrap();
        assert!(rest.iter().all(|part| part.fragment));
        assert!(!last.fragment);
        let events: Vec<_> = parts.into_iter().flat_map(|part| part.events).collect();
        assert_eq!(events, whole.events);
    }

    #[test]
    fn small_responses_and_single_events_stay_whole() {
        let small = pb::WatchResponse {
            events: vec![event(10), event(10)],
            ..pb::WatchResponse::default()
        };
        assert_eq!(fragments(small.clone(), 1_024), vec![small]);
        let single = pb::WatchResponse {
            events: vec![event(5_000)],
            ..pb::WatchResponse::default()
        };
        assert_eq!(fragments(single.clone(), 1_024), vec![single]);
    }
}
