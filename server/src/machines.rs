//! [`SessionApplication`]: the node's [`Application`] on top of the session layer and the
//! built-in machines of conclave-statemachines.
//!
//! Committed commands are envelope [`Entry`] bytes; the proposer gets back the encoded
//! [`Applied`] of its entry (reply, released outputs, event batches, expired sessions).
//! Queries are encoded [`QueryRequest`]s and answer an encoded
//! `Result<Vec<u8>, SessionError>`, so a replica that is behind the client's `index_seen`
//! says `NotYetApplied` and the caller retries later or elsewhere.

use std::io::{self, Read, Write};
use std::sync::mpsc;

use bytes::Bytes;
use conclave_statemachines::kv::KvConfig;
use conclave_statemachines::{
    Applied, CommandOutput, Entry, Error, EventBatch, QueryRequest, Registry, SessionConfig,
    SessionError, SessionId, SessionLayer, codec,
};
use tokio::sync::broadcast;

use crate::node::Application;

/// What one applied entry produced for connected clients: the event batches to push, the
/// sessions that expired, and the outputs of buffered commands that the entry released.
/// Frontends subscribe with [`SessionApplication::subscribe`].
///
/// Released outputs travel here because the entry that fills a sequence gap may have been
/// proposed through another node than the buffered command: every replica applies it, so
/// the frontend that waits for the buffered command learns its output from its own replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionNotice {
    /// The index of the entry that produced the notice.
    pub index: u64,
    /// New event batches, one per receiving session.
    pub events: Vec<EventBatch>,
    /// Sessions that expired at this entry.
    pub expired: Vec<SessionId>,
    /// Outputs of earlier buffered commands that this entry released.
    pub released: Vec<CommandOutput>,
}

/// The bounds of a [`SessionApplication`].
#[derive(Debug, Clone)]
pub struct SessionApplicationConfig {
    /// The session layer's bounds.
    pub session: SessionConfig,
    /// The kv machine's bounds.
    pub kv: KvConfig,
    /// How many notices a slow subscriber may lag behind before it misses some (it then
    /// reads the unacknowledged batches again from the layer, which keeps them).
    pub notices_buffered_max: usize,
}

impl Default for SessionApplicationConfig {
    fn default() -> Self {
        SessionApplicationConfig {
            session: SessionConfig::default(),
            kv: KvConfig::default(),
            notices_buffered_max: 1_024,
        }
    }
}

/// Registers users' machine types on the layer's thread (see
/// [`SessionApplication::with_machines`]).
pub type RegisterMachines = Box<dyn FnOnce(&mut Registry) -> Result<(), Error> + Send>;

/// Work for the thread that owns the layer.
type Job = Box<dyn FnOnce(&mut SessionLayer) + Send>;

/// The replicated state of a Conclave node: a [`SessionLayer`] over
/// `Registry::with_builtins`, adapted to the node's [`Application`] interface.
///
/// Machines are not required to be `Send` (the statemachines crate is single-threaded), but
/// the node runs its application on its own apply thread. So the layer lives on one
/// dedicated thread for its whole life and this handle sends it each call and waits for the
/// answer: calls stay strictly ordered and deterministic. Clones share the one layer (the
/// node applies through one, frontends read unacknowledged events through another);
/// dropping the last clone ends the thread.
#[derive(Clone)]
pub struct SessionApplication {
    jobs: mpsc::Sender<Job>,
    notices: broadcast::Sender<SessionNotice>,
}

impl std::fmt::Debug for SessionApplication {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SessionApplication")
            .finish_non_exhaustive()
    }
}

impl SessionApplication {
    /// Builds the layer with every built-in machine on its own thread; refuses invalid
    /// bounds.
    pub fn new(config: SessionApplicationConfig) -> Result<Self, Error> {
        SessionApplication::with_machines(config, Box::new(|_| Ok(())))
    }

    /// Like [`SessionApplication::new`], and `register` adds users' machine types to the
    /// registry next to the built-ins. It runs on the layer's thread, because machines and
    /// their factories need not be `Send`; only the closure itself must be.
    pub fn with_machines(
        config: SessionApplicationConfig,
        register: RegisterMachines,
    ) -> Result<Self, Error> {
        if config.notices_buffered_max == 0 {
            return Err(Error::Config {
                field: "notices_buffered_max",
                reason: "must be at least 1".to_string(),
            });
        }
        let (notices, _) = broadcast::channel(config.notices_buffered_max);
        let (jobs, job_receiver) = mpsc::channel::<Job>();
        let (built, built_receiver) = mpsc::channel::<Result<(), Error>>();
        let SessionApplicationConfig { session, kv, .. } = config;
        std::thread::Builder::new()
            .name("conclave-session-layer".to_string())
            .spawn(move || {
                let layer = Registry::with_builtins(kv).and_then(|mut registry| {
                    register(&mut registry)?;
                    SessionLayer::new(session, registry)
                });
                let mut layer = match layer {
                    Ok(layer) => {
                        let _ = built.send(Ok(()));
                        layer
                    }
                    Err(error) => {
                        let _ = built.send(Err(error));
                        return;
                    }
                };
                while let Ok(job) = job_receiver.recv() {
                    job(&mut layer);
                }
            })
            .map_err(|error| Error::Io {
                kind: error.kind(),
                message: format!("spawn the session layer thread: {error}"),
            })?;
        let outcome = built_receiver.recv().map_err(|_| Error::Config {
            field: "session",
            reason: "the session layer thread ended while building".to_string(),
        })?;
        outcome?;
        Ok(SessionApplication { jobs, notices })
    }

    /// A receiver of the notices of every entry applied from now on that published events
    /// or expired sessions. Take it before handing the application to `Node::start`.
    pub fn subscribe(&self) -> broadcast::Receiver<SessionNotice> {
        self.notices.subscribe()
    }

    /// Runs `inspect` on the layer (on its thread) and returns what it computed.
    pub fn with_layer<T: Send + 'static>(
        &self,
        inspect: impl FnOnce(&mut SessionLayer) -> T + Send + 'static,
    ) -> T {
        let (answer, answer_receiver) = mpsc::sync_channel(1);
        let sent = self.jobs.send(Box::new(move |layer: &mut SessionLayer| {
            let _ = answer.send(inspect(layer));
        }));
        // The layer thread ends only when this handle drops or when a machine panicked,
        // which is an invariant violation: the node must crash rather than diverge.
        assert!(sent.is_ok(), "the session layer thread is gone");
        let received = answer_receiver.recv();
        assert!(received.is_ok(), "the session layer thread is gone");
        match received {
            Ok(value) => value,
            Err(_) => unreachable!("checked above"),
        }
    }

    /// Decodes what [`Application::apply`] returned.
    pub fn decode_applied(bytes: &[u8]) -> Result<Applied, Error> {
        codec::decode(bytes, "applied")
    }

    /// Decodes what [`Application::query`] returned.
    pub fn decode_query_answer(bytes: &[u8]) -> Result<Result<Vec<u8>, SessionError>, Error> {
        codec::decode(bytes, "query answer")
    }

    fn apply_and_deliver(&self, index: u64, log_time_ms: u64, bytes: Vec<u8>) -> Applied {
        let applied = self.with_layer(move |layer| layer.apply(index, log_time_ms, &bytes));
        if !applied.events.is_empty() || !applied.expired.is_empty() || !applied.released.is_empty()
        {
            // Sending fails only when nobody listens; the layer keeps unacknowledged
            // batches, so a frontend that subscribes later still resends them.
            let _ = self.notices.send(SessionNotice {
                index: applied.index,
                events: applied.events.clone(),
                expired: applied.expired.clone(),
                released: applied.released.clone(),
            });
        }
        applied
    }
}

impl Application for SessionApplication {
    fn apply(&mut self, index: u64, log_time_ms: u64, command: &[u8]) -> Bytes {
        let applied = self.apply_and_deliver(index, log_time_ms, command.to_vec());
        let encoded = codec::encode(&applied, "applied");
        // `Applied` holds only integers, byte vectors, strings and enums, which postcard
        // always encodes: failing here is a bug, so it crashes.
        assert!(encoded.is_ok(), "applied always encodes: {encoded:?}");
        Bytes::from(encoded.unwrap_or_default())
    }

    fn advance_time(&mut self, index: u64, log_time_ms: u64) {
        // A tick goes through the layer like any entry, so sessions and leases expire at
        // the same index on every replica even when no client writes.
        self.apply_and_deliver(index, log_time_ms, Entry::Tick.encode());
    }

    fn query(&self, request: &[u8]) -> Bytes {
        let request = request.to_vec();
        let answer = self.with_layer(move |layer| {
            QueryRequest::decode(&request).and_then(|request| layer.query(&request))
        });
        let encoded = codec::encode(&answer, "query answer");
        assert!(encoded.is_ok(), "query answers always encode: {encoded:?}");
        Bytes::from(encoded.unwrap_or_default())
    }

    fn snapshot(&self, writer: &mut dyn Write) -> io::Result<()> {
        // The snapshot is written to memory on the layer's thread, then copied out: the
        // writer is borrowed and cannot cross threads.
        let bytes = self.with_layer(|layer| {
            let mut bytes = Vec::new();
            layer.snapshot(&mut bytes).map(|()| bytes)
        });
        writer.write_all(&bytes.map_err(into_io)?)
    }

    fn restore(&mut self, reader: &mut dyn Read) -> io::Result<()> {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes)?;
        self.with_layer(move |layer| layer.restore(&mut bytes.as_slice()))
            .map_err(into_io)
    }
}

fn into_io(error: Error) -> io::Error {
    match error {
        Error::Io { kind, message } => io::Error::new(kind, message),
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use conclave_statemachines::counter::{CounterCommand, CounterOutput, CounterQuery};
    use conclave_statemachines::{ClientSession, Reply};

    use super::*;

    fn application() -> SessionApplication {
        SessionApplication::new(SessionApplicationConfig::default()).unwrap()
    }

    fn counter_query(index_seen: u64) -> Vec<u8> {
        QueryRequest {
            session: None,
            index_seen,
            machine_name: "visits".to_string(),
            machine_type: "counter".to_string(),
            payload: codec::encode(&CounterQuery::Get, "query").unwrap(),
        }
        .encode()
    }

    #[test]
    fn applies_queries_expires_by_ticks_and_round_trips_its_snapshot() {
        let mut application = application();
        let mut notices = application.subscribe();
        let registered = application.apply(1, 1_000, &Entry::Register { timeout_ms: 500 }.encode());
        let registered = SessionApplication::decode_applied(&registered).unwrap();
        let Reply::Registered { session, .. } = registered.reply else {
            panic!("{registered:?}")
        };
        let mut client = ClientSession::new(session);
        let add = client.command(
            "visits",
            "counter",
            codec::encode(&CounterCommand::AddAndGet { delta: 3 }, "command").unwrap(),
        );
        let applied = application.apply(2, 1_100, &add.encode());
        let applied = SessionApplication::decode_applied(&applied).unwrap();
        let Reply::Output(output) = applied.reply else {
            panic!("{applied:?}")
        };
        assert_eq!(
            output.result,
            Ok(codec::encode(&CounterOutput::Value(3), "output").unwrap())
        );

        // A query ahead of the applied index is refused, one at it is answered.
        let ahead = SessionApplication::decode_query_answer(&application.query(&counter_query(3)));
        assert!(matches!(
            ahead.unwrap(),
            Err(SessionError::NotYetApplied { .. })
        ));
        let answer = SessionApplication::decode_query_answer(&application.query(&counter_query(2)));
        assert_eq!(
            answer.unwrap(),
            Ok(codec::encode(&CounterOutput::Value(3), "output").unwrap())
        );
        let garbage = SessionApplication::decode_query_answer(&application.query(b"\x07junk"));
        assert!(garbage.unwrap().is_err());

        // Snapshots are deterministic and restore into a fresh application.
        let mut first = Vec::new();
        application.snapshot(&mut first).unwrap();
        let mut second = Vec::new();
        application.snapshot(&mut second).unwrap();
        assert_eq!(first, second);
        let mut restored = self::application();
        restored.restore(&mut first.as_slice()).unwrap();
        let mut third = Vec::new();
        restored.snapshot(&mut third).unwrap();
        assert_eq!(first, third);
        assert!(restored.restore(&mut &first[..first.len() - 1]).is_err());
        assert!(restored.restore(&mut &b"not a snapshot"[..]).is_err());

        // A tick past the session's deadline expires it and tells the subscribers.
        application.advance_time(3, 1_400);
        assert!(notices.try_recv().is_err(), "not expired yet");
        application.advance_time(4, 1_700);
        let notice = notices.try_recv().unwrap();
        assert_eq!(notice.index, 4);
        assert_eq!(notice.expired, vec![session]);
        assert!(application.with_layer(|layer| layer.sessions()).is_empty());
        assert_eq!(
            restored.with_layer(|layer| layer.sessions()),
            vec![session],
            "the restored copy is independent"
        );
    }

    #[test]
    fn refuses_invalid_bounds() {
        let config = SessionApplicationConfig {
            notices_buffered_max: 0,
            ..SessionApplicationConfig::default()
        };
        assert!(SessionApplication::new(config).is_err());
        let mut config = SessionApplicationConfig::default();
        config.session.sessions_max = 0;
        assert!(SessionApplication::new(config).is_err());
    }
}
