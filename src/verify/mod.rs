//! `strait verify`: compares each replicated partition's source and target, record by record,
//! and prints a table; exit 0 when they hold the same records in the same order.
//!
//! # What is compared
//!
//! The records a consumer reads (committed, transaction markers left out) by their content:
//! key, value, headers and timestamp. For each partition:
//!
//! - **Where to start.** Both logs may have lost their oldest records to retention. The
//!   target's first record is looked up in the source (ListOffsets by timestamp, then a
//!   search); if the source no longer has it, the source's first record is looked up in the
//!   target. The records before that point exist on one side only and are not compared.
//! - **Where to end.** At the partition's checkpoint when there is one (everything strait
//!   says it replicated); otherwise at each side's current end, and source records beyond the
//!   target's end are shown as not yet replicated (lag), not as a difference.
//! - **In between**, both sides are read once, in step, one bounded fetch at a time: the
//!   count, the records that differ with the first differing source and target offsets, and an
//!   order-sensitive SHA-256 digest of each side. Reading the target spends the WAN budget
//!   (`budget.bytes_per_sec`) like replication does.
//!
//! A partition is equal when no compared record differs and neither side has records the
//! other lacks within the range (beyond the lag above).

mod compare;

use std::collections::VecDeque;
use std::fmt;

use tokio_util::sync::CancellationToken;

use crate::batch::Record;
use crate::budget::Budget;
use crate::kafka::{OffsetSpec, TopicPartition};
use crate::pipeline::{list_offset_of, locate, read_data, Fetch, Located, Position, Result};
use compare::Lockstep;

/// Where a partition's comparison stands, side by side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionReport {
    pub source: TopicPartition,
    pub target: TopicPartition,
    /// Source offsets compared (from, to).
    pub source_range: (i64, i64),
    /// Target offsets compared (from, to).
    pub target_range: (i64, i64),
    /// Records compared pairwise.
    pub compared: u64,
    /// Compared records that differ.
    pub mismatched: u64,
    /// The first differing source and target offsets.
    pub first_difference: Option<(i64, i64)>,
    /// Source records within the range the target lacks.
    pub source_only: u64,
    /// Target records within the range the source lacks.
    pub target_only: u64,
    /// Whether the range ends at a checkpoint (then every source record in it must be there).
    pub checkpointed: bool,
    /// SHA-256 of the compared records, each side.
    pub source_digest: String,
    pub target_digest: String,
    /// What else an operator should know (no common record, not yet replicated).
    pub note: Option<String>,
}

impl PartitionReport {
    /// Whether the partition's source and target hold the same records in the same order.
    pub fn equal(&self) -> bool {
        self.mismatched == 0 && self.target_only == 0 && (self.source_only == 0 || !self.checkpointed)
    }
}

/// Every partition's comparison.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub partitions: Vec<PartitionReport>,
    /// Partitions that could not be compared, and why.
    pub errors: Vec<(TopicPartition, String)>,
}

impl Report {
    /// 0 when every partition is equal, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        u8::from(!(self.errors.is_empty() && self.partitions.iter().all(PartitionReport::equal)))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<32} {:>21} {:>21} {:>10} {:>10} {:>10} {:>10}  {:<24} {:<16} result",
            "source partition",
            "source offsets",
            "target offsets",
            "compared",
            "differ",
            "src only",
            "tgt only",
            "first difference (s -> t)",
            "digest"
        )?;
        for p in &self.partitions {
            let first = p
                .first_difference
                .map_or_else(|| "-".to_owned(), |(s, t)| format!("{s} -> {t}"));
            let digest = if p.source_digest == p.target_digest {
                p.source_digest.get(..16).unwrap_or_default().to_owned()
            } else {
                "differs".to_owned()
            };
            writeln!(
                f,
                "{:<32} {:>21} {:>21} {:>10} {:>10} {:>10} {:>10}  {:<24} {:<16} {}",
                p.source.to_string(),
                format!("{}..{}", p.source_range.0, p.source_range.1),
                format!("{}..{}", p.target_range.0, p.target_range.1),
                p.compared,
                p.mismatched,
                p.source_only,
                p.target_only,
                first,
                digest,
                if p.equal() { "equal" } else { "DIFFERENT" }
            )?;
            if let Some(note) = &p.note {
                writeln!(f, "    {}: {note}", p.source)?;
            }
        }
        for (tp, e) in &self.errors {
            writeln!(f, "{tp}: not compared: {e}")?;
        }
        let equal = self.partitions.iter().filter(|p| p.equal()).count();
        writeln!(
            f,
            "{equal} of {} partitions equal{}",
            self.partitions.len() + self.errors.len(),
            if self.errors.is_empty() {
                String::new()
            } else {
                format!(", {} not compared", self.errors.len())
            }
        )
    }
}

/// One side of a comparison: a partition read forward from an offset up to an end.
struct Side<'a, C> {
    cluster: &'a C,
    role: &'static str,
    tp: &'a TopicPartition,
    next: i64,
    end: i64,
    buffered: VecDeque<Record>,
    /// The WAN budget, for the side across it.
    budget: Option<&'a Budget>,
}

impl<C: Fetch> Side<'_, C> {
    /// The next record below the end; `Ok(None)` at the end (or when cancelled).
    async fn next(&mut self, cancel: &CancellationToken) -> Result<Option<Record>> {
        loop {
            if let Some(r) = self.buffered.pop_front() {
                if r.offset < self.end {
                    return Ok(Some(r));
                }
                self.buffered.clear();
                self.next = self.end;
            }
            if self.next >= self.end || cancel.is_cancelled() {
                return Ok(None);
            }
            let Some((records, next)) = read_data(cancel, self.cluster, self.role, self.tp, self.next).await? else {
                return Ok(None);
            };
            if let Some(budget) = self.budget {
                let bytes: usize = records.iter().map(record_bytes).sum();
                budget.acquire(&self.tp.topic, bytes).await;
            }
            if next <= self.next && records.is_empty() {
                // Nothing more below the end after all (the log ends earlier).
                self.end = self.next;
                return Ok(None);
            }
            self.next = next;
            self.buffered.extend(records);
        }
    }
}

/// About what a record takes on the wire.
fn record_bytes(r: &Record) -> usize {
    r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len()) + r.headers.len() + 16
}

/// Compares one partition of `source` with its copy on `target`, up to `checkpoint` when one
/// covers it. `budget` paces reading the target.
pub async fn partition<S: Fetch, T: Fetch>(
    cancel: &CancellationToken,
    source: (&S, &TopicPartition),
    target: (&T, &TopicPartition),
    checkpoint: Option<Position>,
    budget: Option<&Budget>,
) -> Result<PartitionReport> {
    partition_from(cancel, source, target, None, checkpoint, budget).await
}

/// [`partition`] from a known pair of positions (`from`, where an earlier comparison ended)
/// instead of each side's first common record: what the continuous check in `run` does, so
/// each record is read once.
pub async fn partition_from<S: Fetch, T: Fetch>(
    cancel: &CancellationToken,
    source: (&S, &TopicPartition),
    target: (&T, &TopicPartition),
    from: Option<Position>,
    checkpoint: Option<Position>,
    budget: Option<&Budget>,
) -> Result<PartitionReport> {
    let ((s_cluster, s_tp), (t_cluster, t_tp)) = (source, target);
    let source_end = match checkpoint {
        Some(c) => c.source,
        None => list_offset_of(cancel, s_cluster, "source", s_tp, OffsetSpec::Latest)
            .await?
            .unwrap_or(0),
    };
    let target_end = match checkpoint {
        Some(c) => c.target,
        None => list_offset_of(cancel, t_cluster, "target", t_tp, OffsetSpec::Latest)
            .await?
            .unwrap_or(0),
    };
    let mut report = PartitionReport {
        source: s_tp.clone(),
        target: t_tp.clone(),
        source_range: (source_end, source_end),
        target_range: (target_end, target_end),
        compared: 0,
        mismatched: 0,
        first_difference: None,
        source_only: 0,
        target_only: 0,
        checkpointed: checkpoint.is_some(),
        source_digest: String::new(),
        target_digest: String::new(),
        note: None,
    };
    let start = match from {
        Some(p) => Start::Both(p.source, p.target),
        None => start(cancel, (s_cluster, s_tp), (t_cluster, t_tp)).await?,
    };
    let (source_from, target_from) = match start {
        Start::Both(s, t) => (s, t),
        Start::SourceOnly(s) => (s, target_end),
        Start::TargetOnly(t) => (source_end, t),
        Start::Nothing => (source_end, target_end),
        Start::NoCommonRecord(s, t) => {
            report.note = Some("no record of the target is in the source, nor the other way round".into());
            report.mismatched = 1;
            report.first_difference = Some((s, t));
            report.source_range.0 = s;
            report.target_range.0 = t;
            return Ok(report);
        }
    };
    report.source_range.0 = source_from.min(source_end);
    report.target_range.0 = target_from.min(target_end);
    let mut s_side = Side {
        cluster: s_cluster,
        role: "source",
        tp: s_tp,
        next: source_from,
        end: source_end,
        buffered: VecDeque::new(),
        budget: None,
    };
    let mut t_side = Side {
        cluster: t_cluster,
        role: "target",
        tp: t_tp,
        next: target_from,
        end: target_end,
        buffered: VecDeque::new(),
        budget,
    };
    let mut lockstep = Lockstep::default();
    loop {
        let s = s_side.next(cancel).await?;
        let t = t_side.next(cancel).await?;
        match (s, t) {
            (Some(s), Some(t)) => lockstep.pair(&s, &t),
            (Some(_), None) => report.source_only += 1,
            (None, Some(_)) => report.target_only += 1,
            (None, None) => break,
        }
    }
    if report.source_only > 0 && !report.checkpointed {
        report.note = Some(format!(
            "{} source records not on the target yet (no checkpoint: compared up to the target's end)",
            report.source_only
        ));
    }
    report.compared = lockstep.compared();
    report.mismatched = lockstep.mismatched();
    report.first_difference = lockstep.first_difference();
    (report.source_digest, report.target_digest) = lockstep.digests();
    Ok(report)
}

/// Where the comparison starts on each side.
enum Start {
    Both(i64, i64),
    /// The target holds no record: everything from here on the source is the source's only.
    SourceOnly(i64),
    TargetOnly(i64),
    Nothing,
    NoCommonRecord(i64, i64),
}

async fn start<S: Fetch, T: Fetch>(
    cancel: &CancellationToken,
    (s_cluster, s_tp): (&S, &TopicPartition),
    (t_cluster, t_tp): (&T, &TopicPartition),
) -> Result<Start> {
    let target_first = first_record(cancel, t_cluster, "target", t_tp).await?;
    let source_first = first_record(cancel, s_cluster, "source", s_tp).await?;
    let (source_first, target_first) = match (source_first, target_first) {
        (None, None) => return Ok(Start::Nothing),
        (Some(s), None) => return Ok(Start::SourceOnly(s.offset)),
        (None, Some(t)) => return Ok(Start::TargetOnly(t.offset)),
        (Some(s), Some(t)) => (s, t),
    };
    let (s_offset, t_offset) = (source_first.offset, target_first.offset);
    if let Some(Located::At(s)) = locate(cancel, s_cluster, "source", s_tp, vec![target_first]).await? {
        return Ok(Start::Both(s, t_offset));
    }
    if let Some(Located::At(t)) = locate(cancel, t_cluster, "target", t_tp, vec![source_first]).await? {
        return Ok(Start::Both(s_offset, t));
    }
    Ok(Start::NoCommonRecord(s_offset, t_offset))
}

/// The first record of a partition (from its log start), if it holds any.
async fn first_record<C: Fetch>(
    cancel: &CancellationToken,
    cluster: &C,
    role: &'static str,
    tp: &TopicPartition,
) -> Result<Option<Record>> {
    let Some(mut offset) = list_offset_of(cancel, cluster, role, tp, OffsetSpec::Earliest).await? else {
        return Ok(None);
    };
    let Some(end) = list_offset_of(cancel, cluster, role, tp, OffsetSpec::Latest).await? else {
        return Ok(None);
    };
    while offset < end {
        let Some((records, next)) = read_data(cancel, cluster, role, tp, offset).await? else {
            return Ok(None);
        };
        if let Some(r) = records.into_iter().next() {
            return Ok(Some(r));
        }
        if next <= offset {
            return Ok(None);
        }
        offset = next;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::fake::FakeCluster;

    fn values(range: std::ops::Range<u8>) -> Vec<&'static [u8]> {
        range.map(|i| &*Box::leak(vec![b'v', i].into_boxed_slice())).collect()
    }

    /// A source and a target partition, each filled with its values (one batch each).
    fn pair(source: &[&'static [u8]], target: &[&'static [u8]]) -> (FakeCluster, FakeCluster, TopicPartition) {
        let tp = TopicPartition::new("spans", 0);
        let (s, t) = (FakeCluster::default(), FakeCluster::default());
        s.append(&tp, 7, source);
        if !target.is_empty() {
            t.append(&tp, 8, target);
        }
        (s, t, tp)
    }

    async fn compare(
        s: &FakeCluster,
        t: &FakeCluster,
        tp: &TopicPartition,
        checkpoint: Option<Position>,
    ) -> PartitionReport {
        partition(&CancellationToken::new(), (s, tp), (t, tp), checkpoint, None)
            .await
            .expect("compared")
    }

    #[tokio::test(start_paused = true)]
    async fn a_faithful_copy_is_equal_with_equal_digests() {
        let (s, t, tp) = pair(&values(0..20), &values(0..20));
        let r = compare(&s, &t, &tp, None).await;
        assert!(r.equal(), "{r:?}");
        assert_eq!((r.compared, r.mismatched, r.source_only, r.target_only), (20, 0, 0, 0));
        assert_eq!(r.source_digest, r.target_digest);
        assert_eq!((r.source_range, r.target_range), ((0, 20), (0, 20)));
    }

    #[tokio::test(start_paused = true)]
    async fn one_changed_record_is_the_one_difference_with_its_offsets() {
        let mut copy = values(0..20);
        copy[7] = b"changed";
        let (s, t, tp) = pair(&values(0..20), &copy);
        let r = compare(&s, &t, &tp, None).await;
        assert!(!r.equal());
        assert_eq!((r.compared, r.mismatched, r.first_difference), (20, 1, Some((7, 7))));
        assert_ne!(r.source_digest, r.target_digest);
        let report = Report {
            partitions: vec![r],
            errors: Vec::new(),
        };
        assert_eq!(report.exit_code(), 1);
        let table = report.to_string();
        assert!(table.contains("7 -> 7") && table.contains("DIFFERENT"), "{table}");
    }

    #[tokio::test(start_paused = true)]
    async fn records_the_source_no_longer_retains_are_not_compared() {
        let (s, t, tp) = pair(&values(0..20), &values(0..20));
        s.delete_before(&tp, 5);
        let r = compare(&s, &t, &tp, None).await;
        assert!(r.equal(), "{r:?}");
        assert_eq!((r.compared, r.source_range, r.target_range), (15, (5, 20), (5, 20)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_checkpoint_ends_the_range_and_a_target_short_of_it_differs() {
        let (s, t, tp) = pair(&values(0..20), &values(0..12));
        // Without a checkpoint the missing records are lag.
        let r = compare(&s, &t, &tp, None).await;
        assert!(r.equal(), "{r:?}");
        assert_eq!((r.compared, r.source_only), (12, 8));
        assert!(
            r.note.as_deref().is_some_and(|n| n.contains("not on the target yet")),
            "{r:?}"
        );
        // A checkpoint says 15 were replicated: three are missing.
        let r = compare(&s, &t, &tp, Some(Position { source: 15, target: 15 })).await;
        assert!(!r.equal(), "{r:?}");
        assert_eq!((r.compared, r.source_only, r.target_only), (12, 3, 0));
        // Extra records on the target within the range differ too.
        let (s, t, tp) = pair(&values(0..10), &values(0..12));
        let r = compare(&s, &t, &tp, None).await;
        assert_eq!((r.compared, r.target_only, r.equal()), (10, 2, false));
    }

    #[tokio::test(start_paused = true)]
    async fn no_common_record_is_one_difference_at_both_starts() {
        let (s, t, tp) = pair(&values(0..5), &values(100..105));
        let r = compare(&s, &t, &tp, None).await;
        assert!(!r.equal());
        assert_eq!(r.first_difference, Some((0, 0)));
    }
}
