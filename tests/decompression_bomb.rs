//! Decompression bombs against real local brokers and the strait binary: a zstd batch of zeros
//! that decompresses to more than the fetch buffer halts its partition with an error naming
//! topic, partition, offset and sizes, while the other partition keeps replicating and the
//! process's peak RSS stays far below the batch's decompressed size.
//!
//! `STRAIT_TEST_BOMB_MIB` and `STRAIT_TEST_BUFFER_MIB` change the sizes (default: a 128 MiB
//! batch against a 16 MiB buffer, cheap enough for every run, and twice what a debug build's
//! whole process was seen to peak at, 59-65 MiB with its start-up zstd calibration, so that a
//! peak below the batch's size proves it was not decompressed); README "Memory" records a run
//! with a 250 MiB batch against a 64 MiB buffer.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::binary::StraitCmd;
use common::Rec;
use strait::batch::{encode_batch, BuildOptions, Compression, Record};
use strait::kafka::{Cluster, TopicPartition};

fn mib(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default) << 20
}

/// One zstd batch of 128 KiB all-zero records, `bytes` in all: a few KiB on the wire.
fn bomb(bytes: usize) -> Bytes {
    let now = common::now_ms();
    let zeros = Bytes::from(vec![0u8; 128 << 10]);
    let records: Vec<Record> = (0..(bytes / zeros.len()) as i64)
        .map(|i| Record::new(i, now, None, Some(zeros.clone())))
        .collect();
    let opts = BuildOptions {
        compression: Compression::Zstd,
        ..BuildOptions::default()
    };
    encode_batch(0, &records, &opts).expect("encodes")
}

/// Peak resident memory of process `pid`, in bytes (VmHWM).
fn peak_rss(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .expect("VmHWM")
        * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zstd_batch_larger_than_the_fetch_buffer_halts_its_partition_and_the_others_go_on() {
    let (bomb_bytes, buffer) = (mib("STRAIT_TEST_BOMB_MIB", 128), mib("STRAIT_TEST_BUFFER_MIB", 16));
    let Some((source, target, topic)) = common::growing::two_clusters("bomb", 2).await else {
        return;
    };
    let batch = bomb(bomb_bytes);
    assert!(bomb_bytes > buffer, "the premise: the batch is larger than the buffer");
    assert!(
        batch.len() < 1 << 20,
        "the premise: {} bytes fit the broker's limit",
        batch.len()
    );
    let cluster = Cluster::new("bomber", vec![source.bootstrap()], "bomber", Duration::from_secs(30));
    let bombed = TopicPartition::new(topic.clone(), 0);
    let ack = cluster
        .produce(&bombed, batch.clone(), 30_000)
        .await
        .expect("the broker takes the bomb");
    assert_eq!(ack.base_offset, 0);
    let p = common::producer(&source.bootstrap(), &[("linger.ms", "5")]);
    let rec = |i: usize| {
        Rec::new(
            Some(format!("k{i}").as_bytes()),
            Some(b"healthy"),
            &[],
            common::now_ms(),
        )
    };
    common::send(&p, &topic, 1, &rec(0)).await;

    let env = [
        ("STRAIT_SOURCE__BOOTSTRAP_SERVERS", source.bootstrap()),
        ("STRAIT_TARGET__BOOTSTRAP_SERVERS", target.bootstrap()),
        ("STRAIT_TOPICS__INCLUDE", topic.clone()),
        ("STRAIT_TOPICS__REFRESH_SECS", "1".to_owned()),
        ("STRAIT_BATCH__LINGER_MS", "20".to_owned()),
        ("STRAIT_FETCH__MAX_WAIT_MS", "100".to_owned()),
        ("STRAIT_FETCH__BUFFER_MAX_BYTES", buffer.to_string()),
        ("STRAIT_CHECKPOINT__INTERVAL_MS", "500".to_owned()),
        ("STRAIT_REPLICATION__ID", format!("bomb-{}", rand::random::<u32>())),
    ];
    let mut strait = StraitCmd::new(&["run"]).envs(&env).spawn();
    let line = strait
        .logged(&["partition halted", "decompress to more than", &buffer.to_string()])
        .await;
    assert!(line.contains(&format!("source batch {topic}/0 at offset 0")), "{line}");
    assert!(line.contains(&format!("its {} bytes", batch.len())), "{line}");
    let status = strait
        .wait_for("/status", "the bombed partition halted", |_, b| {
            b.contains("decompress to more than")
        })
        .await;
    assert!(status.contains("\"halted\""), "{status}");

    // The other partition replicates, before and after the halt.
    common::send(&p, &topic, 1, &rec(1)).await;
    let ends = common::eventually("partition 1 replicated", Duration::from_secs(60), || async {
        let hw = common::high_watermarks(&target.bootstrap(), &topic, 2).await;
        if hw.get(&1) == Some(&2) {
            Ok(hw)
        } else {
            Err(format!("target high watermarks {hw:?}"))
        }
    })
    .await;
    assert_eq!(ends.get(&0), Some(&0), "nothing of the bomb was written");
    strait.assert_running("after the halt");
    let rss = peak_rss(strait.id());
    eprintln!(
        "peak RSS {} MiB for a {} MiB batch against a {} MiB fetch buffer",
        rss >> 20,
        bomb_bytes >> 20,
        buffer >> 20
    );
    assert!(rss < bomb_bytes, "peak RSS {rss} reached the bomb's size");
}
