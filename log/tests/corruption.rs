//! Damaged files, on both file systems: each gives the error or the repair
//! that `FORMAT.md` documents.

mod common;

use common::{Backend, entries};
use conclave_log::{Error, Log, LogOptions, RecoveryMode, format};

fn options() -> LogOptions {
    LogOptions {
        segment_size_bytes_max: 600,
        entry_payload_bytes_max: 256,
        ..LogOptions::default()
    }
}

const RECORD_BYTES: usize = 32 + 50;
const HEADER_BYTES: usize = 32;

/// 40 synced entries of 50 bytes: six per segment, seven segments.
fn prepared(backend: &Backend) {
    let mut log =
        Log::open(backend.file_system(), backend.log_directory(), options()).expect("open");
    log.append(&entries(1, 40, 1, 50)).expect("append");
    log.sync().expect("sync");
    assert_eq!(backend.segment_files().len(), 7);
}

fn open_with(backend: &Backend, options: LogOptions) -> conclave_log::Result<Log> {
    Log::open(backend.file_system(), backend.log_directory(), options)
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_is_reported_on_read_or_on_verified_open() {
    for backend in Backend::both(1) {
        prepared(&backend);
        let segment = backend.segment_files()[1].clone(); // indexes 7..=12
        let offset = HEADER_BYTES + 2 * RECORD_BYTES + 40; // payload of index 9
        backend.flip_byte(&segment, offset);
        let log = open_with(&backend, options()).expect("the offset index spares a scan");
        let expected_offset = (HEADER_BYTES + 2 * RECORD_BYTES) as u64;
        match log.entry(9) {
            Err(Error::Corruption {
                segment: path,
                offset,
                ..
            }) => {
                assert_eq!((path, offset), (segment.clone(), expected_offset));
            }
            other => panic!("{}: expected corruption, got {other:?}", backend.name()),
        }
        assert_eq!(log.entry(8).expect("a neighbour is intact").index, 8);
        drop(log);
        let verified = LogOptions {
            verify_on_open: true,
            ..options()
        };
        let error = open_with(&backend, verified).expect_err("verified open finds it");
        assert!(
            matches!(&error, Error::Corruption { offset, .. } if *offset == expected_offset),
            "{error}"
        );
        assert!(
            error.to_string().contains("RecoveryMode::Repair"),
            "the message says what to do"
        );
    }
}

#[test]
fn a_flipped_byte_mid_way_in_the_last_segment_refuses_to_open_and_repair_cuts_there() {
    for backend in Backend::both(2) {
        prepared(&backend);
        let segment = backend.segment_files()[6].clone(); // indexes 37..=40
        backend.flip_byte(&segment, HEADER_BYTES + RECORD_BYTES + 10); // header of index 38
        let error = open_with(&backend, options()).expect_err("corruption before the tail");
        assert_eq!(
            error,
            Error::Corruption {
                segment: segment.clone(),
                offset: (HEADER_BYTES + RECORD_BYTES) as u64,
                reason: match &error {
                    Error::Corruption { reason, .. } => reason.clone(),
                    _ => String::new(),
                },
            }
        );
        let repair = LogOptions {
            recovery_mode: RecoveryMode::Repair,
            ..options()
        };
        let mut log = open_with(&backend, repair).expect("repair");
        assert_eq!(log.last_index(), 37);
        let cut = (HEADER_BYTES + RECORD_BYTES) as u64;
        assert_eq!(
            log.recovery_report().repaired_at,
            Some((segment.clone(), cut))
        );
        log.append(&entries(38, 3, 2, 50))
            .expect("append after repair");
        log.sync().expect("sync");
        drop(log);
        let log = open_with(&backend, options()).expect("clean after repair");
        assert_eq!(log.last_index(), 40);
        assert_eq!(log.term(38).expect("term"), 2);
    }
}

#[test]
fn repair_of_a_sealed_segment_drops_everything_after_the_bad_record() {
    for backend in Backend::both(3) {
        prepared(&backend);
        let segment = backend.segment_files()[2].clone(); // indexes 13..=18
        backend.flip_byte(&segment, HEADER_BYTES + 3 * RECORD_BYTES + 5); // index 16
        let repair = LogOptions {
            recovery_mode: RecoveryMode::Repair,
            verify_on_open: true,
            ..options()
        };
        let log = open_with(&backend, repair).expect("repair");
        assert_eq!(log.last_index(), 15);
        assert_eq!(backend.segment_files().len(), 3);
        drop(log);
        let log = open_with(&backend, options()).expect("clean after repair");
        assert_eq!(log.last_index(), 15);
        for index in 1..=15 {
            assert_eq!(log.entry(index).expect("entry").index, index);
        }
    }
}

#[test]
fn a_record_cut_in_half_at_the_tail_is_a_torn_write_and_is_truncated() {
    for backend in Backend::both(4) {
        prepared(&backend);
        let segment = backend.segment_files()[6].clone(); // indexes 37..=40
        let length = backend.length(&segment);
        backend.cut(&segment, length - 30); // index 40 loses part of its payload
        let log = open_with(&backend, options()).expect("a torn tail is not an error");
        assert_eq!(log.last_index(), 39);
        assert_eq!(
            log.recovery_report().torn_tail_bytes,
            (RECORD_BYTES - 30) as u64
        );
        assert_eq!(backend.length(&segment), HEADER_BYTES + 3 * RECORD_BYTES);
        drop(log);
        backend.cut(&segment, HEADER_BYTES + RECORD_BYTES + 10); // inside the header of 38
        let log = open_with(&backend, options()).expect("a torn header is not an error");
        assert_eq!(log.last_index(), 37);
    }
}

#[test]
fn a_sealed_segment_cut_in_half_is_corruption() {
    for backend in Backend::both(5) {
        prepared(&backend);
        let segment = backend.segment_files()[3].clone();
        backend.cut(&segment, HEADER_BYTES + 2 * RECORD_BYTES + 20);
        let error =
            open_with(&backend, options()).expect_err("a sealed segment never has a torn tail");
        assert!(
            matches!(&error, Error::Corruption { segment: path, .. } if *path == segment),
            "{error}"
        );
    }
}

#[test]
fn a_deleted_middle_segment_is_a_gap() {
    for backend in Backend::both(6) {
        prepared(&backend);
        let segments = backend.segment_files();
        backend.remove(&segments[3]); // indexes 19..=24
        let error = open_with(&backend, options()).expect_err("a hole");
        assert_eq!(
            error,
            Error::Gap {
                segment: segments[4].clone(),
                expected: 19,
                found: 25
            }
        );
        assert!(error.to_string().contains("missing"));
    }
}

#[test]
fn a_deleted_first_segment_is_a_gap_once_the_first_index_is_recorded() {
    for backend in Backend::both(7) {
        prepared(&backend);
        let mut log = open_with(&backend, options()).expect("open");
        log.compact_prefix(3).expect("records first index 3");
        drop(log);
        let segments = backend.segment_files();
        backend.remove(&segments[0]);
        let error = open_with(&backend, options()).expect_err("the first entries are gone");
        assert_eq!(
            error,
            Error::Gap {
                segment: segments[1].clone(),
                expected: 3,
                found: 7
            }
        );
    }
}

#[test]
fn a_wrong_header_is_a_bad_header() {
    for backend in Backend::both(8) {
        prepared(&backend);
        let segments = backend.segment_files();
        backend.flip_byte(&segments[2], 0); // magic
        let error = open_with(&backend, options()).expect_err("bad magic");
        assert!(
            matches!(&error, Error::BadHeader { segment, .. } if *segment == segments[2]),
            "{error}"
        );
        backend.flip_byte(&segments[2], 0);
        backend.flip_byte(&segments[6], 17); // first index of the last segment
        let error = open_with(&backend, options()).expect_err("bad checksum");
        assert!(
            matches!(&error, Error::BadHeader { segment, .. } if *segment == segments[6]),
            "{error}"
        );
    }
}

#[test]
fn a_missing_or_damaged_offset_index_is_rebuilt() {
    for backend in Backend::both(9) {
        prepared(&backend);
        let directory = backend.log_directory();
        backend.remove(&directory.join(format::index_file_name(7)));
        backend.flip_byte(&directory.join(format::index_file_name(13)), 60);
        let log = open_with(&backend, options()).expect("open rebuilds");
        assert_eq!(log.recovery_report().indexes_rebuilt_count, 2);
        for index in 1..=40 {
            assert_eq!(log.entry(index).expect("entry").index, index);
        }
        assert!(
            backend
                .file_system()
                .exists(&directory.join(format::index_file_name(7)))
                .expect("stat")
        );
    }
}

#[test]
fn zeroes_at_the_tail_are_a_torn_write() {
    // Some file systems extend a file with zeroes before the data lands.
    let backend = Backend::real();
    prepared(&backend);
    let segment = backend.segment_files()[6].clone();
    let mut content = std::fs::read(&segment).expect("read");
    content.extend_from_slice(&[0u8; 100]);
    std::fs::write(&segment, content).expect("write");
    let log = open_with(&backend, options()).expect("zero tail is torn");
    assert_eq!(log.last_index(), 40);
}

#[test]
fn a_damaged_payload_before_the_tail_of_the_last_segment_is_corruption_not_a_torn_write() {
    for backend in Backend::both(10) {
        prepared(&backend);
        let segment = backend.segment_files()[6].clone(); // indexes 37..=40
        backend.flip_byte(&segment, HEADER_BYTES + RECORD_BYTES + 32 + 7); // payload of 38
        let error = open_with(&backend, options()).expect_err("records follow the bad one");
        assert!(
            matches!(&error, Error::Corruption { offset, .. } if *offset == (HEADER_BYTES + RECORD_BYTES) as u64),
            "{}: {error}",
            backend.name()
        );
        // The same damage in the very last record is a torn write.
        backend.flip_byte(&segment, HEADER_BYTES + RECORD_BYTES + 32 + 7);
        backend.flip_byte(&segment, HEADER_BYTES + 3 * RECORD_BYTES + 32 + 7); // payload of 40
        let log = open_with(&backend, options()).expect("a torn last record");
        assert_eq!(log.last_index(), 39);
    }
}
