//! One way to retry a request: a capped, jittered [`Backoff`] between attempts, retriable
//! errors only ([`Error::is_retriable`]), until the request succeeds, a non-retriable error
//! comes, or the policy's limit is reached: a cancellation (the data path: it retries for as
//! long as strait runs) or a deadline (the checkpoint store: it gives up after its budget).
//! What a caller does on each retry (metrics, a log line, a leader refresh) is its hook.
//! Errors that settle soon (a partition or coordinator being taken up) back off to
//! [`SETTLING_CAP`] only.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Backoff, Error};

/// The longest delay before retrying an error that [`Error::settles_soon`]: a partition of a
/// topic just created answers NOT_LEADER_OR_FOLLOWER until its broker has taken it up (seconds
/// to tens of seconds for thousands of partitions on a busy node), and with the outage cap of
/// 10 s a partition found ready just after an attempt waited up to 10 s more.
pub const SETTLING_CAP: Duration = Duration::from_secs(2);

/// Where retrying stops short of a success.
#[derive(Clone, Copy, Debug)]
pub enum Until<'a> {
    /// Retry until cancelled.
    Cancelled(&'a CancellationToken),
    /// Retry while the next attempt would start before `at`; with `woken`, try at once when it
    /// is notified (its cluster reconnected) during an attempt or the delay after it.
    Deadline {
        at: Instant,
        woken: Option<&'a tokio::sync::Notify>,
    },
    /// Retry until cancelled, and try at once when `woken` is notified (its cluster reconnected)
    /// during an attempt or the delay after it.
    Woken {
        cancel: &'a CancellationToken,
        woken: &'a tokio::sync::Notify,
    },
}

impl<'a> Until<'a> {
    /// What cancels the retries, if anything does.
    fn cancel(self) -> Option<&'a CancellationToken> {
        match self {
            Until::Cancelled(cancel) | Until::Woken { cancel, .. } => Some(cancel),
            Until::Deadline { .. } => None,
        }
    }

    /// What ends a delay early, if anything does.
    fn woken(self) -> Option<&'a tokio::sync::Notify> {
        match self {
            Until::Woken { woken, .. } => Some(woken),
            Until::Deadline { woken, .. } => woken,
            Until::Cancelled(_) => None,
        }
    }
}

/// Waits for `token` to be cancelled; never, without one.
async fn cancelled(token: Option<&CancellationToken>) {
    match token {
        Some(t) => t.cancelled().await,
        None => std::future::pending().await,
    }
}

/// How a retried request ended.
#[derive(Debug)]
pub enum Retried<T> {
    /// It succeeded.
    Done(T),
    /// It failed with a non-retriable error, or with a retriable one past the deadline.
    Failed { error: Error, attempts: u32 },
    /// Cancelled first.
    Cancelled,
}

/// Runs `op` until it succeeds, fails for good, or `until` says stop; `on_retry` sees each
/// retriable failure with its attempt number and the delay before the next attempt.
pub async fn retry<T, F, Fut>(
    mut backoff: Backoff,
    until: Until<'_>,
    mut op: F,
    mut on_retry: impl FnMut(&Error, u32, Duration),
) -> Retried<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut attempts = 0u32;
    // The same growth, capped at SETTLING_CAP, for errors that settle soon.
    let mut settling = backoff.capped(SETTLING_CAP);
    loop {
        attempts = attempts.saturating_add(1);
        // Registered before the attempt: a reconnect while it runs also ends the delay after it.
        let woken = until.woken().map(tokio::sync::Notify::notified);
        tokio::pin!(woken);
        if let Some(w) = woken.as_mut().as_pin_mut() {
            w.enable();
        }
        let outcome = tokio::select! {
            biased;
            () = cancelled(until.cancel()) => return Retried::Cancelled,
            r = op() => r,
        };
        let error = match outcome {
            Ok(v) => return Retried::Done(v),
            Err(e) if e.is_retriable() => e,
            Err(error) => return Retried::Failed { error, attempts },
        };
        let delay = if error.settles_soon() {
            settling.next_delay()
        } else {
            backoff.next_delay()
        };
        match until {
            Until::Deadline { at, .. } if Instant::now() + delay > at => {
                return Retried::Failed { error, attempts };
            }
            _ => {}
        }
        on_retry(&error, attempts, delay);
        let woken = async {
            match woken.as_mut().as_pin_mut() {
                Some(w) => w.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = cancelled(until.cancel()) => return Retried::Cancelled,
            () = tokio::time::sleep(delay) => {}
            () = woken => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost() -> Error {
        Error::ConnectionLost {
            broker: "b:9092".into(),
            source: None,
        }
    }

    fn fatal() -> Error {
        Error::UnsupportedApi {
            broker: "b:9092".into(),
            api: super::super::ApiKey::Produce,
            ours: "3-11".into(),
            theirs: "none".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retriable_errors_are_retried_until_success_and_each_is_seen() {
        let cancel = CancellationToken::new();
        let mut calls = 0;
        let mut seen = Vec::new();
        let out = retry(
            Backoff::default(),
            Until::Cancelled(&cancel),
            || {
                calls += 1;
                let n = calls;
                async move {
                    if n < 4 {
                        Err(lost())
                    } else {
                        Ok(n)
                    }
                }
            },
            |_, attempt, _| seen.push(attempt),
        )
        .await;
        assert!(matches!(out, Retried::Done(4)), "{out:?}");
        assert_eq!(seen, vec![1, 2, 3]);
    }

    fn not_leader() -> Error {
        Error::Partition {
            api: super::super::ApiKey::ListOffsets,
            topic: "spans".into(),
            partition: 0,
            code: crate::kafka::ResponseError::NotLeaderOrFollower,
            message: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_partition_being_taken_up_is_retried_at_most_every_two_seconds_an_outage_backs_off_to_ten() {
        for (error, longest) in [(not_leader(), SETTLING_CAP), (lost(), Duration::from_secs(10))] {
            let cancel = CancellationToken::new();
            let mut calls = 0;
            let mut delays = Vec::new();
            let failing = error.clone();
            let out = retry(
                Backoff::default(),
                Until::Cancelled(&cancel),
                || {
                    calls += 1;
                    let (n, e) = (calls, failing.clone());
                    async move {
                        if n <= 12 {
                            Err(e)
                        } else {
                            Ok(n)
                        }
                    }
                },
                |_, _, delay| delays.push(delay),
            )
            .await;
            assert!(matches!(out, Retried::Done(13)), "{out:?}");
            let max = delays.iter().copied().max().expect("retried");
            assert!(max <= longest, "{error}: {delays:?}");
            // Twelve doublings from 100 ms reach each cap (less a quarter of jitter at most).
            assert!(max >= longest.mul_f64(0.75), "{error}: {delays:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconnect_ends_the_delay_at_once_also_when_it_came_during_the_attempt() {
        // The data path (until cancelled) and the checkpoint store (until a deadline) alike.
        for deadline in [false, true] {
            a_reconnect_ends_the_delay(deadline).await;
        }
    }

    async fn a_reconnect_ends_the_delay(deadline: bool) {
        let (cancel, woken) = (CancellationToken::new(), tokio::sync::Notify::new());
        let start = Instant::now();
        let mut calls = 0;
        let mut delays = Vec::new();
        let until = if deadline {
            Until::Deadline {
                at: start + Duration::from_secs(600),
                woken: Some(&woken),
            }
        } else {
            Until::Woken {
                cancel: &cancel,
                woken: &woken,
            }
        };
        let out = retry(
            Backoff::default(),
            until,
            || {
                calls += 1;
                let (n, woken) = (calls, &woken);
                async move {
                    match n {
                        // Long enough to back off to the 10 s cap.
                        ..=10 => Err(lost()),
                        // The cluster comes back while this attempt fails.
                        11 => {
                            woken.notify_waiters();
                            Err(lost())
                        }
                        _ => Ok(n),
                    }
                }
            },
            |_, _, delay| delays.push(delay),
        )
        .await;
        assert!(matches!(out, Retried::Done(12)), "deadline {deadline}: {out:?}");
        let before: Duration = delays[..10].iter().sum();
        assert!(
            delays[10] >= Duration::from_millis(7500),
            "premise: at the cap, {delays:?}"
        );
        assert!(
            start.elapsed() < before + Duration::from_millis(100),
            "deadline {deadline}: {:?} after {before:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_non_retriable_error_ends_at_once() {
        let cancel = CancellationToken::new();
        let out: Retried<()> = retry(
            Backoff::default(),
            Until::Cancelled(&cancel),
            || async { Err(fatal()) },
            |_, _, _| panic!("not retried"),
        )
        .await;
        assert!(matches!(out, Retried::Failed { attempts: 1, .. }), "{out:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_ends_with_the_last_error_and_a_cancel_ends_at_once() {
        let deadline = Instant::now() + Duration::from_secs(2);
        let out: Retried<()> = retry(
            Backoff::default(),
            Until::Deadline {
                at: deadline,
                woken: None,
            },
            || async { Err(lost()) },
            |_, _, _| {},
        )
        .await;
        match out {
            Retried::Failed { error, attempts } => {
                assert!(error.is_retriable());
                assert!(attempts > 2, "{attempts}");
                assert!(Instant::now() <= deadline);
            }
            other => panic!("{other:?}"),
        }
        let cancel = CancellationToken::new();
        cancel.cancel();
        let out: Retried<()> = retry(
            Backoff::default(),
            Until::Cancelled(&cancel),
            std::future::pending,
            |_, _, _| {},
        )
        .await;
        assert!(matches!(out, Retried::Cancelled));
    }
}
