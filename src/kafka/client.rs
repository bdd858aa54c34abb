//! The typed requests strait makes, one method each: build the request, send it to the right
//! broker, turn the answer's error codes into [`Error`]s that name the topic and partition.
//! Retrying is the caller's choice ([`Error::is_retriable`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::{ParseResponseErrorCode, ResponseError};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreatePartitionsRequest, CreateTopicsRequest, DescribeConfigsRequest, FetchRequest,
    InitProducerIdRequest, ListOffsetsRequest, ProduceRequest, ProducerId, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};

use super::cluster::Cluster;
use super::error::{Error, Result};
use super::TopicPartition;

const READ_COMMITTED: i8 = 1;
const TOPIC_RESOURCE: i8 = 2;

/// One partition's fetch in a request of its own, on `conn`.
async fn fetch_alone(
    conn: &super::Conn,
    tp: &TopicPartition,
    offset: i64,
    max_bytes: i32,
    max_wait_ms: i32,
) -> Result<kafka_protocol::messages::fetch_response::PartitionData> {
    let request = FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_isolation_level(READ_COMMITTED)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(&tp.topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(tp.partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(max_bytes)])]);
    let (response, _) = conn.send(&request).await?;
    if let Some(code) = response.error_code.err() {
        return Err(Error::Partition {
            api: ApiKey::Fetch,
            topic: tp.topic.clone(),
            partition: tp.partition,
            code,
            message: None,
        });
    }
    response
        .responses
        .into_iter()
        .flat_map(|t| t.partitions)
        .find(|p| p.partition_index == tp.partition)
        .ok_or_else(|| missing(conn, ApiKey::Fetch, tp))
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

fn partition_err(api: ApiKey, tp: &TopicPartition, code: i16, message: Option<&StrBytes>) -> Result<()> {
    match code.err() {
        None => Ok(()),
        Some(code) => Err(Error::Partition {
            api,
            topic: tp.topic.clone(),
            partition: tp.partition,
            code,
            message: message.map(|m| m.to_string()),
        }),
    }
}

fn missing(conn: &super::Conn, api: ApiKey, resource: impl std::fmt::Display) -> Error {
    Error::MissingInResponse {
        broker: conn.broker().to_owned(),
        api,
        resource: resource.to_string(),
    }
}

/// Which end of a partition's log to ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The last stable offset (read_committed), i.e. where new data will appear.
    Latest,
}

/// What a Fetch returned for one partition.
#[derive(Clone, Debug, Default)]
pub struct FetchedPartition {
    /// The partition's high watermark.
    pub high_watermark: i64,
    /// The last stable offset: read_committed readers see data below it.
    pub last_stable_offset: i64,
    /// The first offset still in the log.
    pub log_start_offset: i64,
    /// Raw record batches; the last may be truncated.
    pub records: Bytes,
    /// Aborted transactions overlapping the answer: (producer id, first offset).
    pub aborted: Vec<(i64, i64)>,
}

/// The broker's acknowledgement of one produced batch.
#[derive(Clone, Copy, Debug)]
pub struct ProduceAck {
    /// Offset the broker gave the batch's first record.
    pub base_offset: i64,
    /// How long the broker asks the client not to send on this connection because a quota
    /// was exceeded (KIP-219: the broker answers at once and mutes the channel meanwhile).
    pub throttle_ms: i32,
}

/// A produce request on the wire.
#[derive(Debug)]
pub struct PendingProduce {
    tp: TopicPartition,
    broker: String,
    in_flight: super::conn::InFlight<ProduceRequest>,
}

impl PendingProduce {
    /// Waits for the broker's acknowledgement.
    pub async fn ack(self) -> Result<ProduceAck> {
        let (response, _) = self.in_flight.response().await?;
        let tp = &self.tp;
        let p = response
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == tp.partition)
            .ok_or_else(|| Error::MissingInResponse {
                broker: self.broker.clone(),
                api: ApiKey::Produce,
                resource: tp.to_string(),
            })?;
        partition_err(ApiKey::Produce, tp, p.error_code, p.error_message.as_ref())?;
        Ok(ProduceAck {
            base_offset: p.base_offset,
            throttle_ms: response.throttle_time_ms,
        })
    }
}

/// An idempotent producer identity handed out by the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerIdentity {
    /// Producer id.
    pub id: i64,
    /// Producer epoch.
    pub epoch: i16,
}

/// A topic to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    pub partitions: i32,
    /// Topic configs to set.
    pub configs: BTreeMap<String, String>,
}

/// A topic's configs as (name, value).
pub type TopicConfig = BTreeMap<String, String>;

impl Cluster {
    /// Whether any broker of the cluster serves request type `R` (checked on one connection).
    pub async fn supports<R: Request>(&self) -> Result<bool> {
        Ok(self.any_conn().await?.supports::<R>())
    }

    /// The earliest or latest (read_committed) offset of a partition.
    pub async fn list_offset(&self, tp: &TopicPartition, spec: OffsetSpec) -> Result<i64> {
        let timestamp = match spec {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
        };
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(READ_COMMITTED)
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(&tp.topic))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(tp.partition)
                    .with_timestamp(timestamp)])]);
        let conn = self.leader(tp).await?;
        let (response, _) = conn.send(&request).await?;
        let p = response
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == tp.partition)
            .ok_or_else(|| missing(&conn, ApiKey::ListOffsets, tp))?;
        partition_err(ApiKey::ListOffsets, tp, p.error_code, None)?;
        Ok(p.offset)
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
        let leader = self.lane_conn(tp).await?;
        // Shared with the other partitions on this lane to the broker: one request in flight.
        let mut answer = self
            .fetches()
            .fetch(Arc::clone(&leader), tp, offset, max_bytes, max_wait_ms)
            .await;
        let mut conn = leader;
        // A leader may redirect to a preferred read replica (KIP-392); follow it once, alone.
        for _ in 0..2 {
            let p = answer?;
            partition_err(ApiKey::Fetch, tp, p.error_code, None)?;
            let records = p.records.unwrap_or_default();
            if p.preferred_read_replica.0 >= 0 && records.is_empty() {
                conn = self.broker(p.preferred_read_replica.0).await?;
                answer = fetch_alone(&conn, tp, offset, max_bytes, max_wait_ms).await;
                continue;
            }
            return Ok(FetchedPartition {
                high_watermark: p.high_watermark,
                last_stable_offset: p.last_stable_offset,
                log_start_offset: p.log_start_offset,
                records,
                aborted: p
                    .aborted_transactions
                    .unwrap_or_default()
                    .iter()
                    .map(|a| (a.producer_id.0, a.first_offset))
                    .collect(),
            });
        }
        Err(missing(&conn, ApiKey::Fetch, tp))
    }

    fn fetches(&self) -> &super::fetches::Fetches {
        self.fetches
            .get_or_init(|| super::fetches::Fetches::start(super::fetches::BROKER_MAX_BYTES / i64::from(self.lanes())))
    }

    /// Produces one record batch to a partition with acks=all.
    pub async fn produce(&self, tp: &TopicPartition, batch: Bytes, timeout_ms: i32) -> Result<ProduceAck> {
        self.start_produce(tp, batch, timeout_ms).await?.ack().await
    }

    /// Puts one record batch for a partition on the wire (to its leader) and returns a handle to
    /// the acknowledgement. Batches started one after another on the same leader are written
    /// and answered in that order.
    pub async fn start_produce(&self, tp: &TopicPartition, batch: Bytes, timeout_ms: i32) -> Result<PendingProduce> {
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(timeout_ms)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(&tp.topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(tp.partition)
                    .with_records(Some(batch))])]);
        let conn = self.lane_conn(tp).await?;
        let in_flight = conn.enqueue(&request).await?;
        Ok(PendingProduce {
            tp: tp.clone(),
            broker: conn.broker().to_owned(),
            in_flight,
        })
    }

    /// Asks for a new idempotent (non-transactional) producer id.
    pub async fn init_producer_id(&self, timeout_ms: i32) -> Result<ProducerIdentity> {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(timeout_ms)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let conn = self.any_conn().await?;
        let (response, _) = conn.send(&request).await?;
        if let Some(code) = response.error_code.err() {
            return Err(Error::Request {
                api: ApiKey::InitProducerId,
                resource: format!("cluster {}", self.name()),
                code,
                message: None,
            });
        }
        Ok(ProducerIdentity {
            id: response.producer_id.0,
            epoch: response.producer_epoch,
        })
    }

    /// Creates topics; one result per topic. A topic that already exists counts as created.
    pub async fn create_topics(&self, specs: &[TopicSpec], timeout_ms: i32) -> Result<Vec<(String, Result<()>)>> {
        let request = CreateTopicsRequest::default().with_timeout_ms(timeout_ms).with_topics(
            specs
                .iter()
                .map(|s| {
                    CreatableTopic::default()
                        .with_name(topic_name(&s.name))
                        .with_num_partitions(s.partitions)
                        .with_replication_factor(-1)
                        .with_configs(
                            s.configs
                                .iter()
                                .map(|(k, v)| {
                                    CreatableTopicConfig::default()
                                        .with_name(StrBytes::from_string(k.clone()))
                                        .with_value(Some(StrBytes::from_string(v.clone())))
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
        let conn = self.any_conn().await?;
        let (response, _) = conn.send(&request).await?;
        Ok(response
            .topics
            .iter()
            .map(|t| {
                let name = t.name.0.to_string();
                let result = match t.error_code.err() {
                    None | Some(ResponseError::TopicAlreadyExists) => Ok(()),
                    Some(code) => Err(Error::Request {
                        api: ApiKey::CreateTopics,
                        resource: format!("topic {name}"),
                        code,
                        message: t.error_message.as_ref().map(|m| m.to_string()),
                    }),
                };
                (name, result)
            })
            .collect())
    }

    /// The configs of a topic as the broker reports them (some brokers report only those set
    /// explicitly).
    pub async fn describe_topic_config(&self, topic: &str) -> Result<TopicConfig> {
        let request = DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(TOPIC_RESOURCE)
            .with_resource_name(StrBytes::from_string(topic.to_owned()))
            .with_configuration_keys(None)]);
        let conn = self.any_conn().await?;
        let (response, _) = conn.send(&request).await?;
        let result = response
            .results
            .into_iter()
            .find(|r| r.resource_name.as_str() == topic)
            .ok_or_else(|| missing(&conn, ApiKey::DescribeConfigs, format!("topic {topic}")))?;
        if let Some(code) = result.error_code.err() {
            return Err(Error::Request {
                api: ApiKey::DescribeConfigs,
                resource: format!("topic {topic}"),
                code,
                message: result.error_message.map(|m| m.to_string()),
            });
        }
        Ok(result
            .configs
            .into_iter()
            .filter_map(|c| c.value.map(|v| (c.name.to_string(), v.to_string())))
            .collect())
    }

    /// Some configs (`keys`) of several topics in one request, one result per topic the broker
    /// answered. Brokers that report only explicitly set configs leave unset keys out.
    pub async fn describe_topic_configs(
        &self,
        topics: &[String],
        keys: &[&str],
    ) -> Result<Vec<(String, Result<TopicConfig>)>> {
        let wanted = |name: &str| keys.contains(&name);
        let request = DescribeConfigsRequest::default().with_resources(
            topics
                .iter()
                .map(|t| {
                    DescribeConfigsResource::default()
                        .with_resource_type(TOPIC_RESOURCE)
                        .with_resource_name(StrBytes::from_string(t.clone()))
                        .with_configuration_keys(Some(
                            keys.iter().map(|k| StrBytes::from_string((*k).to_owned())).collect(),
                        ))
                })
                .collect(),
        );
        let conn = self.any_conn().await?;
        let (response, _) = conn.send(&request).await?;
        Ok(response
            .results
            .into_iter()
            .map(|r| {
                let name = r.resource_name.to_string();
                let result = match r.error_code.err() {
                    Some(code) => Err(Error::Request {
                        api: ApiKey::DescribeConfigs,
                        resource: format!("topic {name}"),
                        code,
                        message: r.error_message.map(|m| m.to_string()),
                    }),
                    // Filtered again: a broker may ignore the requested keys.
                    None => Ok(r
                        .configs
                        .into_iter()
                        .filter(|c| wanted(c.name.as_str()))
                        .filter_map(|c| c.value.map(|v| (c.name.to_string(), v.to_string())))
                        .collect()),
                };
                (name, result)
            })
            .collect())
    }

    /// Raises a topic's partition count to `count`.
    pub async fn create_partitions(&self, topic: &str, count: i32, timeout_ms: i32) -> Result<()> {
        let request = CreatePartitionsRequest::default()
            .with_timeout_ms(timeout_ms)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name(topic))
                .with_count(count)
                .with_assignments(None)]);
        let conn = self.any_conn().await?;
        let (response, _) = conn.send(&request).await?;
        let result = response
            .results
            .iter()
            .find(|r| r.name.0.as_str() == topic)
            .ok_or_else(|| missing(&conn, ApiKey::CreatePartitions, format!("topic {topic}")))?;
        match result.error_code.err() {
            None => Ok(()),
            Some(code) => Err(Error::Request {
                api: ApiKey::CreatePartitions,
                resource: format!("topic {topic}"),
                code,
                message: result.error_message.as_ref().map(|m| m.to_string()),
            }),
        }
    }
}
