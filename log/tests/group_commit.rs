//! The group-commit writer: concurrent appenders, batching, durability of
//! acknowledged entries across a crash, fsync failure, sync policies.

mod common;

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Backend, entries, payload};
use conclave_log::{
    Error, FaultPlan, FileSystem, GroupCommit, GroupCommitOptions, Log, LogOptions,
    MemoryFileSystem, SyncHandle, SyncPolicy, WritableFile,
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

/// Forwards to a memory file system, but fsyncs through sync handles wait
/// while the gate is closed: a disk that is slow exactly when the test wants.
#[derive(Debug)]
struct GatedFileSystem {
    inner: MemoryFileSystem,
    gate: Arc<Gate>,
}

#[derive(Debug, Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    closed: bool,
    waiting_count: u64,
}

impl Gate {
    fn set_closed(&self, closed: bool) {
        self.state.lock().expect("gate").closed = closed;
        self.changed.notify_all();
    }

    fn pass(&self) {
        let mut state = self.state.lock().expect("gate");
        state.waiting_count += 1;
        self.changed.notify_all();
        while state.closed {
            state = self.changed.wait(state).expect("gate");
        }
        state.waiting_count -= 1;
    }

    fn wait_for_waiters(&self, count: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut state = self.state.lock().expect("gate");
        while state.waiting_count < count {
            let timeout = deadline.saturating_duration_since(Instant::now());
            assert!(!timeout.is_zero(), "nobody reached the gate");
            state = self.changed.wait_timeout(state, timeout).expect("gate").0;
        }
    }
}

#[derive(Debug)]
struct GatedSyncHandle {
    inner: Box<dyn SyncHandle>,
    gate: Arc<Gate>,
}

impl SyncHandle for GatedSyncHandle {
    fn sync_data(&self) -> io::Result<()> {
        self.gate.pass();
        self.inner.sync_data()
    }
}

#[derive(Debug)]
struct GatedFile {
    inner: Box<dyn WritableFile>,
    gate: Arc<Gate>,
}

impl WritableFile for GatedFile {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.inner.append(data)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.inner.sync_data()
    }
    fn truncate(&mut self, length_bytes: u64) -> io::Result<()> {
        self.inner.truncate(length_bytes)
    }
    fn length_bytes(&self) -> u64 {
        self.inner.length_bytes()
    }
    fn read_exact_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buffer, offset)
    }
    fn sync_handle(&self) -> io::Result<Box<dyn SyncHandle>> {
        Ok(Box::new(GatedSyncHandle {
            inner: self.inner.sync_handle()?,
            gate: Arc::clone(&self.gate),
        }))
    }
}

impl FileSystem for GatedFileSystem {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        Ok(Box::new(GatedFile {
            inner: self.inner.create(path)?,
            gate: Arc::clone(&self.gate),
        }))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        Ok(Box::new(GatedFile {
            inner: self.inner.open_append(path)?,
            gate: Arc::clone(&self.gate),
        }))
    }
    fn read_all(&self, path: &Path) -> io::Result<Bytes> {
        self.inner.read_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
}

#[test]
fn reads_go_on_while_the_writer_waits_for_the_disk() {
    let gate = Arc::new(Gate::default());
    let file_system = Arc::new(GatedFileSystem {
        inner: MemoryFileSystem::new(8),
        gate: Arc::clone(&gate),
    });
    let log = Log::open(file_system, "/data/log", options()).expect("open");
    let writer = GroupCommit::start(log, GroupCommitOptions::default()).expect("start");
    writer
        .append_payloads(1, 0, vec![tagged(0, 1)])
        .expect("first append");
    gate.set_closed(true);
    let ticket = writer
        .submit_payloads(1, 0, vec![tagged(0, 2)])
        .expect("submit");
    gate.wait_for_waiters(1);
    // The writer is inside the fsync of entry 2; the log is free to read,
    // including the entry being made durable, and says it is not durable yet.
    writer.with_log(|log| {
        assert_eq!(
            log.entry(2).expect("entry being synced").payload,
            tagged(0, 2)
        );
        assert_eq!(log.durable_index(), 1);
    });
    assert_eq!(
        ticket.wait_timeout(Duration::ZERO),
        None,
        "not acknowledged before the fsync ends"
    );
    gate.set_closed(false);
    assert_eq!(ticket.wait().expect("durable").first_index, 2);
    writer.with_log(|log| assert_eq!(log.durable_index(), 2));
}
