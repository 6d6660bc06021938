//! The conformance suite every machine must pass, built-in or a user's.
//!
//! [`check_machine`] builds a log from the machine's own commands and queries — several
//! sessions, retried sequences, keep-alives, ticks that move log time, a session that
//! expires and one that closes — and checks, through the real [`SessionLayer`]:
//!
//! 1. **Determinism**: replaying the same log twice gives identical outputs, events, query
//!    answers and snapshot bytes. The second replay starts only once the wall clock has
//!    moved, so a machine that reads a clock instead of `log_time_ms` shows up as a
//!    difference; so does one whose snapshot iterates a `HashMap`.
//! 2. **Snapshot at any index**: a snapshot taken after any entry, restored into a fresh
//!    layer and continued, gives exactly what continuing the original gives, and restoring
//!    then snapshotting gives the same bytes.
//! 3. **Invariants**: the layer's and the machine's `validate` hold after every step and
//!    after every restore.
//! 4. **Exactly-once**: every retried sequence is answered with the first output, and the
//!    retries change no later answer compared with a log without them.
//!
//! ```
//! use conclave_statemachines::counter::{CounterCommand, CounterMachine, CounterQuery};
//! use conclave_statemachines::testing::{ConformanceOptions, check_machine};
//!
//! let commands: Vec<CounterCommand> =
//!     (0..20).map(|delta| CounterCommand::AddAndGet { delta }).collect();
//! let report = check_machine(
//!     CounterMachine::default,
//!     commands,
//!     vec![CounterQuery::Get],
//!     &ConformanceOptions::default(),
//! )
//! .unwrap();
//! assert!(report.snapshot_points_checked > 20);
//! ```

use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::codec;
use crate::envelope::{Applied, Entry, QueryRequest};
use crate::error::{Error, SessionError};
use crate::machine::{Index, SessionId, StateMachine};
use crate::registry::Registry;
use crate::session::{SessionConfig, SessionLayer};

/// The name the suite gives the machine under test.
pub const MACHINE_NAME: &str = "subject";

/// How much the suite checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConformanceOptions {
    /// Check snapshot-and-restore after every this many entries (1: after every entry).
    pub restore_every_entries: usize,
    /// How many client sessions take turns sending commands (at least 2).
    pub clients: usize,
    /// How long the suite waits for the wall clock to move between the two replays.
    pub clock_wait_ms_max: u64,
}

impl Default for ConformanceOptions {
    fn default() -> Self {
        ConformanceOptions {
            restore_every_entries: 1,
            clients: 3,
            clock_wait_ms_max: 1_000,
        }
    }
}

/// What the suite checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConformanceReport {
    /// Entries in the generated log.
    pub entries: usize,
    /// Queries asked along the way.
    pub queries: usize,
    /// Indexes at which a snapshot was restored and continued.
    pub snapshot_points_checked: usize,
    /// Retried sequences that were checked against their first output.
    pub retries_checked: usize,
    /// Event batches produced.
    pub event_batches: usize,
    /// Sessions that expired.
    pub sessions_expired: usize,
}

/// Why a machine failed the suite.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConformanceFailure {
    /// Two replays of the same log differed.
    #[error("replays differ at step {step}: {detail}")]
    Nondeterministic {
        /// The step of the script where they first differed.
        step: usize,
        /// What differed.
        detail: String,
    },
    /// A restored snapshot, continued, differed from the original continued.
    #[error("snapshot taken at index {snapshot_index} diverged at step {step}: {detail}")]
    SnapshotDiverged {
        /// The index the snapshot was taken at.
        snapshot_index: Index,
        /// The first step that differed.
        step: usize,
        /// What differed.
        detail: String,
    },
    /// A retried sequence got another answer than the first time, or retries changed state.
    #[error("retry broke exactly-once at step {step}: {detail}")]
    RetryDiffers {
        /// The step of the retry.
        step: usize,
        /// What differed.
        detail: String,
    },
    /// An invariant of the layer or of the machine (its `validate`) broke.
    #[error("invariant broken after step {step}: {detail}")]
    Invariant {
        /// The step after which it broke.
        step: usize,
        /// The broken invariant.
        detail: String,
    },
    /// The script did not exercise what it should have (e.g. no session expired).
    #[error("the generated log did not behave as planned: {detail}")]
    Script {
        /// What went wrong.
        detail: String,
    },
    /// Building, snapshotting or restoring failed.
    #[error("operating error: {0}")]
    Operating(#[from] Error),
}

/// One step of a conformance log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Apply an entry stamped with this log time.
    Apply {
        /// The leader's stamp.
        log_time_ms: u64,
        /// The entry.
        entry: Entry,
        /// For a retried command, the step of its first attempt.
        retry_of: Option<usize>,
    },
    /// Ask a query.
    Query(QueryRequest),
}

/// What a step produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An entry's results.
    Applied(Applied),
    /// A query's answer.
    Answered(Result<Vec<u8>, SessionError>),
}

fn encode<T: Serialize>(value: &T, what: &'static str) -> Result<Vec<u8>, ConformanceFailure> {
    Ok(codec::encode(value, what)?)
}

struct Builder {
    steps: Vec<Step>,
    time_ms: u64,
    next_index: Index,
}

impl Builder {
    fn apply(&mut self, entry: Entry, retry_of: Option<usize>) -> Index {
        self.steps.push(Step::Apply {
            log_time_ms: self.time_ms,
            entry,
            retry_of,
        });
        self.next_index += 1;
        self.next_index - 1
    }
}

struct Client {
    session: SessionId,
    sequence: u64,
    keeps_alive: bool,
}

/// Builds the suite's log from a machine's commands and queries.
pub fn standard_script<M: StateMachine>(
    commands: &[M::Command],
    queries: &[M::Query],
    options: &ConformanceOptions,
) -> Result<Vec<Step>, ConformanceFailure> {
    let mut builder = Builder {
        steps: Vec::new(),
        time_ms: 1_000,
        next_index: 1,
    };
    let client_count = options.clients.max(2);
    let mut clients = Vec::new();
    for position in 0..client_count {
        // The last client has a short timeout and stops keeping alive halfway.
        let timeout_ms = if position + 1 == client_count {
            2_000
        } else {
            60_000
        };
        let session = builder.apply(Entry::Register { timeout_ms }, None);
        clients.push(Client {
            session,
            sequence: 0,
            keeps_alive: true,
        });
    }
    let query_payloads: Vec<Vec<u8>> = queries
        .iter()
        .map(|query| encode(query, "query"))
        .collect::<Result<_, _>>()?;
    for (position, command) in commands.iter().enumerate() {
        builder.time_ms += 7 + (position as u64 % 5) * 13;
        if position == commands.len() / 2 {
            // Let the short-lived client expire: others keep alive, time jumps past it.
            if let Some(last) = clients.last_mut() {
                last.keeps_alive = false;
            }
            keep_alive_all(&mut builder, &clients);
            builder.time_ms += 2_500;
            builder.apply(Entry::Tick, None);
        }
        if position == commands.len() * 3 / 4 {
            let session = clients[0].session;
            builder.apply(Entry::Close { session }, None);
            let session = builder.apply(Entry::Register { timeout_ms: 60_000 }, None);
            clients[0] = Client {
                session,
                sequence: 0,
                keeps_alive: true,
            };
        }
        let live: Vec<usize> = (0..clients.len())
            .filter(|&client| clients[client].keeps_alive)
            .collect();
        let client = &mut clients[live[position % live.len()]];
        client.sequence += 1;
        let entry = Entry::Command {
            session: client.session,
            sequence: client.sequence,
            machine_name: MACHINE_NAME.to_string(),
            machine_type: M::TYPE_NAME.to_string(),
            payload: encode(command, "command")?,
        };
        let first = builder.steps.len();
        builder.apply(entry.clone(), None);
        if position % 4 == 1 {
            builder.apply(entry, Some(first));
        }
        if !query_payloads.is_empty() {
            let session = client.session;
            builder.steps.push(Step::Query(QueryRequest {
                session: Some(session),
                index_seen: builder.next_index - 1,
                machine_name: MACHINE_NAME.to_string(),
                machine_type: M::TYPE_NAME.to_string(),
                payload: query_payloads[position % query_payloads.len()].clone(),
            }));
        }
        if position % 3 == 2 {
            builder.apply(Entry::Tick, None);
        }
        if position % 5 == 4 {
            keep_alive_all(&mut builder, &clients);
        }
    }
    Ok(builder.steps)
}

fn keep_alive_all(builder: &mut Builder, clients: &[Client]) {
    for client in clients.iter().filter(|client| client.keeps_alive) {
        let event_index_acknowledged = builder.next_index.saturating_sub(2);
        builder.apply(
            Entry::KeepAlive {
                session: client.session,
                command_sequence_acknowledged: client.sequence.saturating_sub(1),
                event_index_acknowledged,
            },
            None,
        );
    }
}

/// A fresh layer holding only the machine under test.
pub fn fresh_layer<M, F>(factory: F) -> Result<SessionLayer, Error>
where
    M: StateMachine,
    F: Fn() -> M + 'static,
{
    let mut registry = Registry::new();
    registry.register(factory)?;
    SessionLayer::new(SessionConfig::default(), registry)
}

/// Runs steps `from..` of a script on a layer; the index of each entry is its position
/// among the script's entries.
pub fn run_steps(layer: &mut SessionLayer, steps: &[Step], from: usize) -> Vec<Outcome> {
    let mut index = steps[..from]
        .iter()
        .filter(|step| matches!(step, Step::Apply { .. }))
        .count();
    steps[from..]
        .iter()
        .map(|step| match step {
            Step::Apply {
                log_time_ms, entry, ..
            } => {
                index += 1;
                Outcome::Applied(layer.apply(index as Index, *log_time_ms, &entry.encode()))
            }
            Step::Query(request) => Outcome::Answered(layer.query(request)),
        })
        .collect()
}

fn first_difference(left: &[Outcome], right: &[Outcome]) -> Option<(usize, String)> {
    if left.len() != right.len() {
        return Some((left.len().min(right.len()), "different lengths".to_string()));
    }
    left.iter()
        .zip(right)
        .position(|(left, right)| left != right)
        .map(|position| {
            (
                position,
                format!("{:?} != {:?}", left[position], right[position]),
            )
        })
}

fn snapshot_bytes(layer: &SessionLayer) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    layer.snapshot(&mut bytes)?;
    Ok(bytes)
}

/// Waits (with a deadline, never a fixed sleep) until the wall clock shows another
/// millisecond, so that a second replay runs at a different wall-clock time.
fn wait_for_clock_to_move(wait_ms_max: u64) {
    let millis = || {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis())
    };
    let start = millis();
    let deadline = Instant::now() + Duration::from_millis(wait_ms_max);
    while millis() < start + 2 && Instant::now() < deadline {
        std::thread::yield_now();
    }
}

/// Runs the whole suite on a machine; see the module documentation.
pub fn check_machine<M, F>(
    factory: F,
    commands: Vec<M::Command>,
    queries: Vec<M::Query>,
    options: &ConformanceOptions,
) -> Result<ConformanceReport, ConformanceFailure>
where
    M: StateMachine,
    F: Fn() -> M + Clone + 'static,
{
    let steps = standard_script::<M>(&commands, &queries, options)?;
    let mut report = check_script(factory.clone(), &steps, options)?;
    // The standard log lets one session expire; if none did, the expiry hooks went untested.
    if report.sessions_expired == 0 && !commands.is_empty() {
        return Err(ConformanceFailure::Script {
            detail: "no session expired".to_string(),
        });
    }
    check_retries_change_nothing(factory, &steps)?;
    report.retries_checked = steps
        .iter()
        .filter(|step| {
            matches!(
                step,
                Step::Apply {
                    retry_of: Some(_),
                    ..
                }
            )
        })
        .count();
    Ok(report)
}

/// Checks determinism and snapshot-restore-continue on any script.
pub fn check_script<M, F>(
    factory: F,
    steps: &[Step],
    options: &ConformanceOptions,
) -> Result<ConformanceReport, ConformanceFailure>
where
    M: StateMachine,
    F: Fn() -> M + Clone + 'static,
{
    let mut original = fresh_layer(factory.clone())?;
    let mut outcomes = Vec::with_capacity(steps.len());
    for step in 0..steps.len() {
        outcomes.extend(run_steps(&mut original, &steps[..=step], step));
        if let Err(detail) = original.validate() {
            return Err(ConformanceFailure::Invariant { step, detail });
        }
    }
    let final_bytes = snapshot_bytes(&original)?;

    wait_for_clock_to_move(options.clock_wait_ms_max);
    let mut replay = fresh_layer(factory.clone())?;
    let replayed = run_steps(&mut replay, steps, 0);
    if let Some((step, detail)) = first_difference(&outcomes, &replayed) {
        return Err(ConformanceFailure::Nondeterministic { step, detail });
    }
    if snapshot_bytes(&replay)? != final_bytes {
        let detail = "final snapshot bytes differ".to_string();
        return Err(ConformanceFailure::Nondeterministic {
            step: steps.len(),
            detail,
        });
    }

    let mut report = ConformanceReport {
        entries: steps
            .iter()
            .filter(|step| matches!(step, Step::Apply { .. }))
            .count(),
        queries: steps
            .iter()
            .filter(|step| matches!(step, Step::Query(_)))
            .count(),
        ..ConformanceReport::default()
    };
    for outcome in &outcomes {
        if let Outcome::Applied(applied) = outcome {
            report.event_batches += applied.events.len();
            report.sessions_expired += applied.expired.len();
        }
    }

    for (step, outcome) in outcomes.iter().enumerate() {
        if let (
            Step::Apply {
                retry_of: Some(first),
                ..
            },
            Outcome::Applied(retry),
        ) = (&steps[step], outcome)
            && let Outcome::Applied(original_applied) = &outcomes[*first]
            && retry.reply != original_applied.reply
        {
            let detail = format!("{:?} != {:?}", retry.reply, original_applied.reply);
            return Err(ConformanceFailure::RetryDiffers { step, detail });
        }
    }

    report.snapshot_points_checked =
        check_restores(factory, steps, &outcomes, &final_bytes, options)?;
    Ok(report)
}

fn check_restores<M, F>(
    factory: F,
    steps: &[Step],
    outcomes: &[Outcome],
    final_bytes: &[u8],
    options: &ConformanceOptions,
) -> Result<usize, ConformanceFailure>
where
    M: StateMachine,
    F: Fn() -> M + Clone + 'static,
{
    let mut walker = fresh_layer(factory.clone())?;
    let mut checked = 0;
    let mut entries_seen = 0;
    for (position, step) in steps.iter().enumerate() {
        run_one(&mut walker, steps, position);
        if !matches!(step, Step::Apply { .. }) {
            continue;
        }
        entries_seen += 1;
        if entries_seen % options.restore_every_entries.max(1) != 0 {
            continue;
        }
        let snapshot_index = walker.index_applied();
        let bytes = snapshot_bytes(&walker)?;
        let mut restored = fresh_layer(factory.clone())?;
        restored.restore(&mut bytes.as_slice())?;
        if let Err(detail) = restored.validate() {
            return Err(ConformanceFailure::Invariant {
                step: position,
                detail,
            });
        }
        if snapshot_bytes(&restored)? != bytes {
            let detail = "restore then snapshot changed the bytes".to_string();
            return Err(ConformanceFailure::SnapshotDiverged {
                snapshot_index,
                step: position,
                detail,
            });
        }
        let continued = run_steps(&mut restored, steps, position + 1);
        if let Some((offset, detail)) = first_difference(&outcomes[position + 1..], &continued) {
            let step = position + 1 + offset;
            return Err(ConformanceFailure::SnapshotDiverged {
                snapshot_index,
                step,
                detail,
            });
        }
        if snapshot_bytes(&restored)? != final_bytes {
            let detail = "final snapshot bytes differ".to_string();
            return Err(ConformanceFailure::SnapshotDiverged {
                snapshot_index,
                step: steps.len(),
                detail,
            });
        }
        checked += 1;
    }
    Ok(checked)
}

/// Runs exactly the step at `position`, with the index it has in the whole script.
fn run_one(layer: &mut SessionLayer, steps: &[Step], position: usize) {
    let _ = run_steps(layer, &steps[..=position], position);
}

/// Checks that retries touch no state: the same log with every retry replaced by a tick
/// (same index, same time) gives the same outcome at every other step.
fn check_retries_change_nothing<M, F>(factory: F, steps: &[Step]) -> Result<(), ConformanceFailure>
where
    M: StateMachine,
    F: Fn() -> M + Clone + 'static,
{
    let without: Vec<Step> = steps
        .iter()
        .map(|step| match step {
            Step::Apply {
                log_time_ms,
                retry_of: Some(_),
                ..
            } => Step::Apply {
                log_time_ms: *log_time_ms,
                entry: Entry::Tick,
                retry_of: None,
            },
            other => other.clone(),
        })
        .collect();
    let with_outcomes = run_steps(&mut fresh_layer(factory.clone())?, steps, 0);
    let without_outcomes = run_steps(&mut fresh_layer(factory)?, &without, 0);
    for (step, (left, right)) in with_outcomes.iter().zip(&without_outcomes).enumerate() {
        if matches!(
            steps[step],
            Step::Apply {
                retry_of: Some(_),
                ..
            }
        ) {
            continue;
        }
        if left != right {
            let detail = format!("{left:?} != {right:?}");
            return Err(ConformanceFailure::RetryDiffers { step, detail });
        }
    }
    Ok(())
}
