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
//! outage), and the fit goes through that point ([`BatchCost::fit_anchored`]).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::kafka::TopicPartition;

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

/// Per-partition drain rates from samples of the positions over a sliding window, and the cost
/// of the smallest batches as last seen.
#[derive(Debug)]
pub(crate) struct DrainMeter {
    window: Window<Positions>,
    small: Option<SmallBatch>,
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
        }
    }

    /// Adds a sample of every partition's positions, and takes the small batches' cost from the
    /// window when it saw enough of them.
    pub(crate) fn sample(&mut self, now: Instant, positions: Positions) {
        self.window.sample(now, positions);
        let Some((secs, old, new)) = self.window.ends() else {
            return;
        };
        let (mut batches, mut records, mut wire) = (0u64, 0u64, 0u64);
        for (tp, n) in new {
            let Some(o) = old.get(tp) else { continue };
            let b = n.batches.saturating_sub(o.batches);
            let r = n.records.saturating_sub(o.records);
            if b > 0 && r as f64 <= b as f64 * SMALL_BATCH_RECORDS {
                batches += b;
                records += r;
                wire += n.wire_bytes.saturating_sub(o.wire_bytes);
            }
        }
        // A window shorter than half its length has seen too little to replace what is known.
        if batches as f64 >= SMALL_BATCHES_SEEN && records >= batches && secs * 2.0 >= self.window.window.as_secs_f64()
        {
            self.small = Some(SmallBatch {
                records: records as f64 / batches as f64,
                wire_bytes: wire as f64 / batches as f64,
            });
        }
    }

    /// The cost of a batch of about one record, as last measured.
    pub(crate) fn small_batch(&self) -> Option<SmallBatch> {
        self.small
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
/// anchored on `small`, the small batches' cost as last measured, when known), else the summed
/// lag over the summed net drain rate.
pub fn total_drain_eta_secs(
    lags: &BTreeMap<TopicPartition, i64>,
    rates: &BTreeMap<TopicPartition, DrainRate>,
    small: Option<SmallBatch>,
) -> Option<f64> {
    let lag: i64 = lags.values().sum();
    if lag == 0 {
        return Some(0.0);
    }
    let linear = drain_eta_secs(lag, rates.values().map(DrainRate::net_per_sec).sum());
    let wire_per_sec: f64 = rates.values().map(|r| r.wire_bytes_per_sec).sum();
    let cost = match small {
        Some(small) => BatchCost::fit_anchored(rates.values(), small),
        None => BatchCost::fit(rates.values()),
    };
    let (Some(cost), Some(batch)) = (cost, full_batch(rates.values())) else {
        return linear;
    };
    if wire_per_sec <= 0.0 {
        return linear;
    }
    let mut partitions: Vec<Draining> = lags
        .iter()
        .map(|(tp, &lag)| Draining {
            lag: lag as f64,
            growth_per_sec: rates.get(tp).map_or(0.0, |r| r.growth_per_sec),
            batch,
        })
        .collect();
    let modelled = drain_model(&mut partitions, cost, wire_per_sec);
    tracing::debug!(
        lag,
        partitions = lags.len(),
        lagging = lags.values().filter(|&&l| l > 0).count(),
        per_batch_bytes = cost.per_batch.round(),
        per_record_bytes = cost.per_record.round(),
        small_batch_bytes = small.map(|s| s.wire_bytes.round()),
        wire_bytes_per_sec = wire_per_sec.round(),
        full_batch_records = batch,
        growth_per_sec = rates.values().map(|r| r.growth_per_sec).sum::<f64>().round(),
        modelled_secs = modelled.map(f64::round),
        linear_secs = linear.map(f64::round),
        "drain model"
    );
    modelled
}

/// The records a batch holds while a partition's lag lasts: the 90th percentile of the
/// partitions' mean batch over the window (a partition whose lag ran out sent smaller ones, and
/// one or two batches of a partition say little alone). `None` when no batch was acknowledged.
fn full_batch<'a>(rates: impl IntoIterator<Item = &'a DrainRate>) -> Option<f64> {
    let mut sizes: Vec<f64> = rates
        .into_iter()
        .filter(|r| r.batches_per_sec > 0.0)
        .map(|r| r.records_per_sec / r.batches_per_sec)
        .collect();
    if sizes.is_empty() {
        return None;
    }
    sizes.sort_by(f64::total_cmp);
    let at = (sizes.len() * 9 / 10).min(sizes.len() - 1);
    Some(sizes[at].max(1.0))
}

/// What a batch costs on the wire: a part per batch (the batch's and the request's headers,
/// and a first record compressed with no neighbour as context) and a part per record.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct BatchCost {
    /// Wire bytes of a batch besides its records' own.
    pub(crate) per_batch: f64,
    /// Wire bytes each record adds.
    pub(crate) per_record: f64,
}

impl BatchCost {
    /// The cost that fits each partition's batches, records and wire bytes per second over
    /// the window best (least squares). When the batches all had about the same number of
    /// records the two parts cannot be told apart: all of the cost is then per record.
    /// `None` when nothing was acknowledged.
    pub(crate) fn fit<'a>(rates: impl IntoIterator<Item = &'a DrainRate>) -> Option<Self> {
        let (mut bb, mut br, mut rr, mut bw, mut rw, mut w, mut r) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        for d in rates.into_iter().filter(|d| d.batches_per_sec > 0.0) {
            let (nb, nr, nw) = (d.batches_per_sec, d.records_per_sec, d.wire_bytes_per_sec);
            bb += nb * nb;
            br += nb * nr;
            rr += nr * nr;
            bw += nb * nw;
            rw += nr * nw;
            w += nw;
            r += nr;
        }
        if r <= 0.0 {
            return None;
        }
        let det = bb * rr - br * br;
        if det > 1e-6 * bb * rr {
            let fitted = Self {
                per_batch: (bw * rr - rw * br) / det,
                per_record: (bb * rw - br * bw) / det,
            };
            if fitted.per_batch >= 0.0 && fitted.per_record > 0.0 {
                return Some(fitted);
            }
        }
        Some(Self {
            per_batch: 0.0,
            per_record: w / r,
        })
    }

    /// The cost that fits the window's batches best (least squares) under the constraint that
    /// a batch of `small.records` costs `small.wire_bytes`: a line through the small batches'
    /// measured cost, its slope from the window. A fit of full batches alone extrapolates the
    /// cost of a small one from its slope, and the cost of compressed records is not linear that
    /// far (a batch's first records compress worst). [`Self::fit`] when the window cannot give a
    /// slope or the anchor disagrees with it (a negative part).
    pub(crate) fn fit_anchored<'a>(
        rates: impl IntoIterator<Item = &'a DrainRate> + Clone,
        small: SmallBatch,
    ) -> Option<Self> {
        let (n0, c0) = (small.records, small.wire_bytes);
        let (mut xx, mut xy) = (0.0, 0.0);
        for d in rates.clone().into_iter().filter(|d| d.batches_per_sec > 0.0) {
            // w = b c0 + p (r - b n0)
            let x = d.records_per_sec - d.batches_per_sec * n0;
            let y = d.wire_bytes_per_sec - d.batches_per_sec * c0;
            xx += x * x;
            xy += x * y;
        }
        let free = Self::fit(rates);
        if xx <= 0.0 || free.is_none() {
            return free;
        }
        let per_record = xy / xx;
        let per_batch = c0 - per_record * n0;
        if per_record > 0.0 && per_batch >= 0.0 {
            Some(Self { per_batch, per_record })
        } else {
            free
        }
    }

    /// Wire bytes of a batch of `records`; below one record, the expected cost of a batch
    /// sent that share of the rounds.
    fn batch(&self, records: f64) -> f64 {
        self.per_batch * records.min(1.0) + self.per_record * records
    }

    /// Wire bytes of `records` sent in batches of `batch`.
    fn all(&self, records: f64, batch: f64) -> f64 {
        self.per_batch * (records / batch).max(records.min(1.0)) + self.per_record * records
    }
}

/// One partition as the [`drain_model`] sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Draining {
    /// Records of lag.
    pub(crate) lag: f64,
    /// Records the source adds per second.
    pub(crate) growth_per_sec: f64,
    /// Records in each of its batches while its lag lasts (what it sends now).
    pub(crate) batch: f64,
}

/// What is left when the drain counts as done: what the link sends in this long.
const DRAINED_WITHIN_SECS: f64 = 1.0;
/// The most steps the model takes before it gives no ETA.
const MODEL_STEPS: usize = 2_000;

/// Seconds until the lag of `partitions` is replicated over a link that carries
/// `wire_per_sec`, at `cost` a batch. In each round every partition with lag sends one batch:
/// as many records as its batch holds, or all its lag when that is less; the round lasts as
/// long as the link takes to carry them, and the source adds to each lag meanwhile. Rounds of
/// the same length are taken together while no partition's lag falls below its batch. Done
/// when what is left would go in [`DRAINED_WITHIN_SECS`] of the link, or when the rounds stop
/// shortening with no partition left sending full batches (the live traffic's steady state);
/// `None` when the lag does not shrink.
pub(crate) fn drain_model(partitions: &mut [Draining], cost: BatchCost, wire_per_sec: f64) -> Option<f64> {
    if wire_per_sec <= 0.0 {
        return None;
    }
    let mut secs = 0.0;
    let mut last_round = f64::INFINITY;
    for _ in 0..MODEL_STEPS {
        let left: f64 = partitions.iter().map(|p| cost.all(p.lag, p.batch)).sum();
        if left <= wire_per_sec * DRAINED_WITHIN_SECS {
            return Some(secs + left / wire_per_sec);
        }
        let round = partitions.iter().map(|p| cost.batch(p.lag.min(p.batch))).sum::<f64>() / wire_per_sec;
        let full = partitions.iter().filter(|p| p.lag > p.batch).count();
        if full == 0 && round >= last_round * 0.99 {
            return Some(secs);
        }
        // Only two rounds in a row with no full batch tell a steady state.
        last_round = if full == 0 { round } else { f64::INFINITY };
        // Rounds this long, until the first partition sending full batches has one batch left.
        let rounds = partitions
            .iter()
            .filter(|p| p.lag > p.batch)
            .filter_map(|p| {
                let shrink = p.batch - p.growth_per_sec * round;
                (shrink > 0.0).then(|| ((p.lag - p.batch) / shrink).ceil())
            })
            .fold(f64::INFINITY, f64::min);
        if full > 0 && rounds.is_infinite() {
            // Every partition with more than a batch grows faster than it sends.
            return None;
        }
        let rounds = if rounds.is_finite() { rounds.max(1.0) } else { 1.0 };
        for p in partitions.iter_mut() {
            let arrived = p.growth_per_sec * round;
            if p.lag > p.batch {
                p.lag += rounds * (arrived - p.batch);
            } else {
                // It sent all its lag: what is left is what arrived in the round, and a
                // partition sends at least what arrived (its fetch takes all there is).
                p.lag = arrived;
                p.batch = p.batch.max(arrived);
            }
        }
        secs += rounds * round;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("spans", p)
    }

    fn at(pairs: &[(i32, i64, i64)]) -> Positions {
        pairs
            .iter()
            .map(|&(p, next, high_watermark)| {
                let mark = Mark {
                    next,
                    high_watermark,
                    ..Mark::default()
                };
                (tp(p), mark)
            })
            .collect()
    }

    fn lags(pairs: &[(i32, i64)]) -> BTreeMap<TopicPartition, i64> {
        pairs.iter().map(|&(p, lag)| (tp(p), lag)).collect()
    }

    /// A partition's rates when its batches of `batch` records cost `cost` each.
    fn sending(cost: BatchCost, batches_per_sec: f64, batch: f64) -> DrainRate {
        DrainRate {
            records_per_sec: batches_per_sec * batch,
            batches_per_sec,
            wire_bytes_per_sec: batches_per_sec * (cost.per_batch + cost.per_record * batch),
            ..DrainRate::default()
        }
    }

    const SPANS: BatchCost = BatchCost {
        per_batch: 350.0,
        per_record: 140.0,
    };

    #[test]
    fn the_eta_is_the_lag_over_the_net_rate_not_the_replication_rate() {
        // The source grows by 100 records/s, strait replicates 300/s: the 20,000-record lag
        // shrinks by 200/s and is gone in 100 s, not the 66.7 s the replication rate promises.
        let t0 = Instant::now();
        let mut m = DrainMeter::new(DRAIN_WINDOW);
        let (mut next, mut hwm) = (0i64, 20_000i64);
        for s in 0..=40u64 {
            m.sample(t0 + Duration::from_secs(s), at(&[(0, next, hwm)]));
            next += 300;
            hwm += 100;
        }
        let r = m.rates()[&tp(0)];
        assert_eq!((r.replicated_per_sec, r.growth_per_sec), (300.0, 100.0));
        let (next, hwm) = (next - 300, hwm - 100);
        let lag = hwm - next;
        let eta = drain_eta_secs(lag, r.net_per_sec()).expect("draining");
        assert_eq!(eta, lag as f64 / 200.0);
        // Follow the model to its end: the ETA says when the lag reaches 0.
        let steps = (lag as f64 / 200.0).ceil() as i64;
        assert_eq!(hwm + 100 * steps - (next + 300 * steps), 0);
        assert!(drain_eta_secs(lag, r.replicated_per_sec).expect("moving") < eta * 0.7);
    }

    #[test]
    fn a_stale_high_watermark_s_jump_leaves_the_window() {
        // During an outage the high watermark was last seen at 1,000; the first fetch after
        // the link returns sees 61,000. Within the window that jump reads as growth; a window
        // later only the steady growth of 100/s is left.
        let t0 = Instant::now();
        let mut m = DrainMeter::new(DRAIN_WINDOW);
        m.sample(t0, at(&[(0, 1_000, 1_000)]));
        let mut hwm = 61_000;
        let mut next = 1_000;
        for s in 1..=60u64 {
            m.sample(t0 + Duration::from_secs(s), at(&[(0, next, hwm)]));
            next += 500;
            hwm += 100;
        }
        let r = m.rates()[&tp(0)];
        assert_eq!(r.growth_per_sec, 100.0);
        assert_eq!(r.net_per_sec(), 400.0);
    }

    #[test]
    fn no_eta_while_the_lag_does_not_shrink_and_zero_when_caught_up() {
        assert_eq!(drain_eta_secs(0, 0.0), Some(0.0));
        assert_eq!(drain_eta_secs(500, 0.0), None);
        assert_eq!(drain_eta_secs(500, -50.0), None);
        assert_eq!(drain_eta_secs(500, 50.0), Some(10.0));
        // Cut off: nothing replicated while the source grows.
        let t0 = Instant::now();
        let mut m = DrainMeter::new(DRAIN_WINDOW);
        m.sample(t0, at(&[(0, 10, 100)]));
        m.sample(t0 + Duration::from_secs(10), at(&[(0, 10, 600)]));
        assert_eq!(total_drain_eta_secs(&lags(&[(0, 590)]), &m.rates(), None), None);
    }

    #[test]
    fn the_total_eta_sums_lags_and_net_rates_and_skips_partitions_new_in_the_window() {
        let t0 = Instant::now();
        let mut m = DrainMeter::new(DRAIN_WINDOW);
        m.sample(t0, at(&[(0, 0, 1_000), (1, 0, 2_000)]));
        m.sample(
            t0 + Duration::from_secs(10),
            at(&[(0, 1_000, 1_500), (1, 2_000, 2_500), (2, 0, 1_000_000)]),
        );
        let r = m.rates();
        assert!(!r.contains_key(&tp(2)), "a new partition has no rate yet");
        // Net: 50/s + 150/s = 200/s for a lag of 500 + 500.
        assert_eq!(total_drain_eta_secs(&lags(&[(0, 500), (1, 500)]), &r, None), Some(5.0));
    }

    #[test]
    fn the_fit_tells_the_cost_of_a_batch_from_the_cost_of_a_record() {
        let rates = [
            sending(SPANS, 0.1, 1.0),
            sending(SPANS, 0.2, 2.0),
            sending(SPANS, 0.05, 9.0),
            sending(SPANS, 3.0, 500.0),
        ];
        let fit = BatchCost::fit(&rates).expect("batches were sent");
        assert!((fit.per_batch - 350.0).abs() < 1e-6, "{fit:?}");
        assert!((fit.per_record - 140.0).abs() < 1e-6, "{fit:?}");
        // Batches all alike: the parts cannot be told apart, so all of it is per record.
        let alike = [sending(SPANS, 0.1, 9.0), sending(SPANS, 0.3, 9.0)];
        let fit = BatchCost::fit(&alike).expect("batches were sent");
        assert_eq!(fit.per_batch, 0.0);
        assert!((fit.per_record - (350.0 / 9.0 + 140.0)).abs() < 1e-6, "{fit:?}");
        assert_eq!(BatchCost::fit(&[DrainRate::default()]), None, "nothing sent");
    }

    #[test]
    fn rounds_of_one_batch_a_partition_add_up_to_every_batch_s_cost_over_the_link() {
        // Two partitions of 10 records, batches of 5, 100 B a batch + 10 B a record, 100 B/s,
        // nothing new: 4 batches of 150 B, 6 s.
        let cost = BatchCost {
            per_batch: 100.0,
            per_record: 10.0,
        };
        let p = Draining {
            lag: 10.0,
            growth_per_sec: 0.0,
            batch: 5.0,
        };
        assert_eq!(drain_model(&mut [p, p], cost, 100.0), Some(6.0));
        // Without a cost per batch, one deep partition drains at the linear rate: 10,000
        // records at 1,000/s on the link less 200/s new is 12.5 s.
        let records_only = BatchCost {
            per_batch: 0.0,
            per_record: 100.0,
        };
        let mut deep = [Draining {
            lag: 10_000.0,
            growth_per_sec: 200.0,
            batch: 100.0,
        }];
        let eta = drain_model(&mut deep, records_only, 100_000.0).expect("draining");
        assert!((eta - 12.5).abs() < 0.25, "{eta}");
    }

    #[test]
    fn thousands_of_partitions_with_a_few_records_each_drain_slower_than_the_rate_now_says() {
        // As measured after a cut: 5,000 partitions 12 records behind, 9-record batches, 250
        // new records/s in all, the link carrying 225 kB/s. The records/s the link carries now
        // (9-record batches) put the end at ~60 s; as the batches shrink to what arrives in a
        // round, each record costs up to 490 B instead of 179 B.
        let p = Draining {
            lag: 12.0,
            growth_per_sec: 0.05,
            batch: 9.0,
        };
        let mut partitions = vec![p; 5_000];
        let rate_now = 225_000.0 / (SPANS.per_batch / 9.0 + SPANS.per_record);
        let linear = drain_eta_secs(60_000, rate_now - 250.0).expect("draining");
        let modelled = drain_model(&mut partitions, SPANS, 225_000.0).expect("draining");
        assert!((55.0..65.0).contains(&linear), "{linear}");
        assert!(modelled > linear * 1.25, "modelled {modelled} vs linear {linear}");
        // It ends: the lag left is what arrives while the link carries it.
        let left: f64 = partitions.iter().map(|p| p.lag).sum();
        assert!(left < 250.0 * 2.0, "{left}");
        // The same through the window's rates: the cost is fitted from batches of two sizes,
        // the full batch is the larger (nine records), the link's rate is their sum.
        let mut rates = BTreeMap::new();
        let mut lag = BTreeMap::new();
        for i in 0..5_000 {
            let r = DrainRate {
                growth_per_sec: 0.05,
                ..sending(SPANS, 225_000.0 / 5_000.0 / 1_540.0, if i % 2 == 0 { 9.0 } else { 8.0 })
            };
            rates.insert(tp(i), r);
            lag.insert(tp(i), 12);
        }
        let total = total_drain_eta_secs(&lag, &rates, None).expect("draining");
        assert!((total - modelled).abs() < modelled * 0.1, "{total} vs {modelled}");
    }

    /// Marks of partitions each having sent `batches` batches of `records` records at `cost`.
    fn sent(parts: std::ops::Range<i32>, batches: u64, records: u64, cost: BatchCost) -> Positions {
        parts
            .map(|p| {
                let mark = Mark {
                    records: batches * records,
                    batches,
                    wire_bytes: (batches as f64 * cost.batch(records as f64)).round() as u64,
                    ..Mark::default()
                };
                (tp(p), mark)
            })
            .collect()
    }

    #[test]
    fn the_small_batches_cost_is_learnt_while_caught_up_and_kept_through_a_drain() {
        let t0 = Instant::now();
        let mut m = DrainMeter::new(DRAIN_WINDOW);
        let secs = |s: u64| t0 + Duration::from_secs(s);
        // Caught up: 100 partitions send a one-record batch each every 30 s.
        m.sample(secs(0), sent(0..100, 0, 1, SPANS));
        assert_eq!(m.small_batch(), None, "one sample is no window");
        m.sample(secs(10), sent(0..100, 1, 1, SPANS));
        assert_eq!(m.small_batch(), None, "10 s of a 30 s window is too short to say");
        m.sample(secs(30), sent(0..100, 1, 1, SPANS));
        let small = m.small_batch().expect("100 one-record batches seen");
        assert_eq!(small.records, 1.0);
        assert_eq!(small.wire_bytes, SPANS.batch(1.0));
        // Cut, then a drain of full batches only: what was measured stays.
        m.sample(secs(60), sent(0..100, 1, 1, SPANS));
        for s in 0..40 {
            m.sample(secs(100 + s), sent(0..100, 1 + s, 20, SPANS));
        }
        assert_eq!(m.small_batch(), Some(small));
        // Too few small batches in a window do not replace it.
        let mut few = sent(0..100, 40, 20, SPANS);
        few.extend(sent(
            100..110,
            1,
            1,
            BatchCost {
                per_batch: 0.0,
                per_record: 1.0,
            },
        ));
        m.sample(secs(200), few.clone());
        let mut later = few;
        later.extend(sent(
            100..110,
            2,
            1,
            BatchCost {
                per_batch: 0.0,
                per_record: 1.0,
            },
        ));
        m.sample(secs(240), later);
        assert_eq!(m.small_batch(), Some(small));
    }

    #[test]
    fn anchored_on_the_small_batches_cost_the_fit_predicts_both_ends() {
        // As measured in a drain after a cut: batches of 10-24 records fitted 534 B a batch
        // and 164 B a record, so a one-record batch at 698 B, where it cost 565 B.
        let window = BatchCost {
            per_batch: 534.0,
            per_record: 164.0,
        };
        let rates: Vec<DrainRate> = (0..50)
            .map(|i| sending(window, 0.2, if i % 2 == 0 { 10.0 } else { 22.0 }))
            .collect();
        let free = BatchCost::fit(&rates).expect("batches");
        assert!((free.batch(1.0) - 698.0).abs() < 1.0, "{free:?}");
        let small = SmallBatch {
            records: 1.0,
            wire_bytes: 565.0,
        };
        let anchored = BatchCost::fit_anchored(&rates, small).expect("batches");
        assert!((anchored.batch(1.0) - 565.0).abs() < 1e-6, "{anchored:?}");
        for n in [10.0, 22.0] {
            let (fit, real) = (anchored.batch(n), window.batch(n));
            assert!((fit - real).abs() < real * 0.03, "{n} records: {fit} vs {real}");
        }
        // An anchor the window contradicts (a small batch dearer than the full ones allow) is
        // not used.
        let dear = SmallBatch {
            records: 1.0,
            wire_bytes: 5_000.0,
        };
        assert_eq!(BatchCost::fit_anchored(&rates, dear), Some(free));
    }

    #[test]
    fn with_full_batches_only_the_anchor_gives_the_drain_the_real_cost_gives() {
        // The real cost: 395 B a batch, 170 B a record. The window holds only 22-record
        // batches, so a fit alone puts all of it on the records (188 B each) and the end of the
        // drain, where batches shrink to a record or two, at less than it costs.
        let real = BatchCost {
            per_batch: 395.0,
            per_record: 170.0,
        };
        let (mut rates, mut lag) = (BTreeMap::new(), BTreeMap::new());
        for i in 0..2_000 {
            let r = DrainRate {
                growth_per_sec: 0.02,
                ..sending(real, 0.05, 22.0)
            };
            rates.insert(tp(i), r);
            lag.insert(tp(i), if i % 3 == 0 { 60 } else { 2 });
        }
        let wire: f64 = rates.values().map(|r| r.wire_bytes_per_sec).sum();
        let mut truth: Vec<Draining> = lag
            .values()
            .map(|&l| Draining {
                lag: l as f64,
                growth_per_sec: 0.02,
                batch: 22.0,
            })
            .collect();
        let truth = drain_model(&mut truth, real, wire).expect("draining");
        let small = SmallBatch {
            records: 1.0,
            wire_bytes: real.batch(1.0),
        };
        let anchored = total_drain_eta_secs(&lag, &rates, Some(small)).expect("draining");
        let free = total_drain_eta_secs(&lag, &rates, None).expect("draining");
        assert!(
            (anchored - truth).abs() < truth * 0.01,
            "anchored {anchored} vs {truth}"
        );
        assert!(
            (free - truth).abs() > truth * 0.1,
            "free {free} vs {truth}: the premise"
        );
    }

    #[test]
    fn the_full_batch_is_what_most_partitions_still_lagging_send_not_the_mean() {
        // 80 partitions whose lag ran out send 1-record batches, 20 still send 9: the mean
        // (2.6) would take the drain for the end of it.
        let mut rates: Vec<DrainRate> = (0..80).map(|_| sending(SPANS, 0.1, 1.0)).collect();
        rates.extend((0..20).map(|_| sending(SPANS, 0.1, 9.0)));
        assert_eq!(full_batch(&rates), Some(9.0));
        assert_eq!(full_batch(&[sending(SPANS, 0.1, 0.5)]), Some(1.0), "at least a record");
        assert_eq!(full_batch(&[DrainRate::default()]), None);
    }

    #[test]
    fn no_eta_when_the_live_records_alone_outgrow_the_link() {
        // 1,000 new records/s at >= 140 B each need more than a 100 kB/s link.
        let mut p = [Draining {
            lag: 50_000.0,
            growth_per_sec: 1_000.0,
            batch: 500.0,
        }];
        assert_eq!(drain_model(&mut p, SPANS, 100_000.0), None);
        assert_eq!(drain_model(&mut p, SPANS, 0.0), None);
    }
}
