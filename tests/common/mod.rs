//! Shared test harness: real Apache Kafka clusters started as processes (`kafka`), the
//! independent librdkafka client for writing and checking data, strait run in-process
//! ([`Strait`]) or as the real binary (`binary`), the one polling helper (`wait`), captured
//! logs (`logs`), metrics (`metrics`), reading a target back (`target`), the topic tests'
//! helpers (`topics`), a throwaway PKI (`pki`) and listener ports (`ports`).
#![allow(dead_code, unreachable_pub)]

pub mod binary;
pub mod frames;
pub mod growing;
pub mod kafka;
pub mod logs;
pub mod metrics;
pub mod pki;
pub mod ports;
pub mod secured;
pub mod target;
pub mod topics;
pub mod wait;

#[allow(unused_imports)]
pub use binary::{Running, StraitCmd};
#[allow(unused_imports)]
pub use kafka::{BrokerTls, Kafka, KafkaSpec, Protocol};
#[allow(unused_imports)]
pub use wait::{eventually, eventually_sync};

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message, Timestamp};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use strait::config::Config;
use strait::replicate::{Health, Progress, Replicator};

/// Whether the suite runs in CI, where a missing broker is a failure, not a skip.
pub fn ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// Call when a test cannot run here: fails under CI, skips (with a note) elsewhere.
pub fn unavailable(what: &str) {
    assert!(!ci(), "CI is set but {what}: run scripts/install-deps.sh");
    eprintln!("SKIPPED: {what} (run scripts/install-deps.sh; under CI this fails)");
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// A unique topic name, so tests sharing a broker never see each other's data.
pub fn topic(prefix: &str) -> String {
    format!("{prefix}-{}-{:x}", std::process::id(), rand::random::<u32>())
}

/// librdkafka client config for a bootstrap list, with test-friendly timeouts.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .set("log_level", "3");
    c
}

/// Creates a topic with librdkafka's admin client.
/// Deletes topic `name` and waits until metadata no longer shows it.
pub async fn delete_topic(bootstrap: &str, name: &str) {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap).create().expect("admin");
    for r in admin
        .delete_topics(&[name], &AdminOptions::new())
        .await
        .expect("delete topics")
    {
        r.unwrap_or_else(|e| panic!("topic {name} not deleted: {e:?}"));
    }
    eventually(&format!("topic {name} gone"), Duration::from_secs(30), || {
        let (bootstrap, name) = (bootstrap.to_owned(), name.to_owned());
        async move {
            tokio::task::spawn_blocking(move || {
                let c: BaseConsumer = client_config(&bootstrap).create().expect("consumer");
                c.fetch_metadata(Some(&name), Duration::from_secs(5))
                    .map(|md| md.topics().iter().all(|t| t.partitions().is_empty()))
                    .unwrap_or(false)
            })
            .await
            .unwrap_or(false)
        }
    })
    .await;
}

pub async fn create_topic(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    create_topic_rf(bootstrap, name, partitions, 1, configs).await;
}

/// Creates `name` again right after [`delete_topic`]: the controller may still be finishing the
/// deletion and answer TopicAlreadyExists for a moment, which is asked again for up to 30 s.
pub async fn create_topic_again(bootstrap: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap).create().expect("admin client");
    let t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let res = admin
            .create_topics(
                [&t],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .expect("create topics request");
        match res.into_iter().next().expect("one result") {
            Ok(_) => return,
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) if Instant::now() < deadline => {
                eprintln!("topic {name} still being deleted; creating it again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("topic {name} not created again: {e:?}"),
        }
    }
}

/// Creates a topic with `replication_factor` replicas per partition.
pub async fn create_topic_rf(
    bootstrap: &str,
    name: &str,
    partitions: i32,
    replication_factor: i32,
    configs: &[(&str, &str)],
) {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap).create().expect("admin client");
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(replication_factor));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    // A broker slowed down by a loaded machine may answer after the client gave up: the request
    // is asked again, and the topic found created by an earlier attempt is the one asked for
    // (every test names its topics uniquely).
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(30)))
        .request_timeout(Some(Duration::from_secs(60)));
    for attempt in 1.. {
        let answer = admin.create_topics([&t], &options).await;
        let timed_out = |e: &rdkafka::error::KafkaError| {
            matches!(
                e.rdkafka_error_code(),
                Some(
                    rdkafka::types::RDKafkaErrorCode::OperationTimedOut
                        | rdkafka::types::RDKafkaErrorCode::RequestTimedOut
                )
            )
        };
        match answer {
            Ok(results) => match results.into_iter().next().expect("one result") {
                Ok(_) => return,
                Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) if attempt > 1 => return,
                Err((_, code @ rdkafka::types::RDKafkaErrorCode::RequestTimedOut)) if attempt < 4 => {
                    eprintln!("creating topic {name}: {code:?}; asking again");
                }
                Err(e) => panic!("topic {name} not created: {e:?}"),
            },
            Err(e) if timed_out(&e) && attempt < 4 => eprintln!("creating topic {name}: {e}; asking again"),
            Err(e) => panic!("create topics request for {name}: {e}"),
        }
    }
}

/// A producer with extra librdkafka settings.
pub fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut c = client_config(bootstrap);
    c.set("message.timeout.ms", "30000");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("producer")
}

/// The high watermark of partitions `0..partitions` of `topic`, read with librdkafka.
pub async fn high_watermarks(bootstrap: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = client_config(&bootstrap).create().expect("consumer");
        (0..partitions)
            .map(|p| (p, watermarks(&consumer, &topic, p).1))
            .collect()
    })
    .await
    .expect("watermarks task")
}

/// Low and high watermark of a partition (blocking). A topic strait has just created, or whose
/// leader has just moved, answers "not leader" or "unknown partition" for a moment: those are
/// asked again for up to 30 s; any other error, or one that lasts, fails the test.
pub fn watermarks(consumer: &BaseConsumer, topic: &str, partition: i32) -> (i64, i64) {
    use rdkafka::types::RDKafkaErrorCode as Code;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
            Ok(w) => return w,
            Err(KafkaError::MetadataFetch(
                code @ (Code::NotLeaderForPartition
                | Code::LeaderNotAvailable
                | Code::UnknownTopicOrPartition
                | Code::UnknownPartition
                | Code::RequestTimedOut
                | Code::OperationTimedOut
                | Code::BrokerTransportFailure
                | Code::AllBrokersDown),
            )) if Instant::now() < deadline => {
                eprintln!("watermarks of {topic}/{partition}: {code:?}, asking again");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("watermarks of {topic}/{partition}: {e}"),
        }
    }
}

/// One record as librdkafka reads it: everything a replica must keep. Header keys are bytes,
/// written and read through librdkafka's C API (`strait_rdkafka_headers`), so keys that are not
/// UTF-8 round trip too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rec {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<strait_rdkafka_headers::Header>,
    pub timestamp: Option<i64>,
}

impl Rec {
    pub fn new(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&str, Option<&[u8]>)], timestamp: i64) -> Self {
        let headers: Vec<(&[u8], Option<&[u8]>)> = headers.iter().map(|(k, v)| (k.as_bytes(), *v)).collect();
        Rec::with_byte_keys(key, value, &headers, timestamp)
    }

    /// A record whose header keys may be any bytes but NUL.
    pub fn with_byte_keys(
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&[u8], Option<&[u8]>)],
        timestamp: i64,
    ) -> Self {
        Rec {
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
                .collect(),
            timestamp: Some(timestamp),
        }
    }
}

/// One record as librdkafka's producer takes it, for one partition.
fn future_record<'a>(topic: &'a str, partition: i32, r: &'a Rec) -> FutureRecord<'a, [u8], [u8]> {
    let headers = strait_rdkafka_headers::owned(&r.headers);
    let mut fr: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).partition(partition).headers(headers);
    if let Some(k) = &r.key {
        fr = fr.key(k.as_slice());
    }
    if let Some(v) = &r.value {
        fr = fr.payload(v.as_slice());
    }
    if let Some(ts) = r.timestamp {
        fr = fr.timestamp(ts);
    }
    fr
}

/// Sends one record to a partition and waits for the acknowledgement.
pub async fn send(p: &FutureProducer, topic: &str, partition: i32, r: &Rec) {
    if let Err((e, _)) = p
        .send(future_record(topic, partition, r), Duration::from_secs(30))
        .await
    {
        panic!("record {r:?} not delivered to {topic}/{partition}: {e}");
    }
}

/// A read_committed librdkafka consumer of its own group, assigned `partitions` of `topic`
/// from the beginning, with `extra` settings.
pub fn reader(bootstrap: &str, topic: &str, partitions: &[i32], extra: &[(&str, &str)]) -> BaseConsumer {
    let mut config = client_config(bootstrap);
    config
        .set("group.id", format!("check-{}", rand::random::<u32>()))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "100");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    let consumer: BaseConsumer = config.create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition_offset(topic, *p, Offset::Beginning).expect("assign");
    }
    consumer.assign(&tpl).expect("assign");
    consumer
}

/// Reads every partition of `topic` from the beginning with librdkafka until `expected`
/// records per partition arrived (or the deadline passed), read_committed.
pub fn consume(
    bootstrap: &str,
    topic: &str,
    expected: &BTreeMap<i32, usize>,
    timeout: Duration,
) -> BTreeMap<i32, Vec<Rec>> {
    let partitions: Vec<i32> = expected.keys().copied().collect();
    let consumer = reader(bootstrap, topic, &partitions, &[]);
    let mut got: BTreeMap<i32, Vec<Rec>> = expected.keys().map(|p| (*p, Vec::new())).collect();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && expected.iter().any(|(p, n)| got[p].len() < *n) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => got.entry(m.partition()).or_default().push(rec_of(&m)),
            Some(Err(e)) => eprintln!("consume error (retrying): {e}"),
            None => {}
        }
    }
    got
}

/// [`consume`] off the async runtime's workers (strait may share the runtime).
pub async fn consume_async(
    bootstrap: &str,
    topic: &str,
    expected: &BTreeMap<i32, usize>,
    timeout: Duration,
) -> BTreeMap<i32, Vec<Rec>> {
    let (bootstrap, topic, expected) = (bootstrap.to_owned(), topic.to_owned(), expected.clone());
    tokio::task::spawn_blocking(move || consume(&bootstrap, &topic, &expected, timeout))
        .await
        .expect("consumer")
}

/// Every record of `partitions` from the beginning to the partition end (the high watermark,
/// or the last stable offset with `isolation` read_committed), with the timestamp type
/// librdkafka reports. Blocking: wrap it in `block_in_place` where strait shares the runtime.
pub fn read_to_end(
    bootstrap: &str,
    topic: &str,
    partitions: &[i32],
    isolation: &str,
    timeout: Duration,
) -> BTreeMap<i32, Vec<(Rec, Timestamp)>> {
    let consumer = reader(
        bootstrap,
        topic,
        partitions,
        &[("enable.partition.eof", "true"), ("isolation.level", isolation)],
    );
    let mut got: BTreeMap<i32, Vec<(Rec, Timestamp)>> = partitions.iter().map(|p| (*p, Vec::new())).collect();
    let mut at_end = std::collections::BTreeSet::new();
    let deadline = Instant::now() + timeout;
    while at_end.len() < partitions.len() {
        assert!(Instant::now() < deadline, "{topic} not read to its end ({isolation})");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => got.entry(m.partition()).or_default().push((rec_of(&m), m.timestamp())),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => eprintln!("consume error (retrying): {e}"),
            None => {}
        }
    }
    got
}

/// strait running in-process until dropped or stopped.
pub struct Strait {
    pub shutdown: CancellationToken,
    pub progress: std::sync::Arc<Progress>,
    pub health: std::sync::Arc<Health>,
    handle: Option<tokio::task::JoinHandle<strait::replicate::Result<()>>>,
}

/// A config for tests: the two clusters, one topic regex, quick refresh and linger.
pub fn config(source: &str, target: &str, include: &str) -> Config {
    let mut c = Config::default();
    c.source.bootstrap_servers = source.to_owned();
    c.target.bootstrap_servers = target.to_owned();
    c.source.request_timeout_ms = 10_000;
    c.target.request_timeout_ms = 10_000;
    c.topics.include = vec![include.to_owned()];
    c.topics.refresh_secs = 1;
    c.batch.linger_ms = 20;
    c.fetch.max_wait_ms = 100;
    c.shutdown_grace_secs = 10;
    c
}

impl Strait {
    pub fn start(config: Config) -> Strait {
        // strait's log lines go to the test's captured output (shown when a test fails).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("STRAIT_LOG").unwrap_or_else(|_| "info".into()))
            .with_test_writer()
            .try_init();
        config.validate().expect("test config is valid");
        let filter = config.topic_filter().expect("filter");
        let r = Replicator::new(config, filter);
        let progress = r.progress();
        let health = r.health();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(r.run(shutdown.clone()));
        Strait {
            shutdown,
            progress,
            health,
            handle: Some(handle),
        }
    }

    /// Stops strait as SIGTERM would and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            h.await.expect("strait task").expect("strait run");
        }
    }
}

impl Drop for Strait {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Checks a replica against its source with duplicates allowed (the exactly-once issue removes
/// them): the first occurrences, in target order, must equal the source sequence exactly.
pub fn assert_no_loss_in_order(partition: i32, source: &[Rec], target: &[Rec]) {
    let mut seen = std::collections::HashSet::new();
    let firsts: Vec<&Rec> = target
        .iter()
        .filter(|r| seen.insert((r.key.clone(), r.value.clone())))
        .collect();
    assert_eq!(
        firsts.len(),
        source.len(),
        "partition {partition}: distinct records on the target"
    );
    for (i, (t, s)) in firsts.iter().zip(source).enumerate() {
        assert_eq!(*t, s, "partition {partition}: record {i} lost or out of order");
    }
}

/// One consumed message as a [`Rec`], header keys as the bytes librdkafka read.
pub fn rec_of(m: &BorrowedMessage<'_>) -> Rec {
    Rec {
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers: strait_rdkafka_headers::of(m),
        timestamp: m.timestamp().to_millis(),
    }
}

/// Reads `partitions` of `topic` from the beginning with librdkafka (read_committed) until
/// `done` holds for everything read so far, or the deadline passes. Unlike [`consume`] it does
/// not stop at a record count, so duplicates cannot hide a missing record. `done` is checked
/// whenever the consumer goes idle and every 1,000 records.
pub fn consume_until(
    bootstrap: &str,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
    mut done: impl FnMut(&BTreeMap<i32, Vec<Rec>>) -> bool,
) -> BTreeMap<i32, Vec<Rec>> {
    let consumer = reader(bootstrap, topic, partitions, &[]);
    let mut got: BTreeMap<i32, Vec<Rec>> = partitions.iter().map(|p| (*p, Vec::new())).collect();
    let deadline = Instant::now() + timeout;
    let mut since_check = 0usize;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                got.entry(m.partition()).or_default().push(rec_of(&m));
                since_check += 1;
                if since_check < 1000 {
                    continue;
                }
            }
            Some(Err(e)) => eprintln!("consume error (retrying): {e}"),
            None => {}
        }
        since_check = 0;
        if done(&got) {
            break;
        }
    }
    got
}

/// Sends `records` to one partition without waiting between them, so the producer can put
/// several into one batch, then waits for every acknowledgement.
pub async fn send_all(p: &FutureProducer, topic: &str, partition: i32, records: &[Rec]) {
    let mut pending = Vec::with_capacity(records.len());
    for r in records {
        pending.push(enqueue(p, topic, partition, r));
    }
    for d in pending {
        d.await
            .expect("delivery report")
            .map_err(|(e, _)| e)
            .expect("record delivered");
    }
}

/// Puts one record in the producer's queue (waiting while the queue is full) and returns the
/// future of its acknowledgement.
pub fn enqueue(p: &FutureProducer, topic: &str, partition: i32, r: &Rec) -> rdkafka::producer::DeliveryFuture {
    let mut fr = future_record(topic, partition, r);
    loop {
        match p.send_result(fr) {
            Ok(d) => return d,
            Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), back)) => {
                fr = back;
                // The producer's own thread drains the queue.
                std::thread::sleep(Duration::from_millis(10));
            }
            Err((e, _)) => panic!("cannot enqueue record: {e}"),
        }
    }
}

/// `n` records for one partition, keyed `<label>-<partition>-<i>`, with a header and timestamps
/// from now on (recent: retention, 7 days by default, must not delete them).
pub fn recent_records(label: &str, partition: i32, n: usize) -> Vec<Rec> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    (0..n)
        .map(|i| {
            let key = format!("{label}-{partition}-{i}");
            let value = format!("span {i} of partition {partition} ({label})");
            Rec::new(
                Some(key.as_bytes()),
                Some(value.as_bytes()),
                &[("h", Some(b"v"))],
                now + i as i64,
            )
        })
        .collect()
}

/// Keeps the first occurrence of every record, in order: what a replica that may replay
/// (duplicate) but never lose or reorder looks like once replays are removed.
pub fn first_occurrences(records: &[Rec]) -> Vec<Rec> {
    let mut seen = std::collections::BTreeSet::new();
    records
        .iter()
        .filter(|r| seen.insert((r.key.clone(), r.value.clone(), r.headers.clone(), r.timestamp)))
        .cloned()
        .collect()
}

/// Records that break lossy codecs: null vs empty, duplicate header keys, null header values,
/// explicit timestamps far in the past (brokers refuse ones far in the future).
pub fn tricky(partition: i32, codec: &str, i: usize) -> Rec {
    let key = format!("{codec}-{partition}-{i}");
    let ts = 1_600_000_000_000 + (i as i64 * 7919) % 100_000_000;
    match i % 6 {
        0 => Rec::new(None, Some(key.as_bytes()), &[], ts),
        1 => Rec::new(Some(key.as_bytes()), None, &[("h", Some(b"1"))], ts),
        2 => Rec::new(
            Some(key.as_bytes()),
            Some(b""),
            &[("dup", Some(b"a")), ("dup", Some(b"b")), ("dup", None)],
            ts,
        ),
        3 => Rec::new(
            Some(b""),
            Some(&[0u8, 255, 0, 1]),
            &[("null", None), ("empty", Some(b""))],
            1,
        ),
        4 => Rec::new(
            Some(key.as_bytes()),
            Some(&vec![b'x'; 3000]),
            &[("a", Some(b"1")), ("b", Some(b"2")), ("a", Some(b"3"))],
            ts,
        ),
        _ => Rec::new(
            Some(key.as_bytes()),
            Some(format!("span payload {i} for {codec}").as_bytes()),
            &[("trace-id", Some(key.as_bytes()))],
            1_500_000_000_000,
        ),
    }
}

/// The halt message of `tp`, once it halts (within `within`).
pub async fn halted(progress: &Progress, tp: &strait::kafka::TopicPartition, within: Duration) -> String {
    eventually_sync("partition halted", within, || {
        matches!(
            progress.get(tp).map(|s| s.state),
            Some(strait::replicate::PartitionState::Halted(_))
        )
    })
    .await;
    match progress.get(tp).map(|s| s.state) {
        Some(strait::replicate::PartitionState::Halted(why)) => why,
        other => panic!("not halted: {other:?}"),
    }
}
