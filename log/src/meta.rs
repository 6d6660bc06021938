//! The metadata file: Raft's hard state, replaced atomically as a whole.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::{BufMut, Bytes};

use crate::error::{Error, Result};
use crate::format::{FORMAT_VERSION, read_u32, read_u64};
use crate::fs::{self, FileSystem};

const META_MAGIC: &[u8; 8] = b"CNCLVMET";
const META_FIXED_BYTES: usize = 44;
/// The most membership bytes the meta file holds.
pub const MEMBERSHIP_BYTES_MAX: usize = 1024 * 1024;

/// What Raft must keep across restarts besides the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HardState {
    /// The latest term this node has seen.
    pub current_term: u64,
    /// The candidate this node voted for in `current_term`, if any.
    pub voted_for: Option<u64>,
    /// The highest index known committed (an optimisation: Raft can relearn it).
    pub commit_index: u64,
    /// The membership configuration, encoded by the Raft node.
    pub membership: Bytes,
}

/// Reads and writes the hard state at one path.
#[derive(Debug)]
pub struct MetaStore {
    file_system: Arc<dyn FileSystem>,
    path: PathBuf,
}

impl MetaStore {
    /// A store for the meta file at `path` (its directory is created).
    pub fn open(file_system: Arc<dyn FileSystem>, path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let directory = fs::parent_of(&path).to_path_buf();
        file_system
            .create_dir_all(&directory)
            .map_err(|error| Error::io("create directory", &directory, &error))?;
        Ok(Self { file_system, path })
    }

    /// The stored hard state, or `None` when none was ever saved.
    pub fn load(&self) -> Result<Option<HardState>> {
        let exists = self.file_system.exists(&self.path);
        if !exists.map_err(|error| Error::io("stat meta", &self.path, &error))? {
            return Ok(None);
        }
        let bytes = self
            .file_system
            .read_all(&self.path)
            .map_err(|error| Error::io("read meta", &self.path, &error))?;
        decode(&bytes).map(Some).map_err(|reason| Error::BadFile {
            path: self.path.clone(),
            reason,
        })
    }

    /// Replaces the hard state atomically: write a temporary file, fsync,
    /// rename, fsync the directory. A crash leaves the old or the new state.
    pub fn save(&self, state: &HardState) -> Result<()> {
        if state.membership.len() > MEMBERSHIP_BYTES_MAX {
            return Err(Error::TooLarge {
                what: "membership bytes",
                value: state.membership.len() as u64,
                limit: MEMBERSHIP_BYTES_MAX as u64,
            });
        }
        fs::write_atomically(self.file_system.as_ref(), &self.path, &encode(state))
            .map_err(|error| Error::io("write meta", &self.path, &error))
    }
}

fn encode(state: &HardState) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(META_FIXED_BYTES + state.membership.len() + 4);
    buffer.extend_from_slice(META_MAGIC);
    buffer.put_u32_le(FORMAT_VERSION);
    buffer.put_u32_le(u32::from(state.voted_for.is_some()));
    buffer.put_u64_le(state.current_term);
    buffer.put_u64_le(state.voted_for.unwrap_or(0));
    buffer.put_u64_le(state.commit_index);
    buffer.put_u32_le(state.membership.len() as u32);
    buffer.extend_from_slice(&state.membership);
    let checksum = crc32fast::hash(&buffer);
    buffer.put_u32_le(checksum);
    buffer
}

fn decode(bytes: &Bytes) -> std::result::Result<HardState, String> {
    if bytes.len() < META_FIXED_BYTES + 4 || &bytes[0..8] != META_MAGIC {
        return Err("not a meta file (short or wrong magic)".into());
    }
    let membership_bytes = read_u32(bytes, 40) as usize;
    if membership_bytes > MEMBERSHIP_BYTES_MAX
        || bytes.len() != META_FIXED_BYTES + membership_bytes + 4
    {
        return Err("length does not match the membership length".into());
    }
    let body_end = META_FIXED_BYTES + membership_bytes;
    if crc32fast::hash(&bytes[..body_end]) != read_u32(bytes, body_end) {
        return Err("checksum mismatch".into());
    }
    if read_u32(bytes, 8) != FORMAT_VERSION {
        return Err("unsupported format version".into());
    }
    let has_vote = read_u32(bytes, 12) & 1 == 1;
    Ok(HardState {
        current_term: read_u64(bytes, 16),
        voted_for: has_vote.then(|| read_u64(bytes, 24)),
        commit_index: read_u64(bytes, 32),
        membership: bytes.slice(META_FIXED_BYTES..body_end),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{MemoryFileSystem, RealFileSystem};
    use std::path::Path;

    fn round_trip_and_crash_safety(file_system: Arc<dyn FileSystem>, path: &Path) {
        let store = MetaStore::open(Arc::clone(&file_system), path).unwrap();
        assert_eq!(store.load().unwrap(), None);
        let first = HardState {
            current_term: 3,
            voted_for: Some(2),
            commit_index: 9,
            membership: Bytes::from_static(b"1,2,3"),
        };
        store.save(&first).unwrap();
        assert_eq!(store.load().unwrap(), Some(first.clone()));
        let second = HardState {
            current_term: 4,
            voted_for: None,
            ..first
        };
        store.save(&second).unwrap();
        assert_eq!(store.load().unwrap(), Some(second));
    }

    #[test]
    fn the_hard_state_round_trips_on_both_file_systems() {
        round_trip_and_crash_safety(Arc::new(MemoryFileSystem::new(1)), Path::new("/data/meta"));
        let directory = tempfile::tempdir().unwrap();
        round_trip_and_crash_safety(Arc::new(RealFileSystem), &directory.path().join("meta"));
    }

    #[test]
    fn a_crash_leaves_the_old_or_the_new_state_and_a_flipped_byte_is_an_error() {
        let file_system = MemoryFileSystem::new(5);
        let store = MetaStore::open(Arc::new(file_system.clone()), "/data/meta").unwrap();
        let old = HardState {
            current_term: 1,
            ..HardState::default()
        };
        store.save(&old).unwrap();
        file_system.crash(true);
        assert_eq!(store.load().unwrap(), Some(old.clone()));
        let new = HardState {
            current_term: 2,
            voted_for: Some(7),
            ..HardState::default()
        };
        store.save(&new).unwrap();
        file_system.crash(true);
        assert_eq!(store.load().unwrap(), Some(new));
        file_system
            .corrupt_byte(Path::new("/data/meta"), 17)
            .unwrap();
        assert!(matches!(store.load(), Err(Error::BadFile { .. })));
    }
}
