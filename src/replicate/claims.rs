//! The partitions' claims as the checkpoint topic holds them ([`ClaimReader`]), for a partition
//! task that finds another producer's records in its target partition: if a newer strait
//! claimed the partition, this process is fenced.
//!
//! Reading claims means reading the whole checkpoint topic. When a newer process takes over,
//! every partition of the older one finds its records at about the same time, so one read
//! serves every task that asked before it started.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::checkpoint::{self, CheckpointStore};
use crate::kafka::TopicPartition;
use crate::pipeline::wire::{Claim, Claims};

/// One read of the checkpoint topic: when it started, and each partition's newest claim.
type Read = (Instant, Arc<HashMap<TopicPartition, Claim>>);

/// Reads claims from the checkpoint topic, one read at a time.
#[derive(Debug)]
pub(super) struct ClaimReader {
    store: Arc<CheckpointStore>,
    last: Mutex<Option<Read>>,
}

impl ClaimReader {
    pub(super) fn new(store: Arc<CheckpointStore>) -> Self {
        Self {
            store,
            last: Mutex::new(None),
        }
    }
}

impl Claims for ClaimReader {
    async fn newest(&self, tp: &TopicPartition) -> Result<Option<Claim>, checkpoint::Error> {
        let asked = Instant::now();
        let mut last = self.last.lock().await;
        // A read that started after this question holds every claim made before it.
        if let Some((started, epochs)) = last.as_ref() {
            if *started >= asked {
                return Ok(epochs.get(tp).cloned());
            }
        }
        let started = Instant::now();
        let epochs: HashMap<TopicPartition, Claim> = self
            .store
            .load_records()
            .await?
            .into_iter()
            .map(|(tp, r)| {
                let claim = Claim {
                    writer_epoch: r.checkpoint.writer_epoch,
                    writers: r.writers.unwrap_or_default(),
                };
                (tp, claim)
            })
            .collect();
        let epoch = epochs.get(tp).cloned();
        *last = Some((started, Arc::new(epochs)));
        Ok(epoch)
    }
}
