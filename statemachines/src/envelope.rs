//! The versioned binary envelope of log entries, queries and replies (see `FORMAT.md`).
//!
//! Every encoded envelope is one version byte ([`FORMAT_VERSION`]) followed by the postcard
//! encoding of the body. Machine payloads inside are opaque bytes in the machine's own codec.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::codec;
use crate::error::SessionError;
use crate::machine::{Index, SessionId};

/// The envelope format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;

/// One log entry as the session layer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Entry {
    /// Opens a session whose id will be this entry's index.
    Register {
        /// How long the session lives without a keep-alive, in log-time milliseconds.
        timeout_ms: u64,
    },
    /// Keeps a session alive and acknowledges outputs and events.
    KeepAlive {
        /// The session.
        session: SessionId,
        /// Every output with a sequence up to this one may be forgotten.
        command_sequence_acknowledged: u64,
        /// Every event batch with an index up to this one was received.
        event_index_acknowledged: Index,
    },
    /// Closes a session.
    Close {
        /// The session.
        session: SessionId,
    },
    /// A command for a named machine.
    Command {
        /// The sending session.
        session: SessionId,
        /// The session's sequence number for this command, from 1, without gaps.
        sequence: u64,
        /// The machine's name; the machine is created on first use.
        machine_name: String,
        /// The machine's type, which picks the factory.
        machine_type: String,
        /// The command in the machine's codec.
        payload: Vec<u8>,
    },
    /// A no-op that the leader appends when idle so that log time (and expiry) advances.
    Tick,
}

/// A query, answered by a replica without going through the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryRequest {
    /// The asking session, if any.
    pub session: Option<SessionId>,
    /// The highest index the session has seen; the replica answers only once it applied it.
    pub index_seen: Index,
    /// The machine's name.
    pub machine_name: String,
    /// The machine's type.
    pub machine_type: String,
    /// The query in the machine's codec.
    pub payload: Vec<u8>,
}

/// The reply to the client that proposed an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The session is open.
    Registered {
        /// Its id (the register entry's index).
        session: SessionId,
        /// The timeout it was granted.
        timeout_ms: u64,
    },
    /// The keep-alive was applied.
    KeptAlive {
        /// The highest index of an event batch the server still holds for the session (0 if
        /// none); a client that has not received it asks for a resend.
        event_index_last: Index,
    },
    /// The session is closed.
    Closed,
    /// A command's output (first application or a retry answered from the cache).
    Output(CommandOutput),
    /// The command arrived ahead of a missing sequence and waits for it; its output comes in
    /// [`Applied::released`] of the entry that fills the gap.
    Buffered {
        /// The session.
        session: SessionId,
        /// The buffered sequence.
        sequence: u64,
    },
    /// The tick was applied.
    Ticked,
    /// The entry was refused; nothing changed.
    Rejected(SessionError),
}

impl Reply {
    /// Encodes with the version byte.
    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(self)
    }

    /// Decodes an encoded reply.
    pub fn decode(bytes: &[u8]) -> Result<Self, SessionError> {
        decode_versioned(bytes)
    }
}

/// The result of one command of one session: the machine's output bytes or a rejection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutput {
    /// The session.
    pub session: SessionId,
    /// The command's sequence.
    pub sequence: u64,
    /// The machine's encoded output, or why the command was refused.
    pub result: Result<Vec<u8>, SessionError>,
}

/// A machine's event inside a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineEvent {
    /// The publishing machine.
    pub machine_name: String,
    /// The event in the machine's codec.
    pub payload: Vec<u8>,
}

/// The events one entry published to one session, delivered and acknowledged together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBatch {
    /// The index of the entry that produced the events.
    pub index: Index,
    /// The receiving session.
    pub session: SessionId,
    /// The events, in publication order.
    pub events: Vec<MachineEvent>,
}

/// Everything that applying one entry produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The entry's index.
    pub index: Index,
    /// Log time after the entry.
    pub log_time_ms: u64,
    /// The reply to the proposer.
    pub reply: Reply,
    /// Outputs of earlier buffered commands that this entry released, in sequence order.
    pub released: Vec<CommandOutput>,
    /// New event batches, to push to connected clients.
    pub events: Vec<EventBatch>,
    /// Sessions that expired at this entry (expiry is itself an event for the node to report).
    pub expired: Vec<SessionId>,
}

/// The client side of exactly-once events: remembers the highest batch index received and
/// lets through only newer batches, so a resend after a reconnect shows no duplicates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventCursor {
    index_received: Index,
}

impl EventCursor {
    /// The highest batch index accepted so far, to send as `event_index_acknowledged`.
    pub fn index_received(&self) -> Index {
        self.index_received
    }

    /// Whether the batch is new (and, if so, records it).
    pub fn accept(&mut self, batch: &EventBatch) -> bool {
        if batch.index <= self.index_received {
            return false;
        }
        self.index_received = batch.index;
        true
    }
}

impl Entry {
    /// Encodes with the version byte.
    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(self)
    }

    /// Decodes an encoded entry.
    pub fn decode(bytes: &[u8]) -> Result<Self, SessionError> {
        decode_versioned(bytes)
    }
}

impl QueryRequest {
    /// Encodes with the version byte.
    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(self)
    }

    /// Decodes an encoded query.
    pub fn decode(bytes: &[u8]) -> Result<Self, SessionError> {
        decode_versioned(bytes)
    }
}

fn encode_versioned<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = vec![FORMAT_VERSION];
    // Envelope types hold only integers, strings, byte vectors and enums, which postcard
    // always encodes; a failure here would be a bug in postcard, so it crashes.
    let body = postcard::to_stdvec(value);
    assert!(body.is_ok(), "envelope types always encode");
    bytes.extend(body.unwrap_or_default());
    bytes
}

fn decode_versioned<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, SessionError> {
    let (version, body) = bytes.split_first().ok_or(SessionError::MalformedEnvelope {
        reason: "empty envelope".to_string(),
    })?;
    if *version != FORMAT_VERSION {
        return Err(SessionError::UnsupportedVersion { version: *version });
    }
    codec::decode(body, "envelope").map_err(|error| SessionError::MalformedEnvelope {
        reason: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_bad_versions_are_refused() {
        let entry = Entry::Command {
            session: 3,
            sequence: 9,
            machine_name: "config".to_string(),
            machine_type: "kv".to_string(),
            payload: vec![1, 2, 3],
        };
        let bytes = entry.encode();
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(Entry::decode(&bytes).unwrap(), entry);

        let mut wrong_version = bytes.clone();
        wrong_version[0] = 2;
        assert_eq!(
            Entry::decode(&wrong_version),
            Err(SessionError::UnsupportedVersion { version: 2 })
        );
        assert!(matches!(
            Entry::decode(&[]),
            Err(SessionError::MalformedEnvelope { .. })
        ));
        assert!(matches!(
            Entry::decode(&bytes[..bytes.len() - 1]),
            Err(SessionError::MalformedEnvelope { .. })
        ));
        assert!(matches!(
            Entry::decode(&[1, 200]),
            Err(SessionError::MalformedEnvelope { .. })
        ));
    }

    #[test]
    fn tick_encoding_is_pinned() {
        // The format is written down in FORMAT.md; this pins the variant numbering.
        assert_eq!(Entry::Tick.encode(), vec![1, 4]);
        assert_eq!(
            Entry::Register { timeout_ms: 300 }.encode(),
            vec![1, 0, 0xac, 0x02]
        );
    }

    #[test]
    fn reply_and_error_numbering_is_pinned() {
        // FORMAT.md lists these numbers; new variants may only be appended.
        assert_eq!(Reply::Ticked.encode(), vec![1, 5]);
        let unknown = Reply::Rejected(SessionError::UnknownSession { session: 1 });
        assert_eq!(unknown.encode(), vec![1, 6, 0, 1]);
        let not_yet = Reply::Rejected(SessionError::NotYetApplied {
            index_required: 2,
            index_applied: 1,
        });
        assert_eq!(not_yet.encode(), vec![1, 6, 15, 2, 1]);
        let query = QueryRequest {
            session: None,
            index_seen: 3,
            machine_name: "a".to_string(),
            machine_type: "b".to_string(),
            payload: vec![9],
        };
        assert_eq!(query.encode(), vec![1, 0, 3, 1, b'a', 1, b'b', 1, 9]);
    }

    #[test]
    fn event_cursor_drops_replayed_batches() {
        let batch = |index| EventBatch {
            index,
            session: 1,
            events: Vec::new(),
        };
        let mut cursor = EventCursor::default();
        assert!(cursor.accept(&batch(5)));
        assert!(!cursor.accept(&batch(5)));
        assert!(!cursor.accept(&batch(4)));
        assert!(cursor.accept(&batch(7)));
        assert_eq!(cursor.index_received(), 7);
    }
}
