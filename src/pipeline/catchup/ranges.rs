//! The pure core of a catch-up: one range's position, identities and tail ([`Range`]), and a
//! partition's one or two ranges as a state machine ([`Ranges`]). See the module above for the
//! design.

use super::{CatchUpError, Side};
use crate::checkpoint::{CheckpointRecord, FreshRange};
use crate::kafka::ProducerIdentity;
use crate::pipeline::resume::{sequence_plus, Position, Tail, TailPlan};
use crate::pipeline::writers::Writers;

/// One range's consistent position, its identities and what the target's tail holds for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Range {
    /// Every kept record of the range below `at.source` is on the target; the range's
    /// identities' records at or beyond `at.target` are placed by their sequences.
    pub(super) at: Position,
    /// `None`: a checkpoint of a strait that did not record identities (one range only).
    pub(super) writers: Option<Writers>,
    /// The range's records found beyond `at` at the last reconcile, absorbed as the range's
    /// source is read again.
    tail: Tail,
    /// Of those, the ones not absorbed yet.
    tail_own: i64,
}

impl Range {
    fn new(at: Position, writers: Option<Writers>) -> Self {
        Range {
            at,
            writers,
            tail: Tail::default(),
            tail_own: 0,
        }
    }

    /// The range's position.
    pub(crate) fn at(&self) -> Position {
        self.at
    }

    /// The range's identities with their sequences at its position.
    pub(crate) fn writers(&self) -> Option<&Writers> {
        self.writers.as_ref()
    }

    /// Records of the range found on the target and not absorbed yet.
    pub(crate) fn tail_left(&self) -> i64 {
        self.tail_own
    }

    /// What the target holds beyond the position for this range, to absorb as its source is
    /// read again.
    pub(crate) fn tail(&self) -> &Tail {
        &self.tail
    }

    /// What a reconcile found beyond the position for this range.
    pub(super) fn found(&mut self, plan: TailPlan) {
        if let Some(w) = self.writers.as_mut() {
            w.found(&plan);
        }
        self.tail_own = plan.own;
        self.tail = Tail::new(plan.runs);
    }

    /// The position moved past `records` kept records: every identity's sequence moves on.
    fn moved(&mut self, records: i64) {
        if let Some(w) = self.writers.as_mut() {
            w.moved(records);
        }
    }

    fn absorb(&mut self, offset: i64) -> bool {
        let absorbed = self.tail.absorb(offset, &mut self.at);
        if absorbed {
            self.tail_own -= 1;
            self.moved(1);
        }
        absorbed
    }

    fn gap(&mut self, from: i64, to: i64) -> i64 {
        let before = self.tail.absorbed();
        let gap = self.tail.gap(from, to, &mut self.at);
        let found = self.tail.absorbed() - before;
        self.tail_own -= found;
        self.moved(found);
        gap
    }

    fn ack(&mut self, side: Side, until: i64, count: i64, target_end: i64) -> Result<(), CatchUpError> {
        if until < self.at.source {
            return Err(CatchUpError::Backwards {
                side,
                until,
                next: self.at.source,
            });
        }
        if self.tail_own > 0 {
            return Err(CatchUpError::TailLeft {
                side,
                at: self.at.source,
                left: self.tail_own,
            });
        }
        // What is left of the tail (other offsets) lies below the batch: passed.
        self.pass_tail();
        self.at = Position {
            source: until,
            target: target_end,
        };
        self.moved(count);
        Ok(())
    }

    /// With none of its own records left in the tail, the position passes the tail's other
    /// offsets (the other range's records, foreign ones, duplicates).
    fn pass_tail(&mut self) {
        if self.tail_own == 0 {
            // No record of its own is left: this only passes the other offsets.
            let _ = self.tail.absorb(self.at.source, &mut self.at);
        }
    }

    /// The other range's batch was acknowledged, ending at `target_end`: with nothing of its
    /// own left in the tail, this range has no record below it that is not acknowledged (acks
    /// come in send order), so its target offset moves there.
    fn follow(&mut self, target_end: i64) {
        if self.tail_own == 0 {
            self.pass_tail();
            self.at.target = self.at.target.max(target_end);
        }
    }
}

/// A partition's ranges: one, as always, or two during a fresh-first catch-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Ranges {
    One(Range),
    Two {
        /// `[backlog.at.source, split)`.
        backlog: Range,
        split: i64,
        /// From the split on.
        fresh: Range,
    },
}

/// What a checkpoint of the ranges records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ToCheckpoint {
    /// The version 1 position: the one range's, or the backlog's.
    pub(crate) at: Position,
    /// Its writers and their sequences (`-1` unknown); `None` unknown.
    pub(crate) writers: Option<(Vec<ProducerIdentity>, Vec<i32>)>,
    /// The catch-up section.
    pub(crate) fresh: Option<FreshRange>,
}

impl Ranges {
    /// One range at `at`.
    pub(crate) fn one(at: Position, writers: Option<Writers>) -> Self {
        Ranges::One(Range::new(at, writers))
    }

    /// One range at `at` with `writers` (their sequences at `at`, the tail's identities among
    /// them) and what a reconcile found beyond it.
    pub(crate) fn one_with_tail(at: Position, writers: Writers, tail: TailPlan) -> Self {
        let mut range = Range::new(at, Some(writers));
        range.tail_own = tail.own;
        range.tail = Tail::new(tail.runs);
        Ranges::One(range)
    }

    /// The ranges a checkpoint records (no tail: a reconcile finds it). Refused when a catch-up
    /// section does not nest with the position or shares an identity with the backlog.
    pub(crate) fn of_checkpoint(record: &CheckpointRecord, fresh: Option<&FreshRange>) -> Result<Self, CatchUpError> {
        let c = &record.checkpoint;
        let at = Position {
            source: c.next_source_offset,
            target: c.next_target_offset,
        };
        let Some(f) = fresh else {
            return Ok(Ranges::one(at, Writers::of_checkpoint(record)));
        };
        if !(at.source <= f.split && f.split <= f.next_source_offset) {
            return Err(CatchUpError::NotNested {
                backlog: at.source,
                split: f.split,
                fresh: f.next_source_offset,
            });
        }
        let backlog = Writers::of_checkpoint(record).unwrap_or_default();
        let backlog_ids = backlog.identities();
        if let Some(shared) = f.writers.iter().find(|w| backlog_ids.contains(w)) {
            return Err(CatchUpError::SharedWriter {
                id: shared.id,
                epoch: shared.epoch,
            });
        }
        let mut writers = Writers::default();
        for (i, identity) in f.writers.iter().enumerate() {
            writers.add(*identity, f.sequences.get(i).copied().filter(|s| *s >= 0));
        }
        Ok(Ranges::Two {
            backlog: Range::new(at, Some(backlog)),
            split: f.split,
            fresh: Range::new(
                Position {
                    source: f.next_source_offset,
                    target: f.next_target_offset,
                },
                Some(writers),
            ),
        })
    }

    /// A pipeline stopped with `side` at `at`, `producer` (in use) at `sequence` there: every
    /// identity of the range moves as far as it did. What lay beyond is for a reconcile to find.
    pub(crate) fn stopped(
        &mut self,
        side: Side,
        at: Position,
        producer: ProducerIdentity,
        sequence: i32,
    ) -> Result<(), CatchUpError> {
        let range = self.range_mut(side, at.source)?;
        let mut writers = range.writers.take().unwrap_or_default();
        match writers
            .sequence(producer)
            .map(|s| crate::pipeline::resume::sequence_distance(s, sequence))
        {
            Some(moved) => writers.moved(moved),
            None => writers = Writers::default(),
        }
        writers.add(producer, Some(sequence));
        *range = Range::new(at, Some(writers));
        Ok(())
    }

    /// Whether the partition is in a fresh-first catch-up.
    pub(crate) fn is_catching_up(&self) -> bool {
        matches!(self, Ranges::Two { .. })
    }

    /// The split, in a catch-up.
    pub(crate) fn split(&self) -> Option<i64> {
        match self {
            Ranges::One(_) => None,
            Ranges::Two { split, .. } => Some(*split),
        }
    }

    /// The range of `side`; the one range is the fresh side.
    pub(crate) fn range(&self, side: Side) -> Option<&Range> {
        match (self, side) {
            (Ranges::One(r), Side::Fresh) => Some(r),
            (Ranges::One(_), Side::Backlog) => None,
            (Ranges::Two { backlog, .. }, Side::Backlog) => Some(backlog),
            (Ranges::Two { fresh, .. }, Side::Fresh) => Some(fresh),
        }
    }

    fn range_mut(&mut self, side: Side, at: i64) -> Result<&mut Range, CatchUpError> {
        match (self, side) {
            (Ranges::One(r), Side::Fresh) => Ok(r),
            (Ranges::One(_), Side::Backlog) => Err(CatchUpError::NoBacklog { at }),
            (Ranges::Two { backlog, .. }, Side::Backlog) => Ok(backlog),
            (Ranges::Two { fresh, .. }, Side::Fresh) => Ok(fresh),
        }
    }

    /// Everything below it is replicated: the backlog's position, or the one range's.
    pub(crate) fn lowest(&self) -> Position {
        match self {
            Ranges::One(r) | Ranges::Two { backlog: r, .. } => r.at,
        }
    }

    /// Source records left to replicate with the source ending at `source_end`: the backlog's
    /// and the fresh range's lag (offsets, an upper bound like every lag strait reports).
    pub(crate) fn lag(&self, source_end: i64) -> i64 {
        match self {
            Ranges::One(r) => (source_end - r.at.source).max(0),
            Ranges::Two { backlog, split, fresh } => {
                (split - backlog.at.source).max(0) + (source_end - fresh.at.source).max(0)
            }
        }
    }

    /// Enters fresh-first at `split` (see [`entry_split`]), with `identity`, a producer
    /// identity claimed for the fresh range (sequence 0 at the split). Only from one range of
    /// known writers with nothing left to absorb, and a split past its position. The claim
    /// must be in a written checkpoint before the identity sends anything.
    pub(crate) fn enter(&mut self, split: i64, identity: ProducerIdentity) -> Result<(), CatchUpError> {
        let Ranges::One(one) = self else {
            let at = self.lowest().source;
            return Err(CatchUpError::CannotEnter {
                at,
                why: "the partition is in a catch-up already",
            });
        };
        let at = one.at.source;
        let refuse = |why| Err(CatchUpError::CannotEnter { at, why });
        let Some(writers) = one.writers.as_ref() else {
            return refuse("its checkpoint does not record producer identities");
        };
        if writers.identities().contains(&identity) {
            return refuse("the fresh range's identity must be a new one");
        }
        if split <= at {
            return refuse("the split must lie past the position");
        }
        let mut fresh_writers = Writers::default();
        fresh_writers.add(identity, Some(0));
        // The fresh range writes after whatever the target holds beyond the position; the
        // backlog absorbs its own records there as it reads them again.
        let fresh = Range::new(
            Position {
                source: split,
                target: one.at.target + one.tail.offsets(),
            },
            Some(fresh_writers),
        );
        let backlog = std::mem::replace(one, Range::new(one.at, None));
        *self = Ranges::Two { backlog, split, fresh };
        Ok(())
    }

    /// Adds `identity`, new, to the writers of `side`; returns its sequence at the range's
    /// position (its first record is the first one not found in the tail: sequence 0 there).
    /// The claim must be in a written checkpoint before the identity sends anything.
    pub(crate) fn claim(&mut self, side: Side, identity: ProducerIdentity) -> Result<i32, CatchUpError> {
        if let Ranges::Two { backlog, fresh, .. } = self {
            let other = if side == Side::Backlog { fresh } else { backlog };
            if other
                .writers
                .as_ref()
                .is_some_and(|w| w.identities().contains(&identity))
            {
                return Err(CatchUpError::SharedWriter {
                    id: identity.id,
                    epoch: identity.epoch,
                });
            }
        }
        let at = self.lowest().source;
        let range = self.range_mut(side, at)?;
        let sequence = sequence_plus(0, -range.tail_own);
        range
            .writers
            .get_or_insert_with(Writers::default)
            .add(identity, Some(sequence));
        Ok(sequence)
    }

    /// Whether the kept record at `offset` of `side` is already on the target (found by the
    /// last reconcile); if so that range moves past it. Returns whether the ranges merged.
    pub(crate) fn absorb(&mut self, side: Side, offset: i64) -> Result<(bool, bool), CatchUpError> {
        let absorbed = self.range_mut(side, offset)?.absorb(offset);
        Ok((absorbed, self.settle()))
    }

    /// Records `from..to` of `side` were deleted on the source before they were read. Returns
    /// the gap (less the range's own records found in its tail) and whether the ranges merged.
    /// The backlog's part ends at the split; the fresh range finds its own on its own fetch.
    pub(crate) fn gap(&mut self, side: Side, from: i64, to: i64) -> Result<(i64, bool), CatchUpError> {
        let to = match self {
            Ranges::Two { split, .. } if side == Side::Backlog => to.min(*split),
            _ => to,
        };
        let gap = self.range_mut(side, from)?.gap(from, to);
        Ok((gap, self.settle()))
    }

    /// The position of `side` passes offsets that hold no kept record (control batches,
    /// aborted transactions) up to `until`, with nothing of the range in flight. Returns whether
    /// the ranges merged.
    pub(crate) fn passed(&mut self, side: Side, until: i64) -> Result<bool, CatchUpError> {
        if let Ranges::Two { split, .. } = self {
            if side == Side::Backlog && until > *split {
                return Err(CatchUpError::PastSplit { until, split: *split });
            }
        }
        let range = self.range_mut(side, until)?;
        range.at.source = range.at.source.max(until);
        Ok(self.settle())
    }

    /// A batch of `side` was acknowledged: `count` kept records, source up to `until`, ending
    /// at target offset `target_end`. Returns whether the ranges merged.
    pub(crate) fn acked(&mut self, side: Side, until: i64, count: i64, target_end: i64) -> Result<bool, CatchUpError> {
        match self {
            Ranges::One(r) => match side {
                Side::Fresh => r.ack(side, until, count, target_end)?,
                Side::Backlog => return Err(CatchUpError::NoBacklog { at: until }),
            },
            Ranges::Two { backlog, split, fresh } => {
                if side == Side::Backlog && until > *split {
                    return Err(CatchUpError::PastSplit { until, split: *split });
                }
                let (this, other) = match side {
                    Side::Backlog => (backlog, fresh),
                    Side::Fresh => (fresh, backlog),
                };
                this.ack(side, until, count, target_end)?;
                other.follow(target_end);
            }
        }
        Ok(self.settle())
    }

    /// Back to one range when the backlog is drained and neither range has records of its own
    /// left to absorb: the fresh position at the later target offset, with both ranges'
    /// identities (a backlog identity's sequence at the position is past every one it used, so a
    /// late batch of it counts as a duplicate). Returns whether it merged.
    pub(super) fn settle(&mut self) -> bool {
        let Ranges::Two { backlog, split, fresh } = self else {
            return false;
        };
        if backlog.at.source < *split || backlog.tail_own > 0 || fresh.tail_own > 0 {
            return false;
        }
        backlog.pass_tail();
        fresh.pass_tail();
        let mut writers = Writers::default();
        for range in [&*backlog, &*fresh] {
            if let Some(w) = range.writers.as_ref() {
                let (ids, sequences) = w.to_record();
                for (id, sequence) in ids.into_iter().zip(sequences) {
                    writers.add(id, Some(sequence).filter(|s| *s >= 0));
                }
            }
        }
        let at = Position {
            source: fresh.at.source,
            target: fresh.at.target.max(backlog.at.target),
        };
        *self = Ranges::one(at, Some(writers));
        true
    }

    /// What a checkpoint of the ranges records now.
    pub(crate) fn to_checkpoint(&self) -> ToCheckpoint {
        let record = |r: &Range| r.writers.as_ref().map(Writers::to_record);
        match self {
            Ranges::One(r) => ToCheckpoint {
                at: r.at,
                writers: record(r),
                fresh: None,
            },
            Ranges::Two { backlog, split, fresh } => {
                let (writers, sequences) = record(fresh).unwrap_or_default();
                ToCheckpoint {
                    at: backlog.at,
                    writers: record(backlog),
                    fresh: Some(FreshRange {
                        split: *split,
                        next_source_offset: fresh.at.source,
                        next_target_offset: fresh.at.target,
                        writers,
                        sequences,
                    }),
                }
            }
        }
    }
}
