//! The gateway: the one way every client frontend (native gRPC, etcd v3, ZooKeeper) reaches
//! the replicated machines through the local [`Node`].
//!
//! A frontend translates its wire protocol into envelope [`Entry`]s and [`QueryRequest`]s
//! and hands them to a [`Gateway`], which
//!
//! - proposes entries through the node and retries the ones that certainly did not commit
//!   (dropped by a leader change, or proposed while no leader was known) until the request's
//!   deadline; an ambiguous failure (a timeout) is reported, never retried blindly;
//! - waits for the output of a command the session layer buffered (it arrived ahead of a
//!   missing sequence): the output is released by a later entry, possibly proposed through
//!   another node, so the gateway learns it from its own replica's notices;
//! - answers queries at the consistency the caller asks for ([`Consistency`]);
//! - delivers each session's event batches, in index order and without duplicates, to one
//!   subscriber: first the batches the layer still holds unacknowledged, then new ones;
//! - runs server-side sessions ([`ManagedSession`]) for protocols whose clients have no
//!   Conclave session of their own (a ZooKeeper connection, an etcd watch stream), and a
//!   small pool of them for commands that need no session semantics at all (etcd's kv and
//!   lease calls): [`Gateway::command_without_session`].

mod managed;

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use bytes::Bytes;
use conclave_consensus::{NodeId, Status};
use conclave_statemachines::{
    Applied, CommandOutput, Entry, EventBatch, Index, QueryRequest, Reply, SessionError, SessionId,
};
use tokio::sync::{Mutex, broadcast, mpsc, oneshot};
use tokio::time::Instant;

use crate::machines::{SessionApplication, SessionNotice};
use crate::node::{Node, NodeError};

pub use managed::ManagedSession;

/// How fresh a query's answer must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Reflects every write that completed before the query started: the leader confirms
    /// its leadership with a quorum (ReadIndex, batched) before answering.
    #[default]
    Linearizable,
    /// Served by the leader under its lease; today the same path as `Linearizable` (a
    /// quorum round), so never weaker.
    Lease,
    /// Served by the local replica from what it applied, never older than the index the
    /// caller has seen (`QueryRequest::index_seen`).
    Sequential,
}

/// The bounds of a [`Gateway`].
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// How long one request (a submission with its retries, or a query) may take.
    pub request_timeout: Duration,
    /// The wait between retries of a request that certainly did not commit.
    pub retry_backoff: Duration,
    /// How many pooled sessions serve [`Gateway::command_without_session`].
    pub pool_sessions: usize,
    /// The timeout, in log-time milliseconds, of pooled and managed sessions.
    pub managed_session_timeout_ms: u64,
    /// How many commands one managed session may have in flight; above the session layer's
    /// `commands_ahead_max` a reordered arrival would be refused.
    pub managed_session_commands_in_flight_max: usize,
    /// How many event batches a subscriber may leave unread before it is cut off (it then
    /// subscribes again and is resent what it had not acknowledged).
    pub subscription_batches_buffered_max: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            request_timeout: Duration::from_secs(10),
            retry_backoff: Duration::from_millis(10),
            pool_sessions: 4,
            managed_session_timeout_ms: 30_000,
            managed_session_commands_in_flight_max: 32,
            subscription_batches_buffered_max: 1_024,
        }
    }
}

impl GatewayConfig {
    /// Refuses bounds that cannot work.
    pub fn validate(&self) -> Result<(), GatewayError> {
        let refuse = |field: &'static str, reason: &str| {
            Err(GatewayError::Config {
                field,
                reason: reason.to_string(),
            })
        };
        if self.request_timeout.is_zero() {
            return refuse("request_timeout", "must be positive");
        }
        if self.retry_backoff.is_zero() || self.retry_backoff >= self.request_timeout {
            return refuse(
                "retry_backoff",
                "must be positive and shorter than request_timeout",
            );
        }
        if self.pool_sessions == 0 {
            return refuse("pool_sessions", "must be at least 1");
        }
        if self.managed_session_timeout_ms < 300 {
            return refuse(
                "managed_session_timeout_ms",
                "must be at least 300 (keep-alives go out every third of it)",
            );
        }
        if self.managed_session_commands_in_flight_max == 0 {
            return refuse(
                "managed_session_commands_in_flight_max",
                "must be at least 1",
            );
        }
        if self.subscription_batches_buffered_max == 0 {
            return refuse("subscription_batches_buffered_max", "must be at least 1");
        }
        Ok(())
    }
}

/// Why a gateway request failed. Frontends map each case onto their protocol's errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// No leader was known until the deadline (an election is under way or no quorum).
    #[error("no leader")]
    NoLeader,
    /// This node is not the leader and does not forward this request; `leader` is a hint.
    #[error("not the leader (known leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// The deadline passed; the request may or may not have taken effect.
    #[error("request timed out; it may or may not have taken effect")]
    Timeout,
    /// The session layer refused the entry or query; nothing changed.
    #[error("refused: {0}")]
    Rejected(SessionError),
    /// The node stopped.
    #[error("node stopped")]
    Stopped,
    /// A configuration field is out of range.
    #[error("invalid gateway config field {field}: {reason}")]
    Config {
        /// The field's name.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// The node failed in a way the caller cannot fix (storage, a reply that did not
    /// decode).
    #[error("internal: {0}")]
    Internal(String),
}

impl From<NodeError> for GatewayError {
    fn from(error: NodeError) -> GatewayError {
        match error {
            NodeError::NotLeader { leader: None } => GatewayError::NoLeader,
            NodeError::NotLeader { leader } => GatewayError::NotLeader { leader },
            NodeError::Stopped => GatewayError::Stopped,
            other => GatewayError::Internal(other.to_string()),
        }
    }
}

/// What a command answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandAnswer {
    /// The index of the entry that applied the command.
    pub index: Index,
    /// The session that sent it (for [`Gateway::command_without_session`], the pooled one).
    pub session: SessionId,
    /// The machine's encoded output, or why the session layer refused the command (unknown
    /// machine type, a type mismatch...). The sequence was consumed either way.
    pub result: Result<Vec<u8>, SessionError>,
}

/// What a query answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryAnswer {
    /// The index the answering replica had applied, when the path knows it (sequential).
    pub index_applied: Option<Index>,
    /// The machine's encoded answer.
    pub output: Vec<u8>,
}

/// What a session subscriber receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// A batch of events, in index order, each batch once.
    Batch(EventBatch),
    /// The session expired (or was closed); nothing follows.
    Expired,
}

/// One subscriber of one session's events.
struct Subscriber {
    sender: mpsc::Sender<SessionEvent>,
    /// The highest batch index handed over; older ones are duplicates.
    index_sent: Index,
}

/// Commands waiting for an output that a later entry may release, by (session, sequence).
type Waiters = HashMap<(SessionId, u64), oneshot::Sender<(Index, CommandOutput)>>;

/// The routing tables the notice task and the callers share.
#[derive(Default)]
struct Routes {
    /// Commands that were buffered (or may be), by (session, sequence).
    waiters: StdMutex<Waiters>,
    /// Event subscribers by session.
    subscribers: Mutex<HashMap<SessionId, Subscriber>>,
}

pub(crate) struct Inner {
    node: Arc<Node>,
    application: SessionApplication,
    config: GatewayConfig,
    routes: Arc<Routes>,
    pool: managed::Pool,
}

/// The shared entry point of the frontends; cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Gateway")
            .field("node", &self.inner.node.id())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Builds the gateway of `node`, whose application is (a clone of) `application`.
    /// Must be called inside a tokio runtime: it spawns the task that routes notices.
    pub fn new(
        node: Arc<Node>,
        application: SessionApplication,
        config: GatewayConfig,
    ) -> Result<Gateway, GatewayError> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| GatewayError::Config {
            field: "runtime",
            reason: "build the gateway inside tokio".to_string(),
        })?;
        let routes = Arc::new(Routes::default());
        let notices = application.subscribe();
        runtime.spawn(route_notices(
            notices,
            Arc::downgrade(&routes),
            application.clone(),
        ));
        let pool = managed::Pool::new(config.pool_sessions);
        Ok(Gateway {
            inner: Arc::new(Inner {
                node,
                application,
                config,
                routes,
                pool,
            }),
        })
    }

    /// The node behind the gateway (for status and administration).
    pub fn node(&self) -> &Arc<Node> {
        &self.inner.node
    }

    /// The gateway's bounds.
    pub fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }

    /// The core's status (role, leader, term, commit and applied index, membership).
    pub async fn status(&self) -> Result<Status, GatewayError> {
        Ok(self.inner.node.status().await?)
    }

    /// Proposes `entry` and returns what applying it produced. Retries while the entry
    /// certainly did not commit, until `request_timeout`.
    pub async fn submit(&self, entry: &Entry) -> Result<Applied, GatewayError> {
        let bytes = Bytes::from(entry.encode());
        let deadline = Instant::now() + self.inner.config.request_timeout;
        loop {
            let proposed =
                tokio::time::timeout_at(deadline, self.inner.node.propose(bytes.clone())).await;
            let error = match proposed {
                Err(_) => return Err(GatewayError::Timeout),
                Ok(Ok(output)) => {
                    return SessionApplication::decode_applied(&output)
                        .map_err(|error| GatewayError::Internal(error.to_string()));
                }
                Ok(Err(error)) => error,
            };
            let retry = match &error {
                // Neither a dropped proposal nor one made without a leader was committed.
                NodeError::Dropped | NodeError::NotLeader { leader: None } => true,
                _ => false,
            };
            if !retry {
                return Err(error.into());
            }
            if Instant::now() + self.inner.config.retry_backoff >= deadline {
                return Err(match error {
                    NodeError::Dropped => GatewayError::Timeout,
                    other => other.into(),
                });
            }
            tokio::time::sleep(self.inner.config.retry_backoff).await;
        }
    }

    /// Opens a session; returns its id and granted timeout.
    pub async fn open_session(&self, timeout_ms: u64) -> Result<(SessionId, u64), GatewayError> {
        let applied = self.submit(&Entry::Register { timeout_ms }).await?;
        match applied.reply {
            Reply::Registered {
                session,
                timeout_ms,
            } => Ok((session, timeout_ms)),
            Reply::Rejected(error) => Err(GatewayError::Rejected(error)),
            other => Err(unexpected("register", &other)),
        }
    }

    /// Keeps a session alive and acknowledges outputs and events; returns the highest index
    /// of an event batch the server still holds for it (0 if none).
    pub async fn keep_alive(
        &self,
        session: SessionId,
        command_sequence_acknowledged: u64,
        event_index_acknowledged: Index,
    ) -> Result<Index, GatewayError> {
        let entry = Entry::KeepAlive {
            session,
            command_sequence_acknowledged,
            event_index_acknowledged,
        };
        match self.submit(&entry).await?.reply {
            Reply::KeptAlive { event_index_last } => Ok(event_index_last),
            Reply::Rejected(error) => Err(GatewayError::Rejected(error)),
            other => Err(unexpected("keep-alive", &other)),
        }
    }

    /// Closes a session (its ephemeral state is released, with events to others). The
    /// session's subscriber on this gateway receives `Expired`: a close is not an expiry, so
    /// no notice would end its stream.
    pub async fn close_session(&self, session: SessionId) -> Result<(), GatewayError> {
        match self.submit(&Entry::Close { session }).await?.reply {
            Reply::Closed => {
                if let Some(subscriber) =
                    self.inner.routes.subscribers.lock().await.remove(&session)
                {
                    let _ = subscriber.sender.try_send(SessionEvent::Expired);
                }
                Ok(())
            }
            Reply::Rejected(error) => Err(GatewayError::Rejected(error)),
            other => Err(unexpected("close", &other)),
        }
    }

    /// Applies a command entry (`Entry::Command`, tagged by the caller with its session and
    /// sequence) and returns its output, waiting for it if the layer buffered the command.
    /// Resending the same entry after a `Timeout` is answered from the layer's cache.
    pub async fn command(&self, entry: &Entry) -> Result<CommandAnswer, GatewayError> {
        let Entry::Command {
            session, sequence, ..
        } = entry
        else {
            return Err(GatewayError::Internal(
                "Gateway::command takes Entry::Command".to_string(),
            ));
        };
        let key = (*session, *sequence);
        // The waiter goes in before the proposal: the entry that releases a buffered
        // command may be applied before the proposal's own answer comes back.
        let (released, mut released_receiver) = oneshot::channel();
        self.inner.routes.waiters_lock().insert(key, released);
        let outcome = self.command_inner(entry, &mut released_receiver).await;
        self.inner.routes.waiters_lock().remove(&key);
        outcome
    }

    async fn command_inner(
        &self,
        entry: &Entry,
        released: &mut oneshot::Receiver<(Index, CommandOutput)>,
    ) -> Result<CommandAnswer, GatewayError> {
        let deadline = Instant::now() + self.inner.config.request_timeout;
        let applied = self.submit(entry).await?;
        match applied.reply {
            Reply::Output(output) => Ok(CommandAnswer {
                index: applied.index,
                session: output.session,
                result: output.result,
            }),
            Reply::Buffered { .. } => {
                match tokio::time::timeout_at(deadline, released).await {
                    Ok(Ok((index, output))) => Ok(CommandAnswer {
                        index,
                        session: output.session,
                        result: output.result,
                    }),
                    // The output may still come (another node fills the gap later): the
                    // caller resends the same sequence and is answered from the cache.
                    Ok(Err(_)) | Err(_) => Err(GatewayError::Timeout),
                }
            }
            Reply::Rejected(error) => Err(GatewayError::Rejected(error)),
            other => Err(unexpected("command", &other)),
        }
    }

    /// Runs `payload` on machine `machine_name` (of type `machine_type`) through one of the
    /// gateway's pooled sessions, for protocols without sessions of their own. Commands on
    /// the pool are still exactly-once inside the gateway (a retry after a leader change
    /// reuses the sequence); a `Timeout` is ambiguous, as for any client.
    pub async fn command_without_session(
        &self,
        machine_name: &str,
        machine_type: &str,
        payload: Vec<u8>,
    ) -> Result<CommandAnswer, GatewayError> {
        managed::Pool::command(self, machine_name, machine_type, payload).await
    }

    /// Opens a session that the gateway keeps alive in the background until it is closed
    /// or dropped, with its own sequence numbers (see [`ManagedSession`]).
    pub async fn open_managed_session(
        &self,
        timeout_ms: u64,
    ) -> Result<Arc<ManagedSession>, GatewayError> {
        ManagedSession::open(self.clone(), timeout_ms).await
    }

    /// Answers `request` at `consistency`. A sequential query waits (until the deadline)
    /// for this replica to apply the request's `index_seen`.
    pub async fn query(
        &self,
        request: &QueryRequest,
        consistency: Consistency,
    ) -> Result<QueryAnswer, GatewayError> {
        let bytes = Bytes::from(request.encode());
        let deadline = Instant::now() + self.inner.config.request_timeout;
        loop {
            let answered = match consistency {
                Consistency::Linearizable | Consistency::Lease => {
                    let read =
                        tokio::time::timeout_at(deadline, self.inner.node.read(bytes.clone()))
                            .await;
                    match read {
                        Err(_) => return Err(GatewayError::Timeout),
                        Ok(Err(NodeError::NotLeader { leader: None } | NodeError::Dropped)) => None,
                        Ok(Err(error)) => return Err(error.into()),
                        Ok(Ok(answer)) => Some((None, answer)),
                    }
                }
                Consistency::Sequential => {
                    let (index, answer) = self.inner.node.query_local(bytes.clone()).await?;
                    Some((Some(index), answer))
                }
            };
            if let Some((index_applied, answer)) = answered {
                let decoded = SessionApplication::decode_query_answer(&answer)
                    .map_err(|error| GatewayError::Internal(error.to_string()))?;
                match decoded {
                    Ok(output) => {
                        return Ok(QueryAnswer {
                            index_applied,
                            output,
                        });
                    }
                    // This replica is behind what the caller saw: wait for it to apply.
                    Err(SessionError::NotYetApplied { .. }) => {}
                    Err(error) => return Err(GatewayError::Rejected(error)),
                }
            }
            if Instant::now() + self.inner.config.retry_backoff >= deadline {
                return Err(GatewayError::Timeout);
            }
            tokio::time::sleep(self.inner.config.retry_backoff).await;
        }
    }

    /// Subscribes to `session`'s events: first every batch the layer still holds for it
    /// unacknowledged, then each new batch, in index order and each once, then `Expired`
    /// when the session ends. A new subscription replaces the previous one. When the
    /// subscriber falls more than `subscription_batches_buffered_max` batches behind, its
    /// channel closes; subscribing again resends what was not acknowledged.
    pub async fn subscribe(
        &self,
        session: SessionId,
    ) -> Result<mpsc::Receiver<SessionEvent>, GatewayError> {
        let (sender, receiver) = mpsc::channel(self.inner.config.subscription_batches_buffered_max);
        // The table stays locked while the backlog is read and sent, so the routing task
        // cannot deliver a newer batch ahead of it; a batch it delivers afterwards that
        // the backlog already held is dropped as a duplicate by `index_sent`.
        let mut subscribers = self.inner.routes.subscribers.lock().await;
        let application = self.inner.application.clone();
        let backlog = tokio::task::spawn_blocking(move || {
            application.with_layer(move |layer| layer.unacknowledged_events(session))
        })
        .await
        .map_err(|error| GatewayError::Internal(format!("read the event backlog: {error}")))?
        .map_err(GatewayError::Rejected)?;
        let mut subscriber = Subscriber {
            sender,
            index_sent: 0,
        };
        for batch in backlog {
            if !subscriber.offer(batch) {
                return Err(GatewayError::Internal(format!(
                    "session {session} holds more unacknowledged event batches than \
                     subscription_batches_buffered_max"
                )));
            }
        }
        subscribers.insert(session, subscriber);
        Ok(receiver)
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }
}

impl Inner {
    pub(crate) fn pool(&self) -> &managed::Pool {
        &self.pool
    }
}

impl Routes {
    fn waiters_lock(&self) -> std::sync::MutexGuard<'_, Waiters> {
        // A poisoned table means a panic while holding it, which is a bug: the data (a map
        // of senders) is still consistent, so go on with it.
        self.waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Subscriber {
    /// Hands `batch` over unless it is a duplicate; false when the subscriber is gone or
    /// too far behind (it must be dropped).
    fn offer(&mut self, batch: EventBatch) -> bool {
        if batch.index <= self.index_sent {
            return true;
        }
        let index = batch.index;
        match self.sender.try_send(SessionEvent::Batch(batch)) {
            Ok(()) => {
                self.index_sent = index;
                true
            }
            Err(_) => false,
        }
    }
}

fn unexpected(what: &str, reply: &Reply) -> GatewayError {
    GatewayError::Internal(format!("{what} answered {reply:?}"))
}

/// Routes each notice of the local replica: released outputs to the commands waiting for
/// them, event batches and expiries to the sessions' subscribers. Ends with the gateway.
async fn route_notices(
    mut notices: broadcast::Receiver<SessionNotice>,
    routes: std::sync::Weak<Routes>,
    application: SessionApplication,
) {
    loop {
        let received = notices.recv().await;
        let Some(routes) = routes.upgrade() else {
            return;
        };
        match received {
            Ok(notice) => route(&routes, notice).await,
            Err(broadcast::error::RecvError::Closed) => return,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                // Released outputs in the missed notices are lost here; their commands time
                // out and their clients resend, answered from the layer's cache. Events are
                // not lost: every subscriber is resent its unacknowledged backlog.
                tracing::warn!(missed, "gateway fell behind the applied notices");
                resend_backlogs(&routes, &application).await;
            }
        }
    }
}

async fn route(routes: &Routes, notice: SessionNotice) {
    if !notice.released.is_empty() {
        let mut waiters = routes.waiters_lock();
        for output in notice.released {
            if let Some(waiter) = waiters.remove(&(output.session, output.sequence)) {
                let _ = waiter.send((notice.index, output));
            }
        }
    }
    if notice.events.is_empty() && notice.expired.is_empty() {
        return;
    }
    let mut subscribers = routes.subscribers.lock().await;
    for batch in notice.events {
        let session = batch.session;
        let keep = match subscribers.get_mut(&session) {
            Some(subscriber) => subscriber.offer(batch),
            None => true,
        };
        if !keep {
            subscribers.remove(&session);
        }
    }
    for session in notice.expired {
        if let Some(subscriber) = subscribers.remove(&session) {
            let _ = subscriber.sender.try_send(SessionEvent::Expired);
        }
    }
}

async fn resend_backlogs(routes: &Routes, application: &SessionApplication) {
    let mut subscribers = routes.subscribers.lock().await;
    let sessions: Vec<SessionId> = subscribers.keys().copied().collect();
    for session in sessions {
        let application = application.clone();
        let backlog = tokio::task::spawn_blocking(move || {
            application.with_layer(move |layer| layer.unacknowledged_events(session))
        })
        .await;
        let keep = match backlog {
            Ok(Ok(batches)) => match subscribers.get_mut(&session) {
                Some(subscriber) => batches.into_iter().all(|batch| subscriber.offer(batch)),
                None => false,
            },
            // The session is gone: it expired in one of the missed notices.
            Ok(Err(_)) => {
                if let Some(subscriber) = subscribers.get(&session) {
                    let _ = subscriber.sender.try_send(SessionEvent::Expired);
                }
                false
            }
            Err(_) => false,
        };
        if !keep {
            subscribers.remove(&session);
        }
    }
}
