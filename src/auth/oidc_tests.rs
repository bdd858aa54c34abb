//! Tests of [`super::OidcTokens`] through a scripted [`FormPost`]: the request, the answers, and
//! the token cache on paused time.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use parking_lot::Mutex;

use super::*;
use crate::auth::TokenCache;
use crate::config::SaslMechanism;

/// One request as the endpoint saw it: the decoded Basic credentials and the form body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    basic: String,
    body: String,
}

type Answer = std::io::Result<(u16, Bytes)>;

/// Answers from a script (then "t<n>" tokens living `lifetime`); keeps what it was sent.
#[derive(Debug, Clone, Default)]
struct Scripted {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
    issued: Arc<AtomicUsize>,
    lifetime_secs: u64,
}

impl Scripted {
    fn new(lifetime_secs: u64) -> Self {
        Self {
            lifetime_secs,
            ..Self::default()
        }
    }

    fn then(&self, answer: Answer) -> &Self {
        self.script.lock().push_back(answer);
        self
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }
}

impl FormPost for Scripted {
    fn post(&self, authorization: Secret, body: String) -> BoxFuture<'_, std::io::Result<(u16, Bytes)>> {
        Box::pin(async move {
            let encoded = authorization.expose().strip_prefix("Basic ").expect("Basic scheme");
            let basic = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .expect("base64");
            self.seen.lock().push(Seen {
                basic: String::from_utf8(basic).expect("utf-8"),
                body,
            });
            if let Some(answer) = self.script.lock().pop_front() {
                return answer;
            }
            let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
            let json = format!(
                r#"{{"access_token":"t{n}","token_type":"Bearer","expires_in":{}}}"#,
                self.lifetime_secs
            );
            Ok((200, Bytes::from(json)))
        })
    }
}

fn config() -> SaslConfig {
    SaslConfig {
        mechanism: SaslMechanism::OauthBearer,
        oauth_token_endpoint_url: "https://idp.example/realms/kafka/protocol/openid-connect/token".into(),
        oauth_client_id: "strait mirror".into(),
        oauth_client_secret: Secret::new("p@ss:w/rd"),
        ..SaslConfig::default()
    }
}

#[tokio::test]
async fn the_request_is_a_client_credentials_grant_with_basic_authentication() {
    let http = Scripted::new(60);
    let with_scope = SaslConfig {
        oauth_scope: "kafka profile".into(),
        ..config()
    };
    let tokens = OidcTokens::with_transport("source", &with_scope, http.clone());
    let token = tokens.fetch().await.expect("token");
    assert_eq!(token.value.expose(), "t1");
    assert_eq!(token.lifetime, Duration::from_secs(60));
    assert_eq!(
        http.seen(),
        vec![Seen {
            // Id and secret are form-encoded before Basic (RFC 6749 section 2.3.1).
            basic: "strait+mirror:p%40ss%3Aw%2Frd".into(),
            body: "grant_type=client_credentials&scope=kafka+profile".into(),
        }]
    );
    OidcTokens::with_transport("source", &config(), http.clone())
        .fetch()
        .await
        .expect("token");
    assert_eq!(http.seen()[1].body, "grant_type=client_credentials", "no scope asked");
    assert!(!format!("{tokens:?}").contains("p@ss"), "Debug shows no secret");
}

#[test]
fn answers_are_parsed_with_their_lifetime() {
    let ok = |json: &str| parse_token(json.as_bytes()).map(|t| (t.value.expose().to_owned(), t.lifetime));
    assert_eq!(
        ok(r#"{"access_token":"a","expires_in":300}"#),
        Ok(("a".into(), Duration::from_secs(300)))
    );
    assert_eq!(
        ok(r#"{"access_token":"a","expires_in":"90"}"#),
        Ok(("a".into(), Duration::from_secs(90)))
    );
    assert_eq!(ok(r#"{"access_token":"a"}"#), Ok(("a".into(), DEFAULT_LIFETIME)));
    for (json, problem) in [
        (r#"{"token":"a","expires_in":300}"#, "no access_token string"),
        (r#"{"access_token":"","expires_in":300}"#, "no access_token string"),
        (r#"{"access_token":"a","expires_in":0}"#, "less than one second"),
        (r#"{"access_token":"a","expires_in":true}"#, "not a number"),
        ("<html>login</html>", "not JSON"),
    ] {
        let err = ok(json).expect_err(json);
        assert!(err.contains(problem), "{json}: {err}");
    }
    let cut = ok(r#"{"access_token":"eyJhbGciOi"#).expect_err("cut off");
    assert!(!cut.contains("eyJ"), "a cut-off token is not quoted: {cut}");
}

#[tokio::test]
async fn errors_are_typed_and_never_carry_the_secret() {
    let http = Scripted::new(60);
    http.then(Ok((
        401,
        Bytes::from_static(br#"{"error":"unauthorized_client","error_description":"Invalid client secret p@ss:w/rd"}"#),
    )))
    .then(Ok((503, Bytes::from_static(b"upstream down"))))
    .then(Err(std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        "refused",
    )))
    .then(Ok((200, Bytes::from_static(b"<html>"))));
    let tokens = OidcTokens::with_transport("target", &config(), http);
    let endpoint = "OAuth token endpoint https://idp.example/realms/kafka/protocol/openid-connect/token";

    let err = tokens.fetch().await.expect_err("401");
    let msg = err.chain();
    assert!(
        msg.starts_with(&format!(
            "{endpoint} answered HTTP 401: unauthorized_client (Invalid client secret ***)"
        )),
        "{msg}"
    );
    assert!(
        err.is_refusal() && err.fix().contains("target.sasl.oauth_client_id"),
        "{}",
        err.fix()
    );
    assert!(!msg.contains("p@ss"), "{msg}");

    let err = tokens.fetch().await.expect_err("503");
    assert_eq!(err.chain(), format!("{endpoint} answered HTTP 503: \"upstream down\""));
    assert!(!err.is_refusal(), "a failing endpoint is retried");

    let err = tokens.fetch().await.expect_err("unreachable");
    assert!(matches!(err, Error::Unreachable { .. }) && !err.is_refusal(), "{err:?}");
    assert!(err.chain().contains("refused"), "{}", err.chain());

    let err = tokens.fetch().await.expect_err("malformed");
    assert!(
        matches!(err, Error::Malformed { .. }) && err.fix().contains("openid-connect/token"),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_cache_refreshes_at_80_percent_and_retries_after_an_error() {
    let http = Scripted::new(100);
    let cache = TokenCache::new("target", OidcTokens::with_transport("target", &config(), http.clone()));
    assert_eq!(cache.token().await.expect("first").expose(), "t1");
    assert_eq!(cache.token().await.expect("cached").expose(), "t1");
    assert_eq!(http.seen().len(), 1, "one request per token");

    tokio::time::sleep(Duration::from_secs(79)).await;
    assert_eq!(http.seen().len(), 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(http.seen().len(), 2, "refreshed at 80 s of 100");
    assert_eq!(cache.token().await.expect("refreshed").expose(), "t2");

    // The next refresh (at 160 s) fails; the token is still handed out, and the retry 1 s later
    // gets a new one.
    http.then(Err(std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        "refused",
    )));
    tokio::time::sleep(Duration::from_millis(79_500)).await;
    assert_eq!(http.seen().len(), 3, "the refresh was tried");
    assert_eq!(cache.token().await.expect("old token").expose(), "t2");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(http.seen().len(), 4, "retried");
    assert_eq!(cache.token().await.expect("after the retry").expose(), "t3");
}

#[tokio::test(start_paused = true)]
async fn a_rotated_secret_file_is_used_by_the_next_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("client-secret");
    std::fs::write(&path, "first\n").expect("write");
    let sasl = SaslConfig {
        oauth_client_secret: Secret::default(),
        oauth_client_secret_file: path.to_string_lossy().into_owned(),
        ..config()
    };
    let http = Scripted::new(10);
    let cache = TokenCache::new("source", OidcTokens::with_transport("source", &sasl, http.clone()));
    cache.token().await.expect("first");
    std::fs::write(&path, "rotated\n").expect("rotate");
    tokio::time::sleep(Duration::from_millis(8_100)).await;
    let secrets: Vec<String> = http.seen().into_iter().map(|s| s.basic).collect();
    assert_eq!(secrets, ["strait+mirror:first", "strait+mirror:rotated"]);

    std::fs::remove_file(&path).expect("remove");
    let tokens = OidcTokens::with_transport("source", &sasl, http.clone());
    let err = tokens.fetch().await.expect_err("no file");
    assert!(matches!(err, Error::ClientSecret { .. }) && err.is_refusal(), "{err:?}");
    assert!(
        err.fix().contains("source.sasl.oauth_client_secret_file"),
        "{}",
        err.fix()
    );
}
