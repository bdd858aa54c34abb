//! Which source topics to replicate, what the target topics look like, and making them so.
//! The decisions are pure functions; [`ensure_target`] carries them out against the target.

use std::collections::BTreeMap;

use crate::kafka::{Cluster, DescribedConfigs, ResponseError, TopicConfig, TopicMetadata, TopicSpec};
use kafka_protocol::messages::{CreatePartitionsRequest, CreateTopicsRequest, DescribeConfigsRequest};

use super::error::{Error, Result};
use crate::config::{target_config_overrides, TopicsConfig};
use crate::report::Retention;

/// Kafka's default max.message.bytes, assumed when the target does not report the topic's own.
pub(crate) const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;

/// Source topic configs that shape the data and so are copied to a new target topic.
const REPLICATED_CONFIGS: &[&str] = &[
    "cleanup.policy",
    "delete.retention.ms",
    "max.compaction.lag.ms",
    "max.message.bytes",
    "message.timestamp.type",
    "message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms",
    "message.timestamp.difference.max.ms",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.ms",
];

/// Copied from a source topic that sets it itself, when the target topic's replicas can meet it.
const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";

/// Copied configs that not every Kafka version knows: `message.timestamp.difference.max.ms`
/// (removed in Kafka 4.0), `message.timestamp.before.max.ms` and `.after.max.ms` (added in 3.6).
/// A target that refuses one as unknown gets the topic without it.
const VERSION_DEPENDENT_CONFIGS: &[&str] = &[
    "message.timestamp.difference.max.ms",
    "message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms",
];

/// The configs of `configs` to create the topic again without, after the target refused it with
/// `error`: none unless the refusal is INVALID_CONFIG; then the version-dependent timestamp
/// configs it names, or all of them there when it names none of `configs` (a broker that gives
/// no reason). Empty when the refusal names another config or nothing is left to leave out.
/// A config in `overrides` (`topics.target_configs`) is never left out: the operator asked for it.
pub(crate) fn refused_configs(
    configs: &BTreeMap<String, String>,
    overrides: &BTreeMap<String, String>,
    error: &crate::kafka::Error,
) -> Vec<String> {
    let crate::kafka::Error::Request {
        code: ResponseError::InvalidConfig,
        message,
        ..
    } = error
    else {
        return Vec::new();
    };
    let message = message.as_deref().unwrap_or_default();
    let named = |k: &&String| message.contains(k.as_str());
    let any_named = configs.keys().any(|k| named(&k));
    configs
        .keys()
        .filter(|k| VERSION_DEPENDENT_CONFIGS.contains(&k.as_str()) && !overrides.contains_key(*k))
        .filter(|k| !any_named || named(k))
        .cloned()
        .collect()
}

/// Whether a source topic may be replicated at all: never Kafka's internal topics (`__*`, or
/// marked internal) and never strait's own.
pub(crate) fn is_replicable(topic: &str, is_internal: bool, own_topics: &[&str]) -> bool {
    !is_internal && !topic.starts_with("__") && !own_topics.contains(&topic)
}

/// The configs for a new target topic: the data-shaping ones of the source, and
/// `compression.type=producer` so the target stores strait's zstd batches as sent. A
/// LogAppendTime source topic gets a CreateTime target topic: the records carry the source's
/// append times, which a LogAppendTime target would replace with its own.
pub(crate) fn target_configs(source: &TopicConfig) -> BTreeMap<String, String> {
    let mut configs: BTreeMap<String, String> = source
        .iter()
        .filter(|(k, _)| REPLICATED_CONFIGS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(kind) = configs.get_mut("message.timestamp.type") {
        if kind.as_str() == "LogAppendTime" {
            *kind = "CreateTime".into();
        }
    }
    configs.insert("compression.type".into(), "producer".into());
    configs
}

/// What a new target topic gets for `min.insync.replicas`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MinInsync {
    /// The source topic does not set it itself: the target broker's default applies.
    Default,
    /// The source topic's own value, which the target topic's replicas can meet.
    Copy(i32),
    /// The source topic's own value is above the target topic's replication factor (`None`: not
    /// known), so producing with acks=all would fail: the target broker's default applies.
    AboveReplicas {
        min_insync: i32,
        replication_factor: Option<i16>,
    },
}

/// Decides [`MinInsync`] from the source topic's configs and the target topic's replication
/// factor (`None` when not known; a value of 1 fits any topic). A value the source topic only
/// inherits from its broker says nothing about the topic and is not copied.
pub(crate) fn min_insync(source: &DescribedConfigs, replication_factor: Option<i16>) -> MinInsync {
    let own = Some(MIN_INSYNC_REPLICAS)
        .filter(|k| source.set_on_topic.contains(*k))
        .and_then(|k| source.values.get(k))
        .and_then(|v| v.parse::<i32>().ok());
    let Some(min_insync) = own else {
        return MinInsync::Default;
    };
    match replication_factor {
        _ if min_insync <= 1 => MinInsync::Copy(min_insync),
        Some(rf) if min_insync <= i32::from(rf) => MinInsync::Copy(min_insync),
        replication_factor => MinInsync::AboveReplicas {
            min_insync,
            replication_factor,
        },
    }
}

/// The topic to create on the target for a source topic with `source` configs: `replication_factor`
/// replicas (-1: the broker's default), the data configs ([`target_configs`]) and the source's own
/// `min.insync.replicas` per [`min_insync`], with a warning when it is left out; then `overrides`
/// (`topics.target_configs`) set over all of them. With the broker's
/// default replication factor, the target is asked which one it would give (a validate-only
/// CreateTopics, which creates nothing) only when that decides.
pub(super) async fn new_target_topic(
    target: &Cluster,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    source: &DescribedConfigs,
    overrides: &BTreeMap<String, String>,
    timeout_ms: i32,
) -> TopicSpec {
    let mut spec = TopicSpec {
        name: name.to_owned(),
        partitions,
        replication_factor,
        configs: target_configs(&source.values),
    };
    let mut decision = min_insync(source, (replication_factor > 0).then_some(replication_factor));
    if let MinInsync::AboveReplicas {
        replication_factor: None,
        ..
    } = decision
    {
        let bare = TopicSpec {
            configs: BTreeMap::new(),
            ..spec.clone()
        };
        let given = target
            .replication_factor_for(&bare, timeout_ms)
            .await
            .unwrap_or_else(|e| {
                tracing::debug!(topic = name, error = %super::error_chain(&e), "cannot ask the target which replication factor it would give");
                None
            });
        decision = min_insync(source, given);
    }
    match decision {
        MinInsync::Default => {}
        MinInsync::Copy(n) => {
            spec.configs.insert(MIN_INSYNC_REPLICAS.to_owned(), n.to_string());
        }
        MinInsync::AboveReplicas {
            min_insync,
            replication_factor,
        } => tracing::warn!(
            topic = name,
            min_insync,
            replication_factor = %replication_factor.map_or_else(|| "unknown".to_owned(), |rf| rf.to_string()),
            "source topic's min.insync.replicas is above the target topic's replication factor: \
             the target topic gets the target's default (set topics.replication_factor)"
        ),
    }
    spec.configs
        .extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
    spec
}

/// What the target topic needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TargetAction {
    /// It does not exist: create it with this many partitions.
    Create { partitions: i32 },
    /// It has fewer partitions than the source (the source grew): add partitions.
    Grow { from: i32, to: i32 },
    /// It has at least the source's partitions.
    Ready,
}

/// Decides what the target topic needs, from both partition counts.
pub(crate) fn plan_target(source_partitions: i32, target_partitions: Option<i32>) -> TargetAction {
    match target_partitions {
        None | Some(0) => TargetAction::Create {
            partitions: source_partitions,
        },
        Some(t) if t < source_partitions => TargetAction::Grow {
            from: t,
            to: source_partitions,
        },
        Some(_) => TargetAction::Ready,
    }
}

/// What is known of a ready target topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TargetTopic {
    /// Partitions it has.
    pub(crate) partitions: i32,
    /// The topic's max.message.bytes.
    pub(crate) max_message_bytes: usize,
    /// Its topic id, when the target gives one.
    pub(crate) id: Option<[u8; 16]>,
}

/// Makes the target topic fit the source topic: creates it ([`new_target_topic`], with
/// `topics.replication_factor` replicas and the `topics.target_configs` overrides) or grows it
/// (an existing topic's configs are never altered), then reports its partition count and size
/// limit.
pub(crate) async fn ensure_target(
    source: &Cluster,
    target: &Cluster,
    source_topic: &str,
    target_topic: &str,
    source_partitions: i32,
    topics: &TopicsConfig,
    timeout_ms: i32,
) -> Result<TargetTopic> {
    let cluster_err = |cluster: &'static str, action: String| {
        move |source: crate::kafka::Error| Error::Cluster {
            cluster,
            action,
            source: Box::new(source),
        }
    };
    let names = [target_topic.to_owned()];
    let meta = target
        .metadata(Some(&names))
        .await
        .map_err(cluster_err("target", format!("metadata for topic {target_topic}")))?;
    let found = meta.topics.get(target_topic).filter(|t| t.error.is_none());
    let existing = found.map(TopicMetadata::partition_count);
    let mut id = found.and_then(|t| t.id);
    let mut partitions = existing.unwrap_or(0);
    match plan_target(source_partitions, existing) {
        TargetAction::Create { partitions: count } => {
            if !target.supports::<CreateTopicsRequest>().await.unwrap_or(false) {
                return Err(Error::CannotCreate {
                    topic: target_topic.to_owned(),
                    partitions: count,
                });
            }
            let source_configs = source_topic_configs(source, source_topic).await;
            let overrides = target_config_overrides(&topics.target_configs, target_topic);
            let spec = new_target_topic(
                target,
                target_topic,
                count,
                topics.replication_factor,
                &source_configs,
                &overrides,
                timeout_ms,
            )
            .await;
            let action = if overrides.is_empty() {
                format!("create topic {target_topic}")
            } else {
                let set: Vec<String> = overrides.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!(
                    "create topic {target_topic} with the topics.target_configs overrides {}",
                    set.join(", ")
                )
            };
            create_topic(target, spec, &overrides, timeout_ms)
                .await
                .map_err(cluster_err("target", action))?;
            partitions = count;
            id = target
                .metadata(Some(&names))
                .await
                .ok()
                .and_then(|m| m.topics.get(target_topic).and_then(|t| t.id));
        }
        TargetAction::Grow { from, to } => {
            let grown = if target.supports::<CreatePartitionsRequest>().await.unwrap_or(false) {
                target.create_partitions(target_topic, to, timeout_ms).await.is_ok()
            } else {
                false
            };
            if !grown {
                return Err(Error::FewerPartitions {
                    source_topic: source_topic.to_owned(),
                    target_topic: target_topic.to_owned(),
                    source_partitions,
                    target_partitions: from,
                });
            }
            tracing::info!(
                topic = target_topic,
                from,
                to,
                "target topic grown to the source's partition count"
            );
            partitions = to;
        }
        TargetAction::Ready => {}
    }
    let max_message_bytes = target_max_message_bytes(target, target_topic).await;
    Ok(TargetTopic {
        partitions,
        max_message_bytes,
        id,
    })
}

/// Creates the topic `spec` describes. When the target refuses a version-dependent timestamp
/// config copied from the source that it does not know ([`refused_configs`]), warns naming it
/// and creates the topic without: such a config never stops a topic from being replicated. One
/// of `overrides` refused is the error.
async fn create_topic(
    target: &Cluster,
    mut spec: TopicSpec,
    overrides: &BTreeMap<String, String>,
    timeout_ms: i32,
) -> Result<(), crate::kafka::Error> {
    loop {
        let refused = target
            .create_topics(std::slice::from_ref(&spec), timeout_ms)
            .await?
            .into_iter()
            .find_map(|(_, r)| r.err());
        let Some(e) = refused else {
            tracing::info!(topic = %spec.name, partitions = spec.partitions, replication_factor = spec.replication_factor,
                configs = ?spec.configs, "target topic created");
            return Ok(());
        };
        let dropped = refused_configs(&spec.configs, overrides, &e);
        if dropped.is_empty() {
            return Err(e);
        }
        tracing::warn!(topic = %spec.name, ?dropped, refusal = %e,
            "target refused source topic configs it does not know: creating the topic without them");
        spec.configs.retain(|k, _| !dropped.contains(k));
    }
}

/// The source topic's configs, best effort: a source without DescribeConfigs gets a warning and
/// the target topic the broker's defaults.
pub(super) async fn source_topic_configs(source: &Cluster, topic: &str) -> DescribedConfigs {
    if !source.supports::<DescribeConfigsRequest>().await.unwrap_or(false) {
        tracing::warn!(
            topic,
            "source cluster does not serve DescribeConfigs: target topic gets the target's defaults"
        );
        return DescribedConfigs::default();
    }
    match source.describe_topic_config(topic).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(topic, error = %super::error_chain(&e), "cannot read source topic configs: target topic gets the target's defaults");
            DescribedConfigs::default()
        }
    }
}

/// Topics per DescribeConfigs request when reading retention.
const DESCRIBE_BATCH: usize = 100;

/// The time-based retention of the source `topics`, in one DescribeConfigs request per hundred
/// topics asking only for `retention.ms`. A source without DescribeConfigs (librdkafka's mock
/// cluster) gets Kafka's default for every topic, as does a topic that does not report the key
/// (see [`crate::report::KAFKA_DEFAULT_RETENTION_MS`]); a topic the source answers with an
/// error is left out, so its last known retention stands.
pub(super) async fn read_retention(
    source: &Cluster,
    topics: &[String],
) -> Result<BTreeMap<String, Retention>, crate::kafka::Error> {
    if topics.is_empty() {
        return Ok(BTreeMap::new());
    }
    if !source.supports::<DescribeConfigsRequest>().await? {
        return Ok(topics.iter().map(|t| (t.clone(), Retention::default())).collect());
    }
    let mut retention = BTreeMap::new();
    for chunk in topics.chunks(DESCRIBE_BATCH) {
        for (topic, result) in source.describe_topic_configs(chunk, &["retention.ms"]).await? {
            match result {
                Ok(configs) => {
                    retention.insert(topic, Retention::from_configs(&configs.values));
                }
                Err(e) => tracing::debug!(topic, error = %super::error_chain(&e),
                    "cannot read the source topic's retention.ms: keeping the last known"),
            }
        }
    }
    Ok(retention)
}

async fn target_max_message_bytes(target: &Cluster, topic: &str) -> usize {
    if !target.supports::<DescribeConfigsRequest>().await.unwrap_or(false) {
        return DEFAULT_MAX_MESSAGE_BYTES;
    }
    target
        .describe_topic_config(topic)
        .await
        .ok()
        .and_then(|c| c.values.get("max.message.bytes").and_then(|v| v.parse().ok()))
        .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_and_own_topics_are_never_replicated() {
        let own = ["strait-checkpoints"];
        assert!(is_replicable("jaeger-spans", false, &own));
        assert!(!is_replicable("__consumer_offsets", false, &own));
        assert!(!is_replicable("__transaction_state", true, &own));
        assert!(!is_replicable("internal-but-named-plainly", true, &own));
        assert!(!is_replicable("strait-checkpoints", false, &own));
    }

    #[test]
    fn target_configs_keep_data_settings_and_force_producer_compression() {
        let source: TopicConfig = [
            ("retention.ms", "604800000"),
            ("cleanup.policy", "compact"),
            ("compression.type", "lz4"),
            ("leader.replication.throttled.replicas", "*"),
            ("max.message.bytes", "2097152"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let t = target_configs(&source);
        assert_eq!(t.get("retention.ms").map(String::as_str), Some("604800000"));
        assert_eq!(t.get("cleanup.policy").map(String::as_str), Some("compact"));
        assert_eq!(t.get("max.message.bytes").map(String::as_str), Some("2097152"));
        assert_eq!(t.get("compression.type").map(String::as_str), Some("producer"));
        assert!(!t.contains_key("leader.replication.throttled.replicas"));
    }

    #[test]
    fn a_log_append_time_source_gets_a_create_time_target_that_keeps_its_times() {
        let config = |kind: &str| -> TopicConfig {
            [("message.timestamp.type".to_owned(), kind.to_owned())]
                .into_iter()
                .collect()
        };
        let kind = |c: &TopicConfig| target_configs(c).get("message.timestamp.type").cloned();
        assert_eq!(kind(&config("LogAppendTime")).as_deref(), Some("CreateTime"));
        assert_eq!(kind(&config("CreateTime")).as_deref(), Some("CreateTime"));
    }

    #[test]
    fn a_timestamp_config_the_target_does_not_know_is_left_out_and_nothing_else() {
        let configs: BTreeMap<String, String> = [
            ("cleanup.policy", "delete"),
            ("message.timestamp.after.max.ms", "9223372036854775807"),
            ("message.timestamp.before.max.ms", "9223372036854775807"),
            ("message.timestamp.difference.max.ms", "9223372036854775807"),
            ("retention.ms", "604800000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let refusal = |code, message: Option<&str>| crate::kafka::Error::Request {
            api: crate::kafka::ApiKey::CreateTopics,
            resource: "topic spans".into(),
            code,
            message: message.map(str::to_owned),
        };
        let none = BTreeMap::new();
        // Kafka 4.3.1's answer to the config it removed (tests/kafka_topics.rs checks it).
        let removed = refusal(
            ResponseError::InvalidConfig,
            Some("Unknown topic config name: message.timestamp.difference.max.ms"),
        );
        assert_eq!(
            refused_configs(&configs, &none, &removed),
            ["message.timestamp.difference.max.ms"]
        );
        // A Kafka before 3.6 on the configs added then, one at a time.
        let added = refusal(
            ResponseError::InvalidConfig,
            Some("Unknown topic config name: message.timestamp.after.max.ms"),
        );
        assert_eq!(
            refused_configs(&configs, &none, &added),
            ["message.timestamp.after.max.ms"]
        );
        // No reason given: every version-dependent one.
        assert_eq!(
            refused_configs(&configs, &none, &refusal(ResponseError::InvalidConfig, None)),
            [
                "message.timestamp.after.max.ms",
                "message.timestamp.before.max.ms",
                "message.timestamp.difference.max.ms"
            ]
        );
        // A refusal of another config, or another refusal: nothing is left out, creation fails.
        let other = refusal(
            ResponseError::InvalidConfig,
            Some("Invalid value -5 for configuration retention.ms"),
        );
        assert!(refused_configs(&configs, &none, &other).is_empty());
        let denied = refusal(
            ResponseError::TopicAuthorizationFailed,
            Some("message.timestamp.after.max.ms"),
        );
        assert!(refused_configs(&configs, &none, &denied).is_empty());
        // Nothing version-dependent left: nothing to retry without.
        let plain: BTreeMap<String, String> = [("retention.ms".to_owned(), "1".to_owned())].into_iter().collect();
        assert!(refused_configs(&plain, &none, &refusal(ResponseError::InvalidConfig, None)).is_empty());
        // One the operator set in topics.target_configs is never left out, named or not.
        let overrides: BTreeMap<String, String> = [("message.timestamp.after.max.ms".to_owned(), "1".to_owned())]
            .into_iter()
            .collect();
        assert!(refused_configs(&configs, &overrides, &added).is_empty());
        assert_eq!(
            refused_configs(&configs, &overrides, &refusal(ResponseError::InvalidConfig, None)),
            ["message.timestamp.before.max.ms", "message.timestamp.difference.max.ms"]
        );
    }

    #[test]
    fn min_insync_replicas_set_on_the_source_topic_is_copied_when_the_replicas_meet_it() {
        let source = |value: &str, on_topic: bool| DescribedConfigs {
            values: [(MIN_INSYNC_REPLICAS.to_owned(), value.to_owned())]
                .into_iter()
                .collect(),
            set_on_topic: on_topic.then(|| MIN_INSYNC_REPLICAS.to_owned()).into_iter().collect(),
        };
        // Set on the topic and met by the target topic's replicas (1 by any).
        assert_eq!(min_insync(&source("2", true), Some(3)), MinInsync::Copy(2));
        assert_eq!(min_insync(&source("3", true), Some(3)), MinInsync::Copy(3));
        assert_eq!(min_insync(&source("1", true), Some(1)), MinInsync::Copy(1));
        assert_eq!(min_insync(&source("1", true), None), MinInsync::Copy(1));
        // Above the replication factor, or above 1 with the factor not known: left out.
        assert_eq!(
            min_insync(&source("2", true), Some(1)),
            MinInsync::AboveReplicas {
                min_insync: 2,
                replication_factor: Some(1)
            }
        );
        assert_eq!(
            min_insync(&source("2", true), None),
            MinInsync::AboveReplicas {
                min_insync: 2,
                replication_factor: None
            }
        );
        // Inherited from the source broker, absent, or not a number: the target's default.
        assert_eq!(min_insync(&source("2", false), Some(3)), MinInsync::Default);
        assert_eq!(min_insync(&DescribedConfigs::default(), Some(3)), MinInsync::Default);
        assert_eq!(min_insync(&source("two", true), Some(3)), MinInsync::Default);
        // Never copied as a plain data config.
        assert!(!target_configs(&source("2", true).values).contains_key(MIN_INSYNC_REPLICAS));
    }

    #[test]
    fn plan_follows_partition_counts() {
        assert_eq!(plan_target(4, None), TargetAction::Create { partitions: 4 });
        assert_eq!(plan_target(4, Some(4)), TargetAction::Ready);
        assert_eq!(plan_target(4, Some(8)), TargetAction::Ready);
        assert_eq!(plan_target(6, Some(4)), TargetAction::Grow { from: 4, to: 6 });
    }
}
