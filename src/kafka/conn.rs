//! One TCP connection to one broker: framing, correlation ids and pipelining.
//!
//! Requests are written in call order by a writer task; a reader task matches each response to
//! its waiter by correlation id, so any number of requests can be in flight on one connection and
//! Kafka's per-connection ordering is kept. When the socket fails every waiter gets
//! [`Error::ConnectionLost`] and the connection reports itself closed, so the owner reconnects.
//!
//! KIP-368 re-authentication happens in band: when SaslAuthenticate set a session lifetime,
//! the writer task, at 85% of it, stops taking requests from its queue, sends SaslHandshake and
//! SaslAuthenticate itself (with correlation ids from the same counter, answered through the
//! same reader) and resumes. Kafka answers a connection's requests in order, so every response
//! to a request sent before the re-authentication arrives before its SASL answers; nothing in
//! flight is dropped and the order of pipelined produce requests on the connection is kept,
//! which a switch to a fresh connection could not promise. A refused re-authentication closes
//! the connection: requests still queued were never sent and fail as retriable.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Request, StrBytes, VersionRange};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use super::pace::{Pace, Socket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::error::{Error, Result};
use super::frame::{api_key, decode_response, encode_request, negotiate, read_frame};
use super::sasl::Sasl;
use super::security::Security;
use super::versions::BrokerVersions;

/// How many encoded requests may wait for the writer; beyond it callers wait (backpressure).
const OUTGOING_QUEUE: usize = 64;
/// Re-authenticate when this share of the broker's session lifetime has passed (the Java
/// client picks 85-95%).
const REAUTH_AT: f64 = 0.85;

/// Idle time before the first keepalive probe, and between probes.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

fn keepalive() -> socket2::TcpKeepalive {
    let k = socket2::TcpKeepalive::new().with_time(KEEPALIVE_IDLE);
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    let k = k.with_interval(KEEPALIVE_INTERVAL).with_retries(3);
    k
}

/// How long sent data may stay unacknowledged before the kernel drops the connection (Linux):
/// as long as keepalive takes to give up on an idle one. Keepalive probes only idle
/// connections; one cut while it had data in flight would otherwise retransmit with a backoff
/// that reaches minutes, and a link that came back would carry nothing on it until the next
/// retransmission. A broker answers every request within its timeout (30 s by default), so
/// nothing it does on a live link holds data unacknowledged this long.
#[cfg(target_os = "linux")]
const UNACKED_MAX: Duration = Duration::from_secs(KEEPALIVE_IDLE.as_secs() + 3 * KEEPALIVE_INTERVAL.as_secs());

/// Sets how the kernel notices a broker that vanished without a reset (a black-holed path):
/// keepalive on an idle connection, and a bound on unacknowledged data on a busy one.
fn notice_dead_peers(socket: socket2::SockRef<'_>) -> std::io::Result<()> {
    socket.set_tcp_keepalive(&keepalive())?;
    #[cfg(target_os = "linux")]
    socket.set_tcp_user_timeout(Some(UNACKED_MAX))?;
    Ok(())
}

type Waiter = oneshot::Sender<std::result::Result<Bytes, Arc<std::io::Error>>>;

#[derive(Default)]
struct Pending {
    waiters: HashMap<i32, Waiter>,
    closed: bool,
}

impl Pending {
    fn fail_all(&mut self, err: Arc<std::io::Error>) {
        self.closed = true;
        for (_, w) in self.waiters.drain() {
            // The waiter may have timed out and gone; nothing to tell it then.
            let _ = w.send(Err(Arc::clone(&err)));
        }
    }
}

/// The longest a TCP connect waits for the broker's answer: each socket's first SYN and the
/// retransmission a second later (the third only after 3 s); across any WAN a handshake takes
/// well under a second. The next attempt starts as this one gives up (`ReconnectGate` counts
/// its delay from an attempt's start), and an attempt staggers three sockets over its first
/// second ([`super::dial`]), so on a black-holed path a SYN goes out every third of a second.
pub(crate) const CONNECT_TIMEOUT_MAX: Duration = Duration::from_secs(2);

/// A connection to one broker, shared by every task that talks to it.
pub struct Conn {
    broker: String,
    client_id: StrBytes,
    timeout: Duration,
    versions: BrokerVersions,
    next_correlation: Arc<AtomicI32>,
    outgoing: mpsc::Sender<Outgoing>,
    pending: Arc<Mutex<Pending>>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("broker", &self.broker)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

impl Conn {
    /// Opens a plaintext connection and negotiates API versions.
    pub async fn connect(broker: &str, client_id: &str, timeout: Duration) -> Result<Self> {
        Self::connect_with(broker, client_id, timeout, &Security::plaintext(), None).await
    }

    /// Opens a connection protected as `security` says: TCP, the TLS handshake, ApiVersions,
    /// then SASL, each step within `timeout`. Only an authenticated connection is returned, so
    /// no other request ever goes out before authentication.
    /// Writes follow `pace` when given (the WAN budget on target connections).
    pub async fn connect_with(
        broker: &str,
        client_id: &str,
        timeout: Duration,
        security: &Security,
        pace: Option<Arc<dyn Pace>>,
    ) -> Result<Self> {
        let connect_err = |source: std::io::Error| Error::Connect {
            broker: broker.to_owned(),
            source: Arc::new(source),
        };
        let timed_out = |api| Error::Timeout {
            broker: broker.to_owned(),
            api,
            timeout_ms: timeout.as_millis() as u64,
        };
        // The TCP handshake alone waits at most CONNECT_TIMEOUT_MAX: on a black-holed path the
        // kernel's SYN retries back off to 16 s and more, so a longer wait would keep a
        // returning link unused for that long (ReconnectGate spaces the next attempt).
        let tcp = super::dial::tcp(broker, timeout.min(CONNECT_TIMEOUT_MAX))
            .await
            .map_err(connect_err)?;
        tcp.set_nodelay(true).map_err(connect_err)?;
        // A broker that vanished without a reset (a black-holed WAN path) is noticed by the
        // kernel too, not only by the next request's timeout.
        notice_dead_peers(socket2::SockRef::from(&tcp)).map_err(connect_err)?;
        let tcp = Socket::new(tcp, pace);
        let mut stream = match security.tls() {
            None => Stream::Plain(tcp),
            Some(tls) => {
                let handshake = tokio::time::timeout(timeout, tls.handshake(broker, tcp));
                Stream::Tls(Box::new(handshake.await.map_err(|_| tls.timed_out(broker, timeout))??))
            }
        };
        let client_id = StrBytes::from_string(client_id.to_owned());
        let versions = tokio::time::timeout(timeout, negotiate(&mut stream, broker, &client_id))
            .await
            .map_err(|_| timed_out(ApiKey::ApiVersions))?
            .map_err(|e| match security.tls() {
                Some(tls) => tls.refused_after_handshake(broker, e),
                None => e,
            })?;
        let next_correlation = Arc::new(AtomicI32::new(1));
        let mut reauth = None;
        if let Some(sasl) = security.sasl() {
            let mut hs = Handshake {
                stream: &mut stream,
                broker,
                client_id: &client_id,
                versions: &versions,
                next_correlation: 2,
            };
            let auth_started = tokio::time::Instant::now();
            let auth = tokio::time::timeout(timeout, sasl.authenticate(&mut hs))
                .await
                .map_err(|_| timed_out(ApiKey::SaslAuthenticate))??;
            tracing::debug!(
                broker,
                mechanism = sasl.mechanism(),
                session_lifetime_ms = auth.session_lifetime_ms,
                "authenticated"
            );
            reauth = Some(Reauth {
                sasl: sasl.clone(),
                broker: broker.to_owned(),
                client_id: client_id.clone(),
                versions: versions.clone(),
                next_correlation: Arc::clone(&next_correlation),
                timeout,
                due: reauth_due(auth_started, auth.session_lifetime_ms),
            });
        }

        let pending = Arc::new(Mutex::new(Pending::default()));
        let (outgoing, queue) = mpsc::channel::<Outgoing>(OUTGOING_QUEUE);
        let (reader, writer) = match stream {
            Stream::Plain(tcp) => {
                let (read_half, write_half) = tokio::io::split(tcp);
                spawn_io(read_half, write_half, queue, &pending, reauth)
            }
            Stream::Tls(tls) => {
                let (read_half, write_half) = tokio::io::split(*tls);
                spawn_io(read_half, write_half, queue, &pending, reauth)
            }
        };

        Ok(Self {
            broker: broker.to_owned(),
            client_id,
            timeout,
            versions,
            next_correlation,
            outgoing,
            pending,
            reader,
            writer,
        })
    }

    /// The broker address this connection goes to.
    pub fn broker(&self) -> &str {
        &self.broker
    }

    /// Whether the socket has failed; a closed connection must be replaced.
    pub fn is_closed(&self) -> bool {
        self.pending.lock().closed || self.reader.is_finished() || self.writer.is_finished()
    }

    /// Whether the broker serves request type `R` in a version strait speaks.
    pub fn supports<R: Request>(&self) -> bool {
        self.versions.supports::<R>()
    }

    /// The version that will be used for request type `R`.
    pub fn version<R: Request>(&self) -> Result<i16> {
        self.version_at_most::<R>(i16::MAX)
    }

    /// The version that will be used for request type `R` when it must be `cap` at most.
    pub fn version_at_most<R: Request>(&self, cap: i16) -> Result<i16> {
        self.versions
            .pick_at_most::<R>(cap)
            .map_err(|(ours, theirs)| Error::UnsupportedApi {
                broker: self.broker.clone(),
                api: api_key::<R>(),
                ours: ours.to_string(),
                theirs: theirs.map_or_else(|| "nothing".to_owned(), |t: VersionRange| t.to_string()),
            })
    }

    /// Sends a request at the negotiated version and waits for its response.
    pub async fn send<R: Request>(&self, request: &R) -> Result<(R::Response, i16)> {
        self.enqueue(request).await?.response().await
    }

    /// [`Self::send`], at version `cap` at most.
    pub async fn send_at_most<R: Request>(&self, request: &R, cap: i16) -> Result<(R::Response, i16)> {
        self.enqueue_at_most(request, cap, None).await?.response().await
    }

    /// Queues a request for the wire and returns at once with a handle to its response.
    /// Requests queued one after another on a connection are written, and answered, in that
    /// order: this is how several produce requests of one partition stay in flight in order.
    pub async fn enqueue<R: Request>(&self, request: &R) -> Result<InFlight<R>> {
        self.enqueue_at_most(request, i16::MAX, None).await
    }

    /// [`Self::enqueue`], and a signal sent when the writer starts writing the request to the
    /// socket (every request queued before it is then written); dropped unsent if the
    /// connection fails first.
    pub async fn enqueue_started<R: Request>(&self, request: &R) -> Result<(InFlight<R>, oneshot::Receiver<()>)> {
        let (started, on_started) = oneshot::channel();
        let in_flight = self.enqueue_at_most(request, i16::MAX, Some(started)).await?;
        Ok((in_flight, on_started))
    }

    async fn enqueue_at_most<R: Request>(
        &self,
        request: &R,
        cap: i16,
        started: Option<oneshot::Sender<()>>,
    ) -> Result<InFlight<R>> {
        let version = self.version_at_most::<R>(cap)?;
        let api = api_key::<R>();
        let correlation_id = self.next_correlation.fetch_add(1, Ordering::Relaxed);
        let frame = encode_request(request, version, correlation_id, &self.client_id)?;

        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock();
            if pending.closed {
                return Err(self.lost(None));
            }
            pending.waiters.insert(correlation_id, tx);
        }
        let bytes = frame.len();
        if self.outgoing.send(Outgoing { frame, started }).await.is_err() {
            self.pending.lock().waiters.remove(&correlation_id);
            return Err(self.lost(None));
        }
        let conn = Arc::as_ptr(&self.pending) as usize;
        tracing::trace!(broker = %self.broker, conn, api = ?api, correlation_id, bytes, "request queued");
        Ok(InFlight {
            broker: self.broker.clone(),
            api,
            version,
            correlation_id,
            timeout: self.timeout,
            pending: Arc::clone(&self.pending),
            answer: rx,
            _request: std::marker::PhantomData,
        })
    }

    fn lost(&self, source: Option<Arc<std::io::Error>>) -> Error {
        Error::ConnectionLost {
            broker: self.broker.clone(),
            source,
        }
    }
}

/// An encoded request waiting for the writer, and who wants to know when it starts on it.
#[derive(Debug)]
struct Outgoing {
    frame: Bytes,
    started: Option<oneshot::Sender<()>>,
}

/// A request on the wire whose response has not been read yet.
pub struct InFlight<R: Request> {
    broker: String,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    timeout: Duration,
    pending: Arc<Mutex<Pending>>,
    answer: oneshot::Receiver<std::result::Result<Bytes, Arc<std::io::Error>>>,
    _request: std::marker::PhantomData<fn() -> R>,
}

impl<R: Request> std::fmt::Debug for InFlight<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("broker", &self.broker)
            .field("api", &self.api)
            .field("correlation_id", &self.correlation_id)
            .finish_non_exhaustive()
    }
}

impl<R: Request> InFlight<R> {
    /// Waits for the response, at most the connection's request timeout from now.
    pub async fn response(self) -> Result<(R::Response, i16)> {
        let lost = |source| Error::ConnectionLost {
            broker: self.broker.clone(),
            source,
        };
        let frame = match tokio::time::timeout(self.timeout, self.answer).await {
            Ok(Ok(Ok(frame))) => frame,
            Ok(Ok(Err(io))) => return Err(lost(Some(io))),
            Ok(Err(_closed)) => return Err(lost(None)),
            Err(_elapsed) => {
                // No answer in time: the connection may be half-open (the path black-holed,
                // not reset). It is closed, failing what else waits on it, so its owner
                // connects again instead of reusing it.
                let mut pending = self.pending.lock();
                pending.waiters.remove(&self.correlation_id);
                let why = format!(
                    "{:?} request {} timed out: connection closed",
                    self.api, self.correlation_id
                );
                pending.fail_all(Arc::new(std::io::Error::new(std::io::ErrorKind::TimedOut, why)));
                return Err(Error::Timeout {
                    broker: self.broker.clone(),
                    api: self.api,
                    timeout_ms: self.timeout.as_millis() as u64,
                });
            }
        };
        let response = decode_response::<R::Response>(frame, self.version, self.api, &self.broker)?;
        Ok((response, self.version))
    }
}

/// A broker socket before it is split into the reader and writer halves.
enum Stream {
    Plain(Socket),
    Tls(Box<tokio_rustls::client::TlsStream<Socket>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// When to re-authenticate a session the broker limited to `lifetime_ms` (none: never), its
/// authentication having begun at `started`. Counted from the start of the exchange, not from
/// its answer: the broker's session begins when it handles the last SaslAuthenticate, which is
/// after the client sent it, so a slow answer (a loaded broker, a long link) cannot eat the
/// margin before the broker closes an expired connection.
fn reauth_due(started: tokio::time::Instant, lifetime_ms: i64) -> Option<tokio::time::Instant> {
    let lifetime = Duration::from_millis(u64::try_from(lifetime_ms).ok().filter(|l| *l > 0)?);
    Some(started + lifetime.mul_f64(REAUTH_AT))
}

async fn until(due: Option<tokio::time::Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The cause of the last failed re-authentication in this process, so every connection of
/// every cluster failing for one reason (expired credentials) makes one log line, not one each.
static LAST_REAUTH_FAILURE: Mutex<Option<String>> = Mutex::new(None);

/// Whether `cause` differs from the last re-authentication failure logged (and records it).
fn first_report(cause: &str) -> bool {
    let mut last = LAST_REAUTH_FAILURE.lock();
    if last.as_deref() == Some(cause) {
        return false;
    }
    *last = Some(cause.to_owned());
    true
}

/// What the writer task needs to re-authenticate its connection (KIP-368).
struct Reauth {
    sasl: Sasl,
    broker: String,
    client_id: StrBytes,
    versions: BrokerVersions,
    next_correlation: Arc<AtomicI32>,
    timeout: Duration,
    /// When to do it; `None` when the broker set no session lifetime.
    due: Option<tokio::time::Instant>,
}

impl Reauth {
    /// Runs SaslHandshake and SaslAuthenticate on the live connection and schedules the next
    /// round from the new session lifetime.
    async fn run<W: AsyncWrite + Unpin + Send>(&mut self, write: &mut W, pending: &Arc<Mutex<Pending>>) -> Result<()> {
        let mut exchange = InBand {
            write,
            pending,
            broker: &self.broker,
            client_id: &self.client_id,
            versions: &self.versions,
            next_correlation: &self.next_correlation,
            timeout: self.timeout,
        };
        let started = tokio::time::Instant::now();
        let auth = self.sasl.authenticate(&mut exchange).await?;
        self.due = reauth_due(started, auth.session_lifetime_ms);
        *LAST_REAUTH_FAILURE.lock() = None;
        metrics::counter!(crate::telemetry::REAUTHENTICATIONS, "cluster" => self.sasl.cluster().to_owned())
            .increment(1);
        tracing::debug!(
            cluster = self.sasl.cluster(),
            broker = %self.broker,
            session_lifetime_ms = auth.session_lifetime_ms,
            "re-authenticated"
        );
        Ok(())
    }
}

/// Starts the writer task (frames from `queue`, in order, and re-authentication when due) and
/// the reader task (responses to their waiters) on the two halves of a connection.
fn spawn_io<R, W>(
    read_half: R,
    mut write_half: W,
    mut queue: mpsc::Receiver<Outgoing>,
    pending: &Arc<Mutex<Pending>>,
    mut reauth: Option<Reauth>,
) -> (JoinHandle<()>, JoinHandle<()>)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let writer_pending = Arc::clone(pending);
    let writer = tokio::spawn(async move {
        loop {
            let due = reauth.as_ref().and_then(|r| r.due);
            let frame = tokio::select! {
                biased;
                () = until(due) => {
                    let Some(r) = reauth.as_mut() else { continue };
                    if let Err(e) = r.run(&mut write_half, &writer_pending).await {
                        let cause = e.to_string();
                        if first_report(&cause) {
                            tracing::warn!(
                                cluster = r.sasl.cluster(),
                                broker = %r.broker,
                                error = %cause,
                                "re-authentication failed; closing the connection (queued requests are retried on a new one; logged once per cause)"
                            );
                        } else {
                            tracing::debug!(cluster = r.sasl.cluster(), broker = %r.broker, "re-authentication failed again");
                        }
                        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "re-authentication failed");
                        writer_pending.lock().fail_all(Arc::new(io));
                        return;
                    }
                    continue;
                }
                frame = queue.recv() => frame,
            };
            let Some(Outgoing { frame, started }) = frame else {
                return;
            };
            if let Some(started) = started {
                let _ = started.send(());
            }
            // TLS buffers records: flush so a request is not held back until the next one.
            let sent = async {
                write_half.write_all(&frame).await?;
                write_half.flush().await
            };
            if let Err(e) = sent.await {
                writer_pending.lock().fail_all(Arc::new(e));
                return;
            }
        }
    });
    let reader_pending = Arc::clone(pending);
    let reader = tokio::spawn(async move {
        let err = read_loop(BufReader::with_capacity(64 * 1024, read_half), &reader_pending).await;
        reader_pending.lock().fail_all(Arc::new(err));
    });
    (reader, writer)
}

/// One request, one answer, in order: what a SASL exchange needs from a connection.
pub(crate) trait Exchange {
    /// The broker at the other end.
    fn broker(&self) -> &str;

    /// What the broker said it supports.
    fn versions(&self) -> &BrokerVersions;

    /// Sends one request at the negotiated version and reads its answer.
    fn exchange<R: Request + Sync>(&mut self, request: &R) -> impl Future<Output = Result<R::Response>> + Send;
}

/// A live, pipelined connection lent to re-authentication by its writer task, which writes
/// nothing else meanwhile; answers come back through the reader task like any other.
struct InBand<'a, W> {
    write: &'a mut W,
    pending: &'a Arc<Mutex<Pending>>,
    broker: &'a str,
    client_id: &'a StrBytes,
    versions: &'a BrokerVersions,
    next_correlation: &'a AtomicI32,
    timeout: Duration,
}

impl<W: AsyncWrite + Unpin + Send> Exchange for InBand<'_, W> {
    fn broker(&self) -> &str {
        self.broker
    }

    fn versions(&self) -> &BrokerVersions {
        self.versions
    }

    async fn exchange<R: Request + Sync>(&mut self, request: &R) -> Result<R::Response> {
        let api = api_key::<R>();
        let version = pick_version::<R>(self.versions, self.broker)?;
        let correlation_id = self.next_correlation.fetch_add(1, Ordering::Relaxed);
        let frame = encode_request(request, version, correlation_id, self.client_id)?;
        let lost = |source| Error::ConnectionLost {
            broker: self.broker.to_owned(),
            source,
        };
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock();
            if pending.closed {
                return Err(lost(None));
            }
            pending.waiters.insert(correlation_id, tx);
        }
        let written = async {
            self.write.write_all(&frame).await?;
            self.write.flush().await
        };
        if let Err(e) = written.await {
            let e = Arc::new(e);
            self.pending.lock().fail_all(Arc::clone(&e));
            return Err(lost(Some(e)));
        }
        let answer = match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(Ok(frame))) => frame,
            Ok(Ok(Err(io))) => return Err(lost(Some(io))),
            Ok(Err(_)) => return Err(lost(None)),
            Err(_) => {
                self.pending.lock().waiters.remove(&correlation_id);
                return Err(Error::Timeout {
                    broker: self.broker.to_owned(),
                    api,
                    timeout_ms: self.timeout.as_millis() as u64,
                });
            }
        };
        decode_response::<R::Response>(answer, version, api, self.broker)
    }
}

fn pick_version<R: Request>(versions: &BrokerVersions, broker: &str) -> Result<i16> {
    versions.pick::<R>().map_err(|(ours, theirs)| Error::UnsupportedApi {
        broker: broker.to_owned(),
        api: api_key::<R>(),
        ours: ours.to_string(),
        theirs: theirs.map_or_else(|| "nothing".to_owned(), |t: VersionRange| t.to_string()),
    })
}

/// A connection between ApiVersions and its hand-over to the pipelined tasks: requests go one
/// at a time, each answer read before the next request is written (what SASL needs).
pub(crate) struct Handshake<'a> {
    stream: &'a mut Stream,
    broker: &'a str,
    client_id: &'a StrBytes,
    versions: &'a BrokerVersions,
    next_correlation: i32,
}

impl Exchange for Handshake<'_> {
    fn broker(&self) -> &str {
        self.broker
    }

    fn versions(&self) -> &BrokerVersions {
        self.versions
    }

    async fn exchange<R: Request + Sync>(&mut self, request: &R) -> Result<R::Response> {
        let api = api_key::<R>();
        let version = pick_version::<R>(self.versions, self.broker)?;
        let correlation_id = self.next_correlation;
        self.next_correlation += 1;
        let frame = encode_request(request, version, correlation_id, self.client_id)?;
        let io_err = |source: std::io::Error| Error::ConnectionLost {
            broker: self.broker.to_owned(),
            source: Some(Arc::new(source)),
        };
        self.stream.write_all(&frame).await.map_err(io_err)?;
        self.stream.flush().await.map_err(io_err)?;
        let answer = read_frame(self.stream).await.map_err(io_err)?;
        decode_response::<R::Response>(answer, version, api, self.broker)
    }
}

async fn read_loop<R: AsyncRead + Unpin>(mut reader: BufReader<R>, pending: &Mutex<Pending>) -> std::io::Error {
    loop {
        let frame = match read_frame(&mut reader).await {
            Ok(frame) => frame,
            Err(e) => return e,
        };
        if frame.len() < 4 {
            return std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "response frame shorter than its header",
            );
        }
        let correlation_id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        // With the request's line below, the time each request took on the wire and the broker.
        let conn = pending as *const Mutex<Pending> as usize;
        tracing::trace!(conn, correlation_id, bytes = frame.len(), "answer read");
        let waiter = pending.lock().waiters.remove(&correlation_id);
        if let Some(w) = waiter {
            let _ = w.send(Ok(frame));
        }
        // A response nobody waits for belongs to a request that timed out: drop it.
    }
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
