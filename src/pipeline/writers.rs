//! strait's producer identities that may have written beyond a partition's position, and
//! where each one's sequence stands there ([`Writers`]). Pure.
//!
//! An idempotent producer numbers its records: the sequence of a record is its place in
//! everything that identity sent. strait sends the kept source records in order, so every kept
//! record that reaches the target, whoever wrote it, moves every identity's *sequence at the
//! position* on by one: the sequence that identity gives, or would give, the next record. A
//! batch of that identity found beyond the position then says exactly which source records it
//! holds ([`super::resume::Anchor`]). That is what tells a batch that landed late (its answer
//! was lost, strait wrote its records again under a new identity) from new records: without
//! it, counting both as the next records skips as many source records as landed twice.

use super::resume::{sequence_plus, Anchor, TailPlan};
use crate::checkpoint::CheckpointRecord;
use crate::kafka::ProducerIdentity;

/// Most producer identities a partition's checkpoint names. A new one is taken only when the
/// target refused the last (lost producer state, fencing), so this covers far more than the
/// batches of one identity can still be on their way.
pub(super) const MAX_WRITERS: usize = 32;

/// One of strait's identities, and its sequence at the position (`None`: unknown, written by
/// a strait that did not record sequences).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Writer {
    pub identity: ProducerIdentity,
    pub sequence: Option<i32>,
}

/// strait's identities that may have written at or beyond a position, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Writers {
    list: Vec<Writer>,
}

impl Writers {
    /// The writers a checkpoint names, with their sequences at its position. `None` when it
    /// names none (written by a strait that did not record them).
    pub(crate) fn of_checkpoint(record: &CheckpointRecord) -> Option<Self> {
        let identities = record.writers.as_deref()?;
        let sequences = record.sequences.as_deref().unwrap_or_default();
        let mut writers = Writers::default();
        for (i, identity) in identities.iter().enumerate() {
            let sequence = sequences.get(i).copied().filter(|s| *s >= 0);
            writers.add(*identity, sequence);
        }
        Some(writers)
    }

    #[cfg(test)]
    pub(crate) fn list(&self) -> &[Writer] {
        &self.list
    }

    pub(crate) fn identities(&self) -> Vec<ProducerIdentity> {
        self.list.iter().map(|w| w.identity).collect()
    }

    /// The known sequences, for a scan of the tail from the position.
    pub(crate) fn anchors(&self) -> Vec<Anchor> {
        self.list
            .iter()
            .filter_map(|w| {
                w.sequence.map(|sequence| Anchor {
                    producer: w.identity,
                    sequence,
                })
            })
            .collect()
    }

    /// `identity`'s sequence at the position, when known.
    pub(crate) fn sequence(&self, identity: ProducerIdentity) -> Option<i32> {
        self.list
            .iter()
            .find(|w| w.identity == identity)
            .and_then(|w| w.sequence)
    }

    /// Adds an identity (or sets its sequence, if known). None is dropped for not being found
    /// in a tail: a batch sent before a timeout may still land, or sit above the high
    /// watermark while the tail is read, and must be recognised as strait's when it shows.
    /// Only the oldest go, beyond [`MAX_WRITERS`].
    pub(crate) fn add(&mut self, identity: ProducerIdentity, sequence: Option<i32>) {
        match self.list.iter_mut().find(|w| w.identity == identity) {
            Some(w) => w.sequence = sequence.or(w.sequence),
            None => self.list.push(Writer { identity, sequence }),
        }
        let excess = self.list.len().saturating_sub(MAX_WRITERS);
        self.list.drain(..excess);
    }

    /// What a scan of the tail from the position found: the identities that wrote there, and
    /// the sequences it worked out for identities that had none.
    pub(crate) fn found(&mut self, plan: &TailPlan) {
        for identity in &plan.writers {
            self.add(*identity, plan.anchor(*identity));
        }
    }

    /// The position moved on by `records` kept source records.
    pub(crate) fn moved(&mut self, records: i64) {
        for w in &mut self.list {
            w.sequence = w.sequence.map(|s| sequence_plus(s, records));
        }
    }

    /// The identities and their sequences, as a checkpoint records them (`-1`: unknown).
    pub(crate) fn to_record(&self) -> (Vec<ProducerIdentity>, Vec<i32>) {
        self.list.iter().map(|w| (w.identity, w.sequence.unwrap_or(-1))).unzip()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;

    fn id(id: i64) -> ProducerIdentity {
        ProducerIdentity { id, epoch: 0 }
    }

    #[test]
    fn an_identity_not_found_in_a_tail_is_still_remembered() {
        // The identity whose produce timed out wrote nothing visible yet: an empty tail must not
        // make it a stranger when its batch shows up.
        let mut writers = Writers::default();
        writers.add(id(1), Some(5));
        writers.found(&TailPlan::default());
        writers.add(id(2), None);
        writers.add(id(1), None);
        assert_eq!(writers.identities(), vec![id(1), id(2)]);
        assert_eq!(
            writers.sequence(id(1)),
            Some(5),
            "an unknown sequence does not erase a known one"
        );
    }

    #[test]
    fn only_the_oldest_identities_go_beyond_the_bound() {
        let mut writers = Writers::default();
        for i in 0..MAX_WRITERS as i64 + 3 {
            writers.add(id(i), None);
        }
        let ids = writers.identities();
        assert_eq!(ids.len(), MAX_WRITERS);
        assert_eq!(ids.first(), Some(&id(3)));
        assert_eq!(ids.last(), Some(&id(MAX_WRITERS as i64 + 2)));
    }

    #[test]
    fn sequences_move_with_the_position_and_wrap() {
        let mut writers = Writers::default();
        writers.add(id(1), Some(i32::MAX - 1));
        writers.add(id(2), None);
        writers.moved(3);
        assert_eq!(writers.sequence(id(1)), Some(1));
        assert_eq!(writers.sequence(id(2)), None);
        assert_eq!(writers.to_record(), (vec![id(1), id(2)], vec![1, -1]));
    }

    #[test]
    fn a_checkpoint_gives_its_writers_and_their_sequences() {
        let checkpoint = Checkpoint {
            replication_id: "r".into(),
            source_topic: "spans".into(),
            source_partition: 0,
            target_topic: "spans".into(),
            next_source_offset: 10,
            next_target_offset: 10,
            writer_epoch: 0,
            wall_clock_ms: 0,
        };
        let mut record = CheckpointRecord::from(checkpoint);
        assert_eq!(Writers::of_checkpoint(&record), None);
        record.writers = Some(vec![id(1), id(2)]);
        let w = Writers::of_checkpoint(&record).expect("named");
        assert_eq!((w.sequence(id(1)), w.sequence(id(2))), (None, None));
        record.sequences = Some(vec![-1, 7]);
        let w = Writers::of_checkpoint(&record).expect("named");
        assert_eq!((w.sequence(id(1)), w.sequence(id(2))), (None, Some(7)));
        assert_eq!(
            w.anchors(),
            vec![Anchor {
                producer: id(2),
                sequence: 7
            }]
        );
    }
}
