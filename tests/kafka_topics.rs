//! Topic lifecycle on Apache Kafka, read back with librdkafka: partitions added to a source
//! topic while strait runs, the source's data configs on a created target topic, its
//! replication factor and the source topic's own min.insync.replicas, a target topic
//! recreated under existing checkpoints (halt, then `replicate_again`), a source topic deleted
//! while strait replicates it (its partition halts), source records deleted
//! before strait read them by DeleteRecords and by retention (gaps counted exactly), a
//! LogAppendTime source topic, a snappy producer, and how Kafka 4 refuses a timestamp config it
//! removed.
//!
//! The tests share one source and one target cluster (no test stops a broker); every test has
//! topics of its own.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AlterConfig, NewPartitions, ResourceSpecifier};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Timestamp;
use rdkafka::{Offset, TopicPartitionList};

use common::target::{partition_count, records, topic_configs, wait_for_target};
use common::topics::{
    admin, assert_target_holds, clusters, metric, min_insync_replicas, numbered, options, read_to_end, replicas,
    watermarks, TIMEOUT,
};
use common::{Kafka, Rec, Strait};
use strait::http::{Endpoints, StatusInfo};
use strait::kafka::TopicPartition;
use strait::replicate::{Health, PartitionState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_added_to_the_source_grow_the_target_and_replicate() {
    let Some((source, target)) = clusters().await else {
        return;
    };
    let topic = common::topic("grow");
    common::create_topic(&source.plain_bootstrap(), &topic, 1, &[]).await;
    let p = common::producer(&source.plain_bootstrap(), &[("linger.ms", "2")]);
    let mut want: BTreeMap<i32, Vec<Rec>> = BTreeMap::new();
    let first: Vec<Rec> = (0..30).map(|i| numbered("p0", i, common::now_ms())).collect();
    common::send_all(&p, &topic, 0, &first).await;
    want.insert(0, first);

    let mut cfg = common::config(&source.bootstrap(), &target.bootstrap(), &topic);
    cfg.topics.refresh_secs = 1;
    let strait = Strait::start(cfg);
    wait_for_target(
        &target.plain_bootstrap(),
        &topic,
        &BTreeMap::from([(0, 30)]),
        "partition 0 on the target",
    )
    .await;
    assert_eq!(partition_count(&target.plain_bootstrap(), &topic).await, Some(1));

    let grown = admin(&source.plain_bootstrap())
        .create_partitions([&NewPartitions::new(&topic, 3)], &options())
        .await
        .expect("create partitions request");
    for r in grown {
        r.expect("source topic grown to 3 partitions");
    }
    common::eventually("3 source partitions in metadata", TIMEOUT, || {
        let bootstrap = source.plain_bootstrap();
        let topic = topic.clone();
        async move { partition_count(&bootstrap, &topic).await == Some(3) }
    })
    .await;
    // A new producer: the first one knows of one partition until its next metadata refresh.
    let p = common::producer(&source.plain_bootstrap(), &[("linger.ms", "2")]);
    for part in 0..3 {
        let label = format!("grown-p{part}");
        let recs: Vec<Rec> = (0..25).map(|i| numbered(&label, i, common::now_ms())).collect();
        common::send_all(&p, &topic, part, &recs).await;
        want.entry(part).or_default().extend(recs);
    }
    common::eventually(
        "the target topic grown to 3 partitions",
        Duration::from_secs(30),
        || {
            let bootstrap = target.plain_bootstrap();
            let topic = topic.clone();
            async move { partition_count(&bootstrap, &topic).await == Some(3) }
        },
    )
    .await;
    let counts: BTreeMap<i32, usize> = want.iter().map(|(p, v)| (*p, v.len())).collect();
    wait_for_target(
        &target.plain_bootstrap(),
        &topic,
        &counts,
        "every partition on the target",
    )
    .await;
    strait.stop().await;
    assert_target_holds(&target.plain_bootstrap(), &topic, &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_target_topic_has_the_source_data_configs() {
    let Some((source, target)) = clusters().await else {
        return;
    };
    let topic = common::topic("configs");
    let set = [
        ("retention.ms", "123456789"),
        ("cleanup.policy", "compact"),
        ("max.message.bytes", "2000000"),
        ("message.timestamp.type", "LogAppendTime"),
        ("min.compaction.lag.ms", "5000"),
        ("segment.bytes", "2097152"),
        ("min.insync.replicas", "1"),
    ];
    common::create_topic(&source.plain_bootstrap(), &topic, 2, &set).await;
    let p = common::producer(&source.plain_bootstrap(), &[]);
    common::send(&p, &topic, 0, &numbered("c", 0, common::now_ms())).await;
    common::send(&p, &topic, 1, &numbered("c", 1, common::now_ms())).await;

    let strait = Strait::start(common::config(&source.bootstrap(), &target.bootstrap(), &topic));
    wait_for_target(
        &target.plain_bootstrap(),
        &topic,
        &BTreeMap::from([(0, 1), (1, 1)]),
        "the records on the target",
    )
    .await;
    strait.stop().await;
    let config = topic_configs(&target.plain_bootstrap(), &topic).await;
    let value = |name: &str| config.get(name).and_then(|e| e.value.clone());
    for (name, want) in set {
        // A LogAppendTime source becomes CreateTime: the target keeps the source's times.
        let want = if want == "LogAppendTime" { "CreateTime" } else { want };
        assert_eq!(value(name).as_deref(), Some(want), "target topic's {name}");
    }
    assert_eq!(value("compression.type").as_deref(), Some("producer"));
    // min.insync.replicas=1 is also the broker's default: it was copied if the topic sets it.
    assert_eq!(
        min_insync_replicas(&target.plain_bootstrap(), &topic).await,
        (Some("1".to_owned()), true),
        "the source topic's own min.insync.replicas, set on the target topic"
    );
    assert_eq!(partition_count(&target.plain_bootstrap(), &topic).await, Some(2));
    // The broker's default replication factor, 1 on these one-node clusters.
    assert_eq!(replicas(&target.plain_bootstrap(), &topic), [1, 1]);
}

/// A source topic's min.insync.replicas above what the target topic's replicas can meet (2 on
/// a one-node target, whose default replication factor is 1), or only inherited from the source
/// broker, is left to the target's default; and `topics.replication_factor` is what strait asks
/// the target for: 2 on a one-node target is refused, and the topic is not created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_insync_replicas_is_copied_only_within_the_target_replication_factor() {
    let Some((source, target)) = clusters().await else {
        return;
    };
    let base = common::topic("min-insync");
    let (above, inherited, two) = (
        format!("{base}-above"),
        format!("{base}-inherited"),
        format!("{base}-two"),
    );
    let (src, dst) = (source.plain_bootstrap(), target.plain_bootstrap());
    // Kafka accepts a topic whose min.insync.replicas exceeds its replicas (acks=all then fails).
    for t in [&above, &two] {
        common::create_topic(&src, t, 1, &[("min.insync.replicas", "2")]).await;
    }
    common::create_topic(&src, &inherited, 1, &[]).await;
    assert_eq!(min_insync_replicas(&src, &above).await, (Some("2".to_owned()), true));
    assert_eq!(
        min_insync_replicas(&src, &inherited).await,
        (Some("1".to_owned()), false),
        "the premise: inherited from the source broker, not set on the topic"
    );
    let p = common::producer(&src, &[]);
    for t in [&above, &inherited] {
        common::send(&p, t, 0, &numbered("m", 0, common::now_ms())).await;
    }

    let strait = Strait::start(common::config(
        &source.bootstrap(),
        &target.bootstrap(),
        &format!("{base}-(above|inherited)"),
    ));
    for t in [&above, &inherited] {
        wait_for_target(&dst, t, &BTreeMap::from([(0, 1)]), "the record on the target").await;
    }
    strait.stop().await;
    for t in [&above, &inherited] {
        assert_eq!(
            min_insync_replicas(&dst, t).await,
            (Some("1".to_owned()), false),
            "{t}: the target's default"
        );
        assert_eq!(replicas(&dst, t), [1], "{t}: the target's default replication factor");
    }

    // How strait learns the replication factor the target's default gives (above: 1, so 2 was
    // not copied): a validate-only CreateTopics, which creates nothing.
    let servers = dst.split(',').map(str::to_owned).collect();
    let cluster = strait::kafka::Cluster::new("target", servers, "probe", TIMEOUT);
    let probe = |replication_factor| strait::kafka::TopicSpec {
        name: format!("{base}-probe"),
        partitions: 1,
        replication_factor,
        configs: BTreeMap::new(),
    };
    assert_eq!(
        cluster.replication_factor_for(&probe(-1), 10_000).await.ok(),
        Some(Some(1))
    );
    assert_eq!(
        cluster.replication_factor_for(&probe(1), 10_000).await.ok(),
        Some(Some(1))
    );
    let refused = cluster
        .replication_factor_for(&probe(2), 10_000)
        .await
        .expect_err("2 replicas on 1 broker");
    assert_eq!(
        refused.code(),
        Some(strait::kafka::ResponseError::InvalidReplicationFactor),
        "{refused}"
    );
    assert_eq!(partition_count(&dst, &probe(-1).name).await, None, "nothing created");

    let mut config = common::config(&source.bootstrap(), &target.bootstrap(), &two);
    config.topics.replication_factor = 2;
    let strait = Strait::start(config);
    let health = std::sync::Arc::clone(&strait.health);
    common::eventually_sync("the topic refused", TIMEOUT, || {
        health.topic_errors().contains_key(&two)
    })
    .await;
    let error = health.topic_errors()[&two].to_lowercase();
    strait.stop().await;
    assert!(error.contains("invalidreplicationfactor"), "{error}");
    assert_eq!(partition_count(&dst, &two).await, None, "not created");
}

/// What strait's topic creation relies on when a source's timestamp config is unknown to the
/// target (`replicate::topics::refused_configs`): Kafka 4 refuses the config it removed,
/// `message.timestamp.difference.max.ms`, with INVALID_CONFIG naming it, and creates the topic
/// once asked without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_4_refuses_the_removed_timestamp_config_by_name() {
    let Some((_, target)) = clusters().await else {
        return;
    };
    let topic = common::topic("removed-config");
    let servers = target.plain_bootstrap().split(',').map(str::to_owned).collect();
    let cluster = strait::kafka::Cluster::new("target", servers, "probe", TIMEOUT);
    let removed = "message.timestamp.difference.max.ms";
    let mut spec = strait::kafka::TopicSpec {
        name: topic.clone(),
        partitions: 1,
        replication_factor: -1,
        configs: [(removed, "9223372036854775807"), ("retention.ms", "604800000")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    };
    let create = |spec: &strait::kafka::TopicSpec| {
        let spec = spec.clone();
        let cluster = &cluster;
        async move {
            let mut results = cluster
                .create_topics(&[spec], 10_000)
                .await
                .expect("a CreateTopics answer");
            assert_eq!(results.len(), 1, "{results:?}");
            results.remove(0).1
        }
    };
    let refusal = create(&spec).await.expect_err("the removed config refused");
    assert_eq!(
        refusal.code(),
        Some(strait::kafka::ResponseError::InvalidConfig),
        "{refusal}"
    );
    assert!(refusal.to_string().contains(removed), "names the config: {refusal}");
    assert_eq!(
        partition_count(&target.plain_bootstrap(), &topic).await,
        None,
        "not created"
    );
    spec.configs.remove(removed);
    create(&spec).await.expect("created without it");
    common::eventually("the topic in the target's metadata", TIMEOUT, || {
        let (bootstrap, topic) = (target.plain_bootstrap(), topic.clone());
        async move { partition_count(&bootstrap, &topic).await == Some(1) }
    })
    .await;
}

/// A one-partition source topic named after `label`, holding `n` numbered records, and a strait
/// that replicated them all.
struct Replicated {
    topic: String,
    tp: TopicPartition,
    producer: rdkafka::producer::FutureProducer,
    records: Vec<Rec>,
    strait: Strait,
}

async fn replicated(source: &Kafka, target: &Kafka, label: &str, n: usize) -> Replicated {
    let topic = common::topic(label);
    common::create_topic(&source.plain_bootstrap(), &topic, 1, &[]).await;
    let producer = common::producer(&source.plain_bootstrap(), &[("linger.ms", "2")]);
    let records: Vec<Rec> = (0..n).map(|i| numbered(label, i, common::now_ms())).collect();
    common::send_all(&producer, &topic, 0, &records).await;
    let tp = TopicPartition::new(topic.clone(), 0);
    let strait = Strait::start(common::config(&source.bootstrap(), &target.bootstrap(), &topic));
    common::eventually_sync(&format!("{n} records replicated"), Duration::from_secs(60), || {
        strait
            .progress
            .get(&tp)
            .is_some_and(|s| s.next_source_offset >= n as i64)
    })
    .await;
    Replicated {
        topic,
        tp,
        producer,
        records,
        strait,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_target_topic_halts_until_told_to_replicate_again() {
    let Some((source, target)) = clusters().await else {
        return;
    };
    let Replicated {
        topic,
        tp,
        producer: p,
        records: mut all,
        strait,
    } = replicated(source, target, "recreated", 50).await;
    strait.stop().await;

    // The target topic is deleted; strait will create it again, empty, under its checkpoint.
    for r in admin(&target.plain_bootstrap())
        .delete_topics(&[&topic], &options())
        .await
        .expect("delete topics request")
    {
        r.expect("target topic deleted");
    }
    common::eventually("the target topic gone", TIMEOUT, || {
        let bootstrap = target.plain_bootstrap();
        let topic = topic.clone();
        async move { partition_count(&bootstrap, &topic).await.is_none() }
    })
    .await;

    let strait = Strait::start(common::config(&source.bootstrap(), &target.bootstrap(), &topic));
    let progress = strait.progress.clone();
    let why = common::halted(&progress, &tp, Duration::from_secs(60)).await;
    // strait creates the topic again itself: when its new id is already in the metadata strait
    // reads, the halt says the topic was recreated; when not yet, that the target is behind its
    // checkpoint, or (metadata lagging the creation) that it was deleted. All halt before
    // writing and name the setting that goes on.
    assert!(
        why.contains("on_target_reset")
            && (why.contains("up to 50") || why.contains("was recreated") || why.contains("was deleted")),
        "{why}"
    );
    // /status shows it halted, with the reason.
    let status = Endpoints {
        metrics: common::metrics::recorder().clone(),
        progress: progress.clone(),
        health: std::sync::Arc::new(Health::default()),
        liveness: std::sync::Arc::default(),
        budget: std::sync::Arc::new(strait::budget::Budget::unlimited()),
        level: std::sync::Arc::new(strait::budget::LevelControl::new(3, 1, 12)),
        info: StatusInfo::default(),
    }
    .status_report();
    let report = status
        .partitions
        .iter()
        .find(|r| r.topic == topic && r.partition == 0)
        .expect("partition in /status");
    assert_eq!(report.state, "halted");
    assert_eq!(report.last_error.as_deref(), Some(why.as_str()));
    assert_eq!(metric("strait_partition_halted", &topic, 0), Some(1.0));
    // Halted means nothing written: the recreated target topic is still empty.
    assert_eq!(partition_count(&target.plain_bootstrap(), &topic).await, Some(1));
    assert_eq!(watermarks(&target.plain_bootstrap(), &topic, 0), (0, 0));
    strait.stop().await;

    // replicate_again: everything from the source start, once, and what comes after.
    let mut cfg = common::config(&source.bootstrap(), &target.bootstrap(), &topic);
    cfg.on_target_reset = strait::config::OnTargetReset::ReplicateAgain;
    let strait = Strait::start(cfg);
    let more: Vec<Rec> = (50..70).map(|i| numbered("recreated", i, common::now_ms())).collect();
    common::send_all(&p, &topic, 0, &more).await;
    all.extend(more);
    wait_for_target(
        &target.plain_bootstrap(),
        &topic,
        &BTreeMap::from([(0, all.len())]),
        "replicated again",
    )
    .await;
    strait.stop().await;
    assert_target_holds(&target.plain_bootstrap(), &topic, &BTreeMap::from([(0, all)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_topic_deleted_while_replicating_halts_its_partition() {
    let Some((source, target)) = clusters().await else {
        return;
    };
    let run = replicated(source, target, "deleted", 30).await;
    let (topic, tp, progress) = (run.topic.clone(), run.tp.clone(), run.strait.progress.clone());
    assert_eq!(progress.get(&tp).map(|s| s.state), Some(PartitionState::Running));
    // A live librdkafka producer would create the topic again (auto-creation on metadata).
    drop(run.producer);
    common::delete_topic(&source.plain_bootstrap(), &topic).await;
    let why = common::halted(&progress, &tp, Duration::from_secs(60)).await;
    assert!(
        why.contains(&format!("source topic {topic} was deleted")) && why.contains("offset 30"),
        "{why}"
    );
    assert!(
        why.contains("topics.include") && why.contains("on_topic_recreated"),
        "{why}"
    );
    assert_eq!(metric("strait_partition_halted", &topic, 0), Some(1.0));
    run.strait.stop().await;
    assert_target_holds(&target.plain_bootstrap(), &topic, &BTreeMap::from([(0, run.records)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_topic_recreated_while_replicating_halts_before_reading_the_new_one() {
    let Some((source, target)) = clusters().await else {
        return;
    };
    let run = replicated(source, target, "recreated-source", 30).await;
    let (topic, tp, progress) = (run.topic.clone(), run.tp.clone(), run.strait.progress.clone());
    assert_eq!(progress.get(&tp).map(|s| s.state), Some(PartitionState::Running));
    // A live librdkafka producer would create the topic again (auto-creation on metadata).
    drop(run.producer);
    common::delete_topic(&source.plain_bootstrap(), &topic).await;
    common::create_topic_again(&source.plain_bootstrap(), &topic, 1).await;
    // The new topic grows past the old position: read by name from offset 30, its first 30
    // records would be skipped and the rest taken for the old topic's.
    let producer = common::producer(&source.plain_bootstrap(), &[("linger.ms", "2")]);
    let fresh: Vec<Rec> = (0..60)
        .map(|i| numbered("recreated-source-new", i, common::now_ms()))
        .collect();
    common::send_all(&producer, &topic, 0, &fresh).await;
    assert_eq!(
        watermarks(&source.plain_bootstrap(), &topic, 0),
        (0, 60),
        "premise: the new topic holds more than the old position"
    );
    let why = common::halted(&progress, &tp, Duration::from_secs(60)).await;
    assert!(
        why.contains(&format!("source topic {topic} was deleted and created again"))
            && why.contains("offset 30")
            && why.contains("on_topic_recreated"),
        "{why}"
    );
    assert_eq!(metric("strait_partition_halted", &topic, 0), Some(1.0));
    run.strait.stop().await;
    assert_target_holds(
        &target.plain_bootstrap(),
        &topic,
        &BTreeMap::from([(0, run.records.clone())]),
    );

    // As the halt says: start_over replicates the new topic from its beginning, after the old.
    let mut cfg = common::config(&source.bootstrap(), &target.bootstrap(), &topic);
    cfg.on_topic_recreated = strait::config::OnTopicRecreated::StartOver;
    let strait = Strait::start(cfg);
    let all: Vec<Rec> = run.records.into_iter().chain(fresh).collect();
    wait_for_target(
        &target.plain_bootstrap(),
        &topic,
        &BTreeMap::from([(0, all.len())]),
        "the new topic replicated",
    )
    .await;
    strait.stop().await;
    assert_target_holds(&target.plain_bootstrap(), &topic, &BTreeMap::from([(0, all)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_deleted_by_delete_records_while_stopped_are_an_exact_gap() {
    let Some((source, target)) = clusters().await else {
        return;
    };
    let topic = common::topic("deleterecords");
    common::create_topic(&source.plain_bootstrap(), &topic, 2, &[]).await;
    let p = common::producer(&source.plain_bootstrap(), &[("linger.ms", "2")]);
    let all: BTreeMap<i32, Vec<Rec>> = (0..2)
        .map(|part| {
            let label = format!("d{part}");
            (part, (0..200).map(|i| numbered(&label, i, common::now_ms())).collect())
        })
        .collect();
    for (part, recs) in &all {
        common::send_all(&p, &topic, *part, &recs[..100]).await;
    }

    // First run: 100 records per partition replicated, then stopped (final checkpoint).
    let strait = Strait::start(common::config(&source.bootstrap(), &target.bootstrap(), &topic));
    let progress = strait.progress.clone();
    common::eventually_sync("100 records per partition replicated", Duration::from_secs(60), || {
        (0..2).all(|part| {
            progress
                .get(&TopicPartition::new(topic.clone(), part))
                .is_some_and(|s| s.next_source_offset >= 100)
        })
    })
    .await;
    strait.stop().await;

    // While it is stopped: 100 more records each; partition 0 loses 0..160 (60 never
    // replicated), partition 1 loses 0..50 (all replicated already: no gap).
    for (part, recs) in &all {
        common::send_all(&p, &topic, *part, &recs[100..]).await;
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(160))
        .expect("offset");
    tpl.add_partition_offset(&topic, 1, Offset::Offset(50)).expect("offset");
    let deleted = admin(&source.plain_bootstrap())
        .delete_records(&tpl, &options())
        .await
        .expect("delete records");
    for e in deleted.elements() {
        e.error().expect("records deleted");
    }
    assert_eq!(watermarks(&source.plain_bootstrap(), &topic, 0), (160, 200));
    assert_eq!(watermarks(&source.plain_bootstrap(), &topic, 1), (50, 200));

    let strait = Strait::start(common::config(&source.bootstrap(), &target.bootstrap(), &topic));
    let progress = strait.progress.clone();
    common::eventually_sync("caught up after the deletion", Duration::from_secs(60), || {
        (0..2).all(|part| {
            progress
                .get(&TopicPartition::new(topic.clone(), part))
                .is_some_and(|s| s.next_source_offset >= 200)
        })
    })
    .await;
    let gap = |part| {
        progress
            .get(&TopicPartition::new(topic.clone(), part))
            .map(|s| s.gap_records)
    };
    assert_eq!(gap(0), Some(60), "partition 0: records 100..160 never replicated");
    assert_eq!(gap(1), Some(0), "partition 1: everything deleted was replicated");
    assert_eq!(metric("strait_source_gap_records_total", &topic, 0), Some(60.0));
    assert!(
        metric("strait_source_gap_records_total", &topic, 1).is_none_or(|v| v == 0.0),
        "no gap counted on partition 1"
    );
    strait.stop().await;

    let want: BTreeMap<i32, Vec<Rec>> = BTreeMap::from([
        (0, all[&0][..100].iter().chain(&all[&0][160..]).cloned().collect()),
        (1, all[&1].clone()),
    ]);
    assert_target_holds(&target.plain_bootstrap(), &topic, &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_deleted_by_retention_while_stopped_are_an_exact_gap() {
    let Some((source, target)) = clusters().await else {
        return;
    };
    let topic = common::topic("retentiongap");
    // A segment rolls whenever a record is stamped over 100 ms after its segment's first one.
    common::create_topic(&source.plain_bootstrap(), &topic, 1, &[("segment.ms", "100")]).await;
    let p = common::producer(&source.plain_bootstrap(), &[("linger.ms", "0")]);
    // Stamped two days ago, all within a few milliseconds of each other; then fresh ones.
    let old = common::now_ms() - 2 * 86_400_000;
    let mut all: Vec<Rec> = (0..160).map(|i| numbered("old", i, old + (i % 50) as i64)).collect();
    let tp = TopicPartition::new(topic.clone(), 0);
    for r in &all[..100] {
        common::send(&p, &topic, 0, r).await;
    }

    let strait = Strait::start(common::config(&source.bootstrap(), &target.bootstrap(), &topic));
    let progress = strait.progress.clone();
    common::eventually_sync("100 records replicated", Duration::from_secs(60), || {
        progress.get(&tp).is_some_and(|s| s.next_source_offset >= 100)
    })
    .await;
    strait.stop().await;

    // While it is stopped: 60 more old records and 40 fresh ones (a new segment from 160),
    // then a one-day retention deletes every segment of old records: 100..160 never replicated.
    for r in &all[100..160] {
        common::send(&p, &topic, 0, r).await;
    }
    let fresh: Vec<Rec> = (160..200).map(|i| numbered("fresh", i, common::now_ms())).collect();
    for r in &fresh {
        common::send(&p, &topic, 0, r).await;
    }
    all.extend(fresh);
    let altered = admin(&source.plain_bootstrap())
        .alter_configs(
            [&AlterConfig::new(ResourceSpecifier::Topic(&topic))
                .set("retention.ms", "86400000")
                .set("segment.ms", "100")],
            &options(),
        )
        .await
        .expect("alter configs request");
    for r in altered {
        r.map_err(|(_, code)| code).expect("retention.ms set");
    }
    common::eventually("retention deleted the old segments", Duration::from_secs(60), || {
        let bootstrap = source.plain_bootstrap();
        let topic = topic.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let consumer: BaseConsumer = common::client_config(&bootstrap).create().expect("consumer");
                consumer
                    .fetch_watermarks(&topic, 0, Duration::from_secs(5))
                    .is_ok_and(|(low, _)| low >= 160)
            })
            .await
            .expect("watermarks task")
        }
    })
    .await;
    assert_eq!(
        watermarks(&source.plain_bootstrap(), &topic, 0),
        (160, 200),
        "retention deleted exactly the old records"
    );

    let strait = Strait::start(common::config(&source.bootstrap(), &target.bootstrap(), &topic));
    let progress = strait.progress.clone();
    common::eventually_sync("caught up after retention", Duration::from_secs(60), || {
        progress.get(&tp).is_some_and(|s| s.next_source_offset >= 200)
    })
    .await;
    assert_eq!(progress.get(&tp).map(|s| s.gap_records), Some(60));
    assert_eq!(metric("strait_source_gap_records_total", &topic, 0), Some(60.0));
    strait.stop().await;

    let want: Vec<Rec> = all[..100].iter().chain(&all[160..]).cloned().collect();
    assert_target_holds(&target.plain_bootstrap(), &topic, &BTreeMap::from([(0, want)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_append_time_source_keeps_records_and_the_source_append_times() {
    let Some((source, target)) = clusters().await else {
        return;
    };
    let base = common::topic("appendtime");
    // Created by strait (as CreateTime), and created beforehand as CreateTime.
    let created = format!("{base}-created");
    let precreated = format!("{base}-createtime");
    for t in [&created, &precreated] {
        common::create_topic(
            &source.plain_bootstrap(),
            t,
            2,
            &[("message.timestamp.type", "LogAppendTime")],
        )
        .await;
    }
    common::create_topic(
        &target.plain_bootstrap(),
        &precreated,
        2,
        &[("message.timestamp.type", "CreateTime")],
    )
    .await;
    let p = common::producer(
        &source.plain_bootstrap(),
        &[("compression.type", "gzip"), ("linger.ms", "5")],
    );
    let mut sent: BTreeMap<i32, Vec<Rec>> = BTreeMap::new();
    for part in 0..2 {
        let recs: Vec<Rec> = (0..60).map(|i| common::tricky(part, "append", i)).collect();
        for t in [&created, &precreated] {
            common::send_all(&p, t, part, &recs).await;
        }
        sent.insert(part, recs);
    }
    // The source replaced every producer timestamp with its append time.
    let source_view = read_to_end(&source.plain_bootstrap(), &created, &[0, 1]);
    let source_pre = read_to_end(&source.plain_bootstrap(), &precreated, &[0, 1]);
    for view in [&source_view, &source_pre] {
        for (part, recs) in view {
            assert_eq!(recs.len(), 60);
            for ((r, ts), s) in recs.iter().zip(&sent[part]) {
                assert!(matches!(ts, Timestamp::LogAppendTime(_)), "{ts:?}");
                assert_ne!(r.timestamp, s.timestamp, "append time, not the producer's");
            }
        }
    }

    let strait = Strait::start(common::config(
        &source.bootstrap(),
        &target.bootstrap(),
        &format!("{base}-.*"),
    ));
    let counts = BTreeMap::from([(0, 60), (1, 60)]);
    wait_for_target(&target.plain_bootstrap(), &created, &counts, "the created topic").await;
    wait_for_target(&target.plain_bootstrap(), &precreated, &counts, "the CreateTime topic").await;
    strait.stop().await;

    // The target topic strait created is CreateTime, like the one created beforehand: both
    // keep the source's append times exactly.
    for (topic, source_recs) in [(&created, &source_view), (&precreated, &source_pre)] {
        let got = read_to_end(&target.plain_bootstrap(), topic, &[0, 1]);
        for (part, recs) in &got {
            let want: Vec<Rec> = source_recs[part].iter().map(|(r, _)| r.clone()).collect();
            let have: Vec<Rec> = recs.iter().map(|(r, _)| r.clone()).collect();
            assert_eq!(have, want, "{topic}/{part}: records and the source's append times");
            for (_, ts) in recs {
                assert!(matches!(ts, Timestamp::CreateTime(_)), "{ts:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snappy_source_arrives_byte_identical() {
    let Some((source, target)) = clusters().await else {
        return;
    };
    let topic = common::topic("snappy");
    common::create_topic(&source.plain_bootstrap(), &topic, 2, &[]).await;
    let p = common::producer(
        &source.plain_bootstrap(),
        &[
            ("compression.type", "snappy"),
            ("enable.idempotence", "true"),
            ("linger.ms", "5"),
            ("batch.num.messages", "17"),
        ],
    );
    let mut sent: BTreeMap<i32, Vec<Rec>> = BTreeMap::new();
    for part in 0..2 {
        let recs: Vec<Rec> = (0..120).map(|i| common::tricky(part, "snappy", i)).collect();
        common::send_all(&p, &topic, part, &recs).await;
        sent.insert(part, recs);
    }
    assert_eq!(
        records(&source.plain_bootstrap(), &topic, &[0, 1]),
        sent,
        "the source broker keeps the records"
    );
    // The source stores them as the producer sent them: snappy batches.
    let cluster = strait::kafka::Cluster::new("check", vec![source.plain_bootstrap()], "check", TIMEOUT);
    for part in 0..2 {
        let tp = TopicPartition::new(topic.clone(), part);
        let f = cluster.fetch(&tp, 0, 8 << 20, 100).await.expect("fetch source");
        let codecs: Vec<_> = strait::batch::batches(f.records)
            .map(|b| b.expect("valid batch").header.compression().expect("codec"))
            .collect();
        // (librdkafka sends a batch that snappy would not shrink uncompressed.)
        let snappy = codecs
            .iter()
            .filter(|c| **c == strait::batch::Compression::Snappy)
            .count();
        assert!(snappy >= 5, "{topic}/{part}: source batches {codecs:?}");
    }
    let strait = Strait::start(common::config(&source.bootstrap(), &target.bootstrap(), &topic));
    let counts = BTreeMap::from([(0, 120), (1, 120)]);
    wait_for_target(&target.plain_bootstrap(), &topic, &counts, "the snappy records").await;
    strait.stop().await;
    assert_target_holds(&target.plain_bootstrap(), &topic, &sent);
}
