//! Every labelled history of Porcupine's test data gets the verdict its
//! `verdicts.csv` gives. The data is read from `shared/lincheck-data` beside
//! the repository (or from `$CONCLAVE_LINCHECK_DATA`); it is never copied into
//! the repository, and a missing directory fails the test.

use std::path::PathBuf;

use conclave_jepsen::check::models::kv::Kv;
use conclave_jepsen::check::models::register::Register;
use conclave_jepsen::check::{
    CheckConfig, Format, FromRecord, Model, ModelName, Operation, Verdict, WindowKind, check,
    check_text, formats, operations_from_records,
};

fn data_directory() -> PathBuf {
    let directory = std::env::var_os("CONCLAVE_LINCHECK_DATA").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/lincheck-data"
            ))
        },
        PathBuf::from,
    );
    assert!(
        directory.join("verdicts.csv").is_file(),
        "the labelled histories are missing: expected {}/verdicts.csv. Put the lincheck-data \
         directory at ../shared/lincheck-data beside the repository, or set \
         CONCLAVE_LINCHECK_DATA to its path.",
        directory.display()
    );
    directory
}

struct Row {
    file: String,
    format: Format,
    model: ModelName,
    /// `None` for the one empty file, which has no label (its cluster never
    /// started); an empty history is trivially linearizable.
    linearizable: Option<bool>,
}

fn rows() -> Vec<Row> {
    let directory = data_directory();
    let csv = std::fs::read_to_string(directory.join("verdicts.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|field| *field == name).unwrap();
    let (file, format, expected) = (
        column("file"),
        column("format"),
        column("expected_linearizable"),
    );
    lines
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let (format, model) = match fields[format] {
                "jepsen-etcd-log" => (Format::EtcdLog, ModelName::Register),
                "kv-edn-lines" => (Format::KvEdn, ModelName::Kv),
                other => panic!("unknown format {other} in verdicts.csv"),
            };
            Row {
                file: fields[file].to_string(),
                format,
                model,
                linearizable: match fields[expected] {
                    "true" => Some(true),
                    "false" => Some(false),
                    "" => None,
                    other => panic!("unknown verdict {other:?} for {}", fields[file]),
                },
            }
        })
        .collect()
}

fn check_all(partition: bool) {
    let directory = data_directory();
    let rows = rows();
    assert_eq!(
        rows.len(),
        109,
        "103 etcd logs and 6 kv histories are listed"
    );
    assert_eq!(
        rows.iter().filter(|row| row.linearizable.is_none()).count(),
        1
    );
    let config = CheckConfig {
        partition,
        ..CheckConfig::default()
    };
    let mut wrong = Vec::new();
    for row in &rows {
        let text = std::fs::read_to_string(directory.join(&row.file)).unwrap();
        let analysis = check_text(&text, row.format, row.model, &config, &row.file).unwrap();
        let expected = if row.linearizable.unwrap_or(true) {
            Verdict::Linearizable
        } else {
            Verdict::NotLinearizable
        };
        if analysis.report.verdict != expected {
            wrong.push(format!(
                "{}: expected {expected}, got {}",
                row.file, analysis.report.verdict
            ));
        }
        if expected == Verdict::NotLinearizable {
            let failing = analysis
                .report
                .partitions
                .iter()
                .filter(|p| p.counterexample.is_some());
            assert!(
                failing.count() >= 1,
                "{}: a violation comes with a counterexample",
                row.file
            );
        }
    }
    assert!(wrong.is_empty(), "wrong verdicts:\n{}", wrong.join("\n"));
}

#[test]
fn every_labelled_history_gets_its_verdict_with_partitioning() {
    check_all(true);
}

#[test]
fn kv_histories_get_their_verdicts_without_partitioning() {
    let directory = data_directory();
    let config = CheckConfig {
        partition: false,
        ..CheckConfig::default()
    };
    for row in rows()
        .iter()
        .filter(|row| row.model == ModelName::Kv && !row.file.contains("c50"))
    {
        let text = std::fs::read_to_string(directory.join(&row.file)).unwrap();
        let analysis = check_text(&text, row.format, row.model, &config, &row.file).unwrap();
        assert_eq!(analysis.report.partitions.len(), 1);
        let expected = if row.linearizable == Some(true) {
            Verdict::Linearizable
        } else {
            Verdict::NotLinearizable
        };
        assert_eq!(analysis.report.verdict, expected, "{}", row.file);
    }
}

/// Checks `operations` with the operations outside `keep` relaxed: each
/// keeps its interval, but its result is unknown and it may not have
/// happened.
fn verdict_keeping<M: Model>(
    model: &M,
    operations: &[Operation<M::Input, M::Output>],
    keep: &[usize],
) -> Verdict {
    let relaxed: Vec<Operation<M::Input, M::Output>> = operations
        .iter()
        .enumerate()
        .map(|(index, operation)| {
            let mut operation = operation.clone();
            if !keep.contains(&index) {
                operation.output = None;
            }
            operation
        })
        .collect();
    check(model, &relaxed, &CheckConfig::default())
        .unwrap()
        .verdict
}

/// The window of every failing partition is a violation by itself when it is
/// reported so, and when it is reported minimal no operation of it can be
/// spared. Returns the window sizes.
fn check_windows<M: FromRecord>(model: &M, file: &str, format: Format) -> Vec<usize> {
    let text = std::fs::read_to_string(data_directory().join(file)).unwrap();
    let records = formats::parse(&text, format).unwrap();
    let operations = operations_from_records(model, &records).unwrap();
    let report = check(model, &operations, &CheckConfig::default()).unwrap();
    assert_eq!(report.verdict, Verdict::NotLinearizable, "{file}");
    let mut sizes = Vec::new();
    for partition in &report.partitions {
        let Some(counterexample) = &partition.counterexample else {
            continue;
        };
        let window = &counterexample.window;
        let kind = counterexample.window_kind;
        println!("{file}: window of {} operations, {kind:?}", window.len());
        assert!(!window.is_empty(), "{file}");
        if kind == WindowKind::AroundDeadEnd {
            // Nothing is claimed about these but where the search got stuck.
            sizes.push(window.len());
            continue;
        }
        assert_eq!(
            verdict_keeping(model, &operations, window),
            Verdict::NotLinearizable,
            "{file}: the window {window:?} is not a violation by itself"
        );
        if kind == WindowKind::Minimal {
            for spared in window {
                let rest: Vec<usize> = window.iter().copied().filter(|i| i != spared).collect();
                assert_eq!(
                    verdict_keeping(model, &operations, &rest),
                    Verdict::Linearizable,
                    "{file}: the window {window:?} is minimal, yet #{spared} can be spared"
                );
            }
        }
        sizes.push(window.len());
    }
    sizes
}

/// The largest window a labelled violation has.
const WINDOW_SIZE_MAX: usize = 32;

#[test]
fn windows_of_labelled_violations_are_small_violations_by_themselves() {
    let mut sizes = Vec::new();
    for row in rows().iter().filter(|row| row.linearizable == Some(false)) {
        sizes.extend(match row.model {
            ModelName::Register => check_windows(&Register, &row.file, row.format),
            _ => check_windows(&Kv, &row.file, row.format),
        });
    }
    sizes.sort_unstable();
    assert!(sizes.len() >= 79 + 3, "a window per failing history");
    println!("window sizes: {sizes:?}");
    assert!(
        sizes[sizes.len() / 2] <= 3,
        "half the windows have at most 3 operations"
    );
    assert!(
        sizes[sizes.len() - 1] <= WINDOW_SIZE_MAX,
        "no window is larger than {WINDOW_SIZE_MAX}"
    );
}
