//! The WAN bandwidth budget: one token bucket on the bytes strait sends to the target, shared by
//! every partition, split between topic classes by weight when several are backlogged, and
//! changeable at run time. Plus the adaptive zstd level that spends CPU to fit more data into
//! the budget.
//!
//! Fairness: each weight class gets `rate * weight / (sum of the weights of active classes)`; a
//! class is active while it waits or has sent within the last second, so an idle class's share
//! goes to the others. Within a class, waiters are served first come, first served, so no
//! partition starves. Tokens may go negative by one batch (a batch is never split), and the next
//! sender of that class waits until the debt is paid: the long-run rate is the budget.
//!
//! Two levels: batch admission ([`Budget::acquire`]) decides who sends and sets the long-run
//! rate; the socket pace (the [`crate::kafka::Pace`] impl, applied to every target connection
//! below TLS) writes what was admitted in 8 KiB chunks at the budget plus 0.5%. So a 1 MiB batch
//! admitted on credit trickles out instead of bursting, and any window exceeds the budget by at
//! most 0.5% plus one chunk, whatever the batch size.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use regex::Regex;
use tokio::time::Instant;

/// How long a class stays active after its last send.
const ACTIVE_FOR: Duration = Duration::from_secs(1);
/// Waiters look again at least this often, so a budget change takes effect quickly.
const RECHECK: Duration = Duration::from_millis(100);
/// How far the socket pace may run above the budget: room for what batch admission does not
/// see (TLS records, checkpoints, metadata), so the socket only smooths and does not queue.
const SOCKET_HEADROOM: f64 = 1.005;

/// Errors of the budget settings.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A weight rule is not `regex=weight`.
    #[error("budget.weights entry {entry:?} is not REGEX=WEIGHT with a positive weight, e.g. \"jaeger-.*=3\"")]
    Rule { entry: String },
    /// A weight rule's regex does not compile.
    #[error("budget.weights entry {entry:?} has an invalid regex")]
    Regex {
        entry: String,
        #[source]
        source: regex::Error,
    },
}

/// A parsed weight rule: topics fully matching `regex` share `weight`.
#[derive(Clone, Debug)]
pub struct WeightRule {
    regex: Regex,
    weight: f64,
}

impl WeightRule {
    /// Parses `REGEX=WEIGHT`.
    pub fn parse(entry: &str) -> Result<Self, Error> {
        let (pattern, weight) = entry.rsplit_once('=').ok_or_else(|| Error::Rule {
            entry: entry.to_owned(),
        })?;
        let weight: f64 = weight
            .trim()
            .parse()
            .ok()
            .filter(|w: &f64| w.is_finite() && *w > 0.0)
            .ok_or_else(|| Error::Rule {
                entry: entry.to_owned(),
            })?;
        let regex = Regex::new(&format!("^(?:{})$", pattern.trim())).map_err(|source| Error::Regex {
            entry: entry.to_owned(),
            source,
        })?;
        Ok(Self { regex, weight })
    }
}

#[derive(Debug)]
struct Class {
    weight: f64,
    tokens: f64,
    waiting: usize,
    last_active: Option<Instant>,
    gate: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug)]
struct State {
    /// Bytes per second; 0 = unlimited.
    rate: f64,
    /// Total burst, split between classes by weight.
    burst: f64,
    classes: Vec<Class>,
    last_refill: Instant,
}

impl State {
    fn active(&self, now: Instant, c: &Class) -> bool {
        c.waiting > 0 || c.last_active.is_some_and(|t| now.duration_since(t) < ACTIVE_FOR)
    }

    /// Bytes per second class `i` gets now.
    fn share(&self, now: Instant, i: usize) -> f64 {
        let total: f64 = self
            .classes
            .iter()
            .enumerate()
            .filter(|(j, c)| *j == i || self.active(now, c))
            .map(|(_, c)| c.weight)
            .sum();
        self.rate * self.classes[i].weight / total
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.duration_since(self.last_refill).as_secs_f64();
        self.last_refill = now;
        if dt <= 0.0 {
            return;
        }
        let total_weight: f64 = self.classes.iter().map(|c| c.weight).sum();
        for i in 0..self.classes.len() {
            let share = self.share(now, i);
            let cap = self.burst * self.classes[i].weight / total_weight;
            let c = &mut self.classes[i];
            c.tokens = (c.tokens + share * dt).min(cap);
        }
    }
}

/// The shared budget. Cheap to clone behind an `Arc`.
#[derive(Debug)]
pub struct Budget {
    rules: Vec<WeightRule>,
    state: Mutex<State>,
    /// The rate in bytes per second, for the unlimited fast path and for batch sizing.
    rate: AtomicU64,
    classify: Mutex<HashMap<String, usize>>,
    /// Nanoseconds senders spent waiting for tokens (link-bound time), for the level control.
    waited_nanos: AtomicU64,
    /// The socket pace: bytes written below TLS, in chunks, at the budget plus headroom.
    socket: Mutex<SocketBucket>,
}

/// Tokens of the socket pace: a burst of one chunk, a debt of at most one chunk.
#[derive(Debug)]
struct SocketBucket {
    tokens: f64,
    last_refill: Instant,
}

impl Budget {
    /// A budget of `bytes_per_sec` (0 = unlimited) with `burst_bytes` (0 = a tenth of a
    /// second of budget) and weight rules; topics matching no rule form one class of weight 1.
    pub fn new(bytes_per_sec: u64, burst_bytes: u64, rules: Vec<WeightRule>) -> Self {
        let mut classes: Vec<Class> = rules.iter().map(|r| class(r.weight)).collect();
        classes.push(class(1.0));
        let burst = effective_burst(bytes_per_sec, burst_bytes);
        for c in &mut classes {
            c.tokens = 0.0;
        }
        Self {
            rules,
            state: Mutex::new(State {
                rate: bytes_per_sec as f64,
                burst,
                classes,
                last_refill: Instant::now(),
            }),
            rate: AtomicU64::new(bytes_per_sec),
            classify: Mutex::new(HashMap::new()),
            waited_nanos: AtomicU64::new(0),
            socket: Mutex::new(SocketBucket {
                tokens: 0.0,
                last_refill: Instant::now(),
            }),
        }
    }

    /// No limit.
    pub fn unlimited() -> Self {
        Self::new(0, 0, Vec::new())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Only plain arithmetic happens under the lock.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The budget in bytes per second (0 = unlimited).
    pub fn bytes_per_sec(&self) -> u64 {
        self.rate.load(Ordering::Relaxed)
    }

    /// Changes the budget at run time; waiting senders see it within [`RECHECK`].
    pub fn set(&self, bytes_per_sec: u64, burst_bytes: u64) {
        let now = Instant::now();
        let mut st = self.state();
        st.refill(now);
        st.rate = bytes_per_sec as f64;
        st.burst = effective_burst(bytes_per_sec, burst_bytes);
        self.rate.store(bytes_per_sec, Ordering::Relaxed);
    }

    /// Total time senders have waited for tokens.
    pub fn waited(&self) -> Duration {
        Duration::from_nanos(self.waited_nanos.load(Ordering::Relaxed))
    }

    fn class_of(&self, topic: &str) -> usize {
        let mut cache = self.classify.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&i) = cache.get(topic) {
            return i;
        }
        let i = self
            .rules
            .iter()
            .position(|r| r.regex.is_match(topic))
            .unwrap_or(self.rules.len());
        cache.insert(topic.to_owned(), i);
        i
    }

    /// Waits until `bytes` for `topic` fit the budget, then spends them.
    pub async fn acquire(&self, topic: &str, bytes: usize) {
        if self.bytes_per_sec() == 0 {
            return;
        }
        let i = self.class_of(topic);
        let gate = Arc::clone(&self.state().classes[i].gate);
        let _turn = gate.lock().await;
        let started = Instant::now();
        self.state().classes[i].waiting += 1;
        loop {
            let wait = {
                let now = Instant::now();
                let mut st = self.state();
                st.refill(now);
                if st.rate == 0.0 || st.classes[i].tokens >= 0.0 {
                    let c = &mut st.classes[i];
                    c.tokens -= bytes as f64;
                    c.waiting -= 1;
                    c.last_active = Some(now);
                    break;
                }
                let share = st.share(now, i);
                Duration::from_secs_f64((-st.classes[i].tokens / share).max(0.0))
            };
            tokio::time::sleep(wait.clamp(Duration::from_millis(1), RECHECK)).await;
        }
        let waited = started.elapsed();
        self.waited_nanos.fetch_add(nanos(waited), Ordering::Relaxed);
        metrics::gauge!(crate::telemetry::BUDGET_THROTTLE).set(self.waited().as_secs_f64());
    }

    /// Tokens (bytes) left over all classes; negative while senders pay off a batch.
    pub fn tokens(&self) -> f64 {
        let now = Instant::now();
        let mut st = self.state();
        st.refill(now);
        st.classes.iter().map(|c| c.tokens).sum()
    }
}

/// The socket side: every byte written to a target socket, below TLS, paced at the budget plus
/// [`SOCKET_HEADROOM`]. Batch admission ([`Budget::acquire`]) sets the long-run rate and the
/// split between topics; this keeps a batch admitted on credit from leaving as one burst, so
/// batches can be large (better compression) and any window still stays near the budget.
impl crate::kafka::Pace for Budget {
    fn delay(&self) -> Duration {
        let rate = self.bytes_per_sec() as f64 * SOCKET_HEADROOM;
        if rate == 0.0 {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let mut s = self.socket.lock().unwrap_or_else(|p| p.into_inner());
        let dt = now.duration_since(s.last_refill).as_secs_f64();
        s.last_refill = now;
        s.tokens = (s.tokens + dt * rate).min(crate::kafka::CHUNK_BYTES as f64);
        if s.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.tokens / rate)
        }
    }

    fn spent(&self, bytes: usize) {
        if self.bytes_per_sec() == 0 {
            return;
        }
        let mut s = self.socket.lock().unwrap_or_else(|p| p.into_inner());
        s.tokens -= bytes as f64;
    }
}

fn class(weight: f64) -> Class {
    Class {
        weight,
        tokens: 0.0,
        waiting: 0,
        last_active: None,
        gate: Arc::new(tokio::sync::Mutex::new(())),
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn effective_burst(bytes_per_sec: u64, burst_bytes: u64) -> f64 {
    if burst_bytes > 0 {
        burst_bytes as f64
    } else {
        (bytes_per_sec as f64 / 10.0).max(16.0 * 1024.0)
    }
}

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

    fn targets(&self) -> std::sync::MutexGuard<'_, TargetWaits> {
        // Only counters change under the lock.
        self.target.lock().unwrap_or_else(|p| p.into_inner())
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
        let then = std::mem::replace(&mut *self.window.lock().unwrap_or_else(|p| p.into_inner()), now);
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

    async fn drain_for(budget: Arc<Budget>, topic: &'static str, chunk: usize, until: Instant) -> usize {
        let mut sent = 0;
        while Instant::now() < until {
            budget.acquire(topic, chunk).await;
            sent += chunk;
        }
        sent
    }

    #[tokio::test(start_paused = true)]
    async fn long_run_rate_equals_the_budget() {
        let budget = Arc::new(Budget::new(100_000, 10_000, Vec::new()));
        let until = Instant::now() + Duration::from_secs(100);
        let sent = drain_for(budget, "spans", 1_000, until).await;
        // 100 s at 100 kB/s, plus at most the burst and one chunk.
        assert!((10_000_000..=10_011_000).contains(&sent), "{sent}");
    }

    #[tokio::test(start_paused = true)]
    async fn weights_split_the_budget_between_backlogged_topics() {
        let rules = vec![WeightRule::parse("jaeger-.*=3").expect("rule")];
        let budget = Arc::new(Budget::new(100_000, 10_000, rules));
        let until = Instant::now() + Duration::from_secs(60);
        let spans = tokio::spawn(drain_for(Arc::clone(&budget), "jaeger-spans", 1_000, until));
        let logs = tokio::spawn(drain_for(Arc::clone(&budget), "app-logs", 1_000, until));
        let (spans, logs) = (spans.await.expect("spans"), logs.await.expect("logs"));
        let ratio = spans as f64 / logs as f64;
        assert!((2.8..=3.2).contains(&ratio), "spans {spans} logs {logs}");
        let total = spans + logs;
        assert!((5_950_000..=6_050_000).contains(&total), "{total}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_class_leaves_its_share_to_the_others() {
        let rules = vec![WeightRule::parse("jaeger-.*=3").expect("rule")];
        let budget = Arc::new(Budget::new(100_000, 10_000, rules));
        let until = Instant::now() + Duration::from_secs(30);
        let logs = drain_for(budget, "app-logs", 1_000, until).await;
        assert!(logs >= 2_950_000, "{logs}");
    }

    #[tokio::test(start_paused = true)]
    async fn no_partition_starves() {
        let budget = Arc::new(Budget::new(50_000, 5_000, Vec::new()));
        let until = Instant::now() + Duration::from_secs(60);
        let tasks: Vec<_> = (0..10)
            .map(|_| tokio::spawn(drain_for(Arc::clone(&budget), "spans", 2_000, until)))
            .collect();
        let mut sent = Vec::new();
        for t in tasks {
            sent.push(t.await.expect("task"));
        }
        let mean = sent.iter().sum::<usize>() as f64 / sent.len() as f64;
        assert!(sent.iter().all(|&s| s as f64 > 0.8 * mean), "{sent:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_runtime_change_takes_effect_within_a_second() {
        let budget = Arc::new(Budget::new(100_000, 10_000, Vec::new()));
        let start = Instant::now();
        let sender = tokio::spawn(drain_for(
            Arc::clone(&budget),
            "spans",
            1_000,
            start + Duration::from_secs(21),
        ));
        tokio::time::sleep(Duration::from_secs(10)).await;
        budget.set(10_000, 1_000);
        let sent = sender.await.expect("sender");
        // 10 s at 100 kB/s, then up to 1 s more at the old rate, then 10 s at 10 kB/s.
        assert!((1_090_000..=1_225_000).contains(&sent), "{sent}");
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits() {
        let budget = Budget::unlimited();
        let start = Instant::now();
        for _ in 0..1000 {
            budget.acquire("spans", 1 << 20).await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(crate::kafka::Pace::delay(&budget), Duration::ZERO);
    }

    /// Writes one admitted batch the way a paced socket does: chunk by chunk, each when the
    /// pace allows, logging (time, bytes).
    async fn write_paced(budget: &Budget, mut bytes: usize, log: &tokio::sync::Mutex<Vec<(Instant, usize)>>) {
        use crate::kafka::{Pace, CHUNK_BYTES};
        let mut log = log.lock().await;
        while bytes > 0 {
            let delay = budget.delay();
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
                continue;
            }
            let n = bytes.min(CHUNK_BYTES);
            budget.spent(n);
            log.push((Instant::now(), n));
            bytes -= n;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn large_batches_leave_at_the_budget_in_every_ten_second_window() {
        // 200 kB/s with the default burst; four partitions sending 1 MiB batches over one
        // connection (one writer at a time, as a connection's writer task does).
        let budget = Arc::new(Budget::new(200_000, 0, Vec::new()));
        let log = Arc::new(tokio::sync::Mutex::new(Vec::new()));
        let start = Instant::now();
        let until = start + Duration::from_secs(120);
        let senders: Vec<_> = (0..4)
            .map(|_| {
                let (budget, log) = (Arc::clone(&budget), Arc::clone(&log));
                tokio::spawn(async move {
                    while Instant::now() < until {
                        budget.acquire("spans", 1 << 20).await;
                        write_paced(&budget, 1 << 20, &log).await;
                    }
                })
            })
            .collect();
        for s in senders {
            s.await.expect("sender");
        }
        let log = log.lock().await;
        let total: usize = log.iter().filter(|(t, _)| *t < until).map(|(_, n)| n).sum();
        let utilization = total as f64 / (200_000.0 * 120.0);
        assert!(utilization >= 0.97, "utilization {utilization}");
        // Every 10 s window, sliding by 100 ms from the first byte.
        let mut worst: f64 = 0.0;
        let mut from = start;
        while from + Duration::from_secs(10) <= until {
            let to = from + Duration::from_secs(10);
            let bytes: usize = log.iter().filter(|(t, _)| *t >= from && *t < to).map(|(_, n)| n).sum();
            worst = worst.max(bytes as f64 / 2_000_000.0);
            from += Duration::from_millis(100);
        }
        assert!(worst <= 1.02, "worst 10 s window at {worst} of the budget");
        assert!(worst >= 1.0, "the budget is used: worst window {worst}");
    }

    #[test]
    fn weight_rules_are_checked() {
        assert!(WeightRule::parse("spans=2").is_ok());
        assert!(WeightRule::parse("spans").is_err());
        assert!(WeightRule::parse("spans=0").is_err());
        assert!(WeightRule::parse("spans=-1").is_err());
        assert!(matches!(WeightRule::parse("spans(=1"), Err(Error::Regex { .. })));
    }

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
