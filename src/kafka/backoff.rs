use std::time::Duration;

/// Capped exponential backoff with jitter, for retrying retriable errors.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starts at `base`, doubles per attempt, never waits longer than `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self { base, cap, attempt: 0 }
    }

    /// The delay before the next attempt: `min(cap, base * 2^attempt)`, jittered down by up to
    /// a quarter so that partitions retrying together spread out.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(20));
        self.attempt = self.attempt.saturating_add(1);
        let full = exp.min(self.cap);
        let jitter = rand::random::<f64>() * 0.25;
        full.mul_f64(1.0 - jitter)
    }

    /// How many delays were handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Back to the base delay after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let first = b.next_delay();
        assert!(first <= Duration::from_millis(100) && first >= Duration::from_millis(75));
        let second = b.next_delay();
        assert!(second >= Duration::from_millis(150), "{second:?}");
        for _ in 0..30 {
            assert!(b.next_delay() <= Duration::from_secs(1));
        }
        assert!(b.next_delay() >= Duration::from_millis(750));
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
