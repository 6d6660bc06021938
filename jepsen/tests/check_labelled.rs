//! Every labelled history of Porcupine's test data gets the verdict its
//! `verdicts.csv` gives. The data is read from `shared/lincheck-data` beside
//! the repository (or from `$CONCLAVE_LINCHECK_DATA`); it is never copied into
//! the repository, and a missing directory fails the test.

use std::path::PathBuf;

use conclave_jepsen::check::{CheckConfig, Format, ModelName, Verdict, check_text};

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
