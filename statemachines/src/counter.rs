//! An atomic counter: the smallest complete machine, and the example to copy.
//!
//! A machine is a plain struct with typed commands, queries, outputs and events; it takes
//! time and the calling session from its context and writes a deterministic snapshot.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::Error;
use crate::machine::{ApplyContext, QueryContext, StateMachine};

/// Commands of the counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CounterCommand {
    /// Adds `delta` and returns the new value.
    AddAndGet {
        /// What to add (may be negative).
        delta: i64,
    },
    /// Adds `delta` and returns the previous value.
    GetAndAdd {
        /// What to add (may be negative).
        delta: i64,
    },
    /// Sets the value if it equals `expected`.
    CompareAndSet {
        /// The value the counter must hold.
        expected: i64,
        /// The value to set.
        update: i64,
    },
    /// Sets the value unconditionally and returns the previous one.
    GetAndSet {
        /// The value to set.
        value: i64,
    },
}

/// Queries of the counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CounterQuery {
    /// Returns the current value.
    Get,
}

/// Outputs of the counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CounterOutput {
    /// A value (new or previous, as the command says).
    Value(i64),
    /// Whether a compare-and-set took effect, and the value after it.
    CompareAndSet {
        /// Whether the value was set.
        succeeded: bool,
        /// The value after the command.
        value: i64,
    },
    /// The addition would overflow an `i64`; nothing changed.
    Overflow,
}

/// A replicated 64-bit counter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterMachine {
    value: i64,
}

impl StateMachine for CounterMachine {
    const TYPE_NAME: &'static str = "counter";
    type Command = CounterCommand;
    type Query = CounterQuery;
    type Output = CounterOutput;
    /// The counter publishes no events.
    type Event = ();

    fn apply(
        &mut self,
        _context: &mut ApplyContext<'_, ()>,
        command: CounterCommand,
    ) -> CounterOutput {
        match command {
            CounterCommand::AddAndGet { delta } | CounterCommand::GetAndAdd { delta } => {
                let Some(updated) = self.value.checked_add(delta) else {
                    return CounterOutput::Overflow;
                };
                let previous = std::mem::replace(&mut self.value, updated);
                match command {
                    CounterCommand::GetAndAdd { .. } => CounterOutput::Value(previous),
                    _ => CounterOutput::Value(updated),
                }
            }
            CounterCommand::CompareAndSet { expected, update } => {
                let succeeded = self.value == expected;
                if succeeded {
                    self.value = update;
                }
                CounterOutput::CompareAndSet {
                    succeeded,
                    value: self.value,
                }
            }
            CounterCommand::GetAndSet { value } => {
                CounterOutput::Value(std::mem::replace(&mut self.value, value))
            }
        }
    }

    fn query(&self, _context: &QueryContext, query: CounterQuery) -> CounterOutput {
        match query {
            CounterQuery::Get => CounterOutput::Value(self.value),
        }
    }

    fn snapshot(&self, writer: &mut dyn Write) -> Result<(), Error> {
        codec::write_frame(writer, self, "counter")
    }

    fn restore(&mut self, reader: &mut dyn Read) -> Result<(), Error> {
        *self = codec::read_frame(reader, "counter")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn apply(machine: &mut CounterMachine, command: CounterCommand) -> CounterOutput {
        let sessions: BTreeMap<u64, ()> = BTreeMap::new();
        let mut context = ApplyContext::new(1, 0, Some(1), &sessions);
        machine.apply(&mut context, command)
    }

    #[test]
    fn add_and_get_returns_the_new_value_and_get_and_add_the_old() {
        let mut counter = CounterMachine::default();
        assert_eq!(
            apply(&mut counter, CounterCommand::AddAndGet { delta: 5 }),
            CounterOutput::Value(5)
        );
        assert_eq!(
            apply(&mut counter, CounterCommand::GetAndAdd { delta: -2 }),
            CounterOutput::Value(5)
        );
        assert_eq!(
            apply(&mut counter, CounterCommand::GetAndSet { value: 10 }),
            CounterOutput::Value(3)
        );
    }

    #[test]
    fn compare_and_set_sets_only_on_match() {
        let mut counter = CounterMachine::default();
        let failed = apply(
            &mut counter,
            CounterCommand::CompareAndSet {
                expected: 1,
                update: 9,
            },
        );
        assert_eq!(
            failed,
            CounterOutput::CompareAndSet {
                succeeded: false,
                value: 0
            }
        );
        let set = apply(
            &mut counter,
            CounterCommand::CompareAndSet {
                expected: 0,
                update: 9,
            },
        );
        assert_eq!(
            set,
            CounterOutput::CompareAndSet {
                succeeded: true,
                value: 9
            }
        );
    }

    #[test]
    fn overflow_changes_nothing() {
        let mut counter = CounterMachine {
            value: i64::MAX - 1,
        };
        assert_eq!(
            apply(&mut counter, CounterCommand::AddAndGet { delta: 2 }),
            CounterOutput::Overflow
        );
        assert_eq!(counter.value, i64::MAX - 1);
    }
}
