//! How long until the lag is replicated: the drain ETA on `/status` and in the progress line.
//!
//! While a backlog drains the source keeps growing, so the lag shrinks at the net drain rate:
//! the rate strait moves the partition's next source offset (records replicated, and any gap
//! retention made it skip) minus the rate the source's high watermark grows. Dividing the lag
//! by the replication rate alone promises the end too early by the share of the budget new
//! records take. Both rates are read over [`DRAIN_WINDOW`], which smooths the per-second
//! samples, and lets the jump of a high watermark last seen before an outage (the first fetch
//! after the link returns) leave the window within half a minute.

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
}

impl DrainRate {
    /// Records per second the lag shrinks by (negative while it grows).
    pub fn net_per_sec(&self) -> f64 {
        self.replicated_per_sec - self.growth_per_sec
    }
}

/// (next source offset, source high watermark) of a partition at one sample.
type Positions = BTreeMap<TopicPartition, (i64, i64)>;

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

/// Per-partition drain rates from samples of the positions over a sliding window.
#[derive(Debug)]
pub(crate) struct DrainMeter(Window<Positions>);

impl DrainMeter {
    pub(crate) fn new(window: Duration) -> Self {
        Self(Window::new(window))
    }

    /// Adds a sample of every partition's positions.
    pub(crate) fn sample(&mut self, now: Instant, positions: Positions) {
        self.0.sample(now, positions);
    }

    /// The rates between the oldest and the newest sample, for the partitions in both (a
    /// partition new in the window has no rate yet: its whole high watermark is not growth).
    pub(crate) fn rates(&self) -> BTreeMap<TopicPartition, DrainRate> {
        let Some((secs, old, new)) = self.0.ends() else {
            return BTreeMap::new();
        };
        new.iter()
            .filter_map(|(tp, (next, hwm))| {
                let (next0, hwm0) = old.get(tp)?;
                Some((
                    tp.clone(),
                    DrainRate {
                        replicated_per_sec: (next - next0).max(0) as f64 / secs,
                        growth_per_sec: (hwm - hwm0).max(0) as f64 / secs,
                    },
                ))
            })
            .collect()
    }
}

/// The ETA of all partitions together: their summed lag over their summed net drain rate.
pub fn total_drain_eta_secs(lag_records: i64, rates: &BTreeMap<TopicPartition, DrainRate>) -> Option<f64> {
    drain_eta_secs(lag_records, rates.values().map(DrainRate::net_per_sec).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("spans", p)
    }

    fn at(pairs: &[(i32, i64, i64)]) -> Positions {
        pairs.iter().map(|&(p, next, hwm)| (tp(p), (next, hwm))).collect()
    }

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
        assert_eq!(total_drain_eta_secs(590, &m.rates()), None);
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
        assert_eq!(total_drain_eta_secs(1_000, &r), Some(5.0));
    }
}
