//! Where a partition without a checkpoint starts reading: `start_from` applies only at a
//! replication's very first start, to the partitions there then. Anything that appears later (a
//! topic created or a partition added while strait runs, or while it was stopped) starts at its
//! beginning, so none of its records is skipped.
//!
//! A replication's very first start is a start that finds no checkpoint of its replication id
//! for any partition this process owns (a shard that starts a moment after the others is at its
//! first start too). "There then" means listed in the first successful discovery round. A
//! partition of that round whose task starts only later (its target topic could not be created
//! at once) still gets `start_from`: it was there.

use std::collections::{HashMap, HashSet};

use crate::checkpoint::CheckpointRecord;
use crate::config::StartFrom;
use crate::kafka::TopicPartition;

use super::Shard;

/// Decides each partition's [`StartFrom`] when its task starts.
#[derive(Debug)]
pub(super) struct FirstStart {
    configured: StartFrom,
    shard: Shard,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Checkpoints were found: this is a restart, every new partition starts at its beginning.
    Restart,
    /// The very first start, before the first discovery round.
    Undiscovered,
    /// The very first start: the owned partitions `start_from` still applies to.
    Discovered(HashSet<TopicPartition>),
}

impl FirstStart {
    /// From the checkpoints loaded at process start: a first start when none is of a partition
    /// `shard` owns.
    pub(super) fn new(
        configured: StartFrom,
        checkpoints: &HashMap<TopicPartition, CheckpointRecord>,
        shard: Shard,
    ) -> Self {
        let restart = checkpoints.keys().any(|tp| shard.owns(&tp.topic, tp.partition));
        let state = if restart { State::Restart } else { State::Undiscovered };
        if configured != StartFrom::Earliest {
            let start_from = String::from(configured);
            if restart {
                tracing::info!(%start_from, "checkpoints found: partitions without one start at their beginning \
                    (start_from applies only at a replication's first start)");
            } else {
                tracing::info!(%start_from, "first start of this replication: start_from applies to the partitions \
                    there now; any that appears later starts at its beginning");
            }
        }
        Self {
            configured,
            shard,
            state,
        }
    }

    /// A discovery round listed `partitions`; only the first round counts.
    pub(super) fn discovered(&mut self, partitions: impl IntoIterator<Item = TopicPartition>) {
        if matches!(self.state, State::Undiscovered) {
            let shard = self.shard;
            let owned = partitions.into_iter().filter(|tp| shard.owns(&tp.topic, tp.partition));
            self.state = State::Discovered(owned.collect());
        }
    }

    /// Where `tp`'s first task starts without a checkpoint. Asked once per partition: the
    /// answer for a partition of the first round is given once.
    pub(super) fn start_from(&mut self, tp: &TopicPartition) -> StartFrom {
        let State::Discovered(first) = &mut self.state else {
            return StartFrom::Earliest;
        };
        if first.remove(tp) {
            self.configured
        } else {
            StartFrom::Earliest
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition::new(topic, partition)
    }

    fn checkpoints(tps: &[TopicPartition]) -> HashMap<TopicPartition, CheckpointRecord> {
        tps.iter()
            .map(|tp| {
                let checkpoint = Checkpoint {
                    replication_id: "test".into(),
                    source_topic: tp.topic.clone(),
                    source_partition: tp.partition,
                    target_topic: tp.topic.clone(),
                    next_source_offset: 5,
                    next_target_offset: 5,
                    writer_epoch: 0,
                    wall_clock_ms: 0,
                };
                (tp.clone(), CheckpointRecord::from(checkpoint))
            })
            .collect()
    }

    const LATEST: StartFrom = StartFrom::Latest;

    #[test]
    fn at_the_first_start_only_the_partitions_of_the_first_round_get_start_from() {
        let mut first = FirstStart::new(LATEST, &HashMap::new(), Shard::ALL);
        first.discovered([tp("old", 0), tp("old", 1)]);
        // A later round lists a new topic and a new partition: it does not count.
        first.discovered([tp("old", 0), tp("old", 1), tp("old", 2), tp("new", 0)]);
        assert_eq!(first.start_from(&tp("old", 0)), LATEST);
        assert_eq!(first.start_from(&tp("old", 1)), LATEST);
        assert_eq!(
            first.start_from(&tp("old", 2)),
            StartFrom::Earliest,
            "a partition added later"
        );
        assert_eq!(
            first.start_from(&tp("new", 0)),
            StartFrom::Earliest,
            "a topic created later"
        );
        // A partition's task started again in this process (never in practice) starts at its
        // beginning: its first task already skipped what was there.
        assert_eq!(first.start_from(&tp("old", 0)), StartFrom::Earliest);
    }

    #[test]
    fn a_restart_starts_every_partition_without_checkpoint_at_its_beginning() {
        let loaded = checkpoints(&[tp("old", 0)]);
        for configured in [LATEST, StartFrom::Timestamp(1_767_225_600_000)] {
            let mut first = FirstStart::new(configured, &loaded, Shard::ALL);
            // A topic created while strait was stopped, listed in the first round.
            first.discovered([tp("old", 0), tp("old", 1), tp("new", 0)]);
            assert_eq!(first.start_from(&tp("old", 1)), StartFrom::Earliest);
            assert_eq!(first.start_from(&tp("new", 0)), StartFrom::Earliest);
        }
    }

    #[test]
    fn a_shard_is_at_its_first_start_while_no_checkpoint_is_of_its_own_partitions() {
        let shards = [Shard { index: 0, count: 2 }, Shard { index: 1, count: 2 }];
        let owned_by = |shard: Shard| {
            (0..64)
                .map(|p| tp("spans", p))
                .find(|tp| shard.owns(&tp.topic, tp.partition))
        };
        let (Some(zero), Some(one)) = (owned_by(shards[0]), owned_by(shards[1])) else {
            panic!("each shard owns one of 64 partitions");
        };
        // Shard 0 started first and checkpointed its partition.
        let loaded = checkpoints(std::slice::from_ref(&zero));
        let mut first = FirstStart::new(LATEST, &loaded, shards[1]);
        first.discovered([zero.clone(), one.clone()]);
        assert_eq!(first.start_from(&one), LATEST, "shard 1's very first start");
        let mut again = FirstStart::new(LATEST, &loaded, shards[0]);
        again.discovered([zero, one.clone()]);
        assert_eq!(again.start_from(&one), StartFrom::Earliest, "shard 0 restarted");
    }
}
