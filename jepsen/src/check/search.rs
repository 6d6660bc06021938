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

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
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

    fn contains(&self, bit: usize) -> bool {
        self.words[bit / 64] & (1 << (bit % 64)) != 0
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
    /// The linearization found: each operation with the successor taken.
    Linearizable(Vec<(u32, u32)>),
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
    /// Where the operation is in its configuration's candidate list, so that
    /// backtracking goes on with the next candidate.
    position: u32,
    state_before: S,
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
pub(crate) fn successors_of<M: Model>(
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
/// At each configuration (set of placed operations, model state) the
/// candidates are the operations called before the first completion still in
/// the list. A candidate read that is legal is placed at once and no other
/// candidate is tried there (see [`Model::is_read_only`]). Otherwise the
/// candidates are tried in order of completion: the operation that must be
/// finished soonest is the likeliest to come first, and the ones whose
/// completion is unknown come last, so a wrong guess about a long operation
/// is not carried through the rest of the history.
///
/// Operations whose outcome and completion are unknown are *optional*: the
/// search succeeds once all the others are placed. Two rules keep them from
/// multiplying the configurations: an optional operation is tried only if
/// every earlier optional operation with an equal input is already placed
/// (equal unknown operations are interchangeable, so only the first of a
/// class needs trying), and a configuration is skipped when one with the same
/// required operations and state but a subset of its optional operations was
/// seen (see [`Cache`]). The deepest dead end is recorded on the way for the
/// counterexample.
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
    let facts = Facts::new(model, operations);
    // The search succeeds once every operation that must be placed is.
    let mut required_remaining = facts
        .optional_slot
        .iter()
        .filter(|slot| slot.is_none())
        .count();
    let mut list = EntryList::new(operations);
    // Bits of optional operations stay set in `linearized`, so that the
    // trimmed keys stay short; which ones are placed is `placed_optional`.
    let mut linearized = Bitset::new(count);
    for (index, slot) in facts.optional_slot.iter().enumerate() {
        if slot.is_some() {
            linearized.set(index);
        }
    }
    let mut placed_optional = Bitset::new(facts.optional_count);
    let mut cache: Cache<M::State> = Cache::new(facts.optional_count);
    let mut stack: Vec<Frame<M::State>> = Vec::with_capacity(count);
    // The candidate lists of the configurations on the current path, one
    // segment per configuration, starting at `segments[level]`.
    let mut candidates: Vec<u32> = Vec::new();
    let mut segments: Vec<u32> = Vec::with_capacity(count + 1);
    let mut successors: Vec<M::State> = Vec::new();
    let mut state = model.init();
    let mut record = Record {
        steps: Vec::new(),
        low_water: 0,
        candidates: Vec::new(),
        blocking: None,
    };
    let mut recorded = false;
    // Every reset before this position of `facts.resets` is placed.
    let mut reset_cursor = 0usize;
    let mut action = Action::Enter;
    let mut iterations: u64 = 0;
    loop {
        iterations += 1;
        if iterations.is_multiple_of(ITERATIONS_PER_CLOCK_READ) {
            if Instant::now() > limits.deadline {
                return Outcome::Unknown(GiveUp::Deadline);
            }
            if limits.stop.is_some_and(|stop| stop.load(Ordering::Relaxed)) {
                return Outcome::Unknown(GiveUp::Cancelled);
            }
        }
        match action {
            Action::Enter => {
                if required_remaining == 0 {
                    return Outcome::Linearizable(
                        stack
                            .iter()
                            .map(|frame| (frame.operation, frame.choice))
                            .collect(),
                    );
                }
                let start = candidates.len();
                segments.push(start as u32);
                let mut node = list.first();
                while node != list.head && node.is_multiple_of(2) {
                    candidates.push(node / 2);
                    node = list.next[node as usize];
                }
                // Operations are numbered in call order, so ties keep it.
                candidates[start..]
                    .sort_unstable_by_key(|index| (operations[*index as usize].completion, *index));
                action = Action::Scan(start as u32);
                // A legal read goes first (see `Model::is_read_only`); if the
                // configuration after it was seen before, it failed then (or
                // is being explored above), and so does this one.
                for (offset, index) in candidates[start..].iter().enumerate() {
                    let (position, index) = (start + offset, *index as usize);
                    if !facts.read_only[index] {
                        continue;
                    }
                    successors_of(model, &state, operations[index], &mut successors);
                    let Some(next_state) = successors.pop() else {
                        if facts.lookahead {
                            // Every reset called before the cursor is placed.
                            while facts.resets.get(reset_cursor).is_some_and(|reset| {
                                is_placed(&facts, &linearized, &placed_optional, *reset as usize)
                            }) {
                                reset_cursor += 1;
                            }
                            let reset_may_come_first =
                                facts.resets.get(reset_cursor).is_some_and(|reset| {
                                    operations[*reset as usize].call <= operations[index].completion
                                });
                            let read = operations[index];
                            let dead = !reset_may_come_first
                                && read.output.as_ref().is_some_and(|output| {
                                    !model.may_extend_to(&state, &read.input, output)
                                });
                            if dead {
                                action = Action::Backtrack;
                                break;
                            }
                        }
                        continue;
                    };
                    linearized.set(index);
                    if !cache.insert(linearized.key(next_state.clone()), &placed_optional) {
                        linearized.clear(index);
                        action = Action::Backtrack;
                        break;
                    }
                    let state_before = std::mem::replace(&mut state, next_state);
                    stack.push(Frame {
                        operation: index as u32,
                        choice: 0,
                        position: position as u32,
                        state_before,
                        forced: true,
                        alternatives: Vec::new(),
                    });
                    list.lift(index as u32);
                    required_remaining -= 1;
                    action = Action::Enter;
                    break;
                }
            }
            Action::Scan(from) => {
                action = Action::Backtrack;
                let from = from as usize;
                for (offset, index) in candidates[from..].iter().enumerate() {
                    let (position, index) = (from + offset, *index as usize);
                    // Reads were tried on entry: they are not legal here.
                    if facts.read_only[index] {
                        continue;
                    }
                    let slot = facts.optional_slot[index];
                    if let Some(slot) = slot {
                        let earlier_unplaced = facts.previous_equal[slot as usize]
                            .is_some_and(|earlier| !placed_optional.contains(earlier as usize));
                        if earlier_unplaced {
                            continue;
                        }
                    }
                    successors_of(model, &state, operations[index], &mut successors);
                    match slot {
                        Some(slot) => placed_optional.set(slot as usize),
                        None => linearized.set(index),
                    }
                    let chosen = successors.iter().position(|successor| {
                        cache.insert(linearized.key(successor.clone()), &placed_optional)
                    });
                    let Some(choice) = chosen else {
                        match slot {
                            Some(slot) => placed_optional.clear(slot as usize),
                            None => linearized.clear(index),
                        }
                        continue;
                    };
                    if cache.entries > limits.cache_entries_max {
                        return Outcome::Unknown(GiveUp::CacheFull);
                    }
                    // Deterministic models leave no alternatives: skip the
                    // allocation.
                    let alternatives: Vec<(u32, M::State)> = if choice + 1 == successors.len() {
                        Vec::new()
                    } else {
                        let first = choice as u32 + 1;
                        successors
                            .drain(choice + 1..)
                            .enumerate()
                            .map(|(offset, successor)| (first + offset as u32, successor))
                            .collect()
                    };
                    let next_state = successors.swap_remove(choice);
                    let state_before = std::mem::replace(&mut state, next_state);
                    stack.push(Frame {
                        operation: index as u32,
                        choice: choice as u32,
                        position: position as u32,
                        state_before,
                        forced: false,
                        alternatives,
                    });
                    list.lift(index as u32);
                    if slot.is_none() {
                        required_remaining -= 1;
                    }
                    action = Action::Enter;
                    break;
                }
            }
            Action::Backtrack => {
                if !recorded || stack.len() > record.steps.len() {
                    update_record(&mut record, &stack, &list);
                    recorded = true;
                }
                // This configuration is done with: drop its candidates.
                // Every configuration entered pushed a segment.
                let start = segments.pop();
                assert!(start.is_some(), "a backtrack has a configuration to leave");
                candidates.truncate(start.unwrap_or(0) as usize);
                let Some(frame) = stack.last_mut() else {
                    return Outcome::NotLinearizable(replay(model, operations, record));
                };
                let slot = facts.optional_slot[frame.operation as usize];
                let mut adopted = false;
                while let Some((choice, alternative)) = frame.alternatives.pop() {
                    if cache.insert(linearized.key(alternative.clone()), &placed_optional) {
                        state = alternative;
                        frame.choice = choice;
                        adopted = true;
                        break;
                    }
                }
                if adopted {
                    record.low_water = record.low_water.min(stack.len() - 1);
                    action = Action::Enter;
                    continue;
                }
                let Some(frame) = stack.pop() else {
                    return Outcome::NotLinearizable(replay(model, operations, record));
                };
                record.low_water = record.low_water.min(stack.len());
                state = frame.state_before;
                match slot {
                    Some(slot) => placed_optional.clear(slot as usize),
                    None => {
                        linearized.clear(frame.operation as usize);
                        required_remaining += 1;
                    }
                }
                if let Some(position) = facts.reset_position[frame.operation as usize] {
                    reset_cursor = reset_cursor.min(position as usize);
                }
                list.unlift(frame.operation);
                action = if frame.forced {
                    Action::Backtrack
                } else {
                    Action::Scan(frame.position + 1)
                };
            }
        }
    }
}

/// Where the search loop goes next.
#[derive(Clone, Copy)]
enum Action {
    /// A new configuration: list its candidates and place a legal read.
    Enter,
    /// Try the current configuration's candidates from this position of the
    /// candidate list on.
    Scan(u32),
    /// The current configuration failed: undo the last step.
    Backtrack,
}

/// Whether an operation is placed in the current configuration.
fn is_placed(facts: &Facts, linearized: &Bitset, placed_optional: &Bitset, index: usize) -> bool {
    match facts.optional_slot[index] {
        Some(slot) => placed_optional.contains(slot as usize),
        None => linearized.contains(index),
    }
}

/// What the search precomputes about a partition's operations.
struct Facts {
    /// Whether to look ahead at pending reads ([`Model::may_extend_to`]): some
    /// operation only extends the state.
    lookahead: bool,
    /// The operations that may do more than extend the state (neither reads
    /// nor [`Model::only_extends`]), in call order.
    resets: Vec<u32>,
    /// Each operation's position in `resets`, if it is one.
    reset_position: Vec<Option<u32>>,
    /// Reads with a known answer ([`Model::is_read_only`]).
    read_only: Vec<bool>,
    /// For an optional operation, its number among the optional ones.
    optional_slot: Vec<Option<u32>>,
    optional_count: usize,
    /// For each optional operation (by slot), the slot of the latest earlier
    /// optional operation with an equal input, if any.
    previous_equal: Vec<Option<u32>>,
}

/// How many earlier optional operations are compared with each one when
/// looking for an equal input; beyond that, operations are treated as
/// distinct, which only costs speed.
const EQUAL_LOOKBACK_MAX: usize = 512;

impl Facts {
    fn new<M: Model>(model: &M, operations: &[&Operation<M::Input, M::Output>]) -> Self {
        let read_only: Vec<bool> = operations
            .iter()
            .map(|operation| {
                operation
                    .output
                    .as_ref()
                    .is_some_and(|output| model.is_read_only(&operation.input, output))
            })
            .collect();
        let mut optional_slot = vec![None; operations.len()];
        let mut optional: Vec<usize> = Vec::new();
        let mut previous_equal = Vec::new();
        for (index, operation) in operations.iter().enumerate() {
            if !is_optional(operation) {
                continue;
            }
            let slot = optional.len();
            let lookback = slot.saturating_sub(EQUAL_LOOKBACK_MAX);
            let equal = (lookback..slot)
                .rev()
                .find(|earlier| operations[optional[*earlier]].input == operation.input);
            previous_equal.push(equal.map(|earlier| earlier as u32));
            optional_slot[index] = Some(slot as u32);
            optional.push(index);
        }
        let mut resets = Vec::new();
        let mut reset_position = vec![None; operations.len()];
        let mut lookahead = false;
        for (index, operation) in operations.iter().enumerate() {
            if model.only_extends(&operation.input) {
                lookahead = true;
            } else if !read_only[index] {
                reset_position[index] = Some(resets.len() as u32);
                resets.push(index as u32);
            }
        }
        Self {
            lookahead,
            resets,
            reset_position,
            read_only,
            optional_slot,
            optional_count: optional.len(),
            previous_equal,
        }
    }
}

/// Lowe's cache of configurations seen, with subsumption for optional
/// operations.
///
/// A configuration is (required operations placed, optional operations
/// placed, state). If (R, O', s) was seen and O' is a subset of O, then
/// (R, O, s) needs no search: any way to finish from it also finishes from
/// (R, O', s), because the operations in O \ O' are optional there and never
/// hold back a call. So the cache maps (R, s) to the optional sets seen with
/// it and rejects a configuration whose set contains one of them. Without
/// optional operations this is a plain set of (R, s).
struct Cache<S> {
    exact: HashSet<CacheKey<S>, FastBuildHasher>,
    /// The optional sets seen with each (R, s), `words` words each, one after
    /// the other.
    subsuming: HashMap<CacheKey<S>, Vec<u64>, FastBuildHasher>,
    words: usize,
    /// How many configurations are stored (the memory budget counts these).
    entries: usize,
}

impl<S: Eq + Hash> Cache<S> {
    fn new(optional_count: usize) -> Self {
        Self {
            exact: HashSet::default(),
            subsuming: HashMap::default(),
            words: optional_count.div_ceil(64),
            entries: 0,
        }
    }

    /// Records a configuration; false if it (or one that subsumes it) was
    /// seen.
    fn insert(&mut self, key: CacheKey<S>, optional: &Bitset) -> bool {
        if self.words == 0 {
            let new = self.exact.insert(key);
            self.entries += usize::from(new);
            return new;
        }
        let set = &optional.words;
        match self.subsuming.entry(key) {
            Entry::Vacant(vacant) => {
                vacant.insert(set.clone());
                self.entries += 1;
                true
            }
            Entry::Occupied(mut occupied) => {
                let sets = occupied.get_mut();
                let is_subset = |small: &[u64], large: &[u64]| {
                    small.iter().zip(large).all(|(a, b)| a & !b == 0)
                };
                if sets
                    .chunks_exact(self.words)
                    .any(|seen| is_subset(seen, set))
                {
                    return false;
                }
                // Seen sets that contain the new one are subsumed by it.
                let before = sets.len();
                let mut kept = 0;
                for start in (0..before).step_by(self.words) {
                    if !is_subset(set, &sets[start..start + self.words]) {
                        sets.copy_within(start..start + self.words, kept);
                        kept += self.words;
                    }
                }
                sets.truncate(kept);
                sets.extend_from_slice(set);
                self.entries = self.entries + 1 - (before - kept) / self.words;
                true
            }
        }
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

/// The deepest point made of a linearization found elsewhere (operation and
/// successor choice per step) and the operations that cannot follow it.
pub(crate) fn deepest_after<M: Model>(
    model: &M,
    operations: &[&Operation<M::Input, M::Output>],
    steps: Vec<(u32, u32)>,
    candidates: Vec<usize>,
    blocking: Option<usize>,
) -> Deepest<M::State> {
    let record = Record {
        steps,
        low_water: 0,
        candidates,
        blocking,
    };
    replay(model, operations, record)
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
