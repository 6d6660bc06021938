//! The log's contract, checked on both file systems: appends, reads by index
//! and by range, segment rolling, truncation, compaction and reopening.

mod common;

use common::{Backend, entries, payload};
use conclave_log::{Entry, Error, Log, LogOptions, StorageLevel};

fn small_segments() -> LogOptions {
    LogOptions {
        segment_size_bytes_max: 1024,
        entry_payload_bytes_max: 512,
        ..LogOptions::default()
    }
}

fn open(backend: &Backend) -> Log {
    Log::open(
        backend.file_system(),
        backend.log_directory(),
        small_segments(),
    )
    .expect("open")
}

fn assert_holds(log: &Log, first: u64, last: u64) {
    assert_eq!((log.first_index(), log.last_index()), (first, last));
    for index in first..=last {
        let entry = log.entry(index).expect("entry");
        assert_eq!(entry.index, index);
        assert_eq!(entry.payload, payload(index, entry.payload.len()));
        assert_eq!(log.term(index).expect("term"), entry.term);
    }
}

#[test]
fn appends_roll_segments_and_survive_a_reopen() {
    for backend in Backend::both(1) {
        let mut log = open(&backend);
        assert!(log.is_empty());
        assert_eq!((log.first_index(), log.last_index()), (1, 0));
        for batch in 0..10 {
            log.append(&entries(1 + batch * 10, 10, 1 + batch / 3, 60))
                .expect("append");
        }
        log.sync().expect("sync");
        assert!(
            log.segments_count() > 3,
            "{}: 100 entries of 92 bytes need many 1 KiB segments",
            backend.name()
        );
        assert_holds(&log, 1, 100);
        assert_eq!(log.durable_index(), 100);
        drop(log);
        let log = open(&backend);
        assert_holds(&log, 1, 100);
        assert_eq!(log.term(100).expect("term"), 4);
    }
}

#[test]
fn range_reads_respect_the_byte_budget_but_return_at_least_one_entry() {
    for backend in Backend::both(2) {
        let mut log = open(&backend);
        log.append(&entries(1, 50, 1, 100)).expect("append");
        // Each record is 32 + 100 bytes: three fit in 400, a fourth would not.
        let read = log.entries(5..20, 400).expect("entries");
        assert_eq!(
            read.iter().map(|entry| entry.index).collect::<Vec<_>>(),
            vec![5, 6, 7]
        );
        let read = log.entries(5..20, 395).expect("entries");
        assert_eq!(read.len(), 2);
        let read = log.entries(5..20, 10).expect("entries");
        assert_eq!(
            read.len(),
            1,
            "a budget smaller than one entry still returns one"
        );
        let read = log.entries(1..51, u64::MAX).expect("entries");
        assert_eq!(read.len(), 50);
        assert_eq!(log.entries(3..3, 10).expect("empty"), Vec::<Entry>::new());
        assert_eq!(
            log.entries(40..52, 10),
            Err(Error::Unavailable {
                index: 51,
                last_index: 50
            })
        );
    }
}

#[test]
fn misuse_gets_typed_errors() {
    for backend in Backend::both(3) {
        let mut log = open(&backend);
        log.append(&entries(1, 3, 1, 10)).expect("append");
        assert_eq!(
            log.append(&entries(5, 1, 1, 10)),
            Err(Error::OutOfOrder {
                expected: 4,
                found: 5
            })
        );
        let large = vec![Entry::new(4, 1, 0, vec![0u8; 513])];
        assert!(matches!(log.append(&large), Err(Error::TooLarge { .. })));
        assert_eq!(
            log.entry(4),
            Err(Error::Unavailable {
                index: 4,
                last_index: 3
            })
        );
        log.compact_prefix(2).expect("compact");
        assert_eq!(
            log.entry(1),
            Err(Error::Compacted {
                index: 1,
                first_index: 2
            })
        );
        assert_eq!(
            log.truncate_suffix(1),
            Err(Error::Compacted {
                index: 1,
                first_index: 2
            })
        );
        assert_holds(&log, 2, 3);
    }
}

#[test]
fn truncation_in_the_active_segment_and_into_sealed_ones_then_appends_continue() {
    for backend in Backend::both(4) {
        let mut log = open(&backend);
        log.append(&entries(1, 60, 1, 60)).expect("append");
        log.truncate_suffix(55)
            .expect("truncate in the active segment");
        assert_holds(&log, 1, 54);
        log.truncate_suffix(12)
            .expect("truncate into a sealed segment");
        assert_holds(&log, 1, 11);
        log.append(&entries(12, 30, 2, 60))
            .expect("append after truncation");
        log.sync().expect("sync");
        assert_holds(&log, 1, 41);
        assert_eq!(log.term(12).expect("term"), 2);
        drop(log);
        let mut log = open(&backend);
        assert_holds(&log, 1, 41);
        assert_eq!(log.term(11).expect("term"), 1);
        assert_eq!(log.term(12).expect("term"), 2);
        log.truncate_suffix(1).expect("truncate everything");
        assert!(log.is_empty());
        log.append(&entries(1, 2, 3, 10)).expect("append");
        assert_holds(&log, 1, 2);
    }
}

#[test]
fn compaction_removes_segments_and_can_move_past_the_end() {
    for backend in Backend::both(5) {
        let mut log = open(&backend);
        log.append(&entries(1, 60, 1, 60)).expect("append");
        let before = backend.segment_files().len();
        log.compact_prefix(30).expect("compact");
        assert!(
            backend.segment_files().len() < before,
            "{}: segments below 30 are deleted",
            backend.name()
        );
        assert_holds(&log, 30, 60);
        drop(log);
        let mut log = open(&backend);
        assert_holds(&log, 30, 60);
        // A snapshot beyond the end of the log: everything goes, the next
        // append starts right after the snapshot.
        log.compact_prefix(101).expect("compact past the end");
        assert!(log.is_empty());
        assert_eq!((log.first_index(), log.last_index()), (101, 100));
        assert_eq!(
            log.append(&entries(61, 1, 1, 10)),
            Err(Error::OutOfOrder {
                expected: 101,
                found: 61
            })
        );
        log.append(&entries(101, 5, 2, 10))
            .expect("append at the floor");
        log.sync().expect("sync");
        drop(log);
        let log = open(&backend);
        assert_holds(&log, 101, 105);
    }
}

#[test]
fn a_log_may_start_at_any_index() {
    for backend in Backend::both(6) {
        let mut log = open(&backend);
        log.compact_prefix(1_000_000).expect("start at one million");
        log.append(&entries(1_000_000, 20, 7, 100)).expect("append");
        log.sync().expect("sync");
        drop(log);
        let log = open(&backend);
        assert_holds(&log, 1_000_000, 1_000_019);
    }
}

#[test]
fn reads_of_the_active_segment_see_every_published_append() {
    for backend in Backend::both(7) {
        let mut log = open(&backend);
        for index in 1..=40 {
            log.append(&entries(index, 1, 1, 50)).expect("append");
            // Read back at once, before any sync, from the active segment.
            assert_eq!(log.entry(index).expect("entry").payload, payload(index, 50));
        }
    }
}

#[test]
fn an_entry_larger_than_a_segment_gets_a_segment_of_its_own() {
    for backend in Backend::both(8) {
        let options = LogOptions {
            segment_size_bytes_max: 256,
            entry_payload_bytes_max: 4096,
            ..LogOptions::default()
        };
        let mut log = Log::open(
            backend.file_system(),
            backend.log_directory(),
            options.clone(),
        )
        .expect("open");
        log.append(&entries(1, 1, 1, 10)).expect("small");
        log.append(&entries(2, 1, 1, 3000)).expect("large");
        log.append(&entries(3, 1, 1, 10)).expect("small");
        log.sync().expect("sync");
        assert_eq!(log.segments_count(), 3);
        drop(log);
        let log =
            Log::open(backend.file_system(), backend.log_directory(), options).expect("reopen");
        assert_holds(&log, 1, 3);
    }
}

#[test]
fn sealed_reads_share_the_mapped_file_and_active_reads_copy() {
    let backend = Backend::real();
    let mut log = open(&backend);
    log.append(&entries(1, 30, 1, 60)).expect("append");
    log.sync().expect("sync");
    // Index 1 is in a sealed segment: two reads point at the same mapped bytes.
    let first = log.entry(1).expect("entry");
    let second = log.entry(1).expect("entry");
    assert_eq!(
        first.payload.as_ptr(),
        second.payload.as_ptr(),
        "no copy from a sealed segment"
    );
    // Index 30 is in the active segment, read with a positional read into a
    // fresh buffer each time.
    let first = log.entry(30).expect("entry");
    let second = log.entry(30).expect("entry");
    assert_ne!(first.payload.as_ptr(), second.payload.as_ptr());
    assert_eq!(first, second);
}

#[test]
fn the_memory_storage_level_needs_no_disk_and_the_log_is_shareable() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Log>();
    let mut log = Log::open(
        StorageLevel::Memory.file_system(),
        "/anywhere",
        small_segments(),
    )
    .expect("open");
    log.append(&entries(1, 3, 1, 10)).expect("append");
    log.sync().expect("sync");
    assert_holds(&log, 1, 3);
    assert!(!std::path::Path::new("/anywhere").exists());
}
