//! The simulated shop: a small service mesh whose requests become traces.
//!
//! It owns what spans *say*: services and their pods, call graphs per entry page, tags in the
//! dialect each service's tracing client really writes (jaeger-client OpenTracing tags for the
//! Go, Node and Python services; OpenTelemetry-Java attributes through Jaeger's `proto` path for
//! `payments`), timings, errors and logs. It must not know about encodings or delivery order;
//! [`super::generator`] interleaves finished traces.
//!
//! The mesh: `frontend` (Node) → HTTP → `api-gateway` (Go) → gRPC → `auth`, `inventory`,
//! `orders` (Go) → gRPC → `payments` (Java). Databases, caches and brokers appear, as in real
//! Jaeger data, as client spans of the calling service tagged `peer.service=postgres|redis|kafka`;
//! `orders` publishes to Kafka and `notifications` (Python) consumes in a `FOLLOWS_FROM` span.

use std::borrow::Cow;
use std::sync::Arc;

mod clients;
mod requests;

use super::model::{KeyValue, Log, Process, RefType, Span, SpanRef, TraceId};
use super::rng::Rng;

/// Upper bound on spans per trace; the smallest trace (a cached account page) has 3.
pub(super) const MAX_SPANS: usize = 30;

/// Which tracing client a service uses, which decides its tag dialect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    JaegerGo,
    JaegerNode,
    JaegerPython,
    OtelJava,
}

impl Client {
    fn version(self) -> &'static str {
        match self {
            Self::JaegerGo => "Go-2.30.0",
            Self::JaegerNode => "Node-3.19.0",
            Self::JaegerPython => "Python-4.8.0",
            Self::OtelJava => "opentelemetry-java",
        }
    }

    /// The collector's `internal.span.format` tag: jaeger-clients report Thrift through the
    /// agent, OpenTelemetry's Jaeger exporter sends protobuf over gRPC.
    fn span_format(self) -> &'static str {
        match self {
            Self::OtelJava => "proto",
            _ => "jaeger",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Svc {
    Frontend,
    Gateway,
    Auth,
    Orders,
    Payments,
    Inventory,
    Notifications,
}

#[derive(Debug)]
struct ServiceDef {
    name: &'static str,
    client: Client,
    instances: usize,
    port: u16,
}

const SERVICES: [ServiceDef; 7] = [
    ServiceDef {
        name: "frontend",
        client: Client::JaegerNode,
        instances: 4,
        port: 3000,
    },
    ServiceDef {
        name: "api-gateway",
        client: Client::JaegerGo,
        instances: 3,
        port: 8080,
    },
    ServiceDef {
        name: "auth",
        client: Client::JaegerGo,
        instances: 2,
        port: 50051,
    },
    ServiceDef {
        name: "orders",
        client: Client::JaegerGo,
        instances: 3,
        port: 50051,
    },
    ServiceDef {
        name: "payments",
        client: Client::OtelJava,
        instances: 2,
        port: 50051,
    },
    ServiceDef {
        name: "inventory",
        client: Client::JaegerGo,
        instances: 3,
        port: 50051,
    },
    ServiceDef {
        name: "notifications",
        client: Client::JaegerPython,
        instances: 2,
        port: 8000,
    },
];

impl Svc {
    fn def(self) -> &'static ServiceDef {
        &SERVICES[self as usize]
    }
}

/// Kubernetes' pod-name suffix alphabet (no vowels, no look-alikes).
const POD_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
const HEX: &[u8] = b"0123456789abcdef";

#[derive(Debug)]
struct Instance {
    process: Arc<Process>,
    ip: String,
}

/// The deployed pods of every service, fixed for the generator's lifetime.
#[derive(Debug)]
pub(super) struct Mesh {
    instances: Vec<Vec<Instance>>,
}

impl Mesh {
    pub(super) fn new(rng: &mut Rng) -> Self {
        let instances = SERVICES
            .iter()
            .map(|def| {
                // Pods of one ReplicaSet share the template hash and differ in the suffix.
                let mut hash = String::new();
                rng.push_chars(&mut hash, POD_ALPHABET, 10);
                (0..def.instances).map(|_| Self::instance(rng, def, &hash)).collect()
            })
            .collect();
        Self { instances }
    }

    fn instance(rng: &mut Rng, def: &ServiceDef, hash: &str) -> Instance {
        let mut hostname = format!("{}-{hash}-", def.name);
        rng.push_chars(&mut hostname, POD_ALPHABET, 5);
        let ip = format!("10.42.{}.{}", rng.below(16), rng.range(2, 254));
        let mut tags = vec![
            KeyValue::str("hostname", hostname),
            KeyValue::str("ip", ip.clone()),
            KeyValue::str("jaeger.version", def.client.version()),
        ];
        if def.client == Client::OtelJava {
            tags.push(KeyValue::str("telemetry.sdk.language", "java"));
            tags.push(KeyValue::str("telemetry.sdk.name", "opentelemetry"));
            tags.push(KeyValue::str("telemetry.sdk.version", "1.32.0"));
            tags.push(KeyValue::str("k8s.namespace.name", "shop"));
        } else {
            tags.push(KeyValue::str("client-uuid", format!("{:x}", rng.next_u64())));
        }
        Instance {
            process: Arc::new(Process {
                service_name: Cow::Borrowed(def.name),
                tags,
            }),
            ip,
        }
    }

    fn instance_of(&self, svc: Svc, inst: usize) -> &Instance {
        &self.instances[svc as usize][inst]
    }
}

/// State that outlives single traces, so ids and offsets keep increasing like a real system's.
#[derive(Debug)]
pub(super) struct Counters {
    next_order_id: u64,
    kafka_offsets: [i64; 12],
}

impl Counters {
    pub(super) fn new(rng: &mut Rng) -> Self {
        let mut kafka_offsets = [0i64; 12];
        for o in &mut kafka_offsets {
            *o = rng.range(1_000_000, 9_000_000) as i64;
        }
        Self {
            next_order_id: rng.range(100_000, 900_000),
            kafka_offsets,
        }
    }
}

/// The outcome of a call, mapped to HTTP and gRPC codes at each hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Ok,
    InvalidArgument,
    Unauthenticated,
    PaymentDeclined,
    NotFound,
    Internal,
    Unavailable,
    DeadlineExceeded,
}

impl Status {
    fn http(self) -> i64 {
        match self {
            Self::Ok => 200,
            Self::InvalidArgument => 400,
            Self::Unauthenticated => 401,
            Self::PaymentDeclined => 402,
            Self::NotFound => 404,
            Self::Internal => 500,
            Self::Unavailable => 503,
            Self::DeadlineExceeded => 504,
        }
    }

    fn grpc(self) -> (i64, &'static str) {
        match self {
            Self::Ok => (0, "OK"),
            Self::InvalidArgument => (3, "InvalidArgument"),
            Self::DeadlineExceeded => (4, "DeadlineExceeded"),
            Self::NotFound => (5, "NotFound"),
            Self::PaymentDeclined => (9, "FailedPrecondition"),
            Self::Internal => (13, "Internal"),
            Self::Unavailable => (14, "Unavailable"),
            Self::Unauthenticated => (16, "Unauthenticated"),
        }
    }

    /// Server-side failures are errors; client mistakes (4xx) are not.
    fn is_error(self) -> bool {
        matches!(self, Self::Internal | Self::Unavailable | Self::DeadlineExceeded)
    }

    fn message(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::InvalidArgument => "invalid request: cart is empty or quantity out of range",
            Self::Unauthenticated => "token expired or revoked",
            Self::PaymentDeclined => "card_declined: insufficient_funds",
            Self::NotFound => "not found",
            Self::Internal => "internal error: unexpected EOF from upstream",
            Self::Unavailable => "upstream connect error or disconnect/reset before headers",
            Self::DeadlineExceeded => "context deadline exceeded",
        }
    }
}

/// A gRPC request and its arguments.
#[derive(Clone, Copy, Debug)]
enum Call {
    ValidateToken,
    GetProduct { product_id: u64 },
    ListFeatured,
    GetOrder { order_id: u64, customer_id: u64 },
    CreateOrder { customer_id: u64, items: u64 },
    Reserve { product_id: u64, qty: u64 },
    Charge { order_id: u64, amount_cents: u64 },
}

impl Call {
    fn target(self) -> (Svc, &'static str) {
        match self {
            Self::ValidateToken => (Svc::Auth, "/auth.v1.AuthService/ValidateToken"),
            Self::GetProduct { .. } => (Svc::Inventory, "/inventory.v1.InventoryService/GetProduct"),
            Self::ListFeatured => (Svc::Inventory, "/inventory.v1.InventoryService/ListFeatured"),
            Self::Reserve { .. } => (Svc::Inventory, "/inventory.v1.InventoryService/Reserve"),
            Self::GetOrder { .. } => (Svc::Orders, "/orders.v1.OrderService/GetOrder"),
            Self::CreateOrder { .. } => (Svc::Orders, "/orders.v1.OrderService/CreateOrder"),
            Self::Charge { .. } => (Svc::Payments, "/payments.v1.PaymentService/Charge"),
        }
    }
}

/// Where code is running: a service instance and its current span (an index into the trace).
#[derive(Clone, Copy, Debug)]
struct At {
    svc: Svc,
    inst: usize,
    span: usize,
}

const USER_AGENTS: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
];
const CURRENCIES: [&str; 3] = ["EUR", "USD", "GBP"];
const POSTGRES_ADDR: &str = "postgres-primary.db.svc.cluster.local:5432";
const REDIS_ADDR: &str = "redis-master.cache.svc.cluster.local:6379";
const KAFKA_ADDR: &str = "kafka-0.kafka-headless.kafka.svc.cluster.local:9092";
const JAVA_STACK: &str = "io.grpc.StatusRuntimeException: UNAVAILABLE: upstream connect error\n\
\tat io.grpc.stub.ClientCalls.toStatusRuntimeException(ClientCalls.java:271)\n\
\tat io.grpc.stub.ClientCalls.getUnchecked(ClientCalls.java:252)\n\
\tat com.example.payments.StripeClient.createPaymentIntent(StripeClient.java:88)\n\
\tat com.example.payments.ChargeService.charge(ChargeService.java:141)\n\
\tat com.example.payments.PaymentGrpcService.charge(PaymentGrpcService.java:57)\n\
\tat io.grpc.stub.ServerCalls$UnaryServerCallHandler$UnaryServerCallListener.onHalfClose(ServerCalls.java:182)\n";

/// Builds one trace. Spans are appended as they start; the generator reorders them.
pub(super) struct TraceBuilder<'a> {
    rng: &'a mut Rng,
    mesh: &'a Mesh,
    counters: &'a mut Counters,
    trace_id: TraceId,
    spans: Vec<Span>,
}

impl<'a> TraceBuilder<'a> {
    pub(super) fn new(rng: &'a mut Rng, mesh: &'a Mesh, counters: &'a mut Counters) -> Self {
        // Some traces start in older jaeger-clients that still use 64-bit trace ids.
        let high = if rng.chance(0.3) { 0 } else { rng.nonzero_u64() };
        let trace_id = TraceId {
            high,
            low: rng.nonzero_u64(),
        };
        Self {
            rng,
            mesh,
            counters,
            trace_id,
            spans: Vec::with_capacity(MAX_SPANS),
        }
    }

    /// Simulates one user request arriving at `start` and returns all of its spans.
    pub(super) fn build(mut self, start: i64) -> Vec<Span> {
        self.frontend(start);
        self.spans
    }

    // -- span plumbing -------------------------------------------------------------------------

    fn room(&self, n: usize) -> bool {
        self.spans.len() + n <= MAX_SPANS
    }

    fn begin(
        &mut self,
        svc: Svc,
        inst: usize,
        parent: Option<(usize, RefType)>,
        op: &'static str,
        start: i64,
    ) -> usize {
        let references = match parent {
            Some((p, ref_type)) => {
                vec![SpanRef {
                    trace_id: self.trace_id,
                    span_id: self.spans[p].span_id,
                    ref_type,
                }]
            }
            None => Vec::new(),
        };
        self.spans.push(Span {
            trace_id: self.trace_id,
            span_id: self.rng.nonzero_u64(),
            operation_name: Cow::Borrowed(op),
            references,
            flags: 1,
            start_unix_micros: start,
            duration_micros: 0,
            tags: Vec::with_capacity(12),
            logs: Vec::new(),
            process: Arc::clone(&self.mesh.instance_of(svc, inst).process),
        });
        self.spans.len() - 1
    }

    fn child(&mut self, at: At, op: &'static str, start: i64) -> usize {
        self.begin(at.svc, at.inst, Some((at.span, RefType::ChildOf)), op, start)
    }

    fn finish(&mut self, span: usize, svc: Svc, end: i64) {
        let s = &mut self.spans[span];
        s.duration_micros = (end - s.start_unix_micros).max(1);
        s.tags
            .push(KeyValue::str("internal.span.format", svc.def().client.span_format()));
    }

    fn tag(&mut self, span: usize, kv: KeyValue) {
        self.spans[span].tags.push(kv);
    }

    fn tags<const N: usize>(&mut self, span: usize, kvs: [KeyValue; N]) {
        self.spans[span].tags.extend(kvs);
    }

    fn log(&mut self, span: usize, at: i64, fields: Vec<KeyValue>) {
        self.spans[span].logs.push(Log {
            timestamp_unix_micros: at,
            fields,
        });
    }

    /// Marks a span failed the way its client library does, with an error log at `when`.
    fn fail(&mut self, span: usize, svc: Svc, when: i64, kind: &'static str, message: &'static str) {
        self.tag(span, KeyValue::bool("error", true));
        if svc.def().client == Client::OtelJava {
            self.tags(
                span,
                [
                    KeyValue::str("otel.status_code", "ERROR"),
                    KeyValue::str("otel.status_description", message),
                ],
            );
            let fields = vec![
                KeyValue::str("event", "exception"),
                KeyValue::str("exception.type", kind),
                KeyValue::str("exception.message", message),
                KeyValue::str("exception.stacktrace", JAVA_STACK),
            ];
            self.log(span, when, fields);
        } else {
            let fields = vec![
                KeyValue::str("event", "error"),
                KeyValue::str("error.kind", kind),
                KeyValue::str("message", message),
            ];
            self.log(span, when, fields);
        }
    }

    fn work(&mut self, median_micros: f64) -> i64 {
        self.rng.lognormal_micros(median_micros, 0.6)
    }

    fn hex(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len);
        self.rng.push_chars(&mut s, HEX, len);
        s
    }

    fn otel_thread(&mut self, span: usize, pool: &'static str) {
        let n = self.rng.range(1, 16);
        self.tags(
            span,
            [
                KeyValue::int64("thread.id", 40 + n as i64),
                KeyValue::str("thread.name", format!("{pool}-{n}")),
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(seed: u64) -> Vec<Span> {
        let mut rng = Rng::new(seed);
        let mesh = Mesh::new(&mut rng);
        let mut counters = Counters::new(&mut rng);
        TraceBuilder::new(&mut rng, &mesh, &mut counters).build(1_700_000_000_000_000)
    }

    #[test]
    fn traces_are_well_formed_trees() {
        for seed in 0..500 {
            let spans = trace(seed);
            assert!(
                (3..=MAX_SPANS).contains(&spans.len()),
                "seed {seed}: {} spans",
                spans.len()
            );
            let roots: Vec<_> = spans.iter().filter(|s| s.references.is_empty()).collect();
            assert_eq!(roots.len(), 1, "seed {seed}: exactly one root");
            assert_eq!(roots[0].service_name(), "frontend");
            for s in &spans {
                assert_eq!(s.trace_id, spans[0].trace_id);
                assert!(s.duration_micros > 0);
                for r in &s.references {
                    let parent = spans.iter().find(|p| p.span_id == r.span_id).expect("parent in trace");
                    assert!(
                        s.start_unix_micros >= parent.start_unix_micros,
                        "seed {seed}: child starts after parent"
                    );
                    if r.ref_type == RefType::ChildOf {
                        assert!(
                            s.end_unix_micros() <= parent.end_unix_micros(),
                            "seed {seed}: child ends inside parent"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn mesh_has_pod_like_processes() {
        let mut rng = Rng::new(1);
        let mesh = Mesh::new(&mut rng);
        let p = &mesh.instance_of(Svc::Orders, 0).process;
        assert_eq!(p.service_name, "orders");
        let host = match &p.tags[0].value {
            super::super::Value::Str(h) => h.to_string(),
            other => panic!("hostname is a string, got {other:?}"),
        };
        let parts: Vec<_> = host.split('-').collect();
        assert_eq!(parts.len(), 3, "{host}");
        assert_eq!((parts[1].len(), parts[2].len()), (10, 5), "{host}");
    }
}
