//! Reading back what a cluster holds with librdkafka, for tests that check strait's target:
//! topic configs, partition counts, high watermarks and records.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ConfigResource, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::Rec;

const TIMEOUT: Duration = Duration::from_secs(30);

/// The configs of `topic` as the cluster describes them (librdkafka's AdminClient).
pub async fn topic_configs(bootstrap: &str, topic: &str) -> ConfigResource {
    let admin: AdminClient<DefaultClientContext> = super::client_config(bootstrap).create().expect("admin client");
    admin
        .describe_configs(
            [&ResourceSpecifier::Topic(topic)],
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        )
        .await
        .expect("describe configs request")
        .into_iter()
        .next()
        .expect("one result")
        .expect("topic configs")
}

/// Partitions of `topic` in the cluster's metadata; `None` when the topic is not listed.
pub async fn partition_count(bootstrap: &str, topic: &str) -> Option<usize> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = super::client_config(&bootstrap).create().expect("consumer");
        let md = consumer.fetch_metadata(Some(&topic), Duration::from_secs(5)).ok()?;
        let t = md.topics().iter().find(|t| t.name() == topic)?;
        (t.error().is_none() && !t.partitions().is_empty()).then(|| t.partitions().len())
    })
    .await
    .expect("metadata task")
}

/// Waits until the high watermark of every partition in `want` reached its count.
pub async fn wait_for_target(bootstrap: &str, topic: &str, want: &BTreeMap<i32, usize>, what: &str) {
    super::eventually(what, Duration::from_secs(60), || {
        let (bootstrap, topic, want) = (bootstrap.to_owned(), topic.to_owned(), want.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                let consumer: BaseConsumer = super::client_config(&bootstrap).create().expect("consumer");
                want.iter().all(|(p, n)| {
                    consumer
                        .fetch_watermarks(&topic, *p, Duration::from_secs(5))
                        .is_ok_and(|(_, high)| high >= *n as i64)
                })
            })
            .await
            .expect("watermarks task")
        }
    })
    .await;
}

/// Every record of `partitions` from the beginning to the high watermark (read_uncommitted),
/// off the runtime's worker (strait may run on the same runtime).
pub fn records(bootstrap: &str, topic: &str, partitions: &[i32]) -> BTreeMap<i32, Vec<Rec>> {
    tokio::task::block_in_place(|| super::read_to_end(bootstrap, topic, partitions, "read_uncommitted", TIMEOUT))
        .into_iter()
        .map(|(p, v)| (p, v.into_iter().map(|(r, _)| r).collect()))
        .collect()
}
