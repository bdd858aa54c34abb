//! `start_from = "latest"` applies only at a replication's very first start, on Apache Kafka,
//! read back with librdkafka: the records a topic held then are skipped, but a topic created
//! and a partition added while strait runs, or a topic created while it was stopped, are
//! replicated from their beginning, every record.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;

use common::{Kafka, Rec, Strait};
use strait::config::StartFrom;
use strait::kafka::TopicPartition;

const TIMEOUT: Duration = Duration::from_secs(60);

/// Sends `n` new records to each of `partitions` of `topic`; returns them per partition.
async fn write(bootstrap: &str, topic: &str, label: &str, partitions: &[i32], n: usize) -> BTreeMap<i32, Vec<Rec>> {
    // A new producer each time: it learns of new topics and partitions at once.
    let p = common::producer(bootstrap, &[("linger.ms", "2")]);
    let mut sent = BTreeMap::new();
    for &part in partitions {
        let recs = common::recent_records(label, part, n);
        common::send_all(&p, topic, part, &recs).await;
        sent.insert(part, recs);
    }
    sent
}

/// Reads `topic` on the target until `want` arrived (or the deadline), then asserts it holds
/// exactly `want`: those records in order, and nothing else.
async fn assert_target_holds(target: &str, topic: &str, want: &BTreeMap<i32, Vec<Rec>>) {
    let counts: BTreeMap<i32, usize> = want.iter().map(|(p, v)| (*p, v.len())).collect();
    let got = common::consume_async(target, topic, &counts, TIMEOUT).await;
    for (p, w) in want {
        assert_eq!(&got[p], w, "{topic}/{p} on the target: exactly these records, in order");
    }
    let ends = common::high_watermarks(target, topic, want.len() as i32).await;
    let want_ends: BTreeMap<i32, i64> = counts.iter().map(|(p, n)| (*p, *n as i64)).collect();
    assert_eq!(ends, want_ends, "{topic}: nothing else on the target");
}

/// Whether strait has started a task for `topic`/`partition`.
fn started(strait: &Strait, topic: &str, partition: i32) -> bool {
    strait.progress.get(&TopicPartition::new(topic, partition)).is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_applies_at_the_first_start_only_and_later_topics_and_partitions_start_at_their_beginning() {
    let Some(source) = Kafka::single().await else {
        return;
    };
    let Some(target) = Kafka::single().await else {
        return;
    };
    let (src, dst) = (source.plain_bootstrap(), target.plain_bootstrap());
    let base = common::topic("latest");
    let first = format!("{base}-first");
    common::create_topic(&src, &first, 1, &[]).await;
    // Old records, skipped at the first start: the target's first topic never holds them.
    write(&src, &first, "old", &[0], 20).await;
    assert_eq!(
        common::high_watermarks(&src, &first, 1).await[&0],
        20,
        "premise: old records on the source"
    );

    let mut config = common::config(&source.bootstrap(), &target.bootstrap(), &format!("{base}-.*"));
    config.start_from = StartFrom::Latest;
    // Rounds far enough apart that what is written right after one is there before the next.
    config.topics.refresh_secs = 15;
    let strait = Strait::start(config.clone());
    let tp = TopicPartition::new(first.clone(), 0);
    common::eventually_sync("the first topic started at its end", TIMEOUT, || {
        strait.progress.get(&tp).is_some_and(|s| s.next_source_offset == 20)
    })
    .await;

    // While strait runs: records to the first topic, a partition added to it, a new topic.
    let mut want_first = write(&src, &first, "after-start", &[0], 10).await;
    let created = format!("{base}-created");
    common::create_topic(&src, &created, 2, &[]).await;
    let admin: AdminClient<DefaultClientContext> = common::client_config(&src).create().expect("admin client");
    let grown = admin
        .create_partitions(
            [&NewPartitions::new(&first, 2)],
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        )
        .await
        .expect("create partitions request");
    for r in grown {
        r.expect("first topic grown to 2 partitions");
    }
    let want_created = write(&src, &created, "created", &[0, 1], 15).await;
    want_first.extend(write(&src, &first, "added", &[1], 15).await);
    // Premise: strait found neither before their records were written, so starting them at
    // their end would skip every one.
    assert!(
        !started(&strait, &created, 0) && !started(&strait, &created, 1) && !started(&strait, &first, 1),
        "a discovery round came before the records were written: the test proves nothing"
    );

    assert_target_holds(&dst, &first, &want_first).await;
    assert_target_holds(&dst, &created, &want_created).await;
    strait.stop().await;

    // A topic created while strait is stopped: a restart is no first start.
    let while_stopped = format!("{base}-stopped");
    common::create_topic(&src, &while_stopped, 1, &[]).await;
    let want_stopped = write(&src, &while_stopped, "stopped", &[0], 12).await;
    let more = write(&src, &first, "after-restart", &[0], 5).await;
    want_first.entry(0).or_default().extend(more[&0].iter().cloned());
    let strait = Strait::start(config);
    assert_target_holds(&dst, &while_stopped, &want_stopped).await;
    assert_target_holds(&dst, &first, &want_first).await;
    strait.stop().await;
}
