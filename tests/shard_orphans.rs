//! A partition no running shard replicates, on Apache Kafka: two shards of one replication
//! (`shard.count = 2`) replicate a topic and go idle; shard 1 stops (a StatefulSet scaled down
//! without changing the count) and the source receives more records in one of its partitions.
//! Shard 0 reports exactly that partition orphaned, naming shard 1, in `/status`'s report and in
//! `strait_orphaned_partitions`, while shard 1's idle partitions, whose checkpoints are just as
//! old, are not; and it clears once shard 1 runs again. `shard.orphan_after_secs` is 3 s here.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Kafka, Rec, Strait};
use strait::replicate::Shard;

const PARTITIONS: i32 = 6;
const RECORDS: usize = 10;
const ORPHAN_AFTER_SECS: u64 = 3;

fn shard(kafka: &Kafka, topic: &str, index: u32) -> Strait {
    let mut c = common::config(&kafka.bootstrap(), &kafka.bootstrap(), topic);
    c.topics.prefix = "copy-".into();
    c.topics.exclude = vec!["copy-.*".into()];
    c.shard.index = index;
    c.shard.count = 2;
    c.shard.orphan_after_secs = ORPHAN_AFTER_SECS;
    Strait::start(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_shards_partition_that_keeps_receiving_records_is_reported_orphaned() {
    let Some(kafka) = Kafka::single().await else {
        return;
    };
    // Installed before strait runs, so its gauges land in this process's recorder.
    common::metrics::recorder();
    let topic = common::topic("orphans");
    common::create_topic(&kafka.bootstrap(), &topic, PARTITIONS, &[]).await;
    let shard1 = Shard { index: 1, count: 2 };
    let of_shard1: Vec<i32> = (0..PARTITIONS).filter(|&p| shard1.owns(&topic, p)).collect();
    // The premise: shard 1 owns a partition to orphan and another that stays idle, and shard 0
    // owns some too.
    assert!(
        of_shard1.len() >= 2 && of_shard1.len() < PARTITIONS as usize,
        "shard 1 owns {of_shard1:?} of {PARTITIONS}"
    );
    let producer = common::producer(&kafka.bootstrap(), &[]);
    for p in 0..PARTITIONS {
        for i in 0..RECORDS {
            let r = Rec::new(Some(format!("k{i}").as_bytes()), Some(b"v"), &[], common::now_ms());
            common::send(&producer, &topic, p, &r).await;
        }
    }
    let copy = format!("copy-{topic}");
    let everything: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, RECORDS as i64)).collect();

    let s0 = shard(&kafka, &topic, 0);
    let s1 = shard(&kafka, &topic, 1);
    common::eventually("both shards replicate everything", Duration::from_secs(60), || async {
        let got = common::high_watermarks(&kafka.bootstrap(), &copy, PARTITIONS).await;
        (got == everything).then_some(()).ok_or(got)
    })
    .await;

    // While both run, idle, shard 0 reports nothing: not before their checkpoints age, nor
    // after. (A pass that began before shard 1 caught up may still be shown for a refresh.)
    let caught_up = Instant::now();
    let settled = Duration::from_secs(2);
    let quiet_for = Duration::from_secs(ORPHAN_AFTER_SECS + 3);
    common::eventually_sync(
        "shard 0 checking past the threshold with both shards up",
        Duration::from_secs(60),
        || {
            let orphans = s0.health.orphans();
            if caught_up.elapsed() > settled {
                assert!(
                    orphans.as_ref().is_none_or(Vec::is_empty),
                    "orphans reported while every shard runs: {orphans:?}"
                );
            }
            orphans.is_some() && caught_up.elapsed() > quiet_for
        },
    )
    .await;
    let text = common::metrics::render();
    assert_eq!(
        common::metrics::sum(&text, "strait_orphaned_partitions", &[]),
        Some(0.0),
        "{text}"
    );

    // Shard 1 goes away; its first partition keeps receiving records, the others stay idle.
    s1.stop().await;
    let orphan = of_shard1[0];
    for i in 0..5 {
        let r = Rec::new(Some(format!("late{i}").as_bytes()), Some(b"v"), &[], common::now_ms());
        common::send(&producer, &topic, orphan, &r).await;
    }
    let stopped = Instant::now();
    let found = common::eventually_sync("shard 0 reporting the orphan", Duration::from_secs(60), || {
        s0.health.orphans().filter(|o| !o.is_empty())
    })
    .await;
    eprintln!(
        "orphan reported {:.1} s after shard 1 stopped: {found:?}",
        stopped.elapsed().as_secs_f64()
    );
    assert_eq!(found.len(), 1, "only the partition that moved is orphaned: {found:?}");
    let o = &found[0];
    assert_eq!((o.topic.as_str(), o.partition), (topic.as_str(), orphan));
    assert_eq!(o.owner_shard, 1);
    assert_eq!(o.behind_records, 5);
    assert!(o.checkpointed, "shard 1 had checkpointed it: {o:?}");
    // Exported: the gauge follows the pass that found it.
    common::eventually_sync("strait_orphaned_partitions = 1", Duration::from_secs(60), || {
        common::metrics::sum(&common::metrics::render(), "strait_orphaned_partitions", &[]) == Some(1.0)
    })
    .await;

    // Shard 1 back: it replicates the late records, checkpoints, and the orphan clears.
    let s1 = shard(&kafka, &topic, 1);
    common::eventually_sync("the orphan cleared on shard 0", Duration::from_secs(60), || {
        s0.health.orphans().is_some_and(|o| o.is_empty())
    })
    .await;
    common::eventually(
        "shard 1 replicating the late records",
        Duration::from_secs(60),
        || async {
            let got = common::high_watermarks(&kafka.bootstrap(), &copy, PARTITIONS).await;
            (got[&orphan] == RECORDS as i64 + 5).then_some(()).ok_or(got)
        },
    )
    .await;
    s1.stop().await;
    s0.stop().await;
}
