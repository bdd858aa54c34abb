//! AWS_MSK_IAM without AWS: an Apache Kafka target behind the test SASL gateway (common/sasl_gateway.rs),
//! which verifies the SigV4-signed tokens with the test credentials and limits sessions to a
//! few seconds, so re-authentication (KIP-368) happens many times during a run. The real binary
//! finds the test keys through the standard AWS credential chain (env); data is written and
//! read back with librdkafka directly on the brokers.
#![cfg(feature = "msk-iam")]

mod common;
#[path = "common/sasl_gateway.rs"]
mod sasl_gateway;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Kafka, Rec, StraitCmd};
use sasl_gateway::{Gateway, GatewayConfig};
use strait::auth::{MskIamTokens, TokenCache};
use strait::config::{ClusterConfig, SaslMechanism, Secret};
use strait::kafka::{Cluster, Security};

const REGION: &str = "eu-west-1";
const ACCESS_KEY_ID: &str = "AKIASTRAITTESTKEY01";
const SECRET_ACCESS_KEY: &str = "strait/Test+Secret0Key9zXq1w2e3r4t5y6u7i8o";
const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEStraitTestSessionToken0123456789";
const WRONG_SECRET: &str = "wrong/Secret+Key0aB1cD2eF3gH4iJ5kL6mN7oP8q";

fn gateway_config(broker: &Kafka, session_lifetime_ms: i64) -> GatewayConfig {
    GatewayConfig {
        broker: broker.bootstrap(),
        region: REGION.into(),
        access_key_id: ACCESS_KEY_ID.into(),
        secret_access_key: SECRET_ACCESS_KEY.into(),
        session_token: None,
        session_lifetime_ms,
        token_max_age: Duration::from_secs(900),
    }
}

/// The strait binary with a clean `STRAIT_*` and `AWS_*` environment plus `env`: the AWS chain
/// sees only the keys given here (no profile files, no instance metadata).
fn strait_command(args: &[&str], env: &[(&str, String)]) -> StraitCmd {
    StraitCmd::new(args)
        .clean("AWS_")
        .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env)
}

fn iam_env(source: &str, target: &str, topic: &str, secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("STRAIT_SOURCE__BOOTSTRAP_SERVERS", source.to_owned()),
        ("STRAIT_TARGET__BOOTSTRAP_SERVERS", target.to_owned()),
        ("STRAIT_TARGET__SASL__MECHANISM", "AWS_MSK_IAM".to_owned()),
        ("STRAIT_TARGET__SASL__AWS_REGION", REGION.to_owned()),
        // The gateway's listener is plaintext.
        ("STRAIT_TARGET__ALLOW_PLAINTEXT_CREDENTIALS", "true".to_owned()),
        ("STRAIT_TOPICS__INCLUDE", topic.to_owned()),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", secret.to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msk_iam_target_through_the_gateway_reauthenticates_and_loses_nothing() {
    let Some(a) = Kafka::single().await else {
        return;
    };
    let Some(b) = Kafka::single().await else {
        return;
    };
    // Temporary credentials (as web identity or an instance role give): the session token
    // travels in the signed URL and must stay out of the logs too.
    let gateway = Gateway::start(GatewayConfig {
        session_token: Some(SESSION_TOKEN.into()),
        ..gateway_config(&b, 3_000)
    })
    .await;
    let topic = common::topic("iam");
    common::create_topic(&a.bootstrap(), &topic, 2, &[]).await;

    let mut env = iam_env(&a.bootstrap(), &gateway.bootstrap(), &topic, SECRET_ACCESS_KEY);
    env.extend([
        ("STRAIT_TOPICS__REFRESH_SECS", "1".to_owned()),
        ("STRAIT_BATCH__LINGER_MS", "20".to_owned()),
        ("STRAIT_FETCH__MAX_WAIT_MS", "100".to_owned()),
        ("AWS_SESSION_TOKEN", SESSION_TOKEN.to_owned()),
        // The AWS crates at trace level: they must not log the keys or the signed URL either.
        (
            "STRAIT_LOG",
            "debug,aws_sigv4=trace,aws_config=trace,aws_credential_types=trace,aws_msk_iam_sasl_signer=trace"
                .to_owned(),
        ),
    ]);
    let mut strait = strait_command(&["run"], &env).spawn();
    strait.live().await;

    // Records keep coming for 15 s: five session lifetimes of 3 s.
    let producer = common::producer(&a.bootstrap(), &[("linger.ms", "5")]);
    let mut sent: BTreeMap<i32, Vec<Rec>> = BTreeMap::new();
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(15) {
        for p in 0..2 {
            let recs = common::recent_records(&format!("iam-{round}"), p, 40);
            common::send_all(&producer, &topic, p, &recs).await;
            sent.entry(p).or_default().extend(recs);
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let expected: BTreeMap<i32, usize> = sent.iter().map(|(p, r)| (*p, r.len())).collect();
    let got = common::consume_async(&b.bootstrap(), &topic, &expected, Duration::from_secs(60)).await;
    for (p, recs) in &sent {
        assert!(got[p].len() >= recs.len(), "partition {p}: log:\n{}", strait.log());
        common::assert_no_loss_in_order(*p, recs, &got[p]);
    }

    let (_, metrics) = strait.get("/metrics").await.expect("metrics answer");
    let reauths =
        common::metrics::sum(&metrics, "strait_reauthentications_total", &[("cluster", "target")]).unwrap_or(0.0);
    let stats = &gateway.stats;
    let (auths, reauth_seen) = (
        stats.authentications.load(Ordering::SeqCst),
        stats.reauthentications.load(Ordering::SeqCst),
    );
    eprintln!(
        "gateway: {} connections, {auths} authentications, {reauth_seen} re-authentications, {} forwarded; metric {reauths}",
        stats.connections.load(Ordering::SeqCst),
        stats.forwarded.load(Ordering::SeqCst)
    );
    assert_eq!(stats.rejected.load(Ordering::SeqCst), 0, "{:?}", stats.reasons);
    assert_eq!(
        stats.expired.load(Ordering::SeqCst),
        0,
        "a connection outlived its session:\n{}",
        strait.log()
    );
    assert!(
        reauth_seen >= 4,
        "only {reauth_seen} re-authentications in 15 s of 3 s sessions"
    );
    assert!(reauths >= 4.0, "strait_reauthentications_total = {reauths}:\n{metrics}");
    assert!(
        auths <= 6,
        "{auths} fresh authentications: connections were replaced, not re-authenticated"
    );

    strait.terminate(Duration::from_secs(30)).await;
    let logged = strait.log();
    drop(strait);

    assert!(
        logged.contains("re-authenticated"),
        "debug log names re-authentications"
    );
    // The test secrets are fake: show the offending lines.
    let lines_with = |needle: &str| {
        logged
            .lines()
            .filter(|l| l.contains(needle))
            .map(|l| l.chars().take(300).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (secret, what) in [
        (SECRET_ACCESS_KEY, "the secret key"),
        (SESSION_TOKEN, "the session token"),
        ("X-Amz-Signature=", "a signed URL"),
    ] {
        assert!(
            !logged.contains(secret),
            "{what} is in the log:\n{}",
            lines_with(secret)
        );
    }
    for token in stats.tokens.lock().expect("tokens").iter() {
        assert!(!logged.contains(token.as_str()), "a token is in the log");
        assert!(!logged.contains(&token[..40]), "part of a token is in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_refreshed_before_a_shortened_expiry_and_in_flight_requests_survive_reauthentication() {
    let Some(b) = Kafka::single().await else {
        return;
    };
    // Sessions of 1 s; the gateway refuses tokens signed more than 3 s ago, and the cache treats
    // them as expiring after 2 s (refresh at 1.6 s), instead of MSK's 900 s.
    let gateway = Gateway::start(GatewayConfig {
        token_max_age: Duration::from_secs(3),
        ..gateway_config(&b, 1_000)
    })
    .await;
    let mut config = ClusterConfig {
        bootstrap_servers: gateway.bootstrap(),
        request_timeout_ms: 10_000,
        ..ClusterConfig::default()
    };
    config.sasl.mechanism = SaslMechanism::AwsMskIam;
    config.sasl.aws_region = REGION.into();
    let tokens = TokenCache::with_max_lifetime(
        "target",
        MskIamTokens::with_static_credentials(REGION, ACCESS_KEY_ID, &Secret::new(SECRET_ACCESS_KEY), None),
        Duration::from_secs(2),
    );
    let security = Security::from_config("target", &config)
        .expect("security")
        .with_tokens(tokens.clone());
    assert!(!format!("{security:?} {tokens:?}").contains(SECRET_ACCESS_KEY));
    let cluster = Arc::new(Cluster::with_security(
        "target",
        vec![gateway.bootstrap()],
        "strait-test",
        Duration::from_secs(10),
        security,
    ));

    // Keep 8 metadata requests in flight on the one connection for 8 s.
    let conn = cluster.any_conn().await.expect("authenticated connection");
    let started = Instant::now();
    let mut answered = 0usize;
    while started.elapsed() < Duration::from_secs(8) {
        let mut batch = Vec::new();
        for _ in 0..8 {
            let request = kafka_protocol::messages::MetadataRequest::default().with_topics(Some(vec![]));
            batch.push(conn.enqueue(&request).await.expect("enqueued"));
        }
        for in_flight in batch {
            in_flight.response().await.expect("answered across re-authentication");
            answered += 1;
        }
    }
    let again = cluster.any_conn().await.expect("connection");
    assert!(Arc::ptr_eq(&conn, &again), "the connection was replaced");
    assert!(!conn.is_closed());
    let stats = &gateway.stats;
    let reauths = stats.reauthentications.load(Ordering::SeqCst);
    eprintln!(
        "{answered} answers, {reauths} re-authentications, {} token refreshes",
        tokens.refreshes()
    );
    assert_eq!(stats.rejected.load(Ordering::SeqCst), 0, "{:?}", stats.reasons);
    assert_eq!(stats.expired.load(Ordering::SeqCst), 0);
    assert_eq!(stats.authentications.load(Ordering::SeqCst), 1);
    assert!(reauths >= 6, "{reauths} re-authentications in 8 s of 1 s sessions");
    assert!(
        tokens.refreshes() >= 3,
        "{} refreshes in 8 s of 2 s tokens",
        tokens.refreshes()
    );
    let distinct: std::collections::BTreeSet<_> = stats.tokens.lock().expect("tokens").iter().cloned().collect();
    assert!(distinct.len() >= 4, "{} distinct tokens: not refreshed", distinct.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_aws_credentials_exit_77_naming_cluster_broker_step_and_fix() {
    let Some(a) = Kafka::single().await else {
        return;
    };
    let Some(b) = Kafka::single().await else {
        return;
    };
    let gateway = Gateway::start(gateway_config(&b, 3_000)).await;
    let topic = common::topic("iam-bad");
    let mut env = iam_env(&a.bootstrap(), &gateway.bootstrap(), &topic, WRONG_SECRET);
    env.push(("STRAIT_LOG", "debug".to_owned()));
    let started = Instant::now();
    let out = strait_command(&["run"], &env).output_async().await;
    let took = started.elapsed();
    let msg = out.text();
    eprintln!("strait said:\n{msg}");
    assert_eq!(out.code(), Some(77), "{msg}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let broker = format!("target cluster, broker {}", gateway.bootstrap());
    for needle in [
        broker.as_str(),
        "SASL AWS_MSK_IAM authentication failed",
        "refused the bearer token at SaslAuthenticate",
        "fix: check that the AWS credentials strait finds",
        "target.sasl.aws_region",
    ] {
        assert!(msg.contains(needle), "lacks {needle:?}: {msg}");
    }
    assert!(
        gateway
            .stats
            .reasons
            .lock()
            .expect("reasons")
            .iter()
            .all(|r| r == "signature mismatch"),
        "{:?}",
        gateway.stats.reasons
    );
    assert!(!msg.contains(WRONG_SECRET), "the secret key leaked: {msg}");
    for token in gateway.stats.tokens.lock().expect("tokens").iter() {
        assert!(!msg.contains(&token[..40]), "a token leaked: {msg}");
    }

    // No credentials anywhere in the chain: 77 as well, naming the chain's sources.
    let env: Vec<(&str, String)> = iam_env(&a.bootstrap(), &gateway.bootstrap(), &topic, WRONG_SECRET)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("AWS_"))
        .collect();
    let started = Instant::now();
    let out = strait_command(&["check"], &env).output_async().await;
    let msg = out.text();
    assert_eq!(out.code(), Some(77), "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    for needle in [
        "no token (no AWS credentials for region eu-west-1",
        "AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN",
    ] {
        assert!(msg.contains(needle), "lacks {needle:?}: {msg}");
    }
}

#[tokio::test]
async fn msk_iam_without_a_region_exits_64_with_a_fix() {
    let env = vec![
        ("STRAIT_SOURCE__BOOTSTRAP_SERVERS", "127.0.0.1:9".to_owned()),
        ("STRAIT_TARGET__BOOTSTRAP_SERVERS", "127.0.0.2:9".to_owned()),
        ("STRAIT_TARGET__SASL__MECHANISM", "AWS_MSK_IAM".to_owned()),
    ];
    for command in ["run", "check"] {
        let out = strait_command(&[command], &env).output();
        let msg = out.text();
        assert_eq!(out.code(), Some(64), "{command}: {msg}");
        for needle in [
            "target.sasl.aws_region",
            "AWS_MSK_IAM needs it",
            "STRAIT_TARGET__SASL__AWS_REGION",
        ] {
            assert!(msg.contains(needle), "{command}: lacks {needle:?}: {msg}");
        }
    }
}
