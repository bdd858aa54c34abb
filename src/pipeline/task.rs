//! One source partition's replication, from where it resumes to shutdown or a halt.
//!
//! The task finds its starting point ([`PartitionTask::resume`]), claims a producer identity in
//! a checkpoint, then runs the fetch stage and the sink joined by a small bounded channel, so at
//! most a few fetch answers per partition are held in memory whatever the backlog. When the sink
//! stops on doubt about the target's state, the task reconciles with the target's tail and runs
//! them again from the acknowledged position.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::ack::Acker;
use super::batch::Batcher;
use super::checkpoints::Feed;
use super::error::{Error, Result};
use super::fetch::Fetcher;
use super::memory::BatchMemory;
use super::resume::{sequence_plus, Align, Anchor, Position, Reconciled, Resume, Tail, TailPlan, TargetTail};
use super::retry::{kafka_err, list_offset, retry};
use super::send::{Throttle, Window};
use super::sink::{Backlog, Keep, Lane, Sink, Stop};
use super::unpack::Handed;
use super::wire::{Claims, Fetch, Produce};
use super::writers::Writers;
use super::TaskSettings;
use crate::checkpoint::{CheckpointRecord, TopicIds};
use crate::config::{OnMissingCheckpoint, OnTargetReset, OnTopicRecreated, StartFrom};
use crate::kafka::{Backoff, OffsetSpec, ProducerIdentity, TopicPartition};
use crate::report::{PartitionState, Progress, Retention};
use crate::telemetry;

/// Fetch answers waiting for the sink. Small: the sink is the slow side when the link is.
pub(super) const CHUNK_QUEUE: usize = 2;
/// How long out-of-order answers at one position keep the identity. A batch whose answer was
/// lost can wait above the high watermark until a lost follower leaves the in-sync replicas
/// (`replica.lag.time.max.ms`, 30 s by default): a new identity before it lands would write its
/// records twice.
const OUT_OF_ORDER_PATIENCE: std::time::Duration = std::time::Duration::from_secs(90);
/// Everything one partition task needs.
#[derive(Debug)]
pub struct PartitionTask<S, T, C> {
    pub source_tp: TopicPartition,
    pub target_tp: TopicPartition,
    pub source: Arc<S>,
    pub target: Arc<T>,
    /// Who claimed the partition last (the checkpoint topic).
    pub claims: Arc<C>,
    /// The ids of the source and target topics now.
    pub topic_ids: Option<TopicIds>,
    pub settings: Arc<TaskSettings>,
    /// The smaller of batch.max_bytes and the target topic's max.message.bytes.
    pub max_batch_bytes: usize,
    /// The largest batches grow to over a long round trip (`pipeline::batch_ceiling`).
    pub batch_ceiling: usize,
    pub progress: Arc<Progress>,
    pub cancel: CancellationToken,
    /// The partition's last checkpoint, if it was ever replicated.
    pub checkpoint: Option<CheckpointRecord>,
    /// Where the source is read from when there is no usable checkpoint: the configured
    /// `start_from` for a partition there at the replication's very first start, earliest for
    /// one that appeared later (the replicator decides: `replicate::first_start`).
    pub start_from: StartFrom,
    /// Where acknowledged positions and claims go to be checkpointed.
    pub feed: Arc<Feed>,
    /// The source topic's retention as last read (the refresh loop keeps it current).
    pub retention: Retention,
    /// The checkpoint topic and replication id, for the error when no checkpoint covers a
    /// target that holds records.
    pub checkpoint_topic: String,
    pub replication_id: String,
}

impl<S: Fetch, T: Fetch + Produce, C: Claims> PartitionTask<S, T, C> {
    /// Replicates until cancelled (then flushes what was read and returns `Ok`) or until an
    /// error that needs an operator.
    pub async fn run(self) -> Result<()> {
        let tp = self.source_tp.clone();
        self.progress.update(&tp, |s| {
            s.state = PartitionState::Starting;
            s.target = Some(self.target_tp.clone());
            s.retention = self.retention;
            s.writer_epoch = self.feed.writer_epoch();
        });
        let result = self.replicate_catching_panics().await;
        let state = match &result {
            Ok(()) => PartitionState::Stopped,
            Err(e) => PartitionState::Halted(crate::error_chain(e)),
        };
        let halted = matches!(state, PartitionState::Halted(_));
        metrics::gauge!(telemetry::PARTITION_HALTED, &telemetry::labels(&tp.topic, tp.partition))
            .set(f64::from(u8::from(halted)));
        self.progress.update(&tp, |s| s.state = state);
        result
    }

    pub(super) fn target_tail(&self) -> TargetTail<'_, T> {
        TargetTail {
            target: &*self.target,
            tp: &self.target_tp,
            source_tp: &self.source_tp,
            cancel: &self.cancel,
            on_foreign: self.settings.on_foreign_writer,
        }
    }

    /// [`Self::replicate`], with a panic in it turned into [`Error::Panicked`].
    ///
    /// Caught here, not from the `JoinError` in the replicator: here the partition is known, and
    /// the panic takes the path of every other halt (its state in the progress table, so
    /// `/status` and `/readyz`; the halted gauge; the log line). A `JoinError` names only a task
    /// id: it would take a map from task ids to partitions beside the `JoinSet` and a second
    /// copy of that reporting. Unwinding leaves nothing shared inconsistent: the progress table
    /// and the feed are behind locks that do not poison and hold whole values, and whatever the
    /// task held (buffer and batch memory permits) is given back as it is dropped.
    async fn replicate_catching_panics(&self) -> Result<()> {
        use futures_util::FutureExt;
        match std::panic::AssertUnwindSafe(self.replicate()).catch_unwind().await {
            Ok(result) => result,
            Err(payload) => Err(Error::Panicked {
                topic: self.source_tp.topic.clone(),
                partition: self.source_tp.partition,
                offset: self.progress.get(&self.source_tp).map_or(-1, |s| s.next_source_offset),
                message: panic_message(payload.as_ref()),
            }),
        }
    }

    async fn replicate(&self) -> Result<()> {
        let tp = &self.source_tp;
        // strait's producer identities that may have written beyond the position, with their
        // sequences there: those the checkpoint names, those found in the tail, the one in use.
        let mut writers = self
            .checkpoint
            .as_ref()
            .and_then(Writers::of_checkpoint)
            .unwrap_or_default();
        let mut resume = match self.checkpointed_catch_up()? {
            // A catch-up the checkpoint records goes on until its ranges merge.
            Some(ranges) => {
                // Boxed, like every catch-up path: rare, and otherwise part of every
                // partition's task future for its whole life.
                let Some((at, merged)) = Box::pin(self.resume_catch_up(ranges)).await? else {
                    return Ok(());
                };
                self.caught_up();
                writers = merged;
                Resume {
                    at,
                    tail: TailPlan::default(),
                }
            }
            None => {
                let Some(resume) = Box::pin(self.resume(&writers)).await? else {
                    return Ok(());
                };
                resume
            }
        };
        writers.found(&resume.tail);
        // The identity to go on with, when the last pipeline's is still good (its batches can
        // still be deduplicated).
        let mut carried: Option<ProducerIdentity> = None;
        // Since when out-of-order answers stop the partition at one position.
        let mut out_of_order: Option<(Position, tokio::time::Instant)> = None;
        let mut backoff = Backoff::default();
        loop {
            // A fresh-first catch-up: the backlog starts here, absorbing what the target holds
            // beyond; the new records are written after it.
            if self.settings.fresh_after.is_some() {
                if let Some(split) = Box::pin(self.entry(resume.at)).await? {
                    let entered = Box::pin(self.enter(resume.at, &resume.tail, &writers, split, carried.take()));
                    let Some((at, merged)) = entered.await? else {
                        return Ok(());
                    };
                    self.caught_up();
                    writers = merged;
                    resume = Resume {
                        at,
                        tail: TailPlan::default(),
                    };
                    continue;
                }
            }
            self.starting(&resume);
            let Some((producer, sequence)) = Box::pin(self.identity(&resume, &mut writers, carried.take())).await?
            else {
                return Ok(());
            };
            let started = resume.at;
            let (at, why, at_sequence, keep) = match self.pipeline(resume, producer, sequence).await {
                Ok(()) => return Ok(()),
                Err(Stop::Halt(e)) => return Err(e),
                Err(Stop::Resync {
                    at,
                    why,
                    sequence,
                    keep,
                    backlog: _,
                }) => (at, why, sequence, keep),
            };
            tracing::warn!(topic = %tp.topic, partition = tp.partition, source_offset = at.source,
                target_offset = at.target, reason = %why, "target state uncertain: reconciling with the target");
            if at != started {
                backoff.reset();
            }
            move_writers(&mut writers, producer, at_sequence);
            let go_on = keeps_identity(keep, at, &mut out_of_order);
            self.pause(backoff.next_delay()).await;
            let identities = writers.identities();
            let tail = match Box::pin(self.reconcile(at, Some(&identities), &writers.anchors())).await? {
                None => return Ok(()),
                Some(Reconciled::Behind(end)) => return Err(self.target_behind(at, end)),
                Some(Reconciled::Tail(tail)) => tail,
            };
            writers.found(&tail);
            resume = Resume { at, tail };
            carried = go_on.then_some(producer);
        }
    }

    /// Waits `delay` before reconciling, ended early by shutdown or by the target coming back
    /// (its connections were gated meanwhile).
    pub(super) async fn pause(&self, delay: std::time::Duration) {
        let reconnected = async {
            match self.target.reconnected() {
                Some(n) => n.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.cancel.cancelled() => {}
            _ = tokio::time::sleep(delay) => {}
            _ = reconnected => {}
        }
    }

    /// Logs and shows that the pipeline starts (again) from `resume`, and counts the duplicates
    /// found in the target's tail.
    fn starting(&self, resume: &Resume) {
        let tp = &self.source_tp;
        tracing::info!(topic = %tp.topic, partition = tp.partition, source_offset = resume.at.source,
            target_offset = resume.at.target, already_written = resume.tail.own, foreign_records = resume.tail.foreign,
            duplicates = resume.tail.duplicates, target = %self.target_tp, "partition replication starting");
        if resume.tail.duplicates > 0 {
            metrics::counter!(
                telemetry::TARGET_DUPLICATE_RECORDS,
                &telemetry::labels(&tp.topic, tp.partition)
            )
            .increment(resume.tail.duplicates as u64);
        }
        self.progress.update(tp, |s| {
            s.state = PartitionState::Running;
            s.next_source_offset = resume.at.source;
            s.next_target_offset = resume.at.target;
        });
    }

    /// Reads what the target holds beyond `at` ([`TargetTail::reconcile`]). When that holds
    /// another producer's records, first asks whether a newer strait claimed the partition:
    /// then this process is fenced and stops writing it, whatever `on_foreign_writer` says.
    async fn reconcile(
        &self,
        at: Position,
        known: Option<&[ProducerIdentity]>,
        anchors: &[Anchor],
    ) -> Result<Option<Reconciled>> {
        let reconciled = self.target_tail().reconcile(at, known, anchors).await;
        let foreign = match &reconciled {
            Err(Error::ForeignWriter(batches)) => batches.records,
            Ok(Some(Reconciled::Tail(tail))) if tail.foreign > 0 => tail.foreign,
            _ => return reconciled,
        };
        self.fenced(foreign, known.unwrap_or_default()).await?;
        reconciled
    }

    /// `Err(Fenced)` when another strait claimed the partition since this process did: a newer
    /// writer epoch, or the same one naming identities this process never used (two processes
    /// started at the same moment: both stop).
    pub(super) async fn fenced(&self, foreign_records: i64, known: &[ProducerIdentity]) -> Result<()> {
        let ours = self.feed.writer_epoch();
        let newest = tokio::select! {
            _ = self.cancel.cancelled() => return Ok(()),
            newest = self.claims.newest(&self.source_tp) => newest,
        };
        let other = |c: &super::wire::Claim| {
            c.writer_epoch > ours || (c.writer_epoch == ours && c.writers.iter().any(|w| !known.contains(w)))
        };
        match newest {
            Ok(Some(claim)) if other(&claim) => Err(Error::Fenced {
                source_topic: self.source_tp.topic.clone(),
                source_partition: self.source_tp.partition,
                target_topic: self.target_tp.topic.clone(),
                target_partition: self.target_tp.partition,
                ours,
                theirs: claim.writer_epoch,
                foreign_records,
            }),
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(topic = %self.source_tp.topic, partition = self.source_tp.partition,
                    error = %crate::error_chain(&e), "cannot read the partition's claims: deciding on the foreign records alone");
                Ok(())
            }
        }
    }

    /// The producer identity to write with from `resume`, and its sequence at `resume.at`:
    /// the one carried over when still good, else a new one, claimed in a checkpoint before
    /// anything is sent (its batches count as strait's only if a checkpoint names it). `None`
    /// when cancelled first.
    async fn identity(
        &self,
        resume: &Resume,
        writers: &mut Writers,
        carried: Option<ProducerIdentity>,
    ) -> Result<Option<(ProducerIdentity, i32)>> {
        if let Some((p, seq)) = carried.and_then(|p| writers.sequence(p).map(|s| (p, s))) {
            self.feed.publish(resume.at, writers);
            return Ok(Some((p, seq)));
        }
        let produce_timeout_ms = self.settings.produce_timeout_ms;
        let Some(p) = retry(&self.cancel, &*self.target, &self.target_tp, "init producer id", || {
            self.target.init_producer_id(produce_timeout_ms)
        })
        .await
        .map_err(|e| kafka_err("target", "init producer id", &self.target_tp, resume.at.target, e))?
        else {
            return Ok(None);
        };
        // Its first record is the first one not found in the tail: sequence 0 there.
        let sequence = sequence_plus(0, -resume.tail.own);
        writers.add(p, Some(sequence));
        if !self.feed.claim(resume.at, writers, &self.cancel).await {
            return Ok(None);
        }
        Ok(Some((p, sequence)))
    }

    /// Runs the fetch stage and the sink from `resume` until shutdown or a stop.
    async fn pipeline(&self, resume: Resume, producer: ProducerIdentity, sequence: i32) -> Result<(), Stop> {
        let Resume { at, tail } = resume;
        let (tx, mut rx) = mpsc::channel(CHUNK_QUEUE);
        // The fetch stage also stops when the sink does (halt or resync), not only on shutdown.
        let fetch_cancel = self.cancel.child_token();
        let fetcher = self.fetcher(&fetch_cancel, at.source, tx);
        let mut sink = self.sink(self.lane(at, Tail::new(tail.runs), (producer, sequence)), None);
        let write = async {
            let written = sink.run(&mut rx).await;
            fetch_cancel.cancel();
            written
        };
        let (_, written) = tokio::join!(fetcher.run(), write);
        written
    }

    /// The fetch stage from source offset `from` into `tx`, stopped by `cancel`.
    pub(super) fn fetcher(&self, cancel: &CancellationToken, from: i64, tx: mpsc::Sender<Handed>) -> Fetcher<S> {
        Fetcher::new(
            self.source_tp.clone(),
            self.topic_ids.and_then(|ids| crate::kafka::known_topic_id(ids.source)),
            Arc::clone(&self.source),
            Arc::clone(&self.settings),
            cancel.clone(),
            from,
            tx,
        )
    }

    /// A lane of the sink from `at`, absorbing `tail`, writing with `producer` at `sequence`.
    pub(super) fn lane(&self, at: Position, tail: Tail, (producer, sequence): (ProducerIdentity, i32)) -> Lane {
        Lane {
            batcher: Batcher::new(self.max_batch_bytes, self.settings.linger, at.source),
            acker: Acker::new(
                self.source_tp.clone(),
                Arc::clone(&self.progress),
                Arc::clone(&self.feed),
                at,
                sequence,
                tail,
            ),
            producer,
            next_sequence: sequence,
        }
    }

    /// The sink around `lane` (the one range, or a catch-up's fresh range) and a catch-up's
    /// `backlog`.
    pub(super) fn sink(&self, lane: Lane, backlog: Option<Box<Backlog>>) -> Sink<T> {
        let settings = &self.settings;
        Sink {
            source_tp: self.source_tp.clone(),
            target_tp: self.target_tp.clone(),
            target: Arc::clone(&self.target),
            settings: Arc::clone(settings),
            max_batch_bytes: self.max_batch_bytes,
            batch_ceiling: self.batch_ceiling,
            lane,
            backlog,
            memory: BatchMemory::new(Arc::clone(&settings.batch_memory), settings.batch_memory_units),
            window: Window::new(),
            throttle: Throttle::default(),
            landed: None,
            parked: None,
        }
    }

    /// The starting point: from the checkpoint, reconciled with what the target holds beyond it;
    /// or, for a partition never replicated, `start_from` on the source and the target's current
    /// end, checkpointed before any data is written. `None` when cancelled first.
    async fn resume(&self, writers: &Writers) -> Result<Option<Resume>> {
        // A recreated source follows on_topic_recreated; a recreated target is a target reset.
        let checkpoint = match self.recreated() {
            Some(e @ Error::TopicRecreated { side: "source", .. })
                if self.settings.on_topic_recreated == OnTopicRecreated::Halt =>
            {
                return Err(e)
            }
            Some(e @ Error::TopicRecreated { side: "target", .. })
                if self.settings.on_target_reset == OnTargetReset::Halt =>
            {
                return Err(e)
            }
            Some(e) => {
                tracing::warn!(topic = %self.source_tp.topic, partition = self.source_tp.partition, why = %e,
                    start_from = %String::from(self.start_from),
                    "topic recreated: starting over, after what the target holds");
                None
            }
            None => self.checkpoint.as_ref(),
        };
        if let Some(record) = checkpoint {
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
            match self
                .reconcile(at, record.writers.as_deref(), &writers.anchors())
                .await?
            {
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
        let Some(at) = self.fresh_start().await? else {
            return Ok(None);
        };
        // Nothing of strait's is beyond the target's end yet.
        if !self.feed.claim(at, &Writers::default(), &self.cancel).await {
            return Ok(None);
        }
        Ok(Some(Resume {
            at,
            tail: TailPlan::default(),
        }))
    }

    /// The ranges of a fresh-first catch-up the checkpoint records (unless a topic was
    /// recreated since: [`Self::resume`] decides then). Refused when they do not nest.
    fn checkpointed_catch_up(&self) -> Result<Option<super::catchup::Ranges>> {
        let Some(record) = self.checkpoint.as_ref().filter(|r| r.fresh.is_some()) else {
            return Ok(None);
        };
        if self.recreated().is_some() {
            return Ok(None);
        }
        super::catchup::Ranges::of_checkpoint(record, record.fresh.as_ref())
            .map(Some)
            .map_err(|source| Error::CatchUp {
                topic: self.source_tp.topic.clone(),
                partition: self.source_tp.partition,
                offset: record.checkpoint.next_source_offset,
                source,
            })
    }

    /// The catch-up's ranges merged: one range again in the report.
    fn caught_up(&self) {
        tracing::info!(topic = %self.source_tp.topic, partition = self.source_tp.partition,
            "fresh-first catch-up done: the backlog is drained, source order from here on");
        self.progress.update(&self.source_tp, |s| {
            s.catchup_split = None;
            s.fresh_next_offset = None;
        });
    }

    /// Whether the source or target topic has another id than when the checkpoint was written
    /// (deleted and created again): the checkpoint's offsets are of another log.
    fn recreated(&self) -> Option<Error> {
        let record = self.checkpoint.as_ref()?;
        let (then, now) = (record.topic_ids?, self.topic_ids?);
        let (source, target) = then.changed(&now);
        let (side, topic, setting) = match (source, target) {
            (true, _) => (
                "source",
                &self.source_tp.topic,
                "on_topic_recreated = \"start_over\" (STRAIT_ON_TOPIC_RECREATED)",
            ),
            (false, true) => (
                "target",
                &self.target_tp.topic,
                "on_target_reset = \"replicate_again\" (STRAIT_ON_TARGET_RESET)",
            ),
            (false, false) => return None,
        };
        Some(Error::TopicRecreated {
            side,
            setting,
            topic: topic.clone(),
            partition: self.source_tp.partition,
            source_offset: record.checkpoint.next_source_offset,
            target_offset: record.checkpoint.next_target_offset,
        })
    }

    /// Where a partition without a usable checkpoint starts: [`Self::start_from`] on the source, the
    /// end on the target (which must be empty unless `on_missing_checkpoint = append`). `None`
    /// when cancelled first.
    ///
    /// The source's position is asked first and kept: the target may not answer for hours (a
    /// cut link, a topic it is still creating), and records the source deletes meanwhile were
    /// there when the partition started, so the first fetch counts them as a gap. Asked after the
    /// target, `earliest` would be the log start of that later moment: a silent skip.
    async fn fresh_start(&self) -> Result<Option<Position>> {
        let Some(source) = self.source_start().await? else {
            return Ok(None);
        };
        // Shown while the target is asked (its lag, once the source's end is known).
        self.progress.update(&self.source_tp, |s| s.next_source_offset = source);
        let target = self.target_tail();
        let Some(end) = target.end(0).await? else {
            return Ok(None);
        };
        if self.checkpoint.is_none() && self.settings.on_missing_checkpoint != OnMissingCheckpoint::Append {
            let Some(first) = list_offset(
                &self.cancel,
                &*self.target,
                "target",
                &self.target_tp,
                OffsetSpec::Earliest,
                0,
            )
            .await?
            else {
                return Ok(None);
            };
            if end > first {
                if self.settings.on_missing_checkpoint == OnMissingCheckpoint::Align {
                    let align = Align {
                        source: &*self.source,
                        target: &*self.target,
                        source_tp: &self.source_tp,
                        target_tp: &self.target_tp,
                        cancel: &self.cancel,
                    };
                    return align.position(first, end).await;
                }
                return Err(Error::MissingCheckpoint {
                    topic: self.target_tp.topic.clone(),
                    partition: self.target_tp.partition,
                    first,
                    end,
                    checkpoint_topic: self.checkpoint_topic.clone(),
                    replication_id: self.replication_id.clone(),
                });
            }
        }
        Ok(Some(Position { source, target: end }))
    }

    /// [`Self::start_from`] on the source: the offset to start reading at. `None` when
    /// cancelled first.
    async fn source_start(&self) -> Result<Option<i64>> {
        let spec = match self.start_from {
            StartFrom::Earliest => OffsetSpec::Earliest,
            StartFrom::Latest => OffsetSpec::Latest,
            StartFrom::Timestamp(ms) => OffsetSpec::Timestamp(ms),
        };
        let Some(mut source) = list_offset(&self.cancel, &*self.source, "source", &self.source_tp, spec, -1).await?
        else {
            return Ok(None);
        };
        if source < 0 {
            // No record as new as the timestamp: from the end.
            let Some(latest) = list_offset(
                &self.cancel,
                &*self.source,
                "source",
                &self.source_tp,
                OffsetSpec::Latest,
                -1,
            )
            .await?
            else {
                return Ok(None);
            };
            source = latest;
        }
        Ok(Some(source))
    }

    pub(super) fn target_behind(&self, at: Position, end: i64) -> Error {
        Error::TargetBehind {
            topic: self.target_tp.topic.clone(),
            partition: self.target_tp.partition,
            checkpoint: at.target,
            end,
        }
    }
}

/// Brings every writer's sequence to the position where the pipeline stopped, with `producer`
/// at `at_sequence` there: the one in use says how far they all moved.
fn move_writers(writers: &mut Writers, producer: ProducerIdentity, at_sequence: i32) {
    let moved = writers
        .sequence(producer)
        .map(|s| super::resume::sequence_distance(s, at_sequence));
    match moved {
        Some(moved) => writers.moved(moved),
        None => *writers = Writers::default(),
    }
    writers.add(producer, Some(at_sequence));
}

/// Whether the identity in use goes on after a stop at `at` that says `keep`. Out-of-order
/// answers keep it for [`OUT_OF_ORDER_PATIENCE`] at one position, timed in `out_of_order`
/// (cleared by any other stop).
pub(super) fn keeps_identity<P: PartialEq + Copy>(
    keep: Keep,
    at: P,
    out_of_order: &mut Option<(P, tokio::time::Instant)>,
) -> bool {
    let go_on = match keep {
        Keep::Identity => true,
        Keep::NewIdentity => false,
        Keep::WhilePending => {
            let since = match *out_of_order {
                Some((p, since)) if p == at => since,
                _ => tokio::time::Instant::now(),
            };
            *out_of_order = Some((at, since));
            since.elapsed() < OUT_OF_ORDER_PATIENCE
        }
    };
    if keep != Keep::WhilePending {
        *out_of_order = None;
    }
    go_on
}

/// The text a panic was raised with (`panic!` with a literal or a format).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::kafka::Cluster;
    use crate::pipeline::fake::FakeClaims;

    /// Every partition's task future is one allocation for as long as the partition runs: at
    /// 5,000 partitions each KiB of it is 5 MB. With the real Kafka client's futures inside
    /// (measured 16,072 bytes before the snappy table became lazy, 14,008 after, 9,008 once
    /// the rare paths' futures were boxed: connecting, a metadata refresh, a topic's state, an
    /// offset out of range; 5,192 once the stages a partition passes through between waits
    /// were too: a fetch request, a chunk, a flush, the start-up's resume, identity and
    /// reconcile). The bound leaves room for a toolchain's layout changes.
    #[test]
    fn a_partition_task_future_stays_under_7_kib() {
        let cluster = Arc::new(Cluster::new(
            "source",
            vec!["127.0.0.1:1".into()],
            "t",
            Duration::from_secs(1),
        ));
        let (feed, _tap) = super::super::checkpoints::feed(Arc::new(tokio::sync::Notify::new()), "spans", 0, None);
        let task: PartitionTask<Cluster, Cluster, FakeClaims> = PartitionTask {
            source_tp: TopicPartition::new("spans", 0),
            target_tp: TopicPartition::new("spans", 0),
            source: Arc::clone(&cluster),
            target: cluster,
            claims: Arc::new(FakeClaims::default()),
            topic_ids: None,
            settings: super::super::tests::settings(crate::config::OnForeignWriter::Halt),
            max_batch_bytes: 1 << 20,
            batch_ceiling: 1 << 20,
            progress: Arc::new(Progress::default()),
            cancel: CancellationToken::new(),
            checkpoint: None,
            start_from: StartFrom::Earliest,
            feed: Arc::new(feed),
            retention: Retention::default(),
            checkpoint_topic: "strait.checkpoints".into(),
            replication_id: "test".into(),
        };
        let run = task.run();
        let size = std::mem::size_of_val(&run);
        // The premise: the future holds the client's requests, not only the task's fields.
        assert!(size > 4096, "{size} bytes");
        assert!(size <= 7 * 1024, "the partition task's future takes {size} bytes");
    }
}
