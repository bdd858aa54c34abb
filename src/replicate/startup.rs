//! The start-up check: both clusters must accept a connection (TCP, TLS, SASL) and answer
//! Metadata before replication starts. A TLS or authentication refusal stops strait at once. An
//! unreachable cluster is retried with backoff for as long as it stays unreachable, as a runtime
//! outage is: a pod restarted during a WAN outage stays up, not ready, and starts replicating by
//! itself once the cluster answers (`strait check` still exits 69 for it).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::error::{Error, Result};
use super::error_chain as error_chain_of;
use crate::kafka::{Backoff, Cluster};

/// The longest wait between two attempts to reach a cluster at start-up.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Connects to `cluster` and reads its metadata, retrying while it cannot be reached.
/// `Ok(false)` when `shutdown` fired first; an error only for a TLS or authentication refusal.
pub(super) async fn reach(cluster: &Cluster, shutdown: &CancellationToken) -> Result<bool> {
    let mut backoff = Backoff::new(Duration::from_millis(100), RETRY_MAX);
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
        let text = error_chain_of(&err);
        if text != last_logged {
            tracing::warn!(cluster = cluster.name(), servers = %cluster.bootstrap_servers().join(","), error = %text,
                "cluster not reachable yet; retrying until it answers (not ready meanwhile)");
            last_logged = text;
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(false),
            _ = tokio::time::sleep(backoff.next_delay()) => {}
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
    async fn an_unreachable_cluster_is_retried_past_its_request_timeout_until_shutdown() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("ephemeral port")
            .port();
        let timeout = Duration::from_millis(300);
        let cluster = Cluster::new("source", vec![format!("127.0.0.1:{port}")], "t", timeout);
        let shutdown = CancellationToken::new();
        // Premise: nobody listens, so every attempt fails.
        assert!(cluster.metadata(Some(&[])).await.is_err(), "nothing listens on {port}");
        // Still retrying after several request timeouts: no exit-69 error.
        let waited = tokio::time::timeout(timeout * 5, reach(&cluster, &shutdown)).await;
        assert!(waited.is_err(), "reach returned while unreachable: {waited:?}");
        // Shutdown ends the wait without an error.
        shutdown.cancel();
        let stopped = reach(&cluster, &shutdown).await.expect("no error on shutdown");
        assert!(!stopped, "shutdown, not reached");
    }
}
