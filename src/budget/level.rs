//! The adaptive zstd level: spends CPU to fit more data into the link when the link is the
//! limit, and gives it back when compression is.

use parking_lot::{Mutex, MutexGuard};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::{nanos, Budget};

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
    /// Writers waiting for the target with their in-flight window full.
    target: Mutex<TargetWaits>,
    /// The counters at the last [`LevelControl::adapt`].
    window: Mutex<LevelWindow>,
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
}

impl LevelControl {
    /// Starts at `level`, kept within `min..=max`.
    pub fn new(level: i32, min: i32, max: i32) -> Self {
        Self {
            level: AtomicI32::new(level.clamp(min, max)),
            min,
            max,
            compress_nanos: AtomicU64::new(0),
            target: Mutex::new(TargetWaits::default()),
            window: Mutex::new(LevelWindow {
                at: Instant::now(),
                budget_waited: Duration::ZERO,
                target_waited: Duration::ZERO,
                compressing: Duration::ZERO,
            }),
        }
    }

    /// The level to compress the next batch with.
    pub fn level(&self) -> i32 {
        self.level.load(Ordering::Relaxed)
    }

    /// Records time spent compressing one batch.
    pub fn record_compress(&self, took: Duration) {
        self.compress_nanos.fetch_add(nanos(took), Ordering::Relaxed);
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
        let at = Instant::now();
        let now = LevelWindow {
            at,
            budget_waited: budget.waited(),
            target_waited: self.targets().total_at(at),
            compressing: self.compressing(),
        };
        let then = std::mem::replace(&mut *self.window.lock(), now);
        let waited = if budget.bytes_per_sec() > 0 {
            now.budget_waited.saturating_sub(then.budget_waited)
        } else {
            now.target_waited.saturating_sub(then.target_waited)
        };
        let before = self.level();
        let after = self.step(
            now.at.duration_since(then.at),
            waited,
            now.compressing.saturating_sub(then.compressing),
            cores,
        );
        (before, after)
    }

    /// One control step over a period of `wall` in which senders waited `waited` for the
    /// link and compression took `compressing` of CPU (summed over partitions), on `cores`.
    /// Link-bound (waiting most of the time) with CPU to spare: one level up. Compression using
    /// most of the CPU while the link is not the limit: one level down. Returns the new level.
    fn step(&self, wall: Duration, waited: Duration, compressing: Duration, cores: usize) -> i32 {
        let wall = wall.as_secs_f64().max(1e-9);
        let cpu_share = compressing.as_secs_f64() / (wall * cores.max(1) as f64);
        let link_bound = waited.as_secs_f64() / wall > 0.5;
        let current = self.level();
        let next = if link_bound && cpu_share < 0.5 {
            current + 1
        } else if cpu_share > 0.8 || (!link_bound && cpu_share > 0.5) {
            current - 1
        } else {
            current
        };
        let next = next.clamp(self.min, self.max);
        self.level.store(next, Ordering::Relaxed);
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn without_a_budget_the_target_is_the_link() {
        let budget = Budget::unlimited();
        let c = LevelControl::new(3, 1, 12);
        let s = Duration::from_secs;
        // Writers wait on a slow target most of the time, compression is light: level up.
        {
            let _a = c.wait_for_target();
            let _b = c.wait_for_target();
            tokio::time::advance(s(2)).await;
        }
        c.record_compress(Duration::from_millis(200));
        assert_eq!(c.adapt(&budget, 2), (3, 4));
        // Nothing waits and compression takes most of both cores: level down.
        tokio::time::advance(s(2)).await;
        c.record_compress(s(3));
        assert_eq!(c.adapt(&budget, 2), (4, 3));
        // Neither: the level holds.
        tokio::time::advance(s(2)).await;
        c.record_compress(Duration::from_millis(100));
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
        let until = Instant::now() + Duration::from_secs(2);
        let (a, b) = tokio::join!(
            async {
                while Instant::now() < until {
                    budget.acquire("spans", 100_000).await;
                }
            },
            async {
                while Instant::now() < until {
                    budget.acquire("spans", 100_000).await;
                }
            }
        );
        let ((), ()) = (a, b);
        assert!(budget.waited() > Duration::from_secs(1), "{:?}", budget.waited());
        assert_eq!(c.adapt(&budget, 2), (3, 4));
    }

    #[test]
    fn level_rises_when_link_bound_and_falls_when_cpu_bound() {
        let c = LevelControl::new(3, 1, 19);
        let s = Duration::from_secs;
        assert_eq!(c.step(s(5), s(4), s(1), 2), 4);
        assert_eq!(c.step(s(5), s(4), s(1), 2), 5);
        assert_eq!(c.step(s(5), s(0), s(9), 2), 4);
        assert_eq!(c.step(s(5), s(1), s(1), 2), 4);
        let top = LevelControl::new(19, 1, 19);
        assert_eq!(top.step(s(5), s(5), s(0), 2), 19);
    }
}
