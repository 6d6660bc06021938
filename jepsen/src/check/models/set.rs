//! A grow-only set of integers: `add v`, and `read` answering all elements.

use super::{integer, key_of, key_partition, unknown_function};
use crate::check::history::Record;
use crate::check::model::{FromRecord, Model};

/// The set model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Set;

/// A set operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetInput {
    /// Add an element to the named set.
    Add {
        /// The set's name.
        set: String,
        /// The element.
        value: i64,
    },
    /// Read the named set.
    Read {
        /// The set's name.
        set: String,
    },
}

/// A set answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetOutput {
    /// The element was added.
    Added,
    /// The elements read, sorted, without duplicates.
    Read(Vec<i64>),
}

impl Model for Set {
    type State = Vec<i64>;
    type Input = SetInput;
    type Output = SetOutput;

    fn name(&self) -> &'static str {
        "set"
    }

    fn init(&self) -> Vec<i64> {
        Vec::new()
    }

    fn step(
        &self,
        state: &Vec<i64>,
        input: &SetInput,
        output: Option<&SetOutput>,
        successors: &mut Vec<Vec<i64>>,
    ) {
        match (input, output) {
            (SetInput::Add { value, .. }, None | Some(SetOutput::Added)) => {
                let mut next = state.clone();
                if let Err(position) = next.binary_search(value) {
                    next.insert(position, *value);
                }
                successors.push(next);
            }
            (SetInput::Read { .. }, None) => successors.push(state.clone()),
            (SetInput::Read { .. }, Some(SetOutput::Read(values))) if values == state => {
                successors.push(state.clone());
            }
            _ => {}
        }
    }

    fn partition(&self, input: &SetInput) -> u64 {
        match input {
            SetInput::Add { set, .. } | SetInput::Read { set } => key_partition(set),
        }
    }

    fn is_read_only(&self, input: &SetInput, _output: &SetOutput) -> bool {
        matches!(input, SetInput::Read { .. })
    }

    fn describe_operation(&self, input: &SetInput, output: Option<&SetOutput>) -> String {
        let answer = match output {
            None => "?".to_string(),
            Some(SetOutput::Added) => "ok".to_string(),
            Some(SetOutput::Read(values)) => format!("{values:?}"),
        };
        match input {
            SetInput::Add { value, .. } => format!("add {value} => {answer}"),
            SetInput::Read { .. } => format!("read => {answer}"),
        }
    }
}

impl FromRecord for Set {
    fn input(&self, record: &Record) -> Result<SetInput, String> {
        let set = key_of(record).to_string();
        match record.function.as_str() {
            "add" => Ok(SetInput::Add {
                set,
                value: integer(&record.argument, "an element")?,
            }),
            "read" => Ok(SetInput::Read { set }),
            _ => Err(unknown_function(record)),
        }
    }

    fn output(&self, record: &Record, input: &SetInput) -> Result<SetOutput, String> {
        match input {
            SetInput::Add { .. } => Ok(SetOutput::Added),
            SetInput::Read { .. } => {
                let values = record
                    .result
                    .as_array()
                    .ok_or_else(|| format!("a read's result is an array, not {}", record.result))?;
                let mut values: Vec<i64> = values
                    .iter()
                    .map(|value| integer(value, "an element"))
                    .collect::<Result<_, _>>()?;
                values.sort_unstable();
                values.dedup();
                Ok(SetOutput::Read(values))
            }
        }
    }
}
