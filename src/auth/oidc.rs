//! [`OidcTokens`]: OAUTHBEARER tokens from an OAuth 2 token endpoint with the client-credentials
//! grant (RFC 6749 section 4.4), as Keycloak issues them to Strimzi / AMQ Streams clients.
//!
//! The client authenticates with HTTP Basic (id and secret form-encoded first, RFC 6749 section
//! 2.3.1); the secret is re-read from its file on every request, so a rotated Secret is used
//! without a restart. It owns the request and the answer's interpretation; the HTTP exchange
//! itself is behind [`FormPost`] (sockets: [`super::HttpPost`]), and caching and refreshing
//! belong to [`super::TokenCache`]. Not covered: refresh tokens, `private_key_jwt` client
//! authentication, token introspection.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;

use super::{BoxFuture, Error, HttpPost, Result, Token, TokenSource};
use crate::config::{SaslConfig, Secret};

/// A token whose answer has no `expires_in` is treated as living this long.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// At most this much of an error answer's `error_description` is quoted.
const MAX_DETAIL: usize = 300;

/// One POST of a form to the token endpoint: what [`OidcTokens`] needs from HTTP.
pub trait FormPost: Send + Sync + std::fmt::Debug + 'static {
    /// POSTs `body` (`application/x-www-form-urlencoded`) with the `Authorization` header
    /// `authorization`; returns the answer's status and body.
    fn post(&self, authorization: Secret, body: String) -> BoxFuture<'_, std::io::Result<(u16, Bytes)>>;
}

/// Issues tokens from the token endpoint of one cluster's `sasl.oauth_*` keys.
pub struct OidcTokens {
    cluster: String,
    config: SaslConfig,
    /// The HTTP client, or why it could not be built (reported by every fetch).
    http: std::result::Result<Box<dyn FormPost>, Error>,
}

impl std::fmt::Debug for OidcTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcTokens")
            .field("cluster", &self.cluster)
            .field("endpoint", &self.config.oauth_token_endpoint_url)
            .field("client_id", &self.config.oauth_client_id)
            .finish_non_exhaustive()
    }
}

impl OidcTokens {
    /// Tokens from the endpoint of `config` (`sasl.*` of cluster `cluster`), over HTTP(S).
    pub fn from_config(cluster: &str, config: &SaslConfig) -> Self {
        let http = HttpPost::new(cluster, &config.oauth_token_endpoint_url, &config.oauth_ca_file)
            .map(|h| Box::new(h) as Box<dyn FormPost>);
        Self {
            cluster: cluster.to_owned(),
            config: config.clone(),
            http,
        }
    }

    /// Tokens from the endpoint of `config`, exchanged through `http` (tests: no sockets).
    pub fn with_transport(cluster: &str, config: &SaslConfig, http: impl FormPost) -> Self {
        Self {
            cluster: cluster.to_owned(),
            config: config.clone(),
            http: Ok(Box::new(http)),
        }
    }

    fn endpoint(&self) -> String {
        self.config.oauth_token_endpoint_url.clone()
    }

    async fn issue(&self) -> Result<Token> {
        let http = self.http.as_ref().map_err(Clone::clone)?;
        let secret = self.config.read_client_secret().map_err(|e| Error::ClientSecret {
            cluster: self.cluster.clone(),
            path: self.config.oauth_client_secret_file.clone(),
            source: Arc::new(e),
        })?;
        let authorization = basic_authorization(&self.config.oauth_client_id, &secret);
        let mut body = "grant_type=client_credentials".to_owned();
        if !self.config.oauth_scope.is_empty() {
            body.push_str("&scope=");
            body.push_str(&form_encode(&self.config.oauth_scope));
        }
        let (status, answer) = http.post(authorization, body).await.map_err(|e| Error::Unreachable {
            cluster: self.cluster.clone(),
            endpoint: self.endpoint(),
            source: Arc::new(e),
        })?;
        if status != 200 {
            return Err(Error::Status {
                cluster: self.cluster.clone(),
                endpoint: self.endpoint(),
                status,
                detail: error_detail(&answer, &secret),
            });
        }
        parse_token(&answer).map_err(|problem| Error::Malformed {
            cluster: self.cluster.clone(),
            endpoint: self.endpoint(),
            problem,
        })
    }
}

impl TokenSource for OidcTokens {
    fn fetch(&self) -> BoxFuture<'_, Result<Token>> {
        Box::pin(self.issue())
    }
}

/// `Basic base64(form(id):form(secret))`, RFC 6749 section 2.3.1.
fn basic_authorization(client_id: &str, secret: &Secret) -> Secret {
    let pair = format!("{}:{}", form_encode(client_id), form_encode(secret.expose()));
    Secret::new(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    ))
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749 appendix B).
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(char::from(b)),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The token and its lifetime from a successful answer (RFC 6749 section 5.1).
fn parse_token(answer: &[u8]) -> std::result::Result<Token, String> {
    let json: serde_json::Value = serde_json::from_slice(answer).map_err(|e| {
        // A cut-off token answer is not quoted: it would put the token in a log line.
        if answer.windows(12).any(|w| w == b"access_token") {
            format!("not JSON ({e})")
        } else {
            format!("not JSON ({e}): {}", quote(answer))
        }
    })?;
    let token = json
        .get("access_token")
        .and_then(serde_json::Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("no access_token string")?;
    let lifetime = match json.get("expires_in") {
        None | Some(serde_json::Value::Null) => DEFAULT_LIFETIME,
        Some(v) => {
            let secs = v
                .as_f64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .ok_or_else(|| format!("expires_in is not a number ({v})"))?;
            if !(secs >= 1.0 && secs.is_finite()) {
                return Err(format!("expires_in is {secs}, less than one second"));
            }
            Duration::from_secs_f64(secs)
        }
    };
    Ok(Token {
        value: Secret::new(token),
        lifetime,
    })
}

/// `: <error> (<error_description>)` of an error answer, or the start of a body that is not
/// such JSON; never the client secret, even if the endpoint echoed it.
fn error_detail(answer: &[u8], secret: &Secret) -> String {
    let json: Option<serde_json::Value> = serde_json::from_slice(answer).ok();
    let field = |name: &str| {
        json.as_ref()
            .and_then(|j| j.get(name))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let detail = match (field("error"), field("error_description")) {
        (Some(e), Some(d)) => format!("{e} ({d})"),
        (Some(e), None) => e,
        _ if answer.is_empty() => return String::new(),
        _ => quote(answer),
    };
    let mut detail: String = detail.chars().filter(|c| !c.is_control()).take(MAX_DETAIL).collect();
    if !secret.is_empty() {
        detail = detail.replace(secret.expose(), "***");
    }
    format!(": {detail}")
}

/// The start of a body that is not what was expected, printable.
fn quote(body: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(120)
        .collect();
    format!("{text:?}")
}

#[cfg(test)]
#[path = "oidc_tests.rs"]
mod tests;
