//! Every metric strait exports: names (as constants, so dashboards and alerts have one source of
//! truth), descriptions, and the Prometheus exporter. Names are `strait_<thing>_<unit>[_total]`,
//! labelled by `topic` and `partition`, never by offset.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::PrometheusHandle;

/// Records acknowledged by the target.
pub const RECORDS_REPLICATED: &str = "strait_records_replicated_total";
/// Uncompressed record bytes read from source batches.
pub const SOURCE_BYTES: &str = "strait_source_bytes_total";
/// Bytes of the record batches sent to the target.
pub const WIRE_BYTES: &str = "strait_wire_bytes_total";
/// Records on the source not yet acknowledged by the target.
pub const LAG_RECORDS: &str = "strait_lag_records";
/// Records lost on the source before strait read them (retention, DeleteRecords).
pub const SOURCE_GAP_RECORDS: &str = "strait_source_gap_records_total";
/// Records of other producers found in a target partition strait replicates into and left in
/// place (`on_foreign_writer = "skip"`); no source record is skipped on their account.
pub const FOREIGN_RECORDS: &str = "strait_foreign_records_total";
/// strait's own records found twice in a target partition: a batch whose answer was lost
/// landed after strait had written its records again under a new producer identity.
pub const TARGET_DUPLICATE_RECORDS: &str = "strait_target_duplicate_records_total";
/// 1 while a partition is halted on an error that needs an operator.
pub const PARTITION_HALTED: &str = "strait_partition_halted";
/// Checkpoint writes that failed.
pub const CHECKPOINT_ERRORS: &str = "strait_checkpoint_errors_total";
/// Bytes of checkpoint batches sent to the target, each attempt counted: they share the link
/// with the data (the socket pace), outside `strait_wire_bytes_total`.
pub const CHECKPOINT_BYTES: &str = "strait_checkpoint_bytes_total";
/// Commits of the replicated positions to the source group (`strait.<replication id>`) that
/// failed (advisory copy: replication goes on).
pub const SOURCE_GROUP_COMMIT_ERRORS: &str = "strait_source_group_commit_errors_total";
/// Seconds since the last successful checkpoint write (since start until the first one).
pub const CHECKPOINT_AGE: &str = "strait_checkpoint_age_seconds";
/// Partitions halted on an error, over the whole process.
pub const PARTITIONS_HALTED: &str = "strait_partitions_halted";
/// Records read from the source (before they are written).
pub const SOURCE_RECORDS: &str = "strait_source_records_total";
/// Source bytes divided by wire bytes over everything replicated so far (process-wide).
pub const COMPRESSION_RATIO: &str = "strait_compression_ratio";
/// Bytes on the source not yet acknowledged by the target (estimated from batch sizes).
pub const LAG_BYTES: &str = "strait_lag_bytes";
/// Age of the oldest source record not yet acknowledged by the target (0 when caught up),
/// computed from the wall clock every second, so it keeps growing while nothing is acknowledged.
pub const LAG_SECONDS: &str = "strait_lag_seconds";
/// Seconds until the source topic's `retention.ms` may delete the oldest record not yet
/// acknowledged by the target (negative: already past it); the whole retention when caught up;
/// not exported for a topic whose retention is infinite.
pub const RETENTION_HEADROOM: &str = "strait_retention_headroom_seconds";
/// Partitions lagging with a retention headroom under `alerts.retention_headroom_secs`.
pub const PARTITIONS_AT_RETENTION_RISK: &str = "strait_partitions_at_retention_risk";
/// From a record's timestamp to the target's acknowledgement, one sample per batch.
pub const END_TO_END_LATENCY: &str = "strait_end_to_end_latency_seconds";
/// Produce request round trips to the target.
pub const PRODUCE_LATENCY: &str = "strait_produce_latency_seconds";
/// Fetch request round trips to the source.
pub const FETCH_LATENCY: &str = "strait_fetch_latency_seconds";
/// Failed requests, labelled `cluster`, `api` and Kafka error `code`.
pub const REQUEST_ERRORS: &str = "strait_request_errors_total";
/// Requests retried, labelled `cluster` and `api`.
pub const RETRIES: &str = "strait_retries_total";
/// Tokens (wire bytes) left in the bandwidth budget.
pub const BUDGET_TOKENS: &str = "strait_budget_tokens_bytes";
/// Counter: time spent waiting for the bandwidth budget ([`BUDGET_THROTTLED`]).
pub const BUDGET_THROTTLE: &str = "strait_budget_throttle_seconds_total";
/// Counter: time the target asked strait to hold its produce requests (quota throttling,
/// KIP-219; [`TARGET_THROTTLED`]).
pub const TARGET_THROTTLE: &str = "strait_target_throttle_seconds_total";
/// zstd level in use for target batches.
pub const ZSTD_LEVEL: &str = "strait_zstd_level";
/// Open broker connections, labelled `cluster`.
pub const CONNECTIONS: &str = "strait_connections";
/// Counter: TCP connects started per cluster (a failed connect holds the next one back, see
/// `ReconnectGate`), labelled `cluster`.
pub const CONNECTION_ATTEMPTS: &str = "strait_connection_attempts_total";
/// SASL re-authentications, labelled `cluster`.
pub const REAUTHENTICATIONS: &str = "strait_reauthentications_total";
/// 1 while the last probe of a cluster succeeded, labelled `cluster` (source, target).
pub const CLUSTER_REACHABLE: &str = "strait_cluster_reachable";
/// 1 while `/readyz` answers 200.
pub const READY: &str = "strait_ready";
/// Requests served by the HTTP endpoint, labelled `path` and `status`.
pub const HTTP_REQUESTS: &str = "strait_http_requests_total";
/// Connections the HTTP endpoint holds open (at most `http::MAX_CONNECTIONS`).
pub const HTTP_CONNECTIONS: &str = "strait_http_connections";
/// HTTP connections closed to make room for a newer one.
pub const HTTP_CONNECTIONS_EVICTED: &str = "strait_http_connections_evicted_total";
/// Gauge: the bytes per second this process may send (its share of `budget.bytes_per_sec`);
/// 0 = unlimited.
pub const BUDGET_BYTES_PER_SEC: &str = "strait_budget_bytes_per_second";
/// Counter: records the continuous check (`verify.interval_secs`) compared, by source topic.
pub const VERIFY_COMPARED: &str = "strait_verify_compared_records_total";
/// Counter: records the continuous check found different, missing or extra on the target.
pub const VERIFY_MISMATCHED: &str = "strait_verify_mismatched_records_total";
/// Gauge, always 1: strait's version in the `version` label.
pub const BUILD_INFO: &str = "strait_build_info";
/// Gauge, always 1: this process's `shard.index` and `shard.count` in labels.
pub const SHARD_INFO: &str = "strait_shard_info";
/// Gauge: partitions of this replication no running shard replicates (their source moves past
/// a checkpoint older than `shard.orphan_after_secs`), as this shard sees them.
pub const ORPHANED_PARTITIONS: &str = "strait_orphaned_partitions";
/// Gauge: consumer groups synced in the last pass.
pub const GROUPS_SYNCED: &str = "strait_groups_synced";
/// Counter by `reason`: passes in which a selected group was left alone.
pub const GROUPS_SKIPPED: &str = "strait_groups_skipped_total";
/// Counter: translated group offsets committed on the target, by partition.
pub const GROUP_PARTITIONS_SYNCED: &str = "strait_group_partitions_synced_total";
/// Gauge by group, topic, partition: source records the group read that are not on the target.
pub const GROUP_TRANSLATION_LAG: &str = "strait_group_translation_lag_records";

/// A process-wide counter of seconds with a fractional part. The `metrics` crate's counters
/// count whole units, so these are kept here (in nanoseconds) and [`render`] writes them after
/// the recorder's series, typed `counter`, from 0 on.
#[derive(Debug)]
pub struct SecondsCounter {
    name: &'static str,
    help: &'static str,
    nanos: AtomicU64,
}

impl SecondsCounter {
    const fn new(name: &'static str, help: &'static str) -> SecondsCounter {
        SecondsCounter {
            name,
            help,
            nanos: AtomicU64::new(0),
        }
    }

    /// Adds `d` to the total.
    pub fn add(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The total so far.
    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }

    fn render(&self, out: &mut String) {
        let (name, help) = (self.name, self.help);
        let value = self.total().as_secs_f64();
        // Writing to a String cannot fail.
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n");
    }
}

/// Time senders waited for the bandwidth budget, over every budget of the process.
pub static BUDGET_THROTTLED: SecondsCounter =
    SecondsCounter::new(BUDGET_THROTTLE, "Time spent waiting for the bandwidth budget");
/// Time the target's quotas asked strait to hold produce requests, over all partitions.
pub static TARGET_THROTTLED: SecondsCounter = SecondsCounter::new(
    TARGET_THROTTLE,
    "Time the target's quotas asked strait to hold produce requests",
);

/// The text exposition served on `/metrics`: the recorder's series, then the
/// [`SecondsCounter`]s.
pub fn render(handle: &PrometheusHandle) -> String {
    let mut out = handle.render();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    BUDGET_THROTTLED.render(&mut out);
    TARGET_THROTTLED.render(&mut out);
    out
}

/// Errors of the telemetry setup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A metrics recorder is already installed in this process.
    #[error("cannot install the Prometheus recorder")]
    Install {
        #[source]
        source: metrics_exporter_prometheus::BuildError,
    },
    /// `STRAIT_LOG_FORMAT` holds something else than `json` or `text`.
    #[error("STRAIT_LOG_FORMAT={value:?} is not a log format: set it to json or text, or unset it")]
    LogFormat { value: String },
}

/// Installs the Prometheus recorder and describes every metric. The returned handle renders
/// the text exposition; `crate::http` serves it on `/metrics` and runs its upkeep.
pub fn install() -> Result<PrometheusHandle, Error> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)
        .map_err(|source| Error::Install { source })?
        .install_recorder()
        .map_err(|source| Error::Install { source })?;
    describe();
    Ok(handle)
}

/// Histogram buckets for every latency, in seconds: from a LAN round trip to a stalled WAN.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

fn describe() {
    describe_gauge!(
        BUDGET_BYTES_PER_SEC,
        Unit::Bytes,
        "Bytes per second this shard may send to the target (its share of the budget); 0 = unlimited"
    );
    describe_counter!(
        VERIFY_COMPARED,
        Unit::Count,
        "Records the continuous check compared, source against target"
    );
    describe_counter!(
        VERIFY_MISMATCHED,
        Unit::Count,
        "Records the continuous check found different, missing or extra on the target"
    );
    describe_gauge!(BUILD_INFO, "Always 1; the version label is strait's");
    describe_gauge!(GROUPS_SYNCED, Unit::Count, "Consumer groups synced in the last pass");
    describe_counter!(
        GROUPS_SKIPPED,
        Unit::Count,
        "Passes in which a selected consumer group was left alone, by reason"
    );
    describe_counter!(
        GROUP_PARTITIONS_SYNCED,
        Unit::Count,
        "Translated consumer group offsets committed on the target (one per partition)"
    );
    describe_gauge!(
        GROUP_TRANSLATION_LAG,
        Unit::Count,
        "Source records a consumer group read that are not on the target yet"
    );
    describe_gauge!(
        ORPHANED_PARTITIONS,
        Unit::Count,
        "Partitions no running shard replicates: their source moves while their checkpoint is older than shard.orphan_after_secs"
    );
    describe_gauge!(
        SHARD_INFO,
        "Always 1; the labels are this process's shard index and count"
    );
    describe_counter!(RECORDS_REPLICATED, Unit::Count, "Records acknowledged by the target");
    describe_counter!(
        SOURCE_BYTES,
        Unit::Bytes,
        "Uncompressed record bytes read from the source"
    );
    describe_counter!(WIRE_BYTES, Unit::Bytes, "Record batch bytes sent to the target");
    describe_gauge!(
        LAG_RECORDS,
        Unit::Count,
        "Source records not yet acknowledged by the target"
    );
    describe_counter!(
        SOURCE_GAP_RECORDS,
        Unit::Count,
        "Source records deleted before strait read them"
    );
    describe_counter!(
        FOREIGN_RECORDS,
        Unit::Count,
        "Records of other producers in the target partition, left in place"
    );
    describe_counter!(
        TARGET_DUPLICATE_RECORDS,
        Unit::Count,
        "Records strait wrote twice to the target partition (a lost answer's batch landed late)"
    );
    describe_gauge!(
        PARTITION_HALTED,
        Unit::Count,
        "1 while the partition is halted on an error"
    );
    describe_counter!(CHECKPOINT_ERRORS, Unit::Count, "Checkpoint writes that failed");
    describe_counter!(
        CHECKPOINT_BYTES,
        Unit::Bytes,
        "Bytes of checkpoint batches sent to the target, each attempt counted"
    );
    describe_counter!(
        SOURCE_GROUP_COMMIT_ERRORS,
        Unit::Count,
        "Commits of the replicated positions to the source group that failed (advisory; replication goes on)"
    );
    describe_gauge!(
        CHECKPOINT_AGE,
        Unit::Seconds,
        "Seconds since the last successful checkpoint write"
    );
    describe_gauge!(PARTITIONS_HALTED, Unit::Count, "Partitions halted on an error");
    describe_counter!(SOURCE_RECORDS, Unit::Count, "Records read from the source");
    describe_gauge!(
        COMPRESSION_RATIO,
        Unit::Count,
        "Source bytes per wire byte over everything replicated"
    );
    describe_gauge!(
        LAG_BYTES,
        Unit::Bytes,
        "Source bytes not yet acknowledged by the target"
    );
    describe_gauge!(
        LAG_SECONDS,
        Unit::Seconds,
        "Age of the oldest source record not yet acknowledged by the target"
    );
    describe_gauge!(
        RETENTION_HEADROOM,
        Unit::Seconds,
        "Time until source retention may delete the oldest record not yet acknowledged (retention when caught up)"
    );
    describe_gauge!(
        PARTITIONS_AT_RETENTION_RISK,
        Unit::Count,
        "Lagging partitions whose retention headroom is under alerts.retention_headroom_secs"
    );
    describe_histogram!(
        END_TO_END_LATENCY,
        Unit::Seconds,
        "From record timestamp to target acknowledgement"
    );
    describe_histogram!(PRODUCE_LATENCY, Unit::Seconds, "Produce request round trip");
    describe_histogram!(FETCH_LATENCY, Unit::Seconds, "Fetch request round trip");
    describe_counter!(
        REQUEST_ERRORS,
        Unit::Count,
        "Failed requests by cluster, api and error code"
    );
    describe_counter!(RETRIES, Unit::Count, "Requests retried by cluster and api");
    describe_gauge!(BUDGET_TOKENS, Unit::Bytes, "Tokens left in the bandwidth budget");
    // BUDGET_THROTTLE and TARGET_THROTTLE are SecondsCounters, described where they are defined.
    describe_gauge!(ZSTD_LEVEL, Unit::Count, "zstd level used for target batches");
    describe_gauge!(CONNECTIONS, Unit::Count, "Open broker connections by cluster");
    describe_counter!(CONNECTION_ATTEMPTS, Unit::Count, "TCP connects started by cluster");
    describe_counter!(REAUTHENTICATIONS, Unit::Count, "SASL re-authentications by cluster");
    describe_gauge!(
        CLUSTER_REACHABLE,
        Unit::Count,
        "1 while the last metadata probe of the cluster succeeded"
    );
    describe_gauge!(READY, Unit::Count, "1 while /readyz answers 200");
    describe_counter!(HTTP_REQUESTS, Unit::Count, "HTTP requests served by path and status");
    describe_gauge!(
        HTTP_CONNECTIONS,
        Unit::Count,
        "Connections the HTTP endpoint holds open"
    );
    describe_counter!(
        HTTP_CONNECTIONS_EVICTED,
        Unit::Count,
        "HTTP connections closed to make room for a newer one"
    );
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line: for containers and log shippers.
    Json,
    /// Human-readable lines, coloured on a terminal.
    Text,
}

impl LogFormat {
    /// The format named by `STRAIT_LOG_FORMAT` (`value`); unset or empty means JSON unless
    /// stderr is a terminal, so containers get JSON and a shell gets text.
    pub fn choose(value: Option<&str>, stderr_is_terminal: bool) -> Result<LogFormat, Error> {
        match value.map(str::trim).map(str::to_ascii_lowercase).as_deref() {
            None | Some("") => Ok(if stderr_is_terminal {
                LogFormat::Text
            } else {
                LogFormat::Json
            }),
            Some("json") => Ok(LogFormat::Json),
            Some("text") => Ok(LogFormat::Text),
            Some(_) => Err(Error::LogFormat {
                value: value.unwrap_or_default().to_owned(),
            }),
        }
    }
}

/// Installs the global `tracing` subscriber on stderr: `format`, with `filter` in `EnvFilter`
/// syntax (`info`, `strait=debug,warn`). A subscriber already installed is left in place.
pub fn init_logs(format: LogFormat, filter: &str) {
    let filter = secret_safe(tracing_subscriber::EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}

/// Installs the global subscriber the way strait's binaries read the environment: the format from
/// `STRAIT_LOG_FORMAT` ([`LogFormat::choose`]), the level from `STRAIT_LOG`, else `RUST_LOG`,
/// else `info`.
pub fn init_logs_from_env() -> Result<(), Error> {
    let filter = std::env::var("STRAIT_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let format_var = std::env::var("STRAIT_LOG_FORMAT").ok();
    let format = LogFormat::choose(
        format_var.as_deref(),
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
    )?;
    init_logs(format, &filter);
    Ok(())
}

/// Caps crates that log secrets below `info`, whatever the operator asked for: aws-sigv4 traces
/// the canonical request of a presigned URL, which holds the session token of temporary AWS
/// credentials (MSK IAM with web identity or an instance role). A directive for the same target
/// replaces the operator's.
fn secret_safe(filter: tracing_subscriber::EnvFilter) -> tracing_subscriber::EnvFilter {
    match "aws_sigv4=info".parse() {
        Ok(cap) => filter.add_directive(cap),
        Err(_) => filter,
    }
}

/// Labels for a topic-partition.
pub fn labels(topic: &str, partition: i32) -> [(&'static str, String); 2] {
    [("topic", topic.to_owned()), ("partition", partition.to_string())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_format_defaults_by_terminal_and_honours_the_variable() {
        let table: &[(Option<&str>, bool, Option<LogFormat>)] = &[
            (None, false, Some(LogFormat::Json)),
            (None, true, Some(LogFormat::Text)),
            (Some(""), false, Some(LogFormat::Json)),
            (Some("json"), true, Some(LogFormat::Json)),
            (Some("TEXT"), false, Some(LogFormat::Text)),
            (Some(" text "), false, Some(LogFormat::Text)),
            (Some("xml"), false, None),
        ];
        for (value, tty, want) in table {
            let got = LogFormat::choose(*value, *tty).ok();
            assert_eq!(got, *want, "STRAIT_LOG_FORMAT={value:?}, terminal={tty}");
        }
        let err = LogFormat::choose(Some("xml"), false).expect_err("xml is not a format");
        assert!(err.to_string().contains("json or text"), "{err}");
    }

    #[test]
    fn seconds_counters_render_as_counters_with_fractions() {
        let c = SecondsCounter::new("strait_test_waited_seconds_total", "Test waits");
        let mut out = String::new();
        c.render(&mut out);
        assert!(out.ends_with("strait_test_waited_seconds_total 0\n"), "{out}");
        c.add(Duration::from_millis(1250));
        c.add(Duration::from_millis(500));
        assert_eq!(c.total(), Duration::from_millis(1750));
        let mut out = String::new();
        c.render(&mut out);
        assert_eq!(
            out,
            "# HELP strait_test_waited_seconds_total Test waits\n\
             # TYPE strait_test_waited_seconds_total counter\n\
             strait_test_waited_seconds_total 1.75\n"
        );
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let text = render(&recorder.handle());
        for name in [BUDGET_THROTTLE, TARGET_THROTTLE] {
            assert!(text.contains(&format!("# TYPE {name} counter\n")), "{text}");
        }
    }

    /// Every metric name defined above.
    const ALL_NAMES: &[&str] = &[
        RECORDS_REPLICATED,
        SOURCE_BYTES,
        WIRE_BYTES,
        LAG_RECORDS,
        SOURCE_GAP_RECORDS,
        FOREIGN_RECORDS,
        TARGET_DUPLICATE_RECORDS,
        PARTITION_HALTED,
        CHECKPOINT_ERRORS,
        CHECKPOINT_BYTES,
        SOURCE_GROUP_COMMIT_ERRORS,
        CHECKPOINT_AGE,
        PARTITIONS_HALTED,
        SOURCE_RECORDS,
        COMPRESSION_RATIO,
        LAG_BYTES,
        LAG_SECONDS,
        RETENTION_HEADROOM,
        PARTITIONS_AT_RETENTION_RISK,
        END_TO_END_LATENCY,
        PRODUCE_LATENCY,
        FETCH_LATENCY,
        REQUEST_ERRORS,
        RETRIES,
        BUDGET_TOKENS,
        BUDGET_THROTTLE,
        TARGET_THROTTLE,
        ZSTD_LEVEL,
        CONNECTIONS,
        CONNECTION_ATTEMPTS,
        REAUTHENTICATIONS,
        CLUSTER_REACHABLE,
        READY,
        HTTP_REQUESTS,
        HTTP_CONNECTIONS,
        HTTP_CONNECTIONS_EVICTED,
        BUDGET_BYTES_PER_SEC,
        VERIFY_COMPARED,
        VERIFY_MISMATCHED,
        BUILD_INFO,
        SHARD_INFO,
        ORPHANED_PARTITIONS,
    ];

    /// Checks that `file` names only metrics defined above (histograms by their `_bucket`
    /// series) and names each of `required`.
    fn uses_defined_metrics(file: &str, text: &str, required: &[&str]) {
        let used: std::collections::BTreeSet<&str> = regex::Regex::new(r"strait_[a-z_]+")
            .expect("valid regex")
            .find_iter(text)
            .map(|m| m.as_str())
            .map(|n| n.strip_suffix("_bucket").unwrap_or(n))
            .collect();
        for n in &used {
            assert!(ALL_NAMES.contains(n), "{file} uses undefined metric {n}");
        }
        for n in required {
            assert!(used.contains(n), "{file} lacks {n}");
        }
    }

    #[test]
    fn the_dashboard_uses_only_defined_metrics_and_every_interface_name() {
        uses_defined_metrics(
            "the dashboard",
            include_str!("../deploy/grafana/strait-dashboard.json"),
            &[
                RECORDS_REPLICATED,
                SOURCE_BYTES,
                WIRE_BYTES,
                LAG_RECORDS,
                SOURCE_GAP_RECORDS,
                PARTITION_HALTED,
                RETENTION_HEADROOM,
                PARTITIONS_AT_RETENTION_RISK,
            ],
        );
    }

    #[test]
    fn the_alert_rules_use_only_defined_metrics() {
        uses_defined_metrics(
            "prometheusrule.yaml",
            include_str!("../deploy/openshift/prometheusrule.yaml"),
            &[
                READY,
                PARTITION_HALTED,
                SOURCE_GAP_RECORDS,
                CHECKPOINT_AGE,
                BUDGET_BYTES_PER_SEC,
            ],
        );
    }

    #[test]
    fn metric_names_follow_the_convention() {
        let names = ALL_NAMES;
        let mut seen = std::collections::HashSet::new();
        for n in names {
            assert!(n.starts_with("strait_"), "{n}");
            assert!(n.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{n}");
            assert!(seen.insert(n), "{n} defined twice");
        }
    }
}
