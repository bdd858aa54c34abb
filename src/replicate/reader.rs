//! The source side of a partition task: fetches raw batches within the shared fetch buffer,
//! unpacks them (CRC, codec, transactions) and hands records to the writer in offset order.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::error::{Error, Result};
use super::partition::{kafka_err, retry, Chunk, Fetched, TaskSettings};
use crate::batch::{self, TxnFilter};
use crate::kafka::{Cluster, OffsetSpec, ResponseError, TopicPartition};
use crate::telemetry;

/// The largest fetch strait grows to when a single batch exceeds the configured fetch size.
const MAX_FETCH_BYTES: i32 = 64 * 1024 * 1024;

/// The smallest fetch a partition asks for; idle partitions shrink to it.
const MIN_FETCH_BYTES: i32 = 64 * 1024;
/// How much larger than its fetched bytes a partition's first chunk is assumed to be once
/// decompressed, until its own answers tell.
const INITIAL_EXPANSION: f64 = 4.0;
/// The fetch buffer is counted in units of this many bytes.
const BUFFER_UNIT: usize = 1024;

/// Buffer units covering `bytes`.
pub(crate) fn buffer_units(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(BUFFER_UNIT).max(1)).unwrap_or(u32::MAX)
}

/// The next fetch size: doubled while answers come back at least half full (a backlog), halved
/// when they are mostly empty (caught up), within `MIN_FETCH_BYTES..=max`.
pub(crate) fn next_fetch_bytes(current: i32, fetched: usize, max: i32) -> i32 {
    let floor = MIN_FETCH_BYTES.min(max);
    let current = current.clamp(floor, max);
    if fetched >= current as usize / 2 {
        current.saturating_mul(2).min(max)
    } else if fetched < current as usize / 8 {
        (current / 2).max(floor)
    } else {
        current
    }
}

/// Whether an answer with no records left a backlog behind: records wait from `offset` below
/// the end a read_committed fetch can read (the last stable offset, when the broker gives one,
/// within the high watermark). A shared request spent its bytes on other partitions first; the
/// partition is not caught up and keeps its fetch size.
fn starved(f: &crate::kafka::FetchedPartition, offset: i64) -> bool {
    let end = match f.last_stable_offset {
        lso if lso >= 0 => lso.min(f.high_watermark),
        _ => f.high_watermark,
    };
    f.records.is_empty() && end > offset
}

/// Fetches a source partition and unpacks its batches into records, in offset order.
pub(super) struct SourceReader {
    pub(super) tp: TopicPartition,
    pub(super) labels: [(&'static str, String); 2],
    pub(super) cluster: Arc<Cluster>,
    pub(super) settings: Arc<TaskSettings>,
    pub(super) cancel: CancellationToken,
}

impl SourceReader {
    pub(super) async fn run(self, mut offset: i64, tx: mpsc::Sender<Result<Fetched>>) {
        let mut fetch_bytes = MIN_FETCH_BYTES.min(self.settings.fetch_max_bytes);
        // What a fetch is expected to take once unpacked: the size of the last answer (a broker
        // returns a first batch whole, whatever the fetch size; an idle partition's answers are
        // empty) times how much its records grew when decompressed. Reserving that before
        // fetching keeps the buffer an honest bound without idle long polls holding it.
        let mut last_len = fetch_bytes as usize;
        let mut expansion = INITIAL_EXPANSION;
        // Units to reserve for fetching again an answer that was dropped for lack of room.
        let mut refetch_reserving: Option<u32> = None;
        loop {
            // Memory first: a fetch asks only for what the shared buffer can hold.
            let expected = match last_len {
                // Idle: a long poll that most likely brings nothing holds almost nothing; if
                // data comes after all, the answer waits below for its real footprint.
                0 => BUFFER_UNIT as f64,
                n => n as f64 * expansion,
            };
            let reserved = refetch_reserving
                .take()
                .unwrap_or_else(|| buffer_units(expected as usize))
                .min(self.settings.buffer_units);
            let mut permit = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return,
                p = Arc::clone(&self.settings.buffer).acquire_many_owned(reserved) => match p {
                    Ok(p) => p,
                    Err(_closed) => return,
                },
            };
            let fetched = retry(&self.cancel, &self.cluster, &self.tp, "fetch", || async {
                let started = std::time::Instant::now();
                let f = self
                    .cluster
                    .fetch(&self.tp, offset, fetch_bytes, self.settings.fetch_max_wait_ms)
                    .await;
                metrics::histogram!(telemetry::FETCH_LATENCY).record(started.elapsed());
                f
            })
            .await;
            let fetched = match fetched {
                Ok(Some(f)) => f,
                Ok(None) => return,
                Err(e) if e.code() == Some(ResponseError::OffsetOutOfRange) => match self.out_of_range(offset).await {
                    Ok(Some(next)) => {
                        if next > offset && !self.send(&tx, Ok(Fetched::Gap { from: offset, to: next })).await {
                            return;
                        }
                        offset = next;
                        continue;
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                },
                Err(e) => {
                    let _ = tx.send(Err(kafka_err("source", "fetch", &self.tp, offset, e))).await;
                    return;
                }
            };
            // Some brokers answer a fetch below the log start with later data and no error: the
            // log start in the answer tells.
            if fetched.log_start_offset > offset {
                let to = fetched.log_start_offset;
                if !self.send(&tx, Ok(Fetched::Gap { from: offset, to })).await {
                    return;
                }
                offset = to;
            }
            let had_bytes = !fetched.records.is_empty();
            let fetched_len = fetched.records.len();
            let starved = starved(&fetched, offset);
            if !starved {
                last_len = fetched_len;
            }
            let chunk = match unpack(
                &self.tp,
                offset,
                fetched.records,
                fetched.aborted,
                fetched.high_watermark,
                reserved as usize * BUFFER_UNIT,
            ) {
                Ok(chunk) => chunk,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            if chunk.next_offset == offset {
                if had_bytes {
                    // Bytes came back but not one whole batch: the batch at `offset` is larger
                    // than the fetch size. Ask for more, up to a hard limit.
                    if fetch_bytes >= MAX_FETCH_BYTES {
                        let _ = tx
                            .send(Err(Error::RecordTooLarge {
                                topic: self.tp.topic.clone(),
                                partition: self.tp.partition,
                                offset,
                                size: MAX_FETCH_BYTES as usize,
                                max: MAX_FETCH_BYTES as usize,
                            }))
                            .await;
                        return;
                    }
                    fetch_bytes = fetch_bytes.saturating_mul(2).min(MAX_FETCH_BYTES);
                } else if !starved {
                    fetch_bytes = next_fetch_bytes(fetch_bytes, 0, self.settings.fetch_max_bytes);
                }
                // Caught up: the broker held the fetch for max_wait already, so loop at once.
                if self.cancel.is_cancelled() {
                    return;
                }
                continue;
            }
            // Hold what the chunk really takes (records may be larger than the raw bytes once
            // decompressed): give back the surplus, or take more if it is free. A broker returns
            // a first batch whole even above the fetch size (some return far more than asked);
            // when the buffer cannot cover that now, the answer is dropped and fetched again
            // once its size is reserved, so no reader ever holds data the buffer does not count.
            let footprint = buffer_units(chunk.memory_bytes).min(self.settings.buffer_units);
            expansion = (chunk.source_bytes as f64 / fetched_len.max(1) as f64).max(1.0);
            if footprint < reserved {
                drop(permit.split((reserved - footprint) as usize));
            } else if footprint > reserved {
                match Arc::clone(&self.settings.buffer).try_acquire_many_owned(footprint - reserved) {
                    Ok(more) => permit.merge(more),
                    Err(_) => {
                        drop(chunk);
                        drop(permit);
                        refetch_reserving = Some(footprint);
                        continue;
                    }
                }
            }
            let mut chunk = chunk;
            chunk.buffer = Some(permit);
            fetch_bytes = next_fetch_bytes(fetch_bytes, fetched_len, self.settings.fetch_max_bytes);
            offset = chunk.next_offset;
            metrics::counter!(telemetry::SOURCE_RECORDS, &self.labels).increment(chunk.records.len() as u64);
            if !self.send(&tx, Ok(Fetched::Records(chunk))).await {
                return;
            }
        }
    }

    /// Hands a message to the writer; `false` when strait is stopping or the writer is gone.
    async fn send(&self, tx: &mpsc::Sender<Result<Fetched>>, msg: Result<Fetched>) -> bool {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => false,
            sent = tx.send(msg) => sent.is_ok(),
        }
    }

    /// The fetch offset is outside the log. Below the log start, data was deleted before strait
    /// read it: a gap, and replication goes on from the log start. Above the log end the
    /// partition was recreated: that needs an operator.
    async fn out_of_range(&self, offset: i64) -> Result<Option<i64>> {
        let earliest = retry(&self.cancel, &self.cluster, &self.tp, "list offsets", || {
            self.cluster.list_offset(&self.tp, OffsetSpec::Earliest)
        })
        .await
        .map_err(|e| kafka_err("source", "list offsets", &self.tp, offset, e))?;
        let Some(earliest) = earliest else { return Ok(None) };
        if offset < earliest {
            return Ok(Some(earliest));
        }
        let latest = retry(&self.cancel, &self.cluster, &self.tp, "list offsets", || {
            self.cluster.list_offset(&self.tp, OffsetSpec::Latest)
        })
        .await
        .map_err(|e| kafka_err("source", "list offsets", &self.tp, offset, e))?;
        match latest {
            None => Ok(None),
            Some(latest) if offset > latest => Err(Error::BeyondLogEnd {
                topic: self.tp.topic.clone(),
                partition: self.tp.partition,
                offset,
                log_end: latest,
            }),
            // In range after all (a leader change raced the fetch): try again.
            Some(_) => Ok(Some(offset)),
        }
    }
}

/// Unpacks one fetch answer: complete batches only, control batches and aborted transactions
/// dropped, records below `offset` (the start of a batch fetched from its middle) skipped.
/// Stops after the batch that brings the chunk's memory to `limit` bytes (at least one batch
/// is always unpacked); the rest of the answer is left for the next fetch.
pub(super) fn unpack(
    tp: &TopicPartition,
    offset: i64,
    records: Bytes,
    aborted: Vec<(i64, i64)>,
    high_watermark: i64,
    limit: usize,
) -> Result<Chunk> {
    let raw_len = records.len();
    let mut txn = TxnFilter::new(aborted);
    let mut chunk = Chunk {
        records: Vec::new(),
        buffer: None,
        next_offset: offset,
        source_bytes: 0,
        memory_bytes: 0,
        high_watermark,
    };
    // Records of uncompressed batches point into the answer itself, keeping all of it alive.
    let mut shares_answer = false;
    let batch_err = |offset, source| Error::Batch {
        topic: tp.topic.clone(),
        partition: tp.partition,
        offset,
        source,
    };
    for batch in batch::batches(records) {
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
            let records = batch.records().map_err(|e| batch_err(header.base_offset, e))?;
            shares_answer |= header.compression().is_ok_and(|c| c == batch::Compression::None);
            for r in records.into_iter().filter(|r| r.offset >= chunk.next_offset) {
                chunk.source_bytes += r.encoded_len_upper_bound();
                chunk.records.push(r);
            }
        }
        chunk.next_offset = header.next_offset();
        chunk.memory_bytes = chunk.source_bytes
            + chunk.records.capacity() * std::mem::size_of::<batch::Record>()
            + if shares_answer { raw_len } else { 0 };
    }
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, BuildOptions, Compression, Record};

    fn record(offset: i64, value: &'static [u8]) -> Record {
        Record {
            offset,
            timestamp: 1_700_000_000_000 + offset,
            key: None,
            value: Some(Bytes::from_static(value)),
            headers: Bytes::from_static(&[0]),
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
    fn fetch_size_grows_with_a_backlog_and_shrinks_when_idle() {
        let max = 1 << 20;
        assert_eq!(next_fetch_bytes(64 * 1024, 64 * 1024, max), 128 * 1024);
        assert_eq!(next_fetch_bytes(512 * 1024, 400 * 1024, max), max);
        assert_eq!(next_fetch_bytes(max, max as usize, max), max);
        assert_eq!(next_fetch_bytes(max, 0, max), max / 2);
        assert_eq!(next_fetch_bytes(64 * 1024, 0, max), 64 * 1024);
        assert_eq!(next_fetch_bytes(256 * 1024, 64 * 1024, max), 256 * 1024);
        // A configured maximum below the usual floor is respected.
        assert_eq!(next_fetch_bytes(4096, 4096, 4096), 4096);
    }

    #[test]
    fn an_empty_answer_below_the_stable_end_is_a_starved_backlog() {
        let answer = |hw, lso, records: &'static [u8]| crate::kafka::FetchedPartition {
            high_watermark: hw,
            last_stable_offset: lso,
            log_start_offset: 0,
            records: Bytes::from_static(records),
            aborted: Vec::new(),
        };
        // Other partitions took the request's bytes: records wait at 10..100.
        assert!(starved(&answer(100, 100, b""), 10));
        assert!(starved(&answer(100, -1, b""), 10));
        // Caught up, or held back by an open transaction: nothing to read yet.
        assert!(!starved(&answer(10, 10, b""), 10));
        assert!(!starved(&answer(100, 10, b""), 10));
        // Records came back.
        assert!(!starved(&answer(100, 100, b"x"), 10));
    }

    #[test]
    fn buffer_units_round_up_and_never_reach_zero() {
        assert_eq!(buffer_units(0), 1);
        assert_eq!(buffer_units(1), 1);
        assert_eq!(buffer_units(1024), 1);
        assert_eq!(buffer_units(1025), 2);
        assert_eq!(buffer_units(128 << 20), 131_072);
    }

    #[test]
    fn unpack_skips_records_before_the_fetch_offset() {
        let tp = TopicPartition::new("spans", 0);
        let recs: Vec<Record> = (10..15).map(|o| record(o, b"v")).collect();
        let chunk = unpack(&tp, 12, source_batch(&recs), vec![], 15, usize::MAX).expect("unpacks");
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
        let answer = Bytes::from(batches.concat());
        // A limit of one byte still unpacks the first batch whole, and nothing more.
        let chunk = unpack(&tp, 0, answer.clone(), vec![], 6, 1).expect("unpacks");
        assert_eq!(chunk.records.len(), 2);
        assert_eq!(chunk.next_offset, 2);
        // Uncompressed records point into the answer: all of it counts.
        assert!(chunk.memory_bytes >= answer.len(), "{}", chunk.memory_bytes);
        let all = unpack(&tp, 0, answer, vec![], 6, usize::MAX).expect("unpacks");
        assert_eq!((all.records.len(), all.next_offset), (6, 6));
    }

    #[test]
    fn unpack_ignores_a_truncated_tail() {
        let tp = TopicPartition::new("spans", 0);
        let first = source_batch(&[record(0, b"a"), record(1, b"b")]);
        let second = source_batch(&[record(2, b"c")]);
        let mut joined = first.to_vec();
        joined.extend_from_slice(&second[..second.len() - 3]);
        let chunk = unpack(&tp, 0, Bytes::from(joined), vec![], 3, usize::MAX).expect("unpacks");
        assert_eq!(chunk.records.len(), 2);
        assert_eq!(chunk.next_offset, 2);
    }

    #[test]
    fn unpack_reports_a_bad_crc_with_its_offset() {
        let tp = TopicPartition::new("spans", 4);
        let mut bytes = source_batch(&[record(40, b"x")]).to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let err = unpack(&tp, 40, Bytes::from(bytes), vec![], 41, usize::MAX).expect_err("bad crc");
        let text = err.to_string();
        assert!(text.contains("spans/4") && text.contains("40"), "{text}");
    }
}
