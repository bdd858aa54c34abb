//! Security on Apache Kafka's own listeners: mutual TLS required by the broker itself, SASL
//! PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 over SASL_SSL, OAUTHBEARER with Kafka's unsecured JWS
//! validator, re-authentication (KIP-368) forced by `connections.max.reauth.ms`, and the
//! StandardAuthorizer with exactly the ACLs strait needs.
//!
//! strait talks only to the secured `CLIENT` listener; records are written and read back with
//! librdkafka on the plaintext listener. To keep the suite small each test runs one node that is
//! both source and target: strait replicates topic `T` to `copy-T` on the same cluster, so its
//! fetch and its produce path both cross the secured listener.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::CreateAclsRequest;
use kafka_protocol::protocol::StrBytes;

use common::binary::Ran;
use common::growing::Writer;
use common::pki::Pki;
use common::secured::{assert_replica, cluster, produce, unsecured_jwt};
use common::{logs, Kafka, KafkaSpec, Protocol, Rec, Strait, StraitCmd};
use strait::config::{ClusterConfig, SaslMechanism, Secret};
use strait::kafka::Cluster;
use strait::replicate::PartitionState;

const PASSWORD: &str = "k4fka-0wn-l1steners-5ecret";

fn with_tls(mut c: ClusterConfig, ca_file: &str) -> ClusterConfig {
    c.tls.enabled = true;
    c.tls.ca_file = ca_file.to_owned();
    c
}

fn with_password(mut c: ClusterConfig, mechanism: SaslMechanism, user: &str, password: &str) -> ClusterConfig {
    c.sasl.mechanism = mechanism;
    c.sasl.username = user.to_owned();
    c.sasl.password = Secret::new(password);
    c
}

/// The broker's SASL listener is plaintext: strait refuses to send a password or token over it
/// unless told the network is trusted.
fn plaintext_allowed(mut c: ClusterConfig) -> ClusterConfig {
    c.allow_plaintext_credentials = true;
    c
}

fn with_token(mut c: ClusterConfig, token: &str) -> ClusterConfig {
    c.sasl.mechanism = SaslMechanism::OauthBearer;
    c.sasl.password = Secret::new(token);
    c
}

/// Replicates a fresh 2-partition topic `T` to `copy-T` on the same cluster with these client
/// settings for strait's two sides, and checks the replica. Returns the source topic.
async fn replicate_once(k: &Kafka, label: &str, source: ClusterConfig, target: ClusterConfig) -> String {
    let topic = common::topic(label);
    common::create_topic(&k.plain_bootstrap(), &topic, 2, &[]).await;
    let sent = produce(k, &topic, 2, 100, label).await;
    let mut config = common::config(&k.bootstrap(), &k.bootstrap(), &topic);
    config.source = source;
    config.target = target;
    config.topics.prefix = "copy-".into();
    let strait = Strait::start(config);
    assert_replica(k, &format!("copy-{topic}"), &sent).await;
    strait.stop().await;
    topic
}

/// Runs the real binary with only the given `STRAIT_*` variables.
fn strait_bin(args: &[&str], env: &[(&str, String)]) -> Ran {
    StraitCmd::new(args).envs(env).output()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_required_by_the_broker_replicates_with_a_client_certificate_and_refuses_without() {
    logs::capture("info,strait=debug");
    let pki = Pki::new("kafka-test-ca");
    let ca_file = pki.ca_file();
    let client = pki.leaf("strait-client", &["strait.client"]);
    let Some(k) = Kafka::start(KafkaSpec {
        protocol: Protocol::Ssl,
        tls: Some(pki.broker(true)),
        ..KafkaSpec::default()
    })
    .await
    else {
        return;
    };

    let mut side = with_tls(cluster(&k.bootstrap()), &ca_file);
    side.tls.cert_file = client.cert;
    side.tls.key_file = client.key;
    replicate_once(&k, "mtls", side.clone(), side).await;

    // The same listener without a client certificate: the broker itself refuses the TLS
    // session, and strait exits at start-up with 69, naming the broker and the fix.
    let out = strait_bin(
        &["run"],
        &[
            ("STRAIT_SOURCE__BOOTSTRAP_SERVERS", k.bootstrap()),
            ("STRAIT_SOURCE__TLS__ENABLED", "true".to_owned()),
            ("STRAIT_SOURCE__TLS__CA_FILE", ca_file.clone()),
            ("STRAIT_TARGET__BOOTSTRAP_SERVERS", k.plain_bootstrap()),
            ("STRAIT_TOPICS__INCLUDE", "nothing-here".to_owned()),
        ],
    );
    let msg = out.text();
    assert_eq!(out.code(), Some(69), "{msg}");
    let broker = format!("source cluster, broker {}", k.bootstrap());
    for needle in [
        broker.as_str(),
        "refused strait's client certificate",
        "set source.tls.cert_file and source.tls.key_file",
    ] {
        assert!(msg.contains(needle), "lacks {needle:?}: {msg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_plain_scram_sha256_and_unsecured_oauthbearer_replicate() {
    logs::capture("info,strait=debug");
    let Some(k) = Kafka::start(KafkaSpec {
        protocol: Protocol::SaslPlaintext,
        mechanisms: vec!["PLAIN".into(), "SCRAM-SHA-256".into(), "OAUTHBEARER".into()],
        users: vec![("strait".into(), PASSWORD.into())],
        ..KafkaSpec::default()
    })
    .await
    else {
        return;
    };
    let broker = k.bootstrap();
    let token = unsecured_jwt("strait-oauth");
    let sides = [
        (
            "plain",
            "\"PLAIN\"",
            plaintext_allowed(with_password(
                cluster(&k.bootstrap()),
                SaslMechanism::Plain,
                "strait",
                PASSWORD,
            )),
        ),
        (
            "scram256",
            "\"SCRAM-SHA-256\"",
            with_password(cluster(&k.bootstrap()), SaslMechanism::ScramSha256, "strait", PASSWORD),
        ),
        (
            "oauth",
            "\"OAUTHBEARER\"",
            plaintext_allowed(with_token(cluster(&k.bootstrap()), &token)),
        ),
    ];
    for (label, mechanism, side) in sides {
        let before = logs::lines(&["authenticated", &broker, mechanism]).len();
        replicate_once(&k, label, side.clone(), side).await;
        let after = logs::lines(&["authenticated", &broker, mechanism]).len();
        assert!(
            after > before,
            "strait logged no {mechanism} authentication with {broker}"
        );
    }

    // A bearer token that is not a JWS: the broker's validator refuses it, strait exits 77.
    let out = strait_bin(
        &["run"],
        &[
            ("STRAIT_SOURCE__BOOTSTRAP_SERVERS", k.bootstrap()),
            ("STRAIT_SOURCE__SASL__MECHANISM", "OAUTHBEARER".to_owned()),
            ("STRAIT_SOURCE__SASL__PASSWORD", "not-a-jws".to_owned()),
            ("STRAIT_SOURCE__ALLOW_PLAINTEXT_CREDENTIALS", "true".to_owned()),
            ("STRAIT_TARGET__BOOTSTRAP_SERVERS", k.plain_bootstrap()),
            ("STRAIT_TOPICS__INCLUDE", "nothing-here".to_owned()),
        ],
    );
    let msg = out.text();
    assert_eq!(out.code(), Some(77), "{msg}");
    for needle in [
        "SASL OAUTHBEARER authentication failed",
        "the broker refused the bearer token",
    ] {
        assert!(msg.contains(needle), "lacks {needle:?}: {msg}");
    }
    assert!(!msg.contains("not-a-jws"), "the token leaked: {msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reauthentication_every_3s_over_sasl_ssl_loses_no_request() {
    // Source over SCRAM-SHA-512, target over OAUTHBEARER.
    reauthenticates(Some(SaslMechanism::ScramSha512), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_scram_sha_256_reauthenticate_too() {
    reauthenticates(Some(SaslMechanism::Plain), Some(SaslMechanism::ScramSha256)).await;
}

/// Replicates over SASL_SSL with `connections.max.reauth.ms` = 3 s while records flow: the
/// source with password mechanism `source`, the target with `target` (OAUTHBEARER when
/// `None`). Every connection re-authenticates in band; no request is lost or retried.
async fn reauthenticates(source: Option<SaslMechanism>, target: Option<SaslMechanism>) {
    logs::capture("info,strait=debug");
    let pki = Pki::new("kafka-test-ca");
    let ca_file = pki.ca_file();
    let Some(k) = Kafka::start(KafkaSpec {
        protocol: Protocol::SaslSsl,
        tls: Some(pki.broker(false)),
        mechanisms: ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
            .map(String::from)
            .to_vec(),
        users: vec![("strait".into(), PASSWORD.into())],
        props: vec![("connections.max.reauth.ms".into(), "3000".into())],
        ..KafkaSpec::default()
    })
    .await
    else {
        return;
    };
    let broker = k.bootstrap();
    let topic = common::topic("reauth");
    let copy = format!("copy-{topic}");
    common::create_topic(&k.plain_bootstrap(), &topic, 2, &[]).await;

    let side = |mechanism: Option<SaslMechanism>| {
        let tls = with_tls(cluster(&k.bootstrap()), &ca_file);
        match mechanism {
            Some(m) => with_password(tls, m, "strait", PASSWORD),
            None => with_token(tls, &unsecured_jwt("strait")),
        }
    };
    let mut config = common::config(&k.bootstrap(), &k.bootstrap(), &topic);
    config.source = side(source);
    config.target = side(target);
    config.topics.prefix = "copy-".into();
    let strait = Strait::start(config);

    // The source grows the whole time, in small acknowledged steps.
    let writer = Writer::start_at(&k.plain_bootstrap(), &topic, 2);

    // Several re-authentications on both sides while records flow: the session lifetime the
    // broker gives is 3 s, so every live connection re-authenticates about every 2.5 s.
    let reauths = |side: &str| logs::lines(&["re-authenticated", &broker, &format!("cluster=\"{side}\"")]).len();
    common::eventually_sync("4 re-authentications by each side", Duration::from_secs(60), || {
        reauths("source") >= 4 && reauths("target") >= 4
    })
    .await;
    let sent = writer.stop().await;
    assert_replica(&k, &copy, &sent).await;
    let (source_reauths, target_reauths) = (reauths("source"), reauths("target"));
    strait.stop().await;

    let lifetimes = logs::lines(&["authenticated", &broker, "session_lifetime_ms=3000"]);
    assert!(!lifetimes.is_empty(), "the broker set no 3 s session lifetime");
    // This test's broker only: the log capture is shared by the tests running beside it.
    let failed = logs::lines(&["re-authentication failed", &broker]);
    assert!(failed.is_empty(), "re-authentication failed: {failed:#?}");
    // A request lost to a connection the broker closed (an expired session) would show as a
    // retry of a partition's step after a lost connection.
    let retried: Vec<String> = logs::lines(&["retrying", "lost"])
        .into_iter()
        .filter(|l| l.contains(&topic))
        .collect();
    assert!(retried.is_empty(), "requests were retried: {retried:#?}");
    eprintln!(
        "re-authentications: source {source_reauths}, target {target_reauths}; records per partition {:?}",
        sent.iter().map(|(p, r)| (*p, r.len())).collect::<BTreeMap<_, _>>()
    );
}

// ACLs: Kafka's operation and resource codes (org.apache.kafka.common.acl).
const TOPIC: i8 = 2;
const LITERAL: i8 = 3;
const ALLOW: i8 = 3;
const READ: i8 = 3;
const WRITE: i8 = 4;
const CREATE: i8 = 5;
const DESCRIBE_CONFIGS: i8 = 10;
const GROUP: i8 = 3;
const DESCRIBE: i8 = 8;

/// One ACL: principal, resource type, resource name, operation.
type Acl = (String, i8, String, i8);

/// Adds ACLs through the plaintext listener (whose ANONYMOUS principal is a super user).
async fn add_acls(k: &Kafka, acls: &[Acl]) {
    let admin = Cluster::from_config("admin", &cluster(&k.plain_bootstrap())).expect("admin client");
    let request = CreateAclsRequest::default().with_creations(
        acls.iter()
            .map(|(principal, resource_type, name, operation)| {
                AclCreation::default()
                    .with_resource_type(*resource_type)
                    .with_resource_name(StrBytes::from_string(name.clone()))
                    .with_resource_pattern_type(LITERAL)
                    .with_principal(StrBytes::from_string(principal.clone()))
                    .with_host(StrBytes::from_static_str("*"))
                    .with_operation(*operation)
                    .with_permission_type(ALLOW)
            })
            .collect(),
    );
    let conn = admin.any_conn().await.expect("admin connection");
    let (response, _) = conn.send(&request).await.expect("CreateAcls");
    for (acl, r) in acls.iter().zip(&response.results) {
        assert_eq!(r.error_code, 0, "ACL {acl:?} not created: {:?}", r.error_message);
    }
}

/// The ACLs strait needs, found by taking each candidate away in turn on Apache Kafka 4.3.1
/// (source principal `src`, target principal `dst`; Describe is implied by Read and Write, and
/// IdempotentWrite on the cluster is not needed since Kafka 3.0: Write on a topic allows
/// InitProducerId):
/// - source topic: Read (Metadata, ListOffsets, Fetch); DescribeConfigs (the configs copied to
///   a new target topic and `retention.ms`; without it strait warns and uses defaults);
/// - target topic: Create (not needed when it exists), Write; DescribeConfigs (its
///   `max.message.bytes`; without it strait assumes Kafka's default); Alter only to grow it;
/// - checkpoint topic: Create (not needed when it exists), Write, Read (its checkpoints are
///   read back at every start after the first).
fn needed_acls(src: &str, dst: &str, topic: &str, target_topic: &str, checkpoints: &str) -> Vec<Acl> {
    let (src, dst) = (format!("User:{src}"), format!("User:{dst}"));
    vec![
        (src.clone(), TOPIC, topic.to_owned(), READ),
        (src, TOPIC, topic.to_owned(), DESCRIBE_CONFIGS),
        (dst.clone(), TOPIC, target_topic.to_owned(), CREATE),
        (dst.clone(), TOPIC, target_topic.to_owned(), WRITE),
        (dst.clone(), TOPIC, target_topic.to_owned(), DESCRIBE_CONFIGS),
        (dst.clone(), TOPIC, checkpoints.to_owned(), CREATE),
        (dst.clone(), TOPIC, checkpoints.to_owned(), WRITE),
        (dst, TOPIC, checkpoints.to_owned(), READ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_exactly_as_documented_work_and_a_missing_write_halts_the_partition() {
    logs::capture("info,strait=debug");
    let Some(k) = Kafka::start(KafkaSpec {
        protocol: Protocol::SaslPlaintext,
        mechanisms: vec!["PLAIN".into()],
        users: vec![("reader".into(), PASSWORD.into()), ("writer".into(), PASSWORD.into())],
        authorizer: true,
        ..KafkaSpec::default()
    })
    .await
    else {
        return;
    };
    let allowed = common::topic("acl-ok");
    let denied = common::topic("acl-nowrite");
    let (allowed_copy, denied_copy) = (format!("copy-{allowed}"), format!("copy-{denied}"));
    let checkpoints = common::topic("acl-checkpoints");
    common::create_topic(&k.plain_bootstrap(), &allowed, 2, &[]).await;
    common::create_topic(&k.plain_bootstrap(), &denied, 1, &[]).await;
    // The denied topic's target exists: strait may see it, but not write to it.
    common::create_topic(
        &k.plain_bootstrap(),
        &denied_copy,
        1,
        &[("compression.type", "producer")],
    )
    .await;
    let mut acls = needed_acls("reader", "writer", &allowed, &allowed_copy, &checkpoints);
    acls.extend(
        needed_acls("reader", "writer", &denied, &denied_copy, &checkpoints)
            .into_iter()
            .filter(|(_, t, name, op)| !(*t == TOPIC && name == &denied_copy && *op == WRITE)),
    );
    // The positions' advisory copy on the source (`checkpoint.source_group`, on by default).
    acls.push(("User:reader".into(), GROUP, "strait.acl".into(), READ));
    acls.sort();
    acls.dedup();
    add_acls(&k, &acls).await;

    let sent = produce(&k, &allowed, 2, 100, "acl-ok").await;
    produce(&k, &denied, 1, 50, "acl-nowrite").await;
    let mut config = common::config(&k.bootstrap(), &k.bootstrap(), &format!("{allowed}|{denied}"));
    config.source = plaintext_allowed(with_password(
        cluster(&k.bootstrap()),
        SaslMechanism::Plain,
        "reader",
        PASSWORD,
    ));
    config.target = plaintext_allowed(with_password(
        cluster(&k.bootstrap()),
        SaslMechanism::Plain,
        "writer",
        PASSWORD,
    ));
    config.topics.prefix = "copy-".into();
    config.checkpoint.topic = checkpoints.clone();
    config.replication.id = "acl".into();
    let strait = Strait::start(config.clone());

    // With the documented ACLs the allowed topic replicates exactly.
    assert_replica(&k, &allowed_copy, &sent).await;

    // Without WRITE the partition halts, naming the missing ACL.
    let halted = |p: &strait::replicate::Progress| {
        p.snapshot()
            .into_iter()
            .find(|(tp, _)| tp.topic == denied)
            .and_then(|(_, s)| match s.state {
                PartitionState::Halted(msg) => Some(msg),
                _ => None,
            })
    };
    common::eventually_sync("the partition without WRITE halted", Duration::from_secs(60), || {
        halted(&strait.progress).is_some()
    })
    .await;
    let msg = halted(&strait.progress).unwrap_or_default();
    assert!(
        msg.contains("TOPIC_AUTHORIZATION_FAILED") || msg.contains("TopicAuthorizationFailed"),
        "{msg}"
    );
    assert!(msg.contains(&denied_copy), "{msg}");

    // It stays halted and does not retry while the other topic keeps replicating: strait
    // restarts (reading its checkpoints back under the same ACLs), a second wave of records
    // goes through exactly once, and the broker denied strait's writes only once per run.
    strait.stop().await;
    let strait = Strait::start(config.clone());
    let more = produce(&k, &allowed, 2, 100, "acl-ok-2").await;
    let all: BTreeMap<i32, Vec<Rec>> = sent
        .iter()
        .map(|(p, r)| (*p, r.iter().chain(&more[p]).cloned().collect()))
        .collect();
    assert_replica(&k, &allowed_copy, &all).await;
    common::eventually_sync(
        "the partition without WRITE halted again",
        Duration::from_secs(60),
        || halted(&strait.progress).is_some(),
    )
    .await;
    let ends = common::high_watermarks(&k.plain_bootstrap(), &denied_copy, 1).await;
    assert_eq!(ends[&0], 0, "records reached the topic without WRITE");
    strait.stop().await;
    let log = (0..k.len()).map(|i| k.node_log_text(i)).collect::<String>();
    // Kafka's authorizer logs every denied operation (kafka.authorizer.logger, INFO).
    let about: Vec<&str> = log.lines().filter(|l| l.contains(denied_copy.as_str())).collect();
    let denials = about
        .iter()
        .map(|l| l.to_lowercase())
        .filter(|l| l.contains("user:writer") && l.contains("denied") && l.contains("write"))
        .count();
    // Measured: 2 denied writes per run (the writer's first requests in flight); a retry storm
    // would be dozens. At most the 5 requests in flight per run.
    eprintln!("the broker denied {denials} writes to {denied_copy} in two runs");
    assert!(
        (2..=10).contains(&denials),
        "the broker denied {denials} writes to {denied_copy} (a retry storm, or the fault was not hit): {about:#?}"
    );
    let logged = logs::lines(&[&denied]).len();
    assert!(logged <= 10, "{logged} log lines about {denied}");

    // A consumer group of the replicated topic (committed by the super user): without ACLs on
    // the group strait cannot read it, and says which ACL to grant; with them it translates.
    let group = format!("{allowed}-group");
    blocking_commit(&k.plain_bootstrap(), &group, &allowed, 7);
    let mut config = config;
    config.groups.include = vec![group.clone()];
    let report = strait::replicate::groups(&config, false).await.expect("groups pass");
    let outcome = report
        .outcomes
        .iter()
        .find(|o| o.group == group)
        .expect("the group is asked about");
    let why = format!("{:?}", outcome.skipped);
    assert!(
        why.contains(&format!("grant DESCRIBE and READ on group {group}")) && why.contains("source"),
        "{why}"
    );
    add_acls(
        &k,
        &[
            ("User:reader".into(), GROUP, group.clone(), DESCRIBE),
            ("User:reader".into(), GROUP, group.clone(), READ),
            ("User:writer".into(), GROUP, group.clone(), DESCRIBE),
            ("User:writer".into(), GROUP, group.clone(), READ),
        ],
    )
    .await;
    let report = strait::replicate::groups(&config, false).await.expect("groups pass");
    let outcome = report
        .outcomes
        .iter()
        .find(|o| o.group == group)
        .expect("the group is listed");
    assert_eq!(outcome.skipped, None, "{report}");
    let row = outcome
        .rows
        .iter()
        .find(|r| r.source.partition == 0)
        .expect("partition 0");
    assert_eq!(
        row.translation,
        Some(strait::offsets::Translation::Exact(7)),
        "a topic without transactions maps offset for offset: {report}"
    );
}

/// Commits `offset` on partition 0 of `topic` for `group`, as librdkafka's simple consumer does.
fn blocking_commit(bootstrap: &str, group: &str, topic: &str, offset: i64) {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    let c: BaseConsumer = common::client_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Offset(offset))
        .expect("offset");
    tokio::task::block_in_place(|| c.commit(&tpl, CommitMode::Sync)).expect("commit");
}
