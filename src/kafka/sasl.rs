//! SASL on a fresh broker connection: SaslHandshake, then SaslAuthenticate round trips driven by
//! rsasl (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), before the connection carries any other request.
//!
//! It owns the mechanism exchange and the credentials' one use; the password is exposed only to
//! rsasl and never enters an error or a log line.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::{ParseResponseErrorCode, ResponseError};
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use rsasl::prelude::{Mechname, SASLClient, SASLConfig, State};

use super::conn::Handshake;
use super::error::{Error, Result};
use crate::config::{SaslConfig, SaslMechanism, Secret};

/// The SASL settings of one cluster.
#[derive(Clone)]
pub(crate) struct Sasl {
    side: String,
    mechanism: SaslMechanism,
    username: String,
    config: SaslConfig,
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
        })
    }

    /// The mechanism's name, as in config.
    pub(crate) fn mechanism(&self) -> &'static str {
        self.mechanism.as_str()
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
        if self.config.password_file.is_empty() {
            format!("check {s}.sasl.username and {s}.sasl.password against the user the broker knows")
        } else {
            format!(
                "check {s}.sasl.username and the password in {} against the user the broker knows",
                self.config.password_file
            )
        }
    }

    /// Authenticates the connection `hs` is driving; every request goes out in order before the
    /// connection is handed to the pipelined reader and writer.
    pub(crate) async fn authenticate(&self, hs: &mut Handshake<'_>) -> Result<Authenticated> {
        let broker = hs.broker().to_owned();
        let mechanism = self.mechanism.as_str();
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
                return Ok(Authenticated::default());
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
            if let State::Finished(_) = state {
                return Ok(Authenticated {
                    session_lifetime_ms: answer.session_lifetime_ms,
                });
            }
            input = Some(answer.auth_bytes);
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
}
