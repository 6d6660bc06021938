//! The [`StateMachine`] trait that built-in and users' machines implement, the contexts they
//! receive, and the type-erased adapter the registry stores.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use serde::{Serialize, de::DeserializeOwned};

use crate::codec;
use crate::error::{Error, SessionError};

/// A log index.
pub type Index = u64;

/// A session's id: the index of the entry that registered it.
pub type SessionId = u64;

/// A replicated object: a deterministic function of the commands applied to it.
///
/// To ensure correctness, an implementation must:
/// - be deterministic: the same commands, in the same contexts, give the same outputs, events
///   and snapshot bytes (use `BTreeMap`, never `HashMap`, in snapshotted state);
/// - read time only from the context (`log_time_ms`), never from a clock, and use no
///   randomness, threads or I/O;
/// - make `restore` on a fresh instance followed by further commands behave exactly like the
///   instance that wrote the snapshot.
///
/// The conformance suite in [`crate::testing`] checks these properties for any machine.
pub trait StateMachine: 'static {
    /// The name under which the machine's factory is registered, e.g. `"kv"`.
    const TYPE_NAME: &'static str;
    /// Commands, applied through the log.
    type Command: Serialize + DeserializeOwned;
    /// Queries, answered from local state without going through the log.
    type Query: Serialize + DeserializeOwned;
    /// Outputs of commands and queries.
    type Output: Serialize + DeserializeOwned;
    /// Events published to sessions.
    type Event: Serialize + DeserializeOwned;

    /// Applies one command and returns its output.
    fn apply(
        &mut self,
        context: &mut ApplyContext<'_, Self::Event>,
        command: Self::Command,
    ) -> Self::Output;

    /// Answers a query from the state as of `context.index()`.
    fn query(&self, context: &QueryContext, query: Self::Query) -> Self::Output;

    /// Writes the whole state; the same state must always give the same bytes.
    fn snapshot(&self, writer: &mut dyn Write) -> Result<(), Error>;

    /// Replaces the state of a freshly created instance with the one a snapshot holds.
    fn restore(&mut self, reader: &mut dyn Read) -> Result<(), Error>;

    /// Called on every existing machine when a session registers.
    fn session_opened(
        &mut self,
        _context: &mut ApplyContext<'_, Self::Event>,
        _session: SessionId,
    ) {
    }

    /// Called on every machine when a session closes; release what the session held.
    fn session_closed(
        &mut self,
        _context: &mut ApplyContext<'_, Self::Event>,
        _session: SessionId,
    ) {
    }

    /// Called on every machine when a session expires. By default it does what a close does.
    fn session_expired(&mut self, context: &mut ApplyContext<'_, Self::Event>, session: SessionId) {
        self.session_closed(context, session);
    }

    /// Called on every machine whenever log time moves forward, before the entry that moved
    /// it is applied; machines expire their own timed objects (leases, TTLs) here.
    fn time_advanced(&mut self, _context: &mut ApplyContext<'_, Self::Event>) {}

    /// Checks the machine's invariants and describes the first one broken. The conformance
    /// suite calls it after every step; it is for tests and costs what it costs.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Which sessions are open, as machines see them.
pub trait SessionView {
    /// Whether the session is registered and has neither closed nor expired.
    fn is_open(&self, session: SessionId) -> bool;
}

impl<V> SessionView for BTreeMap<SessionId, V> {
    fn is_open(&self, session: SessionId) -> bool {
        self.contains_key(&session)
    }
}

/// What a machine knows while it applies a command or runs a hook.
pub struct ApplyContext<'a, E> {
    index: Index,
    log_time_ms: u64,
    session: Option<SessionId>,
    sessions: &'a dyn SessionView,
    events: Vec<(SessionId, E)>,
}

impl<'a, E> ApplyContext<'a, E> {
    /// Builds a context; the session layer and the conformance suite use it, and so can a
    /// machine's own unit tests.
    pub fn new(
        index: Index,
        log_time_ms: u64,
        session: Option<SessionId>,
        sessions: &'a dyn SessionView,
    ) -> Self {
        ApplyContext {
            index,
            log_time_ms,
            session,
            sessions,
            events: Vec::new(),
        }
    }

    /// The index of the entry being applied.
    pub fn index(&self) -> Index {
        self.index
    }

    /// Log time: the highest leader stamp seen so far, in milliseconds.
    pub fn log_time_ms(&self) -> u64 {
        self.log_time_ms
    }

    /// The session that sent the command, or the session a hook is about; `None` for
    /// `time_advanced`.
    pub fn session(&self) -> Option<SessionId> {
        self.session
    }

    /// Whether a session is open (useful before publishing to it or granting it something).
    pub fn is_session_open(&self, session: SessionId) -> bool {
        self.sessions.is_open(session)
    }

    /// Publishes an event to a session. Events to closed sessions are dropped by the session
    /// layer; the events of one entry reach each session together, in publication order.
    pub fn publish(&mut self, session: SessionId, event: E) {
        self.events.push((session, event));
    }

    /// Takes the events published so far.
    pub fn take_events(&mut self) -> Vec<(SessionId, E)> {
        std::mem::take(&mut self.events)
    }
}

/// What a machine knows while it answers a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryContext {
    /// The highest index this replica has applied.
    pub index: Index,
    /// Log time as of that index, in milliseconds.
    pub log_time_ms: u64,
    /// The session that asked, if any.
    pub session: Option<SessionId>,
}

/// A hook the session layer runs on every machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hook {
    Opened(SessionId),
    Closed(SessionId),
    Expired(SessionId),
    TimeAdvanced,
}

/// The untyped view of a context: index, time, session and where encoded events go.
pub(crate) struct RawContext<'a> {
    pub(crate) index: Index,
    pub(crate) log_time_ms: u64,
    pub(crate) session: Option<SessionId>,
    pub(crate) sessions: &'a dyn SessionView,
    pub(crate) events: &'a mut Vec<(SessionId, Vec<u8>)>,
}

/// A machine behind bytes: the registry stores these.
pub(crate) trait ErasedMachine {
    fn type_name(&self) -> &'static str;
    fn apply(&mut self, context: RawContext<'_>, payload: &[u8]) -> Result<Vec<u8>, SessionError>;
    fn query(&self, context: &QueryContext, payload: &[u8]) -> Result<Vec<u8>, SessionError>;
    fn hook(&mut self, context: RawContext<'_>, hook: Hook) -> Result<(), SessionError>;
    fn snapshot(&self, writer: &mut dyn Write) -> Result<(), Error>;
    fn restore(&mut self, reader: &mut dyn Read) -> Result<(), Error>;
    fn validate(&self) -> Result<(), String>;
}

/// Adapts a typed machine to [`ErasedMachine`].
pub(crate) struct Erased<M>(pub(crate) M);

fn encode_error<M: StateMachine>(error: Error) -> SessionError {
    SessionError::OutputEncode {
        machine_type: M::TYPE_NAME.to_string(),
        reason: error.to_string(),
    }
}

fn encode_events<M: StateMachine>(
    published: Vec<(SessionId, M::Event)>,
    events: &mut Vec<(SessionId, Vec<u8>)>,
) -> Result<(), SessionError> {
    for (session, event) in published {
        let bytes = codec::encode(&event, "event").map_err(encode_error::<M>)?;
        events.push((session, bytes));
    }
    Ok(())
}

impl<M: StateMachine> ErasedMachine for Erased<M> {
    fn type_name(&self) -> &'static str {
        M::TYPE_NAME
    }

    fn apply(&mut self, context: RawContext<'_>, payload: &[u8]) -> Result<Vec<u8>, SessionError> {
        let command: M::Command =
            codec::decode(payload, "command").map_err(|error| SessionError::MalformedPayload {
                machine_type: M::TYPE_NAME.to_string(),
                reason: error.to_string(),
            })?;
        let mut typed = ApplyContext::new(
            context.index,
            context.log_time_ms,
            context.session,
            context.sessions,
        );
        let output = self.0.apply(&mut typed, command);
        encode_events::<M>(typed.take_events(), context.events)?;
        codec::encode(&output, "output").map_err(encode_error::<M>)
    }

    fn query(&self, context: &QueryContext, payload: &[u8]) -> Result<Vec<u8>, SessionError> {
        let query: M::Query =
            codec::decode(payload, "query").map_err(|error| SessionError::MalformedPayload {
                machine_type: M::TYPE_NAME.to_string(),
                reason: error.to_string(),
            })?;
        let output = self.0.query(context, query);
        codec::encode(&output, "output").map_err(encode_error::<M>)
    }

    fn hook(&mut self, context: RawContext<'_>, hook: Hook) -> Result<(), SessionError> {
        let mut typed = ApplyContext::new(
            context.index,
            context.log_time_ms,
            context.session,
            context.sessions,
        );
        match hook {
            Hook::Opened(session) => self.0.session_opened(&mut typed, session),
            Hook::Closed(session) => self.0.session_closed(&mut typed, session),
            Hook::Expired(session) => self.0.session_expired(&mut typed, session),
            Hook::TimeAdvanced => self.0.time_advanced(&mut typed),
        }
        encode_events::<M>(typed.take_events(), context.events)
    }

    fn snapshot(&self, writer: &mut dyn Write) -> Result<(), Error> {
        self.0.snapshot(writer)
    }

    fn restore(&mut self, reader: &mut dyn Read) -> Result<(), Error> {
        self.0.restore(reader)
    }

    fn validate(&self) -> Result<(), String> {
        self.0.validate()
    }
}
