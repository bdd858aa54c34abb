//! OAUTHBEARER with tokens from an OAuth 2 token endpoint (client-credentials grant), as
//! Strimzi / AMQ Streams with Keycloak use it, on Apache Kafka's own SASL listener with Kafka's
//! unsecured JWS validator. A small HTTP server stands in for Keycloak: it checks the client's
//! Basic credentials and the grant, counts the tokens it issues and mints unsigned JWTs that
//! live a few seconds, so strait has to refresh them while `connections.max.reauth.ms` makes
//! every connection re-authenticate.
//!
//! As in `kafka_security.rs`, one node is both source and target (`T` is replicated to
//! `copy-T`), and records are written and read back with librdkafka on the plaintext listener.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::growing::Writer;
use common::secured::{assert_replica, cluster, unsecured_jwt_for};
use common::{logs, Kafka, KafkaSpec, Protocol, Strait, StraitCmd};
use strait::config::{ClusterConfig, SaslMechanism, Secret};

const PATH: &str = "/realms/kafka/protocol/openid-connect/token";
const CLIENT_ID: &str = "strait-mirror";
/// Has characters that the client form-encodes before Basic (RFC 6749 section 2.3.1).
const CLIENT_SECRET: &str = "kc/s3cret+value";
const WRONG_SECRET: &str = "not-the-kc-secret";
/// What the endpoint says the tokens live (strait refreshes at 80%: 4.8 s).
const EXPIRES_IN_SECS: u64 = 6;
/// The tokens' own `exp`, later than `expires_in` so a token strait still holds is never one
/// the broker finds expired (JWT times are whole seconds).
const JWT_SECS: u64 = 20;

/// The stand-in for Keycloak's token endpoint.
struct Idp {
    url: String,
    /// Tokens issued.
    issued: Arc<AtomicUsize>,
    /// Requests refused with 401 (wrong client credentials).
    refused: Arc<AtomicUsize>,
    /// While non-zero, every request is answered with this status (an endpoint in trouble).
    failing: Arc<AtomicU16>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Idp {
    async fn start() -> Idp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the token endpoint");
        let url = format!("http://{}{PATH}", listener.local_addr().expect("address"));
        let (issued, refused, failing) = (Arc::default(), Arc::default(), Arc::<AtomicU16>::default());
        let task = tokio::spawn({
            let (issued, refused, failing) = (Arc::clone(&issued), Arc::clone(&refused), Arc::clone(&failing));
            async move {
                while let Ok((socket, _)) = listener.accept().await {
                    let (issued, refused, failing) = (Arc::clone(&issued), Arc::clone(&refused), Arc::clone(&failing));
                    tokio::spawn(async move {
                        if let Some((request, mut socket)) = read_request(socket).await {
                            let (status, body) = answer(&request, &issued, &refused, &failing);
                            respond(&mut socket, status, &body).await;
                        }
                    });
                }
            }
        });
        Idp {
            url,
            issued,
            refused,
            failing,
            task,
        }
    }

    fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }
}

/// The request line, the headers (names lower-cased) and the body.
struct Request {
    line: String,
    headers: BTreeMap<String, String>,
    body: String,
}

async fn read_request(mut socket: TcpStream) -> Option<(Request, TcpStream)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let line = lines.next()?.to_owned();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buf.len() < head_end + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
    Some((Request { line, headers, body }, socket))
}

/// What Keycloak would answer: a token for the right client asking for the client-credentials
/// grant, 401 `invalid_client` for a wrong secret.
fn answer(r: &Request, issued: &AtomicUsize, refused: &AtomicUsize, failing: &AtomicU16) -> (u16, String) {
    let status = failing.load(Ordering::SeqCst);
    if status != 0 {
        return (status, r#"{"error":"temporarily_unavailable"}"#.to_owned());
    }
    if r.line != format!("POST {PATH} HTTP/1.1")
        || r.headers.get("content-type").map(String::as_str) != Some("application/x-www-form-urlencoded")
        || r.body != "grant_type=client_credentials&scope=kafka"
    {
        return (
            400,
            format!(
                r#"{{"error":"invalid_request","error_description":"unexpected {:?} {:?}"}}"#,
                r.line, r.body
            ),
        );
    }
    let basic = r
        .headers
        .get("authorization")
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    if basic.as_deref() != Some("strait-mirror:kc%2Fs3cret%2Bvalue") {
        refused.fetch_add(1, Ordering::SeqCst);
        return (
            401,
            r#"{"error":"unauthorized_client","error_description":"Invalid client or Invalid client credentials"}"#
                .to_owned(),
        );
    }
    issued.fetch_add(1, Ordering::SeqCst);
    let token = unsecured_jwt_for(CLIENT_ID, JWT_SECS);
    (
        200,
        format!(r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":{EXPIRES_IN_SECS},"scope":"kafka"}}"#),
    )
}

async fn respond(socket: &mut TcpStream, status: u16, body: &str) {
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        503 => "Service Unavailable",
        _ => "Bad Request",
    };
    let text = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(text.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// A side on OAUTHBEARER with tokens from `idp`, over the broker's plaintext SASL listener.
fn oauth_side(k: &Kafka, idp: &Idp) -> ClusterConfig {
    let mut c = cluster(&k.bootstrap());
    c.sasl.mechanism = SaslMechanism::OauthBearer;
    c.sasl.oauth_token_endpoint_url = idp.url.clone();
    c.sasl.oauth_client_id = CLIENT_ID.to_owned();
    c.sasl.oauth_client_secret = Secret::new(CLIENT_SECRET);
    c.sasl.oauth_scope = "kafka".to_owned();
    c.allow_plaintext_credentials = true;
    c
}

async fn kafka() -> Option<Kafka> {
    Kafka::start(KafkaSpec {
        protocol: Protocol::SaslPlaintext,
        mechanisms: vec!["OAUTHBEARER".into()],
        props: vec![("connections.max.reauth.ms".into(), "3000".into())],
        ..KafkaSpec::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_tokens_are_refreshed_while_records_replicate() {
    logs::capture("info,strait=debug");
    let idp = Idp::start().await;
    let Some(k) = kafka().await else {
        return;
    };
    let broker = k.bootstrap();
    let topic = common::topic("oauth");
    let copy = format!("copy-{topic}");
    common::create_topic(&k.plain_bootstrap(), &topic, 2, &[]).await;

    let mut config = common::config(&k.bootstrap(), &k.bootstrap(), &topic);
    config.source = oauth_side(&k, &idp);
    config.target = oauth_side(&k, &idp);
    config.topics.prefix = "copy-".into();
    let strait = Strait::start(config);

    // The source grows the whole time, in small acknowledged steps.
    let writer = Writer::start_at(&k.plain_bootstrap(), &topic, 2);

    // Each side's cache fetched its first token, then refreshed it (at 80% of 6 s) at least
    // twice, and the connections re-authenticated with the tokens in between.
    let refreshed = || logs::lines(&["token refreshed before expiry"]).len();
    let reauths = |side: &str| logs::lines(&["re-authenticated", &broker, &format!("cluster=\"{side}\"")]).len();
    common::eventually_sync(
        "4 token refreshes and re-authentications by each side",
        Duration::from_secs(90),
        || refreshed() >= 4 && reauths("source") >= 3 && reauths("target") >= 3,
    )
    .await;
    let sent = writer.stop().await;
    assert_replica(&k, &copy, &sent).await;
    strait.stop().await;

    let issued = idp.issued();
    assert!(
        issued >= 6,
        "the endpoint issued {issued} tokens: 2 first ones and at least 4 refreshes"
    );
    let bearer = logs::lines(&["authenticated", &broker, "\"OAUTHBEARER\""]);
    assert!(
        !bearer.is_empty(),
        "strait logged no OAUTHBEARER authentication with {broker}"
    );
    let failed = logs::lines(&["re-authentication failed"]);
    assert!(failed.is_empty(), "re-authentication failed: {failed:#?}");
    let log = logs::text();
    assert!(!log.contains(CLIENT_SECRET), "the client secret was logged");
    eprintln!(
        "tokens issued {issued}, refreshes logged {}, records per partition {:?}",
        refreshed(),
        sent.iter().map(|(p, r)| (*p, r.len())).collect::<BTreeMap<_, _>>()
    );
}

/// The real binary with the source on OAUTHBEARER through `idp` and `secret`.
fn strait_run(k: &Kafka, idp: &Idp, secret: &str, topic: &str) -> StraitCmd {
    StraitCmd::new(&["run"]).envs(&[
        ("STRAIT_SOURCE__BOOTSTRAP_SERVERS", k.bootstrap()),
        ("STRAIT_SOURCE__SASL__MECHANISM", "OAUTHBEARER".to_owned()),
        ("STRAIT_SOURCE__SASL__OAUTH_TOKEN_ENDPOINT_URL", idp.url.clone()),
        ("STRAIT_SOURCE__SASL__OAUTH_CLIENT_ID", CLIENT_ID.to_owned()),
        ("STRAIT_SOURCE__SASL__OAUTH_CLIENT_SECRET", secret.to_owned()),
        ("STRAIT_SOURCE__SASL__OAUTH_SCOPE", "kafka".to_owned()),
        ("STRAIT_SOURCE__ALLOW_PLAINTEXT_CREDENTIALS", "true".to_owned()),
        ("STRAIT_TARGET__BOOTSTRAP_SERVERS", k.plain_bootstrap()),
        ("STRAIT_TOPICS__INCLUDE", topic.to_owned()),
        ("STRAIT_TOPICS__PREFIX", "copy-".to_owned()),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_stops_strait_and_a_failing_endpoint_is_waited_out() {
    let idp = Idp::start().await;
    let Some(k) = kafka().await else {
        return;
    };

    // A wrong client secret: Keycloak's 401, named with the endpoint; strait exits 77 as for a
    // refused password, without printing the secret.
    let out = strait_run(&k, &idp, WRONG_SECRET, "nothing-here").output_async().await;
    let msg = out.text();
    assert!(
        idp.refused.load(Ordering::SeqCst) >= 1,
        "the endpoint refused nothing: {msg}"
    );
    assert_eq!(out.code(), Some(77), "{msg}");
    for needle in [
        "SASL OAUTHBEARER authentication failed",
        &format!(
            "OAuth token endpoint {} answered HTTP 401: unauthorized_client",
            idp.url
        ),
        "source.sasl.oauth_client_id",
    ] {
        assert!(msg.contains(needle), "lacks {needle:?}: {msg}");
    }
    assert!(!msg.contains(WRONG_SECRET), "the secret leaked: {msg}");

    // An endpoint answering 503: strait stays up, not ready, naming the endpoint, and starts
    // once the endpoint issues tokens again.
    idp.failing.store(503, Ordering::SeqCst);
    let mut strait = strait_run(&k, &idp, CLIENT_SECRET, "nothing-here").spawn();
    let body = strait
        .wait_for("/readyz", "not ready, naming the token endpoint", |s, b| {
            s == 503 && b.contains("source cluster unreachable") && b.contains("answered HTTP 503")
        })
        .await;
    assert!(body.contains(&idp.url), "{body}");
    assert_eq!(idp.issued(), 0, "premise: no token issued while failing");
    idp.failing.store(0, Ordering::SeqCst);
    strait.ready().await;
    assert!(idp.issued() >= 1, "ready without a token");
    assert!(!strait.log().contains(CLIENT_SECRET), "the client secret was logged");
}
