//! A producer byte-rate quota on the target (Apache Kafka's client quotas): the broker answers
//! with `throttle_time_ms` and mutes the connection; strait holds its next produce requests for
//! that long, shows the time in `strait_target_throttle_seconds_total`, and loses or duplicates
//! nothing. Checked with librdkafka.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Kafka, Rec, Strait};
use strait::kafka::TopicPartition;
use strait::replicate::PartitionState;

/// The unlabelled series `name` in strait's Prometheus text, as `/metrics` serves it.
fn sample(handle: &metrics_exporter_prometheus::PrometheusHandle, name: &str) -> f64 {
    strait::telemetry::render(handle)
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_quota_on_the_target_is_honoured_and_shown() {
    let metrics = strait::telemetry::install().expect("install the Prometheus recorder");
    let Some(source) = Kafka::single().await else {
        return;
    };
    let Some(target) = Kafka::single().await else {
        return;
    };
    // 100 kB/s for every client of the target.
    target.tool(
        "kafka.admin.ConfigCommand",
        &[
            "--bootstrap-server",
            &target.plain_bootstrap(),
            "--alter",
            "--add-config",
            "producer_byte_rate=102400",
            "--entity-type",
            "clients",
            "--entity-default",
        ],
    );
    let topic = common::topic("quota");
    common::create_topic(&source.bootstrap(), &topic, 2, &[]).await;
    // Values zstd cannot shrink, so the target receives about what the source holds: 1.2 MB.
    let producer = common::producer(&source.bootstrap(), &[("linger.ms", "5")]);
    let mut sent = BTreeMap::new();
    for p in 0..2 {
        let recs: Vec<Rec> = (0..600)
            .map(|i| {
                let value: Vec<u8> = (0..1000).map(|_| rand::random::<u8>()).collect();
                Rec::new(
                    Some(format!("k{p}-{i}").as_bytes()),
                    Some(&value),
                    &[],
                    1_700_000_000_000 + i,
                )
            })
            .collect();
        common::send_all(&producer, &topic, p, &recs).await;
        sent.insert(p, recs);
    }

    let strait = Strait::start(common::config(&source.bootstrap(), &target.bootstrap(), &topic));
    let counts: BTreeMap<i32, usize> = sent.iter().map(|(p, r)| (*p, r.len())).collect();
    let got = common::consume_async(&target.plain_bootstrap(), &topic, &counts, Duration::from_secs(120)).await;
    for p in 0..2 {
        let state = strait
            .progress
            .get(&TopicPartition::new(topic.clone(), p))
            .map(|s| s.state);
        assert!(
            !matches!(state, Some(PartitionState::Halted(_))),
            "partition {p}: {state:?}"
        );
    }
    strait.stop().await;
    for (p, recs) in &sent {
        assert_eq!(&got[p], recs, "partition {p}: every record once, in order");
    }
    let throttled = sample(&metrics, strait::telemetry::TARGET_THROTTLE);
    assert!(
        throttled > 1.0,
        "the quota must have throttled strait (1.2 MB at 100 kB/s); strait_target_throttle_seconds_total = {throttled}"
    );
    eprintln!("strait held its produce requests {throttled:.1} s for the target's quota");
}
