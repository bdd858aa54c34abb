//! Hand-written protobuf codec for `jaeger.api_v2.Span`, byte-compatible with the gogo-generated
//! `Marshal` Jaeger's Kafka writer calls (`proto.Marshal(span)`).
//!
//! It owns the wire format only: field numbers from jaeger-idl `proto/api_v2/model.proto`, and
//! gogo's presence rules: `trace_id`, `span_id`, `start_time`, `duration` and `Log.timestamp`
//! (non-nullable custom/std types) are always written; scalars are omitted when zero, as proto3
//! requires. Decoding is deliberately shallow ([`decode_summary`]): enough to prove a span
//! crossed clusters intact, not a general parser.

use super::model::{KeyValue, Log, Process, Span, SpanRef, Value};
use super::{Error, Result};

// Wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// What [`decode_summary`] extracts from a protobuf span: its identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpanSummary {
    /// `trace_id`, 16 big-endian bytes.
    pub trace_id: [u8; 16],
    /// `span_id`, 8 big-endian bytes.
    pub span_id: [u8; 8],
    /// `operation_name`; empty when absent (proto3 omits empty strings).
    pub operation_name: String,
    /// `process.service_name`; empty when absent.
    pub service_name: String,
}

impl SpanSummary {
    /// The Kafka key Jaeger would have used for this span (see [`super::Span::key`]).
    pub fn trace_key(&self) -> String {
        super::TraceId::from_bytes(self.trace_id).to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

fn varint_len(v: u64) -> usize {
    // Same as gogo's sov: (bits(v|1) + 6) / 7.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// All our field numbers are below 16, so every key is one byte.
fn put_key(buf: &mut Vec<u8>, field: u8, wire: u8) {
    buf.push((field << 3) | wire);
}

fn put_bytes(buf: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    put_key(buf, field, LEN);
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

/// Key + length prefix + payload of a length-delimited field with a payload of `len` bytes.
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn str_field_len(s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        field_len(s.len())
    }
}

fn put_str_field(buf: &mut Vec<u8>, field: u8, s: &str) {
    if !s.is_empty() {
        put_bytes(buf, field, s.as_bytes());
    }
}

/// int32/int64/enum fields are varints of the two's-complement 64-bit value.
fn int_field_len(v: i64) -> usize {
    if v == 0 {
        0
    } else {
        1 + varint_len(v as u64)
    }
}

fn put_int_field(buf: &mut Vec<u8>, field: u8, v: i64) {
    if v != 0 {
        put_key(buf, field, VARINT);
        put_varint(buf, v as u64);
    }
}

/// `google.protobuf.Timestamp` fields: seconds since the epoch and non-negative nanos.
fn timestamp_parts(unix_micros: i64) -> (i64, i64) {
    (
        unix_micros.div_euclid(1_000_000),
        unix_micros.rem_euclid(1_000_000) * 1_000,
    )
}

/// `google.protobuf.Duration` fields: seconds and nanos share the sign.
fn duration_parts(micros: i64) -> (i64, i64) {
    (micros / 1_000_000, (micros % 1_000_000) * 1_000)
}

fn seconds_nanos_len((secs, nanos): (i64, i64)) -> usize {
    int_field_len(secs) + int_field_len(nanos)
}

fn put_seconds_nanos(buf: &mut Vec<u8>, field: u8, parts: (i64, i64)) {
    put_key(buf, field, LEN);
    put_varint(buf, seconds_nanos_len(parts) as u64);
    put_int_field(buf, 1, parts.0);
    put_int_field(buf, 2, parts.1);
}

fn key_value_len(kv: &KeyValue) -> usize {
    let value = match &kv.value {
        Value::Str(s) => str_field_len(s),
        Value::Bool(b) => {
            if *b {
                2
            } else {
                0
            }
        }
        Value::Int64(v) => int_field_len(*v),
        Value::Float64(v) => {
            if *v != 0.0 {
                9
            } else {
                0
            }
        }
        Value::Binary(b) => {
            if b.is_empty() {
                0
            } else {
                field_len(b.len())
            }
        }
    };
    str_field_len(&kv.key) + int_field_len(i64::from(kv.value.v_type())) + value
}

fn put_key_value(buf: &mut Vec<u8>, field: u8, kv: &KeyValue) {
    put_key(buf, field, LEN);
    put_varint(buf, key_value_len(kv) as u64);
    put_str_field(buf, 1, &kv.key);
    put_int_field(buf, 2, i64::from(kv.value.v_type()));
    match &kv.value {
        Value::Str(s) => put_str_field(buf, 3, s),
        Value::Bool(b) => {
            if *b {
                put_key(buf, 4, VARINT);
                buf.push(1);
            }
        }
        Value::Int64(v) => put_int_field(buf, 5, *v),
        Value::Float64(v) => {
            if *v != 0.0 {
                put_key(buf, 6, FIXED64);
                buf.extend_from_slice(&v.to_bits().to_le_bytes());
            }
        }
        Value::Binary(b) => {
            if !b.is_empty() {
                put_bytes(buf, 7, b);
            }
        }
    }
}

fn tags_len(tags: &[KeyValue]) -> usize {
    tags.iter().map(|kv| field_len(key_value_len(kv))).sum()
}

const TRACE_ID_FIELD_LEN: usize = 2 + 16;
const SPAN_ID_FIELD_LEN: usize = 2 + 8;

fn span_ref_len(r: &SpanRef) -> usize {
    TRACE_ID_FIELD_LEN + SPAN_ID_FIELD_LEN + int_field_len(i64::from(r.ref_type.as_i32()))
}

fn log_len(log: &Log) -> usize {
    field_len(seconds_nanos_len(timestamp_parts(log.timestamp_unix_micros))) + tags_len(&log.fields)
}

fn process_len(p: &Process) -> usize {
    str_field_len(&p.service_name) + tags_len(&p.tags)
}

/// The exact encoded size of `span`, so [`encode_span`] allocates once.
pub(super) fn span_len(span: &Span) -> usize {
    TRACE_ID_FIELD_LEN
        + SPAN_ID_FIELD_LEN
        + str_field_len(&span.operation_name)
        + span
            .references
            .iter()
            .map(|r| field_len(span_ref_len(r)))
            .sum::<usize>()
        + int_field_len(i64::from(span.flags))
        + field_len(seconds_nanos_len(timestamp_parts(span.start_unix_micros)))
        + field_len(seconds_nanos_len(duration_parts(span.duration_micros)))
        + tags_len(&span.tags)
        + span.logs.iter().map(|l| field_len(log_len(l))).sum::<usize>()
        + field_len(process_len(&span.process))
}

/// Appends the protobuf encoding of `span` to `buf`.
pub(super) fn encode_span(span: &Span, buf: &mut Vec<u8>) {
    buf.reserve(span_len(span));
    put_bytes(buf, 1, &span.trace_id.to_bytes());
    put_bytes(buf, 2, &span.span_id.to_be_bytes());
    put_str_field(buf, 3, &span.operation_name);
    for r in &span.references {
        put_key(buf, 4, LEN);
        put_varint(buf, span_ref_len(r) as u64);
        put_bytes(buf, 1, &r.trace_id.to_bytes());
        put_bytes(buf, 2, &r.span_id.to_be_bytes());
        put_int_field(buf, 3, i64::from(r.ref_type.as_i32()));
    }
    put_int_field(buf, 5, i64::from(span.flags));
    put_seconds_nanos(buf, 6, timestamp_parts(span.start_unix_micros));
    put_seconds_nanos(buf, 7, duration_parts(span.duration_micros));
    for kv in &span.tags {
        put_key_value(buf, 8, kv);
    }
    for log in &span.logs {
        put_key(buf, 9, LEN);
        put_varint(buf, log_len(log) as u64);
        put_seconds_nanos(buf, 1, timestamp_parts(log.timestamp_unix_micros));
        for kv in &log.fields {
            put_key_value(buf, 2, kv);
        }
    }
    // Jaeger's Span.Process is a pointer, always set on spans the collector writes.
    put_key(buf, 10, LEN);
    put_varint(buf, process_len(&span.process) as u64);
    put_str_field(buf, 1, &span.process.service_name);
    for kv in &span.process.tags {
        put_key_value(buf, 2, kv);
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// A cursor over one protobuf message.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf[0]` within the whole span value, for error messages.
    base: usize,
}

/// One decoded field: its number and either a varint/fixed payload or a byte range.
enum Field<'a> {
    Scalar,
    Bytes(&'a [u8], usize),
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }

    fn offset(&self) -> usize {
        self.base + self.pos
    }

    fn varint(&mut self, what: &'static str) -> Result<u64> {
        let start = self.offset();
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(Error::Truncated {
                    offset: self.offset(),
                    what,
                });
            };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(Error::VarintOverflow { offset: start })
    }

    fn skip(&mut self, n: usize, what: &'static str) -> Result<()> {
        if self.buf.len() - self.pos < n {
            return Err(Error::Truncated {
                offset: self.offset(),
                what,
            });
        }
        self.pos += n;
        Ok(())
    }

    /// The next field, or `None` at the end of the message.
    fn next_field(&mut self) -> Result<Option<(u64, Field<'a>)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key_offset = self.offset();
        let key = self.varint("field key")?;
        let field = key >> 3;
        let wire = (key & 7) as u8;
        match wire {
            VARINT => {
                self.varint("varint field")?;
                Ok(Some((field, Field::Scalar)))
            }
            FIXED64 => {
                self.skip(8, "fixed64 field")?;
                Ok(Some((field, Field::Scalar)))
            }
            FIXED32 => {
                self.skip(4, "fixed32 field")?;
                Ok(Some((field, Field::Scalar)))
            }
            LEN => {
                let len = self.varint("length prefix")?;
                let start = self.pos;
                let len = usize::try_from(len).map_err(|_| Error::Truncated {
                    offset: self.offset(),
                    what: "length-delimited field",
                })?;
                self.skip(len, "length-delimited field")?;
                Ok(Some((
                    field,
                    Field::Bytes(&self.buf[start..start + len], self.base + start),
                )))
            }
            _ => Err(Error::WireType {
                field,
                wire_type: wire,
                offset: key_offset,
            }),
        }
    }
}

fn expect_bytes<'a>(field: Field<'a>, name: &'static str) -> Result<(&'a [u8], usize)> {
    match field {
        Field::Bytes(b, at) => Ok((b, at)),
        Field::Scalar => Err(Error::NotLengthDelimited { field: name }),
    }
}

fn utf8(bytes: &[u8], field: &'static str) -> Result<String> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|source| Error::Utf8 { field, source })
}

/// Decodes the identity of a protobuf `jaeger.api_v2.Span` (a Kafka message value): trace id,
/// span id, operation name and service name. Every other field is skipped, but the whole
/// message must be well-formed at the wire level.
pub fn decode_summary(value: &[u8]) -> Result<SpanSummary> {
    let mut trace_id = None;
    let mut span_id = None;
    let mut operation_name = String::new();
    let mut service_name = String::new();
    let mut r = Reader::new(value, 0);
    while let Some((num, field)) = r.next_field()? {
        match num {
            1 => {
                let (b, _) = expect_bytes(field, "trace_id")?;
                let id: [u8; 16] = b.try_into().map_err(|_| Error::IdLength {
                    field: "trace_id",
                    expected: 16,
                    actual: b.len(),
                })?;
                trace_id = Some(id);
            }
            2 => {
                let (b, _) = expect_bytes(field, "span_id")?;
                let id: [u8; 8] = b.try_into().map_err(|_| Error::IdLength {
                    field: "span_id",
                    expected: 8,
                    actual: b.len(),
                })?;
                span_id = Some(id);
            }
            3 => operation_name = utf8(expect_bytes(field, "operation_name")?.0, "operation_name")?,
            10 => {
                let (b, at) = expect_bytes(field, "process")?;
                let mut p = Reader::new(b, at);
                while let Some((pnum, pfield)) = p.next_field()? {
                    if pnum == 1 {
                        let (s, _) = expect_bytes(pfield, "process.service_name")?;
                        service_name = utf8(s, "process.service_name")?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(SpanSummary {
        trace_id: trace_id.ok_or(Error::MissingField { field: "trace_id" })?,
        span_id: span_id.ok_or(Error::MissingField { field: "span_id" })?,
        operation_name,
        service_name,
    })
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;

    use super::super::model::{RefType, TraceId};
    use super::*;

    fn minimal_span() -> Span {
        Span {
            trace_id: TraceId { high: 0, low: 0x11 },
            span_id: 3,
            operation_name: Cow::Borrowed("op"),
            references: Vec::new(),
            flags: 1,
            start_unix_micros: 1_500_000_000_000_123,
            duration_micros: 1_000,
            tags: vec![KeyValue::str("k", "v")],
            logs: Vec::new(),
            process: Arc::new(Process {
                service_name: Cow::Borrowed("svc"),
                tags: Vec::new(),
            }),
        }
    }

    /// Hand-assembled from model.proto field numbers; see the byte-by-byte comments.
    #[test]
    fn golden_minimal_span() {
        #[rustfmt::skip]
        let want: &[u8] = &[
            // 1: trace_id, bytes(16), high=0 low=0x11 big-endian
            0x0a, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11,
            // 2: span_id, bytes(8)
            0x12, 0x08, 0, 0, 0, 0, 0, 0, 0, 0x03,
            // 3: operation_name "op"
            0x1a, 0x02, b'o', b'p',
            // 5: flags = 1
            0x28, 0x01,
            // 6: start_time { 1: seconds = 1500000000, 2: nanos = 123000 }
            0x32, 0x0a, 0x08, 0x80, 0xde, 0xa0, 0xcb, 0x05, 0x10, 0xf8, 0xc0, 0x07,
            // 7: duration { 2: nanos = 1000000 } (seconds = 0 omitted)
            0x3a, 0x04, 0x10, 0xc0, 0x84, 0x3d,
            // 8: tags { 1: key "k", 3: v_str "v" } (v_type STRING = 0 omitted)
            0x42, 0x06, 0x0a, 0x01, b'k', 0x1a, 0x01, b'v',
            // 10: process { 1: service_name "svc" }
            0x52, 0x05, 0x0a, 0x03, b's', b'v', b'c',
        ];
        let span = minimal_span();
        let got = span.encode(super::super::Encoding::Protobuf);
        assert_eq!(got, want);
        assert_eq!(span_len(&span), want.len());
    }

    #[test]
    fn golden_typed_values_and_refs() {
        let mut span = minimal_span();
        span.tags = vec![
            KeyValue::bool("e", true),
            KeyValue::int64("n", -1),
            KeyValue::float64("f", 0.5),
            KeyValue::binary("b", vec![0xff]),
            KeyValue::int64("z", 0),
        ];
        span.references = vec![SpanRef {
            trace_id: span.trace_id,
            span_id: 2,
            ref_type: RefType::FollowsFrom,
        }];
        span.logs = vec![Log {
            timestamp_unix_micros: 1_000_000,
            fields: vec![KeyValue::str("event", "x")],
        }];
        let got = span.encode(super::super::Encoding::Protobuf);
        let find = |needle: &[u8]| got.windows(needle.len()).any(|w| w == needle);
        // bool: key "e", v_type=1, v_bool=1
        assert!(find(&[0x42, 0x07, 0x0a, 0x01, b'e', 0x10, 0x01, 0x20, 0x01]));
        // int64 -1: v_type=2, v_int64 = ten-byte two's complement varint
        assert!(find(&[
            0x42, 0x10, 0x0a, 0x01, b'n', 0x10, 0x02, 0x28, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
        ]));
        // float64 0.5: v_type=3, fixed64 little-endian 0x3fe0000000000000
        assert!(find(&[
            0x42, 0x0e, 0x0a, 0x01, b'f', 0x10, 0x03, 0x31, 0, 0, 0, 0, 0, 0, 0xe0, 0x3f
        ]));
        // binary: v_type=4, v_binary=[0xff]
        assert!(find(&[0x42, 0x08, 0x0a, 0x01, b'b', 0x10, 0x04, 0x3a, 0x01, 0xff]));
        // int64 0: only key and v_type
        assert!(find(&[0x42, 0x05, 0x0a, 0x01, b'z', 0x10, 0x02]));
        // reference: trace_id, span_id=2, ref_type=1
        let mut r = vec![0x22, 0x1e, 0x0a, 0x10];
        r.extend_from_slice(&span.trace_id.to_bytes());
        r.extend_from_slice(&[0x12, 0x08, 0, 0, 0, 0, 0, 0, 0, 2, 0x18, 0x01]);
        assert!(find(&r));
        // log: timestamp {seconds=1}, field {key "event", v_str "x"}
        assert!(find(&[
            0x4a, 0x10, 0x0a, 0x02, 0x08, 0x01, 0x12, 0x0a, 0x0a, 0x05, b'e', b'v', b'e', b'n', b't', 0x1a, 0x01, b'x'
        ]));
        assert_eq!(span_len(&span), got.len());
    }

    #[test]
    fn timestamp_and_duration_parts() {
        assert_eq!(timestamp_parts(1_500_000), (1, 500_000_000));
        assert_eq!(timestamp_parts(-1), (-1, 999_999_000));
        assert_eq!(duration_parts(-1_500_000), (-1, -500_000_000));
        assert_eq!(duration_parts(0), (0, 0));
    }

    #[test]
    fn varint_len_matches_encoding() {
        for v in [0u64, 1, 127, 128, 16_383, 16_384, u64::from(u32::MAX), u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
        }
    }

    #[test]
    fn summary_of_minimal_span() {
        let span = minimal_span();
        let s = decode_summary(&span.encode(super::super::Encoding::Protobuf)).expect("valid span");
        assert_eq!(s.trace_id, span.trace_id.to_bytes());
        assert_eq!(s.span_id, 3u64.to_be_bytes());
        assert_eq!(s.operation_name, "op");
        assert_eq!(s.service_name, "svc");
        assert_eq!(s.trace_key(), "11");
    }

    #[test]
    fn summary_rejects_malformed_values() {
        let good = minimal_span().encode(super::super::Encoding::Protobuf);
        // A prefix is only well-formed when it ends on a field boundary after both ids.
        let boundaries = [28, 32, 34, 46, 52, 60];
        for cut in 1..good.len() {
            assert_eq!(
                decode_summary(&good[..cut]).is_ok(),
                boundaries.contains(&cut),
                "prefix {cut}"
            );
        }
        assert!(matches!(
            decode_summary(&[]),
            Err(Error::MissingField { field: "trace_id" })
        ));
        assert!(matches!(
            decode_summary(&[0x0a, 0x01, 0x00]),
            Err(Error::IdLength {
                field: "trace_id",
                expected: 16,
                actual: 1
            })
        ));
        assert!(matches!(
            decode_summary(&[0x0b]),
            Err(Error::WireType {
                field: 1,
                wire_type: 3,
                offset: 0
            })
        ));
        let mut long_varint = vec![0x28];
        long_varint.extend_from_slice(&[0xff; 10]);
        assert!(matches!(
            decode_summary(&long_varint),
            Err(Error::VarintOverflow { offset: 1 })
        ));
        assert!(matches!(
            decode_summary(&[0x1a, 0x05, b'a']),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            decode_summary(&[0x28, 0x01]),
            Err(Error::MissingField { field: "trace_id" })
        ));
        assert!(matches!(
            decode_summary(&[0x08, 0x01]),
            Err(Error::NotLengthDelimited { field: "trace_id" })
        ));
        let mut bad_utf8 = good.clone();
        let op = bad_utf8.iter().position(|&b| b == b'o').expect("op name present");
        bad_utf8[op] = 0xff;
        assert!(matches!(
            decode_summary(&bad_utf8),
            Err(Error::Utf8 {
                field: "operation_name",
                ..
            })
        ));
    }

    proptest::proptest! {
        #[test]
        fn summary_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = decode_summary(&bytes);
        }

        #[test]
        fn summary_round_trips_any_identity(
            high: u64,
            low: u64,
            span_id: u64,
            op in ".{0,40}",
            service in ".{0,20}",
            start in -4_000_000_000_000_000i64..4_000_000_000_000_000,
            duration in -10_000_000i64..100_000_000,
        ) {
            let mut span = minimal_span();
            span.trace_id = TraceId { high, low };
            span.span_id = span_id;
            span.operation_name = Cow::Owned(op.clone());
            span.process = Arc::new(Process { service_name: Cow::Owned(service.clone()), tags: Vec::new() });
            span.start_unix_micros = start;
            span.duration_micros = duration;
            let value = span.encode(super::super::Encoding::Protobuf);
            proptest::prop_assert_eq!(value.len(), span_len(&span));
            let s = decode_summary(&value).expect("encoded span decodes");
            proptest::prop_assert_eq!(s.trace_id, span.trace_id.to_bytes());
            proptest::prop_assert_eq!(s.span_id, span_id.to_be_bytes());
            proptest::prop_assert_eq!(s.operation_name, op);
            proptest::prop_assert_eq!(s.service_name, service);
        }
    }
}
