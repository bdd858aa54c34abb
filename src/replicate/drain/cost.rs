//! The wire cost of a batch, fitted from what the window saw, and the drain simulated in rounds
//! with it (see the parent module).

use super::{DrainRate, SmallBatch};

/// The records a batch holds while a partition's lag lasts: the 90th percentile of the
/// partitions' mean batch over the window (a partition whose lag ran out sent smaller ones, and
/// one or two batches of a partition say little alone). `None` when no batch was acknowledged.
pub(super) fn full_batch<'a>(rates: impl IntoIterator<Item = &'a DrainRate>) -> Option<f64> {
    let sizes: Vec<f64> = rates
        .into_iter()
        .filter(|r| r.batches_per_sec > 0.0)
        .map(|r| r.records_per_sec / r.batches_per_sec)
        .collect();
    percentile_90(sizes)
}

/// The 90th percentile of partitions' mean batches, at least a record; `None` for none.
pub(super) fn percentile_90(mut sizes: Vec<f64>) -> Option<f64> {
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
}

/// What the [`drain_model`] needs of a cost: the wire bytes of one batch by its records.
pub(crate) trait Price {
    /// Wire bytes of a batch of `records`; below one record, the expected cost of a batch
    /// sent that share of the rounds.
    fn batch(&self, records: f64) -> f64;

    /// Wire bytes of `records` sent in batches of `batch` (at least one record).
    fn all(&self, records: f64, batch: f64) -> f64 {
        if records <= batch {
            self.batch(records)
        } else {
            records / batch * self.batch(batch)
        }
    }
}

impl Price for BatchCost {
    fn batch(&self, records: f64) -> f64 {
        self.per_batch * records.min(1.0) + self.per_record * records
    }
}

/// A batch's cost as a power of its records, `one * records^exponent` from one record up,
/// through two measured points: the small batches' cost ([`SmallBatch`]) and the full
/// batches' (the window's fit at the full batch). zstd compresses a batch's first records
/// worst and each next one against more context, so the cost per added record falls with the
/// batch's size; a line through the same two points prices the batches between them too low
/// (up to a fifth, for spans at level 19: batches of 2-10 records, which a drain's end sends)
/// where the power stays within a twentieth (`tests::the_power_through_both_ends_follows_what_spans_cost`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct PowerCost {
    /// Wire bytes of a batch of one record.
    pub(crate) one: f64,
    /// How the cost grows with the records: 1 is a cost per record alone.
    pub(crate) exponent: f64,
}

impl PowerCost {
    /// The power through `small` and a batch of `full` records costing `full_bytes`; `None`
    /// when the two are too close in records to tell a slope (less than twice as many), or
    /// disagree with a cost that grows no faster than the records (a negative or larger than
    /// one exponent).
    pub(crate) fn through(small: SmallBatch, full: f64, full_bytes: f64) -> Option<Self> {
        let (n0, c0) = (small.records, small.wire_bytes);
        if n0 < 1.0 || c0 <= 0.0 || full < 2.0 * n0 || full_bytes <= c0 {
            return None;
        }
        let exponent = (full_bytes / c0).ln() / (full / n0).ln();
        (exponent > 0.0 && exponent <= 1.0).then(|| Self {
            one: c0 / n0.powf(exponent),
            exponent,
        })
    }
}

impl Price for PowerCost {
    fn batch(&self, records: f64) -> f64 {
        if records < 1.0 {
            self.one * records
        } else {
            self.one * records.powf(self.exponent)
        }
    }
}

/// The cost the model prices a drain with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Cost {
    /// A part per batch and a part per record (no small batches' cost known).
    Line(BatchCost),
    /// A power through the small and the full batches' costs.
    Power(PowerCost),
}

impl Price for Cost {
    fn batch(&self, records: f64) -> f64 {
        match self {
            Self::Line(c) => c.batch(records),
            Self::Power(c) => c.batch(records),
        }
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
pub(crate) fn drain_model(partitions: &mut [Draining], cost: &impl Price, wire_per_sec: f64) -> Option<f64> {
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
