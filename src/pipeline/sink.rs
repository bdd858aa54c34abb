//! The sink: the target side of a partition task. It runs the batch, send and ack stages over
//! the records the fetch stage hands it, as one event loop:
//!
//! ```text
//!  chunk ─► reserve batch memory ─► absorb (tail) or push ─► Batcher ──due/full──► build
//!                                                                                    │
//!   Acker ◄── in order ── Window (≤ 5 on the wire) ◄── Produce ◄── throttle ◄── budget
//! ```
//!
//! On any doubt about the target's state it stops with [`Stop::Resync`], after letting what is
//! on the wire finish, for the task to reconcile.
//!
//! In a fresh-first catch-up ([`super::catchup`]) the sink writes two ranges, each a [`Lane`]
//! with its own records, batches, producer identity and position, into the one target
//! partition through the one window, in which each range has its own slots (one producer
//! identity each): a due fresh batch goes first. An answer is expected where the last one (of either range)
//! ended. Once the backlog's records up to the split are all acknowledged, the sink stops for
//! the task to merge the ranges.
//!
//! A backlog batch never holds the loop up: the backlog takes a chunk or builds a batch only
//! when the window has room for it, and a built batch waits for the budget beside the loop
//! ([`Parked`]), so new records are taken, batched and sent meanwhile. Its admission is
//! polled by the loop, so the budget's turn may wait while the loop compresses. Taking the turn
//! on a task of its own was tried twice in the catch-up bench: new spans waited 4.9 s at p99
//! while the socket pace lost link time to late wakes (admitted batches queued on the
//! connection ahead of new ones); with the pace fixed, p99 1.99 s and 94.3% of the budget
//! against 1.76 s and 95.6% in the loop: nothing gained. One backlog batch
//! waits at a time; the backlog's next is built once it is on the wire, and the rest of a
//! chunk that fills more than one batch waits for that ([`Rest`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::time::Instant;

use super::ack::Acker;
use super::batch::{Batcher, Ready, Stamp};
use super::catchup::Side;
use super::error::{Error, Result};
use super::memory::BatchMemory;
use super::retry::kafka_err;
use super::send::{Answer, Failure, Sent, Throttle, Window};
use super::sizing;
use super::unpack::{Chunk, Fetched, Handed};
use super::wire::{Fetch, Produce};
use super::TaskSettings;
use crate::kafka::{self, ProduceAck, ProducerIdentity, TopicPartition};

/// Bytes a record takes in a batch beyond its key, value and headers (length, attributes,
/// deltas, counts as varints): an estimate for reserving batch memory.
const RECORD_FRAMING_BYTES: usize = 16;

/// Request bytes a batch adds around its records: its partition's entry in a produce request
/// shared with the connection's other partitions (index, length, tagged fields: about 8
/// bytes) and its share of the request's header and topic name. A request of one batch
/// carries about 50 bytes more, which the socket pace's headroom takes.
const PRODUCE_OVERHEAD_BYTES: usize = 16;

/// The reason of the stop once a catch-up's backlog is drained.
pub(super) const DRAINED: &str = "the backlog is drained: merging the ranges";

/// Why the sink stopped.
#[derive(Debug)]
pub(super) enum Stop {
    /// The target's state is uncertain (producer state lost, foreign writes, an ambiguous
    /// answer): reconcile against the target again from the last acknowledged position.
    /// `sequence` is the identity's sequence at `at`; `keep` says whether to go on with it.
    Resync {
        at: super::resume::Position,
        why: String,
        sequence: i32,
        keep: Keep,
        /// In a catch-up, the backlog's position and sequence there (`at` and `sequence` are
        /// the fresh range's).
        backlog: Option<(super::resume::Position, i32)>,
    },
    /// Needs an operator.
    Halt(Error),
}

/// Whether the producer identity in use is still good after a [`Stop::Resync`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Keep {
    /// Go on with it: the broker drops a late duplicate of anything sent again.
    Identity,
    /// The target refused it: take a new one.
    NewIdentity,
    /// Go on with it while a batch of it may still wait in the broker above the high
    /// watermark (an out-of-order answer); a new one only when that lasts too long.
    WhilePending,
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Halt(e)
    }
}

/// What the sink's loop woke up for.
enum Event {
    Answered(Sent, kafka::Result<ProduceAck>),
    /// The budget admitted the parked backlog batch.
    Admitted,
    /// The backlog can go on with the rest of its chunk.
    Rest,
    Due(Side),
    Fetched(Side, Option<Result<Fetched>>),
}

/// One range's records on their way: batched, stamped with its identity, acknowledged.
#[derive(Debug)]
pub(super) struct Lane {
    pub(super) batcher: Batcher,
    pub(super) acker: Acker,
    pub(super) producer: ProducerIdentity,
    /// The sequence of the next batch to send.
    pub(super) next_sequence: i32,
}

/// The backlog of a fresh-first catch-up: its lane, the fetch stage's channel, and the split
/// where it ends.
#[derive(Debug)]
pub(super) struct Backlog {
    pub(super) lane: Lane,
    pub(super) rx: mpsc::Receiver<Handed>,
    pub(super) split: i64,
    /// Until its fetch stage ends.
    pub(super) open: bool,
    /// The rest of a chunk, waiting for the parked batch to go.
    pub(super) rest: Option<Box<Rest>>,
}

/// A chunk's records not yet in a batch, and what is done once they all are.
#[derive(Debug)]
pub(super) struct Rest {
    /// A record that did not fit the full batch, first to go.
    head: Option<crate::batch::Record>,
    records: std::vec::IntoIter<crate::batch::Record>,
    next_offset: i64,
    source_bytes: usize,
    /// The chunk's share of the fetch buffer, given back once all its records are batched.
    buffer: Option<OwnedSemaphorePermit>,
    /// Its records found already on the target.
    absorbed: u64,
}

/// A backlog batch built and waiting for the budget (then for room in the window) beside the
/// sink's loop, so new records do not wait behind it.
pub(super) struct Parked {
    ready: Ready,
    /// Its share of batch memory, given back once answered.
    on_the_wire: Option<OwnedSemaphorePermit>,
    wire_bytes: usize,
    /// The budget's admission; `None` once admitted.
    admit: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl std::fmt::Debug for Parked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parked")
            .field("first", &self.ready.first)
            .field("until", &self.ready.until)
            .field("wire_bytes", &self.wire_bytes)
            .field("admitted", &self.admit.is_none())
            .finish_non_exhaustive()
    }
}

/// The target side of one partition: batches, sends and acknowledges, in order.
#[derive(Debug)]
pub(super) struct Sink<T> {
    pub(super) source_tp: TopicPartition,
    pub(super) target_tp: TopicPartition,
    pub(super) target: Arc<T>,
    pub(super) settings: Arc<TaskSettings>,
    pub(super) max_batch_bytes: usize,
    /// The largest batches grow to over a long round trip ([`sizing::ceiling`]).
    pub(super) batch_ceiling: usize,
    /// The one range, or the fresh range of a catch-up.
    pub(super) lane: Lane,
    /// The backlog, in a catch-up.
    pub(super) backlog: Option<Box<Backlog>>,
    pub(super) memory: BatchMemory,
    pub(super) window: Window,
    pub(super) throttle: Throttle,
    /// In a catch-up: where the last acknowledged batch (of either range) ended.
    pub(super) landed: Option<i64>,
    /// In a catch-up: the backlog batch waiting beside the loop.
    pub(super) parked: Option<Box<Parked>>,
}

impl<T: Fetch + Produce> Sink<T> {
    /// Writes what `rx` brings until it ends (shutdown: what was read is written) or a stop.
    pub(super) async fn run(&mut self, rx: &mut mpsc::Receiver<Handed>) -> Result<(), Stop> {
        let result = self.write(rx).await;
        if result.is_err() {
            // Nothing may land after the sink gives up on the target's state: wait for what
            // is still on the wire before anyone reconciles.
            while self.window.next().await.is_some() {}
        }
        result
    }

    fn lane(&self, side: Side) -> &Lane {
        match (side, &self.backlog) {
            (Side::Backlog, Some(b)) => &b.lane,
            _ => &self.lane,
        }
    }

    fn lane_mut(&mut self, side: Side) -> &mut Lane {
        match (side, &mut self.backlog) {
            (Side::Backlog, Some(b)) => &mut b.lane,
            _ => &mut self.lane,
        }
    }

    async fn write(&mut self, rx: &mut mpsc::Receiver<Handed>) -> Result<(), Stop> {
        loop {
            self.send_parked().await?;
            let due = self.lane.batcher.due();
            // The backlog moves only when a batch of it could go on the wire at once.
            let backlog_free = self.parked.is_none() && !self.no_room(Side::Backlog);
            let backlog_due = self
                .backlog
                .as_ref()
                .and_then(|b| b.lane.batcher.due())
                .filter(|_| backlog_free);
            let rest = backlog_free && self.backlog.as_ref().is_some_and(|b| b.rest.is_some());
            let backlog_open = backlog_free && !rest && self.backlog.as_ref().is_some_and(|b| b.open);
            let waiting = self.parked.as_ref().is_some_and(|p| p.admit.is_some());
            let event = tokio::select! {
                biased;
                Some((sent, answer)) = self.window.next() => Event::Answered(sent, answer),
                _ = sleep_until(due), if due.is_some() => Event::Due(Side::Fresh),
                msg = rx.recv() => Event::Fetched(Side::Fresh, msg.map(|m| *m)),
                () = admission(&mut self.parked), if waiting => Event::Admitted,
                () = std::future::ready(()), if rest => Event::Rest,
                _ = sleep_until(backlog_due), if backlog_due.is_some() => Event::Due(Side::Backlog),
                msg = recv_backlog(&mut self.backlog), if backlog_open => Event::Fetched(Side::Backlog, msg.map(|m| *m)),
            };
            // The stages below are boxed: a partition spends most of its life waiting in the
            // select above, and their futures (kilobytes, with the client's inside) would
            // otherwise be room in every partition's task for all of it.
            match event {
                Event::Answered(sent, answer) => self.answered(sent, answer)?,
                Event::Admitted => {
                    if let Some(p) = self.parked.as_mut() {
                        p.admit = None;
                        tracing::trace!(topic = %self.source_tp.topic, partition = self.source_tp.partition,
                            from = p.ready.first, "backlog batch admitted");
                    }
                }
                Event::Rest => {
                    if let Some(rest) = self.backlog.as_mut().and_then(|b| b.rest.take()) {
                        // Boxed: only catch-ups take this way, and every task's future would
                        // otherwise hold room for it.
                        Box::pin(self.push(Side::Backlog, rest, true)).await?;
                    }
                }
                Event::Due(side) => Box::pin(self.flush(side, self.lane(side).batcher.pushed_until())).await?,
                // The fresh (or only) fetch stage stopped (shutdown): write what was read.
                Event::Fetched(Side::Fresh, None) => {
                    Box::pin(self.flush_all()).await?;
                    return self.drain().await;
                }
                // The backlog's fetch stage ended: at the split, or stopping.
                Event::Fetched(Side::Backlog, None) => {
                    if let Some(b) = self.backlog.as_mut() {
                        b.open = false;
                    }
                    Box::pin(self.flush(Side::Backlog, self.lane(Side::Backlog).batcher.pushed_until())).await?;
                }
                Event::Fetched(_, Some(Err(e))) => {
                    Box::pin(self.flush_all()).await?;
                    self.drain().await?;
                    return Err(Stop::Halt(e));
                }
                Event::Fetched(side, Some(Ok(Fetched::Gap { from, to }))) => {
                    Box::pin(self.flush(side, self.lane(side).batcher.pushed_until())).await?;
                    self.drain().await?;
                    let oldest = self.oldest_held(side);
                    let lane = self.lane_mut(side);
                    lane.acker.gap(from, to, oldest);
                    lane.batcher.moved(to);
                }
                Event::Fetched(side, Some(Ok(Fetched::Records(chunk)))) => Box::pin(self.chunk(side, chunk)).await?,
            }
            if self.drained() {
                self.drain().await?;
                return Err(self.resync(DRAINED.into(), Keep::Identity));
            }
        }
    }

    /// Sends what every lane holds.
    async fn flush_all(&mut self) -> Result<(), Stop> {
        if let Some(rest) = self.backlog.as_mut().and_then(|b| b.rest.take()) {
            Box::pin(self.push(Side::Backlog, rest, false)).await?;
        }
        if self.backlog.is_some() {
            self.flush(Side::Backlog, self.lane(Side::Backlog).batcher.pushed_until())
                .await?;
        }
        self.flush(Side::Fresh, self.lane.batcher.pushed_until()).await
    }

    /// Whether a catch-up's backlog is drained: its fetch stage ended, its records up to the
    /// split are all acknowledged, and neither range has records found on the target left to
    /// absorb. The task then merges the ranges. (A backlog stage that ended short of the split
    /// is strait stopping: the fresh stage's end follows.)
    fn drained(&self) -> bool {
        let Some(b) = self.backlog.as_ref() else {
            return false;
        };
        !b.open
            && self.parked.is_none()
            && b.rest.is_none()
            && b.lane.batcher.is_empty()
            && self.window.count(Side::Backlog) == 0
            && b.lane.acker.position().source >= b.split
            && b.lane.acker.tail_absorbed()
            && self.lane.acker.tail_absorbed()
    }

    /// Takes one chunk of source records of `side`: those the target already holds move the
    /// position, the others go into batches.
    async fn chunk(&mut self, side: Side, chunk: Chunk) -> Result<(), Stop> {
        // The oldest record not yet acknowledged: one the sink holds, else this chunk's first.
        let oldest = self
            .oldest_held(side)
            .or_else(|| chunk.records.first().map(|r| r.timestamp));
        self.lane(side).acker.fetched(chunk.high_watermark, oldest);
        let Chunk {
            records,
            buffer,
            next_offset,
            source_bytes,
            ..
        } = chunk;
        let encoded = source_bytes + records.len() * RECORD_FRAMING_BYTES;
        if !self.memory.try_reserve(encoded) {
            // All taken: send what the builders hold first, then wait for memory to come back.
            self.flush_all().await?;
            let wait = self.memory.release_and_wait(encoded);
            if let Some(permit) = self.while_answering(wait).await? {
                self.memory.hold(permit);
            }
        }
        let rest = Box::new(Rest {
            head: None,
            records: records.into_iter(),
            next_offset,
            source_bytes,
            buffer,
            absorbed: 0,
        });
        self.push(side, rest, true).await
    }

    /// Pushes a chunk's records into `side`'s batches. With `wait_beside`, a backlog record
    /// that finds the batch full while the backlog's last batch is parked (or the window has
    /// no room) leaves the rest of the chunk in [`Backlog::rest`], for the loop to go on with.
    async fn push(&mut self, side: Side, mut rest: Box<Rest>, wait_beside: bool) -> Result<(), Stop> {
        // One clock read per go: the records arrived together.
        let now = Instant::now();
        while let Some(record) = rest.head.take().or_else(|| rest.records.next()) {
            if self.lane_mut(side).acker.absorb(record.offset) {
                rest.absorbed += 1;
                continue;
            }
            if let Err(record) = self.lane_mut(side).batcher.push(record, now) {
                if wait_beside && side == Side::Backlog && (self.parked.is_some() || self.no_room(side)) {
                    rest.head = Some(record);
                    if let Some(b) = self.backlog.as_mut() {
                        b.rest = Some(rest);
                    }
                    return Ok(());
                }
                self.flush(side, self.lane(side).batcher.after_last_record()).await?;
                if let Err(record) = self.lane_mut(side).batcher.push(record, Instant::now()) {
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
        }
        let Rest {
            next_offset,
            source_bytes,
            buffer,
            absorbed,
            ..
        } = *rest;
        self.lane_mut(side).batcher.pushed(next_offset, source_bytes);
        self.memory.trim(self.held_bytes());
        drop(buffer);
        let oldest = self.oldest_held(side);
        let lane = self.lane_mut(side);
        if absorbed > 0 {
            // Written by an earlier attempt whose acknowledgement was lost: replicated all the same.
            let at = lane.acker.position().source;
            lane.acker.moved(at, absorbed, oldest);
        }
        // Only control, aborted or absorbed records since the last batch: the position moves
        // with the newest batch on the wire, or now when none is.
        if self.lane(side).batcher.is_empty() && !self.extend_newest(side, next_offset) {
            self.lane_mut(side).acker.moved(next_offset, 0, oldest);
        }
        Ok(())
    }

    /// Moves the end of `side`'s newest batch not yet answered to `until`: the parked one, else
    /// the newest on the wire. False when it has none.
    fn extend_newest(&mut self, side: Side, until: i64) -> bool {
        if side == Side::Backlog {
            if let Some(p) = self.parked.as_mut() {
                p.ready.until = until;
                return true;
            }
        }
        self.window.extend_newest(side, until)
    }

    /// Bytes of records the lanes' builders hold.
    fn held_bytes(&self) -> usize {
        self.lane.batcher.size_bytes() + self.backlog.as_ref().map_or(0, |b| b.lane.batcher.size_bytes())
    }

    /// Whether a batch of `side` must wait for room in the window. One range: the window is
    /// full. In a catch-up each range has its identity, and Kafka keeps the last
    /// [`MAX_IN_FLIGHT`](super::sizing::MAX_IN_FLIGHT) batches of each producer: new records
    /// have that many slots of their own, so they never wait for the answer to a backlog batch;
    /// the backlog one fewer, so fewer of its bytes are queued on the connection ahead of them.
    fn no_room(&self, side: Side) -> bool {
        use super::sizing::MAX_IN_FLIGHT;
        match (side, &self.backlog) {
            (_, None) => self.window.is_full(),
            (Side::Fresh, Some(_)) => self.window.count(Side::Fresh) >= MAX_IN_FLIGHT,
            (Side::Backlog, Some(_)) => self.window.count(Side::Backlog) + 1 >= MAX_IN_FLIGHT,
        }
    }

    /// Builds what the batcher holds into one batch and puts it on the wire, once the window
    /// has room, the budget allows it and no throttle holds it. Everything below `until` is
    /// acknowledged with it.
    async fn flush(&mut self, side: Side, until: i64) -> Result<(), Stop> {
        if side == Side::Backlog {
            // The backlog's batches go in order: the parked one first.
            self.unpark().await?;
        }
        if self.lane(side).batcher.is_empty() {
            return Ok(());
        }
        if self.no_room(side) {
            // The target (or the link to it) is what holds this partition back.
            let level = Arc::clone(&self.settings.level);
            let _waiting = level.wait_for_target();
            while self.no_room(side) {
                if let Some((sent, answer)) = self.window.next().await {
                    self.answered(sent, answer)?;
                }
            }
        }
        if self.window.count(side) == 0 {
            // Nothing of this range on the wire: its next record is the one at its
            // acknowledged position (records found in place in the tail moved it on without
            // being sent).
            let lane = self.lane_mut(side);
            lane.next_sequence = lane.acker.sequence();
        }
        let lane = self.lane(side);
        let stamp = Stamp {
            producer: lane.producer,
            base_sequence: lane.next_sequence,
            codec: self.settings.codec,
            zstd_level: self.settings.level.level(),
        };
        let level = Arc::clone(&self.settings.level);
        // The batcher goes to a compression thread and comes back with the batch. Only
        // dropping the whole task can drop it on the way (the sink is never cancelled
        // otherwise), and with it everything not yet acknowledged.
        let lane = self.lane_mut(side);
        let mut batcher = std::mem::replace(&mut lane.batcher, Batcher::new(0, std::time::Duration::ZERO, until));
        let (batcher, ready, took) = level
            .compress(batcher.size_bytes(), move || {
                let compress_started = crate::budget::CpuTimer::start();
                let ready = batcher.build(until, stamp);
                (batcher, ready, compress_started.elapsed())
            })
            .await;
        self.lane_mut(side).batcher = batcher;
        let ready = ready.map_err(|source| Error::Build {
            topic: self.source_tp.topic.clone(),
            partition: self.source_tp.partition,
            offset: until,
            source,
        })?;
        let Some(ready) = ready else { return Ok(()) };
        tracing::trace!(topic = %self.source_tp.topic, partition = self.source_tp.partition, from = ready.first,
            records = ready.count, uncompressed = ready.uncompressed_len, wire_bytes = ready.bytes.len(),
            cpu_ms = took.as_secs_f64() * 1e3, range = %side, "batch built");
        let budgeted = self.settings.budget.bytes_per_sec() > 0;
        let size = sizing::batch_bytes(
            self.max_batch_bytes,
            self.batch_ceiling,
            self.window.round_trip(),
            budgeted,
        );
        self.lane_mut(side).batcher.resize(size);
        // Only zstd batches measure the levels the control chooses from.
        if stamp.codec == crate::batch::Compression::Zstd {
            self.settings
                .level
                .record_compress(stamp.zstd_level, ready.uncompressed_len, ready.bytes.len(), took);
        }
        self.send(side, ready).await
    }

    /// Spends the budget, waits out a throttle and produces. A catch-up's backlog batch waits
    /// for the budget beside the loop instead ([`Parked`]).
    async fn send(&mut self, side: Side, ready: Ready) -> Result<(), Stop> {
        let on_the_wire = self.memory.split_built(ready.uncompressed_len, ready.bytes.len());
        let wire_bytes = ready.bytes.len() + PRODUCE_OVERHEAD_BYTES;
        let budget = Arc::clone(&self.settings.budget);
        let topic = self.target_tp.topic.clone();
        if self.backlog.is_none() {
            self.while_answering(async move { budget.acquire(&topic, wire_bytes).await })
                .await?;
        } else if side == Side::Fresh {
            // A catch-up's new records go first: the backlog's batches waiting for the budget
            // pay for them.
            budget.charge(&topic, wire_bytes);
        } else {
            self.parked = Some(Box::new(Parked {
                ready,
                on_the_wire,
                wire_bytes,
                admit: Some(Box::pin(async move { budget.acquire(&topic, wire_bytes).await })),
            }));
            return Ok(());
        }
        self.produce(side, ready, on_the_wire, wire_bytes).await
    }

    /// Sends the parked backlog batch once the budget admitted it and the window has room.
    async fn send_parked(&mut self) -> Result<(), Stop> {
        if self.no_room(Side::Backlog) || self.parked.as_ref().is_none_or(|p| p.admit.is_some()) {
            return Ok(());
        }
        match self.parked.take() {
            // Boxed, as a catch-up's: every task's future would otherwise hold room for it.
            Some(p) => Box::pin(self.produce(Side::Backlog, p.ready, p.on_the_wire, p.wire_bytes)).await,
            None => Ok(()),
        }
    }

    /// Waits for the parked backlog batch to be admitted and for room, and sends it.
    async fn unpark(&mut self) -> Result<(), Stop> {
        let Some(mut p) = self.parked.take() else {
            return Ok(());
        };
        if let Some(admit) = p.admit.take() {
            self.while_answering(admit).await?;
        }
        while self.no_room(Side::Backlog) {
            if let Some((sent, answer)) = self.window.next().await {
                self.answered(sent, answer)?;
            }
        }
        Box::pin(self.produce(Side::Backlog, p.ready, p.on_the_wire, p.wire_bytes)).await
    }

    /// Waits out a throttle and produces a batch the budget admitted.
    async fn produce(
        &mut self,
        side: Side,
        ready: Ready,
        on_the_wire: Option<OwnedSemaphorePermit>,
        wire_bytes: usize,
    ) -> Result<(), Stop> {
        // A quota throttled the target connection: send nothing before the broker unmutes it
        // (KIP-219), so requests do not wait out their timeout in a muted socket.
        if let Some(until) = self.throttle.take() {
            self.while_answering(tokio::time::sleep_until(until)).await?;
        }
        let produced = self
            .target
            .start_produce(&self.target_tp, ready.bytes, self.settings.produce_timeout_ms)
            .await;
        let ack = match produced {
            Ok(ack) => ack,
            Err(e) => {
                self.drain().await?;
                return Err(self.failed(e, ready.first, wire_bytes));
            }
        };
        let lane = self.lane_mut(side);
        lane.next_sequence = lane.next_sequence.wrapping_add(ready.count) & i32::MAX;
        tracing::trace!(topic = %self.source_tp.topic, partition = self.source_tp.partition, from = ready.first,
            to = ready.last, records = ready.count, wire_bytes, range = %side, "batch sent");
        let sent = Sent {
            first: ready.first,
            until: ready.until,
            count: i64::from(ready.count),
            source_bytes: ready.source_bytes,
            wire_bytes: wire_bytes as u64,
            max_timestamp: ready.max_timestamp,
            first_timestamp: ready.first_timestamp,
            runs: ready.runs,
            side,
        };
        self.window.push(sent, ack, on_the_wire);
        Ok(())
    }

    /// Awaits `wait` while taking the answers that arrive meanwhile, so acknowledged batches
    /// give their memory back and move the position at once.
    async fn while_answering<F: Future>(&mut self, wait: F) -> Result<F::Output, Stop> {
        tokio::pin!(wait);
        loop {
            let (sent, answer) = tokio::select! {
                biased;
                out = &mut wait => return Ok(out),
                Some(answered) = self.window.next() => answered,
            };
            self.answered(sent, answer)?;
        }
    }

    /// Applies the answer for the oldest batch on the wire.
    fn answered(&mut self, sent: Sent, answer: kafka::Result<ProduceAck>) -> Result<(), Stop> {
        let side = sent.side;
        // Where it lands: after the last acknowledged batch of either range, or at the
        // range's position (past the tail found at the last reconcile).
        let expected = self.landed.unwrap_or_else(|| self.lane(side).acker.position().target);
        match answer {
            Ok(ack) => {
                self.throttle.note(ack.throttle_ms, Instant::now());
                match Answer::of(&ack, expected) {
                    Answer::InPlace => {
                        let oldest = self.oldest_held(side);
                        self.lane_mut(side).acker.batch(&sent, expected, oldest);
                        if self.backlog.is_some() {
                            let end = expected + sent.count;
                            self.landed = Some(end);
                            let other = match side {
                                Side::Backlog => Side::Fresh,
                                Side::Fresh => Side::Backlog,
                            };
                            let oldest = self.oldest_held(other);
                            self.lane_mut(other).acker.follow(end, oldest);
                        }
                        Ok(())
                    }
                    // The reconcile that follows reads who wrote what there before anything
                    // else is written.
                    Answer::Elsewhere { base_offset } => Err(self.resync(
                        format!(
                            "batch landed at offset {base_offset} instead of {expected}: the target partition holds \
                             records strait did not expect there"
                        ),
                        Keep::NewIdentity,
                    )),
                }
            }
            Err(e) => Err(self.failed(e, sent.first, sent.wire_bytes as usize)),
        }
    }

    /// A stop to reconcile from the acknowledged positions.
    fn resync(&self, why: String, keep: Keep) -> Stop {
        let backlog = self
            .backlog
            .as_ref()
            .map(|b| (b.lane.acker.position(), b.lane.acker.sequence()));
        Stop::Resync {
            at: self.lane.acker.position(),
            why,
            sequence: self.lane.acker.sequence(),
            keep,
            backlog,
        }
    }

    /// What a failed produce means for the partition.
    fn failed(&self, err: kafka::Error, first: i64, wire_bytes: usize) -> Stop {
        match Failure::of(&err) {
            Failure::NewIdentity => self.resync(crate::error_chain(&err), Keep::NewIdentity),
            Failure::OutOfOrder => self.resync(crate::error_chain(&err), Keep::WhilePending),
            Failure::TooLarge => Stop::Halt(Error::RecordTooLarge {
                topic: self.source_tp.topic.clone(),
                partition: self.source_tp.partition,
                offset: first,
                size: wire_bytes,
                max: self.max_batch_bytes,
            }),
            Failure::Fatal => Stop::Halt(kafka_err("target", "produce", &self.target_tp, first, err)),
            Failure::Retry { refresh } => {
                if refresh {
                    self.target.invalidate(&self.target_tp);
                }
                self.resync(crate::error_chain(&err), Keep::Identity)
            }
        }
    }

    /// Waits for every batch on the wire, in order; stops at the first failure.
    async fn drain(&mut self) -> Result<(), Stop> {
        while let Some((sent, answer)) = self.window.next().await {
            self.answered(sent, answer)?;
        }
        Ok(())
    }

    /// Timestamp of the oldest record of `side` the sink holds: the first of its oldest batch on
    /// the wire, else the first in its batcher.
    fn oldest_held(&self, side: Side) -> Option<i64> {
        let parked = || {
            self.parked
                .as_ref()
                .filter(|_| side == Side::Backlog)
                .map(|p| p.ready.first_timestamp)
        };
        self.window
            .oldest_timestamp(side)
            .or_else(parked)
            .or_else(|| self.lane(side).batcher.first_timestamp())
    }
}

/// The parked batch's admission by the budget; never, without one waiting.
async fn admission(parked: &mut Option<Box<Parked>>) {
    match parked.as_mut().and_then(|p| p.admit.as_mut()) {
        Some(admit) => admit.as_mut().await,
        None => std::future::pending().await,
    }
}

/// The backlog's next chunk; never, without a backlog.
async fn recv_backlog(backlog: &mut Option<Box<Backlog>>) -> Option<Handed> {
    match backlog {
        Some(b) => b.rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
