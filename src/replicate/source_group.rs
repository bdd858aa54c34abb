//! strait's position, mirrored as a consumer group on the source: `strait.<replication id>`.
//!
//! The checkpoints are the truth, and they live on the target. Two things need the position
//! where the target cannot be read:
//!
//! - A process started while the WAN is down (a pod rescheduled during an outage) cannot read
//!   its checkpoints, yet the operator needs to see the lag grow and the source retention come
//!   closer. The source is on the same side as strait: its copy of the position gives both.
//! - The source's own tools (`kafka-consumer-groups.sh`, Strimzi's Kafka Exporter, Burrow) show
//!   a consumer group's lag; a replicator that commits none is invisible to them.
//!
//! So, after checkpoints are loaded, every [`COMMIT_EVERY`] the positions that moved are
//! committed to the group outside any generation (the group has no members). Before that, while
//! the target cannot be read, [`seed`] puts the group's positions, the source's ends and the age
//! of the oldest record not replicated into the progress table, which `/status`, the lag gauges
//! and the retention alert read. The copy is advisory: it is never a place to resume from (it
//! may be older than the checkpoint, or newer for a partition whose checkpoint write failed),
//! and a commit that fails (no ACL on the group) is logged once and changes nothing else.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::TopicFilter;
use crate::kafka::{Cluster, Committed, OffsetSpec, TopicPartition};
use crate::report::{PartitionState, PartitionStatus, Progress};
use crate::telemetry;

use super::assign::Shard;

/// How often moved positions are committed.
pub(crate) const COMMIT_EVERY: Duration = Duration::from_secs(5);
/// How often, while the checkpoints cannot be read, the figures are read again from the source.
const SEED_EVERY: Duration = Duration::from_secs(15);
/// The metadata committed with each offset: who wrote it.
const METADATA: &str = "strait: replicated up to here (advisory; the checkpoints on the target are the truth)";

/// The consumer group that mirrors the positions of replication `replication_id`.
pub(crate) fn group_id(replication_id: &str) -> String {
    format!("{}{replication_id}", crate::config::STRAIT_GROUP_PREFIX)
}

/// The positions to commit: partitions whose source position moved since the last commit.
/// Partitions still starting have no position of their own yet.
pub(crate) fn moved(
    snapshot: &BTreeMap<TopicPartition, PartitionStatus>,
    committed: &HashMap<TopicPartition, i64>,
) -> BTreeMap<TopicPartition, Committed> {
    snapshot
        .iter()
        .filter(|(_, s)| s.state != PartitionState::Starting && s.next_source_offset > 0)
        .filter(|(tp, s)| committed.get(*tp) != Some(&s.next_source_offset))
        .map(|(tp, s)| {
            let c = Committed {
                offset: s.next_source_offset,
                metadata: Some(METADATA.to_owned()),
            };
            (tp.clone(), c)
        })
        .collect()
}

/// Commits moved positions every [`COMMIT_EVERY`] until `stop`.
pub(crate) async fn commit_loop(source: Arc<Cluster>, group: String, progress: Arc<Progress>, stop: CancellationToken) {
    let mut committed: HashMap<TopicPartition, i64> = HashMap::new();
    let mut failing: Option<String> = None;
    let mut tick = tokio::time::interval(COMMIT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let due = moved(&progress.snapshot(), &committed);
        if due.is_empty() {
            continue;
        }
        let outcome = tokio::select! {
            _ = stop.cancelled() => return,
            r = source.commit_offsets(&group, &due) => r,
        };
        let mut errors = Vec::new();
        match outcome {
            Ok(results) => {
                for (tp, r) in results {
                    match r {
                        Ok(()) => {
                            if let Some(c) = due.get(&tp) {
                                committed.insert(tp, c.offset);
                            }
                        }
                        Err(e) => errors.push(crate::error_chain(&e)),
                    }
                }
            }
            Err(e) => errors.push(crate::error_chain(&e)),
        }
        match errors.first() {
            None => {
                if failing.take().is_some() {
                    tracing::info!(group = %group, "source group commits work again");
                }
            }
            Some(first) => {
                metrics::counter!(telemetry::SOURCE_GROUP_COMMIT_ERRORS).increment(errors.len() as u64);
                if failing.as_deref() != Some(first.as_str()) {
                    tracing::warn!(group = %group, error = %first,
                        "cannot commit the replicated positions to the source group (advisory only: replication \
                         goes on); grant READ on the group to strait's source principal, or set \
                         checkpoint.source_group = false (STRAIT_CHECKPOINT__SOURCE_GROUP)");
                    failing = Some(first.clone());
                }
            }
        }
    }
}

/// While the checkpoints cannot be read: every [`SEED_EVERY`], the group's positions of the
/// partitions this shard owns, with the source's ends and the age of the oldest record not yet
/// replicated, into the progress table. Returns when `stop` fires.
pub(crate) async fn seed_loop(
    source: Arc<Cluster>,
    group: String,
    filter: TopicFilter,
    shard: Shard,
    progress: Arc<Progress>,
    health: Arc<super::Health>,
    stop: CancellationToken,
) {
    let mut logged = false;
    loop {
        let round = seed(&source, &group, &filter, shard, &progress);
        let outcome = tokio::select! {
            _ = stop.cancelled() => return,
            r = round => r,
        };
        match outcome {
            Ok(0) => {}
            Ok(n) => {
                health.set_positions_from(&group);
                if !std::mem::replace(&mut logged, true) {
                    tracing::info!(group = %group, partitions = n,
                        "target unreachable: lag and retention headroom from the source group's copy of the positions");
                }
            }
            Err(e) => tracing::debug!(group = %group, error = %crate::error_chain(&e), "source group not readable"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(SEED_EVERY) => {}
        }
    }
}

/// One round of [`seed_loop`]: how many partitions it placed.
async fn seed(
    source: &Cluster,
    group: &str,
    filter: &TopicFilter,
    shard: Shard,
    progress: &Progress,
) -> crate::kafka::Result<usize> {
    let positions = source.committed_offsets(group).await?;
    let mut seeded = 0;
    let mut topics = Vec::new();
    for (tp, c) in positions
        .iter()
        .filter(|(tp, _)| filter.matches(&tp.topic) && shard.owns(&tp.topic, tp.partition))
    {
        // A partition the source no longer answers for (a topic deleted since) is left out.
        let Ok(end) = source.list_offset(tp, OffsetSpec::Latest).await else {
            continue;
        };
        // The oldest record not replicated: the first at the position, when there is one.
        let oldest = match end > c.offset {
            true => first_timestamp(source, tp, c.offset).await,
            false => None,
        };
        let lag = progress.update(tp, |s| {
            s.next_source_offset = c.offset;
            s.source_high_watermark = end;
            s.oldest_unacked_timestamp_ms = oldest.or(s.oldest_unacked_timestamp_ms);
            s.lag_records()
        });
        metrics::gauge!(telemetry::LAG_RECORDS, &telemetry::labels(&tp.topic, tp.partition)).set(lag as f64);
        if !topics.contains(&tp.topic) {
            topics.push(tp.topic.clone());
        }
        seeded += 1;
    }
    if let Ok(retention) = super::topics::read_retention(source, &topics).await {
        for (topic, r) in retention {
            progress.set_retention(&topic, r);
        }
    }
    Ok(seeded)
}

/// The timestamp of the first batch at `offset` of `tp`, if it can be read at once.
async fn first_timestamp(source: &Cluster, tp: &TopicPartition, offset: i64) -> Option<i64> {
    let fetched = source.fetch(tp, offset, 64 * 1024, 0).await.ok()?;
    crate::batch::batches(fetched.records)
        .filter_map(Result::ok)
        .find(|b| !b.header.is_control() && b.header.base_offset + i64::from(b.header.last_offset_delta) >= offset)
        .map(|b| b.header.base_timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: PartitionState, next: i64) -> PartitionStatus {
        PartitionStatus {
            state,
            next_source_offset: next,
            ..PartitionStatus::default()
        }
    }

    #[test]
    fn only_positions_that_moved_since_the_last_commit_are_committed() {
        let tp = |p| TopicPartition::new("spans", p);
        let snapshot = BTreeMap::from([
            (tp(0), status(PartitionState::Running, 10)),
            (tp(1), status(PartitionState::Running, 20)),
            (tp(2), status(PartitionState::Starting, 30)),
            (tp(3), status(PartitionState::Halted("why".into()), 40)),
            (tp(4), status(PartitionState::Running, 0)),
        ]);
        let committed = HashMap::from([(tp(1), 20), (tp(3), 35)]);
        let due = moved(&snapshot, &committed);
        let offsets: Vec<(i32, i64)> = due.iter().map(|(tp, c)| (tp.partition, c.offset)).collect();
        // 1 did not move, 2 has no position yet, 4 has nothing replicated; a halted one keeps
        // its last position.
        assert_eq!(offsets, [(0, 10), (3, 40)]);
        assert!(due
            .values()
            .all(|c| c.metadata.as_deref().is_some_and(|m| m.contains("advisory"))));
        assert_eq!(group_id("cluster-abc"), "strait.cluster-abc");
    }
}
