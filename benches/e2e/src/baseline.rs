//! The two baseline mirrors strait is compared with. Each runs as a subprocess of the bench
//! binary (`strait-e2e mirror naive|rdkafka ...`), so the CPU time and peak RSS read from
//! /proc are its own, and replicates until it is killed.

use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::ClientBuilder;

/// Which baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mirror {
    /// rskafka, record by record: fetch, then one produce call per record, default settings.
    Naive,
    /// librdkafka: consumer from the beginning, producer with 1 MiB batches, linger and zstd.
    Rdkafka,
}

/// Replicates `topic` (partitions 0..partitions) from `source` to `target_topic` on `target`
/// until killed.
pub async fn run(
    mirror: Mirror,
    source: &str,
    target: &str,
    topic: &str,
    target_topic: &str,
    partitions: i32,
) -> Result<()> {
    match mirror {
        Mirror::Naive => naive(source, target, topic, target_topic, partitions).await,
        Mirror::Rdkafka => {
            let (source, target, topic, target_topic) = (
                source.to_owned(),
                target.to_owned(),
                topic.to_owned(),
                target_topic.to_owned(),
            );
            tokio::task::spawn_blocking(move || rdkafka_mirror(&source, &target, &topic, &target_topic, partitions))
                .await
                .context("rdkafka mirror thread panicked")?
        }
    }
}

/// The obvious pure-Rust mirror: one task per partition, fetch up to 1 MiB, produce each record
/// on its own (uncompressed, rskafka's default), next fetch.
async fn naive(source: &str, target: &str, topic: &str, target_topic: &str, partitions: i32) -> Result<()> {
    let src = ClientBuilder::new(vec![source.to_owned()])
        .build()
        .await
        .context("while connecting rskafka to the source")?;
    let dst = ClientBuilder::new(vec![target.to_owned()])
        .build()
        .await
        .context("while connecting rskafka to the target")?;
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..partitions {
        let from = src
            .partition_client(topic, p, UnknownTopicHandling::Retry)
            .await
            .context("while opening a source partition")?;
        let to = dst
            .partition_client(target_topic, p, UnknownTopicHandling::Retry)
            .await
            .context("while opening a target partition")?;
        tasks.spawn(async move {
            let mut offset = 0i64;
            loop {
                let (records, _high_watermark) = from
                    .fetch_records(offset, 1..1_048_576, 500)
                    .await
                    .with_context(|| format!("fetch p{p} at {offset}"))?;
                for r in records {
                    offset = r.offset + 1;
                    to.produce(vec![r.record], Compression::NoCompression)
                        .await
                        .with_context(|| format!("produce p{p}"))?;
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), anyhow::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.context("naive mirror task panicked")??;
    }
    Ok(())
}

/// A tuned librdkafka mirror, the closest stand-in for MirrorMaker 2's producer: an assigned
/// consumer (no group) from the beginning, and a producer with 1 MiB batches, 50 ms linger,
/// zstd and acks=all, keeping partition, key, value, headers and timestamp.
fn rdkafka_mirror(source: &str, target: &str, topic: &str, target_topic: &str, partitions: i32) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", source)
        .set("group.id", "strait-e2e-rdkafka-mirror")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "1048576")
        .set("queued.max.messages.kbytes", "262144")
        .create()
        .context("while creating the rdkafka consumer")?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .context("while building the assignment")?;
    }
    consumer.assign(&tpl).context("while assigning partitions")?;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", target)
        .set("acks", "all")
        .set("compression.type", "zstd")
        .set("batch.size", "1048576")
        .set("message.max.bytes", "1100000")
        .set("linger.ms", "50")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("while creating the rdkafka producer")?;
    loop {
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.context("consumer error")?;
        let headers = m.headers().map(|h| h.detach());
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(target_topic).partition(m.partition());
        if let Some(k) = m.key() {
            record = record.key(k);
        }
        if let Some(v) = m.payload() {
            record = record.payload(v);
        }
        if let Some(ts) = m.timestamp().to_millis() {
            record = record.timestamp(ts);
        }
        if let Some(h) = headers {
            record = record.headers(h);
        }
        send(&producer, record)?;
    }
}

/// Queues `record`, waiting while librdkafka's queue is full (the producer's own thread
/// drains it).
pub fn send<K, P>(producer: &ThreadedProducer<DefaultProducerContext>, mut record: BaseRecord<'_, K, P>) -> Result<()>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err((e, _)) => return Err(e).context("producer send"),
        }
    }
}
