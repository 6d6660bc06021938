//! A check before the search: answers that no reachable state gives.
//!
//! The states reachable from the initial one by the partition's operations,
//! applied in any order and any number of times, over-approximate the states
//! of every linearization. A completed operation whose known answer is legal
//! in none of them can be placed in no linearization, so the partition is
//! refuted without searching. This matters most where the search is weakest:
//! a read of a value nobody wrote, among many operations with unknown
//! outcomes, would otherwise make the search try every placement of those
//! before giving up. Objects with few states (a register) close quickly; for
//! the others (strings built by appends) the closure exceeds its bound after
//! a few hundred steps and the check says nothing.

use std::collections::HashSet;

use super::history::Operation;
use super::model::Model;
use super::search::{FastBuildHasher, successors_of};

/// The most distinct states the closure collects before giving up.
pub const REACHABLE_STATES_MAX: usize = 256;

/// The most model steps the closure takes before giving up, so that the check
/// costs at most a millisecond or two even on a partition of many thousands
/// of operations.
pub const REACHABLE_STEPS_MAX: usize = 1 << 16;

/// The operations of `operations` (indices into it) whose known answer no
/// reachable state accepts, earliest completion first; `None` when the
/// closure exceeds [`REACHABLE_STATES_MAX`] states or [`REACHABLE_STEPS_MAX`]
/// steps (nothing is known then).
pub(crate) fn impossible_answers<M: Model>(
    model: &M,
    operations: &[&Operation<M::Input, M::Output>],
) -> Option<Vec<usize>> {
    let mut seen: HashSet<M::State, FastBuildHasher> = HashSet::default();
    let mut pending = vec![model.init()];
    seen.insert(model.init());
    let mut successors = Vec::new();
    let mut steps = 0usize;
    while let Some(state) = pending.pop() {
        steps += operations.len();
        if steps > REACHABLE_STEPS_MAX {
            return None;
        }
        for operation in operations {
            successors_of(model, &state, operation, &mut successors);
            for successor in successors.drain(..) {
                if seen.len() >= REACHABLE_STATES_MAX && !seen.contains(&successor) {
                    return None;
                }
                if seen.insert(successor.clone()) {
                    pending.push(successor);
                }
            }
        }
    }
    let mut impossible: Vec<usize> = (0..operations.len())
        .filter(|index| {
            let operation = operations[*index];
            operation.output.is_some()
                && seen.iter().all(|state| {
                    successors_of(model, state, operation, &mut successors);
                    successors.is_empty()
                })
        })
        .collect();
    impossible.sort_by_key(|index| (operations[*index].completion, *index));
    Some(impossible)
}
