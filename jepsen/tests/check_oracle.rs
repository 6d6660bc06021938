//! The search against a brute-force oracle on small random histories whose
//! results are drawn at random, so that both verdicts occur: every pruning
//! rule of the search (reads first, look-ahead at pending reads, equal
//! unknown operations tried once, subsumption in the cache, the check before
//! the search) must leave the verdict of the plain definition unchanged.
//! `ORACLE_CASES` sets the number of histories per model (default 3,000).

use std::sync::Arc;

use conclave_jepsen::check::generate::SplitMix;
use conclave_jepsen::check::models::kv::{Kv, KvInput, KvOutput};
use conclave_jepsen::check::models::register::{Register, RegisterInput, RegisterOutput};
use conclave_jepsen::check::{CheckConfig, Model, Operation, Verdict, check};

fn cases() -> u64 {
    std::env::var("ORACLE_CASES").map_or(3_000, |text| text.parse().unwrap())
}

/// Whether some subset of the operations, containing every operation with a
/// known result, has an order that respects real time within the subset and
/// in which every step is legal: the definition, searched without any cache
/// or pruning.
fn oracle<M: Model>(model: &M, operations: &[Operation<M::Input, M::Output>]) -> bool {
    let optional: Vec<usize> = (0..operations.len())
        .filter(|index| operations[*index].output.is_none())
        .collect();
    (0..1u32 << optional.len()).any(|mask| {
        let included: Vec<bool> = (0..operations.len())
            .map(|index| {
                optional
                    .iter()
                    .position(|candidate| *candidate == index)
                    .is_none_or(|bit| mask & (1 << bit) != 0)
            })
            .collect();
        let mut placed = vec![false; operations.len()];
        orders_exist(model, operations, &included, &mut placed, &model.init())
    })
}

fn orders_exist<M: Model>(
    model: &M,
    operations: &[Operation<M::Input, M::Output>],
    included: &[bool],
    placed: &mut Vec<bool>,
    state: &M::State,
) -> bool {
    let pending: Vec<usize> = (0..operations.len())
        .filter(|index| included[*index] && !placed[*index])
        .collect();
    if pending.is_empty() {
        return true;
    }
    for &next in &pending {
        // Nothing still to place may have completed before `next` was called.
        if pending
            .iter()
            .any(|other| operations[*other].completion < operations[next].call)
        {
            continue;
        }
        let operation = &operations[next];
        let mut successors = Vec::new();
        model.step(
            state,
            &operation.input,
            operation.output.as_ref(),
            &mut successors,
        );
        placed[next] = true;
        let found = successors
            .iter()
            .any(|successor| orders_exist(model, operations, included, placed, successor));
        placed[next] = false;
        if found {
            return true;
        }
    }
    false
}

/// A random interval, sometimes left open (unknown outcome).
fn interval(random: &mut SplitMix) -> (u64, u64, bool) {
    let call = random.below(12);
    let completion = call + random.below(8);
    // Many unknown outcomes: they are where the search prunes most.
    let unknown = random.below(100) < 45;
    (call, completion, unknown)
}

fn random_register_history(random: &mut SplitMix) -> Vec<Operation<RegisterInput, RegisterOutput>> {
    let count = 1 + random.below(8) as usize;
    (0..count)
        .map(|process| {
            let (call, completion, unknown) = interval(random);
            // Few values, so that equal unknown operations are common.
            let value = |random: &mut SplitMix| random.below(2) as i64;
            let (input, output) = match random.below(3) {
                0 => {
                    let read = (random.below(3) != 0).then(|| value(random));
                    (RegisterInput::Read, RegisterOutput::Read(read))
                }
                1 => (RegisterInput::Write(value(random)), RegisterOutput::Write),
                _ => {
                    let (from, to) = (value(random), value(random));
                    let succeeded = random.below(2) == 0;
                    (
                        RegisterInput::Cas { from, to },
                        RegisterOutput::Cas(succeeded),
                    )
                }
            };
            if unknown {
                // Open intervals, and unknown results with a known end.
                if random.below(2) == 0 {
                    Operation::unknown(process as u64, call, input)
                } else {
                    let mut operation =
                        Operation::completed(process as u64, call, completion, input, output);
                    operation.output = None;
                    operation
                }
            } else {
                Operation::completed(process as u64, call, completion, input, output)
            }
        })
        .collect()
}

fn random_kv_history(random: &mut SplitMix, key_count: u64) -> Vec<Operation<KvInput, KvOutput>> {
    let count = 1 + random.below(7) as usize;
    let pieces = ["a", "b", "ab", ""];
    (0..count)
        .map(|process| {
            let (call, completion, unknown) = interval(random);
            let key: Arc<str> = Arc::from(random.below(key_count).to_string());
            let piece = |random: &mut SplitMix| Arc::from(pieces[random.below(3) as usize]);
            let (input, output) = match random.below(3) {
                0 => {
                    let value = ["", "a", "b", "ab", "ba", "aab", "abab"][random.below(7) as usize];
                    (KvInput::Get { key }, KvOutput::Get(value.to_string()))
                }
                1 => (
                    KvInput::Put {
                        key,
                        value: piece(random),
                    },
                    KvOutput::Done,
                ),
                _ => (
                    KvInput::Append {
                        key,
                        value: piece(random),
                    },
                    KvOutput::Done,
                ),
            };
            if unknown && random.below(2) == 0 {
                Operation::unknown(process as u64, call, input)
            } else {
                Operation::completed(process as u64, call, completion, input, output)
            }
        })
        .collect()
}

fn config(partition: bool) -> CheckConfig {
    CheckConfig {
        partition,
        stop_on_first_violation: false,
        threads_max: 1,
        ..CheckConfig::default()
    }
}

fn agree<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    partition: bool,
) -> Verdict {
    let expected = if oracle(model, history) {
        Verdict::Linearizable
    } else {
        Verdict::NotLinearizable
    };
    let verdict = check(model, history, &config(partition)).unwrap().verdict;
    assert_eq!(verdict, expected, "{history:#?}");
    verdict
}

#[test]
fn register_verdicts_agree_with_the_definition() {
    let mut random = SplitMix::new(20_261_125);
    let mut refuted = 0;
    for _ in 0..cases() {
        let history = random_register_history(&mut random);
        refuted += u64::from(agree(&Register, &history, true) == Verdict::NotLinearizable);
    }
    assert!(
        refuted > cases() / 10 && refuted < cases() * 9 / 10,
        "{refuted} refuted"
    );
}

#[test]
fn kv_verdicts_agree_with_the_definition() {
    let mut random = SplitMix::new(11);
    let mut refuted = 0;
    for case in 0..cases() {
        let key_count = 1 + case % 2;
        let history = random_kv_history(&mut random, key_count);
        let verdict = agree(&Kv, &history, true);
        assert_eq!(agree(&Kv, &history, false), verdict);
        refuted += u64::from(verdict == Verdict::NotLinearizable);
    }
    assert!(
        refuted > cases() / 10 && refuted < cases() * 9 / 10,
        "{refuted} refuted"
    );
}

#[test]
fn equal_unknown_operations_can_all_take_effect() {
    // Two unknown writes of 1, then: read 1, write 0, read 1. Both writes
    // must take effect, the second after the write of 0: trying only the
    // first unplaced of a class must still allow the second after it.
    let history = [
        Operation::unknown(0, 0, RegisterInput::Write(1)),
        Operation::unknown(1, 1, RegisterInput::Write(1)),
        Operation::completed(2, 2, 3, RegisterInput::Read, RegisterOutput::Read(Some(1))),
        Operation::completed(2, 4, 5, RegisterInput::Write(0), RegisterOutput::Write),
        Operation::completed(2, 6, 7, RegisterInput::Read, RegisterOutput::Read(Some(1))),
    ];
    assert_eq!(agree(&Register, &history, true), Verdict::Linearizable);
    // With a third read of 1 after another write of 0, two writes are not
    // enough.
    let mut history = history.to_vec();
    history.push(Operation::completed(
        2,
        8,
        9,
        RegisterInput::Write(0),
        RegisterOutput::Write,
    ));
    history.push(Operation::completed(
        2,
        10,
        11,
        RegisterInput::Read,
        RegisterOutput::Read(Some(1)),
    ));
    assert_eq!(agree(&Register, &history, true), Verdict::NotLinearizable);
}
