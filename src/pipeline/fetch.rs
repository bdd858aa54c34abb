//! The fetch stage: reads a source partition within the shared fetch buffer and hands the
//! unpacked records to the sink in offset order, over a small bounded channel.
//!
//! ```text
//!  reserve buffer ─► Fetch (shared request per broker) ─► unpack ─► fit the reservation ─► send
//!        ▲                      │ OffsetOutOfRange / log start moved                      │
//!        └── size the next ◄────┴─► Gap { from, to } ────────────────────────────────────┘
//! ```

use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use super::error::{Error, Result};
use super::memory::{buffer_units, BUFFER_UNIT};
use super::retry::{kafka_err, list_source_offset, lost, retry_while_topic_exists};
use super::unpack::{unpack, Fetched, Handed};
use super::wire::Fetch;
use super::TaskSettings;
use crate::kafka::{FetchedPartition, OffsetSpec, ResponseError, TopicId, TopicPartition, Wait};
use crate::telemetry;

/// The largest fetch strait grows to when a single batch exceeds the configured fetch size.
const MAX_FETCH_BYTES: i32 = 64 * 1024 * 1024;

/// The shortest long poll of idle partitions' fetches, in milliseconds. A partition that goes
/// idle joins them at the next poll, so records that reach it meanwhile wait up to this long.
const QUIET_WAIT_MS: i32 = 500;

/// The smallest fetch a partition asks for; idle partitions shrink to it.
const MIN_FETCH_BYTES: i32 = 64 * 1024;
/// How much larger than its fetched bytes a partition's first chunk is assumed to be once
/// decompressed, until its own answers tell.
const INITIAL_EXPANSION: f64 = 4.0;

/// The next fetch size: doubled while answers come back at least half full (a backlog), halved
/// when they are mostly empty (caught up), within `MIN_FETCH_BYTES..=max`.
pub(crate) fn next_fetch_bytes(current: i32, fetched: usize, max: i32) -> i32 {
    let floor = MIN_FETCH_BYTES.min(max);
    let current = current.clamp(floor, max);
    if fetched >= current as usize / 2 {
        current.saturating_mul(2).min(max)
    } else if fetched < current as usize / 8 {
        (current / 2).max(floor)
    } else {
        current
    }
}

/// Whether an answer with no records left a backlog behind: records wait from `offset` below
/// the end a read_committed fetch can read (the last stable offset, when the broker gives one,
/// within the high watermark). A shared request spent its bytes on other partitions first; the
/// partition is not caught up and keeps its fetch size.
fn starved(f: &FetchedPartition, offset: i64) -> bool {
    f.records.is_empty() && f.visible_end() > offset
}

/// What one round of the fetch loop leads to.
enum Next {
    /// Fetch again.
    Again,
    /// Strait is stopping, the sink is gone, or the partition halted (the sink was told).
    Stop,
}

/// Fetches a source partition and unpacks its batches into records, in offset order.
pub(super) struct Fetcher<S> {
    tp: TopicPartition,
    /// The source topic's id when the partition started, when known: fetches read that topic
    /// only, so one deleted and created again under its name halts the partition
    /// ([`Error::RecreatedWhileReplicating`]) instead of being read from the old position.
    topic_id: Option<TopicId>,
    labels: [(&'static str, String); 2],
    source: Arc<S>,
    settings: Arc<TaskSettings>,
    cancel: CancellationToken,
    tx: mpsc::Sender<Handed>,
    /// The next source offset to fetch.
    offset: i64,
    fetch_bytes: i32,
    /// What a fetch is expected to take once unpacked: the size of the last answer (a broker
    /// returns a first batch whole, whatever the fetch size; an idle partition's answers are
    /// empty) times how much its records grew when decompressed. Reserving that before
    /// fetching keeps the buffer an honest bound without idle long polls holding it.
    last_len: usize,
    expansion: f64,
    /// Units to reserve for fetching again an answer that was dropped for lack of room.
    refetch_reserving: Option<u32>,
    /// Where reading stops (a fresh-first catch-up's backlog ends at the split): records from
    /// it on are not handed on, and the stage ends once its offset reaches it.
    until: Option<i64>,
}

impl<S: Fetch> Fetcher<S> {
    pub(super) fn new(
        tp: TopicPartition,
        topic_id: Option<TopicId>,
        source: Arc<S>,
        settings: Arc<TaskSettings>,
        cancel: CancellationToken,
        offset: i64,
        tx: mpsc::Sender<Handed>,
    ) -> Self {
        let fetch_bytes = MIN_FETCH_BYTES.min(settings.fetch_max_bytes);
        Self {
            labels: telemetry::labels(&tp.topic, tp.partition),
            tp,
            topic_id,
            source,
            settings,
            cancel,
            tx,
            offset,
            fetch_bytes,
            last_len: fetch_bytes as usize,
            expansion: INITIAL_EXPANSION,
            refetch_reserving: None,
            until: None,
        }
    }

    /// Reads up to `until` only: the stage ends (closing its channel) once everything below it
    /// was handed on.
    pub(super) fn until(mut self, until: i64) -> Self {
        self.until = Some(until);
        self
    }

    /// `to`, not past where reading stops.
    fn bounded(&self, to: i64) -> i64 {
        self.until.map_or(to, |u| to.min(u))
    }

    fn reached_end(&self) -> bool {
        self.until.is_some_and(|u| self.offset >= u)
    }

    /// Fetches until strait stops, the sink goes away or the partition halts.
    pub(super) async fn run(mut self) {
        while let Next::Again = self.round().await {}
    }

    /// One fetch: memory first (a fetch asks only for what the shared buffer can hold), then
    /// the request, then the answer fitted to what it really takes.
    async fn round(&mut self) -> Next {
        if self.reached_end() {
            return Next::Stop;
        }
        // Fixed for the round: the reservation and the request follow the same decision.
        let wait = self.wait();
        let Some((permit, reserved)) = self.reserve(wait).await else {
            return Next::Stop;
        };
        // Boxed, like the sink's stages: while the partition waits for memory or for room in
        // the sink's channel, the request's future (kilobytes, with the client's) is not part
        // of its task.
        let fetched = match Box::pin(self.fetch(wait)).await {
            Ok(Some(f)) => f,
            Ok(None) => return Next::Again,
            Err(Some(e)) => return self.halt(e).await,
            Err(None) => return Next::Stop,
        };
        // Some brokers answer a fetch below the log start with later data and no error: the
        // log start in the answer tells.
        if fetched.log_start_offset > self.offset {
            let to = self.bounded(fetched.log_start_offset);
            if !self.send(Ok(Fetched::Gap { from: self.offset, to })).await {
                return Next::Stop;
            }
            self.offset = to;
            if self.reached_end() {
                return Next::Stop;
            }
        }
        self.take(fetched, permit, reserved).await
    }

    /// Reserves the buffer the next answer is expected to take. `None` when stopping.
    async fn reserve(&mut self, wait: Wait) -> Option<(OwnedSemaphorePermit, u32)> {
        let expected = match self.last_len {
            // Idle: a long poll that most likely brings nothing holds almost nothing; if data
            // comes after all, the answer waits in `take` for its real footprint.
            0 => BUFFER_UNIT as f64,
            n => n as f64 * self.expansion,
        };
        let reserved = match self.refetch_reserving.take() {
            Some(units) => units,
            // Asleep until records come, for as long as the partition is idle: holding even one
            // unit meanwhile would let enough idle partitions take the whole buffer from the
            // busy ones. Records that come are reserved for in `take`.
            None if matches!(wait, Wait::UntilReadable(_)) => 0,
            None => buffer_units(expected as usize),
        }
        .min(self.settings.buffer_units);
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => None,
            p = Arc::clone(&self.settings.buffer).acquire_many_owned(reserved) => p.ok().map(|p| (p, reserved)),
        }
    }

    /// How the next fetch waits: until something is readable once the partition is idle (its
    /// last answer was empty and its fetch size shrank to the floor), so an idle partition's
    /// task sleeps instead of waking at every long poll; one long poll otherwise, so the fetch
    /// size and the reservation follow the answers. Idle partitions sleep on a connection of
    /// their own, in long polls of at least [`QUIET_WAIT_MS`]: the broker answers as soon as
    /// one of them has records, so the longer poll only spares requests.
    fn wait(&self) -> Wait {
        let ms = self.settings.fetch_max_wait_ms;
        let floor = MIN_FETCH_BYTES.min(self.settings.fetch_max_bytes);
        if self.last_len == 0 && self.fetch_bytes <= floor {
            Wait::UntilReadable(ms.max(QUIET_WAIT_MS))
        } else {
            Wait::Poll(ms)
        }
    }

    /// One Fetch request, retried while retriable and the topic exists. `Ok(None)`: the offset
    /// moved (a gap was handed on) and the caller fetches again; `Err(None)`: stopping;
    /// `Err(Some(_))`: halt.
    async fn fetch(&mut self, wait: Wait) -> std::result::Result<Option<FetchedPartition>, Option<Error>> {
        let (offset, max_bytes) = (self.offset, self.fetch_bytes);
        let (tp, id) = (&self.tp, self.topic_id);
        let fetched = retry_while_topic_exists(&self.cancel, &*self.source, tp, id, "fetch", || async {
            let started = std::time::Instant::now();
            let f = self.source.fetch(tp, id, offset, max_bytes, wait).await;
            // A fetch that slept until records came measures the partition's quiet, not the wire.
            if let Wait::Poll(_) = wait {
                metrics::histogram!(telemetry::FETCH_LATENCY).record(started.elapsed());
            }
            f
        })
        .await;
        match fetched {
            Ok(Some(Ok(f))) => Ok(Some(f)),
            Ok(Some(Err(gone))) => Err(Some(lost("source", &self.tp, offset, gone))),
            Ok(None) => Err(None),
            // Boxed: rare, and otherwise part of the fetch loop's future for the task's life.
            Err(e) if e.code() == Some(ResponseError::OffsetOutOfRange) => {
                match Box::pin(self.out_of_range(offset)).await {
                    Ok(Some(next)) => {
                        let next = self.bounded(next);
                        if next > offset && !self.send(Ok(Fetched::Gap { from: offset, to: next })).await {
                            return Err(None);
                        }
                        self.offset = next;
                        Ok(None)
                    }
                    Ok(None) => Err(None),
                    Err(e) => Err(Some(e)),
                }
            }
            Err(e) => Err(Some(kafka_err("source", "fetch", &self.tp, offset, e))),
        }
    }

    /// Unpacks an answer, fits the reservation to what its records take, and hands them on.
    async fn take(&mut self, fetched: FetchedPartition, mut permit: OwnedSemaphorePermit, reserved: u32) -> Next {
        let had_bytes = !fetched.records.is_empty();
        let fetched_len = fetched.records.len();
        let starved = starved(&fetched, self.offset);
        if !starved {
            self.last_len = fetched_len;
        }
        // A partition that slept reserved nothing: its first chunk is still up to a unit, then
        // fitted below like any.
        let limit = reserved.max(1) as usize * BUFFER_UNIT;
        // No batch may decompress to more than the whole buffer: it could never be counted.
        let cap = self.settings.buffer_units as usize * BUFFER_UNIT;
        let mut chunk = match unpack(&self.tp, self.offset, fetched, limit, cap) {
            Ok(chunk) => chunk,
            Err(e) => return self.halt(e).await,
        };
        if let Some(until) = self.until {
            chunk.records.retain(|r| r.offset < until);
            chunk.next_offset = chunk.next_offset.min(until);
        }
        if chunk.next_offset == self.offset {
            return self.nothing_whole(had_bytes, starved).await;
        }
        // Hold what the chunk really takes (records may be larger than the raw bytes once
        // decompressed): give back the surplus, or take more if it is free. A broker returns
        // a first batch whole even above the fetch size (some return far more than asked);
        // when the buffer cannot cover that now, the answer is dropped and fetched again once
        // its size is reserved, so no reader ever holds data the buffer does not count.
        let footprint = buffer_units(chunk.memory_bytes).min(self.settings.buffer_units);
        self.expansion = (chunk.source_bytes as f64 / fetched_len.max(1) as f64).max(1.0);
        if footprint < reserved {
            drop(permit.split((reserved - footprint) as usize));
        } else if footprint > reserved {
            match Arc::clone(&self.settings.buffer).try_acquire_many_owned(footprint - reserved) {
                Ok(more) => permit.merge(more),
                Err(_) => {
                    self.refetch_reserving = Some(footprint);
                    return Next::Again;
                }
            }
        }
        chunk.buffer = Some(permit);
        tracing::trace!(topic = %self.tp.topic, partition = self.tp.partition, offset = self.offset,
            next_offset = chunk.next_offset, records = chunk.records.len(), fetched_bytes = fetched_len,
            asked_bytes = self.fetch_bytes, until = ?self.until, "fetched");
        self.fetch_bytes = next_fetch_bytes(self.fetch_bytes, fetched_len, self.settings.fetch_max_bytes);
        self.offset = chunk.next_offset;
        metrics::counter!(telemetry::SOURCE_RECORDS, &self.labels).increment(chunk.records.len() as u64);
        if self.send(Ok(Fetched::Records(chunk))).await {
            Next::Again
        } else {
            Next::Stop
        }
    }

    /// An answer without one whole batch at the offset: idle, starved, or a batch larger than
    /// the fetch size (asked again larger, up to a hard limit).
    async fn nothing_whole(&mut self, had_bytes: bool, starved: bool) -> Next {
        if had_bytes {
            if self.fetch_bytes >= MAX_FETCH_BYTES {
                let e = Error::RecordTooLarge {
                    topic: self.tp.topic.clone(),
                    partition: self.tp.partition,
                    offset: self.offset,
                    size: MAX_FETCH_BYTES as usize,
                    max: MAX_FETCH_BYTES as usize,
                };
                return self.halt(e).await;
            }
            self.fetch_bytes = self.fetch_bytes.saturating_mul(2).min(MAX_FETCH_BYTES);
        } else if !starved {
            self.fetch_bytes = next_fetch_bytes(self.fetch_bytes, 0, self.settings.fetch_max_bytes);
        }
        // Caught up: the broker held the fetch for max_wait already, so loop at once.
        if self.cancel.is_cancelled() {
            Next::Stop
        } else {
            Next::Again
        }
    }

    /// Hands the sink an error that halts the partition.
    async fn halt(&self, e: Error) -> Next {
        let _ = self.tx.send(Box::new(Err(e))).await;
        Next::Stop
    }

    /// Hands a message to the sink; `false` when strait is stopping or the sink is gone.
    async fn send(&self, msg: Result<Fetched>) -> bool {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => false,
            sent = self.tx.send(Box::new(msg)) => sent.is_ok(),
        }
    }

    /// The fetch offset is outside the log. Below the log start, data was deleted before strait
    /// read it: a gap, and replication goes on from the log start. Above the log end the
    /// partition was recreated: that needs an operator.
    async fn out_of_range(&self, offset: i64) -> Result<Option<i64>> {
        let list = |spec| list_source_offset(&self.cancel, &*self.source, &self.tp, spec, offset);
        let Some(earliest) = list(OffsetSpec::Earliest).await? else {
            return Ok(None);
        };
        if offset < earliest {
            return Ok(Some(earliest));
        }
        match list(OffsetSpec::Latest).await? {
            None => Ok(None),
            Some(latest) if offset > latest => Err(Error::BeyondLogEnd {
                topic: self.tp.topic.clone(),
                partition: self.tp.partition,
                offset,
                log_end: latest,
            }),
            // In range after all (a leader change raced the fetch): try again.
            Some(_) => Ok(Some(offset)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn fetch_size_grows_with_a_backlog_and_shrinks_when_idle() {
        let max = 1 << 20;
        assert_eq!(next_fetch_bytes(64 * 1024, 64 * 1024, max), 128 * 1024);
        assert_eq!(next_fetch_bytes(512 * 1024, 400 * 1024, max), max);
        assert_eq!(next_fetch_bytes(max, max as usize, max), max);
        assert_eq!(next_fetch_bytes(max, 0, max), max / 2);
        assert_eq!(next_fetch_bytes(64 * 1024, 0, max), 64 * 1024);
        assert_eq!(next_fetch_bytes(256 * 1024, 64 * 1024, max), 256 * 1024);
        // A configured maximum below the usual floor is respected.
        assert_eq!(next_fetch_bytes(4096, 4096, 4096), 4096);
    }

    #[test]
    fn an_empty_answer_below_the_stable_end_is_a_starved_backlog() {
        let answer = |hw, lso, records: &'static [u8]| crate::kafka::FetchedPartition {
            high_watermark: hw,
            last_stable_offset: lso,
            log_start_offset: 0,
            records: Bytes::from_static(records),
            ..crate::kafka::FetchedPartition::default()
        };
        // Other partitions took the request's bytes: records wait at 10..100.
        assert!(starved(&answer(100, 100, b""), 10));
        assert!(starved(&answer(100, -1, b""), 10));
        // Caught up, or held back by an open transaction: nothing to read yet.
        assert!(!starved(&answer(10, 10, b""), 10));
        assert!(!starved(&answer(100, 10, b""), 10));
        // Records came back.
        assert!(!starved(&answer(100, 100, b"x"), 10));
    }
}
