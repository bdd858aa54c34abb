//! The TCP handshake of one connection attempt, with staggered SYNs.
//!
//! On a black-holed path (a WAN cut that drops packets without a reset) a connect only ends
//! when it times out, and Linux retransmits an unanswered SYN after 1 s, then 3 s. With one
//! socket per attempt a SYN goes out about once a second, so a link that comes back just after
//! one waits up to a second for the next before anything can flow. An attempt here opens up to
//! [`SOCKETS`] sockets, one every [`STAGGER`] while none has answered, and keeps the first that
//! connects: the SYNs (each socket's first and the kernel's retransmissions a second later) go
//! out every third of a second for the whole attempt, and the first handshake that completes
//! wins. The others are dropped unconnected.
//!
//! Only silence opens another socket: the first error of any socket (refused, unreachable)
//! ends the attempt at once, so a broker that is down but reachable costs one socket per
//! attempt, as before, and [`super::ReconnectGate`] keeps spacing the attempts. The number of
//! attempts per minute is what it was; each attempt sends at most three times the SYNs.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How many sockets one attempt opens at most.
pub(crate) const SOCKETS: u32 = 3;
/// The wait for an answer before the next socket: with [`SOCKETS`] of them this fills the
/// second before the kernel's first retransmission, which then keeps the same cadence.
pub(crate) const STAGGER: Duration = Duration::from_millis(333);

/// Connects to `broker` within `limit`, as the module docs say. The name is resolved once.
pub(crate) async fn tcp(broker: &str, limit: Duration) -> std::io::Result<TcpStream> {
    let deadline = Instant::now() + limit;
    let resolve = tokio::net::lookup_host(broker);
    let addrs: Vec<SocketAddr> = tokio::time::timeout_at(deadline, resolve)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??
        .collect();
    let addrs = &addrs[..];
    staggered(move || TcpStream::connect(addrs), STAGGER, SOCKETS, deadline).await
}

/// The first of up to `sockets` calls of `connect`, one every `stagger` while none has
/// ended, to succeed by `deadline`; the first error ends it; `TimedOut` at the deadline.
async fn staggered<F, Fut, T>(mut connect: F, stagger: Duration, sockets: u32, deadline: Instant) -> std::io::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::io::Result<T>>,
{
    let mut pending = FuturesUnordered::new();
    let mut opened = 0u32;
    let mut next = Instant::now();
    loop {
        if opened < sockets && Instant::now() >= next {
            pending.push(connect());
            opened += 1;
            next += stagger;
        }
        let more = opened < sockets;
        tokio::select! {
            Some(done) = pending.next() => return done,
            _ = tokio::time::sleep_until(next), if more => {}
            _ = tokio::time::sleep_until(deadline) => {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A connect that answers with `answer` after `after`, or never when `after` is `None`.
    async fn fake(after: Option<Duration>, answer: std::io::Result<u32>) -> std::io::Result<u32> {
        match after {
            Some(d) => {
                tokio::time::sleep(d).await;
                answer
            }
            None => std::future::pending().await,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_path_gets_a_new_socket_every_stagger_and_the_first_to_connect_wins() {
        let t0 = Instant::now();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&calls);
        // The first two sockets' SYNs are lost; the third is answered 50 ms after it starts.
        let got = staggered(
            move || {
                let mut log = log.lock().expect("log");
                log.push(Instant::now() - t0);
                let n = log.len() as u32;
                fake((n == 3).then_some(Duration::from_millis(50)), Ok(n))
            },
            STAGGER,
            SOCKETS,
            t0 + Duration::from_secs(2),
        )
        .await;
        assert_eq!(got.expect("connected"), 3, "the third socket's handshake won");
        let calls = calls.lock().expect("log").clone();
        assert_eq!(
            calls,
            vec![Duration::ZERO, STAGGER, STAGGER * 2],
            "one socket per stagger"
        );
        assert_eq!(Instant::now() - t0, STAGGER * 2 + Duration::from_millis(50));
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_than_the_sockets_and_a_timeout_at_the_deadline() {
        let t0 = Instant::now();
        let mut n = 0u32;
        let got = staggered(
            || {
                n += 1;
                fake(None, Ok(n))
            },
            STAGGER,
            SOCKETS,
            t0 + Duration::from_secs(2),
        )
        .await;
        assert_eq!(got.expect_err("timed out").kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(n, SOCKETS, "no socket after the last");
        assert_eq!(Instant::now() - t0, Duration::from_secs(2), "ends at the deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_ends_the_attempt_without_another_socket() {
        let t0 = Instant::now();
        let mut n = 0u32;
        let got = staggered(
            || {
                n += 1;
                fake(
                    Some(Duration::from_millis(5)),
                    Err(std::io::ErrorKind::ConnectionRefused.into()),
                )
            },
            STAGGER,
            SOCKETS,
            t0 + Duration::from_secs(2),
        )
        .await;
        assert_eq!(got.expect_err("refused").kind(), std::io::ErrorKind::ConnectionRefused);
        assert_eq!(n, 1, "a refusal opens no second socket");
        assert_eq!(Instant::now() - t0, Duration::from_millis(5));
    }

    #[tokio::test]
    async fn a_real_listener_is_reached_with_one_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = tokio::spawn(async move { listener.accept().await.map(|(_, peer)| peer) });
        let stream = tcp(&addr.to_string(), Duration::from_secs(2)).await.expect("connects");
        let peer = accepted.await.expect("joined").expect("accepted");
        assert_eq!(
            stream.local_addr().expect("local"),
            peer,
            "the accepted socket is the returned one"
        );
    }
}
