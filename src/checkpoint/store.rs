//! The checkpoint store: one compacted topic on the target cluster, one record per
//! (replication id, source topic, source partition), last value wins.
//!
//! This file is the IO half: each request is one [`Cluster`] call, retried with [`Backoff`]
//! while the error is retriable and the retry budget lasts. Encoding a write and interpreting
//! fetched batches are pure and live in `log`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka_protocol::messages::{CreateTopicsRequest, DescribeConfigsRequest};
use tokio::time::Instant;

use super::log::{apply_fetch, encode_checkpoints, Latest};
use super::{Checkpoint, CheckpointRecord, Error, Result};
use crate::kafka::retry::{retry, Retried, Until};
use crate::kafka::{self, ApiKey, Backoff, Cluster, OffsetSpec, ResponseError, TopicPartition, TopicSpec};
use crate::offsets::{Pending, Run};

/// The partition strait writes checkpoints to; the topic is created with just this one.
const WRITE_PARTITION: i32 = 0;
/// How long a fetch may wait for data; the broker may answer empty, so keep it short.
const FETCH_MAX_WAIT_MS: i32 = 100;
/// First fetch size; doubled while a single batch does not fit.
const INITIAL_FETCH_BYTES: i32 = 1 << 20;
/// Largest fetch size tried before giving up on a batch.
const MAX_FETCH_BYTES: i32 = 64 << 20;
/// Consecutive fetches without progress before reading a partition is declared stalled.
const MAX_IDLE_FETCHES: u32 = 10;
/// Default time a write (or a read step) keeps retrying retriable errors.
const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(30);
/// Default time the broker may take to replicate a checkpoint batch (acks=all).
const DEFAULT_PRODUCE_TIMEOUT_MS: i32 = 10_000;
/// How often ensure_topic polls metadata while waiting for the new topic's leader.
const LEADER_POLL: Duration = Duration::from_millis(100);

/// Configs of a newly created checkpoint topic.
fn topic_configs() -> BTreeMap<String, String> {
    [
        ("cleanup.policy", "compact"),
        // Keep the batch as strait wrote it (zstd or none), no broker-side recompression.
        ("compression.type", "producer"),
        // The active segment is never compacted: roll hourly so that `load` reads roughly one
        // record per key plus at most an hour of updates, not a week of them (the default).
        ("segment.ms", "3600000"),
        ("min.compaction.lag.ms", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The newest checkpoint per partition of one replication, kept current by
/// [`CheckpointStore::follow`], which reads only what was written since its last call: a
/// periodic reader pays for the new checkpoints, not for the whole topic every time. The topic
/// is read in order, so the newest record of a key is the one held; compaction only drops
/// records that a later one of the same key replaces. Offset map runs are not kept.
#[derive(Debug)]
pub struct Follower {
    latest: Latest,
    /// The next offset to read, per partition of the checkpoint topic.
    next: HashMap<i32, i64>,
}

impl Follower {
    /// The newest checkpoint of each source partition read so far.
    pub fn checkpoints(&self) -> &HashMap<TopicPartition, CheckpointRecord> {
        &self.latest.entries
    }
}

/// Reads and writes one replication id's checkpoints in a compacted topic on the target.
#[derive(Debug)]
pub struct CheckpointStore {
    target: Arc<Cluster>,
    topic: String,
    replication_id: String,
    produce_timeout_ms: i32,
    retry_budget: Duration,
}

impl CheckpointStore {
    /// A store for `replication_id`'s checkpoints in `topic` on the `target` cluster. Opens no
    /// socket.
    pub fn new(target: Arc<Cluster>, topic: &str, replication_id: &str) -> Self {
        CheckpointStore {
            target,
            topic: topic.to_owned(),
            replication_id: replication_id.to_owned(),
            produce_timeout_ms: DEFAULT_PRODUCE_TIMEOUT_MS,
            retry_budget: DEFAULT_RETRY_BUDGET,
        }
    }

    /// How long one write, or one step of a load, keeps retrying retriable errors (default
    /// 30 s). The last attempt may add one request timeout on top.
    pub fn with_retry_budget(mut self, budget: Duration) -> Self {
        self.retry_budget = budget;
        self
    }

    /// How long the broker may take to replicate a checkpoint batch (default 10 s).
    pub fn with_produce_timeout_ms(mut self, timeout_ms: i32) -> Self {
        self.produce_timeout_ms = timeout_ms;
        self
    }

    /// The checkpoint topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The replication id whose checkpoints this store reads and writes.
    pub fn replication_id(&self) -> &str {
        &self.replication_id
    }

    /// Creates the topic if missing: 1 partition, `cleanup.policy=compact`,
    /// `compression.type=producer`, hourly segments. Then waits (up to `timeout_ms`) until the
    /// partition written to has a leader.
    ///
    /// A target that does not serve CreateTopics gets [`Error::CannotCreate`], which says how to
    /// create the topic by hand. An existing topic is left alone; it is only checked, with a
    /// warning when it is not compacted or has more than one partition.
    pub async fn ensure_topic(&self, timeout_ms: i32) -> Result<()> {
        let waited_from = Instant::now();
        let names = std::slice::from_ref(&self.topic);
        let meta = self
            .retry(None, "metadata", || self.target.metadata(Some(names)))
            .await
            .map_err(|(e, _)| self.topic_err("metadata", *e))?;
        let existing = meta
            .topics
            .get(&self.topic)
            .filter(|t| t.error != Some(ResponseError::UnknownTopicOrPartition));
        match existing {
            Some(t) => {
                if let Some(code) = t.error.filter(|c| !c.is_retriable()) {
                    return Err(self.topic_err("metadata", self.request_err(ApiKey::Metadata, code)));
                }
                if t.error.is_none() && t.partition_count() != 1 {
                    tracing::warn!(
                        topic = %self.topic,
                        partitions = t.partition_count(),
                        "checkpoint topic has more than one partition; strait writes to partition 0 and reads all"
                    );
                }
                self.check_existing_config().await;
            }
            None => self.create(timeout_ms).await?,
        }
        let wait = Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0));
        self.wait_for_leader(waited_from, wait).await
    }

    async fn create(&self, timeout_ms: i32) -> Result<()> {
        let supported = self
            .target
            .supports::<CreateTopicsRequest>()
            .await
            .map_err(|e| self.topic_err("api versions", e))?;
        if !supported {
            return Err(Error::CannotCreate {
                topic: self.topic.clone(),
            });
        }
        let spec = TopicSpec {
            name: self.topic.clone(),
            partitions: 1,
            replication_factor: -1,
            configs: topic_configs(),
        };
        self.retry(None, "create topic", || async {
            let results = self
                .target
                .create_topics(std::slice::from_ref(&spec), timeout_ms)
                .await?;
            match results.into_iter().find(|(name, _)| *name == self.topic) {
                Some((_, result)) => result,
                // The broker ignored our topic: report it like a missing answer (retriable).
                None => Err(kafka::Error::Request {
                    api: ApiKey::CreateTopics,
                    resource: format!("topic {}", self.topic),
                    code: ResponseError::UnknownServerError,
                    message: Some("no result for the topic".into()),
                }),
            }
        })
        .await
        .map_err(|(e, _)| self.topic_err("create topic", *e))?;
        tracing::info!(topic = %self.topic, "checkpoint topic created");
        Ok(())
    }

    /// Warns when an existing topic would lose or pile up checkpoints. Best effort: brokers that
    /// do not describe configs, or report only explicit ones, are not questioned.
    async fn check_existing_config(&self) {
        if !self.target.supports::<DescribeConfigsRequest>().await.unwrap_or(false) {
            return;
        }
        match self.target.describe_topic_config(&self.topic).await {
            Ok(configs) => {
                if let Some(policy) = configs.values.get("cleanup.policy").filter(|p| !p.contains("compact")) {
                    tracing::warn!(
                        topic = %self.topic,
                        cleanup_policy = %policy,
                        "checkpoint topic is not compacted: checkpoints of idle partitions expire and loading \
                         reads every update; set cleanup.policy=compact"
                    );
                }
            }
            Err(e) => {
                tracing::debug!(topic = %self.topic, error = %crate::error_chain(&e), "cannot check checkpoint topic configs")
            }
        }
    }

    async fn wait_for_leader(&self, since: Instant, wait: Duration) -> Result<()> {
        let names = std::slice::from_ref(&self.topic);
        loop {
            match self.target.metadata(Some(names)).await {
                Ok(meta) => {
                    let leader = meta
                        .topics
                        .get(&self.topic)
                        .filter(|t| t.error.is_none())
                        .and_then(|t| t.leaders.get(&WRITE_PARTITION).copied());
                    if leader.is_some_and(|id| id >= 0) {
                        return Ok(());
                    }
                }
                Err(e) if e.is_retriable() => {
                    tracing::debug!(topic = %self.topic, error = %crate::error_chain(&e), "waiting for checkpoint topic leader");
                }
                Err(e) => return Err(self.topic_err("metadata", e)),
            }
            if since.elapsed() >= wait {
                return Err(Error::NotReady {
                    topic: self.topic.clone(),
                    waited_ms: u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX),
                });
            }
            tokio::time::sleep(LEADER_POLL).await;
        }
    }

    /// Reads the whole topic (earliest to latest offset of every partition): the last value per
    /// key wins and a tombstone deletes. Returns this replication id's checkpoints by source
    /// topic-partition.
    ///
    /// Records that do not decode are skipped with a warning naming their offset; a corrupt
    /// batch, a missing topic or a partition that stops making progress is an error.
    pub async fn load(&self) -> Result<HashMap<TopicPartition, Checkpoint>> {
        Ok(self
            .load_records()
            .await?
            .into_iter()
            .map(|(tp, r)| (tp, r.checkpoint))
            .collect())
    }

    /// [`Self::load`] with the producer identities each checkpoint records.
    pub async fn load_records(&self) -> Result<HashMap<TopicPartition, CheckpointRecord>> {
        Ok(self.load_state().await?.0)
    }

    /// [`Self::load_records`], and the offset map runs stored for each checkpointed partition
    /// (those of a partition without a checkpoint are left out).
    pub async fn load_state(
        &self,
    ) -> Result<(
        HashMap<TopicPartition, CheckpointRecord>,
        HashMap<TopicPartition, Vec<Run>>,
    )> {
        let partitions = self.partitions().await?;
        let mut latest = Latest::new(&self.replication_id);
        for partition in partitions {
            self.read_partition(partition, None, &mut latest).await?;
        }
        tracing::info!(
            topic = %self.topic,
            replication_id = %self.replication_id,
            checkpoints = latest.entries.len(),
            "checkpoints loaded"
        );
        let entries = latest.entries;
        let runs = latest
            .runs
            .into_iter()
            .filter(|(tp, _)| entries.contains_key(tp))
            .map(|(tp, runs)| (tp, runs.into_values().collect()))
            .collect();
        Ok((entries, runs))
    }

    /// A [`Follower`] of this store's checkpoints, that has read nothing yet.
    pub fn follower(&self) -> Follower {
        Follower {
            latest: Latest::checkpoints_only(&self.replication_id),
            next: HashMap::new(),
        }
    }

    /// Reads into `follower` what the topic received since its last call (all of it the first
    /// time): afterwards it holds the newest checkpoint per partition, as [`Self::load_records`]
    /// would return it, having read each record once.
    pub async fn follow(&self, follower: &mut Follower) -> Result<()> {
        for partition in self.partitions().await? {
            let from = follower.next.get(&partition).copied();
            let next = self.read_partition(partition, from, &mut follower.latest).await?;
            follower.next.insert(partition, next);
        }
        Ok(())
    }

    /// The partitions of the checkpoint topic, in order.
    async fn partitions(&self) -> Result<Vec<i32>> {
        let names = std::slice::from_ref(&self.topic);
        let deadline = Instant::now() + self.retry_budget;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            let meta = self
                .retry(None, "metadata", || self.target.metadata(Some(names)))
                .await
                .map_err(|(e, _)| self.topic_err("metadata", *e))?;
            let Some(topic) = meta.topics.get(&self.topic) else {
                return Err(Error::MissingTopic {
                    topic: self.topic.clone(),
                });
            };
            match topic.error {
                None if topic.partition_count() > 0 => return Ok(topic.leaders.keys().copied().collect()),
                Some(ResponseError::UnknownTopicOrPartition) => {
                    return Err(Error::MissingTopic {
                        topic: self.topic.clone(),
                    })
                }
                Some(code) if !code.is_retriable() => {
                    return Err(self.topic_err("metadata", self.request_err(ApiKey::Metadata, code)))
                }
                // Leader election in progress, or no partitions reported yet.
                other => {
                    let delay = backoff.next_delay();
                    if Instant::now() + delay > deadline {
                        let code = other.unwrap_or(ResponseError::LeaderNotAvailable);
                        return Err(self.topic_err("metadata", self.request_err(ApiKey::Metadata, code)));
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Reads one partition into `latest`, from `from` (its earliest offset when `None`, below
    /// the log start, or past the log end: a topic created again) to its latest offset, which it
    /// returns.
    async fn read_partition(&self, partition: i32, from: Option<i64>, latest: &mut Latest) -> Result<i64> {
        let tp = TopicPartition::new(self.topic.clone(), partition);
        let read_err = |action, offset, e| Error::Read {
            topic: self.topic.clone(),
            partition,
            action,
            offset,
            source: Box::new(e),
        };
        let earliest = || async {
            self.retry(Some(&tp), "list offsets", || {
                self.target.list_offset(&tp, OffsetSpec::Earliest)
            })
            .await
            .map_err(|(e, _)| read_err("list earliest offset", -1, *e))
        };
        let log_start = earliest().await?;
        let log_end = self
            .retry(Some(&tp), "list offsets", || {
                self.target.list_offset(&tp, OffsetSpec::Latest)
            })
            .await
            .map_err(|(e, _)| read_err("list latest offset", -1, *e))?;
        let mut offset = from.filter(|&f| f >= log_start && f <= log_end).unwrap_or(log_start);
        let mut max_bytes = INITIAL_FETCH_BYTES;
        let mut idle = 0;
        while offset < log_end {
            let fetched = match self
                .retry(Some(&tp), "fetch", || {
                    self.target.fetch(&tp, offset, max_bytes, FETCH_MAX_WAIT_MS)
                })
                .await
            {
                Ok(f) => f,
                Err((e, _)) if e.code() == Some(ResponseError::OffsetOutOfRange) => {
                    // Records were deleted under us; what is gone cannot be read, go on from the
                    // new log start.
                    let start = earliest().await?;
                    if start > offset {
                        tracing::warn!(topic = %self.topic, partition, offset, log_start = start, "checkpoint log start moved while reading");
                        offset = start;
                        continue;
                    }
                    return Err(read_err("fetch", offset, *e));
                }
                Err((e, _)) => return Err(read_err("fetch", offset, *e)),
            };
            let step = apply_fetch(&tp, offset, fetched.records, fetched.aborted, latest)?;
            if step.next_offset > offset {
                offset = step.next_offset;
                idle = 0;
            } else if step.partial_batch {
                if max_bytes >= MAX_FETCH_BYTES {
                    return Err(Error::BatchTooLarge {
                        topic: self.topic.clone(),
                        partition,
                        offset,
                        max_bytes,
                    });
                }
                max_bytes = max_bytes.saturating_mul(2).min(MAX_FETCH_BYTES);
            } else {
                idle += 1;
                if idle >= MAX_IDLE_FETCHES {
                    return Err(Error::Stalled {
                        topic: self.topic.clone(),
                        partition,
                        offset,
                        log_end,
                        fetches: idle,
                    });
                }
            }
        }
        Ok(log_end)
    }

    /// Writes `checkpoints` as one record batch (zstd, or none when that is smaller) to
    /// partition 0 with acks=all, retrying retriable errors within the retry budget.
    ///
    /// A retried produce may store the batch twice; that is harmless, the values are the same.
    /// Within one call, a later checkpoint for the same partition wins. Every checkpoint must
    /// carry this store's replication id. An empty slice writes nothing.
    ///
    /// The checkpoints carry no producer identities: a partition resuming from one cannot
    /// attribute anything the target holds beyond it. strait itself writes with
    /// [`Self::write_records`].
    pub async fn write(&self, checkpoints: &[Checkpoint]) -> Result<()> {
        let records: Vec<CheckpointRecord> = checkpoints.iter().cloned().map(CheckpointRecord::from).collect();
        self.write_records(&records).await
    }

    /// [`Self::write`] for checkpoints with the producer identities written beyond them.
    pub async fn write_records(&self, checkpoints: &[CheckpointRecord]) -> Result<()> {
        self.write_with_runs(&[], checkpoints).await
    }

    /// [`Self::write_records`] with offset map runs that changed (and runs to delete), stored in
    /// the same batch before the checkpoints.
    pub async fn write_with_runs(
        &self,
        runs: &[(TopicPartition, Pending)],
        checkpoints: &[CheckpointRecord],
    ) -> Result<()> {
        if checkpoints.is_empty() && runs.iter().all(|(_, p)| p.is_empty()) {
            return Ok(());
        }
        if let Some(c) = checkpoints
            .iter()
            .map(|r| &r.checkpoint)
            .find(|c| c.replication_id != self.replication_id)
        {
            return Err(Error::ForeignReplicationId {
                expected: self.replication_id.clone(),
                found: c.replication_id.clone(),
                source_topic: c.source_topic.clone(),
                source_partition: c.source_partition,
            });
        }
        let count = checkpoints.len();
        let batch =
            encode_checkpoints(&self.replication_id, runs, checkpoints, now_ms()).map_err(|source| Error::Encode {
                topic: self.topic.clone(),
                count,
                source,
            })?;
        let tp = TopicPartition::new(self.topic.clone(), WRITE_PARTITION);
        let bytes = batch.len();
        let ack = self
            .retry(Some(&tp), "produce", || {
                metrics::counter!(crate::telemetry::CHECKPOINT_BYTES).increment(bytes as u64);
                self.target.produce(&tp, batch.clone(), self.produce_timeout_ms)
            })
            .await
            .map_err(|(e, attempts)| Error::Write {
                topic: self.topic.clone(),
                partition: WRITE_PARTITION,
                count,
                attempts,
                source: e,
            })?;
        tracing::debug!(topic = %self.topic, partition = WRITE_PARTITION, offset = ack.base_offset, count, bytes, "checkpoints written");
        Ok(())
    }

    /// Runs `op` until it succeeds, fails with a non-retriable error, or the retry budget is
    /// spent. Hands back the last error and the number of attempts.
    async fn retry<T, F, Fut>(
        &self,
        tp: Option<&TopicPartition>,
        action: &'static str,
        op: F,
    ) -> std::result::Result<T, (Box<kafka::Error>, u32)>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = kafka::Result<T>>,
    {
        let deadline = Instant::now() + self.retry_budget;
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let on_retry = |e: &kafka::Error, attempts: u32, _delay| {
            if let Some(tp) = tp.filter(|_| e.needs_metadata_refresh()) {
                self.target.invalidate(tp);
            }
            tracing::warn!(topic = %self.topic, action, attempts, error = %crate::error_chain(e), "checkpoint request failed; retrying");
        };
        // The target coming back ends a delay at once: partitions entering a catch-up wait for
        // this write, and the delays of a long outage reach 5 s.
        let until = Until::Deadline {
            at: deadline,
            woken: Some(self.target.reconnected()),
        };
        match retry(backoff, until, op, on_retry).await {
            Retried::Done(v) => Ok(v),
            Retried::Failed { error, attempts } => Err((Box::new(error), attempts)),
            // No cancellation is given.
            Retried::Cancelled => Err((
                Box::new(kafka::Error::ConnectionLost {
                    broker: "(cancelled)".into(),
                    source: None,
                }),
                0,
            )),
        }
    }

    fn topic_err(&self, action: &'static str, source: kafka::Error) -> Error {
        Error::Topic {
            topic: self.topic.clone(),
            action,
            source: Box::new(source),
        }
    }

    fn request_err(&self, api: ApiKey, code: ResponseError) -> kafka::Error {
        kafka::Error::Request {
            api,
            resource: format!("topic {}", self.topic),
            code,
            message: None,
        }
    }
}

/// The wall clock in Unix epoch milliseconds, as checkpoints record it (0 if the clock is before
/// 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "__strait_checkpoints";

    fn cp(rid: &str, topic: &str, partition: i32, next: i64) -> Checkpoint {
        Checkpoint {
            replication_id: rid.into(),
            source_topic: topic.into(),
            source_partition: partition,
            target_topic: format!("dc1.{topic}"),
            next_source_offset: next,
            next_target_offset: next * 2,
            writer_epoch: 1,
            wall_clock_ms: 1_700_000_000_000 + next,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn write_retries_within_its_budget_then_names_the_topic() {
        // A port nobody listens on: every attempt fails with a retriable connect error.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("ephemeral port")
            .port();
        let cluster = Cluster::new(
            "target",
            vec![format!("127.0.0.1:{port}")],
            "test",
            Duration::from_secs(1),
        );
        let store = CheckpointStore::new(Arc::new(cluster), TOPIC, "dc1").with_retry_budget(Duration::from_secs(30));
        let started = Instant::now();
        let err = store
            .write(&[cp("dc1", "spans", 0, 1)])
            .await
            .expect_err("nothing to write to");
        let elapsed = started.elapsed();
        let Error::Write {
            attempts,
            count,
            ref source,
            ..
        } = err
        else {
            panic!("{err:?}");
        };
        assert!(attempts >= 5, "{attempts} attempts in {elapsed:?}");
        assert_eq!(count, 1);
        assert!(source.is_retriable(), "{source:?}");
        assert!(elapsed <= Duration::from_secs(32), "{elapsed:?}");
        assert!(err.to_string().contains("__strait_checkpoints/0"), "{err}");
    }
}
