//! Pacing at the socket: a broker connection's TCP stream, below TLS, that writes no faster than
//! a [`Pace`] allows. What it counts is what the link carries (TLS records included), and it
//! writes in small chunks, so a large produce request leaves at the paced rate instead of as one
//! burst.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// The most one write passes to the socket, so a large request leaves in steps of the pace.
pub const CHUNK_BYTES: usize = 8 * 1024;

/// A rate that socket writes follow.
pub trait Pace: Send + Sync + std::fmt::Debug {
    /// How long until the next chunk may be written; zero when it may go now.
    fn delay(&self) -> Duration;

    /// Records `bytes` written to a socket.
    fn spent(&self, bytes: usize);
}

/// Paced waits are cut into steps of at most this, so a rate change takes effect quickly.
const MAX_STEP: Duration = Duration::from_millis(100);

/// A TCP stream whose writes follow an optional [`Pace`]; reads are untouched.
#[derive(Debug)]
pub(crate) struct Socket {
    tcp: TcpStream,
    pace: Option<Arc<dyn Pace>>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Socket {
    pub(crate) fn new(tcp: TcpStream, pace: Option<Arc<dyn Pace>>) -> Self {
        Self { tcp, pace, sleep: None }
    }
}

impl AsyncRead for Socket {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Socket {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let Some(pace) = this.pace.as_ref() else {
            return Pin::new(&mut this.tcp).poll_write(cx, buf);
        };
        loop {
            if let Some(sleep) = this.sleep.as_mut() {
                ready!(sleep.as_mut().poll(cx));
                this.sleep = None;
            }
            let delay = pace.delay();
            if delay.is_zero() {
                break;
            }
            this.sleep = Some(Box::pin(tokio::time::sleep(delay.min(MAX_STEP))));
        }
        let chunk = &buf[..buf.len().min(CHUNK_BYTES)];
        let written = ready!(Pin::new(&mut this.tcp).poll_write(cx, chunk))?;
        pace.spent(written);
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A bucket of `rate` bytes per second, no burst, on tokio's (paused) clock.
    #[derive(Debug)]
    struct Fixed {
        rate: f64,
        state: Mutex<(f64, tokio::time::Instant)>,
        writes: Mutex<Vec<usize>>,
    }

    impl Pace for Fixed {
        fn delay(&self) -> Duration {
            let mut s = self.state.lock().expect("lock");
            let now = tokio::time::Instant::now();
            s.0 = (s.0 + now.duration_since(s.1).as_secs_f64() * self.rate).min(0.0);
            s.1 = now;
            Duration::from_secs_f64((-s.0 / self.rate).max(0.0))
        }

        fn spent(&self, bytes: usize) {
            self.state.lock().expect("lock").0 -= bytes as f64;
            self.writes.lock().expect("lock").push(bytes);
        }
    }

    /// A listener that reads one connection to its end; the task returns what it read.
    async fn sink() -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let reader = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut all = Vec::new();
            s.read_to_end(&mut all).await.expect("read");
            all
        });
        (addr, reader)
    }

    #[tokio::test(start_paused = true)]
    async fn writes_leave_in_chunks_at_the_paced_rate() {
        let (addr, reader) = sink().await;
        let pace = Arc::new(Fixed {
            rate: 64.0 * 1024.0,
            state: Mutex::new((0.0, tokio::time::Instant::now())),
            writes: Mutex::new(Vec::new()),
        });
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let mut socket = Socket::new(tcp, Some(pace.clone() as Arc<dyn Pace>));
        let data: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
        let started = tokio::time::Instant::now();
        socket.write_all(&data).await.expect("write");
        socket.shutdown().await.expect("shutdown");
        let took = started.elapsed();
        assert_eq!(
            reader.await.expect("reader"),
            data,
            "bytes arrive unchanged and in order"
        );
        let writes = pace.writes.lock().expect("lock").clone();
        assert!(writes.iter().all(|&n| n <= CHUNK_BYTES), "{writes:?}");
        assert_eq!(writes.iter().sum::<usize>(), data.len());
        // 256 KiB at 64 KiB/s with no burst: the last chunk goes out once 248 KiB are paid.
        let paid = (data.len() - CHUNK_BYTES) as f64 / (64.0 * 1024.0);
        assert!(
            (took.as_secs_f64() - paid).abs() < 0.2,
            "took {took:?}, expected about {paid} s"
        );
    }

    #[tokio::test]
    async fn without_a_pace_writes_pass_through_whole() {
        let (addr, reader) = sink().await;
        let mut socket = Socket::new(TcpStream::connect(addr).await.expect("connect"), None);
        let data = vec![7u8; 100_000];
        socket.write_all(&data).await.expect("write");
        socket.shutdown().await.expect("shutdown");
        assert_eq!(reader.await.expect("reader"), data);
    }
}
