//! Local broker to local broker: byte-faithful replication of tricky records written by
//! librdkafka with every codec (duplicate, null and non-UTF-8 header keys among them), checked
//! by librdkafka on the target; and the target batches checked on the wire (zstd at the
//! configured level, many records per batch).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Kafka, Rec, Strait};

/// How many [`byte_keyed`] records each codec writes to each partition.
const BYTE_KEYED: usize = 5;

/// A record whose header keys are not UTF-8: bytes no UTF-8 text holds and Latin-1 text
/// ("café" in Latin-1), each twice, with null, empty and binary values, around the UTF-8
/// spelling of the same word.
fn byte_keyed(partition: i32, codec: &str, i: usize) -> Rec {
    let key = format!("{codec}-{partition}-bytes-{i}");
    let latin1: &[u8] = b"caf\xe9";
    let invalid: &[u8] = &[0xff, 0xfe, 0x80];
    Rec::with_byte_keys(
        Some(key.as_bytes()),
        Some(format!("header keys as bytes {i}").as_bytes()),
        &[
            (invalid, Some(&[0xff, 0x00, 0x80])),
            (latin1, None),
            ("café".as_bytes(), Some(b"utf-8")),
            (invalid, None),
            (latin1, Some(b"")),
        ],
        1_600_000_000_000 + i as i64,
    )
}

/// How many records carry a header key that is not UTF-8.
fn with_non_utf8_keys(records: &BTreeMap<i32, Vec<Rec>>) -> usize {
    records
        .values()
        .flatten()
        .filter(|r| r.headers.iter().any(|(k, _)| std::str::from_utf8(k).is_err()))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_arrives_byte_identical_and_in_order() {
    let Some(source) = Kafka::single().await else {
        return;
    };
    let Some(target) = Kafka::single().await else {
        return;
    };
    let topic = common::topic("fidelity");
    common::create_topic(&source.bootstrap(), &topic, 4, &[]).await;

    // Four producers, one per codec, idempotent and not, each writing to all partitions in turn.
    let per_codec = 60;
    let codecs = [("none", "false"), ("gzip", "true"), ("lz4", "false"), ("zstd", "true")];
    let mut expected: BTreeMap<i32, Vec<Rec>> = BTreeMap::new();
    for (codec, idempotent) in codecs {
        let p = common::producer(
            &source.bootstrap(),
            &[
                ("compression.type", codec),
                ("enable.idempotence", idempotent),
                ("linger.ms", "5"),
                ("batch.num.messages", "17"),
            ],
        );
        for partition in 0..4 {
            let tricky = (0..per_codec).map(|i| common::tricky(partition, codec, i));
            let byte_keyed = (0..BYTE_KEYED).map(|i| byte_keyed(partition, codec, i));
            for r in tricky.chain(byte_keyed) {
                common::send(&p, &topic, partition, &r).await;
                expected.entry(partition).or_default().push(r);
            }
        }
    }
    let counts: BTreeMap<i32, usize> = expected.iter().map(|(p, v)| (*p, v.len())).collect();
    // What librdkafka reads from the source is the reference (the broker may normalise nothing).
    let source_view = common::consume(&source.bootstrap(), &topic, &counts, Duration::from_secs(30));
    assert_eq!(source_view, expected, "the source broker itself must keep the records");
    assert_eq!(
        with_non_utf8_keys(&source_view),
        codecs.len() * 4 * BYTE_KEYED,
        "the source holds the header keys that are not UTF-8, read back by librdkafka"
    );

    let strait = Strait::start(common::config(&source.bootstrap(), &target.bootstrap(), &topic));
    let got = common::consume(&target.bootstrap(), &topic, &counts, Duration::from_secs(120));
    for (p, want) in &expected {
        let have = &got[p];
        assert_eq!(have.len(), want.len(), "partition {p}: record count");
        for (i, (h, w)) in have.iter().zip(want).enumerate() {
            assert_eq!(h, w, "partition {p}, record {i} differs");
        }
    }
    assert_eq!(with_non_utf8_keys(&got), codecs.len() * 4 * BYTE_KEYED);
    strait.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_batches_are_zstd_at_the_configured_level_and_merged() {
    let Some(source) = Kafka::single().await else {
        return;
    };
    let Some(target) = Kafka::single().await else {
        return;
    };
    let topic = common::topic("wire");
    common::create_topic(&source.bootstrap(), &topic, 1, &[]).await;
    // One record per source batch.
    let p = common::producer(
        &source.bootstrap(),
        &[
            ("linger.ms", "0"),
            ("batch.num.messages", "1"),
            ("compression.type", "none"),
        ],
    );
    let n = 300;
    for i in 0..n {
        let r = Rec::new(
            Some(format!("k{i}").as_bytes()),
            Some(format!("value {i} {}", "abc".repeat(i % 50)).as_bytes()),
            &[],
            1_700_000_000_000 + i as i64,
        );
        common::send(&p, &topic, 0, &r).await;
    }
    let level = 7;
    let mut cfg = common::config(&source.bootstrap(), &target.bootstrap(), &topic);
    cfg.compression.zstd_level = level;
    // Pinned, so every batch is at this level whatever the level control would do.
    cfg.compression.min_level = level;
    cfg.compression.max_level = level;
    cfg.batch.linger_ms = 200;
    let strait = Strait::start(cfg);
    let got = common::consume(
        &target.bootstrap(),
        &topic,
        &BTreeMap::from([(0, n)]),
        Duration::from_secs(60),
    );
    assert_eq!(got[&0].len(), n);
    strait.stop().await;

    // The memory broker keeps batches as sent: read them raw and look at their headers.
    let cluster = strait::kafka::Cluster::new("check", vec![target.bootstrap()], "check", Duration::from_secs(10));
    let tp = strait::kafka::TopicPartition::new(topic.clone(), 0);
    let mut offset = 0;
    let mut batches = 0;
    while offset < n as i64 {
        let f = cluster.fetch(&tp, offset, 8 << 20, 100).await.expect("fetch target");
        for b in strait::batch::batches(f.records) {
            let b = b.expect("valid batch");
            assert_eq!(b.header.compression().expect("codec"), strait::batch::Compression::Zstd);
            // Batch layout: 61-byte header, then the compressed records section. zstd is
            // deterministic: recompressing the plain section at the configured level must give
            // the same bytes.
            let compressed = &b.bytes[61..];
            let plain = zstd::stream::decode_all(compressed).expect("zstd frame");
            let again = zstd::bulk::compress(&plain, level).expect("zstd");
            assert_eq!(
                again.as_slice(),
                compressed,
                "batch at {} not zstd level {level}",
                b.header.base_offset
            );
            assert!(
                b.header.record_count > 1,
                "batch at {} holds one record",
                b.header.base_offset
            );
            batches += 1;
            offset = b.header.next_offset();
        }
    }
    assert!(
        batches < n / 10,
        "{n} one-record source batches became {batches} target batches"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_partitions_share_a_batch_memory_of_two_batches() {
    let Some(source) = Kafka::single().await else {
        return;
    };
    let Some(target) = Kafka::single().await else {
        return;
    };
    let topic = common::topic("memory");
    let partitions = 24;
    common::create_topic(&source.bootstrap(), &topic, partitions, &[]).await;
    let p = common::producer(&source.bootstrap(), &[("compression.type", "lz4"), ("linger.ms", "5")]);
    let per_partition = 200;
    let mut expected: BTreeMap<i32, Vec<Rec>> = BTreeMap::new();
    for partition in 0..partitions {
        let records: Vec<Rec> = (0..per_partition)
            .map(|i| {
                let value = format!("p{partition} r{i} {}", "span-bytes ".repeat(60 + i % 40));
                Rec::new(
                    Some(format!("k{i}").as_bytes()),
                    Some(value.as_bytes()),
                    &[],
                    1_700_000_000_000 + i as i64,
                )
            })
            .collect();
        common::send_all(&p, &topic, partition, &records).await;
        expected.insert(partition, records);
    }
    // Room for two 16 KiB batches across 24 backlogged partitions: most partitions wait for
    // memory while holding none, and every one still gets through.
    let mut cfg = common::config(&source.bootstrap(), &target.bootstrap(), &topic);
    cfg.batch.max_bytes = 16 * 1024;
    cfg.batch.buffer_max_bytes = 32 * 1024;
    cfg.fetch.buffer_max_bytes = 1024 * 1024;
    let strait = Strait::start(cfg);
    let counts: BTreeMap<i32, usize> = expected.iter().map(|(p, v)| (*p, v.len())).collect();
    let got = common::consume(&target.bootstrap(), &topic, &counts, Duration::from_secs(120));
    for (p, want) in &expected {
        assert_eq!(&got[p], want, "partition {p}");
    }
    strait.stop().await;
}
