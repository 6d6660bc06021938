//! Every limit and policy of the log, each a named and validated field.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::format::{FORMAT_PAYLOAD_BYTES_MAX, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};

/// When the group-commit writer fsyncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// One fsync per batch; appenders are told only once their entries are durable.
    EveryBatch,
    /// At most one fsync per interval; appenders are told when it happened.
    Interval(Duration),
    /// Never fsync (tests and simulation only): appenders are told at once.
    Never,
}

/// What to do with a corrupt record that is not a torn tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Refuse to open, with `Error::Corruption` (the default).
    Strict,
    /// Cut the log just before the corrupt record and carry on (the operator
    /// asked for it; the Raft node will fetch the lost suffix from its peers).
    Repair,
}

/// Options of [`crate::Log`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// A new segment is started when a record would take the active one past
    /// this size (a single larger record still gets a segment of its own).
    pub segment_size_bytes_max: u64,
    /// The largest payload an entry may carry.
    pub entry_payload_bytes_max: u64,
    /// What to do with a corrupt record.
    pub recovery_mode: RecoveryMode,
    /// Check every record of the sealed segments on open instead of on read.
    pub verify_on_open: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            segment_size_bytes_max: 64 * 1024 * 1024,
            entry_payload_bytes_max: 8 * 1024 * 1024,
            recovery_mode: RecoveryMode::Strict,
            verify_on_open: false,
        }
    }
}

impl LogOptions {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if self.entry_payload_bytes_max == 0
            || self.entry_payload_bytes_max > FORMAT_PAYLOAD_BYTES_MAX
        {
            return Err(Error::InvalidOption {
                name: "entry_payload_bytes_max",
                reason: format!("must be in 1..={FORMAT_PAYLOAD_BYTES_MAX}"),
            });
        }
        let smallest = SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES + 1;
        if self.segment_size_bytes_max < smallest
            || self.segment_size_bytes_max > u64::from(u32::MAX)
        {
            return Err(Error::InvalidOption {
                name: "segment_size_bytes_max",
                reason: format!("must be in {smallest}..={}", u32::MAX),
            });
        }
        Ok(())
    }
}

/// Options of [`crate::GroupCommit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupCommitOptions {
    /// When to fsync.
    pub sync_policy: SyncPolicy,
    /// The most entries written in one batch (one fsync).
    pub batch_entries_max: usize,
    /// The most payload bytes written in one batch.
    pub batch_bytes_max: u64,
    /// The most submissions waiting for the writer; appenders block beyond it.
    pub queue_submissions_max: usize,
    /// The most prepared fsyncs waiting for the syncer thread; the writer
    /// blocks beyond it.
    pub sync_jobs_queued_max: usize,
}

impl Default for GroupCommitOptions {
    fn default() -> Self {
        Self {
            sync_policy: SyncPolicy::EveryBatch,
            batch_entries_max: 4096,
            batch_bytes_max: 16 * 1024 * 1024,
            queue_submissions_max: 16 * 1024,
            sync_jobs_queued_max: 64,
        }
    }
}

impl GroupCommitOptions {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if self.batch_entries_max == 0 {
            return Err(Error::InvalidOption {
                name: "batch_entries_max",
                reason: "must be at least 1".into(),
            });
        }
        if self.batch_bytes_max == 0 {
            return Err(Error::InvalidOption {
                name: "batch_bytes_max",
                reason: "must be at least 1".into(),
            });
        }
        if self.queue_submissions_max == 0 {
            return Err(Error::InvalidOption {
                name: "queue_submissions_max",
                reason: "must be at least 1".into(),
            });
        }
        if self.sync_jobs_queued_max == 0 {
            return Err(Error::InvalidOption {
                name: "sync_jobs_queued_max",
                reason: "must be at least 1".into(),
            });
        }
        if let SyncPolicy::Interval(interval) = self.sync_policy
            && interval.is_zero()
        {
            return Err(Error::InvalidOption {
                name: "sync_policy",
                reason: "the interval must be positive".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert_eq!(LogOptions::default().validate(), Ok(()));
        assert_eq!(GroupCommitOptions::default().validate(), Ok(()));
        let options = LogOptions {
            segment_size_bytes_max: 10,
            ..LogOptions::default()
        };
        assert!(matches!(
            options.validate(),
            Err(Error::InvalidOption {
                name: "segment_size_bytes_max",
                ..
            })
        ));
        let options = LogOptions {
            entry_payload_bytes_max: 0,
            ..LogOptions::default()
        };
        assert!(matches!(
            options.validate(),
            Err(Error::InvalidOption {
                name: "entry_payload_bytes_max",
                ..
            })
        ));
        let options = GroupCommitOptions {
            batch_entries_max: 0,
            ..GroupCommitOptions::default()
        };
        assert!(matches!(
            options.validate(),
            Err(Error::InvalidOption {
                name: "batch_entries_max",
                ..
            })
        ));
    }
}
