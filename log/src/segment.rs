//! Sealed (immutable, mapped) and active (appended) segments.

use std::path::PathBuf;

use bytes::Bytes;

use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::format::{self, OffsetIndex, RECORD_HEADER_BYTES, RecordProblem};
use crate::fs::WritableFile;

/// A segment that is never written again: read through a mapping, located by
/// its persisted offset index.
#[derive(Debug)]
pub(crate) struct SealedSegment {
    pub(crate) first_index: u64,
    pub(crate) path: PathBuf,
    pub(crate) data: Bytes,
    pub(crate) index: OffsetIndex,
}

impl SealedSegment {
    pub(crate) fn last_index(&self) -> u64 {
        self.first_index + self.index.entry_count - 1
    }

    pub(crate) fn offset(&self, index: u64) -> u64 {
        debug_assert!(index >= self.first_index && index <= self.last_index());
        self.index.offset(index - self.first_index)
    }

    /// The entry at `index`, its payload a slice of the mapping (no copy).
    pub(crate) fn entry(&self, index: u64, payload_bytes_max: u64) -> Result<Entry> {
        let offset = self.offset(index);
        format::decode_record(&self.data, offset, index, payload_bytes_max)
            .map(|(entry, _)| entry)
            .map_err(|problem| corruption(&self.path, offset, &problem))
    }
}

pub(crate) fn corruption(path: &std::path::Path, offset: u64, problem: &RecordProblem) -> Error {
    let reason = match problem {
        RecordProblem::Truncated => "the record runs past the end of the segment".to_owned(),
        RecordProblem::Invalid(reason) | RecordProblem::PayloadMismatch(reason) => reason.clone(),
    };
    Error::Corruption {
        segment: path.to_path_buf(),
        offset,
        reason,
    }
}

/// The one segment that is appended to. Its offsets and terms live in memory;
/// reads copy from the file with positional reads, so they only ever touch
/// records whose offsets were published after their write completed.
#[derive(Debug)]
pub(crate) struct ActiveSegment {
    pub(crate) first_index: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: Box<dyn WritableFile>,
    pub(crate) offsets: Vec<u64>,
    pub(crate) terms: Vec<u64>,
}

impl ActiveSegment {
    pub(crate) fn entry_count(&self) -> u64 {
        self.offsets.len() as u64
    }

    /// One past the last index held.
    pub(crate) fn next_index(&self) -> u64 {
        self.first_index + self.entry_count()
    }

    pub(crate) fn term(&self, index: u64) -> u64 {
        self.terms[(index - self.first_index) as usize]
    }

    pub(crate) fn entry(&self, index: u64, payload_bytes_max: u64) -> Result<Entry> {
        let position = (index - self.first_index) as usize;
        let offset = self.offsets[position];
        let end = match self.offsets.get(position + 1) {
            Some(next) => *next,
            None => self.file.length_bytes(),
        };
        assert!(
            end >= offset + RECORD_HEADER_BYTES,
            "active segment offsets out of order"
        );
        let mut buffer = vec![0u8; (end - offset) as usize];
        self.file
            .read_exact_at(&mut buffer, offset)
            .map_err(|error| Error::io("read", &self.path, &error))?;
        let bytes = Bytes::from(buffer);
        format::decode_record(&bytes, 0, index, payload_bytes_max)
            .map(|(entry, _)| entry)
            .map_err(|problem| corruption(&self.path, offset, &problem))
    }
}
