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
//! below TLS) writes what was admitted in 8 KiB chunks at the budget plus 0.5%, with the same
//! burst as admission (so a writer woken late catches up). So a 1 MiB batch admitted on credit
//! trickles out instead of bursting, and any window exceeds the budget by at most 0.5% plus one
//! burst, whatever the batch size.
//!
//! Layout: `bucket` holds the token arithmetic (no clock, no runtime: times are passed in);
//! `waiter` the [`Budget`] that senders wait on and the socket pace; `level` the
//! [`LevelControl`]; `model` its speed and ratio per level (pure); `calibrate` the start-up
//! measurement that seeds it; `cpu` the CPU time both measure compression in; `compress` where
//! batches compress and how many at once.

mod bucket;
mod calibrate;
mod compress;
mod cpu;
mod level;
mod model;
mod waiter;

use std::time::Duration;

pub use crate::config::WeightRule;
pub use calibrate::CalibrateError;
pub use cpu::CpuTimer;
pub use level::{LevelControl, TargetWait, CPU_SHARE};
pub use model::{Estimate, LevelModel, Sample, MAX_LEVEL};
pub use waiter::{Behind, Budget, WeightsNeedRestart};

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
