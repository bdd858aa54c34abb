//! The span model: a Rust mirror of `jaeger.api_v2.Span` (jaeger-idl `proto/api_v2/model.proto`),
//! holding exactly what the generator produces and the encoders write.
//!
//! Times are whole microseconds (Jaeger clients record microseconds). `process_id` and
//! `warnings` are not modelled: Jaeger's Kafka writer leaves them empty for spans that carry
//! their own `process`, so they never reach the wire.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use super::{json, proto, Encoding};

/// A 128-bit trace id, split the way Jaeger's `model.TraceID` splits it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId {
    /// The high 64 bits; zero for the 64-bit ids of older Jaeger clients.
    pub high: u64,
    /// The low 64 bits.
    pub low: u64,
}

impl TraceId {
    /// The 16 big-endian bytes written to the protobuf `trace_id` field.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.high.to_be_bytes());
        b[8..].copy_from_slice(&self.low.to_be_bytes());
        b
    }

    /// The inverse of [`TraceId::to_bytes`].
    pub fn from_bytes(b: [u8; 16]) -> Self {
        let mut hi = [0u8; 8];
        let mut lo = [0u8; 8];
        hi.copy_from_slice(&b[..8]);
        lo.copy_from_slice(&b[8..]);
        Self {
            high: u64::from_be_bytes(hi),
            low: u64::from_be_bytes(lo),
        }
    }
}

/// Formats like Jaeger's `TraceID.String()`: `%x` of the low half when the high half is zero,
/// otherwise `%x%016x`. No leading-zero padding of the first group. This is the Kafka key.
impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.high == 0 {
            write!(f, "{:x}", self.low)
        } else {
            write!(f, "{:x}{:016x}", self.high, self.low)
        }
    }
}

/// `jaeger.api_v2.SpanRefType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefType {
    /// `CHILD_OF = 0`.
    ChildOf,
    /// `FOLLOWS_FROM = 1`.
    FollowsFrom,
}

impl RefType {
    pub(super) fn as_i32(self) -> i32 {
        match self {
            Self::ChildOf => 0,
            Self::FollowsFrom => 1,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::ChildOf => "CHILD_OF",
            Self::FollowsFrom => "FOLLOWS_FROM",
        }
    }
}

/// `jaeger.api_v2.SpanRef`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanRef {
    /// The referenced span's trace.
    pub trace_id: TraceId,
    /// The referenced span.
    pub span_id: u64,
    /// How this span relates to the referenced one.
    pub ref_type: RefType,
}

/// The typed value of a [`KeyValue`]; the variant decides `v_type`.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `STRING`, written to `v_str`.
    Str(Cow<'static, str>),
    /// `BOOL`, written to `v_bool`.
    Bool(bool),
    /// `INT64`, written to `v_int64`.
    Int64(i64),
    /// `FLOAT64`, written to `v_float64`.
    Float64(f64),
    /// `BINARY`, written to `v_binary`.
    Binary(Vec<u8>),
}

impl Value {
    /// The `jaeger.api_v2.ValueType` number.
    pub(super) fn v_type(&self) -> i32 {
        match self {
            Self::Str(_) => 0,
            Self::Bool(_) => 1,
            Self::Int64(_) => 2,
            Self::Float64(_) => 3,
            Self::Binary(_) => 4,
        }
    }

    pub(super) fn v_type_name(&self) -> &'static str {
        match self {
            Self::Str(_) => "STRING",
            Self::Bool(_) => "BOOL",
            Self::Int64(_) => "INT64",
            Self::Float64(_) => "FLOAT64",
            Self::Binary(_) => "BINARY",
        }
    }
}

/// `jaeger.api_v2.KeyValue`: a span tag, process tag or log field.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyValue {
    /// The attribute name, e.g. `http.status_code`.
    pub key: Cow<'static, str>,
    /// The typed value.
    pub value: Value,
}

impl KeyValue {
    /// A string attribute.
    pub fn str(key: &'static str, value: impl Into<Cow<'static, str>>) -> Self {
        Self {
            key: Cow::Borrowed(key),
            value: Value::Str(value.into()),
        }
    }

    /// A boolean attribute.
    pub fn bool(key: &'static str, value: bool) -> Self {
        Self {
            key: Cow::Borrowed(key),
            value: Value::Bool(value),
        }
    }

    /// A 64-bit integer attribute.
    pub fn int64(key: &'static str, value: i64) -> Self {
        Self {
            key: Cow::Borrowed(key),
            value: Value::Int64(value),
        }
    }

    /// A floating-point attribute.
    pub fn float64(key: &'static str, value: f64) -> Self {
        Self {
            key: Cow::Borrowed(key),
            value: Value::Float64(value),
        }
    }

    /// A binary attribute.
    pub fn binary(key: &'static str, value: Vec<u8>) -> Self {
        Self {
            key: Cow::Borrowed(key),
            value: Value::Binary(value),
        }
    }
}

/// `jaeger.api_v2.Log`: a timestamped event inside a span.
#[derive(Clone, Debug, PartialEq)]
pub struct Log {
    /// When the event happened, in microseconds since the Unix epoch.
    pub timestamp_unix_micros: i64,
    /// The event's fields, conventionally starting with `event`.
    pub fields: Vec<KeyValue>,
}

/// `jaeger.api_v2.Process`: the emitting service instance. Shared between the spans of one
/// instance, as in a real client.
#[derive(Clone, Debug, PartialEq)]
pub struct Process {
    /// The service name, e.g. `orders`.
    pub service_name: Cow<'static, str>,
    /// Instance metadata: `hostname`, `ip`, `jaeger.version`, `client-uuid`, …
    pub tags: Vec<KeyValue>,
}

/// One Jaeger span, as the collector writes it to Kafka: one message per span.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    /// The trace this span belongs to; shared by all spans of the trace.
    pub trace_id: TraceId,
    /// This span's id, unique within the trace.
    pub span_id: u64,
    /// The operation, e.g. `GET /api/v1/orders/{id}` or `SELECT shop.orders`.
    pub operation_name: Cow<'static, str>,
    /// Parent (`CHILD_OF`) and causal (`FOLLOWS_FROM`) links; empty for a root span.
    pub references: Vec<SpanRef>,
    /// Jaeger flags: bit 0 sampled, bit 1 debug.
    pub flags: u32,
    /// Start time in microseconds since the Unix epoch.
    pub start_unix_micros: i64,
    /// Duration in microseconds.
    pub duration_micros: i64,
    /// Span tags.
    pub tags: Vec<KeyValue>,
    /// Span logs (events).
    pub logs: Vec<Log>,
    /// The emitting process.
    pub process: Arc<Process>,
}

impl Span {
    /// The Kafka message key Jaeger's span writer uses: `TraceID.String()`.
    pub fn key(&self) -> String {
        self.trace_id.to_string()
    }

    /// The full 128-bit trace id as 32 lowercase hex digits (the W3C / Jaeger UI form).
    /// Unlike [`Span::key`] this is always zero-padded.
    pub fn trace_id_hex(&self) -> String {
        format!("{:016x}{:016x}", self.trace_id.high, self.trace_id.low)
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        format!("{:016x}", self.span_id)
    }

    /// Start time in microseconds since the Unix epoch (same as the field; handy in
    /// closures and method chains).
    pub fn start_unix_micros(&self) -> i64 {
        self.start_unix_micros
    }

    /// Duration in microseconds (same as the field).
    pub fn duration_micros(&self) -> i64 {
        self.duration_micros
    }

    /// The emitting service's name.
    pub fn service_name(&self) -> &str {
        &self.process.service_name
    }

    /// The span's end time in microseconds since the Unix epoch.
    pub fn end_unix_micros(&self) -> i64 {
        self.start_unix_micros.saturating_add(self.duration_micros)
    }

    /// The `CHILD_OF` parent, if any.
    pub fn parent_span_id(&self) -> Option<u64> {
        self.references
            .iter()
            .find(|r| r.ref_type == RefType::ChildOf)
            .map(|r| r.span_id)
    }

    /// The Kafka message value, as Jaeger's protobuf or JSON marshaller writes it.
    pub fn encode(&self, enc: Encoding) -> Vec<u8> {
        let mut buf = Vec::new();
        self.encode_into(enc, &mut buf);
        buf
    }

    /// Like [`Span::encode`], appending to `buf` so a caller can reuse one allocation.
    pub fn encode_into(&self, enc: Encoding, buf: &mut Vec<u8>) {
        match enc {
            Encoding::Protobuf => proto::encode_span(self, buf),
            Encoding::Json => json::encode_span(self, buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_display_matches_jaeger() {
        let cases = [
            (TraceId { high: 0, low: 0x11 }, "11"),
            (
                TraceId {
                    high: 0,
                    low: 0x00ab_0000_0000_0001,
                },
                "ab000000000001",
            ),
            (TraceId { high: 1, low: 2 }, "10000000000000002"),
            (
                TraceId {
                    high: 0xabc,
                    low: u64::MAX,
                },
                "abcffffffffffffffff",
            ),
            (TraceId { high: 0, low: 0 }, "0"),
        ];
        for (id, want) in cases {
            assert_eq!(id.to_string(), want);
        }
    }

    #[test]
    fn trace_id_bytes_round_trip() {
        let id = TraceId {
            high: 0x0102_0304_0506_0708,
            low: 0x090a_0b0c_0d0e_0f10,
        };
        let b = id.to_bytes();
        assert_eq!(b, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
        assert_eq!(TraceId::from_bytes(b), id);
    }
}
