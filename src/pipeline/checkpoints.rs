//! How a partition task hands its acknowledged position to the checkpointer, and learns that
//! a checkpoint holds it.
//!
//! Each task owns a [`Feed`]; the checkpointer holds the matching [`Tap`]. The task publishes
//! its newest [`Acked`] state on a watch (only the latest matters: a checkpoint of a later
//! position covers every earlier one), and the checkpointer reads it when it writes. Claiming a
//! new producer identity, or a fresh partition's first position, must be in a written checkpoint
//! before the task sends anything: [`Feed::claim`] asks for a write at once and waits for the
//! checkpointer's confirmation of that state's generation.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use super::resume::Position;
use super::writers::Writers;
use crate::checkpoint::{Checkpoint, CheckpointRecord, FreshRange, TopicIds};
use crate::offsets::OffsetMap;

/// The state of one partition a checkpoint records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acked {
    /// Everything below it is on the target.
    pub at: Position,
    /// The target topic written to.
    pub target_topic: String,
    /// Which writer generation of this partition this process is.
    pub writer_epoch: i64,
    /// The source and target topic ids the task replicates between.
    pub topic_ids: Option<TopicIds>,
    /// strait's producer identities that may have written at or beyond `at.target`, with
    /// their sequences where the last claim or publish stood.
    pub writers: Writers,
    /// Kept source records the position moved on by since then.
    pub moved: i64,
    /// Bumped on every claim: a confirmation of this generation means a checkpoint holds
    /// `writers` (and a position at least this one).
    pub generation: u64,
    /// The fresh range, while the partition is in a fresh-first catch-up (the fields above are
    /// then the backlog's).
    pub fresh: Option<FreshAcked>,
}

/// The fresh range of a partition in a fresh-first catch-up ([`super::catchup`]), as a
/// checkpoint records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FreshAcked {
    /// Its first source offset: the backlog ends below it.
    pub split: i64,
    /// Every kept fresh record below `at.source` is on the target; the fresh identities'
    /// records at or beyond `at.target` are placed by their sequences.
    pub at: Position,
    /// The identities that write fresh records, with their sequences where the last claim or
    /// publish stood.
    pub writers: Writers,
    /// Kept fresh records the position moved on by since then.
    pub moved: i64,
}

impl FreshAcked {
    /// The fresh writers with their sequences at the fresh position.
    pub fn writers_at_position(&self) -> Writers {
        let mut writers = self.writers.clone();
        writers.moved(self.moved);
        writers
    }
}

/// The task's end.
#[derive(Debug)]
pub struct Feed {
    state: watch::Sender<Option<Acked>>,
    written: watch::Receiver<u64>,
    wanted: Arc<Notify>,
    target_topic: String,
    writer_epoch: i64,
    topic_ids: Option<TopicIds>,
    map: Arc<Mutex<OffsetMap>>,
}

/// The checkpointer's end.
#[derive(Debug)]
pub struct Tap {
    state: watch::Receiver<Option<Acked>>,
    written: watch::Sender<u64>,
    map: Arc<Mutex<OffsetMap>>,
}

/// The partition's offset map; a panic elsewhere while it was held leaves it usable (every
/// change to it is one call of its own).
fn locked(map: &Mutex<OffsetMap>) -> MutexGuard<'_, OffsetMap> {
    map.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A feed and its tap, for a partition written to `target_topic` by writer generation
/// `writer_epoch`, between topics of `topic_ids`. `wanted` is shared by every feed of the
/// checkpointer: it wakes it for a claim.
pub fn feed(wanted: Arc<Notify>, target_topic: &str, writer_epoch: i64, topic_ids: Option<TopicIds>) -> (Feed, Tap) {
    let (state_tx, state_rx) = watch::channel(None);
    let (written_tx, written_rx) = watch::channel(0);
    let map = Arc::new(Mutex::new(OffsetMap::default()));
    (
        Feed {
            state: state_tx,
            written: written_rx,
            wanted,
            target_topic: target_topic.to_owned(),
            writer_epoch,
            topic_ids,
            map: Arc::clone(&map),
        },
        Tap {
            state: state_rx,
            written: written_tx,
            map,
        },
    )
}

impl Feed {
    /// Which writer generation of the partition this process is.
    pub fn writer_epoch(&self) -> i64 {
        self.writer_epoch
    }

    /// The target acknowledged `len` kept source records from `source` at `target` on (see
    /// [`OffsetMap::record`]).
    pub fn record_run(&self, source: i64, target: i64, len: i64) {
        locked(&self.map).record(source, target, len);
    }

    /// Publishes a new acknowledged position, `moved` kept source records past the last claim
    /// or publish (a no-op before the first [`Self::publish`]: no position is known to be
    /// consistent until then).
    pub fn advance(&self, at: Position, moved: i64) {
        self.state.send_if_modified(|s| match s {
            Some(acked) if acked.at != at || acked.moved != moved => {
                acked.at = at;
                acked.moved = moved;
                true
            }
            _ => false,
        });
    }

    /// Publishes a new acknowledged position of the fresh range, `moved` kept fresh records past
    /// the last claim or publish (a no-op outside a catch-up).
    pub fn advance_fresh(&self, at: Position, moved: i64) {
        self.state
            .send_if_modified(|s| match s.as_mut().and_then(|a| a.fresh.as_mut()) {
                Some(fresh) if fresh.at != at || fresh.moved != moved => {
                    fresh.at = at;
                    fresh.moved = moved;
                    true
                }
                _ => false,
            });
    }

    /// Source offsets from `source` on are written out of order from target offset `target`
    /// on (see [`OffsetMap::mark_out_of_order`]).
    pub fn mark_out_of_order(&self, source: i64, target: i64) {
        locked(&self.map).mark_out_of_order(source, target);
    }

    /// Publishes a consistent position `at` (resumed or reconciled) with the identities that
    /// may have written beyond it, as a new generation; returns it.
    pub fn publish(&self, at: Position, writers: &Writers) -> u64 {
        self.publish_ranges(at, writers, None)
    }

    /// [`Self::publish`] of a partition that may be in a fresh-first catch-up: `at` and
    /// `writers` are then the backlog's, `fresh` the fresh range's (its `moved` is ignored).
    pub fn publish_ranges(&self, at: Position, writers: &Writers, fresh: Option<FreshAcked>) -> u64 {
        let end = crate::offsets::End {
            source: at.source,
            target: at.target,
        };
        if locked(&self.map).forget_if_target_reset(end) {
            tracing::warn!(target_topic = %self.target_topic, source_offset = at.source, target_offset = at.target,
                "the target partition was reset under the offset map: committed offsets below here can no longer be translated exactly");
        }
        let mut generation = 0;
        self.state.send_modify(|s| {
            generation = s.as_ref().map_or(0, |a| a.generation) + 1;
            *s = Some(Acked {
                at,
                target_topic: self.target_topic.clone(),
                writer_epoch: self.writer_epoch,
                topic_ids: self.topic_ids,
                writers: writers.clone(),
                moved: 0,
                generation,
                fresh: fresh.map(|f| FreshAcked { moved: 0, ..f }),
            });
        });
        generation
    }

    /// [`Self::publish`], then asks for a checkpoint at once and waits until one holding it is
    /// written. `false` when cancelled first.
    pub async fn claim(&self, at: Position, writers: &Writers, cancel: &CancellationToken) -> bool {
        self.claim_ranges(at, writers, None, cancel).await
    }

    /// [`Self::claim`] of [`Self::publish_ranges`].
    pub async fn claim_ranges(
        &self,
        at: Position,
        writers: &Writers,
        fresh: Option<FreshAcked>,
        cancel: &CancellationToken,
    ) -> bool {
        let generation = self.publish_ranges(at, writers, fresh);
        self.wanted.notify_one();
        let mut written = self.written.clone();
        tokio::select! {
            _ = cancel.cancelled() => false,
            // The tap outlives every task; if it is gone, strait is stopping.
            done = written.wait_for(|&g| g >= generation) => done.is_ok(),
        }
    }
}

/// A partition's offset map and acknowledged position, read by the group sync.
#[derive(Clone, Debug)]
pub struct MapHandle {
    map: Arc<Mutex<OffsetMap>>,
    state: watch::Receiver<Option<Acked>>,
}

impl MapHandle {
    /// The target topic, the translation of source offset `offset` and the source offset
    /// replication stands at; `None` before the task published a position.
    pub fn translate(&self, offset: i64) -> Option<(String, crate::offsets::Translation, i64)> {
        let (target_topic, end) = {
            let state = self.state.borrow();
            let acked = state.as_ref()?;
            // In a catch-up the order is settled only once the backlog is drained: not
            // translated until then (the group's target offset waits).
            if acked.fresh.is_some() {
                return None;
            }
            let end = crate::offsets::End {
                source: acked.at.source,
                target: acked.at.target,
            };
            (acked.target_topic.clone(), end)
        };
        Some((target_topic, locked(&self.map).translate(offset, end), end.source))
    }

    /// Waits until the task published a position (it resumed); returns at once if it has.
    pub async fn published(&self) {
        let mut state = self.state.clone();
        // An error means the task's feed is gone: nothing will be published.
        let _ = state.wait_for(Option::is_some).await;
    }

    /// Drops the runs no synced group needs any more.
    pub fn prune_below(&self, source: i64) {
        locked(&self.map).prune_below(source);
    }
}

impl Acked {
    /// The writers with their sequences at `at`.
    pub fn writers_at_position(&self) -> Writers {
        let mut writers = self.writers.clone();
        writers.moved(self.moved);
        writers
    }

    /// The checkpoint of source partition `tp` of replication `replication_id` this state
    /// makes, written at `now_ms`.
    pub fn to_record(&self, replication_id: &str, tp: &crate::kafka::TopicPartition, now_ms: i64) -> CheckpointRecord {
        let (writers, sequences) = self.writers_at_position().to_record();
        CheckpointRecord {
            checkpoint: Checkpoint {
                replication_id: replication_id.to_owned(),
                source_topic: tp.topic.clone(),
                source_partition: tp.partition,
                target_topic: self.target_topic.clone(),
                next_source_offset: self.at.source,
                next_target_offset: self.at.target,
                writer_epoch: self.writer_epoch,
                wall_clock_ms: now_ms,
            },
            writers: Some(writers),
            sequences: Some(sequences),
            topic_ids: self.topic_ids,
            fresh: self.fresh.as_ref().map(|f| {
                let (writers, sequences) = f.writers_at_position().to_record();
                FreshRange {
                    split: f.split,
                    next_source_offset: f.at.source,
                    next_target_offset: f.at.target,
                    writers,
                    sequences,
                }
            }),
        }
    }
}

impl Tap {
    /// The state to checkpoint, if the task published one.
    pub fn current(&self) -> Option<Acked> {
        self.state.borrow().clone()
    }

    /// The partition's offset map, seeded from the store or read by the group sync.
    pub fn map(&self) -> MutexGuard<'_, OffsetMap> {
        locked(&self.map)
    }

    /// A handle on the offset map and the position, for the group sync.
    pub fn handle(&self) -> MapHandle {
        MapHandle {
            map: Arc::clone(&self.map),
            state: self.state.clone(),
        }
    }

    /// A checkpoint holding `generation` was written.
    pub fn confirm(&self, generation: u64) {
        self.written.send_if_modified(|g| {
            let newer = generation > *g;
            *g = (*g).max(generation);
            newer
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::ProducerIdentity;

    fn at(source: i64, target: i64) -> Position {
        Position { source, target }
    }

    #[tokio::test]
    async fn a_claim_completes_only_once_a_checkpoint_holds_its_generation() {
        let wanted = Arc::new(Notify::new());
        let (feed, tap) = super::feed(Arc::clone(&wanted), "spans", 1, None);
        let cancel = CancellationToken::new();
        // Before any claim nothing is checkpointable, and positions are not published.
        feed.advance(at(5, 5), 5);
        assert_eq!(tap.current(), None);
        let id = ProducerIdentity { id: 7, epoch: 0 };
        let mut ids = Writers::default();
        ids.add(id, Some(0));
        let claim = feed.claim(at(0, 10), &ids, &cancel);
        tokio::pin!(claim);
        // The claim asked for a write and waits for it.
        tokio::select! {
            biased;
            _ = &mut claim => panic!("completed before any checkpoint was written"),
            _ = wanted.notified() => {}
        }
        let acked = tap.current().expect("published");
        assert_eq!(
            (acked.at, acked.generation, acked.writers.identities()),
            (at(0, 10), 1, vec![id])
        );
        assert_eq!((acked.target_topic.as_str(), acked.writer_epoch), ("spans", 1));
        // A write of an older generation does not complete it.
        tap.confirm(0);
        tokio::select! {
            biased;
            _ = &mut claim => panic!("completed on an older generation"),
            _ = tokio::task::yield_now() => {}
        }
        tap.confirm(acked.generation);
        assert!(claim.await);
        // Positions now flow; the writers stay.
        feed.advance(at(3, 13), 3);
        let now = tap.current().expect("published");
        assert_eq!(
            (now.at, now.generation, now.writers.identities()),
            (at(3, 13), 1, vec![id])
        );
        assert_eq!(
            now.writers_at_position().sequence(id),
            Some(3),
            "sequences move with the position"
        );
    }

    #[tokio::test]
    async fn a_cancelled_claim_returns_false() {
        let (feed, _tap) = super::feed(Arc::new(Notify::new()), "spans", 0, None);
        let cancel = CancellationToken::new();
        cancel.cancel();
        assert!(!feed.claim(at(0, 0), &Writers::default(), &cancel).await);
    }
}
