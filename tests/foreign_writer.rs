//! Another producer writes to a target partition strait replicates into, while strait runs and
//! while it is stopped: by default the partition halts with an error naming the foreign records
//! and no source record is lost; with `on_foreign_writer = "skip"` every source record arrives
//! exactly once, in order, next to the foreign ones. Checked with librdkafka on the target.

mod common;

use std::time::Duration;

use rdkafka::consumer::BaseConsumer;

use common::{Kafka, Rec, Strait};
use strait::config::OnForeignWriter;
use strait::kafka::TopicPartition;
use strait::replicate::PartitionState;

/// Source records in all; half before the foreign write, half after.
const SOURCE_RECORDS: usize = 20_000;
const FOREIGN_RECORDS: usize = 100;

fn source_record(i: usize) -> Rec {
    Rec::new(
        Some(format!("k{i:06}").as_bytes()),
        Some(format!("{i:08}-{}", "v".repeat(100)).as_bytes()),
        &[("n", Some(b"1"))],
        common::now_ms(),
    )
}

fn foreign_record(i: usize) -> Rec {
    Rec::new(
        Some(format!("foreign-{i:03}").as_bytes()),
        Some(b"written to the target by another producer"),
        &[],
        common::now_ms(),
    )
}

fn is_foreign(r: &Rec) -> bool {
    r.key.as_deref().is_some_and(|k| k.starts_with(b"foreign-"))
}

/// Writes source records `from..to` to partition 0.
async fn write_source(bootstrap: &str, topic: &str, from: usize, to: usize) -> Vec<Rec> {
    let p = common::producer(bootstrap, &[("linger.ms", "5"), ("compression.type", "lz4")]);
    let records: Vec<Rec> = (from..to).map(source_record).collect();
    common::send_all(&p, topic, 0, &records).await;
    records
}

/// Writes the foreign records straight to the target partition, as one producer would.
async fn write_foreign(bootstrap: &str, topic: &str, idempotent: bool) {
    let p = common::producer(
        bootstrap,
        &[
            ("linger.ms", "50"),
            ("enable.idempotence", if idempotent { "true" } else { "false" }),
        ],
    );
    let records: Vec<Rec> = (0..FOREIGN_RECORDS).map(foreign_record).collect();
    common::send_all(&p, topic, 0, &records).await;
}

/// The target partition's end offset as librdkafka sees it.
fn target_end(bootstrap: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = common::client_config(bootstrap).create().expect("consumer");
    common::watermarks(&consumer, topic, 0).1
}

/// Everything on the target partition, read to its current end.
fn read_target(bootstrap: &str, topic: &str) -> Vec<Rec> {
    let end = usize::try_from(target_end(bootstrap, topic)).expect("end offset");
    let mut got = common::consume_until(bootstrap, topic, &[0], Duration::from_secs(120), |got| {
        got.get(&0).is_some_and(|v| v.len() >= end)
    });
    let records = got.remove(&0).unwrap_or_default();
    assert_eq!(records.len(), end, "every offset below the end read");
    records
}

/// The target's records split into strait's (in target order) and the foreign count.
fn split(target: &[Rec]) -> (Vec<Rec>, usize) {
    let foreign = target.iter().filter(|r| is_foreign(r)).count();
    let replicated = target.iter().filter(|r| !is_foreign(r)).cloned().collect();
    (replicated, foreign)
}

/// With "skip": replicates until every source record is on the target, then checks the target
/// holds each exactly once in source order, and the foreign records.
async fn replicate_all_with_skip(source: &Kafka, target: &Kafka, topic: &str, all: &[Rec]) {
    let mut cfg = common::config(&source.bootstrap(), &target.bootstrap(), topic);
    cfg.on_foreign_writer = OnForeignWriter::Skip;
    let strait = Strait::start(cfg);
    let tp = TopicPartition::new(topic.to_owned(), 0);
    let progress = strait.progress.clone();
    common::eventually_sync("every source record acknowledged", Duration::from_secs(180), || {
        progress
            .get(&tp)
            .is_some_and(|s| s.next_source_offset >= all.len() as i64)
    })
    .await;
    assert!(
        !matches!(progress.get(&tp).map(|s| s.state), Some(PartitionState::Halted(_))),
        "skip does not halt"
    );
    strait.stop().await;
    let (replicated, foreign) = split(&read_target(&target.bootstrap(), topic));
    assert_eq!(foreign, FOREIGN_RECORDS, "the foreign records stay in place");
    assert_eq!(replicated.len(), all.len(), "every source record exactly once");
    for (i, (got, want)) in replicated.iter().zip(all).enumerate() {
        assert_eq!(got, want, "source record {i} lost, duplicated or out of order");
    }
}

/// Checks that strait's records on the target are the source's first ones, in order, none
/// skipped or repeated, and at least `acked` of them; returns how many.
fn assert_prefix(replicated: &[Rec], all: &[Rec], acked: i64) -> usize {
    assert!(replicated.len() <= all.len(), "more records than the source holds");
    for (i, (got, want)) in replicated.iter().zip(all).enumerate() {
        assert_eq!(got, want, "target record {i} of strait's is not source record {i}");
    }
    assert!(
        replicated.len() as i64 >= acked,
        "{} source records on the target, {acked} acknowledged",
        replicated.len()
    );
    replicated.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_writer_while_strait_runs_halts_the_partition_without_losing_a_record() {
    let Some(source) = Kafka::single().await else {
        return;
    };
    let Some(target) = Kafka::single().await else {
        return;
    };
    let topic = common::topic("foreign-live");
    common::create_topic(&source.bootstrap(), &topic, 1, &[]).await;
    let half = SOURCE_RECORDS / 2;
    let mut all = write_source(&source.bootstrap(), &topic, 0, half).await;

    let strait = Strait::start(common::config(&source.bootstrap(), &target.bootstrap(), &topic));
    let tp = TopicPartition::new(topic.clone(), 0);
    let progress = strait.progress.clone();
    common::eventually_sync("replication under way", Duration::from_secs(120), || {
        progress.get(&tp).is_some_and(|s| s.next_source_offset >= 2_000)
    })
    .await;
    // Another producer writes to the target partition while strait runs, then the source
    // grows: strait's next batches land after the foreign ones.
    write_foreign(&target.bootstrap(), &topic, false).await;
    all.extend(write_source(&source.bootstrap(), &topic, half, SOURCE_RECORDS).await);

    let why = common::halted(&progress, &tp, Duration::from_secs(120)).await;
    assert!(why.contains("records of producer id -1"), "{why}");
    assert!(why.contains("not written by strait"), "{why}");
    assert!(why.contains("on_foreign_writer"), "{why}");
    assert!(why.contains("no source record was skipped"), "{why}");
    let acked = progress.get(&tp).map_or(0, |s| s.next_source_offset);
    assert!((acked as usize) < SOURCE_RECORDS, "halted before the end: {acked}");
    strait.stop().await;

    // Nothing was skipped: strait's records on the target are the source's first ones.
    let (replicated, foreign) = split(&read_target(&target.bootstrap(), &topic));
    assert_eq!(foreign, FOREIGN_RECORDS);
    let n = assert_prefix(&replicated, &all, acked);
    eprintln!("halted with {n} source records on the target, {acked} acknowledged");

    // The operator lets the foreign records be: every source record arrives, once.
    replicate_all_with_skip(&source, &target, &topic, &all).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_skip_every_source_record_arrives_next_to_a_foreign_writer() {
    let Some(source) = Kafka::single().await else {
        return;
    };
    let Some(target) = Kafka::single().await else {
        return;
    };
    let topic = common::topic("foreign-skip");
    common::create_topic(&source.bootstrap(), &topic, 1, &[]).await;
    let half = SOURCE_RECORDS / 2;
    let mut all = write_source(&source.bootstrap(), &topic, 0, half).await;

    let mut cfg = common::config(&source.bootstrap(), &target.bootstrap(), &topic);
    cfg.on_foreign_writer = OnForeignWriter::Skip;
    let strait = Strait::start(cfg);
    let tp = TopicPartition::new(topic.clone(), 0);
    let progress = strait.progress.clone();
    common::eventually_sync("replication under way", Duration::from_secs(120), || {
        progress.get(&tp).is_some_and(|s| s.next_source_offset >= 2_000)
    })
    .await;
    // An idempotent producer this time: a real producer id that is not strait's.
    write_foreign(&target.bootstrap(), &topic, true).await;
    all.extend(write_source(&source.bootstrap(), &topic, half, SOURCE_RECORDS).await);
    common::eventually_sync("every source record acknowledged", Duration::from_secs(180), || {
        progress
            .get(&tp)
            .is_some_and(|s| s.next_source_offset >= SOURCE_RECORDS as i64)
    })
    .await;
    assert!(
        !matches!(progress.get(&tp).map(|s| s.state), Some(PartitionState::Halted(_))),
        "skip does not halt"
    );
    strait.stop().await;

    let (replicated, foreign) = split(&read_target(&target.bootstrap(), &topic));
    assert_eq!(foreign, FOREIGN_RECORDS, "the foreign records stay in place");
    assert_eq!(replicated.len(), SOURCE_RECORDS, "every source record exactly once");
    for (i, (got, want)) in replicated.iter().zip(&all).enumerate() {
        assert_eq!(got, want, "source record {i} lost, duplicated or out of order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_writer_while_strait_is_stopped_halts_it_at_start() {
    let Some(source) = Kafka::single().await else {
        return;
    };
    let Some(target) = Kafka::single().await else {
        return;
    };
    let topic = common::topic("foreign-stopped");
    common::create_topic(&source.bootstrap(), &topic, 1, &[]).await;
    let half = SOURCE_RECORDS / 2;
    let mut all = write_source(&source.bootstrap(), &topic, 0, half).await;
    let tp = TopicPartition::new(topic.clone(), 0);

    let strait = Strait::start(common::config(&source.bootstrap(), &target.bootstrap(), &topic));
    let progress = strait.progress.clone();
    common::eventually_sync("first half replicated", Duration::from_secs(120), || {
        progress.get(&tp).is_some_and(|s| s.next_source_offset >= half as i64)
    })
    .await;
    strait.stop().await;

    // While strait is stopped: another producer writes to the target, the source grows.
    write_foreign(&target.bootstrap(), &topic, false).await;
    all.extend(write_source(&source.bootstrap(), &topic, half, SOURCE_RECORDS).await);

    let strait = Strait::start(common::config(&source.bootstrap(), &target.bootstrap(), &topic));
    let progress = strait.progress.clone();
    let why = common::halted(&progress, &tp, Duration::from_secs(120)).await;
    let expected = format!(
        "offsets {half}..={} hold {FOREIGN_RECORDS} records of producer id -1",
        half + FOREIGN_RECORDS - 1
    );
    assert!(why.contains(&expected), "{why}");
    assert!(why.contains("on_foreign_writer"), "{why}");
    assert_eq!(progress.get(&tp).map(|s| s.next_source_offset), Some(half as i64));
    strait.stop().await;

    // Halted at start: nothing written after the foreign records, nothing skipped.
    let (replicated, foreign) = split(&read_target(&target.bootstrap(), &topic));
    assert_eq!(foreign, FOREIGN_RECORDS);
    assert_eq!(assert_prefix(&replicated, &all, half as i64), half);

    replicate_all_with_skip(&source, &target, &topic, &all).await;
}
