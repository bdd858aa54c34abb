//! One source partition's replication: a [`SourceReader`] fetches and unpacks batches, a
//! [`SinkWriter`] re-batches, recompresses and produces them in order. They are joined by a small
//! bounded channel, so at most a few fetch answers per partition are held in memory whatever the
//! backlog.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::{Error, Result};
use super::progress::{PartitionState, Progress};
use crate::batch::{self, BatchBuilder, BuildOptions, Compression, Record, TxnFilter};
use crate::config::StartFrom;
use crate::kafka::{Backoff, Cluster, OffsetSpec, ResponseError, TopicPartition};

/// Fetch answers waiting for the writer. Small: the writer is the slow side when the link is.
const CHUNK_QUEUE: usize = 2;
/// The largest fetch strait grows to when a single batch exceeds the configured fetch size.
const MAX_FETCH_BYTES: i32 = 64 * 1024 * 1024;

/// Settings shared by all partition tasks.
#[derive(Clone, Debug)]
pub(crate) struct TaskSettings {
    pub(crate) linger: Duration,
    pub(crate) zstd_level: i32,
    pub(crate) fetch_max_bytes: i32,
    pub(crate) fetch_max_wait_ms: i32,
    pub(crate) start_from: StartFrom,
    pub(crate) produce_timeout_ms: i32,
}

/// Everything one partition task needs.
#[derive(Debug)]
pub(crate) struct PartitionTask {
    pub(crate) source_tp: TopicPartition,
    pub(crate) target_tp: TopicPartition,
    pub(crate) source: Arc<Cluster>,
    pub(crate) target: Arc<Cluster>,
    pub(crate) settings: Arc<TaskSettings>,
    /// The smaller of batch.max_bytes and the target topic's max.message.bytes.
    pub(crate) max_batch_bytes: usize,
    pub(crate) progress: Arc<Progress>,
    pub(crate) cancel: CancellationToken,
}

/// Records unpacked from one fetch answer.
#[derive(Debug)]
struct Chunk {
    records: Vec<Record>,
    /// The source offset after the last batch looked at (control and aborted batches included).
    next_offset: i64,
    /// Uncompressed record bytes, for the progress figures.
    source_bytes: usize,
    high_watermark: i64,
}

impl PartitionTask {
    /// Replicates until cancelled (then flushes what was read and returns `Ok`) or until an
    /// error that needs an operator.
    pub(crate) async fn run(self) -> Result<()> {
        let tp = self.source_tp.clone();
        self.progress.update(&tp, |s| {
            s.state = PartitionState::Starting;
            s.target = Some(self.target_tp.clone());
        });
        let Some(start) = self.start_offset().await? else {
            self.progress.update(&tp, |s| s.state = PartitionState::Stopped);
            return Ok(());
        };
        tracing::info!(topic = %tp.topic, partition = tp.partition, offset = start, target = %self.target_tp, "partition replication starting");
        self.progress.update(&tp, |s| {
            s.state = PartitionState::Running;
            s.next_source_offset = start;
        });

        let (tx, rx) = mpsc::channel(CHUNK_QUEUE);
        // The reader also stops when the writer does (halted partition), not only on shutdown.
        let reader_cancel = self.cancel.child_token();
        let reader = SourceReader {
            tp: tp.clone(),
            cluster: Arc::clone(&self.source),
            settings: Arc::clone(&self.settings),
            cancel: reader_cancel.clone(),
        };
        let writer = SinkWriter {
            source_tp: tp.clone(),
            target_tp: self.target_tp.clone(),
            cluster: Arc::clone(&self.target),
            settings: Arc::clone(&self.settings),
            builder: BatchBuilder::new(self.max_batch_bytes),
            max_batch_bytes: self.max_batch_bytes,
            progress: Arc::clone(&self.progress),
            next_source_offset: start,
        };
        let write = async {
            let written = writer.run(rx).await;
            reader_cancel.cancel();
            written
        };
        let (_, written) = tokio::join!(reader.run(start, tx), write);
        let state = match &written {
            Ok(()) => PartitionState::Stopped,
            Err(e) => PartitionState::Halted(crate::replicate::error_chain(e)),
        };
        self.progress.update(&tp, |s| s.state = state);
        written
    }

    /// Where to start: `start_from` for a partition never replicated. `None` when cancelled first.
    async fn start_offset(&self) -> Result<Option<i64>> {
        let spec = match self.settings.start_from {
            StartFrom::Earliest => OffsetSpec::Earliest,
            StartFrom::Latest => OffsetSpec::Latest,
        };
        retry(&self.cancel, &self.source, &self.source_tp, "list offsets", || {
            self.source.list_offset(&self.source_tp, spec)
        })
        .await
        .map_err(|source| kafka_err("source", "list offsets", &self.source_tp, -1, source))
    }
}

fn kafka_err(
    cluster: &'static str,
    action: &'static str,
    tp: &TopicPartition,
    offset: i64,
    source: crate::kafka::Error,
) -> Error {
    Error::Kafka {
        cluster,
        action,
        topic: tp.topic.clone(),
        partition: tp.partition,
        offset,
        source: Box::new(source),
    }
}

/// Runs `op` until it succeeds, fails with a non-retriable error, or `cancel` fires (`Ok(None)`).
/// Retriable failures refresh the partition's leader when the error says it moved, and are logged
/// once per distinct cause rather than once per attempt.
async fn retry<T, F, Fut>(
    cancel: &CancellationToken,
    cluster: &Cluster,
    tp: &TopicPartition,
    action: &str,
    mut op: F,
) -> Result<Option<T>, crate::kafka::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::kafka::Error>>,
{
    let mut backoff = Backoff::default();
    let mut last_cause: Option<String> = None;
    loop {
        let outcome = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(None),
            r = op() => r,
        };
        match outcome {
            Ok(v) => {
                if last_cause.is_some() {
                    tracing::info!(cluster = cluster.name(), topic = %tp.topic, partition = tp.partition, action, "recovered");
                }
                return Ok(Some(v));
            }
            Err(e) if e.is_retriable() => {
                if e.needs_metadata_refresh() {
                    cluster.invalidate(tp);
                }
                let cause = e.to_string();
                if last_cause.as_deref() != Some(cause.as_str()) {
                    tracing::warn!(cluster = cluster.name(), topic = %tp.topic, partition = tp.partition, action, error = %crate::replicate::error_chain(&e), "retrying");
                    last_cause = Some(cause);
                }
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Fetches a source partition and unpacks its batches into records, in offset order.
struct SourceReader {
    tp: TopicPartition,
    cluster: Arc<Cluster>,
    settings: Arc<TaskSettings>,
    cancel: CancellationToken,
}

impl SourceReader {
    async fn run(self, mut offset: i64, tx: mpsc::Sender<Result<Chunk>>) {
        let mut fetch_bytes = self.settings.fetch_max_bytes;
        loop {
            let fetched = retry(&self.cancel, &self.cluster, &self.tp, "fetch", || {
                self.cluster
                    .fetch(&self.tp, offset, fetch_bytes, self.settings.fetch_max_wait_ms)
            })
            .await;
            let fetched = match fetched {
                Ok(Some(f)) => f,
                Ok(None) => return,
                Err(e) if e.code() == Some(ResponseError::OffsetOutOfRange) => match self.out_of_range(offset).await {
                    Ok(Some(next)) => {
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
            let had_bytes = !fetched.records.is_empty();
            let chunk = match unpack(
                &self.tp,
                offset,
                fetched.records,
                fetched.aborted,
                fetched.high_watermark,
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
                }
                // Caught up: the broker held the fetch for max_wait already, so loop at once.
                if self.cancel.is_cancelled() {
                    return;
                }
                continue;
            }
            fetch_bytes = self.settings.fetch_max_bytes;
            offset = chunk.next_offset;
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return,
                sent = tx.send(Ok(chunk)) => if sent.is_err() { return },
            }
        }
    }

    /// The fetch offset is outside the log. Below the log start, data was deleted before strait
    /// read it: a gap, logged with its range, and replication goes on from the log start. Above
    /// the log end the partition was recreated: that needs an operator.
    async fn out_of_range(&self, offset: i64) -> Result<Option<i64>> {
        let earliest = retry(&self.cancel, &self.cluster, &self.tp, "list offsets", || {
            self.cluster.list_offset(&self.tp, OffsetSpec::Earliest)
        })
        .await
        .map_err(|e| kafka_err("source", "list offsets", &self.tp, offset, e))?;
        let Some(earliest) = earliest else { return Ok(None) };
        if offset < earliest {
            tracing::warn!(topic = %self.tp.topic, partition = self.tp.partition, from = offset, to = earliest - 1,
                missing = earliest - offset, "source log truncated before replication: records lost to retention or deletion");
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
fn unpack(
    tp: &TopicPartition,
    offset: i64,
    records: Bytes,
    aborted: Vec<(i64, i64)>,
    high_watermark: i64,
) -> Result<Chunk> {
    let mut txn = TxnFilter::new(aborted);
    let mut chunk = Chunk {
        records: Vec::new(),
        next_offset: offset,
        source_bytes: 0,
        high_watermark,
    };
    let batch_err = |offset, source| Error::Batch {
        topic: tp.topic.clone(),
        partition: tp.partition,
        offset,
        source,
    };
    for batch in batch::batches(records) {
        let batch = batch.map_err(|e| batch_err(chunk.next_offset, e))?;
        let header = &batch.header;
        if header.next_offset() <= chunk.next_offset {
            continue;
        }
        let keep = txn.keep(&batch).map_err(|e| batch_err(header.base_offset, e))?;
        if keep {
            let records = batch.records().map_err(|e| batch_err(header.base_offset, e))?;
            for r in records.into_iter().filter(|r| r.offset >= chunk.next_offset) {
                chunk.source_bytes += r.encoded_len_upper_bound();
                chunk.records.push(r);
            }
        }
        chunk.next_offset = header.next_offset();
    }
    Ok(chunk)
}

/// Re-batches records into target batches and produces them, one at a time, in order.
struct SinkWriter {
    source_tp: TopicPartition,
    target_tp: TopicPartition,
    cluster: Arc<Cluster>,
    settings: Arc<TaskSettings>,
    builder: BatchBuilder,
    max_batch_bytes: usize,
    progress: Arc<Progress>,
    /// Source offset after everything the target acknowledged.
    next_source_offset: i64,
}

impl SinkWriter {
    async fn run(mut self, mut rx: mpsc::Receiver<Result<Chunk>>) -> Result<()> {
        let mut linger_until: Option<Instant> = None;
        // Source offset after everything pushed into the builder (control batches included).
        let mut pushed_until = self.next_source_offset;
        let mut pending_source_bytes = 0usize;
        loop {
            let deadline = linger_until;
            let msg = tokio::select! {
                biased;
                _ = sleep_until(deadline), if deadline.is_some() => {
                    self.flush(pushed_until, &mut pending_source_bytes).await?;
                    linger_until = None;
                    continue;
                }
                msg = rx.recv() => msg,
            };
            match msg {
                None => {
                    // The reader stopped (shutdown): write what was read.
                    return self.flush(pushed_until, &mut pending_source_bytes).await;
                }
                Some(Err(e)) => {
                    self.flush(pushed_until, &mut pending_source_bytes).await?;
                    return Err(e);
                }
                Some(Ok(chunk)) => {
                    self.progress
                        .update(&self.source_tp, |s| s.source_high_watermark = chunk.high_watermark);
                    for record in chunk.records {
                        if let Err(record) = self.builder.try_push(record) {
                            let last = self.builder.last_offset().map_or(pushed_until, |o| o + 1);
                            self.flush(last, &mut pending_source_bytes).await?;
                            if let Err(record) = self.builder.try_push(record) {
                                return Err(Error::RecordTooLarge {
                                    topic: self.source_tp.topic.clone(),
                                    partition: self.source_tp.partition,
                                    offset: record.offset,
                                    size: record.encoded_len_upper_bound(),
                                    max: self.max_batch_bytes,
                                });
                            }
                        }
                    }
                    pending_source_bytes += chunk.source_bytes;
                    pushed_until = chunk.next_offset;
                    if self.builder.is_empty() {
                        // Only control or aborted batches: nothing to write, the position moves.
                        self.acknowledge(pushed_until, 0, 0, 0);
                    } else if linger_until.is_none() {
                        linger_until = Some(Instant::now() + self.settings.linger);
                    }
                }
            }
        }
    }

    /// Produces the builder's records as one batch; on success everything below `until` is
    /// acknowledged.
    async fn flush(&mut self, until: i64, source_bytes: &mut usize) -> Result<()> {
        if self.builder.is_empty() {
            return Ok(());
        }
        let opts = BuildOptions {
            compression: Compression::Zstd,
            zstd_level: self.settings.zstd_level,
            ..BuildOptions::default()
        };
        let first = self.builder.first_offset().unwrap_or(until);
        let built = self.builder.finish(&opts).map_err(|source| Error::Build {
            topic: self.source_tp.topic.clone(),
            partition: self.source_tp.partition,
            offset: first,
            source,
        })?;
        let wire_bytes = built.bytes.len();
        let never = CancellationToken::new();
        // In-flight data is written even during shutdown: the shutdown grace period bounds it.
        let ack = retry(&never, &self.cluster, &self.target_tp, "produce", || {
            self.cluster
                .produce(&self.target_tp, built.bytes.clone(), self.settings.produce_timeout_ms)
        })
        .await
        .map_err(|e| {
            if e.code() == Some(ResponseError::MessageTooLarge) {
                Error::RecordTooLarge {
                    topic: self.source_tp.topic.clone(),
                    partition: self.source_tp.partition,
                    offset: first,
                    size: wire_bytes,
                    max: self.max_batch_bytes,
                }
            } else {
                kafka_err("target", "produce", &self.target_tp, first, e)
            }
        })?;
        let base = ack.map_or(-1, |a| a.base_offset);
        tracing::debug!(topic = %self.source_tp.topic, partition = self.source_tp.partition, from = first,
            to = built.last_source_offset, records = built.record_count, wire_bytes, target_offset = base, "batch written");
        self.acknowledge(
            until,
            built.record_count as u64,
            std::mem::take(source_bytes) as u64,
            wire_bytes as u64,
        );
        self.progress.update(&self.source_tp, |s| {
            s.next_target_offset = base + i64::from(built.record_count)
        });
        Ok(())
    }

    fn acknowledge(&mut self, until: i64, records: u64, source_bytes: u64, wire_bytes: u64) {
        self.next_source_offset = until;
        self.progress.update(&self.source_tp, |s| {
            s.next_source_offset = until;
            s.records += records;
            s.source_bytes += source_bytes;
            s.wire_bytes += wire_bytes;
        });
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BuildOptions;

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
    fn unpack_skips_records_before_the_fetch_offset() {
        let tp = TopicPartition::new("spans", 0);
        let recs: Vec<Record> = (10..15).map(|o| record(o, b"v")).collect();
        let chunk = unpack(&tp, 12, source_batch(&recs), vec![], 15).expect("unpacks");
        let offsets: Vec<i64> = chunk.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![12, 13, 14]);
        assert_eq!(chunk.next_offset, 15);
    }

    #[test]
    fn unpack_ignores_a_truncated_tail() {
        let tp = TopicPartition::new("spans", 0);
        let first = source_batch(&[record(0, b"a"), record(1, b"b")]);
        let second = source_batch(&[record(2, b"c")]);
        let mut joined = first.to_vec();
        joined.extend_from_slice(&second[..second.len() - 3]);
        let chunk = unpack(&tp, 0, Bytes::from(joined), vec![], 3).expect("unpacks");
        assert_eq!(chunk.records.len(), 2);
        assert_eq!(chunk.next_offset, 2);
    }

    #[test]
    fn unpack_reports_a_bad_crc_with_its_offset() {
        let tp = TopicPartition::new("spans", 4);
        let mut bytes = source_batch(&[record(40, b"x")]).to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let err = unpack(&tp, 40, Bytes::from(bytes), vec![], 41).expect_err("bad crc");
        let text = err.to_string();
        assert!(text.contains("spans/4") && text.contains("40"), "{text}");
    }
}
