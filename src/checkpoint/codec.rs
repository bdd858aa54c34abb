//! The checkpoint record codec: pure functions from [`Checkpoint`] to key and value bytes and
//! back. The byte layout is documented in the module doc of [`crate::checkpoint`].

use bytes::{BufMut, Bytes, BytesMut};

use super::{Checkpoint, CheckpointRecord, Error, Result, TopicIds};
use crate::kafka::ProducerIdentity;

/// Key format version this build writes and the newest it reads.
pub const KEY_VERSION: i16 = 1;
/// Value format version this build writes and the newest it reads.
pub const VALUE_VERSION: i16 = 1;
/// Key version of an offset map run record (the checkpoint key, plus the run's source start).
pub const RUN_KEY_VERSION: i16 = 2;
/// Value version of an offset map run record.
pub const RUN_VALUE_VERSION: i16 = 1;
/// Body of a run value: target start and length.
const RUN_BODY_LEN: usize = 16;
/// Version of the catch-up section (the fresh range of a partition in fresh-first catch-up,
/// appended to a version 1 value body) this build writes and the newest it reads.
pub const CATCHUP_VERSION: i16 = 1;
/// Bytes of the catch-up section's fixed fields: split, next source, next target, writer count.
const CATCHUP_FIXED: usize = 3 * 8 + 4;
/// Bytes of one fresh-range writer: `i64` id, `i16` epoch, `i32` sequence.
const CATCHUP_WRITER_LEN: usize = 8 + 2 + 4;
/// Bytes of the topic ids.
const TOPIC_IDS_LEN: usize = 32;

const KEY: &str = "key";
const VALUE: &str = "value";
const CATCHUP: &str = "catch-up section";
/// Bytes of the version 1 value body besides the target topic: length prefix and four `i64`s.
const V1_BODY_FIXED: usize = 4 + 4 * 8;
/// Bytes of one producer identity in the writers list: `i64` id, `i16` epoch.
const WRITER_LEN: usize = 8 + 2;
/// Bytes of one writer's sequence.
const SEQUENCE_LEN: usize = 4;

fn put_str(buf: &mut BytesMut, s: &str) {
    let len = u32::try_from(s.len()).expect("checkpoint names and ids are shorter than 4 GiB");
    buf.put_u32(len);
    buf.put_slice(s.as_bytes());
}

/// Encodes the key of the checkpoint of `topic`/`partition` for `replication_id`.
pub fn encode_key(replication_id: &str, topic: &str, partition: i32) -> Bytes {
    let mut buf = BytesMut::with_capacity(2 + 4 + replication_id.len() + 4 + topic.len() + 4);
    buf.put_i16(KEY_VERSION);
    put_str(&mut buf, replication_id);
    put_str(&mut buf, topic);
    buf.put_i32(partition);
    buf.freeze()
}

/// Encodes the key of the offset map run of `topic`/`partition` starting at source offset
/// `source`.
pub fn encode_run_key(replication_id: &str, topic: &str, partition: i32, source: i64) -> Bytes {
    let mut buf = BytesMut::with_capacity(2 + 4 + replication_id.len() + 4 + topic.len() + 4 + 8);
    buf.put_i16(RUN_KEY_VERSION);
    put_str(&mut buf, replication_id);
    put_str(&mut buf, topic);
    buf.put_i32(partition);
    buf.put_i64(source);
    buf.freeze()
}

/// Encodes the value of an offset map run: where on the target it starts, and its length.
pub fn encode_run_value(run: &crate::offsets::Run) -> Bytes {
    let mut buf = BytesMut::with_capacity(2 + 4 + RUN_BODY_LEN);
    buf.put_i16(RUN_VALUE_VERSION);
    buf.put_u32(RUN_BODY_LEN as u32);
    buf.put_i64(run.target);
    buf.put_i64(run.len);
    buf.freeze()
}

/// A key of the checkpoint topic: a checkpoint's, or an offset map run's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnyKey {
    /// (replication id, source topic, source partition).
    Checkpoint(String, String, i32),
    /// (replication id, source topic, source partition, the run's first source offset).
    Run(String, String, i32, i64),
}

/// Decodes either kind of key, told apart by their versions.
pub fn decode_any_key(key: &[u8]) -> Result<AnyKey> {
    if key.get(..2) != Some(&RUN_KEY_VERSION.to_be_bytes()[..]) {
        return decode_key(key).map(|(r, t, p)| AnyKey::Checkpoint(r, t, p));
    }
    let mut r = Reader::new(key, KEY);
    r.version(RUN_KEY_VERSION)?;
    let replication_id = r.string("replication id")?;
    let topic = r.string("source topic")?;
    let partition = r.i32("source partition")?;
    let source = r.i64("run source offset")?;
    r.finish()?;
    Ok(AnyKey::Run(replication_id, topic, partition, source))
}

/// Decodes the value of an offset map run starting at `source`. Fields a newer strait appends
/// to the body are skipped.
pub fn decode_run_value(source: i64, value: &[u8]) -> Result<crate::offsets::Run> {
    let mut r = Reader::body(value, RUN_VALUE_VERSION)?;
    Ok(crate::offsets::Run {
        source,
        target: r.i64("run target offset")?,
        len: r.i64("run length")?,
    })
}

/// The second range of a partition in fresh-first catch-up (see
/// [`crate::pipeline::catchup`]): the source records from `split` on, written to the target
/// before the backlog below `split` is drained. The checkpoint's own fields are the backlog's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FreshRange {
    /// The first source offset of the fresh range; the backlog ends below it.
    pub split: i64,
    /// Every kept fresh source record below this offset is on the target.
    pub next_source_offset: i64,
    /// Where the scan of the target's tail for the fresh range's records starts.
    pub next_target_offset: i64,
    /// The producer identities that may have written fresh records at or beyond
    /// `next_target_offset`; none of them writes backlog records.
    pub writers: Vec<ProducerIdentity>,
    /// For each of `writers`, the sequence it gives (or would give) the first kept fresh
    /// record at `next_source_offset`; `-1` when unknown.
    pub sequences: Vec<i32>,
}

/// Encodes the value of a checkpoint of a partition in fresh-first catch-up: `r` is the
/// backlog's position and writers, in the version 1 fields a strait without catch-up reads;
/// the fresh range follows the topic ids in a section of its own (version
/// [`CATCHUP_VERSION`], its own length). Writers, sequences and topic ids the record lacks are
/// written as none, none and zeros (unknown), so that the section has a fixed place.
pub fn encode_catchup_value(r: &CheckpointRecord, fresh: &FreshRange) -> Bytes {
    let writers = r.writers.as_deref().unwrap_or_default();
    let sequences = r.sequences.as_deref().unwrap_or_default();
    let topic_ids = r.topic_ids.unwrap_or_default();
    encode(
        &r.checkpoint,
        Some(writers),
        Some(sequences),
        Some(topic_ids),
        Some(fresh),
    )
}

/// Encodes the value of a checkpoint without producer identities (its writers are unknown to
/// whoever resumes from it).
pub fn encode_value(c: &Checkpoint) -> Bytes {
    encode(c, None, None, None, None)
}

/// Encodes the value of a checkpoint record in the current format version: the writers list is
/// appended to the body when known.
pub fn encode_record_value(r: &CheckpointRecord) -> Bytes {
    match &r.fresh {
        Some(fresh) => encode_catchup_value(r, fresh),
        None => encode(
            &r.checkpoint,
            r.writers.as_deref(),
            r.sequences.as_deref(),
            r.topic_ids,
            None,
        ),
    }
}

fn encode(
    c: &Checkpoint,
    writers: Option<&[ProducerIdentity]>,
    sequences: Option<&[i32]>,
    topic_ids: Option<TopicIds>,
    fresh: Option<&FreshRange>,
) -> Bytes {
    // Sequences are written only with writers, one each.
    let sequences = writers
        .zip(sequences)
        .map(|(w, s)| (0..w.len()).map(|i| s.get(i).copied().unwrap_or(-1)));
    // Topic ids follow the sequences, so they are written only with them.
    let topic_ids = topic_ids.filter(|_| sequences.is_some());
    // The catch-up section follows the topic ids, so it is written only with them.
    let fresh = fresh.filter(|_| topic_ids.is_some());
    let writers_len = writers.map_or(0, |w| 4 + w.len() * WRITER_LEN)
        + sequences.as_ref().map_or(0, |s| 4 + s.len() * SEQUENCE_LEN)
        + topic_ids.map_or(0, |_| TOPIC_IDS_LEN)
        + fresh.map_or(0, |f| 2 + 4 + catchup_len(f));
    let body_len = V1_BODY_FIXED + c.target_topic.len() + writers_len;
    let mut buf = BytesMut::with_capacity(2 + 4 + body_len);
    buf.put_i16(VALUE_VERSION);
    buf.put_u32(u32::try_from(body_len).expect("checkpoint names and ids are shorter than 4 GiB"));
    put_str(&mut buf, &c.target_topic);
    buf.put_i64(c.next_source_offset);
    buf.put_i64(c.next_target_offset);
    buf.put_i64(c.writer_epoch);
    buf.put_i64(c.wall_clock_ms);
    if let Some(writers) = writers {
        buf.put_u32(u32::try_from(writers.len()).expect("a partition has far fewer than 4 billion writers"));
        for w in writers {
            buf.put_i64(w.id);
            buf.put_i16(w.epoch);
        }
    }
    if let Some(sequences) = sequences {
        buf.put_u32(u32::try_from(sequences.len()).expect("a partition has far fewer than 4 billion writers"));
        for s in sequences {
            buf.put_i32(s);
        }
    }
    if let Some(ids) = topic_ids {
        buf.put_slice(&ids.source);
        buf.put_slice(&ids.target);
    }
    if let Some(f) = fresh {
        put_catchup(&mut buf, f);
    }
    buf.freeze()
}

/// Bytes of a catch-up section's body.
fn catchup_len(f: &FreshRange) -> usize {
    CATCHUP_FIXED + f.writers.len() * CATCHUP_WRITER_LEN
}

/// The catch-up section: version, body length, then split, next source, next target and the
/// fresh range's writers, each with its sequence (`-1` where `f` gives none).
fn put_catchup(buf: &mut BytesMut, f: &FreshRange) {
    buf.put_i16(CATCHUP_VERSION);
    buf.put_u32(u32::try_from(catchup_len(f)).expect("a partition has far fewer than 4 billion writers"));
    buf.put_i64(f.split);
    buf.put_i64(f.next_source_offset);
    buf.put_i64(f.next_target_offset);
    buf.put_u32(u32::try_from(f.writers.len()).expect("a partition has far fewer than 4 billion writers"));
    for (i, w) in f.writers.iter().enumerate() {
        buf.put_i64(w.id);
        buf.put_i16(w.epoch);
        buf.put_i32(f.sequences.get(i).copied().unwrap_or(-1));
    }
}

/// Decodes a checkpoint key into (replication id, source topic, source partition).
pub fn decode_key(key: &[u8]) -> Result<(String, String, i32)> {
    let mut r = Reader::new(key, KEY);
    r.version(KEY_VERSION)?;
    let replication_id = r.string("replication id")?;
    let topic = r.string("source topic")?;
    let partition = r.i32("source partition")?;
    r.finish()?;
    Ok((replication_id, topic, partition))
}

/// Decodes a checkpoint record's position from its key and its (non-null) value.
pub fn decode_value(key: &[u8], value: &[u8]) -> Result<Checkpoint> {
    decode_record(key, value).map(|r| r.checkpoint)
}

/// Decodes a checkpoint record: its key and its (non-null) value. A body that ends after the
/// version 1 fields has unknown writers (`None`). A catch-up section is skipped: this is what a
/// strait without fresh-first catch-up reads (the backlog's position and writers).
pub fn decode_record(key: &[u8], value: &[u8]) -> Result<CheckpointRecord> {
    decode_fields(key, value).map(|(record, _)| record)
}

/// Decodes a checkpoint record and, when the value carries one, its catch-up section: the
/// fresh range of a partition in fresh-first catch-up. A section of a newer version than
/// [`CATCHUP_VERSION`] is refused with [`Error::UnsupportedVersion`]; fields appended inside
/// the section, or after it in the body, are skipped.
pub fn decode_catchup_record(key: &[u8], value: &[u8]) -> Result<(CheckpointRecord, Option<FreshRange>)> {
    let (record, mut r) = decode_fields(key, value)?;
    if record.topic_ids.is_none() || r.pos == r.buf.len() {
        return Ok((record, None));
    }
    r.part = CATCHUP;
    r.version(CATCHUP_VERSION)?;
    let len = r.u32("section length")?;
    let body_at = r.base + r.pos;
    let mut s = Reader {
        buf: r.take(len, "section body")?,
        pos: 0,
        base: body_at,
        total: value.len(),
        part: CATCHUP,
    };
    let split = s.i64("split")?;
    let next_source_offset = s.i64("fresh next source offset")?;
    let next_target_offset = s.i64("fresh next target offset")?;
    let count = s.u32("fresh writer count")?;
    // The count is untrusted: never reserve more than the section can hold.
    let room = (s.buf.len() - s.pos) / CATCHUP_WRITER_LEN;
    let mut writers = Vec::with_capacity(count.min(room));
    let mut sequences = Vec::with_capacity(count.min(room));
    for _ in 0..count {
        writers.push(ProducerIdentity {
            id: s.i64("fresh writer producer id")?,
            epoch: s.i16("fresh writer producer epoch")?,
        });
        sequences.push(s.i32("fresh writer sequence")?);
    }
    Ok((
        record,
        Some(FreshRange {
            split,
            next_source_offset,
            next_target_offset,
            writers,
            sequences,
        }),
    ))
}

/// The fields of a record every reader knows, and the body's reader positioned after them.
fn decode_fields<'a>(key: &[u8], value: &'a [u8]) -> Result<(CheckpointRecord, Reader<'a>)> {
    let (replication_id, source_topic, source_partition) = decode_key(key)?;
    let mut r = Reader::body(value, VALUE_VERSION)?;
    let checkpoint = Checkpoint {
        replication_id,
        source_topic,
        source_partition,
        target_topic: r.string("target topic")?,
        next_source_offset: r.i64("next source offset")?,
        next_target_offset: r.i64("next target offset")?,
        writer_epoch: r.i64("writer epoch")?,
        wall_clock_ms: r.i64("wall clock ms")?,
    };
    let writers = if r.pos == r.buf.len() {
        None
    } else {
        let count = r.u32("writer count")?;
        // The count is untrusted: never reserve more than the body can hold.
        let mut writers = Vec::with_capacity(count.min((r.buf.len() - r.pos) / WRITER_LEN));
        for _ in 0..count {
            writers.push(ProducerIdentity {
                id: r.i64("writer producer id")?,
                epoch: r.i16("writer producer epoch")?,
            });
        }
        Some(writers)
    };
    let sequences = match &writers {
        Some(w) if r.pos < r.buf.len() => {
            let at = r.base + r.pos;
            let count = r.u32("sequence count")?;
            if count != w.len() {
                return Err(Error::CountMismatch {
                    part: VALUE,
                    field: "sequences",
                    at,
                    found: count,
                    expected: w.len(),
                });
            }
            let mut sequences = Vec::with_capacity(w.len());
            for _ in 0..count {
                sequences.push(r.i32("writer sequence")?);
            }
            Some(sequences)
        }
        _ => None,
    };
    let topic_ids = match &sequences {
        Some(_) if r.pos < r.buf.len() => {
            let source = r.take(16, "source topic id")?;
            let source: [u8; 16] = source.try_into().unwrap_or_default();
            let target = r.take(16, "target topic id")?;
            let target: [u8; 16] = target.try_into().unwrap_or_default();
            Some(TopicIds { source, target })
        }
        _ => None,
    };
    Ok((
        CheckpointRecord {
            checkpoint,
            writers,
            sequences,
            topic_ids,
            fresh: None,
        },
        r,
    ))
}

/// A cursor over untrusted bytes; every read is bounds-checked and reports where it failed.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Position of `buf[0]` in the whole input, for error messages.
    base: usize,
    /// Length of the whole input, for error messages.
    total: usize,
    part: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader of a value's body: the version (at most `supported`) and the body length come
    /// first, and nothing may follow the body. Fields appended by a newer strait within the
    /// same version are skipped: the body length delimits them, so nothing past the known
    /// fields is read.
    fn body(value: &'a [u8], supported: i16) -> Result<Self> {
        let mut outer = Reader::new(value, VALUE);
        outer.version(supported)?;
        let body_len = outer.u32("body length")?;
        let body_start = outer.pos;
        let body = outer.take(body_len, "body")?;
        outer.finish()?;
        Ok(Reader {
            buf: body,
            pos: 0,
            base: body_start,
            total: value.len(),
            part: VALUE,
        })
    }

    fn new(buf: &'a [u8], part: &'static str) -> Self {
        Reader {
            buf,
            pos: 0,
            base: 0,
            total: buf.len(),
            part,
        }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8]> {
        let slice = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end))
            .ok_or(Error::Truncated {
                part: self.part,
                field,
                at: self.base + self.pos,
                len: self.total,
            })?;
        self.pos += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn i16(&mut self, field: &'static str) -> Result<i16> {
        self.array(field).map(i16::from_be_bytes)
    }

    fn i32(&mut self, field: &'static str) -> Result<i32> {
        self.array(field).map(i32::from_be_bytes)
    }

    fn u32(&mut self, field: &'static str) -> Result<usize> {
        // A u32 always fits the usize of the 32- and 64-bit targets strait runs on; on a smaller
        // one the saturated length simply fails the bounds check.
        self.array(field)
            .map(|b| usize::try_from(u32::from_be_bytes(b)).unwrap_or(usize::MAX))
    }

    fn i64(&mut self, field: &'static str) -> Result<i64> {
        self.array(field).map(i64::from_be_bytes)
    }

    fn string(&mut self, field: &'static str) -> Result<String> {
        let len = self.u32(field)?;
        let bytes = self.take(len, field)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|source| Error::NotUtf8 {
                part: self.part,
                field,
                source,
            })
    }

    fn version(&mut self, supported: i16) -> Result<i16> {
        let version = self.i16("format version")?;
        if version > supported {
            return Err(Error::UnsupportedVersion {
                part: self.part,
                version,
                supported,
            });
        }
        if version < 1 {
            return Err(Error::InvalidVersion {
                part: self.part,
                version,
            });
        }
        Ok(version)
    }

    fn finish(&self) -> Result<()> {
        let extra = self.buf.len() - self.pos;
        if extra == 0 {
            Ok(())
        } else {
            Err(Error::TrailingBytes {
                part: self.part,
                at: self.base + self.pos,
                extra,
            })
        }
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
