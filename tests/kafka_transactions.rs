//! Transactions on an Apache Kafka source: a real librdkafka transactional producer writes
//! committed, aborted and one still-open transaction, interleaved with an idempotent producer's
//! plain records, on a two-partition topic. strait replicates; librdkafka reads the target both
//! read_committed and read_uncommitted. The target must hold exactly the committed and plain
//! records in source order, nothing aborted, nothing at or past the source's last stable offset
//! while the transaction is open, and no control records (its offsets are contiguous).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, Producer};

use common::{Kafka, Rec, Strait};
use strait::kafka::TopicPartition;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A record labelled with its writer, so a stray one names where it came from.
fn rec(label: &str, partition: i32, i: usize) -> Rec {
    let mut r = common::tricky(partition, label, i);
    r.headers.push((b"writer".to_vec(), Some(label.as_bytes().to_vec())));
    r
}

/// Sends one record and returns its source offset.
async fn send(p: &FutureProducer, topic: &str, partition: i32, r: &Rec) -> i64 {
    let delivery = common::enqueue(p, topic, partition, r);
    let delivered = delivery
        .await
        .expect("delivery report")
        .map_err(|(e, _)| e)
        .unwrap_or_else(|e| panic!("record {r:?} not delivered to {topic}/{partition}: {e}"));
    delivered.offset
}

/// Reads every record of `partitions` from the beginning to the partition end (the high
/// watermark, or the last stable offset read_committed) with librdkafka.
fn read_to_end(bootstrap: &str, topic: &str, partitions: &[i32], isolation: &str) -> BTreeMap<i32, Vec<Rec>> {
    common::read_to_end(bootstrap, topic, partitions, isolation, TIMEOUT)
        .into_iter()
        .map(|(p, v)| (p, v.into_iter().map(|(r, _)| r).collect()))
        .collect()
}

/// Low and high watermark of a partition (the log end, not the last stable offset).
fn watermarks(bootstrap: &str, topic: &str, partition: i32) -> (i64, i64) {
    let consumer: BaseConsumer = common::client_config(bootstrap)
        .set("isolation.level", "read_uncommitted")
        .create()
        .expect("consumer");
    common::watermarks(&consumer, topic, partition)
}

/// Runs a blocking librdkafka call off the runtime's worker (strait runs on the same runtime).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_committed_and_plain_records_arrive_and_never_past_the_stable_offset() {
    let Some(source) = Kafka::single().await else {
        return;
    };
    let Some(target) = Kafka::single().await else {
        return;
    };
    let topic = common::topic("txn");
    let partitions = [0, 1];
    common::create_topic(&source.plain_bootstrap(), &topic, 2, &[]).await;
    let plain = common::producer(
        &source.plain_bootstrap(),
        &[("enable.idempotence", "true"), ("linger.ms", "0")],
    );
    let txn = common::producer(
        &source.plain_bootstrap(),
        &[
            ("transactional.id", &format!("{topic}-txn")),
            // D stays open while strait catches up below it.
            ("transaction.timeout.ms", "300000"),
            ("linger.ms", "0"),
            ("compression.type", "lz4"),
        ],
    );
    blocking(|| txn.init_transactions(TIMEOUT)).expect("init transactions");

    // What a read_committed reader must see, in source order.
    let mut kept: BTreeMap<i32, Vec<Rec>> = partitions.iter().map(|p| (*p, Vec::new())).collect();
    let mut n = 0usize;
    let mut next = || {
        n += 1;
        n
    };

    // Plain records.
    for p in partitions {
        for _ in 0..5 {
            let r = rec("plain", p, next());
            send(&plain, &topic, p, &r).await;
            kept.get_mut(&p).expect("partition").push(r);
        }
    }
    // A: committed, with plain records written in the middle of it.
    blocking(|| txn.begin_transaction()).expect("begin A");
    for p in partitions {
        for _ in 0..4 {
            let r = rec("commit-a", p, next());
            send(&txn, &topic, p, &r).await;
            kept.get_mut(&p).expect("partition").push(r);
        }
        for _ in 0..2 {
            let r = rec("plain", p, next());
            send(&plain, &topic, p, &r).await;
            kept.get_mut(&p).expect("partition").push(r);
        }
        for _ in 0..4 {
            let r = rec("commit-a", p, next());
            send(&txn, &topic, p, &r).await;
            kept.get_mut(&p).expect("partition").push(r);
        }
    }
    blocking(|| txn.commit_transaction(TIMEOUT)).expect("commit A");
    // B: aborted, with plain records between its own (they stay).
    blocking(|| txn.begin_transaction()).expect("begin B");
    for p in partitions {
        for _ in 0..4 {
            send(&txn, &topic, p, &rec("abort-b", p, next())).await;
        }
        for _ in 0..2 {
            let r = rec("plain", p, next());
            send(&plain, &topic, p, &r).await;
            kept.get_mut(&p).expect("partition").push(r);
        }
        for _ in 0..4 {
            send(&txn, &topic, p, &rec("abort-b", p, next())).await;
        }
    }
    blocking(|| txn.abort_transaction(TIMEOUT)).expect("abort B");
    for p in partitions {
        for _ in 0..2 {
            let r = rec("plain", p, next());
            send(&plain, &topic, p, &r).await;
            kept.get_mut(&p).expect("partition").push(r);
        }
    }
    // C: committed.
    blocking(|| txn.begin_transaction()).expect("begin C");
    for p in partitions {
        for _ in 0..5 {
            let r = rec("commit-c", p, next());
            send(&txn, &topic, p, &r).await;
            kept.get_mut(&p).expect("partition").push(r);
        }
    }
    blocking(|| txn.commit_transaction(TIMEOUT)).expect("commit C");

    // D: open on partition 0 only, with plain records after it on both partitions. Partition 0's
    // last stable offset stays at D's first record; partition 1 is not held back.
    blocking(|| txn.begin_transaction()).expect("begin D");
    let mut open: Vec<Rec> = Vec::new();
    let mut stable_end = None;
    for _ in 0..3 {
        let r = rec("open-d", 0, next());
        let offset = send(&txn, &topic, 0, &r).await;
        stable_end.get_or_insert(offset);
        open.push(r);
    }
    let stable_end = stable_end.expect("D's first offset");
    let mut after_open: BTreeMap<i32, Vec<Rec>> = BTreeMap::new();
    for p in partitions {
        for _ in 0..3 {
            let r = rec("plain", p, next());
            send(&plain, &topic, p, &r).await;
            after_open.entry(p).or_default().push(r);
        }
    }
    let below_stable = kept[&0].len();
    kept.get_mut(&1)
        .expect("partition")
        .extend(after_open[&1].iter().cloned());

    // The source itself: read_committed stops at D; read_uncommitted shows the aborted records.
    let source_committed = blocking(|| read_to_end(&source.plain_bootstrap(), &topic, &partitions, "read_committed"));
    assert_eq!(source_committed, kept, "the source broker's own read_committed view");
    let source_all = blocking(|| read_to_end(&source.plain_bootstrap(), &topic, &partitions, "read_uncommitted"));
    for p in partitions {
        assert!(
            source_all[&p]
                .iter()
                .any(|r| r.headers.iter().any(|(_, v)| v.as_deref() == Some(b"abort-b"))),
            "partition {p}: the source log holds aborted records"
        );
    }
    let (_, source_end) = blocking(|| watermarks(&source.plain_bootstrap(), &topic, 0));
    assert!(
        source_end > stable_end + 3,
        "records past the open transaction on the source"
    );

    // strait starts with everything in the source log: its first fetches of partition 0 see a
    // high watermark past the open transaction.
    let strait = Strait::start(common::config(&source.bootstrap(), &target.bootstrap(), &topic));
    let progress = strait.progress.clone();
    let tp0 = TopicPartition::new(topic.clone(), 0);
    let target_bootstrap = target.plain_bootstrap();
    let want_high = BTreeMap::from([(0, below_stable as i64), (1, kept[&1].len() as i64)]);
    common::eventually(
        "partition 0 up to D's first offset and partition 1 whole on the target",
        Duration::from_secs(60),
        || {
            let (bootstrap, topic, want_high) = (target_bootstrap.clone(), topic.clone(), want_high.clone());
            async move {
                tokio::task::spawn_blocking(move || {
                    let consumer: BaseConsumer = common::client_config(&bootstrap)
                        .set("isolation.level", "read_uncommitted")
                        .create()
                        .expect("consumer");
                    want_high.iter().all(|(p, want)| {
                        consumer
                            .fetch_watermarks(&topic, *p, Duration::from_secs(5))
                            .is_ok_and(|(_, high)| high >= *want)
                    })
                })
                .await
                .expect("watermarks task")
            }
        },
    )
    .await;
    // strait acknowledged partition 0 exactly up to the open transaction and no further,
    // although its fetches saw the log end past it.
    common::eventually_sync("strait's progress on partition 0", Duration::from_secs(30), || {
        progress
            .get(&tp0)
            .is_some_and(|s| s.next_source_offset >= stable_end - 1 && s.source_high_watermark > 0)
    })
    .await;
    let s = progress.get(&tp0).expect("partition 0 progress");
    assert!(
        s.next_source_offset <= stable_end,
        "strait passed the last stable offset {stable_end}: {}",
        s.next_source_offset
    );
    assert_eq!(
        s.source_high_watermark, source_end,
        "strait's fetch saw the log end past the open transaction"
    );
    for isolation in ["read_committed", "read_uncommitted"] {
        let got = blocking(|| read_to_end(&target.plain_bootstrap(), &topic, &partitions, isolation));
        assert_eq!(
            got[&0], kept[&0],
            "partition 0 ({isolation}) while D is open: exactly the records below its first offset"
        );
        assert_eq!(got[&1], kept[&1], "partition 1 ({isolation}) goes on while D is open");
    }
    for p in partitions {
        let (low, high) = blocking(|| watermarks(&target.plain_bootstrap(), &topic, p));
        assert_eq!((low, high), (0, kept[&p].len() as i64), "partition {p}: target offsets");
    }

    // D commits: its records and the plain ones after it arrive, in order.
    blocking(|| txn.commit_transaction(TIMEOUT)).expect("commit D");
    kept.get_mut(&0).expect("partition").extend(open);
    kept.get_mut(&0)
        .expect("partition")
        .extend(after_open[&0].iter().cloned());
    // Live: another aborted transaction interleaved with plain records, then a committed one.
    blocking(|| txn.begin_transaction()).expect("begin E");
    for p in partitions {
        send(&txn, &topic, p, &rec("abort-e", p, next())).await;
        let r = rec("plain", p, next());
        send(&plain, &topic, p, &r).await;
        kept.get_mut(&p).expect("partition").push(r);
        send(&txn, &topic, p, &rec("abort-e", p, next())).await;
    }
    blocking(|| txn.abort_transaction(TIMEOUT)).expect("abort E");
    blocking(|| txn.begin_transaction()).expect("begin F");
    for p in partitions {
        for _ in 0..3 {
            let r = rec("commit-f", p, next());
            send(&txn, &topic, p, &r).await;
            kept.get_mut(&p).expect("partition").push(r);
        }
    }
    blocking(|| txn.commit_transaction(TIMEOUT)).expect("commit F");
    for p in partitions {
        let r = rec("plain", p, next());
        send(&plain, &topic, p, &r).await;
        kept.get_mut(&p).expect("partition").push(r);
    }
    let source_committed = blocking(|| read_to_end(&source.plain_bootstrap(), &topic, &partitions, "read_committed"));
    assert_eq!(source_committed, kept, "the source broker's own read_committed view");

    let counts: BTreeMap<i32, usize> = kept.iter().map(|(p, v)| (*p, v.len())).collect();
    let arrived = common::consume(&target.plain_bootstrap(), &topic, &counts, Duration::from_secs(60));
    for (p, want) in &kept {
        assert_eq!(arrived[p].len(), want.len(), "partition {p}: records after D committed");
    }
    strait.stop().await;

    for isolation in ["read_committed", "read_uncommitted"] {
        let got = blocking(|| read_to_end(&target.plain_bootstrap(), &topic, &partitions, isolation));
        for (p, want) in &kept {
            assert_eq!(
                &got[p], want,
                "partition {p} ({isolation}): committed and plain records, in order"
            );
        }
    }
    for (p, want) in &kept {
        let (low, high) = blocking(|| watermarks(&target.plain_bootstrap(), &topic, *p));
        assert_eq!(
            (low, high),
            (0, want.len() as i64),
            "partition {p}: one target offset per record, no control records"
        );
    }
}
