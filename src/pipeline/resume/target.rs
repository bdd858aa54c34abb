//! Reading the target beyond a position, to attribute what it holds ([`TargetTail`]): the IO
//! half of a reconcile, around the pure [`TailScan`].

use tokio_util::sync::CancellationToken;

use super::{is_behind, Anchor, Foreign, Position, TailBatch, TailError, TailPlan, TailScan, MAX_TAIL_RUNS};
use crate::config::OnForeignWriter;
use crate::kafka::{OffsetSpec, ProducerIdentity, ResponseError, TopicPartition, Wait};
use crate::pipeline::error::{Error, ForeignBatches, Result};
use crate::pipeline::retry::{kafka_err, list_offset, retry};
use crate::pipeline::wire::Fetch;

/// First fetch size when reading the target beyond the checkpoint; the tail is read page by
/// page, holding one answer at a time.
const TAIL_FETCH_BYTES: i32 = 1 << 20;
/// Largest fetch size tried when one target batch does not fit.
const TAIL_FETCH_MAX_BYTES: i32 = 64 << 20;
/// How long a tail fetch may wait: the records are there, so the broker answers at once.
const TAIL_FETCH_WAIT_MS: i32 = 100;
/// Consecutive empty answers below the listed end before reading the tail is given up.
const TAIL_IDLE_FETCHES: u32 = 20;

/// What reads a target's tail: one range's [`TailScan`], or a catch-up's two
/// ([`crate::pipeline::catchup::Reconcile`]), fed batch headers in offset order.
pub(crate) trait Scanner {
    fn done(&self) -> bool;
    fn next_offset(&self) -> i64;
    fn push(&mut self, batch: TailBatch);
    /// The log starts at `log_start`: returns the offsets deleted unread.
    fn deleted_until(&mut self, log_start: i64) -> i64;
    fn ends_at(&mut self, offset: i64);
}

impl Scanner for TailScan {
    fn done(&self) -> bool {
        TailScan::done(self)
    }
    fn next_offset(&self) -> i64 {
        TailScan::next_offset(self)
    }
    fn push(&mut self, batch: TailBatch) {
        TailScan::push(self, batch);
    }
    fn deleted_until(&mut self, log_start: i64) -> i64 {
        TailScan::deleted_until(self, log_start)
    }
    fn ends_at(&mut self, offset: i64) {
        TailScan::ends_at(self, offset);
    }
}

/// What a reconcile found beyond a position.
#[derive(Debug)]
pub(crate) enum Reconciled {
    /// The target ends before the position, at this offset.
    Behind(i64),
    /// What the target holds beyond it, attributed.
    Tail(TailPlan),
}

/// A target partition, read to attribute what it holds beyond a position.
#[derive(Debug)]
pub(crate) struct TargetTail<'a, T> {
    pub(crate) target: &'a T,
    /// The target partition.
    pub(crate) tp: &'a TopicPartition,
    /// The source partition it replicates, for logs.
    pub(crate) source_tp: &'a TopicPartition,
    pub(crate) cancel: &'a CancellationToken,
    pub(crate) on_foreign: OnForeignWriter,
}

impl<T: Fetch> TargetTail<'_, T> {
    /// Reads what the target holds beyond `at` and attributes it by producer identity: `known`
    /// are strait's (`None`: the checkpoint does not record them), `anchors` their sequences
    /// at `at` where known. `None` when cancelled first.
    pub(crate) async fn reconcile(
        &self,
        at: Position,
        known: Option<&[ProducerIdentity]>,
        anchors: &[Anchor],
    ) -> Result<Option<Reconciled>> {
        let Some(end) = self.end(at.target).await? else {
            return Ok(None);
        };
        if is_behind(at, end) {
            return Ok(Some(Reconciled::Behind(end)));
        }
        let mut scan = TailScan::new(at.target, end, known, self.on_foreign).anchored(anchors);
        if !self.read_tail(&mut scan, end).await? {
            return Ok(None);
        }
        let tail = match scan.finish() {
            Ok(tail) => tail,
            Err(TailError::Foreign(f)) => return Err(self.foreign_writer(f)),
            Err(TailError::TooManyRuns { at: stopped }) => {
                return Err(Error::TailTooFragmented {
                    topic: self.tp.topic.clone(),
                    partition: self.tp.partition,
                    from: at.target,
                    at: stopped,
                    max_runs: MAX_TAIL_RUNS,
                })
            }
        };
        if tail.foreign > 0 {
            let unattributed = known.is_none();
            tracing::warn!(topic = %self.source_tp.topic, partition = self.source_tp.partition, target = %self.tp,
                from = at.target, end, foreign_records = tail.foreign, strait_records = tail.own, unattributed,
                "the target partition holds records strait did not write: left in place (on_foreign_writer = skip), \
                 every source record is still replicated");
        }
        Ok(Some(Reconciled::Tail(tail)))
    }

    /// Feeds `scan` the batch headers of the target partition from its position to its end,
    /// one bounded fetch at a time. `false` when cancelled first.
    pub(crate) async fn read_tail(&self, scan: &mut impl Scanner, end: i64) -> Result<bool> {
        let mut max_bytes = TAIL_FETCH_BYTES;
        let mut idle = 0;
        while !scan.done() {
            let offset = scan.next_offset();
            let fetched = retry(self.cancel, self.target, self.tp, "read target tail", || {
                self.target
                    .fetch(self.tp, None, offset, max_bytes, Wait::Poll(TAIL_FETCH_WAIT_MS))
            })
            .await;
            let fetched = match fetched {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(false),
                Err(e) if e.code() == Some(ResponseError::OffsetOutOfRange) => {
                    if !self.out_of_range(scan, offset, end).await? {
                        return Ok(false);
                    }
                    continue;
                }
                Err(e) => return Err(kafka_err("target", "read target tail", self.tp, offset, e)),
            };
            if fetched.log_start_offset > offset {
                self.deleted_unread(scan, fetched.log_start_offset, end);
                if scan.done() {
                    continue;
                }
            }
            let had_bytes = !fetched.records.is_empty();
            let visible_end = fetched.visible_end();
            let (consumed, truncated) = self.scan_answer(scan, fetched.records)?;
            if scan.done() || scan.next_offset() > offset {
                idle = 0;
            } else if had_bytes && consumed == 0 && truncated > 0 {
                // One batch larger than the fetch: ask for more, up to a hard limit.
                if max_bytes >= TAIL_FETCH_MAX_BYTES {
                    return Err(self.tail_unreadable(offset, end, "a batch larger than 64 MiB"));
                }
                max_bytes = max_bytes.saturating_mul(2).min(TAIL_FETCH_MAX_BYTES);
            } else if visible_end <= offset {
                // The log ends here after all (truncated since its end was listed).
                scan.ends_at(offset);
            } else {
                idle += 1;
                if idle >= TAIL_IDLE_FETCHES {
                    return Err(self.tail_unreadable(offset, end, "the target answers no records below its end"));
                }
            }
        }
        Ok(true)
    }

    /// Feeds `scan` the headers of the whole batches of one answer; returns the bytes taken
    /// and those of a truncated last batch.
    fn scan_answer(&self, scan: &mut impl Scanner, records: bytes::Bytes) -> Result<(usize, usize)> {
        let mut batches = crate::batch::batches(records);
        for batch in batches.by_ref() {
            let batch = batch.map_err(|source| Error::TargetBatch {
                topic: self.tp.topic.clone(),
                partition: self.tp.partition,
                offset: scan.next_offset(),
                source,
            })?;
            scan.push(TailBatch::of(&batch.header));
            if scan.done() {
                break;
            }
        }
        Ok((batches.consumed(), batches.truncated_tail()))
    }

    /// The tail's next offset is outside the target's log: below its start (deleted before it
    /// was read) or past its end (truncated since the end was listed). `false` when cancelled.
    async fn out_of_range(&self, scan: &mut impl Scanner, offset: i64, end: i64) -> Result<bool> {
        let start = list_offset(
            self.cancel,
            self.target,
            "target",
            self.tp,
            OffsetSpec::Earliest,
            offset,
        )
        .await?;
        let Some(start) = start else { return Ok(false) };
        if start > offset {
            self.deleted_unread(scan, start, end);
        } else {
            scan.ends_at(offset);
        }
        Ok(true)
    }

    /// The target's log starts at `start`, after the scan's position: what lay between was
    /// deleted before it could be attributed.
    fn deleted_unread(&self, scan: &mut impl Scanner, start: i64, end: i64) {
        let from = scan.next_offset();
        let deleted = scan.deleted_until(start);
        if deleted > 0 {
            tracing::warn!(topic = %self.source_tp.topic, partition = self.source_tp.partition, target = %self.tp,
                from, to = from + deleted - 1, end, "target records beyond the checkpoint were deleted (retention or \
                DeleteRecords) before strait could tell who wrote them: the source records they may hold are written \
                again (duplicates, never a loss)");
        }
    }

    fn tail_unreadable(&self, offset: i64, end: i64, reason: &'static str) -> Error {
        Error::TailUnreadable {
            topic: self.tp.topic.clone(),
            partition: self.tp.partition,
            offset,
            end,
            reason,
        }
    }

    pub(crate) fn foreign_writer(&self, f: Foreign) -> Error {
        let batches = ForeignBatches {
            topic: self.tp.topic.clone(),
            partition: self.tp.partition,
            first: f.first,
            last: f.last,
            producer_id: f.producer.id,
            producer_epoch: f.producer.epoch,
            records: f.records,
        };
        if f.unattributed {
            Error::UnattributedTail(batches)
        } else {
            Error::ForeignWriter(batches)
        }
    }

    /// The target partition's log end. `None` when cancelled first.
    pub(crate) async fn end(&self, offset: i64) -> Result<Option<i64>> {
        list_offset(self.cancel, self.target, "target", self.tp, OffsetSpec::Latest, offset).await
    }
}
