//! A named mutex whose grants carry fencing tokens.
//!
//! `acquire` by process p succeeds only when the lock is free, and its
//! fencing token (the completion's value, optional) must be greater than
//! every token granted before. `release` by p succeeds only when p holds the
//! lock. A failed acquire is recorded as `fail` and did not happen.

use serde_json::Value;

use super::{key_of, key_partition, natural, unknown_function};
use crate::check::history::Record;
use crate::check::model::{FromRecord, Model};

/// The mutex model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mutex;

/// A mutex operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MutexInput {
    /// Take the lock.
    Acquire {
        /// The lock's name.
        lock: String,
        /// Who takes it.
        process: u64,
    },
    /// Give the lock back.
    Release {
        /// The lock's name.
        lock: String,
        /// Who gives it back.
        process: u64,
    },
}

/// A mutex answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MutexOutput {
    /// The lock was granted, with this fencing token when the system has them.
    Acquired(Option<u64>),
    /// The lock was released.
    Released,
}

/// The holder and the greatest fencing token granted so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MutexState {
    /// The process holding the lock.
    pub holder: Option<u64>,
    /// The greatest known token granted so far (0 before any).
    pub token_last: u64,
}

impl Model for Mutex {
    type State = MutexState;
    type Input = MutexInput;
    type Output = MutexOutput;

    fn name(&self) -> &'static str {
        "mutex"
    }

    fn init(&self) -> MutexState {
        MutexState::default()
    }

    fn step(
        &self,
        state: &MutexState,
        input: &MutexInput,
        output: Option<&MutexOutput>,
        successors: &mut Vec<MutexState>,
    ) {
        match (input, output) {
            // An unknown token is only known to exceed the last one; keeping the
            // old bound accepts every later token that could be right.
            (MutexInput::Acquire { process, .. }, None | Some(MutexOutput::Acquired(None)))
                if state.holder.is_none() =>
            {
                successors.push(MutexState {
                    holder: Some(*process),
                    ..*state
                });
            }
            (MutexInput::Acquire { process, .. }, Some(MutexOutput::Acquired(Some(token))))
                if state.holder.is_none() && *token > state.token_last =>
            {
                successors.push(MutexState {
                    holder: Some(*process),
                    token_last: *token,
                });
            }
            (MutexInput::Release { process, .. }, None | Some(MutexOutput::Released))
                if state.holder == Some(*process) =>
            {
                successors.push(MutexState {
                    holder: None,
                    ..*state
                });
            }
            _ => {}
        }
    }

    fn partition(&self, input: &MutexInput) -> u64 {
        match input {
            MutexInput::Acquire { lock, .. } | MutexInput::Release { lock, .. } => {
                key_partition(lock)
            }
        }
    }

    fn describe_operation(&self, input: &MutexInput, output: Option<&MutexOutput>) -> String {
        let answer = match output {
            None => "?".to_string(),
            Some(MutexOutput::Acquired(Some(token))) => format!("token {token}"),
            Some(MutexOutput::Acquired(None) | MutexOutput::Released) => "ok".to_string(),
        };
        match input {
            MutexInput::Acquire { lock, process } => {
                format!("p{process} acquire {lock:?} => {answer}")
            }
            MutexInput::Release { lock, process } => {
                format!("p{process} release {lock:?} => {answer}")
            }
        }
    }

    fn describe_state(&self, state: &MutexState) -> String {
        match state.holder {
            Some(holder) => format!("held by p{holder}, last token {}", state.token_last),
            None => format!("free, last token {}", state.token_last),
        }
    }
}

impl FromRecord for Mutex {
    fn input(&self, record: &Record) -> Result<MutexInput, String> {
        let lock = key_of(record).to_string();
        let process = record.process;
        match record.function.as_str() {
            "acquire" | "lock" => Ok(MutexInput::Acquire { lock, process }),
            "release" | "unlock" => Ok(MutexInput::Release { lock, process }),
            _ => Err(unknown_function(record)),
        }
    }

    fn output(&self, record: &Record, input: &MutexInput) -> Result<MutexOutput, String> {
        match input {
            MutexInput::Acquire { .. } => match &record.result {
                Value::Null => Ok(MutexOutput::Acquired(None)),
                token => Ok(MutexOutput::Acquired(Some(natural(
                    token,
                    "a fencing token",
                )?))),
            },
            MutexInput::Release { .. } => Ok(MutexOutput::Released),
        }
    }
}
