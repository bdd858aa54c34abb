//! Consumer group offset sync: committed offsets of source groups, translated exactly through
//! each partition's offset map ([`crate::offsets`]), committed to the same group on the target.
//!
//! A pass ([`Syncer::pass`]) lists the source groups that `groups.include` / `groups.exclude`
//! select, reads each one's committed offsets, and for each partition strait replicates here
//! translates the offset to the target offset of the first kept record at or after it. It then
//! commits those offsets to the group on the target, with the committed metadata kept, unless:
//! - the group has members on the target (consumers already run there: never touched);
//! - a translation would move the target's committed offset backwards (unless
//!   `groups.allow_rewind`);
//! - the offset equals what the target already holds.
//!
//! What a translation means is decided by [`plan`], which is pure; the IO (which requests, in
//! which order, what a failure skips) is in [`Syncer`].
//!
//! A committed offset beyond what strait replicated translates to the end of what it did: a
//! consumer started there would re-read what the group read since on the source. The
//! *translation lag* metric says how many source records that is; the failover runbook waits
//! for it to be 0.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::config::GroupFilter;
use crate::kafka::{self, Cluster, Committed, ResponseError, TopicPartition};
use crate::offsets::Translation;
use crate::pipeline::checkpoints::MapHandle;
use crate::telemetry;

/// Translates a source partition's offset: the target topic, the translation and the source
/// offset replication stands at; `None` when this process does not replicate the partition (or
/// has no position for it yet).
pub trait Translate {
    fn translate(&self, tp: &TopicPartition, offset: i64) -> Option<(String, Translation, i64)>;
    /// Drops offset map runs below `offset`: no synced group needs them.
    fn prune_below(&self, tp: &TopicPartition, offset: i64);
}

/// The offset maps of the partitions this process replicates, filled as their tasks start.
#[derive(Debug, Default)]
pub struct Maps {
    handles: Mutex<BTreeMap<TopicPartition, MapHandle>>,
    inserted: tokio::sync::Notify,
}

impl Maps {
    pub fn insert(&self, tp: TopicPartition, handle: MapHandle) {
        self.handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(tp, handle);
        self.inserted.notify_waiters();
    }

    fn all(&self) -> Vec<MapHandle> {
        self.handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Waits until at least one partition registered and every registered one published its
    /// position, so that a first pass after a start translates instead of finding nothing;
    /// gives up after `at_most` (a partition halted before resuming never publishes).
    pub async fn settled(&self, at_most: std::time::Duration) {
        let settle = async {
            loop {
                let inserted = self.inserted.notified();
                tokio::pin!(inserted);
                inserted.as_mut().enable();
                let handles = self.all();
                if !handles.is_empty() {
                    for h in &handles {
                        h.published().await;
                    }
                    return;
                }
                inserted.await;
            }
        };
        let _ = tokio::time::timeout(at_most, settle).await;
    }

    fn get(&self, tp: &TopicPartition) -> Option<MapHandle> {
        self.handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(tp)
            .cloned()
    }
}

impl Translate for Maps {
    fn translate(&self, tp: &TopicPartition, offset: i64) -> Option<(String, Translation, i64)> {
        self.get(tp)?.translate(offset)
    }

    fn prune_below(&self, tp: &TopicPartition, offset: i64) {
        if let Some(h) = self.get(tp) {
            h.prune_below(offset);
        }
    }
}

/// What happens to one partition of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Committed on the target.
    Commit,
    /// The target already holds this offset.
    Unchanged,
    /// Not replicated by this process.
    NotReplicated,
    /// Would move the target's committed offset backwards, from this one.
    WouldRewind(i64),
}

/// One partition of a group in a pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub source: TopicPartition,
    pub source_offset: i64,
    pub target: Option<TopicPartition>,
    pub translation: Option<Translation>,
    /// Source records the group read that are not on the target yet (0 once replication passed
    /// its offset).
    pub lag: i64,
    pub action: Action,
}

/// Decides, for one group, what to commit on the target: pure.
pub fn plan(
    source_committed: &BTreeMap<TopicPartition, Committed>,
    target_committed: &BTreeMap<TopicPartition, Committed>,
    translate: &(dyn Translate + Sync),
    allow_rewind: bool,
) -> (Vec<Row>, BTreeMap<TopicPartition, Committed>) {
    let mut rows = Vec::new();
    let mut commits = BTreeMap::new();
    for (tp, committed) in source_committed {
        let Some((target_topic, translation, replicated)) = translate.translate(tp, committed.offset) else {
            rows.push(Row {
                source: tp.clone(),
                source_offset: committed.offset,
                target: None,
                translation: None,
                lag: 0,
                action: Action::NotReplicated,
            });
            continue;
        };
        let target_tp = TopicPartition::new(target_topic, tp.partition);
        let offset = translation.offset();
        let held = target_committed.get(&target_tp).map(|c| c.offset);
        let action = match held {
            Some(h) if h == offset => Action::Unchanged,
            Some(h) if h > offset && !allow_rewind => Action::WouldRewind(h),
            _ => {
                commits.insert(
                    target_tp.clone(),
                    Committed {
                        offset,
                        metadata: committed.metadata.clone(),
                    },
                );
                Action::Commit
            }
        };
        rows.push(Row {
            source: tp.clone(),
            source_offset: committed.offset,
            target: Some(target_tp),
            translation: Some(translation),
            lag: (committed.offset - replicated).max(0),
            action,
        });
    }
    (rows, commits)
}

/// Why a group was left alone in a pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skipped {
    /// Consumers are in the group on the target.
    ActiveOnTarget { state: String, members: usize },
    /// A request about the group failed; the text says which and why.
    Failed(String),
}

impl Skipped {
    /// The metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Skipped::ActiveOnTarget { .. } => "active_on_target",
            Skipped::Failed(_) => "request_failed",
        }
    }
}

/// One group's outcome in a pass.
#[derive(Clone, Debug)]
pub struct GroupOutcome {
    pub group: String,
    pub rows: Vec<Row>,
    /// Partitions committed (0 when only planned).
    pub committed: usize,
    pub skipped: Option<Skipped>,
}

/// A pass as `strait groups` prints it.
#[derive(Clone, Debug)]
pub struct Report {
    pub outcomes: Vec<GroupOutcome>,
    /// Whether the pass committed.
    pub applied: bool,
}

impl Report {
    /// 0 when every selected group could be read and, when applied, synced; 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        u8::from(
            self.outcomes
                .iter()
                .any(|o| matches!(o.skipped, Some(Skipped::Failed(_)))),
        )
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.outcomes.is_empty() {
            return writeln!(f, "no source consumer group matches groups.include / groups.exclude");
        }
        writeln!(
            f,
            "{:<30} {:<30} {:>12} {:>12} {:>8}  ACTION",
            "GROUP", "SOURCE PARTITION", "COMMITTED", "TARGET", "LAG"
        )?;
        for o in &self.outcomes {
            if let Some(Skipped::Failed(why)) = &o.skipped {
                writeln!(f, "{:<30} skipped: {why}", o.group)?;
                continue;
            }
            for row in &o.rows {
                let target = row.translation.map_or("-".to_owned(), |t| match t {
                    Translation::Exact(o) => o.to_string(),
                    Translation::Before(o) => format!("{o} (nearest)"),
                    Translation::Beyond(o) => format!("{o} (so far)"),
                });
                let action = match (&o.skipped, &row.action) {
                    (Some(Skipped::ActiveOnTarget { state, members }), _) => {
                        format!("left alone: {members} members on the target ({state})")
                    }
                    (_, Action::Commit) if self.applied => "committed".to_owned(),
                    (_, Action::Commit) => "would commit (--apply)".to_owned(),
                    (_, Action::Unchanged) => "unchanged".to_owned(),
                    (_, Action::NotReplicated) => "not replicated by this shard".to_owned(),
                    (_, Action::WouldRewind(held)) => format!("kept at {held} (would move back; groups.allow_rewind)"),
                };
                writeln!(
                    f,
                    "{:<30} {:<30} {:>12} {:>12} {:>8}  {action}",
                    o.group,
                    row.source.to_string(),
                    row.source_offset,
                    target,
                    row.lag
                )?;
            }
        }
        Ok(())
    }
}

/// Runs passes of the group sync between two clusters.
#[derive(Debug)]
pub struct Syncer {
    source: Arc<Cluster>,
    target: Arc<Cluster>,
    filter: GroupFilter,
    allow_rewind: bool,
    /// (group, partition, kind) already logged as translated to a nearest position.
    logged: HashSet<(String, TopicPartition, &'static str)>,
    /// Why each group was last skipped, so a lasting reason is logged once.
    last_skip: BTreeMap<String, Skipped>,
}

/// A failed request, with the ACL to grant when that is what failed.
fn explain(e: &kafka::Error, side: &str, group: &str) -> String {
    let denied = match e {
        kafka::Error::Request { code, .. } | kafka::Error::Partition { code, .. } => match code {
            ResponseError::GroupAuthorizationFailed => Some(format!("grant DESCRIBE and READ on group {group}")),
            ResponseError::TopicAuthorizationFailed => Some("grant DESCRIBE on the group's topics".to_owned()),
            _ => None,
        },
        _ => None,
    };
    let text = crate::error_chain(e);
    match denied {
        Some(fix) => format!("{side} cluster refused: {text}; {fix} in the {side} cluster's ACLs"),
        None => format!("{side} cluster: {text}"),
    }
}

impl Syncer {
    pub fn new(source: Arc<Cluster>, target: Arc<Cluster>, filter: GroupFilter, allow_rewind: bool) -> Self {
        Self {
            source,
            target,
            filter,
            allow_rewind,
            logged: HashSet::new(),
            last_skip: BTreeMap::new(),
        }
    }

    /// One pass over the selected groups; commits only when `apply`. Offset map runs below
    /// every synced group's offset are pruned when `apply`.
    pub async fn pass(&mut self, translate: &(dyn Translate + Sync), apply: bool) -> kafka::Result<Vec<GroupOutcome>> {
        let mut groups: Vec<String> = self
            .source
            .list_groups()
            .await?
            .into_iter()
            .filter(|g| self.filter.matches(g))
            .collect();
        // A group named literally is asked about even when unlisted: without Describe on it the
        // listing hides it, and the answer then names the ACL to grant.
        groups.extend(self.filter.literals().map(str::to_owned));
        groups.sort();
        groups.dedup();
        let mut outcomes = Vec::with_capacity(groups.len());
        let mut lowest: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        for group in groups {
            let outcome = self.group(&group, translate, apply).await;
            for row in &outcome.rows {
                let low = lowest.entry(row.source.clone()).or_insert(row.source_offset);
                *low = (*low).min(row.source_offset);
            }
            outcomes.push(outcome);
        }
        if apply {
            for (tp, offset) in lowest {
                translate.prune_below(&tp, offset);
            }
            self.export(&outcomes);
            self.log_skips(&outcomes);
        }
        Ok(outcomes)
    }

    async fn group(&mut self, group: &str, translate: &(dyn Translate + Sync), apply: bool) -> GroupOutcome {
        let mut outcome = GroupOutcome {
            group: group.to_owned(),
            rows: Vec::new(),
            committed: 0,
            skipped: None,
        };
        let source_committed = match self.source.committed_offsets(group).await {
            Ok(c) => c,
            Err(e) => {
                outcome.skipped = Some(Skipped::Failed(explain(&e, "source", group)));
                return outcome;
            }
        };
        let state = match self.target.describe_group(group).await {
            Ok(s) => s,
            Err(e) => {
                outcome.skipped = Some(Skipped::Failed(explain(&e, "target", group)));
                return outcome;
            }
        };
        let target_committed = if state.state == "Dead" {
            BTreeMap::new()
        } else {
            match self.target.committed_offsets(group).await {
                Ok(c) => c,
                Err(e) => {
                    outcome.skipped = Some(Skipped::Failed(explain(&e, "target", group)));
                    return outcome;
                }
            }
        };
        let (rows, commits) = plan(&source_committed, &target_committed, translate, self.allow_rewind);
        self.log_nearest(group, &rows);
        outcome.rows = rows;
        if state.is_active() {
            outcome.skipped = Some(Skipped::ActiveOnTarget {
                state: state.state,
                members: state.members,
            });
            return outcome;
        }
        if !apply || commits.is_empty() {
            return outcome;
        }
        match self.target.commit_offsets(group, &commits).await {
            Ok(results) => {
                for (tp, result) in results {
                    match result {
                        Ok(()) => outcome.committed += 1,
                        Err(e) => {
                            tracing::warn!(group, topic = %tp.topic, partition = tp.partition, error = %crate::error_chain(&e),
                                "committing the translated offset failed")
                        }
                    }
                }
            }
            Err(e) => outcome.skipped = Some(Skipped::Failed(explain(&e, "target", group))),
        }
        outcome
    }

    /// Logs, once per group and partition, an offset translated to the nearest position.
    fn log_nearest(&mut self, group: &str, rows: &[Row]) {
        for row in rows {
            let kind = match row.translation {
                Some(Translation::Before(_)) => "before",
                Some(Translation::Beyond(_)) => "beyond",
                _ => continue,
            };
            if self.logged.insert((group.to_owned(), row.source.clone(), kind)) {
                let target = row.translation.map_or(-1, |t| t.offset());
                if kind == "before" {
                    tracing::warn!(group, topic = %row.source.topic, partition = row.source.partition,
                        committed = row.source_offset, target_offset = target,
                        "committed offset is below what strait replicated of the partition (below its log start, or older than the offset map keeps): translated to the first replicated position");
                } else {
                    tracing::info!(group, topic = %row.source.topic, partition = row.source.partition,
                        committed = row.source_offset, target_offset = target,
                        "committed offset is beyond what strait replicated so far: translated to the end of what it did (exact once replication passes it)");
                }
            }
        }
    }

    /// Logs a group's skip when its reason changes, and its recovery.
    fn log_skips(&mut self, outcomes: &[GroupOutcome]) {
        for o in outcomes {
            match &o.skipped {
                Some(skipped) if self.last_skip.get(&o.group) != Some(skipped) => {
                    tracing::warn!(group = %o.group, reason = skipped.reason(), detail = ?skipped, "consumer group not synced");
                    self.last_skip.insert(o.group.clone(), skipped.clone());
                }
                Some(_) => {}
                None => {
                    if self.last_skip.remove(&o.group).is_some() {
                        tracing::info!(group = %o.group, "consumer group synced again");
                    }
                }
            }
        }
    }

    fn export(&self, outcomes: &[GroupOutcome]) {
        let synced = outcomes.iter().filter(|o| o.skipped.is_none()).count();
        metrics::gauge!(telemetry::GROUPS_SYNCED).set(synced as f64);
        for o in outcomes {
            if let Some(skipped) = &o.skipped {
                metrics::counter!(telemetry::GROUPS_SKIPPED, "reason" => skipped.reason()).increment(1);
            }
            metrics::counter!(telemetry::GROUP_PARTITIONS_SYNCED).increment(o.committed as u64);
            for row in o.rows.iter().filter(|r| r.target.is_some()) {
                metrics::gauge!(telemetry::GROUP_TRANSLATION_LAG, "group" => o.group.clone(),
                    "topic" => row.source.topic.clone(), "partition" => row.source.partition.to_string())
                .set(row.lag as f64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offsets::{End, OffsetMap};

    /// One replicated partition, `spans/0` to `dc1.spans/0`: source 0..10 at target 0..10,
    /// 10..15 dropped, 15..20 at target 10..15; replication stands at source 20.
    struct One(OffsetMap);

    impl One {
        fn new() -> Self {
            let mut m = OffsetMap::default();
            m.record(0, 0, 10);
            m.record(15, 10, 5);
            One(m)
        }
    }

    impl Translate for One {
        fn translate(&self, tp: &TopicPartition, offset: i64) -> Option<(String, Translation, i64)> {
            let end = End { source: 20, target: 15 };
            (tp == &TopicPartition::new("spans", 0))
                .then(|| ("dc1.spans".to_owned(), self.0.translate(offset, end), end.source))
        }

        fn prune_below(&self, _: &TopicPartition, _: i64) {}
    }

    fn committed(entries: &[(&str, i32, i64)]) -> BTreeMap<TopicPartition, Committed> {
        entries
            .iter()
            .map(|(t, p, o)| {
                (
                    TopicPartition::new(*t, *p),
                    Committed {
                        offset: *o,
                        metadata: Some(format!("m{o}")),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn offsets_translate_through_the_map_with_their_metadata_and_lag() {
        let source = committed(&[("spans", 0, 12), ("spans", 1, 3)]);
        let (rows, commits) = plan(&source, &BTreeMap::new(), &One::new(), false);
        let target = TopicPartition::new("dc1.spans", 0);
        assert_eq!(
            commits.get(&target).map(|c| (c.offset, c.metadata.clone())),
            Some((10, Some("m12".into())))
        );
        assert_eq!(rows[0].action, Action::Commit);
        assert_eq!(rows[1].action, Action::NotReplicated, "spans/1 is not replicated here");
        assert_eq!(commits.len(), 1);
        // Beyond what is replicated: the end, with the records still to come as lag.
        let (rows, _) = plan(&committed(&[("spans", 0, 26)]), &BTreeMap::new(), &One::new(), false);
        assert_eq!((rows[0].translation, rows[0].lag), (Some(Translation::Beyond(15)), 6));
    }

    #[test]
    fn a_target_offset_never_moves_back_unless_allowed_and_an_equal_one_is_left() {
        let source = committed(&[("spans", 0, 5)]);
        let ahead = committed(&[("dc1.spans", 0, 9)]);
        let (rows, commits) = plan(&source, &ahead, &One::new(), false);
        assert_eq!((rows[0].action.clone(), commits.len()), (Action::WouldRewind(9), 0));
        let (rows, commits) = plan(&source, &ahead, &One::new(), true);
        assert_eq!((rows[0].action.clone(), commits.len()), (Action::Commit, 1));
        let same = committed(&[("dc1.spans", 0, 5)]);
        let (rows, commits) = plan(&source, &same, &One::new(), false);
        assert_eq!((rows[0].action.clone(), commits.len()), (Action::Unchanged, 0));
    }
}
