//! Jute, ZooKeeper's record encoding: big-endian integers, length-prefixed strings and
//! buffers (-1 for null), length-prefixed vectors, one-byte booleans. See PROTOCOL.md.

use super::ZooKeeperError;

/// Reads one record's fields from a frame, refusing anything that runs past its end.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    /// Reads from the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, position: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], ZooKeeperError> {
        if count > self.remaining() {
            return Err(ZooKeeperError::Malformed(format!(
                "a field of {count} bytes runs past the frame's end ({} left)",
                self.remaining()
            )));
        }
        let taken = &self.bytes[self.position..self.position + count];
        self.position += count;
        Ok(taken)
    }

    /// A 4-byte big-endian integer.
    pub fn int(&mut self) -> Result<i32, ZooKeeperError> {
        let bytes = self.take(4)?;
        Ok(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// An 8-byte big-endian integer.
    pub fn long(&mut self) -> Result<i64, ZooKeeperError> {
        let bytes = self.take(8)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(bytes);
        Ok(i64::from_be_bytes(array))
    }

    /// A one-byte boolean (any non-zero byte is true, as Java's DataInput).
    pub fn boolean(&mut self) -> Result<bool, ZooKeeperError> {
        Ok(self.take(1)?[0] != 0)
    }

    /// A buffer; null (-1) reads as empty.
    pub fn buffer(&mut self) -> Result<Vec<u8>, ZooKeeperError> {
        let length = self.int()?;
        if length < 0 {
            return Ok(Vec::new());
        }
        Ok(self.take(length as usize)?.to_vec())
    }

    /// A UTF-8 string; null (-1) reads as empty.
    pub fn string(&mut self) -> Result<String, ZooKeeperError> {
        let bytes = self.buffer()?;
        String::from_utf8(bytes)
            .map_err(|_| ZooKeeperError::Malformed("a string is not UTF-8".to_string()))
    }

    /// A vector's element count; null (-1) reads as 0. A count larger than the bytes left
    /// could hold is refused before anything is allocated for it.
    pub fn count(&mut self) -> Result<usize, ZooKeeperError> {
        let count = self.int()?;
        if count < 0 {
            return Ok(0);
        }
        // Every element takes at least one byte, so this bounds allocations by the frame.
        if count as usize > self.remaining() {
            return Err(ZooKeeperError::Malformed(format!(
                "a vector of {count} elements cannot fit in {} bytes",
                self.remaining()
            )));
        }
        Ok(count as usize)
    }

    /// A vector of strings.
    pub fn strings(&mut self) -> Result<Vec<String>, ZooKeeperError> {
        let count = self.count()?;
        (0..count).map(|_| self.string()).collect()
    }
}

/// Appends one record's fields to a frame.
#[derive(Debug, Default)]
pub struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    /// An empty record.
    pub fn new() -> Self {
        Writer::default()
    }

    /// The encoded bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The encoded bytes behind a 4-byte length prefix: one frame on the wire.
    pub fn into_frame(self) -> Vec<u8> {
        let mut frame = Vec::with_capacity(self.bytes.len() + 4);
        frame.extend_from_slice(&(self.bytes.len() as i32).to_be_bytes());
        frame.extend_from_slice(&self.bytes);
        frame
    }

    /// `record` behind a 4-byte length prefix.
    pub fn frame_of(record: &[u8]) -> Vec<u8> {
        let mut writer = Writer::new();
        writer.raw(record);
        writer.into_frame()
    }

    /// A 4-byte integer.
    pub fn int(&mut self, value: i32) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    /// An 8-byte integer.
    pub fn long(&mut self, value: i64) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    /// A boolean byte.
    pub fn boolean(&mut self, value: bool) -> &mut Self {
        self.bytes.push(u8::from(value));
        self
    }

    /// A buffer.
    pub fn buffer(&mut self, value: &[u8]) -> &mut Self {
        self.int(value.len() as i32);
        self.bytes.extend_from_slice(value);
        self
    }

    /// A string.
    pub fn string(&mut self, value: &str) -> &mut Self {
        self.buffer(value.as_bytes())
    }

    /// A vector of strings.
    pub fn strings(&mut self, values: &[String]) -> &mut Self {
        self.int(values.len() as i32);
        for value in values {
            self.string(value);
        }
        self
    }

    /// Raw bytes of an already encoded record.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(bytes);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let mut writer = Writer::new();
        writer
            .int(-7)
            .long(1 << 40)
            .boolean(true)
            .string("/a")
            .buffer(b"")
            .strings(&["x".to_string(), "yz".to_string()]);
        let bytes = writer.into_bytes();
        let mut reader = Reader::new(&bytes);
        assert_eq!(reader.int().unwrap(), -7);
        assert_eq!(reader.long().unwrap(), 1 << 40);
        assert!(reader.boolean().unwrap());
        assert_eq!(reader.string().unwrap(), "/a");
        assert!(reader.buffer().unwrap().is_empty());
        assert_eq!(reader.strings().unwrap(), vec!["x", "yz"]);
        assert_eq!(reader.remaining(), 0);
    }

    #[test]
    fn truncated_and_lying_lengths_are_refused() {
        let mut reader = Reader::new(&[0, 0, 0, 9, b'a']);
        assert!(matches!(reader.string(), Err(ZooKeeperError::Malformed(_))));
        let mut reader = Reader::new(&[0x7f, 0xff, 0xff, 0xff]);
        assert!(matches!(reader.count(), Err(ZooKeeperError::Malformed(_))));
        let mut reader = Reader::new(&[0, 0]);
        assert!(matches!(reader.int(), Err(ZooKeeperError::Malformed(_))));
        let mut reader = Reader::new(&[0, 0, 0, 1, 0xff]);
        assert!(matches!(reader.string(), Err(ZooKeeperError::Malformed(_))));
    }

    #[test]
    fn null_reads_as_empty() {
        let mut reader = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(reader.string().unwrap(), "");
        assert_eq!(reader.count().unwrap(), 0);
    }

    #[test]
    fn frames_carry_their_length() {
        let mut writer = Writer::new();
        writer.int(5);
        assert_eq!(writer.into_frame(), vec![0, 0, 0, 4, 0, 0, 0, 5]);
    }
}
