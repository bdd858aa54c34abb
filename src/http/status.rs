//! The `/status` JSON document: its report types (field names are an interface for scripts)
//! and how [`Endpoints`] builds it from the shared state.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::Response;
use serde::Serialize;

use super::{Body, Endpoints};
use crate::replicate::{drain_eta_secs, total_drain_eta_secs, ClusterHealth, PartitionState, Side};

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
    /// `compression.codec`.
    pub codec: crate::config::Codec,
}

impl Endpoints {
    pub(super) fn status(&self) -> Response<Body> {
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
        let drain = self.health.drain_rates();
        let snapshot = self.progress.snapshot();
        let lags = snapshot.iter().map(|(tp, s)| (tp.clone(), s.lag_records())).collect();
        let partitions: Vec<PartitionReport> = snapshot
            .into_iter()
            .map(|(tp, s)| {
                let records_per_sec = rates.get(&tp).copied().unwrap_or(0.0);
                let net_drain_per_sec = drain.get(&tp).map(|d| d.net_per_sec());
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
                    net_drain_records_per_sec: net_drain_per_sec,
                    drain_eta_secs: net_drain_per_sec.and_then(|r| drain_eta_secs(lag_records, r)),
                    records: s.records,
                    source_bytes: s.source_bytes,
                    wire_bytes: s.wire_bytes,
                    gap_records: s.gap_records,
                    writer_epoch: s.writer_epoch,
                    retention_ms: s.retention.ms(),
                    oldest_unacked_age_secs: risk.oldest_unacked_age_ms.map(|ms| ms as f64 / 1000.0),
                    retention_headroom_secs: risk.headroom_secs,
                    at_risk: risk.at_risk,
                    catchup_split: s.catchup_split,
                    fresh_next_offset: s.fresh_next_offset,
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
                codec: self.info.codec.name(),
                zstd_level: (self.info.codec == crate::config::Codec::Zstd).then(|| self.level.level()),
                ratio: (t.wire_bytes > 0).then(|| t.source_bytes as f64 / t.wire_bytes as f64),
            },
            budget: BudgetReport {
                bytes_per_sec: Some(self.budget.bytes_per_sec()).filter(|&b| b > 0),
                tokens_bytes: (self.budget.bytes_per_sec() > 0).then(|| self.budget.tokens().round() as i64),
                throttle_secs_total: Some(self.budget.waited().as_secs_f64()),
                weights: self.budget.weights(),
            },
            totals: TotalsReport {
                partitions: t.partitions,
                halted: t.halted,
                records: t.records,
                source_bytes: t.source_bytes,
                wire_bytes: t.wire_bytes,
                lag_records: t.lag_records,
                records_per_sec: rates.values().sum(),
                net_drain_records_per_sec: (!drain.is_empty()).then(|| drain.values().map(|d| d.net_per_sec()).sum()),
                drain_eta_secs: total_drain_eta_secs(&lags, &drain, self.health.batches_seen()),
                partitions_at_retention_risk,
            },
            retention_headroom_alert_secs: Some(threshold_secs).filter(|&s| s > 0),
            topic_errors: self.health.topic_errors(),
            orphaned_partitions: self.health.orphans(),
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
    /// Partitions of this replication that no running shard replicates (`shard.orphan_after_secs`);
    /// null before the first check, or with one shard.
    pub orphaned_partitions: Option<Vec<crate::replicate::Orphan>>,
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
    /// Codec of target data batches (`compression.codec`).
    pub codec: &'static str,
    /// zstd level in use; null with another codec.
    pub zstd_level: Option<i32>,
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
    /// The `budget.weights` rules in force (`REGEX=WEIGHT`).
    pub weights: Vec<String>,
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
    /// Records per second the lag shrinks by over the last 30 s: replication minus the
    /// source's growth, summed over the partitions; null before the first 30 s.
    pub net_drain_records_per_sec: Option<f64>,
    /// Seconds until the whole lag is replicated at that net rate; null when the lag does
    /// not shrink.
    pub drain_eta_secs: Option<f64>,
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
    /// Records per second the lag shrinks by over the last 30 s: the next source offset's
    /// advance minus the source high watermark's; null before the first 30 s.
    pub net_drain_records_per_sec: Option<f64>,
    /// Seconds until the lag is replicated at that net rate; null when the lag does not shrink.
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
    /// In a fresh-first catch-up: the first source offset of the fresh range. The backlog is
    /// `next_source_offset` up to it; null outside a catch-up.
    pub catchup_split: Option<i64>,
    /// In a fresh-first catch-up: the fresh range's next source offset; null outside one.
    pub fresh_next_offset: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::super::tests::{body, endpoints};
    use super::*;
    use crate::budget::Budget;
    use crate::kafka::TopicPartition;
    use hyper::{Method, StatusCode};
    use std::sync::Arc;
    use std::time::Duration;

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
        assert_eq!(v["compression"]["codec"], "zstd");
        assert_eq!(v["compression"]["zstd_level"], 7);
        assert_eq!(v["compression"]["ratio"], 4.0);
        assert_eq!(v["target"]["bootstrap_servers"], "aws:9092");
        assert_eq!(v["budget"]["bytes_per_sec"], 1_000_000);
        assert_eq!(v["budget"]["throttle_secs_total"], 0.0);
        assert_eq!(v["ready"], false);
    }

    #[test]
    fn status_shows_the_codec_and_no_zstd_level_with_another_codec() {
        let mut e = endpoints();
        e.info.codec = crate::config::Codec::Lz4;
        let v = serde_json::to_value(e.status_report()).expect("json");
        assert_eq!(v["compression"]["codec"], "lz4");
        assert!(v["compression"]["zstd_level"].is_null(), "{v}");
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
}
