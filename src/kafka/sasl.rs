//! SASL on a broker connection: SaslHandshake, then SaslAuthenticate round trips driven by
//! rsasl (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) or one bearer-token message (OAUTHBEARER with a
//! static token or one from an OAuth 2 token endpoint, and AWS_MSK_IAM, which is OAUTHBEARER
//! with a signed token; tokens that expire come from [`crate::auth`]). It runs before the
//! connection carries any other request, and again in band when the broker set a session
//! lifetime (KIP-368, see `conn`).
//!
//! It owns the mechanism exchange and the credentials' one use; the password or token is
//! exposed only to the SASL message and never enters an error or a log line.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::{ParseResponseErrorCode, ResponseError};
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use rsasl::prelude::{Mechname, SASLClient, SASLConfig, State};

use super::conn::Exchange;
use super::error::{Error, Result};
use crate::auth::TokenCache;
use crate::config::{SaslConfig, SaslMechanism, Secret};

/// The SASL settings of one cluster.
#[derive(Clone)]
pub(crate) struct Sasl {
    side: String,
    mechanism: SaslMechanism,
    username: String,
    config: SaslConfig,
    /// Where AWS_MSK_IAM and token-endpoint tokens come from; shared by every connection of
    /// the cluster.
    tokens: Option<TokenCache>,
}

impl std::fmt::Debug for Sasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// What a successful authentication reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Authenticated {
    /// Milliseconds until the broker ends the session unless re-authenticated (KIP-368); 0 when
    /// the broker sets no limit.
    pub(crate) session_lifetime_ms: i64,
}

impl Sasl {
    /// The SASL settings from the `sasl.*` keys of `side`, or `None` without a mechanism.
    pub(crate) fn from_config(side: &str, config: &SaslConfig) -> Option<Self> {
        (config.mechanism != SaslMechanism::None).then(|| Self {
            side: side.to_owned(),
            mechanism: config.mechanism,
            username: config.username.clone(),
            config: config.clone(),
            tokens: Self::default_tokens(side, config),
        })
    }

    /// OAUTHBEARER tokens from a token endpoint, or AWS_MSK_IAM tokens; `None` for a static
    /// token or a password.
    fn default_tokens(side: &str, config: &SaslConfig) -> Option<TokenCache> {
        if config.uses_token_endpoint() {
            return Some(TokenCache::new(
                side,
                crate::auth::OidcTokens::from_config(side, config),
            ));
        }
        Self::msk_iam_tokens(side, config)
    }

    #[cfg(feature = "msk-iam")]
    fn msk_iam_tokens(side: &str, config: &SaslConfig) -> Option<TokenCache> {
        (config.mechanism == SaslMechanism::AwsMskIam)
            .then(|| TokenCache::new(side, crate::auth::MskIamTokens::new(&config.aws_region)))
    }

    #[cfg(not(feature = "msk-iam"))]
    fn msk_iam_tokens(_side: &str, _config: &SaslConfig) -> Option<TokenCache> {
        // Config validation refuses AWS_MSK_IAM in this build.
        None
    }

    /// Takes bearer tokens from `tokens` instead (tests: static credentials, short lifetimes).
    pub(crate) fn set_tokens(&mut self, tokens: TokenCache) {
        self.tokens = Some(tokens);
    }

    /// The mechanism's name, as in config.
    pub(crate) fn mechanism(&self) -> &'static str {
        self.mechanism.as_str()
    }

    /// The cluster ("source", "target") these settings belong to.
    pub(crate) fn cluster(&self) -> &str {
        &self.side
    }

    /// The mechanism named in SaslHandshake: AWS_MSK_IAM tokens travel as OAUTHBEARER.
    fn wire_mechanism(&self) -> &'static str {
        match self.mechanism {
            SaslMechanism::AwsMskIam => SaslMechanism::OauthBearer.as_str(),
            m => m.as_str(),
        }
    }

    fn is_bearer(&self) -> bool {
        matches!(self.mechanism, SaslMechanism::OauthBearer | SaslMechanism::AwsMskIam)
    }

    fn failure(&self, broker: &str, reason: impl Into<String>, fix: impl Into<String>) -> Error {
        Error::Auth {
            cluster: self.side.clone(),
            broker: broker.to_owned(),
            mechanism: self.mechanism.as_str(),
            reason: reason.into(),
            fix: fix.into(),
            code: None,
        }
    }

    fn credentials_fix(&self) -> String {
        let s = &self.side;
        if self.mechanism == SaslMechanism::AwsMskIam {
            return format!(
                "check that the AWS credentials strait finds (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                 AWS_PROFILE, AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN, or the instance role) are current \
                 and allowed kafka-cluster:Connect on this cluster, and that {s}.sasl.aws_region is its region"
            );
        }
        if self.config.uses_token_endpoint() {
            return format!(
                "check that the tokens the client {:?} gets from {} are meant for this cluster (audience, \
                 scope {:?}) and carry the claims its brokers' validator requires",
                self.config.oauth_client_id, self.config.oauth_token_endpoint_url, self.config.oauth_scope
            );
        }
        if self.mechanism == SaslMechanism::OauthBearer {
            return format!(
                "check that the bearer token in {s}.sasl.password_file is current and meant for this cluster"
            );
        }
        if self.config.password_file.is_empty() {
            format!("check {s}.sasl.username and {s}.sasl.password against the user the broker knows")
        } else {
            format!(
                "check {s}.sasl.username and the password in {} against the user the broker knows",
                self.config.password_file
            )
        }
    }

    /// Authenticates the connection `hs` is driving: each request is answered before the next
    /// goes out (at connect time, before the connection is handed to the pipelined reader and
    /// writer; at re-authentication, while the writer holds every other request back).
    pub(crate) async fn authenticate<E: Exchange>(&self, hs: &mut E) -> Result<Authenticated> {
        let broker = hs.broker().to_owned();
        let mechanism = self.wire_mechanism();
        if !hs.versions().supports::<SaslHandshakeRequest>() || !hs.versions().supports::<SaslAuthenticateRequest>() {
            return Err(self.failure(
                &broker,
                "the broker offers no SASL on this listener",
                format!(
                    "use the brokers' SASL listener port, or set {}.sasl.mechanism = \"\" if this listener needs none",
                    self.side
                ),
            ));
        }
        let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
        let answer = hs.exchange(&handshake).await?;
        if answer.error_code != 0 {
            let offered: Vec<String> = answer.mechanisms.iter().map(|m| m.to_string()).collect();
            let offered = if offered.is_empty() {
                "none".to_owned()
            } else {
                offered.join(", ")
            };
            let mut err = self.failure(
                &broker,
                format!("the broker does not offer {mechanism}; it offers {offered}"),
                format!("set {}.sasl.mechanism to one the broker offers", self.side),
            );
            if let Error::Auth { code, .. } = &mut err {
                *code = answer.error_code.err();
            }
            return Err(err);
        }
        if self.is_bearer() {
            return self.bearer(hs, &broker).await;
        }

        let password = self.config.read_password().map_err(|e| {
            self.failure(
                &broker,
                format!("the password file {} cannot be read ({e})", self.config.password_file),
                format!(
                    "point {}.sasl.password_file at a readable file (is the secret mounted?)",
                    self.side
                ),
            )
        })?;
        let mut session = self.start(&password).map_err(|e| {
            self.failure(
                &broker,
                format!("the SASL client cannot start ({e})"),
                "report this as a bug in strait",
            )
        })?;
        let mut input: Option<Bytes> = None;
        // The broker sets the session lifetime in its last SaslAuthenticate answer, which for
        // SCRAM carries the server-final message that the client checks in one more step.
        let mut session_lifetime_ms = 0;
        loop {
            let mut out = Vec::new();
            let state = session.step(input.as_deref(), &mut out).map_err(|e| {
                self.failure(
                    &broker,
                    format!("the {mechanism} exchange failed ({e}); the broker may not know this user and password"),
                    self.credentials_fix(),
                )
            })?;
            if !state.has_sent_message() {
                return Ok(Authenticated { session_lifetime_ms });
            }
            let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(out));
            let answer = hs.exchange(&request).await?;
            if answer.error_code != 0 {
                let code = answer.error_code.err();
                let said = answer
                    .error_message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                let fix = match code {
                    Some(ResponseError::SaslAuthenticationFailed) | None => self.credentials_fix(),
                    Some(_) => format!("check the broker's SASL settings for {mechanism}"),
                };
                return Err(Error::Auth {
                    cluster: self.side.clone(),
                    broker,
                    mechanism,
                    reason: format!("the broker refused the credentials of user {:?}{said}", self.username),
                    fix,
                    code,
                });
            }
            session_lifetime_ms = answer.session_lifetime_ms;
            if let State::Finished(_) = state {
                return Ok(Authenticated { session_lifetime_ms });
            }
            input = Some(answer.auth_bytes);
        }
    }

    /// OAUTHBEARER (RFC 7628, KIP-255): one client message with the token. A broker that
    /// refuses it may first send an error challenge (JSON); the client answers it with a lone
    /// 0x01 and then gets the refusal.
    async fn bearer<E: Exchange>(&self, hs: &mut E, broker: &str) -> Result<Authenticated> {
        let token = match &self.tokens {
            Some(cache) => cache.token().await.map_err(|e| self.no_token(broker, &e))?,
            None => self.config.read_password().map_err(|e| {
                self.failure(
                    broker,
                    format!("the token file {} cannot be read ({e})", self.config.password_file),
                    format!(
                        "point {}.sasl.password_file at a readable file (is the secret mounted?)",
                        self.side
                    ),
                )
            })?,
        };
        let message = format!("n,,\x01auth=Bearer {}\x01\x01", token.expose());
        let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message));
        let mut answer = hs.exchange(&request).await?;
        let mut challenge = None;
        if answer.error_code == 0 && !answer.auth_bytes.is_empty() {
            challenge = Some(String::from_utf8_lossy(&answer.auth_bytes).into_owned());
            let ack = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\x01"));
            answer = hs.exchange(&ack).await?;
            if answer.error_code == 0 {
                return Err(self.failure(
                    broker,
                    format!(
                        "the broker sent an error challenge ({}) but then accepted",
                        challenge.unwrap_or_default()
                    ),
                    format!("check the broker's SASL settings for {}", self.wire_mechanism()),
                ));
            }
        }
        if answer.error_code != 0 {
            let code = answer.error_code.err();
            let said = answer
                .error_message
                .as_ref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            let challenge = challenge.map(|c| format!(" (challenge {c})")).unwrap_or_default();
            let fix = match code {
                Some(ResponseError::SaslAuthenticationFailed) | None => self.credentials_fix(),
                Some(_) => format!("check the broker's SASL settings for {}", self.wire_mechanism()),
            };
            return Err(Error::Auth {
                cluster: self.side.clone(),
                broker: broker.to_owned(),
                mechanism: self.mechanism.as_str(),
                reason: format!("the broker refused the bearer token at SaslAuthenticate{said}{challenge}"),
                fix,
                code,
            });
        }
        Ok(Authenticated {
            session_lifetime_ms: answer.session_lifetime_ms,
        })
    }

    /// A token that could not be had: refused or unusable credentials fail authentication; an
    /// unreachable or failing token service is retried like an unreachable broker.
    fn no_token(&self, broker: &str, e: &crate::auth::Error) -> Error {
        if e.is_refusal() {
            return self.failure(broker, format!("no token ({})", e.chain()), e.fix());
        }
        Error::TokenUnavailable {
            cluster: self.side.clone(),
            broker: broker.to_owned(),
            reason: e.chain(),
            fix: e.fix(),
        }
    }

    fn start(&self, password: &Secret) -> std::result::Result<rsasl::prelude::Session, String> {
        let config: Arc<SASLConfig> =
            SASLConfig::with_credentials(None, self.username.clone(), password.expose().to_owned())
                .map_err(|e| e.to_string())?;
        let name = Mechname::parse(self.mechanism.as_str().as_bytes()).map_err(|e| e.to_string())?;
        SASLClient::new(config)
            .start_suggested(&[name])
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::versions::BrokerVersions;
    use kafka_protocol::messages::{SaslAuthenticateResponse, SaslHandshakeResponse};
    use kafka_protocol::protocol::{Decodable, Encodable, Request};

    #[test]
    fn only_a_mechanism_turns_sasl_on() {
        assert!(Sasl::from_config("source", &SaslConfig::default()).is_none());
        let config = SaslConfig {
            mechanism: SaslMechanism::ScramSha512,
            username: "u".into(),
            password: Secret::new("hunter2"),
            ..SaslConfig::default()
        };
        let sasl = Sasl::from_config("source", &config).expect("on");
        assert!(!format!("{sasl:?}").contains("hunter2"));
    }

    #[test]
    fn rsasl_offers_every_password_mechanism() {
        let config = |m| SaslConfig {
            mechanism: m,
            username: "u".into(),
            password: Secret::new("p"),
            ..SaslConfig::default()
        };
        for m in [
            SaslMechanism::Plain,
            SaslMechanism::ScramSha256,
            SaslMechanism::ScramSha512,
        ] {
            let sasl = Sasl::from_config("source", &config(m)).expect("on");
            let mut session = sasl.start(&Secret::new("p")).expect("mechanism compiled in");
            let mut out = Vec::new();
            session.step(None, &mut out).expect("client goes first");
            assert!(!out.is_empty(), "{m}");
            if m == SaslMechanism::Plain {
                assert_eq!(out, b"\0u\0p");
            } else {
                assert!(out.starts_with(b"n,,n=u,r="), "{m}");
            }
        }
    }

    /// A broker that answers from a script and keeps what it was sent.
    struct Scripted {
        versions: BrokerVersions,
        answers: std::collections::VecDeque<Bytes>,
        sent: Vec<Bytes>,
    }

    impl Scripted {
        fn new(answers: Vec<Bytes>) -> Self {
            let range = |max| kafka_protocol::protocol::VersionRange { min: 0, max };
            Self {
                versions: BrokerVersions::new([
                    (SaslHandshakeRequest::KEY, range(1)),
                    (SaslAuthenticateRequest::KEY, range(2)),
                ]),
                answers: answers.into(),
                sent: Vec::new(),
            }
        }
    }

    fn encoded<T: Encodable>(body: &T, version: i16) -> Bytes {
        let mut buf = bytes::BytesMut::new();
        body.encode(&mut buf, version).expect("encodes");
        buf.freeze()
    }

    impl Exchange for Scripted {
        fn broker(&self) -> &str {
            "b:9098"
        }

        fn versions(&self) -> &BrokerVersions {
            &self.versions
        }

        async fn exchange<R: Request + Sync>(&mut self, request: &R) -> Result<R::Response> {
            let version = self.versions.pick::<R>().expect("scripted versions");
            self.sent.push(encoded(request, version));
            let mut answer = self.answers.pop_front().expect("a scripted answer");
            Ok(R::Response::decode(&mut answer, version).expect("scripted answer decodes"))
        }
    }

    fn bearer(token: &str) -> Sasl {
        let config = SaslConfig {
            mechanism: SaslMechanism::OauthBearer,
            password: Secret::new(token),
            ..SaslConfig::default()
        };
        Sasl::from_config("target", &config).expect("on")
    }

    fn handshake_ok() -> Bytes {
        let ok = SaslHandshakeResponse::default().with_mechanisms(vec![StrBytes::from_static_str("OAUTHBEARER")]);
        encoded(&ok, 1)
    }

    #[tokio::test]
    async fn oauthbearer_sends_one_message_and_reports_the_session_lifetime() {
        let sasl = bearer("tok-123");
        let mut broker = Scripted::new(vec![
            handshake_ok(),
            encoded(&SaslAuthenticateResponse::default().with_session_lifetime_ms(3_000), 2),
        ]);
        let auth = sasl.authenticate(&mut broker).await.expect("accepted");
        assert_eq!(auth.session_lifetime_ms, 3_000);
        let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
        assert!(contains(&broker.sent[0], b"OAUTHBEARER"));
        assert!(contains(&broker.sent[1], b"n,,\x01auth=Bearer tok-123\x01\x01"));
    }

    #[tokio::test]
    async fn a_refused_token_is_acknowledged_then_reported_without_the_token() {
        let sasl = bearer("tok-secret-456");
        let challenge =
            SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from_static(br#"{"status":"invalid_token"}"#));
        let refusal = SaslAuthenticateResponse::default()
            .with_error_code(58)
            .with_error_message(Some(StrBytes::from_static_str("invalid token")));
        let mut broker = Scripted::new(vec![handshake_ok(), encoded(&challenge, 2), encoded(&refusal, 2)]);
        let err = sasl.authenticate(&mut broker).await.expect_err("refused");
        assert_eq!(broker.sent.len(), 3, "the challenge was answered");
        // SaslAuthenticate v2: compact bytes (length 1 + 1), the lone 0x01, no tagged fields.
        assert!(broker.sent[2].ends_with(&[2, 1, 0]), "{:?}", broker.sent[2]);
        assert_eq!(err.exit_code(), Some(77));
        let msg = err.to_string();
        assert!(
            msg.starts_with("target cluster, broker b:9098: SASL OAUTHBEARER authentication failed"),
            "{msg}"
        );
        assert!(
            msg.contains("invalid_token") && msg.contains("fix: check that the bearer token"),
            "{msg}"
        );
        assert!(!msg.contains("tok-secret-456"), "{msg}");
    }

    /// A token endpoint that always gives the same answer.
    #[derive(Debug)]
    struct Endpoint(u16, &'static str);

    impl crate::auth::FormPost for Endpoint {
        fn post(&self, _: Secret, _: String) -> crate::auth::BoxFuture<'_, std::io::Result<(u16, Bytes)>> {
            Box::pin(async move { Ok((self.0, Bytes::from_static(self.1.as_bytes()))) })
        }
    }

    fn from_endpoint(status: u16, body: &'static str) -> Sasl {
        let config = SaslConfig {
            mechanism: SaslMechanism::OauthBearer,
            oauth_token_endpoint_url: "https://idp.example/token".into(),
            oauth_client_id: "strait".into(),
            oauth_client_secret: Secret::new("client-secret-789"),
            ..SaslConfig::default()
        };
        let mut sasl = Sasl::from_config("target", &config).expect("on");
        let tokens = crate::auth::OidcTokens::with_transport("target", &config, Endpoint(status, body));
        sasl.set_tokens(TokenCache::new("target", tokens));
        sasl
    }

    #[tokio::test]
    async fn endpoint_tokens_are_sent_a_refusal_stops_and_an_outage_is_retried() {
        let sasl = from_endpoint(200, r#"{"access_token":"jwt-1","expires_in":300}"#);
        let mut broker = Scripted::new(vec![handshake_ok(), encoded(&SaslAuthenticateResponse::default(), 2)]);
        sasl.authenticate(&mut broker).await.expect("accepted");
        assert!(broker.sent[1].windows(10).any(|w| w == b"Bearer jwt"));

        let sasl = from_endpoint(401, r#"{"error":"unauthorized_client"}"#);
        let err = sasl
            .authenticate(&mut Scripted::new(vec![handshake_ok()]))
            .await
            .expect_err("refused client");
        assert!(err.is_security_failure() && err.exit_code() == Some(77), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("OAuth token endpoint https://idp.example/token answered HTTP 401: unauthorized_client"),
            "{msg}"
        );
        assert!(msg.contains("fix: check target.sasl.oauth_client_id"), "{msg}");

        let sasl = from_endpoint(503, "");
        let err = sasl
            .authenticate(&mut Scripted::new(vec![handshake_ok()]))
            .await
            .expect_err("endpoint down");
        assert!(matches!(err, Error::TokenUnavailable { .. }), "{err:?}");
        assert!(err.is_retriable() && !err.is_security_failure() && err.exit_code() == Some(69));
        assert!(!format!("{err} {err:?} {sasl:?}").contains("client-secret-789"));
    }
}
