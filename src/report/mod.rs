//! What strait reports about its partitions: the figures each partition task keeps up to date
//! ([`Progress`]) and the retention risk computed from them ([`retention`]). Written by the
//! pipeline, read by the progress log line, the health monitor and `/status`; nothing here
//! decides what is replicated or checkpointed.

pub mod progress;
pub mod retention;

pub use progress::{PartitionState, PartitionStatus, Progress, Totals};
pub use retention::{Retention, RiskFigures, KAFKA_DEFAULT_RETENTION_MS};
