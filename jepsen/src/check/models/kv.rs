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
/// are equal states.
///
/// The search copies a state at every step, hashes it for its cache and
/// keeps every state it meets until the end, so a state must copy and drop
/// cheaply. A partition holds a single key, so the state is usually empty or
/// one entry, which needs no allocation of its own; larger maps are shared
/// and hashed once.
#[derive(Clone)]
pub enum KvState {
    /// Every key is empty.
    Empty,
    /// Exactly one key is not empty.
    One(Arc<str>, KvValue),
    /// Two or more keys are not empty, with the hash of the entries.
    Many(Arc<(KvEntries, u64)>),
}

/// The entries of a state: key and value, sorted by key.
pub type KvEntries = Vec<(Arc<str>, KvValue)>;

fn entry_hash(hash: u64, key: &str, value: &KvValue) -> u64 {
    (hash.wrapping_mul(HASH_BASE) ^ polynomial_hash(0, key)).wrapping_add(value.0.hash)
}

impl KvState {
    fn new(mut entries: KvEntries) -> Self {
        match entries.len() {
            0 => KvState::Empty,
            1 => {
                let Some((key, value)) = entries.pop() else {
                    return KvState::Empty;
                };
                KvState::One(key, value)
            }
            _ => {
                let hash = entries
                    .iter()
                    .fold(0u64, |hash, (key, value)| entry_hash(hash, key, value));
                KvState::Many(Arc::new((entries, hash)))
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &KvValue)> {
        let single = match self {
            KvState::One(key, value) => Some((key, value)),
            KvState::Empty | KvState::Many(_) => None,
        };
        let many: &[(Arc<str>, KvValue)] = match self {
            KvState::Many(shared) => &shared.0,
            KvState::Empty | KvState::One(..) => &[],
        };
        single
            .into_iter()
            .chain(many.iter().map(|(key, value)| (key, value)))
    }
}

impl PartialEq for KvState {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (KvState::Empty, KvState::Empty) => true,
            (KvState::One(key, value), KvState::One(other_key, other_value)) => {
                value == other_value && key == other_key
            }
            (KvState::Many(shared), KvState::Many(other)) => {
                Arc::ptr_eq(shared, other) || (shared.1 == other.1 && shared.0 == other.0)
            }
            _ => false,
        }
    }
}

impl Eq for KvState {}

impl std::hash::Hash for KvState {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(match self {
            KvState::Empty => 0,
            KvState::One(key, value) => entry_hash(0, key, value),
            KvState::Many(shared) => shared.1,
        });
    }
}

impl std::fmt::Debug for KvState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_map().entries(self.iter()).finish()
    }
}

/// The base of the values' polynomial hash.
const HASH_BASE: u64 = 0x100_0000_01b3;

fn polynomial_hash(start: u64, text: &str) -> u64 {
    text.bytes().fold(start, |hash, byte| {
        hash.wrapping_mul(HASH_BASE).wrapping_add(u64::from(byte))
    })
}

/// A value in a state: a chain of shared pieces (the put or first append,
/// then each append), with its length and hash.
///
/// Appends make values long, and the search builds, hashes and compares
/// states all the time. An append here allocates one small node that shares
/// the suffix with the operation, instead of copying the whole text; the
/// polynomial hash extends in time proportional to the suffix, so hashing a
/// state costs a word per key.
#[derive(Clone)]
pub struct KvValue(Arc<Piece>);

struct Piece {
    previous: Option<KvValue>,
    text: Arc<str>,
    length: usize,
    hash: u64,
}

impl Drop for Piece {
    fn drop(&mut self) {
        // Unlink the chain iteratively: a value built by many thousands of
        // appends would overflow the stack if dropped recursively.
        let mut next = self.previous.take();
        while let Some(value) = next {
            match Arc::try_unwrap(value.0) {
                Ok(mut piece) => next = piece.previous.take(),
                Err(_) => break,
            }
        }
    }
}

impl KvValue {
    fn new(text: &Arc<str>) -> Self {
        Self(Arc::new(Piece {
            previous: None,
            text: text.clone(),
            length: text.len(),
            hash: polynomial_hash(0, text),
        }))
    }

    fn appended(&self, suffix: &Arc<str>) -> Self {
        Self(Arc::new(Piece {
            previous: Some(self.clone()),
            text: suffix.clone(),
            length: self.0.length + suffix.len(),
            hash: polynomial_hash(self.0.hash, suffix),
        }))
    }

    fn is_empty(&self) -> bool {
        self.0.length == 0
    }

    /// Whether the value is the beginning of `text`, compared piece by piece
    /// from the end of the value: the last append is where orders differ, so
    /// a mismatch is usually found at the first piece.
    fn is_prefix_of(&self, text: &str) -> bool {
        if self.0.length > text.len() {
            return false;
        }
        let bytes = text.as_bytes();
        let mut end = self.0.length;
        let mut piece = Some(self);
        while let Some(value) = piece {
            let start = end - value.0.text.len();
            if &bytes[start..end] != value.0.text.as_bytes() {
                return false;
            }
            end = start;
            piece = value.0.previous.as_ref();
        }
        end == 0
    }

    /// Whether the value is exactly `text`, compared piece by piece from the
    /// end, without building the value.
    fn equals(&self, text: &str) -> bool {
        if self.0.length != text.len() {
            return false;
        }
        let bytes = text.as_bytes();
        let mut end = bytes.len();
        let mut piece = Some(self);
        while let Some(value) = piece {
            let start = end - value.0.text.len();
            if &bytes[start..end] != value.0.text.as_bytes() {
                return false;
            }
            end = start;
            piece = value.0.previous.as_ref();
        }
        end == 0
    }

    /// The whole text.
    pub fn text(&self) -> String {
        let mut pieces = Vec::new();
        let mut piece = Some(self);
        while let Some(value) = piece {
            pieces.push(&*value.0.text);
            piece = value.0.previous.as_ref();
        }
        let mut text = String::with_capacity(self.0.length);
        for piece in pieces.iter().rev() {
            text.push_str(piece);
        }
        text
    }
}

impl PartialEq for KvValue {
    fn eq(&self, other: &Self) -> bool {
        self.0.hash == other.0.hash
            && self.0.length == other.0.length
            && (Arc::ptr_eq(&self.0, &other.0) || self.equals(&other.text()))
    }
}

impl Eq for KvValue {}

impl std::hash::Hash for KvValue {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.hash);
    }
}

impl std::fmt::Debug for KvValue {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{:?}", self.text())
    }
}

fn lookup<'a>(state: &'a KvState, key: &str) -> Option<&'a KvValue> {
    state
        .iter()
        .find(|(candidate, _)| &***candidate == key)
        .map(|(_, value)| value)
}

fn with_value(state: &KvState, key: &Arc<str>, value: KvValue) -> KvState {
    let mut next: KvEntries = state
        .iter()
        .filter(|(k, _)| *k != key)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !value.is_empty() {
        let position = next.partition_point(|(k, _)| k < key);
        next.insert(position, (key.clone(), value));
    }
    KvState::new(next)
}

impl Model for Kv {
    type State = KvState;
    type Input = KvInput;
    type Output = KvOutput;

    fn name(&self) -> &'static str {
        "kv"
    }

    fn init(&self) -> KvState {
        KvState::new(Vec::new())
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
            (KvInput::Get { key }, Some(KvOutput::Get(value)))
                if lookup(state, key).map_or(value.is_empty(), |current| current.equals(value)) =>
            {
                successors.push(state.clone());
            }
            (KvInput::Put { key, value }, None | Some(KvOutput::Done)) => {
                successors.push(with_value(state, key, KvValue::new(value)));
            }
            (KvInput::Append { key, value }, None | Some(KvOutput::Done)) => {
                if value.is_empty() {
                    successors.push(state.clone());
                } else {
                    let joined = match lookup(state, key) {
                        Some(current) => current.appended(value),
                        None => KvValue::new(value),
                    };
                    successors.push(with_value(state, key, joined));
                }
            }
            _ => {}
        }
    }

    fn partition(&self, input: &KvInput) -> u64 {
        key_partition(input.key())
    }

    fn is_read_only(&self, input: &KvInput, _output: &KvOutput) -> bool {
        matches!(input, KvInput::Get { .. })
    }

    fn only_extends(&self, input: &KvInput) -> bool {
        // A get changes nothing and an append extends; a put may shorten.
        !matches!(input, KvInput::Put { .. })
    }

    fn may_extend_to(&self, state: &KvState, input: &KvInput, output: &KvOutput) -> bool {
        match (input, output) {
            (KvInput::Get { key }, KvOutput::Get(value)) => {
                lookup(state, key).is_none_or(|current| current.is_prefix_of(value))
            }
            _ => true,
        }
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
