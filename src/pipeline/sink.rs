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

use std::future::Future;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::ack::Acker;
use super::batch::{Batcher, Ready, Stamp};
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

/// Request bytes around the records of a one-partition produce, plus the topic name.
const PRODUCE_OVERHEAD_BYTES: usize = 80;

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
    Due,
    Fetched(Option<Result<Fetched>>),
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
    pub(super) batcher: Batcher,
    pub(super) memory: BatchMemory,
    pub(super) window: Window,
    pub(super) acker: Acker,
    pub(super) producer: ProducerIdentity,
    /// The sequence of the next batch to send.
    pub(super) next_sequence: i32,
    pub(super) throttle: Throttle,
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

    async fn write(&mut self, rx: &mut mpsc::Receiver<Handed>) -> Result<(), Stop> {
        loop {
            let due = self.batcher.due();
            let event = tokio::select! {
                biased;
                Some((sent, answer)) = self.window.next() => Event::Answered(sent, answer),
                _ = sleep_until(due), if due.is_some() => Event::Due,
                msg = rx.recv() => Event::Fetched(msg.map(|m| *m)),
            };
            match event {
                Event::Answered(sent, answer) => self.answered(sent, answer)?,
                Event::Due => self.flush(self.batcher.pushed_until()).await?,
                // The fetch stage stopped (shutdown): write what was read.
                Event::Fetched(None) => {
                    self.flush(self.batcher.pushed_until()).await?;
                    return self.drain().await;
                }
                Event::Fetched(Some(Err(e))) => {
                    self.flush(self.batcher.pushed_until()).await?;
                    self.drain().await?;
                    return Err(Stop::Halt(e));
                }
                Event::Fetched(Some(Ok(Fetched::Gap { from, to }))) => {
                    self.flush(self.batcher.pushed_until()).await?;
                    self.drain().await?;
                    self.acker.gap(from, to, self.oldest_held());
                    self.batcher.moved(to);
                }
                Event::Fetched(Some(Ok(Fetched::Records(chunk)))) => self.chunk(chunk).await?,
            }
        }
    }

    /// Takes one chunk of source records: those the target already holds move the position,
    /// the others go into batches.
    async fn chunk(&mut self, chunk: Chunk) -> Result<(), Stop> {
        // The oldest record not yet acknowledged: one the sink holds, else this chunk's first.
        let oldest = self
            .oldest_held()
            .or_else(|| chunk.records.first().map(|r| r.timestamp));
        self.acker.fetched(chunk.high_watermark, oldest);
        let Chunk {
            records,
            buffer,
            next_offset,
            source_bytes,
            ..
        } = chunk;
        let encoded = source_bytes + records.len() * RECORD_FRAMING_BYTES;
        if !self.memory.try_reserve(encoded) {
            // All taken: send what the builder holds first, then wait for memory to come back.
            self.flush(self.batcher.pushed_until()).await?;
            let wait = self.memory.release_and_wait(encoded);
            if let Some(permit) = self.while_answering(wait).await? {
                self.memory.hold(permit);
            }
        }
        let mut absorbed = 0u64;
        // One clock read per chunk: its records arrived together.
        let now = Instant::now();
        for record in records {
            if self.acker.absorb(record.offset) {
                absorbed += 1;
                continue;
            }
            if let Err(record) = self.batcher.push(record, now) {
                self.flush(self.batcher.after_last_record()).await?;
                if let Err(record) = self.batcher.push(record, Instant::now()) {
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
        self.batcher.pushed(next_offset, source_bytes);
        self.memory.trim(self.batcher.size_bytes());
        drop(buffer);
        if absorbed > 0 {
            // Written by an earlier attempt whose acknowledgement was lost: replicated all the same.
            self.acker
                .moved(self.acker.position().source, absorbed, self.oldest_held());
        }
        // Only control, aborted or absorbed records since the last batch: the position moves
        // with the newest batch on the wire, or now when none is.
        if self.batcher.is_empty() && !self.window.extend_newest(next_offset) {
            self.acker.moved(next_offset, 0, self.oldest_held());
        }
        Ok(())
    }

    /// Builds what the batcher holds into one batch and puts it on the wire, once the window
    /// has room, the budget allows it and no throttle holds it. Everything below `until` is
    /// acknowledged with it.
    async fn flush(&mut self, until: i64) -> Result<(), Stop> {
        if self.batcher.is_empty() {
            return Ok(());
        }
        if self.window.is_full() {
            // The target (or the link to it) is what holds this partition back.
            let level = Arc::clone(&self.settings.level);
            let _waiting = level.wait_for_target();
            while self.window.is_full() {
                if let Some((sent, answer)) = self.window.next().await {
                    self.answered(sent, answer)?;
                }
            }
        }
        if self.window.is_empty() {
            // Nothing on the wire: the next record is the one at the acknowledged position
            // (records found in place in the tail moved it on without being sent).
            self.next_sequence = self.acker.sequence();
        }
        let stamp = Stamp {
            producer: self.producer,
            base_sequence: self.next_sequence,
            codec: self.settings.codec,
            zstd_level: self.settings.level.level(),
        };
        let level = Arc::clone(&self.settings.level);
        let batcher = &mut self.batcher;
        let (ready, took) = level
            .compress(|| {
                let compress_started = std::time::Instant::now();
                (batcher.build(until, stamp), compress_started.elapsed())
            })
            .await;
        let ready = ready.map_err(|source| Error::Build {
            topic: self.source_tp.topic.clone(),
            partition: self.source_tp.partition,
            offset: until,
            source,
        })?;
        let Some(ready) = ready else { return Ok(()) };
        let budgeted = self.settings.budget.bytes_per_sec() > 0;
        self.batcher.resize(sizing::batch_bytes(
            self.max_batch_bytes,
            self.batch_ceiling,
            self.window.round_trip(),
            budgeted,
        ));
        // Only zstd batches measure the levels the control chooses from.
        if stamp.codec == crate::batch::Compression::Zstd {
            self.settings
                .level
                .record_compress(stamp.zstd_level, ready.uncompressed_len, ready.bytes.len(), took);
        }
        self.send(ready).await
    }

    /// Spends the budget, waits out a throttle and produces.
    async fn send(&mut self, ready: Ready) -> Result<(), Stop> {
        let on_the_wire = self.memory.split_built(ready.uncompressed_len, ready.bytes.len());
        let wire_bytes = ready.bytes.len() + PRODUCE_OVERHEAD_BYTES + self.target_tp.topic.len();
        let budget = Arc::clone(&self.settings.budget);
        let topic = self.target_tp.topic.clone();
        self.while_answering(async move { budget.acquire(&topic, wire_bytes).await })
            .await?;
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
        self.next_sequence = self.next_sequence.wrapping_add(ready.count) & i32::MAX;
        tracing::trace!(topic = %self.source_tp.topic, partition = self.source_tp.partition, from = ready.first,
            to = ready.last, records = ready.count, wire_bytes, "batch sent");
        let sent = Sent {
            first: ready.first,
            until: ready.until,
            count: i64::from(ready.count),
            source_bytes: ready.source_bytes,
            wire_bytes: wire_bytes as u64,
            max_timestamp: ready.max_timestamp,
            first_timestamp: ready.first_timestamp,
            runs: ready.runs,
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
        let expected = self.acker.position().target;
        match answer {
            Ok(ack) => {
                self.throttle.note(ack.throttle_ms, Instant::now());
                match Answer::of(&ack, expected) {
                    Answer::InPlace => {
                        self.acker.batch(&sent, self.oldest_held());
                        Ok(())
                    }
                    // The reconcile that follows reads who wrote what there before anything
                    // else is written.
                    Answer::Elsewhere { base_offset } => Err(Stop::Resync {
                        at: self.acker.position(),
                        why: format!(
                            "batch landed at offset {base_offset} instead of {expected}: the target partition holds \
                             records strait did not expect there"
                        ),
                        sequence: self.acker.sequence(),
                        keep: Keep::NewIdentity,
                    }),
                }
            }
            Err(e) => Err(self.failed(e, sent.first, sent.wire_bytes as usize)),
        }
    }

    /// What a failed produce means for the partition.
    fn failed(&self, err: kafka::Error, first: i64, wire_bytes: usize) -> Stop {
        let at = self.acker.position();
        match Failure::of(&err) {
            Failure::NewIdentity => Stop::Resync {
                at,
                why: crate::error_chain(&err),
                sequence: self.acker.sequence(),
                keep: Keep::NewIdentity,
            },
            Failure::OutOfOrder => Stop::Resync {
                at,
                why: crate::error_chain(&err),
                sequence: self.acker.sequence(),
                keep: Keep::WhilePending,
            },
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
                Stop::Resync {
                    at,
                    why: crate::error_chain(&err),
                    sequence: self.acker.sequence(),
                    keep: Keep::Identity,
                }
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

    /// Timestamp of the oldest record the sink holds: the first of the oldest batch on the
    /// wire, else the first in the batcher.
    fn oldest_held(&self) -> Option<i64> {
        self.window
            .oldest_timestamp()
            .or_else(|| self.batcher.first_timestamp())
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
