//! Loopback ports for listeners the harness starts (strait's HTTP endpoint, Kafka's listeners).
//!
//! A port found by binding port 0 comes from the kernel's ephemeral range, the same range the
//! kernel takes the local port of every outgoing connection from. Between the moment such a port
//! is released and the moment a broker or strait binds it, any of the suite's many outgoing
//! connections may take it ("Address already in use"). So ports here come from below the
//! ephemeral range, where no outgoing connection lands: each is handed out once per process and
//! checked free when handed out. Test binaries run one after another; each starts at a place of
//! its own in the range, so a port still held by an earlier binary's process is skipped by the
//! check rather than met again and again.

use std::net::TcpListener;
use std::sync::Mutex;

/// The lowest port handed out (below it live well-known and registered services).
const LOW: u16 = 20_000;

/// A free loopback port, never handed out before in this process.
pub fn free_port() -> u16 {
    static NEXT: Mutex<Option<u16>> = Mutex::new(None);
    let high = ephemeral_low().saturating_sub(1);
    if high <= LOW + 1_000 {
        // The kernel's ephemeral range reaches down here: no port is safe from it, fall back
        // to the kernel's choice.
        return kernel_port();
    }
    let span = u32::from(high - LOW);
    let mut next = NEXT.lock().expect("port cursor");
    let start = next.unwrap_or_else(|| LOW + (std::process::id().wrapping_mul(7_919) % span) as u16);
    let mut port = start;
    for _ in 0..span {
        let candidate = port;
        port = if port >= high { LOW } else { port + 1 };
        if TcpListener::bind(("127.0.0.1", candidate)).is_ok() {
            *next = Some(port);
            return candidate;
        }
    }
    panic!("no free loopback port in {LOW}..={high}");
}

/// The first port of the kernel's ephemeral range (Linux's default when it cannot be read).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(32_768)
}

/// A port the kernel picks (from its ephemeral range).
fn kernel_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}
