//! Helpers of the tests on Kafka's secured listeners: client settings, unsecured JWTs for the
//! OAUTHBEARER validator, and records written and checked with librdkafka on the plaintext
//! listener.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use strait::config::ClusterConfig;

use super::{Kafka, Rec};

/// Client settings for `bootstrap` with a short request timeout; security added by the test.
pub fn cluster(bootstrap: &str) -> ClusterConfig {
    ClusterConfig {
        bootstrap_servers: bootstrap.to_owned(),
        request_timeout_ms: 10_000,
        ..ClusterConfig::default()
    }
}

/// An unsecured JWS (`alg: none`, empty signature) for principal `sub`, valid for an hour:
/// what Kafka's default OAUTHBEARER validator accepts.
pub fn unsecured_jwt(sub: &str) -> String {
    unsecured_jwt_for(sub, 3600)
}

/// Like [`unsecured_jwt`], valid for `secs` seconds from now.
pub fn unsecured_jwt_for(sub: &str, secs: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let header = b64(r#"{"alg":"none"}"#);
    let claims = b64(&format!(r#"{{"sub":"{sub}","iat":{now},"exp":{}}}"#, now + secs));
    format!("{header}.{claims}.")
}

/// Writes `n` records to each partition of `topic` through the plaintext listener.
pub async fn produce(k: &Kafka, topic: &str, partitions: i32, n: usize, label: &str) -> BTreeMap<i32, Vec<Rec>> {
    let producer = super::producer(&k.plain_bootstrap(), &[("linger.ms", "5")]);
    let mut sent = BTreeMap::new();
    for p in 0..partitions {
        let recs = super::recent_records(label, p, n);
        super::send_all(&producer, topic, p, &recs).await;
        sent.insert(p, recs);
    }
    sent
}

/// Reads `target_topic` back on the plaintext listener until it holds as many records as were
/// sent, then checks that it holds exactly the sent records, in order, and nothing more.
pub async fn assert_replica(k: &Kafka, target_topic: &str, sent: &BTreeMap<i32, Vec<Rec>>) {
    let partitions: Vec<i32> = sent.keys().copied().collect();
    let want: BTreeMap<i32, usize> = sent.iter().map(|(p, r)| (*p, r.len())).collect();
    let got = tokio::task::spawn_blocking({
        let (bootstrap, topic) = (k.plain_bootstrap(), target_topic.to_owned());
        move || {
            super::consume_until(&bootstrap, &topic, &partitions, Duration::from_secs(90), |got| {
                want.iter().all(|(p, n)| got.get(p).map_or(0, Vec::len) >= *n)
            })
        }
    })
    .await
    .expect("consumer");
    for (p, recs) in sent {
        let replica = got.get(p).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(replica.len(), recs.len(), "{target_topic}/{p}: records on the target");
        for (i, (t, s)) in replica.iter().zip(recs).enumerate() {
            assert_eq!(
                t, s,
                "{target_topic}/{p}: record {i} differs (lost, duplicated or reordered)"
            );
        }
    }
    let ends = super::high_watermarks(&k.plain_bootstrap(), target_topic, sent.len() as i32).await;
    for (p, recs) in sent {
        assert_eq!(
            ends[p],
            recs.len() as i64,
            "{target_topic}/{p}: nothing beyond the source's records"
        );
    }
}
