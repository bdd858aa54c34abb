use std::time::Duration;

use tokio::time::Instant;

use super::Error;

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

    /// A backoff with the same base, never waiting longer than `cap` (nor this one's cap).
    pub fn capped(&self, cap: Duration) -> Self {
        Self::new(self.base, cap.min(self.cap))
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

/// When one connection slot (a broker address and lane) may try to connect again. After a
/// failed connect, every caller gets that failure back at once, without a new attempt, until a
/// capped, jittered exponential delay has passed since the failed attempt *began*; a connect
/// that succeeds resets it. So the connection attempts to a cluster that cannot be reached stay
/// bounded per slot (one per delay, or per connect timeout when that is longer), however many
/// partitions retry through it; and on a black-holed path, where an attempt lasts its whole
/// timeout, the next one starts as the last gives up, so the attempts follow each other without
/// a pause (each sending a SYN every third of a second, `super::dial`) and a link that comes
/// back is used within a fraction of a second, not a timeout plus a delay.
#[derive(Debug)]
pub struct ReconnectGate {
    backoff: Backoff,
    /// The last failure and when the next attempt may start.
    failed: Option<(Instant, Error)>,
}

impl Default for ReconnectGate {
    fn default() -> Self {
        Self::new(Self::BASE, Self::CAP)
    }
}

impl ReconnectGate {
    /// The delay after the first failed connect.
    pub const BASE: Duration = Duration::from_millis(100);
    /// The longest delay between two connects of one slot.
    pub const CAP: Duration = Duration::from_secs(2);

    /// A gate whose delays start at `base` and never exceed `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            backoff: Backoff::new(base, cap),
            failed: None,
        }
    }

    /// The last failure while the delay after it runs at `now`; `None`: connect.
    pub fn blocked(&self, now: Instant) -> Option<Error> {
        match &self.failed {
            Some((retry_at, e)) if now < *retry_at => Some(e.clone()),
            _ => None,
        }
    }

    /// A connect that began at `started` failed at `now`: the next one may begin the next
    /// delay after `started`, and not before `now`.
    pub fn failed(&mut self, started: Instant, now: Instant, error: Error) {
        let retry_at = (started + self.backoff.next_delay()).max(now);
        self.failed = Some((retry_at, error));
    }

    /// Another connection to the broker opened: the next caller may connect at once, and the
    /// next failure waits the base delay again.
    pub fn reopen(&mut self) {
        self.backoff.reset();
        self.failed = None;
    }

    /// A connect succeeded: the next failure waits the base delay again. Returns whether the
    /// attempt before it had failed (the slot recovered).
    pub fn connected(&mut self) -> bool {
        self.backoff.reset();
        self.failed.take().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> Error {
        Error::Connect {
            broker: "b:9092".into(),
            source: std::sync::Arc::new(std::io::ErrorKind::ConnectionRefused.into()),
        }
    }

    #[test]
    fn the_gate_bounds_attempts_whatever_the_callers_and_opens_within_the_cap() {
        let mut gate = ReconnectGate::default();
        let t0 = Instant::now();
        // 5,000 callers every 10 ms for 10 minutes against a broker that refuses at once.
        let mut attempts = 0u32;
        let mut per_minute = [0u32; 10];
        let mut now = t0;
        let end = t0 + Duration::from_secs(600);
        while now < end {
            if gate.blocked(now).is_none() {
                attempts += 1;
                per_minute[(now - t0).as_secs() as usize / 60] += 1;
                gate.failed(now, now, refused());
            }
            now += Duration::from_millis(10);
        }
        // At the cap, one attempt per 1.5-2 s (jitter takes up to a quarter off).
        let bound = (60.0 / (ReconnectGate::CAP.as_secs_f64() * 0.75)).ceil() as u32;
        assert!(per_minute[1..].iter().all(|&n| n <= bound), "{per_minute:?} > {bound}");
        assert!(per_minute[0] <= bound + 16, "{per_minute:?}");
        assert!(attempts >= 10 * 30, "never starved: {attempts}");
        // The failure comes back while blocked, the same error.
        let after = now;
        gate.failed(after, after, refused());
        assert!(matches!(gate.blocked(after), Some(Error::Connect { .. })));
        // Within the cap the gate opens again.
        assert!(gate.blocked(after + ReconnectGate::CAP).is_none());
        // A success resets the delay to the base.
        gate.connected();
        assert!(gate.blocked(after).is_none());
        gate.failed(after, after, refused());
        assert!(gate.blocked(after + ReconnectGate::BASE).is_none());
        // Another connection to the broker opened: this slot may connect at once.
        for _ in 0..20 {
            gate.failed(after, after, refused());
        }
        assert!(
            gate.blocked(after + ReconnectGate::BASE).is_some(),
            "premise: at the cap"
        );
        gate.reopen();
        assert!(gate.blocked(after).is_none());
        gate.failed(after, after, refused());
        assert!(
            gate.blocked(after + ReconnectGate::BASE).is_none(),
            "back to the base delay"
        );
    }

    #[test]
    fn an_attempt_that_lasts_its_timeout_is_followed_at_once_so_a_black_hole_gets_a_syn_a_second() {
        let mut gate = ReconnectGate::default();
        let timeout = crate::kafka::conn::CONNECT_TIMEOUT_MAX;
        let t0 = Instant::now();
        // Refused at once: the delays space the attempts, as before.
        for _ in 0..20 {
            gate.failed(t0, t0, refused());
        }
        assert!(
            gate.blocked(t0 + Duration::from_millis(1400)).is_some(),
            "at the cap the delay is >= 1.5 s"
        );
        // A black-holed path: every attempt waits its whole timeout. The next may begin as it
        // gives up, not a delay later.
        let mut start = t0;
        let mut starts = vec![];
        for _ in 0..30 {
            starts.push(start);
            let gave_up = start + timeout;
            gate.failed(start, gave_up, refused());
            assert!(
                gate.blocked(gave_up).is_none(),
                "blocked after an attempt that lasted {timeout:?}"
            );
            start = gave_up;
        }
        // One attempt per timeout (2 s), each sending SYNs at 0 and 1 s: a returning link
        // sees a SYN within about a second, and the attempts stay bounded (30 a minute).
        let per_minute = starts.iter().filter(|&&s| s < t0 + Duration::from_secs(60)).count();
        assert_eq!(per_minute, 30);
        assert!(
            timeout >= ReconnectGate::CAP.mul_f64(0.75),
            "the bench's bound assumes attempts >= 1.5 s apart"
        );
    }

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
