//! Leaf client spans: SQL, Redis, the external payment and e-mail APIs, and the Kafka
//! producer/consumer pair, each tagged in its service's client dialect.
//!
//! It must not decide request flow; handlers in `requests` decide what to call.

use super::{At, Client, Status, Svc, TraceBuilder, KAFKA_ADDR, POSTGRES_ADDR, REDIS_ADDR};
use crate::model::{KeyValue, RefType};

impl TraceBuilder<'_> {
    pub(super) fn stripe(&mut self, at: At, start: i64, order_id: u64, amount_cents: u64, status: Status) -> i64 {
        if !self.room(1) {
            return start;
        }
        let span = self.child(at, "POST", start);
        let end = start + self.rng.lognormal_micros(180_000.0, 0.4);
        let code = match status {
            Status::Ok => 200,
            Status::PaymentDeclined => 402,
            _ => 503,
        };
        self.tags(
            span,
            [
                KeyValue::str("span.kind", "client"),
                KeyValue::str("http.method", "POST"),
                KeyValue::str("http.url", "https://api.stripe.com/v1/payment_intents"),
                KeyValue::str("net.peer.name", "api.stripe.com"),
                KeyValue::int64("http.status_code", code),
            ],
        );
        let content_length = self.rng.range(700, 1_900) as i64;
        self.tags(
            span,
            [
                KeyValue::int64("http.response_content_length", content_length),
                KeyValue::str("payment.idempotency_key", format!("order-{order_id}-{amount_cents}")),
                KeyValue::str("otel.library.name", "io.opentelemetry.okhttp-3.0"),
                KeyValue::str("otel.library.version", "1.32.0"),
            ],
        );
        self.otel_thread(span, "OkHttp Dispatcher");
        if status.is_error() {
            self.fail(
                span,
                at.svc,
                end - 100,
                "java.io.IOException",
                "unexpected end of stream on https://api.stripe.com/...",
            );
        }
        self.finish(span, at.svc, end);
        end
    }

    // -- Kafka ---------------------------------------------------------------------------------

    /// orders publishes `order-events`; notifications consumes it later in a FOLLOWS_FROM span.
    pub(super) fn publish_order_event(&mut self, at: At, start: i64, order_id: u64, customer_id: u64) -> i64 {
        if !self.room(1) {
            return start;
        }
        let producer = self.child(at, "order-events send", start);
        let end = start + self.rng.lognormal_micros(1_500.0, 0.7);
        self.tags(
            producer,
            [
                KeyValue::str("span.kind", "producer"),
                KeyValue::str("component", "sarama"),
                KeyValue::str("message_bus.destination", "order-events"),
                KeyValue::str("peer.service", "kafka"),
                KeyValue::str("peer.address", KAFKA_ADDR),
                KeyValue::str("messaging.kafka.message_key", order_id.to_string()),
            ],
        );
        self.finish(producer, at.svc, end);
        if self.room(1) {
            let lag = self.rng.lognormal_micros(15_000.0, 1.0);
            self.notify(producer, end + lag, order_id, customer_id);
        }
        end
    }

    pub(super) fn notify(&mut self, producer: usize, start: i64, order_id: u64, customer_id: u64) {
        let inst = self.rng.index(Svc::Notifications.def().instances);
        let span = self.begin(
            Svc::Notifications,
            inst,
            Some((producer, RefType::FollowsFrom)),
            "order-events receive",
            start,
        );
        let at = At {
            svc: Svc::Notifications,
            inst,
            span,
        };
        let partition = (order_id % 12) as usize;
        self.counters.kafka_offsets[partition] += self.rng.range(1, 40) as i64;
        let offset = self.counters.kafka_offsets[partition];
        let mut t = start + self.work(200.0);
        let q = format!("SELECT email, locale, display_name FROM customers WHERE id = {customer_id}");
        let (end, status) = self.sql(at, t, "SELECT shop.customers", q, 800.0);
        t = end;
        let mut ok = status == Status::Ok;
        if ok && self.room(1) {
            let mail_start = t + self.work(50.0);
            let mail = self.child(at, "POST", mail_start);
            let mail_end = mail_start + self.rng.lognormal_micros(90_000.0, 0.5);
            ok = !self.rng.chance(0.01);
            self.tags(
                mail,
                [
                    KeyValue::str("span.kind", "client"),
                    KeyValue::str("component", "requests"),
                    KeyValue::str("http.method", "POST"),
                    KeyValue::str("http.url", "https://api.sendgrid.com/v3/mail/send"),
                    KeyValue::int64("http.status_code", if ok { 202 } else { 503 }),
                ],
            );
            if !ok {
                self.fail(
                    mail,
                    Svc::Notifications,
                    mail_end - 100,
                    "requests.exceptions.HTTPError",
                    "503 Server Error: Service Unavailable",
                );
            }
            self.finish(mail, Svc::Notifications, mail_end);
            t = mail_end;
        }
        let end = t + self.work(150.0);
        self.tags(
            span,
            [
                KeyValue::str("span.kind", "consumer"),
                KeyValue::str("component", "kafka-python"),
                KeyValue::str("message_bus.destination", "order-events"),
                KeyValue::str("peer.service", "kafka"),
                KeyValue::int64("kafka.partition", partition as i64),
                KeyValue::int64("kafka.offset", offset),
                KeyValue::str("kafka.consumer_group", "notifications"),
            ],
        );
        if !ok {
            self.fail(
                span,
                Svc::Notifications,
                end - 20,
                "NotificationError",
                "email not sent; will retry from dead-letter topic",
            );
        }
        self.finish(span, Svc::Notifications, end);
    }

    // -- leaf client spans ---------------------------------------------------------------------

    /// A SQL client span. Returns its end and whether the database answered.
    pub(super) fn sql(
        &mut self,
        at: At,
        start: i64,
        op: &'static str,
        statement: String,
        median_micros: f64,
    ) -> (i64, Status) {
        if !self.room(1) {
            return (start, Status::Ok);
        }
        let span = self.child(at, op, start);
        let failure = self.rng.below(1000);
        let status = match failure {
            0..=1 => Status::DeadlineExceeded,
            2 => Status::Unavailable,
            _ => Status::Ok,
        };
        let end = match status {
            Status::DeadlineExceeded => start + 2_000_000 + self.work(500.0),
            Status::Unavailable => start + self.work(3_000.0),
            _ => start + self.rng.lognormal_micros(median_micros, 0.8),
        };
        let def = at.svc.def();
        let (schema, table) = op
            .split_once(' ')
            .map_or(("shop", op), |(_, t)| t.split_once('.').unwrap_or(("shop", t)));
        if def.client == Client::OtelJava {
            self.tags(
                span,
                [
                    KeyValue::str("span.kind", "client"),
                    KeyValue::str("db.system", "postgresql"),
                    KeyValue::str("db.name", schema),
                    KeyValue::str("db.user", "payments_app"),
                    KeyValue::str("db.statement", statement),
                    KeyValue::str("db.operation", op.split(' ').next().unwrap_or(op)),
                    KeyValue::str("db.sql.table", table),
                    KeyValue::str("net.peer.name", "postgres-primary.db.svc.cluster.local"),
                    KeyValue::int64("net.peer.port", 5432),
                    KeyValue::str("otel.library.name", "io.opentelemetry.jdbc"),
                    KeyValue::str("otel.library.version", "1.32.0"),
                ],
            );
            self.otel_thread(span, "grpc-default-executor");
        } else {
            let component = if def.client == Client::JaegerPython {
                "psycopg2"
            } else {
                "pgx"
            };
            self.tags(
                span,
                [
                    KeyValue::str("span.kind", "client"),
                    KeyValue::str("component", component),
                    KeyValue::str("db.type", "sql"),
                    KeyValue::str("db.instance", schema),
                    KeyValue::str("db.user", def.name),
                    KeyValue::str("db.statement", statement),
                    KeyValue::str("peer.address", POSTGRES_ADDR),
                    KeyValue::str("peer.service", "postgres"),
                ],
            );
        }
        match status {
            Status::DeadlineExceeded => self.fail(
                span,
                at.svc,
                end,
                "context.DeadlineExceeded",
                "canceling statement due to statement timeout",
            ),
            Status::Unavailable => self.fail(
                span,
                at.svc,
                end,
                "net.OpError",
                "dial tcp 10.43.0.15:5432: connect: connection refused",
            ),
            _ => {}
        }
        self.finish(span, at.svc, end);
        (end, status)
    }

    /// A Redis client span. Cache failures are logged and tolerated, so only the end returns.
    pub(super) fn redis(&mut self, at: At, start: i64, cmd: &'static str, statement: String) -> i64 {
        if !self.room(1) {
            return start;
        }
        let span = self.child(at, cmd, start);
        let end = start + self.rng.lognormal_micros(250.0, 0.6);
        self.tags(
            span,
            [
                KeyValue::str("span.kind", "client"),
                KeyValue::str(
                    "component",
                    if at.svc == Svc::Frontend { "ioredis" } else { "go-redis" },
                ),
                KeyValue::str("db.type", "redis"),
                KeyValue::str("db.statement", statement),
                KeyValue::str("peer.address", REDIS_ADDR),
                KeyValue::str("peer.service", "redis"),
            ],
        );
        if self.rng.chance(0.002) {
            self.fail(span, at.svc, end, "redis.Error", "i/o timeout");
        }
        self.finish(span, at.svc, end);
        end
    }
}
