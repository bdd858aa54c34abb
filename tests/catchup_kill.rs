//! Fresh-first catch-up on Apache Kafka, with the real binary killed during it.
//!
//! The source holds a backlog of records with timestamps years old; strait starts with
//! `catchup.mode = "fresh_first"` under a budget, so each partition splits: the records that
//! arrive from then on (current timestamps) are written first, the backlog behind them. While
//! new records keep arriving, strait is killed with SIGKILL several times, each time after
//! `/status` showed a partition in the catch-up, and restarted: it resumes both ranges from the
//! checkpoint. A last run drains the backlog, merges the ranges (`/status` shows no split) and
//! stops with SIGTERM. librdkafka then reads the target: every source record exactly once
//! (compared whole: key, value, headers, timestamp), each range in source order, and fresh
//! records before the backlog's last ones.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{Kafka, Rec, Running, StraitCmd};

const PARTITIONS: i32 = 2;
/// Backlog records per partition.
const BACKLOG: usize = 1500;
/// Bytes of each value: random, so batches cost the budget what they hold.
const VALUE_BYTES: usize = 600;
const KILLS: usize = 5;

fn spawn_strait(source: &str, target: &str, topic: &str, log: &std::path::Path) -> Running {
    StraitCmd::new(&["run"])
        .env("STRAIT_SOURCE__BOOTSTRAP_SERVERS", source)
        .env("STRAIT_TARGET__BOOTSTRAP_SERVERS", target)
        .env("STRAIT_TOPICS__INCLUDE", topic)
        .env("STRAIT_TOPICS__REFRESH_SECS", "1")
        .env("STRAIT_CATCHUP__MODE", "fresh_first")
        .env("STRAIT_CATCHUP__FRESH_AFTER_SECS", "60")
        // About 4 s of backlog per partition at the budget: long enough to kill it in.
        .env("STRAIT_BUDGET__BYTES_PER_SEC", "400000")
        .env("STRAIT_BATCH__LINGER_MS", "10")
        .env("STRAIT_BATCH__MAX_BYTES", "32768")
        .env("STRAIT_FETCH__MAX_BYTES", "32768")
        .env("STRAIT_FETCH__MAX_WAIT_MS", "100")
        .env("STRAIT_CHECKPOINT__INTERVAL_MS", "300")
        .env("STRAIT_LOG", "info")
        .spawn_logging_to(log)
}

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Backlog record `i` of partition `p`: a timestamp years old.
fn backlog_record(p: i32, i: usize) -> Rec {
    let key = format!("backlog-{p}-{i:06}");
    let value = noise((p as u64) << 32 | i as u64, VALUE_BYTES);
    Rec::new(
        Some(key.as_bytes()),
        Some(&value),
        &[("range", Some(b"backlog"))],
        1_600_000_000_000 + i as i64,
    )
}

/// Fresh record `i` of partition `p`: produced now, with the current time.
fn fresh_record(p: i32, i: usize) -> Rec {
    let key = format!("fresh-{p}-{i:06}");
    let value = noise(1 << 48 | (p as u64) << 32 | i as u64, VALUE_BYTES);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Rec::new(Some(key.as_bytes()), Some(&value), &[("range", Some(b"fresh"))], now)
}

/// The `catchup_split` of every partition a `/status` body lists (`None`: one range).
fn splits(status: &str) -> Vec<Option<i64>> {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(status) else {
        return Vec::new();
    };
    json["partitions"]
        .as_array()
        .map(|ps| ps.iter().map(|p| p["catchup_split"].as_i64()).collect())
        .unwrap_or_default()
}

/// Whether a `/status` body shows a partition in a catch-up.
fn in_catch_up(status: &str) -> bool {
    splits(status).iter().any(Option::is_some)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkills_during_a_fresh_first_catch_up_lose_nothing_and_duplicate_nothing() {
    let (Some(source), Some(target)) = (Kafka::single().await, Kafka::single().await) else {
        return;
    };
    let topic = common::topic("freshfirst");
    common::create_topic(&source.bootstrap(), &topic, PARTITIONS, &[]).await;
    let producer = common::producer(
        &source.bootstrap(),
        &[("linger.ms", "5"), ("enable.idempotence", "true")],
    );
    let mut sent: BTreeMap<i32, Vec<Rec>> = BTreeMap::new();
    for p in 0..PARTITIONS {
        let backlog: Vec<Rec> = (0..BACKLOG).map(|i| backlog_record(p, i)).collect();
        common::send_all(&producer, &topic, p, &backlog).await;
        sent.insert(p, backlog);
    }

    // New records keep arriving during the catch-up, about 100 a second per partition.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (topic, writing, producer) = (topic.clone(), Arc::clone(&writing), producer.clone());
        tokio::spawn(async move {
            let mut fresh: BTreeMap<i32, Vec<Rec>> = BTreeMap::new();
            let mut i = 0usize;
            while writing.load(Ordering::Relaxed) {
                for p in 0..PARTITIONS {
                    let r = fresh_record(p, i);
                    common::send(&producer, &topic, p, &r).await;
                    fresh.entry(p).or_default().push(r);
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            fresh
        })
    };

    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("strait.log");
    let mut kills_in_catch_up = 0;
    let mut first_split: BTreeMap<i32, i64> = BTreeMap::new();
    for kill in 0..KILLS {
        let mut strait = spawn_strait(&source.bootstrap(), &target.bootstrap(), &topic, &log);
        // The premise: the partition is in a catch-up when it is killed.
        let status = strait
            .wait_for("/status", "a partition in a fresh-first catch-up", |s, body| {
                s == 200 && in_catch_up(body)
            })
            .await;
        assert!(in_catch_up(&status));
        // Every run resumes the same catch-up: its split, as first seen per partition.
        for (p, split) in splits(&status).into_iter().enumerate() {
            if let Some(split) = split {
                first_split.entry(p as i32).or_insert(split);
            }
        }
        // Kill at varied points of the catch-up.
        tokio::time::sleep(Duration::from_millis(150 + (kill as u64 * 290) % 900)).await;
        if let Some((200, body)) = strait.get("/status").await {
            if in_catch_up(&body) {
                kills_in_catch_up += 1;
            }
        }
        strait.assert_running(&format!("before kill {kill}"));
        strait.kill();
    }
    writing.store(false, Ordering::Relaxed);
    let fresh = writer.await.expect("writer task");
    for (p, records) in fresh {
        sent.entry(p).or_default().extend(records);
    }
    assert_eq!(
        first_split.len(),
        PARTITIONS as usize,
        "every partition split: {first_split:?}"
    );
    assert!(
        kills_in_catch_up >= 3,
        "only {kills_in_catch_up} of {KILLS} kills hit a catch-up"
    );

    // A last run drains the backlog and merges back to one range.
    let mut strait = spawn_strait(&source.bootstrap(), &target.bootstrap(), &topic, &log);
    let expected: BTreeMap<i32, usize> = sent.iter().map(|(p, v)| (*p, v.len())).collect();
    let total: usize = expected.values().sum();
    common::eventually(
        "the target to hold every source record",
        Duration::from_secs(120),
        || {
            strait.assert_running("while draining");
            let (bootstrap, topic) = (target.bootstrap(), topic.clone());
            async move {
                let held: i64 = common::high_watermarks(&bootstrap, &topic, PARTITIONS)
                    .await
                    .values()
                    .sum();
                if held >= total as i64 {
                    Ok(())
                } else {
                    Err(format!("{held} of {total} on the target"))
                }
            }
        },
    )
    .await;
    strait
        .wait_for("/status", "every partition in one range again", |s, body| {
            let splits = splits(body);
            s == 200 && splits.len() == PARTITIONS as usize && splits.iter().all(Option::is_none)
        })
        .await;
    let exit = strait.terminate(Duration::from_secs(40)).await;
    assert!(exit.success(), "strait exit status {exit:?}");
    drop(strait);

    let got = common::consume(&target.bootstrap(), &topic, &expected, Duration::from_secs(60));
    let mut fresh_before_backlog = 0;
    for (p, want) in &sent {
        let have = &got[p];
        assert_eq!(
            have.len(),
            want.len(),
            "partition {p}: {} on the target, {} on the source (duplicates or loss)",
            have.len(),
            want.len()
        );
        let mut by_key: BTreeMap<Vec<u8>, &Rec> = BTreeMap::new();
        for r in have {
            let key = r.key.clone().expect("keyed");
            assert!(
                by_key.insert(key.clone(), r).is_none(),
                "partition {p}: {} twice",
                String::from_utf8_lossy(&key)
            );
        }
        for w in want {
            let key = w.key.clone().expect("keyed");
            let h = by_key
                .get(&key)
                .unwrap_or_else(|| panic!("partition {p}: {} missing", String::from_utf8_lossy(&key)));
            assert_eq!(*h, w, "partition {p}: {} differs", String::from_utf8_lossy(&key));
        }
        // Source offsets are the send order (no transactions). Each range (below the split,
        // from it on) in source order on the target, and records of the fresh range before the
        // backlog's last.
        let offset_of: BTreeMap<&Option<Vec<u8>>, usize> = want.iter().enumerate().map(|(i, r)| (&r.key, i)).collect();
        let offsets: Vec<usize> = have.iter().map(|r| offset_of[&r.key]).collect();
        let split = first_split.get(p).map_or(0, |s| *s as usize);
        for (name, in_range) in [("backlog", true), ("fresh", false)] {
            let range: Vec<usize> = offsets.iter().copied().filter(|o| (*o < split) == in_range).collect();
            if let Some(i) = range.windows(2).position(|w| w[0] >= w[1]) {
                let near = &range[i.saturating_sub(3)..(i + 4).min(range.len())];
                panic!(
                    "partition {p}: {name} range (split {split}) out of source order near offsets {near:?}; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        }
        if let Some(last_backlog) = offsets.iter().rposition(|o| *o < split) {
            fresh_before_backlog += offsets[..last_backlog].iter().filter(|o| **o >= split).count();
        }
    }
    eprintln!(
        "{kills_in_catch_up} of {KILLS} kills during a catch-up (splits {first_split:?}); {fresh_before_backlog} new records \
         written before the backlog's last"
    );
    assert!(
        fresh_before_backlog > 0,
        "no new record was written before the backlog's last: fresh-first never took effect"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("fresh-first catch-up: new records first"),
        "no catch-up was entered; log:\n{text}"
    );
    // The reconcile path, not only checkpoint replay: a resume found records of a range that
    // the killed run wrote after its last checkpoint.
    let found = |range: &str| {
        text.lines()
            .filter_map(|l| l.split(&format!("{range}_already_written=")).nth(1))
            .filter(|rest| rest.split_whitespace().next().and_then(|n| n.parse::<i64>().ok()) > Some(0))
            .count()
    };
    let (backlog_found, fresh_found) = (found("backlog"), found("fresh"));
    eprintln!("resumes finding their own records in the tail: {backlog_found} backlog, {fresh_found} fresh");
    assert!(
        backlog_found + fresh_found > 0,
        "no resume found records written after the last checkpoint: the two-range reconcile was not exercised"
    );
}
