//! A single integer register with read, write and compare-and-set.
//!
//! The register starts absent (`null`). A `read` returns the value or `null`;
//! `write v` sets it; `cas [from, to]` sets it to `to` iff it holds `from`
//! and answers `true`, otherwise leaves it and answers `false`. A cas
//! completion with a `null` value means success (Jepsen's convention: a
//! failed comparison is recorded as `fail`, which drops the operation; the
//! etcd reader maps it to `false` instead, which checks more).

use serde_json::Value;

use super::{integer, unknown_function};
use crate::check::history::Record;
use crate::check::model::{FromRecord, Model};

/// The register model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Register;

/// A register operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterInput {
    /// Read the value.
    Read,
    /// Set the value.
    Write(i64),
    /// Set `to` iff the value is `from`.
    Cas {
        /// The expected value.
        from: i64,
        /// The new value.
        to: i64,
    },
}

/// A register answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterOutput {
    /// The value read; `None` when absent.
    Read(Option<i64>),
    /// The write happened.
    Write,
    /// Whether the comparison succeeded.
    Cas(bool),
}

impl Model for Register {
    type State = Option<i64>;
    type Input = RegisterInput;
    type Output = RegisterOutput;

    fn name(&self) -> &'static str {
        "register"
    }

    fn init(&self) -> Option<i64> {
        None
    }

    fn step(
        &self,
        state: &Option<i64>,
        input: &RegisterInput,
        output: Option<&RegisterOutput>,
        successors: &mut Vec<Option<i64>>,
    ) {
        match (input, output) {
            (RegisterInput::Read, None) => successors.push(*state),
            (RegisterInput::Read, Some(RegisterOutput::Read(value))) if value == state => {
                successors.push(*state);
            }
            (RegisterInput::Write(value), None | Some(RegisterOutput::Write)) => {
                successors.push(Some(*value));
            }
            (RegisterInput::Cas { from, to }, None) => {
                successors.push(if *state == Some(*from) {
                    Some(*to)
                } else {
                    *state
                });
            }
            (RegisterInput::Cas { from, to }, Some(RegisterOutput::Cas(succeeded))) => {
                match (*state == Some(*from), succeeded) {
                    (true, true) => successors.push(Some(*to)),
                    (false, false) => successors.push(*state),
                    _ => {}
                }
            }
            // An answer of the wrong kind is impossible.
            _ => {}
        }
    }

    fn is_read_only(&self, input: &RegisterInput, _output: &RegisterOutput) -> bool {
        *input == RegisterInput::Read
    }

    fn describe_operation(&self, input: &RegisterInput, output: Option<&RegisterOutput>) -> String {
        let call = match input {
            RegisterInput::Read => "read".to_string(),
            RegisterInput::Write(value) => format!("write {value}"),
            RegisterInput::Cas { from, to } => format!("cas {from}->{to}"),
        };
        let answer = match output {
            None => "?".to_string(),
            Some(RegisterOutput::Read(Some(value))) => value.to_string(),
            Some(RegisterOutput::Read(None)) => "nil".to_string(),
            Some(RegisterOutput::Write) => "ok".to_string(),
            Some(RegisterOutput::Cas(succeeded)) => succeeded.to_string(),
        };
        format!("{call} => {answer}")
    }

    fn describe_state(&self, state: &Option<i64>) -> String {
        state.map_or_else(|| "nil".to_string(), |value| value.to_string())
    }
}

impl FromRecord for Register {
    fn input(&self, record: &Record) -> Result<RegisterInput, String> {
        match record.function.as_str() {
            "read" => Ok(RegisterInput::Read),
            "write" => Ok(RegisterInput::Write(integer(
                &record.argument,
                "a write's value",
            )?)),
            "cas" => match record.argument.as_array().map(Vec::as_slice) {
                Some([from, to]) => Ok(RegisterInput::Cas {
                    from: integer(from, "cas from")?,
                    to: integer(to, "cas to")?,
                }),
                _ => Err(format!(
                    "a cas argument is [from, to], not {}",
                    record.argument
                )),
            },
            _ => Err(unknown_function(record)),
        }
    }

    fn output(&self, record: &Record, input: &RegisterInput) -> Result<RegisterOutput, String> {
        match input {
            RegisterInput::Read => match &record.result {
                Value::Null => Ok(RegisterOutput::Read(None)),
                value => Ok(RegisterOutput::Read(Some(integer(
                    value,
                    "a read's result",
                )?))),
            },
            RegisterInput::Write(_) => Ok(RegisterOutput::Write),
            RegisterInput::Cas { .. } => match &record.result {
                Value::Null => Ok(RegisterOutput::Cas(true)),
                Value::Bool(succeeded) => Ok(RegisterOutput::Cas(*succeeded)),
                other => Err(format!("a cas result is true, false or null, not {other}")),
            },
        }
    }
}
