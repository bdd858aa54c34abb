//! The checkpointer: writes each partition's acknowledged position and producer identities to
//! the checkpoint topic. Every partition task hands it its state through its own feed
//! ([`crate::pipeline::checkpoints`]); it writes on its interval, and at once when a task
//! claims a new identity (which waits for that write before sending anything).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::checkpoint::{self, CheckpointRecord, CheckpointStore, TopicIds};
use crate::kafka::TopicPartition;
use crate::offsets::{End, OffsetMap, Pending, Run};
use crate::pipeline::checkpoints::{self as feeds, Acked, Feed, Tap};

/// One partition's feed and what was last written from it.
#[derive(Debug)]
struct Entry {
    tap: Tap,
    written: Option<Acked>,
}

/// Writes the checkpoints of every partition task of this process.
#[derive(Debug)]
pub(super) struct Checkpointer {
    store: Arc<CheckpointStore>,
    /// A task claimed: write at once.
    wanted: Arc<Notify>,
    partitions: BTreeMap<TopicPartition, Entry>,
    /// Offset map runs loaded from the store, until their partition's task registers.
    stored_runs: HashMap<TopicPartition, Vec<Run>>,
    max_runs: usize,
    maps: Arc<crate::groups::Maps>,
}

impl Checkpointer {
    pub(super) fn new(store: Arc<CheckpointStore>) -> Self {
        Self {
            store,
            wanted: Arc::new(Notify::new()),
            partitions: BTreeMap::new(),
            stored_runs: HashMap::new(),
            max_runs: crate::offsets::DEFAULT_MAX_RUNS,
            maps: Arc::default(),
        }
    }

    /// The offset map runs loaded with the checkpoints, and the most runs a partition keeps.
    pub(super) fn with_stored_runs(mut self, runs: HashMap<TopicPartition, Vec<Run>>, max_runs: usize) -> Self {
        self.stored_runs = runs;
        self.max_runs = max_runs;
        self
    }

    /// Every partition's offset map and position, for the group sync.
    pub(super) fn maps(&self) -> Arc<crate::groups::Maps> {
        Arc::clone(&self.maps)
    }

    pub(super) fn store(&self) -> &CheckpointStore {
        &self.store
    }

    /// The feed of a partition task about to start, writing to `target_topic`; its writer
    /// generation follows the one of its last checkpoint.
    pub(super) fn register(
        &mut self,
        tp: &TopicPartition,
        target_topic: &str,
        last: Option<&CheckpointRecord>,
        topic_ids: Option<TopicIds>,
    ) -> Arc<Feed> {
        let writer_epoch = last.map_or(0, |c| c.checkpoint.writer_epoch + 1);
        let (feed, tap) = feeds::feed(Arc::clone(&self.wanted), target_topic, writer_epoch, topic_ids);
        // The map continues where the checkpoint stands; a restarted task keeps the one it had.
        let previous = self.partitions.remove(tp).map(|e| e.tap.map().clone());
        let stored = self.stored_runs.remove(tp);
        *tap.map() = match (previous, stored, last) {
            (Some(map), _, _) => map,
            (None, Some(runs), Some(last)) => {
                let c = &last.checkpoint;
                let end = End {
                    source: c.next_source_offset,
                    target: c.next_target_offset,
                };
                OffsetMap::from_stored(self.max_runs, runs, end)
            }
            _ => OffsetMap::new(self.max_runs),
        };
        self.maps.insert(tp.clone(), tap.handle());
        self.partitions.insert(tp.clone(), Entry { tap, written: None });
        Arc::new(feed)
    }

    /// Signalled when a task claims and waits for a checkpoint.
    pub(super) fn wanted(&self) -> Arc<Notify> {
        Arc::clone(&self.wanted)
    }

    /// Writes a checkpoint for every partition whose state changed since its last write, and
    /// confirms them to their tasks. Writes are sequential, so a later one always holds a
    /// later state. Returns how many were written.
    pub(super) async fn write(&mut self) -> Result<usize, checkpoint::Error> {
        let due: Vec<(TopicPartition, Acked)> = self
            .partitions
            .iter()
            .filter_map(|(tp, e)| {
                let now = e.tap.current()?;
                (e.written.as_ref() != Some(&now)).then(|| (tp.clone(), now))
            })
            .collect();
        // Taken after the positions: a run recorded meanwhile may lie past its checkpoint,
        // which a resume cuts off (`OffsetMap::from_stored`).
        let runs: Vec<(TopicPartition, Pending)> = self
            .partitions
            .iter()
            .map(|(tp, e)| (tp.clone(), e.tap.map().pending()))
            .filter(|(_, p)| !p.is_empty())
            .collect();
        if due.is_empty() && runs.is_empty() {
            return Ok(0);
        }
        let now_ms = checkpoint::now_ms();
        let records: Vec<CheckpointRecord> = due
            .iter()
            .map(|(tp, acked)| record(self.store.replication_id(), tp, acked, now_ms))
            .collect();
        self.store.write_with_runs(&runs, &records).await?;
        for (tp, pending) in &runs {
            if let Some(e) = self.partitions.get(tp) {
                e.tap.map().written(pending);
            }
        }
        for (tp, acked) in due {
            if let Some(e) = self.partitions.get_mut(&tp) {
                e.tap.confirm(acked.generation);
                e.written = Some(acked);
            }
        }
        Ok(records.len())
    }
}

fn record(replication_id: &str, tp: &TopicPartition, acked: &Acked, now_ms: i64) -> CheckpointRecord {
    acked.to_record(replication_id, tp, now_ms)
}
