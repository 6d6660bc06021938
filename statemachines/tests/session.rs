//! Session-layer rules: registration, expiry by log time, exactly-once commands, buffered
//! out-of-order sequences, ordered event delivery and resend, sequential queries, snapshots.

use std::collections::BTreeSet;
use std::io::{Read, Write};

use conclave_statemachines::counter::{
    CounterCommand, CounterMachine, CounterOutput, CounterQuery,
};
use conclave_statemachines::value::{ValueChanged, ValueCommand, ValueMachine};
use conclave_statemachines::{
    Applied, ApplyContext, CommandOutput, Entry, Error, EventCursor, QueryContext, QueryRequest,
    Registry, Reply, SessionConfig, SessionError, SessionId, SessionLayer, StateMachine, codec,
};
use serde::{Deserialize, Serialize};

/// A user-style machine: sessions join a group; when a member leaves (close or expiry) the
/// others get an event saying who left and why.
#[derive(Default)]
struct Presence {
    members: BTreeSet<SessionId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum PresenceEvent {
    Left { session: SessionId, expired: bool },
}

impl Presence {
    fn leave(
        &mut self,
        context: &mut ApplyContext<'_, PresenceEvent>,
        session: SessionId,
        expired: bool,
    ) {
        if self.members.remove(&session) {
            for &member in &self.members {
                context.publish(member, PresenceEvent::Left { session, expired });
            }
        }
    }
}

impl StateMachine for Presence {
    const TYPE_NAME: &'static str = "presence";
    type Command = ();
    type Query = ();
    type Output = Vec<SessionId>;
    type Event = PresenceEvent;

    fn apply(
        &mut self,
        context: &mut ApplyContext<'_, PresenceEvent>,
        _command: (),
    ) -> Vec<SessionId> {
        if let Some(session) = context.session() {
            self.members.insert(session);
        }
        self.members.iter().copied().collect()
    }

    fn query(&self, _context: &QueryContext, _query: ()) -> Vec<SessionId> {
        self.members.iter().copied().collect()
    }

    fn snapshot(&self, writer: &mut dyn Write) -> Result<(), Error> {
        codec::write_frame(writer, &self.members, "presence")
    }

    fn restore(&mut self, reader: &mut dyn Read) -> Result<(), Error> {
        self.members = codec::read_frame(reader, "presence")?;
        Ok(())
    }

    fn session_closed(
        &mut self,
        context: &mut ApplyContext<'_, PresenceEvent>,
        session: SessionId,
    ) {
        self.leave(context, session, false);
    }

    fn session_expired(
        &mut self,
        context: &mut ApplyContext<'_, PresenceEvent>,
        session: SessionId,
    ) {
        self.leave(context, session, true);
    }
}

struct Harness {
    layer: SessionLayer,
    index: u64,
    time_ms: u64,
}

impl Harness {
    fn new(config: SessionConfig) -> Self {
        let mut registry = Registry::new();
        registry.register(CounterMachine::default).unwrap();
        registry.register(ValueMachine::default).unwrap();
        registry.register(Presence::default).unwrap();
        Harness {
            layer: SessionLayer::new(config, registry).unwrap(),
            index: 0,
            time_ms: 1_000,
        }
    }

    fn apply_at(&mut self, time_ms: u64, entry: Entry) -> Applied {
        self.index += 1;
        self.time_ms = time_ms;
        let applied = self.layer.apply(self.index, time_ms, &entry.encode());
        self.layer.validate().unwrap();
        applied
    }

    fn apply(&mut self, entry: Entry) -> Applied {
        self.apply_at(self.time_ms, entry)
    }

    fn register(&mut self, timeout_ms: u64) -> SessionId {
        match self.apply(Entry::Register { timeout_ms }).reply {
            Reply::Registered { session, .. } => session,
            other => panic!("not registered: {other:?}"),
        }
    }

    fn keep_alive(&mut self, session: SessionId, sequence: u64, event_index: u64) -> Applied {
        self.apply(Entry::KeepAlive {
            session,
            command_sequence_acknowledged: sequence,
            event_index_acknowledged: event_index,
        })
    }
}

fn command<T: Serialize>(
    session: SessionId,
    sequence: u64,
    name: &str,
    kind: &str,
    body: &T,
) -> Entry {
    Entry::Command {
        session,
        sequence,
        machine_name: name.to_string(),
        machine_type: kind.to_string(),
        payload: codec::encode(body, "command").unwrap(),
    }
}

fn add(session: SessionId, sequence: u64) -> Entry {
    command(
        session,
        sequence,
        "hits",
        "counter",
        &CounterCommand::AddAndGet { delta: 1 },
    )
}

fn counter_value(output: &CommandOutput) -> CounterOutput {
    codec::decode(output.result.as_ref().unwrap(), "output").unwrap()
}

fn output_of(applied: &Applied) -> CounterOutput {
    match &applied.reply {
        Reply::Output(output) => counter_value(output),
        other => panic!("no output: {other:?}"),
    }
}

fn read_counter(layer: &SessionLayer, index_seen: u64) -> Result<CounterOutput, SessionError> {
    let request = QueryRequest {
        session: None,
        index_seen,
        machine_name: "hits".to_string(),
        machine_type: "counter".to_string(),
        payload: codec::encode(&CounterQuery::Get, "query").unwrap(),
    };
    layer
        .query(&request)
        .map(|bytes| codec::decode(&bytes, "output").unwrap())
}

#[test]
fn the_session_id_is_the_register_index_and_the_timeout_is_bounded() {
    let mut harness = Harness::new(SessionConfig::default());
    harness.apply(Entry::Tick);
    let applied = harness.apply(Entry::Register { timeout_ms: 5_000 });
    assert_eq!(
        applied.reply,
        Reply::Registered {
            session: 2,
            timeout_ms: 5_000
        }
    );
    let too_short = harness.apply(Entry::Register { timeout_ms: 99 });
    assert_eq!(
        too_short.reply,
        Reply::Rejected(SessionError::TimeoutOutOfBounds {
            timeout_ms: 99,
            timeout_ms_min: 100,
            timeout_ms_max: 3_600_000
        })
    );
    assert_eq!(harness.layer.sessions(), vec![2]);
}

#[test]
fn sessions_expire_once_log_time_passes_keep_alive_plus_timeout() {
    let mut harness = Harness::new(SessionConfig::default());
    let session = harness.register(500);
    let applied = harness.apply_at(1_500, Entry::Tick);
    assert!(
        applied.expired.is_empty(),
        "at exactly the deadline the session still lives"
    );
    harness.keep_alive(session, 0, 0);
    let applied = harness.apply_at(2_000, Entry::Tick);
    assert!(
        applied.expired.is_empty(),
        "the keep-alive at 1500 moved the deadline to 2000"
    );
    // A stamp from the past does not move log time back.
    let applied = harness.apply_at(1_200, Entry::Tick);
    assert_eq!(applied.log_time_ms, 2_000);
    let applied = harness.apply_at(2_001, add(session, 1));
    assert_eq!(
        applied.expired,
        vec![session],
        "expiry happens before the entry applies"
    );
    assert_eq!(
        applied.reply,
        Reply::Rejected(SessionError::UnknownSession { session })
    );
    let applied = harness.keep_alive(session, 0, 0);
    assert_eq!(
        applied.reply,
        Reply::Rejected(SessionError::UnknownSession { session })
    );
}

#[test]
fn a_retried_sequence_returns_the_cached_output_until_acknowledged() {
    let mut harness = Harness::new(SessionConfig::default());
    let session = harness.register(5_000);
    let first = harness.apply(add(session, 1));
    assert_eq!(output_of(&first), CounterOutput::Value(1));
    let retry = harness.apply(add(session, 1));
    assert_eq!(
        retry.reply, first.reply,
        "the retry is answered from the cache"
    );
    assert_eq!(
        read_counter(&harness.layer, retry.index),
        Ok(CounterOutput::Value(1))
    );
    assert_eq!(
        output_of(&harness.apply(add(session, 2))),
        CounterOutput::Value(2)
    );

    harness.keep_alive(session, 1, 0);
    let late = harness.apply(add(session, 1));
    assert_eq!(
        late.reply,
        Reply::Rejected(SessionError::SequenceAcknowledged { sequence: 1 })
    );
    let still_cached = harness.apply(add(session, 2));
    assert_eq!(output_of(&still_cached), CounterOutput::Value(2));
    assert_eq!(
        read_counter(&harness.layer, still_cached.index),
        Ok(CounterOutput::Value(2))
    );
    assert_eq!(
        harness.apply(add(session, 0)).reply,
        Reply::Rejected(SessionError::SequenceZero)
    );
}

#[test]
fn commands_ahead_of_a_gap_wait_for_it_within_a_bound() {
    let config = SessionConfig {
        commands_ahead_max: 2,
        ..SessionConfig::default()
    };
    let mut harness = Harness::new(config);
    let session = harness.register(5_000);
    assert_eq!(
        harness.apply(add(session, 3)).reply,
        Reply::Buffered {
            session,
            sequence: 3
        }
    );
    assert_eq!(
        harness.apply(add(session, 2)).reply,
        Reply::Buffered {
            session,
            sequence: 2
        }
    );
    assert_eq!(
        harness.apply(add(session, 3)).reply,
        Reply::Buffered {
            session,
            sequence: 3
        }
    );
    let too_far = harness.apply(add(session, 4));
    assert_eq!(
        too_far.reply,
        Reply::Rejected(SessionError::SequenceTooFarAhead {
            sequence: 4,
            sequence_next: 1,
            commands_ahead_max: 2
        })
    );
    let filled = harness.apply(add(session, 1));
    assert_eq!(output_of(&filled), CounterOutput::Value(1));
    let released: Vec<(u64, CounterOutput)> = filled
        .released
        .iter()
        .map(|output| (output.sequence, counter_value(output)))
        .collect();
    assert_eq!(
        released,
        vec![(2, CounterOutput::Value(2)), (3, CounterOutput::Value(3))]
    );
    assert_eq!(
        output_of(&harness.apply(add(session, 3))),
        CounterOutput::Value(3)
    );
}

#[test]
fn unacknowledged_outputs_are_bounded_and_a_keep_alive_frees_them() {
    let config = SessionConfig {
        outputs_unacknowledged_max: 2,
        ..SessionConfig::default()
    };
    let mut harness = Harness::new(config);
    let session = harness.register(5_000);
    harness.apply(add(session, 1));
    harness.apply(add(session, 2));
    let refused = harness.apply(add(session, 3));
    assert_eq!(
        refused.reply,
        Reply::Rejected(SessionError::TooManyUnacknowledgedOutputs {
            outputs_unacknowledged_max: 2
        })
    );
    harness.keep_alive(session, 2, 0);
    assert_eq!(
        output_of(&harness.apply(add(session, 3))),
        CounterOutput::Value(3)
    );
}

fn value_events(applied: &Applied, session: SessionId) -> Vec<ValueChanged> {
    applied
        .events
        .iter()
        .filter(|batch| batch.session == session)
        .flat_map(|batch| &batch.events)
        .map(|event| codec::decode(&event.payload, "event").unwrap())
        .collect()
}

#[test]
fn events_carry_their_index_stay_until_acknowledged_and_resend_without_duplicates() {
    let mut harness = Harness::new(SessionConfig::default());
    let listener = harness.register(5_000);
    let writer = harness.register(5_000);
    harness.apply(command(
        listener,
        1,
        "config",
        "value",
        &ValueCommand::Listen,
    ));
    let mut indexes = Vec::new();
    for (sequence, text) in [(1, "a"), (2, "b"), (3, "c")] {
        let set = ValueCommand::GetAndSet {
            value: Some(text.as_bytes().to_vec()),
        };
        let applied = harness.apply(command(writer, sequence, "config", "value", &set));
        assert_eq!(
            value_events(&applied, listener),
            vec![ValueChanged {
                value: Some(text.as_bytes().to_vec())
            }]
        );
        assert_eq!(applied.events[0].index, applied.index);
        indexes.push(applied.index);
    }
    // The client received the first two batches, then lost its connection.
    let mut cursor = EventCursor::default();
    let pending = harness.layer.unacknowledged_events(listener).unwrap();
    assert_eq!(
        pending.iter().map(|batch| batch.index).collect::<Vec<_>>(),
        indexes
    );
    assert!(cursor.accept(&pending[0]) && cursor.accept(&pending[1]));
    let kept = harness.keep_alive(listener, 1, cursor.index_received());
    assert_eq!(
        kept.reply,
        Reply::KeptAlive {
            event_index_last: indexes[2]
        }
    );
    // On reconnect the server resends what is unacknowledged; the cursor shows each once.
    let resent = harness.layer.unacknowledged_events(listener).unwrap();
    assert_eq!(
        resent.iter().map(|batch| batch.index).collect::<Vec<_>>(),
        vec![indexes[2]]
    );
    let mut replayed = pending.clone();
    replayed.extend(resent);
    let delivered: Vec<u64> = replayed
        .iter()
        .filter(|batch| cursor.accept(batch))
        .map(|batch| batch.index)
        .collect();
    assert_eq!(delivered, vec![indexes[2]]);
    harness.keep_alive(listener, 1, indexes[2]);
    assert!(
        harness
            .layer
            .unacknowledged_events(listener)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn expiry_runs_every_machines_hook_and_its_events_reach_the_others() {
    let mut harness = Harness::new(SessionConfig::default());
    let short = harness.register(200);
    let long = harness.register(10_000);
    harness.apply(command(short, 1, "room", "presence", &()));
    harness.apply(command(long, 1, "room", "presence", &()));
    harness.apply(command(short, 1, "flag", "value", &ValueCommand::Listen));
    let applied = harness.apply_at(1_500, Entry::Tick);
    assert_eq!(applied.expired, vec![short]);
    assert_eq!(applied.events.len(), 1);
    let batch = &applied.events[0];
    assert_eq!((batch.index, batch.session), (applied.index, long));
    let event: PresenceEvent = codec::decode(&batch.events[0].payload, "event").unwrap();
    assert_eq!(
        event,
        PresenceEvent::Left {
            session: short,
            expired: true
        }
    );

    // The value machine's listener went with the session: a change notifies nobody.
    let set = ValueCommand::GetAndSet {
        value: Some(b"on".to_vec()),
    };
    let applied = harness.apply(command(long, 2, "flag", "value", &set));
    assert!(applied.events.is_empty());

    let closing = harness.register(10_000);
    harness.apply(command(closing, 1, "room", "presence", &()));
    let applied = harness.apply(Entry::Close { session: closing });
    assert_eq!(applied.reply, Reply::Closed);
    let event: PresenceEvent =
        codec::decode(&applied.events[0].events[0].payload, "event").unwrap();
    assert_eq!(
        event,
        PresenceEvent::Left {
            session: closing,
            expired: false
        }
    );
}

#[test]
fn a_session_that_never_acknowledges_events_expires_at_the_next_entry() {
    let config = SessionConfig {
        event_batches_unacknowledged_max: 2,
        ..SessionConfig::default()
    };
    let mut harness = Harness::new(config);
    let listener = harness.register(60_000);
    let writer = harness.register(60_000);
    harness.apply(command(
        listener,
        1,
        "config",
        "value",
        &ValueCommand::Listen,
    ));
    for sequence in 1..=3 {
        let set = ValueCommand::GetAndSet {
            value: Some(vec![sequence as u8]),
        };
        let applied = harness.apply(command(writer, sequence, "config", "value", &set));
        assert!(applied.expired.is_empty());
    }
    assert_eq!(harness.apply(Entry::Tick).expired, vec![listener]);
}

#[test]
fn queries_wait_for_the_index_the_session_saw_and_do_not_create_machines() {
    let mut harness = Harness::new(SessionConfig::default());
    let session = harness.register(5_000);
    assert_eq!(read_counter(&harness.layer, 1), Ok(CounterOutput::Value(0)));
    assert!(
        harness.layer.registry().machines().is_empty(),
        "a query creates nothing"
    );
    let applied = harness.apply(add(session, 1));
    assert_eq!(
        read_counter(&harness.layer, applied.index + 1),
        Err(SessionError::NotYetApplied {
            index_required: applied.index + 1,
            index_applied: applied.index
        })
    );
    assert_eq!(
        read_counter(&harness.layer, applied.index),
        Ok(CounterOutput::Value(1))
    );
}

#[test]
fn bad_entries_are_refused_with_a_clear_error_and_change_nothing() {
    let mut harness = Harness::new(SessionConfig::default());
    let session = harness.register(5_000);
    harness.index += 1;
    let applied = harness
        .layer
        .apply(harness.index, harness.time_ms, &[1, 99, 0]);
    assert!(matches!(
        applied.reply,
        Reply::Rejected(SessionError::MalformedEnvelope { .. })
    ));
    harness.index += 1;
    let applied = harness.layer.apply(harness.index, harness.time_ms, &[7]);
    assert_eq!(
        applied.reply,
        Reply::Rejected(SessionError::UnsupportedVersion { version: 7 })
    );

    let unknown = harness.apply(command(session, 1, "x", "no-such-type", &()));
    let Reply::Output(output) = unknown.reply else {
        panic!("rejections by machines are outputs")
    };
    assert_eq!(
        output.result,
        Err(SessionError::UnknownMachineType {
            machine_type: "no-such-type".to_string()
        })
    );
    harness.apply(add(session, 2));
    let mismatch = harness.apply(command(session, 3, "hits", "value", &ValueCommand::Listen));
    let Reply::Output(output) = mismatch.reply else {
        panic!()
    };
    assert!(matches!(
        output.result,
        Err(SessionError::MachineTypeMismatch { .. })
    ));
    let garbage = Entry::Command {
        session,
        sequence: 4,
        machine_name: "hits".to_string(),
        machine_type: "counter".to_string(),
        payload: vec![250, 250, 250],
    };
    let Reply::Output(output) = harness.apply(garbage).reply else {
        panic!()
    };
    assert!(matches!(
        output.result,
        Err(SessionError::MalformedPayload { .. })
    ));
    assert_eq!(read_counter(&harness.layer, 0), Ok(CounterOutput::Value(1)));
}

#[test]
fn a_restored_layer_continues_exactly_like_the_original() {
    let mut harness = Harness::new(SessionConfig::default());
    let listener = harness.register(5_000);
    let writer = harness.register(5_000);
    harness.apply(command(
        listener,
        1,
        "config",
        "value",
        &ValueCommand::Listen,
    ));
    harness.apply(add(writer, 1));
    harness.apply(add(writer, 3));
    let set = ValueCommand::GetAndSet {
        value: Some(b"x".to_vec()),
    };
    harness.apply(command(writer, 2, "config", "value", &set));

    let mut bytes = Vec::new();
    harness.layer.snapshot(&mut bytes).unwrap();
    let mut twin = Harness::new(SessionConfig::default());
    twin.layer.restore(&mut bytes.as_slice()).unwrap();
    twin.index = harness.index;
    let mut again = Vec::new();
    twin.layer.snapshot(&mut again).unwrap();
    assert_eq!(again, bytes, "restore then snapshot gives the same bytes");

    for harness in [&mut harness, &mut twin] {
        let applied = harness.apply(add(writer, 5));
        assert_eq!(
            applied.reply,
            Reply::Buffered {
                session: writer,
                sequence: 5
            }
        );
    }
    let original = harness.apply(add(writer, 4));
    assert_eq!(original, twin.apply(add(writer, 4)));
    assert_eq!(
        original.released.len(),
        1,
        "the buffered command survived the snapshot"
    );
    let original = harness.apply_at(7_000, Entry::Tick);
    assert_eq!(original, twin.apply_at(7_000, Entry::Tick));
    assert_eq!(original.expired, vec![listener, writer]);

    let mut corrupt = bytes.clone();
    corrupt[0] ^= 1;
    let before = {
        let mut snapshot = Vec::new();
        twin.layer.snapshot(&mut snapshot).unwrap();
        snapshot
    };
    assert!(matches!(
        twin.layer.restore(&mut corrupt.as_slice()),
        Err(Error::SnapshotFormat { .. })
    ));
    let truncated = &bytes[..bytes.len() - 3];
    assert!(matches!(
        twin.layer.restore(&mut &truncated[..]),
        Err(Error::Io { .. })
    ));
    let mut after = Vec::new();
    twin.layer.snapshot(&mut after).unwrap();
    assert_eq!(after, before, "a failed restore leaves the layer unchanged");
}

#[test]
fn configuration_bounds_are_validated() {
    let zero = SessionConfig {
        commands_ahead_max: 0,
        ..SessionConfig::default()
    };
    assert!(matches!(
        zero.validate(),
        Err(Error::Config {
            field: "commands_ahead_max",
            ..
        })
    ));
    let inverted = SessionConfig {
        session_timeout_ms_min: 10,
        session_timeout_ms_max: 5,
        ..SessionConfig::default()
    };
    assert!(matches!(
        SessionLayer::new(inverted, Registry::new()),
        Err(Error::Config {
            field: "session_timeout_ms_max",
            ..
        })
    ));
    let mut registry = Registry::new();
    registry.register(CounterMachine::default).unwrap();
    assert_eq!(
        registry.register(CounterMachine::default),
        Err(Error::DuplicateMachineType {
            type_name: "counter".to_string()
        })
    );
}

#[test]
fn a_client_session_drives_retries_and_acknowledgements() {
    use conclave_statemachines::ClientSession;
    let mut harness = Harness::new(SessionConfig::default());
    let mut client = ClientSession::new(harness.register(5_000));
    let payload = codec::encode(&CounterCommand::AddAndGet { delta: 1 }, "command").unwrap();
    let first = client.command("hits", "counter", payload.clone());
    let second = client.command("hits", "counter", payload);
    // The network reorders: the second command arrives first and waits.
    let buffered = harness.apply(second.clone());
    assert!(matches!(
        buffered.reply,
        Reply::Buffered { sequence: 2, .. }
    ));
    let applied = harness.apply(first.clone());
    let Reply::Output(output) = &applied.reply else {
        panic!()
    };
    assert!(client.answered(output, applied.index));
    assert!(client.answered(&applied.released[0], applied.index));
    // A retry of the second is answered from the cache and shown to nobody twice.
    let retry = harness.apply(second);
    let Reply::Output(cached) = &retry.reply else {
        panic!()
    };
    assert_eq!(cached, &applied.released[0]);
    assert!(!client.answered(cached, retry.index));
    assert_eq!(client.index_seen(), retry.index);

    harness.apply(client.keep_alive());
    let late = harness.apply(first);
    assert_eq!(
        late.reply,
        Reply::Rejected(SessionError::SequenceAcknowledged { sequence: 1 })
    );
}

/// Records, at each expiry, which of the sessions it knows the context still shows open.
#[derive(Default)]
struct Witness {
    known: BTreeSet<SessionId>,
    seen: Vec<(SessionId, Vec<SessionId>)>,
}

impl StateMachine for Witness {
    const TYPE_NAME: &'static str = "witness";
    type Command = ();
    type Query = ();
    type Output = Vec<(SessionId, Vec<SessionId>)>;
    type Event = ();

    fn apply(&mut self, context: &mut ApplyContext<'_, ()>, _command: ()) -> Self::Output {
        self.known.extend(context.session());
        self.seen.clone()
    }

    fn query(&self, _context: &QueryContext, _query: ()) -> Self::Output {
        self.seen.clone()
    }

    fn snapshot(&self, writer: &mut dyn Write) -> Result<(), Error> {
        codec::write_frame(writer, &(&self.known, &self.seen), "witness")
    }

    fn restore(&mut self, reader: &mut dyn Read) -> Result<(), Error> {
        (self.known, self.seen) = codec::read_frame(reader, "witness")?;
        Ok(())
    }

    fn session_expired(&mut self, context: &mut ApplyContext<'_, ()>, session: SessionId) {
        let open = self
            .known
            .iter()
            .copied()
            .filter(|known| context.is_session_open(*known));
        self.seen.push((session, open.collect()));
    }
}

#[test]
fn sessions_expiring_together_are_all_gone_before_any_hook_runs() {
    let mut registry = Registry::new();
    registry.register(Witness::default).unwrap();
    let mut harness = Harness {
        layer: SessionLayer::new(SessionConfig::default(), registry).unwrap(),
        index: 0,
        time_ms: 1_000,
    };
    let first = harness.register(200);
    let second = harness.register(200);
    let survivor = harness.register(60_000);
    for session in [first, second, survivor] {
        harness.apply(command(session, 1, "w", "witness", &()));
    }
    let applied = harness.apply_at(2_000, Entry::Tick);
    assert_eq!(applied.expired, vec![first, second]);
    let request = QueryRequest {
        session: None,
        index_seen: applied.index,
        machine_name: "w".to_string(),
        machine_type: "witness".to_string(),
        payload: codec::encode(&(), "query").unwrap(),
    };
    let seen: Vec<(SessionId, Vec<SessionId>)> =
        codec::decode(&harness.layer.query(&request).unwrap(), "output").unwrap();
    // When the first's hook ran, the second (expiring at the same entry) was already gone,
    // so no machine could hand it anything.
    assert_eq!(
        seen,
        vec![(first, vec![survivor]), (second, vec![survivor])]
    );
}
