//! The real strait binary as a test fixture: [`StraitCmd`] builds its environment (only the
//! `STRAIT_*` variables a test gives, an HTTP port of its own, text logs unless told otherwise),
//! then either runs it to its exit ([`StraitCmd::output`]) or starts it ([`StraitCmd::spawn`]):
//! a [`Running`] binary writes stdout and stderr to a log file for later assertions, answers on
//! its HTTP port, and is stopped on drop (SIGTERM, then SIGKILL after a grace period).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::wait::eventually;

/// How long [`Running`]'s drop waits after SIGTERM before it kills.
const DROP_GRACE: Duration = Duration::from_secs(15);

pub use super::ports::free_port;

/// The strait binary's command line and environment.
#[derive(Clone, Debug)]
pub struct StraitCmd {
    args: Vec<String>,
    env: Vec<(String, String)>,
    clean: Vec<String>,
    port: u16,
}

impl StraitCmd {
    /// `strait <args>` with no inherited `STRAIT_*` or `RUST_LOG`, its HTTP endpoint on a free
    /// loopback port and text logs (a test's `env` may set either differently).
    pub fn new(args: &[&str]) -> StraitCmd {
        let port = free_port();
        StraitCmd {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: vec![
                ("STRAIT_HTTP__LISTEN".to_owned(), format!("127.0.0.1:{port}")),
                ("STRAIT_LOG_FORMAT".to_owned(), "text".to_owned()),
            ],
            clean: vec!["STRAIT_".to_owned(), "RUST_LOG".to_owned()],
            port,
        }
    }

    /// Sets one variable (a later setting of the same name wins).
    pub fn env(mut self, key: &str, value: impl Into<String>) -> StraitCmd {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    /// Sets every variable of `env`, in order.
    pub fn envs<V: AsRef<str>>(mut self, env: &[(&str, V)]) -> StraitCmd {
        for (k, v) in env {
            self.env.push(((*k).to_owned(), v.as_ref().to_owned()));
        }
        self
    }

    /// Also removes every inherited variable whose name starts with `prefix`.
    pub fn clean(mut self, prefix: &str) -> StraitCmd {
        self.clean.push(prefix.to_owned());
        self
    }

    /// The HTTP port the binary is told to listen on (meaningless if a test overrides
    /// `STRAIT_HTTP__LISTEN`).
    pub fn port(&self) -> u16 {
        self.port
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strait"));
        cmd.args(&self.args).stdin(Stdio::null());
        for (k, _) in std::env::vars().filter(|(k, _)| self.clean.iter().any(|p| k.starts_with(p.as_str()))) {
            cmd.env_remove(k);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs the binary to its exit (blocking) and returns what it printed and how long it took.
    pub fn output(&self) -> Ran {
        let started = Instant::now();
        let out = self.command().output().expect("run strait");
        Ran {
            out,
            took: started.elapsed(),
        }
    }

    /// [`StraitCmd::output`], but kills the binary and fails the test if it is still running
    /// after `limit` (a command that should exit by itself).
    pub fn output_within(&self, limit: Duration) -> Ran {
        let started = Instant::now();
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run strait");
        while child.try_wait().expect("wait for strait").is_none() {
            if started.elapsed() > limit {
                let _ = child.kill();
                let out = child.wait_with_output().expect("strait output");
                panic!(
                    "strait {:?} still running after {limit:?}: {}{}",
                    self.args,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().expect("strait output");
        Ran {
            out,
            took: started.elapsed(),
        }
    }

    /// [`StraitCmd::output`] off the async runtime's workers.
    pub async fn output_async(self) -> Ran {
        tokio::task::spawn_blocking(move || self.output())
            .await
            .expect("strait run")
    }

    /// Starts the binary, stdout and stderr going to a log file in a temp dir of its own.
    pub fn spawn(self) -> Running {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("strait.log");
        let mut running = self.spawn_logging_to(&log);
        running.dir = Some(dir);
        running
    }

    /// Starts the binary, appending stdout and stderr to `log` (several runs may share one).
    pub fn spawn_logging_to(self, log: &Path) -> Running {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = self
            .command()
            .stdout(file.try_clone().expect("log file handle"))
            .stderr(file)
            .spawn()
            .expect("spawn strait");
        Running {
            child,
            port: self.port,
            log: log.to_owned(),
            dir: None,
        }
    }
}

/// A finished run of the binary.
#[derive(Debug)]
pub struct Ran {
    pub out: Output,
    pub took: Duration,
}

impl Ran {
    /// The exit code (`None` when a signal ended it).
    pub fn code(&self) -> Option<i32> {
        self.out.status.code()
    }

    /// stdout then stderr, as text.
    pub fn text(&self) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&self.out.stdout),
            String::from_utf8_lossy(&self.out.stderr)
        )
    }
}

/// The binary running; SIGTERM (then SIGKILL after a grace period) when dropped.
#[derive(Debug)]
pub struct Running {
    child: Child,
    port: u16,
    log: PathBuf,
    dir: Option<tempfile::TempDir>,
}

impl Running {
    /// The HTTP port it was told to listen on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its log lines so far that contain every one of `needles`.
    pub fn log_lines(&self, needles: &[&str]) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_owned)
            .collect()
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("status of strait")
    }

    /// Panics (with the log) if it has exited.
    pub fn assert_running(&mut self, when: &str) {
        if let Some(status) = self.exited() {
            panic!("strait exited {when}: {status:?}; log:\n{}", self.log());
        }
    }

    /// One GET on its HTTP endpoint: `(status, body)`, or `None` when nothing answers.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        get(self.port, path).await
    }

    /// Polls `path` until `want(status, body)` holds and returns the body; fails with the last
    /// answer and the log when the generous deadline passes or strait exits meanwhile.
    pub async fn wait_for(&mut self, path: &str, what: &str, want: impl Fn(u16, &str) -> bool) -> String {
        let port = self.port;
        let log = self.log.clone();
        let want = &want;
        let found = eventually(&format!("{what} on {path}"), Duration::from_secs(120), || {
            let exited = self.exited();
            let log = &log;
            async move {
                if let Some(status) = exited {
                    panic!(
                        "strait exited ({status:?}) while waiting for {what} on {path}; log:\n{}",
                        std::fs::read_to_string(log).unwrap_or_default()
                    );
                }
                match get(port, path).await {
                    Some((status, body)) if want(status, &body) => Ok(body),
                    answer => Err(format!(
                        "{answer:?}; strait log:\n{}",
                        std::fs::read_to_string(log).unwrap_or_default()
                    )),
                }
            }
        })
        .await;
        found
    }

    /// Waits until `/livez` answers 200: the process is up and serving.
    pub async fn live(&mut self) {
        self.wait_for("/livez", "liveness", |s, _| s == 200).await;
    }

    /// Waits until `/readyz` answers 200: both clusters reached, checkpoints loaded, nothing halted.
    pub async fn ready(&mut self) {
        self.wait_for("/readyz", "readiness", |s, _| s == 200).await;
    }

    /// Waits until its log holds a line with every one of `needles`; returns that line.
    pub async fn logged(&mut self, needles: &[&str]) -> String {
        let what = format!("a log line with {needles:?}");
        let log = self.log.clone();
        eventually(&what, Duration::from_secs(120), || {
            let exited = self.exited();
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let line = text
                .lines()
                .find(|l| needles.iter().all(|n| l.contains(n)))
                .map(str::to_owned);
            std::future::ready(match (line, exited) {
                (Some(line), _) => Ok(line),
                (None, Some(status)) => panic!("strait exited ({status:?}) before logging {needles:?}:\n{text}"),
                (None, None) => Err(format!("not yet; log:\n{text}")),
            })
        })
        .await
    }

    /// Sends SIGTERM.
    pub fn signal_term(&self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", pid.as_str()])
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM {pid} failed");
    }

    /// SIGTERM, then waits for the exit (failing after `bound`, the grace period plus slack).
    pub async fn terminate(&mut self, bound: Duration) -> ExitStatus {
        self.signal_term();
        eventually(
            &format!("strait to exit after SIGTERM (bound {bound:?})"),
            bound,
            || std::future::ready(self.exited()),
        )
        .await
    }

    /// SIGKILL, and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL strait");
        self.child.wait().expect("reap strait");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", pid.as_str()]).status();
        let deadline = Instant::now() + DROP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 GET over a fresh connection: `(status, body)`, or `None` when nothing answers.
pub async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let io = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: strait\r\nConnection: close\r\n\r\n").as_bytes())
            .await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), io).await.ok()?.ok()?;
    let status = raw.split(' ').nth(1)?.parse().ok()?;
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}
