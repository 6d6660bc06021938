//! The group-commit writer: concurrent appenders, batching, durability of
//! acknowledged entries across a crash, fsync failure, sync policies.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Backend, entries, payload};
use conclave_log::{
    Error, FaultPlan, GroupCommit, GroupCommitOptions, Log, LogOptions, MemoryFileSystem,
    SyncPolicy,
};

fn options() -> LogOptions {
    LogOptions {
        segment_size_bytes_max: 4096,
        entry_payload_bytes_max: 256,
        ..LogOptions::default()
    }
}

fn writer(backend: &Backend, sync_policy: SyncPolicy) -> GroupCommit {
    let log = Log::open(backend.file_system(), backend.log_directory(), options()).expect("open");
    GroupCommit::start(
        log,
        GroupCommitOptions {
            sync_policy,
            ..GroupCommitOptions::default()
        },
    )
    .expect("start")
}

/// Payload naming its appender and sequence, so that each can be found again.
fn tagged(thread: u64, sequence: u64) -> Bytes {
    Bytes::from(format!("thread {thread} sequence {sequence}"))
}

#[test]
fn concurrent_appenders_get_disjoint_receipts_covering_the_log() {
    for backend in Backend::both(1) {
        let writer = Arc::new(writer(&backend, SyncPolicy::EveryBatch));
        let threads: Vec<_> = (0..8u64)
            .map(|thread| {
                let writer = Arc::clone(&writer);
                std::thread::spawn(move || {
                    (0..40u64)
                        .map(|sequence| {
                            let payloads =
                                vec![tagged(thread, sequence); 1 + (sequence % 3) as usize];
                            let receipt = writer.append_payloads(1, 0, payloads).expect("append");
                            (thread, sequence, receipt)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut receipts: Vec<_> = threads
            .into_iter()
            .flat_map(|thread| thread.join().expect("join"))
            .collect();
        receipts.sort_by_key(|(_, _, receipt)| receipt.first_index);
        let mut next = 1;
        for (thread, sequence, receipt) in &receipts {
            assert_eq!(
                receipt.first_index, next,
                "receipts are contiguous and disjoint"
            );
            next = receipt.last_index + 1;
            writer.with_log(|log| {
                assert!(log.durable_index() >= receipt.last_index);
                for index in receipt.first_index..=receipt.last_index {
                    assert_eq!(
                        log.entry(index).expect("entry").payload,
                        tagged(*thread, *sequence)
                    );
                }
            });
        }
        let statistics = writer.statistics();
        assert_eq!(statistics.entries_count, next - 1);
        assert!(statistics.syncs_count <= statistics.batches_count);
    }
}

#[test]
fn submissions_queued_while_the_writer_is_busy_share_one_fsync() {
    for backend in Backend::both(2) {
        let writer = writer(&backend, SyncPolicy::EveryBatch);
        // Holding the log keeps the writer from finishing a batch while 100
        // submissions queue up behind it.
        let tickets = writer.with_log(|_| {
            (0..100u64)
                .map(|sequence| {
                    writer
                        .submit_payloads(1, 0, vec![tagged(0, sequence)])
                        .expect("submit")
                })
                .collect::<Vec<_>>()
        });
        for (sequence, ticket) in (0u64..).zip(tickets) {
            let receipt = ticket.wait().expect("durable");
            assert_eq!(receipt.first_index, sequence + 1);
        }
        let statistics = writer.statistics();
        assert_eq!(statistics.entries_count, 100);
        assert!(
            statistics.syncs_count <= 2,
            "{}: 100 submissions took {} fsyncs",
            backend.name(),
            statistics.syncs_count
        );
    }
}

#[test]
fn every_acknowledged_entry_survives_a_crash() {
    for seed in 0..5 {
        let memory = MemoryFileSystem::new(seed);
        let backend = Backend::Memory(memory.clone());
        let writer = Arc::new(writer(&backend, SyncPolicy::EveryBatch));
        let crashing = Arc::new(AtomicBool::new(false));
        let acknowledged_count = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4u64)
            .map(|thread| {
                let writer = Arc::clone(&writer);
                let crashing = Arc::clone(&crashing);
                let acknowledged_count = Arc::clone(&acknowledged_count);
                std::thread::spawn(move || {
                    let mut acknowledged_before_crash = Vec::new();
                    for sequence in 0..30u64 {
                        let result = writer.append_payloads(1, 0, vec![tagged(thread, sequence)]);
                        // Read after the acknowledgement: `false` proves the
                        // acknowledgement came before the crash below.
                        if !crashing.load(Ordering::SeqCst) {
                            acknowledged_before_crash.push((
                                thread,
                                sequence,
                                result.expect("append"),
                            ));
                            acknowledged_count.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    acknowledged_before_crash
                })
            })
            .collect();
        // Crash while the appenders are still running, once some are durable.
        let deadline = Instant::now() + Duration::from_secs(10);
        while acknowledged_count.load(Ordering::SeqCst) < 10 {
            assert!(Instant::now() < deadline, "the writer made no progress");
            std::thread::yield_now();
        }
        crashing.store(true, Ordering::SeqCst);
        memory.crash(true);
        let acknowledged: Vec<_> = threads
            .into_iter()
            .flat_map(|thread| thread.join().expect("join"))
            .collect();
        drop(writer);
        let log =
            Log::open(backend.file_system(), backend.log_directory(), options()).expect("reopen");
        assert!(acknowledged.len() >= 10);
        for (thread, sequence, receipt) in acknowledged {
            assert!(
                receipt.last_index <= log.last_index(),
                "seed {seed}: acknowledged {receipt:?} lost"
            );
            assert_eq!(
                log.entry(receipt.first_index).expect("entry").payload,
                tagged(thread, sequence)
            );
        }
        for index in 1..=log.last_index() {
            log.entry(index).expect("no hole");
        }
    }
}

#[test]
fn a_failed_fsync_is_reported_and_poisons_the_log() {
    let memory = MemoryFileSystem::new(3);
    let backend = Backend::Memory(memory.clone());
    let writer = writer(&backend, SyncPolicy::EveryBatch);
    writer
        .append_payloads(1, 0, vec![payload(1, 10)])
        .expect("first append");
    memory.set_faults(FaultPlan {
        sync_failures_count: 1,
    });
    let error = writer
        .append_payloads(1, 0, vec![payload(2, 10)])
        .expect_err("fsync fails");
    assert!(
        matches!(
            error,
            Error::Io {
                operation: "fsync",
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(
        writer.append_payloads(1, 0, vec![payload(3, 10)]),
        Err(Error::Poisoned)
    );
    let log = writer.stop().expect("stop");
    drop(log);
    memory.crash(false);
    let log =
        Log::open(backend.file_system(), backend.log_directory(), options()).expect("reopen heals");
    assert_eq!(log.last_index(), 1, "the unacknowledged entry is gone");
}

#[test]
fn entries_out_of_order_are_refused_without_harming_others() {
    for backend in Backend::both(4) {
        let writer = writer(&backend, SyncPolicy::EveryBatch);
        writer.append(entries(1, 3, 1, 20)).expect("append");
        assert_eq!(
            writer.append(entries(7, 1, 1, 20)),
            Err(Error::OutOfOrder {
                expected: 4,
                found: 7
            })
        );
        let receipt = writer
            .append(entries(4, 2, 1, 20))
            .expect("append continues");
        assert_eq!((receipt.first_index, receipt.last_index), (4, 5));
        let log = writer.stop().expect("stop");
        assert_eq!(log.last_index(), 5);
    }
}

#[test]
fn the_interval_and_never_policies_acknowledge_with_fewer_fsyncs() {
    let memory = MemoryFileSystem::new(5);
    let backend = Backend::Memory(memory.clone());
    let interval_writer = writer(&backend, SyncPolicy::Interval(Duration::from_millis(20)));
    interval_writer
        .append_payloads(1, 0, vec![tagged(0, 0)])
        .expect("first append creates the segment");
    let before = memory.syncs_count();
    let tickets: Vec<_> = (1..21)
        .map(|sequence| {
            interval_writer
                .submit_payloads(1, 0, vec![tagged(0, sequence)])
                .expect("submit")
        })
        .collect();
    for ticket in tickets {
        ticket.wait().expect("durable");
    }
    let interval_syncs = memory.syncs_count() - before;
    assert!(
        (1..=3).contains(&interval_syncs),
        "20 quick submissions took {interval_syncs} fsyncs"
    );
    interval_writer.with_log(|log| assert_eq!(log.durable_index(), 21));
    drop(interval_writer);

    let memory = MemoryFileSystem::new(6);
    let backend = Backend::Memory(memory.clone());
    let never_writer = writer(&backend, SyncPolicy::Never);
    never_writer
        .append_payloads(1, 0, vec![tagged(0, 0)])
        .expect("first append creates the segment");
    let before = memory.syncs_count();
    for sequence in 1..21 {
        never_writer
            .append_payloads(1, 0, vec![tagged(0, sequence)])
            .expect("append");
    }
    assert_eq!(
        memory.syncs_count(),
        before,
        "the never policy never fsyncs"
    );
}

#[test]
fn invalid_options_are_refused() {
    let backend = Backend::memory(7);
    let log = Log::open(backend.file_system(), backend.log_directory(), options()).expect("open");
    let options = GroupCommitOptions {
        sync_policy: SyncPolicy::Interval(Duration::ZERO),
        ..GroupCommitOptions::default()
    };
    assert!(matches!(
        GroupCommit::start(log, options),
        Err(Error::InvalidOption {
            name: "sync_policy",
            ..
        })
    ));
}
