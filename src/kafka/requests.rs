//! The requests strait makes, as pure functions: `build_*` makes a request from what is asked,
//! `process_*` turns the answer into a result whose errors name the topic and partition; and the
//! types of what is asked and answered. The
//! IO between them (which broker, one send) is [`super::Cluster`]'s, in `client.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, FetchRequest, FetchResponse, InitProducerIdRequest,
    InitProducerIdResponse, ListOffsetsRequest, ListOffsetsResponse, ProduceRequest, ProduceResponse, ProducerId,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::error::{Error, Result};
use super::{ResponseError, TopicId, TopicPartition, FETCH_BY_NAME_MAX_VERSION};

/// Which end of a partition's log to ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The last stable offset (read_committed), i.e. where new data will appear.
    Latest,
    /// The first offset whose record timestamp is at or after this one (ms since the Unix
    /// epoch); `-1` when no record is that new.
    Timestamp(i64),
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
    /// Bytes of memory `records` keeps alive: the whole response when it is a slice of one (a
    /// `Bytes` slice holds all of its buffer), 0 when only `records` itself. See
    /// [`Self::retained_bytes`].
    pub retained: usize,
}

impl FetchedPartition {
    /// What `records` keeps alive: at least its own length.
    pub fn retained_bytes(&self) -> usize {
        self.retained.max(self.records.len())
    }

    /// The end a read_committed reader can read to ([`visible_end`]).
    pub fn visible_end(&self) -> i64 {
        visible_end(self.high_watermark, self.last_stable_offset)
    }
}

/// The end a read_committed reader can read to: the last stable offset, when the broker gives
/// one (it answers -1 below Fetch 4), within the high watermark.
pub(crate) fn visible_end(high_watermark: i64, last_stable_offset: i64) -> i64 {
    match last_stable_offset {
        lso if lso >= 0 => lso.min(high_watermark),
        _ => high_watermark,
    }
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
    /// Replicas of each partition; -1 for the broker's `default.replication.factor`.
    pub replication_factor: i16,
    /// Topic configs to set.
    pub configs: BTreeMap<String, String>,
}

/// A topic's configs as (name, value).
pub type TopicConfig = BTreeMap<String, String>;

/// A topic's configs as DescribeConfigs reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DescribedConfigs {
    /// Every config that has a value.
    pub values: TopicConfig,
    /// The names of those set on the topic itself, not inherited from the broker's defaults.
    pub set_on_topic: BTreeSet<String>,
}

/// DescribeConfigs' `config_source` of a config set on the topic (`TOPIC_CONFIG`).
const TOPIC_CONFIG_SOURCE: i8 = 1;

const READ_COMMITTED: i8 = 1;
const TOPIC_RESOURCE: i8 = 2;

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

pub(super) fn partition_err(api: ApiKey, tp: &TopicPartition, code: i16, message: Option<&StrBytes>) -> Result<()> {
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

pub(super) fn missing(broker: &str, api: ApiKey, resource: impl std::fmt::Display) -> Error {
    Error::MissingInResponse {
        broker: broker.to_owned(),
        api,
        resource: resource.to_string(),
    }
}

fn request_err(api: ApiKey, resource: String, code: ResponseError, message: Option<&StrBytes>) -> Error {
    Error::Request {
        api,
        resource,
        code,
        message: message.map(|m| m.to_string()),
    }
}

/// ListOffsets of several partitions (of one leader) in one request, each at `spec`.
pub(super) fn build_list_offsets_many(tps: &[TopicPartition], spec: OffsetSpec) -> ListOffsetsRequest {
    let asks: Vec<(&TopicPartition, OffsetSpec)> = tps.iter().map(|tp| (tp, spec)).collect();
    build_list_offsets_each(&asks)
}

/// ListOffsets of several partitions (of one leader, each named once) in one request, each at
/// its own spec.
pub(super) fn build_list_offsets_each(asks: &[(&TopicPartition, OffsetSpec)]) -> ListOffsetsRequest {
    let mut by_topic: BTreeMap<&str, Vec<ListOffsetsPartition>> = BTreeMap::new();
    for (tp, spec) in asks {
        let timestamp = match spec {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            // Negative values are the special queries above; no record is older than the epoch.
            OffsetSpec::Timestamp(ms) => (*ms).max(0),
        };
        by_topic.entry(tp.topic.as_str()).or_default().push(
            ListOffsetsPartition::default()
                .with_partition_index(tp.partition)
                .with_timestamp(timestamp),
        );
    }
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(READ_COMMITTED)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(topic, partitions)| {
                    ListOffsetsTopic::default()
                        .with_name(topic_name(topic))
                        .with_partitions(partitions)
                })
                .collect(),
        )
}

/// The offset of each partition asked in [`build_list_offsets_many`], in the order asked: its
/// error when the broker answered one for it, or left it out.
pub(super) fn process_list_offsets_many(
    response: &ListOffsetsResponse,
    broker: &str,
    tps: &[TopicPartition],
) -> Vec<Result<i64>> {
    let answered: HashMap<(&str, i32), (i16, i64)> = response
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| ((t.name.0.as_str(), p.partition_index), (p.error_code, p.offset)))
        })
        .collect();
    tps.iter()
        .map(|tp| {
            let (code, offset) = *answered
                .get(&(tp.topic.as_str(), tp.partition))
                .ok_or_else(|| missing(broker, ApiKey::ListOffsets, tp))?;
            partition_err(ApiKey::ListOffsets, tp, code, None)?;
            Ok(offset)
        })
        .collect()
}

/// A read_committed Fetch of one partition in a request of its own, of topic `id` when known
/// (send it at [`FETCH_BY_NAME_MAX_VERSION`] at most when not).
pub(super) fn build_fetch(
    tp: &TopicPartition,
    id: Option<TopicId>,
    offset: i64,
    max_bytes: i32,
    max_wait_ms: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_isolation_level(READ_COMMITTED)
        .with_topics(vec![fetch_topic(&tp.topic, id).with_partitions(vec![
            FetchPartition::default()
                .with_partition(tp.partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(max_bytes),
        ])])
}

/// A topic of a Fetch: by name, and by id when known (versions 13+ send only the id).
fn fetch_topic(name: &str, id: Option<TopicId>) -> FetchTopic {
    FetchTopic::default()
        .with_topic(topic_name(name))
        .with_topic_id(uuid::Uuid::from_bytes(id.unwrap_or_default()))
}

/// The highest Fetch version for topics of these ids: any unknown one (`None`) needs names.
pub(super) fn fetch_version_cap(mut ids: impl Iterator<Item = Option<TopicId>>) -> i16 {
    if ids.all(|id| id.is_some()) {
        i16::MAX
    } else {
        FETCH_BY_NAME_MAX_VERSION
    }
}

/// A known topic id: `None` for the zero id, which stands for "unknown".
pub fn known_topic_id(id: TopicId) -> Option<TopicId> {
    (id != TopicId::default()).then_some(id)
}

/// One read_committed Fetch for several partitions of one broker, `(partition, offset,
/// max_bytes)` each, asking for their sum up to `request_max_bytes`.
pub(super) fn build_shared_fetch(
    parts: &[(&TopicPartition, Option<TopicId>, i64, i32)],
    max_wait_ms: i32,
    request_max_bytes: i64,
) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    let mut total: i64 = 0;
    for &(tp, id, offset, max_bytes) in parts {
        total += i64::from(max_bytes);
        let partition = FetchPartition::default()
            .with_partition(tp.partition)
            .with_fetch_offset(offset)
            .with_partition_max_bytes(max_bytes);
        // Two partitions of one name may be pinned to two ids (one started before the topic
        // was created again, one after): each id is a topic of its own.
        let uuid = uuid::Uuid::from_bytes(id.unwrap_or_default());
        match topics
            .iter_mut()
            .find(|t| t.topic.0.as_str() == tp.topic && t.topic_id == uuid)
        {
            Some(t) => t.partitions.push(partition),
            None => topics.push(fetch_topic(&tp.topic, id).with_partitions(vec![partition])),
        }
    }
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(total.min(request_max_bytes) as i32)
        .with_isolation_level(READ_COMMITTED)
        .with_topics(topics)
}

/// The partition's part of a Fetch answer made for it alone.
pub(super) fn process_fetch(response: FetchResponse, broker: &str, tp: &TopicPartition) -> Result<PartitionData> {
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
        .ok_or_else(|| missing(broker, ApiKey::Fetch, tp))
}

/// What a partition's fetch answer means: its records, or where to read them instead (a
/// preferred read replica, KIP-392, when the leader sent none).
#[derive(Debug)]
pub(super) enum Fetched {
    Records(FetchedPartition),
    ReadReplica(i32),
}

pub(super) fn process_fetched_partition(p: PartitionData, tp: &TopicPartition) -> Result<Fetched> {
    partition_err(ApiKey::Fetch, tp, p.error_code, None)?;
    let records = p.records.unwrap_or_default();
    if p.preferred_read_replica.0 >= 0 && records.is_empty() {
        return Ok(Fetched::ReadReplica(p.preferred_read_replica.0));
    }
    Ok(Fetched::Records(FetchedPartition {
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
        retained: 0,
    }))
}

/// One record batch for each partition of `batches` (each named once: a produce request
/// carries one batch per partition), acks=all.
pub(super) fn build_produce_each(batches: &[(&TopicPartition, Bytes)], timeout_ms: i32) -> ProduceRequest {
    let mut by_topic: BTreeMap<&str, Vec<PartitionProduceData>> = BTreeMap::new();
    for (tp, batch) in batches {
        by_topic.entry(tp.topic.as_str()).or_default().push(
            PartitionProduceData::default()
                .with_index(tp.partition)
                .with_records(Some(batch.clone())),
        );
    }
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(
            by_topic
                .into_iter()
                .map(|(topic, partitions)| {
                    TopicProduceData::default()
                        .with_name(topic_name(topic))
                        .with_partition_data(partitions)
                })
                .collect(),
        )
}

/// The acknowledgement of each partition of a [`build_produce_each`] request, in the order
/// asked: its base offset, or its own error (one absent from the answer included).
pub(super) fn process_produce_each(
    response: &ProduceResponse,
    broker: &str,
    tps: &[TopicPartition],
) -> Vec<Result<ProduceAck>> {
    let mut answered: HashMap<(&str, i32), &kafka_protocol::messages::produce_response::PartitionProduceResponse> =
        HashMap::new();
    for t in &response.responses {
        for p in &t.partition_responses {
            answered.insert((t.name.0.as_str(), p.index), p);
        }
    }
    tps.iter()
        .map(|tp| {
            let p = answered
                .get(&(tp.topic.as_str(), tp.partition))
                .ok_or_else(|| missing(broker, ApiKey::Produce, tp))?;
            partition_err(ApiKey::Produce, tp, p.error_code, p.error_message.as_ref())?;
            Ok(ProduceAck {
                base_offset: p.base_offset,
                throttle_ms: response.throttle_time_ms,
            })
        })
        .collect()
}

/// A new idempotent (non-transactional) producer id.
pub(super) fn build_init_producer_id(timeout_ms: i32) -> InitProducerIdRequest {
    InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(timeout_ms)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

pub(super) fn process_init_producer_id(response: &InitProducerIdResponse, cluster: &str) -> Result<ProducerIdentity> {
    if let Some(code) = response.error_code.err() {
        return Err(request_err(
            ApiKey::InitProducerId,
            format!("cluster {cluster}"),
            code,
            None,
        ));
    }
    Ok(ProducerIdentity {
        id: response.producer_id.0,
        epoch: response.producer_epoch,
    })
}

/// Creates `specs`, or with `validate_only` only asks the broker whether it would and how.
pub(super) fn build_create_topics(specs: &[TopicSpec], timeout_ms: i32, validate_only: bool) -> CreateTopicsRequest {
    let topic = |s: &TopicSpec| {
        let configs = s.configs.iter().map(|(k, v)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(k.clone()))
                .with_value(Some(StrBytes::from_string(v.clone())))
        });
        CreatableTopic::default()
            .with_name(topic_name(&s.name))
            .with_num_partitions(s.partitions)
            .with_replication_factor(s.replication_factor)
            .with_configs(configs.collect())
    };
    CreateTopicsRequest::default()
        .with_timeout_ms(timeout_ms)
        .with_validate_only(validate_only)
        .with_topics(specs.iter().map(topic).collect())
}

/// One result per topic; a topic that already exists counts as created.
pub(super) fn process_create_topics(response: &CreateTopicsResponse) -> Vec<(String, Result<()>)> {
    response
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let result = match t.error_code.err() {
                None | Some(ResponseError::TopicAlreadyExists) => Ok(()),
                Some(code) => Err(request_err(
                    ApiKey::CreateTopics,
                    format!("topic {name}"),
                    code,
                    t.error_message.as_ref(),
                )),
            };
            (name, result)
        })
        .collect()
}

/// The replication factor a validate-only CreateTopics says `topic` would get; `None` when the
/// broker does not say (CreateTopics before v5, or no DescribeConfigs permission on the topic).
pub(super) fn process_validated_replication_factor(
    response: &CreateTopicsResponse,
    topic: &str,
) -> Result<Option<i16>> {
    let reported = response
        .topics
        .iter()
        .find(|t| t.name.0.as_str() == topic)
        .map(|t| t.replication_factor);
    match process_create_topics(response)
        .into_iter()
        .find(|(name, _)| name == topic)
    {
        Some((_, Err(e))) => Err(e),
        _ => Ok(reported.filter(|rf| *rf > 0)),
    }
}

/// The configs of `topics`: only `keys`, or all when `None`.
pub(super) fn build_describe_configs(topics: &[String], keys: Option<&[&str]>) -> DescribeConfigsRequest {
    let keys = keys.map(|keys| keys.iter().map(|k| StrBytes::from_string((*k).to_owned())).collect());
    DescribeConfigsRequest::default().with_resources(
        topics
            .iter()
            .map(|t| {
                DescribeConfigsResource::default()
                    .with_resource_type(TOPIC_RESOURCE)
                    .with_resource_name(StrBytes::from_string(t.clone()))
                    .with_configuration_keys(keys.clone())
            })
            .collect(),
    )
}

/// One result per topic the broker answered, with the configs that have a value (only
/// `keys`, when given: a broker may ignore the requested keys) and which of them the topic sets.
pub(super) fn process_describe_configs(
    response: DescribeConfigsResponse,
    keys: Option<&[&str]>,
) -> Vec<(String, Result<DescribedConfigs>)> {
    let wanted = |name: &str| keys.is_none_or(|keys| keys.contains(&name));
    response
        .results
        .into_iter()
        .map(|r| {
            let name = r.resource_name.to_string();
            let result = match r.error_code.err() {
                Some(code) => Err(request_err(
                    ApiKey::DescribeConfigs,
                    format!("topic {name}"),
                    code,
                    r.error_message.as_ref(),
                )),
                None => {
                    let mut described = DescribedConfigs::default();
                    for c in r.configs.into_iter().filter(|c| wanted(c.name.as_str())) {
                        let Some(value) = c.value else { continue };
                        if c.config_source == TOPIC_CONFIG_SOURCE {
                            described.set_on_topic.insert(c.name.to_string());
                        }
                        described.values.insert(c.name.to_string(), value.to_string());
                    }
                    Ok(described)
                }
            };
            (name, result)
        })
        .collect()
}

pub(super) fn build_create_partitions(topic: &str, count: i32, timeout_ms: i32) -> CreatePartitionsRequest {
    CreatePartitionsRequest::default()
        .with_timeout_ms(timeout_ms)
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(topic_name(topic))
            .with_count(count)
            .with_assignments(None)])
}

pub(super) fn process_create_partitions(response: &CreatePartitionsResponse, broker: &str, topic: &str) -> Result<()> {
    let result = response
        .results
        .iter()
        .find(|r| r.name.0.as_str() == topic)
        .ok_or_else(|| missing(broker, ApiKey::CreatePartitions, format!("topic {topic}")))?;
    match result.error_code.err() {
        None => Ok(()),
        Some(code) => Err(request_err(
            ApiKey::CreatePartitions,
            format!("topic {topic}"),
            code,
            result.error_message.as_ref(),
        )),
    }
}

#[cfg(test)]
#[path = "requests_tests.rs"]
mod tests;
