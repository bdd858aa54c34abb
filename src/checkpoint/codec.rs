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

const KEY: &str = "key";
const VALUE: &str = "value";
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

/// Encodes the value of a checkpoint without producer identities (its writers are unknown to
/// whoever resumes from it).
pub fn encode_value(c: &Checkpoint) -> Bytes {
    encode(c, None, None, None)
}

/// Encodes the value of a checkpoint record in the current format version: the writers list is
/// appended to the body when known.
pub fn encode_record_value(r: &CheckpointRecord) -> Bytes {
    encode(&r.checkpoint, r.writers.as_deref(), r.sequences.as_deref(), r.topic_ids)
}

fn encode(
    c: &Checkpoint,
    writers: Option<&[ProducerIdentity]>,
    sequences: Option<&[i32]>,
    topic_ids: Option<TopicIds>,
) -> Bytes {
    // Sequences are written only with writers, one each.
    let sequences = writers
        .zip(sequences)
        .map(|(w, s)| (0..w.len()).map(|i| s.get(i).copied().unwrap_or(-1)));
    // Topic ids follow the sequences, so they are written only with them.
    let topic_ids = topic_ids.filter(|_| sequences.is_some());
    let writers_len = writers.map_or(0, |w| 4 + w.len() * WRITER_LEN)
        + sequences.as_ref().map_or(0, |s| 4 + s.len() * SEQUENCE_LEN)
        + topic_ids.map_or(0, |_| 32);
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
    buf.freeze()
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
/// version 1 fields has unknown writers (`None`).
pub fn decode_record(key: &[u8], value: &[u8]) -> Result<CheckpointRecord> {
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
    Ok(CheckpointRecord {
        checkpoint,
        writers,
        sequences,
        topic_ids,
    })
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
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            replication_id: "dc1".into(),
            source_topic: "spans".into(),
            source_partition: 7,
            target_topic: "dc1.spans".into(),
            next_source_offset: 1234,
            next_target_offset: 5678,
            writer_epoch: 3,
            wall_clock_ms: 1_700_000_000_000,
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn key_of(c: &Checkpoint) -> Bytes {
        encode_key(&c.replication_id, &c.source_topic, c.source_partition)
    }

    /// Pins the format: if this test fails, checkpoints written by released versions would no
    /// longer be read. Change the format by the rules in the module doc, never by editing this.
    #[test]
    fn golden_bytes() {
        let c = sample();
        let key = key_of(&c);
        assert_eq!(
            hex(&key),
            concat!(
                "0001",       // key version 1
                "00000003",   // replication id length
                "646331",     // "dc1"
                "00000005",   // source topic length
                "7370616e73", // "spans"
                "00000007",   // partition 7
            )
        );
        let value = encode_value(&c);
        assert_eq!(
            hex(&value),
            concat!(
                "0001",               // value version 1
                "0000002d",           // body length 45 = 36 + 9
                "00000009",           // target topic length
                "6463312e7370616e73", // "dc1.spans"
                "00000000000004d2",   // next source offset 1234
                "000000000000162e",   // next target offset 5678
                "0000000000000003",   // writer epoch 3
                "0000018bcfe56800",   // wall clock 1_700_000_000_000 ms
            )
        );
        assert_eq!(decode_value(&key, &value).expect("golden value decodes"), c);
    }

    #[test]
    fn awkward_names_round_trip() {
        let names = [
            "",
            "/",
            ":",
            "\0",
            "a\0b",
            "a/b:c",
            "🦀 spans",
            "dc1.spans",
            "ÿ",
            "\u{10ffff}",
        ];
        for rid in names {
            for topic in names {
                for partition in [i32::MIN, -1, 0, 1, i32::MAX] {
                    let key = encode_key(rid, topic, partition);
                    let decoded = decode_key(&key).expect("key decodes");
                    assert_eq!(decoded, (rid.to_owned(), topic.to_owned(), partition));
                }
            }
        }
        // Length prefixes keep names apart that a separator would merge.
        assert_ne!(encode_key("a", "b/c", 0), encode_key("a/b", "c", 0));
        assert_ne!(encode_key("", "ab", 0), encode_key("a", "b", 0));
    }

    #[test]
    fn newer_versions_are_refused_with_their_number() {
        let c = sample();
        let mut value = encode_value(&c).to_vec();
        value[..2].copy_from_slice(&2i16.to_be_bytes());
        let err = decode_value(&key_of(&c), &value).expect_err("version 2 is unknown");
        assert!(
            matches!(
                err,
                Error::UnsupportedVersion {
                    part: "value",
                    version: 2,
                    supported: 1
                }
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("version 2") && text.contains("upgrade strait"), "{text}");

        let mut key = key_of(&c).to_vec();
        key[..2].copy_from_slice(&i16::MAX.to_be_bytes());
        let err = decode_key(&key).expect_err("key version 32767 is unknown");
        assert!(err.to_string().contains("version 32767"), "{err}");
    }

    #[test]
    fn zero_and_negative_versions_are_invalid() {
        let c = sample();
        for version in [0i16, -1, i16::MIN] {
            let mut value = encode_value(&c).to_vec();
            value[..2].copy_from_slice(&version.to_be_bytes());
            let err = decode_value(&key_of(&c), &value).expect_err("invalid version");
            assert!(
                matches!(err, Error::InvalidVersion { version: v, .. } if v == version),
                "{err:?}"
            );
        }
    }

    #[test]
    fn appended_body_fields_are_skipped() {
        // A newer strait may append fields inside the body, after the writers, without a
        // version bump.
        let r = sample_record();
        let mut value = encode_record_value(&r).to_vec();
        let extra = [0xAB_u8; 11];
        value.extend_from_slice(&extra);
        let body_len = u32::from_be_bytes([value[2], value[3], value[4], value[5]]) + extra.len() as u32;
        value[2..6].copy_from_slice(&body_len.to_be_bytes());
        assert_eq!(decode_record(&key_of(&r.checkpoint), &value).expect("decodes"), r);
    }

    fn sample_record() -> CheckpointRecord {
        CheckpointRecord {
            checkpoint: sample(),
            writers: Some(vec![
                ProducerIdentity { id: 4000, epoch: 0 },
                ProducerIdentity {
                    id: 4001,
                    epoch: i16::MAX,
                },
            ]),
            sequences: Some(vec![17, -1]),
            topic_ids: Some(TopicIds {
                source: [0x11; 16],
                target: [0; 16],
            }),
        }
    }

    /// Pins the writers field appended to version 1 bodies (see `golden_bytes` for the rule).
    #[test]
    fn golden_bytes_with_writers() {
        let r = sample_record();
        let value = encode_record_value(&r);
        assert_eq!(
            hex(&value),
            concat!(
                "0001",                             // value version 1
                "00000071",                         // body length 113 = 36 + 9 + 4 + 2 * 10 + 4 + 2 * 4 + 32
                "00000009",                         // target topic length
                "6463312e7370616e73",               // "dc1.spans"
                "00000000000004d2",                 // next source offset 1234
                "000000000000162e",                 // next target offset 5678
                "0000000000000003",                 // writer epoch 3
                "0000018bcfe56800",                 // wall clock 1_700_000_000_000 ms
                "00000002",                         // 2 writers
                "0000000000000fa0",                 // producer id 4000
                "0000",                             // producer epoch 0
                "0000000000000fa1",                 // producer id 4001
                "7fff",                             // producer epoch 32767
                "00000002",                         // 2 sequences
                "00000011",                         // sequence 17 of producer 4000
                "ffffffff",                         // sequence of producer 4001 unknown
                "11111111111111111111111111111111", // source topic id
                "00000000000000000000000000000000", // target topic id unknown
            )
        );
        let key = key_of(&r.checkpoint);
        assert_eq!(decode_record(&key, &value).expect("golden value decodes"), r);
        // A strait that knows only the version 1 fields reads the position and skips the rest.
        assert_eq!(decode_value(&key, &value).expect("decodes"), r.checkpoint);
    }

    #[test]
    fn a_checkpoint_without_writers_decodes_with_unknown_writers() {
        // Written by a strait that did not record producer identities: not the same as none.
        let c = sample();
        let old = encode_value(&c);
        let decoded = decode_record(&key_of(&c), &old).expect("old layout decodes");
        assert_eq!(decoded.checkpoint, c);
        assert_eq!(decoded.writers, None);
        let none = CheckpointRecord {
            checkpoint: c.clone(),
            writers: Some(vec![]),
            sequences: None,
            topic_ids: None,
        };
        let value = encode_record_value(&none);
        assert_eq!(value.len(), old.len() + 4);
        assert_eq!(decode_record(&key_of(&c), &value).expect("decodes"), none);
    }

    #[test]
    fn writers_without_sequences_decode_with_unknown_sequences_and_a_wrong_count_is_an_error() {
        // Written by a strait that recorded identities but not their sequences.
        let r = CheckpointRecord {
            sequences: None,
            topic_ids: None,
            ..sample_record()
        };
        let value = encode_record_value(&r);
        assert_eq!(
            value.len(),
            encode_record_value(&sample_record()).len() - 4 - 2 * 4 - 32
        );
        let key = key_of(&r.checkpoint);
        assert_eq!(decode_record(&key, &value).expect("decodes"), r);
        // One sequence for two writers.
        let mut value = value.to_vec();
        value.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 5]);
        let body_len = u32::from_be_bytes([value[2], value[3], value[4], value[5]]) + 8;
        value[2..6].copy_from_slice(&body_len.to_be_bytes());
        let err = decode_record(&key, &value).expect_err("one sequence for two writers");
        assert!(
            matches!(
                err,
                Error::CountMismatch {
                    found: 1,
                    expected: 2,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_writer_count_past_the_body_is_truncated() {
        let r = CheckpointRecord {
            sequences: None,
            topic_ids: None,
            ..sample_record()
        };
        let mut value = encode_record_value(&r).to_vec();
        // Claim a third writer the body does not hold.
        let count_at = value.len() - 2 * WRITER_LEN - 4;
        value[count_at..count_at + 4].copy_from_slice(&3u32.to_be_bytes());
        let err = decode_record(&key_of(&r.checkpoint), &value).expect_err("missing writer");
        assert!(
            matches!(
                err,
                Error::Truncated {
                    part: "value",
                    field: "writer producer id",
                    ..
                }
            ),
            "{err:?}"
        );
        // A huge count fails the same way, without reserving memory for it.
        value[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_record(&key_of(&r.checkpoint), &value).is_err());
    }

    #[test]
    fn bytes_after_the_record_are_refused() {
        let c = sample();
        let mut key = key_of(&c).to_vec();
        key.push(0);
        let err = decode_key(&key).expect_err("trailing key byte");
        assert!(
            matches!(
                err,
                Error::TrailingBytes {
                    part: "key",
                    extra: 1,
                    ..
                }
            ),
            "{err:?}"
        );

        let mut value = encode_value(&c).to_vec();
        value.extend_from_slice(&[1, 2]);
        let err = decode_value(&key_of(&c), &value).expect_err("bytes after the body");
        assert!(
            matches!(
                err,
                Error::TrailingBytes {
                    part: "value",
                    extra: 2,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_short_body_is_truncated() {
        let c = sample();
        let mut value = encode_value(&c).to_vec();
        // Claim a body one byte shorter than the v1 fields and drop that byte.
        value.pop();
        let body_len = u32::from_be_bytes([value[2], value[3], value[4], value[5]]) - 1;
        value[2..6].copy_from_slice(&body_len.to_be_bytes());
        let err = decode_value(&key_of(&c), &value).expect_err("short body");
        assert!(
            matches!(
                err,
                Error::Truncated {
                    part: "value",
                    field: "wall clock ms",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn huge_length_prefixes_fail_cleanly() {
        let mut key = vec![0, 1];
        key.extend_from_slice(&u32::MAX.to_be_bytes());
        let err = decode_key(&key).expect_err("length past the end");
        assert!(
            matches!(
                err,
                Error::Truncated {
                    field: "replication id",
                    at: 6,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn invalid_utf8_is_reported() {
        let mut key = encode_key("x", "t", 0).to_vec();
        key[6] = 0xff;
        let err = decode_key(&key).expect_err("not utf-8");
        assert!(
            matches!(
                err,
                Error::NotUtf8 {
                    field: "replication id",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    fn checkpoint() -> impl Strategy<Value = Checkpoint> {
        (
            (any::<String>(), any::<String>(), any::<i32>(), any::<String>()),
            (any::<i64>(), any::<i64>(), any::<i64>(), any::<i64>()),
        )
            .prop_map(|((rid, st, sp, tt), (nso, nto, we, wc))| Checkpoint {
                replication_id: rid,
                source_topic: st,
                source_partition: sp,
                target_topic: tt,
                next_source_offset: nso,
                next_target_offset: nto,
                writer_epoch: we,
                wall_clock_ms: wc,
            })
    }

    /// Strings biased towards separators, empties and non-ASCII.
    fn name() -> impl Strategy<Value = String> {
        prop_oneof![any::<String>(), "[/:._\\-\\x00a-c🦀]{0,6}"]
    }

    proptest! {
        #[test]
        fn key_round_trips(rid in name(), topic in name(), partition in any::<i32>()) {
            let key = encode_key(&rid, &topic, partition);
            prop_assert_eq!(decode_key(&key).expect("key decodes"), (rid, topic, partition));
        }

        #[test]
        fn keys_are_unambiguous(
            a in (name(), name(), any::<i32>()),
            b in (name(), name(), any::<i32>()),
        ) {
            let ka = encode_key(&a.0, &a.1, a.2);
            let kb = encode_key(&b.0, &b.1, b.2);
            prop_assert_eq!(ka == kb, a == b);
        }

        #[test]
        fn value_round_trips(c in checkpoint()) {
            let decoded = decode_value(&key_of(&c), &encode_value(&c)).expect("value decodes");
            prop_assert_eq!(decoded, c);
        }

        #[test]
        fn record_round_trips(
            c in checkpoint(),
            writers in proptest::option::of(proptest::collection::vec((any::<i64>(), any::<i16>(), -1..i32::MAX), 0..8)),
            with_sequences in any::<bool>(),
        ) {
            let sequences = writers.as_ref().filter(|_| with_sequences).map(|w| w.iter().map(|x| x.2).collect());
            let topic_ids = sequences.as_ref().map(|_| TopicIds { source: [7; 16], target: [9; 16] });
            let r = CheckpointRecord {
                checkpoint: c,
                writers: writers.map(|w| w.into_iter().map(|(id, epoch, _)| ProducerIdentity { id, epoch }).collect()),
                sequences,
                topic_ids,
            };
            let value = encode_record_value(&r);
            let key = key_of(&r.checkpoint);
            prop_assert_eq!(decode_record(&key, &value).expect("record decodes"), r.clone());
            for cut in 0..value.len() {
                prop_assert!(decode_record(&key, &value[..cut]).is_err(), "value prefix of {} bytes", cut);
            }
        }

        #[test]
        fn every_strict_prefix_is_an_error(c in checkpoint()) {
            let key = key_of(&c);
            let value = encode_value(&c);
            for cut in 0..key.len() {
                prop_assert!(decode_key(&key[..cut]).is_err(), "key prefix of {} bytes", cut);
            }
            for cut in 0..value.len() {
                prop_assert!(decode_value(&key, &value[..cut]).is_err(), "value prefix of {} bytes", cut);
            }
        }

        #[test]
        fn random_bytes_never_panic(
            key in proptest::collection::vec(any::<u8>(), 0..64),
            value in proptest::collection::vec(any::<u8>(), 0..96),
        ) {
            let _ = decode_key(&key);
            let _ = decode_value(&key, &value);
        }

        #[test]
        fn corrupted_records_never_panic(c in checkpoint(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let key = key_of(&c);
            let mut value = encode_value(&c).to_vec();
            let i = at.index(value.len());
            value[i] = byte;
            let _ = decode_value(&key, &value);
            let mut bad_key = key.to_vec();
            let j = at.index(bad_key.len());
            bad_key[j] = byte;
            let _ = decode_key(&bad_key);
        }
    }
}
