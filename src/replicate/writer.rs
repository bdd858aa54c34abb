//! The target side of a partition task: re-batches records, recompresses them, spends the
//! budget and produces them as an idempotent producer with several batches in flight, in order;
//! on any doubt about the target's state it stops for the task to reconcile.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::time::Instant;

use super::error::{Error, Result};
use super::partition::{kafka_err, Fetched, Stop, TaskSettings};
use super::progress::Progress;
use super::reader::buffer_units;
use super::resume::{Position, Tail};
use crate::batch::{BatchBuilder, BuildOptions, Compression};
use crate::kafka::{Cluster, ProduceAck, ProducerIdentity, ResponseError, TopicPartition};
use crate::telemetry;

/// Produce requests of one partition on the wire at once. Kafka keeps the order of up to five
/// in flight for an idempotent producer.
const MAX_IN_FLIGHT: usize = 5;

/// A batch on the wire, waiting for its acknowledgement.
#[derive(Debug)]
pub(super) struct Sent {
    /// First source offset in the batch.
    first: i64,
    /// Source position once acknowledged (may extend past the batch over dropped records).
    until: i64,
    count: i64,
    source_bytes: u64,
    wire_bytes: u64,
    /// Newest record timestamp in the batch (ms), for the end-to-end latency.
    max_timestamp: i64,
    /// Timestamp of the batch's first record (ms): the oldest it holds by offset.
    first_timestamp: i64,
    ack: tokio::task::JoinHandle<Result<ProduceAck, crate::kafka::Error>>,
}

/// What the writer's loop woke up for.
enum Event {
    Linger,
    Fetched(Option<Result<Fetched>>),
    Acked(Result<ProduceAck, crate::kafka::Error>),
}

/// Re-batches records into target batches and produces them in order as an idempotent
/// producer, with up to [`MAX_IN_FLIGHT`] batches on the wire.
pub(super) struct SinkWriter {
    pub(super) source_tp: TopicPartition,
    pub(super) target_tp: TopicPartition,
    pub(super) cluster: Arc<Cluster>,
    pub(super) settings: Arc<TaskSettings>,
    pub(super) builder: BatchBuilder,
    pub(super) max_batch_bytes: usize,
    pub(super) progress: Arc<Progress>,
    /// Everything below is acknowledged by the target.
    pub(super) acked: Position,
    /// The producer sequence of the first record at `acked`.
    pub(super) acked_sequence: i32,
    /// What the target already holds beyond `acked`: strait's own records (written before a
    /// crash or a lost answer) are dropped from the source, other producers' passed over.
    pub(super) tail: Tail,
    pub(super) producer: ProducerIdentity,
    /// The sequence of the next batch to send.
    pub(super) next_sequence: i32,
    pub(super) in_flight: VecDeque<Sent>,
    /// Newest record timestamp in the builder (ms).
    pub(super) builder_max_timestamp: i64,
    /// This partition's share of the batch memory for what the builder holds (and the rest of
    /// the chunk being pushed).
    pub(super) memory: Option<OwnedSemaphorePermit>,
    /// Newest record timestamp of the last acknowledged batch (ms): stands in for the oldest
    /// unacknowledged record's while the writer holds none.
    pub(super) acked_max_timestamp: Option<i64>,
    pub(super) labels: [(&'static str, String); 2],
    /// Until when the target asked to hold produce requests (a quota's throttle time).
    pub(super) throttled_until: Option<Instant>,
}

/// Throttle time the target's quotas asked for, over all partitions (ns).
static TARGET_THROTTLED_NANOS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl SinkWriter {
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Result<Fetched>>) -> Result<(), Stop> {
        let result = self.write(&mut rx).await;
        if result.is_err() {
            // Nothing may land after the writer gives up on the target's state: wait for what
            // is still on the wire before anyone reconciles.
            self.abandon().await;
        }
        result
    }

    async fn write(&mut self, rx: &mut mpsc::Receiver<Result<Fetched>>) -> Result<(), Stop> {
        let mut linger_until: Option<Instant> = None;
        // Source offset after everything pushed into the builder (control batches included).
        let mut pushed_until = self.acked.source;
        let mut pending_source_bytes = 0usize;
        loop {
            let deadline = linger_until;
            let event = {
                let front = self.in_flight.front_mut().map(|s| &mut s.ack);
                tokio::select! {
                    biased;
                    Some(acked) = next_ack(front) => Event::Acked(acked),
                    _ = sleep_until(deadline), if deadline.is_some() => Event::Linger,
                    msg = rx.recv() => Event::Fetched(msg),
                }
            };
            let chunk = match event {
                Event::Acked(acked) => {
                    self.acked_front(acked)?;
                    continue;
                }
                Event::Linger => {
                    self.flush(pushed_until, &mut pending_source_bytes).await?;
                    linger_until = None;
                    continue;
                }
                // The reader stopped (shutdown): write what was read.
                Event::Fetched(None) => {
                    self.flush(pushed_until, &mut pending_source_bytes).await?;
                    return self.drain().await;
                }
                Event::Fetched(Some(Err(e))) => {
                    self.flush(pushed_until, &mut pending_source_bytes).await?;
                    self.drain().await?;
                    return Err(Stop::Halt(e));
                }
                Event::Fetched(Some(Ok(Fetched::Gap { from, to }))) => {
                    self.flush(pushed_until, &mut pending_source_bytes).await?;
                    self.drain().await?;
                    linger_until = None;
                    self.gap(from, to);
                    pushed_until = to;
                    continue;
                }
                Event::Fetched(Some(Ok(Fetched::Records(chunk)))) => chunk,
            };
            // The oldest record not yet acknowledged: one the writer holds, else this chunk's first.
            let oldest = self
                .oldest_held_timestamp()
                .or_else(|| chunk.records.first().map(|r| r.timestamp));
            self.progress.update(&self.source_tp, |s| {
                s.source_high_watermark = chunk.high_watermark;
                if oldest.is_some() {
                    s.oldest_unacked_timestamp_ms = oldest;
                }
            });
            let encoded = chunk.source_bytes + chunk.records.len() * RECORD_FRAMING_BYTES;
            self.reserve(encoded, pushed_until, &mut pending_source_bytes).await?;
            let mut absorbed = 0u64;
            for record in chunk.records {
                if self.tail.absorb(record.offset, &mut self.acked) {
                    absorbed += 1;
                    continue;
                }
                let timestamp = record.timestamp;
                if let Err(record) = self.builder.try_push(record) {
                    let last = self.builder.last_offset().map_or(pushed_until, |o| o + 1);
                    self.flush(last, &mut pending_source_bytes).await?;
                    if let Err(record) = self.builder.try_push(record) {
                        self.drain().await?;
                        return Err(Stop::Halt(Error::RecordTooLarge {
                            topic: self.source_tp.topic.clone(),
                            partition: self.source_tp.partition,
                            offset: record.offset,
                            size: record.encoded_len_upper_bound(),
                            max: self.max_batch_bytes,
                        }));
                    }
                }
                self.builder_max_timestamp = self.builder_max_timestamp.max(timestamp);
            }
            if absorbed > 0 {
                // Written by an earlier attempt whose acknowledgement was lost: replicated all the same.
                self.acknowledge(self.acked, absorbed, 0, 0);
            }
            self.count_foreign();
            pending_source_bytes += chunk.source_bytes;
            pushed_until = chunk.next_offset;
            self.trim_memory();
            if self.builder.is_empty() {
                // Only control, aborted or skipped records since the last batch: the position
                // moves with the last batch on the wire, or now when none is.
                match self.in_flight.back_mut() {
                    Some(last) => last.until = pushed_until,
                    None => self.acknowledge(
                        Position {
                            source: pushed_until,
                            target: self.acked.target,
                        },
                        0,
                        0,
                        0,
                    ),
                }
            } else if linger_until.is_none() {
                linger_until = Some(Instant::now() + self.settings.linger);
            }
        }
    }

    /// Takes batch memory for `bytes` of records about to be pushed. When it is all taken, sends
    /// what the builder holds first (so no partition waits while holding memory it could free),
    /// then waits for acknowledgements, here or on other partitions, to give some back.
    async fn reserve(&mut self, bytes: usize, until: i64, source_bytes: &mut usize) -> Result<(), Stop> {
        let units = buffer_units(bytes).min(self.settings.batch_memory_units);
        let memory = Arc::clone(&self.settings.batch_memory);
        let permit = match Arc::clone(&memory).try_acquire_many_owned(units) {
            Ok(p) => p,
            Err(_) => {
                self.flush(until, source_bytes).await?;
                self.memory = None;
                match memory.acquire_many_owned(units).await {
                    Ok(p) => p,
                    // The semaphore is never closed.
                    Err(_closed) => return Ok(()),
                }
            }
        };
        match self.memory.as_mut() {
            Some(held) => held.merge(permit),
            None => self.memory = Some(permit),
        }
        Ok(())
    }

    /// Gives back the batch memory held beyond what the builder holds.
    fn trim_memory(&mut self) {
        if self.builder.is_empty() {
            self.memory = None;
            return;
        }
        let keep = buffer_units(self.builder.size_bytes()) as usize;
        if let Some(held) = self.memory.as_mut() {
            if held.num_permits() > keep {
                drop(held.split(held.num_permits() - keep));
            }
        }
    }

    /// Source records `from..to` are gone. Records the target already holds beyond the
    /// checkpoint came from the first of them, so they are not counted as missing.
    fn gap(&mut self, from: i64, to: i64) {
        let missing = self.tail.gap(from, to, &mut self.acked);
        if missing > 0 {
            tracing::warn!(topic = %self.source_tp.topic, partition = self.source_tp.partition, from = to - missing,
                to = to - 1, missing, "source records deleted before replication (retention or DeleteRecords): counted as a gap");
            metrics::counter!(telemetry::SOURCE_GAP_RECORDS, &self.labels).increment(missing as u64);
        }
        self.progress
            .update(&self.source_tp, |s| s.gap_records += missing as u64);
        self.count_foreign();
        self.acknowledge(self.acked, 0, 0, 0);
    }

    /// Counts the records of other producers the position just moved past.
    fn count_foreign(&mut self) {
        let passed = self.tail.take_foreign_passed();
        if passed > 0 {
            metrics::counter!(telemetry::FOREIGN_RECORDS, &self.labels).increment(passed as u64);
        }
    }

    /// Builds the builder's records into one batch and puts it on the wire (waiting first for
    /// a free in-flight slot and for the budget). Everything below `until` is acknowledged
    /// with it.
    async fn flush(&mut self, until: i64, source_bytes: &mut usize) -> Result<(), Stop> {
        if self.builder.is_empty() {
            return Ok(());
        }
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            // The target (or the link to it) is what holds this writer back.
            let level = Arc::clone(&self.settings.level);
            let _waiting = level.wait_for_target();
            while self.in_flight.len() >= MAX_IN_FLIGHT {
                self.complete_front().await?;
            }
        }
        let opts = BuildOptions {
            compression: Compression::Zstd,
            zstd_level: self.settings.level.level(),
            producer_id: self.producer.id,
            producer_epoch: self.producer.epoch,
            base_sequence: self.next_sequence,
            transactional: false,
        };
        let first = self.builder.first_offset().unwrap_or(until);
        let max_timestamp = std::mem::replace(&mut self.builder_max_timestamp, i64::MIN);
        let first_timestamp = self.builder.first_timestamp().unwrap_or(max_timestamp);
        let compress_started = std::time::Instant::now();
        let built = self.builder.finish(&opts).map_err(|source| Error::Build {
            topic: self.source_tp.topic.clone(),
            partition: self.source_tp.partition,
            offset: first,
            source,
        })?;
        self.settings.level.record_compress(compress_started.elapsed());
        // The builder's memory is free again, but for the compressed batch, held until the
        // target acknowledges it; the rest stays with the records still to be pushed.
        let mut batch_memory = take_permits(&mut self.memory, buffer_units(built.uncompressed_len) as usize);
        let on_the_wire = take_permits(&mut batch_memory, buffer_units(built.bytes.len()) as usize);
        drop(batch_memory);
        let count = i64::from(built.record_count);
        let wire_bytes = built.bytes.len() + PRODUCE_OVERHEAD_BYTES + self.target_tp.topic.len();
        self.settings.budget.acquire(&self.target_tp.topic, wire_bytes).await;
        // A quota throttled the target connection: send nothing before the broker unmutes it
        // (KIP-219), so requests do not wait out their timeout in a muted socket.
        if let Some(until) = self.throttled_until.take() {
            tokio::time::sleep_until(until).await;
        }
        let pending = match self
            .cluster
            .start_produce(&self.target_tp, built.bytes, self.settings.produce_timeout_ms)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                self.drain().await?;
                return Err(self.failed(e, first, wire_bytes));
            }
        };
        self.next_sequence = self.next_sequence.wrapping_add(built.record_count) & i32::MAX;
        tracing::trace!(topic = %self.source_tp.topic, partition = self.source_tp.partition, from = first,
            to = built.last_source_offset, records = count, wire_bytes, "batch sent");
        self.in_flight.push_back(Sent {
            first,
            until,
            count,
            source_bytes: std::mem::take(source_bytes) as u64,
            wire_bytes: wire_bytes as u64,
            max_timestamp,
            first_timestamp,
            ack: tokio::spawn(async move {
                let started = std::time::Instant::now();
                let ack = pending.ack().await;
                drop(on_the_wire);
                metrics::histogram!(telemetry::PRODUCE_LATENCY).record(started.elapsed());
                ack
            }),
        });
        Ok(())
    }

    /// Waits for the oldest batch on the wire and takes its answer.
    async fn complete_front(&mut self) -> Result<(), Stop> {
        let Some(front) = self.in_flight.front_mut() else {
            return Ok(());
        };
        let acked = (&mut front.ack).await.unwrap_or_else(|join| {
            Err(crate::kafka::Error::ConnectionLost {
                broker: format!("(produce task ended: {join})"),
                source: None,
            })
        });
        self.acked_front(Ok(acked).and_then(|a| a))
    }

    /// Takes note of the throttle time of an answer: the next send waits it out, and it adds to
    /// `strait_target_throttle_seconds_total`.
    fn throttled(&mut self, throttle_ms: i32) {
        if throttle_ms <= 0 {
            return;
        }
        let hold = Duration::from_millis(throttle_ms.unsigned_abs().into());
        let until = Instant::now() + hold;
        self.throttled_until = Some(self.throttled_until.map_or(until, |t| t.max(until)));
        let nanos = u64::try_from(hold.as_nanos()).unwrap_or(u64::MAX);
        let total = TARGET_THROTTLED_NANOS.fetch_add(nanos, std::sync::atomic::Ordering::Relaxed) + nanos;
        metrics::gauge!(telemetry::TARGET_THROTTLE).set(Duration::from_nanos(total).as_secs_f64());
    }

    /// Applies the answer for the oldest batch on the wire.
    fn acked_front(&mut self, acked: Result<ProduceAck, crate::kafka::Error>) -> Result<(), Stop> {
        let Some(sent) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let expected = self.acked.target;
        if let Ok(ack) = &acked {
            self.throttled(ack.throttle_ms);
        }
        match acked {
            Ok(ack) if ack.base_offset == expected || ack.base_offset < 0 => {
                let age_ms = crate::checkpoint::now_ms() - sent.max_timestamp;
                if (0..86_400_000).contains(&age_ms) {
                    metrics::histogram!(telemetry::END_TO_END_LATENCY).record(Duration::from_millis(age_ms as u64));
                }
                self.acked_max_timestamp = Some(sent.max_timestamp);
                self.acked_sequence = self.acked_sequence.wrapping_add(sent.count as i32) & i32::MAX;
                self.acknowledge(
                    Position {
                        source: sent.until,
                        target: expected + sent.count,
                    },
                    sent.count as u64,
                    sent.source_bytes,
                    sent.wire_bytes,
                );
                Ok(())
            }
            // Something else took offsets at or after `expected`: the reconcile that follows
            // reads who wrote what there before anything else is written.
            Ok(ack) => Err(Stop::Resync {
                at: self.acked,
                why: format!(
                    "batch landed at offset {} instead of {expected}: the target partition holds records strait \
                     did not expect there",
                    ack.base_offset
                ),
                keep: None,
            }),
            Err(e) => Err(self.failed(e, sent.first, sent.wire_bytes as usize)),
        }
    }

    /// What a failed produce means for the partition.
    fn failed(&self, err: crate::kafka::Error, first: i64, wire_bytes: usize) -> Stop {
        let why = crate::replicate::error_chain(&err);
        match err.code() {
            // The identity is no good any more: a new one, after reconciling.
            Some(
                ResponseError::OutOfOrderSequenceNumber
                | ResponseError::UnknownProducerId
                | ResponseError::InvalidProducerEpoch
                | ResponseError::ProducerFenced
                | ResponseError::DuplicateSequenceNumber,
            ) => {
                return Stop::Resync {
                    at: self.acked,
                    why,
                    keep: None,
                }
            }
            Some(ResponseError::MessageTooLarge) => {
                return Stop::Halt(Error::RecordTooLarge {
                    topic: self.source_tp.topic.clone(),
                    partition: self.source_tp.partition,
                    offset: first,
                    size: wire_bytes,
                    max: self.max_batch_bytes,
                })
            }
            _ => {}
        }
        if !err.is_retriable() {
            return Stop::Halt(kafka_err("target", "produce", &self.target_tp, first, err));
        }
        if err.needs_metadata_refresh() {
            self.cluster.invalidate(&self.target_tp);
        }
        // Retriable, possibly landed or not: the target's end tells, and the same identity and
        // sequences let the broker drop a late duplicate of anything resent.
        Stop::Resync {
            at: self.acked,
            why,
            keep: Some((self.producer, self.acked_sequence)),
        }
    }

    /// Waits for every batch on the wire, in order; stops at the first failure.
    async fn drain(&mut self) -> Result<(), Stop> {
        while !self.in_flight.is_empty() {
            self.complete_front().await?;
        }
        Ok(())
    }

    /// After a failure: lets every batch still on the wire finish, ignoring the answers (the
    /// reconciliation that follows reads the truth from the target).
    async fn abandon(&mut self) {
        while let Some(sent) = self.in_flight.pop_front() {
            let _ = sent.ack.await;
        }
    }

    /// Timestamp of the oldest record the writer holds: the first of the oldest batch on the
    /// wire, else the first in the builder.
    fn oldest_held_timestamp(&self) -> Option<i64> {
        self.in_flight
            .front()
            .map(|s| s.first_timestamp)
            .or_else(|| self.builder.first_timestamp())
    }

    fn acknowledge(&mut self, at: Position, records: u64, source_bytes: u64, wire_bytes: u64) {
        self.acked = at;
        let oldest = self.oldest_held_timestamp().or(self.acked_max_timestamp);
        if records > 0 {
            metrics::counter!(telemetry::RECORDS_REPLICATED, &self.labels).increment(records);
            metrics::counter!(telemetry::SOURCE_BYTES, &self.labels).increment(source_bytes);
            metrics::counter!(telemetry::WIRE_BYTES, &self.labels).increment(wire_bytes);
        }
        self.progress.update(&self.source_tp, |s| {
            s.next_source_offset = at.source;
            s.next_target_offset = at.target;
            s.records += records;
            s.source_bytes += source_bytes;
            s.wire_bytes += wire_bytes;
            if oldest.is_some() {
                s.oldest_unacked_timestamp_ms = oldest;
            }
            metrics::gauge!(telemetry::LAG_RECORDS, &self.labels).set(s.lag_records() as f64);
            if s.records > 0 {
                // Estimated from the average size of the records replicated so far.
                let average = s.source_bytes as f64 / s.records as f64;
                metrics::gauge!(telemetry::LAG_BYTES, &self.labels).set(s.lag_records() as f64 * average);
            }
        });
    }
}

/// Takes up to `n` permits out of `held` (all of it when it has no more).
fn take_permits(held: &mut Option<OwnedSemaphorePermit>, n: usize) -> Option<OwnedSemaphorePermit> {
    let permits = held.as_ref()?.num_permits();
    if n >= permits {
        return held.take();
    }
    held.as_mut()?.split(n)
}

/// Bytes a record takes in a batch beyond its key, value and headers (length, attributes,
/// deltas, counts as varints): an estimate for reserving batch memory.
const RECORD_FRAMING_BYTES: usize = 16;

/// Request bytes around the records of a one-partition produce, plus the topic name.
const PRODUCE_OVERHEAD_BYTES: usize = 80;

/// The oldest in-flight acknowledgement, or never when nothing is on the wire.
async fn next_ack(
    front: Option<&mut tokio::task::JoinHandle<Result<ProduceAck, crate::kafka::Error>>>,
) -> Option<Result<ProduceAck, crate::kafka::Error>> {
    match front {
        Some(handle) => Some(handle.await.unwrap_or_else(|join| {
            Err(crate::kafka::Error::ConnectionLost {
                broker: format!("(produce task ended: {join})"),
                source: None,
            })
        })),
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
