//! Running a check: partitioning, parallel search, verdicts and
//! counterexamples.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::error::CheckError;
use super::history::Operation;
use super::model::Model;
use super::reachable;
use super::search::{self, GiveUp, Limits};
use super::window;

/// The bounds of one check. Every field is validated by [`CheckConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckConfig {
    /// Wall-clock budget for the whole check; partitions still running when it
    /// runs out end as [`Verdict::Unknown`].
    pub duration_max: Duration,
    /// Memory budget: the most (set, state) pairs one partition's search may
    /// cache before it ends as [`Verdict::Unknown`].
    pub cache_entries_max: usize,
    /// The most threads that check partitions at the same time.
    pub threads_max: usize,
    /// Whether to split the history with [`Model::partition`]; turning it off
    /// checks everything as one object (slower, same verdict).
    pub partition: bool,
    /// Whether to stop every other partition once one is found not
    /// linearizable (the overall verdict is then settled); the others end as
    /// unknown with [`GiveUp::Cancelled`]. Turn it off for a verdict on every
    /// partition.
    pub stop_on_first_violation: bool,
    /// Whether to refute, before searching, a partition in which an answer is
    /// given by no state its operations can reach in any order (a read of a
    /// value nobody wrote). Turning it off leaves every verdict the same and
    /// makes such refutations slower; tests turn it off to exercise the
    /// search alone.
    pub refute_unreachable_answers: bool,
    /// How many trial searches may narrow a violation down to its smallest
    /// window (see [`Counterexample::window`]), per failing partition; zero
    /// skips the narrowing and reports the operations around the dead end.
    /// A count rather than a time, so that reports are the same on every
    /// machine.
    pub window_trials_max: usize,
}

/// Upper bound on `threads_max`, to catch configuration mistakes.
pub const THREADS_MAX_LIMIT: usize = 1024;

impl Default for CheckConfig {
    fn default() -> Self {
        Self {
            duration_max: Duration::from_secs(60),
            // About 100 bytes per entry plus the states: a few hundred
            // megabytes per thread at most.
            cache_entries_max: 4_000_000,
            threads_max: std::thread::available_parallelism().map_or(1, |count| count.get()),
            partition: true,
            stop_on_first_violation: true,
            refute_unreachable_answers: true,
            window_trials_max: 100,
        }
    }
}

impl CheckConfig {
    /// Checks that every bound is in range.
    pub fn validate(&self) -> Result<(), CheckError> {
        if self.duration_max.is_zero() {
            return Err(CheckError::Config("duration_max must be positive".into()));
        }
        if self.cache_entries_max == 0 {
            return Err(CheckError::Config(
                "cache_entries_max must be positive".into(),
            ));
        }
        if self.threads_max == 0 || self.threads_max > THREADS_MAX_LIMIT {
            return Err(CheckError::Config(format!(
                "threads_max must be in 1..={THREADS_MAX_LIMIT}, not {}",
                self.threads_max
            )));
        }
        Ok(())
    }
}

/// The answer for one partition or for a whole history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Some order consistent with real time explains every result.
    Linearizable,
    /// No order does.
    NotLinearizable,
    /// The budget ran out before an answer.
    Unknown,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Verdict::Linearizable => "linearizable",
            Verdict::NotLinearizable => "not linearizable",
            Verdict::Unknown => "unknown",
        })
    }
}

/// The longest description of a state or an operation that reports keep;
/// longer ones are cut (a value built by thousands of appends is long).
pub const DESCRIPTION_LENGTH_MAX: usize = 300;

/// Cuts `text` to at most `length_max` bytes (at a character boundary),
/// marking the cut.
pub fn shorten(mut text: String, length_max: usize) -> String {
    if text.len() > length_max {
        let mut end = length_max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

/// How far the narrowing of a counterexample's window got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// A violation by itself (with every other operation's result unknown),
    /// and no operation of it can be spared.
    Minimal,
    /// A violation by itself, but the budget
    /// ([`CheckConfig::window_trials_max`]) ran out before it was minimal.
    Violation,
    /// The operations around the search's dead end: the budget ran out
    /// before anything smaller was shown to be a violation by itself.
    AroundDeadEnd,
}

/// One step of a linearization: an operation and the state it left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinearizationStep {
    /// Index of the operation in the checked slice.
    pub operation: usize,
    /// The model state right after it, described by [`Model::describe_state`].
    pub state: String,
}

/// Why a partition is not linearizable, in terms a reader can follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counterexample {
    /// How many operations the longest linearizable prefix the search found
    /// has.
    pub linearized_count: usize,
    /// The end of that prefix (its last [`STATES_KEPT_MAX`](super::STATES_KEPT_MAX)
    /// steps at most):
    /// operations in the order the search placed them, each with the state it
    /// left.
    pub linearized: Vec<LinearizationStep>,
    /// The operations that could be placed next in real time at that point,
    /// none of which the model accepts.
    pub unplaceable: Vec<usize>,
    /// The operation that completed before any of those could be placed (it
    /// is itself among them unless it was never callable); `None` only if the
    /// list ended, which a correct search never reports.
    pub blocking: Option<usize>,
    /// The smallest window of operations involved, in call order (see
    /// [`WindowKind`] for how sure that is): a set of
    /// operations whose recorded results already admit no linearization when
    /// every other operation of the partition is taken as unknown (it keeps
    /// its interval, but its result is unknown and it may not have happened
    /// at all). For a stale read it is typically the read and the one or two
    /// operations that show the value had changed.
    pub window: Vec<usize>,
    /// How far the narrowing of the window got.
    pub window_kind: WindowKind,
    /// Whether the blocking operation's answer is given by no state that the
    /// partition's operations can reach in any order (found before the
    /// search; see [`REACHABLE_STATES_MAX`](super::REACHABLE_STATES_MAX)).
    pub unreachable_answer: bool,
}

/// The result for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionReport {
    /// The partition key ([`Model::partition`]).
    pub key: u64,
    /// Indices of its operations in the checked slice, in call order.
    pub operations: Vec<usize>,
    /// Its verdict.
    pub verdict: Verdict,
    /// Why it is unknown, when it is.
    pub give_up: Option<GiveUp>,
    /// Why it is not linearizable, when it is not.
    pub counterexample: Option<Counterexample>,
    /// How long its search took.
    pub elapsed: Duration,
}

/// The result of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Not linearizable if any partition is not; otherwise unknown if any
    /// partition is unknown; otherwise linearizable.
    pub verdict: Verdict,
    /// One report per partition, ordered by key.
    pub partitions: Vec<PartitionReport>,
    /// Wall-clock time of the whole check.
    pub elapsed: Duration,
}

/// Checks `operations` against `model`.
///
/// Partitions are searched in parallel on up to `config.threads_max` threads,
/// largest first. Each one ends linearizable, not linearizable (with a
/// counterexample) or unknown (budget exhausted).
pub fn check<M: Model>(
    model: &M,
    operations: &[Operation<M::Input, M::Output>],
    config: &CheckConfig,
) -> Result<CheckReport, CheckError> {
    config.validate()?;
    let started = Instant::now();
    let deadline = started + config.duration_max;
    let mut groups: HashMap<u64, Vec<usize>> = HashMap::new();
    for (index, operation) in operations.iter().enumerate() {
        let key = if config.partition {
            model.partition(&operation.input)
        } else {
            0
        };
        groups.entry(key).or_default().push(index);
    }
    let mut groups: Vec<(u64, Vec<usize>)> = groups.into_iter().collect();
    // Largest first, so that the longest search starts first.
    groups.sort_by_key(|(key, members)| (std::cmp::Reverse(members.len()), *key));
    let stop = AtomicBool::new(false);
    let limits = Limits {
        deadline,
        cache_entries_max: config.cache_entries_max,
        stop: config.stop_on_first_violation.then_some(&stop),
    };
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<PartitionReport>> = Mutex::new(Vec::with_capacity(groups.len()));
    let threads = config.threads_max.min(groups.len()).max(1);
    let work = || {
        loop {
            let position = next.fetch_add(1, Ordering::Relaxed);
            let Some((key, members)) = groups.get(position) else {
                break;
            };
            let report = check_partition(model, operations, *key, members, &limits, config);
            if report.verdict == Verdict::NotLinearizable {
                stop.store(true, Ordering::Relaxed);
            }
            results
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(report);
        }
    };
    if threads == 1 {
        work();
    } else {
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(work);
            }
        });
    }
    let mut partitions = results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    partitions.sort_by_key(|partition| partition.key);
    assert_eq!(
        partitions.len(),
        groups.len(),
        "every partition is checked once"
    );
    let verdict = if partitions
        .iter()
        .any(|p| p.verdict == Verdict::NotLinearizable)
    {
        Verdict::NotLinearizable
    } else if partitions.iter().any(|p| p.verdict == Verdict::Unknown) {
        Verdict::Unknown
    } else {
        Verdict::Linearizable
    };
    Ok(CheckReport {
        verdict,
        partitions,
        elapsed: started.elapsed(),
    })
}

fn check_partition<M: Model>(
    model: &M,
    operations: &[Operation<M::Input, M::Output>],
    key: u64,
    members: &[usize],
    limits: &Limits<'_>,
    config: &CheckConfig,
) -> PartitionReport {
    let started = Instant::now();
    if limits.stop.is_some_and(|stop| stop.load(Ordering::Relaxed)) {
        return PartitionReport {
            key,
            operations: members.to_vec(),
            verdict: Verdict::Unknown,
            give_up: Some(GiveUp::Cancelled),
            counterexample: None,
            elapsed: Duration::ZERO,
        };
    }
    let mut members = members.to_vec();
    members.sort_by_key(|index| (operations[*index].call, *index));
    let view: Vec<&Operation<M::Input, M::Output>> =
        members.iter().map(|index| &operations[*index]).collect();
    let mut report = PartitionReport {
        key,
        operations: Vec::new(),
        verdict: Verdict::Linearizable,
        give_up: None,
        counterexample: None,
        elapsed: Duration::ZERO,
    };
    let impossible = if config.refute_unreachable_answers {
        reachable::impossible_answers(model, &view)
            .and_then(|impossible| impossible.first().copied())
    } else {
        None
    };
    let outcome = match impossible {
        Some(operation) => {
            search::Outcome::NotLinearizable(refute_answer(model, &view, operation, limits))
        }
        None => search::search(model, &view, limits),
    };
    match outcome {
        search::Outcome::Linearizable(_) => {}
        search::Outcome::Unknown(reason) => {
            report.verdict = Verdict::Unknown;
            report.give_up = Some(reason);
        }
        search::Outcome::NotLinearizable(deepest) => {
            report.verdict = Verdict::NotLinearizable;
            let mut found = counterexample(model, &view, &members, deepest, limits, config);
            found.unreachable_answer = impossible.is_some();
            report.counterexample = Some(found);
        }
    }
    report.operations = members;
    report.elapsed = started.elapsed();
    report
}

/// The most cache entries the search for a counterexample's prefix may use
/// when the verdict is already known (see [`refute_answer`]).
pub const COUNTEREXAMPLE_CACHE_ENTRIES_MAX: usize = 100_000;

/// The counterexample for `impossible`, an operation whose answer no
/// reachable state gives. The verdict is settled already; what is left is to
/// show a long linearizable prefix. The other operations are searched under a
/// small budget; if they have a linearization, its longest prefix made of
/// operations called before `impossible` completed is a linearizable prefix
/// of the whole partition after which `impossible` could go next, in time,
/// but fits no state. Otherwise the prefix is left empty.
fn refute_answer<M: Model>(
    model: &M,
    view: &[&Operation<M::Input, M::Output>],
    impossible: usize,
    limits: &Limits<'_>,
) -> search::Deepest<M::State> {
    let others: Vec<usize> = (0..view.len())
        .filter(|index| *index != impossible)
        .collect();
    let other_view: Vec<&Operation<M::Input, M::Output>> =
        others.iter().map(|index| view[*index]).collect();
    let other_limits = Limits {
        deadline: limits.deadline,
        cache_entries_max: limits
            .cache_entries_max
            .min(COUNTEREXAMPLE_CACHE_ENTRIES_MAX),
        stop: limits.stop,
    };
    let steps = match search::search(model, &other_view, &other_limits) {
        search::Outcome::Linearizable(steps) => {
            let end = view[impossible].completion;
            steps
                .into_iter()
                .map(|(operation, choice)| (others[operation as usize], choice))
                .take_while(|(operation, _)| view[*operation].call <= end)
                .map(|(operation, choice)| (operation as u32, choice))
                .collect()
        }
        search::Outcome::NotLinearizable(_) | search::Outcome::Unknown(_) => Vec::new(),
    };
    search::deepest_after(model, view, steps, vec![impossible], Some(impossible))
}

fn counterexample<M: Model>(
    model: &M,
    view: &[&Operation<M::Input, M::Output>],
    members: &[usize],
    deepest: search::Deepest<M::State>,
    limits: &Limits<'_>,
    config: &CheckConfig,
) -> Counterexample {
    let skipped = deepest.linearization.len() - deepest.states.len();
    let linearized: Vec<LinearizationStep> = deepest.linearization[skipped..]
        .iter()
        .zip(&deepest.states)
        .map(|(local, state)| LinearizationStep {
            operation: members[*local],
            state: shorten(model.describe_state(state), DESCRIPTION_LENGTH_MAX),
        })
        .collect();
    let mut involved: Vec<usize> = deepest.candidates.clone();
    involved.extend(deepest.blocking);
    let start = involved
        .iter()
        .map(|local| view[*local].call)
        .min()
        .unwrap_or(0);
    let end = deepest
        .blocking
        .map_or(u64::MAX, |local| view[local].completion);
    let mut placed = vec![false; view.len()];
    for local in &deepest.linearization {
        placed[*local] = true;
    }
    let mut window: Vec<usize> = (0..view.len())
        .filter(|local| {
            let operation = view[*local];
            !placed[*local] && operation.call <= end && operation.completion >= start
        })
        .collect();
    if let Some(last) = deepest.linearization.last() {
        window.push(*last);
    }
    window.sort_by_key(|local| (view[*local].call, *local));
    window.dedup();
    // The operations around the dead end are a first guess at the window.
    let window = window::smallest_window(model, view, &window, limits, config);
    Counterexample {
        linearized_count: deepest.linearization.len(),
        linearized,
        unplaceable: deepest
            .candidates
            .iter()
            .map(|local| members[*local])
            .collect(),
        blocking: deepest.blocking.map(|local| members[local]),
        window: window
            .operations
            .into_iter()
            .map(|local| members[local])
            .collect(),
        window_kind: window.kind,
        unreachable_answer: false,
    }
}
