//! Tests of the fresh-first core: the ranges, the resume decision and the translation, without
//! sockets; a simulated target log crashed at every kind of point checks exactly-once.

use std::collections::VecDeque;

use super::reconcile::Reconcile;
use super::translate::{first_unread, Translated};
use super::*;
use crate::checkpoint::{
    decode_catchup_record, encode_catchup_value, encode_key, encode_record_value, Checkpoint, CheckpointRecord,
    FreshRange,
};
use crate::config::OnForeignWriter;
use crate::kafka::ProducerIdentity;
use crate::offsets::{OffsetMap, Run};
use crate::pipeline::resume::{Position, TailBatch, TailError};
use crate::pipeline::writers::Writers;

fn id(id: i64) -> ProducerIdentity {
    ProducerIdentity { id, epoch: 0 }
}

fn pos(source: i64, target: i64) -> Position {
    Position { source, target }
}

fn writers(list: &[(i64, i32)]) -> Writers {
    let mut w = Writers::default();
    for &(i, s) in list {
        w.add(id(i), Some(s));
    }
    w
}

/// The worked example of the module doc: position (1000, 1000), B = 7 at sequence 1000.
fn example() -> Ranges {
    let mut r = Ranges::one(pos(1000, 1000), Some(writers(&[(7, 1000)])));
    r.enter(61_000, id(9)).expect("enters");
    r
}

fn batch(base: i64, len: i64, producer: i64, sequence: i32) -> TailBatch {
    TailBatch {
        base_offset: base,
        next_offset: base + len,
        producer: id(producer),
        base_sequence: sequence,
    }
}

/// The ranges through the checkpoint codec and back, as a resume reads them.
fn through_checkpoint(r: &Ranges) -> Ranges {
    let cp = r.to_checkpoint();
    let checkpoint = Checkpoint {
        replication_id: "dc1".into(),
        source_topic: "spans".into(),
        source_partition: 0,
        target_topic: "dc1.spans".into(),
        next_source_offset: cp.at.source,
        next_target_offset: cp.at.target,
        writer_epoch: 1,
        wall_clock_ms: 0,
    };
    let (writers, sequences) = cp.writers.unzip();
    let record = CheckpointRecord {
        checkpoint,
        writers,
        sequences,
        topic_ids: Some(crate::checkpoint::TopicIds::default()),
        fresh: None,
    };
    let value = match &cp.fresh {
        Some(f) => encode_catchup_value(&record, f),
        None => encode_record_value(&record),
    };
    let key = encode_key("dc1", "spans", 0);
    let (record, fresh) = decode_catchup_record(&key, &value).expect("checkpoint decodes");
    Ranges::of_checkpoint(&record, fresh.as_ref()).expect("checkpoint ranges")
}

fn at(r: &Ranges, side: Side) -> Position {
    r.range(side).expect("range").at()
}

fn sequence(r: &Ranges, side: Side, producer: i64) -> Option<i32> {
    r.range(side)?.writers()?.sequence(id(producer))
}

#[test]
fn a_partition_enters_only_with_an_old_backlog_of_an_uncompacted_topic() {
    let now = 1_000_000;
    // Oldest record 10 minutes old, threshold 60 s, source ends at 61000.
    assert_eq!(
        entry_split(1000, Some(now - 600_000), now, 60_000, 61_000, false),
        Some(61_000)
    );
    assert_eq!(
        entry_split(1000, Some(now - 30_000), now, 60_000, 61_000, false),
        None,
        "young"
    );
    assert_eq!(
        entry_split(1000, None, now, 60_000, 61_000, false),
        None,
        "no timestamp"
    );
    assert_eq!(
        entry_split(61_000, Some(0), now, 60_000, 61_000, false),
        None,
        "no backlog"
    );
    assert_eq!(entry_split(1000, Some(0), now, 60_000, 61_000, true), None, "compacted");
}

#[test]
fn entering_gives_the_fresh_range_a_new_identity_and_the_checkpoint_both_ranges() {
    let r = example();
    assert!(r.is_catching_up());
    assert_eq!(r.split(), Some(61_000));
    assert_eq!(at(&r, Side::Backlog), pos(1000, 1000));
    assert_eq!(at(&r, Side::Fresh), pos(61_000, 1000));
    assert_eq!(sequence(&r, Side::Backlog, 7), Some(1000));
    assert_eq!(sequence(&r, Side::Fresh, 9), Some(0));
    let cp = r.to_checkpoint();
    assert_eq!(cp.at, pos(1000, 1000));
    assert_eq!(cp.writers, Some((vec![id(7)], vec![1000])));
    assert_eq!(
        cp.fresh,
        Some(FreshRange {
            split: 61_000,
            next_source_offset: 61_000,
            next_target_offset: 1000,
            writers: vec![id(9)],
            sequences: vec![0],
        })
    );
    assert_eq!(through_checkpoint(&r), r);
    assert_eq!(r.lag(61_500), 60_000 + 500);
    assert_eq!(r.lowest(), pos(1000, 1000));
}

#[test]
fn entering_is_refused_where_it_could_not_be_resumed_exactly() {
    let mut r = example();
    assert!(matches!(r.enter(70_000, id(10)), Err(CatchUpError::CannotEnter { .. })));
    let mut unknown = Ranges::one(pos(10, 10), None);
    assert!(matches!(
        unknown.enter(20, id(1)),
        Err(CatchUpError::CannotEnter { .. })
    ));
    let mut one = Ranges::one(pos(10, 10), Some(writers(&[(1, 0)])));
    assert!(matches!(
        one.enter(10, id(2)),
        Err(CatchUpError::CannotEnter { at: 10, .. })
    ));
    assert!(matches!(one.enter(20, id(1)), Err(CatchUpError::CannotEnter { .. })));
    assert_eq!(one, Ranges::one(pos(10, 10), Some(writers(&[(1, 0)]))), "unchanged");
}

#[test]
fn acks_move_their_range_and_the_other_ranges_target() {
    let mut r = example();
    // The table of the worked example.
    assert!(!r.acked(Side::Fresh, 61_050, 50, 1050).expect("fresh"));
    assert_eq!(
        (at(&r, Side::Backlog), at(&r, Side::Fresh)),
        (pos(1000, 1050), pos(61_050, 1050))
    );
    r.acked(Side::Backlog, 1500, 500, 1550).expect("backlog");
    r.acked(Side::Fresh, 61_080, 30, 1580).expect("fresh");
    assert_eq!(
        (at(&r, Side::Backlog), at(&r, Side::Fresh)),
        (pos(1500, 1580), pos(61_080, 1580))
    );
    assert_eq!(sequence(&r, Side::Backlog, 7), Some(1500));
    assert_eq!(sequence(&r, Side::Fresh, 9), Some(80));
    assert_eq!(
        r.acked(Side::Backlog, 61_001, 1, 1581),
        Err(CatchUpError::PastSplit {
            until: 61_001,
            split: 61_000
        })
    );
    assert!(matches!(
        r.acked(Side::Fresh, 61_000, 1, 1581),
        Err(CatchUpError::Backwards { side: Side::Fresh, .. })
    ));
    let mut one = Ranges::one(pos(0, 0), None);
    assert_eq!(
        one.acked(Side::Backlog, 5, 5, 5),
        Err(CatchUpError::NoBacklog { at: 5 })
    );
}

#[test]
fn the_backlog_reaching_the_split_merges_at_the_fresh_position_with_every_identity() {
    let mut r = example();
    r.acked(Side::Fresh, 61_100, 100, 1100).expect("fresh");
    assert!(r.acked(Side::Backlog, 61_000, 60_000, 61_100).expect("backlog"));
    assert!(!r.is_catching_up());
    let cp = r.to_checkpoint();
    assert_eq!(cp.at, pos(61_100, 61_100));
    assert_eq!(cp.fresh, None, "one range: no catch-up section");
    // Both identities, each at the sequence it would give the next record: a late backlog
    // batch (sequences below 61000) holds records before the position.
    assert_eq!(cp.writers, Some((vec![id(7), id(9)], vec![61_000, 100])));
}

#[test]
fn a_backlog_gap_stops_at_the_split_and_drains_the_backlog() {
    let mut r = example();
    let (gap, merged) = r.gap(Side::Backlog, 1000, 30_000).expect("gap");
    assert_eq!((gap, merged), (29_000, false));
    assert_eq!(at(&r, Side::Backlog), pos(30_000, 1000));
    // Retention passes the split: the backlog's part ends there, the rest is the fresh range's.
    let (gap, merged) = r.gap(Side::Backlog, 30_000, 70_000).expect("gap");
    assert_eq!((gap, merged), (31_000, true));
    assert_eq!(r.to_checkpoint().at, pos(61_000, 1000));
    let (gap, _) = r.gap(Side::Fresh, 61_000, 70_000).expect("gap");
    assert_eq!(gap, 9000, "counted once per range: 29000 + 31000 + 9000 = 70000 - 1000");
}

/// The crash of the worked example: the backlog's batch landed, its answer was lost.
#[test]
fn the_worked_example_resumes_each_range_where_it_got_to() {
    let mut r = example();
    r.acked(Side::Fresh, 61_050, 50, 1050).expect("fresh");
    r.acked(Side::Backlog, 1500, 500, 1550).expect("backlog");
    r.acked(Side::Fresh, 61_080, 30, 1580).expect("fresh");
    let tail = [batch(1580, 500, 7, 1500)];
    let mut rc = Reconcile::new(through_checkpoint(&r), 2080, OnForeignWriter::Halt);
    assert_eq!(rc.next_offset(), 1580);
    for b in tail {
        rc.push(b);
    }
    assert!(rc.done());
    let mut resumed = rc.finish().expect("plan");
    assert_eq!(
        (resumed.foreign, resumed.duplicates, resumed.reanchored, resumed.merged),
        (0, 0, 0, false)
    );
    let r = &mut resumed.ranges;
    assert_eq!(r.range(Side::Backlog).map(Range::tail_left), Some(500));
    assert_eq!(r.range(Side::Fresh).map(Range::tail_left), Some(0));
    for offset in 1500..2000 {
        assert_eq!(r.absorb(Side::Backlog, offset), Ok((true, false)), "{offset}");
    }
    assert_eq!(r.absorb(Side::Backlog, 2000), Ok((false, false)));
    assert_eq!(at(r, Side::Backlog), pos(2000, 2080));
    assert_eq!(r.absorb(Side::Fresh, 61_080), Ok((false, false)));
    assert_eq!(
        at(r, Side::Fresh),
        pos(61_080, 2080),
        "the fresh range writes after the tail"
    );
    assert_eq!(sequence(r, Side::Backlog, 7), Some(2000));
}

#[test]
fn interleaved_ranges_in_the_tail_are_told_apart_by_identity_and_checkpointed_mid_absorb() {
    let mut r = example();
    r.acked(Side::Fresh, 61_080, 80, 1080).expect("fresh");
    let tail = [
        batch(1080, 20, 9, 80),    // fresh 61080..61100
        batch(1100, 100, 7, 1000), // backlog 1000..1100
        batch(1200, 10, 9, 100),   // fresh 61100..61110
    ];
    let resume = |r: &Ranges| {
        let mut rc = Reconcile::new(through_checkpoint(r), 1210, OnForeignWriter::Halt);
        for b in tail {
            rc.push(b);
        }
        rc.finish().expect("plan").ranges
    };
    let mut r = resume(&r);
    assert_eq!(r.range(Side::Backlog).map(Range::tail_left), Some(100));
    assert_eq!(r.range(Side::Fresh).map(Range::tail_left), Some(30));
    for offset in 61_080..61_110 {
        assert_eq!(r.absorb(Side::Fresh, offset), Ok((true, false)));
    }
    assert_eq!(at(&r, Side::Fresh), pos(61_110, 1210));
    // A checkpoint now: the fresh range is past the tail, the backlog still before it.
    let again = resume(&r);
    assert_eq!(at(&again, Side::Fresh), pos(61_110, 1210));
    assert_eq!(again.range(Side::Fresh).map(Range::tail_left), Some(0));
    assert_eq!(again.range(Side::Backlog).map(Range::tail_left), Some(100));
    for offset in 1000..1100 {
        assert_eq!(r.absorb(Side::Backlog, offset), Ok((true, false)));
    }
    assert_eq!(at(&r, Side::Backlog), pos(1100, 1200));
}

#[test]
fn a_late_backlog_batch_of_a_replaced_identity_is_a_duplicate_not_the_next_records() {
    let mut r = example();
    // B (7) sent backlog 1000..1005, its answer was lost and the reconcile did not find it; a
    // new backlog identity (11) wrote them again at 1000..1005, acknowledged.
    assert_eq!(r.claim(Side::Backlog, id(11)), Ok(0));
    r.acked(Side::Backlog, 1005, 5, 1005).expect("backlog");
    r.acked(Side::Fresh, 61_003, 3, 1008).expect("fresh");
    // Then B's batch lands late, and a fresh batch after it; the process crashes.
    let tail = [batch(1008, 5, 7, 1000), batch(1013, 2, 9, 3)];
    let mut rc = Reconcile::new(through_checkpoint(&r), 1015, OnForeignWriter::Halt);
    for b in tail {
        rc.push(b);
    }
    let resumed = rc.finish().expect("plan");
    assert_eq!((resumed.duplicates, resumed.foreign), (5, 0));
    let mut r = resumed.ranges;
    assert_eq!(r.range(Side::Backlog).map(Range::tail_left), Some(0));
    assert_eq!(
        r.absorb(Side::Backlog, 1005),
        Ok((false, false)),
        "1005 is written, not skipped"
    );
    assert_eq!(at(&r, Side::Backlog), pos(1005, 1015));
    assert_eq!(r.absorb(Side::Fresh, 61_003), Ok((true, false)));
    assert_eq!(at(&r, Side::Fresh), pos(61_004, 1014));
}

#[test]
fn a_foreign_batch_halts_or_is_counted_once() {
    let r = example();
    let tail = [batch(1000, 5, 9, 0), batch(1005, 3, 42, 0), batch(1008, 4, 7, 1000)];
    let mut halt = Reconcile::new(r.clone(), 1012, OnForeignWriter::Halt);
    let mut skip = Reconcile::new(r, 1012, OnForeignWriter::Skip);
    for b in tail {
        halt.push(b);
        skip.push(b);
    }
    assert!(matches!(halt.finish(), Err(TailError::Foreign(f)) if f.producer == id(42) && f.first == 1005));
    let skipped = skip.finish().expect("skip");
    assert_eq!(skipped.foreign, 3);
    assert_eq!(skipped.ranges.range(Side::Fresh).map(Range::tail_left), Some(5));
    assert_eq!(skipped.ranges.range(Side::Backlog).map(Range::tail_left), Some(4));
}

#[test]
fn offsets_the_target_deleted_or_never_held_are_holes_for_both_ranges() {
    let mut r = example();
    r.acked(Side::Fresh, 61_010, 10, 1010).expect("fresh");
    // The target's retention deleted 1010..1015 (a backlog batch of 5) before the scan read it;
    // the partition turns out to end at 1025, not 1030.
    let mut rc = Reconcile::new(r, 1030, OnForeignWriter::Halt);
    rc.deleted_until(1015);
    assert_eq!(rc.next_offset(), 1015);
    rc.ends_at(1025);
    rc.push(batch(1015, 10, 9, 10));
    assert!(rc.done());
    let mut resumed = rc.finish().expect("plan").ranges;
    assert_eq!(resumed.range(Side::Fresh).map(Range::tail_left), Some(10));
    assert_eq!(resumed.range(Side::Backlog).map(Range::tail_left), Some(0));
    assert_eq!(resumed.absorb(Side::Fresh, 61_010), Ok((true, false)));
    assert_eq!(at(&resumed, Side::Fresh), pos(61_011, 1016));
    // The backlog wrote nothing the scan found: its next record lands after the tail.
    assert_eq!(resumed.absorb(Side::Backlog, 1000), Ok((false, false)));
    assert_eq!(at(&resumed, Side::Backlog), pos(1000, 1025));
}

#[test]
fn corrupt_checkpoint_ranges_are_refused() {
    let r = example();
    let cp = r.to_checkpoint();
    let record = CheckpointRecord {
        checkpoint: Checkpoint {
            replication_id: "dc1".into(),
            source_topic: "spans".into(),
            source_partition: 0,
            target_topic: "spans".into(),
            next_source_offset: cp.at.source,
            next_target_offset: cp.at.target,
            writer_epoch: 1,
            wall_clock_ms: 0,
        },
        writers: Some(vec![id(7)]),
        sequences: Some(vec![1000]),
        topic_ids: None,
        fresh: None,
    };
    let fresh = cp.fresh.expect("two ranges");
    let shared = FreshRange {
        writers: vec![id(7)],
        ..fresh.clone()
    };
    assert_eq!(
        Ranges::of_checkpoint(&record, Some(&shared)),
        Err(CatchUpError::SharedWriter { id: 7, epoch: 0 })
    );
    let below = FreshRange {
        next_source_offset: 60_000,
        ..fresh.clone()
    };
    assert!(matches!(
        Ranges::of_checkpoint(&record, Some(&below)),
        Err(CatchUpError::NotNested { .. })
    ));
    let before = FreshRange { split: 999, ..fresh };
    let err = Ranges::of_checkpoint(&record, Some(&before)).expect_err("backlog past the split");
    assert!(err.to_string().contains("corrupt"), "{err}");
    let mut two = example();
    assert!(matches!(
        two.claim(Side::Fresh, id(7)),
        Err(CatchUpError::SharedWriter { .. })
    ));
}

#[test]
fn with_one_range_translation_is_todays_and_exact() {
    let mut m = OffsetMap::default();
    m.record(0, 0, 5);
    m.record(8, 5, 2);
    m.record(10, 9, 3);
    let end = crate::offsets::End { source: 13, target: 12 };
    let runs: Vec<Run> = m.runs().copied().collect();
    for c in 0..=14 {
        let t = first_unread(&runs, c, end.target);
        assert_eq!(t.offset, m.translate(c, end).offset(), "offset {c}");
        assert_eq!(t.reread, 0);
    }
}

#[test]
fn translation_inside_a_catch_up_misses_nothing_and_counts_rereads() {
    // The worked example: fresh 61000..61050 at 1000, backlog 1000..1500 at 1050, fresh
    // 61050..61080 at 1550; before the entry 0..1000 at 0.
    let runs = [
        Run {
            source: 0,
            target: 0,
            len: 1000,
        },
        Run {
            source: 61_000,
            target: 1000,
            len: 50,
        },
        Run {
            source: 1000,
            target: 1050,
            len: 500,
        },
        Run {
            source: 61_050,
            target: 1550,
            len: 30,
        },
    ];
    assert_eq!(
        first_unread(&runs, 1200, 1580),
        Translated {
            offset: 1000,
            reread: 200
        }
    );
    assert_eq!(first_unread(&runs, 500, 1580), Translated { offset: 500, reread: 0 });
    // Committed in the fresh range: the backlog not yet written lands after 1580 anyway.
    assert_eq!(
        first_unread(&runs, 61_060, 1580),
        Translated {
            offset: 1560,
            reread: 0
        }
    );
    assert_eq!(
        first_unread(&runs, 61_080, 1580),
        Translated {
            offset: 1580,
            reread: 0
        }
    );
    // Every record at or after the committed offset lies at or after the translation.
    for c in [0, 999, 1000, 1499, 1500, 61_000, 61_049, 61_079] {
        let t = first_unread(&runs, c, 1580).offset;
        for r in &runs {
            for i in 0..r.len {
                assert!(
                    r.source + i < c || r.target + i >= t,
                    "record {} before {t} for {c}",
                    r.source + i
                );
            }
        }
    }
}

/// A deterministic pseudo-random sequence (xorshift).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// A partition in fresh-first written to a simulated target log, acked, checkpointed and
/// crashed at random points (batches in flight landed or not), resumed from its last checkpoint
/// through the codec and the reconcile each time.
struct Sim {
    rng: Rng,
    split: i64,
    end: i64,
    ranges: Ranges,
    /// The target log: each batch and the source offsets it holds.
    log: Vec<(TailBatch, Vec<i64>)>,
    /// Each side's producer and its next sequence.
    producer: [(i64, i32); 2],
    next_id: i64,
    /// Each side's next source offset to send.
    sent: [i64; 2],
    in_flight: VecDeque<(Side, i64, i64, i64)>,
    checkpoint: Ranges,
    crashes: u32,
    crashes_with_both_in_flight: u32,
}

/// Offsets that hold no kept record (a transaction marker, say): every eleventh.
fn is_kept(offset: i64) -> bool {
    offset % 11 != 5
}

/// The first kept record's offset from `from`, or `limit`.
fn next_kept(from: i64, limit: i64) -> i64 {
    (from..limit).find(|o| is_kept(*o)).unwrap_or(limit)
}

fn slot(side: Side) -> usize {
    match side {
        Side::Backlog => 0,
        Side::Fresh => 1,
    }
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut ranges = Ranges::one(pos(0, 0), Some(writers(&[(1, 0)])));
        ranges.enter(100, id(2)).expect("enters");
        Sim {
            rng: Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            split: 100,
            end: 160,
            checkpoint: through_checkpoint(&ranges),
            ranges,
            log: Vec::new(),
            producer: [(1, 0), (2, 0)],
            next_id: 3,
            sent: [0, 100],
            in_flight: VecDeque::new(),
            crashes: 0,
            crashes_with_both_in_flight: 0,
        }
    }

    fn target_end(&self) -> i64 {
        self.log.last().map_or(0, |(b, _)| b.next_offset)
    }

    fn send(&mut self) {
        let backlog_left = self.ranges.range(Side::Backlog).is_some() && self.sent[0] < self.split;
        let fresh_left = self.sent[1] < self.end;
        let side = match (backlog_left, fresh_left) {
            (true, true) if self.rng.below(2) == 0 => Side::Backlog,
            (true, false) => Side::Backlog,
            (_, true) => Side::Fresh,
            (false, false) => return,
        };
        let s = slot(side);
        // Records found on the target at the last resume are absorbed as they are read again.
        let limit = if side == Side::Backlog { self.split } else { self.end };
        let next = next_kept(self.sent[s], limit);
        if next == limit {
            // Only offsets without a kept record are left: passed once nothing is in flight.
            if !self.in_flight.iter().any(|f| f.0 == side) {
                self.ranges.passed(side, limit).expect("passed");
                self.sent[s] = limit;
                self.consistent("passed");
            }
            return;
        }
        if self.ranges.range(side).is_some_and(|r| r.tail_left() > 0) {
            let (absorbed, _) = self.ranges.absorb(side, next).expect("absorb");
            assert!(absorbed, "{side} record {next} found on the target");
            self.consistent("absorb");
            self.sent[s] = next + 1;
            return;
        }
        let want = 1 + self.rng.below(7) as usize;
        let mut sources = Vec::new();
        let mut o = next;
        while o < limit && sources.len() < want {
            sources.push(o);
            o = next_kept(o + 1, limit);
        }
        // The position passes the offsets without a kept record that follow the batch.
        let until = o;
        let n = sources.len() as i64;
        let base = self.target_end();
        let (producer, sequence) = self.producer[s];
        self.log.push((batch(base, n, producer, sequence), sources));
        self.producer[s].1 += n as i32;
        self.sent[s] = until;
        self.in_flight.push_back((side, until, n, base + n));
    }

    fn crash(&mut self) {
        self.crashes += 1;
        let sides: Vec<Side> = self.in_flight.iter().map(|f| f.0).collect();
        if sides.contains(&Side::Backlog) && sides.contains(&Side::Fresh) {
            self.crashes_with_both_in_flight += 1;
        }
        // Of each range's batches in flight, the newest few never landed (an identity's batch
        // lands only after its earlier ones); the other range's later batches landed earlier.
        let in_flight = self.log.split_off(self.log.len() - self.in_flight.len());
        let mut lost = [0, 0];
        for side in [Side::Backlog, Side::Fresh] {
            let of_side = self.in_flight.iter().filter(|f| f.0 == side).count() as u64;
            lost[slot(side)] = self.rng.below(of_side + 1) as usize;
        }
        let sides: Vec<Side> = self.in_flight.drain(..).map(|f| f.0).collect();
        let mut kept_of = [0, 0];
        let mut total_of = [0, 0];
        for side in &sides {
            total_of[slot(*side)] += 1;
        }
        for ((b, sources), side) in in_flight.into_iter().zip(sides) {
            let s = slot(side);
            kept_of[s] += 1;
            if kept_of[s] > total_of[s] - lost[s] {
                continue;
            }
            let base = self.target_end();
            let len = b.next_offset - b.base_offset;
            self.log.push((
                TailBatch {
                    base_offset: base,
                    next_offset: base + len,
                    ..b
                },
                sources,
            ));
        }
        let mut rc = Reconcile::new(self.checkpoint.clone(), self.target_end(), OnForeignWriter::Halt);
        for (b, _) in &self.log {
            rc.push(*b);
        }
        assert!(rc.done());
        let resumed = rc.finish().expect("a tail of strait's own batches");
        assert_eq!(
            (resumed.foreign, resumed.duplicates, resumed.reanchored),
            (0, 0, 0),
            "checkpoint {:?}\nlog {:?}",
            self.checkpoint,
            self.log
        );
        self.ranges = resumed.ranges;
        self.consistent("resume");
        for side in [Side::Backlog, Side::Fresh] {
            if self.ranges.range(side).is_none() {
                continue;
            }
            let producer = self.next_id;
            self.next_id += 1;
            self.ranges.claim(side, id(producer)).expect("claim");
            self.producer[slot(side)] = (producer, 0);
        }
        self.checkpoint = through_checkpoint(&self.ranges);
        match &self.ranges {
            Ranges::One(r) => self.sent = [self.split, r.at().source],
            Ranges::Two { backlog, fresh, .. } => self.sent = [backlog.at().source, fresh.at().source],
        }
    }

    fn run(&mut self) {
        let mut steps = 0;
        while !(matches!(&self.ranges, Ranges::One(r) if r.at().source == self.end) && self.in_flight.is_empty()) {
            steps += 1;
            assert!(steps < 10_000, "no progress: {:?}", self.ranges);
            match self.rng.below(100) {
                0..=49 if self.in_flight.len() < 5 => {
                    self.send();
                    self.consistent("send");
                }
                0..=79 => {
                    if let Some((side, until, n, target_end)) = self.in_flight.pop_front() {
                        let side = if self.ranges.is_catching_up() {
                            side
                        } else {
                            Side::Fresh
                        };
                        self.ranges.acked(side, until, n, target_end).expect("ack");
                        self.consistent("ack");
                    }
                }
                80..=94 => self.checkpoint = through_checkpoint(&self.ranges),
                _ => self.crash(),
            }
        }
    }

    /// Each range's position is consistent with the log: its records below its target offset
    /// are below its source offset, and those at or beyond it are not.
    fn consistent(&self, what: &str) {
        let sides: Vec<(Side, Position, i64, i64)> = match &self.ranges {
            Ranges::One(r) => vec![(Side::Fresh, r.at(), 0, self.end)],
            Ranges::Two { backlog, split, fresh } => vec![
                (Side::Backlog, backlog.at(), 0, *split),
                (Side::Fresh, fresh.at(), *split, self.end),
            ],
        };
        for (side, at, lo, hi) in sides {
            for (b, sources) in &self.log {
                for (&source, target) in sources.iter().zip(b.base_offset..) {
                    if source < lo || source >= hi {
                        continue;
                    }
                    assert_eq!(
                        source < at.source,
                        target < at.target,
                        "after {what}: {side} at {at:?}, record {source} at {target}\n{:?}",
                        self.ranges
                    );
                }
            }
        }
    }

    /// Every kept source record once on the target, each range in source order.
    fn check(&self) {
        let mut seen = vec![0u32; self.end as usize];
        let (mut last_backlog, mut last_fresh) = (-1, -1);
        for (_, sources) in &self.log {
            for &source in sources {
                seen[source as usize] += 1;
                let last = if source < self.split {
                    &mut last_backlog
                } else {
                    &mut last_fresh
                };
                assert!(source > *last, "source {source} after {last}");
                *last = source;
            }
        }
        let wrong: Vec<(usize, u32)> = seen
            .iter()
            .copied()
            .enumerate()
            .filter(|&(o, n)| n != u32::from(is_kept(o as i64)))
            .collect();
        assert!(wrong.is_empty(), "records not exactly once (offset, times): {wrong:?}");
    }
}

#[test]
fn crashes_at_any_point_of_a_catch_up_lose_and_duplicate_nothing() {
    let (mut crashes, mut both) = (0, 0);
    for seed in 0..400 {
        let mut sim = Sim::new(seed);
        sim.run();
        sim.check();
        crashes += sim.crashes;
        both += sim.crashes_with_both_in_flight;
    }
    // The premise: crashes happened, many with batches of both ranges in flight.
    assert!(
        crashes > 1000 && both > 100,
        "crashes {crashes}, with both ranges in flight {both}"
    );
}
