//! The session layer: Copycat-style client sessions in front of the registry.
//!
//! It owns registration, keep-alive, close and expiry by log time; exactly-once commands by
//! `(session, sequence)` with an output cache the client trims by acknowledging; ordered
//! event batches that stay until acknowledged; and sequentially consistent queries.
//!
//! On every entry, in this order: log time becomes the maximum of itself and the entry's
//! stamp; sessions whose last keep-alive plus timeout lies before log time expire (in id
//! order, each running every machine's expiry hook); if time moved, every machine's
//! `time_advanced` hook runs (in name order); then the entry itself is applied. Every replica
//! therefore expires the same sessions at the same index.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::codec::{self, ChunkReader, ChunkWriter};
use crate::envelope::{
    Applied, CommandOutput, Entry, EventBatch, FORMAT_VERSION, MachineEvent, QueryRequest, Reply,
};
use crate::error::{Error, SessionError};
use crate::machine::{ErasedMachine, Hook, Index, QueryContext, RawContext, SessionId};
use crate::registry::Registry;

/// The bounds of the session layer; every one is checked by [`SessionConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionConfig {
    /// The shortest session timeout a client may ask for.
    pub session_timeout_ms_min: u64,
    /// The longest session timeout a client may ask for.
    pub session_timeout_ms_max: u64,
    /// How many open sessions the group holds at most.
    pub sessions_max: u64,
    /// How many commands a session may send ahead of a missing sequence.
    pub commands_ahead_max: u64,
    /// How many outputs a session may leave unacknowledged before new commands are refused.
    pub outputs_unacknowledged_max: u64,
    /// How many event batches a session may leave unacknowledged; beyond that it expires at
    /// the next entry, because dropping events would break the delivery guarantee.
    pub event_batches_unacknowledged_max: u64,
    /// How many named machines the group holds at most.
    pub machines_max: u64,
    /// The longest machine name, in bytes.
    pub machine_name_bytes_max: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            session_timeout_ms_min: 100,
            session_timeout_ms_max: 3_600_000,
            sessions_max: 65_536,
            commands_ahead_max: 64,
            outputs_unacknowledged_max: 1_024,
            event_batches_unacknowledged_max: 4_096,
            machines_max: 1_024,
            machine_name_bytes_max: 256,
        }
    }
}

impl SessionConfig {
    /// Checks every bound.
    pub fn validate(&self) -> Result<(), Error> {
        let positive = [
            ("session_timeout_ms_min", self.session_timeout_ms_min),
            ("sessions_max", self.sessions_max),
            ("commands_ahead_max", self.commands_ahead_max),
            (
                "outputs_unacknowledged_max",
                self.outputs_unacknowledged_max,
            ),
            (
                "event_batches_unacknowledged_max",
                self.event_batches_unacknowledged_max,
            ),
            ("machines_max", self.machines_max),
            ("machine_name_bytes_max", self.machine_name_bytes_max),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(Error::Config {
                    field,
                    reason: "must be at least 1".to_string(),
                });
            }
        }
        if self.session_timeout_ms_max < self.session_timeout_ms_min {
            return Err(Error::Config {
                field: "session_timeout_ms_max",
                reason: "must be at least session_timeout_ms_min".to_string(),
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PendingCommand {
    machine_name: String,
    machine_type: String,
    payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    timeout_ms: u64,
    keep_alive_ms: u64,
    sequence_applied: u64,
    outputs: BTreeMap<u64, Result<Vec<u8>, SessionError>>,
    pending: BTreeMap<u64, PendingCommand>,
    events: VecDeque<EventBatch>,
    overflowed: bool,
}

impl Session {
    fn deadline_ms(&self) -> u64 {
        self.keep_alive_ms.saturating_add(self.timeout_ms)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotHeader {
    version: u8,
    index_applied: Index,
    log_time_ms: u64,
    session_count: u64,
    machine_count: u64,
}

const SNAPSHOT_MAGIC: [u8; 8] = *b"CNCLSSM1";

type Published = Vec<(SessionId, MachineEvent)>;

/// Sessions in front of a registry of machines: the node applies every committed entry here.
pub struct SessionLayer {
    config: SessionConfig,
    registry: Registry,
    index_applied: Index,
    log_time_ms: u64,
    sessions: BTreeMap<SessionId, Session>,
    /// (deadline, session) for every open session; derived from `sessions`.
    deadlines: BTreeSet<(u64, SessionId)>,
    /// Sessions that exceeded their event bound and expire at the next entry.
    overflowed: BTreeSet<SessionId>,
}

impl std::fmt::Debug for SessionLayer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SessionLayer")
            .field("index_applied", &self.index_applied)
            .field("log_time_ms", &self.log_time_ms)
            .field("sessions", &self.sessions.len())
            .field("registry", &self.registry)
            .finish()
    }
}

impl SessionLayer {
    /// A layer with no sessions, no machines, and nothing applied.
    pub fn new(config: SessionConfig, registry: Registry) -> Result<Self, Error> {
        config.validate()?;
        Ok(SessionLayer {
            config,
            registry,
            index_applied: 0,
            log_time_ms: 0,
            sessions: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            overflowed: BTreeSet::new(),
        })
    }

    /// The highest index applied.
    pub fn index_applied(&self) -> Index {
        self.index_applied
    }

    /// Log time, in milliseconds.
    pub fn log_time_ms(&self) -> u64 {
        self.log_time_ms
    }

    /// The open sessions, in id order.
    pub fn sessions(&self) -> Vec<SessionId> {
        self.sessions.keys().copied().collect()
    }

    /// The registry (types and live machines).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Applies one encoded entry. `log_time_ms` is the leader's stamp on it; indexes must
    /// increase. Malformed entries are rejected in the reply and change nothing but time.
    pub fn apply(&mut self, index: Index, log_time_ms: u64, bytes: &[u8]) -> Applied {
        match Entry::decode(bytes) {
            Ok(entry) => self.apply_entry(index, log_time_ms, entry),
            Err(error) => self.apply_with(index, log_time_ms, |_, _, _, _| Reply::Rejected(error)),
        }
    }

    /// Applies one decoded entry (what [`SessionLayer::apply`] does after decoding).
    pub fn apply_entry(&mut self, index: Index, log_time_ms: u64, entry: Entry) -> Applied {
        self.apply_with(
            index,
            log_time_ms,
            |layer, index, released, published| match entry {
                Entry::Register { timeout_ms } => layer.register(index, timeout_ms, published),
                Entry::KeepAlive {
                    session,
                    command_sequence_acknowledged,
                    event_index_acknowledged,
                } => layer.keep_alive(
                    session,
                    command_sequence_acknowledged,
                    event_index_acknowledged,
                ),
                Entry::Close { session } => layer.close(index, session, published),
                Entry::Command {
                    session,
                    sequence,
                    machine_name,
                    machine_type,
                    payload,
                } => {
                    let command = PendingCommand {
                        machine_name,
                        machine_type,
                        payload,
                    };
                    layer.command(index, session, sequence, command, released, published)
                }
                Entry::Tick => Reply::Ticked,
            },
        )
    }

    fn apply_with(
        &mut self,
        index: Index,
        log_time_ms: u64,
        body: impl FnOnce(&mut Self, Index, &mut Vec<CommandOutput>, &mut Published) -> Reply,
    ) -> Applied {
        assert!(
            index > self.index_applied,
            "entries are applied in increasing index order"
        );
        self.index_applied = index;
        let time_advanced = log_time_ms > self.log_time_ms;
        self.log_time_ms = self.log_time_ms.max(log_time_ms);
        let mut published = Vec::new();
        let expired = self.expire_sessions(index, &mut published);
        if time_advanced {
            self.run_hook_everywhere(index, None, Hook::TimeAdvanced, &mut published);
        }
        let mut released = Vec::new();
        let reply = body(self, index, &mut released, &mut published);
        let events = self.deliver(index, published);
        Applied {
            index,
            log_time_ms: self.log_time_ms,
            reply,
            released,
            events,
            expired,
        }
    }

    fn expire_sessions(&mut self, index: Index, published: &mut Published) -> Vec<SessionId> {
        let mut expiring: BTreeSet<SessionId> = std::mem::take(&mut self.overflowed);
        while let Some(&(deadline_ms, session)) = self.deadlines.first() {
            if deadline_ms >= self.log_time_ms {
                break;
            }
            self.deadlines.pop_first();
            expiring.insert(session);
        }
        // Every expiring session is gone before any hook runs, so that no machine hands
        // something (a lock, a leadership) to a session that expires at the same entry.
        for &session in &expiring {
            self.remove_session(session);
        }
        for &session in &expiring {
            self.run_hook_everywhere(index, Some(session), Hook::Expired(session), published);
        }
        expiring.into_iter().collect()
    }

    fn remove_session(&mut self, session: SessionId) -> bool {
        match self.sessions.remove(&session) {
            Some(state) => {
                self.deadlines.remove(&(state.deadline_ms(), session));
                self.overflowed.remove(&session);
                true
            }
            None => false,
        }
    }

    fn run_hook_everywhere(
        &mut self,
        index: Index,
        session: Option<SessionId>,
        hook: Hook,
        published: &mut Published,
    ) {
        for (name, machine) in self.registry.machines.iter_mut() {
            let mut events = Vec::new();
            let context = RawContext {
                index,
                log_time_ms: self.log_time_ms,
                session,
                sessions: &self.sessions,
                events: &mut events,
            };
            let result = machine.hook(context, hook);
            // A machine whose event type cannot be encoded is a bug in that machine; every
            // replica hits it at the same index, so crashing is the deterministic outcome.
            assert!(
                result.is_ok(),
                "machine {name:?} failed in hook {hook:?}: {result:?}"
            );
            tag_events(name, events, published);
        }
    }

    fn deliver(&mut self, index: Index, published: Published) -> Vec<EventBatch> {
        let mut by_session: BTreeMap<SessionId, Vec<MachineEvent>> = BTreeMap::new();
        for (session, event) in published {
            by_session.entry(session).or_default().push(event);
        }
        let mut batches = Vec::new();
        for (session, events) in by_session {
            let Some(state) = self.sessions.get_mut(&session) else {
                continue;
            };
            let batch = EventBatch {
                index,
                session,
                events,
            };
            state.events.push_back(batch.clone());
            if state.events.len() as u64 > self.config.event_batches_unacknowledged_max {
                state.overflowed = true;
                self.overflowed.insert(session);
            }
            batches.push(batch);
        }
        batches
    }

    fn register(&mut self, index: Index, timeout_ms: u64, published: &mut Published) -> Reply {
        let config = &self.config;
        if timeout_ms < config.session_timeout_ms_min || timeout_ms > config.session_timeout_ms_max
        {
            return Reply::Rejected(SessionError::TimeoutOutOfBounds {
                timeout_ms,
                timeout_ms_min: config.session_timeout_ms_min,
                timeout_ms_max: config.session_timeout_ms_max,
            });
        }
        if self.sessions.len() as u64 >= config.sessions_max {
            return Reply::Rejected(SessionError::TooManySessions {
                sessions_max: config.sessions_max,
            });
        }
        let session = Session {
            timeout_ms,
            keep_alive_ms: self.log_time_ms,
            sequence_applied: 0,
            outputs: BTreeMap::new(),
            pending: BTreeMap::new(),
            events: VecDeque::new(),
            overflowed: false,
        };
        self.deadlines.insert((session.deadline_ms(), index));
        self.sessions.insert(index, session);
        self.run_hook_everywhere(index, Some(index), Hook::Opened(index), published);
        Reply::Registered {
            session: index,
            timeout_ms,
        }
    }

    fn keep_alive(
        &mut self,
        session: SessionId,
        command_sequence_acknowledged: u64,
        event_index_acknowledged: Index,
    ) -> Reply {
        let Some(state) = self.sessions.get_mut(&session) else {
            return Reply::Rejected(SessionError::UnknownSession { session });
        };
        self.deadlines.remove(&(state.deadline_ms(), session));
        state.keep_alive_ms = self.log_time_ms;
        self.deadlines.insert((state.deadline_ms(), session));
        state.outputs = state
            .outputs
            .split_off(&command_sequence_acknowledged.saturating_add(1));
        while state
            .events
            .front()
            .is_some_and(|batch| batch.index <= event_index_acknowledged)
        {
            state.events.pop_front();
        }
        let event_index_last = state.events.back().map_or(0, |batch| batch.index);
        Reply::KeptAlive { event_index_last }
    }

    fn close(&mut self, index: Index, session: SessionId, published: &mut Published) -> Reply {
        if !self.remove_session(session) {
            return Reply::Rejected(SessionError::UnknownSession { session });
        }
        self.run_hook_everywhere(index, Some(session), Hook::Closed(session), published);
        Reply::Closed
    }

    fn command(
        &mut self,
        index: Index,
        session: SessionId,
        sequence: u64,
        command: PendingCommand,
        released: &mut Vec<CommandOutput>,
        published: &mut Published,
    ) -> Reply {
        let commands_ahead_max = self.config.commands_ahead_max;
        let Some(state) = self.sessions.get_mut(&session) else {
            return Reply::Rejected(SessionError::UnknownSession { session });
        };
        if sequence == 0 {
            return Reply::Rejected(SessionError::SequenceZero);
        }
        if sequence <= state.sequence_applied {
            return match state.outputs.get(&sequence) {
                Some(result) => Reply::Output(CommandOutput {
                    session,
                    sequence,
                    result: result.clone(),
                }),
                None => Reply::Rejected(SessionError::SequenceAcknowledged { sequence }),
            };
        }
        let sequence_next = state.sequence_applied + 1;
        if sequence > sequence_next {
            if state.pending.contains_key(&sequence) {
                return Reply::Buffered { session, sequence };
            }
            if sequence - sequence_next > commands_ahead_max
                || state.pending.len() as u64 >= commands_ahead_max
            {
                return Reply::Rejected(SessionError::SequenceTooFarAhead {
                    sequence,
                    sequence_next,
                    commands_ahead_max,
                });
            }
            state.pending.insert(sequence, command);
            return Reply::Buffered { session, sequence };
        }
        let output = self.run_in_sequence(index, session, sequence, command, published);
        // The command filled the gap: run the buffered successors it was holding up.
        while let Some(state) = self.sessions.get_mut(&session) {
            let sequence = state.sequence_applied + 1;
            let Some(next) = state.pending.remove(&sequence) else {
                break;
            };
            released.push(self.run_in_sequence(index, session, sequence, next, published));
        }
        match output.result {
            Err(error @ SessionError::TooManyUnacknowledgedOutputs { .. }) => {
                Reply::Rejected(error)
            }
            result => Reply::Output(CommandOutput {
                session,
                sequence,
                result,
            }),
        }
    }

    /// Runs the command that is next in its session's sequence and caches its output. A full
    /// output cache refuses it without consuming the sequence, so a retry after a keep-alive
    /// runs it.
    fn run_in_sequence(
        &mut self,
        index: Index,
        session: SessionId,
        sequence: u64,
        command: PendingCommand,
        published: &mut Published,
    ) -> CommandOutput {
        let outputs_unacknowledged_max = self.config.outputs_unacknowledged_max;
        let cached = self
            .sessions
            .get(&session)
            .map_or(0, |state| state.outputs.len() as u64);
        if cached >= outputs_unacknowledged_max {
            let error = SessionError::TooManyUnacknowledgedOutputs {
                outputs_unacknowledged_max,
            };
            return CommandOutput {
                session,
                sequence,
                result: Err(error),
            };
        }
        let result = self.run_machine(index, session, command, published);
        if let Some(state) = self.sessions.get_mut(&session) {
            assert_eq!(
                state.sequence_applied + 1,
                sequence,
                "commands run in sequence order"
            );
            state.sequence_applied = sequence;
            state.outputs.insert(sequence, result.clone());
        }
        CommandOutput {
            session,
            sequence,
            result,
        }
    }

    fn run_machine(
        &mut self,
        index: Index,
        session: SessionId,
        command: PendingCommand,
        published: &mut Published,
    ) -> Result<Vec<u8>, SessionError> {
        let PendingCommand {
            machine_name,
            machine_type,
            payload,
        } = command;
        let exists = self.registry.check_route(&machine_name, &machine_type)?;
        if !exists {
            self.create_machine(&machine_name, &machine_type)?;
        }
        let Some(machine) = self.registry.machines.get_mut(&machine_name) else {
            return Err(SessionError::UnknownMachineType { machine_type });
        };
        let mut events = Vec::new();
        let context = RawContext {
            index,
            log_time_ms: self.log_time_ms,
            session: Some(session),
            sessions: &self.sessions,
            events: &mut events,
        };
        let result = machine.apply(context, &payload);
        tag_events(&machine_name, events, published);
        result
    }

    fn create_machine(&mut self, name: &str, machine_type: &str) -> Result<(), SessionError> {
        let config = &self.config;
        if name.is_empty() || name.len() as u64 > config.machine_name_bytes_max {
            return Err(SessionError::InvalidMachineName {
                machine_name_bytes_max: config.machine_name_bytes_max,
            });
        }
        if self.registry.machines.len() as u64 >= config.machines_max {
            return Err(SessionError::TooManyMachines {
                machines_max: config.machines_max,
            });
        }
        let machine =
            self.registry
                .create(machine_type)
                .ok_or_else(|| SessionError::UnknownMachineType {
                    machine_type: machine_type.to_string(),
                })?;
        self.registry.machines.insert(name.to_string(), machine);
        Ok(())
    }

    /// Answers a query once this replica has applied `index_seen` (sequential consistency);
    /// a machine that does not exist yet answers as a fresh one would, without being created.
    pub fn query(&self, request: &QueryRequest) -> Result<Vec<u8>, SessionError> {
        if request.index_seen > self.index_applied {
            return Err(SessionError::NotYetApplied {
                index_required: request.index_seen,
                index_applied: self.index_applied,
            });
        }
        if let Some(session) = request.session
            && !self.sessions.contains_key(&session)
        {
            return Err(SessionError::UnknownSession { session });
        }
        let context = QueryContext {
            index: self.index_applied,
            log_time_ms: self.log_time_ms,
            session: request.session,
        };
        let exists = self
            .registry
            .check_route(&request.machine_name, &request.machine_type)?;
        if exists && let Some(machine) = self.registry.machines.get(&request.machine_name) {
            return machine.query(&context, &request.payload);
        }
        let fresh = self.registry.create(&request.machine_type).ok_or_else(|| {
            SessionError::UnknownMachineType {
                machine_type: request.machine_type.clone(),
            }
        })?;
        fresh.query(&context, &request.payload)
    }

    /// Checks the layer's invariants, then every machine's; describes the first one broken.
    /// Tests call it after every step.
    pub fn validate(&self) -> Result<(), String> {
        let deadlines: BTreeSet<(u64, SessionId)> = self
            .sessions
            .iter()
            .map(|(id, state)| (state.deadline_ms(), *id))
            .collect();
        if deadlines != self.deadlines {
            return Err("the deadline index disagrees with the sessions".to_string());
        }
        for (id, state) in &self.sessions {
            if *id > self.index_applied {
                return Err(format!("session {id} is newer than the applied index"));
            }
            if state
                .outputs
                .keys()
                .any(|sequence| *sequence > state.sequence_applied)
            {
                return Err(format!("session {id} caches an output it never applied"));
            }
            if state
                .pending
                .keys()
                .any(|sequence| *sequence <= state.sequence_applied + 1)
            {
                return Err(format!("session {id} buffers a command it could run"));
            }
            if state.pending.len() as u64 > self.config.commands_ahead_max {
                return Err(format!("session {id} buffers more than commands_ahead_max"));
            }
            let indexes: Vec<Index> = state.events.iter().map(|batch| batch.index).collect();
            if indexes.windows(2).any(|pair| pair[0] >= pair[1])
                || indexes
                    .last()
                    .is_some_and(|last| *last > self.index_applied)
            {
                return Err(format!("session {id} holds event batches out of order"));
            }
            if state.overflowed != self.overflowed.contains(id) {
                return Err(format!(
                    "session {id} overflow flag disagrees with the index"
                ));
            }
        }
        for (name, machine) in &self.registry.machines {
            machine
                .validate()
                .map_err(|reason| format!("machine {name:?}: {reason}"))?;
        }
        Ok(())
    }

    /// The event batches a session has not acknowledged, oldest first: what the node resends
    /// when the client reconnects.
    pub fn unacknowledged_events(
        &self,
        session: SessionId,
    ) -> Result<Vec<EventBatch>, SessionError> {
        let state = self
            .sessions
            .get(&session)
            .ok_or(SessionError::UnknownSession { session })?;
        Ok(state.events.iter().cloned().collect())
    }

    /// Writes the whole state: sessions, then every machine's own snapshot. The same state
    /// always gives the same bytes.
    pub fn snapshot(&self, writer: &mut dyn Write) -> Result<(), Error> {
        writer.write_all(&SNAPSHOT_MAGIC)?;
        let header = SnapshotHeader {
            version: FORMAT_VERSION,
            index_applied: self.index_applied,
            log_time_ms: self.log_time_ms,
            session_count: self.sessions.len() as u64,
            machine_count: self.registry.machines.len() as u64,
        };
        codec::write_frame(writer, &header, "snapshot header")?;
        for (id, session) in &self.sessions {
            codec::write_frame(writer, &(id, session), "session")?;
        }
        for (name, machine) in &self.registry.machines {
            codec::write_frame(writer, &(name, machine.type_name()), "machine header")?;
            let mut chunked = ChunkWriter::new(writer);
            machine.snapshot(&mut chunked)?;
            chunked.finish()?;
        }
        Ok(())
    }

    /// Replaces the whole state with a snapshot's. On error the layer is left unchanged.
    pub fn restore(&mut self, reader: &mut dyn Read) -> Result<(), Error> {
        let mut magic = [0_u8; 8];
        reader.read_exact(&mut magic)?;
        if magic != SNAPSHOT_MAGIC {
            return Err(Error::SnapshotFormat {
                reason: "bad magic".to_string(),
            });
        }
        let header: SnapshotHeader = codec::read_frame(reader, "snapshot header")?;
        if header.version != FORMAT_VERSION {
            return Err(Error::SnapshotFormat {
                reason: format!("unsupported version {}", header.version),
            });
        }
        let mut sessions = BTreeMap::new();
        for _ in 0..header.session_count {
            let (id, session): (SessionId, Session) = codec::read_frame(reader, "session")?;
            sessions.insert(id, session);
        }
        let mut machines: BTreeMap<String, Box<dyn ErasedMachine>> = BTreeMap::new();
        for _ in 0..header.machine_count {
            let (name, type_name): (String, String) = codec::read_frame(reader, "machine header")?;
            let mut machine =
                self.registry
                    .create(&type_name)
                    .ok_or(Error::UnknownMachineType {
                        type_name: type_name.clone(),
                    })?;
            let mut chunked = ChunkReader::new(reader);
            machine.restore(&mut chunked)?;
            chunked.finish()?;
            machines.insert(name, machine);
        }
        self.deadlines = sessions
            .iter()
            .map(|(id, state)| (state.deadline_ms(), *id))
            .collect();
        self.overflowed = sessions
            .iter()
            .filter(|(_, state)| state.overflowed)
            .map(|(id, _)| *id)
            .collect();
        self.sessions = sessions;
        self.registry.machines = machines;
        self.index_applied = header.index_applied;
        self.log_time_ms = header.log_time_ms;
        Ok(())
    }
}

fn tag_events(machine_name: &str, events: Vec<(SessionId, Vec<u8>)>, published: &mut Published) {
    for (session, payload) in events {
        published.push((
            session,
            MachineEvent {
                machine_name: machine_name.to_string(),
                payload,
            },
        ));
    }
}
