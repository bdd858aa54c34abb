//! Helpers of the topic tests (`tests/kafka_topics.rs`): the clusters they share, records
//! numbered by label, admin calls through librdkafka, and what the target holds.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ConfigSource};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Timestamp;

use super::target::{records, topic_configs};
use super::{Kafka, Rec};

pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The source and target clusters every test here shares, started by the first test. Also
/// installs the metrics recorder before any strait runs.
pub async fn clusters() -> Option<&'static (Kafka, Kafka)> {
    super::metrics::recorder();
    static PAIR: tokio::sync::OnceCell<Option<(Kafka, Kafka)>> = tokio::sync::OnceCell::const_new();
    PAIR.get_or_init(|| async {
        let source = Kafka::single().await?;
        let target = Kafka::single().await?;
        Some((source, target))
    })
    .await
    .as_ref()
}

/// The value of `name{topic=..., partition=...}` in the Prometheus text of this process's
/// recorder (`super::metrics`; metrics are labelled by topic, so tests running at once do not
/// mix), if exported.
pub fn metric(name: &str, topic: &str, partition: i32) -> Option<f64> {
    let partition = partition.to_string();
    super::metrics::sum(
        &super::metrics::render(),
        name,
        &[("topic", topic), ("partition", &partition)],
    )
}

pub fn numbered(label: &str, i: usize, timestamp: i64) -> Rec {
    Rec::new(
        Some(format!("{label}-{i}").as_bytes()),
        Some(format!("{label} value {i:06} {}", "x".repeat(i % 40)).as_bytes()),
        &[("n", Some(i.to_string().as_bytes())), ("n", None)],
        timestamp,
    )
}

pub fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    super::client_config(bootstrap).create().expect("admin client")
}

pub fn options() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(TIMEOUT))
}

/// Runs a blocking librdkafka call off the runtime's worker (strait runs on the same runtime).
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Low and high watermark of a partition.
pub fn watermarks(bootstrap: &str, topic: &str, partition: i32) -> (i64, i64) {
    let consumer: BaseConsumer = super::client_config(bootstrap)
        .set("isolation.level", "read_uncommitted")
        .create()
        .expect("consumer");
    blocking(|| super::watermarks(&consumer, topic, partition))
}

/// `min.insync.replicas` of `topic`: its value, and whether it is set on the topic itself.
pub async fn min_insync_replicas(bootstrap: &str, topic: &str) -> (Option<String>, bool) {
    let configs = topic_configs(bootstrap, topic).await;
    let entry = configs
        .get("min.insync.replicas")
        .expect("min.insync.replicas described");
    (entry.value.clone(), entry.source == ConfigSource::DynamicTopic)
}

/// Replicas of each partition of `topic`, from the cluster's metadata.
pub fn replicas(bootstrap: &str, topic: &str) -> Vec<usize> {
    let consumer: BaseConsumer = super::client_config(bootstrap).create().expect("consumer");
    let md = blocking(|| consumer.fetch_metadata(Some(topic), TIMEOUT)).expect("metadata");
    let t = md.topics().iter().find(|t| t.name() == topic).expect("topic listed");
    t.partitions().iter().map(|p| p.replicas().len()).collect()
}

/// Every record of `partitions` from the beginning to the high watermark, with the timestamp
/// type librdkafka reports.
pub fn read_to_end(bootstrap: &str, topic: &str, partitions: &[i32]) -> BTreeMap<i32, Vec<(Rec, Timestamp)>> {
    blocking(|| super::read_to_end(bootstrap, topic, partitions, "read_uncommitted", TIMEOUT))
}

/// Asserts the target holds exactly `want` per partition, once each: the records, and one
/// offset per record from 0.
pub fn assert_target_holds(bootstrap: &str, topic: &str, want: &BTreeMap<i32, Vec<Rec>>) {
    let partitions: Vec<i32> = want.keys().copied().collect();
    let got = records(bootstrap, topic, &partitions);
    for (p, w) in want {
        assert_eq!(&got[p], w, "{topic}/{p}: the source records, once, in order");
        assert_eq!(
            watermarks(bootstrap, topic, *p),
            (0, w.len() as i64),
            "{topic}/{p}: target offsets"
        );
    }
}
