use super::*;
use crate::config::OnForeignWriter;
use crate::kafka::ProducerIdentity;

const CP: Position = Position {
    source: 100,
    target: 40,
};
const STRAIT: ProducerIdentity = ProducerIdentity { id: 7000, epoch: 0 };
/// An identity strait used before a restart, still listed in the checkpoint.
const STRAIT_BEFORE: ProducerIdentity = ProducerIdentity { id: 6999, epoch: 0 };
const OTHER: ProducerIdentity = ProducerIdentity { id: 9001, epoch: 0 };
/// A producer without idempotence: librdkafka's default before 2.0, console producers.
const PLAIN: ProducerIdentity = ProducerIdentity { id: -1, epoch: -1 };

fn batch(base: i64, records: i64, producer: ProducerIdentity) -> TailBatch {
    TailBatch {
        base_offset: base,
        next_offset: base + records,
        producer,
        base_sequence: -1,
    }
}

/// Scans the batches (given as (records, producer), laid out from `CP.target`) up to their
/// end.
fn scan(
    batches: &[(i64, ProducerIdentity)],
    known: Option<&[ProducerIdentity]>,
    mode: OnForeignWriter,
) -> Result<TailPlan, TailError> {
    let end = CP.target + batches.iter().map(|b| b.0).sum::<i64>();
    let mut s = TailScan::new(CP.target, end, known, mode);
    let mut at = CP.target;
    for &(records, producer) in batches {
        if s.done() {
            break;
        }
        s.push(batch(at, records, producer));
        at += records;
    }
    assert!(s.done(), "scan reads to the end or stops on a decision");
    s.finish()
}

/// Replays the source from `CP.source` (offsets `CP.source..`, all kept) against a plan:
/// which source offsets are written, and where the first one lands.
fn replay(plan: TailPlan, source_records: i64) -> (Vec<i64>, Position, i64) {
    let mut tail = Tail::new(plan.runs);
    let mut acked = CP;
    let mut written = Vec::new();
    let mut target_of_first = None;
    for offset in CP.source..CP.source + source_records {
        if !tail.absorb(offset, &mut acked) {
            target_of_first.get_or_insert(acked.target);
            written.push(offset);
        }
    }
    let landing = target_of_first.unwrap_or(acked.target);
    (
        written,
        Position {
            source: acked.source,
            target: landing,
        },
        tail.take_foreign_passed(),
    )
}

#[test]
fn a_target_behind_its_checkpoint_is_not_resumable() {
    assert!(is_behind(CP, 39));
    assert!(is_behind(CP, 0));
    assert!(!is_behind(CP, 40));
    assert!(!is_behind(CP, 47));
}

#[test]
fn an_empty_tail_resumes_with_nothing_to_skip() {
    let plan = scan(&[], Some(&[STRAIT]), OnForeignWriter::Halt).expect("empty tail");
    assert_eq!(plan, TailPlan::default());
    let (written, landing, foreign) = replay(plan, 3);
    assert_eq!(written, [100, 101, 102]);
    assert_eq!(landing.target, CP.target);
    assert_eq!(foreign, 0);
}

#[test]
fn a_tail_of_own_batches_is_absorbed_and_not_written_again() {
    let plan = scan(
        &[(4, STRAIT_BEFORE), (3, STRAIT)],
        Some(&[STRAIT_BEFORE, STRAIT]),
        OnForeignWriter::Halt,
    )
    .expect("own tail");
    assert_eq!(plan.own, 7);
    assert_eq!(plan.foreign, 0);
    assert_eq!(plan.writers, [STRAIT_BEFORE, STRAIT]);
    let (written, landing, _) = replay(plan, 10);
    assert_eq!(
        written,
        [107, 108, 109],
        "the 7 records on the target are not written again"
    );
    assert_eq!(landing.target, CP.target + 7);
}

#[test]
fn own_then_foreign_halts_naming_the_foreign_batches() {
    let err = scan(
        &[(5, STRAIT), (60, OTHER), (40, OTHER), (2, STRAIT)],
        Some(&[STRAIT]),
        OnForeignWriter::Halt,
    )
    .expect_err("foreign batch");
    assert_eq!(
        err,
        TailError::Foreign(Foreign {
            first: 45,
            last: 144,
            producer: OTHER,
            records: 100,
            unattributed: false,
        })
    );
}

#[test]
fn foreign_then_own_halts_and_names_only_the_foreign_stretch() {
    let err = scan(&[(3, PLAIN), (9, STRAIT)], Some(&[STRAIT]), OnForeignWriter::Halt).expect_err("foreign batch");
    assert_eq!(
        err,
        TailError::Foreign(Foreign {
            first: 40,
            last: 42,
            producer: PLAIN,
            records: 3,
            unattributed: false,
        })
    );
}

#[test]
fn a_foreign_only_tail_halts() {
    let err = scan(&[(100, OTHER)], Some(&[STRAIT]), OnForeignWriter::Halt).expect_err("foreign batch");
    assert!(
        matches!(
            err,
            TailError::Foreign(Foreign {
                records: 100,
                first: 40,
                last: 139,
                ..
            })
        ),
        "{err:?}"
    );
}

#[test]
fn the_same_producer_id_with_another_epoch_is_not_strait() {
    let bumped = ProducerIdentity {
        id: STRAIT.id,
        epoch: 1,
    };
    let err = scan(&[(2, bumped)], Some(&[STRAIT]), OnForeignWriter::Halt).expect_err("other epoch");
    assert!(
        matches!(err, TailError::Foreign(Foreign { producer, .. }) if producer == bumped),
        "{err:?}"
    );
}

#[test]
fn skip_mode_passes_foreign_records_and_writes_every_source_record() {
    // Own 5, foreign 100 (two batches), own 2, foreign 3: strait wrote source 100..107.
    let plan = scan(
        &[(5, STRAIT), (60, OTHER), (40, OTHER), (2, STRAIT), (3, PLAIN)],
        Some(&[STRAIT]),
        OnForeignWriter::Skip,
    )
    .expect("skip mode plans");
    assert_eq!((plan.own, plan.foreign), (7, 103));
    assert_eq!(
        plan.runs,
        [
            Run::Own(5),
            Run::Other {
                offsets: 100,
                foreign: 100
            },
            Run::Own(2),
            Run::Other { offsets: 3, foreign: 3 },
        ]
    );
    let (written, landing, foreign) = replay(plan.clone(), 12);
    assert_eq!(
        written,
        [107, 108, 109, 110, 111],
        "nothing skipped beyond strait's own 7"
    );
    assert_eq!(landing.target, CP.target + 110, "written after the whole tail");
    assert_eq!(foreign, 103);

    // Positions in between are exact: a checkpoint taken after the sixth own record.
    let mut tail = Tail::new(plan.runs);
    let mut acked = CP;
    for offset in 100..106 {
        assert!(tail.absorb(offset, &mut acked));
    }
    assert_eq!(
        acked,
        Position {
            source: 106,
            target: 40 + 5 + 100 + 1
        }
    );
    assert_eq!(tail.take_foreign_passed(), 100);
}

#[test]
fn skip_mode_with_a_foreign_only_tail_writes_after_it() {
    let plan = scan(&[(100, OTHER)], Some(&[STRAIT]), OnForeignWriter::Skip).expect("plans");
    assert_eq!((plan.own, plan.foreign), (0, 100));
    let (written, landing, foreign) = replay(plan, 2);
    assert_eq!(written, [100, 101]);
    assert_eq!(landing.target, 140);
    assert_eq!(foreign, 100);
}

#[test]
fn a_checkpoint_without_identities_resumes_only_over_an_empty_tail() {
    let plan = scan(&[], None, OnForeignWriter::Halt).expect("nothing to attribute");
    assert_eq!(plan.own, 0);
    // Whatever is there could be anyone's: halt, saying why.
    let err = scan(&[(7, STRAIT)], None, OnForeignWriter::Halt).expect_err("unattributable");
    assert_eq!(
        err,
        TailError::Foreign(Foreign {
            first: 40,
            last: 46,
            producer: STRAIT,
            records: 7,
            unattributed: true,
        })
    );
    // With skip it is passed over: the source is written again from the checkpoint.
    let plan = scan(&[(7, STRAIT)], None, OnForeignWriter::Skip).expect("skip");
    let (written, landing, _) = replay(plan, 3);
    assert_eq!(written, [100, 101, 102]);
    assert_eq!(landing.target, 47);
}

#[test]
fn batches_before_the_position_are_ignored_and_a_straddling_one_counts_from_it() {
    // The checkpoint is inside a batch of strait's (absorbed record by record before).
    let mut s = TailScan::new(40, 50, Some(&[STRAIT]), OnForeignWriter::Halt);
    s.push(batch(30, 5, STRAIT));
    s.push(batch(35, 8, STRAIT));
    assert_eq!(s.next_offset(), 43);
    s.push(batch(43, 7, STRAIT));
    assert!(s.done());
    let plan = s.finish().expect("own");
    assert_eq!(plan.own, 10);
    assert_eq!(plan.runs, [Run::Own(10)]);
}

#[test]
fn offsets_without_a_batch_are_passed_without_counting_anything() {
    let mut s = TailScan::new(40, 50, Some(&[STRAIT]), OnForeignWriter::Halt);
    s.push(batch(40, 2, STRAIT));
    s.push(batch(45, 5, STRAIT));
    let plan = s.finish().expect("own");
    assert_eq!((plan.own, plan.foreign), (7, 0));
    let (written, landing, foreign) = replay(plan, 8);
    assert_eq!(written, [107]);
    assert_eq!(landing.target, 50);
    assert_eq!(foreign, 0);
}

#[test]
fn offsets_deleted_before_they_were_read_are_passed_as_holes() {
    // The target's retention deleted 40..45 (strait's or not, nobody can tell now).
    let mut s = TailScan::new(40, 50, Some(&[STRAIT]), OnForeignWriter::Halt);
    assert_eq!(s.deleted_until(45), 5);
    assert_eq!(s.next_offset(), 45);
    s.push(batch(45, 5, STRAIT));
    let plan = s.finish().expect("own after the hole");
    assert_eq!((plan.own, plan.foreign), (5, 0));
    // The source records of the deleted offsets are written again, none skipped for them.
    let (written, landing, _) = replay(plan, 7);
    assert_eq!(written, [105, 106]);
    assert_eq!(landing.target, 50);
    // Deleted past the end: everything is a hole.
    let mut s = TailScan::new(40, 50, Some(&[STRAIT]), OnForeignWriter::Halt);
    assert_eq!(s.deleted_until(60), 10);
    assert!(s.done());
    assert_eq!(s.deleted_until(70), 0);
}

#[test]
fn batches_appended_after_the_listed_end_are_left_for_later() {
    let mut s = TailScan::new(40, 45, Some(&[STRAIT]), OnForeignWriter::Halt);
    s.push(batch(40, 5, STRAIT));
    assert!(s.done());
    s.push(batch(45, 5, OTHER));
    assert_eq!(s.finish().expect("own only").own, 5);
    let mut s = TailScan::new(40, 42, Some(&[STRAIT]), OnForeignWriter::Halt);
    s.ends_at(40);
    assert!(s.done());
    assert_eq!(s.finish().expect("empty"), TailPlan::default());
}

#[test]
fn the_runs_kept_are_bounded() {
    let mut s = TailScan::new(0, i64::MAX, Some(&[STRAIT]), OnForeignWriter::Skip);
    let mut at = 0;
    while !s.done() && at <= 2 * MAX_TAIL_RUNS as i64 {
        let who = if at % 2 == 0 { STRAIT } else { OTHER };
        s.push(batch(at, 1, who));
        at += 1;
    }
    assert_eq!(at, MAX_TAIL_RUNS as i64 + 1);
    assert_eq!(
        s.finish(),
        Err(TailError::TooManyRuns {
            at: MAX_TAIL_RUNS as i64
        })
    );
}

#[test]
fn compacted_source_offsets_are_holes_not_gaps() {
    // Source offsets 100, 101, 105, 109 remain after compaction; 3 are on the target.
    let mut tail = Tail::new([Run::Own(3)].into());
    let mut acked = CP;
    let skipped: Vec<bool> = [100, 101, 105, 109]
        .iter()
        .map(|&o| tail.absorb(o, &mut acked))
        .collect();
    assert_eq!(skipped, [true, true, true, false]);
    assert_eq!(
        acked,
        Position {
            source: 106,
            target: 43
        }
    );
}

#[test]
fn a_source_gap_inside_the_tail_window_counts_only_never_replicated_records() {
    // 5 records made it to the target after the checkpoint; then offsets 100..120 were
    // deleted at the source: 5 of those 20 were replicated, 15 are the gap.
    let mut tail = Tail::new([Run::Own(5)].into());
    let mut acked = CP;
    assert_eq!(tail.gap(100, 120, &mut acked), 15);
    assert_eq!(
        acked,
        Position {
            source: 120,
            target: 45
        }
    );
    assert_eq!(tail.remaining(), 0);
}

#[test]
fn a_gap_smaller_than_the_tail_leaves_the_rest_to_skip() {
    let mut tail = Tail::new([Run::Own(8)].into());
    let mut acked = CP;
    assert_eq!(tail.gap(100, 103, &mut acked), 0);
    assert_eq!(tail.remaining(), 5);
    assert_eq!(
        acked,
        Position {
            source: 103,
            target: 43
        }
    );
    assert!(tail.absorb(103, &mut acked));
}

#[test]
fn a_gap_after_the_tail_is_counted_whole() {
    let mut tail = Tail::new([Run::Own(2)].into());
    let mut acked = CP;
    assert!(tail.absorb(100, &mut acked));
    assert!(tail.absorb(101, &mut acked));
    assert_eq!(tail.gap(102, 110, &mut acked), 8);
    assert_eq!(
        acked,
        Position {
            source: 110,
            target: 42
        }
    );
}

#[test]
fn a_gap_across_foreign_records_counts_only_strait_records_as_replicated() {
    // Own 3, foreign 50, own 2; then source 100..110 deleted: 5 replicated, 5 missing.
    let mut tail = Tail::new(
        [
            Run::Own(3),
            Run::Other {
                offsets: 50,
                foreign: 50,
            },
            Run::Own(2),
        ]
        .into(),
    );
    let mut acked = CP;
    assert_eq!(tail.gap(100, 110, &mut acked), 5);
    assert_eq!(
        acked,
        Position {
            source: 110,
            target: 40 + 55
        }
    );
    assert_eq!(tail.take_foreign_passed(), 50);
}

fn sequenced(base: i64, records: i64, producer: ProducerIdentity, base_sequence: i32) -> TailBatch {
    TailBatch {
        base_sequence,
        ..batch(base, records, producer)
    }
}

/// Scans sequenced batches (records, producer, base sequence) laid out from `CP.target`, with
/// `anchors` (each identity's sequence at `CP`).
fn scan_sequenced(batches: &[(i64, ProducerIdentity, i32)], anchors: &[Anchor]) -> TailPlan {
    let end = CP.target + batches.iter().map(|b| b.0).sum::<i64>();
    let known = [STRAIT_BEFORE, STRAIT];
    let mut s = TailScan::new(CP.target, end, Some(&known), OnForeignWriter::Halt).anchored(anchors);
    let mut at = CP.target;
    for &(records, producer, sequence) in batches {
        s.push(sequenced(at, records, producer, sequence));
        at += records;
    }
    s.finish().expect("a plan")
}

fn anchor(producer: ProducerIdentity, sequence: i32) -> Anchor {
    Anchor { producer, sequence }
}

#[test]
fn a_late_batch_of_an_old_identity_before_the_new_ones_copy_counts_once() {
    // STRAIT_BEFORE's batch (its answer lost) landed after the reconcile that found the tail
    // empty; STRAIT then wrote the same 10 records again, from the same position.
    let plan = scan_sequenced(
        &[(10, STRAIT_BEFORE, 50), (10, STRAIT, 0), (5, STRAIT, 10)],
        &[anchor(STRAIT_BEFORE, 50), anchor(STRAIT, 0)],
    );
    assert_eq!((plan.own, plan.duplicates), (15, 10));
    let (written, landing, _) = replay(plan, 20);
    assert_eq!(
        written,
        (CP.source + 15..CP.source + 20).collect::<Vec<_>>(),
        "the next records, none skipped"
    );
    assert_eq!(landing.target, CP.target + 25, "after the whole tail");
}

#[test]
fn a_late_batch_after_the_new_identity_s_records_is_a_duplicate_of_records_before_the_position() {
    // Resumed after STRAIT wrote 10 records: STRAIT_BEFORE's sequence moved on with them, so its
    // late batch holds records from before the position.
    let plan = scan_sequenced(
        &[(10, STRAIT_BEFORE, 50), (4, STRAIT, 10)],
        &[anchor(STRAIT_BEFORE, 60), anchor(STRAIT, 10)],
    );
    assert_eq!((plan.own, plan.duplicates), (4, 10));
    assert_eq!(
        plan.runs,
        VecDeque::from([
            Run::Other {
                offsets: 10,
                foreign: 0
            },
            Run::Own(4)
        ])
    );
}

#[test]
fn partly_overlapping_copies_count_each_record_once() {
    // The old identity's late batch holds 6 records; the new one had written 4 of them again
    // and went on.
    let plan = scan_sequenced(
        &[(6, STRAIT_BEFORE, 0), (10, STRAIT, 0)],
        &[anchor(STRAIT_BEFORE, 0), anchor(STRAIT, 0)],
    );
    assert_eq!((plan.own, plan.duplicates), (10, 6));
    assert_eq!(
        plan.runs,
        VecDeque::from([Run::Own(6), Run::Other { offsets: 6, foreign: 0 }, Run::Own(4)])
    );
}

#[test]
fn without_an_anchor_an_identity_holds_the_next_records_and_its_anchor_is_found() {
    let plan = scan_sequenced(&[(3, STRAIT, 500), (2, STRAIT, 503)], &[]);
    assert_eq!((plan.own, plan.duplicates, plan.reanchored), (5, 0, 0));
    assert_eq!(plan.anchor(STRAIT), Some(500));
    // Sequences wrap at 2^31.
    let plan = scan_sequenced(
        &[(3, STRAIT, i32::MAX - 1), (2, STRAIT, 1)],
        &[anchor(STRAIT, i32::MAX - 1)],
    );
    assert_eq!((plan.own, plan.duplicates, plan.reanchored), (5, 0, 0));
}

#[test]
fn a_hole_in_strait_s_own_records_counts_what_follows_as_next() {
    // The anchor says the batch holds records 5.. while nothing holds 0..5 (deleted on the
    // target): they are taken as the next records, as without sequences.
    let plan = scan_sequenced(&[(3, STRAIT, 5)], &[anchor(STRAIT, 0)]);
    assert_eq!((plan.own, plan.duplicates, plan.reanchored), (3, 0, 1));
    assert_eq!(plan.anchor(STRAIT), Some(5));
}

#[test]
fn batches_without_a_sequence_count_as_the_next_records() {
    let plan = scan_sequenced(&[(3, STRAIT, -1), (3, STRAIT_BEFORE, -1)], &[anchor(STRAIT, 0)]);
    assert_eq!((plan.own, plan.duplicates), (6, 0));
}
