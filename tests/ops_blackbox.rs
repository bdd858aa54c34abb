//! The real binary against real brokers, seen only from outside: its HTTP endpoint, its exit
//! code, what it leaves on the target (checked with librdkafka and the checkpoint store).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use common::metrics::sum as metric_sum;
use common::{client_config, create_topic, producer, send_all, Kafka, StraitCmd};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_ops_endpoints_follows_the_target_and_checkpoints_on_sigterm() {
    let Some(source) = Kafka::single().await else {
        return;
    };
    let Some(mut target) = Kafka::single().await else {
        return;
    };
    let topic = common::topic("ops");
    create_topic(&source.bootstrap(), &topic, 2, &[]).await;
    let p = producer(&source.bootstrap(), &[("linger.ms", "5")]);
    let first = common::recent_records("a", 0, 50);
    send_all(&p, &topic, 0, &first[..30]).await;
    send_all(&p, &topic, 1, &first[30..]).await;

    let replication_id = format!("ops-{}", rand::random::<u32>());
    let env = [
        ("STRAIT_SOURCE__BOOTSTRAP_SERVERS", source.bootstrap()),
        ("STRAIT_TARGET__BOOTSTRAP_SERVERS", target.bootstrap()),
        ("STRAIT_SOURCE__REQUEST_TIMEOUT_MS", "5000".to_owned()),
        ("STRAIT_TARGET__REQUEST_TIMEOUT_MS", "5000".to_owned()),
        ("STRAIT_SOURCE__CONNECTIONS_PER_BROKER", "2".to_owned()),
        // A fixed level: the metric below checks the one configured.
        ("STRAIT_COMPRESSION__MIN_LEVEL", "3".to_owned()),
        ("STRAIT_COMPRESSION__MAX_LEVEL", "3".to_owned()),
        ("STRAIT_TOPICS__INCLUDE", topic.clone()),
        ("STRAIT_TOPICS__REFRESH_SECS", "1".to_owned()),
        ("STRAIT_BATCH__LINGER_MS", "20".to_owned()),
        ("STRAIT_FETCH__MAX_WAIT_MS", "100".to_owned()),
        ("STRAIT_CHECKPOINT__INTERVAL_MS", "500".to_owned()),
        ("STRAIT_SHUTDOWN_GRACE_SECS", "10".to_owned()),
        ("STRAIT_REPLICATION__ID", replication_id.clone()),
        ("STRAIT_LOG_FORMAT", "json".to_owned()),
    ];
    let mut strait = StraitCmd::new(&["run"]).envs(&env).spawn();

    strait.ready().await;
    let (status, _) = strait.get("/livez").await.expect("livez answers");
    assert_eq!(status, 200);
    // `strait healthcheck` with the same config asks the running one's /readyz.
    let healthcheck = StraitCmd::new(&["healthcheck"])
        .envs(&env)
        .env("STRAIT_HTTP__LISTEN", format!("127.0.0.1:{}", strait.port()));
    let ran = healthcheck.clone().output_async().await;
    assert_eq!(ran.code(), Some(0), "healthcheck while ready: {}", ran.text());

    // The interface series move while data flows.
    let replicated = |text: &str| metric_sum(text, "strait_records_replicated_total", &[("topic", &topic)]);
    let metrics = strait
        .wait_for("/metrics", "the first 50 records", |_, b| replicated(b) == Some(50.0))
        .await;
    let bytes_before = metric_sum(&metrics, "strait_wire_bytes_total", &[("topic", &topic)]).expect("wire bytes");
    let source_bytes = metric_sum(&metrics, "strait_source_bytes_total", &[("topic", &topic)]).expect("source bytes");
    assert!(bytes_before > 0.0 && source_bytes > 0.0, "{metrics}");
    assert_eq!(
        metric_sum(&metrics, "strait_cluster_reachable", &[("cluster", "target")]),
        Some(1.0)
    );
    assert_eq!(metric_sum(&metrics, "strait_zstd_level", &[]), Some(3.0));
    assert_eq!(metric_sum(&metrics, "strait_partitions_halted", &[]), Some(0.0));
    // The two partitions fetched over the two connections to the source broker, one each; once
    // caught up, they sleep on a third, the idle partitions' own.
    let connections = |text: &str| metric_sum(text, "strait_connections", &[("cluster", "source")]);
    let metrics = strait
        .wait_for("/metrics", "the idle partitions' connection", |_, b| {
            connections(b) == Some(3.0)
        })
        .await;
    assert!(
        metric_sum(&metrics, "strait_lag_records", &[("topic", &topic)]).is_some(),
        "{metrics}"
    );

    let second = common::recent_records("b", 0, 40);
    send_all(&p, &topic, 0, &second).await;
    let metrics = strait
        .wait_for("/metrics", "90 records", |_, b| replicated(b) == Some(90.0))
        .await;
    let bytes_after = metric_sum(&metrics, "strait_wire_bytes_total", &[("topic", &topic)]).expect("wire bytes");
    assert!(bytes_after > bytes_before, "wire bytes {bytes_before} -> {bytes_after}");
    assert!(
        metric_sum(&metrics, "strait_checkpoint_age_seconds", &[]).is_some(),
        "{metrics}"
    );
    // Each partition's identity was claimed in a checkpoint before its first batch.
    assert!(
        metric_sum(&metrics, "strait_checkpoint_bytes_total", &[]).is_some_and(|b| b > 0.0),
        "{metrics}"
    );

    // /status: per-partition offsets and figures, as JSON.
    let status = strait
        .wait_for("/status", "status with both partitions replicated", |s, b| {
            s == 200
                && serde_json::from_str::<serde_json::Value>(b).is_ok_and(|v| {
                    v["partitions"]
                        .as_array()
                        .is_some_and(|ps| ps.iter().map(|p| p["records"].as_u64().unwrap_or(0)).sum::<u64>() == 90)
                })
        })
        .await;
    let v: serde_json::Value = serde_json::from_str(&status).expect("status is JSON");
    assert_eq!(v["ready"], true, "{v}");
    assert_eq!(v["compression"]["zstd_level"], 3);
    let parts = v["partitions"].as_array().expect("partitions array");
    assert_eq!(parts.len(), 2, "{v}");
    for p in parts {
        let want = if p["partition"] == 0 { 70 } else { 20 };
        assert_eq!(p["topic"], topic.as_str());
        assert_eq!(p["state"], "running", "{p}");
        assert_eq!(p["next_source_offset"], want, "{p}");
        assert_eq!(p["source_high_watermark"], want, "{p}");
        assert_eq!(p["lag_records"], 0, "{p}");
        assert_eq!(p["gap_records"], 0, "{p}");
        assert!(p["last_error"].is_null(), "{p}");
    }

    // Target down: not ready, and /status says why. Back up: ready again, and data flows again.
    target.kill();
    let body = strait
        .wait_for("/readyz", "not ready while the target is down", |s, _| s == 503)
        .await;
    assert!(body.contains("target cluster unreachable"), "{body}");
    let ran = healthcheck.output_async().await;
    assert_eq!(ran.code(), Some(1), "healthcheck while not ready: {}", ran.text());
    assert!(ran.text().contains("target cluster unreachable"), "{}", ran.text());
    let (live, _) = strait.get("/livez").await.expect("livez answers");
    assert_eq!(live, 200, "a target outage is not a liveness failure");
    target.restart().await;
    strait.ready().await;
    let third = common::recent_records("c", 1, 10);
    send_all(&p, &topic, 1, &third).await;
    strait
        .wait_for("/metrics", "100 records after the outage", |_, b| {
            replicated(b) == Some(100.0)
        })
        .await;

    // SIGTERM: exit 0, with a final checkpoint covering everything.
    let exit = strait.terminate(Duration::from_secs(30)).await;
    let log_text = strait.log();
    assert_eq!(exit.code(), Some(0), "strait log:\n{log_text}");
    // JSON logs: every line is an object with a message.
    let progress_line = log_text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "stopped");
    assert!(progress_line.is_some(), "no JSON 'stopped' line in:\n{log_text}");

    let cluster = Arc::new(strait::kafka::Cluster::new(
        "target",
        vec![target.bootstrap()],
        "ops-test",
        Duration::from_secs(10),
    ));
    let loaded = strait::checkpoint::CheckpointStore::new(cluster, "strait-checkpoints", &replication_id)
        .load()
        .await
        .expect("checkpoints readable");
    let next: BTreeMap<i32, i64> = loaded
        .into_iter()
        .filter(|(tp, _)| tp.topic == topic)
        .map(|(tp, c)| (tp.partition, c.next_source_offset))
        .collect();
    assert_eq!(next, BTreeMap::from([(0, 70), (1, 30)]));
}

/// Writes `text` to `path` at once (a new file renamed over it), as a config update must be seen
/// whole.
fn replace_file(path: &std::path::Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).expect("write config");
    std::fs::rename(&next, path).expect("replace config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_config_file_applies_the_budget_and_weights_without_a_restart() {
    let Some(source) = Kafka::single().await else {
        return;
    };
    let Some(target) = Kafka::single().await else {
        return;
    };
    let topic = common::topic("reload");
    create_topic(&source.bootstrap(), &topic, 1, &[]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("strait.toml");
    let config = |bytes_per_sec: u64, weights: &str| {
        format!("[budget]\nbytes_per_sec = {bytes_per_sec}\nweights = [{weights}]\n")
    };
    replace_file(&file, &config(100_000, r#""jaeger-.*=3""#));
    let mut strait = StraitCmd::new(&["run"])
        .envs(&[
            ("STRAIT_CONFIG", file.display().to_string()),
            ("STRAIT_SOURCE__BOOTSTRAP_SERVERS", source.bootstrap()),
            ("STRAIT_TARGET__BOOTSTRAP_SERVERS", target.bootstrap()),
            ("STRAIT_TOPICS__INCLUDE", topic.clone()),
            ("STRAIT_REPLICATION__ID", format!("reload-{}", rand::random::<u32>())),
        ])
        .spawn();
    strait.ready().await;
    let budget = |body: &str| -> (u64, Vec<String>) {
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let weights = v["budget"]["weights"]
            .as_array()
            .map(|w| w.iter().filter_map(|r| r.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        (v["budget"]["bytes_per_sec"].as_u64().unwrap_or(0), weights)
    };
    let want = |bps: u64, weight: &str| (bps, vec![format!("jaeger-.*={weight}")]);
    strait
        .wait_for("/status", "the budget of the file", |_, b| {
            budget(b) == want(100_000, "3")
        })
        .await;

    // Changed in the file: applied, no signal and no restart.
    replace_file(&file, &config(250_000, r#""jaeger-.*=1""#));
    strait
        .wait_for("/status", "the new budget and weight", |_, b| {
            budget(b) == want(250_000, "1")
        })
        .await;
    strait
        .wait_for("/metrics", "the new budget in the gauge", |_, b| {
            metric_sum(b, "strait_budget_bytes_per_second", &[]) == Some(250_000.0)
        })
        .await;
    strait.logged(&["budget applied", "config file changed"]).await;

    // An invalid file changes nothing and says why; new weight patterns need a restart.
    replace_file(&file, "[budget]\nbytes_per_sec = \"fast\"\n");
    strait.logged(&["config invalid", "budget unchanged"]).await;
    replace_file(&file, &config(300_000, r#""jaeger-.*=1", "logs-.*=2""#));
    strait.logged(&["budget weights unchanged", "restart"]).await;
    let status = strait
        .wait_for("/status", "the budget changed, the weights kept", |_, b| {
            budget(b) == want(300_000, "1")
        })
        .await;
    assert_eq!(budget(&status), want(300_000, "1"));
    strait.assert_running("after every change");
    let exit = strait.terminate(Duration::from_secs(30)).await;
    assert_eq!(exit.code(), Some(0), "{}", strait.log());
}

#[tokio::test]
async fn plan_prints_the_mapping_and_creates_nothing() {
    let Some(source) = Kafka::single().await else {
        return;
    };
    let Some(target) = Kafka::single().await else {
        return;
    };
    let topic = common::topic("plan");
    let other = common::topic("other");
    create_topic(&source.bootstrap(), &topic, 3, &[("retention.ms", "3600000")]).await;
    create_topic(&source.bootstrap(), &other, 1, &[]).await;
    let env = [
        ("STRAIT_SOURCE__BOOTSTRAP_SERVERS", source.bootstrap()),
        ("STRAIT_TARGET__BOOTSTRAP_SERVERS", target.bootstrap()),
        ("STRAIT_TOPICS__INCLUDE", format!("{topic}|never-there")),
        ("STRAIT_TOPICS__PREFIX", "dc1.".to_owned()),
        (
            "STRAIT_TOPICS__TARGET_CONFIGS",
            format!("dc1\\.{}:retention.ms=604800000", regex::escape(&topic)),
        ),
        ("STRAIT_COMPRESSION__CODEC", "lz4".to_owned()),
    ];
    let out = StraitCmd::new(&["plan"]).envs(&env).output().out;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "{topic} (3 partitions) -> dc1.{topic}: create with 3 partitions"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("compression.type=producer"), "{stdout}");
    // The source's retention.ms (1 hour) under the override's 7 days, shown as the override.
    assert!(stdout.contains("retention.ms=604800000"), "{stdout}");
    assert!(!stdout.contains("retention.ms=3600000"), "{stdout}");
    assert!(
        stdout.contains("of which set by topics.target_configs: retention.ms=604800000"),
        "{stdout}"
    );
    assert!(stdout.contains("; codec lz4; "), "{stdout}");
    assert!(
        stdout.contains("checkpoint topic strait-checkpoints: would be created"),
        "{stdout}"
    );
    assert!(!stdout.contains(&other), "{stdout}");

    // Nothing was created on the target (all-topics metadata never auto-creates).
    let consumer: BaseConsumer = client_config(&target.bootstrap()).create().expect("client");
    let meta = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("target metadata");
    let names: Vec<&str> = meta.topics().iter().map(|t| t.name()).collect();
    assert!(
        !names.iter().any(|n| n.contains(&topic) || *n == "strait-checkpoints"),
        "plan wrote to the target: {names:?}"
    );
}
