//! The span corpus: written once to the source with `strait_spans::demo::produce_spans`, read back raw
//! (the fetch-only broker limit), and the zstd-19 bound computed over its records.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use strait::batch::{self, BatchBuilder, BuildOptions, Compression, Record};
use strait::kafka::{Cluster, OffsetSpec, TopicPartition};
use strait_spans::{Encoding, SpanGenerator};

/// Average key + value bytes of a demo span record (protobuf), from a sample of the generator.
pub fn average_span_bytes() -> f64 {
    let mut g = SpanGenerator::new(7, 0);
    let n = 2000;
    let total: usize = (0..n)
        .map(|_| {
            let s = g.next_span();
            s.key().len() + s.encode(Encoding::Protobuf).len()
        })
        .sum();
    total as f64 / n as f64
}

/// Writes about `payload_bytes` of spans to `topic`; returns (records written, seconds).
pub async fn write(bootstrap: &str, topic: &str, partitions: i32, payload_bytes: f64, seed: u64) -> Result<(u64, f64)> {
    let count = (payload_bytes / average_span_bytes()).ceil() as u64;
    let now_micros = chrono::Utc::now().timestamp_micros();
    let t = Instant::now();
    strait_spans::demo::produce_spans(
        &[bootstrap.to_owned()],
        topic,
        partitions,
        count,
        seed,
        Encoding::Protobuf,
        now_micros,
    )
    .await
    .context("while writing the span corpus")?;
    Ok((count, t.elapsed().as_secs_f64()))
}

/// The corpus as the source stores it.
#[derive(Debug, Default)]
pub struct Corpus {
    pub topic: String,
    pub partitions: i32,
    /// Raw record batches per partition, as fetched.
    pub batches: Vec<Vec<Bytes>>,
    pub records: u64,
    /// Bytes of the stored batches (lz4, as produce_spans writes them).
    pub stored_bytes: u64,
    /// Key + value bytes of every record: the unit of every MB/s and GB in the table.
    pub payload_bytes: u64,
    /// Seconds the concurrent fetch of everything took.
    pub fetch_secs: f64,
}

impl Corpus {
    pub fn payload_per_record(&self) -> f64 {
        self.payload_bytes as f64 / self.records.max(1) as f64
    }
}

/// Splits a fetched records blob into complete batches; returns them and the offset after the
/// last complete one.
pub fn split_batches(records: &Bytes, mut next: i64) -> (Vec<Bytes>, i64) {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while records.len() >= pos + 61 {
        let len = i32::from_be_bytes(records[pos + 8..pos + 12].try_into().expect("4 bytes")) as usize;
        let end = pos + 12 + len;
        if len < 49 || end > records.len() {
            break;
        }
        let base = i64::from_be_bytes(records[pos..pos + 8].try_into().expect("8 bytes"));
        let last_delta = i32::from_be_bytes(records[pos + 23..pos + 27].try_into().expect("4 bytes"));
        next = base + i64::from(last_delta) + 1;
        out.push(records.slice(pos..end));
        pos = end;
    }
    (out, next)
}

/// Records in a raw batch, from its header.
pub fn record_count(batch: &[u8]) -> u64 {
    batch
        .get(57..61)
        .map(|b| i32::from_be_bytes(b.try_into().expect("4 bytes")).max(0) as u64)
        .unwrap_or(0)
}

/// Reads every partition of `topic` concurrently from offset 0 to its end, keeping the raw
/// batches. The elapsed time is the source's fetch-only rate on this data.
pub async fn fetch_all(c: &Arc<Cluster>, topic: &str, partitions: i32) -> Result<Corpus> {
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for p in 0..partitions {
        let c = c.clone();
        let tp = TopicPartition::new(topic, p);
        set.spawn(async move {
            let end = c.list_offset(&tp, OffsetSpec::Latest).await?;
            let mut offset = 0i64;
            let mut batches = Vec::new();
            // Fetches of several partitions share requests, so an answer may be empty before
            // the end; give up only after many empty answers in a row.
            let mut empty = 0;
            while offset < end && empty < 1000 {
                let f = c.fetch(&tp, offset, 1 << 20, 100).await?;
                let (got, next) = split_batches(&f.records, offset);
                if next <= offset {
                    empty += 1;
                    continue;
                }
                empty = 0;
                offset = next;
                batches.extend(got);
            }
            Ok::<_, strait::kafka::Error>((p, batches))
        });
    }
    let mut corpus = Corpus {
        topic: topic.to_owned(),
        partitions,
        batches: vec![Vec::new(); partitions as usize],
        ..Corpus::default()
    };
    while let Some(r) = set.join_next().await {
        let (p, batches) = r.context("fetch task panicked")?.context("while fetching the corpus")?;
        corpus.batches[p as usize] = batches;
    }
    corpus.fetch_secs = start.elapsed().as_secs_f64();
    for b in corpus.batches.iter().flatten() {
        corpus.records += record_count(b);
        corpus.stored_bytes += b.len() as u64;
    }
    Ok(corpus)
}

/// Decoded records of one partition's raw batches.
fn decode(batches: &[Bytes]) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    for raw in batches {
        for b in batch::batches(raw.clone()) {
            let b = b.context("corrupt corpus batch")?;
            out.extend(b.records().context("undecodable corpus batch")?);
        }
    }
    Ok(out)
}

/// Key + value bytes of one record.
fn payload_of(r: &Record) -> u64 {
    r.key.as_ref().map_or(0, |k| k.len() as u64) + r.value.as_ref().map_or(0, |v| v.len() as u64)
}

/// Key + value bytes of raw batches, decoded one batch at a time.
pub fn payload_bytes(batches: &[Bytes]) -> Result<u64> {
    let mut n = 0;
    for b in batches {
        n += decode(std::slice::from_ref(b))?.iter().map(payload_of).sum::<u64>();
    }
    Ok(n)
}

/// Sizes of the corpus regrouped into 1 MiB batches per partition.
#[derive(Debug, Default, Clone, Copy)]
pub struct Regrouped {
    /// Uncompressed size of all regrouped batches (61-byte header + encoded records).
    pub uncompressed_all: u64,
    /// Of those, the batches compressed in the sample.
    pub uncompressed_sample: u64,
    /// Their zstd-19 size.
    pub zstd19_sample: u64,
}

/// Fills in `payload_bytes` and regroups every record into 1 MiB batches (as strait does),
/// compressing about `sample_bytes` of them with zstd level 19: the bound for wire bytes per
/// source byte. Runs on two threads.
pub fn analyse(corpus: &mut Corpus, sample_bytes: u64) -> Result<Regrouped> {
    let parts: Vec<Vec<Bytes>> = corpus.batches.clone();
    let threads = 2usize;
    let per_thread_sample = sample_bytes / threads as u64;
    let results: Vec<Result<(u64, Regrouped)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let mine: Vec<&Vec<Bytes>> = parts.iter().skip(t).step_by(threads).collect();
                s.spawn(move || -> Result<(u64, Regrouped)> {
                    let mut payload = 0u64;
                    let mut g = Regrouped::default();
                    let z19 = BuildOptions {
                        compression: Compression::Zstd,
                        zstd_level: 19,
                        ..BuildOptions::default()
                    };
                    let plain = BuildOptions::default();
                    for batches in mine {
                        let mut builder = BatchBuilder::new(1 << 20);
                        let finish = |b: &mut BatchBuilder, g: &mut Regrouped| -> Result<()> {
                            if b.is_empty() {
                                return Ok(());
                            }
                            if g.uncompressed_sample < per_thread_sample {
                                let built = b.finish(&z19).context("zstd-19 batch")?;
                                g.uncompressed_sample += built.uncompressed_len as u64;
                                g.zstd19_sample += built.bytes.len() as u64;
                                g.uncompressed_all += built.uncompressed_len as u64;
                            } else {
                                let built = b.finish(&plain).context("plain batch")?;
                                g.uncompressed_all += built.uncompressed_len as u64;
                            }
                            Ok(())
                        };
                        for r in decode(batches)? {
                            payload += payload_of(&r);
                            if let Err(r) = builder.try_push(r) {
                                finish(&mut builder, &mut g)?;
                                builder
                                    .try_push(r)
                                    .map_err(|_| anyhow::anyhow!("record larger than 1 MiB"))?;
                            }
                        }
                        finish(&mut builder, &mut g)?;
                    }
                    Ok((payload, g))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("analysis thread panicked")))
            })
            .collect()
    });
    let mut total = Regrouped::default();
    corpus.payload_bytes = 0;
    for r in results {
        let (payload, g) = r?;
        corpus.payload_bytes += payload;
        total.uncompressed_all += g.uncompressed_all;
        total.uncompressed_sample += g.uncompressed_sample;
        total.zstd19_sample += g.zstd19_sample;
    }
    Ok(total)
}

/// A fetched batch as a producer would send it: base offset 0 and no producer id, epoch or
/// sequence (Apache Kafka rejects client batches with the source's offsets and producer id as
/// InvalidRecord); the CRC recomputed. Records and compression are untouched.
fn as_client_batch(b: &Bytes) -> Bytes {
    let mut v = b.to_vec();
    if v.len() < 61 {
        return b.clone();
    }
    v[0..8].fill(0);
    v[43..57].fill(0xff); // producer id -1, epoch -1, base sequence -1
    let crc = crc32c::crc32c(&v[21..]);
    v[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(v)
}

/// Produces the corpus' raw batches to `topic` on `c`, up to 4 in flight per partition;
/// returns the seconds it took (the target's produce-only rate on this data).
pub async fn produce_all(c: &Arc<Cluster>, corpus: &Corpus, topic: &str) -> Result<f64> {
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (p, batches) in corpus.batches.iter().enumerate() {
        let c = c.clone();
        let tp = TopicPartition::new(topic, p as i32);
        let batches = batches.clone();
        set.spawn(async move {
            let mut in_flight = std::collections::VecDeque::new();
            for b in batches {
                in_flight.push_back(c.start_produce(&tp, as_client_batch(&b), 30_000).await?);
                if in_flight.len() >= 4 {
                    if let Some(f) = in_flight.pop_front() {
                        f.ack().await?;
                    }
                }
            }
            for f in in_flight {
                f.ack().await?;
            }
            Ok::<_, strait::kafka::Error>(())
        });
    }
    while let Some(r) = set.join_next().await {
        r.context("produce task panicked")?
            .context("while producing the corpus")?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Reads a replicated topic back raw: (records by batch headers, stored batch bytes).
pub async fn stored(c: &Cluster, topic: &str, partitions: i32) -> Result<(u64, u64)> {
    let (mut records, mut bytes) = (0u64, 0u64);
    for p in 0..partitions {
        let tp = TopicPartition::new(topic, p);
        let end = c.list_offset(&tp, OffsetSpec::Latest).await?;
        let mut offset = c.list_offset(&tp, OffsetSpec::Earliest).await?;
        while offset < end {
            let f = tokio::time::timeout(Duration::from_secs(30), c.fetch(&tp, offset, 4 << 20, 100))
                .await
                .context("fetch of the target timed out")??;
            let (got, next) = split_batches(&f.records, offset);
            if next <= offset {
                break;
            }
            offset = next;
            for b in got {
                records += record_count(&b);
                bytes += b.len() as u64;
            }
        }
    }
    Ok((records, bytes))
}
