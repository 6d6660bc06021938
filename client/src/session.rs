//! [`Client`] (endpoints, queries, cluster administration) and [`Session`] (exactly-once
//! commands, background keep-alives, the event stream and its listeners).
//!
//! A session's bookkeeping is [`ClientSession`] from conclave-statemachines: it numbers the
//! commands, remembers which answers arrived (the keep-alive acknowledges the answered
//! prefix) and which event batches are new (the [`conclave_statemachines::EventCursor`]
//! inside it). Every command runs in its own task that resends the same `(session,
//! sequence)` until an answer arrives or the session ends, so a caller that gives up never
//! leaves a gap in the sequence that would stall the commands after it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use conclave_statemachines::{
    ClientSession, CommandOutput, Entry, EventBatch, Index, MachineEvent,
};
use conclave_transport::client_api::{
    self, CloseSessionRequest, CommandRequest, EventsRequest, KeepAliveRequest, OpenSessionRequest,
    QueryRequest, command_response, events_response,
};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::config::ClientConfig;
use crate::connection::{Connection, Verdict, verdict};
use crate::error::{ClientError, Result};

/// How fresh a query's answer must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Reflects every write that completed before the query started.
    #[default]
    Linearizable,
    /// Served by the leader under its lease.
    Lease,
    /// Served by any replica, never older than what this session (or client) has seen.
    Sequential,
}

impl Consistency {
    fn wire(self) -> client_api::Consistency {
        match self {
            Consistency::Linearizable => client_api::Consistency::Linearizable,
            Consistency::Lease => client_api::Consistency::Lease,
            Consistency::Sequential => client_api::Consistency::Sequential,
        }
    }
}

/// A connection to a cluster; cheap to clone. Queries without a session, cluster
/// administration, and [`Client::open_session`].
#[derive(Clone)]
pub struct Client {
    connection: Arc<Connection>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Client")
            .field("endpoint", &self.connection.current_address())
            .finish()
    }
}

impl Client {
    /// Validates the configuration and prepares channels (they connect on first use, so a
    /// client can start before the cluster does).
    pub fn new(config: ClientConfig) -> Result<Client> {
        Ok(Client {
            connection: Arc::new(Connection::new(config)?),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.connection.config
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.connection.config.request_timeout
    }

    /// Opens a session with the configured timeout; keep-alives and the event stream run in
    /// the background until the last clone of the [`Session`] is dropped or closed.
    pub async fn open_session(&self) -> Result<Session> {
        let timeout_ms = self.connection.config.session_timeout_ms;
        let opened = self
            .connection
            .call(self.deadline(), |mut client, _| async move {
                client
                    .open_session(OpenSessionRequest { timeout_ms })
                    .await
                    .map(tonic::Response::into_inner)
            })
            .await?;
        Ok(Session::start(
            self.connection.clone(),
            opened.session,
            opened.timeout_ms,
        ))
    }

    /// A query without a session; `index_seen` bounds how stale a sequential answer may be.
    pub async fn query_raw(
        &self,
        machine_name: &str,
        machine_type: &str,
        payload: Vec<u8>,
        consistency: Consistency,
        index_seen: Index,
    ) -> Result<(Index, Vec<u8>)> {
        query(
            &self.connection,
            0,
            index_seen,
            machine_name,
            machine_type,
            Bytes::from(payload),
            consistency,
        )
        .await
    }

    /// The status of the node the client currently talks to.
    pub async fn status(&self) -> Result<client_api::StatusResponse> {
        self.connection
            .call(self.deadline(), |_, mut cluster| async move {
                cluster
                    .status(client_api::StatusRequest {})
                    .await
                    .map(tonic::Response::into_inner)
            })
            .await
    }

    /// The status of every endpoint the client knows, each asked directly (for `cluster
    /// status`): (address, status or the error that endpoint gave).
    pub async fn status_of_each(&self) -> Vec<(String, Result<client_api::StatusResponse>)> {
        let mut answers = Vec::new();
        for address in self.connection.config.endpoints.clone() {
            let mut config = self.connection.config.clone();
            config.endpoints = vec![address.clone()];
            config.request_timeout = config.attempt_timeout;
            let answer = match Client::new(config) {
                Ok(single) => single.status().await,
                Err(error) => Err(error),
            };
            answers.push((address, answer));
        }
        answers
    }

    /// Adds a learner (a non-voting member).
    pub async fn add_learner(
        &self,
        id: u64,
        peer_address: &str,
        client_address: &str,
    ) -> Result<Vec<client_api::Member>> {
        let request = client_api::AddLearnerRequest {
            id,
            peer_address: peer_address.to_string(),
            client_address: client_address.to_string(),
        };
        self.connection
            .call(self.deadline(), |_, mut cluster| {
                let request = request.clone();
                async move {
                    cluster
                        .add_learner(request)
                        .await
                        .map(|answer| answer.into_inner().members)
                }
            })
            .await
    }

    /// Makes a learner a voter.
    pub async fn promote(&self, id: u64) -> Result<Vec<client_api::Member>> {
        self.connection
            .call(self.deadline(), |_, mut cluster| async move {
                cluster
                    .promote(client_api::PromoteRequest { id })
                    .await
                    .map(|answer| answer.into_inner().members)
            })
            .await
    }

    /// Removes a member.
    pub async fn remove(&self, id: u64) -> Result<Vec<client_api::Member>> {
        self.connection
            .call(self.deadline(), |_, mut cluster| async move {
                cluster
                    .remove(client_api::RemoveRequest { id })
                    .await
                    .map(|answer| answer.into_inner().members)
            })
            .await
    }

    /// Asks the leader to hand leadership to voter `id`.
    pub async fn transfer_leader(&self, id: u64) -> Result<()> {
        self.connection
            .call(self.deadline(), |_, mut cluster| async move {
                cluster
                    .transfer_leader(client_api::TransferLeaderRequest { id })
                    .await
                    .map(|_| ())
            })
            .await
    }

    /// Downloads the serving node's latest snapshot into `writer`, checking its size and
    /// CRC-32; returns (index, term, size in bytes).
    pub async fn snapshot_save(
        &self,
        writer: &mut (dyn std::io::Write + Send),
    ) -> Result<(Index, u64, u64)> {
        let mut stream = self
            .connection
            .call(self.deadline(), |_, mut cluster| async move {
                cluster
                    .snapshot(client_api::SnapshotRequest {})
                    .await
                    .map(tonic::Response::into_inner)
            })
            .await?;
        let mut hasher = crc32fast::Hasher::new();
        let mut written = 0u64;
        loop {
            let chunk = match stream.message().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => {
                    return Err(ClientError::Unexpected(
                        "the snapshot stream ended before its last chunk".to_string(),
                    ));
                }
                Err(status) => {
                    return Err(ClientError::Server {
                        code: format!("{:?}", status.code()),
                        message: status.message().to_string(),
                    });
                }
            };
            if chunk.offset != written {
                return Err(ClientError::Unexpected(format!(
                    "snapshot chunk at offset {} where {written} was expected",
                    chunk.offset
                )));
            }
            hasher.update(&chunk.data);
            writer.write_all(&chunk.data).map_err(|error| {
                ClientError::Unexpected(format!("writing the snapshot: {error}"))
            })?;
            written += chunk.data.len() as u64;
            if chunk.last {
                let crc32 = hasher.finalize();
                if chunk.size_bytes != written || chunk.crc32 != crc32 {
                    return Err(ClientError::Unexpected(format!(
                        "snapshot of {written} bytes with CRC {crc32:08x}, the server announced {} bytes with CRC {:08x}",
                        chunk.size_bytes, chunk.crc32
                    )));
                }
                return Ok((chunk.index, chunk.term, written));
            }
        }
    }
}

async fn query(
    connection: &Connection,
    session: u64,
    index_seen: Index,
    machine_name: &str,
    machine_type: &str,
    payload: Bytes,
    consistency: Consistency,
) -> Result<(Index, Vec<u8>)> {
    let request = QueryRequest {
        session,
        index_seen,
        machine_name: machine_name.to_string(),
        machine_type: machine_type.to_string(),
        payload,
        consistency: consistency.wire() as i32,
    };
    let answer = connection
        .call(
            Instant::now() + connection.config.request_timeout,
            |mut client, _| {
                let request = request.clone();
                async move { client.query(request).await.map(tonic::Response::into_inner) }
            },
        )
        .await
        .map_err(|error| match error {
            ClientError::SessionExpired { .. } => ClientError::SessionExpired { session },
            other => other,
        })?;
    Ok((answer.index_applied, answer.output.to_vec()))
}

/// What a listener of one machine's events receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// An event of the machine, with the index of the entry that published it.
    Event {
        /// The entry's index.
        index: Index,
        /// The event in the machine's codec.
        payload: Vec<u8>,
    },
    /// The session ended; nothing follows.
    Expired,
}

struct SessionState {
    bookkeeping: ClientSession,
    /// The highest index a query answer reported (the bookkeeping tracks commands and events).
    index_seen_by_queries: Index,
    /// The index of the last event batch the server said it holds, from the last keep-alive.
    event_index_announced: Index,
}

struct SessionInner {
    connection: Arc<Connection>,
    id: u64,
    timeout_ms: u64,
    state: Mutex<SessionState>,
    /// Listeners by machine name.
    listeners: Mutex<HashMap<String, Vec<mpsc::Sender<Notice>>>>,
    /// True once the session expired or was closed.
    ended: watch::Sender<bool>,
    /// Asks the event task to open a new stream (events may have been lost with the old one).
    resubscribe: Notify,
}

/// Stops the background tasks when the last [`Session`] clone goes.
struct Tasks {
    handles: Vec<JoinHandle<()>>,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for handle in &self.handles {
            handle.abort();
        }
    }
}

/// An open session; cheap to clone. Commands through it are applied exactly once; its
/// events reach the listeners in order, each once, across reconnects and failovers.
#[derive(Clone)]
pub struct Session {
    inner: Arc<SessionInner>,
    _tasks: Arc<Tasks>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Session")
            .field("id", &self.inner.id)
            .finish()
    }
}

impl SessionInner {
    fn state(&self) -> std::sync::MutexGuard<'_, SessionState> {
        // Every update under this lock is a call on the bookkeeping that cannot panic midway
        // without an assertion (which is a bug anyway); a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn is_ended(&self) -> bool {
        *self.ended.borrow()
    }

    fn index_seen(&self) -> Index {
        let state = self.state();
        state
            .bookkeeping
            .index_seen()
            .max(state.index_seen_by_queries)
    }

    /// Marks the session ended and tells every listener, once.
    async fn end(&self) {
        if self.ended.send_replace(true) {
            return;
        }
        let listeners: Vec<mpsc::Sender<Notice>> = {
            let mut table = self
                .listeners
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            table.drain().flat_map(|(_, senders)| senders).collect()
        };
        for listener in listeners {
            // A listener that went away needs no notice.
            let _ = listener.send(Notice::Expired).await;
        }
    }

    /// Hands a new batch to the listeners of each event's machine, in order.
    async fn dispatch(&self, index: Index, events: Vec<MachineEvent>) {
        for event in events {
            let senders: Vec<mpsc::Sender<Notice>> = {
                let table = self
                    .listeners
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                table.get(&event.machine_name).cloned().unwrap_or_default()
            };
            for sender in senders {
                // A listener that went away is pruned below.
                let _ = sender
                    .send(Notice::Event {
                        index,
                        payload: event.payload.clone(),
                    })
                    .await;
            }
            let mut table = self
                .listeners
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(senders) = table.get_mut(&event.machine_name) {
                senders.retain(|sender| !sender.is_closed());
            }
        }
    }

    /// Sends one command until it is answered or the session ends.
    async fn send_command(self: Arc<Self>, request: CommandRequest) -> Result<(Index, Vec<u8>)> {
        loop {
            if self.is_ended() {
                return Err(ClientError::SessionExpired { session: self.id });
            }
            let deadline = Instant::now() + self.connection.config.request_timeout;
            let answer = self
                .connection
                .call(deadline, |mut client, _| {
                    let request = request.clone();
                    async move {
                        client
                            .command(request)
                            .await
                            .map(tonic::Response::into_inner)
                    }
                })
                .await;
            let answer = match answer {
                Ok(answer) => answer,
                Err(ClientError::Timeout | ClientError::Unavailable { .. }) => continue,
                Err(ClientError::SessionExpired { .. }) => {
                    self.end().await;
                    return Err(ClientError::SessionExpired { session: self.id });
                }
                Err(other) => return Err(other),
            };
            let output = CommandOutput {
                session: self.id,
                sequence: request.sequence,
                result: Ok(Vec::new()),
            };
            self.state().bookkeeping.answered(&output, answer.index);
            return match answer.result {
                Some(command_response::Result::Output(output)) => {
                    Ok((answer.index, output.to_vec()))
                }
                Some(command_response::Result::Error(error)) => Err(ClientError::Rejected {
                    code: client_api::ErrorCode::try_from(error.code)
                        .map(|code| code.as_str_name().to_string())
                        .unwrap_or_else(|_| error.code.to_string()),
                    message: error.message,
                }),
                None => Err(ClientError::Unexpected(
                    "a command response without a result".to_string(),
                )),
            };
        }
    }

    /// Keeps the session alive every third of its timeout and acknowledges what arrived.
    async fn keep_alive_loop(self: Arc<Self>) {
        let interval = Duration::from_millis((self.timeout_ms / 3).max(1));
        while !self.is_ended() {
            tokio::time::sleep(interval).await;
            let (request, received) = {
                let state = self.state();
                let Entry::KeepAlive {
                    command_sequence_acknowledged,
                    event_index_acknowledged,
                    ..
                } = state.bookkeeping.keep_alive()
                else {
                    unreachable!("keep_alive builds a keep-alive")
                };
                (
                    KeepAliveRequest {
                        session: self.id,
                        command_sequence_acknowledged,
                        event_index_acknowledged,
                    },
                    event_index_acknowledged,
                )
            };
            // A keep-alive must land within the timeout to matter; retry until then.
            let deadline = Instant::now() + Duration::from_millis(self.timeout_ms);
            let answer = self
                .connection
                .call(deadline, |mut client, _| async move {
                    client
                        .keep_alive(request)
                        .await
                        .map(tonic::Response::into_inner)
                })
                .await;
            match answer {
                Ok(answer) => {
                    let mut state = self.state();
                    // Announced twice and still not received: the stream lost it.
                    let lost = state.event_index_announced > received;
                    state.event_index_announced = answer.event_index_last;
                    drop(state);
                    if lost {
                        self.resubscribe.notify_one();
                    }
                }
                Err(ClientError::SessionExpired { .. }) => self.end().await,
                Err(error) => tracing::debug!(session = self.id, %error, "keep-alive failed"),
            }
        }
    }

    /// Receives the session's event batches, reconnecting (elsewhere if need be) after any
    /// failure and resuming after the last batch received.
    async fn event_loop(self: Arc<Self>) {
        let mut failures = 0u32;
        while !self.is_ended() {
            let Ok((tried, channel)) = self.connection.current() else {
                return;
            };
            match self.stream_events(channel).await {
                Ok(()) => {
                    // A stream the server ended (or one replaced on purpose) is reopened
                    // after the shortest backoff, so a server that keeps ending streams
                    // is not called in a tight loop.
                    failures = 0;
                    tokio::time::sleep(self.connection.backoff(0)).await;
                }
                Err(status) => {
                    if verdict(&status) == Verdict::SessionExpired {
                        self.end().await;
                        return;
                    }
                    self.connection.failed(tried, Some(&status));
                    tokio::time::sleep(self.connection.backoff(failures)).await;
                    failures = failures.saturating_add(1);
                }
            }
        }
    }

    /// One stream: returns Ok when it ended or should be replaced, Err on a failure.
    async fn stream_events(&self, channel: Channel) -> std::result::Result<(), tonic::Status> {
        let acknowledged = {
            let Entry::KeepAlive {
                event_index_acknowledged,
                ..
            } = self.state().bookkeeping.keep_alive()
            else {
                unreachable!("keep_alive builds a keep-alive")
            };
            event_index_acknowledged
        };
        let mut client = client_api::client_client::ClientClient::new(channel);
        let request = EventsRequest {
            session: self.id,
            event_index_acknowledged: acknowledged,
        };
        let opened = tokio::time::timeout(
            self.connection.config.attempt_timeout,
            client.events(request),
        )
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("opening the event stream timed out"))?;
        let mut stream = opened?.into_inner();
        loop {
            let message = tokio::select! {
                message = stream.message() => message?,
                () = self.resubscribe.notified() => return Ok(()),
            };
            let Some(message) = message else {
                return Ok(());
            };
            match message.item {
                Some(events_response::Item::Batch(batch)) => {
                    let batch = EventBatch {
                        index: batch.index,
                        session: self.id,
                        events: batch
                            .events
                            .into_iter()
                            .map(|event| MachineEvent {
                                machine_name: event.machine_name,
                                payload: event.payload.to_vec(),
                            })
                            .collect(),
                    };
                    let new = self.state().bookkeeping.event_batch(&batch);
                    if new {
                        self.dispatch(batch.index, batch.events).await;
                    }
                }
                Some(events_response::Item::Expired(_)) => {
                    self.end().await;
                    return Ok(());
                }
                None => {}
            }
        }
    }
}

impl Session {
    fn start(connection: Arc<Connection>, id: u64, timeout_ms: u64) -> Session {
        let (ended, _) = watch::channel(false);
        let inner = Arc::new(SessionInner {
            connection,
            id,
            timeout_ms,
            state: Mutex::new(SessionState {
                bookkeeping: ClientSession::new(id),
                index_seen_by_queries: 0,
                event_index_announced: 0,
            }),
            listeners: Mutex::new(HashMap::new()),
            ended,
            resubscribe: Notify::new(),
        });
        let handles = vec![
            tokio::spawn(inner.clone().keep_alive_loop()),
            tokio::spawn(inner.clone().event_loop()),
        ];
        Session {
            inner,
            _tasks: Arc::new(Tasks { handles }),
        }
    }

    /// The session id (the index of the entry that opened it).
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The timeout the server granted, in milliseconds.
    pub fn timeout_ms(&self) -> u64 {
        self.inner.timeout_ms
    }

    /// The highest log index this session has seen (commands, events and queries).
    pub fn index_seen(&self) -> Index {
        self.inner.index_seen()
    }

    /// Whether the session expired or was closed.
    pub fn is_ended(&self) -> bool {
        self.inner.is_ended()
    }

    /// Waits until the session expires or is closed.
    pub async fn ended(&self) {
        let mut receiver = self.inner.ended.subscribe();
        // The sender lives as long as `self`, so waiting cannot fail.
        let _ = receiver.wait_for(|ended| *ended).await;
    }

    /// A client sharing this session's endpoints (for queries and administration).
    pub fn client(&self) -> Client {
        Client {
            connection: self.inner.connection.clone(),
        }
    }

    /// Applies a command exactly once and returns (index, the machine's encoded output).
    /// After `request_timeout` the caller gets `Timeout`, while the command keeps being
    /// resent in the background with the same sequence until the session ends.
    pub async fn command_raw(
        &self,
        machine_name: &str,
        machine_type: &str,
        payload: Vec<u8>,
    ) -> Result<(Index, Vec<u8>)> {
        if self.is_ended() {
            return Err(ClientError::SessionExpired {
                session: self.inner.id,
            });
        }
        let entry = self
            .inner
            .state()
            .bookkeeping
            .command(machine_name, machine_type, Vec::new());
        let Entry::Command { sequence, .. } = entry else {
            unreachable!("command builds a command")
        };
        let request = CommandRequest {
            session: self.inner.id,
            sequence,
            machine_name: machine_name.to_string(),
            machine_type: machine_type.to_string(),
            payload: Bytes::from(payload),
        };
        let task = tokio::spawn(self.inner.clone().send_command(request));
        match tokio::time::timeout(self.inner.connection.config.request_timeout, task).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_join)) => Err(ClientError::Closed),
            Err(_elapsed) => Err(ClientError::Timeout),
        }
    }

    /// A query in this session: a sequential one never sees older state than the session
    /// saw. Returns (index applied by the answering replica or 0, encoded output).
    pub async fn query_raw(
        &self,
        machine_name: &str,
        machine_type: &str,
        payload: Vec<u8>,
        consistency: Consistency,
    ) -> Result<(Index, Vec<u8>)> {
        let answer = query(
            &self.inner.connection,
            self.inner.id,
            self.inner.index_seen(),
            machine_name,
            machine_type,
            Bytes::from(payload),
            consistency,
        )
        .await?;
        let mut state = self.inner.state();
        state.index_seen_by_queries = state.index_seen_by_queries.max(answer.0);
        Ok(answer)
    }

    /// Receives, from now on, the events that machine `machine_name` publishes to this
    /// session, then [`Notice::Expired`] when the session ends. Subscribe before sending the
    /// command that makes the machine publish, so nothing is missed.
    pub fn listen(&self, machine_name: &str) -> mpsc::Receiver<Notice> {
        let (sender, receiver) =
            mpsc::channel(self.inner.connection.config.listener_events_buffered_max);
        if self.is_ended() {
            // The channel has room for one notice.
            let _ = sender.try_send(Notice::Expired);
            return receiver;
        }
        self.inner
            .listeners
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(machine_name.to_string())
            .or_default()
            .push(sender);
        receiver
    }

    /// Closes the session: the server releases its locks, ephemerals and candidacies now.
    pub async fn close(&self) -> Result<()> {
        if self.is_ended() {
            return Ok(());
        }
        let session = self.inner.id;
        let deadline = Instant::now() + self.inner.connection.config.request_timeout;
        let answer = self
            .inner
            .connection
            .call(deadline, |mut client, _| async move {
                client
                    .close_session(CloseSessionRequest { session })
                    .await
                    .map(|_| ())
            })
            .await;
        self.inner.end().await;
        match answer {
            Ok(()) | Err(ClientError::SessionExpired { .. }) => Ok(()),
            Err(other) => Err(other),
        }
    }
}

/// Opens a client and a session in one call.
pub async fn connect(config: ClientConfig) -> Result<(Client, Session)> {
    let client = Client::new(config)?;
    let session = client.open_session().await?;
    Ok((client, session))
}
