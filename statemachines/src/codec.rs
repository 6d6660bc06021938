//! The compact binary codec (postcard) and the framing used inside snapshot streams.
//!
//! A snapshot is a sequence of frames: a 4-byte little-endian length, then that many bytes
//! of postcard. Machines write their state as many small frames so that neither side holds
//! the whole state as one buffer; [`FRAME_BYTES_MAX`] bounds one frame.

use std::io::{Read, Write};

use serde::{Serialize, de::DeserializeOwned};

use crate::error::Error;

/// The largest frame a snapshot reader accepts; a larger length prefix is corruption.
pub const FRAME_BYTES_MAX: u32 = 64 * 1024 * 1024;

/// Encodes a value with the crate's codec.
pub fn encode<T: Serialize + ?Sized>(value: &T, what: &'static str) -> Result<Vec<u8>, Error> {
    postcard::to_stdvec(value).map_err(|error| Error::Encode {
        what,
        reason: error.to_string(),
    })
}

/// Decodes a value with the crate's codec; trailing bytes are an error because a valid
/// encoding of one value never leaves any.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T, Error> {
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(|error| Error::Decode {
        what,
        reason: error.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(Error::Decode {
            what,
            reason: format!("{} trailing bytes", rest.len()),
        });
    }
    Ok(value)
}

/// Writes one frame holding `value`.
pub fn write_frame<T: Serialize + ?Sized>(
    writer: &mut dyn Write,
    value: &T,
    what: &'static str,
) -> Result<(), Error> {
    let bytes = encode(value, what)?;
    write_raw_frame(writer, &bytes)
}

/// Writes one frame holding already-encoded bytes.
pub fn write_raw_frame(writer: &mut dyn Write, bytes: &[u8]) -> Result<(), Error> {
    let length = u32::try_from(bytes.len())
        .ok()
        .filter(|length| *length <= FRAME_BYTES_MAX)
        .ok_or_else(|| Error::Encode {
            what: "frame",
            reason: format!("{} bytes", bytes.len()),
        })?;
    writer.write_all(&length.to_le_bytes())?;
    writer.write_all(bytes)?;
    Ok(())
}

/// Reads one frame and decodes it; a stream that ends before the frame is an error.
pub fn read_frame<T: DeserializeOwned>(
    reader: &mut dyn Read,
    what: &'static str,
) -> Result<T, Error> {
    let bytes = read_raw_frame(reader)?;
    decode(&bytes, what)
}

/// Reads one frame's bytes.
pub fn read_raw_frame(reader: &mut dyn Read) -> Result<Vec<u8>, Error> {
    let mut length_bytes = [0_u8; 4];
    reader.read_exact(&mut length_bytes)?;
    let length = u32::from_le_bytes(length_bytes);
    if length > FRAME_BYTES_MAX {
        return Err(Error::SnapshotFormat {
            reason: format!("frame of {length} bytes exceeds {FRAME_BYTES_MAX}"),
        });
    }
    let mut bytes = vec![0_u8; length as usize];
    reader.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// The size at which a [`ChunkWriter`] flushes a chunk.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// Wraps a writer so that a stream of unknown length becomes a sequence of frames ended by
/// an empty frame; the session layer nests each machine's snapshot this way so that the
/// machine can stream and the reader still knows where it ends.
pub struct ChunkWriter<'a> {
    inner: &'a mut dyn Write,
    buffer: Vec<u8>,
}

impl<'a> ChunkWriter<'a> {
    /// Starts a chunked stream on `inner`.
    pub fn new(inner: &'a mut dyn Write) -> Self {
        ChunkWriter {
            inner,
            buffer: Vec::with_capacity(CHUNK_BYTES),
        }
    }

    /// Flushes the last chunk and writes the end marker.
    pub fn finish(mut self) -> Result<(), Error> {
        if !self.buffer.is_empty() {
            write_raw_frame(self.inner, &self.buffer)?;
            self.buffer.clear();
        }
        write_raw_frame(self.inner, &[])
    }
}

impl Write for ChunkWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= CHUNK_BYTES {
            write_raw_frame(self.inner, &self.buffer).map_err(std::io::Error::other)?;
            self.buffer.clear();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads back what a [`ChunkWriter`] wrote, ending at the end marker.
pub struct ChunkReader<'a> {
    inner: &'a mut dyn Read,
    chunk: Vec<u8>,
    position: usize,
    ended: bool,
}

impl<'a> ChunkReader<'a> {
    /// Starts reading a chunked stream from `inner`.
    pub fn new(inner: &'a mut dyn Read) -> Self {
        ChunkReader {
            inner,
            chunk: Vec::new(),
            position: 0,
            ended: false,
        }
    }

    /// Checks that the consumer read the whole stream, up to and including the end marker;
    /// leftover bytes mean the machine's restore disagrees with its snapshot.
    pub fn finish(mut self) -> Result<(), Error> {
        let mut rest = [0_u8; 1];
        let read = self.read(&mut rest)?;
        if read != 0 {
            return Err(Error::SnapshotFormat {
                reason: "a machine's restore left part of its snapshot unread".to_string(),
            });
        }
        Ok(())
    }
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, output: &mut [u8]) -> std::io::Result<usize> {
        while self.position == self.chunk.len() {
            if self.ended {
                return Ok(0);
            }
            self.chunk = read_raw_frame(self.inner).map_err(std::io::Error::other)?;
            self.position = 0;
            self.ended = self.chunk.is_empty();
        }
        let count = output.len().min(self.chunk.len() - self.position);
        output[..count].copy_from_slice(&self.chunk[self.position..self.position + count]);
        self.position += count;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_reject_truncation() {
        let mut buffer = Vec::new();
        write_frame(&mut buffer, &(7_u64, "seven".to_string()), "pair").unwrap();
        write_frame(&mut buffer, &vec![1_u8, 2, 3], "bytes").unwrap();
        let mut reader = buffer.as_slice();
        let pair: (u64, String) = read_frame(&mut reader, "pair").unwrap();
        assert_eq!(pair, (7, "seven".to_string()));
        let bytes: Vec<u8> = read_frame(&mut reader, "bytes").unwrap();
        assert_eq!(bytes, vec![1, 2, 3]);
        assert!(reader.is_empty());

        let truncated = &buffer[..buffer.len() - 1];
        let mut reader = truncated;
        let _: (u64, String) = read_frame(&mut reader, "pair").unwrap();
        let error = read_frame::<Vec<u8>>(&mut reader, "bytes").unwrap_err();
        assert!(matches!(
            error,
            Error::Io {
                kind: std::io::ErrorKind::UnexpectedEof,
                ..
            }
        ));
    }

    #[test]
    fn oversized_frame_length_is_refused() {
        let mut buffer = (FRAME_BYTES_MAX + 1).to_le_bytes().to_vec();
        buffer.extend_from_slice(&[0; 8]);
        let error = read_raw_frame(&mut buffer.as_slice()).unwrap_err();
        assert!(matches!(error, Error::SnapshotFormat { .. }));
    }

    #[test]
    fn chunked_streams_nest_and_end_where_written() {
        let mut buffer = Vec::new();
        let payload: Vec<u8> = (0..(CHUNK_BYTES * 2 + 17)).map(|byte| byte as u8).collect();
        let mut chunked = ChunkWriter::new(&mut buffer);
        chunked.write_all(&payload).unwrap();
        chunked.finish().unwrap();
        write_frame(&mut buffer, &42_u32, "after").unwrap();

        let mut reader = buffer.as_slice();
        let mut chunked = ChunkReader::new(&mut reader);
        let mut read_back = Vec::new();
        chunked.read_to_end(&mut read_back).unwrap();
        chunked.finish().unwrap();
        assert_eq!(read_back, payload);
        assert_eq!(read_frame::<u32>(&mut reader, "after").unwrap(), 42);

        let mut buffer = Vec::new();
        let mut chunked = ChunkWriter::new(&mut buffer);
        chunked.write_all(b"two").unwrap();
        chunked.finish().unwrap();
        let mut reader = buffer.as_slice();
        let mut chunked = ChunkReader::new(&mut reader);
        let mut first = [0_u8; 1];
        chunked.read_exact(&mut first).unwrap();
        assert!(matches!(
            chunked.finish(),
            Err(Error::SnapshotFormat { .. })
        ));
    }

    #[test]
    fn decode_refuses_trailing_bytes() {
        let mut bytes = encode(&5_u32, "number").unwrap();
        bytes.push(0);
        assert!(matches!(
            decode::<u32>(&bytes, "number"),
            Err(Error::Decode { .. })
        ));
    }
}
