//! The batch stage: gathers the records to write into one target batch, decides when it is
//! due (full, or lingered long enough), and builds it: re-compressed, stamped with the
//! producer identity and sequence. Pure: the sink feeds it records and the clock.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::batch::{self, BatchBuilder, BuildOptions, Compression, Record};
use crate::kafka::ProducerIdentity;

/// A built batch, ready to send.
#[derive(Debug)]
pub(super) struct Ready {
    /// The batch as it goes on the wire.
    pub(super) bytes: Bytes,
    /// First source offset in the batch.
    pub(super) first: i64,
    /// Source position once acknowledged (may extend past the batch over dropped records).
    pub(super) until: i64,
    /// Source offset of its last record.
    pub(super) last: i64,
    pub(super) count: i32,
    /// Uncompressed source bytes of the chunks it came from.
    pub(super) source_bytes: u64,
    /// Size the batch would have uncompressed.
    pub(super) uncompressed_len: usize,
    /// Newest record timestamp in the batch (ms), for the end-to-end latency.
    pub(super) max_timestamp: i64,
    /// Timestamp of its first record (ms): the oldest it holds by offset.
    pub(super) first_timestamp: i64,
    /// Its records' source offsets, as runs of consecutive offsets: (first, count).
    pub(super) runs: Vec<(i64, i64)>,
}

/// Who writes the batch, and how to compress it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Stamp {
    pub(super) producer: ProducerIdentity,
    pub(super) base_sequence: i32,
    /// `compression.codec`.
    pub(super) codec: Compression,
    /// Used with zstd only.
    pub(super) zstd_level: i32,
}

/// Gathers records into the next target batch.
#[derive(Debug)]
pub(super) struct Batcher {
    builder: BatchBuilder,
    linger: Duration,
    /// When the batch being gathered is due even if not full.
    due: Option<Instant>,
    /// Newest record timestamp in the builder (ms).
    max_timestamp: i64,
    /// Source offset after everything pushed (control and aborted batches included).
    pushed_until: i64,
    /// Uncompressed source bytes of the chunks pushed since the last batch was built.
    source_bytes: usize,
    /// Source offsets of the records gathered, as runs of consecutive offsets: (first, count).
    runs: Vec<(i64, i64)>,
}

impl Batcher {
    /// A batcher of batches up to `max_bytes`, due `linger` after their first record, whose
    /// source position starts at `from`.
    pub(super) fn new(max_bytes: usize, linger: Duration, from: i64) -> Self {
        Self {
            builder: BatchBuilder::new(max_bytes),
            linger,
            due: None,
            max_timestamp: i64::MIN,
            pushed_until: from,
            source_bytes: 0,
            runs: Vec::new(),
        }
    }

    /// Batches from now on hold up to `max_bytes`; takes effect between batches only.
    pub(super) fn resize(&mut self, max_bytes: usize) {
        if self.builder.is_empty() && self.builder.max_bytes() != max_bytes {
            self.builder = BatchBuilder::new(max_bytes);
        }
    }

    /// Adds a record; gives it back when the batch is full (build it first, then push again).
    pub(super) fn push(&mut self, record: Record, now: Instant) -> Result<(), Record> {
        let (timestamp, offset) = (record.timestamp, record.offset);
        self.builder.try_push(record)?;
        match self.runs.last_mut() {
            Some((first, count)) if *first + *count == offset => *count += 1,
            _ => self.runs.push((offset, 1)),
        }
        self.max_timestamp = self.max_timestamp.max(timestamp);
        self.due.get_or_insert(now + self.linger);
        Ok(())
    }

    /// A chunk of the source was pushed whole: the position after it, and its source bytes.
    pub(super) fn pushed(&mut self, next_offset: i64, source_bytes: usize) {
        self.pushed_until = next_offset;
        self.source_bytes += source_bytes;
    }

    /// The source position moved without records (a gap): nothing is gathered across it.
    pub(super) fn moved(&mut self, to: i64) {
        self.pushed_until = to;
    }

    /// When the gathered records are due, if there are any.
    pub(super) fn due(&self) -> Option<Instant> {
        self.due
    }

    /// The source offset after everything pushed.
    pub(super) fn pushed_until(&self) -> i64 {
        self.pushed_until
    }

    /// The source offset after the last record pushed: where a batch built in the middle of a
    /// chunk ends.
    pub(super) fn after_last_record(&self) -> i64 {
        self.builder.last_offset().map_or(self.pushed_until, |o| o + 1)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.builder.is_empty()
    }

    /// Bytes of records gathered.
    pub(super) fn size_bytes(&self) -> usize {
        if self.builder.is_empty() {
            0
        } else {
            self.builder.size_bytes()
        }
    }

    pub(super) fn first_timestamp(&self) -> Option<i64> {
        self.builder.first_timestamp()
    }

    /// Builds the gathered records into one batch whose position is `until`; `None` when there
    /// are none.
    pub(super) fn build(&mut self, until: i64, stamp: Stamp) -> Result<Option<Ready>, batch::Error> {
        if self.builder.is_empty() {
            return Ok(None);
        }
        let opts = BuildOptions {
            compression: stamp.codec,
            zstd_level: stamp.zstd_level,
            producer_id: stamp.producer.id,
            producer_epoch: stamp.producer.epoch,
            base_sequence: stamp.base_sequence,
            transactional: false,
        };
        let first = self.builder.first_offset().unwrap_or(until);
        let max_timestamp = std::mem::replace(&mut self.max_timestamp, i64::MIN);
        let first_timestamp = self.builder.first_timestamp().unwrap_or(max_timestamp);
        let built = self.builder.finish(&opts)?;
        self.due = None;
        Ok(Some(Ready {
            bytes: built.bytes,
            first,
            until,
            last: built.last_source_offset,
            count: built.record_count,
            source_bytes: std::mem::take(&mut self.source_bytes) as u64,
            uncompressed_len: built.uncompressed_len,
            max_timestamp,
            first_timestamp,
            runs: std::mem::take(&mut self.runs),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::batches;
    use crate::pipeline::fake::record;

    const STAMP: Stamp = Stamp {
        producer: ProducerIdentity { id: 42, epoch: 3 },
        base_sequence: 100,
        codec: Compression::Zstd,
        zstd_level: 3,
    };

    #[test]
    fn a_batch_is_due_one_linger_after_its_first_record() {
        let start = Instant::now();
        let mut b = Batcher::new(1 << 20, Duration::from_millis(50), 0);
        assert_eq!(b.due(), None);
        b.push(record(0, b"a"), start).expect("fits");
        b.push(record(1, b"b"), start + Duration::from_millis(30))
            .expect("fits");
        // The second record does not push the deadline back.
        assert_eq!(b.due(), Some(start + Duration::from_millis(50)));
        b.pushed(2, 2);
        let ready = b.build(b.pushed_until(), STAMP).expect("builds").expect("records");
        assert_eq!(b.due(), None, "nothing gathered, nothing due");
        assert_eq!((ready.first, ready.last, ready.until, ready.count), (0, 1, 2, 2));
        assert_eq!(
            (ready.first_timestamp, ready.max_timestamp),
            (1_700_000_000_000, 1_700_000_000_001)
        );
        assert!(b.build(2, STAMP).expect("builds").is_none());
    }

    #[test]
    fn a_resize_takes_effect_between_batches_only() {
        let now = Instant::now();
        let value: &'static [u8] = &[7; 60];
        let mut b = Batcher::new(200, Duration::from_secs(1), 0);
        b.push(record(0, value), now).expect("fits");
        b.resize(100_000);
        let fill = |b: &mut Batcher, from: i64| (from..).take_while(|&o| b.push(record(o, value), now).is_ok()).count();
        let first = 1 + fill(&mut b, 1);
        b.build(b.after_last_record(), STAMP).expect("builds").expect("records");
        b.resize(100_000);
        let second = fill(&mut b, first as i64);
        assert!(first < 4, "the batch being gathered kept its size: {first} records");
        assert!(second > 100, "the next batch is the new size: {second} records");
    }

    #[test]
    fn a_full_batch_gives_the_record_back_and_ends_after_the_last_record() {
        let now = Instant::now();
        let mut b = Batcher::new(200, Duration::from_secs(1), 10);
        let value: &'static [u8] = &[7; 60];
        let mut pushed = 0;
        let rejected = loop {
            match b.push(record(10 + pushed, value), now) {
                Ok(()) => pushed += 1,
                Err(r) => break r,
            }
        };
        assert!(pushed >= 1, "one record fits");
        assert_eq!(
            rejected.offset,
            10 + pushed,
            "the record that did not fit comes back whole"
        );
        // Built in the middle of a chunk: the position is after the last record in it.
        let until = b.after_last_record();
        assert_eq!(until, 10 + pushed);
        let ready = b.build(until, STAMP).expect("builds").expect("records");
        assert!(ready.bytes.len() <= 200 + 61, "{}", ready.bytes.len());
        b.push(rejected, now).expect("fits an empty batch");
        // What the broker sees: the identity, the sequence and the records, in order.
        let parsed: Vec<_> = batches(ready.bytes.clone()).collect::<Result<_, _>>().expect("parses");
        let header = &parsed[0].header;
        assert_eq!(
            (header.producer_id, header.producer_epoch, header.base_sequence),
            (42, 3, 100)
        );
        let records = parsed[0].records().expect("decodes");
        assert_eq!(records.len() as i64, pushed);
        assert!(records.iter().all(|r| r.value.as_deref() == Some(value)));
    }

    #[test]
    fn source_bytes_and_position_cover_every_chunk_since_the_last_batch() {
        let now = Instant::now();
        let mut b = Batcher::new(1 << 20, Duration::ZERO, 0);
        b.push(record(0, b"x"), now).expect("fits");
        b.pushed(5, 100); // offsets 1..5 were control records or aborted
        b.push(record(5, b"y"), now).expect("fits");
        b.pushed(6, 50);
        let ready = b.build(b.pushed_until(), STAMP).expect("builds").expect("records");
        assert_eq!((ready.source_bytes, ready.until, ready.count), (150, 6, 2));
        b.moved(9);
        assert_eq!((b.pushed_until(), b.after_last_record()), (9, 9));
    }

    #[test]
    fn batches_are_built_with_the_configured_codec() {
        let now = Instant::now();
        for codec in Compression::ALL {
            let mut b = Batcher::new(1 << 20, Duration::ZERO, 0);
            for offset in 0..50 {
                b.push(record(offset, b"the same value, again and again"), now)
                    .expect("fits");
            }
            b.pushed(50, 50);
            let stamp = Stamp { codec, ..STAMP };
            let ready = b.build(b.pushed_until(), stamp).expect("builds").expect("records");
            let parsed: Vec<_> = batches(ready.bytes).collect::<Result<_, _>>().expect("parses");
            assert_eq!(parsed[0].header.compression().expect("known codec"), codec);
            assert_eq!(parsed[0].records().expect("decodes").len(), 50, "{codec}");
        }
    }
}
