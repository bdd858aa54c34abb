//! The adaptive zstd level: spends CPU to fit more data into the link when the link is the
//! limit, and gives it back when compression is.
//!
//! # Going straight to the level that fits
//!
//! Every control period (2 s) decides from what the period measured: the share of it during
//! which senders waited for the link (the budget, or without one the target), and the share of
//! the cores spent compressing. Link-bound with CPU to spare, the level goes up; CPU-bound, it
//! goes down; otherwise it holds. How far it moves comes from the [`LevelModel`]: speed and
//! ratio per level, seeded by a calibration at start-up and corrected by every real batch.
//!
//! Keeping a link of `W` wire bytes per second full at level `L` takes `W * ratio(L)`
//! uncompressed bytes per second, so `W * ratio(L) / speed(L)` seconds of compression per
//! second. The level that fits is the highest one (within `min..=max`) for which that stays
//! under half the cores ([`CPU_SHARE`]): the rest is for fetching, unpacking and sending, and
//! the headroom absorbs the estimate's error. `W` is the budget when one is set; without one it
//! is what the target took in the period (compressed bytes out per second), since the
//! target's pace is the link's.
//!
//! - Link-bound, CPU free: the level goes to the one that fits at once, however many levels up
//!   (it never goes down on this branch: the measured CPU says the current level is fine).
//!   When the fitting level is the highest one the model can estimate and it is the current
//!   one, the level above it is tried, one step, to measure it.
//! - CPU-bound (compression above 80% of the cores, or above half of them while the link is
//!   not the limit): down to the level that fits, at least one level, at once. Compression is
//!   timed in the threads' CPU time ([`super::cpu`]), so the share is work done, not the time
//!   thousands of small batches compressing at once spent waiting for a core; the period's
//!   batches have already updated the speed estimates.
//! - Senders queued for the budget (more than [`STARVED_WAIT`] of the period), yet part of the
//!   link went unused (more than [`SPARE`] of what the budget offered in the period was taken
//!   by nobody) while compression took a real share of the cores: batches come out slower
//!   than the link takes them. Each partition compresses
//!   its own batches one after another, so at a high level a few partitions' next batches are
//!   not ready when the budget could take them, even with cores to spare. After
//!   [`STARVED_PERIODS`] such periods in a row (one alone is often the ramp after a pause), one
//!   level down, and no higher than that for [`HOLD_PERIODS`], but never below the level the
//!   last raise started from: only a raise is undone this way. Link left unused has other
//!   causes (partitions resuming after a cut, thousands of small batches) that a lower level
//!   does not cure; then the level above is tried again, since the
//!   partitions' pace changes (a backlog drains, fewer partitions remain). Without this the
//!   control raised the level while senders queued and nothing lowered it: a drain after a cut
//!   used 87% of the budget at levels 17-18 and all of it at 15.
//! - At start-up under a budget, once calibrated: the level that fits the budget at once
//!   ([`LevelControl::raise_to`]), since it costs at most [`CPU_SHARE`] of the cores even with
//!   the link full. Batches built at the start level before the first period would otherwise
//!   queue for the budget for seconds.
//! - No estimate at all (the calibration failed or has not finished, and no batch measured
//!   yet): one step per period, as a bare feedback loop.
//!
//! Why a model rather than bigger steps: the cost of a level is steep and uneven (level 19 is
//! tens of times slower than level 3 on the same bytes, and the step from 15 to 16 costs more
//! than the one from 3 to 9), so a fixed stride overshoots at the top and crawls at the bottom,
//! and a binary search needs several periods of the wrong level. A measured curve lands in one
//! period, and real batches keep it honest.

use parking_lot::{Mutex, MutexGuard};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::calibrate::{calibrate, CalibrateError};
use super::compress::CompressGate;
use super::model::{LevelModel, Sample};
use super::{nanos, Behind, Budget};

/// Share of the cores compression may take while the link is the bottleneck.
pub const CPU_SHARE: f64 = 0.5;
/// Share of the cores above which compression is the bottleneck whatever the link does.
const CPU_BOUND: f64 = 0.8;
/// Share of the period spent waiting for the link above which the link is the bottleneck.
const LINK_BOUND: f64 = 0.5;
/// Share of the budget's bytes in a period that nobody took above which the link was not full.
const SPARE: f64 = 0.03;
/// Share of the cores compressing below which compression cannot be why the link went unused.
const STARVED_CPU: f64 = 0.15;
/// Starved periods in a row that lower the level: one alone is often the ramp after a pause
/// (partitions resuming, batches growing), which a lower level does not help.
const STARVED_PERIODS: u32 = 2;
/// Share of the period senders waited for the link above which they had batches to send.
const STARVED_WAIT: f64 = 0.1;
/// Periods during which the level stays at or below the one a starved link lowered it to.
const HOLD_PERIODS: u32 = 30;

/// The zstd level in use, adapted to what limits replication: raised while the link is the
/// bottleneck and compression leaves CPU to spare, lowered when compression becomes the
/// bottleneck. The link is the budget when one is set; without one it is the target itself,
/// seen as writers waiting for acknowledgements with every in-flight slot taken.
#[derive(Debug)]
pub struct LevelControl {
    level: AtomicI32,
    min: i32,
    max: i32,
    /// Nanoseconds spent compressing, by all partitions.
    compress_nanos: AtomicU64,
    /// Compressed bytes produced, by all partitions.
    compressed_bytes: AtomicU64,
    /// Speed and ratio per level.
    model: Mutex<LevelModel>,
    /// Where batches compress, and how many at once.
    gate: CompressGate,
    /// Writers waiting for the target with their in-flight window full.
    target: Mutex<TargetWaits>,
    /// The counters at the last [`LevelControl::adapt`].
    window: Mutex<LevelWindow>,
    /// Starved periods in a row, and the highest level allowed for a while after they lowered it.
    ceiling: Mutex<Ceiling>,
}

/// A level the control does not raise above for `periods` more periods; `starved` periods in a
/// row so far; the level the last raise started from, while the level is above it.
#[derive(Debug, Default, Clone, Copy)]
struct Ceiling {
    level: i32,
    periods: u32,
    starved: u32,
    raised_from: Option<i32>,
}

/// Time during which at least one writer waited for the target: on the same scale as the
/// budget's wait (one queue per class), however many partitions there are.
#[derive(Debug, Default)]
struct TargetWaits {
    waiting: usize,
    since: Option<Instant>,
    total: Duration,
}

impl TargetWaits {
    fn total_at(&self, now: Instant) -> Duration {
        self.total + self.since.map_or(Duration::ZERO, |since| now.duration_since(since))
    }
}

/// A writer's wait for the target, counted until dropped.
#[derive(Debug)]
pub struct TargetWait<'a> {
    control: &'a LevelControl,
}

impl Drop for TargetWait<'_> {
    fn drop(&mut self) {
        let mut t = self.control.targets();
        t.waiting = t.waiting.saturating_sub(1);
        if t.waiting == 0 {
            if let Some(since) = t.since.take() {
                t.total += since.elapsed();
            }
        }
    }
}

/// Counters at the start of a control period.
#[derive(Debug, Clone, Copy)]
struct LevelWindow {
    at: Instant,
    budget_waited: Duration,
    target_waited: Duration,
    compressing: Duration,
    compressed_bytes: u64,
    /// The budget's bytes admitted so far, and its tokens, at that instant.
    taken: u64,
    tokens: f64,
    /// The budget's [`Budget::behind`] at that instant.
    behind: Behind,
}

/// What one control period measured.
#[derive(Debug, Clone, Copy)]
struct Period {
    wall: Duration,
    /// Time during which senders waited for the link.
    waited: Duration,
    /// Compression time, summed over partitions.
    compressing: Duration,
    /// The link's rate in wire bytes per second: the budget, or what the target took.
    wire_per_sec: f64,
    /// Share of the bytes the budget offered in the period that nobody took (0 without one).
    unused: f64,
}

impl LevelControl {
    /// Starts at `level`, kept within `min..=max`.
    pub fn new(level: i32, min: i32, max: i32) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Self {
            level: AtomicI32::new(level.clamp(min, max)),
            min,
            max,
            compress_nanos: AtomicU64::new(0),
            compressed_bytes: AtomicU64::new(0),
            model: Mutex::new(LevelModel::default()),
            gate: CompressGate::new(cores),
            target: Mutex::new(TargetWaits::default()),
            window: Mutex::new(LevelWindow {
                at: Instant::now(),
                budget_waited: Duration::ZERO,
                target_waited: Duration::ZERO,
                compressing: Duration::ZERO,
                compressed_bytes: 0,
                taken: 0,
                tokens: 0.0,
                behind: Behind::default(),
            }),
            ceiling: Mutex::new(Ceiling::default()),
        }
    }

    /// The level to compress the next batch with.
    pub fn level(&self) -> i32 {
        self.level.load(Ordering::Relaxed)
    }

    /// Measures every level in `min..=max` on a generated sample, in CPU time, and seeds
    /// the model with it. Blocks for up to about a second: run it off the runtime.
    pub fn calibrate(&self) -> Result<(), CalibrateError> {
        let samples = calibrate(self.min..=self.max)?;
        self.seed(&samples);
        Ok(())
    }

    /// Seeds the model with measurements of a sample (see [`LevelModel::seed`]).
    pub fn seed(&self, samples: &[Sample]) {
        self.model.lock().seed(samples);
    }

    /// The highest level in `min..=max` whose compression keeps a link of `wire_per_sec`
    /// full within [`CPU_SHARE`] of `cores`, as far as the model knows; `None` before any
    /// measurement.
    pub fn sustainable(&self, wire_per_sec: f64, cores: usize) -> Option<i32> {
        let model = self.model.lock();
        if (self.min..=self.max).all(|l| model.estimate(l).is_none()) {
            return None;
        }
        Some(
            model
                .fitting(wire_per_sec, CPU_SHARE * cores.max(1) as f64, self.min, self.max)
                .unwrap_or(self.min),
        )
    }

    /// Runs `compress`, one batch's compression of `bytes`, through the [`CompressGate`].
    pub async fn compress<T, F>(&self, bytes: usize, compress: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.gate.run(bytes, compress).await
    }

    /// Raises the level to `level` (within the bounds) if it is lower; returns the level now.
    pub fn raise_to(&self, level: i32) -> i32 {
        let level = level.clamp(self.min, self.max);
        self.level.fetch_max(level, Ordering::Relaxed).max(level)
    }

    /// Records one batch compressed at `level`: `uncompressed` bytes became `compressed` in
    /// `took`.
    pub fn record_compress(&self, level: i32, uncompressed: usize, compressed: usize, took: Duration) {
        self.compress_nanos.fetch_add(nanos(took), Ordering::Relaxed);
        self.compressed_bytes.fetch_add(compressed as u64, Ordering::Relaxed);
        self.model.lock().record(&Sample {
            level,
            uncompressed: uncompressed as u64,
            compressed: compressed as u64,
            took,
        });
    }

    /// Total compression time so far.
    pub fn compressing(&self) -> Duration {
        Duration::from_nanos(self.compress_nanos.load(Ordering::Relaxed))
    }

    /// A writer starts waiting for the target with its in-flight window full; the wait lasts
    /// until the returned guard is dropped.
    pub fn wait_for_target(&self) -> TargetWait<'_> {
        let mut t = self.targets();
        t.waiting += 1;
        if t.since.is_none() {
            t.since = Some(Instant::now());
        }
        TargetWait { control: self }
    }

    fn targets(&self) -> MutexGuard<'_, TargetWaits> {
        self.target.lock()
    }

    /// One control step over the time since the previous one, on `cores`: the link-bound time
    /// is what senders waited for `budget` when it has a rate, else what writers waited for
    /// the target. Returns the level before and after.
    pub fn adapt(&self, budget: &Budget, cores: usize) -> (i32, i32) {
        let period = self.measure(budget);
        let before = self.level();
        (before, self.step(period, cores))
    }

    /// What the time since the previous call measured, against `budget`.
    fn measure(&self, budget: &Budget) -> Period {
        let at = Instant::now();
        let rate = budget.bytes_per_sec();
        let now = LevelWindow {
            at,
            budget_waited: budget.waited(),
            target_waited: self.targets().total_at(at),
            compressing: self.compressing(),
            compressed_bytes: self.compressed_bytes.load(Ordering::Relaxed),
            taken: budget.taken(),
            tokens: if rate > 0 { budget.tokens() } else { 0.0 },
            behind: budget.behind(),
        };
        let then = std::mem::replace(&mut *self.window.lock(), now);
        let wall = now.at.duration_since(then.at);
        let secs = wall.as_secs_f64().max(1e-9);
        let compressing = now.compressing.saturating_sub(then.compressing);
        if rate > 0 {
            // The bucket earned `offered`; what it neither gave out nor kept overflowed its
            // burst: link time nobody used. Classes idle all period sit at their cap and
            // cancel out.
            let offered = rate as f64 * secs;
            let taken = now.taken.saturating_sub(then.taken) as f64;
            let overflow = then.tokens - now.tokens + offered - taken;
            let share = |now: Duration, then: Duration| now.saturating_sub(then).as_secs_f64() / secs;
            tracing::debug!(
                late_share = share(now.behind.late, then.behind.late),
                idle_share = share(now.behind.idle, then.behind.idle),
                socket_unused_share = (now.behind.socket_unused_bytes - then.behind.socket_unused_bytes) / offered,
                "budget period"
            );
            Period {
                wall,
                waited: now.budget_waited.saturating_sub(then.budget_waited),
                compressing,
                wire_per_sec: rate as f64,
                unused: (overflow / offered).clamp(0.0, 1.0),
            }
        } else {
            let out = now.compressed_bytes.saturating_sub(then.compressed_bytes);
            Period {
                wall,
                waited: now.target_waited.saturating_sub(then.target_waited),
                compressing,
                wire_per_sec: out as f64 / secs,
                unused: 0.0,
            }
        }
    }

    /// One control step over `period`, on `cores`; see the module docs. Returns the new level.
    fn step(&self, period: Period, cores: usize) -> i32 {
        let wall = period.wall.as_secs_f64().max(1e-9);
        let cores = cores.max(1) as f64;
        let cpu_share = period.compressing.as_secs_f64() / (wall * cores);
        let link_bound = period.waited.as_secs_f64() / wall > LINK_BOUND;
        let spare = period.unused > SPARE;
        let current = self.level();
        let mut ceiling = self.ceiling.lock();
        let queued = period.waited.as_secs_f64() / wall > STARVED_WAIT;
        let starved = queued && spare && cpu_share > STARVED_CPU && cpu_share <= CPU_BOUND;
        ceiling.starved = if starved { ceiling.starved + 1 } else { 0 };
        let cap = if ceiling.periods > 0 {
            ceiling.periods -= 1;
            ceiling.level.max(current)
        } else {
            self.max
        };
        let mut model = self.model.lock();
        let known = |l: i32| model.estimate(l).is_some();
        let modelled = period.wire_per_sec > 0.0 && (self.min..=self.max).any(known);
        let fit = || model.fitting(period.wire_per_sec, CPU_SHARE * cores, self.min, self.max);
        let next = if link_bound && !spare && cpu_share < CPU_SHARE {
            let raised = match fit() {
                _ if !modelled => current + 1,
                Some(fit) if fit > current => fit,
                // The model knows nothing above: measure the next level.
                _ if !known(current + 1) => current + 1,
                _ => current,
            };
            raised.min(cap)
        } else if starved
            && ceiling.starved >= STARVED_PERIODS
            && ceiling.raised_from.is_some_and(|from| current > from)
        {
            // Starved after a raise: see the module docs.
            *ceiling = Ceiling {
                level: current - 1,
                periods: HOLD_PERIODS,
                starved: 0,
                raised_from: ceiling.raised_from,
            };
            current - 1
        } else if cpu_share > CPU_BOUND || (!link_bound && cpu_share > CPU_SHARE) {
            match fit() {
                _ if !modelled => current - 1,
                Some(fit) => fit.min(current - 1),
                // Not even the lowest level fits: the lowest costs least.
                None if known(self.min) => self.min,
                None => current - 1,
            }
        } else {
            current
        };
        model.age();
        let next = next.clamp(self.min, self.max);
        if next > current {
            ceiling.raised_from = Some(current);
        } else if ceiling.raised_from.is_some_and(|from| next <= from) {
            ceiling.raised_from = None;
        }
        tracing::debug!(
            level = current,
            next,
            waited_share = period.waited.as_secs_f64() / wall,
            unused_share = period.unused,
            cpu_share,
            ceiling = (ceiling.periods > 0).then_some(ceiling.level),
            "zstd level period"
        );
        self.level.store(next, Ordering::Relaxed);
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: f64 = 1_000_000.0;

    /// `mb` MB compressed at `level`, `ratio` times smaller, at `speed_mb` MB/s.
    fn batch(c: &LevelControl, level: i32, mb: f64, ratio: f64, speed_mb: f64) {
        c.record_compress(
            level,
            (mb * MB) as usize,
            (mb * MB / ratio) as usize,
            Duration::from_secs_f64(mb / speed_mb),
        );
    }

    /// The curve of the tests: 400 MB/s at level 1, 30% slower each level up; ratio from 5 at
    /// level 1 to 10 at level 19.
    fn curve(level: i32) -> (f64, f64) {
        (400.0 * 0.7f64.powi(level - 1), 5.0 + f64::from(level - 1) * 5.0 / 18.0)
    }

    /// A control seeded with [`curve`] at every level, as the calibration does.
    fn seeded(level: i32, min: i32, max: i32) -> LevelControl {
        let c = LevelControl::new(level, min, max);
        let seed: Vec<Sample> = (1..=19)
            .map(|l| {
                let (speed, ratio) = curve(l);
                Sample {
                    level: l,
                    uncompressed: 400_000,
                    compressed: (400_000.0 / ratio) as u64,
                    took: Duration::from_secs_f64(0.4 / speed),
                }
            })
            .collect();
        c.seed(&seed);
        c
    }

    /// A period of 2 s.
    fn period(waited_secs: f64, compressing_secs: f64, wire_per_sec: f64) -> Period {
        Period {
            wall: Duration::from_secs(2),
            waited: Duration::from_secs_f64(waited_secs),
            compressing: Duration::from_secs_f64(compressing_secs),
            wire_per_sec,
            unused: 0.0,
        }
    }

    /// A period of 2 s in which `unused` of the budget's bytes went to nobody.
    fn starved(waited_secs: f64, compressing_secs: f64, unused: f64) -> Period {
        Period {
            unused,
            ..period(waited_secs, compressing_secs, 200_000.0)
        }
    }

    #[test]
    fn a_link_left_part_unused_after_a_raise_undoes_it_and_holds_it() {
        // The model says 16 fits 200 kB/s within half of two cores.
        let c = seeded(14, 1, 19);
        // Unused link with no raise to blame (the ramp after a cut): the level holds.
        for _ in 0..3 {
            assert_eq!(c.step(starved(1.6, 1.0, 0.1), 2), 14);
        }
        // A full period: up to 16.
        assert_eq!(c.step(period(1.8, 1.0, 200_000.0), 2), 16);
        // Senders queued most of the period, yet 10% of the budget went unused, compression at
        // a quarter of the cores: once may be a ramp, twice in a row is one level down.
        assert_eq!(c.step(starved(1.6, 1.0, 0.1), 2), 16);
        assert_eq!(c.step(starved(1.6, 1.0, 0.1), 2), 15);
        // A full period between starved ones starts the count again.
        assert_eq!(c.step(starved(1.6, 1.0, 0.1), 2), 15);
        assert_eq!(c.step(period(1.8, 1.0, 200_000.0), 2), 15);
        assert_eq!(c.step(starved(1.6, 1.0, 0.1), 2), 15);
        assert_eq!(c.step(starved(1.6, 1.0, 0.1), 2), 14);
        // Down to where the raise started, and no further.
        for _ in 0..4 {
            assert_eq!(c.step(starved(1.6, 1.0, 0.1), 2), 14);
        }
        // Full again: the fitting level (16) is above the ceiling (14) for a while (30
        // periods from the drop, four of them gone)...
        for _ in 4..HOLD_PERIODS {
            assert_eq!(c.step(period(1.8, 1.0, 200_000.0), 2), 14);
        }
        // ...then tried again.
        assert_eq!(c.step(period(1.8, 1.0, 200_000.0), 2), 16);
    }

    #[test]
    fn unused_link_without_compression_to_blame_holds_the_level() {
        let c = seeded(12, 1, 19);
        // Compression at 10% of the cores cannot be why batches were late: hold.
        assert_eq!(c.step(starved(1.6, 0.4, 0.2), 2), 12);
        assert_eq!(c.step(starved(1.6, 0.4, 0.2), 2), 12);
        // Senders hardly waited (live traffic under the budget): nothing was late; hold.
        assert_eq!(c.step(starved(0.1, 1.0, 0.2), 2), 12);
        assert_eq!(c.step(starved(0.1, 1.0, 0.2), 2), 12);
        // A link used to within the margin is full: up to the fitting level.
        assert_eq!(c.step(starved(1.6, 1.0, 0.02), 2), 16);
        // At 16, senders queue a fifth of each period and a tenth of the link goes unused:
        // batches are late, though the link is not the limit by half the period; down.
        assert_eq!(c.step(starved(0.4, 1.0, 0.1), 2), 16);
        assert_eq!(c.step(starved(0.4, 1.0, 0.1), 2), 15);
    }

    #[tokio::test(start_paused = true)]
    async fn the_budgets_unused_share_is_measured_from_its_bucket() {
        // 100 kB/s, a burst of 10 kB, batches of 20 kB.
        let budget = Budget::new(100_000, 10_000, Vec::new());
        let c = LevelControl::new(12, 1, 19);
        // Two senders keep it busy for 2 s: all of it taken.
        c.measure(&budget);
        saturate(&budget).await;
        let full = c.measure(&budget);
        assert!(full.unused < 0.01, "{full:?}");
        assert!(full.waited > Duration::from_secs(1), "{full:?}");
        // One sender takes four batches back to back (waiting out each one's debt), then is
        // busy elsewhere for 0.5 s, over and over: it waits 0.6 s of every 1.1 s, and the bucket
        // fills to its burst and overflows for 0.2 s of every 1.1 s (18%).
        let until = Instant::now() + Duration::from_millis(2200);
        while Instant::now() < until {
            for _ in 0..4 {
                budget.acquire("spans", 20_000).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let starved = c.measure(&budget);
        assert!((0.15..0.21).contains(&starved.unused), "{starved:?}");
        assert!(
            starved.waited.as_secs_f64() / starved.wall.as_secs_f64() > LINK_BOUND,
            "{starved:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_budget_the_target_is_the_link() {
        let budget = Budget::unlimited();
        let c = LevelControl::new(3, 1, 12);
        let s = Duration::from_secs;
        // Writers wait on a slow target most of the time, compression is light: level up, one
        // step since nothing is known above level 3.
        {
            let _a = c.wait_for_target();
            let _b = c.wait_for_target();
            tokio::time::advance(s(2)).await;
        }
        batch(&c, 3, 8.0, 8.0, 40.0);
        assert_eq!(c.adapt(&budget, 2), (3, 4));
        // Nothing waits and compression takes most of both cores: level down.
        tokio::time::advance(s(2)).await;
        batch(&c, 4, 8.0, 8.0, 8.0 / 3.0);
        assert_eq!(c.adapt(&budget, 2), (4, 3));
        // Neither: the level holds.
        tokio::time::advance(s(2)).await;
        batch(&c, 3, 4.0, 8.0, 40.0);
        assert_eq!(c.adapt(&budget, 2), (3, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn many_writers_waiting_at_once_count_once() {
        let budget = Budget::unlimited();
        let c = LevelControl::new(3, 1, 12);
        let s = Duration::from_secs;
        // A thousand writers waiting together for 0.4 s of a 2 s period: not link-bound.
        tokio::time::advance(s(1)).await;
        {
            let waits: Vec<_> = (0..1000).map(|_| c.wait_for_target()).collect();
            tokio::time::advance(Duration::from_millis(400)).await;
            drop(waits);
        }
        tokio::time::advance(Duration::from_millis(600)).await;
        assert_eq!(c.adapt(&budget, 2), (3, 3));
        // One writer still waiting when the period ends counts up to that instant.
        let _w = c.wait_for_target();
        tokio::time::advance(s(2)).await;
        assert_eq!(c.adapt(&budget, 2), (3, 4));
    }

    /// Two senders keep `budget` busy for 2 s of paused time.
    async fn saturate(budget: &Budget) {
        let until = Instant::now() + Duration::from_secs(2);
        let send = || async {
            while Instant::now() < until {
                budget.acquire("spans", 20_000).await;
            }
        };
        tokio::join!(send(), send());
    }

    #[tokio::test(start_paused = true)]
    async fn under_a_budget_only_budget_waits_count() {
        let budget = Budget::new(1_000_000, 0, Vec::new());
        let c = LevelControl::new(3, 1, 12);
        // A slow target is not the budget: no reason to compress harder.
        let waiting = c.wait_for_target();
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(c.adapt(&budget, 2), (3, 3));
        drop(waiting);
        // Senders queue for the budget: the link is the limit.
        saturate(&budget).await;
        assert!(budget.waited() > Duration::from_secs(1), "{:?}", budget.waited());
        assert_eq!(c.adapt(&budget, 2), (3, 4));
    }

    #[tokio::test(start_paused = true)]
    async fn under_a_budget_the_level_goes_to_the_one_that_fits_in_one_period() {
        // 200 kB/s with a backlog, two cores, CPU free: at level 16 the curve needs
        // 0.2 * 9.17 / 1.90 = 0.97 s of compression per second, within half of two cores; at
        // 17, 0.2 * 9.44 / 1.33 = 1.42 s, not.
        let budget = Budget::new(200_000, 0, Vec::new());
        let c = seeded(3, 1, 19);
        let (speed, ratio) = curve(3);
        // Real batches at level 3 behave as the calibration said.
        batch(&c, 3, 0.4, ratio, speed);
        saturate(&budget).await;
        assert_eq!(c.adapt(&budget, 2), (3, 16));
        // Measured at 16 as expected, the link still the limit: it stays.
        let (speed, ratio) = curve(16);
        batch(&c, 16, 1.8, ratio, speed);
        saturate(&budget).await;
        assert_eq!(c.adapt(&budget, 2), (16, 16));
    }

    #[test]
    fn the_level_drops_in_one_period_when_cpu_becomes_the_bottleneck() {
        let c = seeded(16, 1, 19);
        let (speed, ratio) = curve(3);
        batch(&c, 3, 0.4, ratio, speed);
        // Other work takes the cores: level 16 compresses at a third of its speed and takes
        // 90% of both cores. With the correction interpolated between level 3 (1) and level 16
        // (1/3), level 13 needs 0.2 * 8.33 / (5.54 * 0.49) = 0.62 s per second, level 14
        // 0.2 * 8.61 / (3.88 * 0.44) = 1.02 s: 13 is the one that fits.
        let (speed, ratio) = curve(16);
        batch(&c, 16, 1.2, ratio, speed / 3.0);
        assert_eq!(c.step(period(1.9, 3.6, 200_000.0), 2), 13);
        // The budget is raised tenfold (SIGHUP): compression cannot keep up; down at once.
        let d = seeded(16, 1, 19);
        let (speed, ratio) = curve(16);
        batch(&d, 16, 1.8, ratio, speed);
        // At 2 MB/s, level 10 needs 2 * 7.5 / 16.1 = 0.93 s per second, level 11 1.38 s.
        assert_eq!(d.step(period(0.2, 3.6, 2_000_000.0), 2), 10);
    }

    #[test]
    fn jumps_respect_min_and_max() {
        let c = seeded(3, 1, 9);
        assert_eq!(c.step(period(1.8, 0.1, 200_000.0), 2), 9);
        // Nothing fits a link of 1 GB/s: the lowest allowed level.
        let d = seeded(12, 5, 19);
        assert_eq!(d.step(period(0.0, 3.8, 1e9), 2), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_budget_the_target_rate_sets_the_level() {
        let budget = Budget::unlimited();
        let c = seeded(3, 1, 19);
        // Writers wait for the target all period; it took 0.36 MB of level-3 batches in 2 s:
        // 0.18 MB/s, at which level 16 needs 0.87 s per second and 17 needs 1.28 s.
        let (speed, ratio) = curve(3);
        {
            let _w = c.wait_for_target();
            tokio::time::advance(Duration::from_secs(2)).await;
        }
        batch(&c, 3, 0.36 * ratio, ratio, speed);
        assert_eq!(c.adapt(&budget, 2), (3, 16));
        assert_eq!(c.sustainable(180_000.0, 2), Some(16));
    }

    #[test]
    fn raising_never_lowers_and_keeps_to_the_bounds() {
        let c = LevelControl::new(3, 1, 12);
        assert_eq!(c.raise_to(16), 12);
        assert_eq!(c.raise_to(5), 12);
        assert_eq!(c.level(), 12);
    }

    #[test]
    fn without_measurements_the_level_moves_one_step() {
        let c = LevelControl::new(3, 1, 19);
        assert_eq!(c.sustainable(200_000.0, 2), None);
        assert_eq!(c.step(period(1.6, 0.4, 200_000.0), 2), 4);
        assert_eq!(c.step(period(1.6, 0.4, 200_000.0), 2), 5);
        assert_eq!(c.step(period(0.0, 3.6, 200_000.0), 2), 4);
        assert_eq!(c.step(period(0.4, 0.4, 200_000.0), 2), 4);
        let top = LevelControl::new(19, 1, 19);
        assert_eq!(top.step(period(2.0, 0.0, 200_000.0), 2), 19);
    }
}
