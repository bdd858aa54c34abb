//! Tests of the request builders and answer readers, against encoded and decoded messages.

use super::*;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};

fn tp() -> TopicPartition {
    TopicPartition::new("spans", 3)
}

#[test]
fn a_produce_request_carries_one_batch_per_partition_by_topic() {
    let (a, b, c) = (tp(), TopicPartition::new("spans", 4), TopicPartition::new("logs", 0));
    let request = build_produce_each(
        &[
            (&a, Bytes::from_static(b"a")),
            (&b, Bytes::from_static(b"b")),
            (&c, Bytes::from_static(b"c")),
        ],
        30_000,
    );
    assert_eq!((request.acks, request.timeout_ms), (-1, 30_000));
    let sent: Vec<(String, i32, Option<Bytes>)> = request
        .topic_data
        .iter()
        .flat_map(|t| {
            t.partition_data
                .iter()
                .map(|p| (t.name.0.to_string(), p.index, p.records.clone()))
        })
        .collect();
    assert_eq!(
        sent,
        vec![
            ("logs".to_owned(), 0, Some(Bytes::from_static(b"c"))),
            ("spans".to_owned(), 3, Some(Bytes::from_static(b"a"))),
            ("spans".to_owned(), 4, Some(Bytes::from_static(b"b"))),
        ]
    );
}

#[test]
fn a_produce_answer_names_each_partitions_error_and_throttle() {
    let answer = |code: i16, base_offset| {
        ProduceResponse::default()
            .with_throttle_time_ms(250)
            .with_responses(vec![
                TopicProduceResponse::default()
                    .with_name(topic_name("spans"))
                    .with_partition_responses(vec![
                        PartitionProduceResponse::default()
                            .with_index(3)
                            .with_error_code(code)
                            .with_base_offset(base_offset),
                        PartitionProduceResponse::default().with_index(5).with_base_offset(7),
                    ]),
                // Another topic's partition 4: not spans/4.
                TopicProduceResponse::default()
                    .with_name(topic_name("logs"))
                    .with_partition_responses(vec![PartitionProduceResponse::default().with_index(4)]),
            ])
    };
    let asked = [tp(), TopicPartition::new("spans", 5), TopicPartition::new("spans", 4)];
    let acks = process_produce_each(&answer(0, 42), "b1:9092", &asked);
    let ok: Vec<Option<(i64, i32)>> = acks
        .iter()
        .map(|a| a.as_ref().ok().map(|a| (a.base_offset, a.throttle_ms)))
        .collect();
    assert_eq!(ok, vec![Some((42, 250)), Some((7, 250)), None]);
    assert!(matches!(acks[2], Err(Error::MissingInResponse { .. })), "{:?}", acks[2]);
    let acks = process_produce_each(
        &answer(ResponseError::NotLeaderOrFollower.code(), -1),
        "b1:9092",
        &asked,
    );
    let err = acks[0].as_ref().expect_err("error code");
    assert_eq!(err.code(), Some(ResponseError::NotLeaderOrFollower));
    assert!(err.to_string().contains("spans/3"), "{err}");
    assert!(acks[1].is_ok(), "{:?}", acks[1]);
}

#[test]
fn list_offsets_asks_for_the_right_end_read_committed() {
    let earliest = build_list_offsets_each(&[(&tp(), OffsetSpec::Earliest)]);
    let latest = build_list_offsets_each(&[(&tp(), OffsetSpec::Latest)]);
    assert_eq!(earliest.isolation_level, READ_COMMITTED);
    assert_eq!(earliest.topics[0].partitions[0].timestamp, -2);
    assert_eq!(latest.topics[0].partitions[0].timestamp, -1);
    let response = ListOffsetsResponse::default().with_topics(vec![ListOffsetsTopicResponse::default()
        .with_name(topic_name("spans"))
        .with_partitions(vec![ListOffsetsPartitionResponse::default()
            .with_partition_index(3)
            .with_offset(77)])]);
    assert_eq!(
        process_list_offsets_many(&response, "b", &[tp()])
            .remove(0)
            .expect("ok"),
        77
    );
}

#[test]
fn many_list_offsets_go_in_one_request_and_each_partition_gets_its_own_answer() {
    let (a0, a1, b0) = (
        TopicPartition::new("a", 0),
        TopicPartition::new("a", 1),
        TopicPartition::new("b", 0),
    );
    let asked = [a0.clone(), b0.clone(), a1.clone()];
    let request = build_list_offsets_many(&asked, OffsetSpec::Latest);
    assert_eq!(request.isolation_level, READ_COMMITTED);
    let layout: Vec<(String, Vec<(i32, i64)>)> = request
        .topics
        .iter()
        .map(|t| {
            let parts = t.partitions.iter().map(|p| (p.partition_index, p.timestamp)).collect();
            (t.name.0.to_string(), parts)
        })
        .collect();
    assert_eq!(
        layout,
        vec![("a".into(), vec![(0, -1), (1, -1)]), ("b".into(), vec![(0, -1)])]
    );
    // a/0 answered, a/1 with an error, b/0 left out; an unasked partition is ignored.
    let response = ListOffsetsResponse::default().with_topics(vec![
        ListOffsetsTopicResponse::default()
            .with_name(topic_name("a"))
            .with_partitions(vec![
                ListOffsetsPartitionResponse::default()
                    .with_partition_index(1)
                    .with_error_code(ResponseError::NotLeaderOrFollower.code()),
                ListOffsetsPartitionResponse::default()
                    .with_partition_index(0)
                    .with_offset(12),
                ListOffsetsPartitionResponse::default()
                    .with_partition_index(7)
                    .with_offset(99),
            ]),
        ListOffsetsTopicResponse::default()
            .with_name(topic_name("c"))
            .with_partitions(vec![ListOffsetsPartitionResponse::default()
                .with_partition_index(0)
                .with_offset(5)]),
    ]);
    let answers = process_list_offsets_many(&response, "b1:9092", &asked);
    assert_eq!(answers.len(), 3);
    assert_eq!(answers[0].as_ref().expect("a/0 answered"), &12);
    let b0_missing = answers[1].as_ref().expect_err("b/0 left out");
    assert!(matches!(b0_missing, Error::MissingInResponse { .. }), "{b0_missing:?}");
    let a1_error = answers[2].as_ref().expect_err("a/1 failed");
    assert_eq!(a1_error.code(), Some(ResponseError::NotLeaderOrFollower));
    assert!(a1_error.to_string().contains("a/1"), "{a1_error}");
}

#[test]
fn every_fetch_reads_committed_and_a_shared_one_groups_partitions_by_topic() {
    assert_eq!(build_fetch(&tp(), None, 5, 1024, 500).isolation_level, READ_COMMITTED);
    let (a0, a1, b0) = (
        TopicPartition::new("a", 0),
        TopicPartition::new("a", 1),
        TopicPartition::new("b", 0),
    );
    let request = build_shared_fetch(
        &[(&a0, None, 10, 1000), (&b0, None, 20, 2000), (&a1, None, 30, 3000)],
        500,
        4000,
    );
    assert_eq!(request.isolation_level, READ_COMMITTED);
    assert_eq!(request.max_bytes, 4000, "the sum, capped");
    let layout: Vec<(String, Vec<(i32, i64)>)> = request
        .topics
        .iter()
        .map(|t| {
            (
                t.topic.0.to_string(),
                t.partitions.iter().map(|p| (p.partition, p.fetch_offset)).collect(),
            )
        })
        .collect();
    assert_eq!(
        layout,
        vec![("a".into(), vec![(0, 10), (1, 30)]), ("b".into(), vec![(0, 20)])]
    );
}

#[test]
fn a_fetch_answer_from_a_leader_may_point_at_a_read_replica() {
    let p = PartitionData::default()
        .with_partition_index(3)
        .with_preferred_read_replica(BrokerId(2));
    assert!(matches!(
        process_fetched_partition(p, &tp()),
        Ok(Fetched::ReadReplica(2))
    ));
    let p = PartitionData::default()
        .with_partition_index(3)
        .with_high_watermark(10)
        .with_last_stable_offset(8)
        .with_preferred_read_replica(BrokerId(-1))
        .with_records(Some(Bytes::from_static(b"raw")));
    match process_fetched_partition(p, &tp()) {
        Ok(Fetched::Records(f)) => assert_eq!(
            (f.high_watermark, f.last_stable_offset, &f.records[..]),
            (10, 8, &b"raw"[..])
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_existing_topic_counts_as_created() {
    let response = CreateTopicsResponse::default().with_topics(vec![
        CreatableTopicResult::default()
            .with_name(topic_name("a"))
            .with_error_code(ResponseError::TopicAlreadyExists.code()),
        CreatableTopicResult::default()
            .with_name(topic_name("b"))
            .with_error_code(ResponseError::TopicAuthorizationFailed.code()),
    ]);
    let results = process_create_topics(&response);
    assert!(results[0].1.is_ok());
    assert_eq!(
        results[1].1.as_ref().err().and_then(Error::code),
        Some(ResponseError::TopicAuthorizationFailed)
    );
}

#[test]
fn described_configs_keep_only_the_keys_asked_for() {
    let response = DescribeConfigsResponse::default().with_results(vec![DescribeConfigsResult::default()
        .with_resource_name(StrBytes::from_static_str("spans"))
        .with_configs(vec![
            DescribeConfigsResourceResult::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_value(Some(StrBytes::from_static_str("1000"))),
            DescribeConfigsResourceResult::default()
                .with_name(StrBytes::from_static_str("cleanup.policy"))
                .with_value(Some(StrBytes::from_static_str("delete"))),
        ])]);
    let only = process_describe_configs(response.clone(), Some(&["retention.ms"]));
    let configs = only[0].1.as_ref().expect("ok");
    assert_eq!(configs.values.keys().collect::<Vec<_>>(), vec!["retention.ms"]);
    let all = process_describe_configs(response, None);
    assert_eq!(all[0].1.as_ref().expect("ok").values.len(), 2);
}

#[test]
fn described_configs_tell_those_set_on_the_topic_from_defaults() {
    let config = |name: &'static str, value: &'static str, source: i8| {
        DescribeConfigsResourceResult::default()
            .with_name(StrBytes::from_static_str(name))
            .with_value(Some(StrBytes::from_static_str(value)))
            .with_config_source(source)
    };
    // Sources as Kafka numbers them: 1 the topic, 4 the broker's file, 5 Kafka's default.
    let response = DescribeConfigsResponse::default().with_results(vec![DescribeConfigsResult::default()
        .with_resource_name(StrBytes::from_static_str("spans"))
        .with_configs(vec![
            config("min.insync.replicas", "2", 1),
            config("retention.ms", "1000", 4),
            config("segment.bytes", "1073741824", 5),
        ])]);
    let described = process_describe_configs(response, None).remove(0).1.expect("ok");
    assert_eq!(described.values.len(), 3);
    assert_eq!(
        described.set_on_topic.iter().collect::<Vec<_>>(),
        ["min.insync.replicas"]
    );
}

#[test]
fn a_validated_topic_tells_its_replication_factor_when_the_broker_says() {
    use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
    let answer = |rf: i16, code: i16| {
        CreateTopicsResponse::default().with_topics(vec![CreatableTopicResult::default()
            .with_name(topic_name("spans"))
            .with_replication_factor(rf)
            .with_error_code(code)])
    };
    assert_eq!(
        process_validated_replication_factor(&answer(3, 0), "spans").ok(),
        Some(Some(3))
    );
    // Not said (before v5, or not allowed to describe the topic's configs).
    assert_eq!(
        process_validated_replication_factor(&answer(-1, 0), "spans").ok(),
        Some(None)
    );
    assert_eq!(
        process_validated_replication_factor(&answer(3, 0), "other").ok(),
        Some(None)
    );
    // INVALID_REPLICATION_FACTOR: more replicas asked than brokers.
    let refused = process_validated_replication_factor(&answer(-1, 38), "spans");
    assert_eq!(
        refused.err().and_then(|e| e.code()),
        Some(ResponseError::InvalidReplicationFactor)
    );
}
