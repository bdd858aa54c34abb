//! Hand-written JSON encoder for spans, matching what Jaeger's Kafka writer produces with
//! `--kafka.producer.encoding=json`: gogo `jsonpb.Marshaler{}` with default options.
//!
//! It owns the jsonpb conventions: lowerCamelCase names in proto field order, compact output,
//! zero values omitted (checked on the Go field's kind, so a zero `SpanID` or `Duration` is
//! omitted too), ids as base64 of their big-endian bytes, enums by name, `int64` as a quoted
//! string, `Timestamp` as RFC 3339 with 0/3/6/9 fraction digits, `Duration` as seconds with an
//! `s` suffix, and Go's HTML-safe string escaping. It must not depend on serde: the output is
//! byte-for-byte deterministic and allocation-light.

use std::fmt::Write as _;

use super::model::{KeyValue, Log, Process, Span, SpanRef, Value};

/// Appends the jsonpb encoding of `span` to `buf`.
pub(super) fn encode_span(span: &Span, buf: &mut Vec<u8>) {
    let mut out = String::with_capacity(1024);
    write_span(&mut out, span);
    buf.extend_from_slice(out.as_bytes());
}

/// Writes `"name":` with a leading comma for all but the first field of an object.
struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    fn open(out: &'a mut String) -> Self {
        out.push('{');
        Self { out, first: true }
    }

    fn field(&mut self, name: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push('"');
        self.out.push_str(name);
        self.out.push_str("\":");
        self.out
    }

    fn close(self) {
        self.out.push('}');
    }
}

fn write_span(out: &mut String, span: &Span) {
    let mut o = Obj::open(out);
    write_base64(o.field("traceId"), &span.trace_id.to_bytes());
    if span.span_id != 0 {
        write_base64(o.field("spanId"), &span.span_id.to_be_bytes());
    }
    if !span.operation_name.is_empty() {
        write_str(o.field("operationName"), &span.operation_name);
    }
    if !span.references.is_empty() {
        write_array(o.field("references"), &span.references, write_ref);
    }
    if span.flags != 0 {
        let _ = write!(o.field("flags"), "{}", span.flags);
    }
    write_timestamp(o.field("startTime"), span.start_unix_micros);
    if span.duration_micros != 0 {
        write_duration(o.field("duration"), span.duration_micros);
    }
    if !span.tags.is_empty() {
        write_array(o.field("tags"), &span.tags, write_key_value);
    }
    if !span.logs.is_empty() {
        write_array(o.field("logs"), &span.logs, write_log);
    }
    write_process(o.field("process"), &span.process);
    o.close();
}

fn write_array<T>(out: &mut String, items: &[T], mut write: impl FnMut(&mut String, &T)) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write(out, item);
    }
    out.push(']');
}

fn write_ref(out: &mut String, r: &SpanRef) {
    let mut o = Obj::open(out);
    write_base64(o.field("traceId"), &r.trace_id.to_bytes());
    if r.span_id != 0 {
        write_base64(o.field("spanId"), &r.span_id.to_be_bytes());
    }
    if r.ref_type.as_i32() != 0 {
        write_str(o.field("refType"), r.ref_type.name());
    }
    o.close();
}

fn write_key_value(out: &mut String, kv: &KeyValue) {
    let mut o = Obj::open(out);
    if !kv.key.is_empty() {
        write_str(o.field("key"), &kv.key);
    }
    if kv.value.v_type() != 0 {
        write_str(o.field("vType"), kv.value.v_type_name());
    }
    match &kv.value {
        Value::Str(s) => {
            if !s.is_empty() {
                write_str(o.field("vStr"), s);
            }
        }
        Value::Bool(b) => {
            if *b {
                o.field("vBool").push_str("true");
            }
        }
        Value::Int64(v) => {
            if *v != 0 {
                let _ = write!(o.field("vInt64"), "\"{v}\"");
            }
        }
        Value::Float64(v) => {
            if *v != 0.0 {
                write_float(o.field("vFloat64"), *v);
            }
        }
        Value::Binary(b) => {
            if !b.is_empty() {
                write_base64(o.field("vBinary"), b);
            }
        }
    }
    o.close();
}

fn write_log(out: &mut String, log: &Log) {
    let mut o = Obj::open(out);
    write_timestamp(o.field("timestamp"), log.timestamp_unix_micros);
    if !log.fields.is_empty() {
        write_array(o.field("fields"), &log.fields, write_key_value);
    }
    o.close();
}

fn write_process(out: &mut String, p: &Process) {
    let mut o = Obj::open(out);
    if !p.service_name.is_empty() {
        write_str(o.field("serviceName"), &p.service_name);
    }
    if !p.tags.is_empty() {
        write_array(o.field("tags"), &p.tags, write_key_value);
    }
    o.close();
}

/// A JSON string escaped like Go's `encoding/json` (HTML-safe: `<`, `>`, `&`, U+2028 and
/// U+2029 become `\u` escapes).
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => None,
            c if (c as u32) < 0x20 => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// A float as Go's `encoding/json` writes it (shortest round-trip digits, exponent form
/// outside `[1e-6, 1e21)`), with jsonpb's quoted names for non-finite values.
fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("\"NaN\"");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "\"Infinity\"" } else { "\"-Infinity\"" });
    } else {
        let abs = v.abs();
        if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
            // Rust prints `1e21` / `1.5e-7`; Go prints `1e+21` / `1.5e-7`.
            let s = format!("{v:e}");
            match s.split_once('e') {
                Some((mant, exp)) if !exp.starts_with('-') => {
                    let _ = write!(out, "{mant}e+{exp}");
                }
                _ => out.push_str(&s),
            }
        } else {
            let _ = write!(out, "{v}");
        }
    }
}

/// `"YYYY-MM-DDThh:mm:ss[.fff|.ffffff]Z"`, as jsonpb formats a `Timestamp`.
fn write_timestamp(out: &mut String, unix_micros: i64) {
    let secs = unix_micros.div_euclid(1_000_000);
    let micros = unix_micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let _ = write!(
        out,
        "\"{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    write_fraction(out, micros * 1_000);
    out.push_str("Z\"");
}

/// `"S[.fff|.ffffff|.fffffffff]s"`, as jsonpb formats a `Duration`.
fn write_duration(out: &mut String, micros: i64) {
    let secs = micros / 1_000_000;
    let nanos = (micros % 1_000_000) * 1_000;
    out.push('"');
    if nanos < 0 && secs == 0 {
        out.push('-');
    }
    let _ = write!(out, "{secs}");
    write_fraction(out, nanos.abs());
    out.push_str("s\"");
}

/// Go prints 9 fraction digits, then trims `000`, `000` and `.000`: 0, 3, 6 or 9 remain.
fn write_fraction(out: &mut String, nanos: i64) {
    if nanos == 0 {
    } else if nanos % 1_000_000 == 0 {
        let _ = write!(out, ".{:03}", nanos / 1_000_000);
    } else if nanos % 1_000 == 0 {
        let _ = write!(out, ".{:06}", nanos / 1_000);
    } else {
        let _ = write!(out, ".{nanos:09}");
    }
}

/// Proleptic Gregorian (year, month, day) for days since 1970-01-01 (Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Standard base64 with padding, quoted (Go's `base64.StdEncoding`).
fn write_base64(out: &mut String, bytes: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sym = |v: u32| char::from(ALPHABET[(v & 63) as usize]);
    out.push('"');
    let mut chunks = bytes.chunks_exact(3);
    for c in &mut chunks {
        let n = u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]);
        out.extend([sym(n >> 18), sym(n >> 12), sym(n >> 6), sym(n)]);
    }
    match *chunks.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.extend([sym(n >> 18), sym(n >> 12), '=', '=']);
        }
        [a, b] => {
            let n = u32::from(a) << 16 | u32::from(b) << 8;
            out.extend([sym(n >> 18), sym(n >> 12), sym(n >> 6), '=']);
        }
        _ => {}
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;

    use super::super::model::{RefType, TraceId};
    use super::super::Encoding;
    use super::*;

    fn s(f: impl FnOnce(&mut String)) -> String {
        let mut out = String::new();
        f(&mut out);
        out
    }

    #[test]
    fn golden_minimal_span() {
        let span = Span {
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
        };
        let got = String::from_utf8(span.encode(Encoding::Json)).expect("utf-8");
        assert_eq!(
            got,
            r#"{"traceId":"AAAAAAAAAAAAAAAAAAAAEQ==","spanId":"AAAAAAAAAAM=","operationName":"op","flags":1,"startTime":"2017-07-14T02:40:00.000123Z","duration":"0.001s","tags":[{"key":"k","vStr":"v"}],"process":{"serviceName":"svc"}}"#
        );
    }

    #[test]
    fn golden_typed_values_refs_and_logs() {
        let kv = |v| s(|o| write_key_value(o, &v));
        assert_eq!(
            kv(KeyValue::bool("e", true)),
            r#"{"key":"e","vType":"BOOL","vBool":true}"#
        );
        assert_eq!(kv(KeyValue::bool("e", false)), r#"{"key":"e","vType":"BOOL"}"#);
        assert_eq!(
            kv(KeyValue::int64("n", -88)),
            r#"{"key":"n","vType":"INT64","vInt64":"-88"}"#
        );
        assert_eq!(kv(KeyValue::int64("z", 0)), r#"{"key":"z","vType":"INT64"}"#);
        assert_eq!(
            kv(KeyValue::float64("f", 72.5)),
            r#"{"key":"f","vType":"FLOAT64","vFloat64":72.5}"#
        );
        assert_eq!(
            kv(KeyValue::binary("b", vec![0, 0, 0x30, 0x39])),
            r#"{"key":"b","vType":"BINARY","vBinary":"AAAwOQ=="}"#
        );
        let r = SpanRef {
            trace_id: TraceId { high: 0, low: 0xff },
            span_id: 0xff,
            ref_type: RefType::FollowsFrom,
        };
        assert_eq!(
            s(|o| write_ref(o, &r)),
            r#"{"traceId":"AAAAAAAAAAAAAAAAAAAA/w==","spanId":"AAAAAAAAAP8=","refType":"FOLLOWS_FROM"}"#
        );
        let r = SpanRef {
            ref_type: RefType::ChildOf,
            ..r
        };
        assert_eq!(
            s(|o| write_ref(o, &r)),
            r#"{"traceId":"AAAAAAAAAAAAAAAAAAAA/w==","spanId":"AAAAAAAAAP8="}"#
        );
        let log = Log {
            timestamp_unix_micros: 1_485_449_191_639_875,
            fields: vec![KeyValue::str("event", "x")],
        };
        assert_eq!(
            s(|o| write_log(o, &log)),
            r#"{"timestamp":"2017-01-26T16:46:31.639875Z","fields":[{"key":"event","vStr":"x"}]}"#
        );
    }

    #[test]
    fn timestamps_and_durations() {
        let ts = |m| s(|o| write_timestamp(o, m));
        assert_eq!(ts(0), r#""1970-01-01T00:00:00Z""#);
        assert_eq!(ts(1_701_427_665_853_000), r#""2023-12-01T10:47:45.853Z""#);
        assert_eq!(ts(951_782_400_000_001), r#""2000-02-29T00:00:00.000001Z""#);
        assert_eq!(ts(-1), r#""1969-12-31T23:59:59.999999Z""#);
        let d = |m| s(|o| write_duration(o, m));
        assert_eq!(d(1_245), r#""0.001245s""#);
        assert_eq!(d(2_000_000), r#""2s""#);
        assert_eq!(d(1_500_000), r#""1.500s""#);
        assert_eq!(d(-500), r#""-0.000500s""#);
        assert_eq!(d(-1_500_000), r#""-1.500s""#);
    }

    #[test]
    fn strings_escape_like_go() {
        assert_eq!(s(|o| write_str(o, "a\"b\\c\nd")), r#""a\"b\\c\nd""#);
        assert_eq!(
            s(|o| write_str(o, "x > 1 & y < 2")),
            r#""x \u003e 1 \u0026 y \u003c 2""#
        );
        assert_eq!(s(|o| write_str(o, "\u{1}é\u{2028}")), "\"\\u0001é\\u2028\"");
    }

    #[test]
    fn floats_like_go() {
        let f = |v| s(|o| write_float(o, v));
        assert_eq!(f(1.0), "1");
        assert_eq!(f(0.001), "0.001");
        assert_eq!(f(1e21), "1e+21");
        assert_eq!(f(1.5e-7), "1.5e-7");
        assert_eq!(f(f64::NAN), "\"NaN\"");
        assert_eq!(f(f64::NEG_INFINITY), "\"-Infinity\"");
    }

    #[test]
    fn base64_padding() {
        let b = |v: &[u8]| s(|o| write_base64(o, v));
        assert_eq!(b(b""), "\"\"");
        assert_eq!(b(b"f"), "\"Zg==\"");
        assert_eq!(b(b"fo"), "\"Zm8=\"");
        assert_eq!(b(b"foo"), "\"Zm9v\"");
        assert_eq!(b(b"foob"), "\"Zm9vYg==\"");
    }
}
