//! Batch path throughput on the span corpus: unpack lz4 source batches, merge into 1 MiB target
//! batches, recompress with zstd. Baseline, same run: recompress each source batch on its own
//! (what a record-at-a-time mirror with small producer batches ends up sending).

use std::time::Instant;

use bytes::Bytes;
use strait::batch::{self, BatchBuilder, BuildOptions, Compression, Record};
use strait_spans::{Encoding, SpanGenerator};

const SPANS: usize = 100_000;
const SOURCE_BATCH_RECORDS: usize = 32;

fn corpus() -> (Bytes, usize) {
    let mut gen = SpanGenerator::new(42, 1_700_000_000_000_000);
    let mut all = Vec::new();
    let mut plain = 0;
    let opts = BuildOptions {
        compression: Compression::Lz4,
        ..BuildOptions::default()
    };
    let mut pending = Vec::new();
    for offset in 0..SPANS as i64 {
        let s = gen.next_span();
        let value = s.encode(Encoding::Protobuf);
        plain += value.len();
        pending.push(Record {
            offset,
            timestamp: s.start_unix_micros / 1000,
            key: Some(Bytes::from(s.key())),
            value: Some(Bytes::from(value)),
            headers: Bytes::from_static(&[0]),
        });
        if pending.len() == SOURCE_BATCH_RECORDS {
            let base = pending[0].offset;
            all.extend_from_slice(&batch::encode_batch(base, &pending, &opts).expect("encode"));
            pending.clear();
        }
    }
    (Bytes::from(all), plain)
}

fn merged(source: &Bytes, level: i32) -> usize {
    let opts = BuildOptions {
        compression: Compression::Zstd,
        zstd_level: level,
        ..BuildOptions::default()
    };
    let mut builder = BatchBuilder::new(1 << 20);
    let mut wire = 0;
    for b in batch::batches(source.clone()) {
        for r in b.expect("batch").records().expect("records") {
            if let Err(r) = builder.try_push(r) {
                wire += builder.finish(&opts).expect("finish").bytes.len();
                builder.try_push(r).expect("fits in an empty batch");
            }
        }
    }
    wire + builder.finish(&opts).map(|b| b.bytes.len()).unwrap_or(0)
}

fn per_batch(source: &Bytes, level: i32) -> usize {
    let opts = BuildOptions {
        compression: Compression::Zstd,
        zstd_level: level,
        ..BuildOptions::default()
    };
    let mut wire = 0;
    for b in batch::batches(source.clone()) {
        let mut builder = BatchBuilder::new(1 << 20);
        for r in b.expect("batch").records().expect("records") {
            builder.try_push(r).expect("fits");
        }
        wire += builder.finish(&opts).expect("finish").bytes.len();
    }
    wire
}

fn main() {
    let (source, plain) = corpus();
    println!(
        "corpus: {SPANS} Jaeger spans, {:.1} MB of values, {:.1} MB as lz4 source batches of {SOURCE_BATCH_RECORDS}",
        plain as f64 / 1e6,
        source.len() as f64 / 1e6
    );
    println!("{:<28} {:>6} {:>10} {:>14}", "path", "level", "MB/s", "wire/source");
    for level in [1, 3, 9, 19] {
        for (name, f) in [
            ("strait merge 1 MiB", merged as fn(&Bytes, i32) -> usize),
            ("per source batch (baseline)", per_batch),
        ] {
            let start = Instant::now();
            let wire = f(&source, level);
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{:<28} {:>6} {:>10.1} {:>14.4}",
                name,
                level,
                source.len() as f64 / 1e6 / secs,
                wire as f64 / source.len() as f64
            );
        }
    }
}
