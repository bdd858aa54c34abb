//! The ack stage: the partition's acknowledged position, moved by the target's answers, by
//! records the target already holds (the tail found at the last reconcile) and by source gaps.
//! Each move goes to the checkpointer ([`Feed::advance`]) and into the report ([`Progress`]);
//! metrics are emitted after the report's lock is released.

use std::sync::Arc;
use std::time::Duration;

use super::catchup::Side;
use super::checkpoints::Feed;
use super::resume::{sequence_plus, Position, Tail};
use super::send::Sent;
use crate::kafka::TopicPartition;
use crate::report::Progress;
use crate::telemetry;

/// What a move of the position adds to the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Moved {
    pub(super) records: u64,
    pub(super) source_bytes: u64,
    pub(super) wire_bytes: u64,
    pub(super) batches: u64,
}

/// The acknowledged position of one partition, and what the target holds beyond it.
#[derive(Debug)]
pub(super) struct Acker {
    tp: TopicPartition,
    labels: [(&'static str, String); 2],
    progress: Arc<Progress>,
    feed: Arc<Feed>,
    /// Everything below is acknowledged by the target.
    acked: Position,
    /// The producer sequence of the first kept source record at the starting position.
    start_sequence: i32,
    /// Records acknowledged by the target since the start.
    acked_records: i64,
    /// What the target already holds beyond `acked`: strait's own records (written before a
    /// crash or a lost answer) are dropped from the source, other producers' passed over.
    tail: Tail,
    /// Newest record timestamp of the last acknowledged batch (ms): stands in for the oldest
    /// unacknowledged record's while nothing is held.
    last_max_timestamp: Option<i64>,
    /// Which range of a fresh-first catch-up this is; `None` with one range.
    range: Option<Side>,
}

impl Acker {
    pub(super) fn new(
        tp: TopicPartition,
        progress: Arc<Progress>,
        feed: Arc<Feed>,
        at: Position,
        sequence: i32,
        tail: Tail,
    ) -> Self {
        let labels = telemetry::labels(&tp.topic, tp.partition);
        // The gap series exists from the start at 0, so `increase()` (StraitSourceGap) sees
        // the first gap as an increase rather than as a series born with its value.
        metrics::counter!(telemetry::SOURCE_GAP_RECORDS, &labels).increment(0);
        Self {
            labels,
            tp,
            progress,
            feed,
            acked: at,
            start_sequence: sequence,
            acked_records: 0,
            tail,
            last_max_timestamp: None,
            range: None,
        }
    }

    /// The acker of one range of a fresh-first catch-up: its moves go to the checkpoint's
    /// backlog or fresh part; none is recorded in the offset map (the order is not the source
    /// order), and only the backlog's is the partition's position in the report.
    pub(super) fn of_range(mut self, side: Side) -> Self {
        self.range = Some(side);
        self
    }

    /// Whether every record of this range found on the target was absorbed.
    pub(super) fn tail_absorbed(&self) -> bool {
        self.tail.owns_none()
    }

    fn record_run(&self, source: i64, target: i64, len: i64) {
        if self.range.is_none() {
            self.feed.record_run(source, target, len);
        }
    }

    /// The other range's batch was acknowledged, ending at target offset `target_end`: with
    /// none of its own records left to absorb, this range has nothing unacknowledged below it
    /// (answers come in send order), so its target position moves there.
    pub(super) fn follow(&mut self, target_end: i64, oldest_held: Option<i64>) {
        let mut at = self.acked;
        if self.tail.pass_to(target_end, &mut at) && at != self.acked {
            self.count_foreign();
            self.advance(at, Moved::default(), oldest_held);
        }
    }

    /// Everything below is acknowledged.
    pub(super) fn position(&self) -> Position {
        self.acked
    }

    /// The producer sequence of the first record at the position: every kept source record
    /// the position moved past, written or found in place, moves it on by one.
    pub(super) fn sequence(&self) -> i32 {
        sequence_plus(self.start_sequence, self.records_moved())
    }

    /// Kept source records the position moved past since the start.
    fn records_moved(&self) -> i64 {
        self.acked_records + self.tail.absorbed()
    }

    /// Whether the kept source record at `offset` is already on the target (strait wrote it
    /// before a crash or a lost answer); if so the position moves past it.
    pub(super) fn absorb(&mut self, offset: i64) -> bool {
        let absorbed = self.tail.absorb(offset, &mut self.acked);
        if absorbed {
            self.record_run(offset, self.acked.target - 1, 1);
        }
        absorbed
    }

    /// A batch was acknowledged where expected, from target offset `base` on (the position's,
    /// unless the other range of a catch-up wrote since).
    pub(super) fn batch(&mut self, sent: &Sent, base: i64, oldest_held: Option<i64>) {
        let age_ms = crate::checkpoint::now_ms() - sent.max_timestamp;
        if (0..86_400_000).contains(&age_ms) {
            metrics::histogram!(telemetry::END_TO_END_LATENCY).record(Duration::from_millis(age_ms as u64));
        }
        self.last_max_timestamp = Some(sent.max_timestamp);
        let mut target = base;
        for &(source, count) in &sent.runs {
            self.record_run(source, target, count);
            target += count;
        }
        self.acked_records += sent.count;
        let at = Position {
            source: sent.until,
            target: base + sent.count,
        };
        let moved = Moved {
            records: sent.count as u64,
            source_bytes: sent.source_bytes,
            wire_bytes: sent.wire_bytes,
            batches: 1,
        };
        self.advance(at, moved, oldest_held);
    }

    /// Source records `from..to` are gone. Records the target already holds beyond the
    /// checkpoint came from the first of them, so they are not counted as missing. Returns the
    /// records missing.
    pub(super) fn gap(&mut self, from: i64, to: i64, oldest_held: Option<i64>) -> i64 {
        let missing = self.tail.gap(from, to, &mut self.acked);
        if missing > 0 {
            tracing::warn!(topic = %self.tp.topic, partition = self.tp.partition, from = to - missing,
                to = to - 1, missing, "source records deleted before replication (retention or DeleteRecords): counted as a gap");
            metrics::counter!(telemetry::SOURCE_GAP_RECORDS, &self.labels).increment(missing as u64);
        }
        self.progress
            .update(&self.tp, |s| s.gap_records += missing.max(0) as u64);
        self.count_foreign();
        self.advance(self.acked, Moved::default(), oldest_held);
        missing
    }

    /// Records absorbed from the tail, or dropped source records (control batches, aborted
    /// transactions) with nothing on the wire, moved the position to `source`.
    pub(super) fn moved(&mut self, source: i64, absorbed: u64, oldest_held: Option<i64>) {
        self.count_foreign();
        let at = Position {
            source: source.max(self.acked.source),
            target: self.acked.target,
        };
        let moved = Moved {
            records: absorbed,
            ..Moved::default()
        };
        self.advance(at, moved, oldest_held);
    }

    /// A fetch answer arrived: the source's end, and the oldest record not yet acknowledged.
    pub(super) fn fetched(&self, high_watermark: i64, oldest: Option<i64>) {
        let fresh = self.range == Some(Side::Fresh);
        self.progress.update(&self.tp, |s| {
            s.source_high_watermark = high_watermark;
            if oldest.is_some() && !fresh {
                s.oldest_unacked_timestamp_ms = oldest;
            }
        });
    }

    /// Counts the records of other producers the position just moved past.
    fn count_foreign(&mut self) {
        let passed = self.tail.take_foreign_passed();
        if passed > 0 {
            metrics::counter!(telemetry::FOREIGN_RECORDS, &self.labels).increment(passed as u64);
        }
    }

    fn advance(&mut self, at: Position, moved: Moved, oldest_held: Option<i64>) {
        self.acked = at;
        let fresh = self.range == Some(Side::Fresh);
        if fresh {
            self.feed.advance_fresh(at, self.records_moved());
        } else {
            self.feed.advance(at, self.records_moved());
        }
        let oldest = oldest_held.or(self.last_max_timestamp);
        let (lag, average) = self.progress.update(&self.tp, |s| {
            if fresh {
                s.fresh_next_offset = Some(at.source);
            } else {
                s.next_source_offset = at.source;
                s.next_target_offset = at.target;
            }
            s.records += moved.records;
            s.source_bytes += moved.source_bytes;
            s.wire_bytes += moved.wire_bytes;
            s.batches += moved.batches;
            // The partition's oldest record not replicated is the backlog's.
            if oldest.is_some() && !fresh {
                s.oldest_unacked_timestamp_ms = oldest;
            }
            // Estimated from the average size of the records replicated so far.
            let average = (s.records > 0).then(|| s.source_bytes as f64 / s.records as f64);
            (s.lag_records(), average)
        });
        if moved.records > 0 {
            metrics::counter!(telemetry::RECORDS_REPLICATED, &self.labels).increment(moved.records);
            metrics::counter!(telemetry::SOURCE_BYTES, &self.labels).increment(moved.source_bytes);
            metrics::counter!(telemetry::WIRE_BYTES, &self.labels).increment(moved.wire_bytes);
        }
        metrics::gauge!(telemetry::LAG_RECORDS, &self.labels).set(lag as f64);
        if let Some(average) = average {
            metrics::gauge!(telemetry::LAG_BYTES, &self.labels).set(lag as f64 * average);
        }
    }
}
