//! What every partition task reports about itself: offsets, lag, counters and state. Tasks write
//! once per produced batch; the periodic log line and the HTTP status read it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use super::retention::{Retention, RiskFigures};
use crate::kafka::{ProducerIdentity, TopicPartition};

/// The state of one partition's replication.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PartitionState {
    /// Looking up where to start.
    #[default]
    Starting,
    /// Replicating.
    Running,
    /// Stopped on an error that needs an operator; the message says which.
    Halted(String),
    /// Stopped by shutdown.
    Stopped,
}

/// The figures of one partition.
#[derive(Clone, Debug, Default)]
pub struct PartitionStatus {
    /// Target topic-partition it writes to.
    pub target: Option<TopicPartition>,
    /// Next source offset to replicate (everything below is acknowledged by the target).
    pub next_source_offset: i64,
    /// Next target offset strait expects to write.
    pub next_target_offset: i64,
    /// Source high watermark at the last fetch.
    pub source_high_watermark: i64,
    /// Records acknowledged by the target.
    pub records: u64,
    /// Uncompressed bytes of those records as read from the source batches.
    pub source_bytes: u64,
    /// Bytes of the batches sent to the target.
    pub wire_bytes: u64,
    /// Source records deleted before strait could read them.
    pub gap_records: u64,
    /// Timestamp (ms) of the oldest source record not yet acknowledged by the target, as far as
    /// the writer knows: the first record of the oldest batch it holds (on the wire or being
    /// built), else the newest record of the last acknowledged batch. It is kept while no writer
    /// runs (the target is unreachable), so the age computed from it keeps growing.
    pub oldest_unacked_timestamp_ms: Option<i64>,
    /// The source topic's time-based retention.
    pub retention: Retention,
    /// Which writer generation of this partition this process is.
    pub writer_epoch: i64,
    /// Whether the offsets are a position resumed or confirmed against the target, so a
    /// checkpoint may be written from them.
    pub checkpointable: bool,
    /// strait's producer identities that may have written at or beyond `next_target_offset`;
    /// checkpointed with it.
    pub writers: Vec<ProducerIdentity>,
    /// Bumped whenever `writers` changes.
    pub writers_generation: u64,
    /// The newest `writers_generation` a written checkpoint holds.
    pub writers_checkpointed: u64,
    /// Current state.
    pub state: PartitionState,
}

impl PartitionStatus {
    /// Records on the source not yet acknowledged by the target.
    pub fn lag_records(&self) -> i64 {
        (self.source_high_watermark - self.next_source_offset).max(0)
    }

    /// The retention figures at `now_ms` (wall clock) for an alert threshold of
    /// `threshold_secs` (0 = disabled).
    pub fn retention_risk(&self, now_ms: i64, threshold_secs: u64) -> RiskFigures {
        RiskFigures::at(
            self.lag_records(),
            self.oldest_unacked_timestamp_ms,
            self.retention,
            now_ms,
            threshold_secs,
        )
    }
}

/// Shared table of partition figures.
#[derive(Debug, Default)]
pub struct Progress {
    partitions: Mutex<BTreeMap<TopicPartition, PartitionStatus>>,
    /// A partition waits for a checkpoint (a new producer identity must be in one before it
    /// writes): the checkpoint loop writes at once rather than at its next tick.
    checkpoint_wanted: Notify,
    /// A checkpoint write succeeded.
    checkpoint_written: Notify,
}

/// Totals over all partitions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Partitions with a task.
    pub partitions: usize,
    /// Partitions halted on an error.
    pub halted: usize,
    /// Records acknowledged by the target.
    pub records: u64,
    /// Source bytes replicated.
    pub source_bytes: u64,
    /// Bytes sent to the target.
    pub wire_bytes: u64,
    /// Records not yet replicated.
    pub lag_records: i64,
}

impl Progress {
    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<TopicPartition, PartitionStatus>> {
        // Updates are plain field writes; a panicking writer cannot leave a half-done entry.
        self.partitions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `f` to the figures of `tp`, creating them if needed.
    pub fn update(&self, tp: &TopicPartition, f: impl FnOnce(&mut PartitionStatus)) {
        f(self.table().entry(tp.clone()).or_default());
    }

    /// Sets the retention of every partition of `topic` in the table.
    pub fn set_retention(&self, topic: &str, retention: Retention) {
        for (_, s) in self.table().iter_mut().filter(|(tp, _)| tp.topic == topic) {
            s.retention = retention;
        }
    }

    /// Sets the producer identities of `tp` a checkpoint must hold; returns their generation,
    /// which [`Self::writers_checkpointed`] reaches once a checkpoint holding them is written.
    pub fn set_writers(&self, tp: &TopicPartition, writers: &[ProducerIdentity]) -> u64 {
        let mut table = self.table();
        let s = table.entry(tp.clone()).or_default();
        s.writers = writers.to_vec();
        s.writers_generation += 1;
        s.writers_generation
    }

    /// The newest writers generation of `tp` that a written checkpoint holds.
    pub fn writers_checkpointed(&self, tp: &TopicPartition) -> u64 {
        self.table().get(tp).map_or(0, |s| s.writers_checkpointed)
    }

    /// Asks the checkpoint loop to write now.
    pub fn want_checkpoint(&self) {
        self.checkpoint_wanted.notify_one();
    }

    /// Completes when a partition asked for a checkpoint (at once if one asked since the last).
    pub fn checkpoint_wanted(&self) -> Notified<'_> {
        self.checkpoint_wanted.notified()
    }

    /// Records that checkpoints holding these writers generations were written, and wakes the
    /// partitions waiting for one.
    pub fn checkpoints_written(&self, written: impl IntoIterator<Item = (TopicPartition, u64)>) {
        {
            let mut table = self.table();
            for (tp, generation) in written {
                if let Some(s) = table.get_mut(&tp) {
                    s.writers_checkpointed = s.writers_checkpointed.max(generation);
                }
            }
        }
        self.checkpoint_written.notify_waiters();
    }

    /// Completes at the next [`Self::checkpoints_written`]; enable it before checking
    /// [`Self::writers_checkpointed`] so no write is missed in between.
    pub fn checkpoint_written(&self) -> Notified<'_> {
        self.checkpoint_written.notified()
    }

    /// A copy of one partition's figures.
    pub fn get(&self, tp: &TopicPartition) -> Option<PartitionStatus> {
        self.table().get(tp).cloned()
    }

    /// A copy of the whole table.
    pub fn snapshot(&self) -> BTreeMap<TopicPartition, PartitionStatus> {
        self.table().clone()
    }

    /// Sums over all partitions.
    pub fn totals(&self) -> Totals {
        self.table().values().fold(Totals::default(), |mut t, s| {
            t.partitions += 1;
            t.halted += usize::from(matches!(s.state, PartitionState::Halted(_)));
            t.records += s.records;
            t.source_bytes += s.source_bytes;
            t.wire_bytes += s.wire_bytes;
            t.lag_records += s.lag_records();
            t
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_claim_completes_only_once_a_checkpoint_holds_its_writers() {
        let p = Progress::default();
        let tp = TopicPartition::new("spans", 0);
        let id = ProducerIdentity { id: 5, epoch: 0 };
        let first = p.set_writers(&tp, &[id]);
        // A write of an older snapshot does not count.
        p.checkpoints_written([(tp.clone(), first - 1)]);
        assert!(p.writers_checkpointed(&tp) < first);
        let written = p.checkpoint_written();
        tokio::pin!(written);
        written.as_mut().enable();
        p.checkpoints_written([(tp.clone(), first)]);
        written.await;
        assert_eq!(p.writers_checkpointed(&tp), first);
        let second = p.set_writers(&tp, &[id, ProducerIdentity { id: 6, epoch: 0 }]);
        assert!(second > p.writers_checkpointed(&tp));
        // A request made before the loop looks is not lost.
        p.want_checkpoint();
        p.checkpoint_wanted().await;
    }

    #[test]
    fn totals_sum_partitions_and_count_halted() {
        let p = Progress::default();
        let a = TopicPartition::new("spans", 0);
        let b = TopicPartition::new("spans", 1);
        p.update(&a, |s| {
            s.records = 10;
            s.next_source_offset = 10;
            s.source_high_watermark = 15;
        });
        p.update(&b, |s| {
            s.records = 5;
            s.state = PartitionState::Halted("bad crc".into());
        });
        let t = p.totals();
        assert_eq!((t.partitions, t.halted, t.records, t.lag_records), (2, 1, 15, 5));
    }

    #[test]
    fn retention_is_set_per_topic_and_feeds_the_risk() {
        let p = Progress::default();
        let a = TopicPartition::new("spans", 0);
        let b = TopicPartition::new("logs", 0);
        for tp in [&a, &b] {
            p.update(tp, |s| {
                s.next_source_offset = 10;
                s.source_high_watermark = 20;
                s.oldest_unacked_timestamp_ms = Some(1_000_000);
            });
        }
        p.set_retention("spans", Retention::Ms(3_600_000));
        let spans = p.get(&a).expect("spans/0");
        let logs = p.get(&b).expect("logs/0");
        assert_eq!(spans.retention, Retention::Ms(3_600_000));
        assert_eq!(logs.retention, Retention::default());
        let risk = spans.retention_risk(2_000_000, 3600);
        assert_eq!(risk.headroom_secs, Some(2600.0));
        assert!(risk.at_risk);
        assert!(!logs.retention_risk(2_000_000, 3600).at_risk);
    }
}
