//! Model-based test: random append / truncate / compact / sync / crash /
//! reopen against a plain `Vec` model. After a crash the log must equal a
//! prefix of the model that holds everything synced; otherwise it must equal
//! the model exactly.
//!
//! More cases: `CONCLAVE_LOG_MODEL_CASES=5000 cargo test -p conclave-log --test model`
//! (the disk variant runs a tenth of that).

mod common;

use std::sync::Arc;

use common::payload;
use conclave_log::{Entry, FileSystem, Log, LogOptions, MemoryFileSystem, RealFileSystem};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Operation {
    Append {
        count: u64,
        payload_bytes: usize,
        term_step: u64,
    },
    Sync,
    /// Truncate at a position chosen as a fraction (per mille) of the log.
    Truncate {
        per_mille: u64,
    },
    /// Compact up to a position chosen as a fraction of the log (past the end too).
    Compact {
        per_mille: u64,
    },
    Crash {
        tear: bool,
    },
    Reopen,
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        6 => (1..8u64, 0..120usize, 0..2u64)
            .prop_map(|(count, payload_bytes, term_step)| Operation::Append { count, payload_bytes, term_step }),
        3 => Just(Operation::Sync),
        1 => (0..1000u64).prop_map(|per_mille| Operation::Truncate { per_mille }),
        1 => (0..1100u64).prop_map(|per_mille| Operation::Compact { per_mille }),
        1 => any::<bool>().prop_map(|tear| Operation::Crash { tear }),
        1 => Just(Operation::Reopen),
    ]
}

/// The model: what the log must hold.
struct Model {
    first_index: u64,
    entries: Vec<Entry>,
    durable_index: u64,
    term: u64,
}

impl Model {
    fn next_index(&self) -> u64 {
        self.first_index + self.entries.len() as u64
    }

    fn position(&self, per_mille: u64) -> u64 {
        self.first_index + (self.entries.len() as u64 + 1) * per_mille / 1000
    }
}

/// The case count: `default` unless `CONCLAVE_LOG_MODEL_CASES` says otherwise.
fn cases(default: u32) -> u32 {
    std::env::var("CONCLAVE_LOG_MODEL_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn options() -> LogOptions {
    LogOptions {
        segment_size_bytes_max: 512,
        entry_payload_bytes_max: 256,
        ..LogOptions::default()
    }
}

fn assert_equal(log: &Log, model: &Model) {
    assert_eq!(log.first_index(), model.first_index, "first index");
    assert_eq!(log.last_index(), model.next_index() - 1, "last index");
    let range = log
        .entries(model.first_index..model.next_index(), u64::MAX)
        .expect("range read");
    assert_eq!(range, model.entries, "range read across segments");
    for entry in &model.entries {
        assert_eq!(&log.entry(entry.index).expect("entry"), entry);
        assert_eq!(log.term(entry.index).expect("term"), entry.term);
    }
}

fn run(
    file_system: Arc<dyn FileSystem>,
    memory: Option<&MemoryFileSystem>,
    directory: &std::path::Path,
    operations: &[Operation],
) {
    let mut log = Some(Log::open(Arc::clone(&file_system), directory, options()).expect("open"));
    let mut model = Model {
        first_index: 1,
        entries: Vec::new(),
        durable_index: 0,
        term: 1,
    };
    for operation in operations {
        let current = log.as_mut().expect("log is open");
        match operation {
            Operation::Append {
                count,
                payload_bytes,
                term_step,
            } => {
                model.term += term_step;
                let first = model.next_index();
                let batch: Vec<Entry> = (first..first + count)
                    .map(|index| {
                        Entry::new(
                            index,
                            model.term,
                            (index % 3) as u8,
                            payload(index, *payload_bytes),
                        )
                    })
                    .collect();
                current.append(&batch).expect("append");
                model.entries.extend(batch);
            }
            Operation::Sync => {
                current.sync().expect("sync");
                model.durable_index = model.next_index() - 1;
            }
            Operation::Truncate { per_mille } => {
                let from = model.position(*per_mille).max(model.first_index);
                current.truncate_suffix(from).expect("truncate");
                model
                    .entries
                    .truncate((from.min(model.next_index()) - model.first_index) as usize);
                model.durable_index = model.durable_index.min(model.next_index() - 1);
            }
            Operation::Compact { per_mille } => {
                let upto = model.position(*per_mille);
                current.compact_prefix(upto).expect("compact");
                if upto > model.first_index {
                    let drop_count = ((upto - model.first_index) as usize).min(model.entries.len());
                    model.entries.drain(..drop_count);
                    model.first_index = upto;
                    model.durable_index = model.durable_index.max(upto - 1);
                }
            }
            Operation::Crash { tear } => {
                let Some(memory) = memory else { continue };
                drop(log.take());
                memory.crash(*tear);
                let reopened = Log::open(Arc::clone(&file_system), directory, options())
                    .expect("reopen after crash");
                let last = reopened.last_index();
                assert!(
                    last >= model.durable_index,
                    "lost synced entries: last {last} < durable {}",
                    model.durable_index
                );
                assert!(
                    last < model.next_index(),
                    "resurrected entries: last {last}"
                );
                model
                    .entries
                    .truncate((last + 1 - model.first_index) as usize);
                model.durable_index = last;
                log = Some(reopened);
            }
            Operation::Reopen => {
                drop(log.take());
                log = Some(
                    Log::open(Arc::clone(&file_system), directory, options()).expect("reopen"),
                );
            }
        }
        assert_equal(log.as_ref().expect("log is open"), &model);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(300)))]

    #[test]
    fn the_memory_log_matches_the_model_through_crashes(seed in any::<u64>(), operations in prop::collection::vec(operation(), 1..60)) {
        let memory = MemoryFileSystem::new(seed);
        run(Arc::new(memory.clone()), Some(&memory), std::path::Path::new("/data/log"), &operations);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(300) / 10 + 10))]

    /// The real file system cannot lose page-cache data on demand, so here a
    /// "crash" is skipped and every reopen must give the model exactly.
    #[test]
    fn the_disk_log_matches_the_model_through_reopens(operations in prop::collection::vec(operation(), 1..40)) {
        let directory = tempfile::tempdir().expect("temporary directory");
        run(Arc::new(RealFileSystem), None, &directory.path().join("log"), &operations);
    }
}
