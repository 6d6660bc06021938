//! The sequential specification a history is checked against.

use std::fmt::Debug;
use std::hash::Hash;

use super::error::CheckError;
use super::history::Record;

/// A sequential object: its states and how each operation moves between them.
///
/// The checker looks for an order of the operations, consistent with real
/// time, in which every step is legal. Implement this trait to check your own
/// object; see the built-in models in [`models`](super::models) for examples.
///
/// `State` is hashed and compared for the search's cache, so two states that
/// behave the same should be equal (a canonical form makes the search faster).
pub trait Model: Sync {
    /// The object's state; cloned at every step, so keep it small.
    type State: Clone + Eq + Hash + Debug + Send;
    /// What a caller asks (function and arguments). Equal inputs must mean
    /// equal behaviour: the search treats two operations with unknown
    /// outcomes and equal inputs as interchangeable.
    /// Inputs are cloned to build relaxed copies of a history (see the
    /// counterexample's window).
    type Input: Clone + Debug + PartialEq + Send + Sync;
    /// What the object answers.
    type Output: Clone + Debug + Send + Sync;

    /// A short name, used in messages.
    fn name(&self) -> &'static str;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// Pushes onto `successors` every state the object can be in after
    /// applying `input` to `state` and answering `output`; pushes nothing when
    /// that answer is impossible.
    ///
    /// `output` is `None` when the answer is unknown (an `info` or pending
    /// operation): push the states for every answer it could have given. The
    /// checker itself adds the case "it did not happen at all" (state
    /// unchanged), so do not push that one unless it is also a real outcome.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
        successors: &mut Vec<Self::State>,
    );

    /// The partition an operation belongs to. Operations in different
    /// partitions must act on independent objects (P-compositionality): the
    /// history is then linearizable iff each partition is, and partitions
    /// are checked separately and in parallel. The default puts everything in
    /// one partition.
    fn partition(&self, input: &Self::Input) -> u64 {
        let _ = input;
        0
    }

    /// Whether an operation with this known answer leaves the state unchanged
    /// in *every* state where the answer is legal (a read). The search then
    /// places such an operation as soon as it is legal without trying other
    /// orders there: any linearization can move a read to the front of
    /// the operations it is concurrent with. Answering `true` for an
    /// operation that can change the state makes the checker wrong; the
    /// default, `false`, is always safe.
    fn is_read_only(&self, input: &Self::Input, output: &Self::Output) -> bool {
        let _ = (input, output);
        false
    }

    /// Whether the operation only ever *extends* the state, in the sense of
    /// [`Model::may_extend_to`] (an append to a string, an add to a set),
    /// whatever its answer. The default, `false`, is always safe.
    fn only_extends(&self, input: &Self::Input) -> bool {
        let _ = input;
        false
    }

    /// Whether the read `input` answering `output` can be legal in `state` or
    /// in a state reached from it through any number of operations for which
    /// [`Model::only_extends`] is true. The search uses it to look ahead: once
    /// a pending read can no longer be answered and nothing that may come
    /// before it can do more than extend the state, the configuration is dead
    /// (a read of `"ab"` rules out any order that has appended `"b"` before
    /// `"a"`). Answer `true` when unsure; a wrong `false` makes the checker
    /// wrong. The default is always `true`.
    fn may_extend_to(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: &Self::Output,
    ) -> bool {
        let _ = (state, input, output);
        true
    }

    /// A readable rendering of an operation, for reports.
    fn describe_operation(&self, input: &Self::Input, output: Option<&Self::Output>) -> String {
        match output {
            Some(output) => format!("{input:?} -> {output:?}"),
            None => format!("{input:?} -> ?"),
        }
    }

    /// A readable rendering of a state, for reports.
    fn describe_state(&self, state: &Self::State) -> String {
        format!("{state:?}")
    }
}

/// An operation typed for model `M`.
pub type TypedOperation<M> = super::Operation<<M as Model>::Input, <M as Model>::Output>;

/// A model that can read untyped records (JSON values), which is what the
/// `conclave-jepsen check` command needs.
pub trait FromRecord: Model {
    /// The typed input of a record.
    fn input(&self, record: &Record) -> Result<Self::Input, String>;

    /// The typed output of a record whose outcome is `ok`.
    fn output(&self, record: &Record, input: &Self::Input) -> Result<Self::Output, String>;
}

/// Converts records into typed operations for `model`: `fail` records are
/// dropped (they did not happen), `info` and pending ones get an unknown
/// output.
pub fn operations_from_records<M: FromRecord>(
    model: &M,
    records: &[Record],
) -> Result<Vec<TypedOperation<M>>, CheckError> {
    use super::history::Outcome;
    let mut operations = Vec::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        let error = |reason: String| CheckError::Model {
            model: model.name(),
            operation: index,
            function: record.function.clone(),
            reason,
        };
        if record.outcome == Outcome::Fail {
            continue;
        }
        let input = model.input(record).map_err(error)?;
        let operation = match (record.outcome, record.completion) {
            (Outcome::Ok, Some(completion)) => {
                let output = model.output(record, &input).map_err(error)?;
                super::Operation::completed(record.process, record.call, completion, input, output)
            }
            _ => super::Operation::unknown(record.process, record.call, input),
        };
        operations.push(operation);
    }
    Ok(operations)
}
