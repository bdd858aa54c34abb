//! Attributing the target's tail: which batches beyond a checkpoint are strait's own, which are
//! another producer's, and what that means for the resume ([`TailScan`]).

use std::collections::VecDeque;

use super::MAX_TAIL_RUNS;
use crate::config::OnForeignWriter;
use crate::kafka::ProducerIdentity;

/// One batch of the target partition as its header tells: where it lies and who wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TailBatch {
    pub(crate) base_offset: i64,
    /// The offset after its last record.
    pub(crate) next_offset: i64,
    pub(crate) producer: ProducerIdentity,
    /// The producer sequence of its first record; negative when it has none.
    pub(crate) base_sequence: i32,
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
            base_sequence: header.base_sequence,
        }
    }
}

/// A stretch of the target's tail, in offset order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Run {
    /// Records strait wrote: the next kept source records.
    Own(i64),
    /// Offsets that hold none of the next source records: `foreign` records of other
    /// producers, strait's own records written a second time, and offsets without a batch.
    Other { offsets: i64, foreign: i64 },
}

/// The producer sequence one of strait's identities gives (or would give) the first kept
/// source record at a position. Every kept record strait writes or finds moves every
/// identity's on by one, so an identity's batch in the tail tells which of the next source
/// records it holds, whoever wrote in between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Anchor {
    pub(crate) producer: ProducerIdentity,
    pub(crate) sequence: i32,
}

/// Sequences count modulo 2^31.
const SEQUENCE_SPAN: i64 = 1 << 31;

/// `to - from` in sequence space, as the nearest signed distance.
pub(crate) fn sequence_distance(from: i32, to: i32) -> i64 {
    let d = (i64::from(to) - i64::from(from)).rem_euclid(SEQUENCE_SPAN);
    if d >= SEQUENCE_SPAN / 2 {
        d - SEQUENCE_SPAN
    } else {
        d
    }
}

/// `sequence` moved on by `n` records.
pub(crate) fn sequence_plus(sequence: i32, n: i64) -> i32 {
    // The remainder is below 2^31: it fits.
    (i64::from(sequence) + n).rem_euclid(SEQUENCE_SPAN) as i32
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
    /// strait's records in it that hold source records found earlier in it (or before it): a
    /// batch whose answer was lost landed after strait had written its records again under
    /// another identity. Passed over like foreign records, never counted as replicated.
    pub(crate) duplicates: i64,
    /// Each identity's sequence at the scan's start, as given or as found (see [`Anchor`]).
    pub(crate) anchors: Vec<Anchor>,
    /// Batches whose sequence said they hold records beyond a hole in strait's own: counted
    /// as the next ones instead (the hole's records were deleted on the target, or the
    /// sequences are not strait's to trust).
    pub(crate) reanchored: u32,
}

impl TailPlan {
    /// The sequence `producer` gives the first kept source record at the scan's start, when
    /// known.
    pub(crate) fn anchor(&self, producer: ProducerIdentity) -> Option<i32> {
        self.anchors.iter().find(|a| a.producer == producer).map(|a| a.sequence)
    }
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
    /// The next kept source records that strait's batches seen so far hold, from the start.
    covered: i64,
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
            covered: 0,
            foreign: None,
            too_many_runs: false,
            complete: false,
        }
    }

    /// The sequences strait's identities give the first kept source record at the scan's
    /// start, where known. An identity without one is taken to hold the next records from
    /// its first batch in the tail on.
    pub(crate) fn anchored(mut self, anchors: &[Anchor]) -> Self {
        self.plan.anchors = anchors.to_vec();
        self
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
            if !self.own(batch, from, records) {
                return;
            }
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

    /// Attributes `records` of strait's own from target offset `from`: which of the next kept
    /// source records they hold follows from their sequence and the identity's anchor. Those
    /// already held by batches before them are duplicates; the rest are the next records.
    fn own(&mut self, batch: TailBatch, from: i64, records: i64) -> bool {
        let first = if batch.base_sequence < 0 {
            None
        } else {
            Some(sequence_plus(batch.base_sequence, from - batch.base_offset))
        };
        let index = match (first, self.plan.anchor(batch.producer)) {
            (Some(first), Some(anchor)) => {
                let index = sequence_distance(anchor, first);
                if index > self.covered {
                    // A hole in strait's own records: count these as the next ones.
                    self.plan.reanchored += 1;
                    self.reanchor(batch.producer, first);
                    self.covered
                } else {
                    index
                }
            }
            (Some(first), None) => {
                self.reanchor(batch.producer, first);
                self.covered
            }
            (None, _) => self.covered,
        };
        let duplicates = (self.covered - index).clamp(0, records);
        let fresh = records - duplicates;
        if duplicates > 0 {
            if !self.add(Run::Other {
                offsets: duplicates,
                foreign: 0,
            }) {
                return false;
            }
            self.plan.duplicates += duplicates;
        }
        if fresh > 0 {
            if !self.add(Run::Own(fresh)) {
                return false;
            }
            self.plan.own += fresh;
            self.covered += fresh;
        }
        true
    }

    /// `producer`'s record with sequence `first` holds the next uncovered source record.
    fn reanchor(&mut self, producer: ProducerIdentity, first: i32) {
        let sequence = sequence_plus(first, -self.covered);
        match self.plan.anchors.iter_mut().find(|a| a.producer == producer) {
            Some(a) => a.sequence = sequence,
            None => self.plan.anchors.push(Anchor { producer, sequence }),
        }
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
