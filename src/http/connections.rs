//! The accept loop and its connections: each one closed when it sends no whole request head
//! within [`HEADER_READ_TIMEOUT`], and the oldest closed past [`MAX_CONNECTIONS`].

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::Request;
use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinSet};

use super::Endpoints;
use crate::telemetry;

/// A connection that has not sent a whole request head this long after it opened, or after its
/// last answer, is closed: a client that trickles its headers or sends nothing cannot hold it.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Most connections served at once. One more closes the oldest, so idle connections hold at
/// most this many file descriptors and never lock out the probes or the Prometheus scrape.
pub const MAX_CONNECTIONS: usize = 256;

/// Accepts until aborted; the connections live in a `JoinSet`, so aborting this task closes
/// them too.
pub(super) async fn accept_loop(listener: TcpListener, endpoints: Arc<Endpoints>) {
    let mut connections = Connections::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.make_room(MAX_CONNECTIONS).await;
                    connections.spawn(serve(stream, Arc::clone(&endpoints)));
                }
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(done) = connections.tasks.join_next_with_id(), if !connections.tasks.is_empty() => {
                connections.forget(done);
            }
        }
    }
}

/// Serves one connection until the client closes it, it fails, or it sends no whole request
/// head within [`HEADER_READ_TIMEOUT`].
async fn serve(stream: tokio::net::TcpStream, endpoints: Arc<Endpoints>) {
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let response = endpoints.respond(req.method(), req.uri().path());
        async move { Ok::<_, Infallible>(response) }
    });
    let io = hyper_util::rt::TokioIo::new(stream);
    // hyper ignores the header-read timeout unless it has a timer.
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(io, service)
        .await
    {
        tracing::debug!(error = %e, "http connection ended with an error");
    }
}

/// The open connections, oldest first.
#[derive(Default)]
struct Connections {
    tasks: JoinSet<()>,
    /// Connections not yet ended or closed for room, in the order they were accepted.
    by_age: VecDeque<AbortHandle>,
}

impl Connections {
    fn spawn(&mut self, connection: impl std::future::Future<Output = ()> + Send + 'static) {
        self.by_age.push_back(self.tasks.spawn(connection));
        self.count();
    }

    /// Closes the oldest connections until fewer than `limit` are open, and returns once their
    /// sockets are closed, so the count of file descriptors never passes `limit` + 1.
    async fn make_room(&mut self, limit: usize) {
        while self.tasks.len() >= limit {
            if let Some(oldest) = self.by_age.pop_front() {
                if !oldest.is_finished() {
                    metrics::counter!(telemetry::HTTP_CONNECTIONS_EVICTED).increment(1);
                }
                oldest.abort();
            }
            match self.tasks.join_next_with_id().await {
                Some(done) => self.forget(done),
                None => break,
            }
        }
    }

    /// Drops an ended connection from the books.
    fn forget(&mut self, done: Result<(tokio::task::Id, ()), tokio::task::JoinError>) {
        let id = match done {
            Ok((id, ())) => id,
            Err(e) => e.id(),
        };
        self.by_age.retain(|h| h.id() != id);
        self.count();
    }

    fn count(&self) {
        metrics::gauge!(telemetry::HTTP_CONNECTIONS).set(self.tasks.len() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::endpoints;
    use super::super::HttpServer;
    use super::*;
    use std::net::SocketAddr;

    /// Item 3 of issue 15: a client that sends part of a request head and then trickles or
    /// stops, or sends nothing at all, is closed by the server within 10 s (on the paused clock,
    /// which moves only when every task waits).
    #[tokio::test(start_paused = true)]
    async fn slowloris_clients_are_closed_within_ten_seconds() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let server = HttpServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), endpoints())
            .await
            .expect("bind an ephemeral port");
        let addr = server.local_addr();
        // A header line a byte per second, half a request line and then nothing, nothing at all.
        let clients: [(&'static [u8], bool); 3] = [
            (b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ", true),
            (b"GET /met", false),
            (b"", false),
        ];
        let mut closed = JoinSet::new();
        for (opener, trickle) in clients {
            closed.spawn(async move {
                let started = tokio::time::Instant::now();
                let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
                s.write_all(opener).await.expect("send the opener");
                let mut answer = Vec::new();
                let mut buf = [0u8; 512];
                let until_closed = async {
                    loop {
                        tokio::select! {
                            read = s.read(&mut buf) => match read {
                                Ok(0) | Err(_) => return,
                                Ok(n) => answer.extend_from_slice(&buf[..n]),
                            },
                            _ = tokio::time::sleep(Duration::from_secs(1)), if trickle => {
                                if s.write_all(b"a").await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                };
                let outcome = tokio::time::timeout(Duration::from_secs(10), until_closed).await;
                (
                    opener,
                    outcome.is_ok(),
                    started.elapsed(),
                    String::from_utf8_lossy(&answer).into_owned(),
                )
            });
        }
        let mut seen = 0;
        while let Some(joined) = closed.join_next().await {
            let (opener, was_closed, took, answer) = joined.expect("client task");
            let opener = String::from_utf8_lossy(opener);
            assert!(was_closed, "{opener:?}: still open after 10 s");
            // Premise: closed for being slow, not at once for being malformed.
            assert!(took >= HEADER_READ_TIMEOUT, "{opener:?}: closed after {took:?}");
            assert!(!answer.contains(" 200 "), "{opener:?}: answered {answer:?}");
            seen += 1;
        }
        assert_eq!(seen, 3);
    }
}
