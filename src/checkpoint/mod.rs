//! Checkpoints: how far replication of each source partition got, stored on the target cluster so
//! that strait resumes after any crash without losing or duplicating records.
//!
//! This module owns the checkpoint record format ([`encode_key`], [`encode_value`] and their
//! decoders, pure functions in `codec`) and the [`CheckpointStore`], which keeps one record per
//! source partition in a compacted topic on the target (`store` does the requests, `log` turns
//! checkpoints into record batches and fetched batches back into checkpoints, without IO). It must not decide *when* a
//! checkpoint is written or what a resumed task does with it: the replication engine writes a
//! checkpoint only for what the target acknowledged, and reconciles on resume.
//!
//! # Record format
//!
//! All integers are big-endian (network order), as everywhere in the Kafka protocol. Strings
//! are UTF-8 with a `u32` byte-length prefix, so any name (empty, containing separators,
//! non-ASCII) encodes unambiguously and encoding never fails.
//!
//! ## Key (the compaction identity)
//!
//! | offset      | size | field              | type / value                |
//! |-------------|------|--------------------|-----------------------------|
//! | 0           | 2    | key version        | `i16` = 1                   |
//! | 2           | 4    | replication id len | `u32` = R                   |
//! | 6           | R    | replication id     | UTF-8                       |
//! | 6 + R       | 4    | source topic len   | `u32` = T                   |
//! | 10 + R      | T    | source topic       | UTF-8                       |
//! | 10 + R + T  | 4    | source partition   | `i32`                       |
//!
//! Nothing may follow the partition. The key never changes for a given partition, so the topic
//! compacts to one record per (replication id, source topic, source partition).
//!
//! ## Value
//!
//! | offset  | size | field                | type / value                                  |
//! |---------|------|----------------------|-----------------------------------------------|
//! | 0       | 2    | format version       | `i16` = 1                                     |
//! | 2       | 4    | body length          | `u32` = B, the number of bytes that follow    |
//! | 6       | 4    | target topic len     | `u32` = T                                     |
//! | 10      | T    | target topic         | UTF-8                                         |
//! | 10 + T  | 8    | next source offset   | `i64`                                         |
//! | 18 + T  | 8    | next target offset   | `i64`                                         |
//! | 26 + T  | 8    | writer epoch         | `i64`                                         |
//! | 34 + T  | 8    | wall clock ms        | `i64`, Unix epoch milliseconds                |
//!
//! Version 1 first wrote B = 36 + T. The producer identities were appended to the body later,
//! within version 1 (a compatible addition):
//!
//! | offset      | size   | field                | type / value                                  |
//! |-------------|--------|----------------------|-----------------------------------------------|
//! | 42 + T      | 4      | writer count         | `u32` = N                                     |
//! | 46 + T      | 10 × N | writers              | N × (`i64` producer id, `i16` producer epoch) |
//!
//! so B = 40 + T + 10 × N. Then, appended the same way, each writer's sequence at the position:
//!
//! | offset           | size  | field          | type / value                                  |
//! |------------------|-------|----------------|-----------------------------------------------|
//! | 46 + T + 10 × N  | 4     | sequence count | `u32` = N, as many as writers                 |
//! | 50 + T + 10 × N  | 4 × N | sequences      | N × `i32`, -1 when unknown                    |
//!
//! so B = 44 + T + 14 × N. Then the topic ids the checkpoint was written for, when known:
//!
//! | offset           | size | field           | type / value                           |
//! |------------------|------|-----------------|----------------------------------------|
//! | 50 + T + 14 × N  | 16   | source topic id | UUID bytes, zeros when the source gives none |
//! | 66 + T + 14 × N  | 16   | target topic id | UUID bytes, zeros when the target gives none |
//!
//! so B = 76 + T + 14 × N. Then, for a partition in fresh-first catch-up only
//! ([`crate::pipeline`]'s `catchup` module; not written yet), the fresh range in a section with
//! its own version and length; the fields above are then the backlog's:
//!
//! | offset           | size   | field                    | type / value                                   |
//! |------------------|--------|--------------------------|------------------------------------------------|
//! | 82 + T + 14 × N  | 2      | catch-up section version | `i16` = 1 ([`CATCHUP_VERSION`])                |
//! | 84 + T + 14 × N  | 4      | section length           | `u32` = S, the number of bytes that follow     |
//! | 88 + T + 14 × N  | 8      | split                    | `i64`, the fresh range's first source offset   |
//! | 96 + T + 14 × N  | 8      | fresh next source offset | `i64`                                          |
//! | 104 + T + 14 × N | 8      | fresh next target offset | `i64`                                          |
//! | 112 + T + 14 × N | 4      | fresh writer count       | `u32` = M                                      |
//! | 116 + T + 14 × N | 14 × M | fresh writers            | M × (`i64` id, `i16` epoch, `i32` sequence)    |
//!
//! so S = 28 + 14 × M and B = 82 + T + 14 × N + S. A reader without it reads the backlog's
//! checkpoint and skips the section ([`decode_record`]); [`decode_catchup_record`] reads it, and
//! refuses a newer section version with [`Error::UnsupportedVersion`].
//!
//! The writers are every idempotent producer identity strait may have written with at or
//! beyond the next target offset (see [`CheckpointRecord`]). A body that ends
//! after the wall clock is a checkpoint of a strait that did not record them: its writers are
//! unknown ([`CheckpointRecord::writers`] is `None`), which is not the same as none. A null value
//! (tombstone) deletes the checkpoint.
//!
//! ## Offset map runs
//!
//! The same topic stores each partition's offset map ([`crate::offsets`]): one record per run,
//! written in the same batch as (and before) the checkpoint that moves past it, deleted with a
//! tombstone when pruned. Its key is the checkpoint key with version 2 and the run's first
//! source offset (`i64`) appended; its value is version 1 with a body (B = 16) of the run's first
//! target offset and its length, two `i64`s. A strait that predates the offset map skips these
//! records with a warning ("undecodable key").
//!
//! ## Evolution
//!
//! - *Compatible additions* append fields to the end of the body and keep the version. Readers
//!   parse the fields they know and skip the rest of the body (its length says where it ends), so
//!   an older strait keeps reading checkpoints written by a newer one. A newer strait reading an
//!   older record sees a shorter body and uses defaults for the fields it lacks.
//! - *Incompatible changes* bump the version. A reader refuses a version newer than it knows
//!   with [`Error::UnsupportedVersion`], which names both versions, rather than guessing.
//! - Bytes after the body, a body shorter than the version's fields, a negative or zero version
//!   and invalid UTF-8 are errors; decoding never panics on any input.

mod codec;
mod error;
mod log;
mod store;

pub use codec::{
    decode_any_key, decode_catchup_record, decode_key, decode_record, decode_run_value, decode_value,
    encode_catchup_value, encode_key, encode_record_value, encode_run_key, encode_run_value, encode_value, AnyKey,
    FreshRange, CATCHUP_VERSION, KEY_VERSION, RUN_KEY_VERSION, RUN_VALUE_VERSION, VALUE_VERSION,
};
pub use error::{Error, Result};
pub use store::{now_ms, CheckpointStore, Follower};

use crate::kafka::ProducerIdentity;

/// How far replication of one source partition got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Names the strait deployment, so that two deployments can share one target cluster.
    pub replication_id: String,
    /// Source topic.
    pub source_topic: String,
    /// Source partition.
    pub source_partition: i32,
    /// Target topic the partition replicates into.
    pub target_topic: String,
    /// Every source record below this offset was acknowledged by the target.
    pub next_source_offset: i64,
    /// The target partition's log end right after those records.
    pub next_target_offset: i64,
    /// Bumped by each new writer of the partition, to fence out an older one.
    pub writer_epoch: i64,
    /// When the checkpoint was written, Unix epoch milliseconds.
    pub wall_clock_ms: i64,
}

/// A checkpoint as stored: the position and the producer identities strait wrote with beyond it.
///
/// A partition resuming from it reads what the target holds beyond the checkpointed target
/// offset; only batches of these identities are strait's own records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointRecord {
    /// The position.
    pub checkpoint: Checkpoint,
    /// Every idempotent producer identity that may have written at or beyond
    /// `checkpoint.next_target_offset`. `None`: written by a strait that did not record them, so
    /// nothing beyond the checkpoint can be attributed to strait.
    pub writers: Option<Vec<ProducerIdentity>>,
    /// For each of `writers`, in order: the producer sequence it gives (or would give) the
    /// first kept source record at `checkpoint.next_source_offset`, or `-1` when unknown. It
    /// tells which source records a batch of that identity beyond the checkpoint holds.
    /// `None`: written by a strait that did not record them.
    pub sequences: Option<Vec<i32>>,
    /// The ids of the source and target topics when it was written (a recreated topic has a
    /// new one). `None`: written by a strait that did not record them.
    pub topic_ids: Option<TopicIds>,
    /// The fresh range of a partition in fresh-first catch-up (the fields above are then the
    /// backlog's); written only with the topic ids. `None`: one range.
    pub fresh: Option<FreshRange>,
}

/// A source and a target topic id; all zeros where the cluster gives none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TopicIds {
    pub source: [u8; 16],
    pub target: [u8; 16],
}

impl TopicIds {
    /// Which of the two differ between `self` (recorded) and `now`, among those both know:
    /// `(source, target)`.
    pub fn changed(&self, now: &TopicIds) -> (bool, bool) {
        let differs = |a: &[u8; 16], b: &[u8; 16]| *a != [0; 16] && *b != [0; 16] && a != b;
        (differs(&self.source, &now.source), differs(&self.target, &now.target))
    }
}

impl From<Checkpoint> for CheckpointRecord {
    /// A checkpoint without producer identities (unknown writers).
    fn from(checkpoint: Checkpoint) -> Self {
        CheckpointRecord {
            checkpoint,
            writers: None,
            sequences: None,
            topic_ids: None,
            fresh: None,
        }
    }
}
