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
use super::resume::{plan_resume, Position, Resume, Tail};
use super::retention::Retention;
use super::writer::SinkWriter;
use crate::batch::{BatchBuilder, Record};
use crate::budget::{Budget, LevelControl};
use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::config::{OnTargetReset, StartFrom};
use crate::kafka::{Backoff, Cluster, OffsetSpec, ProducerIdentity, TopicPartition};
use crate::telemetry;

/// Fetch answers waiting for the writer. Small: the writer is the slow side when the link is.
const CHUNK_QUEUE: usize = 2;

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
            memory: None,
            acked_max_timestamp: None,
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
