//! Consumer group offset translation on Apache Kafka, checked with librdkafka consumers: a group
//! reads part of a source topic that holds committed and aborted transactions (so control
//! records and dropped records shift target offsets) and a deleted range (DeleteRecords) below
//! its committed offset; strait replicates and syncs the group; a consumer of the same group on
//! the target continues. What it reads, joined with what the group read on the source, is
//! exactly the source: nothing missing, nothing read twice.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};

use common::{Kafka, Rec, Strait, StraitCmd};
use strait::kafka::TopicPartition;

const TIMEOUT: Duration = Duration::from_secs(30);
/// Records the group reads on the source before it moves.
const READ: usize = 75;

fn rec(label: &str, i: usize) -> Rec {
    Rec::new(
        Some(format!("{label}-{i:04}").as_bytes()),
        Some(format!("span {i}").as_bytes()),
        &[],
        common::now_ms(),
    )
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Writes records in each of the 5 codecs, a committed transaction, an aborted one, a committed
/// one and plain records; returns what a read_committed reader sees, in order.
async fn write_source(bootstrap: &str, topic: &str) -> Vec<Rec> {
    let plain = common::producer(bootstrap, &[("enable.idempotence", "true"), ("linger.ms", "0")]);
    let mut kept = Vec::new();
    let mut n = 0;
    // Source batches in every codec: strait re-batches them all into zstd.
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let p = common::producer(bootstrap, &[("compression.type", codec), ("linger.ms", "5")]);
        let records: Vec<Rec> = (0..6)
            .map(|_| {
                n += 1;
                rec(codec, n)
            })
            .collect();
        common::send_all(&p, topic, 0, &records).await;
        kept.extend(records);
    }
    let txn: FutureProducer = common::producer(
        bootstrap,
        &[("transactional.id", &format!("{topic}-txn")), ("linger.ms", "0")],
    );
    blocking(|| txn.init_transactions(TIMEOUT)).expect("init transactions");
    for (label, commit) in [("commit-a", true), ("abort-b", false), ("commit-c", true)] {
        blocking(|| txn.begin_transaction()).expect("begin");
        for _ in 0..20 {
            n += 1;
            let r = rec(label, n);
            common::send(&txn, topic, 0, &r).await;
            if commit {
                kept.push(r);
            }
        }
        if commit {
            blocking(|| txn.commit_transaction(TIMEOUT)).expect("commit");
        } else {
            blocking(|| txn.abort_transaction(TIMEOUT)).expect("abort");
        }
    }
    for _ in 0..30 {
        n += 1;
        let r = rec("plain", n);
        common::send(&plain, topic, 0, &r).await;
        kept.push(r);
    }
    kept
}

fn group_consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    common::client_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("group consumer")
}

/// The group's committed offset of partition 0 and its metadata; `None` when nothing is.
fn committed(bootstrap: &str, group: &str, topic: &str) -> Option<(i64, String)> {
    let c = group_consumer(bootstrap, group);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let got = c.committed_offsets(tpl, TIMEOUT).ok()?;
    let e = got.find_partition(topic, 0)?;
    match e.offset() {
        Offset::Offset(o) => Some((o, e.metadata().to_owned())),
        _ => None,
    }
}

/// The group reads the first [`READ`] records on the source and commits, with metadata;
/// returns what it read and the committed source offset.
fn read_and_commit(source: &Kafka, group: &str, topic: &str, kept: &[Rec]) -> (Vec<Rec>, i64) {
    let read = blocking(|| {
        let c = group_consumer(&source.plain_bootstrap(), group);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning).expect("assign");
        c.assign(&tpl).expect("assign");
        let mut got = Vec::new();
        let mut next = 0;
        let deadline = std::time::Instant::now() + TIMEOUT;
        while got.len() < READ && std::time::Instant::now() < deadline {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
                got.push(common::rec_of(&m));
                next = rdkafka::Message::offset(&m) + 1;
            }
        }
        let mut commit = TopicPartitionList::new();
        commit
            .add_partition_offset(topic, 0, Offset::Offset(next))
            .expect("offset");
        commit
            .find_partition(topic, 0)
            .expect("partition")
            .set_metadata("ingester-7");
        c.commit(&commit, CommitMode::Sync).expect("commit on the source");
        got
    });
    assert_eq!(read, kept[..READ].to_vec(), "the group read the first records");
    let (committed, _) = committed(&source.plain_bootstrap(), group, topic).expect("committed on the source");
    // Premise: the committed offset is past the control records and the aborted transaction,
    // so source and target offsets differ there.
    assert!(committed > READ as i64 + 20, "source offset {committed}");
    (read, committed)
}

/// The target offset of the first record the group has not read, found with librdkafka alone.
fn first_unread_on_target(target: &Kafka, topic: &str, read: &[Rec]) -> i64 {
    let on_target = blocking(|| common::read_to_end(&target.plain_bootstrap(), topic, &[0], "read_committed", TIMEOUT));
    let read_keys: HashSet<Vec<u8>> = read.iter().filter_map(|r| r.key.clone()).collect();
    on_target[&0]
        .iter()
        .position(|(r, _)| !r.key.as_ref().is_some_and(|k| read_keys.contains(k)))
        .expect("records the group has not read are on the target") as i64
}

/// Waits until the group's committed offset on the target is `expected`.
async fn until_synced(target: &Kafka, group: &str, topic: &str, expected: i64) {
    let bootstrap = target.plain_bootstrap();
    common::eventually("the group's offset is synced", Duration::from_secs(60), || {
        let got = blocking(|| committed(&bootstrap, group, topic));
        std::future::ready(got.as_ref().is_some_and(|(o, _)| *o == expected))
    })
    .await;
}

/// A consumer of the group on the target continues; what it reads joined with `read_before`
/// must be exactly `kept`.
fn continue_on_target(target: &Kafka, group: &str, topic: &str, kept: &[Rec], read_before: &[Rec]) {
    let remaining = kept.len() - read_before.len();
    let read_after: Vec<Rec> = blocking(|| {
        let c = group_consumer(&target.plain_bootstrap(), group);
        c.subscribe(&[topic]).expect("subscribe");
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while got.len() < remaining && std::time::Instant::now() < deadline {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
                got.push(common::rec_of(&m));
            }
        }
        got
    });
    let mut joined = read_before.to_vec();
    joined.extend(read_after);
    let keys = |rs: &[Rec]| rs.iter().map(|r| r.key.clone()).collect::<Vec<_>>();
    assert_eq!(
        keys(&joined),
        keys(kept),
        "read on the source, then on the target: exactly the source"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_continues_on_the_target_exactly_where_it_stopped_on_the_source() {
    let (Some(source), Some(target)) = (Kafka::single().await, Kafka::single().await) else {
        return;
    };
    let topic = common::topic("groups");
    let group = format!("{topic}-ingester");
    common::create_topic(&source.plain_bootstrap(), &topic, 1, &[]).await;
    let kept = write_source(&source.plain_bootstrap(), &topic).await;

    let (read_before, source_committed) = read_and_commit(&source, &group, &topic, &kept);

    // A deleted range below the committed offset, before strait reads anything.
    let admin: AdminClient<DefaultClientContext> = common::client_config(&source.plain_bootstrap())
        .create()
        .expect("admin");
    let mut deleted = TopicPartitionList::new();
    deleted
        .add_partition_offset(&topic, 0, Offset::Offset(10))
        .expect("offset");
    admin
        .delete_records(&deleted, &AdminOptions::new())
        .await
        .expect("delete records");

    let mut config = common::config(&source.bootstrap(), &target.bootstrap(), &topic);
    config.groups.include = vec![group.clone()];
    config.groups.interval_secs = 1;
    let strait = Strait::start(config);
    let tp = TopicPartition::new(&topic, 0);
    let (_, source_end) = blocking(|| {
        let c: BaseConsumer = common::client_config(&source.plain_bootstrap())
            .create()
            .expect("consumer");
        common::watermarks(&c, &topic, 0)
    });
    let progress = strait.progress.clone();
    common::eventually("everything replicated", Duration::from_secs(120), || {
        std::future::ready(progress.get(&tp).is_some_and(|s| s.next_source_offset >= source_end))
    })
    .await;

    let expected = first_unread_on_target(&target, &topic, &read_before);
    // Premise: the target offset differs from the source one (markers, the aborted and the
    // deleted records are not on the target).
    assert_ne!(expected, source_committed);
    until_synced(&target, &group, &topic, expected).await;
    let (_, metadata) = committed(&target.plain_bootstrap(), &group, &topic).expect("committed on the target");
    assert_eq!(metadata, "ingester-7", "the committed metadata is kept");
    strait.stop().await;
    continue_on_target(&target, &group, &topic, &kept, &read_before);
}

/// strait is killed (SIGKILL) after the group committed on the source and before any sync
/// pass saw the commit. `strait groups` then reads the translation from the checkpoint topic
/// alone and writes nothing; the restarted strait syncs exactly; a group with a consumer on
/// the target is left alone, and both say why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_after_a_kill_is_exact_and_an_active_group_is_left_alone() {
    let (Some(source), Some(target)) = (Kafka::single().await, Kafka::single().await) else {
        return;
    };
    let topic = common::topic("groups-kill");
    let group = format!("{topic}-ingester");
    common::create_topic(&source.plain_bootstrap(), &topic, 1, &[]).await;
    let kept = write_source(&source.plain_bootstrap(), &topic).await;
    let env = [
        ("STRAIT_SOURCE__BOOTSTRAP_SERVERS", source.bootstrap()),
        ("STRAIT_TARGET__BOOTSTRAP_SERVERS", target.bootstrap()),
        ("STRAIT_TOPICS__INCLUDE", topic.clone()),
        ("STRAIT_TOPICS__REFRESH_SECS", "1".to_owned()),
        ("STRAIT_BATCH__LINGER_MS", "10".to_owned()),
        ("STRAIT_CHECKPOINT__INTERVAL_MS", "200".to_owned()),
        ("STRAIT_GROUPS__INCLUDE", group.clone()),
        // The first pass runs at start, the next one only after the test.
        ("STRAIT_GROUPS__INTERVAL_SECS", "3600".to_owned()),
    ];
    let dir = tempfile::tempdir().expect("temp dir");
    let mut strait = StraitCmd::new(&["run"])
        .envs(&env)
        .spawn_logging_to(&dir.path().join("first.log"));
    let want: std::collections::BTreeMap<i32, i64> = [(0, kept.len() as i64)].into();
    common::eventually("everything replicated", Duration::from_secs(120), || async {
        common::high_watermarks(&target.plain_bootstrap(), &topic, 1).await == want
    })
    .await;
    // The group commits now: the running strait's only pass is behind it.
    let (read_before, _) = read_and_commit(&source, &group, &topic, &kept);
    strait.kill();
    let expected = first_unread_on_target(&target, &topic, &read_before);
    assert_eq!(
        committed(&target.plain_bootstrap(), &group, &topic),
        None,
        "nothing synced before the kill"
    );

    // `strait groups` translates from the checkpoint topic and writes nothing.
    let listed = StraitCmd::new(&["groups"]).envs(&env).output_async().await;
    assert_eq!(listed.code(), Some(0), "{}", listed.text());
    let row = listed
        .text()
        .lines()
        .find(|l| l.starts_with(group.as_str()))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("a row for the group: {}", listed.text()));
    assert!(
        row.split_whitespace().any(|w| w == expected.to_string()) && row.contains("would commit"),
        "expected target offset {expected}: {row}"
    );
    assert_eq!(
        committed(&target.plain_bootstrap(), &group, &topic),
        None,
        "without --apply nothing is written"
    );

    // The restarted strait syncs at once, exactly.
    let mut strait = StraitCmd::new(&["run"])
        .envs(&env)
        .spawn_logging_to(&dir.path().join("second.log"));
    until_synced(&target, &group, &topic, expected).await;
    strait.terminate(Duration::from_secs(30)).await;

    // A consumer of the group runs on the target: the group is left alone, and `strait groups`
    // says so.
    let active = group_consumer(&target.plain_bootstrap(), &group);
    active.subscribe(&[&topic]).expect("subscribe");
    let polled = blocking(|| {
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            if let Some(Ok(m)) = active.poll(Duration::from_millis(200)) {
                break Some(rdkafka::Message::offset(&m));
            }
            if std::time::Instant::now() > deadline {
                break None;
            }
        }
    });
    assert_eq!(
        polled,
        Some(expected),
        "the consumer on the target starts at the translated offset"
    );
    let listed = StraitCmd::new(&["groups", "--apply"]).envs(&env).output_async().await;
    assert!(listed.text().contains("left alone"), "{}", listed.text());
    // A running strait leaves it alone too, and its metric says why.
    let mut strait = StraitCmd::new(&["run"])
        .envs(&env)
        .spawn_logging_to(&dir.path().join("third.log"));
    strait
        .wait_for("/metrics", "the skipped group counted", |status, body| {
            status == 200
                && body
                    .lines()
                    .any(|l| l.starts_with(r#"strait_groups_skipped_total{reason="active_on_target"}"#))
        })
        .await;
    strait.terminate(Duration::from_secs(30)).await;
    assert_eq!(
        committed(&target.plain_bootstrap(), &group, &topic).map(|(o, _)| o),
        Some(expected),
        "the active group's offset was not touched"
    );
    drop(active);
    continue_on_target(&target, &group, &topic, &kept, &read_before);
}
