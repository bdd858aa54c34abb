//! Credential providers for SASL: bearer tokens that expire (MSK IAM, and OAuth 2 tokens from a
//! token endpoint), cached per cluster and refreshed before they expire by a background task, so
//! no connection waits for a signer, the AWS credential chain or the token endpoint once the
//! first token is in.
//!
//! It owns the token and its lifetime; it never opens a broker connection (that is
//! `kafka::sasl`) and never logs a token, a key or a session token: [`Secret`] carries them.
//!
//! Time is tokio's clock (`tokio::time::Instant`), so tests drive refreshes with paused time; a
//! [`TokenSource`] reports how long its token lives, not a wall-clock instant, which keeps a
//! paused clock and a real signer consistent.

#[cfg(feature = "msk-iam")]
mod msk_iam;

#[cfg(feature = "msk-iam")]
pub use msk_iam::MskIamTokens;

mod http;
mod oidc;

pub use http::HttpPost;
pub use oidc::{FormPost, OidcTokens};

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::config::Secret;

/// Result of the credential providers.
pub type Result<T, E = Error> = std::result::Result<T, E>;

type SharedError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Why no token could be had. Cloned to every connection that asked during one failure, so
/// a cause is reported once, not once per connection.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// The AWS credential chain found no usable credentials.
    #[error("no AWS credentials for region {region}")]
    Credentials {
        region: String,
        #[source]
        source: SharedError,
    },
    /// Credentials were found but no token could be signed with them.
    #[error("cannot sign an MSK IAM token for region {region}")]
    Sign {
        region: String,
        #[source]
        source: SharedError,
    },
    /// The file holding the OAuth client secret cannot be read.
    #[error("cannot read the OAuth client secret file {path}")]
    ClientSecret {
        cluster: String,
        path: String,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The HTTP client of the token endpoint cannot be set up (its CA file).
    #[error("{key} = {path:?} {problem}")]
    EndpointSetup {
        key: String,
        path: String,
        problem: String,
        #[source]
        source: Option<SharedError>,
    },
    /// The token endpoint could not be reached, or did not answer in time.
    #[error("OAuth token endpoint {endpoint} unreachable")]
    Unreachable {
        cluster: String,
        endpoint: String,
        #[source]
        source: SharedError,
    },
    /// The token endpoint answered with an HTTP error status; `detail` holds the answer's
    /// `error` and `error_description` (RFC 6749 section 5.2).
    #[error("OAuth token endpoint {endpoint} answered HTTP {status}{detail}")]
    Status {
        cluster: String,
        endpoint: String,
        status: u16,
        detail: String,
    },
    /// The token endpoint answered 200 but not with a token response.
    #[error("OAuth token endpoint {endpoint} sent a malformed answer: {problem}")]
    Malformed {
        cluster: String,
        endpoint: String,
        problem: String,
    },
}

impl Error {
    /// How an operator fixes it.
    pub fn fix(&self) -> String {
        match self {
            Error::Credentials { .. } => "give strait AWS credentials through the standard chain: \
                AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE with ~/.aws/credentials, \
                AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN (an OpenShift or EKS service account), \
                or an instance role"
                .to_owned(),
            Error::Sign { .. } => {
                "check the region and the AWS credentials; report a bug in strait if they are right".to_owned()
            }
            Error::ClientSecret { cluster, .. } => {
                format!("point {cluster}.sasl.oauth_client_secret_file at a readable file (is the secret mounted?)")
            }
            Error::EndpointSetup { .. } => "fix the file or the key".to_owned(),
            Error::Unreachable { cluster, endpoint, .. } => format!(
                "check that {endpoint} is reachable from strait (DNS, proxy, firewall) and that its certificate is \
                 signed by a CA in {cluster}.sasl.oauth_ca_file (or a system root); strait retries meanwhile"
            ),
            Error::Status { cluster, status, .. } if self.is_refusal() => format!(
                "check {cluster}.sasl.oauth_client_id and the client secret ({cluster}.sasl.oauth_client_secret_file) \
                 against the client registered at the endpoint, that the client may use the client-credentials \
                 grant (Keycloak: service accounts enabled), and {cluster}.sasl.oauth_scope (HTTP {status})"
            ),
            Error::Status { .. } => {
                "the identity provider failed to issue a token; strait retries, check its health and logs".to_owned()
            }
            Error::Malformed { cluster, .. } => format!(
                "check that {cluster}.sasl.oauth_token_endpoint_url is the token endpoint (Keycloak: \
                 .../realms/<realm>/protocol/openid-connect/token), not the issuer or a login page"
            ),
        }
    }

    /// Whether the credentials were refused or are unusable, so retrying with the same settings
    /// will not help (a connection refuses as it would for a wrong password); otherwise the
    /// token service is unreachable or failing, and the connection is retried like a broker
    /// outage.
    pub fn is_refusal(&self) -> bool {
        match self {
            Error::Credentials { .. }
            | Error::Sign { .. }
            | Error::ClientSecret { .. }
            | Error::EndpointSetup { .. } => true,
            Error::Status { status, .. } => matches!(status, 400 | 401 | 403),
            Error::Unreachable { .. } | Error::Malformed { .. } => false,
        }
    }

    /// The message with its whole cause chain, for one log line.
    pub fn chain(&self) -> String {
        crate::error_chain(self)
    }
}

/// A freshly issued bearer token.
#[derive(Clone)]
pub struct Token {
    /// The token itself.
    pub value: Secret,
    /// How long it is valid from the moment it was issued.
    pub lifetime: Duration,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("value", &self.value)
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

/// A boxed, sendable future: what a [`TokenSource`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where tokens come from: the MSK IAM signer, or a test double.
pub trait TokenSource: Send + Sync + std::fmt::Debug + 'static {
    /// Issues a new token.
    fn fetch(&self) -> BoxFuture<'_, Result<Token>>;
}

/// When to refresh a token, as a share of its lifetime (Kafka's Java client uses 0.8 too).
const REFRESH_AT: f64 = 0.8;
/// A token with less than this share of its lifetime left is not handed to a new connection.
const MIN_REMAINING: f64 = 0.1;
/// A failed fetch is shared with every caller for this long instead of being retried by each.
const FAILURE_HOLD: Duration = Duration::from_secs(1);
/// Retries of a failed background refresh back off up to this.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// The token cache of one cluster. Clones share the cache and its refresh task, which ends
/// when the last clone is dropped.
#[derive(Clone)]
pub struct TokenCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("cluster", &self.inner.cluster)
            .field("source", &self.inner.source)
            .field("refreshes", &self.refreshes())
            .finish_non_exhaustive()
    }
}

struct Inner {
    cluster: String,
    source: Box<dyn TokenSource>,
    max_lifetime: Option<Duration>,
    state: Mutex<State>,
    /// One fetch at a time: connections opened together share one signing.
    fetching: tokio::sync::Mutex<()>,
    refresher: Mutex<Option<AbortHandle>>,
    refreshes: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.refresher.lock().take() {
            task.abort();
        }
    }
}

#[derive(Default)]
struct State {
    token: Option<Cached>,
    /// The last failure and when it happened; cleared by a success.
    failure: Option<(Instant, Error)>,
    /// The cause last logged by the refresh task, so each cause is logged once.
    logged: Option<String>,
}

#[derive(Clone)]
struct Cached {
    value: Secret,
    issued: Instant,
    lifetime: Duration,
}

impl Cached {
    fn expires(&self) -> Instant {
        self.issued + self.lifetime
    }

    fn usable(&self, now: Instant) -> bool {
        self.expires().saturating_duration_since(now) > self.lifetime.mul_f64(MIN_REMAINING)
    }

    fn refresh_at(&self) -> Instant {
        self.issued + self.lifetime.mul_f64(REFRESH_AT)
    }
}

impl TokenCache {
    /// A cache for the tokens of cluster `cluster` ("source", "target"), issued by `source`.
    pub fn new(cluster: &str, source: impl TokenSource) -> Self {
        Self::build(cluster, Box::new(source), None)
    }

    /// Like [`TokenCache::new`], but tokens are treated as expiring after at most `max`
    /// (tests shorten the 900 s of MSK IAM tokens with it).
    pub fn with_max_lifetime(cluster: &str, source: impl TokenSource, max: Duration) -> Self {
        Self::build(cluster, Box::new(source), Some(max))
    }

    fn build(cluster: &str, source: Box<dyn TokenSource>, max_lifetime: Option<Duration>) -> Self {
        Self {
            inner: Arc::new(Inner {
                cluster: cluster.to_owned(),
                source,
                max_lifetime,
                state: Mutex::new(State::default()),
                fetching: tokio::sync::Mutex::new(()),
                refresher: Mutex::new(None),
                refreshes: AtomicU64::new(0),
            }),
        }
    }

    /// A token with enough lifetime left for a new authentication: the cached one, or (only
    /// before the first token, or after the refresh task failed for a whole lifetime) a new one
    /// fetched now.
    pub async fn token(&self) -> Result<Secret> {
        if let Some(value) = self.inner.cached() {
            return Ok(value);
        }
        let _one = self.inner.fetching.lock().await;
        if let Some(value) = self.inner.cached() {
            return Ok(value);
        }
        if let Some((at, err)) = &self.inner.state.lock().failure {
            if at.elapsed() < FAILURE_HOLD {
                return Err(err.clone());
            }
        }
        match self.inner.source.fetch().await {
            Ok(token) => {
                let value = self.inner.store(token);
                self.spawn_refresher();
                Ok(value)
            }
            Err(e) => {
                self.inner.state.lock().failure = Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    /// How many tokens the background task has fetched to replace one before it expired.
    pub fn refreshes(&self) -> u64 {
        self.inner.refreshes.load(Ordering::Relaxed)
    }

    fn spawn_refresher(&self) {
        let mut slot = self.inner.refresher.lock();
        if slot.is_some() {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        *slot = Some(tokio::spawn(refresh_loop(weak)).abort_handle());
    }
}

impl Inner {
    fn cached(&self) -> Option<Secret> {
        let state = self.state.lock();
        let token = state.token.as_ref()?;
        token.usable(Instant::now()).then(|| token.value.clone())
    }

    fn store(&self, token: Token) -> Secret {
        let lifetime = self.max_lifetime.map_or(token.lifetime, |max| token.lifetime.min(max));
        let mut state = self.state.lock();
        state.failure = None;
        state.token = Some(Cached {
            value: token.value.clone(),
            issued: Instant::now(),
            lifetime,
        });
        token.value
    }

    fn refresh_at(&self) -> Option<Instant> {
        self.state.lock().token.as_ref().map(Cached::refresh_at)
    }
}

/// Refreshes the token at 80% of its lifetime, for as long as the cache lives. A failure
/// keeps the old token (still valid for a while), is logged once per cause, and is retried
/// with backoff.
async fn refresh_loop(weak: Weak<Inner>) {
    let mut retry = Duration::from_secs(1);
    let mut next = match weak.upgrade().and_then(|inner| inner.refresh_at()) {
        Some(at) => at,
        None => return,
    };
    loop {
        tokio::time::sleep_until(next).await;
        let Some(inner) = weak.upgrade() else {
            return;
        };
        match inner.source.fetch().await {
            Ok(token) => {
                inner.store(token);
                inner.refreshes.fetch_add(1, Ordering::Relaxed);
                let recovered = inner.state.lock().logged.take();
                if recovered.is_some() {
                    tracing::info!(cluster = %inner.cluster, "token refreshed again after a failure");
                } else {
                    tracing::debug!(cluster = %inner.cluster, "token refreshed before expiry");
                }
                retry = Duration::from_secs(1);
                next = inner.refresh_at().unwrap_or_else(|| Instant::now() + retry);
            }
            Err(e) => {
                let cause = e.chain();
                let mut state = inner.state.lock();
                if state.logged.as_deref() != Some(cause.as_str()) {
                    let expires_in_secs = state
                        .token
                        .as_ref()
                        .map_or(0, |t| t.expires().saturating_duration_since(Instant::now()).as_secs());
                    tracing::warn!(
                        cluster = %inner.cluster,
                        error = %cause,
                        fix = %e.fix(),
                        expires_in_secs,
                        "cannot refresh the SASL token; retrying with backoff (logged once per cause)"
                    );
                    state.logged = Some(cause);
                }
                state.failure = Some((Instant::now(), e));
                drop(state);
                next = Instant::now() + retry;
                retry = (retry * 2).min(MAX_RETRY);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Issues "t1", "t2", ... living `lifetime`; fails while `failing` is set.
    #[derive(Debug, Clone)]
    struct Counting {
        issued: Arc<AtomicUsize>,
        failing: Arc<std::sync::atomic::AtomicBool>,
        lifetime: Duration,
    }

    impl Counting {
        fn new(lifetime: Duration) -> Self {
            Self {
                issued: Arc::default(),
                failing: Arc::default(),
                lifetime,
            }
        }
    }

    impl TokenSource for Counting {
        fn fetch(&self) -> BoxFuture<'_, Result<Token>> {
            Box::pin(async move {
                if self.failing.load(Ordering::SeqCst) {
                    let io = std::io::Error::other("metadata service unreachable");
                    return Err(Error::Credentials {
                        region: "eu-west-1".into(),
                        source: Arc::new(io),
                    });
                }
                let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
                Ok(Token {
                    value: Secret::new(format!("t{n}")),
                    lifetime: self.lifetime,
                })
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_are_cached_and_refreshed_at_80_percent_of_their_lifetime() {
        let source = Counting::new(Duration::from_secs(900));
        let cache = TokenCache::new("target", source.clone());
        assert_eq!(cache.token().await.expect("first").expose(), "t1");
        assert_eq!(cache.token().await.expect("cached").expose(), "t1");
        assert_eq!(source.issued.load(Ordering::SeqCst), 1);

        tokio::time::sleep(Duration::from_secs(719)).await;
        assert_eq!(cache.refreshes(), 0);
        assert_eq!(cache.token().await.expect("cached").expose(), "t1");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(cache.refreshes(), 1, "refreshed at 720 s of 900");
        assert_eq!(cache.token().await.expect("refreshed").expose(), "t2");

        // Several lifetimes later, connections never had to wait for a fetch.
        tokio::time::sleep(Duration::from_secs(3 * 720)).await;
        assert_eq!(cache.refreshes(), 4);
        assert_eq!(source.issued.load(Ordering::SeqCst), 5);
        assert!(!format!("{cache:?}").contains("t5"), "Debug shows no token");
    }

    #[tokio::test(start_paused = true)]
    async fn a_shortened_lifetime_refreshes_sooner() {
        let source = Counting::new(Duration::from_secs(900));
        let cache = TokenCache::with_max_lifetime("target", source.clone(), Duration::from_secs(10));
        cache.token().await.expect("first");
        tokio::time::sleep(Duration::from_millis(8_100)).await;
        assert_eq!(cache.refreshes(), 1);
        assert_eq!(cache.token().await.expect("second").expose(), "t2");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_keeps_the_old_token_and_retries_until_it_works() {
        let source = Counting::new(Duration::from_secs(100));
        let cache = TokenCache::new("target", source.clone());
        cache.token().await.expect("first");
        source.failing.store(true, Ordering::SeqCst);
        // Refresh fails at 80 s; the token is still good until 90 s (10% left).
        tokio::time::sleep(Duration::from_secs(85)).await;
        assert_eq!(cache.token().await.expect("old token still usable").expose(), "t1");
        tokio::time::sleep(Duration::from_secs(10)).await;
        let err = cache.token().await.expect_err("expired and cannot refresh");
        assert!(err.chain().contains("metadata service unreachable"), "{}", err.chain());
        source.failing.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(31)).await;
        assert_eq!(cache.token().await.expect("refreshed again").expose(), "t2");
    }

    #[tokio::test(start_paused = true)]
    async fn the_refresh_task_ends_with_the_cache() {
        let source = Counting::new(Duration::from_secs(10));
        let cache = TokenCache::new("target", source.clone());
        cache.token().await.expect("first");
        drop(cache);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(source.issued.load(Ordering::SeqCst), 1);
    }
}
