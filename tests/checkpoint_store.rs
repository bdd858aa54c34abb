//! The checkpoint store against a real broker: the topic it creates, last-value-wins loading
//! per replication id by a fresh store, and the records as an independent client (librdkafka)
//! reads them.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;

use common::Kafka;
use strait::checkpoint::{decode_key, decode_value, encode_key, Checkpoint, CheckpointStore, Error};
use strait::kafka::{Cluster, TopicPartition};

fn cluster(bootstrap: &str) -> Arc<Cluster> {
    Arc::new(Cluster::new(
        "target",
        vec![bootstrap.to_owned()],
        "strait-test",
        Duration::from_secs(10),
    ))
}

fn cp(rid: &str, topic: &str, partition: i32, next: i64, epoch: i64) -> Checkpoint {
    Checkpoint {
        replication_id: rid.into(),
        source_topic: topic.into(),
        source_partition: partition,
        target_topic: format!("{rid}.{topic}"),
        next_source_offset: next,
        next_target_offset: next + 1000,
        writer_epoch: epoch,
        wall_clock_ms: 1_700_000_000_000 + next,
    }
}

fn by_tp(cps: &[Checkpoint]) -> HashMap<TopicPartition, Checkpoint> {
    cps.iter()
        .map(|c| {
            (
                TopicPartition::new(c.source_topic.clone(), c.source_partition),
                c.clone(),
            )
        })
        .collect()
}

/// The topic's configs as librdkafka's admin client describes them.
async fn describe(bootstrap: &str, topic: &str) -> BTreeMap<String, Option<String>> {
    let admin: AdminClient<DefaultClientContext> = common::client_config(bootstrap).create().expect("admin client");
    let results = admin
        .describe_configs(
            &[ResourceSpecifier::Topic(topic)],
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("describe configs request");
    let resource = results
        .into_iter()
        .next()
        .expect("one resource")
        .expect("topic described");
    resource.entries.into_iter().map(|e| (e.name, e.value)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_survive_in_a_compacted_topic_per_replication_id() {
    let Some(b) = Kafka::single().await else {
        return;
    };
    let bootstrap = b.bootstrap();
    let topic = common::topic("checkpoints");
    let dc1 = CheckpointStore::new(cluster(&bootstrap), &topic, "dc1");
    let dc2 = CheckpointStore::new(cluster(&bootstrap), &topic, "dc2");

    // Before the topic exists, loading says so instead of returning nothing.
    let err = dc1.load().await.expect_err("no topic yet");
    assert!(matches!(err, Error::MissingTopic { .. }), "{err:?}");
    assert!(err.to_string().contains(&topic), "{err}");

    dc1.ensure_topic(10_000).await.expect("creates the checkpoint topic");
    let configs = describe(&bootstrap, &topic).await;
    let config = |name: &str| configs.get(name).cloned().flatten();
    assert_eq!(config("cleanup.policy").as_deref(), Some("compact"), "{configs:?}");
    assert_eq!(config("compression.type").as_deref(), Some("producer"), "{configs:?}");
    let meta = cluster(&bootstrap)
        .metadata(Some(std::slice::from_ref(&topic)))
        .await
        .expect("metadata");
    assert_eq!(meta.topics[&topic].partition_count(), 1);
    // Twice, and from another store, is fine.
    dc1.ensure_topic(10_000).await.expect("ensure_topic is idempotent");
    dc2.ensure_topic(10_000)
        .await
        .expect("ensure_topic from a second store");

    let first = vec![
        cp("dc1", "spans", 0, 10, 1),
        cp("dc1", "spans", 1, 20, 1),
        cp("dc1", "spans", 2, 30, 1),
        cp("dc1", "logs", 0, 5, 1),
    ];
    dc1.write(&first).await.expect("write dc1");
    dc2.write(&[cp("dc2", "spans", 0, 1000, 7), cp("dc2", "spans", 1, 2000, 7)])
        .await
        .expect("write dc2");
    // Overwrites; within one write the later entry for a partition wins.
    dc1.write(&[cp("dc1", "spans", 1, 25, 2), cp("dc1", "logs", 0, 6, 2)])
        .await
        .expect("overwrite dc1");
    dc1.write(&[cp("dc1", "spans", 0, 11, 2), cp("dc1", "spans", 0, 12, 3)])
        .await
        .expect("overwrite twice in one batch");
    dc2.write(&[cp("dc2", "spans", 1, 2500, 8)])
        .await
        .expect("overwrite dc2");
    // A store refuses checkpoints of another replication id.
    let err = dc1
        .write(&[cp("dc2", "spans", 0, 1, 1)])
        .await
        .expect_err("foreign replication id");
    assert!(matches!(err, Error::ForeignReplicationId { .. }), "{err:?}");
    dc1.write(&[]).await.expect("an empty write is a no-op");

    // Fresh stores, as after a restart.
    let loaded = CheckpointStore::new(cluster(&bootstrap), &topic, "dc1")
        .load()
        .await
        .expect("load dc1");
    assert_eq!(
        loaded,
        by_tp(&[
            cp("dc1", "spans", 0, 12, 3),
            cp("dc1", "spans", 1, 25, 2),
            cp("dc1", "spans", 2, 30, 1),
            cp("dc1", "logs", 0, 6, 2),
        ])
    );
    let loaded = CheckpointStore::new(cluster(&bootstrap), &topic, "dc2")
        .load()
        .await
        .expect("load dc2");
    assert_eq!(
        loaded,
        by_tp(&[cp("dc2", "spans", 0, 1000, 7), cp("dc2", "spans", 1, 2500, 8)])
    );
    let loaded = CheckpointStore::new(cluster(&bootstrap), &topic, "dc3")
        .load()
        .await
        .expect("load an id with no checkpoints");
    assert!(loaded.is_empty(), "{loaded:?}");

    // Names with separators and non-ASCII characters are keys like any other.
    let odd_id = "dc/1:ü 🦀";
    let odd = CheckpointStore::new(cluster(&bootstrap), &topic, odd_id);
    let odd_cp = cp(odd_id, "a:b/c", 3, 42, 1);
    odd.write(std::slice::from_ref(&odd_cp)).await.expect("write odd names");
    let loaded = CheckpointStore::new(cluster(&bootstrap), &topic, odd_id)
        .load()
        .await
        .expect("load odd names");
    assert_eq!(loaded, by_tp(std::slice::from_ref(&odd_cp)));

    // librdkafka reads the same records: every one on partition 0, keys as encode_key makes
    // them, the first one exactly the first checkpoint written.
    let written = 4 + 2 + 2 + 2 + 1 + 1;
    let got = common::consume(
        &bootstrap,
        &topic,
        &BTreeMap::from([(0, written)]),
        Duration::from_secs(30),
    );
    let records = &got[&0];
    assert_eq!(records.len(), written);
    let head = &records[0];
    let key = head.key.as_deref().expect("checkpoint records have keys");
    assert_eq!(key, &encode_key("dc1", "spans", 0)[..]);
    let value = head.value.as_deref().expect("checkpoint records have values");
    assert_eq!(decode_value(key, value).expect("librdkafka's bytes decode"), first[0]);
    let last = records.last().expect("records");
    assert_eq!(
        last.key.as_deref(),
        Some(&encode_key(odd_id, "a:b/c", 3)[..]),
        "{:?}",
        last.key.as_deref().map(decode_key)
    );
    for r in records {
        let key = r.key.as_deref().expect("key");
        decode_key(key).expect("every key decodes");
    }
}

/// A follower of the store (the orphan watch of sharded runs) sees each round what a full load
/// would: the first round the whole topic, later rounds what was written since, with newer
/// checkpoints replacing older ones and other replication ids left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_holds_what_a_full_load_returns_round_after_round() {
    let Some(b) = Kafka::single().await else {
        return;
    };
    let bootstrap = b.bootstrap();
    let topic = common::topic("follow");
    let dc1 = CheckpointStore::new(cluster(&bootstrap), &topic, "dc1");
    let dc2 = CheckpointStore::new(cluster(&bootstrap), &topic, "dc2");
    dc1.ensure_topic(10_000).await.expect("creates the checkpoint topic");
    dc1.write(&[cp("dc1", "spans", 0, 10, 1), cp("dc1", "spans", 1, 20, 1)])
        .await
        .expect("write dc1");
    dc2.write(&[cp("dc2", "spans", 0, 1000, 1)]).await.expect("write dc2");

    let mut follower = dc1.follower();
    assert!(follower.checkpoints().is_empty(), "nothing read before the first round");
    let checkpoints = |f: &strait::checkpoint::Follower| -> HashMap<TopicPartition, Checkpoint> {
        f.checkpoints()
            .iter()
            .map(|(tp, r)| (tp.clone(), r.checkpoint.clone()))
            .collect()
    };
    dc1.follow(&mut follower).await.expect("first round");
    assert_eq!(
        checkpoints(&follower),
        by_tp(&[cp("dc1", "spans", 0, 10, 1), cp("dc1", "spans", 1, 20, 1)])
    );

    // A round with nothing new changes nothing; then newer checkpoints and a new partition.
    dc1.follow(&mut follower).await.expect("idle round");
    assert_eq!(checkpoints(&follower).len(), 2);
    dc1.write(&[cp("dc1", "spans", 1, 25, 1), cp("dc1", "logs", 0, 5, 1)])
        .await
        .expect("write more");
    dc2.write(&[cp("dc2", "logs", 0, 7, 1)]).await.expect("write dc2 more");
    dc1.follow(&mut follower).await.expect("second round");
    let full = dc1.load().await.expect("full load");
    assert_eq!(checkpoints(&follower), full);
    assert_eq!(
        full,
        by_tp(&[
            cp("dc1", "spans", 0, 10, 1),
            cp("dc1", "spans", 1, 25, 1),
            cp("dc1", "logs", 0, 5, 1),
        ])
    );
}
