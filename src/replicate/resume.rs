//! Where a partition goes on from after a restart or an uncertain answer: the checkpointed
//! position, reconciled with what the target actually holds. Pure logic, no IO.
//!
//! # What is checked
//!
//! strait writes the kept source records (control batches and aborted transactions dropped) in
//! source order, one target offset each, as idempotent producers. It records which: every
//! checkpoint lists the producer identities (id, epoch) that may have written at or beyond its
//! target offset, and a new identity is in a written checkpoint before its first batch is sent.
//!
//! On every reconcile (at start, and whenever the target's state is uncertain: a lost or
//! ambiguous answer, lost producer state, a batch that landed at an unexpected offset) the task
//! reads the batch headers between the checkpointed target offset and the target's end and
//! attributes each batch by its producer identity ([`TailScan`]):
//!
//! - A batch of one of strait's identities is strait's own. strait never writes a source record
//!   twice (it writes again only after absorbing the whole tail it found), so its own records
//!   there are exactly the next kept source records after the checkpointed source offset: only
//!   those are not written again ([`Tail::absorb`]).
//! - Any other batch (another producer, a transaction marker) is foreign, and is never counted
//!   as a replicated source record. With `on_foreign_writer = "halt"` (the default) the
//!   partition stops with an error naming the first foreign batches' offsets, producer id and
//!   record count. With `"skip"` they stay where they are: target offsets move past them and no
//!   source record is consumed on their account.
//! - A checkpoint of a strait that did not record identities attributes nothing: an empty tail
//!   resumes as usual; a non-empty one is foreign (halt by default; with skip, the source is
//!   replicated again from the checkpoint, so records that strait wrote there may arrive twice,
//!   none is lost).
//!
//! # What is still assumed
//!
//! - Offsets in the tail that hold no batch (compacted on the target, or deleted by the target's
//!   retention or DeleteRecords before they were read) are passed over: nobody can tell who wrote
//!   them. Records of strait's that were there are written again: duplicates, never a loss.
//! - Two strait processes writing one partition (overlapping shards, a second deployment) each
//!   see the other's batches as foreign, but only when they reconcile; nothing here fences them.
//! - A transactional writer on the target: its batches and markers are foreign like any other.

use std::collections::VecDeque;

use crate::config::OnForeignWriter;
use crate::kafka::ProducerIdentity;

/// Most runs (alternations between strait's records and other offsets) one reconcile keeps.
/// A tail alternates only where another producer wrote between strait's batches since the last
/// checkpoint; far fewer than this in practice.
pub(crate) const MAX_TAIL_RUNS: usize = 65_536;

/// A consistent pair of positions: everything below `source` (that strait copies) is on the
/// target below `target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) source: i64,
    pub(crate) target: i64,
}

/// Where to go on from: a consistent position and what the target holds beyond it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Resume {
    pub(crate) at: Position,
    pub(crate) tail: TailPlan,
}

/// Whether a target partition ending at `target_end` holds less than the position says
/// strait wrote: the target topic was recreated or lost data.
pub(crate) fn is_behind(at: Position, target_end: i64) -> bool {
    target_end < at.target
}

/// One batch of the target partition as its header tells: where it lies and who wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TailBatch {
    pub(crate) base_offset: i64,
    /// The offset after its last record.
    pub(crate) next_offset: i64,
    pub(crate) producer: ProducerIdentity,
}

impl TailBatch {
    pub(crate) fn of(header: &crate::batch::BatchHeader) -> Self {
        TailBatch {
            base_offset: header.base_offset,
            next_offset: header.next_offset(),
            producer: ProducerIdentity {
                id: header.producer_id,
                epoch: header.producer_epoch,
            },
        }
    }
}

/// A stretch of the target's tail, in offset order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Run {
    /// Records strait wrote: the next kept source records.
    Own(i64),
    /// Offsets that hold none of strait's records: `foreign` records of other producers, the
    /// rest offsets without a batch.
    Other { offsets: i64, foreign: i64 },
}

/// What the target holds beyond a position, attributed batch by batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TailPlan {
    pub(crate) runs: VecDeque<Run>,
    /// strait's own records in it: source records not to write again.
    pub(crate) own: i64,
    /// Records of other producers in it.
    pub(crate) foreign: i64,
    /// strait's identities that wrote in it.
    pub(crate) writers: Vec<ProducerIdentity>,
}

/// The first foreign stretch of a tail: consecutive batches of one producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Foreign {
    pub(crate) first: i64,
    pub(crate) last: i64,
    pub(crate) producer: ProducerIdentity,
    pub(crate) records: i64,
    /// The checkpoint records no identities: nothing beyond it could be attributed.
    pub(crate) unattributed: bool,
}

/// Why a tail gives no plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TailError {
    /// A foreign batch, with `on_foreign_writer = "halt"`.
    Foreign(Foreign),
    /// More than [`MAX_TAIL_RUNS`] runs from the start of the tail up to `at`.
    TooManyRuns { at: i64 },
}

/// Attributes the batches of a target partition from a position to its end, fed one batch
/// header at a time (the caller pages through the partition), in bounded memory.
#[derive(Clone, Debug)]
pub(crate) struct TailScan {
    /// The next target offset to attribute.
    next: i64,
    /// The target's end when the reconcile started.
    end: i64,
    /// strait's identities; `None` when the checkpoint does not record them.
    known: Option<Vec<ProducerIdentity>>,
    on_foreign: OnForeignWriter,
    plan: TailPlan,
    foreign: Option<Foreign>,
    too_many_runs: bool,
    /// Nothing more to attribute: the end is reached, or a halt is decided.
    complete: bool,
}

impl TailScan {
    /// A scan of the target from offset `from` to `end`.
    pub(crate) fn new(from: i64, end: i64, known: Option<&[ProducerIdentity]>, on_foreign: OnForeignWriter) -> Self {
        TailScan {
            next: from,
            end,
            known: known.map(<[ProducerIdentity]>::to_vec),
            on_foreign,
            plan: TailPlan::default(),
            foreign: None,
            too_many_runs: false,
            complete: false,
        }
    }

    /// The target offset to read from next.
    pub(crate) fn next_offset(&self) -> i64 {
        self.next
    }

    /// Whether the scan needs no more batches.
    pub(crate) fn done(&self) -> bool {
        self.complete || self.next >= self.end
    }

    /// The target's log now starts at `log_start`: the offsets before it were deleted unread.
    /// They are passed over as holes. Returns how many offsets that passes.
    pub(crate) fn deleted_until(&mut self, log_start: i64) -> i64 {
        if self.done() {
            return 0;
        }
        let to = log_start.min(self.end);
        if to <= self.next {
            return 0;
        }
        let deleted = to - self.next;
        if !self.add(Run::Other {
            offsets: deleted,
            foreign: 0,
        }) {
            return 0;
        }
        self.next = to;
        deleted
    }

    /// The partition ends at `offset` after all (the log was truncated while reading).
    pub(crate) fn ends_at(&mut self, offset: i64) {
        self.end = self.end.min(offset.max(self.next));
    }

    /// Attributes the next batch. Batches must come in offset order; any that lies before the
    /// scan's position is ignored, one that starts in it counts from the position on.
    pub(crate) fn push(&mut self, batch: TailBatch) {
        // A batch that takes no offsets (a malformed header) attributes nothing.
        if self.done() || batch.next_offset <= self.next || batch.next_offset <= batch.base_offset {
            return;
        }
        if batch.base_offset >= self.end {
            self.complete = true;
            return;
        }
        let from = batch.base_offset.max(self.next);
        let own = self.known.as_ref().is_some_and(|k| k.contains(&batch.producer));
        if let Some(f) = self.foreign.as_mut() {
            // Halting: the stretch named in the error goes on while the same producer does.
            if !own && f.producer == batch.producer && f.last + 1 == from {
                f.last = batch.next_offset - 1;
                f.records += batch.next_offset - from;
                self.next = batch.next_offset;
            } else {
                self.complete = true;
            }
            return;
        }
        if from > self.next
            && !self.add(Run::Other {
                offsets: from - self.next,
                foreign: 0,
            })
        {
            return;
        }
        let records = batch.next_offset - from;
        if own {
            if !self.add(Run::Own(records)) {
                return;
            }
            self.plan.own += records;
            if !self.plan.writers.contains(&batch.producer) {
                self.plan.writers.push(batch.producer);
            }
        } else {
            match self.on_foreign {
                OnForeignWriter::Halt => {
                    self.foreign = Some(Foreign {
                        first: from,
                        last: batch.next_offset - 1,
                        producer: batch.producer,
                        records,
                        unattributed: self.known.is_none(),
                    });
                }
                OnForeignWriter::Skip => {
                    if !self.add(Run::Other {
                        offsets: records,
                        foreign: records,
                    }) {
                        return;
                    }
                    self.plan.foreign += records;
                }
            }
        }
        self.next = batch.next_offset;
    }

    /// Appends a run, merged with the last when of the same kind. `false` (and the scan ends
    /// here, with an error) when that would keep more than [`MAX_TAIL_RUNS`].
    fn add(&mut self, run: Run) -> bool {
        let full = self.plan.runs.len() >= MAX_TAIL_RUNS;
        match (self.plan.runs.back_mut(), run) {
            (Some(Run::Own(n)), Run::Own(m)) => *n += m,
            (
                Some(Run::Other { offsets, foreign }),
                Run::Other {
                    offsets: more,
                    foreign: more_foreign,
                },
            ) => {
                *offsets += more;
                *foreign += more_foreign;
            }
            _ if full => {
                self.too_many_runs = true;
                self.complete = true;
                return false;
            }
            _ => self.plan.runs.push_back(run),
        }
        true
    }

    /// The plan, or why there is none.
    pub(crate) fn finish(self) -> Result<TailPlan, TailError> {
        if let Some(f) = self.foreign {
            return Err(TailError::Foreign(f));
        }
        if self.too_many_runs {
            return Err(TailError::TooManyRuns { at: self.next });
        }
        Ok(self.plan)
    }
}

/// The records the target holds beyond the acknowledged position, consumed as the source is read
/// again: strait's own are the next kept source records and are not written again; other offsets
/// are passed over without consuming any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tail {
    runs: VecDeque<Run>,
    /// Foreign records passed over since [`Self::take_foreign_passed`] was last called.
    foreign_passed: i64,
}

impl Tail {
    pub(crate) fn new(runs: VecDeque<Run>) -> Self {
        Self {
            runs,
            foreign_passed: 0,
        }
    }

    /// Moves `acked` past offsets that hold none of strait's records, up to strait's next own
    /// record (or the end of the tail).
    fn pass_others(&mut self, acked: &mut Position) {
        while let Some(&Run::Other { offsets, foreign }) = self.runs.front() {
            acked.target += offsets;
            self.foreign_passed += foreign;
            self.runs.pop_front();
        }
    }

    /// Whether the kept source record at `offset` is already on the target; if so `acked`
    /// moves past it on both sides. When it returns `false`, `acked.target` is past the whole
    /// tail: where the next record written lands.
    pub(crate) fn absorb(&mut self, offset: i64, acked: &mut Position) -> bool {
        self.pass_others(acked);
        let Some(Run::Own(n)) = self.runs.front_mut() else {
            return false;
        };
        *n -= 1;
        if *n <= 0 {
            self.runs.pop_front();
        }
        *acked = Position {
            source: offset + 1,
            target: acked.target + 1,
        };
        true
    }

    /// Source records `from..to` were deleted before strait read them. The tail's own records
    /// were the first kept ones from `acked.source` on, so they lie at the start of the deleted
    /// range; the rest of the range is the gap. Returns the gap's size and moves `acked` to
    /// `to`. Exact when the deleted range held no transaction markers or compaction holes (each
    /// offset one record); otherwise it may count a marker as a missing record.
    pub(crate) fn gap(&mut self, from: i64, to: i64, acked: &mut Position) -> i64 {
        let deleted = (to - from).max(0);
        let mut replicated = 0;
        while replicated < deleted {
            self.pass_others(acked);
            let Some(Run::Own(n)) = self.runs.front_mut() else {
                break;
            };
            let take = (*n).min(deleted - replicated);
            *n -= take;
            replicated += take;
            acked.target += take;
            if *n <= 0 {
                self.runs.pop_front();
            }
        }
        acked.source = to;
        deleted - replicated
    }

    /// Foreign records passed over since the last call.
    pub(crate) fn take_foreign_passed(&mut self) -> i64 {
        std::mem::take(&mut self.foreign_passed)
    }

    /// strait's own records still to absorb.
    #[cfg(test)]
    pub(crate) fn remaining(&self) -> i64 {
        self.runs
            .iter()
            .map(|r| match r {
                Run::Own(n) => *n,
                Run::Other { .. } => 0,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
