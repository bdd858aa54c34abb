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
    /// Records acknowledged by the target per second.
    pub records_per_sec: f64,
    /// Bytes sent to the target per second.
    pub wire_bytes_per_sec: f64,
    /// The partition's lag at the newest sample.
    pub lag_records: i64,
}

impl DrainRate {
    /// Records per second the lag shrinks by (negative while it grows).
    pub fn net_per_sec(&self) -> f64 {
        self.replicated_per_sec - self.growth_per_sec
    }
}

/// Where a partition stood at one sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sampled {
    /// The next source offset.
    pub(crate) next: i64,
    /// The source's high watermark.
    pub(crate) hwm: i64,
    /// Records acknowledged so far.
    pub(crate) records: u64,
    /// Bytes sent to the target so far.
    pub(crate) wire_bytes: u64,
}

/// Every partition at one sample.
type Positions = BTreeMap<TopicPartition, Sampled>;

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
            .filter_map(|(tp, now)| {
                let then = old.get(tp)?;
                Some((
                    tp.clone(),
                    DrainRate {
                        replicated_per_sec: (now.next - then.next).max(0) as f64 / secs,
                        growth_per_sec: (now.hwm - then.hwm).max(0) as f64 / secs,
                        records_per_sec: now.records.saturating_sub(then.records) as f64 / secs,
                        wire_bytes_per_sec: now.wire_bytes.saturating_sub(then.wire_bytes) as f64 / secs,
                        lag_records: (now.hwm - now.next).max(0),
                    },
                ))
            })
            .collect()
    }
}

/// The ETA of all partitions together.
///
/// Measured in records, the drain slows down as it ends (in the cut bench, from about 1,250 to
/// about 450 records/s at the same wire rate): a partition that caught up sends each new record
/// in a batch of its own, which costs about as many wire bytes as the record (a span of 490
/// bytes: 457-540 bytes on the wire), while a lagging partition sends it among its backlog for a
/// fraction of that (190 bytes). So new records take an ever larger share of the wire as the
/// partitions catch up, and the summed lag over the summed net rate promised the end 45% early.
///
/// In wire bytes: the drain has the wire rate `W` of the window; new records arrive at `G` per
/// second and, once their partition caught up, cost `c_live` bytes each (what caught-up
/// partitions paid per record over the window); the backlog costs `c_lag` per record (what
/// lagging partitions paid). Taking every new record at `c_live` from now on (the partitions
/// all catch up by the end, and the last backlog records, spread thin, also go in smaller
/// batches), the lag of `L` records drains in `L c_lag / (W - G c_live)`. When no partition
/// caught up yet, or the costs are the same, this is the lag over the net rate in records.
pub fn total_drain_eta_secs(lag_records: i64, rates: &BTreeMap<TopicPartition, DrainRate>) -> Option<f64> {
    let records_net = || drain_eta_secs(lag_records, rates.values().map(DrainRate::net_per_sec).sum());
    if lag_records == 0 {
        return Some(0.0);
    }
    // (records, wire bytes) per second of the lagging and of the caught-up partitions.
    let (mut lagging, mut caught_up) = ((0.0, 0.0), (0.0, 0.0));
    for r in rates.values() {
        let side = if r.lag_records > 0 {
            &mut lagging
        } else {
            &mut caught_up
        };
        side.0 += r.records_per_sec;
        side.1 += r.wire_bytes_per_sec;
    }
    if lagging.0 <= 0.0 || lagging.1 <= 0.0 {
        return records_net();
    }
    let c_lag = lagging.1 / lagging.0;
    let c_live = if caught_up.0 > 0.0 {
        caught_up.1 / caught_up.0
    } else {
        c_lag
    };
    let wire: f64 = lagging.1 + caught_up.1;
    let growth: f64 = rates.values().map(|r| r.growth_per_sec).sum();
    let for_the_backlog = wire - growth * c_live;
    (for_the_backlog > 0.0).then(|| lag_records as f64 * c_lag / for_the_backlog)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("spans", p)
    }

    /// Positions only (no records or wire bytes moved): the ETA in records.
    fn at(pairs: &[(i32, i64, i64)]) -> Positions {
        pairs
            .iter()
            .map(|&(p, next, hwm)| {
                let s = Sampled {
                    next,
                    hwm,
                    ..Sampled::default()
                };
                (tp(p), s)
            })
            .collect()
    }

    #[test]
    fn new_records_that_cost_more_once_their_partition_caught_up_lengthen_the_eta() {
        // Partition 0 lags: 1,000 records/s at 200 wire bytes each, the source adding 100/s.
        // Partition 1 caught up: its 100 new records/s go one per batch, 500 bytes each.
        let t0 = Instant::now();
        let mut m = DrainMeter::new(DRAIN_WINDOW);
        let sample = |secs: i64| {
            let lagging = Sampled {
                next: 1_000 * secs,
                hwm: 40_000 + 100 * secs,
                records: 1_000 * secs as u64,
                wire_bytes: 200_000 * secs as u64,
            };
            let caught_up = Sampled {
                next: 100 * secs,
                hwm: 100 * secs,
                records: 100 * secs as u64,
                wire_bytes: 50_000 * secs as u64,
            };
            BTreeMap::from([(tp(0), lagging), (tp(1), caught_up)])
        };
        m.sample(t0, sample(0));
        m.sample(t0 + Duration::from_secs(10), sample(10));
        let rates = m.rates();
        assert_eq!(rates[&tp(0)].lag_records, 31_000);
        // In records: 31,000 / (1,100 - 200) = 34.4 s.
        let in_records = drain_eta_secs(31_000, rates.values().map(DrainRate::net_per_sec).sum()).expect("draining");
        assert!((in_records - 34.44).abs() < 0.01, "{in_records}");
        // In wire bytes: the 250,000 B/s less 200 new records/s at 500 B leaves 150,000 B/s for
        // the backlog at 200 B a record: 31,000 x 200 / 150,000 = 41.3 s.
        let eta = total_drain_eta_secs(31_000, &rates).expect("draining");
        assert!((eta - 41.33).abs() < 0.01, "{eta}");
        // With the same cost on both sides it is the ETA in records.
        let same = BTreeMap::from([(
            tp(0),
            DrainRate {
                replicated_per_sec: 1_000.0,
                growth_per_sec: 100.0,
                records_per_sec: 1_000.0,
                wire_bytes_per_sec: 200_000.0,
                lag_records: 9_000,
            },
        )]);
        assert_eq!(total_drain_eta_secs(9_000, &same), Some(10.0));
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
