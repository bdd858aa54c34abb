//! The typed requests strait makes, one method each around one IO call: the request is built
//! and its answer processed by the pure functions of `requests.rs`; here the request goes to the
//! right broker. Errors name the topic and partition; retrying is the caller's choice
//! ([`super::Error::is_retriable`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::protocol::Request;

use super::cluster::Cluster;
use super::error::{Error, Result};
use super::fetches::Wait;
use super::requests::{
    self, DescribedConfigs, Fetched, FetchedPartition, OffsetSpec, ProduceAck, ProducerIdentity, TopicSpec,
};
use super::TopicPartition;

/// A batch queued for the wire (in a produce request shared with other partitions).
#[derive(Debug)]
pub struct PendingProduce {
    broker: String,
    acked: super::produces::Acked,
}

impl PendingProduce {
    /// Waits for the broker's acknowledgement.
    pub async fn ack(self) -> Result<ProduceAck> {
        let broker = self.broker;
        self.acked
            .await
            .map_err(|_| super::gather::stopped(&broker, "produce"))?
    }
}

impl Cluster {
    /// Whether any broker of the cluster serves request type `R` (checked on one connection).
    pub async fn supports<R: Request>(&self) -> Result<bool> {
        Ok(self.any_conn().await?.supports::<R>())
    }

    /// The earliest or latest (read_committed) offset of a partition.
    pub async fn list_offset(&self, tp: &TopicPartition, spec: OffsetSpec) -> Result<i64> {
        let conn = self.leader(tp).await?;
        // Shared with the other partitions asking the same broker meanwhile: one request in
        // flight.
        self.lists
            .get_or_init(super::lists::Lists::start)
            .list(conn, tp, spec)
            .await
    }

    /// The last stable offsets (read_committed) of many partitions: one ListOffsets per leader,
    /// all leaders at once, answered in the order asked. A partition whose leader is unknown,
    /// or whose broker fails or answers an error for it, gets that error; one whose leader moved
    /// is led from elsewhere at the next call.
    pub async fn list_ends(&self, tps: &[TopicPartition]) -> Vec<Result<i64>> {
        let mut answers: Vec<Option<Result<i64>>> = vec![None; tps.len()];
        let mut by_leader: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for (i, tp) in tps.iter().enumerate() {
            match self.leader_id(tp).await {
                Ok(id) => by_leader.entry(id).or_default().push(i),
                Err(e) => answers[i] = Some(Err(e)),
            }
        }
        let asks = by_leader.into_values().map(|indexes| async move {
            let asked: Vec<TopicPartition> = indexes.iter().map(|&i| tps[i].clone()).collect();
            let answered = match self.list_ends_of(&asked).await {
                Ok(answered) => answered,
                Err(e) => vec![Err(e); asked.len()],
            };
            indexes.into_iter().zip(answered).collect::<Vec<_>>()
        });
        for (i, answer) in futures_util::future::join_all(asks).await.into_iter().flatten() {
            if answer.as_ref().is_err_and(Error::needs_metadata_refresh) {
                self.invalidate(&tps[i]);
            }
            answers[i] = Some(answer);
        }
        answers
            .into_iter()
            .zip(tps)
            .map(|(a, tp)| a.unwrap_or_else(|| Err(requests::missing(self.name(), super::ApiKey::ListOffsets, tp))))
            .collect()
    }

    /// One ListOffsets of `tps`, all led by the same broker (that of the first).
    async fn list_ends_of(&self, tps: &[TopicPartition]) -> Result<Vec<Result<i64>>> {
        let Some(first) = tps.first() else {
            return Ok(Vec::new());
        };
        let request = requests::build_list_offsets_many(tps, OffsetSpec::Latest);
        let conn = self.leader(first).await?;
        let (response, _) = conn.send(&request).await?;
        Ok(requests::process_list_offsets_many(&response, conn.broker(), tps))
    }

    /// Fetches raw record batches of one partition from `offset`, read_committed. The request
    /// is shared with other partitions of the same leader, so an empty answer does not mean
    /// the partition has nothing more at `offset`: the response may have been full.
    pub async fn fetch(
        &self,
        tp: &TopicPartition,
        offset: i64,
        max_bytes: i32,
        max_wait_ms: i32,
    ) -> Result<FetchedPartition> {
        self.fetch_topic(tp, None, offset, max_bytes, Wait::Poll(max_wait_ms))
            .await
    }

    /// [`Self::fetch`] of topic `id` when known: a topic deleted and created again under the
    /// same name answers UNKNOWN_TOPIC_ID instead of its records (Fetch 13+; a broker that
    /// speaks only older versions is asked by name).
    pub async fn fetch_topic(
        &self,
        tp: &TopicPartition,
        id: Option<super::TopicId>,
        offset: i64,
        max_bytes: i32,
        wait: Wait,
    ) -> Result<FetchedPartition> {
        let leader = match wait {
            Wait::Poll(_) => self.lane_conn(tp).await?,
            Wait::UntilReadable(_) => self.quiet_conn(tp).await?,
        };
        // Shared with the other partitions on this connection to the broker: one request in
        // flight.
        let answer = self
            .fetches()
            .fetch(Arc::clone(&leader), tp, id, offset, max_bytes, wait)
            .await?;
        match requests::process_fetched_partition(answer.data, tp)? {
            Fetched::Records(f) => Ok(FetchedPartition {
                retained: answer.retained,
                ..f
            }),
            // A leader may redirect to a preferred read replica (KIP-392); follow it once, alone.
            Fetched::ReadReplica(replica) => {
                let conn = self.broker(replica).await?;
                let request = requests::build_fetch(tp, id, offset, max_bytes, wait.max_wait_ms());
                let cap = requests::fetch_version_cap(std::iter::once(id));
                let (response, _) = conn.send_at_most(&request, cap).await?;
                let answer = requests::process_fetch(response, conn.broker(), tp)?;
                match requests::process_fetched_partition(answer, tp)? {
                    Fetched::Records(f) => Ok(f),
                    Fetched::ReadReplica(_) => Err(requests::missing(conn.broker(), super::ApiKey::Fetch, tp)),
                }
            }
        }
    }

    fn fetches(&self) -> &super::fetches::Fetches {
        self.fetches
            .get_or_init(|| super::fetches::Fetches::start(super::fetches::BROKER_MAX_BYTES / i64::from(self.lanes())))
    }

    /// Produces one record batch to a partition with acks=all.
    pub async fn produce(&self, tp: &TopicPartition, batch: Bytes, timeout_ms: i32) -> Result<ProduceAck> {
        self.start_produce(tp, batch, timeout_ms).await?.ack().await
    }

    /// Queues one record batch for a partition for the wire (its lane to the leader), in the
    /// next produce request on that connection (shared with the other partitions that queue one
    /// meanwhile: [`super::produces`]), and returns a handle to the acknowledgement. Batches
    /// started one after another for a partition are written and answered in that order.
    pub async fn start_produce(&self, tp: &TopicPartition, batch: Bytes, timeout_ms: i32) -> Result<PendingProduce> {
        let conn = self.lane_conn(tp).await?;
        let broker = conn.broker().to_owned();
        let produces = self.produces.get_or_init(super::produces::Produces::start);
        // Boxed: this future sits in every partition task's, which is kept small.
        let acked = Box::pin(produces.produce(conn, tp, batch, timeout_ms)).await?;
        Ok(PendingProduce { broker, acked })
    }

    /// Asks for a new idempotent (non-transactional) producer id.
    pub async fn init_producer_id(&self, timeout_ms: i32) -> Result<ProducerIdentity> {
        let request = requests::build_init_producer_id(timeout_ms);
        let conn = self.any_conn().await?;
        let (response, _) = conn.send(&request).await?;
        requests::process_init_producer_id(&response, self.name())
    }

    /// Creates topics; one result per topic. A topic that already exists counts as created.
    pub async fn create_topics(&self, specs: &[TopicSpec], timeout_ms: i32) -> Result<Vec<(String, Result<()>)>> {
        let request = requests::build_create_topics(specs, timeout_ms, false);
        let conn = self.any_conn().await?;
        let (response, _) = conn.send(&request).await?;
        Ok(requests::process_create_topics(&response))
    }

    /// The replication factor the cluster would give the topic `spec` describes, asked with a
    /// validate-only CreateTopics (nothing is created); `None` when the broker does not say.
    pub async fn replication_factor_for(&self, spec: &TopicSpec, timeout_ms: i32) -> Result<Option<i16>> {
        let request = requests::build_create_topics(std::slice::from_ref(spec), timeout_ms, true);
        let conn = self.any_conn().await?;
        let (response, _) = conn.send(&request).await?;
        requests::process_validated_replication_factor(&response, &spec.name)
    }

    /// The configs of a topic as the broker reports them (some brokers report only those set
    /// explicitly), and which of them are set on the topic.
    pub async fn describe_topic_config(&self, topic: &str) -> Result<DescribedConfigs> {
        let request = requests::build_describe_configs(&[topic.to_owned()], None);
        let conn = self.any_conn().await?;
        let (response, _) = conn.send(&request).await?;
        requests::process_describe_configs(response, None)
            .into_iter()
            .find(|(name, _)| name == topic)
            .map(|(_, result)| result)
            .unwrap_or_else(|| {
                Err(requests::missing(
                    conn.broker(),
                    super::ApiKey::DescribeConfigs,
                    format!("topic {topic}"),
                ))
            })
    }

    /// Some configs (`keys`) of several topics in one request, one result per topic the broker
    /// answered. Brokers that report only explicitly set configs leave unset keys out.
    pub async fn describe_topic_configs(
        &self,
        topics: &[String],
        keys: &[&str],
    ) -> Result<Vec<(String, Result<DescribedConfigs>)>> {
        let request = requests::build_describe_configs(topics, Some(keys));
        let conn = self.any_conn().await?;
        let (response, _) = conn.send(&request).await?;
        Ok(requests::process_describe_configs(response, Some(keys)))
    }

    /// Raises a topic's partition count to `count`.
    pub async fn create_partitions(&self, topic: &str, count: i32, timeout_ms: i32) -> Result<()> {
        let request = requests::build_create_partitions(topic, count, timeout_ms);
        let conn = self.any_conn().await?;
        let (response, _) = conn.send(&request).await?;
        requests::process_create_partitions(&response, conn.broker(), topic)
    }
}
