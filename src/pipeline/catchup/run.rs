//! The partition task in a fresh-first catch-up: when it enters, how it claims an identity per
//! range, runs both ranges through one sink, reconciles both after a stop, and hands back one
//! range once they merge.

use tokio::sync::mpsc;

use super::{Range, Ranges, Reconcile, Reconciled, Side};
use crate::kafka::{Backoff, OffsetSpec, ProducerIdentity};
use crate::pipeline::checkpoints::FreshAcked;
use crate::pipeline::error::{Error, Result};
use crate::pipeline::resume::{is_behind, Position, TailError, TailPlan, MAX_TAIL_RUNS};
use crate::pipeline::retry::{kafka_err, list_offset, retry};
use crate::pipeline::sink::{Backlog, Stop};
use crate::pipeline::task::{keeps_identity, PartitionTask, CHUNK_QUEUE};
use crate::pipeline::wire::{Claims, Fetch, Produce};
use crate::pipeline::writers::Writers;

/// Each range's identity, with its sequence at the range's position.
#[derive(Clone, Copy, Debug)]
struct Identities {
    backlog: (ProducerIdentity, i32),
    fresh: (ProducerIdentity, i32),
}

impl<S: Fetch, T: Fetch + Produce, C: Claims> PartitionTask<S, T, C> {
    /// Where the partition at `at` splits into a fresh-first catch-up now, if it does: with
    /// `catchup.mode = "fresh_first"`, when its record at `at` is older than
    /// `catchup.fresh_after_secs` (the source's first offset at that age lies past it, or no
    /// record is that new) and the source holds records past it. The split is the source's last
    /// stable offset. `None` also when cancelled first.
    pub(in crate::pipeline) async fn entry(&self, at: Position) -> Result<Option<i64>> {
        let Some(fresh_after) = self.settings.fresh_after else {
            return Ok(None);
        };
        let since = crate::checkpoint::now_ms() - i64::try_from(fresh_after.as_millis()).unwrap_or(i64::MAX);
        let (cancel, source, tp) = (&self.cancel, &*self.source, &self.source_tp);
        let asked = async {
            // A compacted topic keeps the last value written for a key: a backlog value written
            // after a fresh one would win. Oldest first for it.
            if source
                .compacted(&tp.topic)
                .await
                .map_err(|e| kafka_err("source", "describe configs", tp, at.source, e))?
            {
                tracing::info!(topic = %tp.topic, partition = tp.partition, source_offset = at.source,
                    "the topic is compacted (cleanup.policy): no fresh-first catch-up, oldest first");
                return Ok(None);
            }
            let spec = OffsetSpec::Timestamp(since);
            let Some(first_new) = list_offset(cancel, source, "source", tp, spec, at.source).await? else {
                return Ok(None);
            };
            if (0..=at.source).contains(&first_new) {
                return Ok(None);
            }
            let end = list_offset(cancel, source, "source", tp, OffsetSpec::Latest, at.source).await?;
            Ok::<_, Error>(end.filter(|end| *end > at.source))
        };
        match asked.await {
            Ok(split) => Ok(split),
            // The partition goes on oldest first rather than halt.
            Err(e) => {
                tracing::warn!(topic = %tp.topic, partition = tp.partition, source_offset = at.source,
                    error = %crate::error_chain(&e), "cannot tell the age of the backlog: oldest first this time");
                Ok(None)
            }
        }
    }

    /// Enters a fresh-first catch-up at `split` from one range at `at` with `writers` and what
    /// the target holds beyond it (`tail`: the backlog absorbs it, the fresh range writes after
    /// it), and runs it until the ranges merge. Returns the merged range's position and writers;
    /// `None` when cancelled first.
    pub(in crate::pipeline) async fn enter(
        &self,
        at: Position,
        tail: &TailPlan,
        writers: &Writers,
        split: i64,
        carried: Option<ProducerIdentity>,
    ) -> Result<Option<(Position, Writers)>> {
        let mut ranges = Ranges::one_with_tail(at, writers.clone(), tail.clone());
        let Some(fresh) = self.new_identity(at.target).await? else {
            return Ok(None);
        };
        ranges.enter(split, fresh).map_err(|e| self.catch_up_error(at, e))?;
        tracing::info!(topic = %self.source_tp.topic, partition = self.source_tp.partition, source_offset = at.source,
            target_offset = at.target, split, backlog_records = split - at.source,
            "fresh-first catch-up: new records first, the backlog behind them");
        // The fresh identity's sequence at the split is 0; the backlog's carried one goes on.
        self.catch_up(ranges, [carried, Some(fresh)], Some(at)).await
    }

    /// Resumes a catch-up a checkpoint records: reconciles both ranges with the target, then
    /// runs it until they merge. Returns the merged range's position and writers; `None` when
    /// cancelled first.
    pub(in crate::pipeline) async fn resume_catch_up(&self, ranges: Ranges) -> Result<Option<(Position, Writers)>> {
        let Some(reconciled) = self.reconcile_ranges(ranges).await? else {
            return Ok(None);
        };
        if let Some(merged) = merged(&reconciled.ranges) {
            return Ok(Some(merged));
        }
        self.catch_up(reconciled.ranges, [None, None], None).await
    }

    /// Runs both ranges until they merge, reconciling after every stop.
    async fn catch_up(
        &self,
        mut ranges: Ranges,
        mut carried: [Option<ProducerIdentity>; 2],
        mut mark: Option<Position>,
    ) -> Result<Option<(Position, Writers)>> {
        // Entering: the fresh identity is new, its claim must be written before it sends.
        let mut must_claim = mark.is_some();
        let tp = &self.source_tp;
        let mut backoff = Backoff::default();
        // Keyed on both ranges' positions: either moving restarts the patience.
        let mut out_of_order: Option<((i64, i64), tokio::time::Instant)> = None;
        loop {
            if let Some(at) = mark.take() {
                // From here on the target holds records out of order; marked in the offset map
                // before the claim, so the claim's checkpoint write stores the mark with it.
                self.feed.mark_out_of_order(at.source, at.target);
            }
            let Some(ids) = self.claim_ranges(&mut ranges, carried, must_claim).await? else {
                return Ok(None);
            };
            must_claim = false;
            self.show(&ranges, ids);
            let (fresh_at, why, fresh_sequence, keep, backlog) = match self.run_ranges(&ranges, ids).await {
                Ok(()) => return Ok(None),
                Err(Stop::Halt(e)) => return Err(e),
                Err(Stop::Resync {
                    at,
                    why,
                    sequence,
                    keep,
                    backlog,
                }) => (at, why, sequence, keep, backlog),
            };
            let started = ranges.lowest();
            let fresh_started = ranges.range(Side::Fresh).map(Range::at);
            let (backlog_at, backlog_sequence) = backlog.unwrap_or((ranges.lowest(), ids.backlog.1));
            ranges
                .stopped(Side::Backlog, backlog_at, ids.backlog.0, backlog_sequence)
                .and_then(|()| ranges.stopped(Side::Fresh, fresh_at, ids.fresh.0, fresh_sequence))
                .map_err(|e| self.catch_up_error(backlog_at, e))?;
            tracing::info!(topic = %tp.topic, partition = tp.partition, backlog_source_offset = backlog_at.source,
                fresh_source_offset = fresh_at.source, target_offset = fresh_at.target.max(backlog_at.target),
                reason = %why, "fresh-first catch-up: reconciling both ranges with the target");
            if backlog_at != started || Some(fresh_at) != fresh_started {
                backoff.reset();
            }
            let go_on = keeps_identity(keep, (backlog_at.source, fresh_at.source), &mut out_of_order);
            carried = if go_on {
                [Some(ids.backlog.0), Some(ids.fresh.0)]
            } else {
                [None, None]
            };
            // A drained backlog is no failure: the ranges merge at once.
            if why_is_failure(&why) {
                self.pause(backoff.next_delay()).await;
            }
            let Some(reconciled) = self.reconcile_ranges(ranges).await? else {
                return Ok(None);
            };
            if let Some(merged) = merged(&reconciled.ranges) {
                return Ok(Some(merged));
            }
            ranges = reconciled.ranges;
        }
    }

    /// Reads the target's tail from the lower of the ranges' target offsets and attributes it
    /// to them ([`Reconcile`]). `None` when cancelled first.
    async fn reconcile_ranges(&self, ranges: Ranges) -> Result<Option<Reconciled>> {
        let lowest = [Side::Backlog, Side::Fresh]
            .iter()
            .filter_map(|side| ranges.range(*side).map(|r| r.at()))
            .min_by_key(|at| at.target)
            .unwrap_or(ranges.lowest());
        let highest = [Side::Backlog, Side::Fresh]
            .iter()
            .filter_map(|side| ranges.range(*side).map(|r| r.at()))
            .max_by_key(|at| at.target)
            .unwrap_or(lowest);
        let tail = self.target_tail();
        let Some(end) = tail.end(lowest.target).await? else {
            return Ok(None);
        };
        if is_behind(highest, end) {
            return Err(self.target_behind(highest, end));
        }
        let known: Vec<ProducerIdentity> = [Side::Backlog, Side::Fresh]
            .iter()
            .filter_map(|side| ranges.range(*side).and_then(Range::writers))
            .flat_map(Writers::identities)
            .collect();
        let mut scan = Reconcile::new(ranges, end, self.settings.on_foreign_writer);
        if !tail.read_tail(&mut scan, end).await? {
            return Ok(None);
        }
        let tp = &self.source_tp;
        let reconciled = match scan.finish() {
            Ok(r) => r,
            Err(TailError::Foreign(f)) => {
                let records = f.records;
                let e = tail.foreign_writer(f);
                self.fenced(records, &known).await?;
                return Err(e);
            }
            Err(TailError::TooManyRuns { at }) => {
                return Err(Error::TailTooFragmented {
                    topic: self.target_tp.topic.clone(),
                    partition: self.target_tp.partition,
                    from: lowest.target,
                    at,
                    max_runs: MAX_TAIL_RUNS,
                })
            }
        };
        if reconciled.duplicates > 0 {
            metrics::counter!(
                crate::telemetry::TARGET_DUPLICATE_RECORDS,
                &crate::telemetry::labels(&tp.topic, tp.partition)
            )
            .increment(reconciled.duplicates as u64);
        }
        if reconciled.foreign > 0 {
            self.fenced(reconciled.foreign, &known).await?;
            tracing::warn!(topic = %self.source_tp.topic, partition = self.source_tp.partition, target = %self.target_tp,
                from = lowest.target, end, foreign_records = reconciled.foreign,
                "the target partition holds records strait did not write: left in place (on_foreign_writer = skip), \
                 every source record is still replicated");
        }
        Ok(Some(reconciled))
    }

    /// Each range's identity: the carried one while the range knows its sequence, else a new
    /// one, claimed in a checkpoint (of both ranges) before anything is sent. `None` when
    /// cancelled first.
    async fn claim_ranges(
        &self,
        ranges: &mut Ranges,
        carried: [Option<ProducerIdentity>; 2],
        must_claim: bool,
    ) -> Result<Option<Identities>> {
        let mut claimed = must_claim;
        let mut pick = [None, None];
        for (i, side) in [Side::Backlog, Side::Fresh].into_iter().enumerate() {
            let known = carried[i].and_then(|p| {
                ranges
                    .range(side)
                    .and_then(Range::writers)
                    .and_then(|w| w.sequence(p))
                    .map(|s| (p, s))
            });
            pick[i] = match known {
                Some(k) => Some(k),
                None => {
                    let target = ranges.lowest().target;
                    let Some(p) = self.new_identity(target).await? else {
                        return Ok(None);
                    };
                    let sequence = ranges
                        .claim(side, p)
                        .map_err(|e| self.catch_up_error(ranges.lowest(), e))?;
                    claimed = true;
                    Some((p, sequence))
                }
            };
        }
        let (Some(backlog), Some(fresh)) = (pick[0], pick[1]) else {
            return Ok(None);
        };
        let Ranges::Two {
            backlog: b,
            split,
            fresh: f,
        } = &*ranges
        else {
            return Ok(None);
        };
        let backlog_writers = b.writers().cloned().unwrap_or_default();
        let fresh_part = FreshAcked {
            split: *split,
            at: f.at(),
            writers: f.writers().cloned().unwrap_or_default(),
            moved: 0,
        };
        if claimed {
            if !self
                .feed
                .claim_ranges(b.at(), &backlog_writers, Some(fresh_part), &self.cancel)
                .await
            {
                return Ok(None);
            }
        } else {
            self.feed.publish_ranges(b.at(), &backlog_writers, Some(fresh_part));
        }
        Ok(Some(Identities { backlog, fresh }))
    }

    /// A new idempotent producer identity. `None` when cancelled first.
    async fn new_identity(&self, target_offset: i64) -> Result<Option<ProducerIdentity>> {
        let produce_timeout_ms = self.settings.produce_timeout_ms;
        retry(&self.cancel, &*self.target, &self.target_tp, "init producer id", || {
            self.target.init_producer_id(produce_timeout_ms)
        })
        .await
        .map_err(|e| kafka_err("target", "init producer id", &self.target_tp, target_offset, e))
    }

    /// Logs and shows in the report that both ranges start (again).
    fn show(&self, ranges: &Ranges, ids: Identities) {
        let (Some(b), Some(f)) = (ranges.range(Side::Backlog), ranges.range(Side::Fresh)) else {
            return;
        };
        let split = ranges.split();
        let tp = &self.source_tp;
        tracing::info!(topic = %tp.topic, partition = tp.partition, split, backlog_source_offset = b.at().source,
            backlog_target_offset = b.at().target, backlog_already_written = b.tail_left(),
            backlog_producer_id = ids.backlog.0.id, fresh_source_offset = f.at().source,
            fresh_target_offset = f.at().target, fresh_already_written = f.tail_left(), fresh_producer_id = ids.fresh.0.id,
            target = %self.target_tp, "fresh-first catch-up: replicating both ranges");
        self.progress.update(&self.source_tp, |s| {
            s.state = crate::report::PartitionState::Running;
            s.next_source_offset = b.at().source;
            s.next_target_offset = b.at().target;
            s.catchup_split = split;
            s.fresh_next_offset = Some(f.at().source);
        });
    }

    /// Runs both ranges' fetch stages and the sink from `ranges` until shutdown or a stop.
    async fn run_ranges(&self, ranges: &Ranges, ids: Identities) -> Result<(), Stop> {
        let Ranges::Two { backlog, split, fresh } = ranges else {
            return Ok(());
        };
        let (tx, mut rx) = mpsc::channel(CHUNK_QUEUE);
        let (backlog_tx, backlog_rx) = mpsc::channel(CHUNK_QUEUE);
        let fetch_cancel = self.cancel.child_token();
        let fresh_fetcher = self.fetcher(&fetch_cancel, fresh.at().source, tx);
        let backlog_fetcher = self
            .fetcher(&fetch_cancel, backlog.at().source, backlog_tx)
            .until(*split);
        let lane = |range: &Range, side: Side, identity| {
            let mut lane = self.lane(range.at(), range.tail().clone(), identity);
            lane.acker = lane.acker.of_range(side);
            lane
        };
        let backlog = Backlog {
            lane: lane(backlog, Side::Backlog, ids.backlog),
            rx: backlog_rx,
            split: *split,
            open: true,
            rest: None,
        };
        let mut sink = self.sink(lane(fresh, Side::Fresh, ids.fresh), Some(Box::new(backlog)));
        let write = async {
            let written = sink.run(&mut rx).await;
            fetch_cancel.cancel();
            written
        };
        let (_, _, written) = tokio::join!(fresh_fetcher.run(), backlog_fetcher.run(), write);
        written
    }

    fn catch_up_error(&self, at: Position, e: super::CatchUpError) -> Error {
        Error::CatchUp {
            topic: self.source_tp.topic.clone(),
            partition: self.source_tp.partition,
            offset: at.source,
            source: e,
        }
    }
}

/// The one range the ranges merged into, with its writers.
fn merged(ranges: &Ranges) -> Option<(Position, Writers)> {
    match ranges {
        Ranges::One(r) => Some((r.at(), r.writers().cloned().unwrap_or_default())),
        Ranges::Two { .. } => None,
    }
}

/// Whether a stop's reason is a failure worth a pause before reconciling (not the backlog's
/// planned end).
fn why_is_failure(why: &str) -> bool {
    why != crate::pipeline::sink::DRAINED
}
