//! How long until the lag is replicated: the drain ETA on `/status` and in the progress line.
//!
//! While a backlog drains the source keeps growing, so the lag shrinks at the net drain rate:
//! the rate strait moves the partition's next source offset (records replicated, and any gap
//! retention made it skip) minus the rate the source's high watermark grows. Dividing the lag
//! by the replication rate alone promises the end too early by the share of the budget new
//! records take. Both rates are read over [`DRAIN_WINDOW`], which smooths the per-second
//! samples, and lets the jump of a high watermark last seen before an outage (the first fetch
//! after the link returns) leave the window within half a minute. That is a partition's ETA.
//!
//! The ETA of all partitions together also follows the cost of a record on the wire, which is
//! not constant when the link is the bottleneck: a partition's records go in batches of what
//! was fetched for it, and as its lag shrinks its batches do too, so each record carries more
//! of a batch's fixed cost (headers, and a first record compressed without its neighbours as
//! context). With thousands of partitions a few records of lag each, the records per second the
//! same link carries fall by half or more before the drain ends. [`drain_model`] simulates the
//! rest of the drain in rounds, each partition sending one batch a round as the link's bytes
//! allow, with a per-batch and a per-record cost fitted to what was sent over the window
//! ([`BatchCost::fit`]); the drain ends when what is left would go in a second of the link, or
//! when the lag stops shrinking at the live rate (the live traffic's own steady state).
//!
//! While a backlog drains, the window holds full batches only (10-24 records each after a cut
//! of 5,000 partitions), and a line through them alone says little about a batch of one or two
//! records, which the drain's end sends: it put one at ~750 bytes where it cost ~565, and the
//! ETA 19% late. So the meter keeps what batches of about one record cost when it last saw
//! enough of them ([`SmallBatch`]: partitions caught up on live traffic send them, as before an
//! outage). Between that point and the window's full batches the cost is not a line: zstd
//! compresses a batch's first records worst, so batches of 2-10 span records cost up to a fifth
//! more than the line through both ends says, and a drain's end sends such batches (a line put
//! the ETA 9-12% early after a cut of 5,000 partitions). The model prices batches with a power
//! of their records through both measured points ([`PowerCost`]), measured within a twentieth
//! of what spans cost at every size; a line ([`BatchCost::fit_anchored`], or the window's fit
//! when no small batch was seen) where the two points cannot give one.
//!
//! The full batch is what most partitions still lagging send over the window. At a drain's end
//! most partitions' lag runs out and the window's batches shrink with it, while the few still
//! far behind go on sending full ones; so the model takes the largest full batch of the last
//! minute's windows ([`BatchesSeen::full_records`]) when the window's is smaller.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::kafka::TopicPartition;

mod cost;
#[cfg(test)]
mod tests;

use cost::{drain_model, full_batch, BatchCost, Cost, Draining, PowerCost, Price};

/// The window the net drain rate is averaged over.
pub const DRAIN_WINDOW: Duration = Duration::from_secs(30);

/// Seconds until a lag of `lag_records` is replicated at a net drain rate of `net_per_sec`
/// records per second (replication minus the source's growth); `None` when the lag does not
/// shrink (an ETA would be infinite or meaningless).
pub fn drain_eta_secs(lag_records: i64, net_per_sec: f64) -> Option<f64> {
    match (lag_records, net_per_sec) {
        (0, _) => Some(0.0),
        (l, r) if l > 0 && r > 0.0 => Some(l as f64 / r),
        _ => None,
    }
}

/// One partition's drain over the window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DrainRate {
    /// Next source offset's advance per second: records replicated, and gaps skipped.
    pub replicated_per_sec: f64,
    /// The source's high watermark's advance per second.
    pub growth_per_sec: f64,
    /// Records the target acknowledged per second.
    pub records_per_sec: f64,
    /// Wire bytes of the batches acknowledged, per second.
    pub wire_bytes_per_sec: f64,
    /// Batches acknowledged per second.
    pub batches_per_sec: f64,
}

impl DrainRate {
    /// Records per second the lag shrinks by (negative while it grows).
    pub fn net_per_sec(&self) -> f64 {
        self.replicated_per_sec - self.growth_per_sec
    }
}

/// A partition's positions and counters at one sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Mark {
    /// Next source offset to replicate.
    pub(crate) next: i64,
    /// The source's high watermark.
    pub(crate) high_watermark: i64,
    /// Records acknowledged since the start.
    pub(crate) records: u64,
    /// Wire bytes acknowledged since the start.
    pub(crate) wire_bytes: u64,
    /// Batches acknowledged since the start.
    pub(crate) batches: u64,
}

type Positions = BTreeMap<TopicPartition, Mark>;

/// Samples over a sliding window: the newest, and one at least `window` old as the base.
#[derive(Debug)]
pub(crate) struct Window<T> {
    window: Duration,
    samples: VecDeque<(Instant, T)>,
}

impl<T> Window<T> {
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            window,
            samples: VecDeque::new(),
        }
    }

    /// Adds a sample, keeping one sample at least `window` old as the base.
    pub(crate) fn sample(&mut self, now: Instant, value: T) {
        self.samples.push_back((now, value));
        while self.samples.len() > 2 && self.samples[1].0 + self.window <= now {
            self.samples.pop_front();
        }
    }

    /// Seconds between the oldest and the newest sample, and both; `None` before two samples
    /// apart in time.
    pub(crate) fn ends(&self) -> Option<(f64, &T, &T)> {
        let ((t0, old), (t1, new)) = (self.samples.front()?, self.samples.back()?);
        let secs = t1.saturating_duration_since(*t0).as_secs_f64();
        (secs > 0.0).then_some((secs, old, new))
    }

    /// The newest sample.
    pub(crate) fn latest(&self) -> Option<&T> {
        self.samples.back().map(|(_, v)| v)
    }
}

/// Per-partition drain rates from samples of the positions over a sliding window, and what
/// the smallest and the full batches were as last seen.
#[derive(Debug)]
pub(crate) struct DrainMeter {
    window: Window<Positions>,
    /// The small batches' cost, as last measured.
    small: Option<SmallBatch>,
    /// Each window's full batch, by when the window ended, over the last [`FULL_BATCH_KEPT`].
    fulls: VecDeque<(Instant, f64)>,
}

/// How long a window's full batch counts for [`BatchesSeen::full_records`]: longer than a
/// drain's last stretch, where the window's batches shrink.
const FULL_BATCH_KEPT: Duration = Duration::from_secs(60);

/// What the meter learnt of batches beyond its window, for the drain model.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BatchesSeen {
    /// The cost of a batch of about one record, as last measured.
    pub small: Option<SmallBatch>,
    /// Records a partition's batch holds while its lag lasts: the largest full batch (see
    /// `full_batch`) of the windows that ended in the last minute. At a drain's end
    /// most partitions' lag runs out and the window's batches shrink, but the few partitions
    /// still far behind send full batches: priced at the window's shrunk batch, their lag took
    /// rounds it does not, and the ETA read 10-20 s before the end of a cut's drain went from
    /// 20 s to 39-62 s.
    pub full_records: Option<f64>,
}

/// What a batch of about one record cost on the wire, as last measured: the partitions that sent
/// such batches over a window (partitions caught up on live traffic do), at least
/// [`SMALL_BATCHES_SEEN`] batches in all. It anchors the small end of [`BatchCost`] when the
/// window holds only full batches, as while a backlog drains, where a fit of batches of 10-24
/// records alone put a one-record batch at ~750 bytes against the ~565 it cost.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SmallBatch {
    /// Records a batch held, on average (1 to [`SMALL_BATCH_RECORDS`]).
    pub records: f64,
    /// Wire bytes a batch cost, on average.
    pub wire_bytes: f64,
}

/// A partition's batches count as small when they held this many records or fewer on average.
const SMALL_BATCH_RECORDS: f64 = 1.5;
/// Small batches a window must have seen for their cost to count.
const SMALL_BATCHES_SEEN: f64 = 20.0;

impl DrainMeter {
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            window: Window::new(window),
            small: None,
            fulls: VecDeque::new(),
        }
    }

    /// Adds a sample of every partition's positions, and takes the small batches' cost from the
    /// window when it saw enough of them.
    pub(crate) fn sample(&mut self, now: Instant, positions: Positions) {
        self.window.sample(now, positions);
        let Some((secs, old, new)) = self.window.ends() else {
            return;
        };
        // A window shorter than half its length has seen too little to replace what is known.
        if secs * 2.0 < self.window.window.as_secs_f64() {
            return;
        }
        let (mut batches, mut records, mut wire) = (0u64, 0u64, 0u64);
        let mut means = Vec::new();
        for (tp, n) in new {
            let Some(o) = old.get(tp) else { continue };
            let b = n.batches.saturating_sub(o.batches);
            let r = n.records.saturating_sub(o.records);
            if b == 0 {
                continue;
            }
            let mean = r as f64 / b as f64;
            means.push(mean);
            if mean <= SMALL_BATCH_RECORDS {
                batches += b;
                records += r;
                wire += n.wire_bytes.saturating_sub(o.wire_bytes);
            }
        }
        if batches as f64 >= SMALL_BATCHES_SEEN && records >= batches {
            self.small = Some(SmallBatch {
                records: records as f64 / batches as f64,
                wire_bytes: wire as f64 / batches as f64,
            });
        }
        if let Some(full) = cost::percentile_90(means) {
            self.fulls.push_back((now, full));
        }
        while self.fulls.front().is_some_and(|(t, _)| *t + FULL_BATCH_KEPT <= now) {
            self.fulls.pop_front();
        }
    }

    /// What the small and the full batches were, as last measured.
    pub(crate) fn batches_seen(&self) -> BatchesSeen {
        BatchesSeen {
            small: self.small,
            full_records: self.fulls.iter().map(|(_, f)| *f).reduce(f64::max),
        }
    }

    /// The rates between the oldest and the newest sample, for the partitions in both (a
    /// partition new in the window has no rate yet: its whole high watermark is not growth).
    pub(crate) fn rates(&self) -> BTreeMap<TopicPartition, DrainRate> {
        let Some((secs, old, new)) = self.window.ends() else {
            return BTreeMap::new();
        };
        new.iter()
            .filter_map(|(tp, n)| {
                let o = old.get(tp)?;
                let per_sec = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
                Some((
                    tp.clone(),
                    DrainRate {
                        replicated_per_sec: (n.next - o.next).max(0) as f64 / secs,
                        growth_per_sec: (n.high_watermark - o.high_watermark).max(0) as f64 / secs,
                        records_per_sec: per_sec(n.records, o.records),
                        wire_bytes_per_sec: per_sec(n.wire_bytes, o.wire_bytes),
                        batches_per_sec: per_sec(n.batches, o.batches),
                    },
                ))
            })
            .collect()
    }
}

/// The ETA of all partitions together, from each partition's lag and its rates over the
/// window: the [`drain_model`] when the window saw batches acknowledged (its batch cost
/// anchored on the small batches' cost as last measured, when known, and its full batch not
/// below the one last measured), else the summed lag over the summed net drain rate.
pub fn total_drain_eta_secs(
    lags: &BTreeMap<TopicPartition, i64>,
    rates: &BTreeMap<TopicPartition, DrainRate>,
    seen: BatchesSeen,
) -> Option<f64> {
    let lag: i64 = lags.values().sum();
    if lag == 0 {
        return Some(0.0);
    }
    let linear = drain_eta_secs(lag, rates.values().map(DrainRate::net_per_sec).sum());
    let wire_per_sec: f64 = rates.values().map(|r| r.wire_bytes_per_sec).sum();
    let (Some(free), Some(batch)) = (BatchCost::fit(rates.values()), full_batch(rates.values())) else {
        return linear;
    };
    if wire_per_sec <= 0.0 {
        return linear;
    }
    let batch = batch.max(seen.full_records.unwrap_or(0.0));
    let cost = match seen.small {
        // The window tells what its full batches cost, the small batches' cost as last
        // measured the other end.
        Some(small) => PowerCost::through(small, batch, free.batch(batch)).map_or_else(
            || Cost::Line(BatchCost::fit_anchored(rates.values(), small).unwrap_or(free)),
            Cost::Power,
        ),
        None => Cost::Line(free),
    };
    let mut partitions: Vec<Draining> = lags
        .iter()
        .map(|(tp, &lag)| Draining {
            lag: lag as f64,
            growth_per_sec: rates.get(tp).map_or(0.0, |r| r.growth_per_sec),
            batch,
        })
        .collect();
    let modelled = drain_model(&mut partitions, &cost, wire_per_sec);
    tracing::debug!(
        lag,
        partitions = lags.len(),
        lagging = lags.values().filter(|&&l| l > 0).count(),
        one_record_bytes = cost.batch(1.0).round(),
        full_batch_bytes = cost.batch(batch).round(),
        cost = ?cost,
        small_batch_bytes = seen.small.map(|s| s.wire_bytes.round()),
        wire_bytes_per_sec = wire_per_sec.round(),
        full_batch_records = batch,
        growth_per_sec = rates.values().map(|r| r.growth_per_sec).sum::<f64>().round(),
        modelled_secs = modelled.map(f64::round),
        linear_secs = linear.map(f64::round),
        "drain model"
    );
    modelled
}
