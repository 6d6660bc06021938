//! The snapshot store: snapshots written in chunks, checked against a
//! checksum, installed atomically by rename, the newest N kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{BufMut, Bytes};

use crate::error::{Error, Result};
use crate::format::{FORMAT_VERSION, read_u32, read_u64};
use crate::fs::{FileSystem, WritableFile};

const SNAPSHOT_MAGIC: &[u8; 8] = b"CNCLVSNP";
const FOOTER_BYTES: usize = 48;

/// Options of [`SnapshotStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotOptions {
    /// How many installed snapshots to keep (the newest ones).
    pub snapshots_retained_count: usize,
    /// The most bytes of caller metadata (membership) a snapshot carries.
    pub metadata_bytes_max: usize,
    /// The largest chunk accepted by [`SnapshotWriter::write_chunk`].
    pub chunk_bytes_max: usize,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        Self {
            snapshots_retained_count: 2,
            metadata_bytes_max: 1024 * 1024,
            chunk_bytes_max: 4 * 1024 * 1024,
        }
    }
}

impl SnapshotOptions {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("snapshots_retained_count", self.snapshots_retained_count),
            ("metadata_bytes_max", self.metadata_bytes_max),
            ("chunk_bytes_max", self.chunk_bytes_max),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(Error::InvalidOption {
                    name,
                    reason: "must be at least 1".into(),
                });
            }
        }
        Ok(())
    }
}

/// Describes one installed snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The last log index the snapshot covers; the log may be compacted up to
    /// and including it (`compact_prefix(last_index + 1)`).
    pub last_index: u64,
    /// The term of that entry.
    pub last_term: u64,
    /// Size of the snapshot data.
    pub data_bytes: u64,
    /// CRC-32 of the data.
    pub data_checksum: u32,
    /// Caller metadata (the membership at `last_index`).
    pub metadata: Bytes,
}

/// Snapshot files in one directory.
#[derive(Debug)]
pub struct SnapshotStore {
    file_system: Arc<dyn FileSystem>,
    directory: PathBuf,
    options: SnapshotOptions,
}

fn file_name(last_index: u64, last_term: u64) -> String {
    format!("{last_index:020}-{last_term:020}.snap")
}

impl SnapshotStore {
    /// Opens the store, creating the directory and removing unfinished snapshots.
    pub fn open(
        file_system: Arc<dyn FileSystem>,
        directory: impl Into<PathBuf>,
        options: SnapshotOptions,
    ) -> Result<Self> {
        options.validate()?;
        let directory = directory.into();
        file_system
            .create_dir_all(&directory)
            .map_err(|error| Error::io("create directory", &directory, &error))?;
        let store = Self {
            file_system,
            directory,
            options,
        };
        for name in store
            .names()?
            .into_iter()
            .filter(|name| name.ends_with(".tmp"))
        {
            let path = store.directory.join(name);
            store
                .file_system
                .remove_file(&path)
                .map_err(|error| Error::io("remove", &path, &error))?;
        }
        Ok(store)
    }

    fn names(&self) -> Result<Vec<String>> {
        self.file_system
            .list_dir(&self.directory)
            .map_err(|error| Error::io("list directory", &self.directory, &error))
    }

    /// Starts writing a snapshot covering the log up to `last_index`.
    pub fn begin(
        &self,
        last_index: u64,
        last_term: u64,
        metadata: Bytes,
    ) -> Result<SnapshotWriter<'_>> {
        if metadata.len() > self.options.metadata_bytes_max {
            return Err(Error::TooLarge {
                what: "snapshot metadata bytes",
                value: metadata.len() as u64,
                limit: self.options.metadata_bytes_max as u64,
            });
        }
        let name = file_name(last_index, last_term);
        let temporary = self.directory.join(format!("{name}.tmp"));
        let file = self
            .file_system
            .create(&temporary)
            .map_err(|error| Error::io("create snapshot", &temporary, &error))?;
        Ok(SnapshotWriter {
            store: self,
            file: Some(file),
            temporary,
            target: self.directory.join(name),
            last_index,
            last_term,
            metadata,
            hasher: crc32fast::Hasher::new(),
            data_bytes: 0,
        })
    }

    /// Every installed snapshot, oldest first. A damaged footer is an error.
    pub fn list(&self) -> Result<Vec<SnapshotMeta>> {
        let mut names: Vec<String> = self
            .names()?
            .into_iter()
            .filter(|name| name.ends_with(".snap"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|name| self.read_meta(&self.directory.join(name)))
            .collect()
    }

    /// The newest installed snapshot.
    pub fn latest(&self) -> Result<Option<SnapshotMeta>> {
        Ok(self.list()?.pop())
    }

    fn read_meta(&self, path: &Path) -> Result<SnapshotMeta> {
        let bytes = self
            .file_system
            .read_all(path)
            .map_err(|error| Error::io("read snapshot", path, &error))?;
        decode_footer(&bytes).map_err(|reason| Error::BadFile {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// The data of a snapshot, checked against its checksum (no copy on disk).
    pub fn read(&self, meta: &SnapshotMeta) -> Result<Bytes> {
        let path = self
            .directory
            .join(file_name(meta.last_index, meta.last_term));
        let bytes = self
            .file_system
            .read_all(&path)
            .map_err(|error| Error::io("read snapshot", &path, &error))?;
        let stored = decode_footer(&bytes).map_err(|reason| Error::BadFile {
            path: path.clone(),
            reason,
        })?;
        let data = bytes.slice(..stored.data_bytes as usize);
        let computed = crc32fast::hash(&data);
        if computed != stored.data_checksum {
            return Err(Error::SnapshotChecksum {
                expected: stored.data_checksum,
                computed,
            });
        }
        Ok(data)
    }

    fn install(&self, temporary: &Path, target: &Path) -> Result<()> {
        self.file_system
            .rename(temporary, target)
            .map_err(|error| Error::io("install snapshot", target, &error))?;
        self.sync_directory()?;
        let installed = self.list()?;
        let surplus = installed
            .len()
            .saturating_sub(self.options.snapshots_retained_count);
        for old in &installed[..surplus] {
            let path = self
                .directory
                .join(file_name(old.last_index, old.last_term));
            self.file_system
                .remove_file(&path)
                .map_err(|error| Error::io("remove snapshot", &path, &error))?;
        }
        if surplus > 0 {
            self.sync_directory()?;
        }
        Ok(())
    }

    fn sync_directory(&self) -> Result<()> {
        self.file_system
            .sync_dir(&self.directory)
            .map_err(|error| Error::io("fsync directory", &self.directory, &error))
    }
}

/// A snapshot being written; nothing is visible until [`SnapshotWriter::finish`].
#[derive(Debug)]
pub struct SnapshotWriter<'store> {
    store: &'store SnapshotStore,
    file: Option<Box<dyn WritableFile>>,
    temporary: PathBuf,
    target: PathBuf,
    last_index: u64,
    last_term: u64,
    metadata: Bytes,
    hasher: crc32fast::Hasher,
    data_bytes: u64,
}

impl SnapshotWriter<'_> {
    /// Appends one chunk of snapshot data.
    pub fn write_chunk(&mut self, chunk: &[u8]) -> Result<()> {
        if chunk.len() > self.store.options.chunk_bytes_max {
            return Err(Error::TooLarge {
                what: "snapshot chunk bytes",
                value: chunk.len() as u64,
                limit: self.store.options.chunk_bytes_max as u64,
            });
        }
        let Some(file) = self.file.as_mut() else {
            return Err(Error::WriterStopped);
        };
        file.append(chunk)
            .map_err(|error| Error::io("write snapshot", &self.temporary, &error))?;
        self.hasher.update(chunk);
        self.data_bytes += chunk.len() as u64;
        Ok(())
    }

    /// Checks the data against `expected_checksum` (the sender's CRC-32, when
    /// there is one), then installs the snapshot atomically and drops the
    /// oldest ones beyond the retained count. On a mismatch nothing is installed.
    pub fn finish(mut self, expected_checksum: Option<u32>) -> Result<SnapshotMeta> {
        let computed = self.hasher.clone().finalize();
        if let Some(expected) = expected_checksum
            && expected != computed
        {
            return Err(Error::SnapshotChecksum { expected, computed });
        }
        let meta = SnapshotMeta {
            last_index: self.last_index,
            last_term: self.last_term,
            data_bytes: self.data_bytes,
            data_checksum: computed,
            metadata: self.metadata.clone(),
        };
        let Some(mut file) = self.file.take() else {
            return Err(Error::WriterStopped);
        };
        let footer = encode_footer(&meta);
        file.append(&footer)
            .map_err(|error| Error::io("write snapshot", &self.temporary, &error))?;
        file.sync_data()
            .map_err(|error| Error::io("fsync snapshot", &self.temporary, &error))?;
        drop(file);
        self.store.install(&self.temporary, &self.target)?;
        Ok(meta)
    }
}

impl Drop for SnapshotWriter<'_> {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            // Abandoned or failed: the temporary file would be removed on the
            // next open anyway, so a failure to remove it now is harmless.
            let _ = self.store.file_system.remove_file(&self.temporary);
        }
    }
}

fn encode_footer(meta: &SnapshotMeta) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(meta.metadata.len() + FOOTER_BYTES);
    buffer.extend_from_slice(&meta.metadata);
    buffer.extend_from_slice(SNAPSHOT_MAGIC);
    buffer.put_u32_le(FORMAT_VERSION);
    buffer.put_u32_le(meta.metadata.len() as u32);
    buffer.put_u64_le(meta.last_index);
    buffer.put_u64_le(meta.last_term);
    buffer.put_u64_le(meta.data_bytes);
    buffer.put_u32_le(meta.data_checksum);
    let checksum = crc32fast::hash(&buffer);
    buffer.put_u32_le(checksum);
    buffer
}

fn decode_footer(bytes: &Bytes) -> std::result::Result<SnapshotMeta, String> {
    if bytes.len() < FOOTER_BYTES {
        return Err("shorter than a snapshot footer".into());
    }
    let footer_start = bytes.len() - FOOTER_BYTES;
    let footer = &bytes[footer_start..];
    if &footer[0..8] != SNAPSHOT_MAGIC {
        return Err("wrong footer magic".into());
    }
    let metadata_bytes = read_u32(footer, 12) as usize;
    let data_bytes = read_u64(footer, 32);
    let metadata_start = footer_start
        .checked_sub(metadata_bytes)
        .ok_or("metadata length too large")?;
    if data_bytes != metadata_start as u64 {
        return Err("data length does not match the file length".into());
    }
    if crc32fast::hash(&bytes[metadata_start..bytes.len() - 4]) != read_u32(footer, 44) {
        return Err("footer checksum mismatch".into());
    }
    if read_u32(footer, 8) != FORMAT_VERSION {
        return Err("unsupported format version".into());
    }
    Ok(SnapshotMeta {
        last_index: read_u64(footer, 16),
        last_term: read_u64(footer, 24),
        data_bytes,
        data_checksum: read_u32(footer, 40),
        metadata: bytes.slice(metadata_start..footer_start),
    })
}
