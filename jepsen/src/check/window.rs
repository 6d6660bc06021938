//! The smallest window of operations involved in a violation.
//!
//! A violation's dead end (the longest prefix, the operations that cannot
//! follow it) is where the search got stuck, which is not always where the
//! mistake shows best. So the window is found by *relaxing* operations: a
//! relaxed operation keeps its interval but its result becomes unknown, and
//! it may not have happened at all. A relaxed history is linearizable
//! whenever the original is, so if the partition stays not linearizable with
//! a set of operations relaxed, the recorded results of the others already
//! admit no linearization. Operations are relaxed in halves, as in delta
//! debugging, and kept relaxed while the partition stays not linearizable;
//! what is left is the window, typically two to five operations close in
//! time (a failed cas 2->2 and then a read of 2 with nothing in between that
//! could write 2). No single operation of it can be relaxed, unless the
//! window's budget ran out first.

use std::time::Instant;

use super::checker::{CheckConfig, Verdict, WindowKind};
use super::history::Operation;
use super::model::Model;
use super::reachable;
use super::search::{self, Limits};

/// The most cache entries one trial of the window search may use: a trial
/// that needs more counts as linearizable, which keeps the operation in the
/// window (a larger window, never a wrong one).
pub const WINDOW_CACHE_ENTRIES_MAX: usize = 5_000;

/// The largest partition whose window is narrowed: every trial copies and
/// searches the whole partition, which is too slow beyond this.
pub const WINDOW_OPERATIONS_MAX: usize = 5_000;

/// The window found for a failing partition.
pub(crate) struct Window {
    /// Indices into the partition's operations, in call order.
    pub operations: Vec<usize>,
    /// How far the narrowing got.
    pub kind: WindowKind,
}

/// The verdict of `operations` with the operations flagged in `relaxed`
/// treated as unknown, under the window's limits.
fn verdict_relaxed<M: Model>(
    model: &M,
    operations: &[&Operation<M::Input, M::Output>],
    relaxed: &[bool],
    limits: &Limits<'_>,
    config: &CheckConfig,
) -> Verdict {
    let trial: Vec<Operation<M::Input, M::Output>> = operations
        .iter()
        .zip(relaxed)
        .map(|(operation, relaxed)| {
            if *relaxed {
                Operation {
                    process: operation.process,
                    input: operation.input.clone(),
                    output: None,
                    call: operation.call,
                    completion: operation.completion,
                }
            } else {
                (*operation).clone()
            }
        })
        .collect();
    let view: Vec<&Operation<M::Input, M::Output>> = trial.iter().collect();
    if config.refute_unreachable_answers
        && reachable::impossible_answers(model, &view).is_some_and(|found| !found.is_empty())
    {
        return Verdict::NotLinearizable;
    }
    match search::search(model, &view, limits) {
        search::Outcome::Linearizable(_) => Verdict::Linearizable,
        search::Outcome::NotLinearizable(_) => Verdict::NotLinearizable,
        search::Outcome::Unknown(_) => Verdict::Unknown,
    }
}

/// Finds the window of a partition that is not linearizable. `around` is a
/// first guess (the operations near the search's dead end): if relaxing
/// everything else keeps the violation, only `around` is narrowed further.
/// Each trial is a search under [`WINDOW_CACHE_ENTRIES_MAX`] entries, and
/// there are at most `config.window_trials_max` of them, so the window is the
/// same on every machine. If the budget runs out before the window is
/// minimal, the smaller of what is left and the guess is returned.
pub(crate) fn smallest_window<M: Model>(
    model: &M,
    operations: &[&Operation<M::Input, M::Output>],
    around: &[usize],
    limits: &Limits<'_>,
    config: &CheckConfig,
) -> Window {
    let guess = Window {
        operations: around.to_vec(),
        kind: WindowKind::AroundDeadEnd,
    };
    let limits = Limits {
        deadline: limits.deadline,
        cache_entries_max: limits.cache_entries_max.min(WINDOW_CACHE_ENTRIES_MAX),
        stop: None,
    };
    if operations.len() > WINDOW_OPERATIONS_MAX {
        return guess;
    }
    let mut trials_left = config.window_trials_max;
    let mut trial = |relaxed: &[bool]| {
        if trials_left == 0 || Instant::now() > limits.deadline {
            return None;
        }
        trials_left -= 1;
        Some(verdict_relaxed(model, operations, relaxed, &limits, config))
    };
    let unknown: Vec<bool> = operations
        .iter()
        .map(|operation| operation.output.is_none() && operation.completion == u64::MAX)
        .collect();
    let mut in_guess = vec![false; operations.len()];
    for index in around {
        in_guess[*index] = true;
    }
    let mut relaxed: Vec<bool> = (0..operations.len())
        .map(|index| unknown[index] || !in_guess[index])
        .collect();
    let candidates: Vec<usize> = match trial(&relaxed) {
        None => return guess,
        Some(Verdict::NotLinearizable) => (0..operations.len())
            .filter(|index| in_guess[*index] && !unknown[*index])
            .collect(),
        // Only what a trial refuted is known to be a violation: start again
        // from the whole partition, which the search refuted.
        Some(Verdict::Linearizable | Verdict::Unknown) => {
            relaxed.clone_from(&unknown);
            (0..operations.len())
                .filter(|index| !unknown[*index])
                .collect()
        }
    };
    // Chunks still to try relaxing, in call order; a chunk that cannot be
    // relaxed whole is split in two.
    let mut chunks: Vec<Vec<usize>> = vec![candidates];
    let mut minimal = true;
    while let Some(chunk) = chunks.pop() {
        for index in &chunk {
            relaxed[*index] = true;
        }
        let verdict = trial(&relaxed);
        if verdict == Some(Verdict::NotLinearizable) {
            continue;
        }
        for index in &chunk {
            relaxed[*index] = false;
        }
        match verdict {
            None => {
                minimal = false;
                break;
            }
            Some(Verdict::Unknown) => minimal = false,
            Some(_) => {}
        }
        if chunk.len() > 1 {
            let (first, second) = chunk.split_at(chunk.len() / 2);
            chunks.push(second.to_vec());
            chunks.push(first.to_vec());
        }
    }
    let mut window: Vec<usize> = (0..operations.len())
        .filter(|index| !relaxed[*index])
        .collect();
    window.sort_by_key(|index| (operations[*index].call, *index));
    if !minimal && window.len() > guess.operations.len() {
        return guess;
    }
    Window {
        operations: window,
        kind: if minimal {
            WindowKind::Minimal
        } else {
            WindowKind::Violation
        },
    }
}
