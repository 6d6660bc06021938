//! An atomic value: an optional byte string with get, set and compare-and-set.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::Error;
use crate::machine::{ApplyContext, QueryContext, SessionId, StateMachine};

/// Commands of the atomic value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValueCommand {
    /// Sets the value (or clears it with `None`) and returns the previous one.
    GetAndSet {
        /// The new value.
        value: Option<Vec<u8>>,
    },
    /// Sets the value if the current one equals `expected` (`None` means "no value").
    CompareAndSet {
        /// The value that must be there.
        expected: Option<Vec<u8>>,
        /// The value to set.
        update: Option<Vec<u8>>,
    },
    /// Subscribes the calling session to changes: each change publishes the new value to it.
    Listen,
    /// Removes the calling session's subscription.
    Unlisten,
}

/// Queries of the atomic value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValueQuery {
    /// Returns the current value.
    Get,
}

/// Outputs of the atomic value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValueOutput {
    /// A value (current or previous, as the command says).
    Value(Option<Vec<u8>>),
    /// Whether a compare-and-set took effect.
    CompareAndSet {
        /// Whether the value was set.
        succeeded: bool,
    },
    /// The subscription changed.
    Listening(bool),
    /// The command needs a session (listening is per session).
    NoSession,
}

/// The event a listener receives when the value changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueChanged {
    /// The value after the change.
    pub value: Option<Vec<u8>>,
}

/// A replicated optional byte string with change notifications.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueMachine {
    value: Option<Vec<u8>>,
    listeners: std::collections::BTreeSet<SessionId>,
}

impl ValueMachine {
    fn set(
        &mut self,
        context: &mut ApplyContext<'_, ValueChanged>,
        value: Option<Vec<u8>>,
    ) -> Option<Vec<u8>> {
        let previous = std::mem::replace(&mut self.value, value);
        if previous != self.value {
            for &listener in &self.listeners {
                context.publish(
                    listener,
                    ValueChanged {
                        value: self.value.clone(),
                    },
                );
            }
        }
        previous
    }
}

impl StateMachine for ValueMachine {
    const TYPE_NAME: &'static str = "value";
    type Command = ValueCommand;
    type Query = ValueQuery;
    type Output = ValueOutput;
    type Event = ValueChanged;

    fn apply(
        &mut self,
        context: &mut ApplyContext<'_, ValueChanged>,
        command: ValueCommand,
    ) -> ValueOutput {
        match command {
            ValueCommand::GetAndSet { value } => ValueOutput::Value(self.set(context, value)),
            ValueCommand::CompareAndSet { expected, update } => {
                let succeeded = self.value == expected;
                if succeeded {
                    self.set(context, update);
                }
                ValueOutput::CompareAndSet { succeeded }
            }
            ValueCommand::Listen | ValueCommand::Unlisten => {
                let Some(session) = context.session() else {
                    return ValueOutput::NoSession;
                };
                if command == ValueCommand::Listen {
                    self.listeners.insert(session);
                    ValueOutput::Listening(true)
                } else {
                    self.listeners.remove(&session);
                    ValueOutput::Listening(false)
                }
            }
        }
    }

    fn query(&self, _context: &QueryContext, query: ValueQuery) -> ValueOutput {
        match query {
            ValueQuery::Get => ValueOutput::Value(self.value.clone()),
        }
    }

    fn session_closed(
        &mut self,
        _context: &mut ApplyContext<'_, ValueChanged>,
        session: SessionId,
    ) {
        // A closed or expired session can no longer receive events.
        self.listeners.remove(&session);
    }

    fn snapshot(&self, writer: &mut dyn Write) -> Result<(), Error> {
        codec::write_frame(writer, self, "value")
    }

    fn restore(&mut self, reader: &mut dyn Read) -> Result<(), Error> {
        *self = codec::read_frame(reader, "value")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn compare_and_set_and_listeners() {
        let sessions: BTreeMap<u64, ()> = [(1, ()), (2, ())].into_iter().collect();
        let mut machine = ValueMachine::default();
        let mut context = ApplyContext::new(3, 0, Some(1), &sessions);
        assert_eq!(
            machine.apply(&mut context, ValueCommand::Listen),
            ValueOutput::Listening(true)
        );
        let failed = ValueCommand::CompareAndSet {
            expected: Some(b"x".to_vec()),
            update: None,
        };
        assert_eq!(
            machine.apply(&mut context, failed),
            ValueOutput::CompareAndSet { succeeded: false }
        );
        let set = ValueCommand::CompareAndSet {
            expected: None,
            update: Some(b"y".to_vec()),
        };
        assert_eq!(
            machine.apply(&mut context, set),
            ValueOutput::CompareAndSet { succeeded: true }
        );
        let events = context.take_events();
        assert_eq!(
            events,
            vec![(
                1,
                ValueChanged {
                    value: Some(b"y".to_vec())
                }
            )]
        );

        let mut context = ApplyContext::new(4, 0, Some(2), &sessions);
        machine.session_closed(&mut context, 1);
        let unchanged = ValueCommand::GetAndSet {
            value: Some(b"z".to_vec()),
        };
        assert_eq!(
            machine.apply(&mut context, unchanged),
            ValueOutput::Value(Some(b"y".to_vec()))
        );
        assert!(
            context.take_events().is_empty(),
            "the closed listener gets nothing"
        );
    }
}
