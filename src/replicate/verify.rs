//! `strait verify` over the configured flow: every owned partition of the replicated topics,
//! up to its checkpoint where there is one ([`crate::verify`] compares one partition).

use std::collections::HashMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::plan::{plan, TargetChange};
use super::{replication_id, Error, Result};
use crate::budget::Budget;
use crate::checkpoint::CheckpointStore;
use crate::config::{Config, TopicFilter};
use crate::kafka::{Cluster, TopicPartition};
use crate::pipeline::Position;
use crate::verify::{partition, Report};

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
