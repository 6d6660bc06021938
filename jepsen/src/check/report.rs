//! Readable text output for a check.

use std::fmt::Write as _;

use super::checker::{
    CheckReport, Counterexample, DESCRIPTION_LENGTH_MAX, PartitionReport, Verdict, WindowKind,
    shorten,
};
use super::history::Operation;
use super::model::Model;

/// How many linearized operations the text shows before the failure point.
pub const PREFIX_SHOWN_MAX: usize = 10;

fn time(value: u64) -> String {
    if value == u64::MAX {
        "end".to_string()
    } else {
        value.to_string()
    }
}

/// One line describing an operation: index, process, interval, call and answer.
pub fn describe<M: Model>(
    model: &M,
    operations: &[Operation<M::Input, M::Output>],
    index: usize,
) -> String {
    let operation = &operations[index];
    format!(
        "#{index} process {} [{}, {}] {}",
        operation.process,
        operation.call,
        time(operation.completion),
        shorten(
            model.describe_operation(&operation.input, operation.output.as_ref()),
            DESCRIPTION_LENGTH_MAX
        )
    )
}

/// Renders the verdicts and, for each failing partition, its counterexample.
pub fn render_text<M: Model>(
    model: &M,
    operations: &[Operation<M::Input, M::Output>],
    report: &CheckReport,
) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "model {}: {} operations in {} partitions, checked in {:.3} s",
        model.name(),
        operations.len(),
        report.partitions.len(),
        report.elapsed.as_secs_f64()
    );
    for partition in &report.partitions {
        let _ = write!(
            text,
            "  partition {:016x}: {} ({} operations, {:.3} ms)",
            partition.key,
            partition.verdict,
            partition.operations.len(),
            partition.elapsed.as_secs_f64() * 1000.0
        );
        if let Some(reason) = partition.give_up {
            let _ = write!(text, ": {reason}");
        }
        text.push('\n');
    }
    for partition in &report.partitions {
        if let Some(counterexample) = &partition.counterexample {
            render_counterexample(model, operations, partition, counterexample, &mut text);
        }
    }
    let _ = writeln!(text, "verdict: {}", report.verdict);
    if report.verdict == Verdict::Unknown {
        let _ = writeln!(
            text,
            "(the budget ran out; raise --duration-max-seconds or --cache-entries-max)"
        );
    }
    text
}

fn render_counterexample<M: Model>(
    model: &M,
    operations: &[Operation<M::Input, M::Output>],
    partition: &PartitionReport,
    counterexample: &Counterexample,
    text: &mut String,
) {
    let _ = writeln!(
        text,
        "\npartition {:016x} is not linearizable.",
        partition.key
    );
    let linearized = &counterexample.linearized;
    let _ = writeln!(
        text,
        "  longest linearizable prefix: {} of {} operations{}",
        counterexample.linearized_count,
        partition.operations.len(),
        if counterexample.linearized_count > PREFIX_SHOWN_MAX {
            " (last ones shown)"
        } else {
            ""
        }
    );
    let skipped = linearized.len().saturating_sub(PREFIX_SHOWN_MAX);
    for step in &linearized[skipped..] {
        let _ = writeln!(
            text,
            "    {}\n        state after: {}",
            describe(model, operations, step.operation),
            step.state
        );
    }
    let state = linearized.last().map_or_else(
        || model.describe_state(&model.init()),
        |step| step.state.clone(),
    );
    let _ = writeln!(
        text,
        "  then, in state {state}, no operation that can go next fits:"
    );
    for index in &counterexample.unplaceable {
        let _ = writeln!(text, "    {}", describe(model, operations, *index));
    }
    if let Some(blocking) = counterexample.blocking {
        if counterexample.unreachable_answer {
            let _ = writeln!(
                text,
                "  and no state that this partition's operations can reach, in any order, \
                 gives the answer of {}.",
                describe(model, operations, blocking)
            );
        } else {
            let _ = writeln!(
                text,
                "  and {} completed before any of them could be placed.",
                describe(model, operations, blocking)
            );
        }
    }
    let count = counterexample.window.len();
    let _ = match counterexample.window_kind {
        WindowKind::Minimal => writeln!(
            text,
            "  smallest window involved ({count} operations); even with the results of all \
             other operations unknown, these results cannot be explained:"
        ),
        WindowKind::Violation => writeln!(
            text,
            "  window involved ({count} operations; perhaps not the smallest, its budget ran \
             out); even with the results of all other operations unknown, these results \
             cannot be explained:"
        ),
        WindowKind::AroundDeadEnd => writeln!(
            text,
            "  operations around the dead end ({count}; the window's budget ran out before a \
             smaller one was shown to be a violation by itself):"
        ),
    };
    for index in &counterexample.window {
        let _ = writeln!(text, "    {}", describe(model, operations, *index));
    }
}
