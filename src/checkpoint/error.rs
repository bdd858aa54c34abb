//! The one error type of the checkpoint codec and store, and a helper that formats an error
//! chain for log lines.

use crate::{batch, kafka};

/// Result of the checkpoint codec and store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the checkpoint codec and store. Codec errors name the part ("key" or "value") and
/// the byte position; store errors name the checkpoint topic and, where it applies, the
/// partition and offset.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input ends inside a field.
    #[error("checkpoint {part} truncated: {field} at byte {at} runs past the end ({len} bytes)")]
    Truncated {
        /// "key" or "value".
        part: &'static str,
        /// The field being read.
        field: &'static str,
        /// Where the field starts.
        at: usize,
        /// Length of the whole input.
        len: usize,
    },
    /// The record was written in a format version newer than this build reads.
    #[error(
        "checkpoint {part} has format version {version}, newer than version {supported} which is the newest this \
         strait reads: upgrade strait"
    )]
    UnsupportedVersion {
        /// "key" or "value".
        part: &'static str,
        /// The version found.
        version: i16,
        /// The newest version this build reads.
        supported: i16,
    },
    /// The version field holds a value no strait ever wrote.
    #[error("checkpoint {part} has invalid format version {version}")]
    InvalidVersion {
        /// "key" or "value".
        part: &'static str,
        /// The version found.
        version: i16,
    },
    /// A string field is not UTF-8.
    #[error("checkpoint {part} field {field} is not UTF-8")]
    NotUtf8 {
        /// "key" or "value".
        part: &'static str,
        /// The field.
        field: &'static str,
        /// Where decoding failed.
        #[source]
        source: std::str::Utf8Error,
    },
    /// A list that must have one entry per writer has another count.
    #[error("checkpoint {part} lists {found} {field} at byte {at} for {expected} writers")]
    CountMismatch {
        /// "key" or "value".
        part: &'static str,
        /// The list.
        field: &'static str,
        /// Where the count is.
        at: usize,
        /// The count found.
        found: usize,
        /// The number of writers.
        expected: usize,
    },
    /// Bytes follow the last field.
    #[error("checkpoint {part} has {extra} unexpected bytes after byte {at}")]
    TrailingBytes {
        /// "key" or "value".
        part: &'static str,
        /// Where the record should have ended.
        at: usize,
        /// How many bytes follow.
        extra: usize,
    },
    /// A checkpoint handed to a store belongs to another replication id.
    #[error(
        "checkpoint for {source_topic}/{source_partition} has replication id {found:?} but the store writes for \
         {expected:?}"
    )]
    ForeignReplicationId {
        /// The store's replication id.
        expected: String,
        /// The checkpoint's replication id.
        found: String,
        /// Source topic of the checkpoint.
        source_topic: String,
        /// Source partition of the checkpoint.
        source_partition: i32,
    },
    /// The checkpoint topic is missing and the target cannot create it.
    #[error(
        "checkpoint topic {topic} does not exist and the target cluster does not serve CreateTopics: create it \
         with 1 partition and cleanup.policy=compact, e.g. `kafka-topics.sh --create --topic {topic} \
         --partitions 1 --config cleanup.policy=compact`"
    )]
    CannotCreate {
        /// The checkpoint topic.
        topic: String,
    },
    /// The checkpoint topic does not exist (when loading).
    #[error(
        "checkpoint topic {topic} does not exist on the target cluster: let strait create it (ensure_topic) or \
         create it with 1 partition and cleanup.policy=compact"
    )]
    MissingTopic {
        /// The checkpoint topic.
        topic: String,
    },
    /// The checkpoint topic has no leader within the time allowed.
    #[error("checkpoint topic {topic} has no leader for partition 0 after {waited_ms} ms")]
    NotReady {
        /// The checkpoint topic.
        topic: String,
        /// How long strait waited.
        waited_ms: u64,
    },
    /// A topic-level request (metadata, create, configs) failed.
    #[error("checkpoint topic {topic}: {action} failed")]
    Topic {
        /// The checkpoint topic.
        topic: String,
        /// What was attempted.
        action: &'static str,
        /// The wire-layer error.
        #[source]
        source: Box<kafka::Error>,
    },
    /// Reading a partition of the checkpoint topic failed.
    #[error("checkpoint topic {topic}/{partition}: {action} failed at offset {offset}")]
    Read {
        /// The checkpoint topic.
        topic: String,
        /// Its partition.
        partition: i32,
        /// What was attempted.
        action: &'static str,
        /// The offset being read (-1 before any offset is known).
        offset: i64,
        /// The wire-layer error.
        #[source]
        source: Box<kafka::Error>,
    },
    /// A batch of the checkpoint topic is corrupt. Reading stops rather than skip it, because
    /// skipping could resurrect older checkpoints without anyone noticing.
    #[error("corrupt batch in checkpoint topic {topic}/{partition} at offset {offset}")]
    Batch {
        /// The checkpoint topic.
        topic: String,
        /// Its partition.
        partition: i32,
        /// Offset of the batch.
        offset: i64,
        /// What the batch codec found.
        #[source]
        source: batch::Error,
    },
    /// One batch of the checkpoint topic is larger than the largest fetch strait makes.
    #[error("checkpoint topic {topic}/{partition}: batch at offset {offset} is larger than {max_bytes} bytes")]
    BatchTooLarge {
        /// The checkpoint topic.
        topic: String,
        /// Its partition.
        partition: i32,
        /// Offset of the batch.
        offset: i64,
        /// The largest fetch size tried.
        max_bytes: i32,
    },
    /// Fetches stopped making progress before the log end was reached.
    #[error(
        "checkpoint topic {topic}/{partition}: no progress at offset {offset} after {fetches} fetches, the log \
         ends at {log_end}"
    )]
    Stalled {
        /// The checkpoint topic.
        topic: String,
        /// Its partition.
        partition: i32,
        /// Where reading stopped.
        offset: i64,
        /// The log end being read towards.
        log_end: i64,
        /// Consecutive fetches without progress.
        fetches: u32,
    },
    /// The checkpoint batch could not be encoded.
    #[error("cannot encode {count} checkpoints for topic {topic}")]
    Encode {
        /// The checkpoint topic.
        topic: String,
        /// Checkpoints in the batch.
        count: usize,
        /// What the batch codec reported.
        #[source]
        source: batch::Error,
    },
    /// The checkpoint batch was not acknowledged.
    #[error("writing {count} checkpoints to {topic}/{partition} failed after {attempts} attempts")]
    Write {
        /// The checkpoint topic.
        topic: String,
        /// The partition written to.
        partition: i32,
        /// Checkpoints in the batch.
        count: usize,
        /// Produce attempts made.
        attempts: u32,
        /// The last wire-layer error.
        #[source]
        source: Box<kafka::Error>,
    },
}
