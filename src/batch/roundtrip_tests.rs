//! Cross-file properties of the codec: source batches in every codec → fetch bytes (maybe cut)
//! → parse → merge with `BatchBuilder` → zstd → parse again, byte for byte.

use bytes::Bytes;
use proptest::prelude::*;

use super::header::{ATTRIBUTES_OFFSET, CRC_OFFSET, HEADER_LEN, TIMESTAMP_TYPE_BIT};
use super::*;

/// Header keys with duplicates and non-UTF-8 bytes.
const HEADER_KEYS: [&[u8]; 4] = [b"trace", b"trace", &[0xff, 0x00, 0xc3], b""];

fn arb_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..max),
        // Compressible runs, so codecs actually shrink some batches.
        (any::<u8>(), 0..max).prop_map(|(b, n)| vec![b; n]),
    ]
}

fn arb_nullable(max: usize) -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Vec::new())),
        4 => arb_bytes(max).prop_map(Some),
    ]
}

fn arb_headers() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec((0..HEADER_KEYS.len(), arb_nullable(16)), 0..4)
        .prop_map(|list| Record::encode_headers(list.iter().map(|(k, v)| (HEADER_KEYS[*k], v.as_deref()))))
}

fn arb_timestamp_delta() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => -1_000_000i64..1_000_000,
        1 => any::<i64>(),
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
    ]
}

/// Records with increasing offsets (gaps included) and arbitrary timestamps.
fn arb_records() -> impl Strategy<Value = Vec<Record>> {
    (
        0i64..1_000_000,
        any::<i64>(),
        proptest::collection::vec(
            (
                1i64..5,
                arb_timestamp_delta(),
                arb_nullable(24),
                arb_nullable(300),
                arb_headers(),
            ),
            1..40,
        ),
    )
        .prop_map(|(start, base_ts, fields)| {
            let mut offset = start;
            fields
                .into_iter()
                .map(|(gap, ts_delta, key, value, headers)| {
                    offset += gap;
                    Record {
                        offset,
                        timestamp: base_ts.wrapping_add(ts_delta),
                        key: key.map(Bytes::from),
                        value: value.map(Bytes::from),
                        headers,
                    }
                })
                .collect()
        })
}

/// Splits `records` into source batches at `cuts` and encodes each with its codec.
fn source_batches(records: &[Record], cuts: &[(usize, usize)]) -> Vec<(Bytes, Vec<Record>)> {
    let mut out = Vec::new();
    let mut rest = records;
    let mut i = 0;
    while !rest.is_empty() {
        let (len, codec) = cuts.get(i).copied().unwrap_or((rest.len(), 0));
        let (chunk, tail) = rest.split_at(len.clamp(1, rest.len()));
        let opts = BuildOptions {
            compression: Compression::ALL[codec % Compression::ALL.len()],
            ..BuildOptions::default()
        };
        let bytes = encode_batch(chunk[0].offset, chunk, &opts).expect("encode source batch");
        out.push((bytes, chunk.to_vec()));
        rest = tail;
        i += 1;
    }
    out
}

fn reseal(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..]);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn fetch_merge_recompress_round_trip(
        records in arb_records(),
        cuts in proptest::collection::vec((1usize..12, 0usize..5), 0..10),
        cut_tail in proptest::option::of(any::<prop::sample::Index>()),
        extra_max in 0usize..4096,
        level in 1i32..=19,
    ) {
        let sources = source_batches(&records, &cuts);
        let mut fetch: Vec<u8> = sources.iter().flat_map(|(b, _)| b.to_vec()).collect();
        let mut expected: Vec<Record> = sources.iter().flat_map(|(_, r)| r.clone()).collect();
        let mut expected_tail = 0;
        if let Some(index) = cut_tail {
            // Drop 1..=len bytes of the last batch, as a broker's size limit would.
            let (last, last_records) = sources.last().expect("at least one batch");
            let dropped = 1 + index.index(last.len());
            fetch.truncate(fetch.len() - dropped);
            expected.truncate(expected.len() - last_records.len());
            expected_tail = last.len() - dropped;
        }

        let mut iter = batches(Bytes::from(fetch));
        let mut parsed = Vec::new();
        for batch in iter.by_ref() {
            let batch = batch.expect("truncation never errors");
            prop_assert_eq!(batch.control_type().expect("data batch"), None);
            parsed.extend(batch.records().expect("records"));
        }
        prop_assert_eq!(iter.truncated_tail(), expected_tail);
        prop_assert_eq!(&parsed, &expected, "source records survive parsing");

        let max_bytes = HEADER_LEN
            + expected.iter().map(Record::encoded_len_upper_bound).max().unwrap_or(0)
            + extra_max;
        let opts = BuildOptions { compression: Compression::Zstd, zstd_level: level, ..BuildOptions::default() };
        let mut builder = BatchBuilder::new(max_bytes);
        let mut built = Vec::new();
        for record in parsed {
            if let Err(record) = builder.try_push(record) {
                built.push(builder.finish(&opts).expect("finish"));
                builder.try_push(record).expect("fits an empty builder");
            }
        }
        if !builder.is_empty() {
            built.push(builder.finish(&opts).expect("finish"));
        }

        let mut target = Vec::new();
        let mut source = expected.iter();
        for b in &built {
            prop_assert!(b.uncompressed_len <= max_bytes);
            prop_assert!(b.bytes.len() <= b.uncompressed_len);
            let batch = RawBatch::from_bytes(b.bytes.clone()).expect("built batch verifies");
            prop_assert_eq!(batch.header.compression().expect("codec"), b.compression);
            let records = batch.records().expect("built records");
            prop_assert_eq!(records.len(), b.record_count as usize);
            for (delta, record) in records.iter().enumerate() {
                let original = source.next().expect("no extra records");
                prop_assert_eq!(record.offset, delta as i64, "contiguous target offsets");
                if delta == 0 {
                    prop_assert_eq!(b.first_source_offset, original.offset);
                }
                if delta + 1 == records.len() {
                    prop_assert_eq!(b.last_source_offset, original.offset);
                }
                prop_assert_eq!(record.timestamp, original.timestamp);
                prop_assert_eq!(&record.key, &original.key);
                prop_assert_eq!(&record.value, &original.value);
                prop_assert_eq!(&record.headers, &original.headers);
            }
            target.extend(records);
        }
        prop_assert!(source.next().is_none(), "every record replicated");
        prop_assert_eq!(target.len(), expected.len());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut filter = TxnFilter::new([(1, 0)]);
        for batch in batches(Bytes::from(bytes)).flatten() {
            let _ = batch.records();
            let _ = batch.control_type();
            let _ = filter.keep(&batch);
        }
    }

    #[test]
    fn resealed_mutations_never_panic(
        records in arb_records(),
        codec in 0usize..5,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        // Mutate the body and fix the CRC, so the damage reaches decompression and record parsing.
        let opts = BuildOptions { compression: Compression::ALL[codec], ..BuildOptions::default() };
        let mut batch = encode_batch(records[0].offset, &records, &opts).expect("encode").to_vec();
        let body_len = batch.len() - ATTRIBUTES_OFFSET;
        for (index, value) in flips {
            let at = ATTRIBUTES_OFFSET + index.index(body_len);
            batch[at] = value;
        }
        reseal(&mut batch);
        let mut filter = TxnFilter::new([(-1, 0)]);
        for batch in batches(Bytes::from(batch)).flatten() {
            if let Ok(records) = batch.records() {
                prop_assert!(records.len() as i64 == i64::from(batch.header.record_count));
                for record in records {
                    let _ = record.header_list();
                }
            }
            let _ = batch.control_type();
            let _ = filter.keep(&batch);
        }
    }
}

#[test]
fn log_append_time_overrides_record_timestamps() {
    let records = [
        Record::new(5, 100, None, Some(Bytes::from_static(b"a"))),
        Record::new(6, 50, None, Some(Bytes::from_static(b"b"))),
    ];
    let mut batch = encode_batch(5, &records, &BuildOptions::default())
        .expect("encode")
        .to_vec();
    // The broker sets the timestamp type bit and writes its append time into max_timestamp.
    batch[ATTRIBUTES_OFFSET + 1] |= TIMESTAMP_TYPE_BIT as u8;
    batch[35..43].copy_from_slice(&777i64.to_be_bytes());
    reseal(&mut batch);
    let batch = RawBatch::from_bytes(Bytes::from(batch)).expect("valid");
    assert!(batch.header.is_log_append_time());
    let stamps: Vec<i64> = batch.records().expect("records").iter().map(|r| r.timestamp).collect();
    assert_eq!(stamps, [777, 777]);
}

#[test]
fn base_offset_can_be_patched_without_resealing() {
    // The CRC starts at attributes, so fixtures may move a batch to any base offset.
    let records = [Record::new(0, 1, None, None)];
    let mut batch = encode_batch(0, &records, &BuildOptions::default())
        .expect("encode")
        .to_vec();
    batch[..8].copy_from_slice(&900i64.to_be_bytes());
    let batch = RawBatch::from_bytes(Bytes::from(batch)).expect("crc still valid");
    assert_eq!(batch.records().expect("records")[0].offset, 900);
}

#[test]
fn codec_types_cross_threads() {
    // Builders and batches move between tokio tasks; a non-Send codec context would break that.
    fn assert_send<T: Send>() {}
    fn assert_sync<T: Sync>() {}
    assert_send::<BatchBuilder>();
    assert_send::<BatchIter>();
    assert_send::<TxnFilter>();
    assert_send::<Error>();
    assert_sync::<RawBatch>();
    assert_sync::<Record>();
    assert_sync::<Error>();
}
