//! Unpacking one fetch answer into records, in offset order: whole batches only, CRC checked,
//! decompressed, control batches and aborted transactions dropped. Pure.

use tokio::sync::OwnedSemaphorePermit;

use super::error::{Error, Result};
use crate::batch::{self, Record, TxnFilter};
use crate::kafka::{FetchedPartition, TopicPartition};

/// Records unpacked from one fetch answer.
#[derive(Debug)]
pub(super) struct Chunk {
    pub(super) records: Vec<Record>,
    /// This chunk's share of the fetch buffer, given back once its records are re-batched.
    pub(super) buffer: Option<OwnedSemaphorePermit>,
    /// The source offset after the last batch looked at (control and aborted batches included).
    pub(super) next_offset: i64,
    /// Uncompressed record bytes, for the progress figures.
    pub(super) source_bytes: usize,
    /// Memory the chunk keeps alive: records, their list, and the fetch answer when records
    /// point into it (all of the response it is a slice of, see `FetchedPartition::retained`).
    pub(super) memory_bytes: usize,
    pub(super) high_watermark: i64,
}

/// What the reader hands the writer.
#[derive(Debug)]
pub(super) enum Fetched {
    Records(Chunk),
    /// Source records `from..to` were deleted before strait read them.
    Gap {
        from: i64,
        to: i64,
    },
}

/// What the fetch stage hands the sink, boxed: a partition's channel allocates its slots in
/// blocks of 32 whatever its capacity, and at 5,000 partitions 104-byte slots were 17 MB.
pub(super) type Handed = Box<super::error::Result<Fetched>>;

/// Unpacks one fetch answer: complete batches only, control batches and aborted transactions
/// dropped, records below `offset` (the start of a batch fetched from its middle) skipped.
/// Stops after the batch that brings the chunk's memory to `limit` bytes (at least one batch
/// is always unpacked); the rest of the answer is left for the next fetch.
///
/// No batch may take more than what is left of `cap` (the whole fetch buffer) once
/// decompressed, enforced while decompressing: a batch that does not fit after others ends the
/// chunk and comes first in the next one; one that does not fit alone is
/// [`Error::BatchTooLarge`].
pub(super) fn unpack(
    tp: &TopicPartition,
    offset: i64,
    answer: FetchedPartition,
    limit: usize,
    cap: usize,
) -> Result<Chunk> {
    // Memory the answer's bytes keep alive while any record points into them.
    let retained = answer.retained_bytes();
    let mut txn = TxnFilter::new(answer.aborted);
    let mut chunk = Chunk {
        records: Vec::new(),
        buffer: None,
        next_offset: offset,
        source_bytes: 0,
        memory_bytes: 0,
        high_watermark: answer.high_watermark,
    };
    // Records of uncompressed batches point into the answer itself, keeping all of it alive.
    let mut shares_answer = false;
    let batch_err = |offset, source| Error::Batch {
        topic: tp.topic.clone(),
        partition: tp.partition,
        offset,
        source,
    };
    for batch in batch::batches(answer.records) {
        if chunk.memory_bytes >= limit {
            break;
        }
        let batch = batch.map_err(|e| batch_err(chunk.next_offset, e))?;
        let header = &batch.header;
        if header.next_offset() <= chunk.next_offset {
            continue;
        }
        let keep = txn.keep(&batch).map_err(|e| batch_err(header.base_offset, e))?;
        if keep {
            let records = match batch.records_within(cap.saturating_sub(chunk.memory_bytes)) {
                Ok(records) => records,
                Err(batch::Error::TooLarge { .. }) if chunk.next_offset > offset => break,
                Err(batch::Error::TooLarge { .. }) => return Err(too_large(tp, &batch, cap)),
                Err(e) => return Err(batch_err(header.base_offset, e)),
            };
            shares_answer |= header.compression().is_ok_and(|c| c == batch::Compression::None);
            for r in records.into_iter().filter(|r| r.offset >= chunk.next_offset) {
                chunk.source_bytes += r.encoded_len_upper_bound();
                chunk.records.push(r);
            }
        }
        chunk.next_offset = header.next_offset();
        chunk.memory_bytes = chunk.source_bytes
            + chunk.records.capacity() * std::mem::size_of::<batch::Record>()
            + if shares_answer { retained } else { 0 };
    }
    Ok(chunk)
}

/// A batch larger than the whole fetch buffer once decompressed.
fn too_large(tp: &TopicPartition, batch: &batch::RawBatch, cap: usize) -> Error {
    Error::BatchTooLarge {
        topic: tp.topic.clone(),
        partition: tp.partition,
        offset: batch.header.base_offset,
        compressed: batch.bytes.len(),
        cap,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, BuildOptions, Compression};
    use crate::pipeline::fake::record;
    use bytes::Bytes;

    fn answer(records: Bytes, high_watermark: i64) -> FetchedPartition {
        FetchedPartition {
            high_watermark,
            records,
            ..FetchedPartition::default()
        }
    }

    fn source_batch(records: &[Record]) -> Bytes {
        let mut b = BatchBuilder::new(1 << 20);
        for r in records {
            b.try_push(r.clone()).expect("fits");
        }
        let built = b
            .finish(&BuildOptions {
                compression: Compression::None,
                ..BuildOptions::default()
            })
            .expect("builds");
        // Re-base the batch at the first record's offset, as a broker stores it.
        let mut bytes = built.bytes.to_vec();
        bytes[0..8].copy_from_slice(&records[0].offset.to_be_bytes());
        Bytes::from(bytes)
    }

    #[test]
    fn unpack_skips_records_before_the_fetch_offset() {
        let tp = TopicPartition::new("spans", 0);
        let recs: Vec<Record> = (10..15).map(|o| record(o, b"v")).collect();
        let chunk = unpack(&tp, 12, answer(source_batch(&recs), 15), usize::MAX, usize::MAX).expect("unpacks");
        let offsets: Vec<i64> = chunk.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![12, 13, 14]);
        assert_eq!(chunk.next_offset, 15);
    }

    #[test]
    fn unpack_stops_at_its_memory_limit_after_a_whole_batch() {
        let tp = TopicPartition::new("spans", 0);
        let batches: Vec<Bytes> = (0..3)
            .map(|b| source_batch(&[record(b * 2, b"0123456789"), record(b * 2 + 1, b"abcdefghij")]))
            .collect();
        let joined = Bytes::from(batches.concat());
        // A limit of one byte still unpacks the first batch whole, and nothing more.
        let chunk = unpack(&tp, 0, answer(joined.clone(), 6), 1, usize::MAX).expect("unpacks");
        assert_eq!(chunk.records.len(), 2);
        assert_eq!(chunk.next_offset, 2);
        // Uncompressed records point into the answer: all of it counts.
        assert!(chunk.memory_bytes >= joined.len(), "{}", chunk.memory_bytes);
        let all = unpack(&tp, 0, answer(joined, 6), usize::MAX, usize::MAX).expect("unpacks");
        assert_eq!((all.records.len(), all.next_offset), (6, 6));
    }

    #[test]
    fn unpack_ignores_a_truncated_tail() {
        let tp = TopicPartition::new("spans", 0);
        let first = source_batch(&[record(0, b"a"), record(1, b"b")]);
        let second = source_batch(&[record(2, b"c")]);
        let mut joined = first.to_vec();
        joined.extend_from_slice(&second[..second.len() - 3]);
        let chunk = unpack(&tp, 0, answer(Bytes::from(joined), 3), usize::MAX, usize::MAX).expect("unpacks");
        assert_eq!(chunk.records.len(), 2);
        assert_eq!(chunk.next_offset, 2);
    }

    #[test]
    fn unpack_reports_a_bad_crc_with_its_offset() {
        let tp = TopicPartition::new("spans", 4);
        let mut bytes = source_batch(&[record(40, b"x")]).to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let err = unpack(&tp, 40, answer(Bytes::from(bytes), 41), usize::MAX, usize::MAX).expect_err("bad crc");
        let text = err.to_string();
        assert!(text.contains("spans/4") && text.contains("40"), "{text}");
    }
}
