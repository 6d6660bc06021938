//! The tonic server and client of the peer protocol.
//!
//! Choice of the append path: one long-lived client stream (`Raft.Stream`) per
//! (sender, receiver) pair. Appends are pipelined on it in order, batched when several are
//! queued, and cost no round trip each; answers travel on the receiver's own stream back to
//! the sender, which is exactly the one-way message model of the core. Unary calls would
//! need one HTTP/2 request per message and would let messages overtake each other.
//!
//! Snapshots go through `Raft.InstallSnapshot` as chunks; the receiver keeps the partial
//! data of a bounded number of transfers, and the sender asks `Raft.SnapshotOffset` before
//! each attempt so that an interrupted transfer resumes where it stopped.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use conclave_consensus::{Message, MessageKind, NodeId};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use crate::config::TransportConfig;
use crate::convert;
use crate::error::Error;
use crate::forward::{self, ForwardError, ForwardFuture, ForwardHandler, ForwardRequest};
use crate::proto;
use crate::proto::raft_client::RaftClient;
use crate::proto::raft_server::{Raft, RaftServer};
use crate::{Inbox, Transport};

type TransferKey = (NodeId, u64, u64);

#[derive(Debug)]
struct Transfer {
    header: proto::SnapshotHeader,
    data: BytesMut,
    /// When this transfer last received a chunk, in transfer arrivals, for eviction.
    touched: u64,
}

#[derive(Debug, Default)]
struct Transfers {
    by_key: HashMap<TransferKey, Transfer>,
    arrivals: u64,
}

#[derive(Clone)]
struct PeerService {
    local: NodeId,
    inbox: Inbox,
    config: TransportConfig,
    transfers: Arc<Mutex<Transfers>>,
    /// Who carries out forwarded requests; `None` refuses them as unimplemented.
    forward: Option<Arc<dyn ForwardHandler>>,
}

fn malformed(error: Error) -> Status {
    Status::invalid_argument(error.to_string())
}

impl PeerService {
    fn transfers(&self) -> MutexGuard<'_, Transfers> {
        self.transfers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn deliver(&self, message: Message) -> Result<(), Status> {
        // Waiting here pushes back through HTTP/2 flow control when the node falls behind,
        // instead of dropping messages that it would then have to wait to retransmit.
        self.inbox
            .send(message)
            .await
            .map_err(|_| Status::unavailable("node stopped"))
    }

    /// Adds one chunk; returns the bytes now held and, once complete, the data.
    fn add_chunk(&self, chunk: proto::SnapshotChunk) -> Result<(u64, Option<Message>), Status> {
        let Some(header) = chunk.header else {
            return Err(Status::invalid_argument("snapshot chunk without header"));
        };
        let metadata =
            convert::snapshot_metadata_from_header(&header, self.local).map_err(malformed)?;
        if header.data_bytes > self.config.snapshot_bytes_max {
            return Err(Status::resource_exhausted(format!(
                "snapshot of {} bytes exceeds {}",
                header.data_bytes, self.config.snapshot_bytes_max
            )));
        }
        let key = (header.from, metadata.index, metadata.term);
        let mut transfers = self.transfers();
        transfers.arrivals += 1;
        let arrivals = transfers.arrivals;
        let restart = transfers
            .by_key
            .get(&key)
            .is_none_or(|t| t.header != header);
        if restart {
            if !transfers.by_key.contains_key(&key)
                && transfers.by_key.len() >= self.config.snapshot_transfers_max
            {
                let oldest = transfers
                    .by_key
                    .iter()
                    .min_by_key(|(_, t)| t.touched)
                    .map(|(k, _)| *k);
                if let Some(oldest) = oldest {
                    transfers.by_key.remove(&oldest);
                }
            }
            let transfer = Transfer {
                header: header.clone(),
                data: BytesMut::new(),
                touched: arrivals,
            };
            transfers.by_key.insert(key, transfer);
        }
        let Some(transfer) = transfers.by_key.get_mut(&key) else {
            return Err(Status::internal("transfer vanished"));
        };
        transfer.touched = arrivals;
        let held = transfer.data.len() as u64;
        if chunk.offset != held {
            return Err(Status::failed_precondition(format!(
                "chunk at offset {} but {held} bytes are held",
                chunk.offset
            )));
        }
        if held + chunk.data.len() as u64 > header.data_bytes {
            transfers.by_key.remove(&key);
            return Err(Status::invalid_argument(
                "snapshot chunk past the announced size",
            ));
        }
        transfer.data.extend_from_slice(&chunk.data);
        let held = transfer.data.len() as u64;
        if held < header.data_bytes {
            return Ok((held, None));
        }
        let Some(transfer) = transfers.by_key.remove(&key) else {
            return Err(Status::internal("transfer vanished"));
        };
        let data = transfer.data.freeze();
        if crc32fast::hash(&data) != header.data_checksum {
            return Err(Status::data_loss("snapshot checksum mismatch"));
        }
        Ok((
            held,
            Some(convert::snapshot_message(&header, metadata, data)),
        ))
    }
}

#[tonic::async_trait]
impl Raft for PeerService {
    async fn stream(
        &self,
        request: Request<Streaming<proto::MessageBatch>>,
    ) -> Result<Response<proto::StreamSummary>, Status> {
        let mut stream = request.into_inner();
        let mut messages_received = 0;
        while let Some(batch) = stream.message().await? {
            for message in batch.messages {
                let message =
                    convert::message_from_proto(message, self.local).map_err(malformed)?;
                self.deliver(message).await?;
                messages_received += 1;
            }
        }
        Ok(Response::new(proto::StreamSummary { messages_received }))
    }

    async fn snapshot_offset(
        &self,
        request: Request<proto::SnapshotHeader>,
    ) -> Result<Response<proto::SnapshotProgress>, Status> {
        let header = request.into_inner();
        let metadata =
            convert::snapshot_metadata_from_header(&header, self.local).map_err(malformed)?;
        let key = (header.from, metadata.index, metadata.term);
        let transfers = self.transfers();
        let offset = match transfers.by_key.get(&key) {
            Some(transfer) if transfer.header == header => transfer.data.len() as u64,
            _ => 0,
        };
        Ok(Response::new(proto::SnapshotProgress { offset }))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<proto::SnapshotChunk>>,
    ) -> Result<Response<proto::SnapshotProgress>, Status> {
        let mut stream = request.into_inner();
        let mut offset = 0;
        while let Some(chunk) = stream.message().await? {
            let (held, complete) = self.add_chunk(chunk)?;
            offset = held;
            if let Some(message) = complete {
                self.deliver(message).await?;
            }
        }
        Ok(Response::new(proto::SnapshotProgress { offset }))
    }

    async fn forward(
        &self,
        request: Request<proto::ForwardRequest>,
    ) -> Result<Response<proto::ForwardResponse>, Status> {
        let request = request.into_inner();
        if request.to != self.local {
            return Err(malformed(Error::WrongReceiver {
                to: request.to,
                local: self.local,
            }));
        }
        if request.from == 0 {
            return Err(malformed(Error::Malformed("forward from node 0".into())));
        }
        let Some(handler) = &self.forward else {
            return Err(Status::unimplemented(
                "this node accepts no forwarded requests",
            ));
        };
        let from = request.from;
        let Some(decoded) = forward::request_from_proto(request) else {
            return Err(malformed(Error::Malformed("unknown forward kind".into())));
        };
        let result = handler.handle(from, decoded).await;
        Ok(Response::new(forward::response_to_proto(result)))
    }
}

/// Serves the peer protocol for node `local` on `listener` until `shutdown` completes,
/// delivering every received message to `inbox`. Messages larger than
/// `config.message_bytes_max` are refused with `RESOURCE_EXHAUSTED`; malformed ones with
/// `INVALID_ARGUMENT`, which ends that stream (the sender reconnects) and nothing else.
/// Forwarded requests are refused as unimplemented; see [`serve_with_forwarding`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    local: NodeId,
    inbox: Inbox,
    config: TransportConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    serve_peers(listener, local, inbox, None, config, shutdown).await
}

/// [`serve`], with the requests other nodes forward to this one carried out by `handler`.
pub async fn serve_with_forwarding(
    listener: tokio::net::TcpListener,
    local: NodeId,
    inbox: Inbox,
    handler: Arc<dyn ForwardHandler>,
    config: TransportConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    serve_peers(listener, local, inbox, Some(handler), config, shutdown).await
}

async fn serve_peers(
    listener: tokio::net::TcpListener,
    local: NodeId,
    inbox: Inbox,
    forward: Option<Arc<dyn ForwardHandler>>,
    config: TransportConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    config.validate()?;
    let service = PeerService {
        local,
        inbox,
        config: config.clone(),
        transfers: Arc::default(),
        forward,
    };
    let server = RaftServer::new(service)
        .max_decoding_message_size(config.message_bytes_max)
        .max_encoding_message_size(config.message_bytes_max);
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(server)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
        .map_err(|error| Error::Io(error.to_string()))
}

#[derive(Debug)]
struct Peer {
    address: String,
    queue: mpsc::Sender<Message>,
    task: JoinHandle<()>,
    /// A lazily connected client for forwarded requests (unary calls multiplexed on one
    /// HTTP/2 connection, apart from the message stream).
    forward_client: Option<RaftClient<Channel>>,
}

/// The tonic client side: one task and one HTTP/2 connection per peer.
#[derive(Debug)]
pub struct GrpcTransport {
    local: NodeId,
    config: TransportConfig,
    runtime: tokio::runtime::Handle,
    peers: Mutex<HashMap<NodeId, Peer>>,
}

impl GrpcTransport {
    /// A transport for node `local`; its peer tasks run on `runtime`.
    pub fn new(
        local: NodeId,
        config: TransportConfig,
        runtime: tokio::runtime::Handle,
    ) -> Result<GrpcTransport, Error> {
        config.validate()?;
        Ok(GrpcTransport {
            local,
            config,
            runtime,
            peers: Mutex::new(HashMap::new()),
        })
    }

    fn peers(&self) -> MutexGuard<'_, HashMap<NodeId, Peer>> {
        self.peers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for GrpcTransport {
    fn drop(&mut self) {
        for (_, peer) in self.peers().drain() {
            peer.task.abort();
        }
    }
}

impl Transport for GrpcTransport {
    fn send(&self, message: Message) {
        assert_eq!(
            message.from, self.local,
            "a node sends only its own messages"
        );
        if let Some(peer) = self.peers().get(&message.to) {
            // A full queue drops the message; Raft retransmits what it needs.
            let _ = peer.queue.try_send(message);
        }
    }

    fn add_peer(&self, id: NodeId, address: String) {
        let mut peers = self.peers();
        if peers.get(&id).is_some_and(|peer| peer.address == address) {
            return;
        }
        let (queue, receiver) = mpsc::channel(self.config.peer_queue_messages_max);
        let task = self
            .runtime
            .spawn(run_peer(address.clone(), self.config.clone(), receiver));
        let forward_client = {
            // A lazy channel spawns its connection task on the current runtime.
            let _entered = self.runtime.enter();
            lazy_client(&address, &self.config)
        };
        if let Some(old) = peers.insert(
            id,
            Peer {
                address,
                queue,
                task,
                forward_client,
            },
        ) {
            old.task.abort();
        }
    }

    fn remove_peer(&self, id: NodeId) {
        if let Some(peer) = self.peers().remove(&id) {
            peer.task.abort();
        }
    }

    fn forward(&self, to: NodeId, request: ForwardRequest) -> ForwardFuture {
        let client = self
            .peers()
            .get(&to)
            .and_then(|peer| peer.forward_client.clone());
        let (local, timeout) = (self.local, self.config.forward_timeout());
        Box::pin(async move {
            let Some(mut client) = client else {
                return Err(ForwardError::Unreachable(format!(
                    "no address for node {to}"
                )));
            };
            let mut wire = Request::new(forward::request_to_proto(local, to, request.clone()));
            wire.set_timeout(timeout);
            match client.forward(wire).await {
                Ok(response) => forward::response_from_proto(&request, response.into_inner()),
                Err(status) => Err(ForwardError::Unreachable(status.to_string())),
            }
        })
    }
}

fn lazy_client(address: &str, config: &TransportConfig) -> Option<RaftClient<Channel>> {
    let endpoint = Endpoint::from_shared(format!("http://{address}")).ok()?;
    let channel = endpoint
        .connect_timeout(config.connect_timeout())
        .tcp_nodelay(true)
        .connect_lazy();
    Some(
        RaftClient::new(channel)
            .max_decoding_message_size(config.message_bytes_max)
            .max_encoding_message_size(config.message_bytes_max),
    )
}

async fn connect(address: &str, config: &TransportConfig) -> Option<RaftClient<Channel>> {
    let endpoint = Endpoint::from_shared(format!("http://{address}")).ok()?;
    let channel = endpoint
        .connect_timeout(config.connect_timeout())
        .tcp_nodelay(true)
        .connect()
        .await
        .ok()?;
    Some(
        RaftClient::new(channel)
            .max_decoding_message_size(config.message_bytes_max)
            .max_encoding_message_size(config.message_bytes_max),
    )
}

/// Sends everything queued for one peer, reconnecting with exponential backoff.
async fn run_peer(address: String, config: TransportConfig, mut queue: mpsc::Receiver<Message>) {
    let mut backoff_ms = config.reconnect_backoff_ms_min;
    loop {
        let Some(client) = connect(&address, &config).await else {
            tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
            backoff_ms = (backoff_ms * 2).min(config.reconnect_backoff_ms_max);
            continue;
        };
        match stream_to_peer(client, &config, &mut queue).await {
            StreamEnd::QueueClosed => return,
            StreamEnd::Broken { delivered_any } => {
                if delivered_any {
                    backoff_ms = config.reconnect_backoff_ms_min;
                }
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(config.reconnect_backoff_ms_max);
            }
        }
    }
}

enum StreamEnd {
    QueueClosed,
    Broken { delivered_any: bool },
}

async fn stream_to_peer(
    client: RaftClient<Channel>,
    config: &TransportConfig,
    queue: &mut mpsc::Receiver<Message>,
) -> StreamEnd {
    let (batches, batch_receiver) = mpsc::channel::<proto::MessageBatch>(8);
    let mut stream_client = client.clone();
    let call = tokio::spawn(async move {
        stream_client
            .stream(ReceiverStream::new(batch_receiver))
            .await
    });
    let mut delivered_any = false;
    let batch_bytes_max = config.message_bytes_max / 2;
    let end = loop {
        let Some(first) = queue.recv().await else {
            break StreamEnd::QueueClosed;
        };
        let mut batch = proto::MessageBatch::default();
        let mut batch_bytes = 0;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            if message.kind == MessageKind::Snapshot {
                if let Some((header, data)) = convert::snapshot_header(&message) {
                    tokio::spawn(send_snapshot(client.clone(), header, data, config.clone()));
                }
            } else {
                let wire = convert::message_to_proto(message);
                batch_bytes += wire.encoded_len();
                batch.messages.push(wire);
            }
            if batch.messages.len() < config.batch_messages_max && batch_bytes < batch_bytes_max {
                next = queue.try_recv().ok();
            }
        }
        if batch.messages.is_empty() {
            continue;
        }
        if batches.send(batch).await.is_err() {
            break StreamEnd::Broken { delivered_any };
        }
        delivered_any = true;
    };
    drop(batches);
    call.abort();
    end
}

/// Streams one snapshot in chunks, resuming from what the receiver holds after a failure.
async fn send_snapshot(
    mut client: RaftClient<Channel>,
    header: proto::SnapshotHeader,
    data: Bytes,
    config: TransportConfig,
) {
    let chunk_bytes = config.snapshot_chunk_bytes;
    let mut backoff_ms = config.reconnect_backoff_ms_min;
    for _ in 0..config.snapshot_attempts_max {
        let offset = match client.snapshot_offset(header.clone()).await {
            Ok(progress) => progress.into_inner().offset.min(data.len() as u64) as usize,
            Err(_) => 0,
        };
        let mut chunks = Vec::new();
        let mut start = offset;
        loop {
            let end = (start + chunk_bytes).min(data.len());
            chunks.push(proto::SnapshotChunk {
                header: Some(header.clone()),
                offset: start as u64,
                data: data.slice(start..end),
            });
            start = end;
            if start >= data.len() {
                break;
            }
        }
        let result = client.install_snapshot(tokio_stream::iter(chunks)).await;
        if let Ok(progress) = result
            && progress.into_inner().offset == data.len() as u64
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
        backoff_ms = (backoff_ms * 2).min(config.reconnect_backoff_ms_max);
    }
}
