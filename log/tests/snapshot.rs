//! The snapshot store on both file systems: chunked writes, checksum checks,
//! atomic installation, retention, and compacting the log below a snapshot.

mod common;

use bytes::Bytes;
use common::{Backend, entries};
use conclave_log::{Error, Log, LogOptions, MemoryFileSystem, SnapshotOptions, SnapshotStore};

fn store(backend: &Backend, retained: usize) -> SnapshotStore {
    let options = SnapshotOptions {
        snapshots_retained_count: retained,
        chunk_bytes_max: 1000,
        ..SnapshotOptions::default()
    };
    SnapshotStore::open(
        backend.file_system(),
        backend.root().join("snapshots"),
        options,
    )
    .expect("open store")
}

fn data(seed: u8, length: usize) -> Vec<u8> {
    (0..length)
        .map(|position| (position as u8).wrapping_mul(seed))
        .collect()
}

fn write(
    store: &SnapshotStore,
    last_index: u64,
    content: &[u8],
    expected: Option<u32>,
) -> conclave_log::Result<conclave_log::SnapshotMeta> {
    let mut writer = store.begin(last_index, 3, Bytes::from_static(b"members 1,2,3"))?;
    for chunk in content.chunks(700) {
        writer.write_chunk(chunk)?;
    }
    writer.finish(expected)
}

#[test]
fn a_snapshot_written_in_chunks_reads_back_and_verifies() {
    for backend in Backend::both(1) {
        let store = store(&backend, 2);
        assert_eq!(store.latest().expect("latest"), None);
        let content = data(7, 5000);
        let meta = write(&store, 100, &content, Some(crc32fast::hash(&content))).expect("install");
        assert_eq!(
            (meta.last_index, meta.last_term, meta.data_bytes),
            (100, 3, 5000)
        );
        let latest = store.latest().expect("latest").expect("one snapshot");
        assert_eq!(latest, meta);
        assert_eq!(latest.metadata, Bytes::from_static(b"members 1,2,3"));
        assert_eq!(&store.read(&latest).expect("read")[..], &content[..]);
    }
}

#[test]
fn a_checksum_mismatch_installs_nothing() {
    for backend in Backend::both(2) {
        let store = store(&backend, 2);
        let content = data(3, 3000);
        let wrong = crc32fast::hash(&content) ^ 1;
        let error = write(&store, 50, &content, Some(wrong)).expect_err("mismatch");
        assert!(matches!(error, Error::SnapshotChecksum { expected, .. } if expected == wrong));
        assert_eq!(store.latest().expect("latest"), None);
        let names = backend
            .file_system()
            .list_dir(&backend.root().join("snapshots"))
            .expect("list");
        assert!(names.is_empty(), "no temporary file is left: {names:?}");
    }
}

#[test]
fn only_the_newest_snapshots_are_kept_and_oversized_chunks_are_refused() {
    for backend in Backend::both(3) {
        let store = store(&backend, 2);
        for last_index in [10, 20, 30, 40] {
            write(&store, last_index, &data(last_index as u8, 100), None).expect("install");
        }
        let kept: Vec<u64> = store
            .list()
            .expect("list")
            .iter()
            .map(|meta| meta.last_index)
            .collect();
        assert_eq!(kept, vec![30, 40]);
        let mut writer = store.begin(50, 3, Bytes::new()).expect("begin");
        assert!(matches!(
            writer.write_chunk(&[0u8; 1001]),
            Err(Error::TooLarge { .. })
        ));
    }
}

#[test]
fn a_damaged_snapshot_is_an_error_not_a_silent_read() {
    for backend in Backend::both(4) {
        let store = store(&backend, 2);
        let meta = write(&store, 10, &data(5, 2000), None).expect("install");
        let path = backend
            .root()
            .join("snapshots")
            .join(format!("{:020}-{:020}.snap", 10, 3));
        backend.flip_byte(&path, 100);
        assert!(matches!(
            store.read(&meta),
            Err(Error::SnapshotChecksum { .. })
        ));
        let length = backend.length(&path);
        backend.flip_byte(&path, length - 10);
        assert!(matches!(store.latest(), Err(Error::BadFile { .. })));
    }
}

#[test]
fn a_crash_before_installation_keeps_the_previous_snapshot() {
    let memory = MemoryFileSystem::new(9);
    let backend = Backend::Memory(memory.clone());
    let store = store(&backend, 2);
    let old = write(&store, 10, &data(1, 1500), None).expect("install");
    let mut writer = store.begin(20, 4, Bytes::new()).expect("begin");
    writer.write_chunk(&data(2, 900)).expect("chunk");
    std::mem::forget(writer); // the process dies mid-write
    memory.crash(true);
    let store = self::store(&backend, 2);
    assert_eq!(store.latest().expect("latest"), Some(old.clone()));
    assert_eq!(&store.read(&old).expect("read")[..], &data(1, 1500)[..]);
    let new = write(&store, 20, &data(2, 900), None).expect("install");
    memory.crash(true);
    let store = self::store(&backend, 2);
    assert_eq!(store.latest().expect("latest"), Some(new));
}

#[test]
fn the_log_compacts_below_a_snapshot() {
    for backend in Backend::both(5) {
        let options = LogOptions {
            segment_size_bytes_max: 1024,
            ..LogOptions::default()
        };
        let mut log = Log::open(
            backend.file_system(),
            backend.log_directory(),
            options.clone(),
        )
        .expect("open");
        log.append(&entries(1, 100, 1, 50)).expect("append");
        log.sync().expect("sync");
        let store = store(&backend, 1);
        let meta = write(&store, 60, &data(4, 800), None).expect("install");
        log.compact_prefix(meta.last_index + 1).expect("compact");
        drop(log);
        let log =
            Log::open(backend.file_system(), backend.log_directory(), options).expect("reopen");
        assert_eq!((log.first_index(), log.last_index()), (61, 100));
    }
}
