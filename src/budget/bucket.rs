//! The token buckets themselves: plain arithmetic, no clock and no runtime. A time is a
//! [`Duration`] since an origin the owner picks (the [`super::Budget`] uses its own creation),
//! so every rule here is tested with plain numbers.

use std::time::Duration;

/// How long a class stays active after its last send.
pub(super) const ACTIVE_FOR: Duration = Duration::from_secs(1);

/// One weight class of the batch-admission bucket.
#[derive(Debug)]
struct Class {
    weight: f64,
    tokens: f64,
    waiting: usize,
    last_active: Option<Duration>,
}

/// The batch-admission bucket: `rate` bytes per second split between weight classes. Each class
/// gets `rate * weight / (sum of the weights of active classes)`; a class is active while it has
/// waiters or has sent within [`ACTIVE_FOR`]. Each class holds at most its weight's part of
/// `burst`; tokens go negative by what a class takes on credit.
#[derive(Debug)]
pub(super) struct Shares {
    /// Bytes per second; 0 = unlimited.
    rate: f64,
    /// Total burst, split between classes by weight.
    burst: f64,
    classes: Vec<Class>,
    last_refill: Duration,
}

impl Shares {
    /// Empty classes of `weights` at `rate` bytes per second, holding at most `burst` bytes.
    pub(super) fn new(rate: f64, burst: f64, weights: impl IntoIterator<Item = f64>, now: Duration) -> Self {
        let classes = weights
            .into_iter()
            .map(|weight| Class {
                weight,
                tokens: 0.0,
                waiting: 0,
                last_active: None,
            })
            .collect();
        Self {
            rate,
            burst,
            classes,
            last_refill: now,
        }
    }

    fn active(&self, now: Duration, c: &Class) -> bool {
        c.waiting > 0 || c.last_active.is_some_and(|t| now.saturating_sub(t) < ACTIVE_FOR)
    }

    /// Bytes per second class `i` gets at `now`.
    pub(super) fn share(&self, now: Duration, i: usize) -> f64 {
        let total: f64 = self
            .classes
            .iter()
            .enumerate()
            .filter(|(j, c)| *j == i || self.active(now, c))
            .map(|(_, c)| c.weight)
            .sum();
        self.rate * self.classes[i].weight / total
    }

    /// Adds what each class earned since the last refill, up to its part of the burst.
    pub(super) fn refill(&mut self, now: Duration) {
        let dt = now.saturating_sub(self.last_refill).as_secs_f64();
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

    /// A new rate and burst from `now` on; what was earned before is kept.
    pub(super) fn set(&mut self, rate: f64, burst: f64, now: Duration) {
        self.refill(now);
        self.rate = rate;
        self.burst = burst;
    }

    /// New class weights from `now` on (as many as there are classes); what each class earned
    /// before is kept.
    pub(super) fn set_weights(&mut self, weights: impl IntoIterator<Item = f64>, now: Duration) {
        self.refill(now);
        for (c, w) in self.classes.iter_mut().zip(weights) {
            c.weight = w;
        }
    }

    /// A sender of class `i` starts waiting: the class counts as active until it is served.
    pub(super) fn enqueue(&mut self, i: usize) {
        self.classes[i].waiting += 1;
    }

    /// Senders waiting for tokens, over all classes.
    pub(super) fn waiting(&self) -> usize {
        self.classes.iter().map(|c| c.waiting).sum()
    }

    /// A waiting sender of class `i` gave up before it was served.
    pub(super) fn leave(&mut self, i: usize) {
        self.classes[i].waiting = self.classes[i].waiting.saturating_sub(1);
    }

    /// The waiting sender of class `i` asks for `bytes` at `now`: taken (possibly on credit)
    /// when the class has no debt or the budget is unlimited, else how long until the debt is
    /// paid at the class's share.
    pub(super) fn take(&mut self, i: usize, bytes: f64, now: Duration) -> Result<(), Duration> {
        self.refill(now);
        if self.rate == 0.0 || self.classes[i].tokens >= 0.0 {
            let c = &mut self.classes[i];
            c.tokens -= bytes;
            c.waiting -= 1;
            c.last_active = Some(now);
            return Ok(());
        }
        let share = self.share(now, i);
        Err(Duration::from_secs_f64((-self.classes[i].tokens / share).max(0.0)))
    }

    /// Class `i` takes `bytes` at `now` at once, on credit, whatever its debt: the senders
    /// waiting in it pay for them.
    pub(super) fn charge(&mut self, i: usize, bytes: f64, now: Duration) {
        self.refill(now);
        let c = &mut self.classes[i];
        c.tokens -= bytes;
        c.last_active = Some(now);
    }

    /// Tokens (bytes) of class `i` at `now`.
    pub(super) fn class_tokens(&mut self, i: usize, now: Duration) -> f64 {
        self.refill(now);
        self.classes[i].tokens
    }

    /// Tokens (bytes) over all classes at `now`; negative while senders pay off a batch.
    pub(super) fn tokens(&mut self, now: Duration) -> f64 {
        self.refill(now);
        self.classes.iter().map(|c| c.tokens).sum()
    }
}

/// The socket pace: a burst of `burst` bytes, a debt of at most one write beyond it.
#[derive(Debug)]
pub(super) struct Pace {
    tokens: f64,
    burst: f64,
    last_refill: Duration,
    /// Bytes earned beyond the burst: link time no write used.
    overflow: f64,
}

impl Pace {
    /// A pace holding at most `burst` bytes.
    pub(super) fn new(burst: f64, now: Duration) -> Self {
        Self {
            tokens: 0.0,
            burst,
            last_refill: now,
            overflow: 0.0,
        }
    }

    /// A new burst from the next [`Pace::delay`] on.
    pub(super) fn set_burst(&mut self, burst: f64) {
        self.burst = burst;
    }

    /// How long from `now` until the next write may go at `rate` bytes per second (> 0).
    pub(super) fn delay(&mut self, rate: f64, now: Duration) -> Duration {
        let dt = now.saturating_sub(self.last_refill).as_secs_f64();
        self.last_refill = now;
        let earned = self.tokens + dt * rate;
        self.overflow += (earned - self.burst).max(0.0);
        self.tokens = earned.min(self.burst);
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate)
        }
    }

    /// Records `bytes` written.
    pub(super) fn spend(&mut self, bytes: f64) {
        self.tokens -= bytes;
    }

    /// Bytes the pace offered that no write took (earned beyond its burst), up to the last
    /// [`Pace::delay`].
    pub(super) fn unused(&self) -> f64 {
        self.overflow
    }
}

/// The burst in bytes: `burst_bytes`, or when 0 a tenth of a second of `bytes_per_sec` and at
/// least 16 KiB.
pub(super) fn effective_burst(bytes_per_sec: u64, burst_bytes: u64) -> f64 {
    if burst_bytes > 0 {
        burst_bytes as f64
    } else {
        (bytes_per_sec as f64 / 10.0).max(16.0 * 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_class_earns_the_rate_up_to_the_burst() {
        let mut b = Shares::new(1_000.0, 5_000.0, [1.0], secs(0.0));
        assert_eq!(b.tokens(secs(0.0)), 0.0);
        assert_eq!(b.tokens(secs(2.0)), 2_000.0);
        assert_eq!(b.tokens(secs(100.0)), 5_000.0);
    }

    #[test]
    fn a_sender_takes_on_credit_and_the_next_waits_out_the_debt() {
        let mut b = Shares::new(1_000.0, 5_000.0, [1.0], secs(0.0));
        b.enqueue(0);
        assert_eq!(b.take(0, 3_000.0, secs(0.0)), Ok(()));
        assert_eq!(b.tokens(secs(0.0)), -3_000.0);
        b.enqueue(0);
        assert_eq!(b.take(0, 1_000.0, secs(1.0)), Err(secs(2.0)));
        assert_eq!(b.take(0, 1_000.0, secs(3.0)), Ok(()));
        assert_eq!(b.tokens(secs(3.0)), -1_000.0);
    }

    #[test]
    fn active_classes_split_the_rate_by_weight() {
        // Class 0 weight 3, class 1 weight 1; both waiting.
        let mut b = Shares::new(1_000.0, 100_000.0, [3.0, 1.0], secs(0.0));
        b.enqueue(0);
        b.enqueue(1);
        assert_eq!(b.share(secs(0.0), 0), 750.0);
        assert_eq!(b.share(secs(0.0), 1), 250.0);
        b.refill(secs(4.0));
        assert_eq!(b.take(0, 0.0, secs(4.0)), Ok(()));
        assert_eq!(b.take(1, 0.0, secs(4.0)), Ok(()));
        assert_eq!(b.tokens(secs(4.0)), 4_000.0);
    }

    #[test]
    fn an_idle_class_leaves_its_share_to_the_others() {
        let mut b = Shares::new(1_000.0, 100_000.0, [3.0, 1.0], secs(0.0));
        // Nobody waits and nobody sent: each class alone would get the whole rate.
        assert_eq!(b.share(secs(0.0), 1), 1_000.0);
        // Class 0 sends at 10 s: active for one second, then idle again.
        b.enqueue(0);
        assert_eq!(b.take(0, 0.0, secs(10.0)), Ok(()));
        assert_eq!(b.share(secs(10.5), 1), 250.0);
        assert_eq!(b.share(secs(11.0), 1), 1_000.0);
    }

    #[test]
    fn the_burst_is_split_by_weight() {
        let mut b = Shares::new(1_000.0, 4_000.0, [3.0, 1.0], secs(0.0));
        b.refill(secs(100.0));
        assert_eq!(b.tokens(secs(100.0)), 4_000.0);
        b.enqueue(1);
        // Class 1 holds at most a quarter of the burst: it can take 1 000 and still have no debt.
        assert_eq!(b.take(1, 1_000.0, secs(100.0)), Ok(()));
        assert_eq!(b.tokens(secs(100.0)), 3_000.0);
    }

    #[test]
    fn a_new_rate_applies_from_the_change_on() {
        let mut b = Shares::new(1_000.0, 100_000.0, [1.0], secs(0.0));
        b.set(100.0, 100_000.0, secs(10.0));
        assert_eq!(b.tokens(secs(10.0)), 10_000.0);
        assert_eq!(b.tokens(secs(20.0)), 11_000.0);
    }

    #[test]
    fn unlimited_always_admits() {
        let mut b = Shares::new(0.0, 16_384.0, [1.0], secs(0.0));
        b.enqueue(0);
        assert_eq!(b.take(0, 1e9, secs(0.0)), Ok(()));
        b.enqueue(0);
        assert_eq!(b.take(0, 1e9, secs(0.0)), Ok(()));
    }

    #[test]
    fn the_pace_holds_one_burst_and_waits_out_its_debt() {
        let mut p = Pace::new(500.0, secs(0.0));
        assert_eq!(p.delay(1_000.0, secs(0.0)), Duration::ZERO);
        p.spend(500.0);
        assert_eq!(p.delay(1_000.0, secs(0.0)), secs(0.5));
        assert_eq!(p.delay(1_000.0, secs(0.5)), Duration::ZERO);
        assert_eq!(p.unused(), 0.0);
        // A long idle time earns one burst at the most; the rest went unused.
        assert_eq!(p.delay(1_000.0, secs(60.0)), Duration::ZERO);
        assert_eq!(p.unused(), 59_000.0);
        p.spend(1_500.0);
        assert_eq!(p.delay(1_000.0, secs(60.0)), secs(1.0));
    }

    #[test]
    fn the_default_burst_is_a_tenth_of_a_second_and_at_least_16_kib() {
        assert_eq!(effective_burst(1_000_000, 0), 100_000.0);
        assert_eq!(effective_burst(1_000, 0), 16_384.0);
        assert_eq!(effective_burst(1_000_000, 5_000), 5_000.0);
    }
}
