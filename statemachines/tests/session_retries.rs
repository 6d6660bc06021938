//! Property test of exactly-once: a client's commands delivered in any order, any number of
//! times (as retries over a flaky network would), then retried in order until answered, are
//! applied exactly once each, in sequence order, and every answer for a sequence is the same.
//!
//! More cases: `PROPTEST_CASES=5000 cargo test -p conclave-statemachines --test session_retries`.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use conclave_statemachines::{
    ApplyContext, Entry, Error, QueryContext, Registry, Reply, SessionConfig, SessionError,
    SessionLayer, StateMachine, codec,
};
use proptest::prelude::*;

/// Records every command it applies; the output is the whole record so far.
#[derive(Default)]
struct Recorder {
    applied: Vec<u64>,
}

impl StateMachine for Recorder {
    const TYPE_NAME: &'static str = "recorder";
    type Command = u64;
    type Query = ();
    type Output = Vec<u64>;
    type Event = ();

    fn apply(&mut self, _context: &mut ApplyContext<'_, ()>, command: u64) -> Vec<u64> {
        self.applied.push(command);
        self.applied.clone()
    }

    fn query(&self, _context: &QueryContext, _query: ()) -> Vec<u64> {
        self.applied.clone()
    }

    fn snapshot(&self, writer: &mut dyn Write) -> Result<(), Error> {
        codec::write_frame(writer, &self.applied, "recorder")
    }

    fn restore(&mut self, reader: &mut dyn Read) -> Result<(), Error> {
        self.applied = codec::read_frame(reader, "recorder")?;
        Ok(())
    }
}

fn command(sequence: u64) -> Entry {
    Entry::Command {
        session: 1,
        sequence,
        machine_name: "log".to_string(),
        machine_type: "recorder".to_string(),
        payload: codec::encode(&sequence, "command").unwrap(),
    }
}

proptest! {
    #[test]
    fn every_sequence_applies_exactly_once_in_order(
        commands in 1..30_u64,
        deliveries in proptest::collection::vec((0..30_u64, any::<bool>()), 0..120),
        commands_ahead_max in 1..8_u64,
    ) {
        let mut registry = Registry::new();
        registry.register(Recorder::default).unwrap();
        let config = SessionConfig { commands_ahead_max, ..SessionConfig::default() };
        let mut layer = SessionLayer::new(config, registry).unwrap();
        let mut index = 1;
        layer.apply(index, 0, &Entry::Register { timeout_ms: 60_000 }.encode());
        let mut answers: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        let mut acknowledged = 0;
        let record = |applied: conclave_statemachines::Applied,
                      answers: &mut BTreeMap<u64, Vec<u8>>,
                      acknowledged: u64| {
            let mut outputs = applied.released.clone();
            match applied.reply {
                Reply::Output(output) => outputs.push(output),
                Reply::Buffered { .. } => {}
                Reply::Rejected(SessionError::SequenceAcknowledged { sequence }) => {
                    assert!(sequence <= acknowledged, "{sequence} was never acknowledged");
                }
                Reply::Rejected(SessionError::SequenceTooFarAhead { .. }) => {}
                other => panic!("unexpected reply {other:?}"),
            }
            for output in outputs {
                let bytes = output.result.expect("the recorder never fails");
                let expected: Vec<u64> = (1..=output.sequence).collect();
                let actual: Vec<u64> = codec::decode(&bytes, "output").unwrap();
                assert_eq!(actual, expected, "sequence {} saw exactly its predecessors", output.sequence);
                let first = answers.entry(output.sequence).or_insert_with(|| bytes.clone());
                assert_eq!(first, &bytes, "a retry got another answer");
            }
        };
        // Scrambled deliveries, some of them followed by a keep-alive acknowledging what the
        // client has seen answered (so later retries of those get "acknowledged").
        for (offset, keep_alive) in deliveries {
            let sequence = offset % commands + 1;
            index += 1;
            record(layer.apply(index, 0, &command(sequence).encode()), &mut answers, acknowledged);
            prop_assert_eq!(layer.validate(), Ok(()));
            if keep_alive {
                let contiguous = (1..).take_while(|sequence| answers.contains_key(sequence)).count();
                acknowledged = contiguous as u64;
                index += 1;
                let entry = Entry::KeepAlive {
                    session: 1,
                    command_sequence_acknowledged: acknowledged,
                    event_index_acknowledged: 0,
                };
                layer.apply(index, 0, &entry.encode());
            }
        }
        // The client's retry loop: resend, in order, everything not yet answered.
        for sequence in 1..=commands {
            if answers.contains_key(&sequence) {
                continue;
            }
            index += 1;
            let applied = layer.apply(index, 0, &command(sequence).encode());
            record(applied, &mut answers, acknowledged);
            prop_assert!(answers.contains_key(&sequence), "an in-order retry is answered");
        }
        prop_assert!(acknowledged <= commands);
        let all: Vec<u64> = (1..=commands).collect();
        prop_assert_eq!(answers.keys().copied().collect::<Vec<_>>(), all.clone());
        let request = conclave_statemachines::QueryRequest {
            session: Some(1),
            index_seen: index,
            machine_name: "log".to_string(),
            machine_type: "recorder".to_string(),
            payload: codec::encode(&(), "query").unwrap(),
        };
        let applied: Vec<u64> = codec::decode(&layer.query(&request).unwrap(), "output").unwrap();
        prop_assert_eq!(applied, all, "the machine saw each command once, in order");
    }
}
