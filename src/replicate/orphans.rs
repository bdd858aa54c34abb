//! Orphaned partitions: partitions of this replication that no running shard replicates.
//!
//! Shards split the partitions by a hash of topic and partition modulo `shard.count`
//! ([`super::assign`]), without a coordinator. When the StatefulSet is scaled down without
//! changing `shard.count` (3 replicas become 2, the count stays 3), the partitions of the missing
//! shard are replicated by nobody, and nothing in the running shards would say so: their own
//! partitions are fine. So every shard watches the partitions it does *not* own.
//!
//! # What counts as orphaned
//!
//! A partition is orphaned when its source holds records past where its replication stands and
//! its replication has stood there for at least `shard.orphan_after_secs`:
//!
//! - with a checkpoint: the source's last stable offset is beyond the checkpoint's next source
//!   offset, and the checkpoint was written more than the threshold ago. A live owner writes a
//!   checkpoint every `checkpoint.interval_ms` while its position moves, so a source that moves
//!   while the checkpoint does not means nobody reads it. An idle partition (nothing new on the
//!   source) is not orphaned however old its checkpoint: nothing is waiting.
//! - without a checkpoint: the source partition has records, and this shard has seen the
//!   partition without a checkpoint for the threshold. A live owner writes one as soon as its
//!   task resumes, even on an empty partition, within a topic refresh of the partition appearing.
//!
//! Nothing counts as stale before this shard has watched for the threshold, so when every shard
//! starts at once after an outage, the owners have the threshold to checkpoint again.
//!
//! The age of a checkpoint is its `wall_clock_ms`, the writer's clock; clocks of a few seconds
//! apart do not matter against a threshold of minutes. The source end is read as the owner reads
//! (read_committed), so an open transaction does not look like a backlog.
//!
//! The same condition holds when the owner runs but does not replicate the partition (it halted
//! it, or cannot create its target topic): nobody replicates it either, and the owner's own
//! `strait_partition_halted` or topic errors say why.
//!
//! # Cost
//!
//! One pass every `topics.refresh_secs`, in a task of its own: source metadata, the checkpoint
//! topic's records written since the last pass (a [`Follower`]: the first pass reads the topic
//! as start-up does, later ones only the new checkpoints, not the whole active segment again),
//! and a ListOffsets only for partitions whose position is older than the threshold (idle or
//! orphaned ones), a few at a time. Memory is the newest checkpoint per partition (no offset map
//! runs), and one entry per partition not owned here that has no checkpoint yet or is reported
//! orphaned. No timer per partition.
//!
//! # What is reported
//!
//! `strait_orphaned_partitions` (the count, on every running shard), `/status`'s
//! `orphaned_partitions`, and a WARN once per partition when it becomes orphaned, naming the
//! shard that should own it; an INFO when it is replicated again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::assign::Shard;
use super::health::Health;
use super::topics;
use super::Error;
use crate::checkpoint::{self, Checkpoint, CheckpointStore, Follower};
use crate::config::TopicFilter;
use crate::kafka::{Cluster, OffsetSpec, TopicPartition};
use crate::telemetry;

/// How many ListOffsets requests a pass has in flight at once.
const CONCURRENT_LIST_OFFSETS: usize = 8;

/// Where the replication of a partition not owned here stands, as the checkpoint topic says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Standing {
    /// The next source offset to replicate: the checkpoint's, or 0 without one.
    pub(super) next_source_offset: i64,
    /// Since when it has stood there (ms since the epoch): the checkpoint's write time, or when
    /// this shard first saw the partition without a checkpoint.
    pub(super) since_ms: i64,
}

impl Standing {
    /// From the partition's newest checkpoint, or from when it was first seen without one;
    /// never from before `watching_since_ms`, when this shard started watching: after a restart
    /// of every shard, an owner gets the threshold to write its first checkpoint again.
    pub(super) fn of(checkpoint: Option<&Checkpoint>, first_seen_ms: i64, watching_since_ms: i64) -> Self {
        let (next_source_offset, since_ms) = match checkpoint {
            Some(c) => (c.next_source_offset, c.wall_clock_ms),
            None => (0, first_seen_ms),
        };
        Standing {
            next_source_offset,
            since_ms: since_ms.max(watching_since_ms),
        }
    }

    /// Whether it has stood still for `after_ms`: only then is the source end worth asking.
    pub(super) fn stale(&self, now_ms: i64, after_ms: i64) -> bool {
        now_ms.saturating_sub(self.since_ms) >= after_ms
    }

    /// Records the source holds past this standing, when it is orphaned: stale, and the source
    /// has moved past it. `None` when it is not orphaned.
    pub(super) fn orphaned(&self, source_end: i64, now_ms: i64, after_ms: i64) -> Option<i64> {
        let behind = source_end - self.next_source_offset;
        (self.stale(now_ms, after_ms) && behind > 0).then_some(behind)
    }
}

/// One orphaned partition, as `/status` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Orphan {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// The `shard.index` that owns it.
    pub owner_shard: u32,
    /// Source records past its checkpoint (all of them without one).
    pub behind_records: i64,
    /// Whether a checkpoint of it exists (its owner ran once).
    pub checkpointed: bool,
    /// Seconds since its position last moved (or since it was first seen without a checkpoint).
    pub stalled_secs: i64,
}

/// The watch over the partitions this shard does not own.
pub(super) struct Watch {
    pub(super) source: Arc<Cluster>,
    pub(super) store: Arc<CheckpointStore>,
    pub(super) filter: TopicFilter,
    /// The heartbeat topic, replicated whatever the filter says, when heartbeats are on.
    pub(super) heartbeat_topic: Option<String>,
    pub(super) shard: Shard,
    /// `shard.orphan_after_secs`.
    pub(super) after: Duration,
    pub(super) health: Arc<Health>,
    /// When this watch started (ms since the epoch).
    pub(super) started_ms: i64,
    /// The checkpoint topic as read so far.
    pub(super) checkpoints: Follower,
    /// When each partition not owned here was first seen without a checkpoint.
    pub(super) unclaimed_since: HashMap<TopicPartition, i64>,
    /// The partitions reported orphaned by the last pass.
    pub(super) reported: HashMap<TopicPartition, Orphan>,
}

impl Watch {
    /// Runs a pass every `every` until `cancel` fires.
    pub(super) async fn run(mut self, every: Duration, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_error = String::new();
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let pass = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                pass = self.pass() => pass,
            };
            match pass {
                Ok(orphans) => {
                    last_error.clear();
                    metrics::gauge!(telemetry::ORPHANED_PARTITIONS).set(orphans.len() as f64);
                    self.health.set_orphans(orphans);
                }
                Err(e) => {
                    let text = crate::error_chain(&e);
                    if text != last_error {
                        tracing::warn!(error = %text, "orphaned partitions: pass failed; retrying at the next one");
                        last_error = text;
                    }
                }
            }
        }
    }

    /// One look at every replicated partition this shard does not own.
    async fn pass(&mut self) -> Result<Vec<Orphan>, Error> {
        let meta = self.source.metadata(None).await.map_err(|source| Error::Cluster {
            cluster: "source",
            action: "list topics".into(),
            source: Box::new(source),
        })?;
        self.store
            .follow(&mut self.checkpoints)
            .await
            .map_err(|source| Error::CheckpointStore { source })?;
        let checkpoints = self.checkpoints.checkpoints();
        let own = [self.store.topic()];
        let now_ms = checkpoint::now_ms();
        let after_ms = i64::try_from(self.after.as_millis()).unwrap_or(i64::MAX);
        let mut unclaimed = HashMap::new();
        let mut stale: Vec<(TopicPartition, Standing, bool)> = Vec::new();
        for (name, topic) in &meta.topics {
            let replicated = topic.error.is_none()
                && topics::is_replicable(name, topic.is_internal, &own)
                && (self.filter.matches(name) || self.heartbeat_topic.as_deref() == Some(name.as_str()));
            if !replicated {
                continue;
            }
            for p in 0..topic.partition_count() {
                if self.shard.owns(name, p) {
                    continue;
                }
                let tp = TopicPartition::new(name.clone(), p);
                let stored = checkpoints.get(&tp).map(|r| &r.checkpoint);
                let first_seen = match stored {
                    Some(_) => now_ms,
                    None => {
                        let since = self.unclaimed_since.get(&tp).copied().unwrap_or(now_ms);
                        unclaimed.insert(tp.clone(), since);
                        since
                    }
                };
                let standing = Standing::of(stored, first_seen, self.started_ms);
                if standing.stale(now_ms, after_ms) {
                    stale.push((tp, standing, stored.is_some()));
                }
            }
        }
        self.unclaimed_since = unclaimed;
        let source = &self.source;
        let ends: Vec<_> = stream::iter(stale)
            .map(|(tp, standing, checkpointed)| async move {
                let end = source.list_offset(&tp, OffsetSpec::Latest).await;
                (tp, standing, checkpointed, end)
            })
            .buffer_unordered(CONCURRENT_LIST_OFFSETS)
            .collect()
            .await;
        let mut now_reported = HashMap::new();
        for (tp, standing, checkpointed, end) in ends {
            let end = match end {
                Ok(end) => end,
                Err(e) => {
                    // Not known this pass: keep what the last pass said.
                    tracing::debug!(topic = %tp.topic, partition = tp.partition, error = %crate::error_chain(&e),
                        "orphaned partitions: source end unknown");
                    if let Some(last) = self.reported.remove(&tp) {
                        now_reported.insert(tp, last);
                    }
                    continue;
                }
            };
            let Some(behind) = standing.orphaned(end, now_ms, after_ms) else {
                continue;
            };
            let orphan = Orphan {
                owner_shard: self.owner(&tp),
                topic: tp.topic.clone(),
                partition: tp.partition,
                behind_records: behind,
                checkpointed,
                stalled_secs: now_ms.saturating_sub(standing.since_ms) / 1000,
            };
            if !self.reported.contains_key(&tp) {
                tracing::warn!(topic = %tp.topic, partition = tp.partition, owner_shard = orphan.owner_shard,
                    shard_count = self.shard.count, behind_records = behind, stalled_secs = orphan.stalled_secs,
                    checkpointed, "partition orphaned: no running shard replicates it; check that shard {} runs \
                    (StatefulSet replicas must equal shard.count) and has not halted it", orphan.owner_shard);
            }
            now_reported.insert(tp, orphan);
        }
        for tp in self.reported.keys().filter(|tp| !now_reported.contains_key(*tp)) {
            tracing::info!(topic = %tp.topic, partition = tp.partition, "partition no longer orphaned");
        }
        self.reported = now_reported;
        let mut orphans: Vec<Orphan> = self.reported.values().cloned().collect();
        orphans.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(orphans)
    }

    /// The shard that owns `tp`.
    fn owner(&self, tp: &TopicPartition) -> u32 {
        (0..self.shard.count)
            .find(|&index| {
                Shard {
                    index,
                    count: self.shard.count,
                }
                .owns(&tp.topic, tp.partition)
            })
            .unwrap_or(self.shard.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn checkpoint(next_source_offset: i64, wall_clock_ms: i64) -> Checkpoint {
        Checkpoint {
            replication_id: "r".into(),
            source_topic: "t".into(),
            source_partition: 0,
            target_topic: "t".into(),
            next_source_offset,
            next_target_offset: next_source_offset,
            writer_epoch: 0,
            wall_clock_ms,
        }
    }

    #[test]
    fn a_stale_checkpoint_behind_the_source_is_orphaned() {
        let now = 100 * MIN;
        let c = checkpoint(500, now - 6 * MIN);
        let s = Standing::of(Some(&c), now, 0);
        assert_eq!(s.orphaned(800, now, 5 * MIN), Some(300));
    }

    #[test]
    fn a_recent_checkpoint_is_not_orphaned_however_far_behind() {
        let now = 100 * MIN;
        let c = checkpoint(500, now - 4 * MIN);
        let s = Standing::of(Some(&c), now, 0);
        assert!(!s.stale(now, 5 * MIN));
        assert_eq!(s.orphaned(1_000_000, now, 5 * MIN), None);
    }

    #[test]
    fn an_idle_partition_with_an_old_checkpoint_is_not_orphaned() {
        let now = 100 * MIN;
        let c = checkpoint(500, now - 60 * MIN);
        let s = Standing::of(Some(&c), now, 0);
        // The premise: it is stale, so only the source end decides.
        assert!(s.stale(now, 5 * MIN));
        assert_eq!(s.orphaned(500, now, 5 * MIN), None);
    }

    #[test]
    fn a_partition_never_checkpointed_is_orphaned_once_seen_long_enough_with_records() {
        let now = 100 * MIN;
        let seen_long_ago = Standing::of(None, now - 5 * MIN, 0);
        assert_eq!(seen_long_ago.orphaned(42, now, 5 * MIN), Some(42));
        // Empty: nothing is waiting for anyone.
        assert_eq!(seen_long_ago.orphaned(0, now, 5 * MIN), None);
        // Just seen: its owner may not have reached it yet.
        let just_seen = Standing::of(None, now - MIN, 0);
        assert_eq!(just_seen.orphaned(42, now, 5 * MIN), None);
    }

    #[test]
    fn nothing_is_stale_before_the_watch_ran_for_the_threshold() {
        // Every shard restarted after an outage: the checkpoints are old and the source moved
        // meanwhile, but the owners are starting too.
        let now = 100 * MIN;
        let c = checkpoint(500, now - 60 * MIN);
        assert_eq!(Standing::of(Some(&c), now, now - MIN).orphaned(900, now, 5 * MIN), None);
        assert_eq!(
            Standing::of(Some(&c), now, now - 5 * MIN).orphaned(900, now, 5 * MIN),
            Some(400)
        );
    }

    #[test]
    fn a_writer_clock_ahead_of_ours_is_not_stale() {
        let now = 100 * MIN;
        let c = checkpoint(500, now + 10_000);
        assert_eq!(Standing::of(Some(&c), now, 0).orphaned(900, now, 5 * MIN), None);
    }
}
