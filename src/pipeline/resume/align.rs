//! Finding where a target partition's content ends in the source, for a partition that holds
//! records but has no checkpoint (`on_missing_checkpoint = "align"`): the checkpoint topic was
//! lost, `replication.id` changed, or another tool (MirrorMaker 2, MSK Replicator) filled it.
//!
//! Content is what a replicator keeps: key, value, headers and timestamp ([`same_content`]).
//! The target's last records ([`ALIGN_RECORDS`] of them, fewer if it holds fewer) are looked up
//! in the source: from the first source offset at their oldest timestamp (ListOffsets by
//! timestamp), the source is read until the same records follow each other ([`Matcher`]).
//! Replication goes on right after the last of them. When they are not found within
//! [`ALIGN_MAX_SCAN`] source records, the partition halts rather than guess.

use std::collections::VecDeque;

use tokio_util::sync::CancellationToken;

use super::Position;
use crate::batch::Record;
use crate::kafka::{OffsetSpec, ResponseError, TopicPartition, Wait};
use crate::pipeline::error::{Error, Result};
use crate::pipeline::retry::{kafka_err, list_offset, retry};
use crate::pipeline::unpack::unpack;
use crate::pipeline::wire::Fetch;

/// How many of the target's last records must follow each other in the source.
pub(crate) const ALIGN_RECORDS: usize = 8;
/// Most source records read looking for them.
pub(crate) const ALIGN_MAX_SCAN: u64 = 20_000_000;
/// Target offsets read back from the end to find its last records (transaction markers take
/// offsets too).
const TARGET_LOOKBACK: i64 = 256;
const FETCH_BYTES: i32 = 1 << 20;
const FETCH_WAIT_MS: i32 = 100;
/// Consecutive answers without a record before reading is given up.
const IDLE_FETCHES: u32 = 20;

/// Whether two records carry the same content: key, value, headers and timestamp (offsets
/// differ between clusters).
pub(crate) fn same_content(a: &Record, b: &Record) -> bool {
    // A record without headers may be encoded with an empty header section or a zero count.
    let headers = |r: &Record| -> bytes::Bytes {
        if r.headers.is_empty() {
            bytes::Bytes::from_static(&[0])
        } else {
            r.headers.clone()
        }
    };
    a.timestamp == b.timestamp && a.key == b.key && a.value == b.value && headers(a) == headers(b)
}

/// Looks for a run of records in a stream of source records. Pure.
#[derive(Debug)]
pub(crate) struct Matcher {
    want: Vec<Record>,
    seen: VecDeque<Record>,
    scanned: u64,
}

impl Matcher {
    /// Looks for `want` (the target's last records, in order; not empty).
    pub(crate) fn new(want: Vec<Record>) -> Self {
        Self {
            seen: VecDeque::with_capacity(want.len()),
            want,
            scanned: 0,
        }
    }

    /// The next source record; the offset of the run's last record once the last `want.len()`
    /// records pushed are `want`.
    pub(crate) fn push(&mut self, record: Record) -> Option<i64> {
        self.scanned += 1;
        if self.seen.len() == self.want.len() {
            self.seen.pop_front();
        }
        self.seen.push_back(record);
        let found =
            self.seen.len() == self.want.len() && self.seen.iter().zip(&self.want).all(|(a, b)| same_content(a, b));
        found.then(|| self.seen.back().map_or(-1, |r| r.offset))
    }

    pub(crate) fn scanned(&self) -> u64 {
        self.scanned
    }
}

/// The source and target partitions of an alignment.
#[derive(Debug)]
pub(crate) struct Align<'a, S, T> {
    pub(crate) source: &'a S,
    pub(crate) target: &'a T,
    pub(crate) source_tp: &'a TopicPartition,
    pub(crate) target_tp: &'a TopicPartition,
    pub(crate) cancel: &'a CancellationToken,
}

/// Where a run of records was looked for in a partition, and what came of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Located {
    /// The offset of the run's last record.
    At(i64),
    /// Not found reading from `from` (`scanned` records) to the end or the scan bound.
    NotFound { from: i64, scanned: u64 },
    /// The partition holds no record as new as the run's oldest (`timestamp`).
    NothingThatNew { timestamp: i64 },
}

/// Looks for `want` (in order, not empty) in `tp` of `cluster`: from the first offset at its
/// oldest timestamp, up to the partition's end. `None` when cancelled first.
pub(crate) async fn locate<C: Fetch>(
    cancel: &CancellationToken,
    cluster: &C,
    role: &'static str,
    tp: &TopicPartition,
    want: Vec<Record>,
) -> Result<Option<Located>> {
    let oldest = want.iter().map(|r| r.timestamp).min().unwrap_or(0);
    let Some(from) = list_offset(cancel, cluster, role, tp, OffsetSpec::Timestamp(oldest), -1).await? else {
        return Ok(None);
    };
    if from < 0 {
        return Ok(Some(Located::NothingThatNew { timestamp: oldest }));
    }
    let Some(end) = list_offset(cancel, cluster, role, tp, OffsetSpec::Latest, from).await? else {
        return Ok(None);
    };
    let mut matcher = Matcher::new(want);
    let mut offset = from;
    let mut idle = 0;
    while offset < end && matcher.scanned() < ALIGN_MAX_SCAN {
        let Some((records, next)) = read_data(cancel, cluster, role, tp, offset).await? else {
            return Ok(None);
        };
        for r in records {
            if let Some(found) = matcher.push(r) {
                return Ok(Some(Located::At(found)));
            }
        }
        idle = if next > offset { 0 } else { idle + 1 };
        if idle >= IDLE_FETCHES {
            break;
        }
        offset = next;
    }
    Ok(Some(Located::NotFound {
        from,
        scanned: matcher.scanned(),
    }))
}

/// One fetch of `tp` from `offset`: its data records (committed, markers dropped) and the
/// offset to read from next. `None` when cancelled first.
pub(crate) async fn read_data<C: Fetch>(
    cancel: &CancellationToken,
    cluster: &C,
    role: &'static str,
    tp: &TopicPartition,
    offset: i64,
) -> Result<Option<(Vec<Record>, i64)>> {
    let fetched = retry(cancel, cluster, tp, "read records", || {
        cluster.fetch(tp, None, offset, FETCH_BYTES, Wait::Poll(FETCH_WAIT_MS))
    })
    .await;
    let fetched = match fetched {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(None),
        // Deleted since: go on from the log start.
        Err(e) if e.code() == Some(ResponseError::OffsetOutOfRange) => {
            let Some(start) = list_offset(cancel, cluster, role, tp, OffsetSpec::Earliest, offset).await? else {
                return Ok(None);
            };
            return Ok(Some((Vec::new(), start.max(offset + 1))));
        }
        Err(e) => return Err(kafka_err(role, "read records", tp, offset, e)),
    };
    let start = fetched.log_start_offset.max(offset);
    // Alignment reads a few batches once; each is held only to compare (within the codec's
    // own cap, not the fetch buffer's).
    let chunk = unpack(tp, start, fetched, usize::MAX, usize::MAX)?;
    Ok(Some((chunk.records, chunk.next_offset)))
}

impl<S: Fetch, T: Fetch> Align<'_, S, T> {
    /// Where to go on from when the target holds `first..end` and no checkpoint: right after
    /// the source records its last ones hold. `None` when cancelled first.
    pub(crate) async fn position(&self, first: i64, end: i64) -> Result<Option<Position>> {
        let Some(want) = self.last_target_records(first, end).await? else {
            return Ok(None);
        };
        if want.is_empty() {
            return Err(self.failed(
                first,
                end,
                "it holds no data records in its last offsets (only markers)".into(),
            ));
        }
        let last = want.last().map_or(-1, |r| r.offset);
        let Some(located) = locate(self.cancel, self.source, "source", self.source_tp, want).await? else {
            return Ok(None);
        };
        match located {
            Located::At(offset) => {
                tracing::info!(source = %self.source_tp, target = %self.target_tp, target_end = end,
                    target_last = last, source_last = offset,
                    "aligned: the target's content ends at this source offset; replicating from the next");
                Ok(Some(Position {
                    source: offset + 1,
                    target: end,
                }))
            }
            Located::NothingThatNew { timestamp } => Err(self.failed(
                first,
                end,
                format!("the source holds no record as new as its last records (timestamp {timestamp} ms)"),
            )),
            Located::NotFound { from, scanned } => Err(self.failed(
                first,
                end,
                format!(
                    "its last {ALIGN_RECORDS} records were not found in the source from offset {from} on \
                     ({scanned} records read)"
                ),
            )),
        }
    }

    /// The last data records of the target below `end` (at most [`ALIGN_RECORDS`]). `None`
    /// when cancelled first.
    async fn last_target_records(&self, first: i64, end: i64) -> Result<Option<Vec<Record>>> {
        let mut offset = (end - TARGET_LOOKBACK).max(first);
        let mut last: VecDeque<Record> = VecDeque::with_capacity(ALIGN_RECORDS);
        let mut idle = 0;
        while offset < end {
            let Some((records, next)) = read_data(self.cancel, self.target, "target", self.target_tp, offset).await?
            else {
                return Ok(None);
            };
            for r in records.into_iter().filter(|r| r.offset < end) {
                if last.len() == ALIGN_RECORDS {
                    last.pop_front();
                }
                last.push_back(r);
            }
            idle = if next > offset { 0 } else { idle + 1 };
            if idle >= IDLE_FETCHES {
                return Err(self.failed(first, end, format!("no records answered at offset {offset}")));
            }
            offset = next;
        }
        Ok(Some(last.into()))
    }

    fn failed(&self, first: i64, end: i64, reason: String) -> Error {
        Error::AlignFailed {
            topic: self.target_tp.topic.clone(),
            partition: self.target_tp.partition,
            first,
            end,
            source_topic: self.source_tp.topic.clone(),
            source_partition: self.source_tp.partition,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn rec(offset: i64, value: &'static str, ts: i64) -> Record {
        Record {
            offset,
            timestamp: ts,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(value.as_bytes())),
            headers: Bytes::new(),
        }
    }

    #[test]
    fn content_is_key_value_headers_and_timestamp_not_the_offset() {
        let a = rec(5, "v", 100);
        assert!(same_content(&a, &rec(900, "v", 100)));
        assert!(!same_content(&a, &rec(5, "w", 100)));
        assert!(!same_content(&a, &rec(5, "v", 101)));
        let no_key = Record { key: None, ..a.clone() };
        assert!(!same_content(&a, &no_key));
        // No headers reads the same whether encoded empty or as a zero count; one header differs.
        let zero = Record {
            headers: Bytes::from_static(&[0]),
            ..a.clone()
        };
        assert!(same_content(&a, &zero));
        let one = Record {
            headers: Bytes::from_static(&[2, 2, b'h', 0]),
            ..a.clone()
        };
        assert!(!same_content(&a, &one));
    }

    #[test]
    fn the_run_is_found_where_all_its_records_follow_each_other() {
        // The target's last records are b, c; the source holds b alone earlier, then a, b, c.
        let mut m = Matcher::new(vec![rec(40, "b", 2), rec(41, "c", 3)]);
        let source = [
            rec(0, "b", 2),
            rec(1, "x", 2),
            rec(2, "a", 1),
            rec(3, "b", 2),
            rec(4, "c", 3),
            rec(5, "d", 4),
        ];
        let found: Vec<i64> = source.into_iter().filter_map(|r| m.push(r)).collect();
        assert_eq!(found, vec![4]);
        assert_eq!(m.scanned(), 6);
    }

    #[test]
    fn a_run_of_one_matches_its_record() {
        let mut m = Matcher::new(vec![rec(7, "z", 9)]);
        assert_eq!(m.push(rec(0, "y", 9)), None);
        assert_eq!(m.push(rec(1, "z", 9)), Some(1));
    }
}
