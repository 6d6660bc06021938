//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in the log, the meta file or the snapshot store.
///
/// I/O errors keep their kind and message as text so that errors compare with
/// `==` in tests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An operating-system call failed.
    #[error("I/O error during {operation} on {path}: {message}")]
    Io {
        /// What the log was doing.
        operation: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The error's kind.
        kind: std::io::ErrorKind,
        /// The operating system's message.
        message: String,
    },
    /// A record failed its checksum or framing check where no torn write can
    /// explain it. Open with `RecoveryMode::Repair` to cut the log there.
    #[error(
        "corrupt record in segment {} at byte offset {offset}: {reason}; \
         open with RecoveryMode::Repair to cut the log before it",
        segment.display()
    )]
    Corruption {
        /// The segment file.
        segment: PathBuf,
        /// The byte offset of the bad record in that file.
        offset: u64,
        /// What check failed.
        reason: String,
    },
    /// A segment's header has a wrong magic, version, checksum or first index.
    #[error("bad segment header in {}: {reason}", segment.display())]
    BadHeader {
        /// The segment file.
        segment: PathBuf,
        /// What check failed.
        reason: String,
    },
    /// Consecutive segments do not hold consecutive indexes: a segment is
    /// missing or was deleted.
    #[error(
        "index gap: segment {} starts at index {found} but index {expected} was expected \
         (a segment is missing or was deleted)",
        segment.display()
    )]
    Gap {
        /// The segment after the gap.
        segment: PathBuf,
        /// The index that should come next.
        expected: u64,
        /// The first index of that segment.
        found: u64,
    },
    /// A small whole-file record (`log.state`, meta, snapshot footer) is damaged.
    #[error("bad file {}: {reason}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What check failed.
        reason: String,
    },
    /// The entries handed to `append` do not continue the log.
    #[error("append out of order: expected index {expected}, got {found}")]
    OutOfOrder {
        /// The next index of the log.
        expected: u64,
        /// The index that was offered.
        found: u64,
    },
    /// The index was removed by `compact_prefix`.
    #[error("index {index} is compacted; the log starts at {first_index}")]
    Compacted {
        /// The index asked for.
        index: u64,
        /// The log's first index.
        first_index: u64,
    },
    /// The index is past the end of the log.
    #[error("index {index} is past the end of the log (last index {last_index})")]
    Unavailable {
        /// The index asked for.
        index: u64,
        /// The log's last index.
        last_index: u64,
    },
    /// A value breaks a configured limit.
    #[error("{what} is {value}, over the limit of {limit}")]
    TooLarge {
        /// Which limit.
        what: &'static str,
        /// The offending value.
        value: u64,
        /// The limit.
        limit: u64,
    },
    /// A configuration value is invalid.
    #[error("invalid option {name}: {reason}")]
    InvalidOption {
        /// The option's name.
        name: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// A snapshot's data does not match the expected checksum.
    #[error("snapshot checksum mismatch: expected {expected:#010x}, computed {computed:#010x}")]
    SnapshotChecksum {
        /// The checksum the sender announced (or the file recorded).
        expected: u32,
        /// The checksum of the data received.
        computed: u32,
    },
    /// A previous fsync failed, so what is on disk is unknown; the log refuses
    /// all further work until it is reopened (which recovers from disk).
    #[error("the log is poisoned by an earlier failed fsync; reopen it")]
    Poisoned,
    /// The group-commit writer has stopped.
    #[error("the group-commit writer has stopped")]
    WriterStopped,
}

impl Error {
    pub(crate) fn io(
        operation: &'static str,
        path: &std::path::Path,
        error: &std::io::Error,
    ) -> Self {
        Error::Io {
            operation,
            path: path.to_path_buf(),
            kind: error.kind(),
            message: error.to_string(),
        }
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
