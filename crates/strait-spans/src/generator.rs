//! [`SpanGenerator`]: an endless, reproducible stream of spans in the order a Jaeger collector
//! would write them to Kafka.
//!
//! It owns ordering and time: user requests arrive every ~1 ms of simulated time, several traces
//! are in flight at once, and each trace's spans are released in the order they finish (clients
//! report a span when it ends, so children precede parents and the root comes last). It must
//! not read the wall clock; all time derives from `start_unix_micros`.

use super::mesh::{Counters, Mesh, TraceBuilder};
use super::model::Span;
use super::rng::Rng;

/// How many traces interleave in the output, like concurrent requests in a collector batch.
const IN_FLIGHT: usize = 8;
/// Median gap between user requests, in microseconds of simulated time.
const ARRIVAL_MEDIAN_MICROS: f64 = 1_000.0;

/// A deterministic source of realistic Jaeger spans: the same `seed` and `start_unix_micros`
/// always yield the same sequence.
///
/// ```
/// use strait_spans::{decode_summary, Encoding, SpanGenerator};
///
/// let mut spans = SpanGenerator::new(42, 1_700_000_000_000_000);
/// let span = spans.next_span();
/// let (key, value) = (span.key(), span.encode(Encoding::Protobuf));
/// assert_eq!(decode_summary(&value).map(|s| s.trace_key()).ok(), Some(key));
/// ```
#[derive(Debug)]
pub struct SpanGenerator {
    rng: Rng,
    mesh: Mesh,
    counters: Counters,
    /// Simulated arrival time of the next request.
    clock_micros: i64,
    /// Traces being released; each is sorted by end time, latest first, so `pop` yields the
    /// next span to finish.
    in_flight: Vec<Vec<Span>>,
}

impl SpanGenerator {
    /// A generator whose first trace starts at `start_unix_micros` (microseconds since the Unix
    /// epoch). The seed fixes the mesh (pods, IPs) as well as every trace.
    pub fn new(seed: u64, start_unix_micros: i64) -> Self {
        let mut rng = Rng::new(seed);
        let mesh = Mesh::new(&mut rng);
        let counters = Counters::new(&mut rng);
        Self {
            rng,
            mesh,
            counters,
            clock_micros: start_unix_micros,
            in_flight: Vec::with_capacity(IN_FLIGHT),
        }
    }

    /// The next span. Never ends.
    pub fn next_span(&mut self) -> Span {
        while self.in_flight.len() < IN_FLIGHT {
            let start = self.clock_micros;
            self.clock_micros += self.rng.lognormal_micros(ARRIVAL_MEDIAN_MICROS, 1.0);
            let mut spans = TraceBuilder::new(&mut self.rng, &self.mesh, &mut self.counters).build(start);
            // Stable sort: ties keep creation order, so parents stay after equal-end children.
            spans.sort_by_key(|s| std::cmp::Reverse(s.end_unix_micros()));
            self.in_flight.push(spans);
        }
        let i = self.rng.index(self.in_flight.len());
        let trace = &mut self.in_flight[i];
        let span = trace
            .pop()
            .expect("in-flight traces are never empty: empty ones are removed at once");
        if trace.is_empty() {
            self.in_flight.swap_remove(i);
        }
        span
    }
}

impl Iterator for SpanGenerator {
    type Item = Span;

    fn next(&mut self) -> Option<Span> {
        Some(self.next_span())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::MAX, None)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::super::{decode_summary, Encoding, RefType, Value};
    use super::*;

    const START: i64 = 1_700_000_000_000_000;

    #[test]
    fn same_seed_same_bytes() {
        for enc in [Encoding::Protobuf, Encoding::Json] {
            let a: Vec<_> = SpanGenerator::new(7, START)
                .take(500)
                .map(|s| (s.key(), s.encode(enc)))
                .collect();
            let b: Vec<_> = SpanGenerator::new(7, START)
                .take(500)
                .map(|s| (s.key(), s.encode(enc)))
                .collect();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn different_seeds_differ() {
        let a: Vec<_> = SpanGenerator::new(1, START)
            .take(50)
            .map(|s| s.encode(Encoding::Protobuf))
            .collect();
        let b: Vec<_> = SpanGenerator::new(2, START)
            .take(50)
            .map(|s| s.encode(Encoding::Protobuf))
            .collect();
        assert!(a.iter().zip(&b).all(|(x, y)| x != y));
    }

    #[test]
    fn start_time_shifts_spans() {
        let a = SpanGenerator::new(3, START).next_span();
        let b = SpanGenerator::new(3, START + 5_000_000).next_span();
        assert_eq!(a.span_id, b.span_id);
        assert_eq!(b.start_unix_micros - a.start_unix_micros, 5_000_000);
    }

    #[test]
    fn protobuf_round_trips_through_summary() {
        for span in SpanGenerator::new(11, START).take(2_000) {
            let value = span.encode(Encoding::Protobuf);
            let s = decode_summary(&value).expect("generated span decodes");
            assert_eq!(s.trace_id, span.trace_id.to_bytes());
            assert_eq!(s.span_id, span.span_id.to_be_bytes());
            assert_eq!(s.operation_name, span.operation_name);
            assert_eq!(s.service_name, span.service_name());
            assert_eq!(s.trace_key(), span.key());
        }
    }

    #[test]
    fn key_is_jaeger_trace_id_string() {
        let (mut short, mut long) = (0, 0);
        for span in SpanGenerator::new(5, START).take(2_000) {
            let key = span.key();
            let hex = span.trace_id_hex();
            assert_eq!(hex.len(), 32);
            assert!(key.len() <= 32 && !key.starts_with('0'), "{key}");
            assert!(key.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
            // The key is the full id without leading zeros.
            assert_eq!(key, hex.trim_start_matches('0'));
            assert_eq!(
                u128::from_str_radix(&key, 16).ok(),
                Some(u128::from(span.trace_id.high) << 64 | u128::from(span.trace_id.low))
            );
            if span.trace_id.high == 0 {
                short += 1;
            } else {
                long += 1;
            }
        }
        assert!(short > 0 && long > 0, "both 64- and 128-bit ids occur");
    }

    /// An independent (slow, strict) decoder for standard padded base64.
    fn base64_decode(s: &str) -> Vec<u8> {
        const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        assert_eq!(s.len() % 4, 0, "padded base64: {s}");
        let (mut bits, mut n, mut out) = (0u32, 0, Vec::new());
        for c in s.trim_end_matches('=').chars() {
            bits = bits << 6 | ALPHABET.find(c).expect("base64 alphabet") as u32;
            n += 6;
            if n >= 8 {
                n -= 8;
                out.push((bits >> n) as u8);
            }
        }
        out
    }

    #[test]
    fn json_is_valid_jsonpb() {
        for span in SpanGenerator::new(13, START).take(1_000) {
            let value = span.encode(Encoding::Json);
            let v: serde_json::Value = serde_json::from_slice(&value).expect("valid json");
            let field = |name: &str| base64_decode(v[name].as_str().expect("base64 string"));
            assert_eq!(field("traceId"), span.trace_id.to_bytes());
            assert_eq!(field("spanId"), span.span_id.to_be_bytes());
            assert_eq!(v["operationName"], span.operation_name.as_ref());
            assert_eq!(v["process"]["serviceName"], span.service_name());
            assert_eq!(v["flags"], 1);
            let start = v["startTime"].as_str().expect("startTime string");
            assert!(start.starts_with("2023-11-14T") && start.ends_with('Z'), "{start}");
            assert!(v["duration"].as_str().expect("duration string").ends_with('s'));
            for (tag, json) in span.tags.iter().zip(v["tags"].as_array().expect("tags array")) {
                assert_eq!(json["key"], tag.key.as_ref());
                match &tag.value {
                    Value::Str(s) => {
                        assert!(json.get("vType").is_none());
                        assert_eq!(json["vStr"], s.as_ref());
                    }
                    Value::Int64(n) => {
                        assert_eq!(json["vType"], "INT64");
                        assert_eq!(
                            json.get("vInt64").and_then(|x| x.as_str()),
                            (*n != 0).then(|| n.to_string()).as_deref()
                        );
                    }
                    Value::Bool(_) => assert_eq!(json["vType"], "BOOL"),
                    Value::Float64(f) => assert_eq!(json["vFloat64"].as_f64(), Some(*f)),
                    Value::Binary(_) => assert_eq!(json["vType"], "BINARY"),
                }
            }
            let refs = v.get("references").and_then(|r| r.as_array()).map_or(0, Vec::len);
            assert_eq!(refs, span.references.len());
            if span
                .references
                .first()
                .is_some_and(|r| r.ref_type == RefType::FollowsFrom)
            {
                assert_eq!(v["references"][0]["refType"], "FOLLOWS_FROM");
            }
        }
    }

    #[test]
    fn stream_looks_like_a_real_mesh() {
        let spans: Vec<_> = SpanGenerator::new(17, START).take(20_000).collect();
        let services: HashSet<_> = spans.iter().map(|s| s.service_name().to_owned()).collect();
        for svc in [
            "frontend",
            "api-gateway",
            "auth",
            "orders",
            "payments",
            "inventory",
            "notifications",
        ] {
            assert!(services.contains(svc), "missing {svc}");
        }
        let tag = |s: &Span, k: &str| s.tags.iter().find(|t| t.key == k).map(|t| t.value.clone());
        let status: Vec<i64> = spans
            .iter()
            .filter_map(|s| match tag(s, "http.status_code") {
                Some(Value::Int64(c)) => Some(c),
                _ => None,
            })
            .collect();
        let ok = status.iter().filter(|&&c| c < 300).count() as f64 / status.len() as f64;
        assert!(ok > 0.85 && ok < 0.995, "2xx share {ok}");
        assert!(status.iter().any(|&c| (400..500).contains(&c)));
        assert!(status.iter().any(|&c| c >= 500));
        assert!(spans.iter().any(|s| tag(s, "error") == Some(Value::Bool(true))));
        assert!(spans.iter().any(|s| !s.logs.is_empty()));
        assert!(spans
            .iter()
            .any(|s| s.references.iter().any(|r| r.ref_type == RefType::FollowsFrom)));
        let statements: HashSet<_> = spans
            .iter()
            .filter_map(|s| tag(s, "db.statement"))
            .map(|v| format!("{v:?}"))
            .collect();
        assert!(statements.len() > 1_000, "db.statement varies: {}", statements.len());
        // Spans of a trace arrive interleaved with other traces, and per trace by end time.
        let mut per_trace: HashMap<_, Vec<&Span>> = HashMap::new();
        for s in &spans {
            per_trace.entry(s.trace_id).or_default().push(s);
        }
        let sizes: Vec<usize> = per_trace.values().map(Vec::len).collect();
        assert!(sizes.iter().any(|&n| n >= 20), "some big traces");
        for trace in per_trace.values() {
            assert!(trace
                .windows(2)
                .all(|w| w[0].end_unix_micros() <= w[1].end_unix_micros()));
        }
        let switches = spans.windows(2).filter(|w| w[0].trace_id != w[1].trace_id).count();
        assert!(switches > spans.len() / 2);
    }
}
