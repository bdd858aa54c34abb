//! Retention risk against real local brokers: records stamped close to the source topic's
//! retention.ms, a target that cannot take them (its broker is down), and `/status` reporting
//! the partition at risk with a headroom that shrinks while nothing is acknowledged, until the
//! target is back, the backlog drains and the risk clears.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Kafka, Rec, Strait};
use strait::budget::{Budget, LevelControl};
use strait::http::{Endpoints, PartitionReport, StatusInfo};
use strait::replicate::{Health, Progress};

fn record(i: usize, timestamp: i64) -> Rec {
    Rec::new(
        Some(format!("k{i}").as_bytes()),
        Some(format!("span {i}").as_bytes()),
        &[],
        timestamp,
    )
}

/// The `/status` document as strait's HTTP endpoint builds it, over the harness's progress table.
fn endpoints(progress: Arc<Progress>, threshold_secs: u64) -> Endpoints {
    Endpoints {
        metrics: metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle(),
        progress,
        health: Arc::new(Health::default()),
        liveness: Arc::default(),
        budget: Arc::new(Budget::unlimited()),
        level: Arc::new(LevelControl::new(3, 1, 12)),
        info: StatusInfo {
            retention_headroom_alert_secs: threshold_secs,
            ..StatusInfo::default()
        },
    }
}

/// The `/status` entry of `topic` partition 0.
fn partition(e: &Endpoints, topic: &str) -> Option<PartitionReport> {
    e.status_report()
        .partitions
        .into_iter()
        .find(|p| p.topic == topic && p.partition == 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_near_source_retention_are_at_risk_until_the_target_takes_them() {
    let Some(source) = Kafka::single().await else {
        return;
    };
    // sqlite: the target keeps its data (and strait's checkpoints) across its restart.
    let Some(mut target) = Kafka::single().await else {
        return;
    };
    let topic = common::topic("retention");
    common::create_topic(&source.bootstrap(), &topic, 1, &[("retention.ms", "7200000")]).await;
    let p = common::producer(&source.bootstrap(), &[("linger.ms", "5")]);
    // A fresh record first, so the target topic exists and the partition runs before the
    // target goes away.
    common::send(&p, &topic, 0, &record(0, common::now_ms())).await;

    let mut cfg = common::config(&source.bootstrap(), &target.bootstrap(), &topic);
    cfg.alerts.retention_headroom_secs = 3600;
    let strait = Strait::start(cfg);
    let status = endpoints(strait.progress.clone(), 3600);
    let progress = strait.progress.clone();
    common::eventually_sync("the first record replicated", Duration::from_secs(60), || {
        progress.totals().records == 1
    })
    .await;
    let caught_up = partition(&status, &topic).expect("partition in /status");
    assert_eq!(
        caught_up.retention_ms,
        Some(7_200_000),
        "the source topic's own retention.ms"
    );
    assert_eq!(
        caught_up.retention_headroom_secs,
        Some(7200.0),
        "caught up: the whole retention"
    );
    assert!(!caught_up.at_risk);

    target.kill();
    // Written 1 h 50 min ago (CreateTime): 10 minutes before the source's 2 h retention.
    let stamped = common::now_ms() - 110 * 60_000;
    let old: Vec<Rec> = (1..=200).map(|i| record(i, stamped)).collect();
    common::send_all(&p, &topic, 0, &old).await;

    common::eventually_sync("the partition at retention risk", Duration::from_secs(60), || {
        partition(&status, &topic).is_some_and(|r| r.at_risk)
    })
    .await;
    let at_risk = partition(&status, &topic).expect("partition in /status");
    let headroom = at_risk
        .retention_headroom_secs
        .expect("finite retention and a known age");
    assert!(
        headroom > 0.0 && headroom < 3600.0,
        "headroom {headroom} s is under the 1 h threshold"
    );
    assert!(headroom <= 600.0, "at most the 10 minutes left: {headroom}");
    assert!(at_risk.lag_records > 0);
    assert_eq!(
        at_risk.next_source_offset, 1,
        "nothing acknowledged while the target is down"
    );
    assert_eq!(status.status_report().totals.partitions_at_retention_risk, 1);

    // Nothing is acknowledged, no batch moves, yet the headroom keeps shrinking.
    common::eventually_sync(
        "the headroom shrinking while the target is down",
        Duration::from_secs(30),
        || {
            partition(&status, &topic)
                .and_then(|r| r.retention_headroom_secs)
                .is_some_and(|h| h <= headroom - 1.5)
        },
    )
    .await;
    let later = partition(&status, &topic).expect("partition in /status");
    assert_eq!(later.next_source_offset, 1, "still nothing acknowledged");
    assert!(later.at_risk);

    target.restart().await;
    common::eventually_sync(
        "the backlog drained and the risk cleared",
        Duration::from_secs(120),
        || partition(&status, &topic).is_some_and(|r| r.next_source_offset == 201 && !r.at_risk),
    )
    .await;
    let drained = partition(&status, &topic).expect("partition in /status");
    assert_eq!(drained.lag_records, 0);
    assert_eq!(drained.oldest_unacked_age_secs, Some(0.0));
    assert_eq!(drained.retention_headroom_secs, Some(7200.0));
    assert_eq!(status.status_report().totals.partitions_at_retention_risk, 0);
    strait.stop().await;

    // Everything arrived, once.
    let cluster = strait::kafka::Cluster::new("check", vec![target.bootstrap()], "check", Duration::from_secs(10));
    let end = cluster
        .list_offset(
            &strait::kafka::TopicPartition::new(topic.clone(), 0),
            strait::kafka::OffsetSpec::Latest,
        )
        .await
        .expect("target end");
    assert_eq!(end, 201);
}
