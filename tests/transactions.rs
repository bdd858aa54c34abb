//! read_committed filtering on Fetch responses laid out byte for byte as Kafka sends them.
//!
//! Apache Kafka's own markers are tested end to end in `kafka_transactions.rs`; here the exact
//! layouts that are hard to make a broker produce on demand (an aborted transaction split
//! across two fetch responses at chosen cuts) are built byte for byte: data batches of a plain producer, an idempotent one and two
//! transactional ones interleaved, the COMMIT and ABORT markers, and the `aborted_transactions`
//! list, all encoded by `kafka-protocol` at Fetch v12, and checked through strait's public codec
//! path. A whole partition task over transactions split across fetch answers is unit-tested in
//! `src/pipeline/tests.rs` with in-memory partitions.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchResponse, ProducerId, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use strait::batch::{self, BuildOptions, Compression, Record, TxnFilter};

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
