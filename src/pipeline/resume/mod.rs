//! Where a partition goes on from after a restart or an uncertain answer: the checkpointed
//! position, reconciled with what the target actually holds. The decisions are pure
//! ([`TailScan`], [`Tail`]); [`TargetTail`] reads the target for them.
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
//! - A batch of one of strait's identities is strait's own. Which source records it holds
//!   follows from its producer sequence: the checkpoint (and the task, between reconciles)
//!   keeps each identity's sequence at the position ([`Anchor`], [`crate::pipeline::writers`]),
//!   and every kept source record that reaches the target moves every identity's on by one.
//!   Records the batches before it in the tail already hold are duplicates, passed over and
//!   counted in `strait_target_duplicate_records_total`; the rest are the next kept source
//!   records, not written again ([`Tail::absorb`]). This is what makes a batch whose answer was
//!   lost safe when it lands late, after strait wrote its records again under a new identity
//!   (the broker deduplicates only within one identity): counting both copies as new records
//!   would skip as many source records. A checkpoint that records identities but no sequences
//!   (an older strait) has each identity's first batch in the tail hold the next records.
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
//!   them. strait's batches after such a hole hold the next records (a gap in an identity's
//!   sequences is taken for one: `reanchored`); the hole's records reached the target before
//!   it deleted them. With none of strait's batches after it, the records strait may have
//!   written there are written again: duplicates, never a loss.
//! - Two strait processes writing one partition (overlapping shards during a reshard, a second
//!   deployment, a zombie pod) are told apart by their claims: each process that starts a
//!   partition writes a checkpoint with a newer writer epoch before it sends anything. The
//!   newer one knows the older one's identities from the checkpoint it resumed from, so their
//!   batches are its own, placed by sequence. The older one finds the newer one's batches
//!   foreign at its next write (its batch lands after them); it then reads the claims
//!   ([`crate::pipeline::wire::Claims`]) and stops writing the partition with `Fenced`,
//!   whatever `on_foreign_writer` says. Its batches still in flight then (at most five) are
//!   duplicates, counted by the newer one. Two processes that get the same epoch (started at
//!   the same moment) both stop. An older process with nothing to write stops only when it
//!   next writes; until then it writes nothing.
//! - A transactional writer on the target: its batches and markers are foreign like any other.

use std::collections::VecDeque;

mod align;
mod scan;
mod target;
#[cfg(test)]
mod tests;

pub(crate) use align::{locate, read_data, same_content, Align, Located};
pub(crate) use scan::{
    sequence_distance, sequence_plus, Anchor, Foreign, Run, TailBatch, TailError, TailPlan, TailScan,
};
pub(crate) use target::{Reconciled, Scanner, TargetTail};

/// Most runs (alternations between strait's records and other offsets) one reconcile keeps.
/// A tail alternates only where another producer wrote between strait's batches since the last
/// checkpoint; far fewer than this in practice.
pub(crate) const MAX_TAIL_RUNS: usize = 65_536;

/// A consistent pair of positions: everything below `source` (that strait copies) is on the
/// target below `target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Next source offset.
    pub source: i64,
    /// Next target offset.
    pub target: i64,
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

/// The records the target holds beyond the acknowledged position, consumed as the source is read
/// again: strait's own are the next kept source records and are not written again; other offsets
/// are passed over without consuming any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tail {
    runs: VecDeque<Run>,
    /// Foreign records passed over since [`Self::take_foreign_passed`] was last called.
    foreign_passed: i64,
    /// strait's own records found in place so far: kept source records the position moved
    /// past without writing them.
    absorbed: i64,
}

impl Tail {
    pub(crate) fn new(runs: VecDeque<Run>) -> Self {
        Self {
            runs,
            foreign_passed: 0,
            absorbed: 0,
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
        self.absorbed += 1;
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
            self.absorbed += take;
            acked.target += take;
            if *n <= 0 {
                self.runs.pop_front();
            }
        }
        acked.source = to;
        deleted - replicated
    }

    /// Target offsets the tail still spans (strait's records and other offsets).
    pub(crate) fn offsets(&self) -> i64 {
        self.runs
            .iter()
            .map(|r| match r {
                Run::Own(n) => *n,
                Run::Other { offsets, .. } => *offsets,
            })
            .sum()
    }

    /// Whether none of strait's own records is left to absorb.
    pub(crate) fn owns_none(&self) -> bool {
        self.runs.iter().all(|r| matches!(r, Run::Other { .. }))
    }

    /// With none of strait's own records left, moves `acked` past what is left (other
    /// offsets), to `target_end` at least: everything below it is the other range's, foreign or
    /// acknowledged. Returns `false`, moving nothing, while own records are left.
    pub(crate) fn pass_to(&mut self, target_end: i64, acked: &mut Position) -> bool {
        if !self.owns_none() {
            return false;
        }
        self.pass_others(acked);
        acked.target = acked.target.max(target_end);
        true
    }

    /// strait's own records found in place so far.
    pub(crate) fn absorbed(&self) -> i64 {
        self.absorbed
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
