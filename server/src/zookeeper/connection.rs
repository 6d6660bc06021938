//! One client connection: the handshake, then requests one at a time and watch
//! notifications between them.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use base64::Engine as _;
use conclave_statemachines::tree::{
    AddWatchMode, EventType, Id, Op, OpResult, TreeCommand, TreeError, TreeOutput, TreeQuery,
    TreeResponse, WatchedEvent,
};
use conclave_statemachines::{EventBatch, QueryRequest, SessionError, codec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, mpsc};

use super::jute::{Reader, Writer};
use super::protocol::{
    ConnectRequest, ConnectResponse, Request, SetWatches, code, notification_frame, opcode,
    reply_frame, write_acl, write_multi_header, write_stat, xid,
};
use super::{ConnectionInfo, SessionEntry, Shared, ZooKeeperError, four_letter};
use crate::gateway::{Consistency, GatewayError, ManagedSession, SessionEvent};

/// The machine type the frontend serves.
const TREE_TYPE: &str = "tree";

/// Why a connection's loop ended, which decides what happens to its session.
enum Ended {
    /// The client went away or sent a frame we could not read: the session waits for a
    /// reconnect until its timeout.
    Detached,
    /// A newer connection took the session over.
    Replaced,
    /// The session is gone (closed by the client, expired, or lost to a failure).
    SessionGone,
}

/// What to do after a reply.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    /// Close the connection; the session stays (auth failure, malformed request).
    Close,
    /// The session is gone: forget it and close.
    SessionGone,
}

/// A request's failure as the client sees it.
struct Failure {
    code: i32,
    flow: Flow,
}

impl Failure {
    fn tree(error: &TreeError) -> Failure {
        Failure {
            code: error.code(),
            flow: Flow::Continue,
        }
    }
}

/// A reply ready to write.
struct Answer {
    zxid: u64,
    code: i32,
    body: Vec<u8>,
    flow: Flow,
}

/// Runs one connection to its end.
pub(super) async fn run(shared: Arc<Shared>, id: u64, mut stream: TcpStream, peer: SocketAddr) {
    let mut first = [0u8; 4];
    let read =
        tokio::time::timeout(shared.config.connect_timeout, stream.read_exact(&mut first)).await;
    if !matches!(read, Ok(Ok(_))) {
        return;
    }
    if let Some(answer) = four_letter::answer(&shared, &first).await {
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
        return;
    }
    let length = i32::from_be_bytes(first);
    let Ok(frame) = read_body(&shared, &mut stream, length).await else {
        return;
    };
    let Ok(request) = ConnectRequest::decode(&frame) else {
        return;
    };
    shared.connections().insert(
        id,
        ConnectionInfo {
            peer,
            session_id: 0,
            received: 1,
            sent: 0,
        },
    );
    let Some(mut connection) = Connection::handshake(&shared, id, stream, peer, request).await
    else {
        return;
    };
    let ended = connection.serve().await;
    connection.finish(ended);
}

async fn read_body<R: AsyncReadExt + Unpin>(
    shared: &Shared,
    stream: &mut R,
    length: i32,
) -> Result<Vec<u8>, ZooKeeperError> {
    if length < 0 || length as usize > shared.config.frame_bytes_max {
        return Err(ZooKeeperError::FrameTooLarge {
            length: i64::from(length),
            frame_bytes_max: shared.config.frame_bytes_max,
        });
    }
    let mut frame = vec![0u8; length as usize];
    stream
        .read_exact(&mut frame)
        .await
        .map_err(|error| ZooKeeperError::Malformed(error.to_string()))?;
    Ok(frame)
}

/// Reads frames ahead of the request being handled; ends at the first bad frame.
async fn read_frames(
    shared: Arc<Shared>,
    mut reader: OwnedReadHalf,
    frames: mpsc::Sender<Result<Vec<u8>, ZooKeeperError>>,
) {
    loop {
        let length = match reader.read_i32().await {
            Ok(length) => length,
            Err(_) => return,
        };
        let frame = read_body(&shared, &mut reader, length).await;
        let last = frame.is_err();
        if frames.send(frame).await.is_err() || last {
            return;
        }
    }
}

struct Connection {
    shared: Arc<Shared>,
    id: u64,
    peer: SocketAddr,
    writer: OwnedWriteHalf,
    frames: mpsc::Receiver<Result<Vec<u8>, ZooKeeperError>>,
    session: Arc<ManagedSession>,
    session_id: i64,
    generation: u64,
    replaced: Arc<Notify>,
    events: mpsc::Receiver<SessionEvent>,
    /// Event batches taken from `events` but not written yet, in index order.
    held: VecDeque<EventBatch>,
    /// The highest zxid this connection has shown the client.
    index_seen: u64,
}

impl Connection {
    /// Opens or resumes the session and answers the `ConnectRequest`; None when the
    /// connection should just close (after the expired answer, if any).
    async fn handshake(
        shared: &Arc<Shared>,
        id: u64,
        mut stream: TcpStream,
        peer: SocketAddr,
        request: ConnectRequest,
    ) -> Option<Connection> {
        // As ZooKeeper: a server that applied less than the client saw must not serve it
        // (the client would go back in time); it closes and the client tries elsewhere.
        let applied = shared.gateway.status().await.ok()?.applied;
        if request.last_zxid_seen > 0 && request.last_zxid_seen as u64 > applied {
            return None;
        }
        let attached = if request.session_id == 0 {
            let timeout_ms = shared.config.negotiate_timeout_ms(request.timeout_ms);
            let session = shared.gateway.open_managed_session(timeout_ms).await.ok()?;
            Some(attach_new(shared, session))
        } else if request.password == shared.password(request.session_id) {
            attach_existing(shared, request.session_id)
        } else {
            None
        };
        let Some((session, generation, replaced)) = attached else {
            let _ = stream
                .write_all(&Writer::frame_of(&ConnectResponse::expired().encode()))
                .await;
            return None;
        };
        let session_id = session.id() as i64;
        // On a follower the session's registration may not be applied here yet, and the
        // subscription reads the local layer: wait until it is (a sequential read at the
        // session's own index).
        let events = match wait_applied(shared, &session).await {
            Ok(()) => session.events().await,
            Err(error) => Err(error),
        };
        let events = match events {
            Ok(events) => events,
            Err(_) => {
                let _ = stream
                    .write_all(&Writer::frame_of(&ConnectResponse::expired().encode()))
                    .await;
                shared.sessions().remove(&session_id);
                return None;
            }
        };
        let response = ConnectResponse {
            protocol_version: 0,
            timeout_ms: session.timeout_ms() as i32,
            session_id,
            password: shared.password(session_id),
            read_only: false,
        };
        if stream
            .write_all(&Writer::frame_of(&response.encode()))
            .await
            .is_err()
        {
            detach(shared, session_id, generation);
            return None;
        }
        if let Some(info) = shared.connections().get_mut(&id) {
            info.session_id = session_id;
            info.sent += 1;
        }
        let (reader, writer) = stream.into_split();
        let (frame_sender, frames) = mpsc::channel(shared.config.requests_queued_max);
        tokio::spawn(read_frames(shared.clone(), reader, frame_sender));
        let index_seen = session
            .index_seen()
            .max(request.last_zxid_seen.max(0) as u64);
        Some(Connection {
            shared: shared.clone(),
            id,
            peer,
            writer,
            frames,
            session,
            session_id,
            generation,
            replaced,
            events,
            held: VecDeque::new(),
            index_seen,
        })
    }

    async fn serve(&mut self) -> Ended {
        loop {
            let replaced = self.replaced.clone();
            tokio::select! {
                biased;
                () = replaced.notified() => return Ended::Replaced,
                event = self.events.recv() => match event {
                    Some(SessionEvent::Batch(batch)) => {
                        self.held.push_back(batch);
                        if self.write_held(u64::MAX).await.is_err() {
                            return Ended::Detached;
                        }
                    }
                    Some(SessionEvent::Expired) | None => return self.events_ended(),
                },
                frame = self.frames.recv() => {
                    let Some(Ok(frame)) = frame else {
                        return Ended::Detached;
                    };
                    self.shared.packets_received.fetch_add(1, Ordering::Relaxed);
                    match self.handle(&frame).await {
                        Ok(Flow::Continue) => {}
                        Ok(Flow::Close) | Err(_) => return Ended::Detached,
                        Ok(Flow::SessionGone) => return Ended::SessionGone,
                    }
                }
            }
        }
    }

    /// The event stream ended: either a newer connection subscribed instead of us, or the
    /// session is gone.
    fn events_ended(&self) -> Ended {
        let sessions = self.shared.sessions();
        match sessions.get(&self.session_id) {
            Some(entry) if entry.generation != self.generation => Ended::Replaced,
            _ => Ended::SessionGone,
        }
    }

    fn finish(self, ended: Ended) {
        match ended {
            Ended::Detached => detach(&self.shared, self.session_id, self.generation),
            Ended::Replaced => {}
            Ended::SessionGone => {
                let mut sessions = self.shared.sessions();
                if sessions
                    .get(&self.session_id)
                    .is_some_and(|entry| entry.generation == self.generation)
                {
                    sessions.remove(&self.session_id);
                }
            }
        }
    }

    async fn write(&mut self, frame: &[u8]) -> std::io::Result<()> {
        self.shared.packets_sent.fetch_add(1, Ordering::Relaxed);
        if let Some(info) = self.shared.connections().get_mut(&self.id) {
            info.sent += 1;
        }
        self.writer.write_all(frame).await
    }

    /// Moves every routed event batch into `held`, then writes the held batches up to
    /// `index` (all of them for `u64::MAX`).
    async fn write_held(&mut self, index: u64) -> std::io::Result<()> {
        while let Ok(event) = self.events.try_recv() {
            match event {
                SessionEvent::Batch(batch) => self.held.push_back(batch),
                // The main loop sees the end of the stream at its next turn.
                SessionEvent::Expired => break,
            }
        }
        while self.held.front().is_some_and(|batch| batch.index <= index) {
            let Some(batch) = self.held.pop_front() else {
                break;
            };
            self.index_seen = self.index_seen.max(batch.index);
            for event in &batch.events {
                if event.machine_name != self.shared.config.tree_machine_name {
                    continue;
                }
                let Ok(watched) = codec::decode::<WatchedEvent>(&event.payload, "watch event")
                else {
                    tracing::warn!("a tree event did not decode; skipped");
                    continue;
                };
                let frame = notification_frame(
                    batch.index as i64,
                    watched.event_type.code(),
                    &watched.path,
                );
                self.write(&frame).await?;
            }
        }
        Ok(())
    }

    async fn handle(&mut self, frame: &[u8]) -> std::io::Result<Flow> {
        if let Some(info) = self.shared.connections().get_mut(&self.id) {
            info.received += 1;
        }
        let mut reader = Reader::new(frame);
        let (Ok(request_xid), Ok(request_opcode)) = (reader.int(), reader.int()) else {
            // Without a header there is no xid to answer: ZooKeeper closes such a
            // connection, and so do we.
            return Ok(Flow::Close);
        };
        let body = &frame[8..];
        let answer = match Request::decode(request_opcode, body, self.shared.config.multi_ops_max) {
            Ok(request) => self.execute(request).await,
            Err(ZooKeeperError::BadArguments) => self.answer_code(code::BAD_ARGUMENTS),
            Err(_) => Answer {
                flow: Flow::Close,
                ..self.answer_code(code::MARSHALLING_ERROR)
            },
        };
        self.index_seen = self.index_seen.max(answer.zxid);
        // Watch events at or before the reply's zxid go first, so a client never sees a
        // change before the event that announces it.
        self.write_held(answer.zxid).await?;
        let reply_xid = match request_opcode {
            opcode::PING => xid::PING,
            opcode::AUTH => xid::AUTH,
            opcode::SET_WATCHES | opcode::SET_WATCHES2 => xid::SET_WATCHES,
            _ => request_xid,
        };
        let frame = reply_frame(reply_xid, answer.zxid as i64, answer.code, &answer.body);
        self.write(&frame).await?;
        if answer.flow != Flow::Continue {
            let _ = self.writer.shutdown().await;
        }
        Ok(answer.flow)
    }

    fn answer_code(&self, code: i32) -> Answer {
        Answer {
            zxid: self.index_seen,
            code,
            body: Vec::new(),
            flow: Flow::Continue,
        }
    }

    fn answer_failure(&self, failure: Failure) -> Answer {
        Answer {
            flow: failure.flow,
            ..self.answer_code(failure.code)
        }
    }

    fn answer_body(&self, zxid: u64, body: Writer) -> Answer {
        Answer {
            zxid: zxid.max(self.index_seen),
            code: code::OK,
            body: body.into_bytes(),
            flow: Flow::Continue,
        }
    }

    async fn execute(&mut self, request: Request) -> Answer {
        let outcome = match request {
            Request::Ping => return self.answer_code(code::OK),
            Request::CloseSession => {
                let _ = self.session.close().await;
                return Answer {
                    flow: Flow::SessionGone,
                    ..self.answer_code(code::OK)
                };
            }
            Request::Unknown(_) | Request::RemoveWatches { check: true, .. } => {
                return self.answer_code(code::UNIMPLEMENTED);
            }
            Request::Reconfig => return self.answer_code(code::RECONFIG_DISABLED),
            Request::WhoAmI => return self.who_am_i(),
            Request::Auth {
                scheme,
                credentials,
            } => return self.auth(&scheme, &credentials).await,
            Request::SetWatches(watches) => return self.set_watches(watches).await,
            other => self.tree_request(other).await,
        };
        match outcome {
            Ok(answer) => answer,
            Err(failure) => self.answer_failure(failure),
        }
    }

    async fn tree_request(&mut self, request: Request) -> Result<Answer, Failure> {
        match request {
            Request::Create { request, with_stat } => {
                let (zxid, response) = self.command(TreeCommand::Create(request)).await?;
                let TreeResponse::Created { path, stat } = response else {
                    return Err(unexpected(&response));
                };
                let mut body = Writer::new();
                body.string(&path);
                if with_stat {
                    write_stat(&mut body, &stat);
                }
                Ok(self.answer_body(zxid, body))
            }
            Request::Delete { path, version } => {
                let (zxid, _) = self.command(TreeCommand::Delete { path, version }).await?;
                Ok(self.answer_body(zxid, Writer::new()))
            }
            Request::SetData {
                path,
                data,
                version,
            } => {
                let command = TreeCommand::SetData {
                    path,
                    data,
                    version,
                };
                let (zxid, response) = self.command(command).await?;
                self.stat_answer(zxid, &response)
            }
            Request::SetAcl { path, acl, version } => {
                let command = TreeCommand::SetAcl { path, acl, version };
                let (zxid, response) = self.command(command).await?;
                self.stat_answer(zxid, &response)
            }
            Request::Exists { path, watch } => {
                let (zxid, response) = if watch {
                    self.command(TreeCommand::Exists { path, watch }).await?
                } else {
                    self.query(TreeQuery::Exists { path }).await?
                };
                match response {
                    TreeResponse::Absent => Ok(Answer {
                        zxid,
                        ..self.answer_code(
                            TreeError::NoNode {
                                path: String::new(),
                            }
                            .code(),
                        )
                    }),
                    other => self.stat_answer(zxid, &other),
                }
            }
            Request::GetData { path, watch } => {
                let (zxid, response) = if watch {
                    self.command(TreeCommand::GetData { path, watch }).await?
                } else {
                    self.query(TreeQuery::GetData { path }).await?
                };
                let TreeResponse::Data { data, stat } = response else {
                    return Err(unexpected(&response));
                };
                let mut body = Writer::new();
                body.buffer(&data);
                write_stat(&mut body, &stat);
                Ok(self.answer_body(zxid, body))
            }
            Request::GetChildren {
                path,
                watch,
                with_stat,
            } => {
                let (zxid, response) = if watch {
                    self.command(TreeCommand::GetChildren { path, watch })
                        .await?
                } else {
                    self.query(TreeQuery::GetChildren { path }).await?
                };
                let TreeResponse::Children { children, stat } = response else {
                    return Err(unexpected(&response));
                };
                let mut body = Writer::new();
                body.strings(&children);
                if with_stat {
                    write_stat(&mut body, &stat);
                }
                Ok(self.answer_body(zxid, body))
            }
            Request::GetAcl { path } => {
                let (zxid, response) = self.query(TreeQuery::GetAcl { path }).await?;
                let TreeResponse::Acl { acl, stat } = response else {
                    return Err(unexpected(&response));
                };
                let mut body = Writer::new();
                write_acl(&mut body, &acl);
                write_stat(&mut body, &stat);
                Ok(self.answer_body(zxid, body))
            }
            Request::Sync { path } => {
                // Through the log rather than a linearizable query: the entry's index is a
                // zxid every later sequential read waits for, on whichever replica.
                let (zxid, _) = self
                    .command(TreeCommand::Sync { path: path.clone() })
                    .await?;
                let mut body = Writer::new();
                body.string(&path);
                Ok(self.answer_body(zxid, body))
            }
            Request::Check { path, version } => {
                let ops = vec![Op::Check { path, version }];
                let (zxid, response) = self.command(TreeCommand::Multi(ops)).await?;
                match response {
                    TreeResponse::MultiFailed(results) => Err(Failure {
                        code: first_error(&results),
                        flow: Flow::Continue,
                    }),
                    _ => Ok(self.answer_body(zxid, Writer::new())),
                }
            }
            Request::Multi {
                ops,
                create_with_stat,
            } => {
                let (zxid, response) = self.command(TreeCommand::Multi(ops)).await?;
                let results = match response {
                    TreeResponse::Multi(results) | TreeResponse::MultiFailed(results) => results,
                    other => return Err(unexpected(&other)),
                };
                Ok(self.answer_body(zxid, multi_body(&results, &create_with_stat)))
            }
            Request::MultiRead(reads) => {
                let (zxid, response) = self.query(TreeQuery::MultiRead(reads)).await?;
                let TreeResponse::MultiRead(outputs) = response else {
                    return Err(unexpected(&response));
                };
                Ok(self.answer_body(zxid, multi_read_body(&outputs)))
            }
            Request::RemoveWatches {
                path, watcher_type, ..
            } => {
                let command = TreeCommand::RemoveWatches { path, watcher_type };
                let (zxid, _) = self.command(command).await?;
                Ok(self.answer_body(zxid, Writer::new()))
            }
            Request::AddWatch { path, mode } => {
                let (zxid, _) = self.command(TreeCommand::AddWatch { path, mode }).await?;
                Ok(self.answer_body(zxid, Writer::new()))
            }
            Request::GetEphemerals { prefix } => {
                let (zxid, response) = self.query(TreeQuery::GetEphemerals { prefix }).await?;
                let TreeResponse::Paths(paths) = response else {
                    return Err(unexpected(&response));
                };
                let mut body = Writer::new();
                body.strings(&paths);
                Ok(self.answer_body(zxid, body))
            }
            Request::GetAllChildrenNumber { path } => {
                let query = TreeQuery::GetAllChildrenNumber { path };
                let (zxid, response) = self.query(query).await?;
                let TreeResponse::Count(count) = response else {
                    return Err(unexpected(&response));
                };
                let mut body = Writer::new();
                body.int(i32::try_from(count).unwrap_or(i32::MAX));
                Ok(self.answer_body(zxid, body))
            }
            other => Err(unexpected(&other)),
        }
    }

    fn stat_answer(&self, zxid: u64, response: &TreeResponse) -> Result<Answer, Failure> {
        let TreeResponse::Stat(stat) = response else {
            return Err(unexpected(response));
        };
        let mut body = Writer::new();
        write_stat(&mut body, stat);
        Ok(self.answer_body(zxid, body))
    }

    /// Runs a tree command under the session; the zxid is the entry's index.
    async fn command(&mut self, command: TreeCommand) -> Result<(u64, TreeResponse), Failure> {
        let payload = codec::encode(&command, "tree command").map_err(internal)?;
        let answered = self
            .session
            .command(&self.shared.config.tree_machine_name, TREE_TYPE, payload)
            .await;
        let answer = match answered {
            Ok(answer) => answer,
            Err(error) => return Err(self.gateway_failure(&error)),
        };
        let bytes = answer
            .result
            .map_err(|error| self.session_failure(&error))?;
        let output: TreeOutput = codec::decode(&bytes, "tree output").map_err(internal)?;
        self.index_seen = self.index_seen.max(answer.index);
        // A refused write still has a zxid, the entry that refused it: `index_seen` holds
        // it for the error reply.
        output
            .map(|response| (answer.index, response))
            .map_err(|error| Failure::tree(&error))
    }

    /// Answers a read from the local replica, no older than what the session saw.
    async fn query(&mut self, query: TreeQuery) -> Result<(u64, TreeResponse), Failure> {
        let payload = codec::encode(&query, "tree query").map_err(internal)?;
        let request = QueryRequest {
            session: Some(self.session.id()),
            index_seen: self.index_seen.max(self.session.index_seen()),
            machine_name: self.shared.config.tree_machine_name.clone(),
            machine_type: TREE_TYPE.to_string(),
            payload,
        };
        let answer = self
            .shared
            .gateway
            .query(&request, Consistency::Sequential)
            .await
            .map_err(|error| self.gateway_failure(&error))?;
        let output: TreeOutput = codec::decode(&answer.output, "tree output").map_err(internal)?;
        let zxid = answer.index_applied.unwrap_or(self.index_seen);
        self.index_seen = self.index_seen.max(zxid);
        match output {
            Ok(response) => Ok((zxid, response)),
            Err(error) => Err(Failure::tree(&error)),
        }
    }

    fn gateway_failure(&self, error: &GatewayError) -> Failure {
        match error {
            GatewayError::Rejected(error) => self.session_failure(error),
            // A managed session that lost a command cannot take more: its ZooKeeper session
            // is lost, and the client learns so when it reconnects.
            _ if self.session.is_broken() => Failure {
                code: code::CONNECTION_LOSS,
                flow: Flow::SessionGone,
            },
            GatewayError::NoLeader
            | GatewayError::NotLeader { .. }
            | GatewayError::Timeout
            | GatewayError::Stopped => Failure {
                code: code::CONNECTION_LOSS,
                flow: Flow::Continue,
            },
            GatewayError::Config { .. } | GatewayError::Internal(_) => Failure {
                code: code::SYSTEM_ERROR,
                flow: Flow::Continue,
            },
        }
    }

    fn session_failure(&self, error: &SessionError) -> Failure {
        match error {
            SessionError::UnknownSession { .. } => Failure {
                code: code::SESSION_EXPIRED,
                flow: Flow::SessionGone,
            },
            SessionError::MalformedPayload { .. } => Failure {
                code: code::MARSHALLING_ERROR,
                flow: Flow::Continue,
            },
            _ if self.session.is_broken() => Failure {
                code: code::SESSION_EXPIRED,
                flow: Flow::SessionGone,
            },
            _ => Failure {
                code: code::SYSTEM_ERROR,
                flow: Flow::Continue,
            },
        }
    }

    fn who_am_i(&self) -> Answer {
        let mut identities = vec![Id::new("ip", &self.peer.ip().to_string())];
        if let Some(entry) = self.shared.sessions().get(&self.session_id) {
            identities.extend(entry.identities.iter().cloned());
        }
        let mut body = Writer::new();
        body.int(identities.len() as i32);
        for identity in &identities {
            body.string(&identity.scheme).string(&identity.id);
        }
        self.answer_body(self.index_seen, body)
    }

    /// `auth`: the digest scheme only, as ZooKeeper without extra providers. A failure is
    /// answered with `AUTHFAILED` and closes the connection, as ZooKeeper does.
    async fn auth(&mut self, scheme: &str, credentials: &[u8]) -> Answer {
        let auth_failed = Answer {
            flow: Flow::Close,
            ..self.answer_code(code::AUTH_FAILED)
        };
        let Ok(credentials) = std::str::from_utf8(credentials) else {
            return auth_failed;
        };
        let Some((user, _password)) = credentials.split_once(':') else {
            return auth_failed;
        };
        if scheme != "digest" {
            return auth_failed;
        }
        let digest = base64::engine::general_purpose::STANDARD.encode(
            sha1_smol::Sha1::from(credentials.as_bytes())
                .digest()
                .bytes(),
        );
        let identity = Id::new("digest", &format!("{user}:{digest}"));
        match self.command(TreeCommand::AddAuth(identity)).await {
            Ok((zxid, _)) => {
                if let Some(entry) = self.shared.sessions().get_mut(&self.session_id) {
                    entry.identities.push(Id::new("digest", user));
                }
                Answer {
                    zxid,
                    ..self.answer_code(code::OK)
                }
            }
            Err(failure) if failure.flow == Flow::SessionGone => self.answer_failure(failure),
            Err(_) => auth_failed,
        }
    }

    /// Restores a reconnecting client's watches: ZooKeeper's `DataTree.setWatches`, which
    /// fires at once what changed after `relative_zxid` and sets the rest.
    async fn set_watches(&mut self, watches: SetWatches) -> Answer {
        let relative = watches.relative_zxid;
        let mut fired: Vec<(EventType, String)> = Vec::new();
        let mut zxid = self.index_seen;
        for path in watches.data {
            let command = TreeCommand::GetData {
                path: path.clone(),
                watch: true,
            };
            match self.command(command).await {
                Ok((index, TreeResponse::Data { stat, .. })) => {
                    zxid = zxid.max(index);
                    if stat.mzxid > relative {
                        fired.push((EventType::NodeDataChanged, path));
                    }
                }
                Err(failure)
                    if failure.code
                        == TreeError::NoNode {
                            path: String::new(),
                        }
                        .code() =>
                {
                    fired.push((EventType::NodeDeleted, path));
                }
                Ok(_) => {}
                Err(failure) => return self.answer_failure(failure),
            }
        }
        for path in watches.exist {
            let command = TreeCommand::Exists {
                path: path.clone(),
                watch: true,
            };
            match self.command(command).await {
                Ok((index, TreeResponse::Stat(_))) => {
                    zxid = zxid.max(index);
                    fired.push((EventType::NodeCreated, path));
                }
                Ok((index, _)) => zxid = zxid.max(index),
                Err(failure) => return self.answer_failure(failure),
            }
        }
        for path in watches.child {
            let command = TreeCommand::GetChildren {
                path: path.clone(),
                watch: true,
            };
            match self.command(command).await {
                Ok((index, TreeResponse::Children { stat, .. })) => {
                    zxid = zxid.max(index);
                    if stat.pzxid > relative {
                        fired.push((EventType::NodeChildrenChanged, path));
                    }
                }
                Err(failure)
                    if failure.code
                        == TreeError::NoNode {
                            path: String::new(),
                        }
                        .code() =>
                {
                    fired.push((EventType::NodeDeleted, path));
                }
                Ok(_) => {}
                Err(failure) => return self.answer_failure(failure),
            }
        }
        let persistent = watches
            .persistent
            .into_iter()
            .map(|path| (path, AddWatchMode::Persistent))
            .chain(
                watches
                    .persistent_recursive
                    .into_iter()
                    .map(|path| (path, AddWatchMode::PersistentRecursive)),
            );
        for (path, mode) in persistent {
            match self.command(TreeCommand::AddWatch { path, mode }).await {
                Ok((index, _)) => zxid = zxid.max(index),
                Err(failure) => return self.answer_failure(failure),
            }
        }
        for (event_type, path) in fired {
            // Events fired here did not come from an entry; ZooKeeper sends them with
            // zxid -1 too.
            let frame = notification_frame(-1, event_type.code(), &path);
            if self.write(&frame).await.is_err() {
                return Answer {
                    flow: Flow::Close,
                    ..self.answer_code(code::OK)
                };
            }
        }
        Answer {
            zxid,
            ..self.answer_code(code::OK)
        }
    }
}

/// Waits until the local replica has applied everything `session` has seen.
async fn wait_applied(shared: &Shared, session: &ManagedSession) -> Result<(), GatewayError> {
    let payload = codec::encode(
        &TreeQuery::Exists {
            path: "/".to_string(),
        },
        "tree query",
    )
    .map_err(|error| GatewayError::Internal(error.to_string()))?;
    let request = QueryRequest {
        session: Some(session.id()),
        index_seen: session.index_seen(),
        machine_name: shared.config.tree_machine_name.clone(),
        machine_type: TREE_TYPE.to_string(),
        payload,
    };
    shared
        .gateway
        .query(&request, Consistency::Sequential)
        .await
        .map(|_| ())
}

/// Registers a new session as attached to the calling connection.
fn attach_new(
    shared: &Shared,
    session: Arc<ManagedSession>,
) -> (Arc<ManagedSession>, u64, Arc<Notify>) {
    let generation = shared.generation_next.fetch_add(1, Ordering::Relaxed);
    let replaced = Arc::new(Notify::new());
    shared.sessions().insert(
        session.id() as i64,
        SessionEntry {
            session: session.clone(),
            generation,
            attached: true,
            replaced: replaced.clone(),
            identities: Vec::new(),
        },
    );
    (session, generation, replaced)
}

/// Takes over a session this server holds; a connection still attached to it is told to
/// end. None for a session this server does not hold (unknown, expired or closed).
fn attach_existing(
    shared: &Shared,
    session_id: i64,
) -> Option<(Arc<ManagedSession>, u64, Arc<Notify>)> {
    let generation = shared.generation_next.fetch_add(1, Ordering::Relaxed);
    let mut sessions = shared.sessions();
    let entry = sessions.get_mut(&session_id)?;
    if entry.session.is_broken() {
        sessions.remove(&session_id);
        return None;
    }
    if entry.attached {
        entry.replaced.notify_one();
    }
    let replaced = Arc::new(Notify::new());
    entry.generation = generation;
    entry.attached = true;
    entry.replaced = replaced.clone();
    Some((entry.session.clone(), generation, replaced))
}

/// Leaves the session waiting for its client for one timeout, then closes it unless a
/// connection took it over meanwhile.
fn detach(shared: &Arc<Shared>, session_id: i64, generation: u64) {
    let timeout_ms = {
        let mut sessions = shared.sessions();
        let Some(entry) = sessions.get_mut(&session_id) else {
            return;
        };
        if entry.generation != generation {
            return;
        }
        entry.attached = false;
        entry.session.timeout_ms()
    };
    let shared = Arc::downgrade(shared);
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(timeout_ms)).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let session = {
            let mut sessions = shared.sessions();
            match sessions.get(&session_id) {
                Some(entry) if entry.generation == generation && !entry.attached => {
                    sessions.remove(&session_id).map(|entry| entry.session)
                }
                _ => None,
            }
        };
        if let Some(session) = session
            && let Err(error) = session.close().await
        {
            // The session still expires by log time once its keep-alives stop.
            tracing::warn!(session_id, %error, "closing an abandoned zookeeper session failed");
        }
    });
}

fn first_error(results: &[OpResult]) -> i32 {
    results
        .iter()
        .find_map(|result| match result {
            OpResult::Error(error) if *error != TreeError::Ok => Some(error.code()),
            _ => None,
        })
        .unwrap_or(code::OK)
}

/// A `MultiResponse`: a header and a result per op, then the closing header.
fn multi_body(results: &[OpResult], create_with_stat: &[bool]) -> Writer {
    let mut body = Writer::new();
    for (position, result) in results.iter().enumerate() {
        match result {
            OpResult::Create { path, stat } => {
                if create_with_stat.get(position).copied().unwrap_or(false) {
                    write_multi_header(&mut body, opcode::CREATE2, false, code::OK);
                    body.string(path);
                    write_stat(&mut body, stat);
                } else {
                    write_multi_header(&mut body, opcode::CREATE, false, code::OK);
                    body.string(path);
                }
            }
            OpResult::Delete => write_multi_header(&mut body, opcode::DELETE, false, code::OK),
            OpResult::SetData { stat } => {
                write_multi_header(&mut body, opcode::SET_DATA, false, code::OK);
                write_stat(&mut body, stat);
            }
            OpResult::Check => write_multi_header(&mut body, opcode::CHECK, false, code::OK),
            OpResult::Error(error) => {
                write_multi_header(&mut body, opcode::ERROR, false, error.code());
                body.int(error.code());
            }
        }
    }
    write_multi_header(&mut body, opcode::ERROR, true, -1);
    body
}

/// A multiRead's `MultiResponse`: data or children per read, or its error.
fn multi_read_body(outputs: &[TreeOutput]) -> Writer {
    let mut body = Writer::new();
    for output in outputs {
        match output {
            Ok(TreeResponse::Data { data, stat }) => {
                write_multi_header(&mut body, opcode::GET_DATA, false, code::OK);
                body.buffer(data);
                write_stat(&mut body, stat);
            }
            Ok(TreeResponse::Children { children, .. }) => {
                write_multi_header(&mut body, opcode::GET_CHILDREN, false, code::OK);
                body.strings(children);
            }
            Ok(_) => {
                write_multi_header(&mut body, opcode::ERROR, false, code::SYSTEM_ERROR);
                body.int(code::SYSTEM_ERROR);
            }
            Err(error) => {
                write_multi_header(&mut body, opcode::ERROR, false, error.code());
                body.int(error.code());
            }
        }
    }
    write_multi_header(&mut body, opcode::ERROR, true, -1);
    body
}

fn unexpected<T: std::fmt::Debug>(what: &T) -> Failure {
    tracing::warn!(?what, "the tree machine answered something unexpected");
    Failure {
        code: code::SYSTEM_ERROR,
        flow: Flow::Continue,
    }
}

fn internal<E: std::fmt::Display>(error: E) -> Failure {
    tracing::warn!(%error, "zookeeper frontend internal error");
    Failure {
        code: code::SYSTEM_ERROR,
        flow: Flow::Continue,
    }
}
