//! Workloads: what the workers do, how each operation is recorded, and which checker model
//! judges the history. Each operation is recorded `ok` when the machine answered, `fail`
//! when it certainly did not happen (refused, or a read that got no answer), and `info`
//! when it may have happened (a command without an answer by its deadline).

use conclave_statemachines::codec;
use conclave_statemachines::lock::{LockCommand, LockOutput, LockResponse};
use conclave_statemachines::queue::{QueueCommand, QueueOutput, QueueResponse};
use conclave_statemachines::value::{ValueCommand, ValueOutput, ValueQuery};
use serde_json::{Value, json};

use super::client::{Answer, NativeSession};
use super::history::{History, Outcome};
use super::random::Random;
use crate::check::ModelName;

/// The register's machine name (a value machine).
const REGISTER_MACHINE: &str = "jepsen-register";
/// The lock machine's name.
const LOCK_MACHINE: &str = "jepsen-locks";
/// The lock's name (the history's key).
const LOCK_NAME: &str = "lock";
/// The queue machine's name.
const QUEUE_MACHINE: &str = "jepsen-queues";
/// The queue's name (the history's key).
const QUEUE_NAME: &str = "queue";
/// Register values are drawn from `0..REGISTER_VALUES` so that reads and CAS often meet
/// the value they expect.
const REGISTER_VALUES: u64 = 5;
/// A polled item stays invisible this long before it is delivered again; far longer than a
/// test, so only a lost poll answer redelivers.
const QUEUE_VISIBILITY_TIMEOUT_MS: u64 = 600_000;
/// The most polls of the final drain, so a queue that never empties cannot hang a run.
const DRAIN_POLLS_MAX: u64 = 100_000;

/// A workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// One register (value machine): read, write, compare-and-set.
    Register,
    /// One mutex (lock machine): try-lock and unlock; fencing tokens must increase.
    Lock,
    /// One queue (queue machine): offer, poll and ack; a final drain finds lost items.
    Queue,
}

impl WorkloadKind {
    /// Every workload.
    pub const ALL: [WorkloadKind; 3] = [
        WorkloadKind::Register,
        WorkloadKind::Lock,
        WorkloadKind::Queue,
    ];

    /// The workload's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Register => "register",
            WorkloadKind::Lock => "lock",
            WorkloadKind::Queue => "queue",
        }
    }

    /// The checker model that judges its history.
    pub fn model(self) -> ModelName {
        match self {
            WorkloadKind::Register => ModelName::Register,
            WorkloadKind::Lock => ModelName::Mutex,
            // An item whose poll answer was lost is delivered again after its visibility
            // timeout: at-least-once is the guarantee to check.
            WorkloadKind::Queue => ModelName::QueueAtLeastOnce,
        }
    }
}

/// One worker's state.
pub struct Worker {
    /// The session.
    pub session: NativeSession,
    /// The history process id; changes after an `info` (that process is stuck forever).
    pub process: u64,
    /// How far process ids jump after an `info`: the number of workers.
    pub process_stride: u64,
    /// The worker's own seeded generator.
    pub random: Random,
    /// Whether this worker holds the lock (lock workload).
    holding: bool,
    /// The next value this worker offers (queue workload): unique across workers.
    next_offer: u64,
}

impl Worker {
    /// A worker with process id `process` out of `process_stride` workers.
    pub fn new(session: NativeSession, process: u64, process_stride: u64, seed: u64) -> Self {
        Self {
            session,
            process,
            process_stride,
            random: Random::new(seed),
            holding: false,
            next_offer: process,
        }
    }

    fn record(
        &mut self,
        history: &History,
        invoke_ns: u64,
        outcome: Outcome,
        function: &str,
        key: Option<&str>,
        value: Value,
    ) {
        history.complete(self.process, invoke_ns, outcome, function, key, value);
        if outcome == Outcome::Info {
            // The operation may still happen at any time: the process is stuck in it.
            self.process += self.process_stride;
            self.holding = false;
        }
    }
}

/// Runs one operation of `kind` and records it.
pub async fn step(kind: WorkloadKind, worker: &mut Worker, history: &History) {
    match kind {
        WorkloadKind::Register => register_step(worker, history).await,
        WorkloadKind::Lock => lock_step(worker, history).await,
        WorkloadKind::Queue => {
            let _ = queue_step(worker, history, false).await;
        }
    }
}

/// The final operations after the nemesis has healed: a read of the register, a drain of
/// the queue (whose last empty poll proves nothing acknowledged was lost).
pub async fn final_operations(kind: WorkloadKind, worker: &mut Worker, history: &History) {
    match kind {
        WorkloadKind::Register => register_read(worker, history).await,
        WorkloadKind::Lock => {
            if worker.holding {
                lock_release(worker, history).await;
            }
        }
        WorkloadKind::Queue => {
            for _ in 0..DRAIN_POLLS_MAX {
                if worker.session.is_open() || worker.session.open().await {
                    if queue_step(worker, history, true).await == Some(()) {
                        continue;
                    }
                    break;
                }
            }
        }
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // The built-in commands always encode; an empty payload would be refused by the
    // machine and recorded as a failure rather than crash the harness.
    codec::encode(value, "harness command").unwrap_or_default()
}

fn register_value(bytes: &[u8]) -> Value {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .map_or(Value::Null, |value| json!(value))
}

async fn register_read(worker: &mut Worker, history: &History) {
    let invoke = history.invoke(worker.process, "read", None, Value::Null);
    let answer = worker
        .session
        .query(REGISTER_MACHINE, "value", encode(&ValueQuery::Get))
        .await;
    match answer {
        Answer::Output(bytes) => match codec::decode::<ValueOutput>(&bytes, "value output") {
            Ok(ValueOutput::Value(value)) => {
                let value = value.as_deref().map_or(Value::Null, register_value);
                worker.record(history, invoke, Outcome::Ok, "read", None, value);
            }
            _ => worker.record(history, invoke, Outcome::Fail, "read", None, Value::Null),
        },
        // A read that got no answer changed nothing.
        Answer::Refused(_) | Answer::Unknown(_) => {
            worker.record(history, invoke, Outcome::Fail, "read", None, Value::Null);
        }
    }
}

async fn register_step(worker: &mut Worker, history: &History) {
    let choice = worker.random.below(4);
    if choice < 2 {
        return register_read(worker, history).await;
    }
    let (function, argument, command) = if choice == 2 {
        let value = worker.random.below(REGISTER_VALUES);
        let command = ValueCommand::GetAndSet {
            value: Some(value.to_string().into_bytes()),
        };
        ("write", json!(value), command)
    } else {
        let expected = worker.random.below(REGISTER_VALUES);
        let update = worker.random.below(REGISTER_VALUES);
        let command = ValueCommand::CompareAndSet {
            expected: Some(expected.to_string().into_bytes()),
            update: Some(update.to_string().into_bytes()),
        };
        ("cas", json!([expected, update]), command)
    };
    let invoke = history.invoke(worker.process, function, None, argument);
    let answer = worker
        .session
        .command(REGISTER_MACHINE, "value", encode(&command))
        .await;
    let (outcome, value) = match answer {
        Answer::Output(bytes) => match codec::decode::<ValueOutput>(&bytes, "value output") {
            Ok(ValueOutput::Value(_)) => (Outcome::Ok, Value::Null),
            Ok(ValueOutput::CompareAndSet { succeeded }) => (Outcome::Ok, json!(succeeded)),
            // An output the harness does not understand: the command did apply.
            _ => (Outcome::Info, Value::Null),
        },
        Answer::Refused(_) => (Outcome::Fail, Value::Null),
        Answer::Unknown(_) => (Outcome::Info, Value::Null),
    };
    worker.record(history, invoke, outcome, function, None, value);
}

async fn lock_step(worker: &mut Worker, history: &History) {
    if worker.holding {
        return lock_release(worker, history).await;
    }
    let key = Some(LOCK_NAME);
    let invoke = history.invoke(worker.process, "acquire", key, Value::Null);
    let command = LockCommand::Lock {
        name: LOCK_NAME.to_string(),
        reentrant: false,
        wait_ms: Some(0),
    };
    let answer = worker
        .session
        .command(LOCK_MACHINE, "lock", encode(&command))
        .await;
    let (outcome, value) = match answer {
        Answer::Output(bytes) => match codec::decode::<LockOutput>(&bytes, "lock output") {
            Ok(Ok(LockResponse::Acquired { token })) => (Outcome::Ok, json!(token)),
            // A try-lock that was not granted, or a refusal: the lock did not change hands.
            Ok(Ok(LockResponse::NotAcquired)) | Ok(Err(_)) => (Outcome::Fail, Value::Null),
            _ => (Outcome::Info, Value::Null),
        },
        Answer::Refused(_) => (Outcome::Fail, Value::Null),
        Answer::Unknown(_) => (Outcome::Info, Value::Null),
    };
    worker.record(history, invoke, outcome, "acquire", key, value);
    if outcome == Outcome::Ok {
        worker.holding = true;
    }
}

async fn lock_release(worker: &mut Worker, history: &History) {
    let key = Some(LOCK_NAME);
    let invoke = history.invoke(worker.process, "release", key, Value::Null);
    let command = LockCommand::Unlock {
        name: LOCK_NAME.to_string(),
    };
    let answer = worker
        .session
        .command(LOCK_MACHINE, "lock", encode(&command))
        .await;
    let outcome = match answer {
        Answer::Output(bytes) => match codec::decode::<LockOutput>(&bytes, "lock output") {
            Ok(Ok(LockResponse::Released)) => Outcome::Ok,
            Ok(Err(_)) => Outcome::Fail,
            _ => Outcome::Info,
        },
        Answer::Refused(_) => Outcome::Fail,
        Answer::Unknown(_) => Outcome::Info,
    };
    worker.record(history, invoke, outcome, "release", key, Value::Null);
    if outcome != Outcome::Fail {
        worker.holding = false;
    }
}

/// One queue operation; `Some(())` when a drain should go on (an item was polled).
async fn queue_step(worker: &mut Worker, history: &History, drain: bool) -> Option<()> {
    let key = Some(QUEUE_NAME);
    if !drain && worker.random.below(2) == 0 {
        let value = worker.next_offer;
        worker.next_offer += worker.process_stride;
        let invoke = history.invoke(worker.process, "enqueue", key, json!(value));
        let command = QueueCommand::Offer {
            name: QUEUE_NAME.to_string(),
            data: value.to_string().into_bytes(),
        };
        let answer = worker
            .session
            .command(QUEUE_MACHINE, "queue", encode(&command))
            .await;
        let outcome = match answer {
            Answer::Output(bytes) => match codec::decode::<QueueOutput>(&bytes, "queue output") {
                Ok(Ok(QueueResponse::Offered { .. })) => Outcome::Ok,
                Ok(Err(_)) => Outcome::Fail,
                _ => Outcome::Info,
            },
            Answer::Refused(_) => Outcome::Fail,
            Answer::Unknown(_) => Outcome::Info,
        };
        worker.record(history, invoke, outcome, "enqueue", key, Value::Null);
        return None;
    }
    let invoke = history.invoke(worker.process, "dequeue", key, Value::Null);
    let command = QueueCommand::Poll {
        name: QUEUE_NAME.to_string(),
        visibility_timeout_ms: QUEUE_VISIBILITY_TIMEOUT_MS,
        wait: false,
    };
    let answer = worker
        .session
        .command(QUEUE_MACHINE, "queue", encode(&command))
        .await;
    let delivery = match answer {
        Answer::Output(bytes) => match codec::decode::<QueueOutput>(&bytes, "queue output") {
            Ok(Ok(QueueResponse::Delivered(delivery))) => Some(delivery),
            Ok(Ok(QueueResponse::Empty)) => {
                worker.record(history, invoke, Outcome::Ok, "dequeue", key, Value::Null);
                return None;
            }
            Ok(Err(_)) => {
                worker.record(history, invoke, Outcome::Fail, "dequeue", key, Value::Null);
                return None;
            }
            _ => {
                worker.record(history, invoke, Outcome::Info, "dequeue", key, Value::Null);
                return None;
            }
        },
        Answer::Refused(_) => {
            worker.record(history, invoke, Outcome::Fail, "dequeue", key, Value::Null);
            return None;
        }
        Answer::Unknown(_) => {
            worker.record(history, invoke, Outcome::Info, "dequeue", key, Value::Null);
            return None;
        }
    };
    let delivery = delivery?;
    let value = register_value(&delivery.data);
    worker.record(history, invoke, Outcome::Ok, "dequeue", key, value);
    // The acknowledgement is not an operation of the model: a lost one only means a
    // redelivery, which the at-least-once model allows.
    let acknowledge = QueueCommand::Ack {
        name: QUEUE_NAME.to_string(),
        id: delivery.id,
        delivery: delivery.delivery,
    };
    let _ = worker
        .session
        .command(QUEUE_MACHINE, "queue", encode(&acknowledge))
        .await;
    Some(())
}
