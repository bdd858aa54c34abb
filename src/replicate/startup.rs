//! The start-up check: both clusters must accept a connection (TCP, TLS, SASL) and answer
//! Metadata before replication starts. A TLS or authentication refusal stops strait at once; an
//! unreachable cluster is retried for its request timeout, then stops strait too. Each failure
//! is one error naming the cluster, the broker, the step and the fix.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::{Error, Result};
use super::error_chain as error_chain_of;
use crate::kafka::{Backoff, Cluster};

/// Connects to `cluster` and reads its metadata, retrying a cluster that cannot be reached for
/// up to `window`. `Ok(false)` when `shutdown` fired first.
pub(super) async fn reach(cluster: &Cluster, window: Duration, shutdown: &CancellationToken) -> Result<bool> {
    let started = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    let mut last_logged = String::new();
    loop {
        let attempt = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(false),
            r = cluster.metadata(Some(&[])) => r,
        };
        let err = match attempt {
            Ok(_) => {
                tracing::info!(cluster = cluster.name(), security = %cluster.security_protocol(), "cluster reached");
                return Ok(true);
            }
            Err(e) => e,
        };
        if err.is_security_failure() {
            return Err(Error::StartupRefused {
                source: Box::new(unwrap_bootstrap(err)),
            });
        }
        let waited = started.elapsed();
        if waited >= window {
            return Err(Error::StartupUnreachable {
                cluster: cluster.name().to_owned(),
                servers: cluster.bootstrap_servers().join(","),
                waited_secs: waited.as_secs(),
                source: Box::new(err),
            });
        }
        let text = error_chain_of(&err);
        if text != last_logged {
            tracing::warn!(cluster = cluster.name(), error = %text, "cluster not reachable yet; retrying");
            last_logged = text;
        }
        let delay = backoff.next_delay().min(window.saturating_sub(waited));
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(false),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// The broker's own refusal rather than "no bootstrap server answered": the message then names
/// the broker, the step and the fix first.
fn unwrap_bootstrap(err: crate::kafka::Error) -> crate::kafka::Error {
    match err {
        crate::kafka::Error::Bootstrap { source, .. } if source.is_security_failure() => unwrap_bootstrap(*source),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_cluster_fails_after_its_window_with_exit_69() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("ephemeral port")
            .port();
        let cluster = Cluster::new("source", vec![format!("127.0.0.1:{port}")], "t", Duration::from_secs(1));
        let started = std::time::Instant::now();
        let err = reach(&cluster, Duration::from_millis(500), &CancellationToken::new())
            .await
            .expect_err("nobody listens");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(err.exit_code(), Some(69));
        let msg = error_chain_of(&err);
        assert!(msg.starts_with("source cluster unreachable"), "{msg}");
        assert!(msg.contains("source.bootstrap_servers"), "{msg}");
    }
}
