//! TLS and SASL against Apache Kafka: a throwaway CA made here with rcgen, Kafka's TLS listener
//! with that CA's certificate, and SCRAM-SHA-512 users created when the storage is formatted.
//! Data is written and checked with librdkafka on the clusters' plaintext listeners; strait
//! talks to the secured ones, and its fetch and produce paths both cross TLS.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::binary::Ran;
use common::pki::{path_str, Pki};
use common::{logs, BrokerTls, Kafka, KafkaSpec, Protocol, Strait, StraitCmd};
use strait::config::{ClusterConfig, SaslMechanism, Secret};
use strait::kafka::{Cluster, OffsetSpec, TopicPartition};

const PASSWORD: &str = "Tr0ub4dor-s3cret-7f3a";
const WRONG_PASSWORD: &str = "not-the-password-91c2";

fn tls_cluster(bootstrap: &str, ca_file: &str) -> ClusterConfig {
    let mut c = ClusterConfig {
        bootstrap_servers: bootstrap.to_owned(),
        request_timeout_ms: 10_000,
        ..ClusterConfig::default()
    };
    c.tls.enabled = true;
    c.tls.ca_file = ca_file.to_owned();
    c
}

fn scram_cluster(bootstrap: &str, password: &str) -> ClusterConfig {
    let mut c = ClusterConfig {
        bootstrap_servers: bootstrap.to_owned(),
        request_timeout_ms: 10_000,
        ..ClusterConfig::default()
    };
    c.sasl.mechanism = SaslMechanism::ScramSha512;
    c.sasl.username = "strait".into();
    c.sasl.password = Secret::new(password);
    c
}

/// A one-node cluster whose client listener is TLS with this certificate.
async fn tls_kafka(cert: &str, key: &str, ca: &str) -> Option<Kafka> {
    Kafka::start(KafkaSpec {
        protocol: Protocol::Ssl,
        tls: Some(BrokerTls {
            cert: cert.into(),
            key: key.into(),
            ca: ca.into(),
            client_auth: false,
        }),
        ..KafkaSpec::default()
    })
    .await
}

async fn end_offset(cluster: &Cluster, topic: &str, partition: i32) -> i64 {
    cluster
        .list_offset(&TopicPartition::new(topic, partition), OffsetSpec::Latest)
        .await
        .unwrap_or(-1)
}

/// Runs the real binary with only the given `STRAIT_*` variables.
fn strait_bin(args: &[&str], env: &[(&str, String)]) -> Ran {
    StraitCmd::new(args).envs(env).output()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_both_sides_with_a_throwaway_ca_and_bad_certificates_fail_fast() {
    logs::capture("debug");
    let pki = Pki::new("ca");
    let other_ca = pki.unrelated_ca("other-ca");
    let ca_file = pki.ca_file();
    // Valid for the IP the broker advertises and one DNS name, not for "localhost".
    let broker = pki.leaf("broker", &["127.0.0.1", "broker.test"]);
    let client = pki.leaf("client", &["strait.client"]);

    let Some(a) = Kafka::single().await else {
        return;
    };
    let Some(b) = tls_kafka(&broker.cert, &broker.key, &ca_file).await else {
        return;
    };
    let Some(c) = Kafka::single().await else {
        return;
    };

    let topic = common::topic("tls");
    common::create_topic(&a.bootstrap(), &topic, 2, &[]).await;
    let producer = common::producer(&a.bootstrap(), &[]);
    let mut sent = BTreeMap::new();
    for p in 0..2 {
        let recs = common::recent_records("tls", p, 50);
        common::send_all(&producer, &topic, p, &recs).await;
        sent.insert(p, recs);
    }

    // A (plaintext) -> B (TLS, with a client certificate) -> C (plaintext).
    let mut first = common::config(&a.bootstrap(), &b.bootstrap(), &topic);
    first.target = tls_cluster(&b.bootstrap(), &ca_file);
    first.target.tls.cert_file = client.cert;
    first.target.tls.key_file = client.key;
    let check_b = Cluster::from_config("target", &first.target).expect("target security");
    let one = Strait::start(first);
    common::eventually(
        "50 records per partition on the TLS broker",
        Duration::from_secs(60),
        || async { end_offset(&check_b, &topic, 0).await >= 50 && end_offset(&check_b, &topic, 1).await >= 50 },
    )
    .await;
    one.stop().await;

    let mut second = common::config(&b.bootstrap(), &c.bootstrap(), &topic);
    second.source = tls_cluster(&b.bootstrap(), &ca_file);
    second.checkpoint.topic = "strait-checkpoints-2".into();
    let two = Strait::start(second);
    let expected: BTreeMap<i32, usize> = sent.iter().map(|(p, r)| (*p, r.len())).collect();
    let got = common::consume_async(&c.bootstrap(), &topic, &expected, Duration::from_secs(60)).await;
    two.stop().await;
    for (p, recs) in &sent {
        common::assert_no_loss_in_order(*p, recs, &got[p]);
    }

    let tls_env = |bootstrap: String, ca: &str| {
        vec![
            ("STRAIT_SOURCE__BOOTSTRAP_SERVERS", bootstrap),
            ("STRAIT_SOURCE__TLS__ENABLED", "true".to_owned()),
            ("STRAIT_SOURCE__TLS__CA_FILE", ca.to_owned()),
            ("STRAIT_TARGET__BOOTSTRAP_SERVERS", c.bootstrap()),
            ("STRAIT_TOPICS__INCLUDE", topic.clone()),
        ]
    };
    // Unknown CA: exit 69 at once, naming cluster, broker, step and fix.
    let out = strait_bin(&["run"], &tls_env(b.bootstrap(), &other_ca));
    let (msg, took) = (out.text(), out.took);
    assert_eq!(out.code(), Some(69), "{msg}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let broker = format!("source cluster, broker {}", b.bootstrap());
    for needle in [
        broker.as_str(),
        "TLS handshake failed",
        "not signed by",
        "fix: set source.tls.ca_file",
    ] {
        assert!(msg.contains(needle), "lacks {needle:?}: {msg}");
    }

    // Wrong host name: the certificate does not list "localhost".
    let by_name = format!("localhost:{}", b.port());
    let out = strait_bin(&["run"], &tls_env(by_name.clone(), &ca_file));
    let (msg, took) = (out.text(), out.took);
    assert_eq!(out.code(), Some(69), "{msg}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    for needle in ["not valid for the name \"localhost\"", "source.tls.server_name"] {
        assert!(msg.contains(needle), "lacks {needle:?}: {msg}");
    }

    // The server name override makes the same address pass; `check` lists the topic.
    let mut env = tls_env(by_name, &ca_file);
    env.push(("STRAIT_SOURCE__TLS__SERVER_NAME", "broker.test".to_owned()));
    let out = strait_bin(&["check"], &env);
    let msg = out.text();
    assert_eq!(out.code(), Some(0), "{msg}");
    assert!(msg.contains("ok    source") && msg.contains("(SSL)"), "{msg}");
    assert!(
        msg.contains(&format!("{topic} -> {topic} (2 partitions): exists with 2 partitions")),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_broker_certificate_fails_fast_with_69() {
    let pki = Pki::new("ca");
    let ca_file = pki.ca_file();
    let broker = pki.leaf_with("broker", &["127.0.0.1"], |params| {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let Some(b) = tls_kafka(&broker.cert, &broker.key, &ca_file).await else {
        return;
    };
    let out = strait_bin(
        &["check"],
        &[
            ("STRAIT_SOURCE__BOOTSTRAP_SERVERS", b.bootstrap()),
            ("STRAIT_SOURCE__TLS__ENABLED", "true".to_owned()),
            ("STRAIT_SOURCE__TLS__CA_FILE", ca_file),
            ("STRAIT_TARGET__BOOTSTRAP_SERVERS", "127.0.0.2:9".to_owned()),
        ],
    );
    let (msg, took) = (out.text(), out.took);
    assert_eq!(out.code(), Some(69), "{msg}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        msg.contains("certificate has expired") && msg.contains("renew"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha512_source_replicates_and_the_password_never_shows() {
    logs::capture("debug");
    // The user is created when the storage is formatted; records go in through the
    // plaintext listener, strait reads through the SCRAM one.
    let Some(s) = Kafka::start(KafkaSpec {
        protocol: Protocol::SaslPlaintext,
        mechanisms: vec!["SCRAM-SHA-512".into()],
        users: vec![("strait".into(), PASSWORD.into())],
        ..KafkaSpec::default()
    })
    .await
    else {
        return;
    };
    let Some(t) = Kafka::single().await else {
        return;
    };
    let topic = common::topic("scram");
    common::create_topic(&s.plain_bootstrap(), &topic, 2, &[]).await;
    let producer = common::producer(&s.plain_bootstrap(), &[]);
    let mut sent = BTreeMap::new();
    for p in 0..2 {
        let recs = common::recent_records("scram", p, 40);
        common::send_all(&producer, &topic, p, &recs).await;
        sent.insert(p, recs);
    }
    drop(producer);
    let source = scram_cluster(&s.bootstrap(), PASSWORD);

    let mut config = common::config(&s.bootstrap(), &t.bootstrap(), &topic);
    config.source = source;
    assert!(!format!("{config:?}").contains(PASSWORD), "Debug shows the password");
    let strait = Strait::start(config.clone());
    let expected: BTreeMap<i32, usize> = sent.iter().map(|(p, r)| (*p, r.len())).collect();
    let got = common::consume_async(&t.bootstrap(), &topic, &expected, Duration::from_secs(60)).await;
    strait.stop().await;
    for (p, recs) in &sent {
        common::assert_no_loss_in_order(*p, recs, &got[p]);
    }

    // A wrong password, from a file: exit 77 at once with one specific message.
    let dir = tempfile::tempdir().expect("temp dir");
    let wrong = dir.path().join("password");
    std::fs::write(&wrong, format!("{WRONG_PASSWORD}\n")).expect("write");
    let env = |password_file: &Path| {
        vec![
            ("STRAIT_SOURCE__BOOTSTRAP_SERVERS", s.bootstrap()),
            ("STRAIT_SOURCE__SASL__MECHANISM", "SCRAM-SHA-512".to_owned()),
            ("STRAIT_SOURCE__SASL__USERNAME", "strait".to_owned()),
            ("STRAIT_SOURCE__SASL__PASSWORD_FILE", path_str(password_file)),
            ("STRAIT_TARGET__BOOTSTRAP_SERVERS", t.bootstrap()),
            ("STRAIT_TOPICS__INCLUDE", topic.clone()),
            ("STRAIT_LOG", "debug".to_owned()),
        ]
    };
    let out = strait_bin(&["run"], &env(&wrong));
    let (msg, took) = (out.text(), out.took);
    assert_eq!(out.code(), Some(77), "{msg}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let broker = format!("source cluster, broker {}", s.bootstrap());
    for needle in [
        broker.as_str(),
        "SASL SCRAM-SHA-512 authentication failed",
        "fix: check source.sasl.username and the password in",
    ] {
        assert!(msg.contains(needle), "lacks {needle:?}: {msg}");
    }
    assert!(!msg.contains(WRONG_PASSWORD), "the password leaked: {msg}");

    // `check` with the right password passes and lists the topic.
    let right = dir.path().join("right");
    std::fs::write(&right, PASSWORD).expect("write");
    let out = strait_bin(&["check"], &env(&right));
    let msg = out.text();
    assert_eq!(out.code(), Some(0), "{msg}");
    assert!(msg.contains("SASL_PLAINTEXT/SCRAM-SHA-512"), "{msg}");
    assert!(
        msg.contains(&format!("{topic} -> {topic} (2 partitions): will be created"))
            || msg.contains(&format!("{topic} -> {topic} (2 partitions): exists")),
        "{msg}"
    );
    assert!(!msg.contains(PASSWORD), "{msg}");

    let logged = logs::text();
    assert!(logged.contains("authenticated"), "debug logs were captured");
    assert!(!logged.contains(PASSWORD), "a log line holds the password");
    assert!(!logged.contains(WRONG_PASSWORD), "a log line holds the wrong password");
}

#[tokio::test]
async fn unusable_tls_file_exits_64_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bogus = dir.path().join("ca.pem");
    std::fs::write(&bogus, "not a certificate\n").expect("write");
    let out = strait_bin(
        &["check"],
        &[
            ("STRAIT_SOURCE__BOOTSTRAP_SERVERS", "127.0.0.1:9".to_owned()),
            ("STRAIT_SOURCE__TLS__ENABLED", "true".to_owned()),
            ("STRAIT_SOURCE__TLS__CA_FILE", path_str(&bogus)),
            ("STRAIT_TARGET__BOOTSTRAP_SERVERS", "127.0.0.2:9".to_owned()),
        ],
    );
    let msg = out.text();
    assert_eq!(out.code(), Some(64), "{msg}");
    assert!(
        msg.contains("source.tls.ca_file") && msg.contains("holds no PEM certificate"),
        "{msg}"
    );
}
