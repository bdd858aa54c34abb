//! The offset map of one partition: where each replicated source offset landed on the target,
//! so that committed consumer-group offsets translate exactly (see [`crate::groups`]).
//!
//! strait writes the kept source records of a partition in order, one target offset each. The
//! mapping from source to target offsets is therefore a sequence of *runs*: `len` kept records
//! at consecutive source offsets `source..source + len`, written at consecutive target offsets
//! `target..target + len`. A run ends where the source skips offsets (control records, aborted
//! transactions, compaction holes, a deleted range) or the target does (another producer's
//! records passed over). Between runs lie source offsets with no record on the target.
//!
//! Translation follows the consumer's meaning of a committed offset, "the next record to read":
//! a source offset maps to the target offset of the first kept record at or after it. Inside a
//! run that is `target + (offset - source)`; in a hole it is the next run's start, or the end of
//! what is replicated when no run follows.
//!
//! Pure: the ack stage records runs as the target acknowledges batches
//! ([`OffsetMap::record`]), the checkpointer stores the runs that changed next to the
//! checkpoint, in the same batch ([`OffsetMap::pending`] / [`OffsetMap::written`]), and the
//! group sync translates ([`OffsetMap::translate`]) and prunes below the lowest offset any
//! synced group still needs ([`OffsetMap::prune_below`]).
//!
//! # Bound
//!
//! A partition holds at most `max_runs` runs (`groups.offset_map_max_runs`, default 1,000):
//! 33 bytes each in memory, one record of about 60 bytes plus the names in the checkpoint topic
//! (compacted, one record per run). A source without transactions or deletions has one run per
//! partition for as long as strait runs; every transaction marker, aborted range or deleted range
//! adds at most one. When the cap is reached the oldest run goes: offsets below the oldest
//! run then map to its start ([`Translation::Before`]), which is the nearest position strait
//! can still name, and the group sync logs it.

use std::collections::VecDeque;

/// Default cap on the runs kept per partition.
pub const DEFAULT_MAX_RUNS: usize = 1_000;

/// `len` kept source records at `source..source + len`, on the target at `target..target + len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub source: i64,
    pub target: i64,
    pub len: i64,
}

impl Run {
    fn source_end(&self) -> i64 {
        self.source + self.len
    }

    fn target_end(&self) -> i64 {
        self.target + self.len
    }
}

/// Where a replication stands: every kept source record below `source` is on the target, below
/// `target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct End {
    pub source: i64,
    pub target: i64,
}

/// A source offset translated to a target offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Translation {
    /// The target offset of the first kept record at or after it.
    Exact(i64),
    /// Below what the map covers (before strait's first record of the partition, below a
    /// source log start, or pruned): the nearest target position strait can name, the start of
    /// its oldest run.
    Before(i64),
    /// At or beyond what is replicated: the end of what is. Exact once replication passes it.
    Beyond(i64),
}

impl Translation {
    /// The target offset, whichever kind.
    pub fn offset(&self) -> i64 {
        match *self {
            Translation::Exact(o) | Translation::Before(o) | Translation::Beyond(o) => o,
        }
    }
}

/// What the checkpointer must store: runs that changed since their last write, and the source
/// starts of runs pruned since (written as tombstones).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    pub runs: Vec<Run>,
    pub removed: Vec<i64>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty() && self.removed.is_empty()
    }
}

/// The runs of one partition, oldest first, and which of them changed since stored.
#[derive(Clone, Debug)]
pub struct OffsetMap {
    /// Each run with whether it changed since it was last stored.
    runs: VecDeque<(Run, bool)>,
    max_runs: usize,
    /// Source starts of stored runs that were pruned or replaced, not yet deleted in store.
    removed: Vec<i64>,
}

impl Default for OffsetMap {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_RUNS)
    }
}

impl OffsetMap {
    /// An empty map keeping at most `max_runs` runs (at least 1).
    pub fn new(max_runs: usize) -> Self {
        Self {
            runs: VecDeque::new(),
            max_runs: max_runs.max(1),
            removed: Vec::new(),
        }
    }

    /// A map of stored runs (any order), cut at `end`: a run recorded past a checkpoint (the
    /// store holds what the target acknowledged, the checkpoint may be older) is cut there, and
    /// the task records it again as it resumes. Nothing is pending.
    pub fn from_stored(max_runs: usize, runs: impl IntoIterator<Item = Run>, end: End) -> Self {
        // A run of length 0 is an out-of-order marker ([`Self::mark_out_of_order`]).
        let mut sorted: Vec<Run> = runs.into_iter().filter(|r| r.len >= 0).collect();
        sorted.sort_by_key(|r| r.source);
        let mut map = Self::new(max_runs);
        for mut run in sorted {
            // A marker at the position is kept: the catch-up it marks resumes there.
            if run.source > end.source || (run.len > 0 && run.source == end.source) {
                map.removed.push(run.source);
                continue;
            }
            let stored = run;
            run.len = run.len.min(end.source - run.source);
            map.runs.push_back((run, run != stored));
        }
        map.enforce_cap();
        map
    }

    /// The runs, oldest first.
    pub fn runs(&self) -> impl Iterator<Item = &Run> {
        self.runs.iter().map(|(r, _)| r)
    }

    pub fn len(&self) -> usize {
        self.runs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// `len` kept source records from `source` are on the target from `target` (acknowledged).
    /// Extends the last run when both sides continue it. Recording again what is already
    /// recorded (a resumed task re-finding its own records) replaces the runs from `source` on.
    pub fn record(&mut self, source: i64, target: i64, len: i64) {
        if len <= 0 {
            return;
        }
        self.supersede_from(source);
        if let Some((last, dirty)) = self.runs.back_mut() {
            if last.source_end() == source && last.target_end() == target {
                last.len += len;
                *dirty = true;
                return;
            }
        }
        // A source start that was removed and is used again is written again, not deleted.
        self.removed.retain(|s| *s != source);
        self.runs.push_back((Run { source, target, len }, true));
        self.enforce_cap();
    }

    /// Drops what is recorded at or past `source`, and cuts the run that reaches past it.
    fn supersede_from(&mut self, source: i64) {
        while self.runs.back().is_some_and(|(last, _)| last.source >= source) {
            if let Some((gone, _)) = self.runs.pop_back() {
                self.removed.push(gone.source);
            }
        }
        if let Some((last, dirty)) = self.runs.back_mut() {
            if last.source_end() > source {
                last.len = source - last.source;
                *dirty = true;
            }
        }
    }

    /// From source offset `source` on, records are written out of source order, none of them
    /// below target offset `target` (a fresh-first catch-up: fresh records before the backlog
    /// behind them). Records the catch-up writes are not recorded as runs; until the first run
    /// recorded after it, every source offset from `source` on translates to `target` (never
    /// exact: a group starting there reads again what was written after `target` before its
    /// offset, and misses nothing). Stored as a run of length 0.
    pub fn mark_out_of_order(&mut self, source: i64, target: i64) {
        self.supersede_from(source);
        self.removed.retain(|s| *s != source);
        self.runs.push_back((Run { source, target, len: 0 }, true));
        self.enforce_cap();
    }

    /// A partition resumed at `end`. If the map holds records below `end.source` at target
    /// offsets at or past `end.target`, the target partition was reset under it (emptied or
    /// recreated, and written again): those offsets are of another log, so the whole map is
    /// dropped, and offsets below what is recorded next translate to its start. Returns whether
    /// it was dropped.
    pub fn forget_if_target_reset(&mut self, end: End) -> bool {
        let reset = self
            .runs
            .iter()
            .any(|(r, _)| r.source < end.source && r.target + (end.source - r.source).min(r.len) > end.target);
        if reset {
            while let Some((gone, _)) = self.runs.pop_front() {
                self.removed.push(gone.source);
            }
        }
        reset
    }

    /// Drops the runs that end at or below `source`: no synced group needs them any more.
    /// An out-of-order marker is needed up to the next run's start.
    pub fn prune_below(&mut self, source: i64) {
        let needed_until = |runs: &VecDeque<(Run, bool)>| match runs.front() {
            Some((r, _)) if r.len == 0 => runs.get(1).map_or(i64::MAX, |(next, _)| next.source),
            Some((r, _)) => r.source_end(),
            None => i64::MAX,
        };
        while self.runs.len() > 1 && needed_until(&self.runs) <= source {
            if let Some((gone, _)) = self.runs.pop_front() {
                self.removed.push(gone.source);
            }
        }
    }

    fn enforce_cap(&mut self) {
        while self.runs.len() > self.max_runs {
            if let Some((gone, _)) = self.runs.pop_front() {
                self.removed.push(gone.source);
            }
        }
    }

    /// The runs that changed since stored, and the stored runs to delete.
    pub fn pending(&self) -> Pending {
        Pending {
            runs: self.runs.iter().filter(|(_, d)| *d).map(|(r, _)| *r).collect(),
            removed: self.removed.clone(),
        }
    }

    /// `pending` (taken earlier) is stored: what has not changed since is clean.
    pub fn written(&mut self, pending: &Pending) {
        for run in &pending.runs {
            if let Ok(i) = self.runs.binary_search_by_key(&run.source, |(r, _)| r.source) {
                if let Some((r, dirty)) = self.runs.get_mut(i) {
                    if r == run {
                        *dirty = false;
                    }
                }
            }
        }
        self.removed.retain(|s| !pending.removed.contains(s));
    }

    /// The target offset of the first kept record at or after source offset `offset`, given
    /// that replication stands at `end`.
    pub fn translate(&self, offset: i64, end: End) -> Translation {
        if offset >= end.source {
            return Translation::Beyond(end.target);
        }
        let i = self.runs.partition_point(|(r, _)| r.source <= offset);
        if i == 0 {
            return Translation::Before(self.runs.front().map_or(end.target, |(r, _)| r.target));
        }
        let (run, _) = self.runs[i - 1];
        if run.len == 0 {
            // Written out of order from the marker on: nothing at or after `offset` lies below
            // the marker's target offset.
            return Translation::Before(run.target);
        }
        if offset < run.source_end() {
            return Translation::Exact(run.target + (offset - run.source));
        }
        // In a hole: the next kept record is the next run's first, or the next one written.
        Translation::Exact(self.runs.get(i).map_or(end.target, |(next, _)| next.target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(source: i64, target: i64) -> End {
        End { source, target }
    }

    #[test]
    fn consecutive_records_make_one_run_and_translate_by_their_difference() {
        let mut m = OffsetMap::default();
        m.record(100, 0, 10);
        m.record(110, 10, 5);
        assert_eq!(m.len(), 1);
        let e = end(115, 15);
        assert_eq!(m.translate(100, e), Translation::Exact(0));
        assert_eq!(m.translate(107, e), Translation::Exact(7));
        assert_eq!(m.translate(115, e), Translation::Beyond(15));
        assert_eq!(m.translate(99, e), Translation::Before(0));
    }

    #[test]
    fn an_out_of_order_marker_translates_to_its_target_until_the_next_run() {
        let mut m = OffsetMap::default();
        m.record(0, 0, 100);
        // A catch-up from source 100 at target 100: fresh records first, then the backlog.
        m.mark_out_of_order(100, 100);
        // After it, one range again from source 5000 at target 5000.
        m.record(5000, 5000, 10);
        let e = end(5010, 5010);
        assert_eq!(m.translate(50, e), Translation::Exact(50));
        for offset in [100, 2500, 4999] {
            assert_eq!(m.translate(offset, e), Translation::Before(100), "offset {offset}");
        }
        assert_eq!(m.translate(5003, e), Translation::Exact(5003));
        // Stored and read again at a position inside the catch-up, the marker stays.
        let pending = m.pending();
        let stored = OffsetMap::from_stored(100, pending.runs.clone(), end(100, 100));
        assert_eq!(stored.translate(100, end(200, 300)), Translation::Before(100));
        // Pruning keeps the marker while a group may stand in its range.
        m.prune_below(4000);
        assert_eq!(m.translate(4000, e), Translation::Before(100));
        m.prune_below(5000);
        assert_eq!(m.translate(5003, e), Translation::Exact(5003));
    }

    #[test]
    fn a_hole_maps_to_the_first_kept_record_after_it() {
        let mut m = OffsetMap::default();
        // 0..5 kept, 5..8 dropped (an aborted transaction and its marker), 8..10 kept.
        m.record(0, 0, 5);
        m.record(8, 5, 2);
        // 10 is a commit marker: the position passed it, nothing more is written yet.
        let e = end(11, 7);
        let t: Vec<i64> = (0..=11).map(|o| m.translate(o, e).offset()).collect();
        assert_eq!(t, vec![0, 1, 2, 3, 4, 5, 5, 5, 5, 6, 7, 7]);
        assert_eq!(m.translate(6, e), Translation::Exact(5));
        assert_eq!(m.translate(10, e), Translation::Exact(7));
    }

    #[test]
    fn foreign_records_on_the_target_start_a_new_run() {
        let mut m = OffsetMap::default();
        m.record(0, 0, 3);
        // Two records of another producer at target 3 and 4.
        m.record(3, 5, 2);
        assert_eq!(m.len(), 2);
        let e = end(5, 7);
        assert_eq!(m.translate(2, e), Translation::Exact(2));
        assert_eq!(m.translate(3, e), Translation::Exact(5));
    }

    #[test]
    fn recording_again_replaces_what_was_recorded_from_there() {
        let mut m = OffsetMap::default();
        m.record(0, 0, 10);
        m.written(&m.pending());
        // A resumed task finds its records 6.. again, in place.
        m.record(6, 6, 1);
        m.record(7, 7, 3);
        assert_eq!(
            m.runs().copied().collect::<Vec<_>>(),
            vec![Run {
                source: 0,
                target: 0,
                len: 10
            }]
        );
        // Found elsewhere this time (a foreign record came first).
        m.record(8, 9, 2);
        assert_eq!(
            m.runs().copied().collect::<Vec<_>>(),
            vec![
                Run {
                    source: 0,
                    target: 0,
                    len: 8
                },
                Run {
                    source: 8,
                    target: 9,
                    len: 2
                }
            ]
        );
    }

    #[test]
    fn only_changed_runs_are_pending_and_a_change_during_the_write_stays_pending() {
        let mut m = OffsetMap::default();
        m.record(0, 0, 5);
        m.record(7, 5, 1);
        let first = m.pending();
        assert_eq!(first.runs.len(), 2);
        // The open run grows while the write is on the wire.
        m.record(8, 6, 1);
        m.written(&first);
        assert_eq!(
            m.pending().runs,
            vec![Run {
                source: 7,
                target: 5,
                len: 2
            }]
        );
        m.written(&m.pending());
        assert!(m.pending().is_empty());
    }

    #[test]
    fn pruned_runs_are_deleted_from_the_store_and_below_them_is_before() {
        let mut m = OffsetMap::default();
        for i in 0..5 {
            m.record(i * 10, i * 9, 9);
        }
        m.written(&m.pending());
        m.prune_below(20);
        assert_eq!(m.len(), 3);
        assert_eq!(m.pending().removed, vec![0, 10]);
        let e = end(50, 45);
        assert_eq!(m.translate(5, e), Translation::Before(18));
        assert_eq!(m.translate(25, e), Translation::Exact(23));
        m.written(&m.pending());
        assert!(m.pending().is_empty());
    }

    #[test]
    fn a_target_reset_under_the_map_drops_it() {
        let mut m = OffsetMap::default();
        m.record(0, 0, 10);
        m.written(&m.pending());
        // Resumed where it stood: kept.
        assert!(!m.forget_if_target_reset(end(10, 10)));
        // A target partition emptied and written again from source 10 at target 0.
        assert!(m.forget_if_target_reset(end(10, 0)));
        assert!(m.is_empty());
        assert_eq!(m.pending().removed, vec![0]);
    }

    #[test]
    fn stored_runs_are_cut_at_the_checkpoint() {
        let stored = [
            Run {
                source: 10,
                target: 9,
                len: 5,
            },
            Run {
                source: 0,
                target: 0,
                len: 9,
            },
            Run {
                source: 20,
                target: 14,
                len: 5,
            },
        ];
        let m = OffsetMap::from_stored(10, stored, end(12, 11));
        assert_eq!(
            m.runs().copied().collect::<Vec<_>>(),
            vec![
                Run {
                    source: 0,
                    target: 0,
                    len: 9
                },
                Run {
                    source: 10,
                    target: 9,
                    len: 2
                }
            ]
        );
        let p = m.pending();
        assert_eq!(
            (p.runs, p.removed),
            (
                vec![Run {
                    source: 10,
                    target: 9,
                    len: 2
                }],
                vec![20]
            )
        );
    }

    /// A million records with a gap every 1,000 and a group committing as it reads: the map
    /// holds only what the group may still need, and the cap holds it without any group.
    #[test]
    fn a_million_records_with_gaps_stay_bounded() {
        let mut synced = OffsetMap::new(DEFAULT_MAX_RUNS);
        let mut capped = OffsetMap::new(100);
        let (mut source, mut target, mut most) = (0i64, 0i64, 0usize);
        while target < 1_000_000 {
            for m in [&mut synced, &mut capped] {
                m.record(source, target, 999);
            }
            source += 1_000;
            target += 999;
            // The group is 10,000 source offsets behind.
            synced.prune_below(source - 10_000);
            synced.written(&synced.pending());
            most = most.max(synced.len());
        }
        assert!(most <= 12, "runs held while a group follows: {most}");
        assert_eq!(capped.len(), 100);
        let e = end(source, target);
        assert_eq!(
            synced.translate(source - 5_500, e),
            Translation::Exact(target - 6 * 999 + 500)
        );
        assert_eq!(synced.translate(source - 1, e), Translation::Exact(target));
    }
}
