//! The operations endpoint on `http.listen`: `/metrics` (Prometheus text), `/livez` (the runtime
//! is not wedged), `/readyz` (both clusters reachable, checkpoints loaded and written lately, no
//! partition halted)
//! and `/status` (JSON figures per partition).
//!
//! It only reads shared state ([`Progress`], [`Health`], the Prometheus handle); it must never
//! change replication. [`HttpServer`] owns the accept loop, every connection and the heartbeat
//! task, and aborts them all when dropped.
//!
//! Anything that can reach the port can open connections, so they are bounded: a connection
//! with no whole request head after [`HEADER_READ_TIMEOUT`] is closed, and past
//! [`MAX_CONNECTIONS`] each new connection closes the oldest one. A flood of idle connections
//! costs a bounded number of file descriptors and never keeps the probes out.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinHandle, JoinSet};

use crate::budget::{Budget, LevelControl};
use crate::replicate::{drain_eta_secs, ClusterHealth, Health, PartitionState, Progress, Side};
use crate::telemetry;

/// How often the heartbeat task beats.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// `/livez` fails when the last beat is older than this.
const LIVENESS_STALE: Duration = Duration::from_secs(10);
/// Histogram upkeep (draining buckets into the summaries) runs every this many beats.
const UPKEEP_EVERY_BEATS: u64 = 5;
/// A connection that has not sent a whole request head this long after it opened, or after its
/// last answer, is closed: a client that trickles its headers or sends nothing cannot hold it.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Most connections served at once. One more closes the oldest, so idle connections hold at
/// most this many file descriptors and never lock out the probes or the Prometheus scrape.
pub const MAX_CONNECTIONS: usize = 256;

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

/// Fixed facts shown on `/status`.
#[derive(Clone, Debug, Default)]
pub struct StatusInfo {
    /// Source bootstrap servers.
    pub source_bootstrap: String,
    /// Target bootstrap servers.
    pub target_bootstrap: String,
    /// `alerts.retention_headroom_secs`: partitions lagging with less headroom are at risk
    /// (0 = never).
    pub retention_headroom_alert_secs: u64,
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
                    let mut r = text(StatusCode::OK, self.metrics.render());
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

    fn status(&self) -> Response<Body> {
        let body = serde_json::to_vec_pretty(&self.status_report())
            .expect("the status report holds only strings, numbers and options, which always serialize");
        let mut r = Response::new(Full::new(Bytes::from(body)));
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    }

    /// The `/status` document.
    pub fn status_report(&self) -> StatusReport {
        self.status_report_at(crate::checkpoint::now_ms())
    }

    /// The `/status` document with the wall clock at `now_ms` (ages and headrooms depend on it).
    pub fn status_report_at(&self, now_ms: i64) -> StatusReport {
        let threshold_secs = self.info.retention_headroom_alert_secs;
        let readiness = self.health.readiness(&self.progress);
        let rates = self.health.rates();
        let partitions: Vec<PartitionReport> = self
            .progress
            .snapshot()
            .into_iter()
            .map(|(tp, s)| {
                let records_per_sec = rates.get(&tp).copied().unwrap_or(0.0);
                let lag_records = s.lag_records();
                let risk = s.retention_risk(now_ms, threshold_secs);
                let (state, last_error) = match &s.state {
                    PartitionState::Starting => ("starting", None),
                    PartitionState::Running => ("running", None),
                    PartitionState::Halted(why) => ("halted", Some(why.clone())),
                    PartitionState::Stopped => ("stopped", None),
                };
                PartitionReport {
                    topic: tp.topic,
                    partition: tp.partition,
                    target_topic: s.target.as_ref().map(|t| t.topic.clone()),
                    target_partition: s.target.as_ref().map(|t| t.partition),
                    state,
                    last_error,
                    next_source_offset: s.next_source_offset,
                    source_high_watermark: s.source_high_watermark,
                    next_target_offset: s.next_target_offset,
                    lag_records,
                    records_per_sec,
                    drain_eta_secs: drain_eta_secs(lag_records, records_per_sec),
                    records: s.records,
                    source_bytes: s.source_bytes,
                    wire_bytes: s.wire_bytes,
                    gap_records: s.gap_records,
                    writer_epoch: s.writer_epoch,
                    retention_ms: s.retention.ms(),
                    oldest_unacked_age_secs: risk.oldest_unacked_age_ms.map(|ms| ms as f64 / 1000.0),
                    retention_headroom_secs: risk.headroom_secs,
                    at_risk: risk.at_risk,
                }
            })
            .collect();
        let cluster = |side: Side, bootstrap: &str| {
            let ClusterHealth {
                reachable,
                probed,
                last_error,
            } = self.health.cluster(side);
            ClusterReport {
                bootstrap_servers: bootstrap.to_owned(),
                reachable,
                probed,
                last_error,
            }
        };
        let t = self.progress.totals();
        let partitions_at_retention_risk = partitions.iter().filter(|p: &&PartitionReport| p.at_risk).count();
        StatusReport {
            version: env!("CARGO_PKG_VERSION"),
            ready: readiness.ready,
            not_ready_reasons: readiness.reasons,
            source: cluster(Side::Source, &self.info.source_bootstrap),
            target: cluster(Side::Target, &self.info.target_bootstrap),
            checkpoints_loaded: self.health.checkpoints_loaded(),
            checkpoint_age_secs: self
                .health
                .checkpointed()
                .then(|| self.health.checkpoint_age().as_secs_f64()),
            compression: CompressionReport {
                codec: "zstd",
                zstd_level: self.level.level(),
                ratio: (t.wire_bytes > 0).then(|| t.source_bytes as f64 / t.wire_bytes as f64),
            },
            budget: BudgetReport {
                bytes_per_sec: Some(self.budget.bytes_per_sec()).filter(|&b| b > 0),
                tokens_bytes: (self.budget.bytes_per_sec() > 0).then(|| self.budget.tokens().round() as i64),
                throttle_secs_total: Some(self.budget.waited().as_secs_f64()),
            },
            totals: TotalsReport {
                partitions: t.partitions,
                halted: t.halted,
                records: t.records,
                source_bytes: t.source_bytes,
                wire_bytes: t.wire_bytes,
                lag_records: t.lag_records,
                records_per_sec: rates.values().sum(),
                partitions_at_retention_risk,
            },
            retention_headroom_alert_secs: Some(threshold_secs).filter(|&s| s > 0),
            topic_errors: self.health.topic_errors(),
            partitions,
        }
    }
}

/// The `/status` document. Field names are an interface for scripts: keep them stable.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// strait's version.
    pub version: &'static str,
    /// What `/readyz` answers.
    pub ready: bool,
    /// Why not ready (empty when ready).
    pub not_ready_reasons: Vec<String>,
    /// The source cluster's last probe.
    pub source: ClusterReport,
    /// The target cluster's last probe.
    pub target: ClusterReport,
    /// Whether checkpoints are loaded.
    pub checkpoints_loaded: bool,
    /// Seconds since the checkpoints last covered everything acknowledged; null before the first.
    pub checkpoint_age_secs: Option<f64>,
    /// Compression of target batches.
    pub compression: CompressionReport,
    /// The WAN bandwidth budget.
    pub budget: BudgetReport,
    /// Sums over all partitions.
    pub totals: TotalsReport,
    /// `alerts.retention_headroom_secs`; null when the retention alert is off.
    pub retention_headroom_alert_secs: Option<u64>,
    /// Topics that match but cannot be replicated, with the error.
    pub topic_errors: std::collections::BTreeMap<String, String>,
    /// One entry per source partition with a task, by topic and partition.
    pub partitions: Vec<PartitionReport>,
}

/// One cluster in `/status`.
#[derive(Debug, Serialize)]
pub struct ClusterReport {
    /// Bootstrap servers from the config.
    pub bootstrap_servers: String,
    /// Whether the last probe succeeded.
    pub reachable: bool,
    /// Whether a probe has finished.
    pub probed: bool,
    /// Error of the last failed probe.
    pub last_error: Option<String>,
}

/// Compression in `/status`.
#[derive(Debug, Serialize)]
pub struct CompressionReport {
    /// Codec of target batches.
    pub codec: &'static str,
    /// zstd level in use.
    pub zstd_level: i32,
    /// Source bytes per wire byte so far; null before the first batch.
    pub ratio: Option<f64>,
}

/// The bandwidth budget in `/status`.
#[derive(Debug, Default, Serialize)]
pub struct BudgetReport {
    /// Wire bytes per second in force; null when unlimited.
    pub bytes_per_sec: Option<u64>,
    /// Tokens (bytes) left now over all topic classes, as the `strait_budget_tokens_bytes`
    /// gauge; negative while senders pay off a batch admitted on credit; null when unlimited.
    pub tokens_bytes: Option<i64>,
    /// Time partitions spent waiting for tokens so far.
    pub throttle_secs_total: Option<f64>,
}

/// Totals in `/status`.
#[derive(Debug, Serialize)]
pub struct TotalsReport {
    /// Partitions with a task.
    pub partitions: usize,
    /// Halted partitions.
    pub halted: usize,
    /// Records acknowledged by the target.
    pub records: u64,
    /// Source bytes replicated.
    pub source_bytes: u64,
    /// Bytes sent to the target.
    pub wire_bytes: u64,
    /// Records not yet replicated.
    pub lag_records: i64,
    /// Records per second over the last ten seconds.
    pub records_per_sec: f64,
    /// Partitions with `at_risk` set.
    pub partitions_at_retention_risk: usize,
}

/// One partition in `/status`.
#[derive(Debug, Serialize)]
pub struct PartitionReport {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Target topic, once known.
    pub target_topic: Option<String>,
    /// Target partition, once known.
    pub target_partition: Option<i32>,
    /// starting, running, halted or stopped.
    pub state: &'static str,
    /// Why the partition halted.
    pub last_error: Option<String>,
    /// Next source offset to replicate.
    pub next_source_offset: i64,
    /// Source high watermark at the last fetch.
    pub source_high_watermark: i64,
    /// Next target offset strait expects to write.
    pub next_target_offset: i64,
    /// Records not yet replicated.
    pub lag_records: i64,
    /// Records per second over the last ten seconds.
    pub records_per_sec: f64,
    /// Seconds to replicate the lag at the current rate; null when nothing moves.
    pub drain_eta_secs: Option<f64>,
    /// Records acknowledged.
    pub records: u64,
    /// Source bytes replicated.
    pub source_bytes: u64,
    /// Wire bytes sent.
    pub wire_bytes: u64,
    /// Source records lost before strait read them.
    pub gap_records: u64,
    /// Writer generation.
    pub writer_epoch: i64,
    /// The source topic's retention.ms (Kafka's default when the source does not report it);
    /// null when infinite.
    pub retention_ms: Option<i64>,
    /// Age of the oldest source record not yet acknowledged by the target: 0 when caught up,
    /// null when lagging with no timestamp known yet.
    pub oldest_unacked_age_secs: Option<f64>,
    /// Seconds until the source's retention may delete that record (negative: past it); the
    /// whole retention when caught up; null when retention is infinite or the age unknown.
    pub retention_headroom_secs: Option<f64>,
    /// Lagging with a headroom under `alerts.retention_headroom_secs`.
    pub at_risk: bool,
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

/// Accepts until aborted; the connections live in a `JoinSet`, so aborting this task closes
/// them too.
async fn accept_loop(listener: TcpListener, endpoints: Arc<Endpoints>) {
    let mut connections = Connections::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.make_room(MAX_CONNECTIONS).await;
                    connections.spawn(serve(stream, Arc::clone(&endpoints)));
                }
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(done) = connections.tasks.join_next_with_id(), if !connections.tasks.is_empty() => {
                connections.forget(done);
            }
        }
    }
}

/// Serves one connection until the client closes it, it fails, or it sends no whole request
/// head within [`HEADER_READ_TIMEOUT`].
async fn serve(stream: tokio::net::TcpStream, endpoints: Arc<Endpoints>) {
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let response = endpoints.respond(req.method(), req.uri().path());
        async move { Ok::<_, Infallible>(response) }
    });
    let io = hyper_util::rt::TokioIo::new(stream);
    // hyper ignores the header-read timeout unless it has a timer.
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(io, service)
        .await
    {
        tracing::debug!(error = %e, "http connection ended with an error");
    }
}

/// The open connections, oldest first.
#[derive(Default)]
struct Connections {
    tasks: JoinSet<()>,
    /// Connections not yet ended or closed for room, in the order they were accepted.
    by_age: VecDeque<AbortHandle>,
}

impl Connections {
    fn spawn(&mut self, connection: impl std::future::Future<Output = ()> + Send + 'static) {
        self.by_age.push_back(self.tasks.spawn(connection));
        self.count();
    }

    /// Closes the oldest connections until fewer than `limit` are open, and returns once their
    /// sockets are closed, so the count of file descriptors never passes `limit` + 1.
    async fn make_room(&mut self, limit: usize) {
        while self.tasks.len() >= limit {
            if let Some(oldest) = self.by_age.pop_front() {
                if !oldest.is_finished() {
                    metrics::counter!(telemetry::HTTP_CONNECTIONS_EVICTED).increment(1);
                }
                oldest.abort();
            }
            match self.tasks.join_next_with_id().await {
                Some(done) => self.forget(done),
                None => break,
            }
        }
    }

    /// Drops an ended connection from the books.
    fn forget(&mut self, done: Result<(tokio::task::Id, ()), tokio::task::JoinError>) {
        let id = match done {
            Ok((id, ())) => id,
            Err(e) => e.id(),
        };
        self.by_age.retain(|h| h.id() != id);
        self.count();
    }

    fn count(&self) {
        metrics::gauge!(telemetry::HTTP_CONNECTIONS).set(self.tasks.len() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::TopicPartition;
    use http_body_util::BodyExt;

    fn endpoints() -> Endpoints {
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
            },
        }
    }

    async fn body(r: Response<Body>) -> String {
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
    async fn status_reports_partitions_errors_and_compression() {
        let e = endpoints();
        let tp = TopicPartition::new("spans", 2);
        e.progress.update(&tp, |s| {
            s.target = Some(TopicPartition::new("dc1.spans", 2));
            s.next_source_offset = 40;
            s.source_high_watermark = 100;
            s.records = 40;
            s.source_bytes = 4000;
            s.wire_bytes = 1000;
            s.gap_records = 3;
            s.state = PartitionState::Halted("corrupt batch at 40".into());
        });
        let r = e.respond(&Method::GET, "/status");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        let v: serde_json::Value = serde_json::from_str(&body(r).await).expect("json");
        let p = &v["partitions"][0];
        assert_eq!(p["topic"], "spans");
        assert_eq!(p["target_topic"], "dc1.spans");
        assert_eq!(p["lag_records"], 60);
        assert_eq!(p["gap_records"], 3);
        assert_eq!(p["state"], "halted");
        assert_eq!(p["last_error"], "corrupt batch at 40");
        assert_eq!(v["compression"]["zstd_level"], 7);
        assert_eq!(v["compression"]["ratio"], 4.0);
        assert_eq!(v["target"]["bootstrap_servers"], "aws:9092");
        assert_eq!(v["budget"]["bytes_per_sec"], 1_000_000);
        assert_eq!(v["budget"]["throttle_secs_total"], 0.0);
        assert_eq!(v["ready"], false);
    }

    #[tokio::test(start_paused = true)]
    async fn status_reports_the_budgets_tokens_and_null_when_unlimited() {
        let tokens =
            |e: &Endpoints| serde_json::to_value(e.status_report()).expect("json")["budget"]["tokens_bytes"].clone();
        // 1 MB/s with the default burst of a tenth of a second.
        let e = endpoints();
        assert_eq!(tokens(&e), 0);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(tokens(&e), 100_000);
        // A batch admitted on credit leaves the tokens negative until it is paid off.
        e.budget.acquire("spans", 300_000).await;
        assert_eq!(tokens(&e), -200_000);
        let unlimited = Endpoints {
            budget: Arc::new(Budget::unlimited()),
            ..endpoints()
        };
        assert_eq!(tokens(&unlimited), serde_json::Value::Null);
    }

    #[test]
    fn status_flags_partitions_at_retention_risk() {
        let e = endpoints();
        let now = 1_800_000_000_000;
        let lagging = TopicPartition::new("spans", 0);
        let caught_up = TopicPartition::new("spans", 1);
        let forever = TopicPartition::new("audit", 0);
        for tp in [&lagging, &caught_up, &forever] {
            e.progress.update(tp, |s| {
                s.next_source_offset = 10;
                s.source_high_watermark = if tp == &caught_up { 10 } else { 50 };
                s.oldest_unacked_timestamp_ms = Some(now - 6_600_000);
                s.retention = crate::replicate::Retention::Ms(7_200_000);
            });
        }
        e.progress.set_retention("audit", crate::replicate::Retention::Infinite);
        let v = serde_json::to_value(e.status_report_at(now)).expect("json");
        let p = |i: usize| &v["partitions"][i];
        // Sorted by topic then partition: audit/0, spans/0, spans/1.
        assert_eq!(
            (p(0)["topic"].as_str(), p(0)["at_risk"].as_bool()),
            (Some("audit"), Some(false))
        );
        assert!(p(0)["retention_ms"].is_null() && p(0)["retention_headroom_secs"].is_null());
        assert_eq!(p(1)["oldest_unacked_age_secs"], 6600.0);
        assert_eq!(p(1)["retention_headroom_secs"], 600.0);
        assert_eq!(p(1)["at_risk"], true);
        assert_eq!(p(2)["retention_headroom_secs"], 7200.0);
        assert_eq!(p(2)["at_risk"], false);
        assert_eq!(v["totals"]["partitions_at_retention_risk"], 1);
        assert_eq!(v["retention_headroom_alert_secs"], 3600);
        // The link stays down: ten minutes later the headroom is gone, with no new event.
        let v = serde_json::to_value(e.status_report_at(now + 600_000)).expect("json");
        assert_eq!(v["partitions"][1]["retention_headroom_secs"], 0.0);
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

    /// Item 3 of issue 15: a client that sends part of a request head and then trickles or
    /// stops, or sends nothing at all, is closed by the server within 10 s (on the paused clock,
    /// which moves only when every task waits).
    #[tokio::test(start_paused = true)]
    async fn slowloris_clients_are_closed_within_ten_seconds() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let server = HttpServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), endpoints())
            .await
            .expect("bind an ephemeral port");
        let addr = server.local_addr();
        // A header line a byte per second, half a request line and then nothing, nothing at all.
        let clients: [(&'static [u8], bool); 3] = [
            (b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ", true),
            (b"GET /met", false),
            (b"", false),
        ];
        let mut closed = JoinSet::new();
        for (opener, trickle) in clients {
            closed.spawn(async move {
                let started = tokio::time::Instant::now();
                let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
                s.write_all(opener).await.expect("send the opener");
                let mut answer = Vec::new();
                let mut buf = [0u8; 512];
                let until_closed = async {
                    loop {
                        tokio::select! {
                            read = s.read(&mut buf) => match read {
                                Ok(0) | Err(_) => return,
                                Ok(n) => answer.extend_from_slice(&buf[..n]),
                            },
                            _ = tokio::time::sleep(Duration::from_secs(1)), if trickle => {
                                if s.write_all(b"a").await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                };
                let outcome = tokio::time::timeout(Duration::from_secs(10), until_closed).await;
                (
                    opener,
                    outcome.is_ok(),
                    started.elapsed(),
                    String::from_utf8_lossy(&answer).into_owned(),
                )
            });
        }
        let mut seen = 0;
        while let Some(joined) = closed.join_next().await {
            let (opener, was_closed, took, answer) = joined.expect("client task");
            let opener = String::from_utf8_lossy(opener);
            assert!(was_closed, "{opener:?}: still open after 10 s");
            // Premise: closed for being slow, not at once for being malformed.
            assert!(took >= HEADER_READ_TIMEOUT, "{opener:?}: closed after {took:?}");
            assert!(!answer.contains(" 200 "), "{opener:?}: answered {answer:?}");
            seen += 1;
        }
        assert_eq!(seen, 3);
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
