//! Splitting a fetch response's `records` bytes into verified batches.
//!
//! A fetch response may end in a partial batch: brokers stop at the byte limit without regard
//! for batch boundaries. That tail is not an error; [`BatchIter::truncated_tail`] reports its
//! size so the caller can notice when not even one whole batch fitted.

use std::iter::FusedIterator;

use bytes::Bytes;

use super::compression::{decompress_capped, MAX_DECOMPRESSED_BYTES};
use super::header::{BatchHeader, Compression, ATTRIBUTES_OFFSET, HEADER_LEN, LOG_OVERHEAD, MAGIC_OFFSET, MAGIC_V2};
use super::record::{parse_records, Record};
use super::wire::{i16_at, i32_at, i64_at};
use super::{Error, Result};

/// Smallest legal `batchLength`/message size of any magic (a v0 message), as Kafka checks it.
const MIN_LENGTH_ANY_MAGIC: i32 = 14;
/// Control record key type ids.
const CONTROL_ABORT: i16 = 0;
const CONTROL_COMMIT: i16 = 1;

/// The marker a control batch carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ControlType {
    /// The producer's open transaction was aborted.
    Abort,
    /// The producer's open transaction was committed.
    Commit,
    /// A control type this codec does not know (Kafka ignores these too).
    Other(i16),
}

/// One complete, CRC-verified v2 batch.
#[derive(Clone, Debug)]
pub struct RawBatch {
    /// The parsed header.
    pub header: BatchHeader,
    /// The whole batch including the 12-byte offset and length prefix.
    pub bytes: Bytes,
}

impl RawBatch {
    /// Verifies that `bytes` is exactly one v2 batch (length, magic, CRC) and parses its header.
    pub fn from_bytes(bytes: Bytes) -> Result<Self> {
        let base_offset = i64_at(&bytes, 0).unwrap_or(-1);
        let length = i32_at(&bytes, 8).ok_or(Error::Corrupt {
            base_offset,
            reason: "batch shorter than its length prefix",
        })?;
        if usize::try_from(length).ok().and_then(|l| l.checked_add(LOG_OVERHEAD)) != Some(bytes.len()) {
            return Err(Error::Corrupt {
                base_offset,
                reason: "batch length does not match its bytes",
            });
        }
        let header = verify(&bytes, base_offset)?;
        Ok(RawBatch { header, bytes })
    }

    /// The records, decompressed and parsed, with absolute offsets and timestamps.
    ///
    /// For `LogAppendTime` batches every record's timestamp is the batch's `max_timestamp`,
    /// which is where the broker stored the append time. A batch may start before the fetch
    /// offset; skipping those records is the caller's job.
    pub fn records(&self) -> Result<Vec<Record>> {
        self.records_within(MAX_DECOMPRESSED_BYTES)
    }

    /// [`Self::records`], refusing a records section larger than `cap` bytes once decompressed
    /// (uncompressed: as stored) with [`Error::TooLarge`], found while decompressing.
    pub fn records_within(&self, cap: usize) -> Result<Vec<Record>> {
        let cap = cap.min(MAX_DECOMPRESSED_BYTES);
        let base_offset = self.header.base_offset;
        let codec = self.header.compression()?;
        if self.bytes.len() < HEADER_LEN {
            return Err(Error::Corrupt {
                base_offset,
                reason: "batch shorter than its header",
            });
        }
        let section = self.bytes.slice(HEADER_LEN..);
        let data = match codec {
            Compression::None if section.len() > cap => return Err(Error::TooLarge { base_offset, cap }),
            Compression::None => section,
            codec => Bytes::from(decompress_capped(codec, &section, base_offset, cap)?),
        };
        parse_records(&data, &self.header)
    }

    /// For a control batch, the marker type from its first record's key; `None` for data
    /// batches and for control batches left empty by compaction.
    pub fn control_type(&self) -> Result<Option<ControlType>> {
        if !self.header.is_control() {
            return Ok(None);
        }
        let base_offset = self.header.base_offset;
        let records = self.records()?;
        let Some(first) = records.first() else {
            return Ok(None);
        };
        let key = first.key.as_deref().unwrap_or_default();
        let err = |reason| Error::CorruptRecord {
            base_offset,
            index: 0,
            reason,
        };
        let version = i16_at(key, 0).ok_or(err("control record key shorter than 4 bytes"))?;
        let kind = i16_at(key, 2).ok_or(err("control record key shorter than 4 bytes"))?;
        if version < 0 {
            return Err(err("negative control record key version"));
        }
        Ok(Some(match kind {
            CONTROL_ABORT => ControlType::Abort,
            CONTROL_COMMIT => ControlType::Commit,
            other => ControlType::Other(other),
        }))
    }
}

/// Checks magic, minimum length and CRC of one complete batch and parses its header.
fn verify(batch: &[u8], base_offset: i64) -> Result<BatchHeader> {
    let magic = batch.get(MAGIC_OFFSET).map(|&m| m as i8).ok_or(Error::Corrupt {
        base_offset,
        reason: "batch shorter than its magic byte",
    })?;
    if magic != MAGIC_V2 {
        return Err(Error::UnsupportedMagic { base_offset, magic });
    }
    let header = BatchHeader::read(batch).ok_or(Error::Corrupt {
        base_offset,
        reason: "batch shorter than the v2 header",
    })?;
    let computed = crc32c::crc32c(batch.get(ATTRIBUTES_OFFSET..).unwrap_or_default());
    // Under the fuzzer a CRC mismatch is not fatal, so mutated inputs reach the decoders.
    if computed != header.crc && !cfg!(fuzzing) {
        return Err(Error::Crc {
            base_offset,
            stored: header.crc,
            computed,
        });
    }
    if header.record_count < 0 {
        return Err(Error::Corrupt {
            base_offset,
            reason: "negative record count",
        });
    }
    Ok(header)
}

/// Iterates the complete batches in a fetch response's `records` bytes.
///
/// Verifies CRC32C (Castagnoli, over attributes..end) and magic==2 for each yielded batch. A
/// truncated trailing batch (brokers legitimately cut the last one at the size limit) ends the
/// iteration without error; [`BatchIter::truncated_tail`] then reports how many bytes were
/// dropped. After yielding an `Err` the iterator ends.
#[derive(Clone, Debug)]
pub struct BatchIter {
    records: Bytes,
    pos: usize,
    done: bool,
    truncated_tail: usize,
}

/// Iterates the complete batches in `records` (the `records` field of one fetched partition).
pub fn batches(records: Bytes) -> BatchIter {
    BatchIter {
        records,
        pos: 0,
        done: false,
        truncated_tail: 0,
    }
}

impl BatchIter {
    /// Bytes of the incomplete batch at the end, 0 when the input ended on a batch boundary.
    ///
    /// Meaningful once the iterator has returned `None`. If no batch was yielded and this is
    /// non-zero, the fetch size limit is smaller than the first batch.
    pub fn truncated_tail(&self) -> usize {
        self.truncated_tail
    }

    /// Bytes consumed by the batches yielded so far.
    pub fn consumed(&self) -> usize {
        self.pos
    }

    fn fail(&mut self, err: Error) -> Option<Result<RawBatch>> {
        self.done = true;
        Some(Err(err))
    }

    fn stop_truncated(&mut self, rest: usize) -> Option<Result<RawBatch>> {
        self.done = true;
        self.truncated_tail = rest;
        None
    }
}

impl Iterator for BatchIter {
    type Item = Result<RawBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = self.records.get(self.pos..).unwrap_or_default();
        if rest.is_empty() {
            self.done = true;
            return None;
        }
        let (Some(base_offset), Some(length)) = (i64_at(rest, 0), i32_at(rest, 8)) else {
            return self.stop_truncated(rest.len());
        };
        if length < MIN_LENGTH_ANY_MAGIC {
            return self.fail(Error::Corrupt {
                base_offset,
                reason: "batch length below the minimum of any message format",
            });
        }
        // A positive i32 plus 12 always fits a usize on the platforms Kafka clients run on.
        let total = length as usize + LOG_OVERHEAD;
        let Some(batch) = rest.get(..total) else {
            return self.stop_truncated(rest.len());
        };
        match verify(batch, base_offset) {
            Ok(header) => {
                let bytes = self.records.slice(self.pos..self.pos + total);
                self.pos += total;
                Some(Ok(RawBatch { header, bytes }))
            }
            Err(err) => self.fail(err),
        }
    }
}

impl FusedIterator for BatchIter {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real batches as written by a Kafka 0.11 broker, from kafka-python's
    /// `test/record/test_records.py` (`record_batch_data_v2`).
    const KAFKA_V2: [&str; 3] = [
        "00000000000000000000003b00000001020318a2700000000000000000015dff7b063c0000015dff7b063c\
         ffffffffffffffffffffffffffff0000000112000000010631323300",
        "0000000000000001000000400000000202c85cbd230000000000010000015dff7cdd6c0000015dff7cde14\
         ffffffffffffffffffffffffffff000000020c0000000100000e00d00202010000",
        "00000000000000030000003b00000002022e0b85b70000000000000000015dff7ce79d0000015dff7ce79d\
         ffffffffffffffffffffffffffff0000000112000000010631323300",
    ];
    /// A v1 and a v0 message from the same file, for the magic check.
    const KAFKA_V1: &str = "000000000000000000000019478628c201000000015e1867abaeffffffff00000003313233";
    const KAFKA_V0: &str = "000000000000000000000011feb01dbf0000ffffffff00000003313233";

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("valid hex"))
            .collect()
    }

    fn kafka_fetch() -> Vec<u8> {
        KAFKA_V2.iter().flat_map(|s| hex(s)).collect()
    }

    #[test]
    fn kafka_broker_batches_parse_with_their_crc() {
        let mut iter = batches(Bytes::from(kafka_fetch()));
        let all: Vec<RawBatch> = iter.by_ref().collect::<Result<_>>().expect("valid batches");
        assert_eq!(iter.truncated_tail(), 0);
        assert_eq!(all.len(), 3);

        // (base_offset, leader epoch, crc, last_offset_delta, record_count, next_offset)
        let expected = [
            (0, 1, 0x0318_a270, 0, 1, 1),
            (1, 2, 0xc85c_bd23, 1, 2, 3),
            (3, 2, 0x2e0b_85b7, 0, 1, 4),
        ];
        for (batch, (base, epoch, crc, lod, count, next)) in all.iter().zip(expected) {
            let h = &batch.header;
            assert_eq!(
                (
                    h.base_offset,
                    h.partition_leader_epoch,
                    h.crc,
                    h.last_offset_delta,
                    h.record_count
                ),
                (base, epoch, crc, lod, count)
            );
            assert_eq!(h.next_offset(), next);
            assert_eq!(h.magic, 2);
            assert_eq!(h.compression().expect("known"), Compression::None);
            assert!(!h.is_transactional() && !h.is_control() && !h.is_log_append_time());
            assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (-1, -1, -1));
            assert_eq!(batch.control_type().expect("data batch"), None);
        }

        let first = all[0].records().expect("records");
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].offset, 0);
        assert_eq!(first[0].timestamp, 1_503_229_838_908);
        assert_eq!(first[0].key, None);
        assert_eq!(first[0].value.as_deref(), Some(&b"123"[..]));
        assert_eq!(first[0].headers.as_ref(), &[0]);

        let second = all[1].records().expect("records");
        let summary: Vec<_> = second
            .iter()
            .map(|r| (r.offset, r.timestamp, r.value.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, 0x015d_ff7c_dd6c, Some(Bytes::new())),
                (2, 0x015d_ff7c_dd6c + 168, Some(Bytes::new())),
            ]
        );
        assert_eq!(all[1].header.max_timestamp, 0x015d_ff7c_dd6c + 168);
    }

    #[test]
    fn truncated_tail_table() {
        let full = kafka_fetch();
        let first_len = hex(KAFKA_V2[0]).len();
        // (cut at, batches yielded, truncated tail)
        let cases = [
            (0, 0, 0),
            (5, 0, 5),
            (12, 0, 12),
            (first_len - 1, 0, first_len - 1),
            (first_len, 1, 0),
            (first_len + 11, 1, 11),
            (first_len + 20, 1, 20),
            (full.len() - 1, 2, full.len() - 1 - first_len - hex(KAFKA_V2[1]).len()),
            (full.len(), 3, 0),
        ];
        for (cut, yielded, tail) in cases {
            let mut iter = batches(Bytes::copy_from_slice(&full[..cut]));
            let got = iter
                .by_ref()
                .collect::<Result<Vec<_>>>()
                .expect("truncation is not an error");
            assert_eq!((got.len(), iter.truncated_tail()), (yielded, tail), "cut at {cut}");
            assert_eq!(iter.next().map(|r| r.is_ok()), None, "fused");
        }
    }

    #[test]
    fn bad_crc_names_the_batch() {
        let mut bytes = kafka_fetch();
        let second = hex(KAFKA_V2[0]).len();
        let last = second + hex(KAFKA_V2[1]).len() - 1;
        bytes[last] ^= 0x01;
        let mut iter = batches(Bytes::from(bytes));
        assert!(iter.next().expect("first").is_ok());
        let err = iter.next().expect("second").expect_err("crc");
        assert!(
            matches!(
                err,
                Error::Crc {
                    base_offset: 1,
                    stored: 0xc85c_bd23,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("offset 1"), "{err}");
        assert!(iter.next().is_none(), "ends after an error");
    }

    #[test]
    fn legacy_magic_is_unsupported() {
        for (data, magic) in [(KAFKA_V1, 1), (KAFKA_V0, 0)] {
            let mut iter = batches(Bytes::from(hex(data)));
            let err = iter.next().expect("one item").expect_err("legacy");
            assert!(
                matches!(err, Error::UnsupportedMagic { base_offset: 0, magic: m } if m == magic),
                "{err}"
            );
            assert!(iter.next().is_none());
        }
        // A v2 batch followed by a legacy message: the v2 batch still comes out first.
        let mut mixed = kafka_fetch();
        mixed.extend_from_slice(&hex(KAFKA_V1));
        let items: Vec<_> = batches(Bytes::from(mixed)).collect();
        assert_eq!(items.len(), 4);
        assert!(matches!(items[3], Err(Error::UnsupportedMagic { magic: 1, .. })));
    }

    #[test]
    fn framing_errors_table() {
        let v2 = hex(KAFKA_V2[0]);
        let with_length = |len: i32| {
            let mut b = v2.clone();
            b[8..12].copy_from_slice(&len.to_be_bytes());
            b
        };
        let with_count = |count: i32| {
            let mut b = v2.clone();
            b[57..61].copy_from_slice(&count.to_be_bytes());
            let crc = crc32c::crc32c(&b[21..]);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
            b
        };
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("negative length", with_length(-1)),
            ("length below minimum", with_length(13)),
            ("v2 length shorter than the header", {
                let mut b = with_length(20);
                b.truncate(32);
                b
            }),
            ("negative record count", with_count(-3)),
        ];
        for (name, bytes) in cases {
            let result = batches(Bytes::from(bytes)).next();
            assert!(
                matches!(result, Some(Err(Error::Corrupt { base_offset: 0, .. }))),
                "{name}: {result:?}"
            );
        }
    }

    #[test]
    fn from_bytes_checks_exact_length() {
        let one = Bytes::from(hex(KAFKA_V2[0]));
        assert_eq!(RawBatch::from_bytes(one.clone()).expect("exact").header.record_count, 1);
        assert!(RawBatch::from_bytes(one.slice(..one.len() - 1)).is_err());
        assert!(RawBatch::from_bytes(Bytes::from(kafka_fetch())).is_err());
        assert!(RawBatch::from_bytes(Bytes::new()).is_err());
    }

    #[test]
    fn unknown_codec_is_reported_by_records() {
        let mut b = hex(KAFKA_V2[0]);
        b[22] |= 0x06; // codec 6
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        let batch = RawBatch::from_bytes(Bytes::from(b)).expect("framing is fine");
        assert!(matches!(
            batch.records(),
            Err(Error::UnknownCodec {
                base_offset: 0,
                codec: 6
            })
        ));
    }
}
