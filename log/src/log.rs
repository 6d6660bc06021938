//! The segmented log: append, read, truncate, compact, sync and recovery.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::format::{
    self, LogState, OffsetIndex, RecordProblem, SEGMENT_HEADER_BYTES, decode_segment_header,
};
use crate::fs::{self, FileSystem, RealFileSystem, SyncHandle};
use crate::options::{LogOptions, RecoveryMode};
use crate::segment::{ActiveSegment, SealedSegment, corruption};

const STATE_FILE_NAME: &str = "log.state";

/// A segmented, append-only log of [`Entry`]s with dense indexes.
///
/// Mutations take `&mut self`; reads take `&self`. Share it between threads
/// behind a lock, or through [`crate::GroupCommit`].
///
/// Durability: appended entries are durable after [`Log::sync`] returns (or
/// once the group-commit writer acknowledges them). After a crash, [`Log::open`]
/// returns a prefix of what was appended that holds every synced entry.
#[derive(Debug)]
pub struct Log {
    file_system: Arc<dyn FileSystem>,
    directory: PathBuf,
    options: LogOptions,
    sealed: Vec<SealedSegment>,
    active: Option<ActiveSegment>,
    /// The compaction floor: the first index readable.
    first_index: u64,
    /// One past the last index.
    next_index: u64,
    /// Every entry up to this index is durable.
    durable_index: u64,
    /// Set when a write or fsync failed: what is on disk is unknown.
    poisoned: bool,
    /// What the last open had to repair.
    recovery: RecoveryReport,
    /// Counts truncations and compactions, so that an fsync that ran while
    /// one happened does not vouch for entries written after it.
    reshape_epoch: u64,
    write_buffer: Vec<u8>,
}

struct SegmentFile {
    first_index: u64,
    path: PathBuf,
}

impl Log {
    /// Opens (or creates) the log in `directory` on the real file system.
    pub fn open_on_disk(directory: impl Into<PathBuf>, options: LogOptions) -> Result<Self> {
        Self::open(Arc::new(RealFileSystem), directory, options)
    }

    /// Opens (or creates) the log in `directory` on `file_system`, recovering
    /// from a crash as `FORMAT.md` describes.
    pub fn open(
        file_system: Arc<dyn FileSystem>,
        directory: impl Into<PathBuf>,
        options: LogOptions,
    ) -> Result<Self> {
        options.validate()?;
        let directory = directory.into();
        file_system
            .create_dir_all(&directory)
            .map_err(|error| Error::io("create directory", &directory, &error))?;
        let mut log = Self {
            file_system,
            directory,
            options,
            sealed: Vec::new(),
            active: None,
            first_index: 1,
            next_index: 1,
            durable_index: 0,
            poisoned: false,
            reshape_epoch: 0,
            recovery: RecoveryReport::default(),
            write_buffer: Vec::new(),
        };
        log.recover()?;
        log.validate();
        Ok(log)
    }

    /// The first readable index (the compaction floor). The log is empty when
    /// `last_index() < first_index()`.
    pub fn first_index(&self) -> u64 {
        self.first_index
    }

    /// The last index (`first_index() - 1` when empty).
    pub fn last_index(&self) -> u64 {
        self.next_index - 1
    }

    /// Whether the log holds no entry.
    pub fn is_empty(&self) -> bool {
        self.next_index == self.first_index
    }

    /// Every entry up to this index is durable.
    pub fn durable_index(&self) -> u64 {
        self.durable_index
    }

    /// The directory the log lives in.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// The options the log was opened with.
    pub fn options(&self) -> &LogOptions {
        &self.options
    }

    /// What open had to do to bring the log back to a clean state.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// How many segment files the log has.
    pub fn segments_count(&self) -> usize {
        self.sealed.len() + usize::from(self.active.is_some())
    }

    fn check_readable(&self, index: u64) -> Result<()> {
        if index < self.first_index {
            return Err(Error::Compacted {
                index,
                first_index: self.first_index,
            });
        }
        if index >= self.next_index {
            return Err(Error::Unavailable {
                index,
                last_index: self.last_index(),
            });
        }
        Ok(())
    }

    fn sealed_position(&self, index: u64) -> Option<usize> {
        let after = self
            .sealed
            .partition_point(|segment| segment.first_index <= index);
        let position = after.checked_sub(1)?;
        (self.sealed[position].last_index() >= index).then_some(position)
    }

    /// The entry at `index`. Entries of sealed segments share the mapped
    /// file's memory.
    pub fn entry(&self, index: u64) -> Result<Entry> {
        self.check_readable(index)?;
        let payload_bytes_max = self.options.entry_payload_bytes_max;
        if let Some(position) = self.sealed_position(index) {
            return self.sealed[position].entry(index, payload_bytes_max);
        }
        match &self.active {
            Some(active) if index >= active.first_index => active.entry(index, payload_bytes_max),
            _ => unreachable_segment(index),
        }
    }

    /// The entries in `range`, stopping before their size would exceed
    /// `bytes_max`; at least one entry is returned when the range is not empty,
    /// so that a large entry never blocks replication. An entry's size is its
    /// record's size (32-byte header plus payload), so empty entries count too.
    pub fn entries(&self, range: Range<u64>, bytes_max: u64) -> Result<Vec<Entry>> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        self.check_readable(range.start)?;
        self.check_readable(range.end - 1)?;
        let mut entries = Vec::new();
        let mut bytes_total: u64 = 0;
        for index in range {
            let entry = self.entry(index)?;
            bytes_total += format::record_size_bytes(&entry);
            if bytes_total > bytes_max && !entries.is_empty() {
                break;
            }
            entries.push(entry);
        }
        Ok(entries)
    }

    /// The term of the entry at `index`.
    pub fn term(&self, index: u64) -> Result<u64> {
        self.check_readable(index)?;
        match &self.active {
            Some(active) if index >= active.first_index => Ok(active.term(index)),
            _ => self.entry(index).map(|entry| entry.term),
        }
    }

    fn check_writable(&self) -> Result<()> {
        if self.poisoned {
            Err(Error::Poisoned)
        } else {
            Ok(())
        }
    }

    /// Appends `entries`, which must continue the log (the first one at
    /// `last_index() + 1`, then consecutive). They are durable after `sync`.
    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        self.check_writable()?;
        for (expected, entry) in (self.next_index..).zip(entries) {
            if entry.index != expected {
                return Err(Error::OutOfOrder {
                    expected,
                    found: entry.index,
                });
            }
            let payload_bytes = entry.payload.len() as u64;
            if payload_bytes > self.options.entry_payload_bytes_max {
                return Err(Error::TooLarge {
                    what: "entry payload bytes",
                    value: payload_bytes,
                    limit: self.options.entry_payload_bytes_max,
                });
            }
        }
        let result = self.append_checked(entries);
        if result.is_err() {
            // A failed write may have left part of a batch behind.
            self.poisoned = true;
        } else if cfg!(debug_assertions) {
            self.validate();
        }
        result
    }

    fn append_checked(&mut self, entries: &[Entry]) -> Result<()> {
        let mut pending_offsets = Vec::new();
        let mut pending_terms = Vec::new();
        self.write_buffer.clear();
        for entry in entries {
            let record_bytes = format::record_size_bytes(entry);
            let needs_roll = match &self.active {
                None => true,
                Some(active) => {
                    let length = active.file.length_bytes() + self.write_buffer.len() as u64;
                    let holds_any = active.entry_count() + pending_offsets.len() as u64 > 0;
                    holds_any && length + record_bytes > self.options.segment_size_bytes_max
                }
            };
            if needs_roll {
                self.flush_pending(&mut pending_offsets, &mut pending_terms)?;
                if self.active.is_some() {
                    self.seal_active()?;
                }
                self.create_active(entry.index)?;
            }
            let Some(active) = &self.active else {
                return unreachable_segment(entry.index);
            };
            pending_offsets.push(active.file.length_bytes() + self.write_buffer.len() as u64);
            pending_terms.push(entry.term);
            format::encode_record(entry, &mut self.write_buffer);
        }
        self.flush_pending(&mut pending_offsets, &mut pending_terms)
    }

    /// Writes the buffered records, then publishes their offsets.
    fn flush_pending(&mut self, offsets: &mut Vec<u64>, terms: &mut Vec<u64>) -> Result<()> {
        let Some(active) = &mut self.active else {
            assert!(
                offsets.is_empty(),
                "records buffered without an active segment"
            );
            return Ok(());
        };
        if !self.write_buffer.is_empty() {
            active
                .file
                .append(&self.write_buffer)
                .map_err(|error| Error::io("append", &active.path, &error))?;
            self.write_buffer.clear();
        }
        self.next_index += offsets.len() as u64;
        active.offsets.append(offsets);
        active.terms.append(terms);
        assert_eq!(
            active.next_index(),
            self.next_index,
            "active segment out of step"
        );
        Ok(())
    }

    /// Makes every appended entry durable.
    pub fn sync(&mut self) -> Result<()> {
        self.check_writable()?;
        if self.durable_index == self.last_index() {
            return Ok(());
        }
        if let Some(active) = &mut self.active
            && let Err(error) = active.file.sync_data()
        {
            // After a failed fsync the kernel may have dropped the dirty
            // pages: nothing but a reopen can tell what is on disk.
            self.poisoned = true;
            return Err(Error::io("fsync", &active.path, &error));
        }
        self.durable_index = self.last_index();
        Ok(())
    }

    /// Prepares an fsync of everything appended so far, to be run with
    /// [`PendingSync::run`] without holding the log (so that readers and the
    /// lock are free meanwhile), then concluded with [`Log::finish_sync`].
    pub fn begin_sync(&mut self) -> Result<PendingSync> {
        self.check_writable()?;
        let mut pending = PendingSync {
            handle: None,
            path: self.directory.clone(),
            upto: self.last_index(),
            epoch: self.reshape_epoch,
        };
        if self.durable_index < self.last_index()
            && let Some(active) = &self.active
        {
            pending.path = active.path.clone();
            let handle = active.file.sync_handle();
            pending.handle = Some(self.io("open sync handle", &pending.path.clone(), handle)?);
        }
        Ok(pending)
    }

    /// Concludes an fsync begun with [`Log::begin_sync`]: on success the
    /// entries it covered are durable; on failure the log is poisoned.
    pub fn finish_sync(&mut self, pending: PendingSync, result: std::io::Result<()>) -> Result<()> {
        if let Err(error) = result {
            self.poisoned = true;
            return Err(Error::io("fsync", &pending.path, &error));
        }
        if pending.epoch == self.reshape_epoch {
            self.durable_index = self.durable_index.max(pending.upto.min(self.last_index()));
        }
        Ok(())
    }

    fn segment_path(&self, first_index: u64) -> PathBuf {
        self.directory.join(format::segment_file_name(first_index))
    }

    fn index_path(&self, first_index: u64) -> PathBuf {
        self.directory.join(format::index_file_name(first_index))
    }

    fn io<T>(
        &mut self,
        operation: &'static str,
        path: &Path,
        result: std::io::Result<T>,
    ) -> Result<T> {
        result.map_err(|error| {
            self.poisoned = true;
            Error::io(operation, path, &error)
        })
    }

    fn sync_directory(&mut self) -> Result<()> {
        let directory = self.directory.clone();
        let result = self.file_system.sync_dir(&directory);
        self.io("fsync directory", &directory, result)
    }

    /// Creates the next segment: header written and fsynced, directory fsynced.
    fn create_active(&mut self, first_index: u64) -> Result<()> {
        assert!(self.active.is_none(), "a second active segment");
        let path = self.segment_path(first_index);
        let created = self.file_system.create(&path);
        let mut file = self.io("create segment", &path, created)?;
        let written = file.append(&format::encode_segment_header(first_index));
        self.io("write segment header", &path, written)?;
        let synced = file.sync_data();
        self.io("fsync segment", &path, synced)?;
        self.sync_directory()?;
        self.active = Some(ActiveSegment {
            first_index,
            path,
            file,
            offsets: Vec::new(),
            terms: Vec::new(),
        });
        Ok(())
    }

    /// Fsyncs the active segment, persists its offset index and maps it.
    fn seal_active(&mut self) -> Result<()> {
        let Some(mut active) = self.active.take() else {
            return Ok(());
        };
        assert!(active.entry_count() > 0, "sealing an empty segment");
        let synced = active.file.sync_data();
        self.io("fsync segment", &active.path.clone(), synced)?;
        let length_bytes = active.file.length_bytes();
        let encoded = format::encode_index(active.first_index, length_bytes, &active.offsets);
        let index_path = self.index_path(active.first_index);
        let written = fs::write_atomically(self.file_system.as_ref(), &index_path, &encoded);
        self.io("write offset index", &index_path, written)?;
        let last_index = active.next_index() - 1;
        drop(active.file);
        let data = self.file_system.read_all(&active.path);
        let data = self.io("map segment", &active.path, data)?;
        assert_eq!(
            data.len() as u64,
            length_bytes,
            "sealed segment changed length"
        );
        let index = OffsetIndex {
            entry_count: active.offsets.len() as u64,
            segment_length_bytes: length_bytes,
            offsets: Bytes::from(encoded).slice(format::INDEX_HEADER_BYTES as usize..),
        };
        self.sealed.push(SealedSegment {
            first_index: active.first_index,
            path: active.path,
            data,
            index,
        });
        self.durable_index = self.durable_index.max(last_index);
        Ok(())
    }

    fn write_state(&mut self, state: LogState) -> Result<()> {
        let path = self.directory.join(STATE_FILE_NAME);
        let written = fs::write_atomically(
            self.file_system.as_ref(),
            &path,
            &format::encode_state(&state),
        );
        self.io("write log.state", &path, written)
    }

    /// Removes every entry at or after `from` (a Raft log conflict). Crash-safe:
    /// a crash leaves the old or the new log, and removed entries never return.
    pub fn truncate_suffix(&mut self, from: u64) -> Result<()> {
        self.check_writable()?;
        if from >= self.next_index {
            return Ok(());
        }
        if from < self.first_index {
            return Err(Error::Compacted {
                index: from,
                first_index: self.first_index,
            });
        }
        let first_index = self.first_index;
        self.write_state(LogState {
            first_index,
            truncate_from: Some(from),
        })?;
        self.apply_truncation(from)?;
        self.write_state(LogState {
            first_index,
            truncate_from: None,
        })?;
        self.validate();
        Ok(())
    }

    /// Carries out a committed truncation; idempotent, so open can redo it.
    fn apply_truncation(&mut self, from: u64) -> Result<()> {
        self.reshape_epoch += 1;
        if let Some(active) = &self.active
            && active.first_index >= from
        {
            let path = active.path.clone();
            self.active = None;
            let removed = self.file_system.remove_file(&path);
            self.io("remove segment", &path, removed)?;
        }
        while let Some(segment) = self.sealed.last()
            && segment.first_index >= from
        {
            let first_index = segment.first_index;
            self.remove_sealed_files(first_index)?;
            self.sealed.pop();
        }
        self.sync_directory()?;
        if let Some(active) = &mut self.active {
            if active.next_index() > from {
                let keep = (from - active.first_index) as usize;
                let offset = active.offsets[keep];
                let path = active.path.clone();
                let truncated = active.file.truncate(offset);
                active.offsets.truncate(keep);
                active.terms.truncate(keep);
                self.io("truncate segment", &path, truncated)?;
                let active = self.active.as_mut().map(|active| active.file.sync_data());
                if let Some(synced) = active {
                    self.io("fsync segment", &path, synced)?;
                }
            }
        } else if let Some(segment) = self.sealed.last()
            && segment.last_index() >= from
        {
            self.reopen_sealed_as_active(from)?;
        }
        self.next_index = from.max(self.first_index);
        self.durable_index = self.durable_index.min(self.last_index());
        Ok(())
    }

    fn remove_sealed_files(&mut self, first_index: u64) -> Result<()> {
        let index_path = self.index_path(first_index);
        let exists = self.file_system.exists(&index_path);
        if self.io("stat offset index", &index_path, exists)? {
            let removed = self.file_system.remove_file(&index_path);
            self.io("remove offset index", &index_path, removed)?;
        }
        let path = self.segment_path(first_index);
        let removed = self.file_system.remove_file(&path);
        self.io("remove segment", &path, removed)
    }

    /// Turns the last sealed segment into the active one, keeping the records
    /// before `from`. The kept prefix is written to a new file that replaces
    /// the old one by rename, because entries handed out earlier may still map
    /// the old file and must not see it shrink under them.
    fn reopen_sealed_as_active(&mut self, from: u64) -> Result<()> {
        let Some(segment) = self.sealed.pop() else {
            return Ok(());
        };
        let keep = from - segment.first_index;
        let cut_offset = segment.offset(from);
        let mut offsets = Vec::new();
        let mut terms = Vec::new();
        for position in 0..keep {
            let offset = segment.index.offset(position);
            let header = &segment.data[offset as usize..][..format::RECORD_HEADER_BYTES as usize];
            offsets.push(offset);
            terms.push(format::decode_record_header(header).term);
        }
        let index_path = self.index_path(segment.first_index);
        let removed = self.file_system.remove_file(&index_path);
        self.io("remove offset index", &index_path, removed)?;
        let written = fs::write_atomically(
            self.file_system.as_ref(),
            &segment.path,
            &segment.data[..cut_offset as usize],
        );
        self.io("rewrite segment", &segment.path, written)?;
        let opened = self.file_system.open_append(&segment.path);
        let file = self.io("open segment", &segment.path, opened)?;
        self.active = Some(ActiveSegment {
            first_index: segment.first_index,
            path: segment.path,
            file,
            offsets,
            terms,
        });
        Ok(())
    }

    /// Removes every entry below `upto` (after a snapshot that covers them).
    /// When `upto` is past the end, the log becomes empty and the next append
    /// must be at `upto`. Crash-safe: `log.state` records the new first index
    /// before any file is removed.
    pub fn compact_prefix(&mut self, upto: u64) -> Result<()> {
        self.check_writable()?;
        if upto <= self.first_index {
            return Ok(());
        }
        self.write_state(LogState {
            first_index: upto,
            truncate_from: None,
        })?;
        self.first_index = upto;
        self.remove_below_floor()?;
        self.validate();
        Ok(())
    }

    /// Removes the segments that hold only entries below the first index.
    fn remove_below_floor(&mut self) -> Result<()> {
        self.reshape_epoch += 1;
        let mut removed_any = false;
        while let Some(segment) = self.sealed.first()
            && segment.last_index() < self.first_index
        {
            let first_index = segment.first_index;
            self.remove_sealed_files(first_index)?;
            self.sealed.remove(0);
            removed_any = true;
        }
        if self.next_index < self.first_index {
            // Nothing left is readable: the next append starts a new segment
            // at the floor.
            for segment in std::mem::take(&mut self.sealed) {
                self.remove_sealed_files(segment.first_index)?;
            }
            if let Some(active) = self.active.take() {
                let removed = self.file_system.remove_file(&active.path);
                self.io("remove segment", &active.path, removed)?;
            }
            self.next_index = self.first_index;
            removed_any = true;
        }
        self.durable_index = self.durable_index.max(self.first_index - 1);
        if removed_any {
            self.sync_directory()?;
        }
        Ok(())
    }

    /// Checks the invariants that tie the segments to the indexes; a broken
    /// one is a bug, so it crashes.
    fn validate(&self) {
        assert!(self.first_index >= 1, "first index must be at least 1");
        assert!(
            self.next_index >= self.first_index,
            "next index below the first index"
        );
        assert!(
            self.durable_index < self.next_index,
            "durable index past the end"
        );
        let mut expected: Option<u64> = None;
        for segment in &self.sealed {
            assert!(segment.index.entry_count > 0, "an empty sealed segment");
            if let Some(expected) = expected {
                assert_eq!(
                    segment.first_index, expected,
                    "sealed segments not contiguous"
                );
            }
            expected = Some(segment.last_index() + 1);
        }
        if let Some(active) = &self.active {
            if let Some(expected) = expected {
                assert_eq!(
                    active.first_index, expected,
                    "active segment not contiguous"
                );
            }
            assert_eq!(
                active.next_index(),
                self.next_index,
                "active segment out of step"
            );
        } else if let Some(expected) = expected {
            assert_eq!(expected, self.next_index, "sealed segments out of step");
        }
        if let Some(first) = self.sealed.first().map(|segment| segment.first_index) {
            assert!(
                first <= self.first_index,
                "first segment starts after the floor"
            );
        }
    }

    // ---- recovery ----

    fn recover(&mut self) -> Result<()> {
        let directory = self.directory.clone();
        let listed = self.file_system.list_dir(&directory);
        let names = self.io("list directory", &directory, listed)?;
        let mut removed_any = false;
        for name in names.iter().filter(|name| name.ends_with(".tmp")) {
            let path = directory.join(name);
            let removed = self.file_system.remove_file(&path);
            self.io("remove temporary file", &path, removed)?;
            removed_any = true;
        }
        if removed_any {
            self.sync_directory()?;
        }
        let mut segments: Vec<SegmentFile> = names
            .iter()
            .filter_map(|name| {
                let first_index = format::parse_segment_file_name(name)?;
                Some(SegmentFile {
                    first_index,
                    path: directory.join(name),
                })
            })
            .collect();
        segments.sort_by_key(|segment| segment.first_index);
        let state = self.read_state()?;
        self.first_index = match (state, segments.first()) {
            (Some(state), _) => state.first_index,
            (None, Some(first)) => first.first_index,
            (None, None) => 1,
        };
        if self.first_index == 0 {
            return Err(Error::BadFile {
                path: directory.join(STATE_FILE_NAME),
                reason: "first index 0".into(),
            });
        }
        // Segments wholly below the floor are leftovers of a compaction.
        while segments.len() > 1 && segments[1].first_index <= self.first_index {
            let segment = segments.remove(0);
            self.remove_leftover(segment.first_index)?;
        }
        self.load_segments(segments)?;
        if let Some(from) = state.and_then(|state| state.truncate_from) {
            self.recovery.truncation_finished = true;
            if from < self.next_index {
                self.apply_truncation(from)?;
            }
            self.write_state(LogState {
                first_index: self.first_index,
                truncate_from: None,
            })?;
        }
        self.remove_below_floor()?;
        if let Some(active) = &mut self.active {
            // What was read may sit only in the page cache; make it durable
            // before calling it so.
            let synced = active.file.sync_data();
            let path = active.path.clone();
            self.io("fsync segment", &path, synced)?;
        }
        self.durable_index = self.last_index();
        Ok(())
    }

    fn read_state(&mut self) -> Result<Option<LogState>> {
        let path = self.directory.join(STATE_FILE_NAME);
        let exists = self.file_system.exists(&path);
        if !self.io("stat log.state", &path, exists)? {
            return Ok(None);
        }
        let bytes = self.file_system.read_all(&path);
        let bytes = self.io("read log.state", &path, bytes)?;
        format::decode_state(&bytes)
            .map(Some)
            .map_err(|reason| Error::BadFile { path, reason })
    }

    fn remove_leftover(&mut self, first_index: u64) -> Result<()> {
        self.remove_sealed_files(first_index)?;
        self.sync_directory()
    }

    fn load_segments(&mut self, segments: Vec<SegmentFile>) -> Result<()> {
        let count = segments.len();
        let mut expected: Option<u64> = None;
        if let Some(first) = segments.first()
            && first.first_index > self.first_index
        {
            return Err(Error::Gap {
                segment: first.path.clone(),
                expected: self.first_index,
                found: first.first_index,
            });
        }
        for (position, segment) in segments.into_iter().enumerate() {
            if let Some(expected) = expected
                && segment.first_index != expected
            {
                return Err(Error::Gap {
                    segment: segment.path,
                    expected,
                    found: segment.first_index,
                });
            }
            let is_last = position + 1 == count;
            let outcome = if is_last {
                self.load_last(segment)?
            } else {
                self.load_sealed(segment)?
            };
            match outcome {
                LoadOutcome::Continue => {}
                LoadOutcome::CutHere => {
                    // Repair cut this segment short and removed the later ones.
                    break;
                }
            }
            expected = Some(self.next_after_loaded());
        }
        if self.sealed.is_empty() && self.active.is_none() {
            self.next_index = self.first_index;
        } else {
            self.next_index = self.next_after_loaded();
        }
        Ok(())
    }

    fn next_after_loaded(&self) -> u64 {
        match (&self.active, self.sealed.last()) {
            (Some(active), _) => active.next_index(),
            (None, Some(segment)) => segment.last_index() + 1,
            (None, None) => self.first_index,
        }
    }

    /// Deletes every segment file above the one starting at `last`, highest first.
    fn remove_segments_after(&mut self, last: u64) -> Result<()> {
        let directory = self.directory.clone();
        let listed = self.file_system.list_dir(&directory);
        let names = self.io("list directory", &directory, listed)?;
        let mut later: Vec<u64> = names
            .iter()
            .filter_map(|name| format::parse_segment_file_name(name))
            .filter(|first_index| *first_index > last)
            .collect();
        later.sort_unstable();
        for first_index in later.into_iter().rev() {
            self.remove_sealed_files(first_index)?;
        }
        self.sync_directory()
    }

    fn read_segment(&mut self, path: &Path) -> Result<Bytes> {
        let data = self.file_system.read_all(path);
        self.io("read segment", path, data)
    }

    fn check_header(segment: &SegmentFile, data: &[u8]) -> Result<()> {
        let first_index = decode_segment_header(data).map_err(|reason| Error::BadHeader {
            segment: segment.path.clone(),
            reason,
        })?;
        if first_index != segment.first_index {
            return Err(Error::BadHeader {
                segment: segment.path.clone(),
                reason: format!(
                    "header says first index {first_index}, the name says {}",
                    segment.first_index
                ),
            });
        }
        Ok(())
    }

    fn load_sealed(&mut self, segment: SegmentFile) -> Result<LoadOutcome> {
        let data = self.read_segment(&segment.path)?;
        Self::check_header(&segment, &data)?;
        let index_path = self.index_path(segment.first_index);
        let exists = self.file_system.exists(&index_path);
        let index = if self.io("stat offset index", &index_path, exists)? {
            let bytes = self.file_system.read_all(&index_path);
            let bytes = self.io("read offset index", &index_path, bytes)?;
            format::decode_index(&bytes, segment.first_index)
        } else {
            None
        };
        let index = match index {
            Some(index) if index.entry_count > 0 => {
                if index.segment_length_bytes != data.len() as u64 {
                    let offset = index.segment_length_bytes.min(data.len() as u64);
                    let reason = format!(
                        "the segment is {} bytes but was sealed at {} bytes",
                        data.len(),
                        index.segment_length_bytes
                    );
                    let problem = RecordProblem::Invalid(reason);
                    return self.corrupt_sealed(segment, data, offset, &problem);
                }
                if self.options.verify_on_open {
                    let scan = scan_records(
                        &data,
                        segment.first_index,
                        self.options.entry_payload_bytes_max,
                    );
                    if let Some((offset, problem)) = scan.problem {
                        return self.corrupt_sealed(segment, data, offset, &problem);
                    }
                }
                index
            }
            _ => {
                let scan = scan_records(
                    &data,
                    segment.first_index,
                    self.options.entry_payload_bytes_max,
                );
                if let Some((offset, problem)) = scan.problem {
                    return self.corrupt_sealed(segment, data, offset, &problem);
                }
                if scan.offsets.is_empty() {
                    return Err(Error::BadHeader {
                        segment: segment.path,
                        reason: "a sealed segment without records".into(),
                    });
                }
                let encoded =
                    format::encode_index(segment.first_index, data.len() as u64, &scan.offsets);
                let written =
                    fs::write_atomically(self.file_system.as_ref(), &index_path, &encoded);
                self.io("write offset index", &index_path, written)?;
                self.recovery.indexes_rebuilt_count += 1;
                OffsetIndex {
                    entry_count: scan.offsets.len() as u64,
                    segment_length_bytes: data.len() as u64,
                    offsets: Bytes::from(encoded).slice(format::INDEX_HEADER_BYTES as usize..),
                }
            }
        };
        self.sealed.push(SealedSegment {
            first_index: segment.first_index,
            path: segment.path,
            data,
            index,
        });
        Ok(LoadOutcome::Continue)
    }

    /// A bad record in a sealed segment: an error, or with repair the cut.
    fn corrupt_sealed(
        &mut self,
        segment: SegmentFile,
        data: Bytes,
        offset: u64,
        problem: &RecordProblem,
    ) -> Result<LoadOutcome> {
        if self.options.recovery_mode == RecoveryMode::Strict {
            return Err(corruption(&segment.path, offset, problem));
        }
        // Keep the valid records before the bad one, in a new active segment.
        let scan = scan_records(
            &data,
            segment.first_index,
            self.options.entry_payload_bytes_max,
        );
        let cut = scan
            .problem
            .map_or(offset, |(scan_offset, _)| scan_offset.min(offset));
        let keep = scan
            .offsets
            .iter()
            .take_while(|record| **record < cut)
            .count();
        self.recovery.repaired_at = Some((segment.path.clone(), cut));
        // Later segments go first: a crash before the cut below then leaves
        // a log that ends with this (still whole) segment, never a gap.
        self.remove_segments_after(segment.first_index)?;
        let index_path = self.index_path(segment.first_index);
        let exists = self.file_system.exists(&index_path);
        if self.io("stat offset index", &index_path, exists)? {
            let removed = self.file_system.remove_file(&index_path);
            self.io("remove offset index", &index_path, removed)?;
        }
        let written = fs::write_atomically(
            self.file_system.as_ref(),
            &segment.path,
            &data[..cut as usize],
        );
        self.io("rewrite segment", &segment.path, written)?;
        drop(data);
        let opened = self.file_system.open_append(&segment.path);
        let file = self.io("open segment", &segment.path, opened)?;
        let mut offsets = scan.offsets;
        let mut terms = scan.terms;
        offsets.truncate(keep);
        terms.truncate(keep);
        self.active = Some(ActiveSegment {
            first_index: segment.first_index,
            path: segment.path,
            file,
            offsets,
            terms,
        });
        Ok(LoadOutcome::CutHere)
    }

    fn load_last(&mut self, segment: SegmentFile) -> Result<LoadOutcome> {
        let data = self.read_segment(&segment.path)?;
        if (data.len() as u64) < SEGMENT_HEADER_BYTES {
            // A crash while the segment was being created.
            drop(data);
            let removed = self.file_system.remove_file(&segment.path);
            self.io("remove torn segment", &segment.path, removed)?;
            self.recovery.torn_segments_removed_count += 1;
            self.remove_stale_index(segment.first_index)?;
            return self.sync_directory().map(|()| LoadOutcome::Continue);
        }
        Self::check_header(&segment, &data)?;
        self.remove_stale_index(segment.first_index)?;
        let scan = scan_records(
            &data,
            segment.first_index,
            self.options.entry_payload_bytes_max,
        );
        let mut length_bytes = data.len() as u64;
        if let Some((offset, problem)) = &scan.problem {
            let zero_tail = data[*offset as usize..].iter().all(|byte| *byte == 0);
            let torn = match problem {
                RecordProblem::Truncated => true,
                RecordProblem::Invalid(_) => zero_tail,
                RecordProblem::PayloadMismatch(_) => {
                    zero_tail || record_reaches_end(&data, *offset)
                }
            };
            if !torn && self.options.recovery_mode == RecoveryMode::Strict {
                return Err(corruption(&segment.path, *offset, problem));
            }
            if torn {
                self.recovery.torn_tail_bytes = data.len() as u64 - *offset;
            } else {
                self.recovery.repaired_at = Some((segment.path.clone(), *offset));
            }
            length_bytes = *offset;
        }
        drop(data);
        let opened = self.file_system.open_append(&segment.path);
        let mut file = self.io("open segment", &segment.path, opened)?;
        if file.length_bytes() != length_bytes {
            let truncated = file.truncate(length_bytes);
            self.io("truncate torn tail", &segment.path, truncated)?;
            let synced = file.sync_data();
            self.io("fsync segment", &segment.path, synced)?;
        }
        self.active = Some(ActiveSegment {
            first_index: segment.first_index,
            path: segment.path,
            file,
            offsets: scan.offsets,
            terms: scan.terms,
        });
        Ok(LoadOutcome::Continue)
    }

    /// The last segment is appended to, so an offset index left from when it
    /// was sealed (before a truncation) is stale.
    fn remove_stale_index(&mut self, first_index: u64) -> Result<()> {
        let index_path = self.index_path(first_index);
        let exists = self.file_system.exists(&index_path);
        if self.io("stat offset index", &index_path, exists)? {
            let removed = self.file_system.remove_file(&index_path);
            self.io("remove offset index", &index_path, removed)?;
            self.sync_directory()?;
        }
        Ok(())
    }
}

/// What [`Log::open`] had to do to bring the log back to a clean state; for
/// logs, metrics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Bytes of a torn write cut from the end of the last segment.
    pub torn_tail_bytes: u64,
    /// Segments deleted because a crash interrupted their creation.
    pub torn_segments_removed_count: u64,
    /// Offset indexes rebuilt by scanning their segment.
    pub indexes_rebuilt_count: u64,
    /// With `RecoveryMode::Repair`: the segment and byte offset where the log was cut.
    pub repaired_at: Option<(PathBuf, u64)>,
    /// Whether a truncation interrupted by a crash was finished.
    pub truncation_finished: bool,
}

/// An fsync prepared by [`Log::begin_sync`].
#[derive(Debug)]
pub struct PendingSync {
    handle: Option<Box<dyn SyncHandle>>,
    path: PathBuf,
    upto: u64,
    epoch: u64,
}

impl PendingSync {
    /// Runs the fsync; call it without holding the log.
    pub fn run(&self) -> std::io::Result<()> {
        match &self.handle {
            Some(handle) => handle.sync_data(),
            None => Ok(()),
        }
    }
}

enum LoadOutcome {
    Continue,
    CutHere,
}

fn unreachable_segment<T>(index: u64) -> Result<T> {
    // The range checks guarantee a segment holds every index in range.
    panic!("no segment holds index {index} although it is in range")
}

/// Whether the record at `offset` (whose header checked out) ends exactly at
/// the end of the file: then it was the last write, and a payload that does
/// not match its checksum is a torn write rather than corruption.
fn record_reaches_end(data: &[u8], offset: u64) -> bool {
    let header_end = offset + format::RECORD_HEADER_BYTES;
    let header = format::decode_record_header(&data[offset as usize..header_end as usize]);
    header_end + header.payload_bytes == data.len() as u64
}

struct Scan {
    offsets: Vec<u64>,
    terms: Vec<u64>,
    problem: Option<(u64, RecordProblem)>,
}

/// Reads every record of a segment after its header, stopping at the first bad one.
fn scan_records(data: &Bytes, first_index: u64, payload_bytes_max: u64) -> Scan {
    let mut scan = Scan {
        offsets: Vec::new(),
        terms: Vec::new(),
        problem: None,
    };
    let mut offset = SEGMENT_HEADER_BYTES;
    let mut index = first_index;
    while offset < data.len() as u64 {
        match format::decode_record(data, offset, index, payload_bytes_max) {
            Ok((entry, size)) => {
                scan.offsets.push(offset);
                scan.terms.push(entry.term);
                offset += size;
                index += 1;
            }
            Err(problem) => {
                scan.problem = Some((offset, problem));
                break;
            }
        }
    }
    scan
}
