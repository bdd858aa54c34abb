//! The checkpoint topic's records, without IO: a write's checkpoints encoded as one record
//! batch, and fetched batches replayed into the latest checkpoint per key. The store does the
//! requests; everything it concludes from their answers happens here, where the tests drive it
//! with hand-built batches.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use super::codec::{
    decode_any_key, decode_catchup_record, decode_run_value, encode_key, encode_record_value, encode_run_key,
    encode_run_value, AnyKey,
};
use super::{CheckpointRecord, Error, Result};
use crate::batch::{self, BuildOptions, Compression, Record, TxnFilter};
use crate::kafka::TopicPartition;
use crate::offsets::{Pending, Run};

/// zstd level for checkpoint batches: they are small and written often.
const ZSTD_LEVEL: i32 = 3;

/// Encodes offset map runs (first, so that a checkpoint is never stored without the runs it
/// covers: one batch is stored whole or not at all), then checkpoints, as one batch, in order,
/// stamped `timestamp_ms`.
pub(super) fn encode_checkpoints(
    replication_id: &str,
    runs: &[(TopicPartition, Pending)],
    checkpoints: &[CheckpointRecord],
    timestamp_ms: i64,
) -> batch::Result<Bytes> {
    let run_keys = runs.iter().flat_map(|(tp, pending)| {
        let key = move |source| encode_run_key(replication_id, &tp.topic, tp.partition, source);
        pending.removed.iter().map(move |s| (key(*s), None)).chain(
            pending
                .runs
                .iter()
                .map(move |r| (key(r.source), Some(encode_run_value(r)))),
        )
    });
    let checkpoint_keys = checkpoints.iter().map(|r| {
        let c = &r.checkpoint;
        (
            encode_key(&c.replication_id, &c.source_topic, c.source_partition),
            Some(encode_record_value(r)),
        )
    });
    let records: Vec<Record> = run_keys
        .chain(checkpoint_keys)
        .zip(0i64..)
        .map(|((key, value), offset)| Record::new(offset, timestamp_ms, Some(key), value))
        .collect();
    let opts = BuildOptions {
        compression: Compression::Zstd,
        zstd_level: ZSTD_LEVEL,
        ..BuildOptions::default()
    };
    batch::encode_batch(0, &records, &opts)
}

/// What one fetch answer contributed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Step {
    /// The offset to fetch next.
    pub(super) next_offset: i64,
    /// Bytes came back but not one whole batch: the fetch size is too small for it.
    pub(super) partial_batch: bool,
}

/// Applies the records of one fetch answer at `offset` to `latest`, in offset order. Records
/// below `offset` (a batch may start earlier), control batches and aborted transactions are
/// skipped.
pub(super) fn apply_fetch(
    tp: &TopicPartition,
    offset: i64,
    records: Bytes,
    aborted: Vec<(i64, i64)>,
    latest: &mut Latest,
) -> Result<Step> {
    let had_bytes = !records.is_empty();
    let mut txn = TxnFilter::new(aborted);
    let mut next_offset = offset;
    let batch_err = |offset, source| Error::Batch {
        topic: tp.topic.clone(),
        partition: tp.partition,
        offset,
        source,
    };
    let mut iter = batch::batches(records);
    for batch in iter.by_ref() {
        let batch = batch.map_err(|e| batch_err(next_offset, e))?;
        let header = &batch.header;
        if header.next_offset() <= next_offset {
            continue;
        }
        if txn.keep(&batch).map_err(|e| batch_err(header.base_offset, e))? {
            let records = batch.records().map_err(|e| batch_err(header.base_offset, e))?;
            for r in records.iter().filter(|r| r.offset >= next_offset) {
                latest.apply(tp, r);
            }
        }
        next_offset = header.next_offset();
    }
    Ok(Step {
        next_offset,
        partial_batch: had_bytes && iter.consumed() == 0 && iter.truncated_tail() > 0,
    })
}

/// The last checkpoint per source partition of one replication id, and its offset map runs,
/// built record by record.
#[derive(Debug)]
pub(super) struct Latest {
    replication_id: String,
    pub(super) entries: HashMap<TopicPartition, CheckpointRecord>,
    /// Offset map runs by source partition and first source offset.
    pub(super) runs: HashMap<TopicPartition, BTreeMap<i64, Run>>,
    /// Whether offset map runs are kept (a reader of checkpoints alone skips them).
    keep_runs: bool,
}

impl Latest {
    pub(super) fn new(replication_id: &str) -> Self {
        Latest {
            replication_id: replication_id.to_owned(),
            entries: HashMap::new(),
            runs: HashMap::new(),
            keep_runs: true,
        }
    }

    /// [`Self::new`] that keeps the checkpoints and drops the offset map runs.
    pub(super) fn checkpoints_only(replication_id: &str) -> Self {
        Latest {
            keep_runs: false,
            ..Self::new(replication_id)
        }
    }

    /// Applies one offset map run record.
    fn apply_run(&mut self, source: TopicPartition, start: i64, value: Option<&[u8]>) -> Result<()> {
        match value {
            None => {
                if let Some(runs) = self.runs.get_mut(&source) {
                    runs.remove(&start);
                }
            }
            Some(v) => {
                let run = decode_run_value(start, v)?;
                self.runs.entry(source).or_default().insert(start, run);
            }
        }
        Ok(())
    }

    /// Applies one record of the checkpoint topic `tp`. Undecodable records are skipped with a
    /// warning; an undecodable value leaves the previous checkpoint of its key in place.
    pub(super) fn apply(&mut self, tp: &TopicPartition, record: &Record) {
        let warn = |what: &str, error: &Error| {
            tracing::warn!(
                topic = %tp.topic,
                partition = tp.partition,
                offset = record.offset,
                error = %crate::error_chain(error),
                "skipping checkpoint record: {what}"
            );
        };
        let Some(key) = record.key.as_deref() else {
            tracing::warn!(topic = %tp.topic, partition = tp.partition, offset = record.offset, "skipping checkpoint record without key");
            return;
        };
        let (replication_id, source_topic, source_partition) = match decode_any_key(key) {
            Ok(AnyKey::Checkpoint(r, t, p)) => (r, t, p),
            Ok(AnyKey::Run(r, t, p, start)) => {
                if self.keep_runs && r == self.replication_id {
                    if let Err(e) = self.apply_run(TopicPartition::new(t, p), start, record.value.as_deref()) {
                        warn("undecodable offset map run", &e);
                    }
                }
                return;
            }
            Err(e) => return warn("undecodable key", &e),
        };
        if replication_id != self.replication_id {
            return;
        }
        let source = TopicPartition::new(source_topic, source_partition);
        let Some(value) = record.value.as_deref() else {
            self.entries.remove(&source);
            return;
        };
        match decode_catchup_record(key, value).map(|(mut r, fresh)| {
            r.fresh = fresh;
            r
        }) {
            // A checkpoint of an older writer generation than the one held (a fenced process
            // that wrote once more after a newer one claimed the partition) replaces nothing.
            Ok(c)
                if self
                    .entries
                    .get(&source)
                    .is_some_and(|held| held.checkpoint.writer_epoch > c.checkpoint.writer_epoch) =>
            {
                tracing::info!(topic = %tp.topic, partition = tp.partition, offset = record.offset,
                    source_topic = %source.topic, source_partition = source.partition, writer_epoch = c.checkpoint.writer_epoch,
                    "checkpoint of an older writer after a newer one's claim: ignored");
            }
            Ok(c) => {
                self.entries.insert(source, c);
            }
            Err(e) => warn("undecodable value", &e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::encode_control_batch;
    use crate::checkpoint::codec::encode_value;
    use crate::checkpoint::Checkpoint;
    use crate::kafka::ProducerIdentity;

    /// The positions of `latest`, without their writers.
    fn positions(latest: &Latest) -> HashMap<TopicPartition, Checkpoint> {
        latest
            .entries
            .iter()
            .map(|(tp, r)| (tp.clone(), r.checkpoint.clone()))
            .collect()
    }

    const TOPIC: &str = "__strait_checkpoints";

    fn cp(rid: &str, topic: &str, partition: i32, next: i64) -> Checkpoint {
        Checkpoint {
            replication_id: rid.into(),
            source_topic: topic.into(),
            source_partition: partition,
            target_topic: format!("dc1.{topic}"),
            next_source_offset: next,
            next_target_offset: next * 2,
            writer_epoch: 1,
            wall_clock_ms: 1_700_000_000_000 + next,
        }
    }

    fn record(offset: i64, key: Option<Bytes>, value: Option<Bytes>) -> Record {
        Record::new(offset, 1_700_000_000_000, key, value)
    }

    fn put(offset: i64, c: &Checkpoint) -> Record {
        record(
            offset,
            Some(encode_key(&c.replication_id, &c.source_topic, c.source_partition)),
            Some(encode_value(c)),
        )
    }

    fn batch_at(records: &[Record]) -> Bytes {
        let base = records.first().map_or(0, |r| r.offset);
        batch::encode_batch(base, records, &BuildOptions::default()).expect("test batch encodes")
    }

    fn tp() -> TopicPartition {
        TopicPartition::new(TOPIC, 0)
    }

    #[test]
    fn last_value_wins_tombstones_delete_and_other_ids_are_ignored() {
        let mut latest = Latest::new("dc1");
        let records = [
            put(0, &cp("dc1", "spans", 0, 10)),
            put(1, &cp("dc1", "spans", 1, 11)),
            put(2, &cp("dc2", "spans", 0, 99)),
            put(3, &cp("dc1", "spans", 0, 20)),
            record(4, Some(encode_key("dc1", "spans", 1)), None),
            put(5, &cp("dc1", "logs", 3, 5)),
            record(6, Some(encode_key("dc2", "logs", 3)), None),
        ];
        let bytes = batch_at(&records);
        let step = apply_fetch(&tp(), 0, bytes, vec![], &mut latest).expect("applies");
        assert_eq!(
            step,
            Step {
                next_offset: 7,
                partial_batch: false
            }
        );
        let mut got: Vec<_> = positions(&latest).into_iter().collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            vec![
                (TopicPartition::new("logs", 3), cp("dc1", "logs", 3, 5)),
                (TopicPartition::new("spans", 0), cp("dc1", "spans", 0, 20)),
            ]
        );
    }

    #[test]
    fn a_newer_writer_s_claim_is_not_replaced_by_an_older_writer_s_later_checkpoint() {
        let mut latest = Latest::new("dc1");
        let epoch = |e: i64, next: i64| Checkpoint {
            writer_epoch: e,
            ..cp("dc1", "spans", 0, next)
        };
        // The newer process (epoch 2) claims at 10; the fenced one (epoch 1) writes once more
        // at 15; the newer one goes on at 12; then a tombstone, then a fresh start at epoch 0.
        let records = [put(0, &epoch(1, 8)), put(1, &epoch(2, 10)), put(2, &epoch(1, 15))];
        apply_fetch(&tp(), 0, batch_at(&records), vec![], &mut latest).expect("applies");
        assert_eq!(positions(&latest)[&TopicPartition::new("spans", 0)], epoch(2, 10));
        let more = [
            put(3, &epoch(2, 12)),
            record(4, Some(encode_key("dc1", "spans", 0)), None),
            put(5, &epoch(0, 1)),
        ];
        apply_fetch(&tp(), 3, batch_at(&more), vec![], &mut latest).expect("applies");
        assert_eq!(
            positions(&latest)[&TopicPartition::new("spans", 0)],
            epoch(0, 1),
            "a tombstone deletes whatever the epoch"
        );
    }

    #[test]
    fn undecodable_records_are_skipped_and_keep_the_previous_value() {
        let mut latest = Latest::new("dc1");
        let good = cp("dc1", "spans", 0, 10);
        let mut newer_version = encode_value(&cp("dc1", "spans", 0, 50)).to_vec();
        newer_version[..2].copy_from_slice(&9i16.to_be_bytes());
        let records = [
            put(0, &good),
            record(1, None, Some(Bytes::from_static(b"no key"))),
            record(2, Some(Bytes::from_static(b"\x00")), Some(Bytes::from_static(b"junk"))),
            record(3, Some(encode_key("dc1", "spans", 0)), Some(Bytes::from(newer_version))),
            record(
                4,
                Some(encode_key("dc1", "spans", 1)),
                Some(Bytes::from_static(b"\x00\x01")),
            ),
        ];
        apply_fetch(&tp(), 0, batch_at(&records), vec![], &mut latest).expect("never fatal");
        assert_eq!(latest.entries.len(), 1);
        assert_eq!(positions(&latest).get(&TopicPartition::new("spans", 0)), Some(&good));
    }

    #[test]
    fn records_before_the_fetch_offset_are_skipped() {
        let mut latest = Latest::new("dc1");
        // The batch starts at 10 but the fetch asked for 11: offset 10 was applied before.
        let records = [put(10, &cp("dc1", "spans", 0, 100)), put(11, &cp("dc1", "spans", 1, 2))];
        let step = apply_fetch(&tp(), 11, batch_at(&records), vec![], &mut latest).expect("applies");
        assert_eq!(step.next_offset, 12);
        assert!(!latest.entries.contains_key(&TopicPartition::new("spans", 0)));
        assert_eq!(
            positions(&latest).get(&TopicPartition::new("spans", 1)),
            Some(&cp("dc1", "spans", 1, 2))
        );

        // A batch wholly below the offset contributes nothing and does not move it back.
        let step = apply_fetch(&tp(), 12, batch_at(&records), vec![], &mut latest).expect("applies");
        assert_eq!(step.next_offset, 12);
        assert_eq!(latest.entries.len(), 1);
    }

    #[test]
    fn control_batches_advance_and_aborted_data_is_dropped() {
        let mut latest = Latest::new("dc1");
        let producer_id = 42;
        let opts = BuildOptions {
            producer_id,
            producer_epoch: 0,
            base_sequence: 0,
            transactional: true,
            ..BuildOptions::default()
        };
        let mut bytes = batch::encode_batch(0, &[put(0, &cp("dc1", "spans", 0, 666))], &opts)
            .expect("encodes")
            .to_vec();
        bytes.extend_from_slice(&encode_control_batch(1, producer_id, 0, false, 0));
        bytes.extend_from_slice(&batch_at(&[put(2, &cp("dc1", "spans", 1, 3))]));
        let step = apply_fetch(&tp(), 0, Bytes::from(bytes), vec![(producer_id, 0)], &mut latest).expect("applies");
        assert_eq!(step.next_offset, 3);
        assert_eq!(latest.entries.len(), 1);
        assert!(latest.entries.contains_key(&TopicPartition::new("spans", 1)));
    }

    #[test]
    fn a_batch_larger_than_the_fetch_is_reported_as_partial() {
        let mut latest = Latest::new("dc1");
        let whole = batch_at(&[put(0, &cp("dc1", "spans", 0, 1))]);
        let cut = whole.slice(..whole.len() - 5);
        let step = apply_fetch(&tp(), 0, cut, vec![], &mut latest).expect("a cut tail is no error");
        assert_eq!(
            step,
            Step {
                next_offset: 0,
                partial_batch: true
            }
        );
        let step = apply_fetch(&tp(), 0, Bytes::new(), vec![], &mut latest).expect("empty answer");
        assert!(!step.partial_batch);
    }

    #[test]
    fn a_corrupt_batch_is_an_error_with_its_offset() {
        let mut latest = Latest::new("dc1");
        let mut bytes = batch_at(&[put(5, &cp("dc1", "spans", 0, 1))]).to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let err = apply_fetch(&tp(), 5, Bytes::from(bytes), vec![], &mut latest).expect_err("bad crc");
        assert!(
            matches!(
                err,
                Error::Batch {
                    offset: 5,
                    partition: 0,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("__strait_checkpoints/0"), "{err}");
    }

    #[test]
    fn offset_map_runs_travel_with_their_checkpoint_and_tombstones_delete_them() {
        let run = |source, target, len| Run { source, target, len };
        let spans = TopicPartition::new("spans", 3);
        let first = Pending {
            runs: vec![run(0, 0, 5), run(8, 5, 2)],
            removed: vec![],
        };
        let cps = [CheckpointRecord::from(cp("dc1", "spans", 3, 10))];
        let one = encode_checkpoints("dc1", &[(spans.clone(), first)], &cps, 1_700_000_000_000).expect("encodes");
        // Pruned: the run at 0 goes, the one at 8 grew.
        let second = Pending {
            runs: vec![run(8, 5, 4)],
            removed: vec![0],
        };
        let two = encode_checkpoints("dc1", &[(spans.clone(), second)], &[], 1_700_000_000_001).expect("encodes");
        // Another replication id's run is not ours.
        let other = Pending {
            runs: vec![run(100, 0, 1)],
            removed: vec![],
        };
        let three = encode_checkpoints("dc2", &[(spans.clone(), other)], &[], 1_700_000_000_002).expect("encodes");
        let mut latest = Latest::new("dc1");
        let mut offset = 0;
        for bytes in [one, two, three] {
            let mut records: Vec<Record> = Vec::new();
            for b in batch::batches(bytes) {
                let b = b.expect("batch");
                for r in b.records().expect("records").iter() {
                    records.push(record(offset, r.key.clone(), r.value.clone()));
                    offset += 1;
                }
            }
            let step = apply_fetch(&tp(), records[0].offset, batch_at(&records), vec![], &mut latest).expect("applies");
            assert_eq!(step.next_offset, offset);
        }
        assert_eq!(latest.entries.len(), 1, "the checkpoint is read next to its runs");
        let runs: Vec<Run> = latest.runs[&spans].values().copied().collect();
        assert_eq!(runs, vec![run(8, 5, 4)]);
    }

    #[test]
    fn checkpoints_encode_as_one_batch_that_reads_back_in_order() {
        let writers = |i: i32| {
            Some(vec![ProducerIdentity {
                id: i64::from(i),
                epoch: 0,
            }])
        };
        let cps: Vec<CheckpointRecord> = (0..50)
            .map(|i| CheckpointRecord {
                checkpoint: cp("dc1", "spans", i % 7, i64::from(i)),
                writers: writers(i),
                sequences: Some(vec![i]),
                topic_ids: None,
                fresh: None,
            })
            .collect();
        let bytes = encode_checkpoints("dc1", &[], &cps, 1_700_000_000_000).expect("encodes");
        let mut iter = batch::batches(bytes);
        let only = iter.next().expect("one batch").expect("valid batch");
        assert!(iter.next().is_none());
        assert_eq!(only.header.record_count, 50);
        assert_eq!(only.header.compression().expect("known codec"), Compression::Zstd);
        let mut latest = Latest::new("dc1");
        for r in only.records().expect("records") {
            latest.apply(&tp(), &r);
        }
        assert_eq!(latest.entries.len(), 7);
        // The last of each partition wins: i = 43..=49 for partitions 1,2,..,0.
        for i in 43..50 {
            assert_eq!(
                latest.entries.get(&TopicPartition::new("spans", i % 7)),
                Some(&CheckpointRecord {
                    checkpoint: cp("dc1", "spans", i % 7, i64::from(i)),
                    writers: writers(i),
                    sequences: Some(vec![i]),
                    topic_ids: None,
                    fresh: None,
                })
            );
        }
    }
}
