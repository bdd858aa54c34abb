//! Request handling: the frontend's page views, the HTTP hop to the gateway, gRPC hops, and
//! each service's handler logic (which calls, which queries, which failures).
//!
//! It must not build leaf client spans itself; those live in `clients`.

use super::{At, Call, Client, Status, Svc, TraceBuilder, CURRENCIES, USER_AGENTS};
use crate::model::{KeyValue, RefType};

impl TraceBuilder<'_> {
    // -- the frontend and its one HTTP hop -----------------------------------------------------

    pub(super) fn frontend(&mut self, start: i64) {
        let inst = self.rng.index(Svc::Frontend.def().instances);
        let currency = *self.rng.pick(&CURRENCIES);
        let customer_id = self.rng.range(1, 50_000);
        let page = self.rng.below(100);
        // (root op, method, public path, gateway path, gateway op, gateway call)
        let (op, method, path, api): (&'static str, &'static str, String, Option<(String, &'static str, Call)>) =
            match page {
                0..=37 => {
                    let id = self.rng.range(1_000, 99_999);
                    let api = format!("/api/v1/products/{id}?currency={currency}");
                    let call = Call::GetProduct { product_id: id };
                    (
                        "GET /product/:id",
                        "GET",
                        format!("/product/{id}"),
                        Some((api, "GET /api/v1/products/{id}", call)),
                    )
                }
                38..=54 => {
                    let api = format!("/api/v1/recommendations?limit=12&currency={currency}");
                    (
                        "GET /",
                        "GET",
                        "/".to_owned(),
                        Some((api, "GET /api/v1/recommendations", Call::ListFeatured)),
                    )
                }
                55..=74 => {
                    let order_id = self.counters.next_order_id - self.rng.range(1, 5_000);
                    let api = format!("/api/v1/orders/{order_id}");
                    let call = Call::GetOrder { order_id, customer_id };
                    (
                        "GET /orders/:id",
                        "GET",
                        format!("/orders/{order_id}"),
                        Some((api, "GET /api/v1/orders/{id}", call)),
                    )
                }
                75..=89 => {
                    // Most carts are small: 1 item 45%, 2 30%, 3 17%, 4 8%.
                    let items = match self.rng.below(100) {
                        0..=44 => 1,
                        45..=74 => 2,
                        75..=91 => 3,
                        _ => 4,
                    };
                    let call = Call::CreateOrder { customer_id, items };
                    let api = "/api/v1/checkout".to_owned();
                    (
                        "POST /checkout",
                        "POST",
                        "/checkout".to_owned(),
                        Some((api, "POST /api/v1/checkout", call)),
                    )
                }
                _ => ("GET /account", "GET", "/account".to_owned(), None),
            };
        let root = self.begin(Svc::Frontend, inst, None, op, start);
        let at = At {
            svc: Svc::Frontend,
            inst,
            span: root,
        };
        let mut t = start + self.work(150.0);
        let status = match api {
            Some((api_path, api_op, call)) => {
                let (end, status) = self.gateway(at, t, method, api_path, api_op, call);
                t = end;
                status
            }
            None => {
                // Served from the session cache alone.
                let session = self.hex(24);
                t = self.redis(at, t, "GET", format!("GET sess:{session}")) + self.work(30.0);
                t = self.redis(at, t, "EXPIRE", format!("EXPIRE sess:{session} 1800"));
                Status::Ok
            }
        };
        let end = t + self.work(if status == Status::Ok { 900.0 } else { 200.0 });
        self.tags(
            root,
            [
                KeyValue::str("span.kind", "server"),
                KeyValue::str("component", "express"),
                KeyValue::str("http.method", method),
                KeyValue::str("http.url", format!("https://shop.example.com{path}")),
                KeyValue::int64("http.status_code", status.http()),
            ],
        );
        let ua = *self.rng.pick(&USER_AGENTS);
        self.tag(root, KeyValue::str("http.user_agent", ua));
        let peer = format!(
            "203.0.113.{}:{}",
            self.rng.range(1, 254),
            self.rng.range(32_768, 60_999)
        );
        self.tags(
            root,
            [
                KeyValue::str("peer.address", peer),
                KeyValue::str("sampler.type", "probabilistic"),
                KeyValue::float64("sampler.param", 0.25),
            ],
        );
        if status.is_error() {
            self.fail(root, Svc::Frontend, end - 50, "HTTPError", status.message());
        }
        self.finish(root, Svc::Frontend, end);
    }

    /// frontend → api-gateway over HTTP; the gateway authenticates, then makes `call`.
    pub(super) fn gateway(
        &mut self,
        at: At,
        start: i64,
        method: &'static str,
        api_path: String,
        api_op: &'static str,
        call: Call,
    ) -> (i64, Status) {
        if !self.room(2) {
            return (start, Status::Ok);
        }
        let client_op = if method == "POST" { "HTTP POST" } else { "HTTP GET" };
        let client = self.child(at, client_op, start);
        let inst = self.rng.index(Svc::Gateway.def().instances);
        let server_start = start + self.rng.lognormal_micros(400.0, 0.5);
        let server = self.begin(
            Svc::Gateway,
            inst,
            Some((client, RefType::ChildOf)),
            api_op,
            server_start,
        );
        let gw = At {
            svc: Svc::Gateway,
            inst,
            span: server,
        };

        let mut t = server_start + self.work(80.0);
        let (end, auth) = self.grpc(gw, t, Call::ValidateToken);
        t = end;
        let status = if auth == Status::Ok {
            let at_time = t + self.work(30.0);
            let (end, status) = self.grpc(gw, at_time, call);
            t = end;
            status
        } else {
            auth
        };
        let server_end = t + self.work(60.0);
        let end = server_end + self.rng.lognormal_micros(400.0, 0.5);

        let url = format!("http://api-gateway.shop.svc.cluster.local:8080{api_path}");
        self.tags(
            client,
            [
                KeyValue::str("span.kind", "client"),
                KeyValue::str("component", "node-fetch"),
                KeyValue::str("http.method", method),
                KeyValue::str("http.url", url),
                KeyValue::str("peer.service", "api-gateway"),
                KeyValue::int64("http.status_code", status.http()),
            ],
        );
        self.tags(
            server,
            [
                KeyValue::str("span.kind", "server"),
                KeyValue::str("component", "net/http"),
                KeyValue::str("http.method", method),
                KeyValue::str("http.url", api_path),
                KeyValue::int64("http.status_code", status.http()),
            ],
        );
        if status.is_error() {
            self.fail(server, Svc::Gateway, server_end - 20, "HTTPError", status.message());
            self.fail(client, Svc::Frontend, end - 10, "HTTPError", status.message());
        }
        self.finish(server, Svc::Gateway, server_end);
        self.finish(client, Svc::Frontend, end);
        (end, status)
    }

    // -- gRPC hops -----------------------------------------------------------------------------

    /// A unary gRPC call from `at`: a client span there and a server span in the callee.
    pub(super) fn grpc(&mut self, at: At, start: i64, call: Call) -> (i64, Status) {
        if !self.room(2) {
            return (start, Status::Ok);
        }
        let (callee, method) = call.target();
        let client = self.child(at, method, start);
        let inst = self.rng.index(callee.def().instances);
        let server_start = start + self.rng.lognormal_micros(300.0, 0.5);
        let server = self.begin(callee, inst, Some((client, RefType::ChildOf)), method, server_start);
        let here = At {
            svc: callee,
            inst,
            span: server,
        };
        let body_start = server_start + self.work(50.0);
        let (body_end, status) = match call {
            Call::ValidateToken => self.validate_token(here, body_start),
            Call::GetProduct { product_id } => self.get_product(here, body_start, product_id),
            Call::ListFeatured => self.list_featured(here, body_start),
            Call::GetOrder { order_id, customer_id } => self.get_order(here, body_start, order_id, customer_id),
            Call::CreateOrder { customer_id, items } => self.create_order(here, body_start, customer_id, items),
            Call::Reserve { product_id, qty } => self.reserve(here, body_start, product_id, qty),
            Call::Charge { order_id, amount_cents } => self.charge(here, body_start, order_id, amount_cents),
        };
        let server_end = body_end + self.work(40.0);
        let end = server_end + self.rng.lognormal_micros(300.0, 0.5);

        let callee_ip = &self.mesh.instance_of(callee, inst).ip;
        let callee_addr = format!("{callee_ip}:{}", callee.def().port);
        let caller_addr = format!(
            "{}:{}",
            self.mesh.instance_of(at.svc, at.inst).ip,
            self.rng.range(32_768, 60_999)
        );
        let (code, code_name) = status.grpc();
        self.tags(
            client,
            [
                KeyValue::str("span.kind", "client"),
                KeyValue::str("component", "gRPC"),
                KeyValue::str("peer.service", callee.def().name),
                KeyValue::str("peer.address", callee_addr),
            ],
        );
        if code != 0 {
            self.tag(client, KeyValue::str("response_code", code_name));
        }
        if callee.def().client == Client::OtelJava {
            let (service, rpc_method) = method[1..].split_once('/').unwrap_or((method, ""));
            self.tags(
                server,
                [
                    KeyValue::str("span.kind", "server"),
                    KeyValue::str("rpc.system", "grpc"),
                    KeyValue::str("rpc.service", service),
                    KeyValue::str("rpc.method", rpc_method),
                    KeyValue::int64("rpc.grpc.status_code", code),
                    KeyValue::str("net.sock.peer.addr", self.mesh.instance_of(at.svc, at.inst).ip.clone()),
                    KeyValue::str("otel.library.name", "io.opentelemetry.grpc-1.6"),
                    KeyValue::str("otel.library.version", "1.32.0"),
                ],
            );
            self.otel_thread(server, "grpc-default-executor");
        } else {
            self.tags(
                server,
                [
                    KeyValue::str("span.kind", "server"),
                    KeyValue::str("component", "gRPC"),
                    KeyValue::str("peer.address", caller_addr),
                ],
            );
            if code != 0 {
                self.tag(server, KeyValue::str("response_code", code_name));
            }
        }
        if status.is_error() {
            self.fail(server, callee, server_end - 15, "grpc.Status", status.message());
            self.fail(client, at.svc, end - 10, "grpc.Status", status.message());
        }
        self.finish(server, callee, server_end);
        self.finish(client, at.svc, end);
        (end, status)
    }

    pub(super) fn validate_token(&mut self, at: At, start: i64) -> (i64, Status) {
        let token = self.hex(32);
        let mut t = self.redis(at, start, "GET", format!("GET session:{token}"));
        if self.rng.chance(0.1) {
            let user = self.rng.range(1, 50_000);
            let q = format!(
                "SELECT user_id, scopes, expires_at FROM sessions WHERE token_hash = '{token}' AND user_id = {user}"
            );
            let at_time = t + self.work(20.0);
            let (end, status) = self.sql(at, at_time, "SELECT auth.sessions", q, 900.0);
            if status != Status::Ok {
                return (end, status);
            }
            let at_time = end + self.work(20.0);
            t = self.redis(at, at_time, "SETEX", format!("SETEX session:{token} 900 ?"));
        }
        if self.rng.chance(0.015) {
            self.log(
                at.span,
                t,
                vec![
                    KeyValue::str("event", "token rejected"),
                    KeyValue::str("reason", "expired"),
                ],
            );
            return (t, Status::Unauthenticated);
        }
        (t, Status::Ok)
    }

    pub(super) fn get_product(&mut self, at: At, start: i64, id: u64) -> (i64, Status) {
        let t = self.redis(at, start, "GET", format!("GET product:{id}"));
        if self.rng.chance(0.75) {
            return (t, Status::Ok);
        }
        let key = format!("product:{id}");
        self.log(
            at.span,
            t,
            vec![KeyValue::str("event", "cache miss"), KeyValue::str("key", key)],
        );
        let q = format!(
            "SELECT p.id, p.sku, p.name, p.price_cents, s.quantity FROM products p JOIN stock s ON s.product_id = p.id WHERE p.id = {id}"
        );
        let at_time = t + self.work(20.0);
        let (t, status) = self.sql(at, at_time, "SELECT inventory.products", q, 1_200.0);
        if status != Status::Ok {
            return (t, status);
        }
        if self.rng.chance(0.03) {
            return (t, Status::NotFound);
        }
        let at_time = t + self.work(20.0);
        (
            self.redis(at, at_time, "SETEX", format!("SETEX product:{id} 300 ?")),
            Status::Ok,
        )
    }

    pub(super) fn list_featured(&mut self, at: At, start: i64) -> (i64, Status) {
        let mut keys = String::from("MGET");
        for _ in 0..8 {
            keys.push_str(&format!(" product:{}", self.rng.range(1_000, 99_999)));
        }
        let t = self.redis(at, start, "MGET", keys);
        if self.rng.chance(0.3) {
            let q = format!(
                "SELECT id, sku, name, price_cents FROM products WHERE category_id = {} ORDER BY score DESC LIMIT 12",
                self.rng.range(1, 40)
            );
            let at_time = t + self.work(20.0);
            return self.sql(at, at_time, "SELECT inventory.products", q, 2_500.0);
        }
        (t, Status::Ok)
    }

    pub(super) fn get_order(&mut self, at: At, start: i64, order_id: u64, customer_id: u64) -> (i64, Status) {
        let q = format!(
            "SELECT id, status, total_cents, currency, created_at FROM orders WHERE id = {order_id} AND customer_id = {customer_id}"
        );
        let (mut t, status) = self.sql(at, start, "SELECT shop.orders", q, 1_100.0);
        if status != Status::Ok {
            return (t, status);
        }
        if self.rng.chance(0.03) {
            return (t, Status::NotFound);
        }
        if self.rng.chance(0.5) {
            let q = format!("SELECT sku, qty, price_cents FROM order_items WHERE order_id = {order_id}");
            let at_time = t + self.work(20.0);
            return self.sql(at, at_time, "SELECT shop.order_items", q, 900.0);
        }
        // The N+1 pattern, one query per line.
        for line in 1..=self.rng.range(1, 4) {
            let q = format!(
                "SELECT sku, qty, price_cents FROM order_items WHERE order_id = {order_id} AND line_no = {line}"
            );
            let at_time = t + self.work(15.0);
            let (end, status) = self.sql(at, at_time, "SELECT shop.order_items", q, 500.0);
            t = end;
            if status != Status::Ok {
                return (t, status);
            }
        }
        (t, Status::Ok)
    }

    pub(super) fn create_order(&mut self, at: At, start: i64, customer_id: u64, items: u64) -> (i64, Status) {
        let mut t = start + self.work(120.0);
        if self.rng.chance(0.02) {
            self.log(
                at.span,
                t,
                vec![
                    KeyValue::str("event", "validation failed"),
                    KeyValue::str("field", "items[0].qty"),
                ],
            );
            return (t, Status::InvalidArgument);
        }
        self.counters.next_order_id += self.rng.range(1, 3);
        let order_id = self.counters.next_order_id;
        let mut amount_cents = 0;
        for _ in 0..items {
            let product_id = self.rng.range(1_000, 99_999);
            let qty = self.rng.range(1, 3);
            amount_cents += qty * self.rng.range(199, 24_999);
            let at_time = t + self.work(20.0);
            let (end, status) = self.grpc(at, at_time, Call::Reserve { product_id, qty });
            t = end;
            if status != Status::Ok {
                return (t, status);
            }
        }
        let at_time = t + self.work(30.0);
        let (end, status) = self.grpc(at, at_time, Call::Charge { order_id, amount_cents });
        t = end;
        if status != Status::Ok {
            return (t, status);
        }
        let currency = *self.rng.pick(&CURRENCIES);
        let q = format!(
            "INSERT INTO orders (id, customer_id, status, total_cents, currency) VALUES ({order_id}, {customer_id}, 'paid', {amount_cents}, '{currency}')"
        );
        let at_time = t + self.work(20.0);
        let (end, status) = self.sql(at, at_time, "INSERT shop.orders", q, 2_000.0);
        t = end;
        if status != Status::Ok {
            return (t, status);
        }
        self.log(
            at.span,
            t,
            vec![
                KeyValue::str("event", "order created"),
                KeyValue::int64("order.id", order_id as i64),
                KeyValue::int64("order.total_cents", amount_cents as i64),
            ],
        );
        let at_time = t + self.work(20.0);
        let t = self.publish_order_event(at, at_time, order_id, customer_id);
        (t, Status::Ok)
    }

    pub(super) fn reserve(&mut self, at: At, start: i64, product_id: u64, qty: u64) -> (i64, Status) {
        let q = format!(
            "UPDATE stock SET quantity = quantity - {qty}, reserved = reserved + {qty} WHERE product_id = {product_id} AND quantity >= {qty}"
        );
        self.sql(at, start, "UPDATE inventory.stock", q, 1_500.0)
    }

    /// payments is Java with the OpenTelemetry agent: sanitized SQL, OTel HTTP attributes.
    pub(super) fn charge(&mut self, at: At, start: i64, order_id: u64, amount_cents: u64) -> (i64, Status) {
        let insert = "INSERT INTO payments (id, order_id, amount_cents, currency, status) VALUES (?, ?, ?, ?, ?)";
        let (mut t, status) = self.sql(at, start, "INSERT payments.payments", insert.to_owned(), 1_800.0);
        if status != Status::Ok {
            return (t, status);
        }
        let roll = self.rng.below(1000);
        let mut status = match roll {
            0..=29 => Status::PaymentDeclined,
            30..=44 => Status::Unavailable,
            _ => Status::Ok,
        };
        let at_time = t + self.work(40.0);
        t = self.stripe(at, at_time, order_id, amount_cents, status);
        if status == Status::Unavailable && self.room(1) && self.rng.chance(0.7) {
            let backoff = self.rng.range(50, 250) as i64;
            self.log(
                at.span,
                t,
                vec![
                    KeyValue::str("event", "retry"),
                    KeyValue::int64("attempt", 2),
                    KeyValue::int64("backoff_ms", backoff),
                ],
            );
            status = Status::Ok;
            t = self.stripe(at, t + backoff * 1_000, order_id, amount_cents, status);
        }
        if status.is_error() {
            return (t, Status::Internal);
        }
        let update = "UPDATE payments SET status = ?, provider_ref = ? WHERE id = ?";
        let at_time = t + self.work(30.0);
        let (t, db) = self.sql(at, at_time, "UPDATE payments.payments", update.to_owned(), 1_300.0);
        (t, if db == Status::Ok { status } else { db })
    }
}
