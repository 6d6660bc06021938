//! The interface between the node and the replicated state, and a small replicated map
//! that implements it for tests and benchmarks.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The replicated state machine the node applies committed commands to.
///
/// Every method must be deterministic: replicas apply the same entries in the same order
/// with the same log time and must reach the same state. Log time is the largest leader
/// clock stamp seen so far (milliseconds), so it never goes backwards and advances on an
/// idle cluster through the leader's periodic tick entries.
pub trait Application: Send + 'static {
    /// Applies the command committed at `index`; the output goes back to the proposer.
    fn apply(&mut self, index: u64, log_time_ms: u64, command: &[u8]) -> Bytes;
    /// Log time moved to `log_time_ms` at `index` through a tick entry of the leader.
    fn advance_time(&mut self, index: u64, log_time_ms: u64);
    /// Answers a read-only query against the applied state.
    fn query(&self, request: &[u8]) -> Bytes;
    /// Writes the whole state.
    fn snapshot(&self, writer: &mut dyn Write) -> io::Result<()>;
    /// Replaces the whole state with what `snapshot` wrote.
    fn restore(&mut self, reader: &mut dyn Read) -> io::Result<()>;
}

/// A replicated map from bytes to bytes. A command is a key and a value (`u32` key length,
/// key, value) and returns the previous value; a query is a key and returns its value (empty
/// if absent). It also remembers the log time, to show that ticks advance it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapApplication {
    /// The map.
    pub entries: BTreeMap<Bytes, Bytes>,
    /// The last log time seen.
    pub log_time_ms: u64,
    /// The last index applied.
    pub applied_index: u64,
}

impl MapApplication {
    /// Encodes a `set key value` command.
    pub fn set_command(key: &[u8], value: &[u8]) -> Bytes {
        let mut buffer = BytesMut::with_capacity(4 + key.len() + value.len());
        buffer.put_u32_le(key.len() as u32);
        buffer.put_slice(key);
        buffer.put_slice(value);
        buffer.freeze()
    }

    /// The query that returns the log time as a little-endian u64.
    pub const LOG_TIME_QUERY: &'static [u8] = b"\xff\xfflog-time";
}

impl Application for MapApplication {
    fn apply(&mut self, index: u64, log_time_ms: u64, mut command: &[u8]) -> Bytes {
        self.applied_index = index;
        self.log_time_ms = log_time_ms;
        if command.len() < 4 {
            return Bytes::from_static(b"malformed");
        }
        let key_bytes = command.get_u32_le() as usize;
        if command.len() < key_bytes {
            return Bytes::from_static(b"malformed");
        }
        let key = Bytes::copy_from_slice(&command[..key_bytes]);
        let value = Bytes::copy_from_slice(&command[key_bytes..]);
        self.entries.insert(key, value).unwrap_or_default()
    }

    fn advance_time(&mut self, index: u64, log_time_ms: u64) {
        self.applied_index = index;
        self.log_time_ms = log_time_ms;
    }

    fn query(&self, request: &[u8]) -> Bytes {
        if request == Self::LOG_TIME_QUERY {
            return Bytes::copy_from_slice(&self.log_time_ms.to_le_bytes());
        }
        self.entries.get(request).cloned().unwrap_or_default()
    }

    fn snapshot(&self, writer: &mut dyn Write) -> io::Result<()> {
        let mut buffer = BytesMut::new();
        buffer.put_u64_le(self.log_time_ms);
        buffer.put_u64_le(self.applied_index);
        buffer.put_u64_le(self.entries.len() as u64);
        for (key, value) in &self.entries {
            buffer.put_u32_le(key.len() as u32);
            buffer.put_slice(key);
            buffer.put_u32_le(value.len() as u32);
            buffer.put_slice(value);
        }
        writer.write_all(&buffer)
    }

    fn restore(&mut self, reader: &mut dyn Read) -> io::Result<()> {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes)?;
        let mut input = bytes.as_slice();
        let truncated = || io::Error::new(io::ErrorKind::InvalidData, "truncated map snapshot");
        if input.len() < 24 {
            return Err(truncated());
        }
        let log_time_ms = input.get_u64_le();
        let applied_index = input.get_u64_le();
        let count = input.get_u64_le();
        let mut entries = BTreeMap::new();
        for _ in 0..count {
            let mut field = || -> io::Result<Bytes> {
                if input.len() < 4 {
                    return Err(truncated());
                }
                let length = input.get_u32_le() as usize;
                if input.len() < length {
                    return Err(truncated());
                }
                let value = Bytes::copy_from_slice(&input[..length]);
                input.advance(length);
                Ok(value)
            };
            let key = field()?;
            let value = field()?;
            entries.insert(key, value);
        }
        *self = MapApplication {
            entries,
            log_time_ms,
            applied_index,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_applies_queries_and_round_trips_its_snapshot() {
        let mut map = MapApplication::default();
        assert_eq!(
            map.apply(1, 10, &MapApplication::set_command(b"k", b"v1")),
            Bytes::new()
        );
        assert_eq!(
            map.apply(2, 12, &MapApplication::set_command(b"k", b"v2")),
            "v1"
        );
        map.advance_time(3, 20);
        assert_eq!(map.query(b"k"), "v2");
        assert_eq!(
            map.query(MapApplication::LOG_TIME_QUERY),
            Bytes::copy_from_slice(&20u64.to_le_bytes())
        );
        let mut data = Vec::new();
        map.snapshot(&mut data).unwrap();
        let mut restored = MapApplication::default();
        restored.restore(&mut data.as_slice()).unwrap();
        assert_eq!(restored, map);
        assert!(restored.restore(&mut &data[..data.len() - 1]).is_err());
    }
}
