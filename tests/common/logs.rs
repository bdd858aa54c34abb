//! strait's log lines when it runs in-process, captured for assertions: one global `tracing`
//! subscriber per test binary writes every line to a buffer and to the test's output (shown
//! when a test fails).

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

/// Starts capturing with `filter` (`EnvFilter` syntax); the first call in a test binary sets
/// the filter, later calls keep it. Call before [`super::Strait::start`], whose own subscriber
/// then stays out.
pub fn capture(filter: &str) {
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(move || Capture(Arc::clone(&sink)))
            .try_init();
        buf
    });
}

/// Everything captured so far (empty before [`capture`]).
pub fn text() -> String {
    LOGS.get()
        .map(|buf| String::from_utf8_lossy(&buf.lock().expect("log buffer")).into_owned())
        .unwrap_or_default()
}

/// The captured lines that contain every one of `needles`.
pub fn lines(needles: &[&str]) -> Vec<String> {
    text()
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_owned)
        .collect()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(data);
        // Through the test harness's capture, like tracing's test writer.
        eprint!("{}", String::from_utf8_lossy(data));
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
