//! Demo data on real clusters: writes seeded Jaeger spans to a topic the way Jaeger's Kafka
//! writer does (key = trace id, value = one encoded span), and reads a topic back to count and
//! validate them. Used by `strait-demo` (the quickstart, compose) and the end-to-end bench.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::CreateTopicsRequest;
use strait::batch::{self, BatchBuilder, BuildOptions, Compression, Record};
use strait::kafka::{self, Cluster, OffsetSpec, TopicPartition, TopicSpec};

use crate::{Encoding, SpanGenerator};

/// Result of the demo commands.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the demo commands.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request failed.
    #[error("demo {action} failed on topic {topic}")]
    Kafka {
        action: &'static str,
        topic: String,
        #[source]
        source: Box<kafka::Error>,
    },
    /// A batch could not be built or read.
    #[error("demo {action} failed on {topic}/{partition}")]
    Batch {
        action: &'static str,
        topic: String,
        partition: i32,
        #[source]
        source: batch::Error,
    },
    /// The topic does not exist and cannot be created.
    #[error("topic {topic} does not exist on {bootstrap}")]
    NoTopic { topic: String, bootstrap: String },
}

fn cluster(name: &str, bootstrap: &[String]) -> Cluster {
    Cluster::new(name, bootstrap.to_vec(), "strait-demo", Duration::from_secs(30))
}

fn kafka_err<'a>(action: &'static str, topic: &'a str) -> impl FnOnce(kafka::Error) -> Error + 'a {
    move |source| Error::Kafka {
        action,
        topic: topic.to_owned(),
        source: Box::new(source),
    }
}

/// Partition count of `topic`, creating it with `partitions` when missing.
async fn ensure_topic(c: &Cluster, bootstrap: &[String], topic: &str, partitions: i32) -> Result<i32> {
    let names = [topic.to_owned()];
    let meta = c.metadata(Some(&names)).await.map_err(kafka_err("metadata", topic))?;
    if let Some(t) = meta
        .topics
        .get(topic)
        .filter(|t| t.error.is_none() && t.partition_count() > 0)
    {
        return Ok(t.partition_count());
    }
    if !c
        .supports::<CreateTopicsRequest>()
        .await
        .map_err(kafka_err("metadata", topic))?
    {
        return Err(Error::NoTopic {
            topic: topic.to_owned(),
            bootstrap: bootstrap.join(","),
        });
    }
    let spec = TopicSpec {
        name: topic.to_owned(),
        partitions,
        replication_factor: -1,
        configs: Default::default(),
    };
    for (_, r) in c
        .create_topics(&[spec], 30_000)
        .await
        .map_err(kafka_err("create topic", topic))?
    {
        r.map_err(kafka_err("create topic", topic))?;
    }
    Ok(partitions)
}

/// Writes `count` spans from `seed` to `topic` (created with `partitions` when missing), spread
/// over partitions by trace id so a trace stays in one partition. Returns the number written.
pub async fn produce_spans(
    bootstrap: &[String],
    topic: &str,
    partitions: i32,
    count: u64,
    seed: u64,
    encoding: Encoding,
    start_unix_micros: i64,
) -> Result<u64> {
    let c = cluster("demo", bootstrap);
    let partitions = ensure_topic(&c, bootstrap, topic, partitions).await?;
    let mut builders: Vec<BatchBuilder> = (0..partitions).map(|_| BatchBuilder::new(512 * 1024)).collect();
    let opts = BuildOptions {
        compression: Compression::Lz4,
        ..BuildOptions::default()
    };
    let mut gen = SpanGenerator::new(seed, start_unix_micros);
    let mut offsets = vec![0i64; partitions as usize];
    for _ in 0..count {
        let span = gen.next_span();
        let key = span.key();
        let p = (fnv(key.as_bytes()) % partitions as u64) as usize;
        let record = Record {
            offset: offsets[p],
            timestamp: span.start_unix_micros / 1000,
            key: Some(Bytes::from(key)),
            value: Some(Bytes::from(span.encode(encoding))),
            headers: Bytes::from_static(&[0]),
        };
        offsets[p] += 1;
        if let Err(record) = builders[p].try_push(record) {
            flush(&c, topic, p as i32, &mut builders[p], &opts).await?;
            builders[p].try_push(record).map_err(|_| Error::Batch {
                action: "produce",
                topic: topic.to_owned(),
                partition: p as i32,
                source: batch::Error::Corrupt {
                    base_offset: 0,
                    reason: "span larger than a demo batch",
                },
            })?;
        }
    }
    for (p, b) in builders.iter_mut().enumerate() {
        flush(&c, topic, p as i32, b, &opts).await?;
    }
    Ok(count)
}

async fn flush(c: &Cluster, topic: &str, partition: i32, b: &mut BatchBuilder, opts: &BuildOptions) -> Result<()> {
    if b.is_empty() {
        return Ok(());
    }
    let built = b.finish(opts).map_err(|source| Error::Batch {
        action: "produce",
        topic: topic.to_owned(),
        partition,
        source,
    })?;
    let tp = TopicPartition::new(topic, partition);
    let mut backoff = kafka::Backoff::default();
    loop {
        match c.produce(&tp, built.bytes.clone(), 30_000).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_retriable() && backoff.attempts() < 20 => {
                c.invalidate(&tp);
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(e) => return Err(kafka_err("produce", topic)(e)),
        }
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// What a topic holds, as read back by [`count_spans`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicCount {
    /// Records in the topic.
    pub records: u64,
    /// Records whose value decodes as a protobuf Jaeger span.
    pub spans: u64,
    /// One decoded example: service and operation name.
    pub example: Option<String>,
}

/// Reads every partition of `topic` from start to end and counts records and valid spans.
pub async fn count_spans(bootstrap: &[String], topic: &str) -> Result<TopicCount> {
    let c = cluster("demo", bootstrap);
    let names = [topic.to_owned()];
    let meta = c.metadata(Some(&names)).await.map_err(kafka_err("metadata", topic))?;
    let Some(t) = meta.topics.get(topic).filter(|t| t.error.is_none()) else {
        return Err(Error::NoTopic {
            topic: topic.to_owned(),
            bootstrap: bootstrap.join(","),
        });
    };
    let mut count = TopicCount::default();
    for &p in t.leaders.keys() {
        let tp = TopicPartition::new(topic, p);
        let mut offset = c
            .list_offset(&tp, OffsetSpec::Earliest)
            .await
            .map_err(kafka_err("list offsets", topic))?;
        let end = c
            .list_offset(&tp, OffsetSpec::Latest)
            .await
            .map_err(kafka_err("list offsets", topic))?;
        while offset < end {
            let f = c
                .fetch(&tp, offset, 4 << 20, 100)
                .await
                .map_err(kafka_err("fetch", topic))?;
            let before = offset;
            for b in batch::batches(f.records) {
                let b = b.map_err(|source| Error::Batch {
                    action: "read",
                    topic: topic.to_owned(),
                    partition: p,
                    source,
                })?;
                if b.header.is_control() {
                    offset = b.header.next_offset();
                    continue;
                }
                let records = b.records().map_err(|source| Error::Batch {
                    action: "read",
                    topic: topic.to_owned(),
                    partition: p,
                    source,
                })?;
                for r in records.iter().filter(|r| r.offset >= offset) {
                    count.records += 1;
                    if let Some(s) = r.value.as_deref().and_then(|v| crate::decode_summary(v).ok()) {
                        count.spans += 1;
                        if count.example.is_none() {
                            count.example = Some(format!("{} {}", s.service_name, s.operation_name));
                        }
                    }
                }
                offset = b.header.next_offset();
            }
            if offset == before {
                break;
            }
        }
    }
    Ok(count)
}
