//! Demo data for strait: a deterministic, seeded generator of realistic Jaeger traces, the two
//! encodings Jaeger's Kafka span writer produces, and the demo client that writes such spans to a
//! cluster and counts them back. The quickstart, `docker-compose.yml` and the benches use it; the
//! replicator does not.
//!
//! Jaeger's collector (`--span-storage.type=kafka`) writes one Kafka message per span. The key is
//! the trace id as `TraceID.String()` prints it ([`Span::key`]); the value is the
//! `jaeger.api_v2.Span` protobuf (`--kafka.producer.encoding=protobuf`, the default) or its
//! gogo-jsonpb JSON (`json`), see [`Span::encode`]. [`decode_summary`] reads back the identity of
//! a protobuf value so the quickstart can show spans crossed intact.
//!
//! # Why a crate of its own, and a binary of its own
//!
//! The `strait` library and binary must not carry demo code, so this crate depends on `strait`
//! (the demo client writes and reads with `strait::kafka` and `strait::batch`) and nothing in the
//! `strait` package depends on it, except its codec bench as a dev-dependency. Cargo resolves
//! dependencies per package, not per target: had the `strait` binary kept a `demo` subcommand,
//! the `strait` package would depend on this crate and this crate on `strait`, a cycle Cargo
//! refuses. So the demo commands are a second binary, `strait-demo produce|count`
//! (`src/main.rs`), and the container image keeps them out of the replicator's image: the
//! `Containerfile`'s `demo` stage ships `strait-demo` alone, and compose's `spans` service builds
//! that stage.
//!
//! # Modules
//!
//! The span modules own span content and its byte encodings. They must not do I/O, talk to Kafka
//! or read the wall clock: the same seed and start time always give the same bytes.
//!
//! - `model`: the span model ([`Span`], [`KeyValue`], …).
//! - `proto`, `json`: hand-written encoders (no protobuf or serde dependency in the hot path).
//! - `generator`, `mesh`: [`SpanGenerator`] and the simulated service mesh behind it.
//! - `rng`: a platform-independent PRNG.
//! - [`demo`]: the one module with I/O: writes spans to a topic the way Jaeger does and counts
//!   a topic's records and valid spans.

pub mod demo;
mod generator;
mod json;
mod mesh;
mod model;
mod proto;
mod rng;

use std::fmt;
use std::str::FromStr;

pub use generator::SpanGenerator;
pub use model::{KeyValue, Log, Process, RefType, Span, SpanRef, TraceId, Value};
pub use proto::{decode_summary, SpanSummary};

/// Errors from parsing an [`Encoding`] name or decoding a span value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The encoding name is not one Jaeger accepts.
    #[error("unknown span encoding {value:?}: expected \"protobuf\" (or \"proto\") or \"json\"")]
    UnknownEncoding {
        /// What was given.
        value: String,
    },
    /// The value ended in the middle of a field.
    #[error("span protobuf truncated at byte {offset} while reading {what}")]
    Truncated {
        /// Byte offset in the value where more input was needed.
        offset: usize,
        /// What was being read.
        what: &'static str,
    },
    /// A varint ran past 10 bytes.
    #[error("span protobuf varint longer than 10 bytes at byte {offset}")]
    VarintOverflow {
        /// Byte offset of the varint.
        offset: usize,
    },
    /// A field used a wire type protobuf does not define (or deprecated groups).
    #[error("span protobuf field {field} has unsupported wire type {wire_type} at byte {offset}")]
    WireType {
        /// The field number.
        field: u64,
        /// The wire type found.
        wire_type: u8,
        /// Byte offset of the field key.
        offset: usize,
    },
    /// A field that must be length-delimited was a scalar.
    #[error("span protobuf field {field} is not length-delimited")]
    NotLengthDelimited {
        /// The field name.
        field: &'static str,
    },
    /// A trace or span id had the wrong size.
    #[error("span protobuf field {field} has {actual} bytes, expected {expected}")]
    IdLength {
        /// The field name.
        field: &'static str,
        /// Required length.
        expected: usize,
        /// Length found.
        actual: usize,
    },
    /// A string field was not UTF-8.
    #[error("span protobuf field {field} is not valid utf-8")]
    Utf8 {
        /// The field name.
        field: &'static str,
        /// The decoding failure.
        #[source]
        source: std::str::Utf8Error,
    },
    /// A field Jaeger always writes was absent.
    #[error("span protobuf is missing required field {field}")]
    MissingField {
        /// The field name.
        field: &'static str,
    },
}

/// Result alias for span encoding and decoding.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a span is encoded in the Kafka message value, as Jaeger's
/// `--kafka.producer.encoding` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// `jaeger.api_v2.Span` protobuf (Jaeger's default).
    #[serde(alias = "proto")]
    Protobuf,
    /// gogo-jsonpb JSON of the same message.
    Json,
}

impl Encoding {
    /// The canonical name, as Jaeger spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Protobuf => "protobuf",
            Self::Json => "json",
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Encoding {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "protobuf" | "proto" => Ok(Self::Protobuf),
            "json" => Ok(Self::Json),
            _ => Err(Error::UnknownEncoding { value: s.to_owned() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_from_str() {
        let cases = [
            ("protobuf", Some(Encoding::Protobuf)),
            ("proto", Some(Encoding::Protobuf)),
            ("PROTOBUF", Some(Encoding::Protobuf)),
            (" json ", Some(Encoding::Json)),
            ("thrift", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<Encoding>().ok(), want, "{input:?}");
        }
        let err = "avro".parse::<Encoding>().expect_err("avro is not an encoding");
        assert_eq!(
            err.to_string(),
            "unknown span encoding \"avro\": expected \"protobuf\" (or \"proto\") or \"json\""
        );
        assert_eq!(Encoding::Protobuf.to_string(), "protobuf");
        assert_eq!(
            "json".parse::<Encoding>().map(|e| e.to_string()).ok().as_deref(),
            Some("json")
        );
    }

    #[test]
    fn encoding_deserializes_from_config_strings() {
        let e: Encoding = serde_json::from_str("\"proto\"").expect("alias");
        assert_eq!(e, Encoding::Protobuf);
        let e: Encoding = serde_json::from_str("\"json\"").expect("name");
        assert_eq!(e, Encoding::Json);
    }
}
