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
        self.hash
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
    words: Box<[u64]>,
    state: S,
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
        CacheKey {
            offset: offset as u32,
            words: self.words[offset..end].into(),
            state,
        }
    }
}

/// Bounds on one search.
pub(crate) struct Limits {
    /// The search gives up (Unknown) after this instant.
    pub deadline: Instant,
    /// The search gives up (Unknown) when its cache holds more entries.
    pub cache_entries_max: usize,
}

/// Why a search gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// The time budget ran out.
    Deadline,
    /// The cache reached its size budget.
    CacheFull,
}

/// What one search found.
pub(crate) enum Outcome<S> {
    Linearizable,
    /// No order works; `depth_max` is the most operations ever linearized.
    NotLinearizable {
        depth_max: usize,
    },
    /// The search reached the requested depth (see [`search`]).
    Deepest(Deepest<S>),
    Unknown(GiveUp),
}

/// The deepest point of a failed search.
pub(crate) struct Deepest<S> {
    /// The linearized operations (indices into the partition), in order, with
    /// the state after each.
    pub linearization: Vec<(usize, S)>,
    /// Operations that were callable at that point and that the model refused.
    pub candidates: Vec<usize>,
    /// The operation whose completion the search could not get past.
    pub blocking: Option<usize>,
}

struct Frame<S> {
    operation: u32,
    state_before: S,
    /// Other states the operation could have led to (nondeterministic
    /// models, unknown outputs), still to try.
    alternatives: Vec<S>,
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

/// How often (in loop iterations) the search looks at the clock.
const ITERATIONS_PER_CLOCK_READ: u64 = 1024;

/// Searches for a linearization of `operations` (one partition).
///
/// With `stop_at_depth`, the search stops as soon as it has linearized that
/// many operations and returns the state of that moment; the search is
/// deterministic, so a second run with the first run's `depth_max` recovers
/// the deepest point without the first run paying for snapshots.
pub(crate) fn search<M: Model>(
    model: &M,
    operations: &[&Operation<M::Input, M::Output>],
    limits: &Limits,
    stop_at_depth: Option<usize>,
) -> Outcome<M::State> {
    let count = operations.len();
    assert!(
        count < (u32::MAX / 2) as usize,
        "a partition has fewer than 2^31 operations"
    );
    let mut list = EntryList::new(operations);
    let mut linearized = Bitset::new(count);
    let mut cache: HashSet<CacheKey<M::State>, FastBuildHasher> = HashSet::default();
    let mut stack: Vec<Frame<M::State>> = Vec::with_capacity(count);
    let mut successors: Vec<M::State> = Vec::new();
    let mut state = model.init();
    let mut depth_max = 0;
    let mut node = list.first();
    let mut iterations: u64 = 0;
    if stop_at_depth == Some(0) {
        return Outcome::Deepest(deepest(&list, &stack, &state));
    }
    loop {
        if list.first() == list.head {
            return Outcome::Linearizable;
        }
        iterations += 1;
        if iterations.is_multiple_of(ITERATIONS_PER_CLOCK_READ) && Instant::now() > limits.deadline
        {
            return Outcome::Unknown(GiveUp::Deadline);
        }
        if node != list.head && node.is_multiple_of(2) {
            let index = node / 2;
            let operation = operations[index as usize];
            successors.clear();
            model.step(
                &state,
                &operation.input,
                operation.output.as_ref(),
                &mut successors,
            );
            if operation.output.is_none() && !successors.contains(&state) {
                successors.push(state.clone());
            }
            linearized.set(index as usize);
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
            let alternatives: Vec<M::State> = successors.drain(position + 1..).collect();
            let next_state = successors.swap_remove(position);
            let state_before = std::mem::replace(&mut state, next_state);
            stack.push(Frame {
                operation: index,
                state_before,
                alternatives,
            });
            list.lift(index);
            if stack.len() > depth_max {
                depth_max = stack.len();
                if stop_at_depth == Some(depth_max) {
                    return Outcome::Deepest(deepest(&list, &stack, &state));
                }
            }
            node = list.first();
        } else {
            let Some(frame) = stack.last_mut() else {
                return Outcome::NotLinearizable { depth_max };
            };
            let mut adopted = false;
            while let Some(alternative) = frame.alternatives.pop() {
                if cache.insert(linearized.key(alternative.clone())) {
                    state = alternative;
                    adopted = true;
                    break;
                }
            }
            if adopted {
                node = list.first();
                continue;
            }
            let Some(frame) = stack.pop() else {
                return Outcome::NotLinearizable { depth_max };
            };
            state = frame.state_before;
            linearized.clear(frame.operation as usize);
            list.unlift(frame.operation);
            node = list.next[2 * frame.operation as usize];
        }
    }
}

fn deepest<S: Clone>(list: &EntryList, stack: &[Frame<S>], state: &S) -> Deepest<S> {
    let mut linearization = Vec::with_capacity(stack.len());
    for (position, frame) in stack.iter().enumerate() {
        let after = stack
            .get(position + 1)
            .map_or(state, |next| &next.state_before);
        linearization.push((frame.operation as usize, after.clone()));
    }
    let mut candidates = Vec::new();
    let mut node = list.first();
    while node != list.head && node.is_multiple_of(2) {
        candidates.push(node as usize / 2);
        node = list.next[node as usize];
    }
    let blocking = (node != list.head).then_some(node as usize / 2);
    Deepest {
        linearization,
        candidates,
        blocking,
    }
}

/// Hashes a value with the search's hasher (used by models that derive a
/// partition from a key).
pub(crate) fn fast_hash<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut hasher = FastHasher::default();
    value.hash(&mut hasher);
    hasher.finish()
}
