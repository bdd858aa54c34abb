//! The continuous check of `run` (`verify.interval_secs`) on Apache Kafka: it compares what
//! strait replicated, finds nothing different in a clean copy, and counts the records that no
//! longer match once another producer has written into the target partition (left in place with
//! `on_foreign_writer = "skip"`).

mod common;

use std::time::Duration;

use common::{metrics, Kafka, Rec, Strait};
use strait::config::OnForeignWriter;

fn record(i: usize) -> Rec {
    Rec::new(
        Some(format!("trace-{i:06}").as_bytes()),
        Some(format!("span {i} {}", "y".repeat(i % 30)).as_bytes()),
        &[("n", Some(i.to_string().as_bytes()))],
        1_700_000_000_000 + i as i64,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_continuous_check_compares_the_copy_and_counts_what_differs() {
    let Some(kafka) = Kafka::single().await else {
        return;
    };
    metrics::recorder();
    let topic = common::topic("verifyrun");
    let copy = format!("copy-{topic}");
    common::create_topic(&kafka.bootstrap(), &topic, 1, &[]).await;
    let producer = common::producer(&kafka.bootstrap(), &[("linger.ms", "5")]);
    let first: Vec<Rec> = (0..2000).map(record).collect();
    common::send_all(&producer, &topic, 0, &first).await;

    let mut c = common::config(&kafka.bootstrap(), &kafka.bootstrap(), &topic);
    c.topics.prefix = "copy-".into();
    c.topics.exclude = vec!["copy-.*".into()];
    c.checkpoint.interval_ms = 200;
    c.verify.interval_secs = 1;
    c.on_foreign_writer = OnForeignWriter::Skip;
    let strait = Strait::start(c);
    let of = |name: &str| metrics::sum(&metrics::render(), name, &[("topic", &topic)]).unwrap_or(0.0);

    common::eventually_sync("the clean copy compared", Duration::from_secs(120), || {
        of("strait_verify_compared_records_total") >= 2000.0
    })
    .await;
    assert_eq!(
        of("strait_verify_mismatched_records_total"),
        0.0,
        "a clean copy has no difference"
    );

    // Another producer writes into the copy; strait leaves it there and goes on.
    let foreign = common::producer(&kafka.bootstrap(), &[]);
    common::send(&foreign, &copy, 0, &record(999_999)).await;
    let second: Vec<Rec> = (2000..3000).map(record).collect();
    common::send_all(&producer, &topic, 0, &second).await;
    common::eventually_sync("the foreign record seen by strait", Duration::from_secs(120), || {
        metrics::sum(&metrics::render(), "strait_foreign_records_total", &[]).unwrap_or(0.0) >= 1.0
    })
    .await;
    common::eventually_sync("the difference counted", Duration::from_secs(120), || {
        of("strait_verify_mismatched_records_total") > 0.0
    })
    .await;
    let (compared, differ) = (
        of("strait_verify_compared_records_total"),
        of("strait_verify_mismatched_records_total"),
    );
    strait.stop().await;
    eprintln!("continuous check: {compared} records compared, {differ} different after one foreign record");
}
