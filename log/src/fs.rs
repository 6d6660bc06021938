//! The file-system trait that every byte of the log goes through, with a real
//! implementation and a fault-injecting in-memory one.
//!
//! The log only ever appends to files, truncates them, reads them, renames
//! whole files and removes them, so the trait is that small. Keeping it small is
//! what makes the in-memory implementation's crash model believable.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

/// A file opened for appending (and reading back what was appended).
pub trait WritableFile: Send + Sync + Debug {
    /// Appends `data` at the end of the file.
    fn append(&mut self, data: &[u8]) -> io::Result<()>;
    /// Makes every byte written so far durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Cuts the file to `length_bytes`; later appends continue from there.
    fn truncate(&mut self, length_bytes: u64) -> io::Result<()>;
    /// The file's length in bytes, including unsynced appends.
    fn length_bytes(&self) -> u64;
    /// Reads exactly `buffer.len()` bytes at `offset`; safe while the same
    /// handle appends, because only bytes already appended are asked for.
    fn read_exact_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<()>;
    /// A second handle on the same file that can only fsync it, so that the
    /// fsync can run without holding whatever guards this handle.
    fn sync_handle(&self) -> io::Result<Box<dyn SyncHandle>>;
}

/// Fsyncs one file (see [`WritableFile::sync_handle`]).
pub trait SyncHandle: Send + Sync + Debug {
    /// Makes every byte written to the file so far durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
}

/// All file access of the crate.
pub trait FileSystem: Send + Sync + Debug {
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The names of the files in a directory.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Whether a file exists.
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Creates (or empties) a file and opens it for appending.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;
    /// Opens an existing file for appending at its end.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;
    /// The whole content of a file. The real file system maps it (no copy);
    /// callers must only map files that nobody writes to any more.
    fn read_all(&self, path: &Path) -> io::Result<Bytes>;
    /// Renames a file, replacing the target.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// Writes `content` to `path` atomically: write a temporary file, fsync it,
/// rename it over `path`, fsync the directory.
pub(crate) fn write_atomically(
    file_system: &dyn FileSystem,
    path: &Path,
    content: &[u8],
) -> io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = file_system.create(&temporary)?;
    file.append(content)?;
    file.sync_data()?;
    drop(file);
    file_system.rename(&temporary, path)?;
    file_system.sync_dir(parent_of(path))
}

/// The directory that holds `path` (the current directory for a bare name).
pub(crate) fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Where a log keeps its bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StorageLevel {
    /// Files on disk (the default).
    #[default]
    Disk,
    /// A private in-memory file system (tests, simulation); nothing survives
    /// the process. To simulate crashes, pass a [`MemoryFileSystem`] directly.
    Memory,
}

impl StorageLevel {
    /// A file system of this level.
    pub fn file_system(self) -> Arc<dyn FileSystem> {
        match self {
            StorageLevel::Disk => Arc::new(RealFileSystem),
            StorageLevel::Memory => Arc::new(MemoryFileSystem::new(0)),
        }
    }
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFileSystem;

#[derive(Debug)]
struct RealFile {
    file: std::fs::File,
    length_bytes: u64,
}

impl WritableFile for RealFile {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        // Positional writes keep the file offset out of the picture after a
        // truncation.
        self.file.write_all_at(data, self.length_bytes)?;
        self.length_bytes += data.len() as u64;
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn truncate(&mut self, length_bytes: u64) -> io::Result<()> {
        self.file.set_len(length_bytes)?;
        self.length_bytes = length_bytes;
        Ok(())
    }

    fn length_bytes(&self) -> u64 {
        self.length_bytes
    }

    fn read_exact_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.read_exact_at(buffer, offset)
    }

    fn sync_handle(&self) -> io::Result<Box<dyn SyncHandle>> {
        Ok(Box::new(RealSyncHandle {
            file: self.file.try_clone()?,
        }))
    }
}

#[derive(Debug)]
struct RealSyncHandle {
    file: std::fs::File,
}

impl SyncHandle for RealSyncHandle {
    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

impl FileSystem for RealFileSystem {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(RealFile {
            file,
            length_bytes: 0,
        }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        let length_bytes = file.metadata()?.len();
        Ok(Box::new(RealFile { file, length_bytes }))
    }

    fn read_all(&self, path: &Path) -> io::Result<Bytes> {
        let file = std::fs::File::open(path)?;
        if file.metadata()?.len() == 0 {
            return Ok(Bytes::new());
        }
        map_file(&file)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }
}

/// Maps a file read-only and hands the mapping to `Bytes`, so that slices of a
/// sealed segment are returned without copying.
#[allow(unsafe_code)]
fn map_file(file: &std::fs::File) -> io::Result<Bytes> {
    // SAFETY: the crate maps only sealed segments, index, meta and snapshot
    // files, which it never writes again while they are mapped (a truncation
    // of a sealed segment drops its mapping first). Another process changing
    // the file underneath would break this, as it would break the log anyway.
    let map = unsafe { memmap2::Mmap::map(file)? };
    Ok(Bytes::from_owner(map))
}

/// Faults that the in-memory file system injects on request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FaultPlan {
    /// The next `sync_data` calls that fail (counted down).
    pub sync_failures_count: u32,
}

#[derive(Debug, Default)]
struct MemoryNode {
    /// What a reader sees now.
    current: Vec<u8>,
    /// What survives a crash.
    durable: Vec<u8>,
    /// The lowest offset changed since the last sync: `current[..dirty_from]`
    /// equals `durable[..dirty_from]`.
    dirty_from: usize,
}

#[derive(Debug, Default)]
struct MemoryState {
    /// Directory entries as seen now: path to node.
    current: BTreeMap<PathBuf, Arc<Mutex<MemoryNode>>>,
    /// Directory entries that survive a crash (as of each directory's last sync).
    durable: BTreeMap<PathBuf, Arc<Mutex<MemoryNode>>>,
    directories: Vec<PathBuf>,
    faults: FaultPlan,
    /// Counts crashes; handles opened before the latest crash belong to a
    /// dead process and fail every call.
    generation: u64,
    random_state: u64,
    syncs_count: u64,
}

/// An in-memory file system that models what survives a crash: unsynced
/// appends are lost or torn at a random byte (from a seeded generator), and
/// directory entries not made durable by `sync_dir` disappear. It can also
/// fail an fsync on request.
#[derive(Debug, Clone, Default)]
pub struct MemoryFileSystem {
    state: Arc<Mutex<MemoryState>>,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep going so
    // that a failing test reports its own assertion rather than a poison error.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} does not exist", path.display()),
    )
}

impl MemoryFileSystem {
    /// A new, empty file system whose crash tearing is drawn from `seed`.
    pub fn new(seed: u64) -> Self {
        let state = MemoryState {
            random_state: seed,
            ..MemoryState::default()
        };
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Sets the faults to inject from now on.
    pub fn set_faults(&self, faults: FaultPlan) {
        lock(&self.state).faults = faults;
    }

    /// How many `sync_data` calls succeeded so far.
    pub fn syncs_count(&self) -> u64 {
        lock(&self.state).syncs_count
    }

    /// Simulates a power loss: every file falls back to its durable content
    /// plus, when `tear` is set, a random prefix of its unsynced appends; every
    /// directory falls back to its entries as of its last `sync_dir`. Handles
    /// opened before the crash fail from then on, as if their process died;
    /// calls on the file system itself keep working, for the next run.
    pub fn crash(&self, tear: bool) {
        let mut state = lock(&self.state);
        let durable = state.durable.clone();
        for node in durable.values() {
            let mut node = lock(node);
            let unsynced_bytes = node.current.len().saturating_sub(node.dirty_from);
            let keep_bytes = if tear && unsynced_bytes > 0 {
                (next_random(&mut state.random_state) % (unsynced_bytes as u64 + 1)) as usize
            } else {
                0
            };
            let content = if keep_bytes > 0 {
                let mut content = node.durable[..node.dirty_from].to_vec();
                content.extend_from_slice(&node.current[node.dirty_from..][..keep_bytes]);
                content
            } else {
                node.durable.clone()
            };
            node.durable.clone_from(&content);
            node.dirty_from = content.len();
            node.current = content;
        }
        // Fresh nodes so that handles of the crashed run no longer alias them.
        let fresh: BTreeMap<PathBuf, Arc<Mutex<MemoryNode>>> = durable
            .into_iter()
            .map(|(path, node)| {
                let node = lock(&node);
                let copy = MemoryNode {
                    current: node.current.clone(),
                    durable: node.durable.clone(),
                    dirty_from: node.dirty_from,
                };
                (path, Arc::new(Mutex::new(copy)))
            })
            .collect();
        state.current = fresh.clone();
        state.durable = fresh;
        state.generation += 1;
    }

    /// Flips one byte of a file, durably (for corruption tests).
    pub fn corrupt_byte(&self, path: &Path, offset: usize) -> io::Result<()> {
        let state = lock(&self.state);
        let node = state.current.get(path).ok_or_else(|| not_found(path))?;
        let mut node = lock(node);
        if offset >= node.current.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "offset past the end",
            ));
        }
        node.current[offset] ^= 0xff;
        let content = node.current.clone();
        node.durable = content;
        node.dirty_from = node.current.len();
        Ok(())
    }

    /// Cuts a file to `length_bytes`, durably (for corruption tests).
    pub fn cut_file(&self, path: &Path, length_bytes: usize) -> io::Result<()> {
        let state = lock(&self.state);
        let node = state.current.get(path).ok_or_else(|| not_found(path))?;
        let mut node = lock(node);
        node.current.truncate(length_bytes);
        let content = node.current.clone();
        node.durable = content;
        node.dirty_from = node.current.len();
        Ok(())
    }

    fn node(&self, path: &Path) -> io::Result<Arc<Mutex<MemoryNode>>> {
        lock(&self.state)
            .current
            .get(path)
            .cloned()
            .ok_or_else(|| not_found(path))
    }
}

/// splitmix64: a tiny seeded generator, so the library needs no `rand`.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut mixed = *state;
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    mixed ^ (mixed >> 31)
}

#[derive(Debug)]
struct MemoryFile {
    node: Arc<Mutex<MemoryNode>>,
    file_system: MemoryFileSystem,
    generation: u64,
}

impl MemoryFile {
    /// Handles of a crashed run are dead, like the process that held them.
    fn check_alive(&self) -> io::Result<()> {
        if lock(&self.file_system.state).generation == self.generation {
            Ok(())
        } else {
            Err(io::Error::other(
                "the file system crashed since this file was opened",
            ))
        }
    }
}

/// Makes a memory file's current content its durable content.
fn sync_memory_node(
    file_system: &MemoryFileSystem,
    node: &Mutex<MemoryNode>,
    generation: u64,
) -> io::Result<()> {
    {
        let mut state = lock(&file_system.state);
        if state.generation != generation {
            return Err(io::Error::other(
                "the file system crashed since this file was opened",
            ));
        }
        if state.faults.sync_failures_count > 0 {
            state.faults.sync_failures_count -= 1;
            return Err(io::Error::other("injected fsync failure"));
        }
        state.syncs_count += 1;
    }
    let mut node = lock(node);
    let dirty_from = node.dirty_from.min(node.durable.len());
    node.durable.truncate(dirty_from);
    let tail = node.current[dirty_from..].to_vec();
    node.durable.extend_from_slice(&tail);
    node.dirty_from = node.current.len();
    Ok(())
}

#[derive(Debug)]
struct MemorySyncHandle {
    node: Arc<Mutex<MemoryNode>>,
    file_system: MemoryFileSystem,
    generation: u64,
}

impl SyncHandle for MemorySyncHandle {
    fn sync_data(&self) -> io::Result<()> {
        sync_memory_node(&self.file_system, &self.node, self.generation)
    }
}

impl WritableFile for MemoryFile {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.check_alive()?;
        lock(&self.node).current.extend_from_slice(data);
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        sync_memory_node(&self.file_system, &self.node, self.generation)
    }

    fn truncate(&mut self, length_bytes: u64) -> io::Result<()> {
        self.check_alive()?;
        let mut node = lock(&self.node);
        let length_bytes = length_bytes as usize;
        if length_bytes < node.current.len() {
            node.current.truncate(length_bytes);
            node.dirty_from = node.dirty_from.min(length_bytes);
        } else {
            node.current.resize(length_bytes, 0);
        }
        Ok(())
    }

    fn length_bytes(&self) -> u64 {
        lock(&self.node).current.len() as u64
    }

    fn read_exact_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<()> {
        let node = lock(&self.node);
        let start = offset as usize;
        let end = start
            .checked_add(buffer.len())
            .filter(|end| *end <= node.current.len());
        match end {
            Some(end) => {
                buffer.copy_from_slice(&node.current[start..end]);
                Ok(())
            }
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end",
            )),
        }
    }

    fn sync_handle(&self) -> io::Result<Box<dyn SyncHandle>> {
        Ok(Box::new(MemorySyncHandle {
            node: Arc::clone(&self.node),
            file_system: self.file_system.clone(),
            generation: self.generation,
        }))
    }
}

impl FileSystem for MemoryFileSystem {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        if !state.directories.iter().any(|directory| directory == path) {
            state.directories.push(path.to_path_buf());
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let state = lock(&self.state);
        if !state.directories.iter().any(|directory| directory == path) {
            return Err(not_found(path));
        }
        Ok(state
            .current
            .keys()
            .filter(|file| file.parent() == Some(path))
            .filter_map(|file| file.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        Ok(lock(&self.state).current.contains_key(path))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let node = Arc::new(Mutex::new(MemoryNode::default()));
        let mut state = lock(&self.state);
        state.current.insert(path.to_path_buf(), Arc::clone(&node));
        let generation = state.generation;
        drop(state);
        Ok(Box::new(MemoryFile {
            node,
            file_system: self.clone(),
            generation,
        }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let node = self.node(path)?;
        let generation = lock(&self.state).generation;
        Ok(Box::new(MemoryFile {
            node,
            file_system: self.clone(),
            generation,
        }))
    }

    fn read_all(&self, path: &Path) -> io::Result<Bytes> {
        let node = self.node(path)?;
        let content = Bytes::copy_from_slice(&lock(&node).current);
        Ok(content)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        let node = state.current.remove(from).ok_or_else(|| not_found(from))?;
        state.current.insert(to.to_path_buf(), node);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        lock(&self.state)
            .current
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        let in_directory = |file: &PathBuf| file.parent() == Some(path);
        state.durable.retain(|file, _| !in_directory(file));
        let entries: Vec<_> = state
            .current
            .iter()
            .filter(|(file, _)| in_directory(file))
            .map(|(file, node)| (file.clone(), Arc::clone(node)))
            .collect();
        state.durable.extend(entries);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_appends_are_lost_on_crash_and_synced_ones_kept() {
        let file_system = MemoryFileSystem::new(7);
        let directory = Path::new("/d");
        file_system.create_dir_all(directory).unwrap();
        let path = directory.join("f");
        let mut file = file_system.create(&path).unwrap();
        file.append(b"durable").unwrap();
        file.sync_data().unwrap();
        file_system.sync_dir(directory).unwrap();
        file.append(b"-lost").unwrap();
        drop(file);
        file_system.crash(false);
        assert_eq!(&file_system.read_all(&path).unwrap()[..], b"durable");
    }

    #[test]
    fn a_torn_crash_keeps_a_prefix_of_the_unsynced_bytes() {
        for seed in 0..20 {
            let file_system = MemoryFileSystem::new(seed);
            let directory = Path::new("/d");
            file_system.create_dir_all(directory).unwrap();
            let path = directory.join("f");
            let mut file = file_system.create(&path).unwrap();
            file.append(b"abc").unwrap();
            file.sync_data().unwrap();
            file_system.sync_dir(directory).unwrap();
            file.append(b"defghij").unwrap();
            drop(file);
            file_system.crash(true);
            let content = file_system.read_all(&path).unwrap();
            assert!(
                b"abcdefghij".starts_with(&content),
                "seed {seed}: {content:?}"
            );
            assert!(content.len() >= 3);
        }
    }

    #[test]
    fn a_file_created_without_a_directory_sync_vanishes_on_crash() {
        let file_system = MemoryFileSystem::new(1);
        let directory = Path::new("/d");
        file_system.create_dir_all(directory).unwrap();
        let path = directory.join("f");
        let mut file = file_system.create(&path).unwrap();
        file.append(b"x").unwrap();
        file.sync_data().unwrap();
        drop(file);
        file_system.crash(false);
        assert!(!file_system.exists(&path).unwrap());
    }

    #[test]
    fn an_injected_sync_failure_is_reported_once() {
        let file_system = MemoryFileSystem::new(1);
        file_system.create_dir_all(Path::new("/d")).unwrap();
        let mut file = file_system.create(Path::new("/d/f")).unwrap();
        file_system.set_faults(FaultPlan {
            sync_failures_count: 1,
        });
        assert!(file.sync_data().is_err());
        assert!(file.sync_data().is_ok());
    }

    #[test]
    fn the_real_file_system_round_trips_and_truncates() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("f");
        let file_system = RealFileSystem;
        let mut file = file_system.create(&path).unwrap();
        file.append(b"hello world").unwrap();
        file.truncate(5).unwrap();
        file.append(b"!").unwrap();
        file.sync_data().unwrap();
        let mut buffer = [0u8; 6];
        file.read_exact_at(&mut buffer, 0).unwrap();
        assert_eq!(&buffer, b"hello!");
        assert_eq!(&file_system.read_all(&path).unwrap()[..], b"hello!");
    }
}
