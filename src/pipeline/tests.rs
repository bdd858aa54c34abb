//! The data path end to end over in-memory partitions ([`super::fake`]), with paused time:
//! what reaches the target, what the checkpoints hold, and what is given back, on every path.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::checkpoints::{self, Acked, Tap};
use super::fake::{partition_error, FakeClaims, FakeCluster, Fault, Lands};
use super::{Error, PartitionTask, Position, TaskSettings};
use crate::budget::{Budget, LevelControl};
use crate::checkpoint::{Checkpoint, CheckpointRecord};
use crate::config::{OnForeignWriter, OnMissingCheckpoint, OnTargetReset, OnTopicRecreated, StartFrom};
use crate::kafka::{self, ApiKey, ProducerIdentity, ResponseError, TopicPartition};
use crate::report::Progress;

mod bombs;
mod catchup;
mod gaps;
mod idle;
mod offsets;
mod starts;

const MEMORY_UNITS: u32 = 4096;

pub(super) fn settings(on_foreign_writer: OnForeignWriter) -> Arc<TaskSettings> {
    Arc::new(TaskSettings {
        linger: Duration::from_millis(5),
        codec: crate::batch::Compression::Zstd,
        level: Arc::new(LevelControl::new(3, 1, 3)),
        budget: Arc::new(Budget::new(0, 0, Vec::new())),
        buffer: Arc::new(Semaphore::new(MEMORY_UNITS as usize)),
        buffer_units: MEMORY_UNITS,
        batch_memory: Arc::new(Semaphore::new(MEMORY_UNITS as usize)),
        batch_memory_units: MEMORY_UNITS,
        fetch_max_bytes: 1 << 20,
        fetch_max_wait_ms: 50,
        produce_timeout_ms: 1000,
        on_target_reset: OnTargetReset::Halt,
        on_foreign_writer,
        on_missing_checkpoint: OnMissingCheckpoint::Halt,
        on_topic_recreated: OnTopicRecreated::Halt,
        fresh_after: None,
    })
}

/// One partition replicated from a fake source to a fake target, with a checkpointer that
/// confirms every claim at once.
struct Rig {
    source: Arc<FakeCluster>,
    target: Arc<FakeCluster>,
    claims: Arc<FakeClaims>,
    /// The topic ids the task is told the topics have now.
    topic_ids: Option<crate::checkpoint::TopicIds>,
    settings: Arc<TaskSettings>,
    /// Where the task starts without a checkpoint.
    start_from: StartFrom,
    progress: Arc<Progress>,
    tap: Arc<Tap>,
    cancel: CancellationToken,
    tp: TopicPartition,
    /// The largest batch the task builds.
    max_batch_bytes: usize,
}

impl Rig {
    fn new(on_foreign_writer: OnForeignWriter) -> Self {
        Self {
            source: Arc::new(FakeCluster::default()),
            target: Arc::new(FakeCluster::default()),
            claims: Arc::new(FakeClaims::default()),
            topic_ids: None,
            settings: settings(on_foreign_writer),
            start_from: StartFrom::Earliest,
            progress: Arc::new(Progress::default()),
            tap: Arc::new(checkpoints::feed(Arc::new(Notify::new()), "unused", 0, None).1),
            cancel: CancellationToken::new(),
            tp: TopicPartition::new("spans", 0),
            max_batch_bytes: 1 << 20,
        }
    }

    /// Starts the task from `checkpoint`; returns its handle.
    fn start(&mut self, checkpoint: Option<CheckpointRecord>) -> tokio::task::JoinHandle<super::Result<()>> {
        let wanted = Arc::new(Notify::new());
        let (feed, tap) = checkpoints::feed(Arc::clone(&wanted), "spans", 0, self.topic_ids);
        let tap = Arc::new(tap);
        self.tap = Arc::clone(&tap);
        // The checkpointer: every claim is written at once.
        tokio::spawn(async move {
            loop {
                wanted.notified().await;
                if let Some(acked) = tap.current() {
                    tap.confirm(acked.generation);
                }
            }
        });
        self.cancel = CancellationToken::new();
        let task = PartitionTask {
            source_tp: self.tp.clone(),
            target_tp: self.tp.clone(),
            source: Arc::clone(&self.source),
            target: Arc::clone(&self.target),
            claims: Arc::clone(&self.claims),
            topic_ids: self.topic_ids,
            settings: Arc::clone(&self.settings),
            max_batch_bytes: self.max_batch_bytes,
            batch_ceiling: self.max_batch_bytes,
            progress: Arc::clone(&self.progress),
            cancel: self.cancel.clone(),
            checkpoint,
            start_from: self.start_from,
            feed: Arc::new(feed),
            retention: crate::report::Retention::default(),
            checkpoint_topic: "strait.checkpoints".into(),
            replication_id: "test".into(),
        };
        tokio::spawn(task.run())
    }

    /// Stops the task and returns its result.
    async fn stop(&self, task: tokio::task::JoinHandle<super::Result<()>>) -> super::Result<()> {
        self.cancel.cancel();
        task.await.expect("task did not panic")
    }

    /// Waits (in paused time, generously) until the target partition ends at `end` or later.
    async fn until_target_end(&self, end: i64) {
        let reached = tokio::time::timeout(Duration::from_secs(600), self.target.until_end(&self.tp, end)).await;
        assert!(
            reached.is_ok(),
            "the target never reached offset {end}: it ends at {}; partition {:?}",
            self.target.end(&self.tp),
            self.progress.get(&self.tp)
        );
    }

    /// Waits until the published position is `at`.
    async fn until_acked(&self, at: Position) {
        for _ in 0..60_000 {
            if self.tap.current().map(|a| a.at) == Some(at) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the position never reached {at:?}: {:?}", self.tap.current());
    }

    fn acked(&self) -> Acked {
        self.tap.current().expect("a position was published")
    }

    /// Lands the target's held batch; returns its base offset.
    fn release_held(&self) -> i64 {
        self.target
            .release_held()
            .expect("the held batch is accepted")
            .base_offset
    }

    /// The values on the target, in order.
    fn target_values(&self) -> Vec<Vec<u8>> {
        self.target
            .records(&self.tp)
            .into_iter()
            .map(|(_, r)| r.value.expect("value").to_vec())
            .collect()
    }

    /// Every memory permit is back.
    fn assert_memory_back(&self) {
        assert_eq!(
            self.settings.buffer.available_permits(),
            MEMORY_UNITS as usize,
            "fetch buffer"
        );
        assert_eq!(
            self.settings.batch_memory.available_permits(),
            MEMORY_UNITS as usize,
            "batch memory"
        );
    }
}

fn values(range: std::ops::Range<u8>) -> Vec<Vec<u8>> {
    range.map(|i| vec![b'v', i]).collect()
}

fn leak(values: &[Vec<u8>]) -> Vec<&'static [u8]> {
    values
        .iter()
        .map(|v| &*Box::leak(v.clone().into_boxed_slice()))
        .collect()
}

fn checkpoint_at(at: Position, writers: Option<Vec<ProducerIdentity>>) -> CheckpointRecord {
    CheckpointRecord {
        checkpoint: Checkpoint {
            replication_id: "test".into(),
            source_topic: "spans".into(),
            source_partition: 0,
            target_topic: "spans".into(),
            next_source_offset: at.source,
            next_target_offset: at.target,
            writer_epoch: 0,
            wall_clock_ms: 0,
        },
        writers,
        sequences: None,
        topic_ids: None,
        fresh: None,
    }
}

#[tokio::test(start_paused = true)]
async fn every_record_reaches_the_target_once_in_order_and_the_position_follows() {
    let mut rig = Rig::new(OnForeignWriter::Halt);
    let all = values(0..30);
    for chunk in all.chunks(10) {
        rig.source.append(&rig.tp, 7, &leak(chunk));
    }
    let task = rig.start(None);
    rig.until_target_end(30).await;
    rig.stop(task).await.expect("stopped cleanly");
    assert_eq!(rig.target_values(), all);
    let acked = rig.acked();
    assert_eq!(acked.at, Position { source: 30, target: 30 });
    // Written by the one identity the checkpoint named before the first batch.
    let producers: std::collections::BTreeSet<i64> = rig.target.records(&rig.tp).iter().map(|(p, _)| *p).collect();
    assert_eq!(
        producers.into_iter().collect::<Vec<_>>(),
        acked.writers.identities().iter().map(|w| w.id).collect::<Vec<_>>()
    );
    let status = rig.progress.get(&rig.tp).expect("reported");
    assert_eq!((status.records, status.next_source_offset), (30, 30));
    rig.assert_memory_back();
}

#[tokio::test(start_paused = true)]
async fn another_codec_writes_every_batch_in_it_and_the_wire_counts_their_bytes() {
    let mut rig = Rig::new(OnForeignWriter::Halt);
    rig.settings = Arc::new(TaskSettings {
        codec: crate::batch::Compression::Lz4,
        ..(*settings(OnForeignWriter::Halt)).clone()
    });
    let all: Vec<Vec<u8>> = (0..30u8).map(|i| [b'v', i].repeat(100)).collect();
    for chunk in all.chunks(10) {
        rig.source.append(&rig.tp, 7, &leak(chunk));
    }
    let task = rig.start(None);
    rig.until_target_end(30).await;
    rig.stop(task).await.expect("stopped cleanly");
    assert_eq!(rig.target_values(), all);
    let written = rig.target.batches(&rig.tp);
    let codecs: Vec<_> = written
        .iter()
        .flat_map(|b| crate::batch::batches(b.clone()))
        .map(|b| b.expect("parses").header.compression().expect("known codec"))
        .collect();
    assert!(
        !codecs.is_empty() && codecs.iter().all(|c| *c == crate::batch::Compression::Lz4),
        "{codecs:?}"
    );
    // What the budget was asked for and the wire counted: the lz4 batches as sent.
    // Each batch's records and its entry in a shared produce request (16 bytes).
    let sent: usize = written.iter().map(|b| b.len() + 16).sum();
    let status = rig.progress.get(&rig.tp).expect("reported");
    assert_eq!(status.wire_bytes, sent as u64);
    assert!(status.wire_bytes < status.source_bytes, "compressed");
}

#[tokio::test(start_paused = true)]
async fn a_lost_answer_is_reconciled_and_nothing_is_written_twice() {
    let mut rig = Rig::new(OnForeignWriter::Halt);
    rig.source.append(&rig.tp, 7, &leak(&values(0..10)));
    // The batch lands but its answer is lost: retriable, so the same identity goes on.
    rig.target.fault(Fault {
        error: kafka::Error::Timeout {
            broker: "fake".into(),
            api: ApiKey::Produce,
            timeout_ms: 1000,
        },
        lands: Lands::Now,
    });
    let task = rig.start(None);
    rig.until_target_end(10).await;
    rig.source.append(&rig.tp, 7, &leak(&values(10..20)));
    rig.until_target_end(20).await;
    rig.stop(task).await.expect("stopped cleanly");
    assert_eq!(rig.target.faults_hit(), 1, "the lost answer was hit");
    assert_eq!(rig.target_values(), values(0..20));
    assert_eq!(rig.acked().at, Position { source: 20, target: 20 });
    assert_eq!(rig.acked().writers.list().len(), 1, "the identity was kept");
    rig.assert_memory_back();
}

#[tokio::test(start_paused = true)]
async fn a_target_back_after_a_long_cut_is_written_at_once_not_after_the_retry_delay() {
    let mut rig = Rig::new(OnForeignWriter::Halt);
    rig.source.append(&rig.tp, 7, &leak(&values(0..10)));
    let task = rig.start(None);
    rig.until_target_end(10).await;
    // The link is cut: the next records cannot be written, and the partition retries for long
    // enough to back off to its longest delay (10 s; 100 ms doubling reaches it by the 8th).
    rig.target.set_down(true);
    rig.source.append(&rig.tp, 7, &leak(&values(10..20)));
    rig.target.refused(12).await;
    let cut_for = tokio::time::Instant::now();
    rig.target.refused(13).await;
    assert!(
        cut_for.elapsed() >= Duration::from_millis(7500),
        "premise: the delay is at its cap: {:?}",
        cut_for.elapsed()
    );
    // Back right after a refused attempt: without the wake the next one is 7.5-10 s away.
    let back = tokio::time::Instant::now();
    rig.target.set_down(false);
    rig.until_target_end(20).await;
    assert!(
        back.elapsed() < Duration::from_secs(1),
        "written {:?} after the return",
        back.elapsed()
    );
    rig.stop(task).await.expect("stopped cleanly");
    assert_eq!(rig.target_values(), values(0..20));
    rig.assert_memory_back();
}

fn timeout() -> kafka::Error {
    kafka::Error::Timeout {
        broker: "fake".into(),
        api: ApiKey::Produce,
        timeout_ms: 1000,
    }
}

#[tokio::test(start_paused = true)]
async fn a_batch_that_lands_after_its_records_were_written_again_costs_duplicates_never_a_loss() {
    let mut rig = Rig::new(OnForeignWriter::Halt);
    rig.source.append(&rig.tp, 7, &leak(&values(0..10)));
    // The first identity's batch times out and stays in the broker; the same identity is then
    // refused, so a second one writes the records again.
    rig.target.fault(Fault {
        error: timeout(),
        lands: Lands::Later,
    });
    rig.target.fault(Fault {
        error: partition_error(&rig.tp, ApiKey::Produce, ResponseError::UnknownProducerId),
        lands: Lands::Never,
    });
    let task = rig.start(None);
    rig.until_target_end(10).await;
    assert_eq!(rig.target.faults_hit(), 2, "the held batch and the refusal were hit");
    // Now the first identity's batch lands, after the second identity's copy of its records.
    let late = rig.release_held();
    assert_eq!(late, 10, "the late batch lands after the second identity's records");
    // The next batch lands after the late one: strait reconciles, and must count the late
    // records as the duplicates they are, not as the next source records.
    rig.source.append(&rig.tp, 7, &leak(&values(10..20)));
    rig.until_target_end(30).await;
    rig.source.append(&rig.tp, 7, &leak(&values(20..30)));
    rig.until_target_end(40).await;
    rig.stop(task).await.expect("stopped cleanly");
    let expected: Vec<Vec<u8>> = [values(0..10), values(0..10), values(10..30)].concat();
    assert_eq!(
        rig.target_values(),
        expected,
        "every source record, the late batch's ten twice"
    );
    assert_eq!(rig.acked().at, Position { source: 30, target: 40 });
    rig.assert_memory_back();
}

/// Replicates 10 records, then producer 555 writes 3 records to the target and the source
/// grows, while the newest claim has writer `epoch` (the task is epoch 0) and names producer
/// `writer`: returns the error the task stops with.
async fn claimed_and_written(rig: &mut Rig, epoch: i64, writer: i64) -> Error {
    rig.source.append(&rig.tp, 7, &leak(&values(0..10)));
    let task = rig.start(None);
    rig.until_target_end(10).await;
    rig.claims.claim(&rig.tp, epoch, writer);
    rig.target.append(&rig.tp, 555, &leak(&values(10..13)));
    rig.source.append(&rig.tp, 7, &leak(&values(10..20)));
    tokio::time::timeout(Duration::from_secs(600), task)
        .await
        .expect("the task stops")
        .expect("no panic")
        .expect_err("the task stops on the other writer")
}

#[tokio::test(start_paused = true)]
async fn a_newer_claim_fences_this_process_at_its_next_write_whatever_on_foreign_writer_says() {
    for mode in [OnForeignWriter::Halt, OnForeignWriter::Skip] {
        let mut rig = Rig::new(mode);
        let err = claimed_and_written(&mut rig, 1, 555).await;
        match &err {
            Error::Fenced { ours, theirs, .. } => assert_eq!((*ours, *theirs), (0, 1), "{mode:?}"),
            other => panic!("{mode:?}: not fenced: {other}"),
        }
        let text = err.to_string();
        assert!(text.contains("fenced") && text.contains("spans/0"), "{text}");
        // Its batch that landed after the other writer's records is all it wrote since: the
        // in-flight window bounds what a fenced process writes.
        assert_eq!(rig.target.end(&rig.tp), 23, "{mode:?}");
        assert_eq!(rig.acked().at, Position { source: 10, target: 10 }, "{mode:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn another_producer_without_a_newer_claim_is_foreign_not_a_fence() {
    let mut rig = Rig::new(OnForeignWriter::Halt);
    // The newest claim is this task's own (epoch 0, its first identity).
    let err = claimed_and_written(&mut rig, 0, 1001).await;
    assert!(matches!(err, Error::ForeignWriter(_)), "{err}");
    assert!(rig.claims.reads() >= 1, "the claims were read before deciding");
}

#[tokio::test(start_paused = true)]
async fn a_claim_of_the_same_epoch_by_another_process_fences_too() {
    // Two processes started at the same moment got the same writer epoch: the newest claim
    // names an identity this one never used. Both stop rather than both write.
    let mut rig = Rig::new(OnForeignWriter::Skip);
    let err = claimed_and_written(&mut rig, 0, 555).await;
    assert!(matches!(err, Error::Fenced { ours: 0, theirs: 0, .. }), "{err}");
}

#[tokio::test(start_paused = true)]
async fn out_of_order_answers_keep_the_identity_until_its_batch_above_the_watermark_shows() {
    let mut rig = Rig::new(OnForeignWriter::Halt);
    rig.source.append(&rig.tp, 7, &leak(&values(0..10)));
    // The first batch is written but waits above the high watermark (a lost follower is still
    // in the in-sync replicas), and its answer times out.
    rig.target.fault(Fault {
        error: timeout(),
        lands: Lands::AboveWatermark,
    });
    let task = rig.start(None);
    rig.until_target_end(10).await;
    // More records: the batch sent again is not the same batch, so the broker answers out of
    // order for as long as the first one is not visible.
    rig.source.append(&rig.tp, 7, &leak(&values(10..20)));
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(rig.target.end(&rig.tp), 10, "nothing more was written meanwhile");
    rig.target.raise_watermark(&rig.tp);
    rig.until_target_end(20).await;
    rig.source.append(&rig.tp, 7, &leak(&values(20..25)));
    rig.until_target_end(25).await;
    rig.stop(task).await.expect("stopped cleanly");
    assert_eq!(rig.target_values(), values(0..25), "every record once, in order");
    let producers: std::collections::BTreeSet<i64> = rig.target.records(&rig.tp).iter().map(|(p, _)| *p).collect();
    assert_eq!(producers.len(), 1, "one identity wrote everything");
    rig.assert_memory_back();
}

#[tokio::test(start_paused = true)]
async fn lost_producer_state_gets_a_new_claimed_identity_and_no_duplicates() {
    let mut rig = Rig::new(OnForeignWriter::Halt);
    rig.source.append(&rig.tp, 7, &leak(&values(0..10)));
    rig.target.fault(Fault {
        error: partition_error(&rig.tp, ApiKey::Produce, ResponseError::UnknownProducerId),
        lands: Lands::Never,
    });
    let task = rig.start(None);
    rig.until_target_end(10).await;
    rig.stop(task).await.expect("stopped cleanly");
    assert_eq!(rig.target.faults_hit(), 1);
    assert_eq!(rig.target_values(), values(0..10));
    let acked = rig.acked();
    // The new identity, claimed before it wrote, wrote all; the refused one stays named (a
    // batch of it could still show up), first.
    let writer = rig.target.records(&rig.tp)[0].0;
    assert_eq!(writer, 1002, "the second identity handed out");
    assert_eq!(
        acked.writers.identities().iter().map(|w| w.id).collect::<Vec<_>>(),
        vec![1001, 1002]
    );
    rig.assert_memory_back();
}

#[tokio::test(start_paused = true)]
async fn a_foreign_write_halts_the_partition_naming_it_and_skips_nothing() {
    let mut rig = Rig::new(OnForeignWriter::Halt);
    rig.source.append(&rig.tp, 7, &leak(&values(0..10)));
    let task = rig.start(None);
    rig.until_target_end(10).await;
    // Another producer writes 3 records into the target partition.
    rig.target.append(&rig.tp, 555, &[b"x", b"y", b"z"]);
    rig.source.append(&rig.tp, 7, &leak(&values(10..15)));
    let halted = task.await.expect("no panic");
    match halted {
        Err(Error::ForeignWriter(f)) => assert_eq!((f.first, f.last, f.producer_id, f.records), (10, 12, 555, 3)),
        other => panic!("expected a foreign-writer halt, got {other:?}"),
    }
    // Nothing of the source was counted as written on the foreign records' account.
    assert_eq!(rig.acked().at, Position { source: 10, target: 10 });
    rig.assert_memory_back();
}

#[tokio::test(start_paused = true)]
async fn with_skip_foreign_records_are_passed_over_and_every_source_record_is_written() {
    let mut rig = Rig::new(OnForeignWriter::Skip);
    rig.source.append(&rig.tp, 7, &leak(&values(0..10)));
    let task = rig.start(None);
    rig.until_target_end(10).await;
    rig.target.append(&rig.tp, 555, &[b"x", b"y", b"z"]);
    rig.source.append(&rig.tp, 7, &leak(&values(10..15)));
    rig.until_target_end(18).await;
    rig.until_acked(Position { source: 15, target: 18 }).await;
    rig.stop(task).await.expect("stopped cleanly");
    let mut expected = values(0..10);
    expected.extend([b"x".to_vec(), b"y".to_vec(), b"z".to_vec()]);
    expected.extend(values(10..15));
    assert_eq!(rig.target_values(), expected);
    assert_eq!(rig.acked().at, Position { source: 15, target: 18 });
}

#[tokio::test(start_paused = true)]
async fn after_a_crash_what_strait_wrote_beyond_the_checkpoint_is_not_written_again() {
    let mut rig = Rig::new(OnForeignWriter::Halt);
    rig.source.append(&rig.tp, 7, &leak(&values(0..20)));
    // A previous run wrote 0..12 as producer 900 but checkpointed only up to 5.
    let crashed = ProducerIdentity { id: 900, epoch: 0 };
    rig.target.append(&rig.tp, 900, &leak(&values(0..12)));
    let task = rig.start(Some(checkpoint_at(
        Position { source: 5, target: 5 },
        Some(vec![crashed]),
    )));
    rig.until_target_end(20).await;
    rig.until_acked(Position { source: 20, target: 20 }).await;
    rig.stop(task).await.expect("stopped cleanly");
    assert_eq!(rig.target_values(), values(0..20));
    let status = rig.progress.get(&rig.tp).expect("reported");
    assert_eq!(status.records, 15, "7 absorbed from the tail and 8 written");
    // The offset map holds the absorbed records where they are, and the written ones after
    // them, as one run; below the checkpoint this run recorded nothing and names the nearest.
    let end = crate::offsets::End { source: 20, target: 20 };
    let map = rig.tap.map();
    assert_eq!(map.len(), 1, "{:?}", map.runs().collect::<Vec<_>>());
    assert_eq!(map.translate(2, end), crate::offsets::Translation::Before(5));
    for o in 5..20 {
        assert_eq!(
            map.translate(o, end),
            crate::offsets::Translation::Exact(o),
            "offset {o}"
        );
    }
}

mod halts;
