//! A queue consumer: takes items one at a time, waiting on the machine's notification when
//! the queue is empty; the caller acknowledges each item once it is done with it, and an
//! unacknowledged item is redelivered after its visibility timeout (at-least-once).

use std::time::Duration;

use conclave_statemachines::queue::{Delivery, QueueEvent, QueueMachine, QueueResponse};

use crate::error::{ClientError, Result};
use crate::handle::Machine;
use crate::session::Session;

/// A consumer of queue `name`.
#[derive(Debug, Clone)]
pub struct QueueConsumer {
    machine: Machine<QueueMachine>,
    name: String,
    visibility_timeout_ms: u64,
}

impl QueueConsumer {
    /// Consumes queue `name` of queue machine `machine_name`; an item taken and not
    /// acknowledged within `visibility_timeout` goes back to the queue.
    pub fn new(
        session: &Session,
        machine_name: &str,
        name: &str,
        visibility_timeout: Duration,
    ) -> Self {
        QueueConsumer {
            machine: session.queues(machine_name),
            name: name.to_string(),
            visibility_timeout_ms: u64::try_from(visibility_timeout.as_millis())
                .unwrap_or(u64::MAX),
        }
    }

    /// The next item, waiting (on an event, not by polling) while the queue is empty.
    pub async fn next(&self) -> Result<Delivery> {
        let mut events = self.machine.events();
        loop {
            match self
                .machine
                .poll(&self.name, self.visibility_timeout_ms, true)
                .await?
            {
                QueueResponse::Delivered(delivery) => return Ok(delivery),
                QueueResponse::Waiting | QueueResponse::Empty => {}
                other => return Err(ClientError::Unexpected(format!("poll: {other:?}"))),
            }
            loop {
                match events.next().await {
                    Some(Ok((_, QueueEvent::ItemAvailable { name }))) if name == self.name => {
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Err(error),
                    None => return Err(ClientError::SessionExpired { session: 0 }),
                }
            }
        }
    }

    /// Acknowledges an item: it is removed for good.
    pub async fn ack(&self, delivery: &Delivery) -> Result<()> {
        self.machine
            .ack(&self.name, delivery.id, delivery.delivery)
            .await
    }
}
