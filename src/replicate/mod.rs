//! The replication engine: discovers source topics, keeps the target topics in shape, and runs
//! one task per owned source partition until shutdown.
//!
//! It owns task lifecycles and the topic refresh loop; the data path itself lives in
//! [`partition`], the topic decisions in [`topics`], and ownership in [`assign`].

mod assign;
mod check;
mod checkpointer;
mod claims;
mod drain;
mod error;
mod first_start;
mod groups;
mod health;
mod heartbeat;
mod orphans;
mod plan;
mod source_ends;
mod source_group;
mod startup;
mod topics;
mod verify;

pub use crate::report::{
    PartitionState, PartitionStatus, Progress, Retention, RiskFigures, Totals, KAFKA_DEFAULT_RETENTION_MS,
};
pub use assign::Shard;
pub use check::{check, CheckReport, ClusterCheck, TargetState, TopicCheck};
pub use drain::{drain_eta_secs, total_drain_eta_secs, BatchesSeen, DrainRate, SmallBatch, DRAIN_WINDOW};
pub use error::{Error, Result};
pub use groups::groups;
pub use health::{ClusterHealth, Health, Readiness, Side};
pub use orphans::Orphan;
pub use plan::{plan, Plan, TargetChange, TopicPlan};
pub use verify::verify;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::budget::{Budget, LevelControl};
use crate::checkpoint::{self, CheckpointRecord, CheckpointStore};
use crate::config::{Config, TopicFilter};
use crate::error_chain;
use crate::kafka::{Backoff, Cluster, TopicPartition};
use crate::pipeline::{buffer_units, PartitionTask, TaskSettings};
use crate::report::retention;
use crate::telemetry;
use checkpointer::Checkpointer;

/// How often the progress line is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// How often the zstd level control decides (see [`LevelControl`]).
const LEVEL_EVERY: Duration = Duration::from_secs(2);

/// What a refresh needs to start partition tasks.
struct Spawn<'a> {
    checkpointer: &'a mut Checkpointer,
    claims: &'a Arc<claims::ClaimReader>,
    checkpoints: &'a mut HashMap<TopicPartition, CheckpointRecord>,
    /// Where partitions without a checkpoint start.
    first_start: &'a mut first_start::FirstStart,
    shutdown: &'a CancellationToken,
}

/// The replicator: both clusters, the topic mapping and the running partition tasks.
#[derive(Debug)]
pub struct Replicator {
    config: Config,
    filter: TopicFilter,
    source: Arc<Cluster>,
    target: Arc<Cluster>,
    settings: Arc<TaskSettings>,
    shard: Shard,
    progress: Arc<Progress>,
    health: Arc<Health>,
    /// A TLS file that could not be used; [`Self::run`] reports it before opening any socket.
    setup_error: Option<crate::kafka::Error>,
}

impl Replicator {
    /// Builds the replicator from a validated config. Opens no socket.
    pub fn new(config: Config, filter: TopicFilter) -> Self {
        let mut setup_error = None;
        let mut cluster = |name: &str, c: &crate::config::ClusterConfig| {
            Cluster::from_config(name, c).unwrap_or_else(|e| {
                setup_error.get_or_insert(e);
                Cluster::new(name, c.bootstrap(), &c.client_id, c.request_timeout())
            })
        };
        let source = Arc::new(cluster("source", &config.source));
        // Checkpoints do not queue behind data on a connection.
        let target = cluster("target", &config.target).with_own_lane(&config.checkpoint.topic);
        let (bytes_per_sec, burst_bytes) = config.budget.share(config.shard.count);
        let budget = Arc::new(Budget::new(bytes_per_sec, burst_bytes, config.budget.weights.clone()));
        // Every byte to the target, checkpoints included, leaves at the budget's pace.
        let target = Arc::new(target.with_pace(Arc::clone(&budget) as Arc<dyn crate::kafka::Pace>));
        let (min_level, max_level) = config.compression.bounds();
        let level = Arc::new(LevelControl::new(config.compression.zstd_level, min_level, max_level));
        let settings = Arc::new(TaskSettings {
            linger: Duration::from_millis(config.batch.linger_ms),
            codec: config.compression.codec.into(),
            level,
            budget,
            buffer: Arc::new(tokio::sync::Semaphore::new(
                buffer_units(config.fetch.buffer_max_bytes) as usize
            )),
            buffer_units: buffer_units(config.fetch.buffer_max_bytes),
            batch_memory: Arc::new(tokio::sync::Semaphore::new(
                buffer_units(config.batch.buffer_max_bytes) as usize
            )),
            batch_memory_units: buffer_units(config.batch.buffer_max_bytes),
            fetch_max_bytes: i32::try_from(config.fetch.max_bytes).unwrap_or(i32::MAX),
            fetch_max_wait_ms: i32::try_from(config.fetch.max_wait_ms).unwrap_or(i32::MAX),
            produce_timeout_ms: i32::try_from(config.target.request_timeout_ms).unwrap_or(i32::MAX),
            on_target_reset: config.on_target_reset,
            on_foreign_writer: config.on_foreign_writer,
            fresh_after: (config.catchup.mode == crate::config::CatchUpMode::FreshFirst)
                .then(|| Duration::from_secs(config.catchup.fresh_after_secs)),
            on_missing_checkpoint: config.on_missing_checkpoint,
            on_topic_recreated: config.on_topic_recreated,
        });
        let checkpoint_interval = Duration::from_millis(config.checkpoint.interval_ms);
        let shard = Shard {
            index: config.shard.index,
            count: config.shard.count,
        };
        Self {
            config,
            filter,
            source,
            target,
            settings,
            shard,
            progress: Arc::new(Progress::default()),
            health: Arc::new(Health::new(checkpoint_interval)),
            setup_error,
        }
    }

    /// Whether `topic` is the heartbeat topic this process writes (replicated even when the
    /// include list does not name it).
    fn is_heartbeat_topic(&self, topic: &str) -> bool {
        self.config.heartbeats.enabled && topic == self.config.heartbeats.topic
    }

    /// The WAN budget, to change it at run time.
    pub fn budget(&self) -> Arc<Budget> {
        Arc::clone(&self.settings.budget)
    }

    /// The zstd level control.
    pub fn level(&self) -> Arc<LevelControl> {
        Arc::clone(&self.settings.level)
    }

    /// The live figures of every partition task.
    pub fn progress(&self) -> Arc<Progress> {
        Arc::clone(&self.progress)
    }

    /// Readiness flags, cluster probes and rates; the monitor task updates them while
    /// [`Self::run`] runs.
    pub fn health(&self) -> Arc<Health> {
        Arc::clone(&self.health)
    }

    /// Replicates until `shutdown` fires, then lets every partition write what it has read,
    /// within `shutdown_grace_secs`.
    ///
    /// First both clusters must accept a connection and answer Metadata: a TLS or
    /// authentication refusal returns [`Error::StartupRefused`] at once (see
    /// [`Error::exit_code`]); an unreachable cluster is retried with backoff until it answers or
    /// `shutdown` fires, as a runtime outage is. The health monitor runs from the start, so
    /// meanwhile `/readyz` names the cluster and its error and `strait_cluster_reachable` is 0.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<()> {
        if let Some(e) = self.setup_error.take() {
            return Err(Error::StartupRefused { source: Box::new(e) });
        }
        metrics::gauge!(telemetry::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        metrics::gauge!(telemetry::SHARD_INFO, "index" => self.shard.index.to_string(),
            "count" => self.shard.count.to_string())
        .set(1.0);
        // 0 until the orphan watch (several shards) finds one: one shard owns every partition.
        metrics::gauge!(telemetry::ORPHANED_PARTITIONS).set(0.0);
        let _monitor = health::Monitor::spawn(
            Arc::clone(&self.health),
            Arc::clone(&self.progress),
            Arc::clone(&self.source),
            Arc::clone(&self.target),
            self.config.alerts.retention_headroom_secs,
        );
        // The level control and its calibration are zstd's: another codec has no level.
        let zstd = self.settings.codec == crate::batch::Compression::Zstd;
        let _calibration = zstd.then(|| self.calibrate_level());
        if !startup::reach(&self.source, &shutdown).await? {
            return Ok(());
        }
        // Until the checkpoints are read from the target: the positions' copy on the source.
        let seeding = self.seed_from_source_group(&shutdown).await;
        if !startup::reach(&self.target, &shutdown).await? {
            return Ok(());
        }
        let Some((store, mut checkpoints, stored_runs)) = self.load_checkpoints(&shutdown).await else {
            return Ok(());
        };
        drop(seeding);
        self.health.set_checkpoints_loaded();
        let _source_group = self.config.checkpoint.source_group.then(|| {
            let cancel = shutdown.child_token();
            tokio::spawn(source_group::commit_loop(
                Arc::clone(&self.source),
                source_group::group_id(store.replication_id()),
                Arc::clone(&self.progress),
                cancel.clone(),
            ));
            cancel.drop_guard()
        });
        // Nothing is acknowledged yet: the loaded checkpoints cover it all.
        self.health.checkpoint_current();
        let mut first_start = first_start::FirstStart::new(self.config.start_from, &checkpoints, self.shard);
        let _heartbeats = self.config.heartbeats.enabled.then(|| {
            let cancel = shutdown.child_token();
            tokio::spawn(heartbeat::run(
                Arc::clone(&self.source),
                self.config.heartbeats.topic.clone(),
                store.replication_id().to_owned(),
                Duration::from_millis(self.config.heartbeats.interval_ms),
                cancel.clone(),
            ));
            cancel.drop_guard()
        });
        let _verify = (self.config.verify.interval_secs > 0).then(|| {
            let cancel = shutdown.child_token();
            // Clusters of its own: the pipeline's fetches of a partition share one request slot.
            let own = |name, c| Cluster::from_config(name, c).map(Arc::new);
            let (Ok(source), Ok(target)) = (own("source", &self.config.source), own("target", &self.config.target))
            else {
                tracing::warn!("verify: cannot set up its own clients; the continuous check is off");
                return cancel.drop_guard();
            };
            let continuous = verify::Continuous {
                source,
                target,
                store: Arc::clone(&store),
                budget: Arc::clone(&self.settings.budget),
                filter: self.filter.clone(),
                shard: self.shard,
                verified: HashMap::new(),
            };
            let every = Duration::from_secs(self.config.verify.interval_secs);
            tokio::spawn(continuous.run(every, cancel.clone()));
            cancel.drop_guard()
        });
        let _orphans =
            self.config.orphan_after().map(|after| {
                if after.as_secs() > self.config.shard.orphan_after_secs {
                    tracing::warn!(orphan_after_secs = self.config.shard.orphan_after_secs, used_secs = after.as_secs(),
                    "shard.orphan_after_secs is below 3 checkpoint intervals or 2 topic refreshes: using that instead");
                }
                let cancel = shutdown.child_token();
                let watch = orphans::Watch {
                    source: Arc::clone(&self.source),
                    store: Arc::clone(&store),
                    filter: self.filter.clone(),
                    heartbeat_topic: self
                        .config
                        .heartbeats
                        .enabled
                        .then(|| self.config.heartbeats.topic.clone()),
                    shard: self.shard,
                    after,
                    health: Arc::clone(&self.health),
                    started_ms: checkpoint::now_ms(),
                    checkpoints: store.follower(),
                    unclaimed_since: HashMap::new(),
                    reported: HashMap::new(),
                };
                let every = Duration::from_secs(self.config.topics.refresh_secs);
                tokio::spawn(watch.run(every, cancel.clone()));
                cancel.drop_guard()
            });
        let _source_ends = {
            let cancel = shutdown.child_token();
            tokio::spawn(source_ends::run(
                Arc::clone(&self.source),
                Arc::clone(&self.progress),
                source_ends::SOURCE_ENDS_EVERY,
                cancel.clone(),
            ));
            cancel.drop_guard()
        };
        let mut checkpoint_tick = tokio::time::interval(Duration::from_millis(self.config.checkpoint.interval_ms));
        let mut checkpointer =
            Checkpointer::new(Arc::clone(&store)).with_stored_runs(stored_runs, self.config.groups.offset_map_max_runs);
        let claims = Arc::new(claims::ClaimReader::new(Arc::clone(&store)));
        let checkpoint_wanted = checkpointer.wanted();
        let _group_sync = self.start_group_sync(checkpointer.maps(), &shutdown)?;
        let mut tasks: JoinSet<(TopicPartition, crate::pipeline::Result<()>)> = JoinSet::new();
        let mut running: HashSet<TopicPartition> = HashSet::new();
        let mut topic_errors: BTreeMap<String, String> = BTreeMap::new();
        let refresh = Duration::from_secs(self.config.topics.refresh_secs);
        let mut next_refresh = tokio::time::Instant::now();
        let mut progress_tick = tokio::time::interval(PROGRESS_EVERY);
        progress_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut level_tick = tokio::time::interval(LEVEL_EVERY);
        level_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        checkpoint_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_totals = Totals::default();
        let mut last_tick = tokio::time::Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(200), refresh);
        let mut retention_error: Option<String> = None;

        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(joined) = tasks.join_next() => self.task_ended(joined),
                // Before the checkpoint tick: a checkpoint write retries for up to its budget while
                // the target is down, and the tick is due again by then, so it would starve this one.
                _ = level_tick.tick() => self.adapt_level(),
                _ = progress_tick.tick() => {
                    let t = self.progress.totals();
                    let elapsed = last_tick.elapsed().as_secs_f64().max(0.001);
                    last_tick = tokio::time::Instant::now();
                    let rate = (t.records - last_totals.records) as f64 / elapsed;
                    let snapshot = self.progress.snapshot();
                    let lags = snapshot.iter().map(|(tp, s)| (tp.clone(), s.lag_records())).collect();
                    let eta = total_drain_eta_secs(&lags, &self.health.drain_rates(), self.health.batches_seen());
                    let now_ms = checkpoint::now_ms();
                    let threshold_secs = self.config.alerts.retention_headroom_secs;
                    let risk = retention::Summary::of(
                        snapshot.values().map(|s| s.retention_risk(now_ms, threshold_secs)),
                    );
                    tracing::info!(partitions = t.partitions, halted = t.halted, records = t.records,
                        records_per_sec = rate.round(), lag_records = t.lag_records,
                        drain_eta_secs = eta.map(|s| s.round()), source_bytes = t.source_bytes,
                        wire_bytes = t.wire_bytes, retention_headroom_min_secs = risk.min_headroom_secs.map(f64::round),
                        partitions_at_retention_risk = risk.at_risk, "progress");
                    last_totals = t;
                }
                _ = checkpoint_tick.tick() => tokio::select! {
                    // The final checkpoint after the drain covers a write cut short here.
                    biased;
                    _ = shutdown.cancelled() => break,
                    _ = self.write_checkpoints(&mut checkpointer) => {}
                },
                // A partition waits for a checkpoint naming its new producer identity.
                _ = checkpoint_wanted.notified() => tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break,
                    _ = self.write_checkpoints(&mut checkpointer) => {}
                },
                _ = tokio::time::sleep_until(next_refresh) => {
                    let spawn = Spawn { checkpointer: &mut checkpointer, claims: &claims, checkpoints: &mut checkpoints,
                        first_start: &mut first_start, shutdown: &shutdown };
                    // A refresh waits on the clusters; shutdown must not wait for it. Tasks it
                    // already started are in the JoinSet, so stopping it midway loses nothing.
                    let refreshed = tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => break,
                        r = self.refresh(&mut tasks, &mut running, &mut topic_errors, &mut retention_error, spawn) => r,
                    };
                    self.health.set_topic_errors(&topic_errors);
                    match refreshed {
                        Ok(()) => {
                            backoff.reset();
                            next_refresh = tokio::time::Instant::now() + refresh;
                        }
                        Err(e) => {
                            tracing::warn!(error = %error_chain(&e), "topic refresh failed; retrying");
                            next_refresh = tokio::time::Instant::now() + backoff.next_delay();
                        }
                    }
                }
            }
        }

        tracing::info!(tasks = tasks.len(), "shutting down: writing what was read");
        let grace = Duration::from_secs(self.config.shutdown_grace_secs);
        let drained = tokio::time::timeout(grace, async {
            while let Some(joined) = tasks.join_next().await {
                self.task_ended(joined);
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                tasks = tasks.len(),
                grace_secs = grace.as_secs(),
                "shutdown grace period over: aborting the tasks still writing"
            );
            tasks.abort_all();
        }
        self.write_checkpoints(&mut checkpointer).await;
        let t = self.progress.totals();
        tracing::info!(records = t.records, halted = t.halted, "stopped");
        Ok(())
    }

    /// Starts the consumer group sync when `groups.include` selects any group; it stops with
    /// the returned guard.
    fn start_group_sync(
        &self,
        maps: Arc<crate::groups::Maps>,
        shutdown: &CancellationToken,
    ) -> Result<Option<tokio_util::sync::DropGuard>> {
        let filter = self.config.groups.filter().map_err(|source| Error::Config { source })?;
        if filter.is_empty() {
            return Ok(None);
        }
        let mut syncer = crate::groups::Syncer::new(
            Arc::clone(&self.source),
            Arc::clone(&self.target),
            filter,
            self.config.groups.allow_rewind,
        );
        let every = self.config.groups.interval();
        let cancel = shutdown.child_token();
        let stop = cancel.clone();
        tokio::spawn(async move {
            // The first pass waits for the partitions to resume (or the first interval).
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = maps.settled(every) => {}
            }
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let pass = tokio::select! {
                    _ = stop.cancelled() => return,
                    pass = syncer.pass(maps.as_ref(), true) => pass,
                };
                match pass {
                    Ok(outcomes) => {
                        let committed: usize = outcomes.iter().map(|o| o.committed).sum();
                        tracing::debug!(groups = outcomes.len(), committed, "consumer group sync pass");
                    }
                    Err(e) => {
                        tracing::warn!(error = %error_chain(&e), "consumer group sync pass failed; retrying at the next interval")
                    }
                }
            }
        });
        Ok(Some(cancel.drop_guard()))
    }

    /// Starts reading the source group's copy of the positions into the progress table, until
    /// the returned guard is dropped (the checkpoints are loaded). `None` when it is off or the
    /// replication id cannot be read.
    async fn seed_from_source_group(&self, shutdown: &CancellationToken) -> Option<tokio_util::sync::DropGuard> {
        if !self.config.checkpoint.source_group {
            return None;
        }
        let id = self.replication_id().await.ok()?;
        let cancel = shutdown.child_token();
        tokio::spawn(source_group::seed_loop(
            Arc::clone(&self.source),
            source_group::group_id(&id),
            self.filter.clone(),
            self.shard,
            Arc::clone(&self.progress),
            Arc::clone(&self.health),
            cancel.clone(),
        ));
        Some(cancel.drop_guard())
    }

    /// Names this flow, creates the checkpoint topic if needed and loads every checkpoint (and
    /// the offset map runs), retrying until the clusters answer. `None` when shutdown comes first.
    async fn load_checkpoints(
        &self,
        shutdown: &CancellationToken,
    ) -> Option<(
        Arc<CheckpointStore>,
        HashMap<TopicPartition, CheckpointRecord>,
        HashMap<TopicPartition, Vec<crate::offsets::Run>>,
    )> {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let timeout_ms = i32::try_from(self.config.target.request_timeout_ms).unwrap_or(i32::MAX);
        let mut last_error = String::new();
        loop {
            let attempt = async {
                let id = self.replication_id().await?;
                let store = CheckpointStore::new(Arc::clone(&self.target), &self.config.checkpoint.topic, &id);
                store
                    .ensure_topic(timeout_ms)
                    .await
                    .map_err(|source| Error::CheckpointStore { source })?;
                let loaded = store
                    .load_state()
                    .await
                    .map_err(|source| Error::CheckpointStore { source })?;
                Ok::<_, Error>((store, loaded))
            };
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => return None,
                r = attempt => r,
            };
            match outcome {
                Ok((store, (loaded, runs))) => {
                    tracing::info!(replication_id = store.replication_id(), checkpoints = loaded.len(),
                        topic = %self.config.checkpoint.topic, "checkpoints loaded");
                    return Some((Arc::new(store), loaded, runs));
                }
                Err(e) => {
                    let text = error_chain(&e);
                    if text != last_error {
                        tracing::warn!(error = %text, "cannot load checkpoints yet; retrying");
                        last_error = text;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
    }

    /// `replication.id`, or one derived from the source cluster id.
    async fn replication_id(&self) -> Result<String> {
        replication_id(&self.config, &self.source).await
    }

    /// Measures each zstd level on a sample, on a blocking thread, while the clusters are
    /// reached: the level control goes straight to the fitting level from its first period,
    /// and under a budget the level starts at the one that fits it. Until it is done (or if it
    /// fails) the control steps one level at a time.
    fn calibrate_level(&self) -> tokio::task::JoinHandle<()> {
        let level = Arc::clone(&self.settings.level);
        let budget = Arc::clone(&self.settings.budget);
        let explicit_max = self.config.compression.max_level;
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            if let Err(e) = level.calibrate() {
                let error = error_chain(&e);
                tracing::warn!(error = %error, "zstd level calibration failed; the level moves one step at a time");
                return;
            }
            let cores = cores();
            let rate = budget.bytes_per_sec();
            let sustainable = (rate > 0).then(|| level.sustainable(rate as f64, cores)).flatten();
            // Under a budget, a level that fits it costs at most CPU_SHARE of the cores even
            // with the link full, so start there rather than wait for the first period: the
            // batches built meanwhile queue for the budget for seconds.
            if let Some(sustainable) = sustainable {
                level.raise_to(sustainable);
            }
            tracing::info!(
                budget_bytes_per_sec = rate,
                cores,
                sustainable_level = sustainable,
                max_level = explicit_max,
                took_ms = started.elapsed().as_millis(),
                "zstd levels calibrated"
            );
        })
    }

    /// One step of the zstd level control (with zstd only) over the last [`LEVEL_EVERY`], and
    /// the budget and ratio gauges.
    fn adapt_level(&self) {
        let budget = &self.settings.budget;
        if self.settings.codec == crate::batch::Compression::Zstd {
            let (before, level) = self.settings.level.adapt(budget, cores());
            if level != before {
                let limit = if budget.bytes_per_sec() > 0 { "budget" } else { "target" };
                tracing::info!(from = before, to = level, link = limit, "zstd level adapted");
            }
            metrics::gauge!(telemetry::ZSTD_LEVEL).set(f64::from(self.settings.level.level()));
        }
        // This shard's share, as SIGHUP may have changed it; 0 = unlimited.
        metrics::gauge!(telemetry::BUDGET_BYTES_PER_SEC).set(budget.bytes_per_sec() as f64);
        if budget.bytes_per_sec() > 0 {
            metrics::gauge!(telemetry::BUDGET_TOKENS).set(budget.tokens());
        }
        let t = self.progress.totals();
        if t.wire_bytes > 0 {
            metrics::gauge!(telemetry::COMPRESSION_RATIO).set(t.source_bytes as f64 / t.wire_bytes as f64);
        }
    }

    /// Writes the checkpoints due; a failure is retried at the next interval.
    async fn write_checkpoints(&self, checkpointer: &mut Checkpointer) {
        match checkpointer.write().await {
            Ok(_) => self.health.checkpoint_current(),
            Err(e) => {
                metrics::counter!(telemetry::CHECKPOINT_ERRORS).increment(1);
                let error = error_chain(&e);
                tracing::warn!(error = %error, "checkpoint write failed; retrying at the next interval");
                self.health.checkpoint_failed(error);
            }
        }
    }

    fn task_ended(
        &self,
        joined: std::result::Result<(TopicPartition, crate::pipeline::Result<()>), tokio::task::JoinError>,
    ) {
        match joined {
            Ok((tp, Ok(()))) => tracing::debug!(topic = %tp.topic, partition = tp.partition, "partition task stopped"),
            Ok((tp, Err(e))) => {
                tracing::error!(topic = %tp.topic, partition = tp.partition, error = %error_chain(&e), "partition halted; other partitions go on");
            }
            // A panic in a partition's replication halts it like any error (`Error::Panicked`);
            // what is left is an abort at the end of the shutdown grace, or a panic outside it.
            Err(e) if e.is_panic() => tracing::error!(error = %e, "partition task panicked outside its replication"),
            Err(e) => tracing::debug!(error = %e, "partition task aborted"),
        }
    }

    /// One discovery round: list source topics, fit the target topics, start tasks for owned
    /// partitions that have none. A halted partition keeps its entry, so it is not restarted.
    async fn refresh(
        &self,
        tasks: &mut JoinSet<(TopicPartition, crate::pipeline::Result<()>)>,
        running: &mut HashSet<TopicPartition>,
        topic_errors: &mut BTreeMap<String, String>,
        retention_error: &mut Option<String>,
        spawn: Spawn<'_>,
    ) -> Result<()> {
        let meta = self.source.metadata(None).await.map_err(|source| Error::Cluster {
            cluster: "source",
            action: "list topics".into(),
            source: Box::new(source),
        })?;
        let own = [self.config.checkpoint.topic.as_str()];
        let replicated: Vec<_> = meta
            .topics
            .iter()
            .filter(|(name, topic)| {
                topic.error.is_none()
                    && topics::is_replicable(name, topic.is_internal, &own)
                    && (self.filter.matches(name) || self.is_heartbeat_topic(name))
            })
            .collect();
        spawn.first_start.discovered(
            replicated.iter().flat_map(|(name, topic)| {
                (0..topic.partition_count()).map(|p| TopicPartition::new((*name).clone(), p))
            }),
        );
        let names: Vec<String> = replicated.iter().map(|(name, _)| (*name).clone()).collect();
        let retention = match topics::read_retention(&self.source, &names).await {
            Ok(r) => {
                if retention_error.take().is_some() {
                    tracing::info!("source topic retention read again");
                }
                r
            }
            Err(e) => {
                let text = error_chain(&e);
                if retention_error.as_deref() != Some(text.as_str()) {
                    tracing::warn!(error = %text, "cannot read source topic retention: keeping the last known (new partitions assume 7 days)");
                    *retention_error = Some(text);
                }
                BTreeMap::new()
            }
        };
        for (topic, r) in &retention {
            self.progress.set_retention(topic, *r);
        }
        for (name, topic) in replicated {
            let source_partitions = topic.partition_count();
            let owned: Vec<i32> = (0..source_partitions)
                .filter(|&p| self.shard.owns(name, p) && !running.contains(&TopicPartition::new(name.clone(), p)))
                .collect();
            if owned.is_empty() {
                continue;
            }
            let target_name = self.filter.target_name(name);
            let timeout_ms = i32::try_from(self.config.target.request_timeout_ms).unwrap_or(i32::MAX);
            let target = match topics::ensure_target(
                &self.source,
                &self.target,
                name,
                &target_name,
                source_partitions,
                &self.config.topics,
                timeout_ms,
            )
            .await
            {
                Ok(t) => {
                    topic_errors.remove(name);
                    t
                }
                Err(e) => {
                    let text = error_chain(&e);
                    if topic_errors.get(name) != Some(&text) {
                        tracing::error!(topic = %name, error = %text, "topic not replicated");
                        topic_errors.insert(name.clone(), text);
                    }
                    continue;
                }
            };
            let max_batch_bytes = self.config.batch.max_bytes.min(target.max_message_bytes);
            let batch_ceiling =
                crate::pipeline::batch_ceiling(target.max_message_bytes, self.config.batch.buffer_max_bytes);
            let topic_ids = Some(checkpoint::TopicIds {
                source: topic.id.unwrap_or_default(),
                target: target.id.unwrap_or_default(),
            });
            for partition in owned.into_iter().filter(|&p| p < target.partitions) {
                let source_tp = TopicPartition::new(name.clone(), partition);
                let checkpoint = spawn.checkpoints.remove(&source_tp);
                let feed = spawn
                    .checkpointer
                    .register(&source_tp, &target_name, checkpoint.as_ref(), topic_ids);
                let store = spawn.checkpointer.store();
                let task = PartitionTask {
                    source_tp: source_tp.clone(),
                    target_tp: TopicPartition::new(target_name.clone(), partition),
                    source: Arc::clone(&self.source),
                    target: Arc::clone(&self.target),
                    claims: Arc::clone(spawn.claims),
                    topic_ids,
                    settings: Arc::clone(&self.settings),
                    max_batch_bytes,
                    batch_ceiling,
                    progress: Arc::clone(&self.progress),
                    cancel: spawn.shutdown.child_token(),
                    start_from: spawn.first_start.start_from(&source_tp),
                    checkpoint,
                    feed,
                    retention: retention.get(name).copied().unwrap_or_default(),
                    checkpoint_topic: store.topic().to_owned(),
                    replication_id: store.replication_id().to_owned(),
                };
                running.insert(source_tp.clone());
                tasks.spawn(async move { (source_tp, task.run().await) });
            }
        }
        Ok(())
    }
}

/// `replication.id`, or one derived from the cluster id of `source`.
pub(crate) async fn replication_id(config: &Config, source: &Cluster) -> Result<String> {
    if !config.replication.id.is_empty() {
        return Ok(config.replication.id.clone());
    }
    let meta = source.metadata(Some(&[])).await.map_err(|source| Error::Cluster {
        cluster: "source",
        action: "read the cluster id".into(),
        source: Box::new(source),
    })?;
    Ok(match meta.cluster_id {
        Some(id) if !id.is_empty() => format!("cluster-{id}"),
        _ => format!("bootstrap-{}", config.source.bootstrap_servers),
    })
}

/// Cores this process may use.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
