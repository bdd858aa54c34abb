//! `strait groups`: one pass of the consumer group sync from what the checkpoint topic holds,
//! printed; it commits only with `--apply`.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{replication_id, Error, Result};
use crate::checkpoint::CheckpointStore;
use crate::config::Config;
use crate::groups::{Report, Syncer, Translate};
use crate::kafka::TopicPartition;
use crate::offsets::{End, OffsetMap, Translation};

/// The stored offset maps, each with its checkpoint's target topic and position.
#[derive(Debug, Default)]
struct Stored(BTreeMap<TopicPartition, (String, OffsetMap, End)>);

impl Translate for Stored {
    fn translate(&self, tp: &TopicPartition, offset: i64) -> Option<(String, Translation, i64)> {
        let (topic, map, end) = self.0.get(tp)?;
        Some((topic.clone(), map.translate(offset, *end), end.source))
    }

    fn prune_below(&self, _: &TopicPartition, _: i64) {}
}

/// Lists the groups `groups.include` selects with their committed offsets translated through
/// the offset maps in the checkpoint topic; commits them on the target when `apply`.
pub async fn groups(config: &Config, apply: bool) -> Result<Report> {
    let filter = config.groups.filter().map_err(|source| Error::Config { source })?;
    let (source, target) = super::plan::clusters(config)?;
    let id = replication_id(config, &source).await?;
    // Without a checkpoint topic nothing is replicated yet: every partition shows as such.
    let (checkpoints, mut runs) = match CheckpointStore::new(Arc::clone(&target), &config.checkpoint.topic, &id)
        .load_state()
        .await
    {
        Err(crate::checkpoint::Error::MissingTopic { .. }) => Default::default(),
        loaded => loaded.map_err(|source| Error::CheckpointStore { source })?,
    };
    let mut stored = Stored::default();
    for (tp, record) in checkpoints {
        let c = &record.checkpoint;
        let end = End {
            source: c.next_source_offset,
            target: c.next_target_offset,
        };
        let map = OffsetMap::from_stored(
            config.groups.offset_map_max_runs,
            runs.remove(&tp).unwrap_or_default(),
            end,
        );
        stored.0.insert(tp, (c.target_topic.clone(), map, end));
    }
    let mut syncer = Syncer::new(source, target, filter, config.groups.allow_rewind);
    let outcomes = syncer.pass(&stored, apply).await.map_err(|source| Error::Cluster {
        cluster: "source or target",
        action: "consumer group sync".into(),
        source: Box::new(source),
    })?;
    Ok(Report {
        outcomes,
        applied: apply,
    })
}
