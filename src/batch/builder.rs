//! Writing batches: merging records from any number of source batches into one target batch,
//! plus encoders that keep source offsets (for fixtures) and control batches.
//!
//! Target batches are laid out the way a fresh producer would write them: base offset 0 (the
//! broker assigns offsets), contiguous offset deltas, `CreateTime`, leader epoch -1. Keys, values
//! and header bytes are copied untouched; only the per-record framing is re-encoded.

use std::mem;

use bytes::Bytes;

use super::compression::{with_scratch, Compressors};
use super::header::{seal, BatchHeader, Compression, CODEC_MASK, CONTROL_BIT, HEADER_LEN, MAGIC_V2, TRANSACTIONAL_BIT};
use super::record::Record;
use super::wire::varint_len;
use super::{Error, Result};

/// A builder's buffer grows as records come, by a quarter at a time (so its capacity stays
/// within 1.25 times what the batch memory counts for it, where doubling would allow twice),
/// and only this much of it is kept from one batch to the next: thousands of partitions, each
/// with a few records or none, must not each hold a large allocation that no bound counts.
const KEEP_CAPACITY: usize = 4 * 1024;
/// Leader epoch a producer writes; the broker stamps the real one.
const NO_PARTITION_LEADER_EPOCH: i32 = -1;
/// Kafka's "no timestamp" value, used as base/max timestamp of an empty batch.
const NO_TIMESTAMP: i64 = -1;

/// How [`BatchBuilder::finish`] and the encoders write a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildOptions {
    /// Codec for the records section; falls back to none when it would not shrink the batch.
    pub compression: Compression,
    /// zstd level (1..=22, negative for the fast levels); only used with `Compression::Zstd`.
    pub zstd_level: i32,
    /// Producer id written into the header, -1 for a plain producer.
    pub producer_id: i64,
    /// Producer epoch written into the header, -1 for a plain producer.
    pub producer_epoch: i16,
    /// Sequence number of the first record, -1 for a plain producer.
    pub base_sequence: i32,
    /// Sets the transactional attribute bit.
    pub transactional: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            compression: Compression::None,
            zstd_level: 3,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
        }
    }
}

/// A sealed batch ready to be placed in a produce request.
#[derive(Clone, Debug)]
pub struct BuiltBatch {
    /// The whole batch, including the 12-byte offset and length prefix, CRC set.
    pub bytes: Bytes,
    /// Number of records in the batch.
    pub record_count: i32,
    /// Source offset of the first record.
    pub first_source_offset: i64,
    /// Source offset of the last record.
    pub last_source_offset: i64,
    /// Size the batch would have uncompressed, header included.
    pub uncompressed_len: usize,
    /// The codec actually used (`None` when compression did not help).
    pub compression: Compression,
}

/// Accumulates records (from any number of source batches) into one target batch up to
/// `max_bytes` (encoded, uncompressed size incl. the 61-byte header).
///
/// Records are encoded as they are pushed, so the size is exact and `finish` only compresses.
#[derive(Debug)]
pub struct BatchBuilder {
    max_bytes: usize,
    /// Header placeholder followed by the encoded records.
    buf: Vec<u8>,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    first_offset: i64,
    last_offset: i64,
    compressors: Compressors,
}

impl BatchBuilder {
    /// An empty builder whose batches never exceed `max_bytes` before compression.
    pub fn new(max_bytes: usize) -> Self {
        BatchBuilder {
            max_bytes,
            buf: vec![0; HEADER_LEN],
            count: 0,
            base_timestamp: NO_TIMESTAMP,
            max_timestamp: NO_TIMESTAMP,
            first_offset: 0,
            last_offset: 0,
            compressors: Compressors::new(),
        }
    }

    /// Appends a record, or hands it back when the batch would exceed `max_bytes` (also when
    /// the builder is empty and the record alone is too big: the caller decides what to do).
    pub fn try_push(&mut self, record: Record) -> std::result::Result<(), Record> {
        if self.count == i32::MAX {
            return Err(record);
        }
        let base_timestamp = if self.is_empty() {
            record.timestamp
        } else {
            self.base_timestamp
        };
        // Wrapping keeps any pair of i64 timestamps representable; readers add it back wrapping.
        let timestamp_delta = record.timestamp.wrapping_sub(base_timestamp);
        let offset_delta = self.count;
        let Some(body_len) = record
            .body_len(timestamp_delta, offset_delta)
            .and_then(|len| i32::try_from(len).ok())
        else {
            return Err(record);
        };
        let encoded = varint_len(body_len) + body_len as usize;
        if self.buf.len().saturating_add(encoded) > self.max_bytes {
            return Err(record);
        }
        if self.is_empty() {
            self.base_timestamp = record.timestamp;
            self.max_timestamp = record.timestamp;
            self.first_offset = record.offset;
        }
        self.make_room(encoded);
        record.write(&mut self.buf, timestamp_delta, offset_delta, body_len);
        self.count += 1;
        self.last_offset = record.offset;
        self.max_timestamp = self.max_timestamp.max(record.timestamp);
        Ok(())
    }

    /// Whether no record has been pushed since the last `finish`.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Records pushed since the last `finish`.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Uncompressed size of the batch so far, header included (61 when empty).
    pub fn size_bytes(&self) -> usize {
        self.buf.len()
    }

    /// The size limit this builder was created with.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Room for `more` bytes: the buffer grows by a quarter of what it holds (at least
    /// [`KEEP_CAPACITY`]), or by what the record needs when that is more, never past the
    /// batch's size.
    fn make_room(&mut self, more: usize) {
        let len = self.buf.len();
        if self.buf.capacity() - len >= more {
            return;
        }
        let grown = (len + (len / 4).max(KEEP_CAPACITY)).min(self.max_bytes);
        self.buf.reserve_exact(grown.max(len + more) - len);
    }

    /// Source offset of the first record, if any.
    pub fn first_offset(&self) -> Option<i64> {
        (!self.is_empty()).then_some(self.first_offset)
    }

    /// Timestamp of the first record (the batch's base timestamp), if any.
    pub fn first_timestamp(&self) -> Option<i64> {
        (!self.is_empty()).then_some(self.base_timestamp)
    }

    /// Source offset of the last record, if any.
    pub fn last_offset(&self) -> Option<i64> {
        (!self.is_empty()).then_some(self.last_offset)
    }

    /// Compresses and seals the batch, and empties the builder for the next one.
    ///
    /// On error (empty builder, codec failure) the builder keeps its records, so the caller may
    /// retry, for example with `Compression::None`.
    pub fn finish(&mut self, opts: &BuildOptions) -> Result<BuiltBatch> {
        if self.is_empty() {
            return Err(Error::EmptyBatch);
        }
        let uncompressed_len = self.buf.len();
        let mut header = new_header(
            0,
            self.count - 1,
            self.base_timestamp,
            self.max_timestamp,
            self.count,
            opts,
            0,
        );
        let (bytes, compression) = compress_and_seal(&mut self.compressors, &mut self.buf, opts, &mut header)?;
        let built = BuiltBatch {
            bytes: Bytes::from(bytes),
            record_count: self.count,
            first_source_offset: self.first_offset,
            last_source_offset: self.last_offset,
            uncompressed_len,
            compression,
        };
        // Keep a small allocation for the next batch; give a large one back, so idle
        // partitions do not each hold a batch's worth of memory.
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        }
        self.buf.clear();
        self.buf.resize(HEADER_LEN, 0);
        self.count = 0;
        self.base_timestamp = NO_TIMESTAMP;
        self.max_timestamp = NO_TIMESTAMP;
        Ok(built)
    }
}

fn new_header(
    base_offset: i64,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    record_count: i32,
    opts: &BuildOptions,
    extra_attributes: i16,
) -> BatchHeader {
    let transactional = if opts.transactional { TRANSACTIONAL_BIT } else { 0 };
    BatchHeader {
        base_offset,
        batch_length: 0,
        partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
        magic: MAGIC_V2,
        crc: 0,
        attributes: transactional | extra_attributes,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id: opts.producer_id,
        producer_epoch: opts.producer_epoch,
        base_sequence: opts.base_sequence,
        record_count,
    }
}

/// Compresses the records after the header placeholder in `raw`, sets the codec bits and seals.
///
/// When the compressed form is not smaller, the batch is written uncompressed and `raw` itself
/// is moved into the result (left empty); otherwise `raw` is untouched and reusable.
fn compress_and_seal(
    compressors: &mut Compressors,
    raw: &mut Vec<u8>,
    opts: &BuildOptions,
    header: &mut BatchHeader,
) -> Result<(Vec<u8>, Compression)> {
    let records = raw.get(HEADER_LEN..).unwrap_or_default();
    let compressed = match opts.compression {
        Compression::None => None,
        codec => {
            // The batch lives until the target acknowledges it: compress into the thread's
            // scratch buffer and keep an exact-size copy, only when it is smaller.
            with_scratch(|out| -> Result<_> {
                out.resize(HEADER_LEN, 0);
                compressors.compress(codec, opts.zstd_level, records, out)?;
                Ok((out.len() < raw.len()).then(|| (out.to_vec(), codec)))
            })?
        }
    };
    let (mut out, codec) = compressed.unwrap_or_else(|| (mem::take(raw), Compression::None));
    header.attributes = (header.attributes & !CODEC_MASK) | codec.id();
    seal(&mut out, header)?;
    Ok((out, codec))
}

/// Encodes `records` as one batch that keeps their offsets: `base_offset` plus each record's
/// own delta, so gaps survive. For fixtures and tests of the read path; replication uses
/// [`BatchBuilder`].
///
/// Timestamps are relative to the first record; `max_timestamp` is the largest one. An empty
/// slice gives an empty batch (as compaction can leave behind).
pub fn encode_batch(base_offset: i64, records: &[Record], opts: &BuildOptions) -> Result<Bytes> {
    encode_with(base_offset, records, opts, 0)
}

fn encode_with(base_offset: i64, records: &[Record], opts: &BuildOptions, extra_attributes: i16) -> Result<Bytes> {
    let base_timestamp = records.first().map_or(NO_TIMESTAMP, |r| r.timestamp);
    let max_timestamp = records.iter().map(|r| r.timestamp).max().unwrap_or(NO_TIMESTAMP);
    let mut raw = vec![0u8; HEADER_LEN];
    let mut last_offset_delta = 0;
    for record in records {
        let err = |reason| Error::Encode {
            offset: record.offset,
            reason,
        };
        let offset_delta = record
            .offset
            .checked_sub(base_offset)
            .and_then(|d| i32::try_from(d).ok())
            .filter(|&d| d >= 0)
            .ok_or(err("offset before the base offset or more than i32::MAX after it"))?;
        let timestamp_delta = record.timestamp.wrapping_sub(base_timestamp);
        let body_len = record
            .body_len(timestamp_delta, offset_delta)
            .and_then(|len| i32::try_from(len).ok())
            .ok_or(err("record larger than 2 GiB"))?;
        record.write(&mut raw, timestamp_delta, offset_delta, body_len);
        last_offset_delta = offset_delta;
    }
    let count = i32::try_from(records.len()).map_err(|_| Error::Encode {
        offset: base_offset,
        reason: "more than i32::MAX records",
    })?;
    let mut header = new_header(
        base_offset,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        count,
        opts,
        extra_attributes,
    );
    let mut compressors = Compressors::new();
    let (out, _) = compress_and_seal(&mut compressors, &mut raw, opts, &mut header)?;
    Ok(Bytes::from(out))
}

/// Encodes a transaction marker batch (attributes: transactional + control) at `base_offset`,
/// as the transaction coordinator has the leader write it.
pub fn encode_control_batch(
    base_offset: i64,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    timestamp: i64,
) -> Bytes {
    // Key: version 0, type (0 abort, 1 commit). Value: version 0, coordinator epoch 0.
    let key: &'static [u8] = if commit { &[0, 0, 0, 1] } else { &[0, 0, 0, 0] };
    let record = Record::new(
        base_offset,
        timestamp,
        Some(Bytes::from_static(key)),
        Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0])),
    );
    let opts = BuildOptions {
        producer_id,
        producer_epoch,
        transactional: true,
        ..BuildOptions::default()
    };
    encode_with(base_offset, &[record], &opts, CONTROL_BIT)
        .expect("a one-record uncompressed control batch at its own base offset always encodes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{batches, ControlType, RawBatch};

    fn record(offset: i64, timestamp: i64, value: &'static [u8]) -> Record {
        Record::new(
            offset,
            timestamp,
            Some(Bytes::from_static(b"key")),
            Some(Bytes::from_static(value)),
        )
    }

    /// The buffer's capacity stays within a quarter (or one growth step) of what it holds, so
    /// the batch memory, which counts what it holds, bounds it; and a finished batch gives it
    /// back, so an idle partition holds no batch's worth.
    #[test]
    fn the_buffer_grows_by_a_quarter_and_is_given_back_after_a_batch() {
        const VALUE: &[u8] = &[7; 500];
        let mut builder = BatchBuilder::new(1 << 20);
        let mut offset = 0;
        while builder.try_push(record(offset, 1_000, VALUE)).is_ok() {
            offset += 1;
            let (len, cap) = (builder.buf.len(), builder.buf.capacity());
            assert!(
                cap <= len + (len / 4).max(KEEP_CAPACITY) + 600,
                "{len} bytes held in {cap}"
            );
        }
        // The premise: the batch filled up to its size.
        assert!(builder.buf.len() > (1 << 20) - 600, "{}", builder.buf.len());
        assert!(builder.buf.capacity() <= 1 << 20);
        builder.finish(&BuildOptions::default()).expect("builds");
        assert!(builder.buf.capacity() <= KEEP_CAPACITY, "{}", builder.buf.capacity());
    }

    fn parse_one(bytes: Bytes) -> RawBatch {
        RawBatch::from_bytes(bytes).expect("valid batch")
    }

    #[test]
    fn finish_lays_out_a_producer_batch() {
        let mut builder = BatchBuilder::new(1 << 20);
        for (offset, ts) in [(10, 1_000), (13, 900), (20, 5_000)] {
            builder.try_push(record(offset, ts, b"v")).expect("fits");
        }
        assert_eq!(
            (builder.first_offset(), builder.last_offset(), builder.len()),
            (Some(10), Some(20), 3)
        );
        // The first record's, not the smallest.
        assert_eq!(builder.first_timestamp(), Some(1_000));
        let opts = BuildOptions {
            producer_id: 77,
            producer_epoch: 3,
            base_sequence: 12,
            transactional: true,
            ..BuildOptions::default()
        };
        let built = builder.finish(&opts).expect("finish");
        assert!(builder.is_empty());
        assert_eq!(builder.first_timestamp(), None);
        assert_eq!(builder.size_bytes(), HEADER_LEN);
        assert_eq!(
            (built.record_count, built.first_source_offset, built.last_source_offset),
            (3, 10, 20)
        );
        assert_eq!(built.uncompressed_len, built.bytes.len());

        let batch = parse_one(built.bytes);
        let h = &batch.header;
        assert_eq!(
            (
                h.base_offset,
                h.partition_leader_epoch,
                h.last_offset_delta,
                h.record_count
            ),
            (0, -1, 2, 3)
        );
        assert_eq!((h.base_timestamp, h.max_timestamp), (1_000, 5_000));
        assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (77, 3, 12));
        assert_eq!(h.attributes, TRANSACTIONAL_BIT);
        let got: Vec<_> = batch
            .records()
            .expect("records")
            .iter()
            .map(|r| (r.offset, r.timestamp))
            .collect();
        assert_eq!(got, vec![(0, 1_000), (1, 900), (2, 5_000)]);
    }

    #[test]
    fn size_limit_is_exact() {
        let probe = record(0, 0, b"0123456789");
        let mut builder = BatchBuilder::new(usize::MAX);
        builder.try_push(probe.clone()).expect("fits");
        let one = builder.size_bytes();

        let mut builder = BatchBuilder::new(one);
        builder.try_push(probe.clone()).expect("exactly fits");
        assert_eq!(builder.try_push(probe.clone()), Err(probe.clone()));
        let built = builder.finish(&BuildOptions::default()).expect("finish");
        assert_eq!(built.bytes.len(), one);

        let mut tiny = BatchBuilder::new(one - 1);
        assert_eq!(
            tiny.try_push(probe.clone()),
            Err(probe),
            "a lone oversized record comes back"
        );
        assert!(matches!(tiny.finish(&BuildOptions::default()), Err(Error::EmptyBatch)));
    }

    #[test]
    fn incompressible_records_fall_back_to_none() {
        // Pseudo-random bytes do not compress; the batch must never grow past its cap.
        let mut state = 0x1234_5678u32;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        for codec in Compression::ALL {
            let mut builder = BatchBuilder::new(8192);
            builder
                .try_push(Record::new(5, 1, None, Some(Bytes::from(noise.clone()))))
                .expect("fits");
            let cap = builder.size_bytes();
            let built = builder
                .finish(&BuildOptions {
                    compression: codec,
                    ..BuildOptions::default()
                })
                .expect("finish");
            assert_eq!(built.compression, Compression::None, "{codec}");
            assert_eq!(built.bytes.len(), cap);
            let batch = parse_one(built.bytes);
            assert_eq!(batch.header.compression().expect("known"), Compression::None);
            assert_eq!(batch.records().expect("records")[0].value.as_deref(), Some(&noise[..]));
        }
    }

    #[test]
    fn compressible_records_use_the_codec() {
        for codec in Compression::ALL {
            let mut builder = BatchBuilder::new(1 << 20);
            for offset in 0..100 {
                builder
                    .try_push(record(offset, 7, b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"))
                    .expect("fits");
            }
            let opts = BuildOptions {
                compression: codec,
                zstd_level: 19,
                ..BuildOptions::default()
            };
            let built = builder.finish(&opts).expect("finish");
            assert_eq!(built.compression, codec);
            if codec != Compression::None {
                assert!(built.bytes.len() < built.uncompressed_len, "{codec}");
            }
            let batch = parse_one(built.bytes);
            assert_eq!(batch.header.compression().expect("known"), codec);
            assert_eq!(batch.records().expect("records").len(), 100);
        }
    }

    #[test]
    fn extreme_timestamps_round_trip() {
        let mut builder = BatchBuilder::new(1 << 20);
        let stamps = [i64::MAX, i64::MIN, -1, 0, 1_700_000_000_000];
        for (i, ts) in stamps.iter().enumerate() {
            builder.try_push(record(i as i64, *ts, b"")).expect("fits");
        }
        let batch = parse_one(builder.finish(&BuildOptions::default()).expect("finish").bytes);
        let got: Vec<_> = batch.records().expect("records").iter().map(|r| r.timestamp).collect();
        assert_eq!(got, stamps);
        assert_eq!(batch.header.max_timestamp, i64::MAX);
    }

    #[test]
    fn encode_batch_keeps_offsets_and_gaps() {
        let records = [record(100, 5, b"a"), record(103, 4, b"b"), record(110, 9, b"c")];
        let opts = BuildOptions {
            compression: Compression::Lz4,
            ..BuildOptions::default()
        };
        let batch = parse_one(encode_batch(100, &records, &opts).expect("encode"));
        assert_eq!(batch.header.last_offset_delta, 10);
        assert_eq!(batch.header.next_offset(), 111);
        assert_eq!(batch.records().expect("records"), records);

        let empty = parse_one(encode_batch(50, &[], &BuildOptions::default()).expect("empty"));
        assert_eq!((empty.header.record_count, empty.header.next_offset()), (0, 51));
        assert_eq!(empty.records().expect("no records"), vec![]);

        assert!(matches!(
            encode_batch(100, &[record(99, 0, b"")], &BuildOptions::default()),
            Err(Error::Encode { offset: 99, .. })
        ));
    }

    #[test]
    fn control_batches_table() {
        // (commit, expected type)
        for (commit, expected) in [(true, ControlType::Commit), (false, ControlType::Abort)] {
            let bytes = encode_control_batch(42, 9, 2, commit, 1_234);
            let batch = parse_one(bytes);
            let h = &batch.header;
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(
                (h.base_offset, h.producer_id, h.producer_epoch, h.record_count),
                (42, 9, 2, 1)
            );
            assert_eq!(batch.control_type().expect("control"), Some(expected));
            let records = batch.records().expect("records");
            assert_eq!((records[0].offset, records[0].timestamp), (42, 1_234));
        }
    }

    #[test]
    fn control_key_edge_cases() {
        let control = |key: Option<&'static [u8]>| {
            let opts = BuildOptions {
                producer_id: 1,
                transactional: true,
                ..BuildOptions::default()
            };
            let records: Vec<Record> = key
                .map(|k| Record::new(0, 0, Some(Bytes::from_static(k)), None))
                .into_iter()
                .collect();
            parse_one(encode_with(0, &records, &opts, CONTROL_BIT).expect("encode"))
        };
        assert_eq!(
            control(Some(&[0, 0, 0, 7])).control_type().expect("other"),
            Some(ControlType::Other(7))
        );
        assert_eq!(control(None).control_type().expect("empty control batch"), None);
        assert!(control(Some(&[0, 0, 1])).control_type().is_err(), "short key");
        assert!(
            control(Some(&[0xff, 0xff, 0, 0])).control_type().is_err(),
            "negative version"
        );
    }

    #[test]
    fn builder_is_reusable_across_levels() {
        let mut builder = BatchBuilder::new(1 << 16);
        let mut fetch = Vec::new();
        for (round, level) in [1, 19, 3].into_iter().enumerate() {
            for i in 0..10 {
                builder
                    .try_push(record(round as i64 * 10 + i, 0, b"payload payload payload"))
                    .expect("fits");
            }
            let opts = BuildOptions {
                compression: Compression::Zstd,
                zstd_level: level,
                ..BuildOptions::default()
            };
            fetch.extend_from_slice(&builder.finish(&opts).expect("finish").bytes);
        }
        let total: usize = batches(Bytes::from(fetch))
            .map(|b| b.expect("valid").records().expect("records").len())
            .sum();
        assert_eq!(total, 30);
    }
}
