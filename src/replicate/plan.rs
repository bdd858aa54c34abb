//! `strait plan`: what a run would do, computed without writing anything. It reads metadata from
//! both clusters and the source topic configs, then applies the same decisions as a run
//! ([`super::topics::plan_target`], [`super::topics::new_target_topic`], the shard split).
//!
//! It must never create, grow or write: only Metadata (with auto-creation off), ApiVersions,
//! DescribeConfigs and validate-only CreateTopics (asking the target's default replication
//! factor, which creates nothing) requests are sent.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use kafka_protocol::messages::{CreatePartitionsRequest, CreateTopicsRequest};

use crate::config::{target_config_overrides, Codec, Config, TopicFilter};
use crate::kafka::{Cluster, TopicMetadata};

use super::assign::Shard;
use super::error::{Error, Result};
use super::topics::{self, TargetAction};

/// What would happen to one target topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetChange {
    /// Created with this many partitions and the listed configs.
    Create { partitions: i32 },
    /// Grown from `from` to `to` partitions.
    Grow { from: i32, to: i32 },
    /// Already fits: nothing changes.
    Unchanged { partitions: i32 },
    /// Missing, and the target does not serve CreateTopics: an operator must create it.
    CannotCreate { partitions: i32 },
    /// Too small, and the target does not serve CreatePartitions: the topic would not replicate.
    CannotGrow { from: i32, to: i32 },
}

/// The plan for one matching source topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicPlan {
    /// Source topic name.
    pub source_topic: String,
    /// Target topic name (`topics.prefix` + source name).
    pub target_topic: String,
    /// Source partition count.
    pub source_partitions: i32,
    /// Partitions this shard would replicate.
    pub owned_partitions: Vec<i32>,
    /// What happens to the target topic.
    pub change: TargetChange,
    /// Configs a created target topic would get (empty unless it is created), overrides included.
    pub configs: BTreeMap<String, String>,
    /// Of those, the ones `topics.target_configs` sets.
    pub overrides: BTreeMap<String, String>,
}

/// The whole dry run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Source topics that match `topics.include`/`exclude`, in name order.
    pub topics: Vec<TopicPlan>,
    /// Checkpoint topic name on the target.
    pub checkpoint_topic: String,
    /// Whether the checkpoint topic already exists (otherwise a run creates it).
    pub checkpoint_topic_exists: bool,
    /// This process's shard.
    pub shard: Shard,
    /// Codec of target batches (`compression.codec`).
    pub codec: Codec,
    /// zstd level of target batches (where the level control starts), with zstd.
    pub zstd_level: i32,
    /// This shard's budget in bytes per second (0 = unlimited) and the configured total.
    pub budget: (u64, u64),
}

/// Which source topics match and what their targets need, from metadata alone. `configs` holds
/// the source configs of topics whose target would be created.
pub(crate) fn plan_topics(
    source: &BTreeMap<String, TopicMetadata>,
    target: &BTreeMap<String, TopicMetadata>,
    filter: &TopicFilter,
    shard: Shard,
    own_topics: &[&str],
    can_create: bool,
    can_grow: bool,
) -> Vec<TopicPlan> {
    source
        .iter()
        .filter(|(name, t)| {
            t.error.is_none() && topics::is_replicable(name, t.is_internal, own_topics) && filter.matches(name)
        })
        .map(|(name, t)| {
            let source_partitions = t.partition_count();
            let target_topic = filter.target_name(name);
            let existing = target
                .get(&target_topic)
                .filter(|t| t.error.is_none())
                .map(TopicMetadata::partition_count);
            let change = match topics::plan_target(source_partitions, existing) {
                TargetAction::Create { partitions } if can_create => TargetChange::Create { partitions },
                TargetAction::Create { partitions } => TargetChange::CannotCreate { partitions },
                TargetAction::Grow { from, to } if can_grow => TargetChange::Grow { from, to },
                TargetAction::Grow { from, to } => TargetChange::CannotGrow { from, to },
                TargetAction::Ready => TargetChange::Unchanged {
                    partitions: existing.unwrap_or(source_partitions),
                },
            };
            TopicPlan {
                source_topic: name.clone(),
                target_topic,
                source_partitions,
                owned_partitions: (0..source_partitions).filter(|&p| shard.owns(name, p)).collect(),
                change,
                configs: BTreeMap::new(),
                overrides: BTreeMap::new(),
            }
        })
        .collect()
}

/// Both clusters with the same TLS and SASL as `run`, so a one-shot command sees what
/// replication would.
pub(super) fn clusters(config: &Config) -> Result<(Arc<Cluster>, Arc<Cluster>)> {
    let cluster = |name: &'static str, c: &crate::config::ClusterConfig| {
        Cluster::from_config(name, c)
            .map(Arc::new)
            .map_err(|source| Error::Cluster {
                cluster: name,
                action: "set up TLS and SASL".into(),
                source: Box::new(source),
            })
    };
    Ok((cluster("source", &config.source)?, cluster("target", &config.target)?))
}

/// Computes the plan against the live clusters; writes nothing.
pub async fn plan(config: &Config, filter: &TopicFilter) -> Result<Plan> {
    let (source, target) = clusters(config)?;
    let err = |cluster: &'static str, action: &str| {
        let action = action.to_owned();
        move |source: crate::kafka::Error| Error::Cluster {
            cluster,
            action,
            source: Box::new(source),
        }
    };
    let source_meta = source.metadata(None).await.map_err(err("source", "list topics"))?;
    let shard = Shard {
        index: config.shard.index,
        count: config.shard.count,
    };
    let own = [config.checkpoint.topic.as_str()];
    let names: Vec<String> = source_meta
        .topics
        .keys()
        .filter(|n| filter.matches(n))
        .map(|n| filter.target_name(n))
        .chain([config.checkpoint.topic.clone()])
        .collect();
    let target_meta = target
        .metadata(Some(&names))
        .await
        .map_err(err("target", "read topic metadata"))?;
    let can_create = target
        .supports::<CreateTopicsRequest>()
        .await
        .map_err(err("target", "read api versions"))?;
    let can_grow = target
        .supports::<CreatePartitionsRequest>()
        .await
        .map_err(err("target", "read api versions"))?;
    let mut topics = plan_topics(
        &source_meta.topics,
        &target_meta.topics,
        filter,
        shard,
        &own,
        can_create,
        can_grow,
    );
    let timeout_ms = i32::try_from(config.target.request_timeout_ms).unwrap_or(i32::MAX);
    for t in &mut topics {
        if let TargetChange::Create { partitions } = t.change {
            let source_configs = topics::source_topic_configs(&source, &t.source_topic).await;
            let overrides = target_config_overrides(&config.topics.target_configs, &t.target_topic);
            let spec = topics::new_target_topic(
                &target,
                &t.target_topic,
                partitions,
                config.topics.replication_factor,
                &source_configs,
                &overrides,
                timeout_ms,
            )
            .await;
            t.configs = spec.configs;
            t.overrides = overrides;
        }
    }
    let checkpoint_topic_exists = target_meta
        .topics
        .get(&config.checkpoint.topic)
        .is_some_and(|t| t.error.is_none());
    Ok(Plan {
        topics,
        checkpoint_topic: config.checkpoint.topic.clone(),
        checkpoint_topic_exists,
        shard,
        codec: config.compression.codec,
        zstd_level: config.compression.zstd_level,
        budget: (config.budget.share(config.shard.count).0, config.budget.bytes_per_sec),
    })
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let budget = match self.budget {
            (0, _) => "unlimited (budget.bytes_per_sec = 0)".to_owned(),
            (mine, total) if mine == total => format!("{mine} bytes/s"),
            (mine, total) => format!("{mine} bytes/s, this shard's share of {total}"),
        };
        let codec = match self.codec {
            Codec::Zstd => format!("codec zstd, level {}", self.zstd_level),
            other => format!("codec {other}"),
        };
        writeln!(
            f,
            "shard {} of {}; {codec}; budget: {budget}",
            self.shard.index, self.shard.count
        )?;
        if self.checkpoint_topic_exists {
            writeln!(f, "checkpoint topic {}: exists", self.checkpoint_topic)?;
        } else {
            writeln!(f, "checkpoint topic {}: would be created", self.checkpoint_topic)?;
        }
        if self.topics.is_empty() {
            return writeln!(f, "no source topic matches topics.include / topics.exclude");
        }
        writeln!(f, "{} matching source topic(s):", self.topics.len())?;
        for t in &self.topics {
            let action = match &t.change {
                TargetChange::Create { partitions } => format!("create with {partitions} partitions"),
                TargetChange::Grow { from, to } => format!("grow from {from} to {to} partitions"),
                TargetChange::Unchanged { partitions } => format!("exists with {partitions} partitions, unchanged"),
                TargetChange::CannotCreate { partitions } => {
                    format!("MISSING: the target does not serve CreateTopics; create it with {partitions} partitions")
                }
                TargetChange::CannotGrow { from, to } => {
                    format!("TOO SMALL: {from} partitions, the source has {to} and the target cannot add partitions")
                }
            };
            writeln!(
                f,
                "  {} ({} partitions) -> {}: {action}; this shard replicates {} partition(s)",
                t.source_topic,
                t.source_partitions,
                t.target_topic,
                t.owned_partitions.len()
            )?;
            if !t.configs.is_empty() {
                let configs: Vec<String> = t.configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                writeln!(f, "      configs: {}", configs.join(", "))?;
            }
            if !t.overrides.is_empty() {
                let set: Vec<String> = t.overrides.iter().map(|(k, v)| format!("{k}={v}")).collect();
                writeln!(f, "      of which set by topics.target_configs: {}", set.join(", "))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TopicsConfig;

    fn meta(partitions: i32) -> TopicMetadata {
        TopicMetadata {
            error: None,
            is_internal: false,
            leaders: (0..partitions).map(|p| (p, 1)).collect(),
            id: None,
        }
    }

    fn filter(include: &str, prefix: &str) -> TopicFilter {
        let t = TopicsConfig {
            include: vec![include.to_owned()],
            prefix: prefix.to_owned(),
            ..TopicsConfig::default()
        };
        t.filter().expect("valid filter")
    }

    #[test]
    fn plan_maps_names_and_decides_per_topic() {
        let source: BTreeMap<String, TopicMetadata> = [
            ("spans-a", meta(4)),
            ("spans-b", meta(6)),
            ("spans-c", meta(2)),
            ("other", meta(1)),
            ("strait-checkpoints", meta(1)),
            ("__consumer_offsets", meta(50)),
        ]
        .into_iter()
        .map(|(n, m)| (n.to_owned(), m))
        .collect();
        let target: BTreeMap<String, TopicMetadata> = [("dc1.spans-b", meta(4)), ("dc1.spans-c", meta(2))]
            .into_iter()
            .map(|(n, m)| (n.to_owned(), m))
            .collect();
        let f = filter("spans-.*|strait-.*", "dc1.");
        let own = ["strait-checkpoints"];
        let plan = plan_topics(&source, &target, &f, Shard::ALL, &own, true, false);
        let got: Vec<(&str, &str, &TargetChange)> = plan
            .iter()
            .map(|t| (t.source_topic.as_str(), t.target_topic.as_str(), &t.change))
            .collect();
        assert_eq!(
            got,
            vec![
                ("spans-a", "dc1.spans-a", &TargetChange::Create { partitions: 4 }),
                ("spans-b", "dc1.spans-b", &TargetChange::CannotGrow { from: 4, to: 6 }),
                ("spans-c", "dc1.spans-c", &TargetChange::Unchanged { partitions: 2 }),
            ]
        );
        assert_eq!(plan[0].owned_partitions, vec![0, 1, 2, 3]);

        let without_admin = plan_topics(&source, &target, &f, Shard::ALL, &own, false, true);
        assert_eq!(without_admin[0].change, TargetChange::CannotCreate { partitions: 4 });
        assert_eq!(without_admin[1].change, TargetChange::Grow { from: 4, to: 6 });
    }

    #[test]
    fn shards_split_the_partitions_of_a_plan() {
        let source: BTreeMap<String, TopicMetadata> = [("spans".to_owned(), meta(12))].into_iter().collect();
        let f = filter("spans", "");
        let owned: usize = (0..3)
            .map(|index| {
                let plan = plan_topics(
                    &source,
                    &BTreeMap::new(),
                    &f,
                    Shard { index, count: 3 },
                    &[],
                    true,
                    true,
                );
                plan[0].owned_partitions.len()
            })
            .sum();
        assert_eq!(owned, 12);
    }

    #[test]
    fn display_lists_the_mapping_and_configs() {
        let plan = Plan {
            topics: vec![TopicPlan {
                source_topic: "spans".into(),
                target_topic: "dc1.spans".into(),
                source_partitions: 3,
                owned_partitions: vec![0, 1, 2],
                change: TargetChange::Create { partitions: 3 },
                configs: [("compression.type", "producer"), ("retention.ms", "604800000")]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                overrides: [("retention.ms".to_owned(), "604800000".to_owned())]
                    .into_iter()
                    .collect(),
            }],
            checkpoint_topic: "strait-checkpoints".into(),
            checkpoint_topic_exists: false,
            shard: Shard { index: 1, count: 3 },
            codec: Codec::Zstd,
            zstd_level: 3,
            budget: (100_000, 300_000),
        };
        let text = plan.to_string();
        assert!(
            text.starts_with("shard 1 of 3; codec zstd, level 3; budget: 100000 bytes/s, this shard's share of 300000"),
            "{text}"
        );
        assert!(
            text.contains("of which set by topics.target_configs: retention.ms=604800000"),
            "{text}"
        );
        let lz4 = Plan {
            codec: Codec::Lz4,
            ..plan.clone()
        };
        assert!(lz4.to_string().starts_with("shard 1 of 3; codec lz4; budget"), "{lz4}");
        assert!(
            text.contains("spans (3 partitions) -> dc1.spans: create with 3 partitions"),
            "{text}"
        );
        assert!(text.contains("compression.type=producer"), "{text}");
        assert!(
            text.contains("checkpoint topic strait-checkpoints: would be created"),
            "{text}"
        );
    }
}
