//! A map of string keys to string values with get, put and append.
//!
//! Every key starts as the empty string (a missing key reads as `""`, and a
//! `null` get result means the same). `put v` replaces the value, `append v`
//! concatenates, `get` answers the value. Keys are independent, so the model
//! partitions by key.

use std::sync::Arc;

use serde_json::Value;

use super::{key_of, key_partition, unknown_function};
use crate::check::history::Record;
use crate::check::model::{FromRecord, Model};

/// The key/value model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kv;

/// A key/value operation. Strings are shared (`Arc`) so that states copy
/// cheaply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvInput {
    /// Read a key.
    Get {
        /// The key.
        key: Arc<str>,
    },
    /// Replace a key's value.
    Put {
        /// The key.
        key: Arc<str>,
        /// The new value.
        value: Arc<str>,
    },
    /// Append to a key's value.
    Append {
        /// The key.
        key: Arc<str>,
        /// The suffix.
        value: Arc<str>,
    },
}

impl KvInput {
    fn key(&self) -> &Arc<str> {
        match self {
            KvInput::Get { key } | KvInput::Put { key, .. } | KvInput::Append { key, .. } => key,
        }
    }
}

/// A key/value answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvOutput {
    /// The value read.
    Get(String),
    /// The put or append happened.
    Done,
}

/// The non-empty values, sorted by key: a canonical form, so that equal maps
/// are equal states. A partition holds a single key, so this is usually zero
/// or one entry.
pub type KvState = Vec<(Arc<str>, Arc<str>)>;

fn lookup<'a>(state: &'a KvState, key: &str) -> &'a str {
    state
        .iter()
        .find(|(candidate, _)| &**candidate == key)
        .map_or("", |(_, value)| value)
}

fn with_value(state: &KvState, key: &Arc<str>, value: Arc<str>) -> KvState {
    let mut next: KvState = state.iter().filter(|(k, _)| k != key).cloned().collect();
    if !value.is_empty() {
        let position = next.partition_point(|(k, _)| k < key);
        next.insert(position, (key.clone(), value));
    }
    next
}

impl Model for Kv {
    type State = KvState;
    type Input = KvInput;
    type Output = KvOutput;

    fn name(&self) -> &'static str {
        "kv"
    }

    fn init(&self) -> KvState {
        Vec::new()
    }

    fn step(
        &self,
        state: &KvState,
        input: &KvInput,
        output: Option<&KvOutput>,
        successors: &mut Vec<KvState>,
    ) {
        match (input, output) {
            (KvInput::Get { .. }, None) => successors.push(state.clone()),
            (KvInput::Get { key }, Some(KvOutput::Get(value))) if lookup(state, key) == value => {
                successors.push(state.clone());
            }
            (KvInput::Put { key, value }, None | Some(KvOutput::Done)) => {
                successors.push(with_value(state, key, value.clone()));
            }
            (KvInput::Append { key, value }, None | Some(KvOutput::Done)) => {
                if value.is_empty() {
                    successors.push(state.clone());
                } else {
                    let joined: Arc<str> = format!("{}{}", lookup(state, key), value).into();
                    successors.push(with_value(state, key, joined));
                }
            }
            _ => {}
        }
    }

    fn partition(&self, input: &KvInput) -> u64 {
        key_partition(input.key())
    }

    fn describe_operation(&self, input: &KvInput, output: Option<&KvOutput>) -> String {
        let call = match input {
            KvInput::Get { key } => format!("get {key:?}"),
            KvInput::Put { key, value } => format!("put {key:?} {value:?}"),
            KvInput::Append { key, value } => format!("append {key:?} {value:?}"),
        };
        match output {
            None => format!("{call} => ?"),
            Some(KvOutput::Get(value)) => format!("{call} => {value:?}"),
            Some(KvOutput::Done) => format!("{call} => ok"),
        }
    }

    fn describe_state(&self, state: &KvState) -> String {
        let entries: Vec<String> = state
            .iter()
            .map(|(key, value)| format!("{key:?}: {value:?}"))
            .collect();
        format!("{{{}}}", entries.join(", "))
    }
}

fn text(value: &Value, what: &str) -> Result<Arc<str>, String> {
    match value {
        Value::String(text) => Ok(text.as_str().into()),
        Value::Null => Ok("".into()),
        other => Err(format!("{what} must be a string, not {other}")),
    }
}

impl FromRecord for Kv {
    fn input(&self, record: &Record) -> Result<KvInput, String> {
        let key: Arc<str> = key_of(record).into();
        match record.function.as_str() {
            "get" | "read" => Ok(KvInput::Get { key }),
            "put" | "write" => Ok(KvInput::Put {
                key,
                value: text(&record.argument, "a value")?,
            }),
            "append" => Ok(KvInput::Append {
                key,
                value: text(&record.argument, "a value")?,
            }),
            _ => Err(unknown_function(record)),
        }
    }

    fn output(&self, record: &Record, input: &KvInput) -> Result<KvOutput, String> {
        match input {
            KvInput::Get { .. } => Ok(KvOutput::Get(
                text(&record.result, "a get's result")?.to_string(),
            )),
            KvInput::Put { .. } | KvInput::Append { .. } => Ok(KvOutput::Done),
        }
    }
}
