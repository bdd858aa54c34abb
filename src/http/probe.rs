//! The client side of the endpoint, for `strait healthcheck`: one plain HTTP/1.1 GET over a
//! blocking `TcpStream`, so a distroless container (no shell, no curl) can be checked by its
//! own binary. No runtime, no TLS: it only ever asks strait's own port on the same machine.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// The most of an answer that is read: `/readyz` answers a few lines.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// Errors of a probe.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Nothing accepts connections there (strait is not running, or listens elsewhere).
    #[error("cannot connect to strait's HTTP endpoint at {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The connection broke or timed out before a whole answer came.
    #[error("no answer from {addr}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The answer does not start with an HTTP status line.
    #[error("{addr} answered something else than HTTP: {head:?}")]
    NotHttp { addr: SocketAddr, head: String },
}

/// Where to reach a server listening on `listen` from the same machine: an unspecified address
/// (`0.0.0.0`, `[::]`) means loopback of the same family; anything else is asked as it is.
pub fn local_target(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// GETs `path` from `addr`, each step within `timeout`; returns the status code and the body.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, String), ProbeError> {
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|source| ProbeError::Connect { addr, source })?;
    let io = |source| ProbeError::Io { addr, source };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(io)?;
    let mut answer = Vec::new();
    stream.take(MAX_ANSWER_BYTES).read_to_end(&mut answer).map_err(io)?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status_line = head.lines().next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| ProbeError::NotHttp {
            addr,
            head: status_line.chars().take(80).collect(),
        })?;
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::tests::endpoints;
    use crate::http::HttpServer;
    use crate::replicate::Side;

    #[test]
    fn unspecified_addresses_are_asked_on_loopback() {
        let cases = [
            ("0.0.0.0:9090", "127.0.0.1:9090"),
            ("[::]:9091", "[::1]:9091"),
            ("10.1.2.3:9090", "10.1.2.3:9090"),
            ("127.0.0.1:8080", "127.0.0.1:8080"),
        ];
        for (listen, want) in cases {
            let listen: SocketAddr = listen.parse().expect("an address");
            assert_eq!(local_target(listen).to_string(), want, "{listen}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_the_status_and_body_of_readyz() {
        let e = endpoints();
        let health = std::sync::Arc::clone(&e.health);
        let server = HttpServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), e)
            .await
            .expect("bind an ephemeral port");
        let addr = server.local_addr();
        let ask = move || tokio::task::spawn_blocking(move || get(addr, "/readyz", Duration::from_secs(5)));
        let (status, body) = ask().await.expect("probe thread").expect("an answer");
        assert_eq!(status, 503);
        assert!(body.contains("checkpoints not loaded"), "{body}");
        health.record_probe(Side::Source, Ok(()));
        health.record_probe(Side::Target, Ok(()));
        health.set_checkpoints_loaded();
        let (status, body) = ask().await.expect("probe thread").expect("an answer");
        assert_eq!((status, body.as_str()), (200, "ready\n"));
    }

    #[test]
    fn a_closed_port_and_a_non_http_answer_are_errors() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("bound address");
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("one connection");
            let mut request = [0u8; 1024];
            let _ = s.read(&mut request);
            s.write_all(b"SSH-2.0-OpenSSH\r\n").expect("answer");
        });
        let err = get(addr, "/readyz", Duration::from_secs(5)).expect_err("not HTTP");
        assert!(matches!(err, ProbeError::NotHttp { .. }), "{err:?}");
        server.join().expect("server thread");
        // The listener is gone with its thread: nothing accepts there now.
        let err = get(addr, "/readyz", Duration::from_secs(5)).expect_err("closed");
        assert!(matches!(err, ProbeError::Connect { .. }), "{err:?}");
    }
}
