//! `promtool check metrics` on a real scrape: the binary replicates between two Apache Kafka
//! nodes with a WAN budget on, so the budget, latency histograms and per-partition series are
//! all populated, and its `/metrics` goes to promtool, which must find nothing to complain
//! about. promtool comes from Debian's `prometheus` package (`scripts/install-deps.sh`); without
//! it the test skips, and under CI it fails.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::metrics::{samples, sum as metric_sum};
use common::{create_topic, producer, send_all, Kafka, Rec, StraitCmd};

/// Records written per partition: 2 partitions of 150 records of 1000 random bytes, 300 kB that
/// zstd cannot shrink, sent within a 100 kB/s budget, so senders wait for it.
const RECORDS: usize = 150;
const PARTITIONS: i32 = 2;

/// `promtool check metrics` with `text` on its standard input.
fn promtool_check_metrics(text: &str) -> Output {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .expect("write the scrape to promtool");
    child.wait_with_output().expect("promtool's verdict")
}

fn promtool_installed() -> bool {
    Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn verdict(out: &Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_scrape_passes_promtool_check_metrics() {
    if !promtool_installed() {
        common::unavailable("promtool is not installed");
        return;
    }
    // promtool lints here: the mistake the throttle totals used to make (a gauge named _total)
    // is reported, so a clean verdict below means something.
    let bad = promtool_check_metrics("# HELP x_seconds_total x\n# TYPE x_seconds_total gauge\nx_seconds_total 1.5\n");
    assert!(
        !bad.status.success(),
        "promtool passed a gauge named _total: {}",
        verdict(&bad)
    );

    let Some(source) = Kafka::single().await else {
        return;
    };
    let Some(target) = Kafka::single().await else {
        return;
    };
    let topic = common::topic("lint");
    create_topic(&source.bootstrap(), &topic, PARTITIONS, &[]).await;
    let p = producer(&source.bootstrap(), &[("linger.ms", "5")]);
    for partition in 0..PARTITIONS {
        let records: Vec<Rec> = (0..RECORDS)
            .map(|i| {
                let value: Vec<u8> = (0..1000).map(|_| rand::random::<u8>()).collect();
                Rec::new(Some(format!("k{i}").as_bytes()), Some(&value), &[], common::now_ms())
            })
            .collect();
        send_all(&p, &topic, partition, &records).await;
    }

    let env = [
        ("STRAIT_SOURCE__BOOTSTRAP_SERVERS", source.bootstrap()),
        ("STRAIT_TARGET__BOOTSTRAP_SERVERS", target.bootstrap()),
        ("STRAIT_TOPICS__INCLUDE", topic.clone()),
        ("STRAIT_BUDGET__BYTES_PER_SEC", "100000".to_owned()),
        ("STRAIT_BATCH__LINGER_MS", "20".to_owned()),
        ("STRAIT_FETCH__MAX_WAIT_MS", "100".to_owned()),
        ("STRAIT_CHECKPOINT__INTERVAL_MS", "500".to_owned()),
        ("STRAIT_REPLICATION__ID", format!("lint-{}", rand::random::<u32>())),
    ];
    let mut strait = StraitCmd::new(&["run"]).envs(&env).spawn();
    strait.ready().await;
    let all = (RECORDS * PARTITIONS as usize) as f64;
    let replicated = |text: &str| metric_sum(text, "strait_records_replicated_total", &[("topic", &topic)]);
    let scrape = strait
        .wait_for("/metrics", "every record replicated", |s, b| {
            s == 200 && replicated(b) == Some(all)
        })
        .await;

    // The scrape holds what the alerts and the dashboard read.
    let throttled = metric_sum(&scrape, "strait_budget_throttle_seconds_total", &[]);
    assert!(
        throttled.is_some_and(|s| s > 0.0),
        "300 kB at 100 kB/s must wait for the budget: {throttled:?}\n{scrape}"
    );
    assert!(
        scrape.contains("# TYPE strait_budget_throttle_seconds_total counter\n"),
        "{scrape}"
    );
    assert_eq!(
        metric_sum(&scrape, "strait_budget_bytes_per_second", &[]),
        Some(100_000.0)
    );
    assert_eq!(metric_sum(&scrape, "strait_ready", &[]), Some(1.0), "{scrape}");
    // Each partition's gap series exists at 0 from its start, so the first gap is an increase.
    let gaps = samples(&scrape, "strait_source_gap_records_total", &[("topic", &topic)]);
    assert_eq!(gaps.len(), PARTITIONS as usize, "{scrape}");
    assert!(gaps.iter().all(|(_, v)| *v == 0.0), "{gaps:?}");
    assert!(scrape.contains("strait_produce_latency_seconds_bucket{"), "{scrape}");

    let out = promtool_check_metrics(&scrape);
    assert!(
        out.status.success(),
        "promtool check metrics: {}\nscrape:\n{scrape}",
        verdict(&out)
    );
}
