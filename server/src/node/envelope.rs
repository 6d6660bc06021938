//! The envelope the node puts around every normal entry: what the entry is (an application
//! command or the leader's clock tick) and the leader's clock when it proposed it, from which
//! every replica derives the same log time.
//!
//! Layout: one kind byte (1 = command, 2 = tick), the leader's wall clock in milliseconds
//! as a little-endian u64, then the command bytes (none for a tick).

use bytes::{BufMut, Bytes, BytesMut};

const KIND_COMMAND: u8 = 1;
const KIND_TICK: u8 = 2;
/// Bytes before the command.
pub const HEADER_BYTES: usize = 9;

/// A decoded normal entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Envelope {
    /// An application command stamped with the leader's clock.
    Command {
        /// The leader's clock at proposal.
        stamp_ms: u64,
        /// The command, a slice of the entry (no copy).
        command: Bytes,
    },
    /// The leader's periodic tick carrying its clock.
    Tick {
        /// The leader's clock at proposal.
        stamp_ms: u64,
    },
}

/// Wraps a command.
pub fn command(stamp_ms: u64, command: &[u8]) -> Bytes {
    let mut buffer = BytesMut::with_capacity(HEADER_BYTES + command.len());
    buffer.put_u8(KIND_COMMAND);
    buffer.put_u64_le(stamp_ms);
    buffer.put_slice(command);
    buffer.freeze()
}

/// A tick entry.
pub fn tick(stamp_ms: u64) -> Bytes {
    let mut buffer = BytesMut::with_capacity(HEADER_BYTES);
    buffer.put_u8(KIND_TICK);
    buffer.put_u64_le(stamp_ms);
    buffer.freeze()
}

/// Reads an envelope; `None` if the payload is not one (never produced by a node).
pub fn decode(payload: &Bytes) -> Option<Envelope> {
    if payload.len() < HEADER_BYTES {
        return None;
    }
    let mut stamp = [0u8; 8];
    stamp.copy_from_slice(&payload[1..HEADER_BYTES]);
    let stamp_ms = u64::from_le_bytes(stamp);
    match payload[0] {
        KIND_COMMAND => Some(Envelope::Command {
            stamp_ms,
            command: payload.slice(HEADER_BYTES..),
        }),
        KIND_TICK if payload.len() == HEADER_BYTES => Some(Envelope::Tick { stamp_ms }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let wrapped = command(77, b"set x");
        assert_eq!(
            decode(&wrapped),
            Some(Envelope::Command {
                stamp_ms: 77,
                command: Bytes::from_static(b"set x")
            })
        );
        assert_eq!(decode(&tick(5)), Some(Envelope::Tick { stamp_ms: 5 }));
        assert_eq!(decode(&Bytes::from_static(b"short")), None);
        let mut bad = tick(5).to_vec();
        bad[0] = 9;
        assert_eq!(decode(&Bytes::from(bad)), None);
    }
}
