//! The send stage: the in-flight window of one partition, and what each answer means.
//!
//! Up to [`MAX_IN_FLIGHT`] batches are on the wire at once; their acknowledgements are an
//! ordered set of futures owned by the sink ([`Window`]), so answers are taken in the order the
//! batches were sent whatever order they arrive in, and nothing outlives the sink. Each answer is
//! classified ([`Answer::of`], [`Failure::of`]): in place, landed elsewhere, a producer identity
//! gone bad, too large, retriable or fatal. A quota's throttle time holds the next send
//! ([`Throttle`]).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::stream::{FuturesOrdered, StreamExt};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::catchup::Side;
use super::sizing::{RoundTrip, MAX_IN_FLIGHT};
use crate::kafka::{self, ProduceAck, ResponseError};
use crate::telemetry;

/// A batch on the wire, as the sink accounts for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Sent {
    /// First source offset in the batch.
    pub(super) first: i64,
    /// Source position once acknowledged (may extend past the batch over dropped records).
    pub(super) until: i64,
    pub(super) count: i64,
    pub(super) source_bytes: u64,
    pub(super) wire_bytes: u64,
    /// Newest record timestamp in the batch (ms), for the end-to-end latency.
    pub(super) max_timestamp: i64,
    /// Timestamp of the batch's first record (ms): the oldest it holds by offset.
    pub(super) first_timestamp: i64,
    /// Its records' source offsets, as runs of consecutive offsets: (first, count).
    pub(super) runs: Vec<(i64, i64)>,
    /// The range of a fresh-first catch-up it belongs to ([`Side::Fresh`] with one range).
    pub(super) side: Side,
}

/// An answer and how long it took from the send.
type Acking = Pin<Box<dyn Future<Output = (kafka::Result<ProduceAck>, Duration)> + Send>>;

/// The batches of one partition on the wire, oldest first.
pub(super) struct Window {
    acks: FuturesOrdered<Acking>,
    sent: VecDeque<Sent>,
    /// The round trip to the target, from the answers' times.
    round_trip: RoundTrip,
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window")
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl Window {
    pub(super) fn new() -> Self {
        Self {
            acks: FuturesOrdered::new(),
            sent: VecDeque::new(),
            round_trip: RoundTrip::default(),
        }
    }

    /// The round trip to the target as the answers so far measured it.
    pub(super) fn round_trip(&self) -> Option<Duration> {
        self.round_trip.estimate()
    }

    pub(super) fn is_full(&self) -> bool {
        self.sent.len() >= MAX_IN_FLIGHT
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// Batches of `side` on the wire.
    pub(super) fn count(&self, side: Side) -> usize {
        self.sent.iter().filter(|s| s.side == side).count()
    }

    /// Puts a batch in the window with its acknowledgement. `memory` (the compressed batch's
    /// share of the batch memory) is given back as soon as the answer arrives.
    pub(super) fn push<A>(&mut self, sent: Sent, ack: A, memory: Option<OwnedSemaphorePermit>)
    where
        A: Future<Output = kafka::Result<ProduceAck>> + Send + 'static,
    {
        self.sent.push_back(sent);
        let started = std::time::Instant::now();
        self.acks.push_back(Box::pin(async move {
            let answer = ack.await;
            drop(memory);
            let took = started.elapsed();
            metrics::histogram!(telemetry::PRODUCE_LATENCY).record(took);
            (answer, took)
        }));
    }

    /// The answer for the oldest batch on the wire; `None` at once when none is.
    pub(super) async fn next(&mut self) -> Option<(Sent, kafka::Result<ProduceAck>)> {
        let (answer, took) = self.acks.next().await?;
        if answer.is_ok() {
            self.round_trip.record(took);
        }
        let sent = self.sent.pop_front()?;
        Some((sent, answer))
    }

    /// Records dropped after the newest batch on the wire (control batches, aborted
    /// transactions) are acknowledged with it. `false` when nothing is on the wire.
    pub(super) fn extend_newest(&mut self, side: Side, until: i64) -> bool {
        match self.sent.iter_mut().rev().find(|s| s.side == side) {
            Some(last) => {
                last.until = until;
                true
            }
            None => false,
        }
    }

    /// Timestamp of the oldest record of `side` on the wire.
    pub(super) fn oldest_timestamp(&self, side: Side) -> Option<i64> {
        self.sent.iter().find(|s| s.side == side).map(|s| s.first_timestamp)
    }
}

/// What an answer without error says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Answer {
    /// The batch is where strait expected it (or the broker does not say: idempotent
    /// duplicates of older brokers answer -1).
    InPlace,
    /// Something else took offsets at or after the expected one.
    Elsewhere { base_offset: i64 },
}

impl Answer {
    pub(super) fn of(ack: &ProduceAck, expected: i64) -> Self {
        if ack.base_offset == expected || ack.base_offset < 0 {
            Answer::InPlace
        } else {
            Answer::Elsewhere {
                base_offset: ack.base_offset,
            }
        }
    }
}

/// What a failed produce means for the partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Failure {
    /// The producer identity is no good any more: reconcile, then a new one.
    NewIdentity,
    /// The target's sequence for the identity is not the one expected: usually a batch whose
    /// answer was lost landed after all, or still waits above the high watermark. Reconcile
    /// and go on with the same identity, so the broker keeps deduplicating; a new one only if
    /// that does not resolve it.
    OutOfOrder,
    /// The batch is larger than the target accepts.
    TooLarge,
    /// Retriable, landed or not: reconcile and go on with the same identity and sequences, so
    /// the broker drops a late duplicate of anything sent again. `refresh`: the leader moved.
    Retry { refresh: bool },
    /// Needs an operator.
    Fatal,
}

impl Failure {
    pub(super) fn of(err: &kafka::Error) -> Self {
        match err.code() {
            Some(ResponseError::OutOfOrderSequenceNumber | ResponseError::DuplicateSequenceNumber) => {
                Failure::OutOfOrder
            }
            Some(
                ResponseError::UnknownProducerId | ResponseError::InvalidProducerEpoch | ResponseError::ProducerFenced,
            ) => Failure::NewIdentity,
            Some(ResponseError::MessageTooLarge) => Failure::TooLarge,
            _ if !err.is_retriable() => Failure::Fatal,
            _ => Failure::Retry {
                refresh: err.needs_metadata_refresh(),
            },
        }
    }
}

/// Until when the target asked to hold produce requests (a quota's throttle time, KIP-219: the
/// broker answers at once and mutes the connection meanwhile).
#[derive(Debug, Default)]
pub(super) struct Throttle {
    until: Option<Instant>,
}

impl Throttle {
    /// Takes note of an answer's throttle time: the next send waits it out, and it adds to
    /// `strait_target_throttle_seconds_total`.
    pub(super) fn note(&mut self, throttle_ms: i32, now: Instant) {
        if throttle_ms <= 0 {
            return;
        }
        let hold = Duration::from_millis(throttle_ms.unsigned_abs().into());
        let until = now + hold;
        self.until = Some(self.until.map_or(until, |t| t.max(until)));
        telemetry::TARGET_THROTTLED.add(hold);
    }

    /// Until when the next send must wait, once.
    pub(super) fn take(&mut self) -> Option<Instant> {
        self.until.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::{oneshot, Semaphore};

    fn sent(first: i64, count: i64) -> Sent {
        Sent {
            first,
            until: first + count,
            count,
            source_bytes: 0,
            wire_bytes: 0,
            max_timestamp: 0,
            first_timestamp: first,
            runs: vec![(first, count)],
            side: Side::Fresh,
        }
    }

    fn ack(base_offset: i64) -> ProduceAck {
        ProduceAck {
            base_offset,
            throttle_ms: 0,
        }
    }

    #[tokio::test]
    async fn answers_are_taken_in_send_order_whatever_order_they_arrive_in() {
        let pool = std::sync::Arc::new(Semaphore::new(10));
        let mut w = Window::new();
        let mut replies = Vec::new();
        for i in 0..MAX_IN_FLIGHT as i64 {
            let (tx, rx) = oneshot::channel::<kafka::Result<ProduceAck>>();
            let memory = std::sync::Arc::clone(&pool).try_acquire_many_owned(2).expect("free");
            w.push(
                sent(i * 10, 10),
                async move { rx.await.unwrap_or(Ok(ack(-2))) },
                Some(memory),
            );
            replies.push(tx);
        }
        assert!(w.is_full());
        assert_eq!(w.oldest_timestamp(Side::Fresh), Some(0));
        // The newest answers first, the oldest last.
        for (i, tx) in replies.into_iter().enumerate().rev() {
            tx.send(Ok(ack(i as i64 * 10))).expect("listening");
        }
        let mut order = Vec::new();
        while let Some((s, a)) = w.next().await {
            order.push((s.first, a.expect("ok").base_offset));
        }
        assert_eq!(order, vec![(0, 0), (10, 10), (20, 20), (30, 30), (40, 40)]);
        assert!(w.is_empty());
        assert_eq!(pool.available_permits(), 10, "every batch's memory came back");
        assert!(w.next().await.is_none(), "an empty window answers at once");
    }

    #[tokio::test]
    async fn an_answer_gives_its_memory_back_before_the_older_ones_are_taken() {
        let pool = std::sync::Arc::new(Semaphore::new(4));
        let mut w = Window::new();
        let (old_tx, old_rx) = oneshot::channel::<kafka::Result<ProduceAck>>();
        let memory = |n| std::sync::Arc::clone(&pool).try_acquire_many_owned(n).expect("free");
        w.push(
            sent(0, 1),
            async move { old_rx.await.unwrap_or(Ok(ack(-2))) },
            Some(memory(2)),
        );
        w.push(sent(1, 1), async { Ok(ack(1)) }, Some(memory(2)));
        assert_eq!(pool.available_permits(), 0);
        // Polling the window runs every acknowledgement: the newer one is answered and frees
        // its memory while the older is still out.
        tokio::select! {
            biased;
            _ = w.next() => panic!("the oldest has no answer yet"),
            _ = tokio::task::yield_now() => {}
        }
        assert_eq!(pool.available_permits(), 2);
        old_tx.send(Ok(ack(0))).expect("listening");
        assert_eq!(w.next().await.map(|(s, _)| s.first), Some(0));
    }

    #[test]
    fn dropped_records_after_the_newest_batch_are_acknowledged_with_it() {
        let mut w = Window::new();
        assert!(
            !w.extend_newest(Side::Fresh, 12),
            "nothing on the wire: the caller moves the position itself"
        );
        w.push(sent(0, 10), async { Ok(ack(0)) }, None);
        assert!(w.extend_newest(Side::Fresh, 12));
        assert_eq!(w.sent.back().map(|s| s.until), Some(12));
    }

    #[test]
    fn an_answer_is_in_place_only_at_the_expected_offset() {
        assert_eq!(Answer::of(&ack(100), 100), Answer::InPlace);
        assert_eq!(Answer::of(&ack(-1), 100), Answer::InPlace);
        assert_eq!(Answer::of(&ack(101), 100), Answer::Elsewhere { base_offset: 101 });
        assert_eq!(Answer::of(&ack(99), 100), Answer::Elsewhere { base_offset: 99 });
    }

    fn failure(code: ResponseError) -> Failure {
        Failure::of(&kafka::Error::Partition {
            api: kafka::ApiKey::Produce,
            topic: "spans".into(),
            partition: 0,
            code,
            message: None,
        })
    }

    #[test]
    fn every_produce_error_is_classified() {
        for code in [
            ResponseError::UnknownProducerId,
            ResponseError::InvalidProducerEpoch,
            ResponseError::ProducerFenced,
        ] {
            assert_eq!(failure(code), Failure::NewIdentity, "{code:?}");
        }
        for code in [
            ResponseError::OutOfOrderSequenceNumber,
            ResponseError::DuplicateSequenceNumber,
        ] {
            assert_eq!(failure(code), Failure::OutOfOrder, "{code:?}");
        }
        assert_eq!(failure(ResponseError::MessageTooLarge), Failure::TooLarge);
        for code in [
            ResponseError::NotLeaderOrFollower,
            ResponseError::LeaderNotAvailable,
            ResponseError::FencedLeaderEpoch,
        ] {
            assert_eq!(failure(code), Failure::Retry { refresh: true }, "{code:?}");
        }
        for code in [
            ResponseError::NotEnoughReplicas,
            ResponseError::NotEnoughReplicasAfterAppend,
            ResponseError::RequestTimedOut,
        ] {
            assert!(matches!(failure(code), Failure::Retry { .. }), "{code:?}");
        }
        for code in [
            ResponseError::TopicAuthorizationFailed,
            ResponseError::ClusterAuthorizationFailed,
            ResponseError::InvalidRecord,
            ResponseError::UnsupportedForMessageFormat,
        ] {
            assert_eq!(failure(code), Failure::Fatal, "{code:?}");
        }
        let lost = kafka::Error::ConnectionLost {
            broker: "b:9092".into(),
            source: None,
        };
        assert!(matches!(Failure::of(&lost), Failure::Retry { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_holds_the_next_send_once_for_the_longest_time_asked() {
        let now = Instant::now();
        let mut t = Throttle::default();
        t.note(0, now);
        assert_eq!(t.take(), None);
        t.note(300, now);
        t.note(100, now);
        assert_eq!(t.take(), Some(now + Duration::from_millis(300)));
        assert_eq!(t.take(), None);
    }
}
