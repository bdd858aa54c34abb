//! Never start blind: a target partition that already holds records while no checkpoint of
//! this replication flow covers it (a changed `replication.id`, a deleted checkpoint topic)
//! halts before writing anything, unless `on_missing_checkpoint = "append"` (after what is there,
//! from `start_from`) or `"align"` (right after the source records it already holds). Checked
//! on Apache Kafka with librdkafka.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::BaseConsumer;

use common::{Kafka, Rec, Strait};
use strait::config::{Config, OnMissingCheckpoint, StartFrom};
use strait::kafka::TopicPartition;
use strait::replicate::PartitionState;

fn record(i: usize) -> Rec {
    Rec::new(
        Some(format!("k{i}").as_bytes()),
        Some(format!("span {i}").as_bytes()),
        &[("n", Some(b"1"))],
        1_700_000_000_000 + i as i64,
    )
}

/// The target partition's high watermark, as librdkafka reads it.
fn target_end(bootstrap: &str, topic: &str) -> i64 {
    let c: BaseConsumer = common::client_config(bootstrap).create().expect("consumer");
    common::watermarks(&c, topic, 0).1
}

/// Runs strait until partition 0 of `topic` halts, and returns why.
async fn halts(config: Config, topic: &str) -> String {
    let strait = Strait::start(config);
    let tp = TopicPartition::new(topic, 0);
    let progress = strait.progress.clone();
    common::eventually_sync("partition halted", Duration::from_secs(60), || {
        matches!(progress.get(&tp).map(|s| s.state), Some(PartitionState::Halted(_)))
    })
    .await;
    let Some(PartitionState::Halted(why)) = progress.get(&tp).map(|s| s.state) else {
        unreachable!("waited for the halt")
    };
    strait.stop().await;
    why
}

/// Deletes strait's checkpoint topic on `target` and waits until it is gone.
async fn delete_checkpoint_topic(target: &Kafka) {
    common::delete_topic(&target.bootstrap(), "strait-checkpoints").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filled_target_without_checkpoint_halts_unless_told_to_append() {
    let Some(source) = Kafka::single().await else {
        return;
    };
    let Some(target) = Kafka::single().await else {
        return;
    };
    let topic = common::topic("blind");
    common::create_topic(&source.bootstrap(), &topic, 1, &[]).await;
    let producer = common::producer(&source.bootstrap(), &[]);
    let first: Vec<Rec> = (0..100).map(record).collect();
    common::send_all(&producer, &topic, 0, &first).await;

    // A first run fills the target.
    let strait = Strait::start(common::config(&source.bootstrap(), &target.bootstrap(), &topic));
    let got = common::consume(
        &target.bootstrap(),
        &topic,
        &BTreeMap::from([(0, 100)]),
        Duration::from_secs(60),
    );
    assert_eq!(got[&0], first);
    strait.stop().await;

    // replication.id changed: its checkpoints are not this flow's.
    let mut renamed = common::config(&source.bootstrap(), &target.bootstrap(), &topic);
    renamed.replication.id = "renamed-flow".into();
    let why = halts(renamed, &topic).await;
    for needle in [
        "already holds records (offsets 0..100)",
        "renamed-flow",
        "on_missing_checkpoint",
        "replication.id",
    ] {
        assert!(why.contains(needle), "lacks {needle:?}: {why}");
    }
    assert_eq!(target_end(&target.bootstrap(), &topic), 100, "nothing written");

    // The checkpoint topic deleted.
    delete_checkpoint_topic(&target).await;
    let why = halts(common::config(&source.bootstrap(), &target.bootstrap(), &topic), &topic).await;
    assert!(why.contains("has no checkpoint for it"), "{why}");
    assert_eq!(target_end(&target.bootstrap(), &topic), 100, "nothing written");

    // Told to append, from the source's end: only records written from now on arrive.
    let mut append = common::config(&source.bootstrap(), &target.bootstrap(), &topic);
    append.on_missing_checkpoint = OnMissingCheckpoint::Append;
    append.start_from = StartFrom::Latest;
    let strait = Strait::start(append);
    let tp = TopicPartition::new(topic.clone(), 0);
    let progress = strait.progress.clone();
    common::eventually_sync("partition running", Duration::from_secs(60), || {
        progress.get(&tp).is_some_and(|s| s.next_source_offset >= 100)
    })
    .await;
    let later: Vec<Rec> = (100..110).map(record).collect();
    common::send_all(&producer, &topic, 0, &later).await;
    let got = common::consume(
        &target.bootstrap(),
        &topic,
        &BTreeMap::from([(0, 110)]),
        Duration::from_secs(60),
    );
    strait.stop().await;
    let want: Vec<Rec> = first.iter().chain(&later).cloned().collect();
    assert_eq!(got[&0], want, "the old records once, then the new ones");
    assert_eq!(target_end(&target.bootstrap(), &topic), 110);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn align_goes_on_after_a_changed_replication_id_or_a_deleted_checkpoint_topic() {
    let Some(source) = Kafka::single().await else {
        return;
    };
    let Some(target) = Kafka::single().await else {
        return;
    };
    let topic = common::topic("align");
    common::create_topic(&source.bootstrap(), &topic, 1, &[]).await;
    let producer = common::producer(&source.bootstrap(), &[]);
    let all: Vec<Rec> = (0..300).map(record).collect();
    common::send_all(&producer, &topic, 0, &all[..100]).await;
    let run_until = |config: Config, n: usize| {
        let (target, topic, want) = (target.bootstrap(), topic.clone(), all[..n].to_vec());
        async move {
            let strait = Strait::start(config);
            let got = common::consume(&target, &topic, &BTreeMap::from([(0, n)]), Duration::from_secs(60));
            strait.stop().await;
            assert_eq!(got[&0], want, "every source record once, in order");
            assert_eq!(target_end(&target, &topic), n as i64, "nothing more on the target");
        }
    };
    let config = || common::config(&source.bootstrap(), &target.bootstrap(), &topic);
    run_until(config(), 100).await;

    // replication.id changed while the source grew: aligned, the next records follow.
    common::send_all(&producer, &topic, 0, &all[100..200]).await;
    let mut renamed = config();
    renamed.replication.id = "renamed-flow".into();
    renamed.on_missing_checkpoint = OnMissingCheckpoint::Align;
    run_until(renamed, 200).await;

    // The checkpoint topic deleted (with the renamed flow's checkpoints in it) while the
    // source grew: aligned again.
    common::send_all(&producer, &topic, 0, &all[200..300]).await;
    delete_checkpoint_topic(&target).await;
    let mut aligned = config();
    aligned.on_missing_checkpoint = OnMissingCheckpoint::Align;
    run_until(aligned, 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_topic_recreated_while_strait_is_stopped_halts_or_starts_over() {
    let Some(source) = Kafka::single().await else {
        return;
    };
    let Some(target) = Kafka::single().await else {
        return;
    };
    let topic = common::topic("recreated");
    common::create_topic(&source.bootstrap(), &topic, 1, &[]).await;
    let producer = common::producer(&source.bootstrap(), &[]);
    let old: Vec<Rec> = (0..100).map(record).collect();
    common::send_all(&producer, &topic, 0, &old).await;
    let config = || common::config(&source.bootstrap(), &target.bootstrap(), &topic);
    let strait = Strait::start(config());
    common::consume(
        &target.bootstrap(),
        &topic,
        &BTreeMap::from([(0, 100)]),
        Duration::from_secs(60),
    );
    strait.stop().await;

    // The source topic deleted and created again, and grown past the checkpoint's offset. A
    // live librdkafka producer would create the topic again itself (auto-creation on its
    // metadata refresh), and creating it again would then find it there for ever (a CI run
    // under load saw TopicAlreadyExists for 30 s): a new producer after.
    drop(producer);
    common::delete_topic(&source.bootstrap(), &topic).await;
    common::create_topic_again(&source.bootstrap(), &topic, 1).await;
    let producer = common::producer(&source.bootstrap(), &[]);
    let new: Vec<Rec> = (1000..1150).map(record).collect();
    common::send_all(&producer, &topic, 0, &new).await;

    let why = halts(config(), &topic).await;
    assert!(
        why.contains("source topic") && why.contains("was recreated") && why.contains("on_topic_recreated"),
        "{why}"
    );
    assert_eq!(target_end(&target.bootstrap(), &topic), 100, "nothing written");

    let mut over = config();
    over.on_topic_recreated = strait::config::OnTopicRecreated::StartOver;
    let strait = Strait::start(over);
    let got = common::consume(
        &target.bootstrap(),
        &topic,
        &BTreeMap::from([(0, 250)]),
        Duration::from_secs(60),
    );
    strait.stop().await;
    let want: Vec<Rec> = old.iter().chain(&new).cloned().collect();
    assert_eq!(
        got[&0], want,
        "the old topic's records, then every record of the new one"
    );
    assert_eq!(target_end(&target.bootstrap(), &topic), 250);
}
