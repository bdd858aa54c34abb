//! `strait verify` over the configured flow: every owned partition of the replicated topics,
//! up to its checkpoint where there is one ([`crate::verify`] compares one partition); and the
//! same comparison repeated while replicating ([`Continuous`], `verify.interval_secs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::assign::Shard;
use super::plan::{plan, TargetChange};
use super::{replication_id, Error, Result};
use crate::budget::Budget;
use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::config::{Config, TopicFilter};
use crate::kafka::{Cluster, TopicPartition};
use crate::pipeline::Position;
use crate::telemetry;
use crate::verify::{partition, partition_from, PartitionReport, Report};

/// Compares every partition this shard replicates, source against target; reading the target
/// spends the configured WAN budget.
pub async fn verify(config: &Config, filter: &TopicFilter) -> Result<Report> {
    let plan = plan(config, filter).await?;
    let cluster = |name: &'static str, c: &crate::config::ClusterConfig| {
        Cluster::from_config(name, c).map_err(|source| Error::Cluster {
            cluster: name,
            action: "set up TLS and SASL".into(),
            source: Box::new(source),
        })
    };
    let source = cluster("source", &config.source)?;
    let target = Arc::new(cluster("target", &config.target)?);
    let checkpoints = if plan.checkpoint_topic_exists {
        let id = replication_id(config, &source).await?;
        CheckpointStore::new(Arc::clone(&target), &config.checkpoint.topic, &id)
            .load_records()
            .await
            .map_err(|source| Error::CheckpointStore { source })?
    } else {
        HashMap::new()
    };
    let (bytes_per_sec, burst_bytes) = config.budget.share(config.shard.count);
    let budget = Budget::new(bytes_per_sec, burst_bytes, config.budget.weights.clone());
    let cancel = CancellationToken::new();
    let mut report = Report::default();
    for t in &plan.topics {
        for &p in &t.owned_partitions {
            let source_tp = TopicPartition::new(t.source_topic.clone(), p);
            let target_tp = TopicPartition::new(t.target_topic.clone(), p);
            if let TargetChange::Create { .. } | TargetChange::CannotCreate { .. } = t.change {
                report
                    .errors
                    .push((source_tp, format!("target topic {} does not exist", t.target_topic)));
                continue;
            }
            let checkpoint = checkpoints.get(&source_tp).map(|r| Position {
                source: r.checkpoint.next_source_offset,
                target: r.checkpoint.next_target_offset,
            });
            match partition(
                &cancel,
                (&source, &source_tp),
                (&*target, &target_tp),
                checkpoint,
                Some(&budget),
            )
            .await
            {
                Ok(r) => report.partitions.push(r),
                Err(e) => report.errors.push((source_tp, crate::error_chain(&e))),
            }
        }
    }
    Ok(report)
}

/// The comparison of `strait verify`, repeated while replicating: every round, each owned
/// partition from where its last round ended up to its latest checkpoint (read from the
/// checkpoint topic, so what is compared is what strait says it wrote). Each record is read once
/// per side; a partition's first round starts where `strait verify` would. Differences are
/// logged with their offsets and counted; reading the target spends the WAN budget.
pub(super) struct Continuous {
    pub(super) source: Arc<Cluster>,
    pub(super) target: Arc<Cluster>,
    pub(super) store: Arc<CheckpointStore>,
    pub(super) budget: Arc<Budget>,
    pub(super) filter: TopicFilter,
    pub(super) shard: Shard,
    /// Where each partition's last round ended.
    pub(super) verified: HashMap<TopicPartition, Position>,
}

impl Continuous {
    /// Runs a round every `every` until `cancel` fires.
    pub(super) async fn run(mut self, every: Duration, cancel: CancellationToken) {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tick.tick() => self.round(&cancel).await,
            }
        }
    }

    async fn round(&mut self, cancel: &CancellationToken) {
        let records = match self.store.load_records().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %crate::error_chain(&e), "verify: checkpoints unreadable; next round");
                return;
            }
        };
        for (source_tp, record) in records {
            if cancel.is_cancelled() {
                return;
            }
            if !self.shard.owns(&source_tp.topic, source_tp.partition) {
                continue;
            }
            let end = position(&record.checkpoint);
            let from = self.verified.get(&source_tp).copied();
            if from == Some(end) {
                continue;
            }
            let target_tp = TopicPartition::new(self.filter.target_name(&source_tp.topic), source_tp.partition);
            let compared = partition_from(
                cancel,
                (&*self.source, &source_tp),
                (&*self.target, &target_tp),
                from,
                Some(end),
                Some(&self.budget),
            )
            .await;
            match compared {
                Ok(report) => {
                    count(&report);
                    self.verified.insert(source_tp, end);
                }
                Err(e) => {
                    // Retention may have passed the last round's end: start over next round.
                    tracing::warn!(topic = %source_tp.topic, partition = source_tp.partition,
                        error = %crate::error_chain(&e), "verify: partition not compared; next round starts it over");
                    self.verified.remove(&source_tp);
                }
            }
        }
    }
}

fn position(c: &Checkpoint) -> Position {
    Position {
        source: c.next_source_offset,
        target: c.next_target_offset,
    }
}

/// Counts one comparison in the metrics; a difference is logged with where it starts.
fn count(report: &PartitionReport) {
    let topic = report.source.topic.clone();
    metrics::counter!(telemetry::VERIFY_COMPARED, "topic" => topic.clone()).increment(report.compared);
    let missing = if report.checkpointed { report.source_only } else { 0 };
    let differ = report.mismatched + report.target_only + missing;
    if differ > 0 {
        metrics::counter!(telemetry::VERIFY_MISMATCHED, "topic" => topic).increment(differ);
        tracing::warn!(topic = %report.source.topic, partition = report.source.partition,
            source_offsets = ?report.source_range, target_offsets = ?report.target_range,
            first_difference = ?report.first_difference, differ, source_only = report.source_only,
            target_only = report.target_only, "verify: the target differs from the source");
    }
}
