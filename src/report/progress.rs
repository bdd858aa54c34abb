//! What every partition task reports about itself: offsets, lag, counters and state. Tasks write
//! once per produced batch; the periodic log line, the health monitor and the HTTP status read
//! it. It is a report only: acknowledged positions reach the checkpointer through each task's
//! own feed (`pipeline::checkpoints`), not through this table.

use std::collections::BTreeMap;

use parking_lot::Mutex;

use super::retention::{Retention, RiskFigures};
use crate::kafka::TopicPartition;

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
    /// Batches acknowledged by the target.
    pub batches: u64,
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
    /// Current state.
    pub state: PartitionState,
    /// In a fresh-first catch-up: where the fresh range starts (the backlog ends below it).
    pub catchup_split: Option<i64>,
    /// In a fresh-first catch-up: the fresh range's next source offset (`next_source_offset`
    /// is then the backlog's).
    pub fresh_next_offset: Option<i64>,
}

impl PartitionStatus {
    /// Records on the source not yet acknowledged by the target.
    pub fn lag_records(&self) -> i64 {
        match (self.catchup_split, self.fresh_next_offset) {
            // A fresh-first catch-up: the backlog up to the split, and the fresh range's lag.
            (Some(split), Some(fresh)) => {
                (split - self.next_source_offset).max(0) + (self.source_high_watermark - fresh).max(0)
            }
            _ => (self.source_high_watermark - self.next_source_offset).max(0),
        }
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
    /// Applies `f` to the figures of `tp`, creating them if needed, and returns what it
    /// returns. `f` runs under the table's lock: it only reads and writes fields (metrics are
    /// emitted by the caller, from what it returns).
    pub fn update<R>(&self, tp: &TopicPartition, f: impl FnOnce(&mut PartitionStatus) -> R) -> R {
        f(self.partitions.lock().entry(tp.clone()).or_default())
    }

    /// Sets the retention of every partition of `topic` in the table.
    pub fn set_retention(&self, topic: &str, retention: Retention) {
        for (_, s) in self.partitions.lock().iter_mut().filter(|(tp, _)| tp.topic == topic) {
            s.retention = retention;
        }
    }

    /// A copy of one partition's figures.
    pub fn get(&self, tp: &TopicPartition) -> Option<PartitionStatus> {
        self.partitions.lock().get(tp).cloned()
    }

    /// The partitions in the table.
    pub fn partitions(&self) -> Vec<TopicPartition> {
        self.partitions.lock().keys().cloned().collect()
    }

    /// A copy of the whole table.
    pub fn snapshot(&self) -> BTreeMap<TopicPartition, PartitionStatus> {
        self.partitions.lock().clone()
    }

    /// Sums over all partitions.
    pub fn totals(&self) -> Totals {
        self.partitions.lock().values().fold(Totals::default(), |mut t, s| {
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
