//! Helpers shared by the integration tests: every applicable test runs on the
//! in-memory file system and on the real one.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use conclave_log::{Entry, FileSystem, MemoryFileSystem, RealFileSystem};

/// One file system under test, with the means to damage its files.
pub enum Backend {
    /// The fault-injecting in-memory file system.
    Memory(MemoryFileSystem),
    /// The real file system in a temporary directory.
    Real(tempfile::TempDir),
}

impl Backend {
    pub fn memory(seed: u64) -> Self {
        Backend::Memory(MemoryFileSystem::new(seed))
    }

    pub fn real() -> Self {
        Backend::Real(tempfile::tempdir().expect("temporary directory"))
    }

    /// Both kinds, for tests that run on each.
    pub fn both(seed: u64) -> Vec<Self> {
        vec![Self::memory(seed), Self::real()]
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Memory(_) => "memory",
            Backend::Real(_) => "real",
        }
    }

    pub fn file_system(&self) -> Arc<dyn FileSystem> {
        match self {
            Backend::Memory(file_system) => Arc::new(file_system.clone()),
            Backend::Real(_) => Arc::new(RealFileSystem),
        }
    }

    pub fn root(&self) -> PathBuf {
        match self {
            Backend::Memory(_) => PathBuf::from("/data"),
            Backend::Real(directory) => directory.path().to_path_buf(),
        }
    }

    pub fn log_directory(&self) -> PathBuf {
        self.root().join("log")
    }

    /// Flips the byte at `offset` of a file.
    pub fn flip_byte(&self, path: &Path, offset: usize) {
        match self {
            Backend::Memory(file_system) => file_system.corrupt_byte(path, offset).expect("flip"),
            Backend::Real(_) => {
                let mut content = std::fs::read(path).expect("read");
                content[offset] ^= 0xff;
                std::fs::write(path, content).expect("write");
            }
        }
    }

    /// Cuts a file to `length_bytes`.
    pub fn cut(&self, path: &Path, length_bytes: usize) {
        match self {
            Backend::Memory(file_system) => file_system.cut_file(path, length_bytes).expect("cut"),
            Backend::Real(_) => {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .expect("open");
                file.set_len(length_bytes as u64).expect("set_len");
            }
        }
    }

    pub fn remove(&self, path: &Path) {
        self.file_system().remove_file(path).expect("remove");
        self.file_system()
            .sync_dir(path.parent().expect("parent"))
            .expect("sync dir");
    }

    pub fn length(&self, path: &Path) -> usize {
        self.file_system().read_all(path).expect("read").len()
    }

    pub fn segment_files(&self) -> Vec<PathBuf> {
        let directory = self.log_directory();
        let mut names: Vec<String> = self
            .file_system()
            .list_dir(&directory)
            .expect("list")
            .into_iter()
            .filter(|name| name.ends_with(".seg"))
            .collect();
        names.sort();
        names.into_iter().map(|name| directory.join(name)).collect()
    }
}

/// A deterministic payload for `index`, of `length` bytes.
pub fn payload(index: u64, length: usize) -> Bytes {
    (0..length)
        .map(|position| (index as usize * 31 + position) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// Entries `first..first + count` in `term`, each with a payload of `length` bytes.
pub fn entries(first: u64, count: u64, term: u64, length: usize) -> Vec<Entry> {
    (first..first + count)
        .map(|index| Entry::new(index, term, 1, payload(index, length)))
        .collect()
}
