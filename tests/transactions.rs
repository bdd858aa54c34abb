//! read_committed filtering on Fetch responses laid out byte for byte as Kafka sends them.
//!
//! Apache Kafka's own markers are tested end to end in `kafka_transactions.rs`; here the exact
//! layouts that are hard to make a broker produce on demand (an aborted transaction split
//! across two fetch responses at chosen cuts) are built byte for byte: data batches of a plain producer, an idempotent one and two
//! transactional ones interleaved, the COMMIT and ABORT markers, and the `aborted_transactions`
//! list, all encoded by `kafka-protocol` at Fetch v12. They are checked twice: through strait's
//! public codec path, and through a whole partition task, served by a small fake broker as
//! strait's source with Apache Kafka as the target and librdkafka reading the result.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, ProducerId, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use strait::batch::{self, BuildOptions, Compression, Record, TxnFilter};

use common::{Kafka, Rec, Strait};

/// The Fetch version the responses are laid out in: what strait negotiates with a Kafka 3.x
/// broker (it caps Fetch at 12, the last version that names topics).
const FETCH_VERSION: i16 = 12;
const COMMITTER: i64 = 4001;
const ABORTER: i64 = 4002;
const IDEMPOTENT: i64 = 4003;
const EPOCH: i16 = 3;
const PARTITION: i32 = 0;

/// The source partition's log: batches in offset order, what a read_committed reader must see,
/// and the transactions the broker knows were aborted, as `(producer_id, first_offset,
/// last_offset)` (the last offset is the ABORT marker's), as Kafka's transaction index has them.
struct Log {
    batches: Vec<(i64, Bytes)>,
    committed: Vec<Record>,
    aborted: Vec<(i64, i64, i64)>,
    end: i64,
}

fn record(offset: i64, what: &str) -> Record {
    // Long and repetitive enough that every codec shrinks the batch (the encoder stores a
    // batch uncompressed when the codec would not).
    let value = format!("{what}@{offset}:{}", "span-attributes;".repeat(12));
    let mut r = Record::new(
        offset,
        1_700_000_000_000 + offset * 1_000,
        Some(Bytes::from(format!("k{offset}"))),
        Some(Bytes::from(value)),
    );
    r.headers = Record::encode_headers([(&b"origin"[..], Some(what.as_bytes())), (&b"origin"[..], None)]);
    r
}

impl Log {
    /// A partition written by four producers, laid out as a Kafka leader stores it:
    ///
    /// ```text
    /// 0-1   plain producer                     kept
    /// 2-3   COMMITTER txn (snappy), null value kept
    /// 4-5   ABORTER txn (gzip)                 aborted: first_offset 4
    /// 6     COMMITTER txn (lz4)                kept
    /// 7     idempotent, not transactional (zstd) kept
    /// 8-9   ABORTER txn, same transaction      aborted
    /// 10    ABORT marker for ABORTER
    /// 11    COMMIT marker for COMMITTER
    /// 12    ABORTER's next txn (zstd)          kept (committed at 13)
    /// 13    COMMIT marker for ABORTER
    /// 14-15 plain producer (snappy), null key  kept
    /// ```
    fn build() -> Self {
        let mut log = Log {
            batches: Vec::new(),
            committed: Vec::new(),
            aborted: vec![(ABORTER, 4, 10)],
            end: 0,
        };
        let plain = BuildOptions::default();
        let txn = |producer_id, base_sequence, compression| BuildOptions {
            compression,
            producer_id,
            producer_epoch: EPOCH,
            base_sequence,
            transactional: true,
            ..BuildOptions::default()
        };
        log.data(0, &["plain", "plain"], &plain, true);
        log.data(
            2,
            &["committed", "committed"],
            &txn(COMMITTER, 0, Compression::Snappy),
            true,
        );
        log.data(4, &["aborted", "aborted"], &txn(ABORTER, 0, Compression::Gzip), false);
        log.data(6, &["committed"], &txn(COMMITTER, 2, Compression::Lz4), true);
        log.data(
            7,
            &["idempotent"],
            &BuildOptions {
                compression: Compression::Zstd,
                producer_id: IDEMPOTENT,
                producer_epoch: 0,
                base_sequence: 0,
                ..BuildOptions::default()
            },
            true,
        );
        log.data(8, &["aborted", "aborted"], &txn(ABORTER, 2, Compression::None), false);
        log.marker(10, ABORTER, false);
        log.marker(11, COMMITTER, true);
        log.data(12, &["committed-later"], &txn(ABORTER, 4, Compression::Zstd), true);
        log.marker(13, ABORTER, true);
        log.data(
            14,
            &["plain", "plain"],
            &BuildOptions {
                compression: Compression::Snappy,
                ..BuildOptions::default()
            },
            true,
        );
        log
    }

    fn data(&mut self, base: i64, values: &[&str], opts: &BuildOptions, kept: bool) {
        assert_eq!(base, self.end, "batches must be contiguous");
        let mut records: Vec<Record> = values
            .iter()
            .enumerate()
            .map(|(i, what)| record(base + i as i64, what))
            .collect();
        // Shapes a lossy codec gets wrong, inside transactional and compressed batches.
        match base {
            2 => records[1].value = None,
            14 => records[1].key = None,
            _ => {}
        }
        let bytes = batch::encode_batch(base, &records, opts).expect("encode data batch");
        let header = batch::RawBatch::from_bytes(bytes.clone()).expect("valid batch").header;
        assert_eq!(
            header.compression().expect("codec"),
            opts.compression,
            "batch at {base} not compressed as asked (the encoder skips codecs that do not shrink)"
        );
        self.end = base + records.len() as i64;
        self.batches.push((base, bytes));
        if kept {
            self.committed.extend(records);
        }
    }

    fn marker(&mut self, offset: i64, producer_id: i64, commit: bool) {
        assert_eq!(offset, self.end, "batches must be contiguous");
        let bytes = batch::encode_control_batch(offset, producer_id, EPOCH, commit, 1_700_000_000_000 + offset * 1_000);
        self.batches.push((offset, bytes));
        self.end = offset + 1;
    }

    /// The raw `records` of the batches from offset `from` up to (not including) `to`.
    fn records(&self, from: i64, to: i64) -> Bytes {
        let mut out = BytesMut::new();
        for (base, bytes) in &self.batches {
            if *base >= from && *base < to {
                out.extend_from_slice(bytes);
            }
        }
        out.freeze()
    }

    /// A Fetch response for this partition carrying the batches in `[from, to)`. Its aborted
    /// list holds what Kafka puts there: the aborted transactions overlapping the range, i.e.
    /// `last_offset >= from && first_offset < to`.
    fn fetch_response(&self, topic: &str, from: i64, to: i64) -> FetchResponse {
        let aborted: Vec<(i64, i64)> = self
            .aborted
            .iter()
            .filter(|(_, first, last)| *last >= from && *first < to)
            .map(|(producer_id, first, _)| (*producer_id, *first))
            .collect();
        fetch_response(topic, self.end, self.records(from, to), &aborted)
    }

    /// What librdkafka must read back from the target: the kept records, in order.
    fn expected(&self) -> Vec<Rec> {
        self.committed.iter().map(to_rec).collect()
    }
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

fn fetch_response(topic: &str, high_watermark: i64, records: Bytes, aborted: &[(i64, i64)]) -> FetchResponse {
    let partition = PartitionData::default()
        .with_partition_index(PARTITION)
        .with_error_code(0)
        .with_high_watermark(high_watermark)
        .with_last_stable_offset(high_watermark)
        .with_log_start_offset(0)
        .with_aborted_transactions(Some(
            aborted
                .iter()
                .map(|(producer_id, first_offset)| {
                    AbortedTransaction::default()
                        .with_producer_id(ProducerId(*producer_id))
                        .with_first_offset(*first_offset)
                })
                .collect(),
        ))
        .with_preferred_read_replica(BrokerId(-1))
        .with_records(Some(records));
    FetchResponse::default()
        .with_throttle_time_ms(0)
        .with_error_code(0)
        .with_session_id(0)
        .with_responses(vec![FetchableTopicResponse::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![partition])])
}

fn encode<M: Encodable>(message: &M, version: i16) -> Bytes {
    let mut buf = BytesMut::new();
    message.encode(&mut buf, version).expect("kafka-protocol encodes");
    buf.freeze()
}

fn to_rec(r: &Record) -> Rec {
    let headers = r
        .header_list()
        .expect("valid headers")
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8(k.to_vec()).expect("utf-8 header key"),
                v.map(|v| v.to_vec()),
            )
        })
        .collect();
    Rec {
        key: r.key.as_ref().map(|k| k.to_vec()),
        value: r.value.as_ref().map(|v| v.to_vec()),
        headers,
        timestamp: Some(r.timestamp),
    }
}

/// What strait's codec path keeps from one decoded response: the records of the batches
/// `TxnFilter` lets through, and the base offsets of those batches.
fn read_committed(response: &FetchResponse) -> (Vec<Record>, Vec<i64>) {
    let p = &response.responses[0].partitions[0];
    let aborted = p
        .aborted_transactions
        .iter()
        .flatten()
        .map(|a| (a.producer_id.0, a.first_offset));
    let mut filter = TxnFilter::new(aborted);
    let mut records = Vec::new();
    let mut kept_batches = Vec::new();
    let mut iter = batch::batches(p.records.clone().expect("records present"));
    for b in iter.by_ref() {
        let b = b.expect("valid batch");
        if filter.keep(&b).expect("filter") {
            assert!(
                !b.header.is_control(),
                "control batch at {} emitted",
                b.header.base_offset
            );
            kept_batches.push(b.header.base_offset);
            records.extend(b.records().expect("records"));
        }
    }
    assert_eq!(iter.truncated_tail(), 0, "a batch was cut off");
    (records, kept_batches)
}

#[test]
fn aborted_records_are_dropped_from_a_byte_exact_fetch_response() {
    let topic = "txn-codec";
    let log = Log::build();
    let response = log.fetch_response(topic, 0, log.end);
    let body = encode(&response, FETCH_VERSION);

    // The encoded response carries the batches verbatim, and decodes to the same message.
    let raw = log.records(0, log.end);
    assert!(
        body.windows(raw.len()).any(|w| w == raw.as_ref()),
        "records not embedded byte for byte"
    );
    let decoded = FetchResponse::decode(&mut body.clone(), FETCH_VERSION).expect("kafka-protocol decodes");
    assert_eq!(decoded, response);

    let (kept, kept_batches) = read_committed(&decoded);
    let offsets: Vec<i64> = kept.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [0, 1, 2, 3, 6, 7, 12, 14, 15], "kept offsets, in order");
    assert_eq!(kept, log.committed, "kept records, byte for byte");
    assert_eq!(
        kept_batches,
        [0, 2, 6, 7, 12, 14],
        "control and aborted batches dropped"
    );
    assert!(
        kept.iter()
            .all(|r| !r.value.as_ref().is_some_and(|v| v.starts_with(b"aborted"))),
        "aborted record kept"
    );

    // The aborted list is what drops the aborted batches: without it they are data.
    let unlisted = fetch_response(topic, log.end, raw, &[]);
    let (all, _) =
        read_committed(&FetchResponse::decode(&mut encode(&unlisted, FETCH_VERSION), FETCH_VERSION).expect("decodes"));
    let offsets: Vec<i64> = all.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 14, 15]);
}

#[test]
fn an_aborted_transaction_split_across_two_fetch_responses_stays_dropped() {
    // A broker cuts responses at max_bytes. Here the second starts inside the aborted
    // transaction (offset 8) and still lists it, because its marker (10) lies past the start;
    // the second and third responses hold no data to keep at all (the rest of the aborted
    // transaction, then only markers).
    let topic = "txn-split";
    let log = Log::build();
    let mut kept = Vec::new();
    let mut listed = Vec::new();
    for (from, to) in [(0, 8), (8, 10), (10, 12), (12, log.end)] {
        let body = encode(&log.fetch_response(topic, from, to), FETCH_VERSION);
        let decoded = FetchResponse::decode(&mut body.clone(), FETCH_VERSION).expect("decodes");
        let p = &decoded.responses[0].partitions[0];
        listed.push(p.aborted_transactions.iter().flatten().count());
        kept.extend(read_committed(&decoded).0);
    }
    // The transaction ends at its marker (10): from 12 on, Kafka no longer lists it.
    assert_eq!(listed, [1, 1, 1, 0], "aborted transactions listed per response");
    assert_eq!(kept, log.committed);
}

// ---------------------------------------------------------------------------------------------
// A fake source broker: just enough Kafka (ApiVersions, Metadata, ListOffsets, Fetch) for one
// partition whose log is served as prepared Fetch v12 bodies.
// ---------------------------------------------------------------------------------------------

/// What the fake broker saw: every request (api, version) and every Fetch (offset, isolation
/// level), plus anything it could not handle.
#[derive(Debug, Default)]
struct Seen {
    requests: Vec<(ApiKey, i16)>,
    fetches: Vec<(i64, i8)>,
    problems: Vec<String>,
}

/// One partition's log as Fetch answers: each segment starts at an offset and is served as the
/// exact bytes prepared for it.
#[derive(Debug)]
struct Served {
    topic: String,
    end: i64,
    segments: Vec<(i64, i64, Bytes)>,
}

/// A TCP listener that answers like a one-broker Kafka cluster. Aborts its tasks on drop.
struct FakeBroker {
    port: u16,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeBroker {
    async fn start(served: Served) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake broker");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let served = Arc::new(served);
        let task_seen = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every connection.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let (seen, served) = (Arc::clone(&task_seen), Arc::clone(&served));
                connections.spawn(async move {
                    if let Err(e) = serve(stream, port, &served, &seen).await {
                        if e.kind() != std::io::ErrorKind::UnexpectedEof {
                            lock(&seen).problems.push(format!("connection: {e}"));
                        }
                    }
                });
            }
        });
        FakeBroker { port, seen, task }
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|p| p.into_inner())
}

/// The versions the fake broker offers: those of a Kafka 3.x broker for the four APIs, capped
/// where strait caps them anyway.
const OFFERED: [(ApiKey, i16, i16); 4] = [
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Fetch, 4, FETCH_VERSION),
];

/// The requests the fake broker understands.
enum Req {
    ApiVersions,
    Metadata(MetadataRequest),
    ListOffsets(ListOffsetsRequest),
    Fetch(FetchRequest),
}

async fn serve(mut stream: TcpStream, port: u16, served: &Served, seen: &Mutex<Seen>) -> std::io::Result<()> {
    let invalid = |e: anyhow::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string());
    loop {
        let len = stream.read_i32().await?;
        let mut frame = vec![0u8; usize::try_from(len).map_err(|e| invalid(e.into()))?];
        stream.read_exact(&mut frame).await?;
        let mut frame = Bytes::from(frame);
        let header = decode_request_header_from_buffer(&mut frame).map_err(invalid)?;
        let version = header.request_api_version;
        let api = ApiKey::try_from(header.request_api_key)
            .map_err(|()| std::io::Error::new(std::io::ErrorKind::InvalidData, "unknown api key"))?;
        lock(seen).requests.push((api, version));
        if !OFFERED
            .iter()
            .any(|(a, min, max)| *a == api && (*min..=*max).contains(&version))
        {
            // As Kafka does for a request it cannot parse: close the connection.
            lock(seen).problems.push(format!("unexpected {api:?} v{version}"));
            return Ok(());
        }
        let request = match api {
            ApiKey::ApiVersions => ApiVersionsRequest::decode(&mut frame, version).map(|_| Req::ApiVersions),
            ApiKey::Metadata => MetadataRequest::decode(&mut frame, version).map(Req::Metadata),
            ApiKey::ListOffsets => ListOffsetsRequest::decode(&mut frame, version).map(Req::ListOffsets),
            _ => FetchRequest::decode(&mut frame, version).map(Req::Fetch),
        }
        .map_err(invalid)?;
        let body = match request {
            Req::ApiVersions => encode(
                &ApiVersionsResponse::default().with_api_keys(
                    OFFERED
                        .iter()
                        .map(|(a, min, max)| {
                            ApiVersion::default()
                                .with_api_key(*a as i16)
                                .with_min_version(*min)
                                .with_max_version(*max)
                        })
                        .collect(),
                ),
                version,
            ),
            Req::Metadata(m) => {
                let wanted = m.topics.as_ref().is_none_or(|ts| {
                    ts.iter()
                        .any(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == served.topic))
                });
                let topics = if wanted {
                    vec![MetadataResponseTopic::default()
                        .with_name(Some(topic_name(&served.topic)))
                        .with_partitions(vec![MetadataResponsePartition::default()
                            .with_partition_index(PARTITION)
                            .with_leader_id(BrokerId(0))
                            .with_leader_epoch(0)
                            .with_replica_nodes(vec![BrokerId(0)])
                            .with_isr_nodes(vec![BrokerId(0)])])]
                } else {
                    Vec::new()
                };
                encode(
                    &MetadataResponse::default()
                        .with_brokers(vec![MetadataResponseBroker::default()
                            .with_node_id(BrokerId(0))
                            .with_host(StrBytes::from_static_str("127.0.0.1"))
                            .with_port(i32::from(port))])
                        .with_cluster_id(Some(StrBytes::from_static_str("fake")))
                        .with_controller_id(BrokerId(0))
                        .with_topics(topics),
                    version,
                )
            }
            Req::ListOffsets(l) => {
                let topics = l
                    .topics
                    .iter()
                    .map(|t| {
                        ListOffsetsTopicResponse::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        // -2: log start; -1: log end (= last stable offset here:
                                        // every transaction in the log is closed).
                                        let offset = if p.timestamp == -2 { 0 } else { served.end };
                                        ListOffsetsPartitionResponse::default()
                                            .with_partition_index(p.partition_index)
                                            .with_timestamp(-1)
                                            .with_offset(offset)
                                            .with_leader_epoch(0)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                encode(&ListOffsetsResponse::default().with_topics(topics), version)
            }
            Req::Fetch(f) => {
                let Some(p) = f.topics.first().and_then(|t| t.partitions.first()) else {
                    lock(seen).problems.push("fetch without a partition".into());
                    return Ok(());
                };
                let offset = p.fetch_offset;
                lock(seen).fetches.push((offset, f.isolation_level));
                if version != FETCH_VERSION {
                    lock(seen)
                        .problems
                        .push(format!("fetch v{version}, bodies are v{FETCH_VERSION}"));
                }
                match served
                    .segments
                    .iter()
                    .find(|(from, to, _)| (*from..*to).contains(&offset))
                {
                    // The prepared bytes, untouched.
                    Some((_, _, body)) => body.clone(),
                    None => {
                        // Caught up: hold the fetch like a broker would, then answer empty.
                        let wait = u64::try_from(f.max_wait_ms).unwrap_or(0).min(500);
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                        let mut empty = fetch_response(&served.topic, served.end, Bytes::new(), &[]);
                        if offset > served.end {
                            empty.responses[0].partitions[0].error_code = 1; // OFFSET_OUT_OF_RANGE
                        }
                        encode(&empty, version)
                    }
                }
            }
        };
        let mut out = BytesMut::with_capacity(body.len() + 16);
        out.put_i32(0);
        ResponseHeader::default()
            .with_correlation_id(header.correlation_id)
            .encode(&mut out, api.response_header_version(version))
            .map_err(invalid)?;
        out.extend_from_slice(&body);
        let frame_len = i32::try_from(out.len() - 4).map_err(|e| invalid(e.into()))?;
        out[0..4].copy_from_slice(&frame_len.to_be_bytes());
        stream.write_all(&out).await?;
    }
}

/// Runs strait from the fake broker serving `segments` to Apache Kafka, and checks that librdkafka
/// reads exactly the committed and non-transactional records from the target, in order.
async fn replicate_through_partition_task(prefix: &str, cuts: &[i64]) {
    let Some(target) = Kafka::single().await else {
        return;
    };
    let topic = common::topic(prefix);
    let log = Log::build();
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(log.end);
    let segments = bounds
        .windows(2)
        .map(|w| {
            (
                w[0],
                w[1],
                encode(&log.fetch_response(&topic, w[0], w[1]), FETCH_VERSION),
            )
        })
        .collect();
    let fake = FakeBroker::start(Served {
        topic: topic.clone(),
        end: log.end,
        segments,
    })
    .await;

    let strait = Strait::start(common::config(&fake.bootstrap(), &target.bootstrap(), &topic));
    // Event: the partition task reports the whole source log (markers included) acknowledged.
    let tp = strait::kafka::TopicPartition::new(topic.clone(), PARTITION);
    common::eventually_sync("strait through the whole log", Duration::from_secs(60), || {
        let status = strait.progress.get(&tp);
        if status.as_ref().is_some_and(|s| s.next_source_offset == log.end) {
            Ok(())
        } else {
            Err(format!("{status:?}; fake broker saw {:?}", lock(&fake.seen)))
        }
    })
    .await;

    let expected = log.expected();
    // Nothing more than the kept records was written: the target's log end says so.
    let consumer: rdkafka::consumer::BaseConsumer = common::client_config(&target.bootstrap())
        .create()
        .expect("watermark client");
    let (_, high) =
        rdkafka::consumer::Consumer::fetch_watermarks(&consumer, &topic, PARTITION, Duration::from_secs(10))
            .expect("target watermarks");
    assert_eq!(high, expected.len() as i64, "records on the target");
    let got = common::consume(
        &target.bootstrap(),
        &topic,
        &BTreeMap::from([(PARTITION, expected.len())]),
        Duration::from_secs(30),
    );
    strait.stop().await;
    assert_eq!(got[&PARTITION], expected);

    let seen = lock(&fake.seen);
    assert!(seen.problems.is_empty(), "fake broker problems: {:?}", seen.problems);
    assert!(
        seen.fetches.iter().all(|(_, isolation)| *isolation == 1),
        "strait must fetch read_committed: {:?}",
        seen.fetches
    );
    for from in &bounds[..bounds.len() - 1] {
        assert!(
            seen.fetches.iter().any(|(o, _)| o == from),
            "no fetch at {from}: {:?}",
            seen.fetches
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_task_replicates_only_committed_records() {
    replicate_through_partition_task("txn-e2e", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_task_drops_an_aborted_transaction_split_across_fetches() {
    // Answers cut as in the codec test above: two of them carry nothing to write.
    replicate_through_partition_task("txn-split-e2e", &[8, 10, 12]).await;
}
