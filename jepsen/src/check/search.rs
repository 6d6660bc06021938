//! The search: Wing & Gong's algorithm with Lowe's memoization.
//!
//! Calls and completions of one partition are laid out in a doubly-linked
//! list ordered by time. The search walks the list from the head: at a call it
//! tries to *linearize* that operation now (apply it to the model); if the
//! model accepts and the pair (set of linearized operations, new state) has
//! not been seen before, the operation is lifted out of the list and the walk
//! restarts from the head. Reaching a completion means the operation it ends
//! had to be linearized already: the search backtracks, undoing the last
//! choice. The cache of seen (set, state) pairs is what makes this fast in
//! practice (Lowe, "Testing for linearizability", 2017): two different orders
//! that lead to the same set and state need to be explored only once.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::history::Operation;
use super::model::Model;

/// A small, fast, non-cryptographic hasher (the multiply-rotate scheme of
/// rustc's FxHash). The cache keys are produced by the search itself, so
/// there is no adversary to defend against.
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn finish(&self) -> u64 {
        // The multiplication leaves its entropy in the high bits, while the
        // hash table picks buckets with the low ones: rotate them down.
        self.hash.rotate_left(26)
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    #[inline]
    fn write_u32(&mut self, value: u32) {
        self.add(u64::from(value));
    }

    #[inline]
    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    #[inline]
    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }
}

pub(crate) type FastBuildHasher = BuildHasherDefault<FastHasher>;

/// One cache entry: the set of linearized operations and the model state.
///
/// The set is stored trimmed: `offset` leading words that are all ones are
/// left out, and so are trailing words that are all zeros. Operations are
/// mostly linearized in time order, so this keeps a key a few words long even
/// for partitions of many thousands of operations; the form is canonical, so
/// equality of keys is equality of sets.
#[derive(PartialEq, Eq, Hash)]
struct CacheKey<S> {
    offset: u32,
    words: Words,
    state: S,
}

/// How many words a key keeps inline, without a heap allocation.
const WORDS_INLINE_MAX: usize = 3;

/// The words of a trimmed set: inline when short (the usual case), on the
/// heap otherwise. Which variant is used depends only on the length, and
/// unused inline words are zero, so the form stays canonical.
#[derive(PartialEq, Eq, Hash)]
enum Words {
    Inline([u64; WORDS_INLINE_MAX]),
    Heap(Box<[u64]>),
}

/// The set of linearized operations, one bit per operation.
struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    fn new(bits: usize) -> Self {
        Self {
            words: vec![0; bits.div_ceil(64)],
        }
    }

    fn set(&mut self, bit: usize) {
        self.words[bit / 64] |= 1 << (bit % 64);
    }

    fn clear(&mut self, bit: usize) {
        self.words[bit / 64] &= !(1 << (bit % 64));
    }

    fn key<S>(&self, state: S) -> CacheKey<S> {
        let offset = self
            .words
            .iter()
            .take_while(|word| **word == u64::MAX)
            .count();
        let end = self
            .words
            .iter()
            .rposition(|word| *word != 0)
            .map_or(offset, |last| last + 1);
        let end = end.max(offset);
        let slice = &self.words[offset..end];
        let words = if slice.len() <= WORDS_INLINE_MAX {
            let mut inline = [0; WORDS_INLINE_MAX];
            inline[..slice.len()].copy_from_slice(slice);
            Words::Inline(inline)
        } else {
            Words::Heap(slice.into())
        };
        CacheKey {
            offset: offset as u32,
            words,
            state,
        }
    }
}

/// Bounds on one search.
pub(crate) struct Limits<'a> {
    /// The search gives up (Unknown) after this instant.
    pub deadline: Instant,
    /// The search gives up (Unknown) when its cache holds more entries.
    pub cache_entries_max: usize,
    /// Set by another partition's search that found a violation, when the
    /// check stops at the first one.
    pub stop: Option<&'a AtomicBool>,
}

/// Why a search gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// The time budget ran out.
    Deadline,
    /// The cache reached its size budget.
    CacheFull,
    /// Another partition was found not linearizable first, which settles the
    /// overall verdict, and the check stops at the first violation.
    Cancelled,
}

impl std::fmt::Display for GiveUp {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            GiveUp::Deadline => "the time budget ran out",
            GiveUp::CacheFull => "the cache reached its size budget",
            GiveUp::Cancelled => "not finished: another partition already failed",
        })
    }
}

/// What one search found.
pub(crate) enum Outcome<S> {
    Linearizable,
    /// No order works; the deepest point the search reached.
    NotLinearizable(Deepest<S>),
    Unknown(GiveUp),
}

/// The deepest point of a failed search.
pub(crate) struct Deepest<S> {
    /// The linearized operations (indices into the partition), in order.
    pub linearization: Vec<usize>,
    /// The states after the last `states.len()` of them (at most
    /// [`STATES_KEPT_MAX`]): a long prefix of large states would not fit in
    /// memory, and a reader looks at the end.
    pub states: Vec<S>,
    /// Operations that were callable at that point and that the model refused.
    pub candidates: Vec<usize>,
    /// The operation whose completion the search could not get past.
    pub blocking: Option<usize>,
}

struct Frame<S> {
    operation: u32,
    /// Which successor of the operation's step the search took.
    choice: u32,
    state_before: S,
    /// Whether the operation was picked in the pass over operations with
    /// unknown outcomes (see [`search`]).
    unknown_pass: bool,
    /// Whether the operation is a read that was placed as soon as it was
    /// legal: its failure settles the level below it too.
    forced: bool,
    /// Other states the operation could have led to (nondeterministic
    /// models, unknown outputs), still to try, with their successor index.
    alternatives: Vec<(u32, S)>,
}

/// The deepest dead end seen so far, kept up to date incrementally: only the
/// part of the stack below `low_water` is known to be unchanged since the
/// last record, so a new record copies only what is above it. Recording
/// therefore costs time proportional to the search's own moves.
struct Record {
    steps: Vec<(u32, u32)>,
    low_water: usize,
    candidates: Vec<usize>,
    blocking: Option<usize>,
}

/// The time-ordered list of calls and completions. Node `2 * op` is the call
/// of operation `op`, node `2 * op + 1` its completion, and node `2 * n` the
/// head sentinel.
struct EntryList {
    next: Vec<u32>,
    previous: Vec<u32>,
    head: u32,
}

impl EntryList {
    fn new<I, O>(operations: &[&Operation<I, O>]) -> Self {
        let count = operations.len();
        let mut nodes: Vec<(u64, u8, u32)> = Vec::with_capacity(2 * count);
        for (index, operation) in operations.iter().enumerate() {
            assert!(
                operation.call <= operation.completion,
                "completion before call"
            );
            // At equal times a call sorts before a completion: the two
            // operations are then taken as concurrent, which never produces a
            // false alarm.
            nodes.push((operation.call, 0, 2 * index as u32));
            nodes.push((operation.completion, 1, 2 * index as u32 + 1));
        }
        nodes.sort_unstable();
        let head = 2 * count as u32;
        let mut next = vec![head; 2 * count + 1];
        let mut previous = vec![head; 2 * count + 1];
        let mut last = head;
        for &(_, _, node) in &nodes {
            next[last as usize] = node;
            previous[node as usize] = last;
            last = node;
        }
        next[last as usize] = head;
        previous[head as usize] = last;
        Self {
            next,
            previous,
            head,
        }
    }

    fn unlink(&mut self, node: u32) {
        let (before, after) = (self.previous[node as usize], self.next[node as usize]);
        self.next[before as usize] = after;
        self.previous[after as usize] = before;
    }

    fn relink(&mut self, node: u32) {
        let (before, after) = (self.previous[node as usize], self.next[node as usize]);
        self.next[before as usize] = node;
        self.previous[after as usize] = node;
    }

    fn lift(&mut self, operation: u32) {
        self.unlink(2 * operation);
        self.unlink(2 * operation + 1);
    }

    /// Undoes [`lift`]; lifts must be undone in reverse order.
    fn unlift(&mut self, operation: u32) {
        self.relink(2 * operation + 1);
        self.relink(2 * operation);
    }

    fn first(&self) -> u32 {
        self.next[self.head as usize]
    }
}

/// How many states of the longest linearizable prefix a counterexample keeps.
pub const STATES_KEPT_MAX: usize = 1_000;

/// How often (in loop iterations) the search looks at the clock.
const ITERATIONS_PER_CLOCK_READ: u64 = 1024;

/// Whether an operation may be left out of a linearization altogether: its
/// outcome and its completion are unknown, so it may not have happened, and
/// if it did, nothing forces it to have happened by any time.
fn is_optional<I, O>(operation: &Operation<I, O>) -> bool {
    operation.output.is_none() && operation.completion == u64::MAX
}

/// The states `operation` can lead to from `state`, as the search tries them.
fn successors_of<M: Model>(
    model: &M,
    state: &M::State,
    operation: &Operation<M::Input, M::Output>,
    successors: &mut Vec<M::State>,
) {
    successors.clear();
    model.step(
        state,
        &operation.input,
        operation.output.as_ref(),
        successors,
    );
    if is_optional(operation) {
        // An optional operation is placed only where it changes the state:
        // placing it where it changes nothing is the same as leaving it out,
        // which the search does anyway.
        successors.retain(|successor| successor != state);
    } else if operation.output.is_none() && !successors.contains(state) {
        // An unknown outcome with a known completion: the operation may
        // also not have happened.
        successors.push(state.clone());
    }
}

/// Searches for a linearization of `operations` (one partition).
///
/// Operations whose outcome and completion are unknown are *optional*: the
/// search succeeds once all the others are placed. At each depth it first
/// tries the callable required operations, in time order, and only then the
/// optional ones: those can wait until something needs their effect, so
/// trying them last finds a linearization sooner. Both passes together try
/// every candidate, so the search stays complete. A read that is legal is
/// placed at once and no other candidate is tried at that depth (see
/// [`Model::is_read_only`]), and the deepest dead end is recorded on the way
/// for the counterexample.
pub(crate) fn search<M: Model>(
    model: &M,
    operations: &[&Operation<M::Input, M::Output>],
    limits: &Limits<'_>,
) -> Outcome<M::State> {
    let count = operations.len();
    assert!(
        count < (u32::MAX / 2) as usize,
        "a partition has fewer than 2^31 operations"
    );
    let optional: Vec<bool> = operations
        .iter()
        .map(|operation| is_optional(operation))
        .collect();
    let any_optional = optional.iter().any(|flag| *flag);
    let read_only: Vec<bool> = operations
        .iter()
        .map(|operation| {
            operation
                .output
                .as_ref()
                .is_some_and(|output| model.is_read_only(&operation.input, output))
        })
        .collect();
    // Set when the current configuration is known to fail without looking
    // further: the search backtracks at once.
    let mut settled = false;
    // The search succeeds once every operation that must be placed is.
    let mut required_remaining = optional.iter().filter(|flag| !**flag).count();
    let mut list = EntryList::new(operations);
    let mut linearized = Bitset::new(count);
    let mut cache: HashSet<CacheKey<M::State>, FastBuildHasher> = HashSet::default();
    let mut stack: Vec<Frame<M::State>> = Vec::with_capacity(count);
    let mut successors: Vec<M::State> = Vec::new();
    let mut state = model.init();
    let mut record = Record {
        steps: Vec::new(),
        low_water: 0,
        candidates: Vec::new(),
        blocking: None,
    };
    let mut recorded = false;
    let mut unknown_pass = false;
    let mut node = list.first();
    let mut iterations: u64 = 0;
    loop {
        if required_remaining == 0 {
            return Outcome::Linearizable;
        }
        iterations += 1;
        if iterations.is_multiple_of(ITERATIONS_PER_CLOCK_READ) {
            if Instant::now() > limits.deadline {
                return Outcome::Unknown(GiveUp::Deadline);
            }
            if limits.stop.is_some_and(|stop| stop.load(Ordering::Relaxed)) {
                return Outcome::Unknown(GiveUp::Cancelled);
            }
        }
        if !settled && node != list.head && node.is_multiple_of(2) {
            let index = node / 2;
            if optional[index as usize] != unknown_pass {
                node = list.next[node as usize];
                continue;
            }
            let operation = operations[index as usize];
            successors_of(model, &state, operation, &mut successors);
            linearized.set(index as usize);
            if read_only[index as usize] && successors.len() == 1 {
                // A legal read goes first (see `Model::is_read_only`); if the
                // configuration after it was seen before, it failed then, and
                // so does this one.
                let Some(next_state) = successors.pop() else {
                    continue;
                };
                if !cache.insert(linearized.key(next_state.clone())) {
                    linearized.clear(index as usize);
                    settled = true;
                    continue;
                }
                let state_before = std::mem::replace(&mut state, next_state);
                stack.push(Frame {
                    operation: index,
                    choice: 0,
                    state_before,
                    unknown_pass,
                    forced: true,
                    alternatives: Vec::new(),
                });
                list.lift(index);
                required_remaining -= 1;
                unknown_pass = false;
                node = list.first();
                continue;
            }
            let chosen = successors
                .iter()
                .position(|successor| cache.insert(linearized.key(successor.clone())));
            let Some(position) = chosen else {
                linearized.clear(index as usize);
                node = list.next[node as usize];
                continue;
            };
            if cache.len() > limits.cache_entries_max {
                return Outcome::Unknown(GiveUp::CacheFull);
            }
            // Deterministic models leave no alternatives: skip the allocation.
            let alternatives: Vec<(u32, M::State)> = if position + 1 == successors.len() {
                Vec::new()
            } else {
                let first = position as u32 + 1;
                successors
                    .drain(position + 1..)
                    .enumerate()
                    .map(|(offset, successor)| (first + offset as u32, successor))
                    .collect()
            };
            let next_state = successors.swap_remove(position);
            let state_before = std::mem::replace(&mut state, next_state);
            stack.push(Frame {
                operation: index,
                choice: position as u32,
                state_before,
                unknown_pass,
                forced: false,
                alternatives,
            });
            list.lift(index);
            if !optional[index as usize] {
                required_remaining -= 1;
            }
            unknown_pass = false;
            node = list.first();
            continue;
        }
        // A dead end: a completion (or the end of the list) was reached, or
        // the configuration is settled.
        if !settled && !unknown_pass && any_optional {
            unknown_pass = true;
            node = list.first();
            continue;
        }
        settled = false;
        if !recorded || stack.len() > record.steps.len() {
            update_record(&mut record, &stack, &list);
            recorded = true;
        }
        let Some(frame) = stack.last_mut() else {
            return Outcome::NotLinearizable(replay(model, operations, record));
        };
        let mut adopted = false;
        while let Some((choice, alternative)) = frame.alternatives.pop() {
            if cache.insert(linearized.key(alternative.clone())) {
                state = alternative;
                frame.choice = choice;
                adopted = true;
                break;
            }
        }
        if adopted {
            record.low_water = record.low_water.min(stack.len() - 1);
            unknown_pass = false;
            node = list.first();
            continue;
        }
        let Some(frame) = stack.pop() else {
            return Outcome::NotLinearizable(replay(model, operations, record));
        };
        record.low_water = record.low_water.min(stack.len());
        state = frame.state_before;
        unknown_pass = frame.unknown_pass;
        linearized.clear(frame.operation as usize);
        list.unlift(frame.operation);
        if !optional[frame.operation as usize] {
            required_remaining += 1;
        }
        settled = frame.forced;
        node = list.next[2 * frame.operation as usize];
    }
}

fn update_record<S>(record: &mut Record, stack: &[Frame<S>], list: &EntryList) {
    let keep = record.low_water.min(record.steps.len());
    record.steps.truncate(keep);
    record.steps.extend(
        stack[keep..]
            .iter()
            .map(|frame| (frame.operation, frame.choice)),
    );
    record.low_water = stack.len();
    record.candidates.clear();
    let mut node = list.first();
    while node != list.head && node.is_multiple_of(2) {
        record.candidates.push(node as usize / 2);
        node = list.next[node as usize];
    }
    record.blocking = (node != list.head).then_some(node as usize / 2);
}

/// Rebuilds the states of the recorded linearization by running the model
/// along it again, with the same successor choices.
fn replay<M: Model>(
    model: &M,
    operations: &[&Operation<M::Input, M::Output>],
    record: Record,
) -> Deepest<M::State> {
    let mut state = model.init();
    let mut successors = Vec::new();
    let mut linearization = Vec::with_capacity(record.steps.len());
    let mut states = Vec::new();
    let first_kept = record.steps.len().saturating_sub(STATES_KEPT_MAX);
    for (step, (operation, choice)) in record.steps.into_iter().enumerate() {
        successors_of(
            model,
            &state,
            operations[operation as usize],
            &mut successors,
        );
        assert!(
            (choice as usize) < successors.len(),
            "a replayed step has the recorded successor"
        );
        state = successors.swap_remove(choice as usize);
        linearization.push(operation as usize);
        if step >= first_kept {
            states.push(state.clone());
        }
    }
    Deepest {
        linearization,
        states,
        candidates: record.candidates,
        blocking: record.blocking,
    }
}

/// Hashes a value with the search's hasher (used by models that derive a
/// partition from a key).
pub(crate) fn fast_hash<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut hasher = FastHasher::default();
    value.hash(&mut hasher);
    hasher.finish()
}
