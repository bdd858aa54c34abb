//! The WAN budget is the total of all shards: three shards of one replication, each with the
//! same `budget.bytes_per_sec`, together send no more than that figure (each takes a third).
//!
//! Only an upper bound is asserted, so a slow machine cannot fail it: the token buckets admit at
//! most their rate over any time since they started, plus the burst and one batch of debt each.

mod common;

use std::time::{Duration, Instant};

use common::{Kafka, Rec, Strait};

const PARTITIONS: i32 = 6;
const SHARDS: u32 = 3;
const BUDGET: u64 = 300_000;
const BATCH: usize = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_together_hold_the_total_budget() {
    let Some(kafka) = Kafka::single().await else {
        return;
    };
    let topic = common::topic("shardbudget");
    common::create_topic(&kafka.bootstrap(), &topic, PARTITIONS, &[]).await;
    // Incompressible values, so the bytes on the wire are the bytes read: 6 MB, 20 s of budget.
    let producer = common::producer(&kafka.bootstrap(), &[("linger.ms", "5")]);
    let mut written = 0usize;
    for i in 0..600i32 {
        let value: Vec<u8> = (0..10_000).map(|_| rand::random::<u8>()).collect();
        let key = format!("k{i}");
        let r = Rec::new(
            Some(key.as_bytes()),
            Some(value.as_slice()),
            &[],
            1_700_000_000_000 + i64::from(i),
        );
        common::send(&producer, &topic, i % PARTITIONS, &r).await;
        written += value.len();
    }

    let started = Instant::now();
    let shards: Vec<Strait> = (0..SHARDS)
        .map(|index| {
            let mut c = common::config(&kafka.bootstrap(), &kafka.bootstrap(), &topic);
            c.topics.prefix = "copy-".into();
            c.topics.exclude = vec!["copy-.*".into()];
            c.shard.index = index;
            c.shard.count = SHARDS;
            c.budget.bytes_per_sec = BUDGET;
            c.batch.max_bytes = BATCH;
            Strait::start(c)
        })
        .collect();
    let sent = |shards: &[Strait]| -> Vec<u64> { shards.iter().map(|s| s.progress.totals().wire_bytes).collect() };
    // The premise: every shard sends, and the backlog lasts past the measurement.
    common::eventually_sync("every shard sending", Duration::from_secs(60), || {
        sent(&shards).iter().all(|&b| b > 0)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let per_shard = sent(&shards);
    let elapsed = started.elapsed().as_secs_f64();
    let total: u64 = per_shard.iter().sum();
    assert!((total as usize) < written, "the backlog outlasted the measurement");

    // Each shard's bucket: its third of the budget since it started, its burst (a tenth of a
    // second of its share), one batch admitted in debt, and the 0.5% pacing margin.
    let share = BUDGET / u64::from(SHARDS);
    let bound = (BUDGET as f64 * elapsed * 1.005) as u64 + u64::from(SHARDS) * (share / 10 + BATCH as u64);
    eprintln!(
        "3 shards, budget {BUDGET} B/s in total: {total} bytes in {elapsed:.1} s ({:.0} B/s), per shard {per_shard:?}, bound {bound}",
        total as f64 / elapsed
    );
    assert!(
        total <= bound,
        "3 shards sent {total} bytes in {elapsed:.1} s, more than the total budget allows ({bound})"
    );
    for s in shards {
        s.stop().await;
    }
}
