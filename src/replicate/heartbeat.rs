//! Heartbeats: a small record written to a source topic at a fixed interval and replicated like
//! any other record, so the end-to-end latency and the liveness of the whole path (source,
//! strait, WAN, target) are measured even when no spans flow. Failures are logged once per cause
//! and never stop replication.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::CreateTopicsRequest;
use tokio_util::sync::CancellationToken;

use crate::batch::{BatchBuilder, BuildOptions, Compression, Record};
use crate::kafka::{Cluster, TopicPartition, TopicSpec};

/// Writes heartbeats to `topic` on the source until `cancel` fires.
pub(crate) async fn run(
    source: Arc<Cluster>,
    topic: String,
    replication_id: String,
    interval: Duration,
    cancel: CancellationToken,
) {
    let tp = TopicPartition::new(topic.clone(), 0);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ensured = false;
    let mut last_error = String::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let outcome = async {
            if !ensured {
                ensure_topic(&source, &topic).await?;
                ensured = true;
            }
            source
                .produce(&tp, heartbeat(&replication_id)?, 10_000)
                .await
                .map(|_| ())
        }
        .await;
        match outcome {
            Ok(()) if !last_error.is_empty() => {
                tracing::info!(topic = %topic, "heartbeats flowing again");
                last_error.clear();
            }
            Ok(()) => {}
            Err(e) => {
                source.invalidate(&tp);
                let text = crate::error_chain(&e);
                if text != last_error {
                    tracing::warn!(topic = %topic, error = %text, "cannot write a heartbeat to the source");
                    last_error = text;
                }
            }
        }
    }
}

/// Creates the heartbeat topic (one partition, a day of retention) when the source lacks it.
async fn ensure_topic(source: &Cluster, topic: &str) -> crate::kafka::Result<()> {
    let names = [topic.to_owned()];
    let meta = source.metadata(Some(&names)).await?;
    if meta
        .topics
        .get(topic)
        .is_some_and(|t| t.error.is_none() && t.partition_count() > 0)
    {
        return Ok(());
    }
    if !source.supports::<CreateTopicsRequest>().await? {
        // Brokers without CreateTopics usually create topics on first produce.
        return Ok(());
    }
    let spec = TopicSpec {
        name: topic.to_owned(),
        partitions: 1,
        replication_factor: -1,
        configs: [("retention.ms".to_owned(), "86400000".to_owned())]
            .into_iter()
            .collect(),
    };
    for (_, r) in source.create_topics(&[spec], 10_000).await? {
        r?;
    }
    tracing::info!(topic, "heartbeat topic created on the source");
    Ok(())
}

/// One heartbeat batch: key = replication id, value = a small JSON document.
fn heartbeat(replication_id: &str) -> crate::kafka::Result<Bytes> {
    let now = crate::checkpoint::now_ms();
    let value = serde_json::json!({ "replication_id": replication_id, "timestamp_ms": now }).to_string();
    let mut b = BatchBuilder::new(64 * 1024);
    let record = Record {
        offset: 0,
        timestamp: now,
        key: Some(Bytes::from(replication_id.to_owned())),
        value: Some(Bytes::from(value)),
        headers: Bytes::from_static(&[0]),
    };
    // A record of a few hundred bytes always fits an empty 64 KiB batch; finishing one
    // uncompressed record cannot fail.
    let _ = b.try_push(record);
    let opts = BuildOptions {
        compression: Compression::None,
        ..BuildOptions::default()
    };
    Ok(b.finish(&opts).map(|built| built.bytes).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_is_one_record_naming_the_flow() {
        let bytes = heartbeat("cluster-abc").expect("heartbeat");
        let batches: Vec<_> = crate::batch::batches(bytes)
            .collect::<Result<_, _>>()
            .expect("valid batch");
        assert_eq!(batches.len(), 1);
        let records = batches[0].records().expect("records");
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].key.as_deref(), Some(&b"cluster-abc"[..]));
        let doc: serde_json::Value =
            serde_json::from_slice(records[0].value.as_deref().unwrap_or_default()).expect("json");
        assert_eq!(doc["replication_id"], "cluster-abc");
        assert!(doc["timestamp_ms"].as_i64().is_some_and(|t| t > 1_700_000_000_000));
    }
}
