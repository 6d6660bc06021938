//! Criterion benchmarks of the linearizability checker, on the figures that
//! Porcupine publishes for the same data (see jepsen/README.md):
//!
//! * `etcd_all`: the 102 labelled etcd logs, one after the other (and
//!   `etcd_all_with_windows`, the same with the full report);
//! * `c50_ok_partitioned`: kv/c50-ok.txt, split by key;
//! * `c10_ok_unpartitioned`: kv/c10-ok.txt, as one object;
//! * `kv_100k`: a generated 100,000-operation history, 10 keys, 32 clients.
//!
//! Parsing is done before timing, as in Porcupine's benchmarks, and so is
//! narrowing a violation's window (`window_trials_max: 0`): Porcupine's
//! `CheckEvents` answers only the verdict. `etcd_all_with_windows` times the
//! same logs with the full report, windows included. Run with
//! `cargo bench -p conclave-jepsen --bench check`.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use conclave_jepsen::check::generate::{Shape, kv_history};
use conclave_jepsen::check::models::kv::Kv;
use conclave_jepsen::check::models::register::Register;
use conclave_jepsen::check::{
    CheckConfig, Format, Verdict, check, formats, operations_from_records,
};
use criterion::{Criterion, criterion_group, criterion_main};

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
        "the labelled histories are missing: expected {}/verdicts.csv (or set \
         CONCLAVE_LINCHECK_DATA)",
        directory.display()
    );
    directory
}

fn read(file: &str, format: Format) -> Vec<conclave_jepsen::check::Record> {
    let text = std::fs::read_to_string(data_directory().join(file)).unwrap();
    formats::parse(&text, format).unwrap()
}

fn benchmarks(criterion: &mut Criterion) {
    let config = CheckConfig {
        window_trials_max: 0,
        ..CheckConfig::default()
    };
    let etcd: Vec<_> = (0..=102)
        .filter(|number| *number != 95)
        .map(|number| {
            let records = read(&format!("jepsen/etcd_{number:03}.log"), Format::EtcdLog);
            operations_from_records(&Register, &records).unwrap()
        })
        .collect();
    criterion.bench_function("etcd_all", |bencher| {
        bencher.iter(|| {
            for history in &etcd {
                let report = check(&Register, black_box(history), &config).unwrap();
                assert_ne!(report.verdict, Verdict::Unknown);
            }
        });
    });

    let full = CheckConfig::default();
    criterion.bench_function("etcd_all_with_windows", |bencher| {
        bencher.iter(|| {
            for history in &etcd {
                let report = check(&Register, black_box(history), &full).unwrap();
                assert_ne!(report.verdict, Verdict::Unknown);
            }
        });
    });

    let c50 = operations_from_records(&Kv, &read("kv/c50-ok.txt", Format::KvEdn)).unwrap();
    criterion.bench_function("c50_ok_partitioned", |bencher| {
        bencher.iter(|| {
            let report = check(&Kv, black_box(&c50), &config).unwrap();
            assert_eq!(report.verdict, Verdict::Linearizable);
        });
    });

    let c10 = operations_from_records(&Kv, &read("kv/c10-ok.txt", Format::KvEdn)).unwrap();
    let whole = CheckConfig {
        partition: false,
        ..config.clone()
    };
    criterion.bench_function("c10_ok_unpartitioned", |bencher| {
        bencher.iter(|| {
            let report = check(&Kv, black_box(&c10), &whole).unwrap();
            assert_eq!(report.verdict, Verdict::Linearizable);
        });
    });

    let shape = Shape {
        operation_count: 100_000,
        client_count: 32,
        unknown_percent: 0,
    };
    let large = kv_history(7, shape, 10);
    let mut group = criterion.benchmark_group("large");
    group.sample_size(10);
    group.bench_function("kv_100k", |bencher| {
        bencher.iter(|| {
            let report = check(&Kv, black_box(&large), &config).unwrap();
            assert_eq!(report.verdict, Verdict::Linearizable);
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    targets = benchmarks
}
criterion_main!(benches);
