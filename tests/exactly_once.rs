//! Exactly-once resume of the real binary: strait is killed with SIGKILL at varied points while
//! the source keeps growing, restarted each time, and in the end the target holds every source
//! record exactly once, byte-identical and in order (read back with librdkafka).
//!
//! `STRAIT_KILL_CYCLES` sets the number of kill cycles (default 5; the long run uses 20).
//!
//! A second run does the same against a target whose broker forgets idempotent producers at
//! once (`producer.id.expiration.ms`; the records carry timestamps years old, and Kafka ages a
//! producer by its last batch's timestamp), so strait writes with producer state the broker has
//! lost besides the kills: Kafka 4 then accepts any sequence from the unknown producer (it no
//! longer answers UNKNOWN_PRODUCER_ID), so the broker's duplicate detection is gone and only
//! strait's reconcile keeps the target exact. The premise is checked with Kafka's own
//! `describe-producers`: the first run leaves strait's producers on the target, this one none.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{Kafka, KafkaSpec, Rec, Running, StraitCmd};
use strait::kafka::{Cluster, OffsetSpec, TopicPartition};

const PARTITIONS: i32 = 3;

fn spawn_strait(source: &str, target: &str, topic: &str, log: &std::path::Path) -> Running {
    StraitCmd::new(&["run"])
        .env("STRAIT_SOURCE__BOOTSTRAP_SERVERS", source)
        .env("STRAIT_TARGET__BOOTSTRAP_SERVERS", target)
        .env("STRAIT_TOPICS__INCLUDE", topic)
        .env("STRAIT_TOPICS__REFRESH_SECS", "1")
        .env("STRAIT_BATCH__LINGER_MS", "10")
        .env("STRAIT_FETCH__MAX_WAIT_MS", "100")
        .env("STRAIT_FETCH__MAX_BYTES", "16384")
        .env("STRAIT_BATCH__MAX_BYTES", "65536")
        .env("STRAIT_CHECKPOINT__INTERVAL_MS", "300")
        .env("STRAIT_LOG", "info")
        .env("STRAIT_LOG_FORMAT", "json")
        .spawn_logging_to(log)
}

async fn target_total(cluster: &Cluster, topic: &str) -> i64 {
    let mut total = 0;
    for p in 0..PARTITIONS {
        total += cluster
            .list_offset(&TopicPartition::new(topic, p), OffsetSpec::Latest)
            .await
            .unwrap_or(0);
    }
    total
}

/// Waits until the target holds at least `want` records of `topic` while `strait` keeps
/// running; returns how many it holds.
async fn target_reaches(strait: &mut Running, cluster: &Cluster, topic: &str, want: i64, what: &str) -> i64 {
    common::eventually(what, Duration::from_secs(120), || {
        strait.assert_running(&format!("before {what}"));
        let log = strait.log();
        async move {
            let total = target_total(cluster, topic).await;
            if total >= want {
                Ok(total)
            } else {
                Err(format!("{total} of {want} on the target; log:\n{log}"))
            }
        }
    })
    .await
}

/// How many partition resumes found records of strait's beyond the checkpoint (JSON log lines
/// with `"already_written":N`, N > 0).
fn resumes_with_a_tail(log: &str) -> usize {
    log.lines()
        .filter_map(|l| l.split("\"already_written\":").nth(1))
        .filter(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse::<i64>()
                .unwrap_or(0)
                > 0
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_cycles_lose_nothing_and_duplicate_nothing() {
    let Some(target) = Kafka::single().await else {
        return;
    };
    let topic = kill_cycles(&target).await;
    assert!(
        producers_on(&target, &topic) > 0,
        "the target keeps strait's producer state by default"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_producer_state_on_the_target_loses_and_duplicates_nothing() {
    let Some(target) = Kafka::start(
        KafkaSpec::default()
            .prop("producer.id.expiration.ms", "1000")
            .prop("producer.id.expiration.check.interval.ms", "500"),
    )
    .await
    else {
        return;
    };
    let topic = kill_cycles(&target).await;
    assert_eq!(
        producers_on(&target, &topic),
        0,
        "the target was meant to have forgotten strait's producers"
    );
}

/// Producers the target broker keeps state for on `topic`'s partitions (Kafka's
/// `TransactionsCommand describe-producers`).
fn producers_on(target: &Kafka, topic: &str) -> usize {
    let bootstrap = target.plain_bootstrap();
    (0..PARTITIONS)
        .map(|p| {
            let out = target.tool(
                "org.apache.kafka.tools.TransactionsCommand",
                &[
                    "--bootstrap-server",
                    &bootstrap,
                    "describe-producers",
                    "--topic",
                    topic,
                    "--partition",
                    &p.to_string(),
                ],
            );
            out.lines()
                .filter(|l| l.split_whitespace().next().is_some_and(|w| w.parse::<i64>().is_ok()))
                .count()
        })
        .sum()
}

/// Kills strait (the real binary) at varied points while the source grows, restarts it, and
/// checks that the target holds every source record exactly once, in order, and that at least
/// one restart took the reconcile path (found records of its own beyond the checkpoint), the
/// premise of both tests. Returns the topic.
async fn kill_cycles(target: &Kafka) -> String {
    let Some(source) = Kafka::single().await else {
        return String::new();
    };
    let topic = common::topic("eos");
    common::create_topic(&source.bootstrap(), &topic, PARTITIONS, &[]).await;
    let cycles: usize = std::env::var("STRAIT_KILL_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("strait.log");

    // The source keeps growing during the whole test, in every codec.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (bootstrap, topic, writing) = (source.bootstrap(), topic.clone(), Arc::clone(&writing));
        tokio::spawn(async move {
            let codecs = ["none", "gzip", "lz4", "zstd", "snappy"];
            let producers: Vec<_> = codecs
                .iter()
                .map(|c| {
                    common::producer(
                        &bootstrap,
                        &[
                            ("compression.type", c),
                            ("linger.ms", "5"),
                            ("enable.idempotence", "true"),
                        ],
                    )
                })
                .collect();
            let mut sent: BTreeMap<i32, Vec<Rec>> = BTreeMap::new();
            let mut i = 0usize;
            while writing.load(Ordering::Relaxed) || i < 600 {
                let c = (i / 40) % codecs.len();
                let p = (i % PARTITIONS as usize) as i32;
                let r = common::tricky(p, codecs[c], i);
                common::send(&producers[c], &topic, p, &r).await;
                sent.entry(p).or_default().push(r);
                i += 1;
            }
            sent
        })
    };

    let target_cluster = Cluster::new("check", vec![target.bootstrap()], "check", Duration::from_secs(10));
    let mut seen = 0;
    for cycle in 0..cycles {
        let mut strait = spawn_strait(&source.bootstrap(), &target.bootstrap(), &topic, &log);
        // Kill at a varied point: after the target grew by a varied number of records.
        let grow = 20 + (cycle * 37) % 150;
        let from = seen;
        seen = target_reaches(
            &mut strait,
            &target_cluster,
            &topic,
            from + grow as i64,
            &format!("cycle {cycle}: the target grown by {grow} records beyond {from}"),
        )
        .await;
        if cycle == cycles / 2 {
            // One stop is a SIGTERM under load: a clean exit within the grace period.
            let exit = strait.terminate(Duration::from_secs(40)).await;
            assert!(
                exit.success(),
                "SIGTERM under load: exit {exit:?}; log:\n{}",
                strait.log()
            );
        } else {
            strait.kill();
        }
    }
    writing.store(false, Ordering::Relaxed);
    let sent = writer.await.expect("writer task");
    let counts: BTreeMap<i32, usize> = sent.iter().map(|(p, v)| (*p, v.len())).collect();
    let expected_total: usize = counts.values().sum();

    // A last run catches up and stops cleanly.
    let mut strait = spawn_strait(&source.bootstrap(), &target.bootstrap(), &topic, &log);
    target_reaches(
        &mut strait,
        &target_cluster,
        &topic,
        expected_total as i64,
        "the final run to catch up",
    )
    .await;
    // SIGTERM: exits 0 after writing its final checkpoint.
    let exit = strait.terminate(Duration::from_secs(40)).await;
    assert!(exit.success(), "strait exit status {exit:?}");
    drop(strait);

    // How often a restart found records written after the last checkpoint (the reconciliation
    // path, not just checkpoint replay).
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let reconciled = resumes_with_a_tail(&text);
    eprintln!("{cycles} kill cycles; {reconciled} partition resumes skipped records already on the target");

    let got = common::consume(&target.bootstrap(), &topic, &counts, Duration::from_secs(60));
    for (p, want) in &sent {
        let have = &got[p];
        assert_eq!(
            have.len(),
            want.len(),
            "partition {p}: {} on target, {} on source (duplicates or loss)",
            have.len(),
            want.len()
        );
        for (i, (h, w)) in have.iter().zip(want).enumerate() {
            assert_eq!(h, w, "partition {p}, record {i}");
        }
    }
    // Nothing more arrives after the check: the target end equals the source count exactly.
    assert_eq!(target_total(&target_cluster, &topic).await, expected_total as i64);
    assert!(
        reconciled > 0,
        "no restart found records written after the last checkpoint: the reconcile path was not exercised"
    );
    topic
}
