//! The operations endpoint on `http.listen`: `/metrics` (Prometheus text), `/livez` (the runtime
//! is not wedged), `/readyz` (both clusters reachable, checkpoints loaded and written lately, no
//! partition halted)
//! and `/status` (JSON figures per partition). [`probe`] is the client side, for
//! `strait healthcheck`.
//!
//! It only reads shared state ([`Progress`], [`Health`], the Prometheus handle); it must never
//! change replication. [`HttpServer`] owns the accept loop, every connection and the heartbeat
//! task, and aborts them all when dropped.
//!
//! Anything that can reach the port can open connections, so they are bounded: a connection
//! with no whole request head after [`HEADER_READ_TIMEOUT`] is closed, and past
//! [`MAX_CONNECTIONS`] each new connection closes the oldest one. A flood of idle connections
//! costs a bounded number of file descriptors and never keeps the probes out.

mod connections;
pub mod probe;
mod status;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::budget::{Budget, LevelControl};
use crate::replicate::{Health, Progress};
use crate::telemetry;

use connections::accept_loop;
pub use connections::{HEADER_READ_TIMEOUT, MAX_CONNECTIONS};
pub use status::{
    BudgetReport, ClusterReport, CompressionReport, PartitionReport, StatusInfo, StatusReport, TotalsReport,
};

/// How often the heartbeat task beats.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// `/livez` fails when the last beat is older than this.
const LIVENESS_STALE: Duration = Duration::from_secs(10);
/// Histogram upkeep (draining buckets into the summaries) runs every this many beats.
const UPKEEP_EVERY_BEATS: u64 = 5;

/// Result of the HTTP endpoint.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the HTTP endpoint.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listen address is taken or not ours.
    #[error("cannot listen on {addr}: set http.listen (STRAIT_HTTP__LISTEN) to a free address")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// When the runtime last ran the heartbeat task.
#[derive(Debug)]
pub struct Liveness {
    started: Instant,
    last_beat_ms: AtomicU64,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            last_beat_ms: AtomicU64::new(0),
        }
    }
}

impl Liveness {
    /// Records a beat now.
    pub fn beat(&self) {
        self.beat_at(Instant::now());
    }

    fn beat_at(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.started).as_millis();
        self.last_beat_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Release);
    }

    /// Time since the last beat (since start before the first).
    pub fn since_last_beat(&self) -> Duration {
        self.since_last_beat_at(Instant::now())
    }

    fn since_last_beat_at(&self, now: Instant) -> Duration {
        let last = self.started + Duration::from_millis(self.last_beat_ms.load(Ordering::Acquire));
        now.saturating_duration_since(last)
    }
}

/// Everything the endpoints read.
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Partition figures.
    pub progress: Arc<Progress>,
    /// Readiness flags and rates.
    pub health: Arc<Health>,
    /// Heartbeat of the runtime.
    pub liveness: Arc<Liveness>,
    /// The WAN budget in force (changed at run time by SIGHUP).
    pub budget: Arc<Budget>,
    /// The zstd level in force (adapted to the link and the CPU).
    pub level: Arc<LevelControl>,
    /// Fixed facts for `/status`.
    pub info: StatusInfo,
}

type Body = Full<Bytes>;

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

impl Endpoints {
    /// Answers one request. Pure apart from reading the shared state, so tests call it directly.
    pub fn respond(&self, method: &Method, path: &str) -> Response<Body> {
        let known = matches!(path, "/metrics" | "/livez" | "/readyz" | "/status" | "/");
        let response = if method != Method::GET && method != Method::HEAD {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
            r.headers_mut()
                .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        } else {
            match path {
                "/metrics" => {
                    let mut r = text(StatusCode::OK, telemetry::render(&self.metrics));
                    r.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                    );
                    r
                }
                "/livez" => self.livez(),
                "/readyz" => self.readyz(),
                "/status" => self.status(),
                "/" => text(StatusCode::OK, "strait: /metrics /livez /readyz /status\n"),
                _ => text(
                    StatusCode::NOT_FOUND,
                    "not found: try /metrics /livez /readyz /status\n",
                ),
            }
        };
        metrics::counter!(telemetry::HTTP_REQUESTS,
            "path" => if known { path.to_owned() } else { "other".to_owned() },
            "status" => response.status().as_u16().to_string())
        .increment(1);
        response
    }

    fn livez(&self) -> Response<Body> {
        let since = self.liveness.since_last_beat();
        if since > LIVENESS_STALE {
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("wedged: no heartbeat for {:.1} s\n", since.as_secs_f64()),
            )
        } else {
            text(StatusCode::OK, "ok\n")
        }
    }

    fn readyz(&self) -> Response<Body> {
        let r = self.health.readiness(&self.progress);
        if r.ready {
            text(StatusCode::OK, "ready\n")
        } else {
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready:\n{}\n", r.reasons.join("\n")),
            )
        }
    }
}

/// The running endpoint: accept loop, its connections and the heartbeat, aborted on drop.
#[derive(Debug)]
pub struct HttpServer {
    local_addr: SocketAddr,
    accept: JoinHandle<()>,
    heartbeat: JoinHandle<()>,
}

impl HttpServer {
    /// Binds `addr` and serves `endpoints` on the current runtime.
    pub async fn start(addr: SocketAddr, endpoints: Endpoints) -> Result<HttpServer> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Bind { addr, source })?;
        let endpoints = Arc::new(endpoints);
        let heartbeat = tokio::spawn(heartbeat(Arc::clone(&endpoints.liveness), endpoints.metrics.clone()));
        let accept = tokio::spawn(accept_loop(listener, endpoints));
        tracing::info!(addr = %local_addr, "serving /metrics /livez /readyz /status");
        Ok(HttpServer {
            local_addr,
            accept,
            heartbeat,
        })
    }

    /// The bound address (the real port when `http.listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.accept.abort();
        self.heartbeat.abort();
    }
}

async fn heartbeat(liveness: Arc<Liveness>, metrics: PrometheusHandle) {
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut beats: u64 = 0;
    loop {
        tick.tick().await;
        liveness.beat();
        beats += 1;
        if beats % UPKEEP_EVERY_BEATS == 0 {
            metrics.run_upkeep();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicate::Side;
    use http_body_util::BodyExt;

    pub(super) fn endpoints() -> Endpoints {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        Endpoints {
            metrics: recorder.handle(),
            progress: Arc::new(Progress::default()),
            health: Arc::new(Health::default()),
            liveness: Arc::new(Liveness::default()),
            budget: Arc::new(Budget::new(1_000_000, 0, Vec::new())),
            level: Arc::new(LevelControl::new(7, 1, 12)),
            info: StatusInfo {
                source_bootstrap: "onprem:9092".into(),
                target_bootstrap: "aws:9092".into(),
                retention_headroom_alert_secs: 3600,
                codec: crate::config::Codec::Zstd,
            },
        }
    }

    pub(super) async fn body(r: Response<Body>) -> String {
        let bytes = r.into_body().collect().await.expect("full body").to_bytes();
        String::from_utf8(bytes.to_vec()).expect("utf-8 body")
    }

    #[test]
    fn liveness_goes_stale_without_beats() {
        let l = Liveness::default();
        let t = l.started + Duration::from_secs(30);
        l.beat_at(l.started + Duration::from_secs(25));
        assert_eq!(l.since_last_beat_at(t), Duration::from_secs(5));
        assert!(l.since_last_beat_at(t + Duration::from_secs(6)) > LIVENESS_STALE);
    }

    #[tokio::test]
    async fn readyz_lists_reasons_until_everything_holds() {
        let e = endpoints();
        let r = e.respond(&Method::GET, "/readyz");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let text = body(r).await;
        assert!(text.contains("checkpoints not loaded"), "{text}");
        e.health.record_probe(Side::Source, Ok(()));
        e.health.record_probe(Side::Target, Ok(()));
        e.health.set_checkpoints_loaded();
        assert_eq!(e.respond(&Method::GET, "/readyz").status(), StatusCode::OK);
        e.health.record_probe(Side::Target, Err("connection refused".into()));
        let r = e.respond(&Method::GET, "/readyz");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(body(r).await.contains("target cluster unreachable"));
    }

    #[tokio::test]
    async fn unknown_paths_and_methods_are_refused() {
        let e = endpoints();
        assert_eq!(e.respond(&Method::GET, "/nope").status(), StatusCode::NOT_FOUND);
        let r = e.respond(&Method::POST, "/readyz");
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[hyper::header::ALLOW], "GET, HEAD");
        assert_eq!(e.respond(&Method::GET, "/livez").status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn server_serves_over_tcp_and_stops_on_drop() {
        let server = HttpServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), endpoints())
            .await
            .expect("bind an ephemeral port");
        let addr = server.local_addr();
        let get = |path: &'static str| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
                .await?;
            let mut out = String::new();
            s.read_to_string(&mut out).await?;
            Ok::<_, std::io::Error>(out)
        };
        let livez = get("/livez").await.expect("livez answered");
        assert!(livez.starts_with("HTTP/1.1 200"), "{livez}");
        let metrics = get("/metrics").await.expect("metrics answered");
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        drop(server);
        // The accept loop is aborted: the port stops answering (poll briefly for the abort).
        let deadline = Instant::now() + Duration::from_secs(5);
        while get("/livez").await.is_ok_and(|r| r.starts_with("HTTP/1.1 200")) {
            assert!(Instant::now() < deadline, "server still answering after drop");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
