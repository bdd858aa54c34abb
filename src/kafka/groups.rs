//! Consumer group requests: listing groups, finding a group's coordinator, reading and
//! committing its offsets, and describing its members. Built and processed by pure functions,
//! sent by [`Cluster`] methods, as in `requests.rs` and `client.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::{
    ApiKey, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::cluster::Cluster;
use super::conn::Conn;
use super::error::{Error, Result};
use super::TopicPartition;

/// A group's committed offset of one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The next record the group reads.
    pub offset: i64,
    /// The metadata string committed with it.
    pub metadata: Option<String>,
}

/// What DescribeGroups says about a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupState {
    /// "Empty", "Stable", "Dead", ...
    pub state: String,
    /// Members currently in the group.
    pub members: usize,
}

impl GroupState {
    /// Whether consumers are in the group now.
    pub fn is_active(&self) -> bool {
        self.members > 0 || !matches!(self.state.as_str(), "Empty" | "Dead" | "")
    }
}

fn group_err(api: ApiKey, group: &str, code: i16, message: Option<&StrBytes>) -> Result<()> {
    match code.err() {
        None => Ok(()),
        Some(code) => Err(Error::Request {
            api,
            resource: format!("group {group}"),
            code,
            message: message.map(|m| m.to_string()),
        }),
    }
}

fn group_id(group: &str) -> GroupId {
    GroupId(StrBytes::from_string(group.to_owned()))
}

pub(super) fn build_find_coordinator(group: &str) -> FindCoordinatorRequest {
    FindCoordinatorRequest::default()
        .with_key(StrBytes::from_string(group.to_owned()))
        .with_key_type(0)
}

/// The coordinator's node id.
pub(super) fn process_find_coordinator(response: &FindCoordinatorResponse, group: &str) -> Result<i32> {
    group_err(
        ApiKey::FindCoordinator,
        group,
        response.error_code,
        response.error_message.as_ref(),
    )?;
    Ok(response.node_id.0)
}

pub(super) fn process_list_groups(response: &ListGroupsResponse, broker: &str) -> Result<Vec<String>> {
    group_err(
        ApiKey::ListGroups,
        &format!("list on {broker}"),
        response.error_code,
        None,
    )?;
    Ok(response.groups.iter().map(|g| g.group_id.0.to_string()).collect())
}

/// Every committed offset of the group (all topics).
pub(super) fn build_offset_fetch(group: &str) -> OffsetFetchRequest {
    OffsetFetchRequest::default()
        .with_group_id(group_id(group))
        .with_topics(None)
        .with_require_stable(true)
}

pub(super) fn process_offset_fetch(
    response: &OffsetFetchResponse,
    group: &str,
) -> Result<BTreeMap<TopicPartition, Committed>> {
    // A group that does not exist has committed nothing.
    if response.error_code.err() == Some(kafka_protocol::error::ResponseError::GroupIdNotFound) {
        return Ok(BTreeMap::new());
    }
    group_err(ApiKey::OffsetFetch, group, response.error_code, None)?;
    let mut out = BTreeMap::new();
    for topic in &response.topics {
        for p in &topic.partitions {
            let tp = TopicPartition::new(topic.name.0.to_string(), p.partition_index);
            super::requests::partition_err(ApiKey::OffsetFetch, &tp, p.error_code, None)?;
            // -1: nothing committed for this partition.
            if p.committed_offset >= 0 {
                out.insert(
                    tp,
                    Committed {
                        offset: p.committed_offset,
                        metadata: p.metadata.as_ref().map(|m| m.to_string()),
                    },
                );
            }
        }
    }
    Ok(out)
}

pub(super) fn process_describe_group(response: &DescribeGroupsResponse, group: &str) -> Result<GroupState> {
    let described = response
        .groups
        .iter()
        .find(|g| g.group_id.0.as_str() == group)
        .ok_or_else(|| super::requests::missing("coordinator", ApiKey::DescribeGroups, format!("group {group}")))?;
    // Kafka 4's group coordinator answers GROUP_ID_NOT_FOUND for a group that does not exist;
    // older ones describe it as Dead.
    if described.error_code.err() == Some(kafka_protocol::error::ResponseError::GroupIdNotFound) {
        return Ok(GroupState {
            state: "Dead".to_owned(),
            members: 0,
        });
    }
    group_err(
        ApiKey::DescribeGroups,
        group,
        described.error_code,
        described.error_message.as_ref(),
    )?;
    Ok(GroupState {
        state: described.group_state.to_string(),
        members: described.members.len(),
    })
}

/// A commit outside any generation (a group without members accepts it), as admin tools do.
pub(super) fn build_offset_commit(group: &str, offsets: &BTreeMap<TopicPartition, Committed>) -> OffsetCommitRequest {
    let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for (tp, c) in offsets {
        topics.entry(tp.topic.as_str()).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(tp.partition)
                .with_committed_offset(c.offset)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(c.metadata.clone().map(StrBytes::from_string)),
        );
    }
    OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::default())
        .with_retention_time_ms(-1)
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name.to_owned())))
                        .with_partitions(partitions)
                })
                .collect(),
        )
}

pub(super) fn process_offset_commit(response: &OffsetCommitResponse) -> Vec<(TopicPartition, Result<()>)> {
    response
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                let result = super::requests::partition_err(ApiKey::OffsetCommit, &tp, p.error_code, None);
                (tp, result)
            })
        })
        .collect()
}

impl Cluster {
    /// The ids of every consumer group, asked of every broker (each lists the groups it
    /// coordinates).
    pub async fn list_groups(&self) -> Result<Vec<String>> {
        self.metadata(Some(&[])).await?;
        let mut groups = Vec::new();
        for (node_id, _) in self.known_brokers() {
            let conn = self.broker(node_id).await?;
            let (response, _) = conn.send(&ListGroupsRequest::default()).await?;
            groups.extend(process_list_groups(&response, conn.broker())?);
        }
        groups.sort();
        groups.dedup();
        Ok(groups)
    }

    /// The connection to `group`'s coordinator.
    async fn coordinator(&self, group: &str) -> Result<Arc<Conn>> {
        let conn = self.any_conn().await?;
        let (response, _) = conn.send(&build_find_coordinator(group)).await?;
        let node_id = process_find_coordinator(&response, group)?;
        match self.broker(node_id).await {
            Err(Error::UnknownBroker { .. }) => {
                self.metadata(Some(&[])).await?;
                self.broker(node_id).await
            }
            other => other,
        }
    }

    /// The group's committed offsets, by partition.
    pub async fn committed_offsets(&self, group: &str) -> Result<BTreeMap<TopicPartition, Committed>> {
        let conn = self.coordinator(group).await?;
        let (response, _) = conn.send(&build_offset_fetch(group)).await?;
        process_offset_fetch(&response, group)
    }

    /// The group's state and member count.
    pub async fn describe_group(&self, group: &str) -> Result<GroupState> {
        let conn = self.coordinator(group).await?;
        let request = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
        let (response, _) = conn.send(&request).await?;
        process_describe_group(&response, group)
    }

    /// Commits `offsets` for `group` outside any generation; one result per partition.
    pub async fn commit_offsets(
        &self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, Committed>,
    ) -> Result<Vec<(TopicPartition, Result<()>)>> {
        let conn = self.coordinator(group).await?;
        let (response, _) = conn.send(&build_offset_commit(group, offsets)).await?;
        Ok(process_offset_commit(&response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::offset_fetch_response::{OffsetFetchResponsePartition, OffsetFetchResponseTopic};

    #[test]
    fn a_commit_is_outside_any_generation_and_keeps_the_metadata() {
        let mut offsets = BTreeMap::new();
        offsets.insert(
            TopicPartition::new("spans", 1),
            Committed {
                offset: 42,
                metadata: Some("ingester-7".into()),
            },
        );
        let r = build_offset_commit("jaeger", &offsets);
        assert_eq!((r.generation_id_or_member_epoch, r.member_id.as_str()), (-1, ""));
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.partition_index, p.committed_offset), (1, 42));
        assert_eq!(p.committed_metadata.as_ref().map(|m| m.as_str()), Some("ingester-7"));
    }

    #[test]
    fn uncommitted_partitions_are_left_out_and_errors_name_the_group() {
        let response = OffsetFetchResponse::default().with_topics(vec![OffsetFetchResponseTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("spans")))
            .with_partitions(vec![
                OffsetFetchResponsePartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(10),
                OffsetFetchResponsePartition::default()
                    .with_partition_index(1)
                    .with_committed_offset(-1),
            ])]);
        let got = process_offset_fetch(&response, "jaeger").expect("no error");
        assert_eq!(
            got.keys().cloned().collect::<Vec<_>>(),
            vec![TopicPartition::new("spans", 0)]
        );
        // GROUP_AUTHORIZATION_FAILED (30)
        let denied = OffsetFetchResponse::default().with_error_code(30);
        let e = process_offset_fetch(&denied, "jaeger").expect_err("denied");
        assert!(e.to_string().contains("group jaeger"), "{e}");
    }

    #[test]
    fn a_group_with_members_or_rebalancing_is_active() {
        let g = |state: &str, members| GroupState {
            state: state.into(),
            members,
        };
        assert!(!g("Empty", 0).is_active());
        assert!(!g("Dead", 0).is_active());
        assert!(g("Stable", 2).is_active());
        assert!(g("PreparingRebalance", 0).is_active());
    }
}
