//! The shared [`Budget`]: the buckets of [`super::bucket`] behind a lock and read against the
//! runtime's clock, batch senders queued for them per weight class, and the socket pace.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};
use tokio::time::Instant;

use super::bucket::{self, effective_burst, Shares};
use super::{nanos, WeightRule};

/// Waiters look again at least this often, so a budget change takes effect quickly.
const RECHECK: Duration = Duration::from_millis(100);
/// How far the socket pace may run above the budget: room for what batch admission does not
/// see (TLS records, checkpoints, metadata), so the socket only smooths and does not queue.
const SOCKET_HEADROOM: f64 = 1.005;

/// The shared budget. Cheap to clone behind an `Arc`.
#[derive(Debug)]
pub struct Budget {
    /// The weight rules in force: their patterns are fixed at start, their weights may change.
    rules: Mutex<Vec<WeightRule>>,
    /// The time the buckets count from.
    origin: Instant,
    state: Mutex<Shares>,
    /// One queue per weight class: its senders are served first come, first served.
    gates: Vec<tokio::sync::Mutex<()>>,
    /// The rate in bytes per second, for the unlimited fast path and for batch sizing.
    rate: AtomicU64,
    classify: Mutex<HashMap<String, usize>>,
    /// Nanoseconds senders spent waiting for tokens (link-bound time), for the level control.
    waited_nanos: AtomicU64,
    /// Bytes admitted so far (waited for or charged), for the level control's link use.
    taken: AtomicU64,
    /// Time the tokens a sender found had been there when it took them, in nanoseconds: after
    /// a sleep (woken late), or at once (no sender was waiting). Diagnostics of link time lost.
    late_nanos: AtomicU64,
    idle_nanos: AtomicU64,
    /// The socket pace: bytes written below TLS, in chunks, at the budget plus headroom.
    socket: Mutex<bucket::Pace>,
}

impl Budget {
    /// A budget of `bytes_per_sec` (0 = unlimited) with `burst_bytes` (0 = a tenth of a
    /// second of budget) and weight rules; topics matching no rule form one class of weight 1.
    pub fn new(bytes_per_sec: u64, burst_bytes: u64, rules: Vec<WeightRule>) -> Self {
        let weights: Vec<f64> = rules.iter().map(WeightRule::weight).chain([1.0]).collect();
        let gates = weights.iter().map(|_| tokio::sync::Mutex::new(())).collect();
        let origin = Instant::now();
        Self {
            rules: Mutex::new(rules),
            origin,
            state: Mutex::new(Shares::new(
                bytes_per_sec as f64,
                effective_burst(bytes_per_sec, burst_bytes),
                weights,
                Duration::ZERO,
            )),
            gates,
            rate: AtomicU64::new(bytes_per_sec),
            classify: Mutex::new(HashMap::new()),
            waited_nanos: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            late_nanos: AtomicU64::new(0),
            idle_nanos: AtomicU64::new(0),
            socket: Mutex::new(bucket::Pace::new(
                socket_burst(bytes_per_sec, burst_bytes),
                Duration::ZERO,
            )),
        }
    }

    /// No limit.
    pub fn unlimited() -> Self {
        Self::new(0, 0, Vec::new())
    }

    /// The runtime's clock as the buckets count it.
    fn now(&self) -> Duration {
        Instant::now().duration_since(self.origin)
    }

    fn state(&self) -> MutexGuard<'_, Shares> {
        // Only plain arithmetic happens under the lock.
        self.state.lock()
    }

    /// The budget in bytes per second (0 = unlimited).
    pub fn bytes_per_sec(&self) -> u64 {
        self.rate.load(Ordering::Relaxed)
    }

    /// Changes the budget at run time; waiting senders see it within [`RECHECK`].
    pub fn set(&self, bytes_per_sec: u64, burst_bytes: u64) {
        let now = self.now();
        let mut st = self.state();
        st.set(bytes_per_sec as f64, effective_burst(bytes_per_sec, burst_bytes), now);
        self.rate.store(bytes_per_sec, Ordering::Relaxed);
        self.socket.lock().set_burst(socket_burst(bytes_per_sec, burst_bytes));
    }

    /// Changes the weights of the rules at run time. Only weights can change: the classes and
    /// the topics in them are fixed at start, so rules whose patterns (or order) differ are
    /// refused, naming what would need a restart. `Ok(false)` when nothing changed.
    pub fn set_weights(&self, rules: Vec<WeightRule>) -> Result<bool, WeightsNeedRestart> {
        let mut current = self.rules.lock();
        if *current == rules {
            return Ok(false);
        }
        let patterns = |rules: &[WeightRule]| rules.iter().map(|r| r.pattern().to_owned()).collect::<Vec<_>>();
        if patterns(&current) != patterns(&rules) {
            return Err(WeightsNeedRestart {
                now: current.iter().map(ToString::to_string).collect(),
                asked: rules.iter().map(ToString::to_string).collect(),
            });
        }
        let now = self.now();
        let weights = rules.iter().map(WeightRule::weight).chain([1.0]);
        self.state().set_weights(weights, now);
        *current = rules;
        Ok(true)
    }

    /// The weight rules in force, as written (`REGEX=WEIGHT`).
    pub fn weights(&self) -> Vec<String> {
        self.rules.lock().iter().map(ToString::to_string).collect()
    }

    /// Senders waiting for tokens now (one at most per weight class: the others queue behind it).
    pub fn waiting(&self) -> usize {
        self.state().waiting()
    }

    /// Total time senders have waited for tokens.
    pub fn waited(&self) -> Duration {
        Duration::from_nanos(self.waited_nanos.load(Ordering::Relaxed))
    }

    /// Total bytes admitted, by [`Budget::acquire`] and [`Budget::charge`].
    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    /// Where link time went unused so far, for the level control's log.
    pub fn behind(&self) -> Behind {
        Behind {
            late: Duration::from_nanos(self.late_nanos.load(Ordering::Relaxed)),
            idle: Duration::from_nanos(self.idle_nanos.load(Ordering::Relaxed)),
            socket_unused_bytes: self.socket.lock().unused(),
        }
    }

    fn class_of(&self, topic: &str) -> usize {
        let mut cache = self.classify.lock();
        if let Some(&i) = cache.get(topic) {
            return i;
        }
        let rules = self.rules.lock();
        let i = rules.iter().position(|r| r.matches(topic)).unwrap_or(rules.len());
        cache.insert(topic.to_owned(), i);
        i
    }

    /// Waits until `bytes` for `topic` fit the budget, then spends them.
    pub async fn acquire(&self, topic: &str, bytes: usize) {
        if self.bytes_per_sec() == 0 {
            return;
        }
        let i = self.class_of(topic);
        let _turn = self.gates[i].lock().await;
        let started = Instant::now();
        self.state().enqueue(i);
        // Cancel-safe: a sender dropped while it waits stops counting as waiting.
        let mut waiting = Waiting { budget: self, class: i };
        let mut slept = false;
        loop {
            let now = self.now();
            let taken = {
                let mut st = self.state();
                // On success, the tokens found before taking, in seconds of the class's share.
                st.take(i, bytes as f64, now)
                    .map(|()| (st.class_tokens(i, now) + bytes as f64) / st.share(now, i))
            };
            match taken {
                Ok(ahead) => {
                    // How long the link's share waited for this sender: woken late (it slept)
                    // or arrived after the tokens were there.
                    let behind = if slept { &self.late_nanos } else { &self.idle_nanos };
                    if ahead > 0.0 {
                        behind.fetch_add(nanos(Duration::from_secs_f64(ahead.min(1e6))), Ordering::Relaxed);
                    }
                    break;
                }
                Err(wait) => {
                    slept = true;
                    tokio::time::sleep(wait.clamp(Duration::from_millis(1), RECHECK)).await;
                }
            }
        }
        waiting.served();
        self.taken.fetch_add(bytes as u64, Ordering::Relaxed);
        let waited = started.elapsed();
        self.waited_nanos.fetch_add(nanos(waited), Ordering::Relaxed);
        crate::telemetry::BUDGET_THROTTLED.add(waited);
    }

    /// Takes `bytes` for `topic` at once, on credit, ahead of the senders waiting in its class:
    /// a fresh-first catch-up's new records, which must not queue behind the backlog's batches.
    /// The waiting senders pay for them, so the long-run rate holds.
    pub fn charge(&self, topic: &str, bytes: usize) {
        if self.bytes_per_sec() == 0 {
            return;
        }
        let i = self.class_of(topic);
        let now = self.now();
        self.state().charge(i, bytes as f64, now);
        self.taken.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Tokens (bytes) left over all classes; negative while senders pay off a batch.
    pub fn tokens(&self) -> f64 {
        let now = self.now();
        self.state().tokens(now)
    }
}

/// The socket pace's burst: the budget's, and one chunk at least.
fn socket_burst(bytes_per_sec: u64, burst_bytes: u64) -> f64 {
    effective_burst(bytes_per_sec, burst_bytes).max(crate::kafka::CHUNK_BYTES as f64)
}

/// New `budget.weights` rules that change more than weights: a restart applies them.
#[derive(Debug, thiserror::Error)]
#[error(
    "budget.weights {asked:?} changes the rules' patterns (in force: {now:?}): only weights change at run time, \
     restart strait to apply new patterns"
)]
pub struct WeightsNeedRestart {
    pub now: Vec<String>,
    pub asked: Vec<String>,
}

/// Link time lost so far, as [`Budget::behind`] counts it (diagnostics; `late` and `idle`
/// overlap what the bucket kept).
#[derive(Debug, Default, Clone, Copy)]
pub struct Behind {
    /// Time the tokens a sender took had waited for it, summed, when the sender slept first.
    pub late: Duration,
    /// The same when the sender arrived to find them there.
    pub idle: Duration,
    /// Bytes the socket pace offered that no write took.
    pub socket_unused_bytes: f64,
}

/// A sender waiting in [`Budget::acquire`]; dropped before it is served, it leaves its class.
struct Waiting<'a> {
    budget: &'a Budget,
    class: usize,
}

impl Waiting<'_> {
    fn served(&mut self) {
        self.class = usize::MAX;
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.class != usize::MAX {
            self.budget.state().leave(self.class);
        }
    }
}

/// The socket side: every byte written to a target socket, below TLS, paced at the budget plus
/// [`SOCKET_HEADROOM`]. Batch admission ([`Budget::acquire`]) sets the long-run rate and the
/// split between topics; this keeps a batch admitted on credit from leaving as one burst, so
/// batches can be large (better compression) and any window still stays near the budget.
///
/// The pace holds the budget's burst (a tenth of a second by default, one chunk at least), as
/// admission does: a writer woken late (on 2 busy cores, often by 10-30 ms) writes what it
/// earned meanwhile. With a burst of one chunk (8 ms at 1 MB/s) every late wake lost link
/// time: 7-11% of the budget through a catch-up's drain while admission kept up (catch-up
/// run 14, `socket_unused_share` in the level log). A 10 s window exceeds the budget by at
/// most the headroom plus one burst (1.5% at the default).
impl crate::kafka::Pace for Budget {
    fn delay(&self) -> Duration {
        let rate = self.bytes_per_sec() as f64 * SOCKET_HEADROOM;
        if rate == 0.0 {
            return Duration::ZERO;
        }
        let now = self.now();
        let mut s = self.socket.lock();
        s.delay(rate, now)
    }

    fn spent(&self, bytes: usize) {
        if self.bytes_per_sec() == 0 {
            return;
        }
        let mut s = self.socket.lock();
        s.spend(bytes as f64);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

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
    async fn a_charge_goes_at_once_and_the_next_sender_pays_for_it() {
        let budget = Budget::new(100_000, 10_000, Vec::new());
        budget.acquire("spans", 10_000).await;
        let started = tokio::time::Instant::now();
        // On credit, however deep the debt.
        budget.charge("spans", 50_000);
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert!(budget.tokens() < -40_000.0, "{}", budget.tokens());
        // The next sender waits out both.
        budget.acquire("spans", 1).await;
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_sender_that_gives_up_waiting_leaves_its_share_to_the_others() {
        let rules = vec![WeightRule::parse("jaeger-.*=3").expect("rule")];
        let budget = Arc::new(Budget::new(100_000, 10_000, rules));
        // Deep in debt, the next jaeger sender waits; it is dropped while it does.
        budget.acquire("jaeger-spans", 1_000_000).await;
        let gave_up = tokio::time::timeout(Duration::from_millis(100), budget.acquire("jaeger-spans", 1_000)).await;
        assert!(
            gave_up.is_err(),
            "the premise: the sender was still waiting when dropped"
        );
        let until = Instant::now() + Duration::from_secs(60);
        let logs = drain_for(Arc::clone(&budget), "app-logs", 1_000, until).await;
        // Alone, logs get the whole rate once jaeger's share lapses; a jaeger sender still
        // counted as waiting would hold three quarters of it for ever.
        assert!(logs > 4_500_000, "{logs}");
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
    async fn a_socket_writer_woken_late_writes_what_it_earned_meanwhile() {
        use crate::kafka::{Pace, CHUNK_BYTES};
        // 1 MB/s, the default burst: a tenth of a second.
        let budget = Budget::new(1_000_000, 0, Vec::new());
        // Write until the pace says wait: what was earned is spent.
        while budget.delay().is_zero() {
            budget.spent(CHUNK_BYTES);
        }
        let due = budget.delay();
        assert!(due > Duration::ZERO && due <= Duration::from_millis(9), "{due:?}");
        // The writer wakes 60 ms after it was due.
        tokio::time::sleep(due + Duration::from_millis(60)).await;
        let mut at_once = 0;
        while budget.delay().is_zero() {
            budget.spent(CHUNK_BYTES);
            at_once += CHUNK_BYTES;
        }
        // About 60 ms of the budget (60 kB) goes at once: none of it was lost. A one-chunk
        // burst let one chunk go and lost the rest.
        assert!((56_000..=72_000).contains(&at_once), "{at_once} bytes at once");
        // Long idle earns one burst at the most.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let mut at_once = 0;
        while budget.delay().is_zero() {
            budget.spent(CHUNK_BYTES);
            at_once += CHUNK_BYTES;
        }
        assert!(
            (100_000..=100_000 + CHUNK_BYTES).contains(&at_once),
            "{at_once} bytes after 10 s idle"
        );
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
    async fn weights_changed_at_run_time_split_the_budget_anew_and_new_patterns_are_refused() {
        let rule = |r: &str| WeightRule::parse(r).expect("rule");
        let budget = Arc::new(Budget::new(100_000, 10_000, vec![rule("jaeger-.*=3")]));
        assert!(
            !budget.set_weights(vec![rule("jaeger-.*=3")]).expect("the same rules"),
            "nothing changed"
        );
        assert!(budget.set_weights(vec![rule("jaeger-.*=1")]).expect("same pattern"));
        assert_eq!(budget.weights(), ["jaeger-.*=1"]);
        let until = Instant::now() + Duration::from_secs(60);
        let spans = tokio::spawn(drain_for(Arc::clone(&budget), "jaeger-spans", 1_000, until));
        let logs = tokio::spawn(drain_for(Arc::clone(&budget), "app-logs", 1_000, until));
        let (spans, logs) = (spans.await.expect("spans"), logs.await.expect("logs"));
        let ratio = spans as f64 / logs as f64;
        assert!(
            (0.9..=1.1).contains(&ratio),
            "equal weights now: spans {spans} logs {logs}"
        );
        let refused = budget
            .set_weights(vec![rule("jaeger-.*=1"), rule("logs-.*=2")])
            .expect_err("a new pattern needs a restart");
        assert!(refused.to_string().contains("restart"), "{refused}");
        assert_eq!(budget.weights(), ["jaeger-.*=1"], "unchanged");
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
}
