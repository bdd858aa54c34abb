//! Faults and topology changes against real local brokers: the target broker restarted while
//! strait writes, a topic created after start (with a prefix), a record larger than the target
//! accepts.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Kafka, Rec, Strait};
use strait::replicate::PartitionState;

fn numbered(i: usize, size: usize) -> Rec {
    let value = format!("{i:08}-{}", "s".repeat(size));
    Rec::new(
        Some(format!("k{i}").as_bytes()),
        Some(value.as_bytes()),
        &[("n", Some(b"1"))],
        common::now_ms(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_restart_mid_run_loses_and_duplicates_nothing() {
    let Some(source) = Kafka::single().await else {
        return;
    };
    let Some(mut target) = Kafka::single().await else {
        return;
    };
    let topic = common::topic("restart");
    common::create_topic(&source.bootstrap(), &topic, 2, &[]).await;
    let p = common::producer(&source.bootstrap(), &[("linger.ms", "2"), ("compression.type", "lz4")]);
    let mut sent: BTreeMap<i32, Vec<Rec>> = BTreeMap::new();
    let mut write = |from: usize, to: usize| {
        let recs: Vec<(i32, Rec)> = (from..to).map(|i| ((i % 2) as i32, numbered(i, 200))).collect();
        for (p, r) in &recs {
            sent.entry(*p).or_default().push(r.clone());
        }
        recs
    };
    for (part, r) in write(0, 2000) {
        common::send(&p, &topic, part, &r).await;
    }
    let strait = Strait::start(common::config(&source.bootstrap(), &target.bootstrap(), &topic));
    let progress = strait.progress.clone();
    common::eventually_sync("first records on the target", Duration::from_secs(60), || {
        progress.totals().records > 0
    })
    .await;
    // A produce burst while the target goes away and comes back with its data.
    let burst = write(2000, 4000);
    let (half, rest) = burst.split_at(1000);
    for (part, r) in half {
        common::send(&p, &topic, *part, r).await;
    }
    target.restart().await;
    for (part, r) in rest {
        common::send(&p, &topic, *part, r).await;
    }
    let counts: BTreeMap<i32, usize> = sent.iter().map(|(p, v)| (*p, v.len())).collect();
    let progress = strait.progress.clone();
    common::eventually_sync("strait caught up", Duration::from_secs(120), || {
        let snap = progress.snapshot();
        counts.iter().all(|(p, n)| {
            snap.iter()
                .any(|(tp, s)| tp.partition == *p && tp.topic == topic && s.next_source_offset >= *n as i64)
        })
    })
    .await;
    strait.stop().await;
    let got = common::consume(&target.bootstrap(), &topic, &counts, Duration::from_secs(60));
    for (part, want) in &sent {
        assert_eq!(
            &got[part], want,
            "partition {part}: exactly the source records, once, in order"
        );
    }
    // Nothing beyond them (a duplicate would sit past the expected count).
    let cluster = strait::kafka::Cluster::new("check", vec![target.bootstrap()], "check", Duration::from_secs(10));
    for (part, n) in &counts {
        let tp = strait::kafka::TopicPartition::new(topic.clone(), *part);
        let end = cluster
            .list_offset(&tp, strait::kafka::OffsetSpec::Latest)
            .await
            .expect("target end");
        assert_eq!(end, *n as i64, "partition {part}: target end");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_created_after_start_is_replicated_under_its_prefix() {
    let Some(source) = Kafka::single().await else {
        return;
    };
    let Some(target) = Kafka::single().await else {
        return;
    };
    let base = common::topic("late");
    // A topic the filter matches from the start: strait taking it up proves it reached both
    // clusters and listed the source's topics before the late one exists.
    let canary = format!("{base}-canary");
    common::create_topic(&source.bootstrap(), &canary, 1, &[]).await;
    let mut cfg = common::config(&source.bootstrap(), &target.bootstrap(), &format!("{base}-.*"));
    cfg.topics.prefix = "onprem.".into();
    let strait = Strait::start(cfg);
    let progress = strait.progress.clone();
    let listed = || progress.snapshot().into_keys().map(|tp| tp.topic).collect::<Vec<_>>();
    common::eventually_sync(
        "strait listed the source topics (the canary)",
        Duration::from_secs(60),
        || {
            let topics = listed();
            topics.contains(&canary).then_some(()).ok_or(topics)
        },
    )
    .await;
    assert_eq!(
        listed(),
        vec![canary.clone()],
        "only the canary before the late topic exists"
    );

    let topic = format!("{base}-spans");
    common::create_topic(&source.bootstrap(), &topic, 3, &[]).await;
    let p = common::producer(&source.bootstrap(), &[]);
    let mut want: BTreeMap<i32, Vec<Rec>> = BTreeMap::new();
    for i in 0..90 {
        let r = numbered(i, 10);
        common::send(&p, &topic, (i % 3) as i32, &r).await;
        want.entry((i % 3) as i32).or_default().push(r);
    }
    let counts: BTreeMap<i32, usize> = want.iter().map(|(p, v)| (*p, v.len())).collect();
    let got = common::consume(
        &target.bootstrap(),
        &format!("onprem.{topic}"),
        &counts,
        Duration::from_secs(60),
    );
    assert_eq!(got, want, "the new topic arrives whole under onprem.{topic}");
    strait.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_larger_than_the_target_accepts_halts_only_its_partition() {
    let Some(source) = Kafka::single().await else {
        return;
    };
    let Some(target) = Kafka::single().await else {
        return;
    };
    let topic = common::topic("large");
    common::create_topic(&source.bootstrap(), &topic, 2, &[]).await;
    // The target topic exists already, with a small size limit.
    common::create_topic(&target.bootstrap(), &topic, 2, &[("max.message.bytes", "4096")]).await;
    let p = common::producer(&source.bootstrap(), &[]);
    let small: Vec<Rec> = (0..20).map(|i| numbered(i, 100)).collect();
    for r in &small {
        common::send(&p, &topic, 0, r).await;
    }
    common::send(&p, &topic, 1, &numbered(0, 100)).await;
    common::send(&p, &topic, 1, &numbered(1, 10_000)).await;

    let strait = Strait::start(common::config(&source.bootstrap(), &target.bootstrap(), &topic));
    let progress = strait.progress.clone();
    let tp1 = strait::kafka::TopicPartition::new(topic.clone(), 1);
    common::eventually_sync("partition 1 halted", Duration::from_secs(60), || {
        matches!(progress.get(&tp1).map(|s| s.state), Some(PartitionState::Halted(_)))
    })
    .await;
    let Some(PartitionState::Halted(why)) = progress.get(&tp1).map(|s| s.state) else {
        unreachable!()
    };
    assert!(why.contains(&format!("{topic}/1")) && why.contains("offset 1"), "{why}");
    assert!(why.contains("max.message.bytes"), "the error says what to raise: {why}");
    // The other partition and the record before the large one still arrive.
    let got = common::consume(
        &target.bootstrap(),
        &topic,
        &BTreeMap::from([(0, 20), (1, 1)]),
        Duration::from_secs(60),
    );
    assert_eq!(got[&0], small);
    assert_eq!(
        got[&1],
        vec![numbered(0, 100)]
            .into_iter()
            .map(|mut r| {
                r.timestamp = got[&1][0].timestamp;
                r
            })
            .collect::<Vec<_>>()
    );
    strait.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_truncated_while_stopped_is_a_counted_gap_without_duplicates() {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::{Offset, TopicPartitionList};

    let Some(source) = Kafka::single().await else {
        return;
    };
    let Some(target) = Kafka::single().await else {
        return;
    };
    let topic = common::topic("gap");
    common::create_topic(&source.bootstrap(), &topic, 1, &[]).await;
    let p = common::producer(&source.bootstrap(), &[("linger.ms", "2")]);
    let all: Vec<Rec> = (0..200).map(|i| numbered(i, 50)).collect();
    for r in &all[..100] {
        common::send(&p, &topic, 0, r).await;
    }
    let tp = strait::kafka::TopicPartition::new(topic.clone(), 0);

    // First run: replicate 100 records, stop (final checkpoint).
    let strait = Strait::start(common::config(&source.bootstrap(), &target.bootstrap(), &topic));
    let progress = strait.progress.clone();
    common::eventually_sync("first 100 replicated", Duration::from_secs(60), || {
        progress.get(&tp).is_some_and(|s| s.next_source_offset >= 100)
    })
    .await;
    strait.stop().await;

    // While strait is stopped: 100 more records, and the source deletes up to offset 160.
    for r in &all[100..] {
        common::send(&p, &topic, 0, r).await;
    }
    let admin: AdminClient<DefaultClientContext> = common::client_config(&source.bootstrap()).create().expect("admin");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(160))
        .expect("offset");
    admin
        .delete_records(&tpl, &AdminOptions::new())
        .await
        .expect("delete records");

    // Second run: 60 records (100..160) were never replicated and are gone: a gap of exactly 60.
    let strait = Strait::start(common::config(&source.bootstrap(), &target.bootstrap(), &topic));
    let progress = strait.progress.clone();
    common::eventually_sync("caught up after the gap", Duration::from_secs(60), || {
        progress.get(&tp).is_some_and(|s| s.next_source_offset >= 200)
    })
    .await;
    assert_eq!(progress.get(&tp).map(|s| s.gap_records), Some(60), "gap counter");
    strait.stop().await;

    let got = common::consume(
        &target.bootstrap(),
        &topic,
        &BTreeMap::from([(0, 140)]),
        Duration::from_secs(30),
    );
    let want: Vec<Rec> = all[..100].iter().chain(&all[160..]).cloned().collect();
    assert_eq!(got[&0], want, "target holds 0..100 and 160..200, each once");
    let cluster = strait::kafka::Cluster::new("check", vec![target.bootstrap()], "check", Duration::from_secs(10));
    let end = cluster
        .list_offset(&tp, strait::kafka::OffsetSpec::Latest)
        .await
        .expect("target end");
    assert_eq!(end, 140, "nothing beyond the 140 expected records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_flow_end_to_end_without_any_data() {
    let Some(source) = Kafka::single().await else {
        return;
    };
    let Some(target) = Kafka::single().await else {
        return;
    };
    let hb = common::topic("hb");
    // The include list matches nothing: only heartbeats flow.
    let mut cfg = common::config(&source.bootstrap(), &target.bootstrap(), "no-such-topic-.*");
    cfg.heartbeats.enabled = true;
    cfg.heartbeats.topic = hb.clone();
    cfg.heartbeats.interval_ms = 100;
    cfg.replication.id = "hb-test".into();
    let strait = Strait::start(cfg);
    let got = common::consume(
        &target.bootstrap(),
        &hb,
        &BTreeMap::from([(0, 5)]),
        Duration::from_secs(60),
    );
    strait.stop().await;
    let beats = &got[&0];
    assert!(beats.len() >= 5, "{} heartbeats on the target", beats.len());
    for b in beats {
        assert_eq!(b.key.as_deref(), Some(&b"hb-test"[..]));
        let doc: serde_json::Value = serde_json::from_slice(b.value.as_deref().unwrap_or_default()).expect("json");
        assert_eq!(
            doc["timestamp_ms"].as_i64(),
            b.timestamp,
            "value and record timestamp agree"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_behind_its_checkpoint_halts_unless_told_to_replicate_again() {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;

    let Some(source) = Kafka::single().await else {
        return;
    };
    let Some(target) = Kafka::single().await else {
        return;
    };
    let topic = common::topic("reset");
    common::create_topic(&source.bootstrap(), &topic, 1, &[]).await;
    let p = common::producer(&source.bootstrap(), &[]);
    let all: Vec<Rec> = (0..50).map(|i| numbered(i, 20)).collect();
    for r in &all {
        common::send(&p, &topic, 0, r).await;
    }
    let tp = strait::kafka::TopicPartition::new(topic.clone(), 0);
    let strait = Strait::start(common::config(&source.bootstrap(), &target.bootstrap(), &topic));
    let progress = strait.progress.clone();
    common::eventually_sync("50 replicated", Duration::from_secs(60), || {
        progress.get(&tp).is_some_and(|s| s.next_source_offset >= 50)
    })
    .await;
    strait.stop().await;

    // The target topic is deleted and recreated empty; the checkpoint still says 50.
    let admin: AdminClient<DefaultClientContext> = common::client_config(&target.bootstrap()).create().expect("admin");
    for r in admin
        .delete_topics(&[&topic], &AdminOptions::new())
        .await
        .expect("delete topics")
    {
        r.expect("target topic deleted");
    }
    common::create_topic(&target.bootstrap(), &topic, 1, &[]).await;

    let strait = Strait::start(common::config(&source.bootstrap(), &target.bootstrap(), &topic));
    let progress = strait.progress.clone();
    common::eventually_sync("partition halted", Duration::from_secs(60), || {
        matches!(progress.get(&tp).map(|s| s.state), Some(PartitionState::Halted(_)))
    })
    .await;
    let Some(PartitionState::Halted(why)) = progress.get(&tp).map(|s| s.state) else {
        unreachable!()
    };
    // The target topic has a new id: recreated, whatever it holds now.
    assert!(
        why.contains("target topic") && why.contains("was recreated") && why.contains("on_target_reset"),
        "{why}"
    );
    strait.stop().await;

    let mut cfg = common::config(&source.bootstrap(), &target.bootstrap(), &topic);
    cfg.on_target_reset = strait::config::OnTargetReset::ReplicateAgain;
    let strait = Strait::start(cfg);
    let got = common::consume(
        &target.bootstrap(),
        &topic,
        &BTreeMap::from([(0, 50)]),
        Duration::from_secs(60),
    );
    assert_eq!(got[&0], all, "replicated again from the start");
    strait.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_partitions_share_a_small_fetch_buffer_without_stalling() {
    let Some(source) = Kafka::single().await else {
        return;
    };
    let Some(target) = Kafka::single().await else {
        return;
    };
    let topic = common::topic("buffer");
    let partitions = 24;
    common::create_topic(&source.bootstrap(), &topic, partitions, &[]).await;
    let p = common::producer(
        &source.bootstrap(),
        &[("linger.ms", "20"), ("compression.type", "zstd")],
    );
    let mut want: BTreeMap<i32, Vec<Rec>> = BTreeMap::new();
    for i in 0..2400 {
        want.entry((i % partitions as usize) as i32)
            .or_default()
            .push(numbered(i, 2000));
    }
    for (part, recs) in &want {
        common::send_all(&p, &topic, *part, recs).await;
    }
    // 1 MiB for 24 partitions whose data is ~4.8 MB uncompressed: they must take turns.
    let mut cfg = common::config(&source.bootstrap(), &target.bootstrap(), &topic);
    cfg.fetch.buffer_max_bytes = 1 << 20;
    let strait = Strait::start(cfg);
    let counts: BTreeMap<i32, usize> = want.iter().map(|(p, v)| (*p, v.len())).collect();
    let got = common::consume(&target.bootstrap(), &topic, &counts, Duration::from_secs(120));
    strait.stop().await;
    for (part, w) in &want {
        assert_eq!(&got[part], w, "partition {part}");
    }
}
