//! A FIFO queue of integers, with exactly-once or at-least-once delivery.
//!
//! `enqueue v` adds to the tail; `dequeue` takes the head and answers it, or
//! answers `null` when the queue is empty. With at-least-once delivery a
//! `dequeue` may also answer an element that was delivered before (a
//! redelivery), which leaves the queue as it is; first deliveries keep FIFO
//! order.

use serde_json::Value;

use super::{integer, key_of, key_partition, unknown_function};
use crate::check::history::Record;
use crate::check::model::{FromRecord, Model};

/// The queue model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Queue {
    /// Whether an element may be delivered more than once.
    pub at_least_once: bool,
}

/// A queue operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueInput {
    /// Add to the tail of the named queue.
    Enqueue {
        /// The queue's name.
        queue: String,
        /// The element.
        value: i64,
    },
    /// Take from the head of the named queue.
    Dequeue {
        /// The queue's name.
        queue: String,
    },
}

/// A queue answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueOutput {
    /// The element was added.
    Enqueued,
    /// The element taken, or `None` when the queue was empty.
    Dequeued(Option<i64>),
}

/// The elements in order, and (at-least-once only) those delivered already,
/// sorted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct QueueState {
    /// Head first.
    pub elements: Vec<i64>,
    /// Delivered elements, sorted, without duplicates.
    pub delivered: Vec<i64>,
}

impl Queue {
    fn take_head(&self, state: &QueueState) -> Option<(i64, QueueState)> {
        let head = *state.elements.first()?;
        let mut next = QueueState {
            elements: state.elements[1..].to_vec(),
            delivered: Vec::new(),
        };
        if self.at_least_once {
            next.delivered = state.delivered.clone();
            if let Err(position) = next.delivered.binary_search(&head) {
                next.delivered.insert(position, head);
            }
        }
        Some((head, next))
    }
}

impl Model for Queue {
    type State = QueueState;
    type Input = QueueInput;
    type Output = QueueOutput;

    fn name(&self) -> &'static str {
        if self.at_least_once {
            "queue-at-least-once"
        } else {
            "queue"
        }
    }

    fn init(&self) -> QueueState {
        QueueState::default()
    }

    fn step(
        &self,
        state: &QueueState,
        input: &QueueInput,
        output: Option<&QueueOutput>,
        successors: &mut Vec<QueueState>,
    ) {
        match (input, output) {
            (QueueInput::Enqueue { value, .. }, None | Some(QueueOutput::Enqueued)) => {
                let mut next = state.clone();
                next.elements.push(*value);
                successors.push(next);
            }
            (QueueInput::Dequeue { .. }, None) => {
                if let Some((_, next)) = self.take_head(state) {
                    successors.push(next);
                }
            }
            (QueueInput::Dequeue { .. }, Some(QueueOutput::Dequeued(None)))
                if state.elements.is_empty() =>
            {
                successors.push(state.clone());
            }
            (QueueInput::Dequeue { .. }, Some(QueueOutput::Dequeued(Some(value)))) => {
                if let Some((head, next)) = self.take_head(state)
                    && head == *value
                {
                    successors.push(next);
                }
                if self.at_least_once && state.delivered.binary_search(value).is_ok() {
                    successors.push(state.clone());
                }
            }
            _ => {}
        }
    }

    fn partition(&self, input: &QueueInput) -> u64 {
        match input {
            QueueInput::Enqueue { queue, .. } | QueueInput::Dequeue { queue } => {
                key_partition(queue)
            }
        }
    }

    fn is_read_only(&self, _input: &QueueInput, output: &QueueOutput) -> bool {
        // A dequeue that found the queue empty is legal only on an empty
        // queue and leaves it empty.
        *output == QueueOutput::Dequeued(None)
    }

    fn describe_operation(&self, input: &QueueInput, output: Option<&QueueOutput>) -> String {
        let answer = match output {
            None => "?".to_string(),
            Some(QueueOutput::Enqueued) => "ok".to_string(),
            Some(QueueOutput::Dequeued(None)) => "empty".to_string(),
            Some(QueueOutput::Dequeued(Some(value))) => value.to_string(),
        };
        match input {
            QueueInput::Enqueue { value, .. } => format!("enqueue {value} => {answer}"),
            QueueInput::Dequeue { .. } => format!("dequeue => {answer}"),
        }
    }

    fn describe_state(&self, state: &QueueState) -> String {
        if self.at_least_once {
            format!("{:?} delivered {:?}", state.elements, state.delivered)
        } else {
            format!("{:?}", state.elements)
        }
    }
}

impl FromRecord for Queue {
    fn input(&self, record: &Record) -> Result<QueueInput, String> {
        let queue = key_of(record).to_string();
        match record.function.as_str() {
            "enqueue" | "offer" => Ok(QueueInput::Enqueue {
                queue,
                value: integer(&record.argument, "an element")?,
            }),
            "dequeue" | "poll" => Ok(QueueInput::Dequeue { queue }),
            _ => Err(unknown_function(record)),
        }
    }

    fn output(&self, record: &Record, input: &QueueInput) -> Result<QueueOutput, String> {
        match input {
            QueueInput::Enqueue { .. } => Ok(QueueOutput::Enqueued),
            QueueInput::Dequeue { .. } => match &record.result {
                Value::Null => Ok(QueueOutput::Dequeued(None)),
                value => Ok(QueueOutput::Dequeued(Some(integer(
                    value,
                    "a dequeued element",
                )?))),
            },
        }
    }
}
