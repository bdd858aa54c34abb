//! Tests of the checkpoint record codec: round trips, every version, and refusals.

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
        fresh: None,
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
        fresh: None,
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
        fresh: None,
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
        fresh: None,
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

fn sample_fresh() -> FreshRange {
    FreshRange {
        split: 61_000,
        next_source_offset: 61_080,
        next_target_offset: 1_580,
        writers: vec![ProducerIdentity { id: 4002, epoch: 1 }],
        sequences: vec![80],
    }
}

/// The bytes of `value` with its body length and, when `section_at` is given, the catch-up
/// section's length grown by `extra` bytes appended at the end.
fn grown(value: &[u8], section_at: Option<usize>, extra: &[u8]) -> Vec<u8> {
    let mut v = value.to_vec();
    v.extend_from_slice(extra);
    let grow = |v: &mut Vec<u8>, at: usize| {
        let len = u32::from_be_bytes([v[at], v[at + 1], v[at + 2], v[at + 3]]) + extra.len() as u32;
        v[at..at + 4].copy_from_slice(&len.to_be_bytes());
    };
    grow(&mut v, 2);
    if let Some(at) = section_at {
        grow(&mut v, at + 2);
    }
    v
}

/// Where the catch-up section of `sample_record()` starts in its value.
fn section_at() -> usize {
    encode_record_value(&sample_record()).len()
}

/// Pins the catch-up section (see `golden_bytes` for the rule).
#[test]
fn golden_bytes_with_a_catchup_section() {
    let r = sample_record();
    let value = encode_catchup_value(&r, &sample_fresh());
    let plain = encode_record_value(&r);
    // Everything before the section is the plain record's, except the body length.
    assert_eq!(value[6..plain.len()], plain[6..]);
    assert_eq!(
        hex(&value[..6]),
        "0001000000a1", // value version 1, body length 161 = 113 + 2 + 4 + 42
    );
    assert_eq!(
        hex(&value[plain.len()..]),
        concat!(
            "0001",             // catch-up section version 1
            "0000002a",         // section length 42 = 3 * 8 + 4 + 14
            "000000000000ee48", // split 61000
            "000000000000ee98", // fresh next source offset 61080
            "000000000000062c", // fresh next target offset 1580
            "00000001",         // 1 fresh writer
            "0000000000000fa2", // producer id 4002
            "0001",             // producer epoch 1
            "00000050",         // sequence 80
        )
    );
    let key = key_of(&r.checkpoint);
    assert_eq!(
        decode_catchup_record(&key, &value).expect("golden value decodes"),
        (r.clone(), Some(sample_fresh()))
    );
}

#[test]
fn a_strait_without_catchup_reads_the_backlog_of_a_catchup_value() {
    // The version 1 fields hold the backlog's position and writers; a reader that does not
    // know the section skips it like any appended field.
    let r = sample_record();
    let value = encode_catchup_value(&r, &sample_fresh());
    let key = key_of(&r.checkpoint);
    assert_eq!(decode_record(&key, &value).expect("decodes"), r);
    assert_eq!(decode_value(&key, &value).expect("decodes"), r.checkpoint);
}

#[test]
fn older_checkpoints_decode_without_a_fresh_range() {
    let r = sample_record();
    let key = key_of(&r.checkpoint);
    let without_ids = CheckpointRecord {
        topic_ids: None,
        fresh: None,
        ..r.clone()
    };
    let without_writers = CheckpointRecord::from(r.checkpoint.clone());
    for old in [r, without_ids, without_writers] {
        let value = encode_record_value(&old);
        assert_eq!(decode_catchup_record(&key, &value).expect("decodes"), (old, None));
    }
}

#[test]
fn a_record_without_writers_gets_empty_ones_and_zero_ids_with_a_fresh_range() {
    let c = sample();
    let value = encode_catchup_value(&CheckpointRecord::from(c.clone()), &sample_fresh());
    let (record, fresh) = decode_catchup_record(&key_of(&c), &value).expect("decodes");
    assert_eq!(record.writers, Some(vec![]));
    assert_eq!(record.sequences, Some(vec![]));
    assert_eq!(record.topic_ids, Some(TopicIds::default()));
    assert_eq!(fresh, Some(sample_fresh()));
}

#[test]
fn a_newer_catchup_section_is_refused_with_its_number() {
    let r = sample_record();
    let key = key_of(&r.checkpoint);
    let mut value = encode_catchup_value(&r, &sample_fresh()).to_vec();
    let at = section_at();
    value[at..at + 2].copy_from_slice(&2i16.to_be_bytes());
    let err = decode_catchup_record(&key, &value).expect_err("section version 2 is unknown");
    assert!(
        matches!(
            err,
            Error::UnsupportedVersion {
                part: "catch-up section",
                version: 2,
                supported: CATCHUP_VERSION
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("upgrade strait"), "{err}");
    value[at..at + 2].copy_from_slice(&0i16.to_be_bytes());
    let err = decode_catchup_record(&key, &value).expect_err("section version 0 is invalid");
    assert!(matches!(err, Error::InvalidVersion { version: 0, .. }), "{err:?}");
    // A value of a newer format version is refused before any section is looked at.
    let mut newer = encode_catchup_value(&r, &sample_fresh()).to_vec();
    newer[..2].copy_from_slice(&2i16.to_be_bytes());
    assert!(matches!(
        decode_catchup_record(&key, &newer),
        Err(Error::UnsupportedVersion {
            part: "value",
            version: 2,
            ..
        })
    ));
}

#[test]
fn fields_appended_inside_and_after_the_section_are_skipped() {
    let r = sample_record();
    let key = key_of(&r.checkpoint);
    let value = encode_catchup_value(&r, &sample_fresh());
    let expected = (r, Some(sample_fresh()));
    let inside = grown(&value, Some(section_at()), &[0xCD; 7]);
    assert_eq!(decode_catchup_record(&key, &inside).expect("decodes"), expected);
    let after = grown(&value, None, &[0xEF; 5]);
    assert_eq!(decode_catchup_record(&key, &after).expect("decodes"), expected);
}

#[test]
fn a_fresh_writer_count_past_the_section_is_truncated() {
    let r = sample_record();
    let key = key_of(&r.checkpoint);
    let mut value = encode_catchup_value(&r, &sample_fresh()).to_vec();
    let count_at = value.len() - CATCHUP_WRITER_LEN - 4;
    for count in [2u32, u32::MAX] {
        value[count_at..count_at + 4].copy_from_slice(&count.to_be_bytes());
        let err = decode_catchup_record(&key, &value).expect_err("missing fresh writer");
        assert!(
            matches!(
                err,
                Error::Truncated {
                    part: "catch-up section",
                    field: "fresh writer producer id",
                    ..
                }
            ),
            "{err:?}"
        );
    }
    // A section longer than the body is truncated too.
    let mut long = encode_catchup_value(&r, &sample_fresh()).to_vec();
    let at = section_at() + 2;
    long[at..at + 4].copy_from_slice(&1000u32.to_be_bytes());
    assert!(matches!(
        decode_catchup_record(&key, &long),
        Err(Error::Truncated {
            field: "section body",
            ..
        })
    ));
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
            fresh: None,
        };
        let value = encode_record_value(&r);
        let key = key_of(&r.checkpoint);
        prop_assert_eq!(decode_record(&key, &value).expect("record decodes"), r.clone());
        for cut in 0..value.len() {
            prop_assert!(decode_record(&key, &value[..cut]).is_err(), "value prefix of {} bytes", cut);
        }
    }

    #[test]
    fn catchup_record_round_trips(
        c in checkpoint(),
        backlog in proptest::collection::vec((any::<i64>(), any::<i16>(), -1..i32::MAX), 0..4),
        fresh in proptest::collection::vec((any::<i64>(), any::<i16>(), -1..i32::MAX), 0..4),
        offsets in (any::<i64>(), any::<i64>(), any::<i64>()),
    ) {
        let identities = |w: &[(i64, i16, i32)]| -> Vec<ProducerIdentity> {
            w.iter().map(|&(id, epoch, _)| ProducerIdentity { id, epoch }).collect()
        };
        let r = CheckpointRecord {
            checkpoint: c,
            writers: Some(identities(&backlog)),
            sequences: Some(backlog.iter().map(|x| x.2).collect()),
            topic_ids: Some(TopicIds { source: [3; 16], target: [0; 16] }),
            fresh: None,
        };
        let f = FreshRange {
            split: offsets.0,
            next_source_offset: offsets.1,
            next_target_offset: offsets.2,
            writers: identities(&fresh),
            sequences: fresh.iter().map(|x| x.2).collect(),
        };
        let value = encode_catchup_value(&r, &f);
        let key = key_of(&r.checkpoint);
        prop_assert_eq!(decode_catchup_record(&key, &value).expect("decodes"), (r.clone(), Some(f)));
        prop_assert_eq!(decode_record(&key, &value).expect("decodes"), r);
        for cut in 0..value.len() {
            prop_assert!(decode_catchup_record(&key, &value[..cut]).is_err(), "value prefix of {} bytes", cut);
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
