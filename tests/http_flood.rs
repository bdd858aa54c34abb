//! The HTTP endpoint under a flood of idle connections (issue 15, item 3): as many as this
//! process's file descriptor limit allows, up to 20,000, all held open by the client side while
//! `/metrics` and `/readyz` are asked for on new connections. The server holds a bounded number
//! of connections and closes every idle one.
//!
//! One test in its own binary: it uses nearly every file descriptor the process may open, which
//! would starve tests running beside it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use strait::budget::{Budget, LevelControl};
use strait::http::{Endpoints, HttpServer, StatusInfo, MAX_CONNECTIONS};
use strait::replicate::{Health, Progress};

/// What issue 15 asks for.
const WANTED: usize = 20_000;

/// `(soft, hard)` RLIMIT_NOFILE of this process, from /proc/self/limits.
fn nofile() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/limits").expect("read /proc/self/limits");
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let mut fields = line.split_whitespace().skip(3);
    let mut next = || match fields.next() {
        Some("unlimited") => u64::MAX,
        Some(n) => n.parse().expect("a number of files"),
        None => panic!("short Max open files line: {line}"),
    };
    (next(), next())
}

/// Raises the soft limit towards the hard one with prlimit(1), as this crate forbids the unsafe
/// code a setrlimit call needs; returns the soft limit in force.
fn raise_nofile() -> u64 {
    let (soft, hard) = nofile();
    if soft < hard {
        let wanted = hard.min(1 << 20);
        // If prlimit is missing the limit stays as it was, and the premise below says so.
        let _ = std::process::Command::new("prlimit")
            .arg(format!("--pid={}", std::process::id()))
            .arg(format!("--nofile={wanted}:"))
            .status();
    }
    nofile().0
}

/// One request on a new connection; the whole answer, status line first.
async fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect for a request");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("send the request");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read the answer");
    out
}

/// The value of an unlabelled series in Prometheus text.
fn series(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_idle_connections_leave_metrics_and_readyz_answering() {
    let soft = raise_nofile();
    // Room for the server's connections (at most MAX_CONNECTIONS), the runtime and the test.
    let reserve = 2 * MAX_CONNECTIONS as u64 + 500;
    let n = WANTED.min(usize::try_from(soft.saturating_sub(reserve)).unwrap_or(WANTED));
    assert!(
        n >= 8 * MAX_CONNECTIONS,
        "premise: RLIMIT_NOFILE {soft} leaves room for only {n} idle connections"
    );
    let metrics = strait::telemetry::install().expect("the only recorder in this binary");
    let endpoints = Endpoints {
        metrics,
        progress: Arc::new(Progress::default()),
        health: Arc::new(Health::default()),
        liveness: Arc::default(),
        budget: Arc::new(Budget::unlimited()),
        level: Arc::new(LevelControl::new(3, 1, 12)),
        info: StatusInfo::default(),
    };
    let server = HttpServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), endpoints)
        .await
        .expect("bind an ephemeral port");
    let addr = server.local_addr();

    let mut idle = Vec::with_capacity(n);
    for i in 0..n {
        match TcpStream::connect(addr).await {
            Ok(s) => idle.push(s),
            Err(e) => panic!("premise: idle connection {i} of {n} could not be opened: {e}"),
        }
    }
    assert_eq!(idle.len(), n, "premise: every idle connection is open on this side");

    // Every idle connection is still held open here; new ones get answers.
    let metrics = get(addr, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    let open = series(&metrics, "strait_http_connections").expect("the open connections gauge");
    let evicted = series(&metrics, "strait_http_connections_evicted_total").expect("the evicted connections counter");
    assert!(
        open >= 1.0 && open <= MAX_CONNECTIONS as f64,
        "the server holds {open} connections (limit {MAX_CONNECTIONS})"
    );
    // Premise: the server accepted every idle connection (accepts are in order, and the
    // /metrics connection came after all of them).
    let accepted = n + 1;
    assert!(
        evicted + open >= accepted as f64,
        "the server saw {evicted} evicted + {open} open of {accepted} connections"
    );
    let readyz = get(addr, "/readyz").await;
    assert!(
        readyz.starts_with("HTTP/1.1 503") && readyz.contains("not ready"),
        "{readyz}"
    );

    // And every idle connection is closed by the server: the oldest as newer ones came, the
    // last ones at the header-read timeout.
    let mut reads = JoinSet::new();
    for mut s in idle {
        reads.spawn(async move {
            let mut buf = [0u8; 256];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
    }
    let mut closed = 0;
    while let Some(joined) = reads.join_next().await {
        joined.expect("reader task");
        closed += 1;
    }
    assert_eq!(closed, n);
}
