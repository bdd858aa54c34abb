//! Where a partition goes on from after a restart or an uncertain answer: the checkpointed
//! position, reconciled with what the target actually holds. Pure logic, no IO.
//!
//! The invariant it relies on: strait is the only writer of each target partition, and it
//! writes the kept source records (control batches and aborted transactions dropped) in source
//! order, one target offset each. So the records between the checkpointed target offset and the
//! target's end are exactly the next `end - checkpoint.target` kept source records after the
//! checkpointed source offset. What breaks it: another producer writing to the target partition
//! (strait notices when a batch lands at an unexpected offset and reconciles, but cannot undo
//! the mix), two strait processes owning the same partition (shards must not overlap), or a
//! transactional writer on the target (markers take offsets).

/// A consistent pair of positions: everything below `source` (that strait copies) is on the
/// target below `target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) source: i64,
    pub(crate) target: i64,
}

/// Where to go on from: a checkpointed position and how many records the target holds beyond
/// it (written after the checkpoint, before a crash).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Resume {
    pub(crate) at: Position,
    pub(crate) already_written: i64,
}

/// Decides how to resume from a checkpoint and the target partition's current end. Pure.
///
/// The invariant behind it: strait is the only writer of the target partition, and it writes
/// the kept source records (control batches and aborted transactions dropped) in source order,
/// one target offset each. So the records between the checkpointed target offset and the target
/// end are exactly the next `end - checkpoint.target` kept source records after the checkpointed
/// source offset. Another producer writing to the target partition breaks this.
pub(crate) fn plan_resume(at: Position, target_end: i64) -> Option<Resume> {
    (target_end >= at.target).then(|| Resume {
        at,
        already_written: target_end - at.target,
    })
}

/// The records the target holds beyond the acknowledged position, written before a crash: the
/// next `remaining` kept source records are already there and are not written again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tail {
    remaining: i64,
}

impl Tail {
    pub(crate) fn new(already_written: i64) -> Self {
        Self {
            remaining: already_written.max(0),
        }
    }

    /// Whether the kept source record at `offset` is already on the target; if so `acked`
    /// moves past it on both sides.
    pub(crate) fn absorb(&mut self, offset: i64, acked: &mut Position) -> bool {
        if self.remaining == 0 {
            return false;
        }
        self.remaining -= 1;
        *acked = Position {
            source: offset + 1,
            target: acked.target + 1,
        };
        true
    }

    /// Source records `from..to` were deleted before strait read them. The tail's records were
    /// the first kept ones from `acked.source` on, so they lie at the start of the deleted
    /// range; the rest of the range is the gap. Returns the gap's size and moves `acked` to
    /// `to`. Exact when the deleted range held no transaction markers or compaction holes (each
    /// offset one record); otherwise it may count a marker as a missing record.
    pub(crate) fn gap(&mut self, from: i64, to: i64, acked: &mut Position) -> i64 {
        let deleted = (to - from).max(0);
        let replicated = self.remaining.min(deleted);
        self.remaining -= replicated;
        *acked = Position {
            source: to,
            target: acked.target + replicated,
        };
        deleted - replicated
    }

    /// Records still to absorb.
    #[cfg(test)]
    pub(crate) fn remaining(&self) -> i64 {
        self.remaining
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CP: Position = Position {
        source: 100,
        target: 40,
    };

    #[test]
    fn checkpoint_equal_to_the_target_end_resumes_with_nothing_to_skip() {
        assert_eq!(
            plan_resume(CP, 40),
            Some(Resume {
                at: CP,
                already_written: 0
            })
        );
    }

    #[test]
    fn checkpoint_behind_the_target_tail_skips_the_tail() {
        assert_eq!(
            plan_resume(CP, 47),
            Some(Resume {
                at: CP,
                already_written: 7
            })
        );
    }

    #[test]
    fn target_ahead_of_anything_known_is_all_skipped_then_caught_up() {
        // A crash right after a large burst: the whole tail is skipped record by record.
        let r = plan_resume(CP, 1040).expect("target ahead");
        let mut tail = Tail::new(r.already_written);
        let mut acked = r.at;
        for offset in 100..1100 {
            assert!(tail.absorb(offset, &mut acked));
        }
        assert!(!tail.absorb(1100, &mut acked));
        assert_eq!(
            acked,
            Position {
                source: 1100,
                target: 1040
            }
        );
    }

    #[test]
    fn target_behind_its_checkpoint_is_not_resumable() {
        assert_eq!(plan_resume(CP, 39), None);
        assert_eq!(plan_resume(CP, 0), None);
    }

    #[test]
    fn empty_partitions_resume_at_zero() {
        let zero = Position { source: 0, target: 0 };
        assert_eq!(
            plan_resume(zero, 0),
            Some(Resume {
                at: zero,
                already_written: 0
            })
        );
        let mut tail = Tail::new(0);
        let mut acked = zero;
        assert!(!tail.absorb(0, &mut acked));
        assert_eq!(acked, zero);
    }

    #[test]
    fn compacted_source_offsets_are_holes_not_gaps() {
        // Source offsets 100, 101, 105, 109 remain after compaction; 3 are on the target.
        let mut tail = Tail::new(3);
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
        let mut tail = Tail::new(5);
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
        let mut tail = Tail::new(8);
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
        let mut tail = Tail::new(2);
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
}
