//! The fixed 61-byte `RecordBatch` v2 header, its attribute bits and the CRC32C seal.
//!
//! Layout (all big-endian):
//!
//! ```text
//! 0  baseOffset i64          8  batchLength i32        12 partitionLeaderEpoch i32
//! 16 magic i8                17 crc u32                21 attributes i16
//! 23 lastOffsetDelta i32     27 baseTimestamp i64      35 maxTimestamp i64
//! 43 producerId i64          51 producerEpoch i16      53 baseSequence i32
//! 57 recordCount i32         61 records...
//! ```
//!
//! `batchLength` counts from `partitionLeaderEpoch` to the end; the CRC covers `attributes` to the
//! end, so `baseOffset` and `partitionLeaderEpoch` can be rewritten without re-sealing.

use std::fmt;
use std::str::FromStr;

use super::wire::{i16_at, i32_at, i64_at, u32_at};
use super::{Error, Result};

/// Bytes before `batchLength` counts: `baseOffset` and `batchLength` themselves.
pub const LOG_OVERHEAD: usize = 12;
/// Size of the v2 batch header, records start right after it.
pub const HEADER_LEN: usize = 61;

pub(crate) const MAGIC_OFFSET: usize = 16;
pub(crate) const CRC_OFFSET: usize = 17;
pub(crate) const ATTRIBUTES_OFFSET: usize = 21;
pub(crate) const MAGIC_V2: i8 = 2;

pub(crate) const CODEC_MASK: i16 = 0x07;
pub(crate) const TIMESTAMP_TYPE_BIT: i16 = 0x08;
pub(crate) const TRANSACTIONAL_BIT: i16 = 0x10;
pub(crate) const CONTROL_BIT: i16 = 0x20;
/// Kafka's "no producer id" sentinel.
pub(crate) const NO_PRODUCER_ID: i64 = -1;

/// The compression codec of a batch, attribute bits 0-2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Codec id 0.
    None,
    /// Codec id 1.
    Gzip,
    /// Codec id 2.
    Snappy,
    /// Codec id 3.
    Lz4,
    /// Codec id 4.
    Zstd,
}

impl Compression {
    /// Every codec, in id order.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The codec id as stored in attribute bits 0-2.
    pub fn id(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec for an id, `None` for ids 5-7 (or anything else).
    pub fn from_id(id: i16) -> Option<Self> {
        Some(match id {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => return None,
        })
    }

    /// The lowercase name Kafka uses in `compression.type`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// The codec `compression.codec` names.
impl From<crate::config::Codec> for Compression {
    fn from(codec: crate::config::Codec) -> Self {
        use crate::config::Codec;
        match codec {
            Codec::Zstd => Compression::Zstd,
            Codec::Lz4 => Compression::Lz4,
            Codec::Gzip => Compression::Gzip,
            Codec::Snappy => Compression::Snappy,
            Codec::None => Compression::None,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Compression {
    type Err = Error;

    /// Parses a Kafka `compression.type` name, case-insensitively.
    fn from_str(s: &str) -> Result<Self> {
        Compression::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::UnknownCodecName { name: s.to_owned() })
    }
}

/// The parsed fixed header of a v2 record batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record slot of the batch.
    pub base_offset: i64,
    /// Bytes after the `batch_length` field.
    pub batch_length: i32,
    /// Leader epoch stamped by the broker, -1 from producers.
    pub partition_leader_epoch: i32,
    /// Format version, always 2 for a parsed batch.
    pub magic: i8,
    /// CRC32C over `attributes` to the end.
    pub crc: u32,
    /// Codec, timestamp type, transactional, control bits.
    pub attributes: i16,
    /// `last_offset - base_offset`; compaction can leave it larger than `record_count - 1`.
    pub last_offset_delta: i32,
    /// Timestamp the record deltas are relative to (the delete horizon after compaction).
    pub base_timestamp: i64,
    /// Largest record timestamp, or the broker's append time for `LogAppendTime` batches.
    pub max_timestamp: i64,
    /// Idempotent/transactional producer id, -1 when none.
    pub producer_id: i64,
    /// Producer epoch, -1 when none.
    pub producer_epoch: i16,
    /// Sequence number of the first record, -1 when none.
    pub base_sequence: i32,
    /// Number of records stored in the batch.
    pub record_count: i32,
}

impl BatchHeader {
    /// Reads the header fields from the first [`HEADER_LEN`] bytes of `buf`.
    ///
    /// No validation beyond the length: callers check magic, length and CRC.
    pub(crate) fn read(buf: &[u8]) -> Option<Self> {
        Some(BatchHeader {
            base_offset: i64_at(buf, 0)?,
            batch_length: i32_at(buf, 8)?,
            partition_leader_epoch: i32_at(buf, 12)?,
            magic: *buf.get(MAGIC_OFFSET)? as i8,
            crc: u32_at(buf, CRC_OFFSET)?,
            attributes: i16_at(buf, ATTRIBUTES_OFFSET)?,
            last_offset_delta: i32_at(buf, 23)?,
            base_timestamp: i64_at(buf, 27)?,
            max_timestamp: i64_at(buf, 35)?,
            producer_id: i64_at(buf, 43)?,
            producer_epoch: i16_at(buf, 51)?,
            base_sequence: i32_at(buf, 53)?,
            record_count: i32_at(buf, 57)?,
        })
    }

    /// Writes every field into the first [`HEADER_LEN`] bytes of `out`, CRC as stored in `self`.
    pub(crate) fn write(&self, out: &mut [u8; HEADER_LEN]) {
        out[0..8].copy_from_slice(&self.base_offset.to_be_bytes());
        out[8..12].copy_from_slice(&self.batch_length.to_be_bytes());
        out[12..16].copy_from_slice(&self.partition_leader_epoch.to_be_bytes());
        out[16] = self.magic as u8;
        out[17..21].copy_from_slice(&self.crc.to_be_bytes());
        out[21..23].copy_from_slice(&self.attributes.to_be_bytes());
        out[23..27].copy_from_slice(&self.last_offset_delta.to_be_bytes());
        out[27..35].copy_from_slice(&self.base_timestamp.to_be_bytes());
        out[35..43].copy_from_slice(&self.max_timestamp.to_be_bytes());
        out[43..51].copy_from_slice(&self.producer_id.to_be_bytes());
        out[51..53].copy_from_slice(&self.producer_epoch.to_be_bytes());
        out[53..57].copy_from_slice(&self.base_sequence.to_be_bytes());
        out[57..61].copy_from_slice(&self.record_count.to_be_bytes());
    }

    /// The codec from attribute bits 0-2.
    pub fn compression(&self) -> Result<Compression> {
        let codec = self.attributes & CODEC_MASK;
        Compression::from_id(codec).ok_or(Error::UnknownCodec {
            base_offset: self.base_offset,
            codec,
        })
    }

    /// Attribute bit 4: the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// Attribute bit 5: the batch holds a transaction marker, not user data.
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// Attribute bit 3: timestamps were set by the broker at append time.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    /// Whether the batch was written by an idempotent or transactional producer.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id != NO_PRODUCER_ID
    }

    /// Offset of the last record slot, `base_offset + last_offset_delta`.
    pub fn last_offset(&self) -> i64 {
        self.base_offset.wrapping_add(i64::from(self.last_offset_delta))
    }

    /// The offset to fetch after this batch, `last_offset() + 1`.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().wrapping_add(1)
    }
}

/// Fills in `batch_length` and the CRC of a fully laid out batch (`header` + records).
///
/// `header.batch_length` and `header.crc` are ignored and overwritten.
pub(crate) fn seal(buf: &mut [u8], header: &mut BatchHeader) -> Result<()> {
    header.batch_length = buf
        .len()
        .checked_sub(LOG_OVERHEAD)
        .and_then(|len| i32::try_from(len).ok())
        .ok_or(Error::Encode {
            offset: header.base_offset,
            reason: "batch length outside 0..2 GiB",
        })?;
    let head: &mut [u8; HEADER_LEN] =
        buf.get_mut(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(Error::Corrupt {
                base_offset: header.base_offset,
                reason: "batch shorter than its header",
            })?;
    header.crc = 0;
    header.write(head);
    header.crc = crc32c::crc32c(&buf[ATTRIBUTES_OFFSET..]);
    buf[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&header.crc.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BatchHeader {
        BatchHeader {
            base_offset: 0x0102_0304_0506_0708,
            batch_length: 49,
            partition_leader_epoch: 7,
            magic: 2,
            crc: 0xdead_beef,
            attributes: 0x34,
            last_offset_delta: 3,
            base_timestamp: -5,
            max_timestamp: 1_700_000_000_000,
            producer_id: 42,
            producer_epoch: 9,
            base_sequence: 100,
            record_count: 4,
        }
    }

    #[test]
    fn header_write_read_round_trip() {
        let header = sample();
        let mut buf = [0u8; HEADER_LEN];
        header.write(&mut buf);
        assert_eq!(BatchHeader::read(&buf), Some(header));
        assert_eq!(BatchHeader::read(&buf[..HEADER_LEN - 1]), None);
    }

    #[test]
    fn attribute_bits_table() {
        // (attributes, codec, transactional, control, log append time)
        let cases: &[(i16, Option<Compression>, bool, bool, bool)] = &[
            (0x00, Some(Compression::None), false, false, false),
            (0x01, Some(Compression::Gzip), false, false, false),
            (0x02, Some(Compression::Snappy), false, false, false),
            (0x03, Some(Compression::Lz4), false, false, false),
            (0x04, Some(Compression::Zstd), false, false, false),
            (0x05, None, false, false, false),
            (0x07, None, false, false, false),
            (0x08, Some(Compression::None), false, false, true),
            (0x14, Some(Compression::Zstd), true, false, false),
            (0x30, Some(Compression::None), true, true, false),
            (0x7c, Some(Compression::Zstd), true, true, true),
        ];
        for &(attributes, codec, txn, control, append) in cases {
            let header = BatchHeader { attributes, ..sample() };
            match codec {
                Some(c) => assert_eq!(header.compression().ok(), Some(c), "attrs {attributes:#x}"),
                None => assert!(matches!(
                    header.compression(),
                    Err(Error::UnknownCodec { codec, base_offset }) if codec == attributes & 7 && base_offset == header.base_offset
                )),
            }
            assert_eq!(header.is_transactional(), txn, "attrs {attributes:#x}");
            assert_eq!(header.is_control(), control, "attrs {attributes:#x}");
            assert_eq!(header.is_log_append_time(), append, "attrs {attributes:#x}");
        }
    }

    #[test]
    fn offsets() {
        let header = BatchHeader {
            base_offset: 100,
            last_offset_delta: 9,
            ..sample()
        };
        assert_eq!(header.last_offset(), 109);
        assert_eq!(header.next_offset(), 110);
    }

    #[test]
    fn codec_names() {
        for codec in Compression::ALL {
            assert_eq!(Compression::from_id(codec.id()), Some(codec));
            assert_eq!(codec.to_string().parse::<Compression>().ok(), Some(codec));
        }
        assert_eq!("ZSTD".parse::<Compression>().ok(), Some(Compression::Zstd));
        assert!("brotli".parse::<Compression>().is_err());
    }

    #[test]
    fn seal_sets_length_and_crc() {
        let mut buf = vec![0u8; HEADER_LEN + 3];
        let mut header = sample();
        seal(&mut buf, &mut header).expect("buffer holds a header");
        assert_eq!(header.batch_length, (HEADER_LEN + 3 - LOG_OVERHEAD) as i32);
        let read = BatchHeader::read(&buf).expect("sealed header");
        assert_eq!(read, header);
        assert_eq!(read.crc, crc32c::crc32c(&buf[ATTRIBUTES_OFFSET..]));
        assert!(seal(&mut [0u8; 10], &mut sample()).is_err());
    }
}
