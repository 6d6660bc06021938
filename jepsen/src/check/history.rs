//! Histories: events as recorded, operations as checked.
//!
//! A recorder writes *events* (an invocation, then later a completion, per
//! process). [`pair_events`] turns them into [`Record`]s, one per operation,
//! with untyped arguments and results. A model then turns each record into a
//! typed [`Operation`] (see [`FromRecord`](super::FromRecord)).

use std::collections::HashMap;

use serde_json::Value;

use super::error::CheckError;

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It happened, and its result is known.
    Ok,
    /// It definitely did not happen; the checker drops it.
    Fail,
    /// Unknown: it may or may not have happened, at any time after its
    /// invocation. Operations still pending at the end of a history are `Info`.
    Info,
}

/// The kind of one event of a recorded history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The process called the operation.
    Invoke,
    /// The operation completed with this outcome.
    Complete(Outcome),
}

/// One line of a recorded history, in any of the supported formats.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The process (client) that issued the operation; one operation in
    /// flight per process.
    pub process: u64,
    /// Invocation or completion.
    pub kind: EventKind,
    /// The operation's function, for example `read` or `append`.
    pub function: String,
    /// The object the operation acts on, if the model has several.
    pub key: Option<String>,
    /// Arguments on an invocation, the result on a completion.
    pub value: Value,
    /// A timestamp (any unit, only the order matters); when absent the
    /// position of the event in the history is its time.
    pub time: Option<u64>,
}

/// One operation of a history, untyped: what [`pair_events`] produces.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The process that issued it.
    pub process: u64,
    /// The function, for example `cas`.
    pub function: String,
    /// The object it acts on, if any.
    pub key: Option<String>,
    /// The arguments, from the invocation event.
    pub argument: Value,
    /// The result, from the completion event (`Null` when there is none).
    pub result: Value,
    /// How it ended.
    pub outcome: Outcome,
    /// When it was invoked.
    pub call: u64,
    /// When it completed; `None` when the outcome is unknown, because such an
    /// operation may take effect at any later time.
    pub completion: Option<u64>,
}

/// One operation, typed for a model, as the search sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation<I, O> {
    /// The process that issued it.
    pub process: u64,
    /// What was asked.
    pub input: I,
    /// What was answered; `None` when unknown (the operation may also not have
    /// happened at all).
    pub output: Option<O>,
    /// When it was invoked.
    pub call: u64,
    /// When it completed; `u64::MAX` when unknown.
    pub completion: u64,
}

impl<I, O> Operation<I, O> {
    /// An operation that completed with a known output.
    pub fn completed(process: u64, call: u64, completion: u64, input: I, output: O) -> Self {
        assert!(call <= completion, "an operation completes after its call");
        Self {
            process,
            input,
            output: Some(output),
            call,
            completion,
        }
    }

    /// An operation whose outcome is unknown: it may have happened at any time
    /// after `call`, or not at all.
    pub fn unknown(process: u64, call: u64, input: I) -> Self {
        Self {
            process,
            input,
            output: None,
            call,
            completion: u64::MAX,
        }
    }
}

/// Pairs invocations with completions, process by process.
///
/// Events are taken in time order (stable, so events without times keep their
/// order). Either every event has a time or none has. An invocation still
/// pending at the end becomes an `Info` record.
pub fn pair_events(mut events: Vec<Event>) -> Result<Vec<Record>, CheckError> {
    let timed = events.iter().filter(|event| event.time.is_some()).count();
    if timed != 0 && timed != events.len() {
        return Err(CheckError::Malformed {
            event: events
                .iter()
                .position(|event| event.time.is_none())
                .unwrap_or(0),
            reason: "either every event has a time or none has".to_string(),
        });
    }
    if timed != 0 {
        events.sort_by_key(|event| event.time);
    }
    let mut records: Vec<Record> = Vec::with_capacity(events.len() / 2 + 1);
    let mut pending: HashMap<u64, usize> = HashMap::new();
    for (index, event) in events.into_iter().enumerate() {
        let time = event.time.unwrap_or(index as u64);
        match event.kind {
            EventKind::Invoke => {
                if pending.contains_key(&event.process) {
                    return Err(CheckError::Malformed {
                        event: index,
                        reason: format!(
                            "process {} invokes while its previous operation is in flight",
                            event.process
                        ),
                    });
                }
                pending.insert(event.process, records.len());
                records.push(Record {
                    process: event.process,
                    function: event.function,
                    key: event.key,
                    argument: event.value,
                    result: Value::Null,
                    outcome: Outcome::Info,
                    call: time,
                    completion: None,
                });
            }
            EventKind::Complete(outcome) => {
                let Some(position) = pending.remove(&event.process) else {
                    return Err(CheckError::Malformed {
                        event: index,
                        reason: format!(
                            "process {} completes without an invocation",
                            event.process
                        ),
                    });
                };
                let record = &mut records[position];
                if record.function != event.function {
                    return Err(CheckError::Malformed {
                        event: index,
                        reason: format!(
                            "process {} invoked {} but completed {}",
                            event.process, record.function, event.function
                        ),
                    });
                }
                record.outcome = outcome;
                record.result = event.value;
                record.completion = match outcome {
                    Outcome::Info => None,
                    Outcome::Ok | Outcome::Fail => Some(time),
                };
            }
        }
    }
    Ok(records)
}
