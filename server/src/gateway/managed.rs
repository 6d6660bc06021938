//! Sessions run by the server on behalf of clients that have none: [`ManagedSession`], and
//! the pool behind `Gateway::command_without_session`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex, Weak};
use std::time::Duration;

use conclave_statemachines::{ClientSession, CommandOutput, Entry, SessionError, SessionId};
use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio::task::JoinHandle;

use super::{CommandAnswer, Gateway, GatewayError, SessionEvent};

/// Answered outputs beyond the last acknowledgement after which a keep-alive goes out at
/// once, well below the layer's `outputs_unacknowledged_max` (1,024 by default).
const OUTPUTS_ACKNOWLEDGE_EVERY: u64 = 256;

/// A session that the gateway opened and keeps alive with keep-alives every third of its
/// timeout, numbering its commands itself. A ZooKeeper connection or an etcd watch stream
/// owns one: its ephemeral state (ephemeral nodes, locks, watches) lives as long as it does.
///
/// A command that fails in a way that may leave a hole in the sequence (refused by the
/// layer, or no answer even after a resend) makes the session *broken*: later commands
/// would wait behind the hole forever, so they are refused at once and the owner opens a
/// new session (its protocol's equivalent of a lost session).
pub struct ManagedSession {
    gateway: Gateway,
    id: SessionId,
    timeout_ms: u64,
    state: StdMutex<ClientSession>,
    in_flight: Semaphore,
    broken: AtomicBool,
    acknowledged_through: AtomicU64,
    keep_alive_task: StdMutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for ManagedSession {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ManagedSession")
            .field("id", &self.id)
            .field("broken", &self.is_broken())
            .finish_non_exhaustive()
    }
}

impl ManagedSession {
    pub(super) async fn open(
        gateway: Gateway,
        timeout_ms: u64,
    ) -> Result<Arc<ManagedSession>, GatewayError> {
        let (id, timeout_ms) = gateway.open_session(timeout_ms).await?;
        let in_flight = gateway.config().managed_session_commands_in_flight_max;
        let session = Arc::new(ManagedSession {
            gateway,
            id,
            timeout_ms,
            state: StdMutex::new(ClientSession::new(id)),
            in_flight: Semaphore::new(in_flight),
            broken: AtomicBool::new(false),
            acknowledged_through: AtomicU64::new(0),
            keep_alive_task: StdMutex::new(None),
        });
        let task = tokio::spawn(keep_alive_loop(Arc::downgrade(&session)));
        *lock(&session.keep_alive_task) = Some(task);
        Ok(session)
    }

    /// The session's id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The timeout the layer granted, in log-time milliseconds.
    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms
    }

    /// Whether the session can no longer take commands (expired, closed, or a hole in its
    /// sequence).
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// The highest index this session has seen in an answer or an event.
    pub fn index_seen(&self) -> u64 {
        lock(&self.state).index_seen()
    }

    /// Runs a command on `machine_name` under this session, exactly once.
    pub async fn command(
        &self,
        machine_name: &str,
        machine_type: &str,
        payload: Vec<u8>,
    ) -> Result<CommandAnswer, GatewayError> {
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| GatewayError::Stopped)?;
        if self.is_broken() {
            return Err(GatewayError::Rejected(SessionError::UnknownSession {
                session: self.id,
            }));
        }
        let entry = lock(&self.state).command(machine_name, machine_type, payload);
        let Entry::Command { sequence, .. } = &entry else {
            unreachable!("ClientSession::command builds commands")
        };
        let sequence = *sequence;
        // One resend after a timeout: the layer answers a sequence it already applied from
        // its cache, so the resend is safe; a second silence gives up on the session.
        let mut outcome = self.gateway.command(&entry).await;
        if outcome == Err(GatewayError::Timeout) {
            outcome = self.gateway.command(&entry).await;
        }
        match outcome {
            Ok(answer) => {
                let output = CommandOutput {
                    session: self.id,
                    sequence,
                    result: answer.result.clone(),
                };
                let through = {
                    let mut state = lock(&self.state);
                    state.answered(&output, answer.index);
                    acknowledged_sequence(&state)
                };
                if through
                    >= self.acknowledged_through.load(Ordering::Acquire) + OUTPUTS_ACKNOWLEDGE_EVERY
                {
                    // Acknowledge now rather than at the next periodic keep-alive, so a
                    // busy session never reaches the layer's bound on cached outputs.
                    self.keep_alive().await?;
                }
                Ok(answer)
            }
            Err(error) => {
                self.broken.store(true, Ordering::Release);
                Err(error)
            }
        }
    }

    /// Sends a keep-alive acknowledging every answered output and received event batch.
    pub async fn keep_alive(&self) -> Result<(), GatewayError> {
        let entry = lock(&self.state).keep_alive();
        let Entry::KeepAlive {
            command_sequence_acknowledged,
            event_index_acknowledged,
            ..
        } = entry
        else {
            unreachable!("ClientSession::keep_alive builds keep-alives")
        };
        let kept = self
            .gateway
            .keep_alive(
                self.id,
                command_sequence_acknowledged,
                event_index_acknowledged,
            )
            .await;
        match kept {
            Ok(_) => {
                self.acknowledged_through
                    .fetch_max(command_sequence_acknowledged, Ordering::AcqRel);
                Ok(())
            }
            Err(error @ GatewayError::Rejected(SessionError::UnknownSession { .. })) => {
                self.broken.store(true, Ordering::Release);
                Err(error)
            }
            Err(error) => Err(error),
        }
    }

    /// The session's events (see `Gateway::subscribe`); each batch handed over counts as
    /// received for the next keep-alive's acknowledgement.
    pub async fn events(self: &Arc<Self>) -> Result<mpsc::Receiver<SessionEvent>, GatewayError> {
        let mut upstream = self.gateway.subscribe(self.id).await?;
        let (sender, receiver) =
            mpsc::channel(self.gateway.config().subscription_batches_buffered_max);
        let session = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(event) = upstream.recv().await {
                let Some(session) = session.upgrade() else {
                    return;
                };
                match &event {
                    SessionEvent::Batch(batch) => {
                        if !lock(&session.state).event_batch(batch) {
                            continue;
                        }
                    }
                    SessionEvent::Expired => session.broken.store(true, Ordering::Release),
                }
                if sender.send(event).await.is_err() {
                    return;
                }
            }
        });
        Ok(receiver)
    }

    /// Closes the session; its ephemeral state is released.
    pub async fn close(&self) -> Result<(), GatewayError> {
        self.broken.store(true, Ordering::Release);
        if let Some(task) = lock(&self.keep_alive_task).take() {
            task.abort();
        }
        self.gateway.close_session(self.id).await
    }
}

impl Drop for ManagedSession {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.keep_alive_task).take() {
            task.abort();
        }
    }
}

fn acknowledged_sequence(state: &ClientSession) -> u64 {
    match state.keep_alive() {
        Entry::KeepAlive {
            command_sequence_acknowledged,
            ..
        } => command_sequence_acknowledged,
        _ => unreachable!("ClientSession::keep_alive builds keep-alives"),
    }
}

async fn keep_alive_loop(session: Weak<ManagedSession>) {
    let interval = match session.upgrade() {
        Some(session) => Duration::from_millis(session.timeout_ms / 3),
        None => return,
    };
    loop {
        tokio::time::sleep(interval).await;
        let Some(session) = session.upgrade() else {
            return;
        };
        if session.is_broken() {
            return;
        }
        if let Err(error) = session.keep_alive().await {
            tracing::warn!(session = session.id, %error, "managed session keep-alive failed");
        }
    }
}

fn lock<T>(mutex: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Poisoning means a panic while holding the lock, which is a bug elsewhere; the data
    // behind these locks stays consistent, so go on with it.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The sessions behind `Gateway::command_without_session`, opened lazily and replaced when
/// broken.
pub(crate) struct Pool {
    slots: Vec<Mutex<Option<Arc<ManagedSession>>>>,
    next: AtomicUsize,
}

impl Pool {
    pub(super) fn new(size: usize) -> Pool {
        Pool {
            slots: (0..size).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    async fn session(gateway: &Gateway, slot: usize) -> Result<Arc<ManagedSession>, GatewayError> {
        let mut guard = gateway.inner().pool().slots[slot].lock().await;
        if let Some(session) = guard.as_ref().filter(|session| !session.is_broken()) {
            return Ok(session.clone());
        }
        let timeout_ms = gateway.config().managed_session_timeout_ms;
        let session = ManagedSession::open(gateway.clone(), timeout_ms).await?;
        *guard = Some(session.clone());
        Ok(session)
    }

    pub(super) async fn command(
        gateway: &Gateway,
        machine_name: &str,
        machine_type: &str,
        payload: Vec<u8>,
    ) -> Result<CommandAnswer, GatewayError> {
        let pool = gateway.inner().pool();
        let slot = pool.next.fetch_add(1, Ordering::Relaxed) % pool.slots.len();
        // A refusal that changed nothing (the pooled session expired, or its sequence could
        // not be taken) is retried once on a fresh session; anything else is the answer.
        let mut attempts_left = 2;
        loop {
            attempts_left -= 1;
            let session = Pool::session(gateway, slot).await?;
            match session
                .command(machine_name, machine_type, payload.clone())
                .await
            {
                Err(GatewayError::Rejected(
                    SessionError::UnknownSession { .. }
                    | SessionError::SequenceTooFarAhead { .. }
                    | SessionError::TooManyUnacknowledgedOutputs { .. },
                )) if attempts_left > 0 => continue,
                outcome => return outcome,
            }
        }
    }
}
