//! One source partition's replication: a [`SourceReader`] fetches and unpacks batches, a
//! [`SinkWriter`] re-batches, recompresses and produces them in order. They are joined by a small
//! bounded channel, so at most a few fetch answers per partition are held in memory whatever the
//! backlog.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::{Error, Result};
use super::progress::{PartitionState, Progress};
use super::resume::{plan_resume, Position, Resume, Tail};
use crate::batch::{self, BatchBuilder, BuildOptions, Compression, Record, TxnFilter};
use crate::budget::{Budget, LevelControl};
use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::config::{OnTargetReset, StartFrom};
use crate::kafka::{Backoff, Cluster, OffsetSpec, ProduceAck, ProducerIdentity, ResponseError, TopicPartition};
use crate::telemetry;

/// Fetch answers waiting for the writer. Small: the writer is the slow side when the link is.
const CHUNK_QUEUE: usize = 2;
/// The largest fetch strait grows to when a single batch exceeds the configured fetch size.
const MAX_FETCH_BYTES: i32 = 64 * 1024 * 1024;

/// Settings shared by all partition tasks.
#[derive(Clone, Debug)]
pub(crate) struct TaskSettings {
    pub(crate) linger: Duration,
    /// The zstd level in use, adapted to the budget.
    pub(crate) level: Arc<LevelControl>,
    /// The WAN budget shared by every partition.
    pub(crate) budget: Arc<Budget>,
    /// Fetched data held across all partitions, in [`BUFFER_UNIT`]s (`fetch.buffer_max_bytes`).
    pub(crate) buffer: Arc<Semaphore>,
    /// The buffer's size in units: no fetch reserves more.
    pub(crate) buffer_units: u32,
    pub(crate) fetch_max_bytes: i32,
    pub(crate) fetch_max_wait_ms: i32,
    pub(crate) start_from: StartFrom,
    pub(crate) produce_timeout_ms: i32,
    pub(crate) on_target_reset: OnTargetReset,
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
    /// The partition's last checkpoint, if it was ever replicated.
    pub(crate) checkpoint: Option<Checkpoint>,
    /// Where a fresh partition's first checkpoint is written before any data.
    pub(crate) store: Arc<CheckpointStore>,
}

/// The smallest fetch a partition asks for; idle partitions shrink to it.
const MIN_FETCH_BYTES: i32 = 64 * 1024;
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

/// Records unpacked from one fetch answer.
#[derive(Debug)]
struct Chunk {
    records: Vec<Record>,
    /// This chunk's share of the fetch buffer, given back once its records are re-batched.
    buffer: Option<OwnedSemaphorePermit>,
    /// The source offset after the last batch looked at (control and aborted batches included).
    next_offset: i64,
    /// Uncompressed record bytes, for the progress figures.
    source_bytes: usize,
    high_watermark: i64,
}

/// What the reader hands the writer.
#[derive(Debug)]
enum Fetched {
    Records(Chunk),
    /// Source records `from..to` were deleted before strait read them.
    Gap {
        from: i64,
        to: i64,
    },
}

/// Why the writer stopped.
#[derive(Debug)]
enum Stop {
    /// The target's state is uncertain (producer state lost, foreign writes, an ambiguous
    /// answer): reconcile against the target again from the last acknowledged position.
    /// `keep` carries the producer identity and the sequence at `at` when they are still valid.
    Resync {
        at: Position,
        why: String,
        keep: Option<(ProducerIdentity, i32)>,
    },
    /// Needs an operator.
    Halt(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Halt(e)
    }
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
        let result = self.replicate().await;
        let state = match &result {
            Ok(()) => PartitionState::Stopped,
            Err(e) => PartitionState::Halted(crate::replicate::error_chain(e)),
        };
        let halted = matches!(state, PartitionState::Halted(_));
        metrics::gauge!(telemetry::PARTITION_HALTED, &telemetry::labels(&tp.topic, tp.partition))
            .set(f64::from(u8::from(halted)));
        self.progress.update(&tp, |s| s.state = state);
        result
    }

    async fn replicate(&self) -> Result<()> {
        let tp = &self.source_tp;
        let Some(mut resume) = self.resume().await? else {
            return Ok(());
        };
        let writer_epoch = self.checkpoint.as_ref().map_or(0, |c| c.writer_epoch + 1);
        // The producer identity and the sequence of the first record at `resume.at`, when the
        // last pipeline's identity is still good (its batches can still be deduplicated).
        let mut carried: Option<(ProducerIdentity, i32)> = None;
        let mut backoff = Backoff::default();
        loop {
            tracing::info!(topic = %tp.topic, partition = tp.partition, source_offset = resume.at.source,
                target_offset = resume.at.target, already_written = resume.already_written, target = %self.target_tp,
                "partition replication starting");
            self.progress.update(tp, |s| {
                s.state = PartitionState::Running;
                s.next_source_offset = resume.at.source;
                s.next_target_offset = resume.at.target;
                s.writer_epoch = writer_epoch;
                s.checkpointable = true;
            });
            let (producer, sequence) = match carried.take() {
                Some((p, seq)) => (p, seq.wrapping_add(resume.already_written as i32) & i32::MAX),
                None => {
                    let Some(p) = retry(&self.cancel, &self.target, &self.target_tp, "init producer id", || {
                        self.target.init_producer_id(self.settings.produce_timeout_ms)
                    })
                    .await
                    .map_err(|e| kafka_err("target", "init producer id", &self.target_tp, resume.at.target, e))?
                    else {
                        return Ok(());
                    };
                    (p, 0)
                }
            };
            let started = resume.at;
            match self.pipeline(resume, producer, sequence).await {
                Ok(()) => return Ok(()),
                Err(Stop::Halt(e)) => return Err(e),
                Err(Stop::Resync { at, why, keep }) => {
                    tracing::warn!(topic = %tp.topic, partition = tp.partition, source_offset = at.source,
                        target_offset = at.target, reason = %why, "target state uncertain: reconciling with the target");
                    if at != started {
                        backoff.reset();
                    }
                    tokio::select! {
                        _ = self.cancel.cancelled() => {}
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                    let Some(end) = self.target_end(at.target).await? else {
                        return Ok(());
                    };
                    resume = match plan_resume(at, end) {
                        Some(r) => r,
                        None => return Err(self.target_behind(at, end)),
                    };
                    carried = keep;
                }
            }
        }
    }

    /// Runs the reader and the writer from `resume` until shutdown or a stop.
    async fn pipeline(&self, resume: Resume, producer: ProducerIdentity, sequence: i32) -> Result<(), Stop> {
        let (tx, rx) = mpsc::channel(CHUNK_QUEUE);
        // The reader also stops when the writer does (halt or resync), not only on shutdown.
        let reader_cancel = self.cancel.child_token();
        let reader = SourceReader {
            tp: self.source_tp.clone(),
            labels: telemetry::labels(&self.source_tp.topic, self.source_tp.partition),
            cluster: Arc::clone(&self.source),
            settings: Arc::clone(&self.settings),
            cancel: reader_cancel.clone(),
        };
        let writer = SinkWriter {
            source_tp: self.source_tp.clone(),
            target_tp: self.target_tp.clone(),
            cluster: Arc::clone(&self.target),
            settings: Arc::clone(&self.settings),
            builder: BatchBuilder::new(self.max_batch_bytes),
            max_batch_bytes: self.max_batch_bytes,
            progress: Arc::clone(&self.progress),
            acked: resume.at,
            acked_sequence: sequence,
            tail: Tail::new(resume.already_written),
            producer,
            next_sequence: sequence,
            in_flight: VecDeque::new(),
            builder_max_timestamp: i64::MIN,
            labels: telemetry::labels(&self.source_tp.topic, self.source_tp.partition),
        };
        let write = async {
            let written = writer.run(rx).await;
            reader_cancel.cancel();
            written
        };
        let (_, written) = tokio::join!(reader.run(resume.at.source, tx), write);
        written
    }

    /// The starting point: from the checkpoint, reconciled with the target's end; or, for a
    /// partition never replicated, `start_from` on the source and the target's current end,
    /// checkpointed before any data is written. `None` when cancelled first.
    async fn resume(&self) -> Result<Option<Resume>> {
        let Some(end) = self.target_end(0).await? else {
            return Ok(None);
        };
        if let Some(cp) = &self.checkpoint {
            let at = Position {
                source: cp.next_source_offset,
                target: cp.next_target_offset,
            };
            match plan_resume(at, end) {
                Some(r) => return Ok(Some(r)),
                None if self.settings.on_target_reset == OnTargetReset::Halt => return Err(self.target_behind(at, end)),
                None => tracing::warn!(topic = %self.source_tp.topic, partition = self.source_tp.partition,
                    checkpoint_target_offset = at.target, target_end = end,
                    "target partition is behind its checkpoint: replicating it again (on_target_reset = replicate_again)"),
            }
        }
        let spec = match self.settings.start_from {
            StartFrom::Earliest => OffsetSpec::Earliest,
            StartFrom::Latest => OffsetSpec::Latest,
        };
        let Some(source) = retry(&self.cancel, &self.source, &self.source_tp, "list offsets", || {
            self.source.list_offset(&self.source_tp, spec)
        })
        .await
        .map_err(|e| kafka_err("source", "list offsets", &self.source_tp, -1, e))?
        else {
            return Ok(None);
        };
        let at = Position { source, target: end };
        let first = Checkpoint {
            replication_id: self.store.replication_id().to_owned(),
            source_topic: self.source_tp.topic.clone(),
            source_partition: self.source_tp.partition,
            target_topic: self.target_tp.topic.clone(),
            next_source_offset: at.source,
            next_target_offset: at.target,
            writer_epoch: self.checkpoint.as_ref().map_or(0, |c| c.writer_epoch + 1),
            wall_clock_ms: crate::checkpoint::now_ms(),
        };
        self.store
            .write(std::slice::from_ref(&first))
            .await
            .map_err(|source| Error::Checkpoint {
                topic: self.source_tp.topic.clone(),
                partition: self.source_tp.partition,
                source,
            })?;
        Ok(Some(Resume { at, already_written: 0 }))
    }

    /// The target partition's log end. `None` when cancelled first.
    async fn target_end(&self, offset: i64) -> Result<Option<i64>> {
        retry(&self.cancel, &self.target, &self.target_tp, "list offsets", || {
            self.target.list_offset(&self.target_tp, OffsetSpec::Latest)
        })
        .await
        .map_err(|e| kafka_err("target", "list offsets", &self.target_tp, offset, e))
    }

    fn target_behind(&self, at: Position, end: i64) -> Error {
        Error::TargetBehind {
            topic: self.target_tp.topic.clone(),
            partition: self.target_tp.partition,
            checkpoint: at.target,
            end,
        }
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
                count_error(cluster.name(), action, &e);
                metrics::counter!(telemetry::RETRIES, "cluster" => cluster.name().to_owned(), "api" => action.to_owned())
                    .increment(1);
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
            Err(e) => {
                count_error(cluster.name(), action, &e);
                return Err(e);
            }
        }
    }
}

/// Counts a failed request by cluster, request and Kafka error code (or the transport fault).
fn count_error(cluster: &str, api: &str, e: &crate::kafka::Error) {
    let code = e
        .code()
        .map_or_else(|| transport_fault(e).to_owned(), |c| format!("{c:?}"));
    metrics::counter!(telemetry::REQUEST_ERRORS, "cluster" => cluster.to_owned(), "api" => api.to_owned(), "code" => code)
        .increment(1);
}

fn transport_fault(e: &crate::kafka::Error) -> &'static str {
    match e {
        crate::kafka::Error::Timeout { .. } => "timeout",
        crate::kafka::Error::ConnectionLost { .. } => "connection_lost",
        crate::kafka::Error::Connect { .. } | crate::kafka::Error::Bootstrap { .. } => "connect",
        _ => "other",
    }
}

/// Fetches a source partition and unpacks its batches into records, in offset order.
struct SourceReader {
    tp: TopicPartition,
    labels: [(&'static str, String); 2],
    cluster: Arc<Cluster>,
    settings: Arc<TaskSettings>,
    cancel: CancellationToken,
}

impl SourceReader {
    async fn run(self, mut offset: i64, tx: mpsc::Sender<Result<Fetched>>) {
        let mut fetch_bytes = MIN_FETCH_BYTES.min(self.settings.fetch_max_bytes);
        loop {
            // Memory first: a fetch asks only for what the shared buffer can hold.
            let reserved = buffer_units(fetch_bytes as usize).min(self.settings.buffer_units);
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
                } else {
                    fetch_bytes = next_fetch_bytes(fetch_bytes, 0, self.settings.fetch_max_bytes);
                }
                // Caught up: the broker held the fetch for max_wait already, so loop at once.
                if self.cancel.is_cancelled() {
                    return;
                }
                continue;
            }
            // Hold what the chunk really takes (records may be larger than the raw bytes once
            // decompressed): give back the surplus, or take more if it is free; brokers return
            // a first batch whole even above the fetch size, so a little overdraft is possible.
            let footprint = buffer_units(fetched_len.max(chunk.source_bytes)).min(self.settings.buffer_units);
            if footprint < reserved {
                drop(permit.split((reserved - footprint) as usize));
            } else if footprint > reserved {
                if let Ok(more) = Arc::clone(&self.settings.buffer).try_acquire_many_owned(footprint - reserved) {
                    permit.merge(more);
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
        buffer: None,
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

/// Produce requests of one partition on the wire at once. Kafka keeps the order of up to five
/// in flight for an idempotent producer.
const MAX_IN_FLIGHT: usize = 5;

/// A batch on the wire, waiting for its acknowledgement.
#[derive(Debug)]
struct Sent {
    /// First source offset in the batch.
    first: i64,
    /// Source position once acknowledged (may extend past the batch over dropped records).
    until: i64,
    count: i64,
    source_bytes: u64,
    wire_bytes: u64,
    /// Newest record timestamp in the batch (ms), for the end-to-end latency.
    max_timestamp: i64,
    ack: tokio::task::JoinHandle<Result<ProduceAck, crate::kafka::Error>>,
}

/// What the writer's loop woke up for.
enum Event {
    Linger,
    Fetched(Option<Result<Fetched>>),
    Acked(Result<ProduceAck, crate::kafka::Error>),
}

/// Re-batches records into target batches and produces them in order as an idempotent
/// producer, with up to [`MAX_IN_FLIGHT`] batches on the wire.
struct SinkWriter {
    source_tp: TopicPartition,
    target_tp: TopicPartition,
    cluster: Arc<Cluster>,
    settings: Arc<TaskSettings>,
    builder: BatchBuilder,
    max_batch_bytes: usize,
    progress: Arc<Progress>,
    /// Everything below is acknowledged by the target.
    acked: Position,
    /// The producer sequence of the first record at `acked`.
    acked_sequence: i32,
    /// Records the target already holds beyond `acked` (written before a crash): dropped.
    tail: Tail,
    producer: ProducerIdentity,
    /// The sequence of the next batch to send.
    next_sequence: i32,
    in_flight: VecDeque<Sent>,
    /// Newest record timestamp in the builder (ms).
    builder_max_timestamp: i64,
    labels: [(&'static str, String); 2],
}

impl SinkWriter {
    async fn run(mut self, mut rx: mpsc::Receiver<Result<Fetched>>) -> Result<(), Stop> {
        let result = self.write(&mut rx).await;
        if result.is_err() {
            // Nothing may land after the writer gives up on the target's state: wait for what
            // is still on the wire before anyone reconciles.
            self.abandon().await;
        }
        result
    }

    async fn write(&mut self, rx: &mut mpsc::Receiver<Result<Fetched>>) -> Result<(), Stop> {
        let mut linger_until: Option<Instant> = None;
        // Source offset after everything pushed into the builder (control batches included).
        let mut pushed_until = self.acked.source;
        let mut pending_source_bytes = 0usize;
        loop {
            let deadline = linger_until;
            let event = {
                let front = self.in_flight.front_mut().map(|s| &mut s.ack);
                tokio::select! {
                    biased;
                    Some(acked) = next_ack(front) => Event::Acked(acked),
                    _ = sleep_until(deadline), if deadline.is_some() => Event::Linger,
                    msg = rx.recv() => Event::Fetched(msg),
                }
            };
            let chunk = match event {
                Event::Acked(acked) => {
                    self.acked_front(acked)?;
                    continue;
                }
                Event::Linger => {
                    self.flush(pushed_until, &mut pending_source_bytes).await?;
                    linger_until = None;
                    continue;
                }
                // The reader stopped (shutdown): write what was read.
                Event::Fetched(None) => {
                    self.flush(pushed_until, &mut pending_source_bytes).await?;
                    return self.drain().await;
                }
                Event::Fetched(Some(Err(e))) => {
                    self.flush(pushed_until, &mut pending_source_bytes).await?;
                    self.drain().await?;
                    return Err(Stop::Halt(e));
                }
                Event::Fetched(Some(Ok(Fetched::Gap { from, to }))) => {
                    self.flush(pushed_until, &mut pending_source_bytes).await?;
                    self.drain().await?;
                    linger_until = None;
                    self.gap(from, to);
                    pushed_until = to;
                    continue;
                }
                Event::Fetched(Some(Ok(Fetched::Records(chunk)))) => chunk,
            };
            self.progress
                .update(&self.source_tp, |s| s.source_high_watermark = chunk.high_watermark);
            let mut absorbed = 0u64;
            for record in chunk.records {
                if self.tail.absorb(record.offset, &mut self.acked) {
                    absorbed += 1;
                    continue;
                }
                let timestamp = record.timestamp;
                if let Err(record) = self.builder.try_push(record) {
                    let last = self.builder.last_offset().map_or(pushed_until, |o| o + 1);
                    self.flush(last, &mut pending_source_bytes).await?;
                    if let Err(record) = self.builder.try_push(record) {
                        self.drain().await?;
                        return Err(Stop::Halt(Error::RecordTooLarge {
                            topic: self.source_tp.topic.clone(),
                            partition: self.source_tp.partition,
                            offset: record.offset,
                            size: record.encoded_len_upper_bound(),
                            max: self.max_batch_bytes,
                        }));
                    }
                }
                self.builder_max_timestamp = self.builder_max_timestamp.max(timestamp);
            }
            if absorbed > 0 {
                // Written by an earlier attempt whose acknowledgement was lost: replicated all the same.
                self.acknowledge(self.acked, absorbed, 0, 0);
            }
            pending_source_bytes += chunk.source_bytes;
            pushed_until = chunk.next_offset;
            if self.builder.is_empty() {
                // Only control, aborted or skipped records since the last batch: the position
                // moves with the last batch on the wire, or now when none is.
                match self.in_flight.back_mut() {
                    Some(last) => last.until = pushed_until,
                    None => self.acknowledge(
                        Position {
                            source: pushed_until,
                            target: self.acked.target,
                        },
                        0,
                        0,
                        0,
                    ),
                }
            } else if linger_until.is_none() {
                linger_until = Some(Instant::now() + self.settings.linger);
            }
        }
    }

    /// Source records `from..to` are gone. Records the target already holds beyond the
    /// checkpoint came from the first of them, so they are not counted as missing.
    fn gap(&mut self, from: i64, to: i64) {
        let missing = self.tail.gap(from, to, &mut self.acked);
        if missing > 0 {
            tracing::warn!(topic = %self.source_tp.topic, partition = self.source_tp.partition, from = to - missing,
                to = to - 1, missing, "source records deleted before replication (retention or DeleteRecords): counted as a gap");
            metrics::counter!(telemetry::SOURCE_GAP_RECORDS, &self.labels).increment(missing as u64);
        }
        self.progress
            .update(&self.source_tp, |s| s.gap_records += missing as u64);
        self.acknowledge(self.acked, 0, 0, 0);
    }

    /// Builds the builder's records into one batch and puts it on the wire (waiting first for
    /// a free in-flight slot and for the budget). Everything below `until` is acknowledged
    /// with it.
    async fn flush(&mut self, until: i64, source_bytes: &mut usize) -> Result<(), Stop> {
        if self.builder.is_empty() {
            return Ok(());
        }
        while self.in_flight.len() >= MAX_IN_FLIGHT {
            self.complete_front().await?;
        }
        let opts = BuildOptions {
            compression: Compression::Zstd,
            zstd_level: self.settings.level.level(),
            producer_id: self.producer.id,
            producer_epoch: self.producer.epoch,
            base_sequence: self.next_sequence,
            transactional: false,
        };
        let first = self.builder.first_offset().unwrap_or(until);
        let max_timestamp = std::mem::replace(&mut self.builder_max_timestamp, i64::MIN);
        let compress_started = std::time::Instant::now();
        let built = self.builder.finish(&opts).map_err(|source| Error::Build {
            topic: self.source_tp.topic.clone(),
            partition: self.source_tp.partition,
            offset: first,
            source,
        })?;
        self.settings.level.record_compress(compress_started.elapsed());
        let count = i64::from(built.record_count);
        let wire_bytes = built.bytes.len() + PRODUCE_OVERHEAD_BYTES + self.target_tp.topic.len();
        self.settings.budget.acquire(&self.target_tp.topic, wire_bytes).await;
        let pending = match self
            .cluster
            .start_produce(&self.target_tp, built.bytes, self.settings.produce_timeout_ms)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                self.drain().await?;
                return Err(self.failed(e, first, wire_bytes));
            }
        };
        self.next_sequence = self.next_sequence.wrapping_add(built.record_count) & i32::MAX;
        tracing::trace!(topic = %self.source_tp.topic, partition = self.source_tp.partition, from = first,
            to = built.last_source_offset, records = count, wire_bytes, "batch sent");
        self.in_flight.push_back(Sent {
            first,
            until,
            count,
            source_bytes: std::mem::take(source_bytes) as u64,
            wire_bytes: wire_bytes as u64,
            max_timestamp,
            ack: tokio::spawn(async move {
                let started = std::time::Instant::now();
                let ack = pending.ack().await;
                metrics::histogram!(telemetry::PRODUCE_LATENCY).record(started.elapsed());
                ack
            }),
        });
        Ok(())
    }

    /// Waits for the oldest batch on the wire and takes its answer.
    async fn complete_front(&mut self) -> Result<(), Stop> {
        let Some(front) = self.in_flight.front_mut() else {
            return Ok(());
        };
        let acked = (&mut front.ack).await.unwrap_or_else(|join| {
            Err(crate::kafka::Error::ConnectionLost {
                broker: format!("(produce task ended: {join})"),
                source: None,
            })
        });
        self.acked_front(Ok(acked).and_then(|a| a))
    }

    /// Applies the answer for the oldest batch on the wire.
    fn acked_front(&mut self, acked: Result<ProduceAck, crate::kafka::Error>) -> Result<(), Stop> {
        let Some(sent) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let expected = self.acked.target;
        match acked {
            Ok(ack) if ack.base_offset == expected || ack.base_offset < 0 => {
                let age_ms = crate::checkpoint::now_ms() - sent.max_timestamp;
                if (0..86_400_000).contains(&age_ms) {
                    let age = Duration::from_millis(age_ms as u64);
                    metrics::histogram!(telemetry::END_TO_END_LATENCY).record(age);
                    metrics::gauge!(telemetry::LAG_SECONDS, &self.labels).set(age.as_secs_f64());
                }
                self.acked_sequence = self.acked_sequence.wrapping_add(sent.count as i32) & i32::MAX;
                self.acknowledge(
                    Position {
                        source: sent.until,
                        target: expected + sent.count,
                    },
                    sent.count as u64,
                    sent.source_bytes,
                    sent.wire_bytes,
                );
                Ok(())
            }
            Ok(ack) => Err(Stop::Resync {
                at: self.acked,
                why: format!(
                    "batch landed at offset {} instead of {expected}: another producer writes to the target partition",
                    ack.base_offset
                ),
                keep: None,
            }),
            Err(e) => Err(self.failed(e, sent.first, sent.wire_bytes as usize)),
        }
    }

    /// What a failed produce means for the partition.
    fn failed(&self, err: crate::kafka::Error, first: i64, wire_bytes: usize) -> Stop {
        let why = crate::replicate::error_chain(&err);
        match err.code() {
            // The identity is no good any more: a new one, after reconciling.
            Some(
                ResponseError::OutOfOrderSequenceNumber
                | ResponseError::UnknownProducerId
                | ResponseError::InvalidProducerEpoch
                | ResponseError::ProducerFenced
                | ResponseError::DuplicateSequenceNumber,
            ) => {
                return Stop::Resync {
                    at: self.acked,
                    why,
                    keep: None,
                }
            }
            Some(ResponseError::MessageTooLarge) => {
                return Stop::Halt(Error::RecordTooLarge {
                    topic: self.source_tp.topic.clone(),
                    partition: self.source_tp.partition,
                    offset: first,
                    size: wire_bytes,
                    max: self.max_batch_bytes,
                })
            }
            _ => {}
        }
        if !err.is_retriable() {
            return Stop::Halt(kafka_err("target", "produce", &self.target_tp, first, err));
        }
        if err.needs_metadata_refresh() {
            self.cluster.invalidate(&self.target_tp);
        }
        // Retriable, possibly landed or not: the target's end tells, and the same identity and
        // sequences let the broker drop a late duplicate of anything resent.
        Stop::Resync {
            at: self.acked,
            why,
            keep: Some((self.producer, self.acked_sequence)),
        }
    }

    /// Waits for every batch on the wire, in order; stops at the first failure.
    async fn drain(&mut self) -> Result<(), Stop> {
        while !self.in_flight.is_empty() {
            self.complete_front().await?;
        }
        Ok(())
    }

    /// After a failure: lets every batch still on the wire finish, ignoring the answers (the
    /// reconciliation that follows reads the truth from the target).
    async fn abandon(&mut self) {
        while let Some(sent) = self.in_flight.pop_front() {
            let _ = sent.ack.await;
        }
    }

    fn acknowledge(&mut self, at: Position, records: u64, source_bytes: u64, wire_bytes: u64) {
        self.acked = at;
        if records > 0 {
            metrics::counter!(telemetry::RECORDS_REPLICATED, &self.labels).increment(records);
            metrics::counter!(telemetry::SOURCE_BYTES, &self.labels).increment(source_bytes);
            metrics::counter!(telemetry::WIRE_BYTES, &self.labels).increment(wire_bytes);
        }
        self.progress.update(&self.source_tp, |s| {
            s.next_source_offset = at.source;
            s.next_target_offset = at.target;
            s.records += records;
            s.source_bytes += source_bytes;
            s.wire_bytes += wire_bytes;
            metrics::gauge!(telemetry::LAG_RECORDS, &self.labels).set(s.lag_records() as f64);
            if s.records > 0 {
                // Estimated from the average size of the records replicated so far.
                let average = s.source_bytes as f64 / s.records as f64;
                metrics::gauge!(telemetry::LAG_BYTES, &self.labels).set(s.lag_records() as f64 * average);
            }
        });
    }
}

/// Request bytes around the records of a one-partition produce, plus the topic name.
const PRODUCE_OVERHEAD_BYTES: usize = 80;

/// The oldest in-flight acknowledgement, or never when nothing is on the wire.
async fn next_ack(
    front: Option<&mut tokio::task::JoinHandle<Result<ProduceAck, crate::kafka::Error>>>,
) -> Option<Result<ProduceAck, crate::kafka::Error>> {
    match front {
        Some(handle) => Some(handle.await.unwrap_or_else(|join| {
            Err(crate::kafka::Error::ConnectionLost {
                broker: format!("(produce task ended: {join})"),
                source: None,
            })
        })),
        None => std::future::pending().await,
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
