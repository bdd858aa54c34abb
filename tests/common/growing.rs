//! A source that keeps growing while a test runs ([`Writer`]: every partition, about 100
//! records/s each, idempotent librdkafka producer), and reading a target until it holds every
//! record written ([`read_all_keys`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{Kafka, Rec};

/// Record `i` of partition `p`: a unique key, a value of varied length, one header.
pub fn record(p: i32, i: usize) -> Rec {
    let key = format!("{p}-{i:07}");
    Rec::new(
        Some(key.as_bytes()),
        Some(format!("span {i} of partition {p} {}", "x".repeat(i % 50)).as_bytes()),
        &[("seq", Some(key.as_bytes()))],
        1_700_000_000_000 + i as i64,
    )
}

/// Writes to every partition of a source topic until stopped; returns what it wrote.
pub struct Writer {
    writing: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<BTreeMap<i32, Vec<Rec>>>,
}

impl Writer {
    pub fn start(source: &Kafka, topic: &str, partitions: i32) -> Writer {
        Writer::start_at(&source.bootstrap(), topic, partitions)
    }

    /// Like [`Writer::start`], through the listener at `bootstrap` (a secured cluster's
    /// plaintext one).
    pub fn start_at(bootstrap: &str, topic: &str, partitions: i32) -> Writer {
        let writing = Arc::new(AtomicBool::new(true));
        let (bootstrap, topic, flag) = (bootstrap.to_owned(), topic.to_owned(), Arc::clone(&writing));
        let task = tokio::spawn(async move {
            let producer = super::producer(&bootstrap, &[("linger.ms", "5"), ("enable.idempotence", "true")]);
            let mut sent: BTreeMap<i32, Vec<Rec>> = BTreeMap::new();
            let mut i = 0usize;
            while flag.load(Ordering::Relaxed) {
                let pending: Vec<_> = (0..partitions)
                    .map(|p| {
                        let r = record(p, i);
                        let delivery = super::enqueue(&producer, &topic, p, &r);
                        sent.entry(p).or_default().push(r);
                        delivery
                    })
                    .collect();
                for d in pending {
                    d.await
                        .expect("delivery report")
                        .map_err(|(e, _)| e)
                        .expect("source write");
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            sent
        });
        Writer { writing, task }
    }

    /// Stops writing; returns every record written, by partition, in order.
    pub async fn stop(self) -> BTreeMap<i32, Vec<Rec>> {
        self.writing.store(false, Ordering::Relaxed);
        self.task.await.expect("writer")
    }
}

/// Records on `topic` of a cluster, all `partitions`.
pub async fn total(cluster: &Kafka, topic: &str, partitions: i32) -> i64 {
    super::high_watermarks(&cluster.plain_bootstrap(), topic, partitions)
        .await
        .values()
        .sum()
}

/// Reads `topic` on `cluster` until it holds a record with every key of `sent` (up to 120 s);
/// returns what it read, by partition.
pub async fn read_all_keys(cluster: &Kafka, topic: &str, sent: &BTreeMap<i32, Vec<Rec>>) -> BTreeMap<i32, Vec<Rec>> {
    let wanted: BTreeMap<i32, HashSet<Vec<u8>>> = sent
        .iter()
        .map(|(p, recs)| (*p, recs.iter().filter_map(|r| r.key.clone()).collect()))
        .collect();
    let (bootstrap, topic) = (cluster.plain_bootstrap(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let partitions: Vec<i32> = wanted.keys().copied().collect();
        super::consume_until(&bootstrap, &topic, &partitions, Duration::from_secs(120), |got| {
            wanted.iter().all(|(p, keys)| {
                let have: HashSet<&Vec<u8>> = got
                    .get(p)
                    .map(|rs| rs.iter().filter_map(|r| r.key.as_ref()).collect())
                    .unwrap_or_default();
                keys.iter().all(|k| have.contains(k))
            })
        })
    })
    .await
    .expect("consumer")
}

/// Two single-node clusters and a topic of `partitions` on both.
pub async fn two_clusters(prefix: &str, partitions: i32) -> Option<(Kafka, Kafka, String)> {
    let (Some(source), Some(target)) = (Kafka::single().await, Kafka::single().await) else {
        return None;
    };
    let topic = super::topic(prefix);
    super::create_topic(&source.bootstrap(), &topic, partitions, &[]).await;
    super::create_topic(
        &target.bootstrap(),
        &topic,
        partitions,
        &[("compression.type", "producer")],
    )
    .await;
    Some((source, target, topic))
}
