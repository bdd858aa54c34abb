//! The data path of one partition, as a pipeline of stages, each a type with its inputs and
//! outputs, pure where it can be:
//!
//! ```text
//!            source cluster                                                target cluster
//!                  │ Fetch (wire::Fetch)                                         ▲ Produce
//!                  ▼                                                             │ (wire::Produce)
//!  ┌────────────────────────────┐  Chunk / Gap   ┌────────────────────────────────┴─────────────┐
//!  │ fetch::Fetcher             │ ─────────────► │ sink::Sink                                   │
//!  │  reserve the fetch buffer  │  bounded mpsc  │  batch::Batcher   gather, due, build (zstd)  │
//!  │  unpack::unpack (CRC,      │  (2 answers)   │  memory::BatchMemory   batch memory share    │
//!  │   codec, transactions)     │                │  send::Window     ≤ 5 in flight, in order    │
//!  └────────────────────────────┘                │  send::Throttle   quota hold                 │
//!                                                │  ack::Acker       position, tail, gaps       │
//!                                                └───────────────┬──────────────────────────────┘
//!                                                                │ checkpoints::Feed (watch)
//!                                                                ▼
//!                                                  the checkpointer (replicate)
//! ```
//!
//! [`PartitionTask`] (in `task`) runs them: it resumes (`resume`: the checkpoint reconciled
//! with the target's tail), claims a producer identity in a checkpoint, runs the fetcher and the
//! sink until shutdown or a stop, and on doubt about the target's state reconciles and runs them
//! again. The wire is behind two small traits ([`Fetch`], [`Produce`]), implemented by the
//! Kafka client and by in-memory partitions in the unit tests.
//!
//! Imports run one way: `task` → `sink`, `fetch`, `resume` → the stages → `wire`, `error`.
//! Discovery, topics, ownership and the checkpointer live in `replicate`, above this module.

mod ack;
mod batch;
pub mod checkpoints;
mod error;
mod fetch;
mod memory;
mod resume;
mod retry;
mod send;
mod sink;
mod task;
mod unpack;
pub mod wire;
pub mod writers;

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

pub use error::{Error, ForeignBatches, Result};
pub(crate) use memory::buffer_units;
pub use resume::Position;
pub(crate) use resume::{locate, read_data, same_content, Located};
pub use task::PartitionTask;
pub use wire::{Fetch, Produce};

use crate::budget::{Budget, LevelControl};
use crate::config::{OnForeignWriter, OnMissingCheckpoint, OnTargetReset, OnTopicRecreated};

/// Settings shared by all partition tasks.
#[derive(Clone, Debug)]
pub struct TaskSettings {
    pub linger: Duration,
    /// The zstd level in use, adapted to the link and the CPU.
    pub level: Arc<LevelControl>,
    /// The WAN budget shared by every partition.
    pub budget: Arc<Budget>,
    /// Fetched data held across all partitions, in buffer units (`fetch.buffer_max_bytes`).
    pub buffer: Arc<Semaphore>,
    /// The buffer's size in units: no fetch reserves more.
    pub buffer_units: u32,
    /// Batch memory across all partitions, in the same units (`batch.buffer_max_bytes`):
    /// records in builders and compressed batches until the target acknowledges them.
    pub batch_memory: Arc<Semaphore>,
    /// Its size in units.
    pub batch_memory_units: u32,
    pub fetch_max_bytes: i32,
    pub fetch_max_wait_ms: i32,
    pub produce_timeout_ms: i32,
    pub on_target_reset: OnTargetReset,
    pub on_foreign_writer: OnForeignWriter,
    pub on_missing_checkpoint: OnMissingCheckpoint,
    pub on_topic_recreated: OnTopicRecreated,
}

/// The log start, last stable offset or first offset at a time of `tp` on `cluster` (`role`:
/// source or target), retried. `None` when cancelled first.
pub(crate) async fn list_offset_of<C: Fetch>(
    cancel: &tokio_util::sync::CancellationToken,
    cluster: &C,
    role: &'static str,
    tp: &crate::kafka::TopicPartition,
    spec: crate::kafka::OffsetSpec,
) -> Result<Option<i64>> {
    retry::list_offset(cancel, cluster, role, tp, spec, -1).await
}
