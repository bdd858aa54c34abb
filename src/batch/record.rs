//! One record of a v2 batch: parsing from a (decompressed) records section and encoding.
//!
//! Record layout:
//!
//! ```text
//! length varint | attributes i8 | timestampDelta varlong | offsetDelta varint
//! | keyLength varint (-1 = null) | key | valueLength varint (-1 = null) | value
//! | headerCount varint | [headerKeyLength varint | headerKey | headerValueLength varint | headerValue]*
//! ```
//!
//! Parsing slices keys, values and headers out of the records buffer without copying. Headers are
//! never decoded on the hot path: the count varint and every header are kept byte for byte, so
//! duplicate keys, non-UTF-8 keys and null values all survive replication unchanged.

use std::ops::Range;

use bytes::Bytes;

use super::header::BatchHeader;
use super::wire::{read_varint, read_varlong, varint_len, varlong_len, write_varint, write_varlong};
use super::{Error, Result};

/// Smallest possible encoded record: length, attributes, two deltas, null key, null value and
/// zero headers, one byte each.
const MIN_RECORD_LEN: usize = 7;
/// Encoded `headers` for a record without headers: a zero count.
const NO_HEADERS: &[u8] = &[0];

/// A record with absolute offset and timestamp, its payload sliced from the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Absolute offset in the source partition.
    pub offset: i64,
    /// Absolute timestamp (for `LogAppendTime` batches, the batch's `max_timestamp`).
    pub timestamp: i64,
    /// Key, `None` for a null key (distinct from an empty key).
    pub key: Option<Bytes>,
    /// Value, `None` for a tombstone (distinct from an empty value).
    pub value: Option<Bytes>,
    /// header count varint followed by every header, byte-for-byte as in the source record
    /// (duplicate keys, non-UTF-8 keys, null values all preserved). Empty is read as no headers.
    pub headers: Bytes,
}

impl Record {
    /// A record without headers.
    pub fn new(offset: i64, timestamp: i64, key: Option<Bytes>, value: Option<Bytes>) -> Self {
        Record {
            offset,
            timestamp,
            key,
            value,
            headers: Bytes::from_static(NO_HEADERS),
        }
    }

    /// Encodes a header list into the stored form of [`Record::headers`].
    pub fn encode_headers<'a>(headers: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>) -> Bytes {
        let mut body = Vec::new();
        let mut count = 0i32;
        for (key, value) in headers {
            count += 1;
            write_len(&mut body, Some(key));
            write_len(&mut body, value);
        }
        let mut out = Vec::with_capacity(body.len() + 5);
        write_varint(&mut out, count);
        out.extend_from_slice(&body);
        Bytes::from(out)
    }

    /// Decodes the stored headers; for checks and tests, the replication path never needs it.
    pub fn header_list(&self) -> Result<Vec<(Bytes, Option<Bytes>)>> {
        let err = |reason| Error::Headers {
            offset: self.offset,
            reason,
        };
        let buf = self.headers_bytes();
        let mut pos = 0;
        let count = read_varint(buf, &mut pos).ok_or(err("truncated header count"))?;
        let count = usize::try_from(count).map_err(|_| err("negative header count"))?;
        // Each header takes at least two bytes, which bounds a hostile count.
        let mut out = Vec::with_capacity(count.min(buf.len() / 2));
        for _ in 0..count {
            let key = read_bytes(buf, &mut pos)
                .ok_or(err("truncated header key"))?
                .ok_or(err("null header key"))?;
            let value = read_bytes(buf, &mut pos).ok_or(err("truncated header value"))?;
            out.push((self.slice_headers(key), value.map(|range| self.slice_headers(range))));
        }
        if pos != buf.len() {
            return Err(err("trailing bytes after the last header"));
        }
        Ok(out)
    }

    /// An upper bound on this record's encoded size inside any batch, whatever its offset and
    /// timestamp deltas turn out to be.
    pub fn encoded_len_upper_bound(&self) -> usize {
        // length (5) + attributes (1) + timestamp delta (10) + offset delta (5) + two lengths (5 each)
        const FIXED: usize = 5 + 1 + 10 + 5 + 5 + 5;
        FIXED
            + self.key.as_ref().map_or(0, Bytes::len)
            + self.value.as_ref().map_or(0, Bytes::len)
            + self.headers_bytes().len()
    }

    fn headers_bytes(&self) -> &[u8] {
        if self.headers.is_empty() {
            NO_HEADERS
        } else {
            &self.headers
        }
    }

    fn slice_headers(&self, range: Range<usize>) -> Bytes {
        if self.headers.is_empty() {
            Bytes::new()
        } else {
            self.headers.slice(range)
        }
    }

    /// Exact size of the record body (everything after the length varint), or `None` when a
    /// field is too long for Kafka's `i32` lengths.
    pub(crate) fn body_len(&self, timestamp_delta: i64, offset_delta: i32) -> Option<usize> {
        let field = |f: &Option<Bytes>| -> Option<usize> {
            match f {
                None => Some(varint_len(-1)),
                Some(b) => Some(varint_len(i32::try_from(b.len()).ok()?) + b.len()),
            }
        };
        1usize
            .checked_add(varlong_len(timestamp_delta))?
            .checked_add(varint_len(offset_delta))?
            .checked_add(field(&self.key)?)?
            .checked_add(field(&self.value)?)?
            .checked_add(self.headers_bytes().len())
    }

    /// Appends the full encoding (length varint included); `body_len` comes from [`Self::body_len`].
    pub(crate) fn write(&self, out: &mut Vec<u8>, timestamp_delta: i64, offset_delta: i32, body_len: i32) {
        write_varint(out, body_len);
        out.push(0); // record attributes: unused by Kafka, always zero
        write_varlong(out, timestamp_delta);
        write_varint(out, offset_delta);
        write_len(out, self.key.as_deref());
        write_len(out, self.value.as_deref());
        out.extend_from_slice(self.headers_bytes());
    }
}

/// Appends a nullable length-prefixed field; callers guarantee lengths fit an `i32`.
fn write_len(out: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        None => write_varint(out, -1),
        Some(bytes) => {
            write_varint(out, i32::try_from(bytes.len()).unwrap_or(i32::MAX));
            out.extend_from_slice(bytes);
        }
    }
}

/// Reads a nullable length-prefixed field. Outer `None`: malformed; inner `None`: null.
#[inline]
fn read_bytes(buf: &[u8], pos: &mut usize) -> Option<Option<Range<usize>>> {
    let len = read_varint(buf, pos)?;
    if len == -1 {
        return Some(None);
    }
    let len = usize::try_from(len).ok()?;
    let start = *pos;
    let end = start.checked_add(len).filter(|&end| end <= buf.len())?;
    *pos = end;
    Some(Some(start..end))
}

/// Parses the records section of a batch (already decompressed) into records.
///
/// Exactly `header.record_count` records must fill `data` exactly.
pub(crate) fn parse_records(data: &Bytes, header: &BatchHeader) -> Result<Vec<Record>> {
    let base_offset = header.base_offset;
    let count = usize::try_from(header.record_count).map_err(|_| Error::Corrupt {
        base_offset,
        reason: "negative record count",
    })?;
    let buf: &[u8] = data;
    let log_append_time = header.is_log_append_time();
    // A hostile count cannot make us reserve more than the bytes could possibly hold.
    let mut records = Vec::with_capacity(count.min(buf.len() / MIN_RECORD_LEN));
    let mut pos = 0;
    for index in 0..count {
        let err = |reason| Error::CorruptRecord {
            base_offset,
            index,
            reason,
        };
        if pos >= buf.len() {
            return Err(Error::Corrupt {
                base_offset,
                reason: "fewer records than the header's record count",
            });
        }
        let len = read_varint(buf, &mut pos).ok_or(err("malformed record length"))?;
        let len = usize::try_from(len).map_err(|_| err("negative record length"))?;
        let end = pos
            .checked_add(len)
            .filter(|&end| end <= buf.len())
            .ok_or(err("record length runs past the records section"))?;
        // Every field read below is confined to this record's bytes.
        let body = &buf[..end];
        if pos >= end {
            return Err(err("empty record"));
        }
        pos += 1; // attributes: unused
        let timestamp_delta = read_varlong(body, &mut pos).ok_or(err("malformed timestamp delta"))?;
        let offset_delta = read_varint(body, &mut pos).ok_or(err("malformed offset delta"))?;
        let key = read_bytes(body, &mut pos).ok_or(err("malformed key"))?;
        let value = read_bytes(body, &mut pos).ok_or(err("malformed value"))?;
        let headers_start = pos;
        skip_headers(body, &mut pos).ok_or(err("malformed headers"))?;
        if pos != end {
            return Err(err("record length does not match its fields"));
        }
        records.push(Record {
            offset: base_offset.wrapping_add(i64::from(offset_delta)),
            timestamp: if log_append_time {
                header.max_timestamp
            } else {
                header.base_timestamp.wrapping_add(timestamp_delta)
            },
            key: key.map(|range| data.slice(range)),
            value: value.map(|range| data.slice(range)),
            headers: data.slice(headers_start..end),
        });
    }
    if pos != buf.len() {
        return Err(Error::Corrupt {
            base_offset,
            reason: "bytes left after the header's record count",
        });
    }
    Ok(records)
}

/// Validates and skips the header count and headers.
#[inline]
fn skip_headers(body: &[u8], pos: &mut usize) -> Option<()> {
    let count = read_varint(body, pos)?;
    if count < 0 {
        return None;
    }
    // Every header consumes at least two bytes, so a hostile count fails fast.
    for _ in 0..count {
        read_bytes(body, pos)??; // a null header key is invalid
        read_bytes(body, pos)?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(record_count: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 1000,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: 0,
            base_timestamp: 5_000,
            max_timestamp: 9_000,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            record_count,
        }
    }

    fn encode(records: &[(Record, i64, i32)]) -> Bytes {
        let mut out = Vec::new();
        for (record, ts_delta, off_delta) in records {
            let len = record.body_len(*ts_delta, *off_delta).expect("small record");
            record.write(&mut out, *ts_delta, *off_delta, len as i32);
        }
        Bytes::from(out)
    }

    fn sample() -> Record {
        Record {
            offset: 1003,
            timestamp: 4_990,
            key: Some(Bytes::from_static(b"k")),
            value: None,
            headers: Record::encode_headers([
                (&b"a"[..], Some(&b"1"[..])),
                (&b"a"[..], None),
                (&[0xff, 0xfe][..], Some(&b""[..])),
            ]),
        }
    }

    #[test]
    fn parse_matches_encode() {
        let record = sample();
        let data = encode(&[(record.clone(), -10, 3)]);
        let parsed = parse_records(&data, &header(1)).expect("valid");
        assert_eq!(parsed, vec![record]);
    }

    #[test]
    fn log_append_time_uses_max_timestamp() {
        let data = encode(&[(sample(), -10, 3)]);
        let h = BatchHeader {
            attributes: 0x08,
            ..header(1)
        };
        let parsed = parse_records(&data, &h).expect("valid");
        assert_eq!(parsed[0].timestamp, 9_000);
    }

    #[test]
    fn header_list_decodes_duplicates_and_nulls() {
        let list = sample().header_list().expect("valid headers");
        assert_eq!(
            list,
            vec![
                (Bytes::from_static(b"a"), Some(Bytes::from_static(b"1"))),
                (Bytes::from_static(b"a"), None),
                (Bytes::from_static(&[0xff, 0xfe]), Some(Bytes::new())),
            ]
        );
        let empty = Record {
            headers: Bytes::new(),
            ..sample()
        };
        assert_eq!(empty.header_list().expect("empty means none"), vec![]);
        let bad = Record {
            headers: Bytes::from_static(&[2, 2, b'x']),
            ..sample()
        };
        assert!(matches!(bad.header_list(), Err(Error::Headers { offset: 1003, .. })));
    }

    #[test]
    fn upper_bound_covers_the_real_size() {
        let record = sample();
        for (ts, off) in [(0, 0), (i64::MIN, i32::MAX), (i64::MAX, i32::MIN)] {
            let exact = record.body_len(ts, off).expect("fits");
            assert!(exact + varint_len(exact as i32) <= record.encoded_len_upper_bound());
        }
    }

    #[test]
    fn corrupt_records_table() {
        let good = encode(&[(sample(), 0, 0)]);
        let mut longer_len = good.to_vec();
        longer_len[0] += 2; // zigzag: length + 1
        longer_len.push(0);
        let cases: Vec<(&str, Vec<u8>, i32)> = vec![
            ("count larger than data", good.to_vec(), 2),
            ("count smaller than data", [good.to_vec(), good.to_vec()].concat(), 1),
            ("negative count", good.to_vec(), -1),
            ("length past end", good[..good.len() - 1].to_vec(), 1),
            ("length longer than fields", longer_len, 1),
            ("negative length", vec![0x01], 1),
            ("empty record", vec![0x00], 1),
            ("key length below -1", vec![0x0a, 0, 0, 0, 0x03, 0x01, 0x00], 1),
            ("negative header count", vec![0x0c, 0, 0, 0, 0x01, 0x01, 0x01], 1),
            ("null header key", vec![0x10, 0, 0, 0, 0x01, 0x01, 0x02, 0x01, 0x01], 1),
            (
                "varint too long",
                vec![0x0e, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                1,
            ),
        ];
        for (name, bytes, count) in cases {
            let result = parse_records(&Bytes::from(bytes), &header(count));
            assert!(
                matches!(
                    result,
                    Err(Error::Corrupt { base_offset: 1000, .. } | Error::CorruptRecord { base_offset: 1000, .. })
                ),
                "{name}: {result:?}"
            );
        }
    }

    #[test]
    fn empty_section_with_zero_count_is_fine() {
        assert_eq!(parse_records(&Bytes::new(), &header(0)).expect("empty"), vec![]);
    }
}
