//! Benchmarks of conclave-log: `cargo bench -p conclave-log`.
//!
//! - `append/group_commit/<appenders>`: 256-byte entries from 1, 16 and 64
//!   threads through the group-commit writer (one fsync per batch); the mean
//!   entries per fsync is printed to stderr.
//! - `append/baseline_write_fdatasync/<batch>`: the disk's own limit — a plain
//!   loop of write + fdatasync with the batch sizes the writer reached.
//! - `read/sequential_sealed`, `read/random_by_index`: reads from sealed segments.
//! - `open/1_GiB`: opening a 1 GiB log, generated once in a temporary directory.

use std::hint::black_box;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use conclave_log::{Entry, GroupCommit, GroupCommitOptions, Log, LogOptions};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const ENTRY_PAYLOAD_BYTES: usize = 256;
const APPENDER_COUNTS: [u64; 3] = [1, 16, 64];

/// Mean entries per fsync measured for each appender count, for the baseline.
static BATCH_SIZES: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());

fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut mixed = *state;
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    mixed ^ (mixed >> 31)
}

fn group_commit_append(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("append");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(1));
    let payload = Bytes::from(vec![0xab_u8; ENTRY_PAYLOAD_BYTES]);
    for appenders in APPENDER_COUNTS {
        let directory = tempfile::tempdir().expect("temporary directory");
        let log =
            Log::open_on_disk(directory.path().join("log"), LogOptions::default()).expect("open");
        let writer =
            Arc::new(GroupCommit::start(log, GroupCommitOptions::default()).expect("writer"));
        group.bench_function(BenchmarkId::new("group_commit", appenders), |bencher| {
            bencher.iter_custom(|iterations| {
                let per_thread = iterations.div_ceil(appenders);
                let started = Instant::now();
                let threads: Vec<_> = (0..appenders)
                    .map(|_| {
                        let writer = Arc::clone(&writer);
                        let payload = payload.clone();
                        std::thread::spawn(move || {
                            for _ in 0..per_thread {
                                writer
                                    .append_payloads(1, 0, vec![payload.clone()])
                                    .expect("append");
                            }
                        })
                    })
                    .collect();
                for thread in threads {
                    thread.join().expect("appender");
                }
                started
                    .elapsed()
                    .mul_f64(iterations as f64 / (per_thread * appenders) as f64)
            });
        });
        let statistics = writer.statistics();
        let per_fsync = statistics.entries_count / statistics.syncs_count.max(1);
        if statistics.entries_count > 0 {
            eprintln!(
                "append/group_commit/{appenders}: {per_fsync} entries per fsync ({} entries, {} fsyncs)",
                statistics.entries_count, statistics.syncs_count
            );
        }
        BATCH_SIZES
            .lock()
            .expect("batch sizes")
            .push((appenders, per_fsync.max(1)));
    }
    let batch_sizes = BATCH_SIZES.lock().expect("batch sizes").clone();
    for (appenders, batch) in batch_sizes {
        let directory = tempfile::tempdir().expect("temporary directory");
        let mut file = std::fs::File::create(directory.path().join("baseline")).expect("create");
        // The same bytes a record takes: a 32-byte header and the payload.
        let buffer = vec![0xab_u8; (32 + ENTRY_PAYLOAD_BYTES) * batch as usize];
        group.throughput(Throughput::Elements(batch));
        let name = format!("baseline_write_fdatasync/batch_{batch}_as_at_{appenders}_appenders");
        group.bench_function(name, |bencher| {
            bencher.iter(|| {
                file.write_all(&buffer).expect("write");
                file.sync_data().expect("fdatasync");
            });
        });
    }
    group.finish();
}

/// A log of `total_bytes` of `payload_bytes` entries, synced and reopened, so
/// that all but the last segment are sealed.
fn build_log(directory: &std::path::Path, total_bytes: u64, payload_bytes: usize) -> Log {
    let options = LogOptions::default();
    let mut log = Log::open_on_disk(directory, options.clone()).expect("open");
    let payload = Bytes::from(vec![0x5a_u8; payload_bytes]);
    let count = total_bytes / payload_bytes as u64;
    let batch = 1024;
    let mut index = 1;
    while index <= count {
        let entries: Vec<Entry> = (index..(index + batch).min(count + 1))
            .map(|index| Entry::new(index, 1, 0, payload.clone()))
            .collect();
        index += entries.len() as u64;
        log.append(&entries).expect("append");
    }
    log.sync().expect("sync");
    drop(log);
    Log::open_on_disk(directory, options).expect("reopen")
}

fn reads(criterion: &mut Criterion) {
    let payload_bytes = 1024;
    // Built on first use, so that a filter that skips this group skips the
    // 256 MiB of writes too.
    let mut built: Option<(tempfile::TempDir, Log, u64)> = None;
    let mut build = || {
        let directory = tempfile::tempdir().expect("temporary directory");
        let log = build_log(
            &directory.path().join("log"),
            256 * 1024 * 1024,
            payload_bytes,
        );
        // The last segment is the active one; read only what is sealed.
        let sealed_last = log.last_index() - (64 * 1024 * 1024 / (payload_bytes as u64 + 32));
        (directory, log, sealed_last)
    };
    let mut group = criterion.benchmark_group("read");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    let chunk = 4096u64;
    group.throughput(Throughput::Bytes(chunk * payload_bytes as u64));
    let mut start = 1;
    group.bench_function("sequential_sealed", |bencher| {
        let (_, log, sealed_last) = built.get_or_insert_with(&mut build);
        bencher.iter(|| {
            if start + chunk > *sealed_last {
                start = 1;
            }
            let entries = log
                .entries(start..start + chunk, u64::MAX)
                .expect("entries");
            start += chunk;
            black_box(entries.len())
        });
    });
    group.throughput(Throughput::Elements(1));
    let mut random_state = 42;
    group.bench_function("random_by_index", |bencher| {
        let (_, log, sealed_last) = built.get_or_insert_with(&mut build);
        bencher.iter(|| {
            let index = 1 + next_random(&mut random_state) % *sealed_last;
            black_box(log.entry(index).expect("entry").payload.len())
        });
    });
    group.finish();
}

fn open_time(criterion: &mut Criterion) {
    // Generated on first use (not in CI, which only builds the benchmarks).
    let mut built: Option<tempfile::TempDir> = None;
    let mut group = criterion.benchmark_group("open");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("1_GiB", |bencher| {
        let directory = built.get_or_insert_with(|| {
            let directory = tempfile::tempdir().expect("temporary directory");
            let started = Instant::now();
            let log = build_log(&directory.path().join("log"), 1024 * 1024 * 1024, 1024);
            eprintln!(
                "open/1_GiB: generated {} entries in {} segments in {:?}",
                log.last_index(),
                log.segments_count(),
                started.elapsed()
            );
            directory
        });
        let log_directory = directory.path().join("log");
        bencher.iter(|| {
            let log = Log::open_on_disk(&log_directory, LogOptions::default()).expect("open");
            black_box(log.last_index())
        });
    });
    group.finish();
}

criterion_group!(benches, group_commit_append, reads, open_time);
criterion_main!(benches);
