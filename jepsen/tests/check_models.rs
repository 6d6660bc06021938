//! The checker on small hand-written histories: edge cases, every built-in
//! model, history parsing and budgets.

use std::time::Duration;

use conclave_jepsen::check::models::register::{Register, RegisterInput, RegisterOutput};
use conclave_jepsen::check::{
    CheckConfig, CheckError, Format, GiveUp, ModelName, Operation, Verdict, check, check_text,
};

fn verdict(model: ModelName, history: &str) -> Verdict {
    check_text(
        history,
        Format::JsonLines,
        model,
        &CheckConfig::default(),
        "test",
    )
    .unwrap()
    .report
    .verdict
}

fn write(
    process: u64,
    call: u64,
    completion: u64,
    value: i64,
) -> Operation<RegisterInput, RegisterOutput> {
    Operation::completed(
        process,
        call,
        completion,
        RegisterInput::Write(value),
        RegisterOutput::Write,
    )
}

fn read(
    process: u64,
    call: u64,
    completion: u64,
    value: Option<i64>,
) -> Operation<RegisterInput, RegisterOutput> {
    Operation::completed(
        process,
        call,
        completion,
        RegisterInput::Read,
        RegisterOutput::Read(value),
    )
}

#[test]
fn an_empty_history_is_linearizable() {
    let report = check(&Register, &[], &CheckConfig::default()).unwrap();
    assert_eq!(report.verdict, Verdict::Linearizable);
    assert!(report.partitions.is_empty());
    assert_eq!(verdict(ModelName::Kv, ""), Verdict::Linearizable);
}

#[test]
fn a_history_of_pending_operations_is_linearizable() {
    let history = vec![
        Operation::unknown(0, 0, RegisterInput::Write(1)),
        Operation::unknown(1, 1, RegisterInput::Cas { from: 1, to: 2 }),
        Operation::unknown(2, 2, RegisterInput::Read),
    ];
    let report = check(&Register, &history, &CheckConfig::default()).unwrap();
    assert_eq!(report.verdict, Verdict::Linearizable);
    let text = r#"{"process":0,"type":"invoke","f":"write","value":3}
{"process":1,"type":"invoke","f":"read"}"#;
    assert_eq!(verdict(ModelName::Register, text), Verdict::Linearizable);
}

#[test]
fn a_single_process_must_see_its_own_writes() {
    let good = vec![
        write(0, 0, 1, 1),
        read(0, 2, 3, Some(1)),
        write(0, 4, 5, 2),
        read(0, 6, 7, Some(2)),
    ];
    assert_eq!(
        check(&Register, &good, &CheckConfig::default())
            .unwrap()
            .verdict,
        Verdict::Linearizable
    );
    let stale = vec![write(0, 0, 1, 1), write(0, 2, 3, 2), read(0, 4, 5, Some(1))];
    let report = check(&Register, &stale, &CheckConfig::default()).unwrap();
    assert_eq!(report.verdict, Verdict::NotLinearizable);
    let counterexample = report.partitions[0].counterexample.as_ref().unwrap();
    assert_eq!(
        counterexample.linearized.len(),
        2,
        "both writes fit, the read does not"
    );
    assert_eq!(counterexample.linearized[1].state, "2");
    assert_eq!(counterexample.unplaceable, vec![2]);
    assert_eq!(counterexample.blocking, Some(2));
    assert!(counterexample.window.contains(&2));
}

#[test]
fn concurrent_operations_may_take_effect_in_either_order() {
    // The read overlaps both writes, so it may see either value.
    for seen in [1, 2] {
        let history = vec![
            write(0, 0, 3, 1),
            write(1, 1, 4, 2),
            read(2, 2, 5, Some(seen)),
        ];
        assert_eq!(
            check(&Register, &history, &CheckConfig::default())
                .unwrap()
                .verdict,
            Verdict::Linearizable
        );
    }
    // Two reads in a row cannot see the writes in opposite orders.
    let history = vec![
        write(0, 0, 10, 1),
        write(1, 0, 10, 2),
        read(2, 1, 2, Some(1)),
        read(2, 3, 4, Some(2)),
        read(3, 5, 6, Some(1)),
    ];
    assert_eq!(
        check(&Register, &history, &CheckConfig::default())
            .unwrap()
            .verdict,
        Verdict::NotLinearizable
    );
}

#[test]
fn info_operations_may_or_may_not_have_happened() {
    let happened = r#"{"process":0,"type":"invoke","f":"write","value":1}
{"process":0,"type":"info","f":"write"}
{"process":1,"type":"invoke","f":"read"}
{"process":1,"type":"ok","f":"read","value":1}"#;
    assert_eq!(
        verdict(ModelName::Register, happened),
        Verdict::Linearizable
    );
    let did_not = r#"{"process":0,"type":"invoke","f":"write","value":1}
{"process":0,"type":"info","f":"write"}
{"process":1,"type":"invoke","f":"read"}
{"process":1,"type":"ok","f":"read","value":null}"#;
    assert_eq!(verdict(ModelName::Register, did_not), Verdict::Linearizable);
    // An info write may happen late, but not before it was invoked.
    let too_early = r#"{"process":1,"type":"invoke","f":"read"}
{"process":1,"type":"ok","f":"read","value":1}
{"process":0,"type":"invoke","f":"write","value":1}
{"process":0,"type":"info","f":"write"}"#;
    assert_eq!(
        verdict(ModelName::Register, too_early),
        Verdict::NotLinearizable
    );
}

#[test]
fn failed_operations_did_not_happen() {
    let history = r#"{"process":0,"type":"invoke","f":"write","value":1}
{"process":0,"type":"fail","f":"write"}
{"process":1,"type":"invoke","f":"read"}
{"process":1,"type":"ok","f":"read","value":1}"#;
    assert_eq!(
        verdict(ModelName::Register, history),
        Verdict::NotLinearizable
    );
}

#[test]
fn compare_and_set_results_are_checked() {
    let ok = r#"{"process":0,"type":"invoke","f":"write","value":1}
{"process":0,"type":"ok","f":"write"}
{"process":0,"type":"invoke","f":"cas","value":[1,2]}
{"process":0,"type":"ok","f":"cas","value":true}
{"process":0,"type":"invoke","f":"cas","value":[1,3]}
{"process":0,"type":"ok","f":"cas","value":false}
{"process":0,"type":"invoke","f":"read"}
{"process":0,"type":"ok","f":"read","value":2}"#;
    assert_eq!(verdict(ModelName::Register, ok), Verdict::Linearizable);
    let wrong = ok.replace("\"value\":false", "\"value\":true");
    assert_eq!(
        verdict(ModelName::Register, &wrong),
        Verdict::NotLinearizable
    );
}

#[test]
fn kv_appends_concatenate_per_key() {
    let ok = r#"{"process":0,"type":"invoke","f":"append","key":"a","value":"x"}
{"process":1,"type":"invoke","f":"append","key":"a","value":"y"}
{"process":0,"type":"ok","f":"append","key":"a"}
{"process":1,"type":"ok","f":"append","key":"a"}
{"process":2,"type":"invoke","f":"get","key":"a"}
{"process":2,"type":"ok","f":"get","key":"a","value":"yx"}
{"process":2,"type":"invoke","f":"get","key":"b"}
{"process":2,"type":"ok","f":"get","key":"b","value":""}"#;
    assert_eq!(verdict(ModelName::Kv, ok), Verdict::Linearizable);
    let wrong = ok.replace("\"value\":\"yx\"", "\"value\":\"xyx\"");
    assert_eq!(verdict(ModelName::Kv, &wrong), Verdict::NotLinearizable);
}

#[test]
fn mutex_grants_are_exclusive_and_tokens_increase() {
    let ok = r#"{"process":0,"type":"invoke","f":"acquire","key":"l"}
{"process":0,"type":"ok","f":"acquire","key":"l","value":5}
{"process":1,"type":"invoke","f":"acquire","key":"l"}
{"process":0,"type":"invoke","f":"release","key":"l"}
{"process":0,"type":"ok","f":"release","key":"l"}
{"process":1,"type":"ok","f":"acquire","key":"l","value":9}"#;
    assert_eq!(verdict(ModelName::Mutex, ok), Verdict::Linearizable);
    let old_token = ok.replace("\"value\":9", "\"value\":4");
    assert_eq!(
        verdict(ModelName::Mutex, &old_token),
        Verdict::NotLinearizable
    );
    let double_grant = r#"{"process":0,"type":"invoke","f":"acquire","key":"l"}
{"process":0,"type":"ok","f":"acquire","key":"l","value":1}
{"process":1,"type":"invoke","f":"acquire","key":"l"}
{"process":1,"type":"ok","f":"acquire","key":"l","value":2}"#;
    assert_eq!(
        verdict(ModelName::Mutex, double_grant),
        Verdict::NotLinearizable
    );
    // Different locks are independent partitions.
    let two_locks = double_grant.replacen("\"key\":\"l\"", "\"key\":\"m\"", 2);
    assert_eq!(verdict(ModelName::Mutex, &two_locks), Verdict::Linearizable);
}

#[test]
fn queues_deliver_in_order_exactly_or_at_least_once() {
    let redelivery = r#"{"process":0,"type":"invoke","f":"enqueue","value":1}
{"process":0,"type":"ok","f":"enqueue"}
{"process":0,"type":"invoke","f":"enqueue","value":2}
{"process":0,"type":"ok","f":"enqueue"}
{"process":1,"type":"invoke","f":"dequeue"}
{"process":1,"type":"ok","f":"dequeue","value":1}
{"process":1,"type":"invoke","f":"dequeue"}
{"process":1,"type":"ok","f":"dequeue","value":1}
{"process":1,"type":"invoke","f":"dequeue"}
{"process":1,"type":"ok","f":"dequeue","value":2}
{"process":1,"type":"invoke","f":"dequeue"}
{"process":1,"type":"ok","f":"dequeue","value":null}"#;
    assert_eq!(
        verdict(ModelName::Queue, redelivery),
        Verdict::NotLinearizable
    );
    assert_eq!(
        verdict(ModelName::QueueAtLeastOnce, redelivery),
        Verdict::Linearizable
    );
    let out_of_order = r#"{"process":0,"type":"invoke","f":"enqueue","value":1}
{"process":0,"type":"ok","f":"enqueue"}
{"process":0,"type":"invoke","f":"enqueue","value":2}
{"process":0,"type":"ok","f":"enqueue"}
{"process":1,"type":"invoke","f":"dequeue"}
{"process":1,"type":"ok","f":"dequeue","value":2}"#;
    assert_eq!(
        verdict(ModelName::Queue, out_of_order),
        Verdict::NotLinearizable
    );
    assert_eq!(
        verdict(ModelName::QueueAtLeastOnce, out_of_order),
        Verdict::NotLinearizable
    );
}

#[test]
fn set_reads_see_every_completed_add() {
    let ok = r#"{"process":0,"type":"invoke","f":"add","value":1}
{"process":0,"type":"ok","f":"add"}
{"process":0,"type":"invoke","f":"add","value":2}
{"process":1,"type":"invoke","f":"read"}
{"process":1,"type":"ok","f":"read","value":[1]}
{"process":0,"type":"ok","f":"add"}
{"process":1,"type":"invoke","f":"read"}
{"process":1,"type":"ok","f":"read","value":[2,1]}"#;
    assert_eq!(verdict(ModelName::Set, ok), Verdict::Linearizable);
    let lost = ok.replace("[2,1]", "[2]");
    assert_eq!(verdict(ModelName::Set, &lost), Verdict::NotLinearizable);
}

#[test]
fn an_election_has_at_most_one_leader_per_epoch() {
    let ok = r#"{"process":0,"type":"invoke","f":"campaign","key":"e"}
{"process":0,"type":"ok","f":"campaign","key":"e","value":1}
{"process":0,"type":"invoke","f":"resign","key":"e"}
{"process":0,"type":"ok","f":"resign","key":"e"}
{"process":1,"type":"invoke","f":"campaign","key":"e"}
{"process":1,"type":"ok","f":"campaign","key":"e","value":2}
{"process":2,"type":"invoke","f":"leader","key":"e"}
{"process":2,"type":"ok","f":"leader","key":"e","value":[1,2]}"#;
    assert_eq!(verdict(ModelName::Election, ok), Verdict::Linearizable);
    let same_epoch = ok.replace("\"value\":2}", "\"value\":1}");
    assert_eq!(
        verdict(ModelName::Election, &same_epoch),
        Verdict::NotLinearizable
    );
    let unknown_winner = r#"{"process":0,"type":"invoke","f":"campaign","key":"e"}
{"process":0,"type":"info","f":"campaign","key":"e"}
{"process":2,"type":"invoke","f":"leader","key":"e"}
{"process":2,"type":"ok","f":"leader","key":"e","value":[0,7]}"#;
    assert_eq!(
        verdict(ModelName::Election, unknown_winner),
        Verdict::Linearizable
    );
}

#[test]
fn malformed_histories_are_errors() {
    let config = CheckConfig::default();
    let orphan = r#"{"process":0,"type":"ok","f":"read","value":1}"#;
    let error =
        check_text(orphan, Format::JsonLines, ModelName::Register, &config, "t").unwrap_err();
    assert!(
        matches!(error, CheckError::Malformed { event: 0, .. }),
        "{error}"
    );
    let twice = "{\"process\":0,\"type\":\"invoke\",\"f\":\"read\"}\n{\"process\":0,\"type\":\"invoke\",\"f\":\"read\"}";
    let error =
        check_text(twice, Format::JsonLines, ModelName::Register, &config, "t").unwrap_err();
    assert!(
        matches!(error, CheckError::Malformed { event: 1, .. }),
        "{error}"
    );
    let garbage = "{\"process\":0,\"type\":\"invoke\",\"f\":\"read\"}\nnot json";
    let error = check_text(
        garbage,
        Format::JsonLines,
        ModelName::Register,
        &config,
        "t",
    )
    .unwrap_err();
    assert!(
        matches!(error, CheckError::Parse { line: 2, .. }),
        "{error}"
    );
    let wrong_model = r#"{"process":0,"type":"invoke","f":"enqueue","value":1}"#;
    let error = check_text(
        wrong_model,
        Format::JsonLines,
        ModelName::Register,
        &config,
        "t",
    )
    .unwrap_err();
    assert!(
        matches!(
            error,
            CheckError::Model {
                model: "register",
                operation: 0,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn timestamps_order_events_when_present() {
    // Written out of order; the times say the write completed before the read began.
    let history = r#"{"process":1,"type":"invoke","f":"read","time":30}
{"process":1,"type":"ok","f":"read","value":null,"time":40}
{"process":0,"type":"invoke","f":"write","value":1,"time":10}
{"process":0,"type":"ok","f":"write","time":20}"#;
    assert_eq!(
        verdict(ModelName::Register, history),
        Verdict::NotLinearizable
    );
}

#[test]
fn an_exhausted_budget_ends_in_unknown() {
    let mut history = Vec::new();
    // Many concurrent writes and a read nobody wrote: the search must try
    // many orders before giving up.
    for process in 0..12 {
        history.push(write(process, 0, 100, process as i64));
    }
    history.push(read(99, 101, 102, Some(1000)));
    // The check before the search would refute the read at once: leave the
    // search alone with the budget.
    let tiny = CheckConfig {
        cache_entries_max: 10,
        refute_unreachable_answers: false,
        ..CheckConfig::default()
    };
    let report = check(&Register, &history, &tiny).unwrap();
    assert_eq!(report.verdict, Verdict::Unknown);
    assert_eq!(report.partitions[0].give_up, Some(GiveUp::CacheFull));
    let searched = CheckConfig {
        refute_unreachable_answers: false,
        ..CheckConfig::default()
    };
    let report = check(&Register, &history, &searched).unwrap();
    assert_eq!(report.verdict, Verdict::NotLinearizable);
    assert!(
        !report.partitions[0]
            .counterexample
            .as_ref()
            .unwrap()
            .unreachable_answer
    );
    // With the check, the same budget is enough: no search is needed.
    let checked = CheckConfig {
        refute_unreachable_answers: true,
        ..tiny.clone()
    };
    let report = check(&Register, &history, &checked).unwrap();
    assert_eq!(report.verdict, Verdict::NotLinearizable);
    let counterexample = report.partitions[0].counterexample.as_ref().unwrap();
    assert!(counterexample.unreachable_answer);
    assert_eq!(counterexample.blocking, Some(12));
    assert_eq!(counterexample.unplaceable, vec![12]);
    let zero = CheckConfig {
        duration_max: Duration::ZERO,
        ..CheckConfig::default()
    };
    assert!(matches!(
        check(&Register, &history, &zero),
        Err(CheckError::Config(_))
    ));
}

#[test]
fn partitions_are_checked_separately_and_all_reported_on_request() {
    let history = r#"{"process":0,"type":"invoke","f":"put","key":"a","value":"1"}
{"process":0,"type":"ok","f":"put","key":"a"}
{"process":0,"type":"invoke","f":"get","key":"a"}
{"process":0,"type":"ok","f":"get","key":"a","value":"2"}
{"process":1,"type":"invoke","f":"put","key":"b","value":"1"}
{"process":1,"type":"ok","f":"put","key":"b"}
{"process":1,"type":"invoke","f":"get","key":"b"}
{"process":1,"type":"ok","f":"get","key":"b","value":"1"}"#;
    let config = CheckConfig {
        stop_on_first_violation: false,
        ..CheckConfig::default()
    };
    let analysis = check_text(history, Format::JsonLines, ModelName::Kv, &config, "t").unwrap();
    assert_eq!(analysis.report.verdict, Verdict::NotLinearizable);
    let mut verdicts: Vec<Verdict> = analysis
        .report
        .partitions
        .iter()
        .map(|p| p.verdict)
        .collect();
    verdicts.sort_by_key(|verdict| *verdict as u8);
    assert_eq!(
        verdicts,
        vec![Verdict::Linearizable, Verdict::NotLinearizable]
    );
    assert!(
        analysis.text.contains("get \"a\" => \"2\""),
        "{}",
        analysis.text
    );
    assert!(analysis.html.contains("failing"));
}

#[test]
fn a_value_built_by_very_many_appends_is_checked_and_dropped() {
    use std::sync::Arc;

    use conclave_jepsen::check::models::kv::{Kv, KvInput, KvOutput};
    // Long enough that dropping the value's chain recursively would overflow
    // a test thread's stack.
    let appends = 100_000u64;
    let key: Arc<str> = Arc::from("k");
    let piece: Arc<str> = Arc::from("ab");
    let mut history: Vec<Operation<KvInput, KvOutput>> = (0..appends)
        .map(|index| {
            let input = KvInput::Append {
                key: key.clone(),
                value: piece.clone(),
            };
            Operation::completed(0, 2 * index, 2 * index + 1, input, KvOutput::Done)
        })
        .collect();
    let expected = "ab".repeat(appends as usize);
    history.push(Operation::completed(
        1,
        2 * appends,
        2 * appends + 1,
        KvInput::Get { key: key.clone() },
        KvOutput::Get(expected),
    ));
    assert_eq!(
        check(&Kv, &history, &CheckConfig::default())
            .unwrap()
            .verdict,
        Verdict::Linearizable
    );
    let last = history.len() - 1;
    history[last].output = Some(KvOutput::Get("ab".repeat(appends as usize - 1)));
    assert_eq!(
        check(&Kv, &history, &CheckConfig::default())
            .unwrap()
            .verdict,
        Verdict::NotLinearizable
    );
}

mod lookahead {
    //! The search rules out orders of appends that a pending get contradicts,
    //! unless a put may come first and reset the value.

    use std::sync::Arc;

    use conclave_jepsen::check::models::kv::{Kv, KvInput, KvOutput};
    use conclave_jepsen::check::{CheckConfig, Operation, Verdict, check};

    fn append(call: u64, completion: u64, value: &str) -> Operation<KvInput, KvOutput> {
        let input = KvInput::Append {
            key: Arc::from("k"),
            value: Arc::from(value),
        };
        Operation::completed(call, call, completion, input, KvOutput::Done)
    }

    fn put(call: u64, completion: u64, value: &str) -> Operation<KvInput, KvOutput> {
        let input = KvInput::Put {
            key: Arc::from("k"),
            value: Arc::from(value),
        };
        Operation::completed(call, call, completion, input, KvOutput::Done)
    }

    fn get(call: u64, completion: u64, value: &str) -> Operation<KvInput, KvOutput> {
        let input = KvInput::Get {
            key: Arc::from("k"),
        };
        Operation::completed(
            100 + call,
            call,
            completion,
            input,
            KvOutput::Get(value.into()),
        )
    }

    fn verdict(history: &[Operation<KvInput, KvOutput>]) -> Verdict {
        check(&Kv, history, &CheckConfig::default())
            .unwrap()
            .verdict
    }

    #[test]
    fn appends_in_the_order_a_long_get_shows_are_found() {
        // Three overlapping appends; only a get at the end tells their order,
        // which is not the order of their calls or completions.
        let history = [
            append(0, 10, "a"),
            append(1, 9, "b"),
            append(2, 8, "c"),
            get(0, 20, "cab"),
        ];
        assert_eq!(verdict(&history), Verdict::Linearizable);
        let history = [
            append(0, 10, "a"),
            append(1, 9, "b"),
            append(2, 8, "c"),
            get(0, 20, "cabc"),
        ];
        assert_eq!(verdict(&history), Verdict::NotLinearizable);
    }

    #[test]
    fn a_put_that_may_come_between_keeps_an_order_the_get_alone_rules_out() {
        // After "b" the value is no prefix of the get's "ab", but the put may
        // come between and reset it: b, put a, b, get.
        let history = [
            append(0, 1, "b"),
            put(2, 5, "a"),
            append(3, 6, "b"),
            get(0, 10, "ab"),
        ];
        assert_eq!(verdict(&history), Verdict::Linearizable);
        // Without the put, b completed before a was called: only "ba".
        let history = [append(0, 1, "b"), append(3, 6, "a"), get(0, 10, "ab")];
        assert_eq!(verdict(&history), Verdict::NotLinearizable);
        // A put called only after the get completed cannot help.
        let history = [
            append(0, 1, "b"),
            append(3, 6, "a"),
            get(0, 10, "ab"),
            put(11, 12, "a"),
        ];
        assert_eq!(verdict(&history), Verdict::NotLinearizable);
    }

    #[test]
    fn an_unknown_put_may_also_reset() {
        let mut history = vec![
            append(0, 1, "b"),
            put(2, 5, "a"),
            append(3, 6, "b"),
            get(0, 10, "ab"),
        ];
        history[1] = Operation::unknown(2, 2, history[1].input.clone());
        assert_eq!(verdict(&history), Verdict::Linearizable);
    }
}
