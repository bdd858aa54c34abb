//! A `strait run` started while the target is unreachable (a pod restarted during a WAN outage)
//! stays up, serves its endpoints and says why it is not ready, then replicates by itself once
//! the target answers: the real binary against real brokers, checked from outside.

mod common;

use std::time::{Duration, Instant};

use common::metrics::sum as metric_sum;
use common::{producer, send_all, Running, StraitCmd};

/// The target's request timeout: before this change `run` exited 69 once it had passed.
const TARGET_TIMEOUT_MS: u64 = 2_000;

/// Waits until `/readyz` answers 503 naming `cluster` as unreachable (fails if strait exits);
/// returns the body.
async fn unreachable_reported(strait: &mut Running, cluster: &str) -> String {
    let reason = format!("{cluster} cluster unreachable");
    strait
        .wait_for("/readyz", &format!("not ready, naming the {cluster}"), |s, b| {
            s == 503 && b.contains(&reason)
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_started_while_the_target_is_down_waits_then_replicates_without_a_restart() {
    let Some((source, mut target, topic)) = common::growing::two_clusters("startout", 1).await else {
        return;
    };
    let p = producer(&source.bootstrap(), &[("linger.ms", "5")]);
    send_all(&p, &topic, 0, &common::recent_records("a", 0, 20)).await;
    // The target is down before strait starts; its ports and data stay for the restart.
    target.kill();

    let env = [
        ("STRAIT_SOURCE__BOOTSTRAP_SERVERS", source.bootstrap()),
        ("STRAIT_TARGET__BOOTSTRAP_SERVERS", target.bootstrap()),
        ("STRAIT_SOURCE__REQUEST_TIMEOUT_MS", "5000".to_owned()),
        ("STRAIT_TARGET__REQUEST_TIMEOUT_MS", TARGET_TIMEOUT_MS.to_string()),
        ("STRAIT_TOPICS__INCLUDE", topic.clone()),
        ("STRAIT_TOPICS__REFRESH_SECS", "1".to_owned()),
        ("STRAIT_BATCH__LINGER_MS", "20".to_owned()),
        ("STRAIT_FETCH__MAX_WAIT_MS", "100".to_owned()),
        ("STRAIT_CHECKPOINT__INTERVAL_MS", "500".to_owned()),
        ("STRAIT_REPLICATION__ID", format!("startout-{}", rand::random::<u32>())),
    ];
    let started = Instant::now();
    let mut strait = StraitCmd::new(&["run"]).envs(&env).spawn();

    // Not ready, naming the target and its error, as soon as the first probe has run.
    let body = unreachable_reported(&mut strait, "target").await;
    assert!(!body.contains("source cluster"), "the source answers: {body}");
    // Without the checkpoints (on the target) the lag is unknown, and /readyz says so.
    assert!(body.contains("lag and retention headroom unknown"), "{body}");
    let (live, _) = strait.get("/livez").await.expect("livez answers");
    assert_eq!(live, 200, "an unreachable cluster is not a liveness failure");
    let metrics = strait
        .wait_for("/metrics", "the reachability gauges", |_, b| {
            metric_sum(b, "strait_cluster_reachable", &[("cluster", "target")]).is_some()
        })
        .await;
    assert_eq!(
        metric_sum(&metrics, "strait_cluster_reachable", &[("cluster", "target")]),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(
        metric_sum(&metrics, "strait_cluster_reachable", &[("cluster", "source")]),
        Some(1.0),
        "{metrics}"
    );
    // Still up (wait_for fails if strait exits) well past the window in which it used to exit 69.
    let window = Duration::from_millis(TARGET_TIMEOUT_MS * 3);
    strait
        .wait_for("/readyz", "still not ready after 3 request timeouts", |s, _| {
            s == 503 && started.elapsed() > window
        })
        .await;
    strait.assert_running("while the target was down");

    // The target comes back: replication starts on its own, with no restart of strait.
    target.restart().await;
    strait.ready().await;
    send_all(&p, &topic, 0, &common::recent_records("b", 0, 10)).await;
    let replicated = |text: &str| metric_sum(text, "strait_records_replicated_total", &[("topic", &topic)]);
    strait
        .wait_for("/metrics", "30 records replicated", |_, b| replicated(b) == Some(30.0))
        .await;
    // On the target itself, read with librdkafka.
    assert_eq!(common::growing::total(&target, &topic, 1).await, 30);
    let exit = strait.terminate(Duration::from_secs(30)).await;
    assert_eq!(exit.code(), Some(0), "strait log:\n{}", strait.log());
}

/// The group `strait.<id>`'s committed offset of `topic`/0 on `cluster`, read with librdkafka.
fn group_offset(bootstrap: &str, group: &str, topic: &str) -> Option<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let mut c = common::client_config(bootstrap);
    c.set("group.id", group);
    let consumer: BaseConsumer = c.create().expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).ok()?;
    match committed.find_partition(topic, 0)?.offset() {
        rdkafka::Offset::Offset(o) => Some(o),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_while_the_target_is_down_it_shows_lag_and_retention_from_the_source_group() {
    let (Some(source), Some(mut target)) = (common::Kafka::single().await, common::Kafka::single().await) else {
        return;
    };
    // A day of retention: the headroom is finite (the test brokers keep records for ever).
    let topic = common::topic("srcgroup");
    common::create_topic(&source.bootstrap(), &topic, 1, &[("retention.ms", "86400000")]).await;
    let p = producer(&source.bootstrap(), &[("linger.ms", "5")]);
    send_all(&p, &topic, 0, &common::recent_records("a", 0, 20)).await;
    let id = format!("srcgroup-{}", rand::random::<u32>());
    let group = format!("strait.{id}");
    let env = [
        ("STRAIT_SOURCE__BOOTSTRAP_SERVERS", source.bootstrap()),
        ("STRAIT_TARGET__BOOTSTRAP_SERVERS", target.bootstrap()),
        ("STRAIT_TARGET__REQUEST_TIMEOUT_MS", TARGET_TIMEOUT_MS.to_string()),
        ("STRAIT_TOPICS__INCLUDE", topic.clone()),
        ("STRAIT_CHECKPOINT__INTERVAL_MS", "500".to_owned()),
        ("STRAIT_REPLICATION__ID", id.clone()),
    ];
    let mut strait = StraitCmd::new(&["run"]).envs(&env).spawn();
    strait.ready().await;
    let replicated = |text: &str| metric_sum(text, "strait_records_replicated_total", &[("topic", &topic)]);
    strait
        .wait_for("/metrics", "20 records replicated", |_, b| replicated(b) == Some(20.0))
        .await;
    // The position reaches the source group, as the source's own tools read it.
    common::eventually("the position in the source group", Duration::from_secs(60), || {
        let (bootstrap, group, topic) = (source.bootstrap(), group.clone(), topic.clone());
        async move {
            tokio::task::spawn_blocking(move || group_offset(&bootstrap, &group, &topic) == Some(20))
                .await
                .unwrap_or(false)
        }
    })
    .await;
    let exit = strait.terminate(Duration::from_secs(30)).await;
    assert_eq!(exit.code(), Some(0), "strait log:\n{}", strait.log());

    // A restart during a WAN outage: the checkpoints cannot be read, the lag still shows.
    target.kill();
    send_all(&p, &topic, 0, &common::recent_records("b", 0, 15)).await;
    let mut strait = StraitCmd::new(&["run"]).envs(&env).spawn();
    let body = strait
        .wait_for("/readyz", "not ready, with positions from the source group", |s, b| {
            s == 503 && b.contains(&format!("from source group {group}"))
        })
        .await;
    assert!(body.contains("target cluster unreachable"), "{body}");
    let status = strait
        .wait_for("/status", "the lag of the 15 new records", |_, b| {
            serde_json::from_str::<serde_json::Value>(b).is_ok_and(|v| {
                v["partitions"].as_array().is_some_and(|ps| {
                    ps.iter()
                        .any(|p| p["topic"] == topic.as_str() && p["lag_records"] == 15)
                })
            })
        })
        .await;
    let v: serde_json::Value = serde_json::from_str(&status).expect("status is JSON");
    let part = v["partitions"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["topic"] == topic.as_str()))
        .expect("the partition in /status");
    assert_eq!(part["next_source_offset"], 20, "{part}");
    assert_eq!(part["source_high_watermark"], 35, "{part}");
    assert!(
        part["oldest_unacked_age_secs"].as_f64().is_some() && part["retention_headroom_secs"].as_f64().is_some(),
        "the age of the oldest record not replicated, and the headroom left: {part}"
    );
    strait
        .wait_for("/metrics", "the lag gauge", |_, b| {
            metric_sum(b, "strait_lag_records", &[("topic", &topic)]) == Some(15.0)
        })
        .await;

    // The target back: the checkpoints take over, and the 15 records arrive once.
    target.restart().await;
    strait.ready().await;
    strait
        .wait_for("/metrics", "15 records replicated", |_, b| replicated(b) == Some(15.0))
        .await;
    assert_eq!(common::growing::total(&target, &topic, 1).await, 35);
    let exit = strait.terminate(Duration::from_secs(30)).await;
    assert_eq!(exit.code(), Some(0), "strait log:\n{}", strait.log());
}

/// `check` is a one-shot answer: an unreachable cluster still exits 69 (EX_UNAVAILABLE), while
/// `run` with the same config stays up and retries. No Kafka: nothing listens on either port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_still_exits_69_for_an_unreachable_cluster_while_run_stays_up() {
    let closed = |port: u16| format!("127.0.0.1:{port}");
    let env = [
        ("STRAIT_SOURCE__BOOTSTRAP_SERVERS", closed(common::binary::free_port())),
        ("STRAIT_TARGET__BOOTSTRAP_SERVERS", closed(common::binary::free_port())),
        ("STRAIT_SOURCE__REQUEST_TIMEOUT_MS", "1000".to_owned()),
        ("STRAIT_TARGET__REQUEST_TIMEOUT_MS", "1000".to_owned()),
        ("STRAIT_TOPICS__INCLUDE", "nothing".to_owned()),
    ];
    let check = StraitCmd::new(&["check"]).envs(&env);
    let ran = tokio::task::spawn_blocking(move || check.output_within(Duration::from_secs(60)))
        .await
        .expect("check ran");
    assert_eq!(ran.code(), Some(69), "{}", ran.text());

    let started = Instant::now();
    let mut strait = StraitCmd::new(&["run"]).envs(&env).spawn();
    let body = unreachable_reported(&mut strait, "source").await;
    assert!(body.contains("source cluster unreachable"), "{body}");
    strait
        .wait_for("/readyz", "still not ready after 3 request timeouts", |s, _| {
            s == 503 && started.elapsed() > Duration::from_secs(3)
        })
        .await;
    strait.assert_running("while no cluster answered");
    // SIGTERM while retrying: a clean exit.
    let exit = strait.terminate(Duration::from_secs(30)).await;
    assert_eq!(exit.code(), Some(0), "strait log:\n{}", strait.log());
}
