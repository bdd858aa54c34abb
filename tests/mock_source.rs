//! librdkafka's mock cluster as the SOURCE (three brokers, faults on demand), Apache Kafka as
//! the target. Data is written to the source by librdkafka and read back from both clusters by
//! librdkafka. Replays are tolerated (strait is not idempotent yet: a produce retried after a
//! lost acknowledgement may write a batch twice), loss and reordering are not: per partition,
//! the first occurrences of the target's records must be exactly the source's records in order.
//!
//! Mock facts these tests rely on (see TESTBED.md): it serves no CreateTopics or
//! DescribeConfigs, so topics come from `MockCluster::create_topic`; it returns at most one
//! stored batch per partition per Fetch, whatever the size limits say; it appends retried
//! produces again (no duplicate detection without a transactional id).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DeliveryFuture, FutureProducer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use common::{first_occurrences, Kafka, Rec, Strait};

const PARTITIONS: i32 = 4;
const BROKERS: i32 = 3;

type Mock = MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

/// A mock source cluster with one replicated topic, each partition's leader set explicitly.
/// The cluster must stay in scope for the whole test: dropping it stops its brokers.
fn mock_source(prefix: &str) -> (Mock, String) {
    let mock = MockCluster::new(BROKERS).expect("mock cluster");
    let topic = common::topic(prefix);
    mock.create_topic(&topic, PARTITIONS, BROKERS).expect("mock topic");
    for p in 0..PARTITIONS {
        mock.partition_leader(&topic, p, Some(leader(p, 0)))
            .expect("set leader");
    }
    (mock, topic)
}

/// A test's clusters and writer: the target (`None` when no broker can start here), a mock
/// source with one topic, and a writer to that topic with the producer settings `producer`,
/// writing records made by `make`.
async fn setup(
    prefix: &str,
    producer: &[(&str, &str)],
    make: fn(i32, usize) -> Rec,
) -> Option<(Kafka, Mock, String, Writer)> {
    let target = Kafka::single().await?;
    let (mock, topic) = mock_source(prefix);
    let writer = Writer::new(&mock.bootstrap_servers(), &topic, producer, make);
    Some((target, mock, topic, writer))
}

/// strait's own client on the source, for checks of what the mock stores and how it answers.
fn probe(bootstrap: &str) -> strait::kafka::Cluster {
    let servers = bootstrap.split(',').map(str::to_owned).collect();
    strait::kafka::Cluster::new("probe", servers, "probe", Duration::from_secs(10))
}

/// What partition `p`'s leader names as preferred read replica in a Fetch answer (-1: none).
async fn preferred_read_replica(bootstrap: &str, topic: &str, p: i32) -> i32 {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let cluster = probe(bootstrap);
    let tp = strait::kafka::TopicPartition::new(topic, p);
    let leader = cluster.leader(&tp).await.expect("leader connection");
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1024)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(p)
                .with_partition_max_bytes(1024)])]);
    // By name: Fetch 12 at most (13+ names topics by id).
    let (response, version) = leader.send_at_most(&request, 12).await.expect("fetch from the leader");
    assert!(version >= 11, "fetch v{version} has no preferred read replica");
    response
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .find(|q| q.partition_index == p)
        .expect("partition in answer")
        .preferred_read_replica
        .0
}

/// The leader of partition `p` after `moves` leader changes: the brokers in turn (ids 1..=3).
fn leader(p: i32, moves: i32) -> i32 {
    (p + moves) % BROKERS + 1
}

/// The `i`th record of a partition: unique (key or value carries the partition and sequence),
/// with the shapes a lossy codec gets wrong (null key, null value, empty value, duplicate and
/// null headers, explicit timestamps that go backwards).
fn record(partition: i32, i: usize) -> Rec {
    let id = format!("p{partition}-{i:05}");
    let ts = 1_700_000_000_000 + i as i64 * 1013 + i64::from(partition);
    match i % 5 {
        0 => Rec::new(
            Some(id.as_bytes()),
            Some(format!("span {id} ").repeat(20).as_bytes()),
            &[("seq", Some(id.as_bytes()))],
            ts,
        ),
        1 => Rec::new(Some(id.as_bytes()), None, &[("dup", Some(b"a")), ("dup", None)], ts),
        2 => Rec::new(Some(id.as_bytes()), Some(b""), &[("empty", Some(b""))], 1),
        3 => Rec::new(None, Some(id.as_bytes()), &[], ts - 86_400_000),
        _ => Rec::new(
            Some(id.as_bytes()),
            Some(format!("{{\"trace\":\"{id}\",\"n\":{i}}}").as_bytes()),
            &[("a", Some(b"1")), ("b", Some(b"2")), ("a", Some(b"3"))],
            ts,
        ),
    }
}

/// Writes records to every partition of the source and remembers what it sent, in order.
struct Writer {
    producer: FutureProducer,
    topic: String,
    make: fn(i32, usize) -> Rec,
    sent: BTreeMap<i32, Vec<Rec>>,
}

impl Writer {
    fn new(bootstrap: &str, topic: &str, extra: &[(&str, &str)], make: fn(i32, usize) -> Rec) -> Self {
        // Idempotence keeps librdkafka's order through its own retries; the mock may still
        // append a retried batch twice, which the first-occurrence comparison absorbs.
        // After a mock broker comes back, reconnect within a second and give queued records
        // time to drain (one CI run saw the 30 s default expire after an outage).
        let mut settings = vec![
            ("enable.idempotence", "true"),
            ("reconnect.backoff.max.ms", "1000"),
            ("message.timeout.ms", "120000"),
        ];
        settings.extend_from_slice(extra);
        Self {
            producer: common::producer(bootstrap, &settings),
            topic: topic.to_owned(),
            make,
            sent: (0..PARTITIONS).map(|p| (p, Vec::new())).collect(),
        }
    }

    /// Queues `n` new records for each partition; returns their acknowledgements.
    fn queue(&mut self, n: usize) -> Vec<DeliveryFuture> {
        let mut pending = Vec::new();
        for (p, sent) in &mut self.sent {
            for _ in 0..n {
                let r = (self.make)(*p, sent.len());
                pending.push(common::enqueue(&self.producer, &self.topic, *p, &r));
                sent.push(r);
            }
        }
        pending
    }

    /// Writes `n` new records to each partition and waits until all are acknowledged.
    async fn write(&mut self, n: usize) {
        delivered(self.queue(n)).await;
    }

    fn counts(&self) -> BTreeMap<i32, usize> {
        self.sent.iter().map(|(p, v)| (*p, v.len())).collect()
    }
}

async fn delivered(pending: Vec<DeliveryFuture>) {
    for d in pending {
        d.await
            .expect("delivery report")
            .map_err(|(e, _)| e)
            .expect("record delivered");
    }
}

/// Waits until strait has had at least `records` acknowledged by the target.
async fn wait_for_records(strait: &Strait, records: u64) {
    common::eventually_sync(
        &format!("strait to have {records} records acknowledged"),
        Duration::from_secs(60),
        || {
            let totals = strait.progress.totals();
            (totals.records >= records)
                .then_some(())
                .ok_or_else(|| format!("{totals:?}; {:#?}", strait.progress.snapshot()))
        },
    )
    .await;
}

const REQUEST_ERRORS: &str = strait::telemetry::REQUEST_ERRORS;

/// strait's failed requests to the source for `api` (its action name: "fetch", "list offsets")
/// with Kafka error `code`, counted so far in this process (see `common::metrics::recorder`).
fn source_errors(api: &str, code: &str) -> f64 {
    let text = common::metrics::render();
    common::metrics::sum(
        &text,
        REQUEST_ERRORS,
        &[("cluster", "source"), ("api", api), ("code", code)],
    )
    .unwrap_or(0.0)
}

/// Waits until strait met each of `codes` (with `every` false: any one of them) on `api` to the
/// source more often than `before` says: proof that an injected fault reached it.
async fn hit(what: &str, api: &str, codes: &[&str], every: bool, before: &BTreeMap<String, f64>) {
    common::eventually_sync(
        &format!("strait to meet {what}: {codes:?} on {api} to the source"),
        Duration::from_secs(60),
        || {
            let now = counts_of(api, codes);
            let more = |(c, n): (&String, &f64)| *n > before.get(c).copied().unwrap_or(0.0);
            let met = if every {
                now.iter().all(more)
            } else {
                now.iter().any(more)
            };
            met.then_some(()).ok_or_else(|| {
                let text = common::metrics::render();
                format!(
                    "counts {now:?} (before {before:?}); every request error so far: {:?}",
                    common::metrics::samples(&text, REQUEST_ERRORS, &[])
                )
            })
        },
    )
    .await
}

/// The counts of `codes` on `api` to the source so far.
fn counts_of(api: &str, codes: &[&str]) -> BTreeMap<String, f64> {
    codes.iter().map(|c| ((*c).to_owned(), source_errors(api, c))).collect()
}

/// Whether every partition holds at least `counts[p]` distinct records.
fn complete(got: &BTreeMap<i32, Vec<Rec>>, counts: &BTreeMap<i32, usize>) -> bool {
    counts
        .iter()
        .all(|(p, n)| got.get(p).is_some_and(|v| first_occurrences(v).len() >= *n))
}

/// Asserts `have` is exactly `want`, naming the first difference instead of dumping both.
fn assert_same(what: &str, partition: i32, have: &[Rec], want: &[Rec]) {
    if let Some(i) = (0..have.len().min(want.len())).find(|&i| have[i] != want[i]) {
        panic!(
            "{what}, partition {partition}: record {i} differs (of {} wanted, {} present)\nhave: {:?}\nwant: {:?}",
            want.len(),
            have.len(),
            have[i],
            want[i]
        );
    }
    assert_eq!(
        have.len(),
        want.len(),
        "{what}, partition {partition}: {} distinct records present, {} wanted (first missing: {:?})",
        have.len(),
        want.len(),
        want.get(have.len())
    );
}

/// Ends every fault the tests inject, so the reference read of the source sees a healthy
/// cluster.
fn faults_off(mock: &Mock, topic: &str) {
    mock.clear_request_errors(RDKafkaApiKey::Fetch);
    mock.clear_request_errors(RDKafkaApiKey::ListOffsets);
    mock.broker_round_trip_time(-1, Duration::ZERO).expect("rtt off");
    mock.broker_up(-1).expect("brokers up");
    mock.topic_error(topic, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR)
        .expect("topic error off");
    for p in 0..PARTITIONS {
        mock.partition_follower(topic, p, -1).expect("no preferred replica");
    }
}

/// The acceptance check: librdkafka reads the target (faults still on, strait running), then
/// strait stops with no partition halted, then, faults off, librdkafka reads the source. Per
/// partition the target's first occurrences must equal the source's, which must equal what the
/// writer sent.
async fn assert_replicated(mock: &Mock, target: &str, topic: &str, writer: &Writer, strait: Strait) {
    let source = &mock.bootstrap_servers();
    let counts = writer.counts();
    let partitions: Vec<i32> = counts.keys().copied().collect();
    let started = Instant::now();
    let got = common::consume_until(target, topic, &partitions, Duration::from_secs(120), |got| {
        complete(got, &counts)
    });
    eprintln!("target complete after {:.1} s", started.elapsed().as_secs_f64());
    let status = strait.progress.snapshot();
    let halted: Vec<_> = status
        .iter()
        .filter(|(_, s)| matches!(s.state, strait::replicate::PartitionState::Halted(_)))
        .collect();
    assert!(halted.is_empty(), "partitions halted: {halted:#?}");
    strait.stop().await;

    faults_off(mock, topic);
    let source_view = common::consume_until(source, topic, &partitions, Duration::from_secs(60), |got| {
        complete(got, &counts)
    });
    for (p, sent) in &writer.sent {
        let source_records = first_occurrences(&source_view[p]);
        assert_same("source (what librdkafka wrote)", *p, &source_records, sent);
        let target_records = first_occurrences(&got[p]);
        let replays = got[p].len() - target_records.len();
        if replays > 0 {
            eprintln!("partition {p}: {replays} replayed records on the target (allowed for now)");
        }
        assert_same(
            &format!(
                "target (strait's figures: {:?})",
                status.get(&strait::kafka::TopicPartition::new(topic, *p))
            ),
            *p,
            &target_records,
            &source_records,
        );
    }
}

/// Baseline: snappy batches of several records on a 3-broker source, 4 partitions, a backlog
/// and live writes, every record on the target with key, value, headers and timestamp intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snappy_batches_from_three_brokers_arrive_whole_and_in_order() {
    let Some((target, mock, topic, mut writer)) = setup(
        "mock-snappy",
        &[
            ("compression.type", "snappy"),
            ("linger.ms", "20"),
            ("batch.num.messages", "25"),
        ],
        record,
    )
    .await
    else {
        return;
    };
    let source = mock.bootstrap_servers();
    writer.write(150).await;

    // The source really holds multi-record snappy batches (checked on partition 0's first one).
    let raw = probe(&source);
    let first = raw
        .fetch(&strait::kafka::TopicPartition::new(topic.clone(), 0), 0, 1 << 20, 100)
        .await
        .expect("raw fetch from the mock");
    let batch = strait::batch::batches(first.records)
        .next()
        .expect("a batch at offset 0")
        .expect("valid batch");
    assert_eq!(
        batch.header.compression().expect("codec"),
        strait::batch::Compression::Snappy
    );
    assert!(batch.header.record_count > 1, "one record per source batch");

    let strait = Strait::start(common::config(&source, &target.bootstrap(), &topic));
    writer.write(50).await;
    assert_replicated(&mock, &target.bootstrap(), &topic, &writer, strait).await;
}

/// The Kafka error codes injected into ListOffsets answers, as strait's metric names them.
const LIST_OFFSETS_CODES: [&str; 3] = ["NotLeaderOrFollower", "LeaderNotAvailable", "RequestTimedOut"];
/// The Kafka error codes injected into Fetch answers, as strait's metric names them.
const FETCH_CODES: [&str; 5] = [
    "NotLeaderOrFollower",
    "LeaderNotAvailable",
    "UnknownTopicOrPartition",
    "RequestTimedOut",
    "KafkaStorageError",
];

/// What strait's metric names a lost or refused connection.
const TRANSPORT_CODES: [&str; 3] = ["connection_lost", "connect", "timeout"];

/// Faults on the live path, with writes going on: refused ListOffsets at start, two leader
/// moves, a run of Fetch errors and dropped connections, a metadata topic error, and the
/// leader broker of partition 0 down and back up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_moves_fetch_errors_and_a_broker_outage_lose_nothing() {
    use RDKafkaRespErr::*;
    let Some((target, mock, topic, mut writer)) = setup(
        "mock-faults",
        &[
            ("compression.type", "snappy"),
            ("linger.ms", "10"),
            ("batch.num.messages", "10"),
        ],
        record,
    )
    .await
    else {
        return;
    };
    let source = mock.bootstrap_servers();
    writer.write(60).await;
    // strait's request errors are counted in this process from here on.
    common::metrics::recorder();
    let list_offsets_before = counts_of("list offsets", &LIST_OFFSETS_CODES);

    // Every partition task starts with ListOffsets: the first answers are errors. Only strait
    // talks to the source while these are queued. No dropped connection among them: the mock
    // shuts a connection down as it reads the request, so the four partitions' requests in
    // flight on it lose their answers too, an injected error among them, which then is never
    // met (dropped connections come in step 2).
    mock.request_errors(
        RDKafkaApiKey::ListOffsets,
        &[
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        ],
    );
    let strait = Strait::start(common::config(&source, &target.bootstrap(), &topic));

    // 1. Leaders move while the backlog is being read and new records arrive.
    let pending = writer.queue(40);
    wait_for_records(&strait, 1).await;
    hit(
        "the refused ListOffsets",
        "list offsets",
        &LIST_OFFSETS_CODES,
        true,
        &list_offsets_before,
    )
    .await;
    for p in 0..PARTITIONS {
        mock.partition_leader(&topic, p, Some(leader(p, 1)))
            .expect("move leader");
    }
    delivered(pending).await;
    writer.write(20).await;

    // 2. The next Fetch answers are errors Kafka marks retriable, and two dropped connections.
    let fetch_before = counts_of("fetch", &FETCH_CODES);
    mock.request_errors(
        RDKafkaApiKey::Fetch,
        &[
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
            RD_KAFKA_RESP_ERR__TRANSPORT,
            RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR,
            RD_KAFKA_RESP_ERR__TRANSPORT,
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        ],
    );
    writer.write(40).await;
    hit("the failed Fetch answers", "fetch", &FETCH_CODES, true, &fetch_before).await;

    // 3. Leaders move again while metadata reports the topic leaderless: leader lookups fail
    // until the error is cleared.
    mock.topic_error(&topic, RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE)
        .expect("topic error");
    for p in 0..PARTITIONS {
        mock.partition_leader(&topic, p, Some(leader(p, 2)))
            .expect("move leader");
    }
    let not_leader_before = counts_of("fetch", &["NotLeaderOrFollower"]);
    let pending = writer.queue(30);
    // strait's fetches hit the old leaders (and its leader lookups the topic error).
    hit(
        "the moved leaders",
        "fetch",
        &["NotLeaderOrFollower"],
        true,
        &not_leader_before,
    )
    .await;
    mock.topic_error(&topic, RD_KAFKA_RESP_ERR_NO_ERROR)
        .expect("clear topic error");
    delivered(pending).await;

    // 4. The broker leading partition 0 goes down (no leader change, as on a restart) and
    // comes back; records for its partitions wait in librdkafka meanwhile.
    let down = leader(0, 2);
    let transport_before = counts_of("fetch", &TRANSPORT_CODES);
    mock.broker_down(down).expect("broker down");
    let pending = writer.queue(30);
    // strait loses the connection and retries against a refusing port.
    hit("the broker outage", "fetch", &TRANSPORT_CODES, false, &transport_before).await;
    mock.broker_up(down).expect("broker up");
    delivered(pending).await;
    writer.write(30).await;

    // 5. Two partitions get a follower: Fetch (v11+) to their leader now answers only with a
    // preferred-read-replica redirect, and the data comes from the follower.
    for p in [1, 2] {
        mock.partition_follower(&topic, p, leader(p, 3)).expect("follower");
    }
    assert_eq!(
        preferred_read_replica(&source, &topic, 1).await,
        leader(1, 3),
        "the leader must redirect"
    );
    writer.write(30).await;

    assert_replicated(&mock, &target.bootstrap(), &topic, &writer, strait).await;
}

/// Every broker answers 2 s late (below strait's 10 s request timeout): metadata, list offsets
/// and fetches are all slow, replication still completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_broker_answers_only_slow_replication_down() {
    let Some((target, mock, topic, mut writer)) = setup(
        "mock-slow",
        &[
            ("compression.type", "snappy"),
            ("linger.ms", "20"),
            ("batch.num.messages", "20"),
        ],
        record,
    )
    .await
    else {
        return;
    };
    let source = mock.bootstrap_servers();
    writer.write(40).await;

    // Whichever broker strait asks for metadata, the answer takes 2 s.
    let rtt = Duration::from_secs(2);
    mock.broker_round_trip_time(-1, rtt).expect("rtt");
    let probe = probe(&source);
    let asked = Instant::now();
    probe.metadata(None).await.expect("slow metadata still answers");
    assert!(
        asked.elapsed() >= rtt - Duration::from_millis(100),
        "metadata answered in {:?}: the delay is not in effect",
        asked.elapsed()
    );

    let strait = Strait::start(common::config(&source, &target.bootstrap(), &topic));
    writer.write(20).await;
    assert_replicated(&mock, &target.bootstrap(), &topic, &writer, strait).await;
}

/// A ~1 KiB record whose value does not compress, so 64 of them make a ~64 KiB batch.
fn large_record(partition: i32, i: usize) -> Rec {
    let mut value = vec![0u8; 1000];
    rand::fill(&mut value[..]);
    let id = format!("p{partition}-{i:05}");
    value[..id.len()].copy_from_slice(id.as_bytes());
    Rec::new(
        Some(id.as_bytes()),
        Some(&value),
        &[("id", Some(id.as_bytes()))],
        1_700_000_000_000 + i as i64,
    )
}

/// strait asks for 1 KiB per fetch while every source batch is ~64 KiB: the answers are larger
/// than asked (a broker returns a whole first batch regardless), and replication still moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_answers_larger_than_asked_are_replicated() {
    let Some((target, mock, topic, mut writer)) = setup(
        "mock-big",
        &[
            ("compression.type", "none"),
            ("linger.ms", "100"),
            ("batch.num.messages", "64"),
        ],
        large_record,
    )
    .await
    else {
        return;
    };
    let source = mock.bootstrap_servers();
    writer.write(64 * 3).await;

    // The source batches really are far larger than the fetch size.
    let raw = probe(&source);
    let fetched = raw
        .fetch(&strait::kafka::TopicPartition::new(topic.clone(), 0), 0, 1024, 100)
        .await
        .expect("raw fetch from the mock");
    assert!(
        fetched.records.len() >= 32 * 1024,
        "a 1 KiB fetch returned {} bytes: source batches are not large",
        fetched.records.len()
    );

    let mut cfg = common::config(&source, &target.bootstrap(), &topic);
    cfg.fetch.max_bytes = 1024;
    let strait = Strait::start(cfg);
    let progress = strait.progress.clone();
    writer.write(64).await;
    assert_replicated(&mock, &target.bootstrap(), &topic, &writer, strait).await;
    // The mock serves no DescribeConfigs: the retention risk assumes Kafka's default 7 days.
    let status = progress
        .get(&strait::kafka::TopicPartition::new(topic.clone(), 0))
        .expect("partition 0 in the progress table");
    assert_eq!(
        status.retention,
        strait::replicate::Retention::Ms(strait::replicate::KAFKA_DEFAULT_RETENTION_MS)
    );
}
