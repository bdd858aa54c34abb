//! One source partition's replication: a [`SourceReader`] fetches and unpacks batches, a
//! [`SinkWriter`] re-batches, recompresses and produces them in order. They are joined by a small
//! bounded channel, so at most a few fetch answers per partition are held in memory whatever the
//! backlog.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::error::{Error, Result};
use super::progress::{PartitionState, Progress};
use super::reader::SourceReader;
use super::resume::{
    is_behind, Foreign, Position, Resume, Tail, TailBatch, TailError, TailPlan, TailScan, MAX_TAIL_RUNS,
};
use super::retention::Retention;
use super::writer::SinkWriter;
use crate::batch::{BatchBuilder, Record};
use crate::budget::{Budget, LevelControl};
use crate::checkpoint::{Checkpoint, CheckpointRecord, CheckpointStore};
use crate::config::{OnForeignWriter, OnMissingCheckpoint, OnTargetReset, StartFrom};
use crate::kafka::{Backoff, Cluster, OffsetSpec, ProducerIdentity, ResponseError, TopicPartition};
use crate::telemetry;

/// Fetch answers waiting for the writer. Small: the writer is the slow side when the link is.
const CHUNK_QUEUE: usize = 2;
/// First fetch size when reading the target beyond the checkpoint; the tail is read page by
/// page, holding one answer at a time.
const TAIL_FETCH_BYTES: i32 = 1 << 20;
/// Largest fetch size tried when one target batch does not fit.
const TAIL_FETCH_MAX_BYTES: i32 = 64 << 20;
/// How long a tail fetch may wait: the records are there, so the broker answers at once.
const TAIL_FETCH_WAIT_MS: i32 = 100;
/// Consecutive empty answers below the listed end before reading the tail is given up.
const TAIL_IDLE_FETCHES: u32 = 20;

/// Settings shared by all partition tasks.
#[derive(Clone, Debug)]
pub(crate) struct TaskSettings {
    pub(crate) linger: Duration,
    /// The zstd level in use, adapted to the link and the CPU.
    pub(crate) level: Arc<LevelControl>,
    /// The WAN budget shared by every partition.
    pub(crate) budget: Arc<Budget>,
    /// Fetched data held across all partitions, in [`BUFFER_UNIT`]s (`fetch.buffer_max_bytes`).
    pub(crate) buffer: Arc<Semaphore>,
    /// The buffer's size in units: no fetch reserves more.
    pub(crate) buffer_units: u32,
    /// Batch memory across all partitions, in the same units (`batch.buffer_max_bytes`):
    /// records in builders and compressed batches until the target acknowledges them.
    pub(crate) batch_memory: Arc<Semaphore>,
    /// Its size in units.
    pub(crate) batch_memory_units: u32,
    pub(crate) fetch_max_bytes: i32,
    pub(crate) fetch_max_wait_ms: i32,
    pub(crate) start_from: StartFrom,
    pub(crate) produce_timeout_ms: i32,
    pub(crate) on_target_reset: OnTargetReset,
    pub(crate) on_foreign_writer: OnForeignWriter,
    pub(crate) on_missing_checkpoint: OnMissingCheckpoint,
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
    pub(crate) checkpoint: Option<CheckpointRecord>,
    /// Where a fresh partition's first checkpoint is written before any data.
    pub(crate) store: Arc<CheckpointStore>,
    /// The source topic's retention as last read (the refresh loop keeps it current).
    pub(crate) retention: Retention,
}

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
    /// point into it.
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

/// What a reconcile found beyond a position.
#[derive(Debug)]
enum Reconciled {
    /// The target ends before the position, at this offset.
    Behind(i64),
    /// What the target holds beyond it, attributed.
    Tail(TailPlan),
}

/// Why the writer stopped.
#[derive(Debug)]
pub(super) enum Stop {
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
            s.retention = self.retention;
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
        // strait's producer identities that may have written beyond the position: those found in
        // the tail, and the one in use.
        let mut writers = resume.tail.writers.clone();
        let writer_epoch = self.checkpoint.as_ref().map_or(0, |c| c.checkpoint.writer_epoch + 1);
        // The producer identity and the sequence of the first record at `resume.at`, when the
        // last pipeline's identity is still good (its batches can still be deduplicated).
        let mut carried: Option<(ProducerIdentity, i32)> = None;
        let mut backoff = Backoff::default();
        loop {
            tracing::info!(topic = %tp.topic, partition = tp.partition, source_offset = resume.at.source,
                target_offset = resume.at.target, already_written = resume.tail.own, foreign_records = resume.tail.foreign,
                target = %self.target_tp, "partition replication starting");
            self.progress.update(tp, |s| {
                s.state = PartitionState::Running;
                s.next_source_offset = resume.at.source;
                s.next_target_offset = resume.at.target;
                s.writer_epoch = writer_epoch;
                s.checkpointable = true;
            });
            let (producer, sequence) = match carried.take() {
                Some((p, seq)) => {
                    self.progress.set_writers(tp, &writers);
                    // Everything strait wrote beyond the position since the last reconcile came
                    // from this identity, in order.
                    (p, seq.wrapping_add(resume.tail.own as i32) & i32::MAX)
                }
                None => {
                    let Some(p) = retry(&self.cancel, &self.target, &self.target_tp, "init producer id", || {
                        self.target.init_producer_id(self.settings.produce_timeout_ms)
                    })
                    .await
                    .map_err(|e| kafka_err("target", "init producer id", &self.target_tp, resume.at.target, e))?
                    else {
                        return Ok(());
                    };
                    writers.push(p);
                    // Its batches count as strait's only if a checkpoint names it: one must be
                    // written before the first batch is sent.
                    if !self.claim(&writers).await {
                        return Ok(());
                    }
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
                    let tail = match self.reconcile(at, Some(&writers)).await? {
                        None => return Ok(()),
                        Some(Reconciled::Behind(end)) => return Err(self.target_behind(at, end)),
                        Some(Reconciled::Tail(tail)) => tail,
                    };
                    writers.clone_from(&tail.writers);
                    if let Some((p, _)) = keep.filter(|(p, _)| !writers.contains(p)) {
                        writers.push(p);
                    }
                    resume = Resume { at, tail };
                    carried = keep;
                }
            }
        }
    }

    /// Runs the reader and the writer from `resume` until shutdown or a stop.
    async fn pipeline(&self, resume: Resume, producer: ProducerIdentity, sequence: i32) -> Result<(), Stop> {
        let Resume { at, tail } = resume;
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
            acked: at,
            acked_sequence: sequence,
            tail: Tail::new(tail.runs),
            producer,
            next_sequence: sequence,
            in_flight: VecDeque::new(),
            builder_max_timestamp: i64::MIN,
            memory: None,
            acked_max_timestamp: None,
            labels: telemetry::labels(&self.source_tp.topic, self.source_tp.partition),
            throttled_until: None,
        };
        let write = async {
            let written = writer.run(rx).await;
            reader_cancel.cancel();
            written
        };
        let (_, written) = tokio::join!(reader.run(at.source, tx), write);
        written
    }

    /// The starting point: from the checkpoint, reconciled with what the target holds beyond it;
    /// or, for a partition never replicated, `start_from` on the source and the target's current
    /// end, checkpointed before any data is written. `None` when cancelled first.
    async fn resume(&self) -> Result<Option<Resume>> {
        if let Some(record) = &self.checkpoint {
            let cp = &record.checkpoint;
            let at = Position {
                source: cp.next_source_offset,
                target: cp.next_target_offset,
            };
            // Shown while reconciling, and if the partition halts on what it finds.
            self.progress.update(&self.source_tp, |s| {
                s.next_source_offset = at.source;
                s.next_target_offset = at.target;
            });
            match self.reconcile(at, record.writers.as_deref()).await? {
                None => return Ok(None),
                Some(Reconciled::Tail(tail)) => return Ok(Some(Resume { at, tail })),
                Some(Reconciled::Behind(end)) if self.settings.on_target_reset == OnTargetReset::Halt => {
                    return Err(self.target_behind(at, end))
                }
                Some(Reconciled::Behind(end)) => {
                    tracing::warn!(topic = %self.source_tp.topic, partition = self.source_tp.partition,
                    checkpoint_target_offset = at.target, target_end = end,
                    "target partition is behind its checkpoint: replicating it again (on_target_reset = replicate_again)")
                }
            }
        }
        let Some(end) = self.target_end(0).await? else {
            return Ok(None);
        };
        if self.checkpoint.is_none() && self.settings.on_missing_checkpoint == OnMissingCheckpoint::Halt {
            let Some(first) = retry(&self.cancel, &self.target, &self.target_tp, "list offsets", || {
                self.target.list_offset(&self.target_tp, OffsetSpec::Earliest)
            })
            .await
            .map_err(|e| kafka_err("target", "list offsets", &self.target_tp, 0, e))?
            else {
                return Ok(None);
            };
            if end > first {
                return Err(Error::MissingCheckpoint {
                    topic: self.target_tp.topic.clone(),
                    partition: self.target_tp.partition,
                    first,
                    end,
                    checkpoint_topic: self.store.topic().to_owned(),
                    replication_id: self.store.replication_id().to_owned(),
                });
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
        let first = CheckpointRecord {
            checkpoint: Checkpoint {
                replication_id: self.store.replication_id().to_owned(),
                source_topic: self.source_tp.topic.clone(),
                source_partition: self.source_tp.partition,
                target_topic: self.target_tp.topic.clone(),
                next_source_offset: at.source,
                next_target_offset: at.target,
                writer_epoch: self.checkpoint.as_ref().map_or(0, |c| c.checkpoint.writer_epoch + 1),
                wall_clock_ms: crate::checkpoint::now_ms(),
            },
            // Nothing of strait's is beyond the target's end yet.
            writers: Some(Vec::new()),
        };
        self.store
            .write_records(std::slice::from_ref(&first))
            .await
            .map_err(|source| Error::Checkpoint {
                topic: self.source_tp.topic.clone(),
                partition: self.source_tp.partition,
                source,
            })?;
        Ok(Some(Resume {
            at,
            tail: TailPlan::default(),
        }))
    }

    /// Reads what the target holds beyond `at` and attributes it by producer identity: `known`
    /// are strait's (`None`: the checkpoint does not record them). `None` when cancelled first.
    async fn reconcile(&self, at: Position, known: Option<&[ProducerIdentity]>) -> Result<Option<Reconciled>> {
        let Some(end) = self.target_end(at.target).await? else {
            return Ok(None);
        };
        if is_behind(at, end) {
            return Ok(Some(Reconciled::Behind(end)));
        }
        let mut scan = TailScan::new(at.target, end, known, self.settings.on_foreign_writer);
        if !self.read_tail(&mut scan, end).await? {
            return Ok(None);
        }
        let tail = match scan.finish() {
            Ok(tail) => tail,
            Err(TailError::Foreign(f)) => return Err(self.foreign_writer(f)),
            Err(TailError::TooManyRuns { at: stopped }) => {
                return Err(Error::TailTooFragmented {
                    topic: self.target_tp.topic.clone(),
                    partition: self.target_tp.partition,
                    from: at.target,
                    at: stopped,
                    max_runs: MAX_TAIL_RUNS,
                })
            }
        };
        if tail.foreign > 0 {
            let unattributed = known.is_none();
            tracing::warn!(topic = %self.source_tp.topic, partition = self.source_tp.partition, target = %self.target_tp,
                from = at.target, end, foreign_records = tail.foreign, strait_records = tail.own, unattributed,
                "the target partition holds records strait did not write: left in place (on_foreign_writer = skip), \
                 every source record is still replicated");
        }
        Ok(Some(Reconciled::Tail(tail)))
    }

    /// Feeds `scan` the batch headers of the target partition from its position to its end,
    /// one bounded fetch at a time. `false` when cancelled first.
    async fn read_tail(&self, scan: &mut TailScan, end: i64) -> Result<bool> {
        let mut max_bytes = TAIL_FETCH_BYTES;
        let mut idle = 0;
        while !scan.done() {
            let offset = scan.next_offset();
            let fetched = retry(&self.cancel, &self.target, &self.target_tp, "read target tail", || {
                self.target
                    .fetch(&self.target_tp, offset, max_bytes, TAIL_FETCH_WAIT_MS)
            })
            .await;
            let fetched = match fetched {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(false),
                Err(e) if e.code() == Some(ResponseError::OffsetOutOfRange) => {
                    let Some(start) = retry(&self.cancel, &self.target, &self.target_tp, "list offsets", || {
                        self.target.list_offset(&self.target_tp, OffsetSpec::Earliest)
                    })
                    .await
                    .map_err(|e| kafka_err("target", "list offsets", &self.target_tp, offset, e))?
                    else {
                        return Ok(false);
                    };
                    if start > offset {
                        self.deleted_unread(scan, start, end);
                    } else {
                        // Past the log's end: it was truncated since its end was listed.
                        scan.ends_at(offset);
                    }
                    continue;
                }
                Err(e) => return Err(kafka_err("target", "read target tail", &self.target_tp, offset, e)),
            };
            if fetched.log_start_offset > offset {
                self.deleted_unread(scan, fetched.log_start_offset, end);
                if scan.done() {
                    continue;
                }
            }
            let had_bytes = !fetched.records.is_empty();
            let mut batches = crate::batch::batches(fetched.records);
            for batch in batches.by_ref() {
                let batch = batch.map_err(|source| Error::TargetBatch {
                    topic: self.target_tp.topic.clone(),
                    partition: self.target_tp.partition,
                    offset: scan.next_offset(),
                    source,
                })?;
                scan.push(TailBatch::of(&batch.header));
                if scan.done() {
                    break;
                }
            }
            if scan.done() || scan.next_offset() > offset {
                idle = 0;
                continue;
            }
            if had_bytes && batches.consumed() == 0 && batches.truncated_tail() > 0 {
                // One batch larger than the fetch: ask for more, up to a hard limit.
                if max_bytes >= TAIL_FETCH_MAX_BYTES {
                    return Err(self.tail_unreadable(offset, end, "a batch larger than 64 MiB"));
                }
                max_bytes = max_bytes.saturating_mul(2).min(TAIL_FETCH_MAX_BYTES);
                continue;
            }
            let visible_end = match fetched.last_stable_offset {
                lso if lso >= 0 => lso.min(fetched.high_watermark),
                _ => fetched.high_watermark,
            };
            if visible_end <= offset {
                // The log ends here after all (truncated since its end was listed).
                scan.ends_at(offset);
                continue;
            }
            idle += 1;
            if idle >= TAIL_IDLE_FETCHES {
                return Err(self.tail_unreadable(offset, end, "the target answers no records below its end"));
            }
        }
        Ok(true)
    }

    /// The target's log starts at `start`, after the scan's position: what lay between was
    /// deleted before it could be attributed.
    fn deleted_unread(&self, scan: &mut TailScan, start: i64, end: i64) {
        let from = scan.next_offset();
        let deleted = scan.deleted_until(start);
        if deleted > 0 {
            tracing::warn!(topic = %self.source_tp.topic, partition = self.source_tp.partition, target = %self.target_tp,
                from, to = from + deleted - 1, end, "target records beyond the checkpoint were deleted (retention or \
                DeleteRecords) before strait could tell who wrote them: the source records they may hold are written \
                again (duplicates, never a loss)");
        }
    }

    fn tail_unreadable(&self, offset: i64, end: i64, reason: &'static str) -> Error {
        Error::TailUnreadable {
            topic: self.target_tp.topic.clone(),
            partition: self.target_tp.partition,
            offset,
            end,
            reason,
        }
    }

    fn foreign_writer(&self, f: Foreign) -> Error {
        let (topic, partition) = (self.target_tp.topic.clone(), self.target_tp.partition);
        let (first, last, producer_id, producer_epoch, records) =
            (f.first, f.last, f.producer.id, f.producer.epoch, f.records);
        if f.unattributed {
            Error::UnattributedTail {
                topic,
                partition,
                first,
                last,
                producer_id,
                producer_epoch,
                records,
            }
        } else {
            Error::ForeignWriter {
                topic,
                partition,
                first,
                last,
                producer_id,
                producer_epoch,
                records,
            }
        }
    }

    /// Puts `writers` in the partition's checkpoint and waits until a checkpoint holding them
    /// is written (the main loop writes it at once). `false` when cancelled first.
    async fn claim(&self, writers: &[ProducerIdentity]) -> bool {
        let generation = self.progress.set_writers(&self.source_tp, writers);
        self.progress.want_checkpoint();
        loop {
            let written = self.progress.checkpoint_written();
            tokio::pin!(written);
            written.as_mut().enable();
            if self.progress.writers_checkpointed(&self.source_tp) >= generation {
                return true;
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return false,
                _ = written => {}
            }
        }
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

pub(super) fn kafka_err(
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
pub(super) async fn retry<T, F, Fut>(
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
