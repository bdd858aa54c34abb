//! Whether this process is fit to serve: the readiness conditions (source and target reachable,
//! checkpoints loaded and written lately, no partition halted), the per-partition replication
//! rate, and the monitor
//! task that probes both clusters and keeps the process-wide gauges current, including the
//! per-partition lag age and retention headroom (and the warning when a partition enters the
//! retention risk). It runs on its own task, so nothing the replicator waits on (a checkpoint
//! write retrying while the target is down) holds these figures still.
//!
//! The replicator sets the flags; `crate::http` only reads them. Nothing here writes to a
//! cluster: the probe is a metadata request for no topics, the cheapest request a broker answers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use crate::kafka::{Cluster, TopicPartition};
use crate::telemetry;

use crate::report::progress::{PartitionState, PartitionStatus, Progress};
use crate::report::retention::{Crossing, RiskWatch};

use super::drain::{BatchesSeen, DrainMeter, DrainRate, Mark, Window, DRAIN_WINDOW};

/// How often the monitor refreshes the gauges and the rates.
const TICK: Duration = Duration::from_secs(1);
/// How often each cluster is probed.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// A probe that takes longer than this counts as a failure.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Rates are averaged over this window.
const RATE_WINDOW: Duration = Duration::from_secs(10);
/// The least time without a checkpoint write that turns readiness red (see [`stale_after`]).
const CHECKPOINT_STALE_MIN: Duration = Duration::from_secs(30);

/// How long the checkpoints may go unwritten before the process is not ready: three checkpoint
/// intervals, and at least [`CHECKPOINT_STALE_MIN`]. A write that fails is retried at the next
/// interval, so this is about three failed writes in a row; the floor keeps a short interval
/// from turning readiness red on one slow write (a write retries for up to the target's
/// request timeout), or on a topic refresh that holds the write back for a few seconds.
pub(crate) fn stale_after(checkpoint_interval: Duration) -> Duration {
    (checkpoint_interval * 3).max(CHECKPOINT_STALE_MIN)
}

/// What the last probe of one cluster found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterHealth {
    /// The last probe succeeded.
    pub reachable: bool,
    /// Whether a probe has finished at all.
    pub probed: bool,
    /// The error of the last failed probe, cleared by a success.
    pub last_error: Option<String>,
}

/// The answer to "ready?", with every reason it is not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// Every condition holds.
    pub ready: bool,
    /// One line per failed condition, for `/readyz` and the logs.
    pub reasons: Vec<String>,
}

/// Shared health flags of one replicator; see the module docs.
#[derive(Debug)]
pub struct Health {
    source: Mutex<ClusterHealth>,
    target: Mutex<ClusterHealth>,
    checkpoints_loaded: AtomicBool,
    /// While the checkpoints are not loaded: the source group whose copy of the positions gives
    /// the lag and retention figures, once it gave some.
    positions_from: Mutex<Option<String>>,
    started: Instant,
    last_checkpoint: Mutex<Option<Instant>>,
    /// The error of the last checkpoint write, cleared by a write that succeeds.
    checkpoint_error: Mutex<Option<String>>,
    /// How old the last checkpoint write may be while ready ([`stale_after`]).
    checkpoint_stale_after: Duration,
    topic_errors: Mutex<BTreeMap<String, String>>,
    /// Partitions no running shard replicates, from the last pass of the orphan watch; `None`
    /// before its first pass or when it does not run.
    orphans: Mutex<Option<Vec<super::orphans::Orphan>>>,
    rates: Mutex<RateMeter>,
    drain: Mutex<DrainMeter>,
}

impl Default for Health {
    /// With the floor of [`stale_after`] for the checkpoints.
    fn default() -> Self {
        Self::new(Duration::ZERO)
    }
}

/// Which cluster a probe result is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The cluster strait reads from.
    Source,
    /// The cluster strait writes to.
    Target,
}

impl Side {
    /// `source` or `target`, as in logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Target => "target",
        }
    }
}

impl Health {
    /// Flags for a process that writes checkpoints every `checkpoint_interval`.
    pub fn new(checkpoint_interval: Duration) -> Self {
        Self {
            source: Mutex::default(),
            target: Mutex::default(),
            checkpoints_loaded: AtomicBool::new(false),
            positions_from: Mutex::new(None),
            started: Instant::now(),
            last_checkpoint: Mutex::new(None),
            checkpoint_error: Mutex::new(None),
            checkpoint_stale_after: stale_after(checkpoint_interval),
            topic_errors: Mutex::default(),
            orphans: Mutex::default(),
            rates: Mutex::new(RateMeter::new(RATE_WINDOW)),
            drain: Mutex::new(DrainMeter::new(DRAIN_WINDOW)),
        }
    }

    fn side(&self, side: Side) -> &Mutex<ClusterHealth> {
        match side {
            Side::Source => &self.source,
            Side::Target => &self.target,
        }
    }

    /// What the last probe of `side` found.
    pub fn cluster(&self, side: Side) -> ClusterHealth {
        self.side(side).lock().clone()
    }

    /// Records a probe outcome (`Err` carries the error chain).
    pub fn record_probe(&self, side: Side, outcome: Result<(), String>) {
        let mut h = self.side(side).lock();
        let was = h.reachable;
        h.probed = true;
        h.reachable = outcome.is_ok();
        h.last_error = outcome.err();
        match (&h.last_error, was) {
            (Some(e), true) => tracing::warn!(cluster = side.name(), error = %e, "cluster unreachable"),
            (None, false) => tracing::info!(cluster = side.name(), "cluster reachable"),
            _ => {}
        }
    }

    /// Marks the checkpoints loaded (and so partition tasks free to start).
    pub fn set_checkpoints_loaded(&self) {
        self.checkpoints_loaded.store(true, Ordering::Release);
    }

    /// Notes that, until the checkpoints are loaded, the positions come from source group `group`.
    pub fn set_positions_from(&self, group: &str) {
        *self.positions_from.lock() = Some(group.to_owned());
    }

    /// Whether the checkpoints are loaded.
    pub fn checkpoints_loaded(&self) -> bool {
        self.checkpoints_loaded.load(Ordering::Acquire)
    }

    /// Notes that the checkpoints now cover everything the target acknowledged (a write
    /// succeeded, or nothing moved since the last one).
    pub fn checkpoint_current(&self) {
        *self.last_checkpoint.lock() = Some(Instant::now());
        self.checkpoint_error.lock().take();
    }

    /// Notes that a checkpoint write failed with `error` (its error chain).
    pub fn checkpoint_failed(&self, error: String) {
        *self.checkpoint_error.lock() = Some(error);
    }

    /// Time since the checkpoints last covered everything acknowledged; since start until then.
    pub fn checkpoint_age(&self) -> Duration {
        self.checkpoint_age_at(Instant::now())
    }

    fn checkpoint_age_at(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_checkpoint.lock().unwrap_or(self.started))
    }

    /// Whether a checkpoint has been current at least once.
    pub fn checkpointed(&self) -> bool {
        self.last_checkpoint.lock().is_some()
    }

    /// Replaces the topics that cannot be replicated, with their errors.
    pub fn set_topic_errors(&self, errors: &BTreeMap<String, String>) {
        let mut cur = self.topic_errors.lock();
        if *cur != *errors {
            cur.clone_from(errors);
        }
    }

    /// Topics that cannot be replicated, with their errors.
    pub fn topic_errors(&self) -> BTreeMap<String, String> {
        self.topic_errors.lock().clone()
    }

    /// Replaces the orphaned partitions with what the orphan watch's last pass found.
    pub fn set_orphans(&self, orphans: Vec<super::orphans::Orphan>) {
        *self.orphans.lock() = Some(orphans);
    }

    /// The orphaned partitions the last pass of the orphan watch found; `None` before its
    /// first pass, or when it does not run (one shard, or `shard.orphan_after_secs = 0`).
    pub fn orphans(&self) -> Option<Vec<super::orphans::Orphan>> {
        self.orphans.lock().clone()
    }

    /// Records per second acknowledged per partition, over the last ten seconds.
    pub fn rates(&self) -> BTreeMap<TopicPartition, f64> {
        self.rates.lock().rates()
    }

    /// Per partition, the replication and source growth rates over [`DRAIN_WINDOW`]: what
    /// the drain ETA divides the lag by.
    pub fn drain_rates(&self) -> BTreeMap<TopicPartition, DrainRate> {
        self.drain.lock().rates()
    }

    /// What the small and the full batches were, as last measured (the drain ETA's anchors).
    pub fn batches_seen(&self) -> BatchesSeen {
        self.drain.lock().batches_seen()
    }

    /// Whether the process is ready, and why not.
    pub fn readiness(&self, progress: &Progress) -> Readiness {
        let mut reasons = Vec::new();
        for side in [Side::Source, Side::Target] {
            let h = self.cluster(side);
            if !h.probed {
                reasons.push(format!("{} cluster not reached yet", side.name()));
            } else if !h.reachable {
                let why = h.last_error.unwrap_or_default();
                reasons.push(format!("{} cluster unreachable: {why}", side.name()));
            }
        }
        if !self.checkpoints_loaded() {
            // The checkpoints live on the target: until they are read, the position is known only
            // from the source group's copy, when there is one.
            reasons.push(match self.positions_from.lock().as_deref() {
                Some(group) => format!(
                    "checkpoints not loaded yet (they are read from the target): lag and retention headroom \
                     from source group {group}, as of its last commit"
                ),
                None => "checkpoints not loaded yet (they are read from the target): replicated position, lag and \
                         retention headroom unknown"
                    .to_owned(),
            });
        } else if let Some(why) = self.checkpoints_stale() {
            reasons.push(why);
        }
        for (tp, s) in progress.snapshot() {
            if let PartitionState::Halted(why) = s.state {
                reasons.push(format!("partition {tp} halted: {why}"));
            }
        }
        Readiness {
            ready: reasons.is_empty(),
            reasons,
        }
    }

    /// Why the checkpoints count as stale: no write succeeded for longer than [`stale_after`].
    fn checkpoints_stale(&self) -> Option<String> {
        let age = self.checkpoint_age();
        if age <= self.checkpoint_stale_after {
            return None;
        }
        let why = self
            .checkpoint_error
            .lock()
            .clone()
            .unwrap_or_else(|| "the last write has not finished".to_owned());
        Some(format!(
            "no checkpoint written for {} s (limit {} s: 3 x checkpoint.interval_ms, at least {} s): {why}",
            age.as_secs(),
            self.checkpoint_stale_after.as_secs(),
            CHECKPOINT_STALE_MIN.as_secs()
        ))
    }

    /// Samples the progress table for the rates, and sets the process-wide gauges.
    fn tick(&self, progress: &Progress, watch: &mut RiskWatch) {
        let snapshot = progress.snapshot();
        retention_gauges(&snapshot, watch, crate::checkpoint::now_ms());
        let counts = snapshot.iter().map(|(tp, s)| (tp.clone(), s.records)).collect();
        self.rates.lock().sample(Instant::now(), counts);
        let positions = snapshot
            .iter()
            .map(|(tp, s)| {
                let mark = Mark {
                    next: s.next_source_offset,
                    high_watermark: s.source_high_watermark,
                    records: s.records,
                    wire_bytes: s.wire_bytes,
                    batches: s.batches,
                };
                (tp.clone(), mark)
            })
            .collect();
        self.drain.lock().sample(Instant::now(), positions);
        let halted = snapshot
            .values()
            .filter(|s| matches!(s.state, PartitionState::Halted(_)))
            .count();
        metrics::gauge!(telemetry::PARTITIONS_HALTED).set(halted as f64);
        metrics::gauge!(telemetry::CHECKPOINT_AGE).set(self.checkpoint_age().as_secs_f64());
        let ready = self.readiness(progress).ready;
        metrics::gauge!(telemetry::READY).set(f64::from(u8::from(ready)));
    }
}

/// Sets each partition's lag age and retention headroom gauges and the at-risk count, and logs
/// each partition entering or leaving the retention risk once. A topic with infinite retention
/// has no headroom series: the exporter writes infinity as `inf`, not the `+Inf` the exposition
/// format documents.
fn retention_gauges(snapshot: &BTreeMap<TopicPartition, PartitionStatus>, watch: &mut RiskWatch, now_ms: i64) {
    let threshold_secs = watch.threshold_secs();
    let mut at_risk = 0usize;
    for (tp, s) in snapshot {
        let f = s.retention_risk(now_ms, threshold_secs);
        let labels = telemetry::labels(&tp.topic, tp.partition);
        if let Some(age_ms) = f.oldest_unacked_age_ms {
            metrics::gauge!(telemetry::LAG_SECONDS, &labels).set(age_ms as f64 / 1000.0);
        }
        // None: infinite retention, or lagging with no timestamp known yet (the last value stands).
        if let Some(h) = f.headroom_secs {
            metrics::gauge!(telemetry::RETENTION_HEADROOM, &labels).set(h);
        }
        at_risk += usize::from(f.at_risk);
        let headroom_secs = f.headroom_secs.map(f64::round);
        match watch.observe(tp, &f) {
            Some(Crossing::Entered) => tracing::warn!(topic = %tp.topic, partition = tp.partition, headroom_secs,
                threshold_secs, lag_records = f.lag_records,
                oldest_unacked_age_secs = f.oldest_unacked_age_ms.map(|ms| ms / 1000),
                retention_ms = s.retention.ms(),
                "source retention may delete records not yet replicated: raise budget.bytes_per_sec or restore \
                 the link to the target, or extend the source topic's retention.ms"),
            Some(Crossing::Cleared) => tracing::info!(topic = %tp.topic, partition = tp.partition, headroom_secs,
                lag_records = f.lag_records, "retention risk cleared"),
            None => {}
        }
    }
    metrics::gauge!(telemetry::PARTITIONS_AT_RETENTION_RISK).set(at_risk as f64);
}

/// The monitor task: probes both clusters and refreshes gauges and rates until dropped.
#[derive(Debug)]
pub(crate) struct Monitor(tokio::task::JoinHandle<()>);

impl Monitor {
    /// Starts the monitor on the current runtime.
    pub(crate) fn spawn(
        health: Arc<Health>,
        progress: Arc<Progress>,
        source: Arc<Cluster>,
        target: Arc<Cluster>,
        retention_headroom_alert_secs: u64,
    ) -> Self {
        Monitor(tokio::spawn(async move {
            let mut watch = RiskWatch::new(retention_headroom_alert_secs);
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut next_probe = tokio::time::Instant::now();
            loop {
                tick.tick().await;
                if tokio::time::Instant::now() >= next_probe {
                    next_probe = tokio::time::Instant::now() + PROBE_EVERY;
                    let (s, t) = tokio::join!(probe(&source), probe(&target));
                    health.record_probe(Side::Source, s);
                    health.record_probe(Side::Target, t);
                    for (side, h) in [(Side::Source, &health.source), (Side::Target, &health.target)] {
                        let up = h.lock().reachable;
                        metrics::gauge!(telemetry::CLUSTER_REACHABLE, "cluster" => side.name())
                            .set(f64::from(u8::from(up)));
                    }
                }
                health.tick(&progress, &mut watch);
            }
        }))
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One metadata request for no topics, bounded by [`PROBE_TIMEOUT`].
async fn probe(cluster: &Cluster) -> Result<(), String> {
    match tokio::time::timeout(PROBE_TIMEOUT, cluster.metadata(Some(&[]))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(crate::error_chain(&e)),
        Err(_) => Err(format!("no metadata answer within {} s", PROBE_TIMEOUT.as_secs())),
    }
}

/// Per-partition rates from samples of monotonically growing counters over a sliding window.
#[derive(Debug)]
pub(crate) struct RateMeter(Window<BTreeMap<TopicPartition, u64>>);

impl RateMeter {
    pub(crate) fn new(window: Duration) -> Self {
        Self(Window::new(window))
    }

    /// Adds a sample of every partition's counter.
    pub(crate) fn sample(&mut self, now: Instant, counts: BTreeMap<TopicPartition, u64>) {
        self.0.sample(now, counts);
    }

    /// Counter increase per second between the oldest and the newest sample; a partition
    /// missing from the oldest sample started from zero.
    pub(crate) fn rates(&self) -> BTreeMap<TopicPartition, f64> {
        match self.0.ends() {
            Some((secs, old, new)) => new
                .iter()
                .map(|(tp, n)| {
                    let rate = n.saturating_sub(old.get(tp).copied().unwrap_or(0)) as f64 / secs;
                    (tp.clone(), rate)
                })
                .collect(),
            // One sample (or none): nothing measured yet.
            None => self
                .0
                .latest()
                .map(|new| new.keys().map(|tp| (tp.clone(), 0.0)).collect())
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Retention;

    fn counts(pairs: &[(i32, u64)]) -> BTreeMap<TopicPartition, u64> {
        pairs
            .iter()
            .map(|(p, n)| (TopicPartition::new("spans", *p), *n))
            .collect()
    }

    #[test]
    fn rates_span_the_window_and_count_new_partitions_from_zero() {
        let t0 = Instant::now();
        let mut m = RateMeter::new(Duration::from_secs(10));
        assert!(m.rates().is_empty());
        m.sample(t0, counts(&[(0, 100)]));
        m.sample(t0 + Duration::from_secs(5), counts(&[(0, 600), (1, 50)]));
        let r = m.rates();
        assert_eq!(r[&TopicPartition::new("spans", 0)], 100.0);
        assert_eq!(r[&TopicPartition::new("spans", 1)], 10.0);
        // After the window passes, the oldest sample is dropped and the base moves forward.
        m.sample(t0 + Duration::from_secs(15), counts(&[(0, 600), (1, 50)]));
        m.sample(t0 + Duration::from_secs(20), counts(&[(0, 600), (1, 50)]));
        let r = m.rates();
        assert_eq!(r[&TopicPartition::new("spans", 0)], 0.0);
    }

    #[test]
    fn readiness_needs_both_clusters_checkpoints_and_no_halt() {
        let h = Health::default();
        let p = Progress::default();
        let r = h.readiness(&p);
        assert!(!r.ready);
        assert_eq!(r.reasons.len(), 3, "{:?}", r.reasons);

        h.record_probe(Side::Source, Ok(()));
        h.record_probe(Side::Target, Ok(()));
        h.set_checkpoints_loaded();
        assert!(h.readiness(&p).ready);

        h.record_probe(Side::Target, Err("connection refused".into()));
        let r = h.readiness(&p);
        assert!(!r.ready);
        assert!(
            r.reasons[0].contains("target cluster unreachable: connection refused"),
            "{r:?}"
        );
        h.record_probe(Side::Target, Ok(()));
        assert!(h.readiness(&p).ready);

        p.update(&TopicPartition::new("spans", 3), |s| {
            s.state = PartitionState::Halted("corrupt batch".into())
        });
        let r = h.readiness(&p);
        assert!(!r.ready);
        assert!(
            r.reasons[0].contains("spans") && r.reasons[0].contains("corrupt batch"),
            "{r:?}"
        );
    }

    #[test]
    fn retention_gauges_follow_the_clock_with_nothing_acknowledged() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let now = 1_800_000_000_000;
        let mut table = BTreeMap::new();
        table.insert(
            TopicPartition::new("spans", 0),
            PartitionStatus {
                next_source_offset: 10,
                source_high_watermark: 50,
                oldest_unacked_timestamp_ms: Some(now - 6_600_000),
                retention: Retention::Ms(7_200_000),
                ..PartitionStatus::default()
            },
        );
        table.insert(
            TopicPartition::new("audit", 0),
            PartitionStatus {
                next_source_offset: 10,
                source_high_watermark: 10,
                oldest_unacked_timestamp_ms: Some(0),
                retention: Retention::Infinite,
                ..PartitionStatus::default()
            },
        );
        let mut watch = RiskWatch::new(3600);
        metrics::with_local_recorder(&recorder, || retention_gauges(&table, &mut watch, now));
        let text = handle.render();
        for line in [
            r#"strait_lag_seconds{topic="spans",partition="0"} 6600"#,
            r#"strait_lag_seconds{topic="audit",partition="0"} 0"#,
            r#"strait_retention_headroom_seconds{topic="spans",partition="0"} 600"#,
            "strait_partitions_at_retention_risk 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing from\n{text}");
        }
        assert!(
            !text.contains(r#"strait_retention_headroom_seconds{topic="audit""#),
            "no headroom under infinite retention:\n{text}"
        );
        // Ten minutes on, nothing acknowledged: the age grew and the headroom is gone.
        metrics::with_local_recorder(&recorder, || retention_gauges(&table, &mut watch, now + 600_000));
        let text = handle.render();
        for line in [
            r#"strait_lag_seconds{topic="spans",partition="0"} 7200"#,
            r#"strait_retention_headroom_seconds{topic="spans",partition="0"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing from\n{text}");
        }
    }

    #[test]
    fn checkpoint_writes_failing_for_long_turn_readiness_red() {
        let h = Health::default();
        let p = Progress::default();
        h.record_probe(Side::Source, Ok(()));
        h.record_probe(Side::Target, Ok(()));
        h.set_checkpoints_loaded();
        h.checkpoint_current();
        assert!(h.readiness(&p).ready, "premise: ready with current checkpoints");
        // The last write that succeeded was two minutes ago: every one since failed.
        let two_minutes_ago = Instant::now().checked_sub(Duration::from_secs(120)).expect("uptime");
        *h.last_checkpoint.lock() = Some(two_minutes_ago);
        let r = h.readiness(&p);
        assert!(!r.ready, "{r:?}");
        assert!(r.reasons.iter().any(|r| r.contains("checkpoint")), "{r:?}");
        // The reason names the age, the limit and the last write's error.
        h.checkpoint_failed("checkpoint topic strait-checkpoints: TOPIC_AUTHORIZATION_FAILED".into());
        let r = h.readiness(&p);
        assert_eq!(r.reasons.len(), 1, "{r:?}");
        let why = &r.reasons[0];
        assert!(
            why.contains("for 120 s") && why.contains("limit 30 s") && why.contains("TOPIC_AUTHORIZATION_FAILED"),
            "{why}"
        );
        // The gauge shows the same age.
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        metrics::with_local_recorder(&recorder, || h.tick(&p, &mut RiskWatch::new(0)));
        let text = recorder.handle().render();
        let age = text
            .lines()
            .find_map(|l| l.strip_prefix("strait_checkpoint_age_seconds "))
            .and_then(|v| v.parse::<f64>().ok());
        assert!(age.is_some_and(|a| (120.0..130.0).contains(&a)), "{age:?} in\n{text}");
        h.checkpoint_current();
        assert!(h.readiness(&p).ready, "a write that succeeds makes it ready again");
        assert!(h.checkpoint_error.lock().is_none(), "and clears the error");
    }

    #[test]
    fn the_checkpoint_limit_is_three_intervals_and_at_least_thirty_seconds() {
        assert_eq!(stale_after(Duration::from_secs(1)), Duration::from_secs(30));
        assert_eq!(stale_after(Duration::from_secs(60)), Duration::from_secs(180));
        assert_eq!(
            Health::new(Duration::from_secs(60)).checkpoint_stale_after,
            Duration::from_secs(180)
        );
    }

    #[test]
    fn checkpoint_age_restarts_when_current() {
        let h = Health::default();
        let later = h.started + Duration::from_secs(60);
        assert!(!h.checkpointed());
        assert_eq!(h.checkpoint_age_at(later), Duration::from_secs(60));
        h.checkpoint_current();
        assert!(h.checkpointed());
        assert!(h.checkpoint_age_at(later) < Duration::from_secs(60));
    }
}
