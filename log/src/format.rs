//! Byte layouts of segment headers, records, offset indexes and `log.state`,
//! exactly as `FORMAT.md` describes them.

use bytes::{BufMut, Bytes};

use crate::entry::Entry;

/// The on-disk format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Size of a segment header.
pub const SEGMENT_HEADER_BYTES: u64 = 32;
/// Size of a record header.
pub const RECORD_HEADER_BYTES: u64 = 32;
/// The hard upper bound of a payload in this format version.
pub const FORMAT_PAYLOAD_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Size of an offset-index header.
pub const INDEX_HEADER_BYTES: u64 = 48;
/// Size of `log.state`.
pub const STATE_BYTES: usize = 40;

const SEGMENT_MAGIC: &[u8; 8] = b"CNCLVSEG";
const INDEX_MAGIC: &[u8; 8] = b"CNCLVIDX";
const STATE_MAGIC: &[u8; 8] = b"CNCLVSTA";

pub(crate) fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

pub(crate) fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// The file name of the segment whose first index is `first_index`.
pub fn segment_file_name(first_index: u64) -> String {
    format!("{first_index:020}.seg")
}

/// The file name of that segment's offset index.
pub fn index_file_name(first_index: u64) -> String {
    format!("{first_index:020}.idx")
}

/// The first index encoded in a segment file name, if it is one.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Encodes a segment header.
pub fn encode_segment_header(first_index: u64) -> [u8; SEGMENT_HEADER_BYTES as usize] {
    let mut header = [0u8; SEGMENT_HEADER_BYTES as usize];
    header[0..8].copy_from_slice(SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&first_index.to_le_bytes());
    let checksum = crc32fast::hash(&header[0..24]);
    header[24..28].copy_from_slice(&checksum.to_le_bytes());
    header
}

/// Decodes a segment header; the error is a reason for `Error::BadHeader`.
pub fn decode_segment_header(header: &[u8]) -> Result<u64, String> {
    if header.len() < SEGMENT_HEADER_BYTES as usize {
        return Err(format!(
            "the file is {} bytes, shorter than a header",
            header.len()
        ));
    }
    if &header[0..8] != SEGMENT_MAGIC {
        return Err("wrong magic".into());
    }
    if crc32fast::hash(&header[0..24]) != read_u32(header, 24) {
        return Err("header checksum mismatch".into());
    }
    let version = read_u32(header, 8);
    if version != FORMAT_VERSION {
        return Err(format!("unsupported format version {version}"));
    }
    Ok(read_u64(header, 16))
}

/// The encoded size of an entry.
pub fn record_size_bytes(entry: &Entry) -> u64 {
    RECORD_HEADER_BYTES + entry.payload.len() as u64
}

/// Appends the record of `entry` to `buffer`.
pub fn encode_record(entry: &Entry, buffer: &mut Vec<u8>) {
    let start = buffer.len();
    buffer.put_u32_le(0);
    buffer.put_u32_le(entry.payload.len() as u32);
    buffer.put_u64_le(entry.index);
    buffer.put_u64_le(entry.term);
    buffer.put_u8(entry.kind);
    buffer.put_bytes(0, 3);
    buffer.put_u32_le(crc32fast::hash(&entry.payload));
    let header_checksum = crc32fast::hash(&buffer[start + 4..]);
    buffer[start..start + 4].copy_from_slice(&header_checksum.to_le_bytes());
    buffer.extend_from_slice(&entry.payload);
}

/// The fields of a record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Stored checksum of the header's other bytes.
    pub header_checksum: u32,
    /// Stored checksum of the payload.
    pub payload_checksum: u32,
    /// Payload length.
    pub payload_bytes: u64,
    /// Entry index.
    pub index: u64,
    /// Entry term.
    pub term: u64,
    /// Entry kind.
    pub kind: u8,
}

/// Decodes a record header (no checksum check: that needs the payload).
pub fn decode_record_header(header: &[u8]) -> RecordHeader {
    RecordHeader {
        header_checksum: read_u32(header, 0),
        payload_checksum: read_u32(header, 28),
        payload_bytes: u64::from(read_u32(header, 4)),
        index: read_u64(header, 8),
        term: read_u64(header, 16),
        kind: header[24],
    }
}

/// Why a record at some offset could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordProblem {
    /// The header or payload runs past the end of the bytes: a torn write if at the tail.
    Truncated,
    /// The header is whole but wrong (checksum, index, length limit).
    Invalid(String),
    /// The header is right but the payload does not match its checksum.
    PayloadMismatch(String),
}

/// Decodes and checks the record at `offset` of `segment`, which must hold
/// `expected_index`. Returns the entry (its payload a slice of `segment`,
/// not a copy) and the record's size.
pub fn decode_record(
    segment: &Bytes,
    offset: u64,
    expected_index: u64,
    payload_bytes_max: u64,
) -> Result<(Entry, u64), RecordProblem> {
    let start = offset as usize;
    let header_end = start + RECORD_HEADER_BYTES as usize;
    if header_end > segment.len() {
        return Err(RecordProblem::Truncated);
    }
    let header_bytes = &segment[start..header_end];
    let header = decode_record_header(header_bytes);
    let computed = crc32fast::hash(&header_bytes[4..]);
    if computed != header.header_checksum {
        return Err(RecordProblem::Invalid(format!(
            "header checksum mismatch (stored {:#010x}, computed {computed:#010x})",
            header.header_checksum
        )));
    }
    if header.payload_bytes > payload_bytes_max {
        return Err(RecordProblem::Invalid(format!(
            "payload length {} over the limit {payload_bytes_max}",
            header.payload_bytes
        )));
    }
    let end = header_end + header.payload_bytes as usize;
    if end > segment.len() {
        return Err(RecordProblem::Truncated);
    }
    let computed = crc32fast::hash(&segment[header_end..end]);
    if computed != header.payload_checksum {
        return Err(RecordProblem::PayloadMismatch(format!(
            "payload checksum mismatch (stored {:#010x}, computed {computed:#010x})",
            header.payload_checksum
        )));
    }
    if header.index != expected_index {
        return Err(RecordProblem::Invalid(format!(
            "record holds index {} where index {expected_index} belongs",
            header.index
        )));
    }
    let entry = Entry {
        index: header.index,
        term: header.term,
        kind: header.kind,
        payload: segment.slice(header_end..end),
    };
    Ok((entry, (end - start) as u64))
}

/// Encodes an offset index.
pub fn encode_index(first_index: u64, segment_length_bytes: u64, offsets: &[u64]) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(INDEX_HEADER_BYTES as usize + offsets.len() * 8);
    buffer.extend_from_slice(INDEX_MAGIC);
    buffer.put_u32_le(FORMAT_VERSION);
    buffer.put_u32_le(0);
    buffer.put_u64_le(first_index);
    buffer.put_u64_le(offsets.len() as u64);
    buffer.put_u64_le(segment_length_bytes);
    buffer.put_u32_le(0);
    buffer.put_u32_le(0);
    for offset in offsets {
        buffer.put_u64_le(*offset);
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&buffer[0..40]);
    hasher.update(&buffer[INDEX_HEADER_BYTES as usize..]);
    let checksum = hasher.finalize();
    buffer[40..44].copy_from_slice(&checksum.to_le_bytes());
    buffer
}

/// A decoded offset index: the offsets stay in the (mapped) file's bytes.
#[derive(Debug, Clone)]
pub struct OffsetIndex {
    /// Count of records.
    pub entry_count: u64,
    /// Length of the segment the index describes.
    pub segment_length_bytes: u64,
    /// The raw offsets, 8 bytes each.
    pub offsets: Bytes,
}

impl OffsetIndex {
    /// The offset of the `position`-th record.
    pub fn offset(&self, position: u64) -> u64 {
        read_u64(&self.offsets, position as usize * 8)
    }
}

/// Decodes and checks an offset index; `None` when it is unusable (it is
/// derived data and gets rebuilt).
pub fn decode_index(bytes: &Bytes, first_index: u64) -> Option<OffsetIndex> {
    if bytes.len() < INDEX_HEADER_BYTES as usize || &bytes[0..8] != INDEX_MAGIC {
        return None;
    }
    if read_u32(bytes, 8) != FORMAT_VERSION || read_u64(bytes, 16) != first_index {
        return None;
    }
    let entry_count = read_u64(bytes, 24);
    let expected_length = (INDEX_HEADER_BYTES).checked_add(entry_count.checked_mul(8)?)?;
    if bytes.len() as u64 != expected_length {
        return None;
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes[0..40]);
    hasher.update(&bytes[INDEX_HEADER_BYTES as usize..]);
    if hasher.finalize() != read_u32(bytes, 40) {
        return None;
    }
    Some(OffsetIndex {
        entry_count,
        segment_length_bytes: read_u64(bytes, 32),
        offsets: bytes.slice(INDEX_HEADER_BYTES as usize..),
    })
}

/// The content of `log.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogState {
    /// The compaction floor: the log's first index.
    pub first_index: u64,
    /// A truncation that was committed but maybe not carried out.
    pub truncate_from: Option<u64>,
}

/// Encodes `log.state`.
pub fn encode_state(state: &LogState) -> [u8; STATE_BYTES] {
    let mut bytes = [0u8; STATE_BYTES];
    bytes[0..8].copy_from_slice(STATE_MAGIC);
    bytes[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let flags: u32 = u32::from(state.truncate_from.is_some());
    bytes[12..16].copy_from_slice(&flags.to_le_bytes());
    bytes[16..24].copy_from_slice(&state.first_index.to_le_bytes());
    bytes[24..32].copy_from_slice(&state.truncate_from.unwrap_or(0).to_le_bytes());
    let checksum = crc32fast::hash(&bytes[0..32]);
    bytes[32..36].copy_from_slice(&checksum.to_le_bytes());
    bytes
}

/// Decodes `log.state`; the error is a reason for `Error::BadFile`.
pub fn decode_state(bytes: &[u8]) -> Result<LogState, String> {
    if bytes.len() != STATE_BYTES {
        return Err(format!("{} bytes instead of {STATE_BYTES}", bytes.len()));
    }
    if &bytes[0..8] != STATE_MAGIC {
        return Err("wrong magic".into());
    }
    if crc32fast::hash(&bytes[0..32]) != read_u32(bytes, 32) {
        return Err("checksum mismatch".into());
    }
    if read_u32(bytes, 8) != FORMAT_VERSION {
        return Err("unsupported format version".into());
    }
    let pending = read_u32(bytes, 12) & 1 == 1;
    Ok(LogState {
        first_index: read_u64(bytes, 16),
        truncate_from: pending.then(|| read_u64(bytes, 24)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_any_flipped_byte_is_caught() {
        let entry = Entry::new(42, 7, 3, Bytes::from_static(b"payload"));
        let mut buffer = Vec::new();
        encode_record(&entry, &mut buffer);
        let bytes = Bytes::from(buffer.clone());
        let (decoded, size) = decode_record(&bytes, 0, 42, 1024).unwrap();
        assert_eq!(decoded, entry);
        assert_eq!(size, record_size_bytes(&entry));
        for position in 0..buffer.len() {
            let mut damaged = buffer.clone();
            damaged[position] ^= 0x01;
            let result = decode_record(&Bytes::from(damaged), 0, 42, 1024);
            assert!(result.is_err(), "flip at {position} went unnoticed");
        }
    }

    #[test]
    fn a_cut_record_is_reported_as_truncated() {
        let entry = Entry::new(1, 1, 0, Bytes::from_static(b"0123456789"));
        let mut buffer = Vec::new();
        encode_record(&entry, &mut buffer);
        for length in 0..buffer.len() {
            let bytes = Bytes::copy_from_slice(&buffer[..length]);
            assert_eq!(
                decode_record(&bytes, 0, 1, 1024),
                Err(RecordProblem::Truncated)
            );
        }
    }

    #[test]
    fn headers_indexes_and_state_round_trip() {
        let header = encode_segment_header(99);
        assert_eq!(decode_segment_header(&header), Ok(99));
        let mut bad = header;
        bad[17] ^= 1;
        assert!(decode_segment_header(&bad).is_err());
        let index = Bytes::from(encode_index(5, 1000, &[32, 60, 90]));
        let decoded = decode_index(&index, 5).unwrap();
        assert_eq!(
            (decoded.entry_count, decoded.segment_length_bytes),
            (3, 1000)
        );
        assert_eq!(decoded.offset(2), 90);
        assert!(decode_index(&index, 6).is_none());
        let state = LogState {
            first_index: 10,
            truncate_from: Some(12),
        };
        assert_eq!(decode_state(&encode_state(&state)), Ok(state));
        assert_eq!(segment_file_name(7), "00000000000000000007.seg");
        assert_eq!(parse_segment_file_name("00000000000000000007.seg"), Some(7));
        assert_eq!(parse_segment_file_name("7.seg"), None);
    }
}
