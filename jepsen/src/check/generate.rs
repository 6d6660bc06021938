//! Generated histories, for tests and benchmarks: a real sequential execution
//! with random, overlapping intervals around each step, so the result is
//! linearizable by construction.

use std::sync::Arc;

use super::history::Operation;
use super::models::kv::{KvInput, KvOutput};
use super::models::register::{RegisterInput, RegisterOutput};

/// A small seeded generator (SplitMix64): reproducible, and enough for
/// shaping test histories.
#[derive(Debug, Clone)]
pub struct SplitMix {
    state: u64,
}

impl SplitMix {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.state;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "an empty range has no element");
        self.next_u64() % bound
    }
}

/// The shape of a generated history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// How many operations to generate.
    pub operation_count: usize,
    /// How many clients run them, one in flight each.
    pub client_count: u64,
    /// Percent chance that an operation's outcome is recorded as unknown.
    pub unknown_percent: u64,
}

/// Runs `operation_count` operations of `client_count` clients against a real
/// sequential object: at each tick a random client either invokes (with an
/// input from `input`), takes effect (applying `execute` to the state), or
/// completes. The ordering by effect is a linearization of the result.
pub fn generate<S, I, O>(
    random: &mut SplitMix,
    shape: Shape,
    mut state: S,
    mut input: impl FnMut(&mut SplitMix, u64) -> I,
    mut execute: impl FnMut(&mut S, &I) -> O,
) -> Vec<Operation<I, O>> {
    assert!(shape.client_count > 0, "a history needs a client");
    enum Phase<I, O> {
        Idle,
        Called { call: u64, input: I },
        Applied { call: u64, input: I, output: O },
    }
    let mut phases: Vec<Phase<I, O>> = (0..shape.client_count).map(|_| Phase::Idle).collect();
    let mut operations = Vec::with_capacity(shape.operation_count);
    let mut invoked = 0;
    let mut time = 0u64;
    while operations.len() < shape.operation_count {
        time += 1;
        let client = random.below(shape.client_count);
        let phase = std::mem::replace(&mut phases[client as usize], Phase::Idle);
        phases[client as usize] = match phase {
            Phase::Idle if invoked < shape.operation_count => {
                invoked += 1;
                Phase::Called {
                    call: time,
                    input: input(random, client),
                }
            }
            Phase::Idle => Phase::Idle,
            Phase::Called { call, input } => {
                let output = execute(&mut state, &input);
                Phase::Applied {
                    call,
                    input,
                    output,
                }
            }
            Phase::Applied {
                call,
                input,
                output,
            } => {
                if random.below(100) < shape.unknown_percent {
                    operations.push(Operation::unknown(client, call, input));
                } else {
                    operations.push(Operation::completed(client, call, time, input, output));
                }
                Phase::Idle
            }
        };
    }
    operations
}

/// A linearizable history of a key/value store: gets (50%), puts (25%) and
/// appends (25%) on `key_count` keys.
pub fn kv_history(seed: u64, shape: Shape, key_count: u64) -> Vec<Operation<KvInput, KvOutput>> {
    let mut random = SplitMix::new(seed);
    let keys: Vec<Arc<str>> = (0..key_count)
        .map(|key| Arc::from(key.to_string()))
        .collect();
    let mut counter = 0u64;
    generate(
        &mut random,
        shape,
        vec![String::new(); key_count as usize],
        |random, client| {
            let key = keys[random.below(key_count) as usize].clone();
            counter += 1;
            let value: Arc<str> = Arc::from(format!("c{client}n{counter};"));
            match random.below(4) {
                0 => KvInput::Put { key, value },
                1 => KvInput::Append { key, value },
                _ => KvInput::Get { key },
            }
        },
        |values: &mut Vec<String>, input| {
            let index = |key: &str| key.parse::<usize>().unwrap_or(0);
            match input {
                KvInput::Get { key } => KvOutput::Get(values[index(key)].clone()),
                KvInput::Put { key, value } => {
                    values[index(key)] = value.to_string();
                    KvOutput::Done
                }
                KvInput::Append { key, value } => {
                    values[index(key)].push_str(value);
                    KvOutput::Done
                }
            }
        },
    )
}

/// A linearizable history of one register: reads, writes and compare-and-sets
/// of values in `0..value_count`.
pub fn register_history(
    seed: u64,
    shape: Shape,
    value_count: i64,
) -> Vec<Operation<RegisterInput, RegisterOutput>> {
    let mut random = SplitMix::new(seed);
    let value_count = value_count.max(1) as u64;
    generate(
        &mut random,
        shape,
        None,
        |random, _| match random.below(3) {
            0 => RegisterInput::Read,
            1 => RegisterInput::Write(random.below(value_count) as i64),
            _ => RegisterInput::Cas {
                from: random.below(value_count) as i64,
                to: random.below(value_count) as i64,
            },
        },
        |state: &mut Option<i64>, input| match input {
            RegisterInput::Read => RegisterOutput::Read(*state),
            RegisterInput::Write(value) => {
                *state = Some(*value);
                RegisterOutput::Write
            }
            RegisterInput::Cas { from, to } => {
                let succeeded = *state == Some(*from);
                if succeeded {
                    *state = Some(*to);
                }
                RegisterOutput::Cas(succeeded)
            }
        },
    )
}
