//! The wire, seen from the data path: two small traits, one per side. The Kafka client
//! implements both; the unit tests implement them with in-memory partitions.
//!
//! - [`Fetch`]: reading a partition (the source's records, the target's tail) and listing its
//!   offsets. Both clusters are read.
//! - [`Produce`]: writing the target as an idempotent producer. A produce is started in order
//!   and its acknowledgement awaited later, so several batches are on the wire at once.
//! - [`Claims`]: reading who claimed a partition last, from the checkpoint topic.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

use crate::kafka::{
    self, Cluster, FetchedPartition, OffsetSpec, ProduceAck, ProducerIdentity, TopicId, TopicPartition, Wait,
};

/// Reads a cluster's partitions.
pub trait Fetch: Send + Sync + 'static {
    /// The cluster's role (`source` or `target`), for logs and metrics.
    fn name(&self) -> &str;

    /// Raw record batches of `tp` from `offset`, read_committed, at most about `max_bytes`
    /// (a first batch comes whole), waiting for data as `wait` says: one long poll, or until
    /// something is readable at `offset` (records, an error, a log start past it). With
    /// `topic_id`, only that topic is read: once it was deleted and created again, the answer
    /// is UnknownTopicId, whatever the new topic holds.
    fn fetch(
        &self,
        tp: &TopicPartition,
        topic_id: Option<TopicId>,
        offset: i64,
        max_bytes: i32,
        wait: Wait,
    ) -> impl Future<Output = kafka::Result<FetchedPartition>> + Send;

    /// The log start (`Earliest`) or the last stable offset (`Latest`) of `tp`.
    fn list_offset(&self, tp: &TopicPartition, spec: OffsetSpec) -> impl Future<Output = kafka::Result<i64>> + Send;

    /// The last stable offsets of many partitions, in the order asked, each with its own
    /// error: one request per leader, however many partitions.
    fn list_ends(&self, tps: &[TopicPartition]) -> impl Future<Output = Vec<kafka::Result<i64>>> + Send;

    /// Forgets where `tp` is led from: an answer said its leader moved.
    fn invalidate(&self, tp: &TopicPartition);

    /// Notified when the cluster is reachable again after failed connects: a retry delay ends
    /// then. `None` when nothing tells.
    fn reconnected(&self) -> Option<&tokio::sync::Notify>;

    /// What the cluster's metadata says of `topic` now.
    fn topic_state(&self, topic: &str) -> impl Future<Output = kafka::Result<TopicState>> + Send;

    /// Whether `topic`'s `cleanup.policy` includes `compact`; `false` from a cluster that does
    /// not describe configs.
    fn compacted(&self, topic: &str) -> impl Future<Output = kafka::Result<bool>> + Send;
}

/// What a cluster's metadata says of a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicState {
    /// It answers that the topic does not exist, after it named the topic to this client
    /// before: deleted.
    Missing,
    /// It answers that the topic does not exist and never named it to this client: a topic just
    /// created (by strait or anyone) whose metadata has not reached the broker asked yet. A
    /// broker busy creating thousands of partitions answered so for more than 10 s after its
    /// CreateTopics returned; that is no deletion.
    Unseen,
    /// It knows the topic (or did not answer for it), with its id when it gives one.
    Present(Option<TopicId>),
}

/// Writes a cluster's partitions as an idempotent producer.
pub trait Produce: Send + Sync + 'static {
    /// A produce on the wire: resolves to the broker's acknowledgement.
    type Ack: Future<Output = kafka::Result<ProduceAck>> + Send + 'static;

    /// A new idempotent (non-transactional) producer identity.
    fn init_producer_id(&self, timeout_ms: i32) -> impl Future<Output = kafka::Result<ProducerIdentity>> + Send;

    /// Puts one record batch for `tp` on the wire, acks=all. Batches started one after another
    /// for a partition are written and answered in that order.
    fn start_produce(
        &self,
        tp: &TopicPartition,
        batch: Bytes,
        timeout_ms: i32,
    ) -> impl Future<Output = kafka::Result<Self::Ack>> + Send;
}

/// Reads the partitions' claims: every strait process that starts a partition bumps its writer
/// epoch in a checkpoint before it writes.
pub trait Claims: Send + Sync + 'static {
    /// The newest claim on source partition `tp`, read now; `None` when it has none.
    fn newest(
        &self,
        tp: &TopicPartition,
    ) -> impl Future<Output = Result<Option<Claim>, crate::checkpoint::Error>> + Send;
}

/// A partition's newest checkpoint, as a claim: the writer epoch and the identities it names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claim {
    pub writer_epoch: i64,
    pub writers: Vec<ProducerIdentity>,
}

impl Fetch for Cluster {
    fn name(&self) -> &str {
        Cluster::name(self)
    }

    fn fetch(
        &self,
        tp: &TopicPartition,
        topic_id: Option<TopicId>,
        offset: i64,
        max_bytes: i32,
        wait: Wait,
    ) -> impl Future<Output = kafka::Result<FetchedPartition>> + Send {
        Cluster::fetch_topic(self, tp, topic_id, offset, max_bytes, wait)
    }

    fn list_offset(&self, tp: &TopicPartition, spec: OffsetSpec) -> impl Future<Output = kafka::Result<i64>> + Send {
        Cluster::list_offset(self, tp, spec)
    }

    fn list_ends(&self, tps: &[TopicPartition]) -> impl Future<Output = Vec<kafka::Result<i64>>> + Send {
        Cluster::list_ends(self, tps)
    }

    fn invalidate(&self, tp: &TopicPartition) {
        Cluster::invalidate(self, tp);
    }

    fn reconnected(&self) -> Option<&tokio::sync::Notify> {
        Some(Cluster::reconnected(self))
    }

    async fn topic_state(&self, topic: &str) -> kafka::Result<TopicState> {
        let meta = Cluster::metadata(self, Some(&[topic.to_owned()])).await?;
        Ok(match meta.topics.get(topic) {
            Some(t) if t.error == Some(kafka::ResponseError::UnknownTopicOrPartition) => match self.has_named(topic) {
                true => TopicState::Missing,
                false => TopicState::Unseen,
            },
            t => TopicState::Present(t.and_then(|t| t.id).and_then(kafka::known_topic_id)),
        })
    }

    async fn compacted(&self, topic: &str) -> kafka::Result<bool> {
        use kafka_protocol::messages::DescribeConfigsRequest;
        if !self.supports::<DescribeConfigsRequest>().await? {
            return Ok(false);
        }
        let configs = Cluster::describe_topic_config(self, topic).await?;
        Ok(configs
            .values
            .get("cleanup.policy")
            .is_some_and(|p| p.split(',').any(|v| v.trim() == "compact")))
    }
}

/// A produce acknowledgement of the Kafka client.
pub type KafkaAck = Pin<Box<dyn Future<Output = kafka::Result<ProduceAck>> + Send>>;

impl Produce for Cluster {
    type Ack = KafkaAck;

    fn init_producer_id(&self, timeout_ms: i32) -> impl Future<Output = kafka::Result<ProducerIdentity>> + Send {
        Cluster::init_producer_id(self, timeout_ms)
    }

    async fn start_produce(&self, tp: &TopicPartition, batch: Bytes, timeout_ms: i32) -> kafka::Result<KafkaAck> {
        let pending = Cluster::start_produce(self, tp, batch, timeout_ms).await?;
        Ok(Box::pin(pending.ack()))
    }
}
