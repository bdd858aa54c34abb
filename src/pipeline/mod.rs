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
//!
//! # Where the source position moves without writing
//!
//! Every place that moves a partition's source position past records it does not write, why
//! no record is lost there, and the tests that fail if one starts to skip silently (unit tests
//! with the fakes; `tests/*.rs` on Apache Kafka):
//!
//! | where | what is passed over | shown as | tests |
//! |---|---|---|---|
//! | `fetch` OffsetOutOfRange → log start | records the source deleted before strait read them (retention, DeleteRecords) | a gap: `strait_source_gap_records_total`, `/status` `gap_records`, WARN, `StraitSourceGap` | `a_source_gap_is_counted_and_the_rest_is_replicated`; `kafka_topics::records_deleted_by_*_are_an_exact_gap` |
//! | `fetch` answer whose log start is past the offset (no error) | the same, from brokers that answer so | the same gap | `a_fetch_answered_from_past_its_offset_counts_the_gap_it_jumps` |
//! | `resume::Tail::gap` | a gap inside the tail of the last reconcile: only records strait never wrote count | the gap, less strait's own records found in the tail | `resume::tests::a_source_gap_inside_the_tail_window_*`, `a_gap_*` |
//! | `sink` control batches, aborted transactions | no data records (read_committed) | not counted: nothing existed to copy | `aborted_transactions_and_markers_are_dropped_and_the_position_passes_them`, `interleaved_transactions_*`; `kafka_transactions` |
//! | `sink` absorbed records | records an earlier attempt wrote whose answer was lost | `already_written` in the resume log line | `a_lost_answer_is_reconciled_and_nothing_is_written_twice`, `resume::tests::a_late_batch_*`; `exactly_once` |
//! | compaction holes on the source | offsets with no record | not counted | `resume::tests::compacted_source_offsets_are_holes_not_gaps` |
//! | start without a checkpoint: `start_from = latest / timestamp` | what the source held before, at the replication's first start only | the start offset in the log | `start_from_latest_skips_what_the_source_held_and_earliest_copies_it`; `start_from` |
//! | start without a checkpoint: `on_missing_checkpoint = align` | what the target already holds (found by content) | the aligned offset in the log | `missing_checkpoint::align_*`, `mm2_takeover` |
//! | a source topic recreated: `on_topic_recreated = start_over` | the old topic's offsets (the new topic is read from its beginning) | the halt that comes first, then a fresh start | `a_recreated_source_topic_halts_or_starts_over_as_configured`, `tests::halts::a_source_topic_recreated_while_replicating_*`; `kafka_topics`, `missing_checkpoint` |
//!
//! Foreign records in the target's tail move the target position, never the source one
//! (`resume`); with `on_foreign_writer = "skip"` every source record is still written
//! (`foreign_writer::with_skip_every_source_record_arrives_next_to_a_foreign_writer`).
//!
//! A gap counts the offsets of the deleted range: Kafka exposes neither the records of a
//! deleted range nor their number, so transaction markers, aborted records or compaction holes
//! that were in it count as missing records. It is an upper bound, exact for a topic that is
//! neither compacted nor written by transactions (Jaeger's span topics).

mod ack;
mod batch;
// Fresh-first catch-up: the design and its pure core, not wired into the data path yet (see its
// module doc); until it is, only its tests use it.
#[cfg_attr(not(test), allow(dead_code))]
mod catchup;
pub mod checkpoints;
mod error;
mod fetch;
mod memory;
mod resume;
mod retry;
mod send;
mod sink;
mod sizing;
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
pub(crate) use sizing::ceiling as batch_ceiling;
pub use task::PartitionTask;
pub use wire::{Fetch, Produce};

use crate::budget::{Budget, LevelControl};
use crate::config::{OnForeignWriter, OnMissingCheckpoint, OnTargetReset, OnTopicRecreated};

/// Settings shared by all partition tasks.
#[derive(Clone, Debug)]
pub struct TaskSettings {
    pub linger: Duration,
    /// Codec of the data batches written to the target (`compression.codec`).
    pub codec: crate::batch::Compression,
    /// The zstd level in use, adapted to the link and the CPU; unused with another codec.
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
    /// With `catchup.mode = "fresh_first"`: how old a partition's oldest record not replicated
    /// must be for it to enter a fresh-first catch-up. `None`: oldest first.
    pub fresh_after: Option<Duration>,
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
