//! `read_committed` filtering of one fetch response, as the Java consumer does it.
//!
//! The fetch response lists the aborted transactions overlapping the returned range as
//! `(producer_id, first_offset)`. Walking the batches in order, a producer becomes "aborted" once
//! a batch reaches its `first_offset`, its transactional batches are dropped from then on, and
//! its ABORT marker ends that state. Control batches are never replicated as data. The filter
//! holds state for exactly one partition's fetch response; make a new one per response.

use std::collections::HashSet;

use super::iter::{ControlType, RawBatch};
use super::Result;

/// Drops records of aborted transactions and all control batches, per one fetch response.
#[derive(Clone, Debug)]
pub struct TxnFilter {
    /// Aborted transactions not yet reached, sorted by first offset, latest first (pop = next).
    pending: Vec<(i64, i64)>,
    /// Producers whose current transaction is known to be aborted.
    aborted: HashSet<i64>,
}

impl TxnFilter {
    /// A filter for one fetch response's `aborted_transactions` list of
    /// `(producer_id, first_offset)`.
    pub fn new(aborted: impl IntoIterator<Item = (i64, i64)>) -> Self {
        let mut pending: Vec<(i64, i64)> = aborted.into_iter().collect();
        // Descending by first offset so the next one to activate is at the end.
        pending.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
        TxnFilter {
            pending,
            aborted: HashSet::new(),
        }
    }

    /// Whether `batch` carries committed (or non-transactional) data to replicate.
    ///
    /// Must see every batch of the response in order, including the ones it drops, because
    /// control batches end aborted transactions. Errors only when a control batch is corrupt.
    pub fn keep(&mut self, batch: &RawBatch) -> Result<bool> {
        let header = &batch.header;
        if header.has_producer_id() {
            let last_offset = header.last_offset();
            while let Some(&(producer_id, first_offset)) = self.pending.last() {
                if first_offset > last_offset {
                    break;
                }
                self.aborted.insert(producer_id);
                self.pending.pop();
            }
            if header.is_control() {
                if batch.control_type()? == Some(ControlType::Abort) {
                    self.aborted.remove(&header.producer_id);
                }
            } else if header.is_transactional() && self.aborted.contains(&header.producer_id) {
                return Ok(false);
            }
        }
        Ok(!header.is_control())
    }

    /// Whether any aborted transaction is still open at the point the filter has reached.
    pub fn has_open_aborts(&self) -> bool {
        !self.aborted.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::batch::{batches, encode_batch, encode_control_batch, BuildOptions, Compression, Record};

    const COMMITTER: i64 = 1;
    const ABORTER: i64 = 2;

    fn data(offset: i64, producer_id: i64, transactional: bool, codec: Compression) -> Bytes {
        let record = Record::new(
            offset,
            offset * 10,
            None,
            Some(Bytes::from(format!("p{producer_id}@{offset}"))),
        );
        let opts = BuildOptions {
            compression: codec,
            producer_id,
            producer_epoch: 0,
            base_sequence: 0,
            transactional,
            ..BuildOptions::default()
        };
        encode_batch(offset, &[record], &opts).expect("encode")
    }

    fn kept_values(layout: &[Bytes], aborted: &[(i64, i64)]) -> Vec<String> {
        let fetch: Vec<u8> = layout.iter().flat_map(|b| b.to_vec()).collect();
        let mut filter = TxnFilter::new(aborted.iter().copied());
        let mut out = Vec::new();
        for batch in batches(Bytes::from(fetch)) {
            let batch = batch.expect("valid batch");
            if filter.keep(&batch).expect("filter") {
                for record in batch.records().expect("records") {
                    let value = record.value.expect("value");
                    out.push(String::from_utf8(value.to_vec()).expect("utf8"));
                }
            }
        }
        out
    }

    #[test]
    fn interleaved_committed_and_aborted_producers() {
        let layout = [
            data(0, -1, false, Compression::None),       // plain producer
            data(1, COMMITTER, true, Compression::Zstd), // txn A starts
            data(2, ABORTER, true, Compression::Gzip),   // txn B starts (aborted at 2)
            data(3, COMMITTER, true, Compression::None),
            data(4, ABORTER, true, Compression::Lz4),
            data(5, 7, false, Compression::Snappy), // idempotent, not transactional
            encode_control_batch(6, ABORTER, 0, false, 60), // B aborted
            encode_control_batch(7, COMMITTER, 0, true, 70), // A committed
            data(8, ABORTER, true, Compression::None), // B's next txn, committed later
            encode_control_batch(9, ABORTER, 0, true, 90),
        ];
        assert_eq!(
            kept_values(&layout, &[(ABORTER, 2)]),
            ["p-1@0", "p1@1", "p1@3", "p7@5", "p2@8"]
        );
    }

    #[test]
    fn aborted_txn_spanning_beyond_the_fetch_is_dropped() {
        // The abort marker lies past the end of this response; the list still names the txn.
        let layout = [
            data(10, COMMITTER, true, Compression::None),
            data(11, ABORTER, true, Compression::None),
            encode_control_batch(12, COMMITTER, 0, true, 0),
            data(13, ABORTER, true, Compression::None),
            data(14, -1, false, Compression::None),
        ];
        assert_eq!(kept_values(&layout, &[(ABORTER, 11)]), ["p1@10", "p-1@14"]);
    }

    #[test]
    fn aborted_list_only_applies_from_first_offset() {
        // The same producer's earlier transaction (before first_offset) was committed.
        let layout = [
            data(0, ABORTER, true, Compression::None),
            encode_control_batch(1, ABORTER, 0, true, 0),
            data(2, ABORTER, true, Compression::None),
            encode_control_batch(3, ABORTER, 0, false, 0),
            data(4, ABORTER, true, Compression::None),
        ];
        assert_eq!(kept_values(&layout, &[(ABORTER, 2)]), ["p2@0", "p2@4"]);
    }

    #[test]
    fn two_aborted_transactions_of_one_producer() {
        let layout = [
            data(0, ABORTER, true, Compression::None),
            encode_control_batch(1, ABORTER, 0, false, 0),
            data(2, COMMITTER, true, Compression::None),
            data(3, ABORTER, true, Compression::None),
            encode_control_batch(4, ABORTER, 0, false, 0),
            encode_control_batch(5, COMMITTER, 0, true, 0),
        ];
        let mut filter = TxnFilter::new([(ABORTER, 3), (ABORTER, 0)]);
        let fetch: Vec<u8> = layout.iter().flat_map(|b| b.to_vec()).collect();
        let kept: Vec<i64> = batches(Bytes::from(fetch))
            .map(|b| b.expect("valid"))
            .filter(|b| filter.keep(b).expect("filter"))
            .map(|b| b.header.base_offset)
            .collect();
        assert_eq!(kept, [2]);
        assert!(!filter.has_open_aborts());
    }

    #[test]
    fn without_aborted_list_only_control_batches_go() {
        let layout = [
            data(0, COMMITTER, true, Compression::None),
            encode_control_batch(1, COMMITTER, 0, false, 0),
            data(2, -1, false, Compression::None),
        ];
        // An abort marker without a listed transaction: the broker says nothing was aborted
        // in range, so the data stays (the Java consumer behaves the same way).
        assert_eq!(kept_values(&layout, &[]), ["p1@0", "p-1@2"]);
    }
}
