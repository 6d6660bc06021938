//! A log entry.

use bytes::Bytes;

/// One entry of the log. Indexes are dense: the entry after index `i` has
/// index `i + 1`. The log itself never interprets `kind` or `payload`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the log (dense; the log may start at any index >= 1).
    pub index: u64,
    /// The Raft term in which the entry was created.
    pub term: u64,
    /// A small tag for the consumer (normal command, membership change, ...).
    pub kind: u8,
    /// The opaque content.
    pub payload: Bytes,
}

impl Entry {
    /// A new entry.
    pub fn new(index: u64, term: u64, kind: u8, payload: impl Into<Bytes>) -> Self {
        Self {
            index,
            term,
            kind,
            payload: payload.into(),
        }
    }
}
