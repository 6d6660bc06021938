//! The queue machine: named FIFO queues with at-least-once delivery.
//!
//! `Offer` appends an item (refused with `QueueFull` at `items_per_queue_max`). `Poll`
//! hands the oldest ready item to the caller for a visibility timeout of log time; the
//! caller `Ack`s it (gone for good) or `Nack`s it (ready again at once). An item whose
//! timeout passes, or whose consumer's session closes or expires, becomes ready again in its
//! original order, with its delivery count raised on the next poll. A receipt is the pair
//! (item id, delivery number), so a late ack of an earlier delivery cannot remove an item
//! that has been handed to someone else since. A `Poll` with `wait: true` on an empty queue
//! registers the session as a waiting consumer; when items become ready every waiting
//! consumer gets one [`QueueEvent::ItemAvailable`] and polls again (the first poll wins).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::Error;
use crate::machine::{ApplyContext, QueryContext, SessionId, StateMachine};

/// Bounds of the queue machine; checked by [`QueueConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// Most queues with items or waiters; more is `TooManyQueues`.
    pub queues_max: usize,
    /// Most items (ready and in flight) in one queue; more is `QueueFull`.
    pub items_per_queue_max: usize,
    /// Largest item, in bytes.
    pub item_bytes_max: usize,
    /// Longest visibility timeout a poll may ask for, in milliseconds of log time.
    pub visibility_timeout_ms_max: u64,
    /// Most waiting consumers per queue; more is `TooManyWaiters`.
    pub waiters_per_queue_max: usize,
    /// Longest queue name, in bytes.
    pub name_bytes_max: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            queues_max: 100_000,
            items_per_queue_max: 1_000_000,
            item_bytes_max: 1024 * 1024,
            visibility_timeout_ms_max: 12 * 60 * 60 * 1_000,
            waiters_per_queue_max: 10_000,
            name_bytes_max: 1_024,
        }
    }
}

impl QueueConfig {
    /// Refuses zero bounds.
    pub fn validate(&self) -> Result<(), Error> {
        let fields = [
            ("queues_max", self.queues_max as u64),
            ("items_per_queue_max", self.items_per_queue_max as u64),
            ("item_bytes_max", self.item_bytes_max as u64),
            ("visibility_timeout_ms_max", self.visibility_timeout_ms_max),
            ("waiters_per_queue_max", self.waiters_per_queue_max as u64),
            ("name_bytes_max", self.name_bytes_max as u64),
        ];
        for (field, value) in fields {
            if value == 0 {
                return Err(Error::Config {
                    field,
                    reason: "must be at least 1".to_string(),
                });
            }
        }
        Ok(())
    }
}

/// Commands of the queue machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueCommand {
    /// Append an item.
    Offer {
        /// The queue.
        name: String,
        /// The item.
        data: Vec<u8>,
    },
    /// Take the oldest ready item for `visibility_timeout_ms`.
    Poll {
        /// The queue.
        name: String,
        /// How long the item stays invisible to others, in milliseconds of log time.
        visibility_timeout_ms: u64,
        /// Whether to wait (be notified) when the queue is empty.
        wait: bool,
    },
    /// Remove a delivered item for good.
    Ack {
        /// The queue.
        name: String,
        /// The item.
        id: u64,
        /// The delivery number the poll returned.
        delivery: u32,
    },
    /// Return a delivered item to the queue at once.
    Nack {
        /// The queue.
        name: String,
        /// The item.
        id: u64,
        /// The delivery number the poll returned.
        delivery: u32,
    },
    /// Stop waiting for items.
    StopWaiting {
        /// The queue.
        name: String,
    },
}

/// Queries of the queue machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueQuery {
    /// The oldest ready item, without taking it.
    Peek {
        /// The queue.
        name: String,
    },
    /// Ready and in-flight counts.
    Size {
        /// The queue.
        name: String,
    },
}

/// An item handed to a consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The item's id (unique in the machine, increasing in offer order).
    pub id: u64,
    /// 1 for the first delivery, then one more per redelivery.
    pub delivery: u32,
    /// The item.
    pub data: Vec<u8>,
}

/// Successful outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueResponse {
    /// The item was appended with this id.
    Offered {
        /// The item's id.
        id: u64,
    },
    /// An item for the caller.
    Delivered(Delivery),
    /// Nothing ready and not waiting.
    Empty,
    /// Nothing ready; an `ItemAvailable` event will follow.
    Waiting,
    /// Acked, nacked or stopped waiting.
    Done,
    /// The head item (id, data), if any.
    Peeked(Option<(u64, Vec<u8>)>),
    /// Counts.
    Size {
        /// Items ready to poll.
        ready: u64,
        /// Items delivered and not yet acked.
        in_flight: u64,
    },
}

/// Refusals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum QueueError {
    /// The command needs a session.
    #[error("no session")]
    NoSession,
    /// The queue holds `items_per_queue_max` items.
    #[error("queue full ({items_max} items)")]
    QueueFull {
        /// The bound.
        items_max: u64,
    },
    /// The receipt names no item in flight with that delivery (acked, redelivered, or never
    /// delivered).
    #[error("no item {id} in flight with delivery {delivery}")]
    UnknownDelivery {
        /// The item.
        id: u64,
        /// The delivery number.
        delivery: u32,
    },
    /// `queues_max` reached.
    #[error("too many queues")]
    TooManyQueues,
    /// `waiters_per_queue_max` reached.
    #[error("too many waiting consumers")]
    TooManyWaiters,
    /// A name, item or timeout out of bounds.
    #[error("invalid argument: {reason}")]
    InvalidArgument {
        /// Which.
        reason: String,
    },
}

/// The output of every command and query.
pub type QueueOutput = Result<QueueResponse, QueueError>;

/// Events published to waiting consumers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueEvent {
    /// Items are ready in the queue; poll again.
    ItemAvailable {
        /// The queue.
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Item {
    data: Vec<u8>,
    deliveries: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct InFlight {
    item: Item,
    consumer: SessionId,
    deadline_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Queue {
    ready: BTreeMap<u64, Item>,
    in_flight: BTreeMap<u64, InFlight>,
    waiters: BTreeSet<SessionId>,
}

impl Queue {
    fn is_idle(&self) -> bool {
        self.ready.is_empty() && self.in_flight.is_empty() && self.waiters.is_empty()
    }

    fn len(&self) -> usize {
        self.ready.len() + self.in_flight.len()
    }
}

/// The queues of one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMachine {
    config: QueueConfig,
    queues: BTreeMap<String, Queue>,
    /// In-flight items by deadline: (deadline, queue name, item id).
    deadlines: BTreeSet<(u64, String, u64)>,
    /// The id the next offered item gets.
    id_next: u64,
    /// Per session: the items it has in flight and the queues it waits on, so a close
    /// touches only those.
    by_session: BTreeMap<SessionId, SessionIndex>,
}

/// What one session is involved in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SessionIndex {
    in_flight: BTreeSet<(String, u64)>,
    waiting: BTreeSet<String>,
}

/// Which part of a session's index an update is about.
enum Involvement<'a> {
    InFlight(&'a str, u64),
    Waiting(&'a str),
}

impl Default for QueueMachine {
    fn default() -> Self {
        QueueMachine::new(QueueConfig::default())
    }
}

#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    queue_count: u64,
    id_next: u64,
}

impl QueueMachine {
    /// An empty machine with these bounds.
    pub fn new(config: QueueConfig) -> Self {
        QueueMachine {
            config,
            queues: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            id_next: 1,
            by_session: BTreeMap::new(),
        }
    }

    fn queue_mut(&mut self, name: &str) -> Result<&mut Queue, QueueError> {
        if name.is_empty() || name.len() > self.config.name_bytes_max {
            return Err(QueueError::InvalidArgument {
                reason: "name length".to_string(),
            });
        }
        if !self.queues.contains_key(name) && self.queues.len() >= self.config.queues_max {
            return Err(QueueError::TooManyQueues);
        }
        Ok(self.queues.entry(name.to_string()).or_default())
    }

    fn index(&mut self, session: SessionId, involvement: Involvement<'_>, present: bool) {
        let entry = self.by_session.entry(session).or_default();
        match (involvement, present) {
            (Involvement::InFlight(name, id), true) => {
                entry.in_flight.insert((name.to_string(), id));
            }
            (Involvement::InFlight(name, id), false) => {
                entry.in_flight.remove(&(name.to_string(), id));
            }
            (Involvement::Waiting(name), true) => {
                entry.waiting.insert(name.to_string());
            }
            (Involvement::Waiting(name), false) => {
                entry.waiting.remove(name);
            }
        }
        if entry.in_flight.is_empty() && entry.waiting.is_empty() {
            self.by_session.remove(&session);
        }
    }

    fn rebuild_index(&mut self) {
        self.by_session.clear();
        let mut index: BTreeMap<SessionId, SessionIndex> = BTreeMap::new();
        for (name, queue) in &self.queues {
            for (id, in_flight) in &queue.in_flight {
                let entry = index.entry(in_flight.consumer).or_default();
                entry.in_flight.insert((name.clone(), *id));
            }
            for waiter in &queue.waiters {
                index
                    .entry(*waiter)
                    .or_default()
                    .waiting
                    .insert(name.clone());
            }
        }
        self.by_session = index;
    }

    /// Tells every waiting consumer of a queue with ready items, and forgets them.
    fn wake(&mut self, context: &mut ApplyContext<'_, QueueEvent>, name: &str) {
        if let Some(queue) = self.queues.get_mut(name)
            && !queue.ready.is_empty()
        {
            for waiter in std::mem::take(&mut queue.waiters) {
                context.publish(
                    waiter,
                    QueueEvent::ItemAvailable {
                        name: name.to_string(),
                    },
                );
                self.index(waiter, Involvement::Waiting(name), false);
            }
        }
        if self.queues.get(name).is_some_and(Queue::is_idle) {
            self.queues.remove(name);
        }
    }

    /// Moves an in-flight item back to ready.
    fn requeue(&mut self, name: &str, id: u64) {
        let Some(queue) = self.queues.get_mut(name) else {
            return;
        };
        if let Some(in_flight) = queue.in_flight.remove(&id) {
            self.deadlines
                .remove(&(in_flight.deadline_ms, name.to_string(), id));
            queue.ready.insert(id, in_flight.item);
            self.index(in_flight.consumer, Involvement::InFlight(name, id), false);
        }
    }

    fn offer(
        &mut self,
        context: &mut ApplyContext<'_, QueueEvent>,
        name: &str,
        data: Vec<u8>,
    ) -> QueueOutput {
        if data.len() > self.config.item_bytes_max {
            return Err(QueueError::InvalidArgument {
                reason: "item over item_bytes_max".to_string(),
            });
        }
        let items_max = self.config.items_per_queue_max;
        let id = self.id_next;
        let queue = self.queue_mut(name)?;
        if queue.len() >= items_max {
            let idle = queue.is_idle();
            if idle {
                self.queues.remove(name);
            }
            return Err(QueueError::QueueFull {
                items_max: items_max as u64,
            });
        }
        queue.ready.insert(
            id,
            Item {
                data,
                deliveries: 0,
            },
        );
        self.id_next += 1;
        self.wake(context, name);
        Ok(QueueResponse::Offered { id })
    }

    fn poll(
        &mut self,
        context: &ApplyContext<'_, QueueEvent>,
        session: SessionId,
        name: &str,
        visibility_timeout_ms: u64,
        wait: bool,
    ) -> QueueOutput {
        if visibility_timeout_ms == 0
            || visibility_timeout_ms > self.config.visibility_timeout_ms_max
        {
            return Err(QueueError::InvalidArgument {
                reason: "visibility_timeout_ms out of 1..=visibility_timeout_ms_max".to_string(),
            });
        }
        let waiters_max = self.config.waiters_per_queue_max;
        let queue = self.queue_mut(name)?;
        let Some((id, mut item)) = queue.ready.pop_first() else {
            let output = if !wait {
                Ok(QueueResponse::Empty)
            } else if queue.waiters.len() >= waiters_max && !queue.waiters.contains(&session) {
                Err(QueueError::TooManyWaiters)
            } else {
                queue.waiters.insert(session);
                self.index(session, Involvement::Waiting(name), true);
                Ok(QueueResponse::Waiting)
            };
            if self.queues.get(name).is_some_and(Queue::is_idle) {
                self.queues.remove(name);
            }
            return output;
        };
        item.deliveries += 1;
        let deadline_ms = context.log_time_ms().saturating_add(visibility_timeout_ms);
        let delivery = Delivery {
            id,
            delivery: item.deliveries,
            data: item.data.clone(),
        };
        queue.waiters.remove(&session);
        queue.in_flight.insert(
            id,
            InFlight {
                item,
                consumer: session,
                deadline_ms,
            },
        );
        self.deadlines.insert((deadline_ms, name.to_string(), id));
        self.index(session, Involvement::Waiting(name), false);
        self.index(session, Involvement::InFlight(name, id), true);
        Ok(QueueResponse::Delivered(delivery))
    }

    fn settle(
        &mut self,
        context: &mut ApplyContext<'_, QueueEvent>,
        name: &str,
        id: u64,
        delivery: u32,
        acknowledge: bool,
    ) -> QueueOutput {
        let known = self
            .queues
            .get(name)
            .and_then(|queue| queue.in_flight.get(&id))
            .is_some_and(|in_flight| in_flight.item.deliveries == delivery);
        if !known {
            return Err(QueueError::UnknownDelivery { id, delivery });
        }
        self.requeue(name, id);
        if acknowledge && let Some(queue) = self.queues.get_mut(name) {
            queue.ready.remove(&id);
        }
        self.wake(context, name);
        Ok(QueueResponse::Done)
    }
}

impl StateMachine for QueueMachine {
    const TYPE_NAME: &'static str = "queue";
    type Command = QueueCommand;
    type Query = QueueQuery;
    type Output = QueueOutput;
    type Event = QueueEvent;

    fn apply(
        &mut self,
        context: &mut ApplyContext<'_, QueueEvent>,
        command: QueueCommand,
    ) -> QueueOutput {
        let session = context.session().ok_or(QueueError::NoSession)?;
        match command {
            QueueCommand::Offer { name, data } => self.offer(context, &name, data),
            QueueCommand::Poll {
                name,
                visibility_timeout_ms,
                wait,
            } => self.poll(context, session, &name, visibility_timeout_ms, wait),
            QueueCommand::Ack { name, id, delivery } => {
                self.settle(context, &name, id, delivery, true)
            }
            QueueCommand::Nack { name, id, delivery } => {
                self.settle(context, &name, id, delivery, false)
            }
            QueueCommand::StopWaiting { name } => {
                if let Some(queue) = self.queues.get_mut(&name) {
                    queue.waiters.remove(&session);
                    if queue.is_idle() {
                        self.queues.remove(&name);
                    }
                }
                self.index(session, Involvement::Waiting(&name), false);
                Ok(QueueResponse::Done)
            }
        }
    }

    fn query(&self, _context: &QueryContext, query: QueueQuery) -> QueueOutput {
        match query {
            QueueQuery::Peek { name } => Ok(QueueResponse::Peeked(
                self.queues
                    .get(&name)
                    .and_then(|queue| queue.ready.first_key_value())
                    .map(|(id, item)| (*id, item.data.clone())),
            )),
            QueueQuery::Size { name } => {
                let queue = self.queues.get(&name);
                Ok(QueueResponse::Size {
                    ready: queue.map_or(0, |queue| queue.ready.len() as u64),
                    in_flight: queue.map_or(0, |queue| queue.in_flight.len() as u64),
                })
            }
        }
    }

    fn session_closed(&mut self, context: &mut ApplyContext<'_, QueueEvent>, session: SessionId) {
        let Some(involved) = self.by_session.remove(&session) else {
            return;
        };
        let mut touched: BTreeSet<String> = involved.waiting;
        for name in &touched {
            if let Some(queue) = self.queues.get_mut(name) {
                queue.waiters.remove(&session);
            }
        }
        for (name, id) in involved.in_flight {
            self.requeue(&name, id);
            touched.insert(name);
        }
        self.by_session.remove(&session);
        for name in touched {
            self.wake(context, &name);
        }
    }

    fn time_advanced(&mut self, context: &mut ApplyContext<'_, QueueEvent>) {
        let now_ms = context.log_time_ms();
        let due: Vec<(u64, String, u64)> = self
            .deadlines
            .iter()
            .take_while(|(deadline_ms, _, _)| *deadline_ms <= now_ms)
            .cloned()
            .collect();
        let mut touched = BTreeSet::new();
        for (_, name, id) in due {
            self.requeue(&name, id);
            touched.insert(name);
        }
        for name in touched {
            self.wake(context, &name);
        }
    }

    fn snapshot(&self, writer: &mut dyn Write) -> Result<(), Error> {
        let header = SnapshotHeader {
            queue_count: self.queues.len() as u64,
            id_next: self.id_next,
        };
        codec::write_frame(writer, &header, "queue snapshot header")?;
        for entry in &self.queues {
            codec::write_frame(writer, &entry, "queue")?;
        }
        Ok(())
    }

    fn restore(&mut self, reader: &mut dyn Read) -> Result<(), Error> {
        let header: SnapshotHeader = codec::read_frame(reader, "queue snapshot header")?;
        self.queues.clear();
        self.deadlines.clear();
        for _ in 0..header.queue_count {
            let (name, queue): (String, Queue) = codec::read_frame(reader, "queue")?;
            for (id, in_flight) in &queue.in_flight {
                self.deadlines
                    .insert((in_flight.deadline_ms, name.clone(), *id));
            }
            self.queues.insert(name, queue);
        }
        self.id_next = header.id_next;
        self.rebuild_index();
        Ok(())
    }

    fn validate(&self) -> Result<(), String> {
        let mut rebuilt = self.clone();
        rebuilt.rebuild_index();
        if rebuilt.by_session != self.by_session {
            return Err("the per-session index differs from the queues".to_string());
        }
        let mut in_flight_total = 0;
        for (name, queue) in &self.queues {
            if queue.is_idle() {
                return Err(format!("idle queue {name} is kept"));
            }
            if !queue.ready.is_empty() && !queue.waiters.is_empty() {
                return Err(format!(
                    "queue {name} has ready items and waiting consumers"
                ));
            }
            if queue.len() > self.config.items_per_queue_max {
                return Err(format!("queue {name} is over its bound"));
            }
            for id in queue.ready.keys().chain(queue.in_flight.keys()) {
                if *id >= self.id_next {
                    return Err(format!("queue {name} holds a future id {id}"));
                }
                if queue.ready.contains_key(id) && queue.in_flight.contains_key(id) {
                    return Err(format!("item {id} is both ready and in flight"));
                }
            }
            for (id, in_flight) in &queue.in_flight {
                in_flight_total += 1;
                if in_flight.item.deliveries == 0
                    || !self
                        .deadlines
                        .contains(&(in_flight.deadline_ms, name.clone(), *id))
                {
                    return Err(format!("in-flight item {id} is not indexed"));
                }
            }
        }
        if in_flight_total != self.deadlines.len() {
            return Err("the deadline index holds stale entries".to_string());
        }
        Ok(())
    }
}
