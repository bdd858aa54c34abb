//! `strait verify` (the real binary) on Apache Kafka: a target copy written directly with
//! librdkafka in which one byte of one header of one record differs is reported as exactly that
//! record; a clean replication by strait is equal, up to its checkpoints.
//!
//! `STRAIT_VERIFY_RECORDS` sets the size of the clean replication (default 100,000; the long
//! run uses 1,000,000).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Kafka, Rec, Strait, StraitCmd};

/// Records of the copy with one changed byte.
const COPY_RECORDS: usize = 100_000;
/// The record whose header differs in the copy.
const CHANGED: usize = 54_321;

fn record(i: usize, tag: u8) -> Rec {
    Rec::new(
        Some(format!("trace-{:06}", i % 5000).as_bytes()),
        Some(format!("span {i} {}", "x".repeat(i % 40)).as_bytes()),
        &[
            ("uber-trace-id", Some(&[b'a', b'b', tag])),
            ("n", Some(i.to_string().as_bytes())),
        ],
        1_700_000_000_000 + (i as i64) / 10,
    )
}

fn verify_cmd(source: &Kafka, target: &Kafka, topic: &str) -> StraitCmd {
    StraitCmd::new(&["verify"])
        .env("STRAIT_SOURCE__BOOTSTRAP_SERVERS", source.bootstrap())
        .env("STRAIT_TARGET__BOOTSTRAP_SERVERS", target.bootstrap())
        .env("STRAIT_TOPICS__INCLUDE", topic)
}

/// The table line of partition 0 of `topic`.
fn line_of<'a>(table: &'a str, topic: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.starts_with(&format!("{topic}/0 ")))
        .unwrap_or_else(|| panic!("no line for {topic}/0 in:\n{table}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_changed_header_byte_is_reported_as_exactly_that_record() {
    let (Some(source), Some(target)) = (Kafka::single().await, Kafka::single().await) else {
        return;
    };
    let topic = common::topic("verify-copy");
    common::create_topic(&source.bootstrap(), &topic, 1, &[]).await;
    common::create_topic(&target.bootstrap(), &topic, 1, &[]).await;
    let original: Vec<Rec> = (0..COPY_RECORDS).map(|i| record(i, b'c')).collect();
    let mut copy = original.clone();
    copy[CHANGED] = record(CHANGED, b'd');
    assert_ne!(copy[CHANGED], original[CHANGED], "the premise: one header byte differs");
    let (sp, tp) = (
        common::producer(&source.bootstrap(), &[("linger.ms", "20")]),
        common::producer(&target.bootstrap(), &[("linger.ms", "20")]),
    );
    tokio::join!(
        common::send_all(&sp, &topic, 0, &original),
        common::send_all(&tp, &topic, 0, &copy)
    );

    let ran = verify_cmd(&source, &target, &topic).output_async().await;
    let table = ran.text();
    assert_eq!(ran.code(), Some(1), "verify exits 1 on a difference:\n{table}");
    let line = line_of(&table, &topic);
    let cols: Vec<&str> = line.split_whitespace().collect();
    // partition, source offsets, target offsets, compared, differ, src only, tgt only, s, ->, t
    assert_eq!(
        &cols[..10],
        &[
            &format!("{topic}/0"),
            &format!("0..{COPY_RECORDS}"),
            &format!("0..{COPY_RECORDS}"),
            &COPY_RECORDS.to_string(),
            "1",
            "0",
            "0",
            &CHANGED.to_string(),
            "->",
            &CHANGED.to_string(),
        ][..],
        "{table}"
    );
    assert!(line.ends_with("DIFFERENT"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_replication_is_equal_up_to_its_checkpoints() {
    let (Some(source), Some(target)) = (Kafka::single().await, Kafka::single().await) else {
        return;
    };
    let records: usize = std::env::var("STRAIT_VERIFY_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let topic = common::topic("verify-clean");
    common::create_topic(&source.bootstrap(), &topic, 1, &[]).await;
    let all: Vec<Rec> = (0..records).map(|i| record(i, b'c')).collect();
    let sp = common::producer(&source.bootstrap(), &[("linger.ms", "20"), ("compression.type", "lz4")]);
    common::send_all(&sp, &topic, 0, &all).await;

    let strait = Strait::start(common::config(&source.bootstrap(), &target.bootstrap(), &topic));
    let tp = strait::kafka::TopicPartition::new(topic.clone(), 0);
    let progress = strait.progress.clone();
    common::eventually_sync("everything replicated", Duration::from_secs(600), || {
        progress
            .get(&tp)
            .is_some_and(|s| s.next_source_offset >= records as i64)
    })
    .await;
    // Stopping writes the final checkpoint.
    strait.stop().await;
    let ends = common::high_watermarks(&target.plain_bootstrap(), &topic, 1).await;
    assert_eq!(
        ends,
        BTreeMap::from([(0, records as i64)]),
        "the premise: all replicated"
    );

    let ran = verify_cmd(&source, &target, &topic).output_async().await;
    let table = ran.text();
    assert_eq!(ran.code(), Some(0), "verify exits 0 on a clean copy:\n{table}");
    let line = line_of(&table, &topic);
    assert!(
        line.contains(&format!("0..{records}")) && line.ends_with("equal"),
        "compared up to the checkpoint: {table}"
    );
    eprintln!(
        "{records} records replicated and verified equal in {:.1} s:\n{table}",
        ran.took.as_secs_f64()
    );
}
