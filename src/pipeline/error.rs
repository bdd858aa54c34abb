//! Errors of one partition's data path. Each names the topic-partition and, where it applies,
//! the offset at which the partition stopped.

use crate::{batch, kafka};

/// Result of the data path.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a partition stopped and needs an operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to a cluster failed in a way retrying does not fix.
    #[error("{cluster} cluster: {action} failed for {topic}/{partition} at offset {offset}")]
    Kafka {
        cluster: &'static str,
        action: &'static str,
        topic: String,
        partition: i32,
        offset: i64,
        #[source]
        source: Box<kafka::Error>,
    },
    /// A source batch is corrupt: nothing from it is written.
    #[error("corrupt source batch in {topic}/{partition} at offset {offset}")]
    Batch {
        topic: String,
        partition: i32,
        offset: i64,
        #[source]
        source: batch::Error,
    },
    /// A source batch decompresses to more than the whole fetch buffer: a decompression bomb,
    /// or a batch larger than strait may hold. Found while decompressing, before more than the
    /// buffer's size was allocated for it; nothing from it is written.
    #[error(
        "source batch {topic}/{partition} at offset {offset}: its {compressed} bytes decompress to more than \
         {cap} bytes, the fetch buffer (fetch.buffer_max_bytes) that holds every fetched record until it is \
         re-batched. Nothing from it was written and the partition is halted. If the batch is genuine, raise \
         fetch.buffer_max_bytes (STRAIT_FETCH__BUFFER_MAX_BYTES) above its size, and the memory limit with it"
    )]
    BatchTooLarge {
        topic: String,
        partition: i32,
        offset: i64,
        /// The batch as fetched, in bytes.
        compressed: usize,
        /// The fetch buffer's size, in bytes.
        cap: usize,
    },
    /// A target batch could not be built.
    #[error("cannot build target batch for {topic}/{partition} from offset {offset}")]
    Build {
        topic: String,
        partition: i32,
        offset: i64,
        #[source]
        source: batch::Error,
    },
    /// One record is larger than the target accepts.
    #[error(
        "record {topic}/{partition} at offset {offset} needs {size} bytes, more than the target accepts \
         ({max} bytes, the smaller of batch.max_bytes and the target topic's max.message.bytes): \
         raise max.message.bytes on the target topic and batch.max_bytes"
    )]
    RecordTooLarge {
        topic: String,
        partition: i32,
        offset: i64,
        size: usize,
        max: usize,
    },
    /// The target partition holds less than its checkpoint says strait wrote.
    #[error(
        "target {topic}/{partition} ends at offset {end} but its checkpoint says strait wrote up to {checkpoint}: \
         the target topic was recreated or lost data; set on_target_reset = \"replicate_again\" \
         (STRAIT_ON_TARGET_RESET) to replicate the partition again"
    )]
    TargetBehind {
        topic: String,
        partition: i32,
        checkpoint: i64,
        end: i64,
    },
    /// The target partition already holds records and no checkpoint of this flow covers it.
    #[error(
        "target {topic}/{partition} already holds records (offsets {first}..{end}) but checkpoint topic \
         {checkpoint_topic} has no checkpoint for it under replication id {replication_id}: starting now would \
         duplicate or skip records, so the partition is halted and nothing was written. If strait replicated it \
         before, restore that checkpoint topic or set replication.id (STRAIT_REPLICATION__ID) to the id used \
         then; if the target is to be filled again, delete its records; to write after what is there from \
         start_from, set on_missing_checkpoint = \"append\"; to go on right after the source records it already \
         holds (a take-over from MirrorMaker 2, a lost checkpoint topic), set on_missing_checkpoint = \"align\" \
         (STRAIT_ON_MISSING_CHECKPOINT)"
    )]
    MissingCheckpoint {
        topic: String,
        partition: i32,
        first: i64,
        end: i64,
        checkpoint_topic: String,
        replication_id: String,
    },
    /// The source or target topic was deleted and created again since the checkpoint: its
    /// offsets are of another log.
    #[error(
        "{side} topic {topic} was recreated (its topic id changed) since partition {partition} was checkpointed at \
         source offset {source_offset}, target offset {target_offset}: those offsets are of the old topic, so the \
         partition is halted and nothing was read or written. To replicate the new topic from its beginning, after \
         what the target holds, set {setting}"
    )]
    TopicRecreated {
        side: &'static str,
        /// The setting that starts over instead.
        setting: &'static str,
        topic: String,
        partition: i32,
        source_offset: i64,
        target_offset: i64,
    },
    /// `on_missing_checkpoint = "align"` could not find where the target's content ends in the
    /// source.
    #[error(
        "target {topic}/{partition} holds records (offsets {first}..{end}) and no checkpoint, and strait cannot \
         align it with source {source_topic}/{source_partition}: {reason}. Nothing was written. If the target \
         holds something else than this source's records, empty it or replicate into another topic; to write \
         after what is there from start_from instead, set on_missing_checkpoint = \"append\" \
         (STRAIT_ON_MISSING_CHECKPOINT)"
    )]
    AlignFailed {
        topic: String,
        partition: i32,
        first: i64,
        end: i64,
        source_topic: String,
        source_partition: i32,
        reason: String,
    },
    /// The target partition holds records beyond strait's checkpoint that another producer
    /// wrote: nothing was written after them and no source record was skipped on their account.
    #[error(
        "{0}, not written by strait: another producer writes to the target partition. The partition is halted \
         and no source record was skipped. Stop the other producer, then either remove its records or set \
         on_foreign_writer = \"skip\" (STRAIT_ON_FOREIGN_WRITER) to leave them in place and replicate every \
         source record after them"
    )]
    ForeignWriter(ForeignBatches),
    /// Another strait process claimed the partition after this one did (a newer writer epoch in
    /// the checkpoint topic) and writes the target partition: this one stops writing it.
    #[error(
        "{source_topic}/{source_partition}: fenced: another strait process claimed this partition after this one \
         did (writer epoch {theirs}, this process has {ours}) and writes to target {target_topic}/{target_partition} \
         ({foreign_records} of its records found beyond this process's position). This process stopped writing the \
         partition; no source record was skipped. Expected while shards overlap during a reshard or a rolling \
         update; otherwise two deployments share replication.id (STRAIT_REPLICATION__ID): stop one of them"
    )]
    Fenced {
        source_topic: String,
        source_partition: i32,
        target_topic: String,
        target_partition: i32,
        ours: i64,
        theirs: i64,
        foreign_records: i64,
    },
    /// The checkpoint was written by a strait that did not record its producer identities, and
    /// the target holds records beyond it: they cannot be told from another producer's.
    #[error(
        "{0}, beyond a checkpoint written by an older strait that does not record which producer ids strait \
         used, so they may be strait's or another producer's. The partition is halted and no source record \
         was skipped. Set on_foreign_writer = \"skip\" (STRAIT_ON_FOREIGN_WRITER) to leave them in place and \
         replicate the source again from the checkpoint (records an older strait wrote there then arrive twice; \
         none is lost)"
    )]
    UnattributedTail(ForeignBatches),
    /// The records beyond the checkpoint alternate between strait and other producers more often
    /// than one reconcile keeps track of.
    #[error(
        "target {topic}/{partition}: the records from offset {from} to {at} alternate between strait and other \
         producers more than {max_runs} times; strait does not keep track of more. Stop the other producer, \
         remove its records or set on_foreign_writer = \"halt\" (STRAIT_ON_FOREIGN_WRITER) to stop at the first"
    )]
    TailTooFragmented {
        topic: String,
        partition: i32,
        from: i64,
        at: i64,
        max_runs: usize,
    },
    /// A fresh-first catch-up's ranges, as a checkpoint or a stop gives them, are inconsistent.
    #[error(
        "source {topic}/{partition} at offset {offset}: fresh-first catch-up refused: {source}; set catchup.mode = \
         \"oldest_first\" (STRAIT_CATCHUP__MODE) only once the cause is understood: the partition halts rather than guess"
    )]
    CatchUp {
        topic: String,
        partition: i32,
        offset: i64,
        source: crate::pipeline::catchup::CatchUpError,
    },
    /// What the target holds beyond the checkpoint could not be read to its end.
    #[error("target {topic}/{partition}: cannot read the records from offset {offset} to the end {end}: {reason}")]
    TailUnreadable {
        topic: String,
        partition: i32,
        offset: i64,
        end: i64,
        reason: &'static str,
    },
    /// A batch of the target partition beyond the checkpoint is corrupt.
    #[error("corrupt target batch in {topic}/{partition} at offset {offset}")]
    TargetBatch {
        topic: String,
        partition: i32,
        offset: i64,
        #[source]
        source: batch::Error,
    },
    /// The topic was deleted while its partition was replicated: the cluster's metadata no
    /// longer knows it.
    #[error(
        "{side} topic {topic} was deleted while partition {partition} was replicated, at {side} offset {offset} \
         (the {side} cluster no longer knows the topic): the partition is halted and its checkpoint is kept. If the \
         deletion was meant, leave the topic out of topics.include / topics.exclude (STRAIT_TOPICS__INCLUDE, \
         STRAIT_TOPICS__EXCLUDE) and restart strait; if the topic is created again, restart strait with {setting}"
    )]
    TopicDeleted {
        side: &'static str,
        /// What lets replication go on once the topic exists again.
        setting: &'static str,
        topic: String,
        partition: i32,
        offset: i64,
        #[source]
        source: Box<kafka::Error>,
    },
    /// The topic was deleted and created again while its partition was replicated: a fetch
    /// pinned to the topic's id found it gone while the name has a new id.
    #[error(
        "{side} topic {topic} was deleted and created again (its topic id changed) while partition {partition} was \
         replicated, at {side} offset {offset}: that offset is of the old topic, so the partition is halted before \
         reading anything of the new one, and its checkpoint is kept. To replicate the new topic, restart strait \
         with {setting}; to stop replicating it, leave it out of topics.include / topics.exclude"
    )]
    RecreatedWhileReplicating {
        side: &'static str,
        /// The setting that goes on with the new topic at the next start.
        setting: &'static str,
        topic: String,
        partition: i32,
        offset: i64,
    },
    /// The partition's task panicked: a bug in strait, caught so the partition halts like on
    /// any other error instead of vanishing.
    #[error(
        "{topic}/{partition}: the partition task panicked at source offset {offset}: {message}. This is a bug in \
         strait: please report it with the log lines before this one. The partition is halted and the other \
         partitions go on; restarting strait resumes it from its last checkpoint"
    )]
    Panicked {
        topic: String,
        partition: i32,
        offset: i64,
        message: String,
    },
    /// The fetch position is beyond the source log end: the source partition was recreated.
    #[error(
        "source {topic}/{partition}: offset {offset} is beyond the log end {log_end}; the source topic was \
         probably deleted and recreated"
    )]
    BeyondLogEnd {
        topic: String,
        partition: i32,
        offset: i64,
        log_end: i64,
    },
}

/// Batches of a target partition that strait cannot count as its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "target {topic}/{partition}: offsets {first}..={last} hold {records} records of producer id {producer_id} \
     (epoch {producer_epoch})"
)]
pub struct ForeignBatches {
    pub topic: String,
    pub partition: i32,
    pub first: i64,
    pub last: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub records: i64,
}
