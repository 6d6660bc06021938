//! Crash at every moment of a truncation, a compaction and a roll: a file
//! system wrapper fails every call after the k-th one, the in-memory file
//! system then loses (or tears) whatever was not durable, and the reopened log
//! must be the old state or the new one — never a hole, never a resurrected
//! entry.

mod common;

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use common::entries;
use conclave_log::{FileSystem, Log, LogOptions, MemoryFileSystem, SyncHandle, WritableFile};

/// Fails every call after `budget` calls, as if the process died there.
#[derive(Debug)]
struct DyingFileSystem {
    inner: MemoryFileSystem,
    calls_left: Arc<AtomicU64>,
}

fn spend(calls_left: &AtomicU64) -> io::Result<()> {
    let previous = calls_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
        left.checked_sub(1)
    });
    match previous {
        Ok(_) => Ok(()),
        Err(_) => Err(io::Error::other("the process died here")),
    }
}

#[derive(Debug)]
struct DyingFile {
    inner: Box<dyn WritableFile>,
    calls_left: Arc<AtomicU64>,
}

impl WritableFile for DyingFile {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        spend(&self.calls_left)?;
        self.inner.append(data)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        spend(&self.calls_left)?;
        self.inner.sync_data()
    }
    fn truncate(&mut self, length_bytes: u64) -> io::Result<()> {
        spend(&self.calls_left)?;
        self.inner.truncate(length_bytes)
    }
    fn length_bytes(&self) -> u64 {
        self.inner.length_bytes()
    }
    fn read_exact_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buffer, offset)
    }
    fn sync_handle(&self) -> io::Result<Box<dyn SyncHandle>> {
        let inner = self.inner.sync_handle()?;
        Ok(Box::new(DyingSyncHandle {
            inner,
            calls_left: Arc::clone(&self.calls_left),
        }))
    }
}

#[derive(Debug)]
struct DyingSyncHandle {
    inner: Box<dyn SyncHandle>,
    calls_left: Arc<AtomicU64>,
}

impl SyncHandle for DyingSyncHandle {
    fn sync_data(&self) -> io::Result<()> {
        spend(&self.calls_left)?;
        self.inner.sync_data()
    }
}

impl FileSystem for DyingFileSystem {
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
        spend(&self.calls_left)?;
        let inner = self.inner.create(path)?;
        Ok(Box::new(DyingFile {
            inner,
            calls_left: Arc::clone(&self.calls_left),
        }))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let inner = self.inner.open_append(path)?;
        Ok(Box::new(DyingFile {
            inner,
            calls_left: Arc::clone(&self.calls_left),
        }))
    }
    fn read_all(&self, path: &Path) -> io::Result<Bytes> {
        self.inner.read_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        spend(&self.calls_left)?;
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        spend(&self.calls_left)?;
        self.inner.remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        spend(&self.calls_left)?;
        self.inner.sync_dir(path)
    }
}

fn options() -> LogOptions {
    LogOptions {
        segment_size_bytes_max: 600,
        entry_payload_bytes_max: 256,
        ..LogOptions::default()
    }
}

const DIRECTORY: &str = "/data/log";

/// A synced log of 40 entries (several segments) on a fresh memory file system.
fn prepared(seed: u64) -> MemoryFileSystem {
    let memory = MemoryFileSystem::new(seed);
    let mut log = Log::open(Arc::new(memory.clone()), DIRECTORY, options()).expect("open");
    log.append(&entries(1, 40, 1, 50)).expect("append");
    log.sync().expect("sync");
    memory
}

/// Runs `operation` on a log whose file system dies after `budget` calls,
/// crashes, reopens; returns whether the operation completed, and the log.
fn crash_during(
    seed: u64,
    budget: u64,
    tear: bool,
    operation: &dyn Fn(&mut Log) -> conclave_log::Result<()>,
) -> (bool, Log) {
    let memory = prepared(seed);
    let calls_left = Arc::new(AtomicU64::new(u64::MAX));
    let dying = Arc::new(DyingFileSystem {
        inner: memory.clone(),
        calls_left: Arc::clone(&calls_left),
    });
    let mut log = Log::open(dying, DIRECTORY, options()).expect("open");
    calls_left.store(budget, Ordering::SeqCst);
    let result = operation(&mut log);
    let completed = result.is_ok();
    drop(log);
    memory.crash(tear);
    let reopened =
        Log::open(Arc::new(memory), DIRECTORY, options()).expect("reopen after the crash");
    (completed, reopened)
}

fn assert_entries_intact(log: &Log) {
    for index in log.first_index()..=log.last_index() {
        let entry = log.entry(index).expect("entry");
        assert_eq!(entry.payload, common::payload(index, 50));
    }
}

fn every_crash_point(
    operation: &dyn Fn(&mut Log) -> conclave_log::Result<()>,
    check: &dyn Fn(bool, &Log),
) {
    for tear in [false, true] {
        for budget in 0.. {
            let (completed, log) = crash_during(budget + 17, budget, tear, operation);
            check(completed, &log);
            assert_entries_intact(&log);
            if completed {
                assert!(budget > 0, "the operation must touch the disk");
                break;
            }
            assert!(budget < 1000, "the operation never completes");
        }
    }
}

#[test]
fn a_crash_during_truncate_suffix_leaves_the_old_or_the_new_log() {
    for from in [38, 25, 9, 1] {
        every_crash_point(&|log| log.truncate_suffix(from), &|completed, log| {
            let state = (log.first_index(), log.last_index());
            assert!(
                state == (1, 40) || state == (1, from - 1),
                "truncate at {from}: got {state:?}"
            );
            if completed {
                assert_eq!(state, (1, from - 1));
            }
        });
    }
}

#[test]
fn a_crash_during_compact_prefix_leaves_the_old_or_the_new_log() {
    for upto in [2, 20, 40, 41, 60] {
        every_crash_point(&|log| log.compact_prefix(upto), &|completed, log| {
            let new_state = (upto, 40u64.max(upto - 1));
            let state = (log.first_index(), log.last_index());
            assert!(
                state == (1, 40) || state == new_state,
                "compact to {upto}: got {state:?}"
            );
            if completed {
                assert_eq!(state, new_state);
            }
        });
    }
}

#[test]
fn a_crash_during_append_and_sync_keeps_a_prefix_with_everything_synced() {
    every_crash_point(
        &|log| {
            log.append(&entries(41, 30, 2, 50))?;
            log.sync()
        },
        &|completed, log| {
            assert_eq!(log.first_index(), 1);
            assert!(
                (40..=70).contains(&log.last_index()),
                "got {}",
                log.last_index()
            );
            if completed {
                assert_eq!(log.last_index(), 70);
            }
        },
    );
}

#[test]
fn truncate_then_append_then_crash_never_resurrects_removed_entries() {
    every_crash_point(
        &|log| {
            log.truncate_suffix(20)?;
            log.append(&entries(20, 5, 2, 50))?;
            log.sync()
        },
        &|_, log| {
            let last = log.last_index();
            assert!(last == 40 || (19..=24).contains(&last), "got {last}");
            if last != 40 {
                for index in 20..=last {
                    assert_eq!(
                        log.term(index).expect("term"),
                        2,
                        "an old entry came back at {index}"
                    );
                }
            }
        },
    );
}

#[test]
fn a_crash_during_repair_is_finished_by_the_next_repair() {
    let repair = LogOptions {
        recovery_mode: conclave_log::RecoveryMode::Repair,
        verify_on_open: true,
        ..options()
    };
    for tear in [false, true] {
        for budget in 0.. {
            let memory = prepared(budget + 3);
            // Segments hold six entries each: damage index 16 in the third one.
            let segment = Path::new(DIRECTORY).join(conclave_log::format::segment_file_name(13));
            memory
                .corrupt_byte(&segment, 32 + 3 * 82 + 40)
                .expect("damage");
            let calls_left = Arc::new(AtomicU64::new(budget));
            let dying = Arc::new(DyingFileSystem {
                inner: memory.clone(),
                calls_left,
            });
            let completed = Log::open(dying, DIRECTORY, repair.clone()).is_ok();
            memory.crash(tear);
            let log = Log::open(Arc::new(memory), DIRECTORY, repair.clone())
                .expect("the next repair finishes");
            assert_eq!(
                (log.first_index(), log.last_index()),
                (1, 15),
                "budget {budget}"
            );
            assert_entries_intact(&log);
            if completed {
                break;
            }
            assert!(budget < 1000, "repair never completes");
        }
    }
}

/// Opens with a file system that dies after `budget` calls, crashes, and
/// opens again normally.
fn reopen_after_dying_open(memory: MemoryFileSystem, budget: u64, tear: bool) -> (bool, Log) {
    let calls_left = Arc::new(AtomicU64::new(budget));
    let dying = Arc::new(DyingFileSystem {
        inner: memory.clone(),
        calls_left,
    });
    let completed = Log::open(dying, DIRECTORY, options()).is_ok();
    memory.crash(tear);
    let log =
        Log::open(Arc::new(memory), DIRECTORY, options()).expect("open after a crash during open");
    (completed, log)
}

#[test]
fn a_crash_during_recovery_of_a_torn_tail_and_a_lost_index_is_recovered_again() {
    for tear in [false, true] {
        for budget in 0.. {
            let memory = prepared(budget + 5);
            let directory = Path::new(DIRECTORY);
            memory
                .remove_file(&directory.join(conclave_log::format::index_file_name(7)))
                .expect("remove");
            memory.sync_dir(directory).expect("sync");
            let last = directory.join(conclave_log::format::segment_file_name(37));
            let length = memory.read_all(&last).expect("read").len();
            memory.cut_file(&last, length - 30).expect("tear index 40");
            let (completed, log) = reopen_after_dying_open(memory, budget, tear);
            assert_eq!(
                (log.first_index(), log.last_index()),
                (1, 39),
                "budget {budget}"
            );
            assert_entries_intact(&log);
            if completed {
                break;
            }
            assert!(budget < 1000, "open never completes");
        }
    }
}

#[test]
fn a_crash_while_open_finishes_an_interrupted_truncation_still_ends_truncated() {
    // First crash: during truncate_suffix(9), at every point after its commit.
    let mut interrupted_count = 0;
    for first_budget in 0..40 {
        let memory = prepared(first_budget);
        let calls_left = Arc::new(AtomicU64::new(u64::MAX));
        let dying = Arc::new(DyingFileSystem {
            inner: memory.clone(),
            calls_left: Arc::clone(&calls_left),
        });
        let mut log = Log::open(dying, DIRECTORY, options()).expect("open");
        calls_left.store(first_budget, Ordering::SeqCst);
        let completed = log.truncate_suffix(9).is_ok();
        drop(log);
        memory.crash(true);
        let state = memory
            .read_all(&Path::new(DIRECTORY).join("log.state"))
            .ok();
        let committed = state.is_some_and(|bytes| bytes.len() == 40 && bytes[12] & 1 == 1);
        if !committed {
            if completed {
                break;
            }
            continue;
        }
        interrupted_count += 1;
        // Second crash: during the open that finishes it, at every point.
        for second_budget in 0.. {
            let copy = MemoryFileSystem::new(second_budget);
            copy_files(&memory, &copy);
            let (completed, log) = reopen_after_dying_open(copy, second_budget, true);
            assert_eq!(
                (log.first_index(), log.last_index()),
                (1, 8),
                "budgets {first_budget}, {second_budget}"
            );
            assert_entries_intact(&log);
            if completed {
                break;
            }
            assert!(second_budget < 1000, "open never completes");
        }
    }
    assert!(interrupted_count > 0, "no crash left a pending truncation");
}

/// Copies every file of the log directory, durably, to another memory file system.
fn copy_files(from: &MemoryFileSystem, to: &MemoryFileSystem) {
    let directory = Path::new(DIRECTORY);
    to.create_dir_all(directory).expect("create");
    for name in from.list_dir(directory).expect("list") {
        let path = directory.join(name);
        let mut file = to.create(&path).expect("create");
        file.append(&from.read_all(&path).expect("read"))
            .expect("append");
        file.sync_data().expect("sync");
    }
    to.sync_dir(directory).expect("sync");
}

#[test]
fn a_crash_while_saving_the_hard_state_or_installing_a_snapshot_leaves_old_or_new() {
    use bytes::Bytes;
    use conclave_log::{HardState, MetaStore, SnapshotOptions, SnapshotStore};
    let old = HardState {
        current_term: 3,
        voted_for: Some(1),
        commit_index: 10,
        membership: Bytes::from_static(b"1,2,3"),
    };
    let new = HardState {
        current_term: 4,
        voted_for: Some(2),
        commit_index: 12,
        membership: Bytes::from_static(b"1,2"),
    };
    for budget in 0.. {
        let memory = MemoryFileSystem::new(budget);
        MetaStore::open(Arc::new(memory.clone()), "/data/meta")
            .expect("open")
            .save(&old)
            .expect("save");
        let snapshots = SnapshotStore::open(
            Arc::new(memory.clone()),
            "/data/snapshots",
            SnapshotOptions::default(),
        )
        .expect("open");
        let mut writer = snapshots.begin(10, 3, Bytes::new()).expect("begin");
        writer.write_chunk(b"old snapshot").expect("chunk");
        writer.finish(None).expect("install");
        let calls_left = Arc::new(AtomicU64::new(budget));
        let dying: Arc<dyn FileSystem> = Arc::new(DyingFileSystem {
            inner: memory.clone(),
            calls_left,
        });
        let meta_saved = MetaStore::open(Arc::clone(&dying), "/data/meta")
            .and_then(|store| store.save(&new))
            .is_ok();
        let snapshot_installed = SnapshotStore::open(
            Arc::clone(&dying),
            "/data/snapshots",
            SnapshotOptions::default(),
        )
        .and_then(|store| {
            let mut writer = store.begin(20, 4, Bytes::new())?;
            writer.write_chunk(b"new snapshot")?;
            writer.finish(None)
        })
        .is_ok();
        memory.crash(true);
        let loaded = MetaStore::open(Arc::new(memory.clone()), "/data/meta")
            .expect("open")
            .load()
            .expect("load");
        assert!(
            loaded == Some(old.clone()) || loaded == Some(new.clone()),
            "budget {budget}: {loaded:?}"
        );
        if meta_saved {
            assert_eq!(loaded, Some(new.clone()));
        }
        let snapshots = SnapshotStore::open(
            Arc::new(memory),
            "/data/snapshots",
            SnapshotOptions::default(),
        )
        .expect("open");
        let latest = snapshots.latest().expect("latest").expect("a snapshot");
        let data = snapshots.read(&latest).expect("intact");
        assert!(
            (latest.last_index == 10 && &data[..] == b"old snapshot")
                || (latest.last_index == 20 && &data[..] == b"new snapshot"),
            "budget {budget}: {latest:?}"
        );
        if snapshot_installed {
            assert_eq!(latest.last_index, 20);
            break;
        }
        assert!(budget < 1000, "never completes");
    }
}
