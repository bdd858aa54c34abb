//! The resume decision of a partition with one or two ranges: the target's tail, from the lower
//! of the ranges' target offsets to its end, attributed batch by batch to the range whose
//! identity wrote it, or to nobody (foreign). Each range is scanned by today's
//! [`TailScan`] from its own target offset, the other range's batches being offsets that hold
//! none of its records.

use super::{Range, Ranges, Side};
use crate::config::OnForeignWriter;
use crate::kafka::ProducerIdentity;
use crate::pipeline::resume::{Run, TailBatch, TailError, TailPlan, TailScan};

impl crate::pipeline::resume::Scanner for Reconcile {
    fn done(&self) -> bool {
        Reconcile::done(self)
    }
    fn next_offset(&self) -> i64 {
        Reconcile::next_offset(self)
    }
    fn push(&mut self, batch: TailBatch) {
        Reconcile::push(self, batch);
    }
    fn deleted_until(&mut self, log_start: i64) -> i64 {
        Reconcile::deleted_until(self, log_start)
    }
    fn ends_at(&mut self, offset: i64) {
        Reconcile::ends_at(self, offset);
    }
}

/// One range's scan.
#[derive(Clone, Debug)]
struct Scan {
    side: Side,
    identities: Vec<ProducerIdentity>,
    scan: TailScan,
}

/// Attributes a target partition's tail to a partition's ranges, fed one batch header at a
/// time in offset order (the caller pages through the partition), in bounded memory.
#[derive(Clone, Debug)]
pub(crate) struct Reconcile {
    ranges: Ranges,
    scans: Vec<Scan>,
    /// The target's end when the reconcile started (or where it was found to end).
    end: i64,
    /// Every batch below it was attributed (and its foreign records counted).
    next: i64,
    foreign: i64,
}

/// What the tail holds: the ranges, each with its records found on the target to absorb.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reconciled {
    pub(crate) ranges: Ranges,
    /// Records of other producers in the tail, counted once.
    pub(crate) foreign: i64,
    /// strait's records in the tail that hold records found before them (both ranges).
    pub(crate) duplicates: i64,
    /// Batches whose sequence did not follow the range's records before them (both ranges).
    pub(crate) reanchored: u32,
    /// Whether the ranges merged at once (the backlog had reached the split).
    pub(crate) merged: bool,
}

fn identities(range: &Range) -> Option<Vec<ProducerIdentity>> {
    range.writers.as_ref().map(|w| w.identities())
}

impl Reconcile {
    /// A reconcile of `ranges` (as a checkpoint records them) against a target partition ending
    /// at `end`.
    pub(crate) fn new(ranges: Ranges, end: i64, on_foreign: OnForeignWriter) -> Self {
        let scan = |side: Side, range: &Range| {
            let known = identities(range);
            let scan = TailScan::new(range.at.target, end, known.as_deref(), on_foreign)
                .anchored(&range.writers.as_ref().map(|w| w.anchors()).unwrap_or_default());
            Scan {
                side,
                identities: known.unwrap_or_default(),
                scan,
            }
        };
        let scans = match &ranges {
            Ranges::One(r) => vec![scan(Side::Fresh, r)],
            Ranges::Two { backlog, fresh, .. } => vec![scan(Side::Backlog, backlog), scan(Side::Fresh, fresh)],
        };
        let next = scans.iter().map(|s| s.scan.next_offset()).min().unwrap_or(end);
        Reconcile {
            ranges,
            scans,
            end,
            next,
            foreign: 0,
        }
    }

    /// The target offset to read from next.
    pub(crate) fn next_offset(&self) -> i64 {
        self.next.min(self.end)
    }

    /// Whether the tail is read to its end, or no scan needs more batches (a halt is decided).
    pub(crate) fn done(&self) -> bool {
        self.next >= self.end || self.scans.iter().all(|s| s.scan.done())
    }

    /// Attributes the next batch, in offset order.
    pub(crate) fn push(&mut self, batch: TailBatch) {
        let owner = self
            .scans
            .iter()
            .find(|s| s.identities.contains(&batch.producer))
            .map(|s| s.side);
        for s in &mut self.scans {
            if owner.is_none_or(|side| side == s.side) {
                s.scan.push(batch);
            }
        }
        if owner.is_none() && batch.base_offset < self.end {
            let from = batch.base_offset.max(self.next);
            self.foreign += (batch.next_offset.min(self.end) - from).max(0);
        }
        self.next = self.next.max(batch.next_offset);
    }

    /// The target's log now starts at `log_start`: the offsets before it were deleted unread.
    pub(crate) fn deleted_until(&mut self, log_start: i64) -> i64 {
        for s in &mut self.scans {
            s.scan.deleted_until(log_start);
        }
        let deleted = (log_start - self.next).max(0);
        self.next = self.next.max(log_start);
        deleted
    }

    /// The partition ends at `offset` after all.
    pub(crate) fn ends_at(&mut self, offset: i64) {
        for s in &mut self.scans {
            s.scan.ends_at(offset);
        }
        self.end = self.end.min(offset);
    }

    /// The ranges with what each found, or why the tail gives no plan (the first range's
    /// refusal: a foreign batch is the same for both).
    pub(crate) fn finish(self) -> Result<Reconciled, TailError> {
        let mut ranges = self.ranges;
        let (mut duplicates, mut reanchored) = (0, 0);
        for s in self.scans {
            let next = s.scan.next_offset();
            let mut plan: TailPlan = s.scan.finish()?;
            // The other range's batches at the end of the tail were never pushed to this scan:
            // offsets that hold none of its records.
            if next < self.end {
                plan.runs.push_back(Run::Other {
                    offsets: self.end - next,
                    foreign: 0,
                });
            }
            duplicates += plan.duplicates;
            reanchored += plan.reanchored;
            // A foreign batch is in both ranges' tails: counted once, when the backlog passes it.
            if s.side == Side::Fresh && matches!(ranges, Ranges::Two { .. }) {
                for run in &mut plan.runs {
                    if let Run::Other { foreign, .. } = run {
                        *foreign = 0;
                    }
                }
            }
            match (&mut ranges, s.side) {
                (Ranges::One(r), _)
                | (Ranges::Two { backlog: r, .. }, Side::Backlog)
                | (Ranges::Two { fresh: r, .. }, Side::Fresh) => r.found(plan),
            }
        }
        let merged = ranges.settle();
        Ok(Reconciled {
            ranges,
            foreign: self.foreign,
            duplicates,
            reanchored,
            merged,
        })
    }
}
