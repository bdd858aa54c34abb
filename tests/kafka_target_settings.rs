//! What strait writes on an Apache Kafka target, read back with librdkafka: every
//! `compression.codec` gives byte-identical records in batches of that codec, and
//! `topics.target_configs` sets configs on the target topics strait creates, over the ones
//! copied from the source, a config the target refuses being reported rather than dropped.
//!
//! The tests share one source and one target cluster; every test has topics of its own.

mod common;

use std::collections::BTreeMap;

use common::target::{partition_count, records, topic_configs, wait_for_target};
use common::topics::{clusters, TIMEOUT};
use common::{Rec, Strait};
use strait::config::{Codec, TargetConfigRule};
use strait::kafka::TopicPartition;

async fn config_value(bootstrap: &str, topic: &str, name: &str) -> Option<String> {
    topic_configs(bootstrap, topic)
        .await
        .get(name)
        .and_then(|e| e.value.clone())
}

/// The codec id (attribute bits 0-2) of every record batch in a Fetch response's records,
/// read from the v2 batch layout itself: base offset (8 bytes), batch length (4), partition
/// leader epoch (4), magic (1), CRC (4), attributes (2).
fn batch_codecs(mut records: &[u8]) -> Vec<i16> {
    let mut codecs = Vec::new();
    while records.len() >= 23 {
        let len = i32::from_be_bytes(records[8..12].try_into().expect("4 bytes"));
        let end = 12 + usize::try_from(len).expect("a positive batch length");
        if end > records.len() {
            break; // a partial batch at the end of the response
        }
        assert_eq!(records[16], 2, "magic v2");
        codecs.push(i16::from_be_bytes(records[21..23].try_into().expect("2 bytes")) & 0x07);
        records = &records[end..];
    }
    codecs
}

/// For each codec: records with keys, values and headers replicated with
/// `compression.codec` set to it arrive byte-identical as librdkafka reads them, in batches
/// the target stores with that codec's id (or uncompressed, where the codec would not shrink
/// one: never another codec, so a strait writing zstd fails this).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_target_codec_arrives_byte_identical_in_batches_of_that_codec() {
    let Some((source, target)) = clusters().await else {
        return;
    };
    let codecs = [
        (Codec::Zstd, 4),
        (Codec::Lz4, 3),
        (Codec::Gzip, 1),
        (Codec::Snappy, 2),
        (Codec::None, 0),
    ];
    let checker = strait::kafka::Cluster::new("check", vec![target.plain_bootstrap()], "check", TIMEOUT);
    for (codec, id) in codecs {
        let topic = common::topic(&format!("codec-{codec}"));
        common::create_topic(&source.plain_bootstrap(), &topic, 2, &[]).await;
        let p = common::producer(&source.plain_bootstrap(), &[("linger.ms", "5")]);
        let mut sent: BTreeMap<i32, Vec<Rec>> = BTreeMap::new();
        for part in 0..2 {
            let recs: Vec<Rec> = (0..150).map(|i| common::tricky(part, codec.name(), i)).collect();
            common::send_all(&p, &topic, part, &recs).await;
            sent.insert(part, recs);
        }
        let mut config = common::config(&source.bootstrap(), &target.bootstrap(), &topic);
        config.compression.codec = codec;
        let strait = Strait::start(config);
        let counts = BTreeMap::from([(0, 150), (1, 150)]);
        wait_for_target(&target.plain_bootstrap(), &topic, &counts, "the records on the target").await;
        strait.stop().await;

        assert_eq!(
            records(&target.plain_bootstrap(), &topic, &[0, 1]),
            sent,
            "{codec}: the source records, byte-identical, as librdkafka reads them"
        );
        let mut with_codec = 0;
        for part in 0..2 {
            let tp = TopicPartition::new(topic.clone(), part);
            let fetched = checker.fetch(&tp, 0, 8 << 20, 100).await.expect("fetch target");
            let ids = batch_codecs(&fetched.records);
            assert!(!ids.is_empty(), "{codec}: {topic}/{part} has batches");
            assert!(
                ids.iter().all(|c| *c == id || *c == 0),
                "{codec}: {topic}/{part} batch codec ids {ids:?}, want {id}"
            );
            with_codec += ids.iter().filter(|c| **c == id).count();
        }
        assert!(with_codec > 0, "{codec}: some batch is written with codec id {id}");
    }
}

fn rule(text: &str) -> TargetConfigRule {
    TargetConfigRule::parse(text).expect(text)
}

/// A source topic kept 1 day, with a rule giving its target topic 7 days: the created target
/// topic has 7 days while another topic without a matching rule keeps the source's 1 day. A
/// rule the target refuses (an unknown config, and the timestamp config Kafka 4 removed, which
/// strait leaves out when it is only copied from the source) stops its topic with an error on
/// /status naming the topic and the config: the topic is not created without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_config_rules_override_the_source_configs_of_created_topics_and_refusals_are_reported() {
    let Some((source, target)) = clusters().await else {
        return;
    };
    let base = common::topic("overrides");
    let name = |suffix: &str| format!("{base}-{suffix}");
    let (week, unmatched, unknown, removed) = (name("week"), name("plain"), name("unknown"), name("removed"));
    let day = "86400000";
    let seven_days = "604800000";
    for topic in [&week, &unmatched, &unknown, &removed] {
        common::create_topic(&source.plain_bootstrap(), topic, 1, &[("retention.ms", day)]).await;
        let p = common::producer(&source.plain_bootstrap(), &[]);
        let r = Rec::new(Some(b"k"), Some(b"v"), &[("h", Some(b"1"))], common::now_ms());
        common::send(&p, topic, 0, &r).await;
    }
    let dr = |topic: &str| format!("dr.{topic}");
    let mut config = common::config(&source.bootstrap(), &target.bootstrap(), &format!("{base}-.*"));
    config.topics.prefix = "dr.".into();
    // Rules match target names; the first rule for a config wins.
    config.topics.target_configs = vec![
        rule(&format!("{}:retention.ms={seven_days}", regex::escape(&dr(&week)))),
        rule(&format!("dr\\.{base}-week:retention.ms=1000")),
        rule(&format!("dr\\.{base}-week:segment.ms=3600000")),
        rule(&format!("{}:no.such.config=1", regex::escape(&dr(&unknown)))),
        rule(&format!(
            "{}:message.timestamp.difference.max.ms=1000",
            regex::escape(&dr(&removed))
        )),
    ];
    let strait = Strait::start(config);
    let one = BTreeMap::from([(0, 1)]);
    wait_for_target(&target.plain_bootstrap(), &dr(&week), &one, "the overridden topic").await;
    wait_for_target(&target.plain_bootstrap(), &dr(&unmatched), &one, "the plain topic").await;
    let health = std::sync::Arc::clone(&strait.health);
    common::eventually("both refusals reported", TIMEOUT, || {
        let errors = health.topic_errors();
        let both = errors.contains_key(&unknown) && errors.contains_key(&removed);
        async move { both }
    })
    .await;
    let errors = health.topic_errors();
    strait.stop().await;

    let target_value = |topic: String, config: &'static str| {
        let bootstrap = target.plain_bootstrap();
        async move { config_value(&bootstrap, &topic, config).await }
    };
    // The premise: the sources keep 1 day.
    assert_eq!(
        config_value(&source.plain_bootstrap(), &week, "retention.ms")
            .await
            .as_deref(),
        Some(day)
    );
    assert_eq!(
        target_value(dr(&week), "retention.ms").await.as_deref(),
        Some(seven_days),
        "the first matching rule's retention.ms, over the source's"
    );
    assert_eq!(
        target_value(dr(&week), "segment.ms").await.as_deref(),
        Some("3600000"),
        "every matching rule applies"
    );
    assert_eq!(
        target_value(dr(&unmatched), "retention.ms").await.as_deref(),
        Some(day),
        "no rule: the source's, copied"
    );
    assert_eq!(
        records(&target.plain_bootstrap(), &dr(&week), &[0])[&0].len(),
        1,
        "replicated"
    );
    for (topic, config) in [
        (&unknown, "no.such.config"),
        (&removed, "message.timestamp.difference.max.ms"),
    ] {
        let error = &errors[topic];
        assert!(
            error.contains(&format!("create topic {}", dr(topic))) && error.contains(config),
            "{topic}: {error}"
        );
        assert!(error.contains("topics.target_configs"), "{topic}: {error}");
        assert_eq!(
            partition_count(&target.plain_bootstrap(), &dr(topic)).await,
            None,
            "{topic}: not created without the override"
        );
    }
}
