//! The one polling helper of the suite: [`eventually`] asks a probe again and again until it
//! answers yes or a generous deadline passes, then fails naming what was awaited and the last
//! answer. For state that has no notification of its own (strait's progress table, a cluster's
//! metadata, an HTTP endpoint, a log file); never a timed assertion: the deadline only ends a
//! test that would otherwise hang, so it is long, and never shorter than [`MIN_DEADLINE`].

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

/// No deadline is shorter than this: the machines that run the suite are shared and noisy.
pub const MIN_DEADLINE: Duration = Duration::from_secs(60);

/// How long between two questions.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// What a probe answers: done (with a value), or not yet (with what it saw instead).
pub trait Outcome {
    /// What [`eventually`] returns once the probe is done.
    type Value;
    /// `Ok` when done; `Err` describes what was observed instead.
    fn settle(self) -> Result<Self::Value, String>;
}

impl Outcome for bool {
    type Value = ();
    fn settle(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("false".to_owned())
        }
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn settle(self) -> Result<T, String> {
        self.ok_or_else(|| "None".to_owned())
    }
}

/// `Err(observed)`: not yet, and `observed` is what the failure message shows.
impl<T, E: Debug> Outcome for Result<T, E> {
    type Value = T;
    fn settle(self) -> Result<T, String> {
        self.map_err(|e| format!("{e:?}"))
    }
}

/// Polls `probe` until it answers done (`true`, `Some`, `Ok`) and returns its value; panics
/// after `deadline` (at least [`MIN_DEADLINE`]) naming `what` and the last answer.
pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut probe: F) -> <Fut::Output as Outcome>::Value
where
    F: FnMut() -> Fut,
    Fut: Future,
    Fut::Output: Outcome,
{
    let deadline = deadline.max(MIN_DEADLINE);
    let started = Instant::now();
    loop {
        let last = match probe().await.settle() {
            Ok(v) => return v,
            Err(last) => last,
        };
        assert!(
            started.elapsed() < deadline,
            "waited {deadline:?} for {what}; last observed: {last}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// [`eventually`] for a probe that asks nothing remote: `probe` runs synchronously.
pub async fn eventually_sync<T: Outcome>(what: &str, deadline: Duration, mut probe: impl FnMut() -> T) -> T::Value {
    eventually(what, deadline, || std::future::ready(probe())).await
}
