//! What the bench runs on: one-node Apache Kafka brokers started as process groups (optionally inside a network
//! namespace), child processes measured from /proc, strait's /metrics, and the emulated WAN link.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use strait::kafka::{Cluster, OffsetSpec, TopicPartition, TopicSpec};

/// A free TCP port on the loopback interface (bound and released at once).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("while binding an ephemeral port")?;
    Ok(l.local_addr().context("while reading the ephemeral port")?.port())
}

/// The directory of Apache Kafka's jars (`tools/kafka/env.sh`'s `KAFKA_HOME`): `$STRAIT_KAFKA_HOME`,
/// else `$XDG_CACHE_HOME` or `~/.cache`, `strait/kafka-VERSION`.
pub fn kafka_home(repo: &Path) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("STRAIT_KAFKA_HOME") {
        return Ok(PathBuf::from(p));
    }
    let pom = std::fs::read_to_string(repo.join("tools/kafka/pom.xml")).context("while reading tools/kafka/pom.xml")?;
    let version = pom
        .split("<kafka.version>")
        .nth(1)
        .and_then(|r| r.split("</kafka.version>").next())
        .context("no <kafka.version> in tools/kafka/pom.xml")?
        .trim()
        .to_owned();
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .context("neither XDG_CACHE_HOME nor HOME is set")?;
    let home = cache.join("strait").join(format!("kafka-{version}"));
    if !home.join(".complete").exists() {
        bail!(
            "Apache Kafka {version} is not installed in {} (run scripts/install-deps.sh)",
            home.display()
        );
    }
    Ok(home)
}

/// The Apache Kafka version the bench runs (from `tools/kafka/pom.xml`).
pub fn kafka_version(repo: &Path) -> String {
    kafka_home(repo)
        .ok()
        .and_then(|h| {
            h.file_name()
                .map(|n| n.to_string_lossy().trim_start_matches("kafka-").to_owned())
        })
        .unwrap_or_else(|| "?".into())
}

/// The repository this bench belongs to.
pub fn repo_root() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    p.canonicalize().unwrap_or(p)
}

/// A KRaft cluster id: 16 bytes in unpadded base64url (22 characters), starting with a letter.
fn cluster_id(seed: u64) -> String {
    use std::hash::{BuildHasher, Hasher};
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(seed);
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_be_bytes());
    }
    bytes[0] &= 0x7f; // first character A-Z or a-f: never '-'
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = String::new();
    for b in bytes {
        bits = (bits << 8) | u32::from(b);
        n += 8;
        while n >= 6 {
            n -= 6;
            out.push(ALPHABET[((bits >> n) & 63) as usize] as char);
        }
    }
    out.push(ALPHABET[((bits << (6 - n)) & 63) as usize] as char);
    out
}

/// A one-node Apache Kafka (KRaft, broker and controller) started with `tools/kafka/node.sh` in
/// a process group of its own, on a data directory of its own; the group is killed and the
/// directory removed on drop.
pub struct Broker {
    child: Child,
    /// The node's JVM (the `java` child of node.sh): what its CPU and RSS are read from.
    java: u32,
    pub host: String,
    pub port: u16,
    dir: PathBuf,
}

impl Broker {
    /// Starts a node on `host` (inside network namespace `netns` when given) and waits until
    /// it answers Metadata.
    pub async fn start(name: &str, netns: Option<&str>, host: &str) -> Result<Broker> {
        Self::start_with(name, netns, host, &[]).await
    }

    /// [`Broker::start`] with `extra` server properties after the bench's own.
    pub async fn start_with(name: &str, netns: Option<&str>, host: &str, extra: &[(&str, &str)]) -> Result<Broker> {
        Self::start_on(&std::env::temp_dir(), name, netns, host, extra).await
    }

    /// [`Broker::start_with`] with the node's directory (its logs included) in memory
    /// (`/dev/shm`), for runs of thousands of partitions. Kafka preallocates each segment's
    /// offset and time index as a 10 MB sparse file and maps it; the first index entry (after
    /// `index.interval.bytes`, 4 KiB of log) faults it in, and on a disk whose `read_ahead_kb`
    /// is 8192 (this machine's) each such fault reads 8 MB of zeros into the page cache. 5,000
    /// new partitions reach 4 KiB together in the cut's drain: the node spent half a minute of
    /// its CPU in the kernel (benches/README.md, 2026-12-06, "the target's stall"). In memory a
    /// fault maps one page, as on a disk with the usual 128 KiB read-ahead it reads little.
    pub async fn start_in_memory(
        name: &str,
        netns: Option<&str>,
        host: &str,
        extra: &[(&str, &str)],
    ) -> Result<Broker> {
        Self::start_on(Path::new("/dev/shm"), name, netns, host, extra).await
    }

    async fn start_on(
        base: &Path,
        name: &str,
        netns: Option<&str>,
        host: &str,
        extra: &[(&str, &str)],
    ) -> Result<Broker> {
        use std::os::unix::process::CommandExt;
        let repo = repo_root();
        kafka_home(&repo)?;
        let port = free_port()?;
        let controller = free_port()?;
        let dir = base.join(format!("strait-e2e-{}-{name}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("while creating {}", dir.display()))?;
        let props = [
            ("process.roles", "broker,controller".to_owned()),
            ("node.id", "1".to_owned()),
            ("controller.quorum.voters", format!("1@{host}:{controller}")),
            (
                "listeners",
                format!("PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}"),
            ),
            ("advertised.listeners", format!("PLAINTEXT://{host}:{port}")),
            ("controller.listener.names", "CONTROLLER".to_owned()),
            ("inter.broker.listener.name", "PLAINTEXT".to_owned()),
            ("log.dirs", dir.join("data").display().to_string()),
            ("num.partitions", "1".to_owned()),
            ("default.replication.factor", "1".to_owned()),
            ("offsets.topic.replication.factor", "1".to_owned()),
            ("offsets.topic.num.partitions", "4".to_owned()),
            ("transaction.state.log.replication.factor", "1".to_owned()),
            ("transaction.state.log.min.isr", "1".to_owned()),
            ("transaction.state.log.num.partitions", "4".to_owned()),
            ("share.coordinator.state.topic.replication.factor", "1".to_owned()),
            ("share.coordinator.state.topic.min.isr", "1".to_owned()),
            ("group.initial.rebalance.delay.ms", "0".to_owned()),
            // The corpus may carry old timestamps: no time retention.
            ("log.retention.ms", "-1".to_owned()),
            // Batches are stored as each producer compressed them.
            ("compression.type", "producer".to_owned()),
            ("message.max.bytes", "8388608".to_owned()),
        ];
        let text: String = props
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain(extra.iter().copied())
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        std::fs::write(dir.join("server.properties"), text).context("while writing server.properties")?;
        std::fs::write(
            dir.join("cluster-id"),
            cluster_id(u64::from(port) << 32 | u64::from(std::process::id())),
        )
        .context("while writing cluster-id")?;
        let log = std::fs::File::create(dir.join("broker.log")).context("while creating the broker log")?;
        let script = repo.join("tools/kafka/node.sh");
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "bash"]).arg(&script);
                c
            }
            None => {
                let mut c = Command::new("bash");
                c.arg(&script);
                c
            }
        };
        let child = command
            .arg(&dir)
            .arg(std::process::id().to_string())
            .env(
                "KAFKA_HEAP",
                std::env::var("STRAIT_BENCH_KAFKA_HEAP").unwrap_or_else(|_| "1g".into()),
            )
            .env_remove("KAFKA_JVM_EXTRA")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("while duplicating the log handle")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("while starting {}", script.display()))?;
        let mut b = Broker {
            child,
            java: 0,
            host: host.to_owned(),
            port,
            dir,
        };
        b.wait_ready().await?;
        Ok(b)
    }

    /// The node's JVM process.
    pub fn pid(&self) -> u32 {
        self.java
    }

    pub fn bootstrap(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn cluster(&self) -> Arc<Cluster> {
        Arc::new(cluster(&self.bootstrap()))
    }

    /// Bytes of the `.log` segment files of `topic`'s partitions 0..partitions on disk: the
    /// record batches as stored, whatever client wrote them.
    pub fn log_bytes(&self, topic: &str, partitions: i32) -> Result<u64> {
        let mut total = 0;
        for p in 0..partitions {
            let d = self.dir.join("data").join(format!("{topic}-{p}"));
            for e in std::fs::read_dir(&d).with_context(|| format!("while listing {}", d.display()))? {
                let e = e?;
                if e.path().extension().is_some_and(|x| x == "log") {
                    total += e.metadata()?.len();
                }
            }
        }
        Ok(total)
    }

    /// How many partition logs of `topic` the node holds: the directories `topic-N` in its
    /// data directory, read from the node's own files (not through any client).
    pub fn partition_logs(&self, topic: &str) -> usize {
        let prefix = format!("{topic}-");
        let Ok(entries) = std::fs::read_dir(self.dir.join("data")) else {
            return 0;
        };
        entries
            .filter_map(std::result::Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix(&prefix))
                    .is_some_and(|p| p.parse::<u32>().is_ok())
            })
            .count()
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let c = self.cluster();
        let deadline = Instant::now() + Duration::from_secs(120);
        let pgid = self.child.id().to_string();
        loop {
            if let Some(status) = self.child.try_wait().context("while polling the broker")? {
                bail!("Apache Kafka node exited with {status}: {}", self.log_tail());
            }
            if c.metadata(Some(&[])).await.is_ok() {
                // The node's JVM, found once it answers: node.sh first runs the storage format
                // tool, also a `java` of the same group, which has exited by now.
                let out = Command::new("pgrep")
                    .args(["-n", "-g", &pgid, "java"])
                    .output()
                    .context("while running pgrep")?;
                self.java = String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                if self.java != 0 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("Apache Kafka node not ready after 120 s: {}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn log_tail(&self) -> String {
        let path = self.dir.join("broker.log");
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        let mut lines: Vec<&str> = log.lines().rev().take(8).collect();
        lines.reverse();
        format!("log {}: {}", path.display(), lines.join(" | "))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // node.sh leads its own process group: kill the whole group (bash's builtin kill; the
        // group id is the child's pid).
        let pgid = self.child.id().to_string();
        let _ = Command::new("bash")
            .args(["-c", "kill -KILL -- \"-$0\"", &pgid])
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A strait wire-layer client for the bench's own reads and writes.
pub fn cluster(bootstrap: &str) -> Cluster {
    Cluster::new(
        "bench",
        vec![bootstrap.to_owned()],
        "strait-e2e",
        Duration::from_secs(30),
    )
}

/// Creates `topic` with `partitions` (no-op when it exists) and waits until every partition
/// has a leader.
pub async fn create_topic(c: &Cluster, topic: &str, partitions: i32) -> Result<()> {
    let spec = TopicSpec {
        name: topic.to_owned(),
        partitions,
        replication_factor: -1,
        configs: BTreeMap::new(),
    };
    for (name, r) in c
        .create_topics(&[spec], 30_000)
        .await
        .context("while creating a topic")?
    {
        match r {
            Err(e) if e.code() != Some(strait::kafka::ResponseError::TopicAlreadyExists) => {
                return Err(e).with_context(|| format!("while creating topic {name}"));
            }
            _ => {}
        }
    }
    // Apache Kafka answers CreateTopics before every partition has a leader the client sees:
    // wait until each one answers ListOffsets (a produce right away gets NotLeaderOrFollower).
    let deadline = Instant::now() + Duration::from_secs(30);
    for p in 0..partitions {
        let tp = TopicPartition::new(topic, p);
        while let Err(e) = c.list_offset(&tp, OffsetSpec::Latest).await {
            c.invalidate(&tp);
            if Instant::now() > deadline {
                return Err(e).with_context(|| format!("no leader for {topic}/{p} 30 s after creating it"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Sum of the end offsets of `topic`'s partitions 0..partitions; 0 while it does not exist.
pub async fn end_offsets(c: &Cluster, topic: &str, partitions: i32) -> i64 {
    let mut total = 0;
    for p in 0..partitions {
        let tp = TopicPartition::new(topic, p);
        match c.list_offset(&tp, OffsetSpec::Latest).await {
            Ok(o) => total += o,
            Err(_) => {
                c.invalidate(&tp);
                return 0;
            }
        }
    }
    total
}

/// CPU ticks per second for /proc/PID/stat (USER_HZ).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

/// User + system CPU seconds of process `pid` (all its threads), from /proc/PID/stat.
pub fn cpu_seconds(pid: u32, ticks: f64) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("while reading /proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: f64 = fields.get(11).context("no utime")?.parse()?;
    let stime: f64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) / ticks)
}

/// A `VmXXX:` line of /proc/PID/status, in bytes (e.g. `VmHWM` = peak RSS, `VmRSS`).
pub fn vm_bytes(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("while reading /proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    let kb: u64 = line[field.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("bad {field} line {line:?}"))?;
    Ok(kb * 1024)
}

/// A measured child process (strait or a baseline mirror), stopped on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr going to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Proc> {
        let out = std::fs::File::create(log).with_context(|| format!("while creating {}", log.display()))?;
        let err = out.try_clone().context("while duplicating the log handle")?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("while starting {name}"))?;
        Ok(Proc {
            child,
            name: name.to_owned(),
            log: log.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Err when the process has exited (with the tail of its log).
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait().context("while polling a child")? {
            bail!("{} exited with {status}; log tail: {}", self.name, self.log_tail(8));
        }
        Ok(())
    }

    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut lines: Vec<&str> = log.lines().rev().take(n).collect();
        lines.reverse();
        lines.join("\n")
    }

    /// SIGTERM, then SIGKILL after `grace`. Returns whether it exited within the grace.
    pub fn stop(&mut self, grace: Duration) -> bool {
        if self.child.try_wait().ok().flatten().is_some() {
            return true;
        }
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The environment of a `strait run` child: both clusters, one topic, its own HTTP port,
/// checkpoint topic and replication id.
pub fn strait_command(bin: &Path, source: &str, target: &str, include: &str, prefix: &str, http_port: u16) -> Command {
    let mut c = Command::new(bin);
    c.arg("run")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        // Allocator tuning (glibc's MALLOC_*) and strait settings given to the bench pass
        // through; the settings below take precedence.
        .envs(std::env::vars().filter(|(k, _)| k.starts_with("MALLOC_") || k.starts_with("STRAIT_")))
        .env("STRAIT_SOURCE__BOOTSTRAP_SERVERS", source)
        .env("STRAIT_TARGET__BOOTSTRAP_SERVERS", target)
        .env("STRAIT_TOPICS__INCLUDE", include)
        .env("STRAIT_TOPICS__PREFIX", prefix)
        .env("STRAIT_HTTP__LISTEN", format!("127.0.0.1:{http_port}"))
        .env(
            "STRAIT_CHECKPOINT__TOPIC",
            format!("strait-ckpt-{}", prefix.trim_end_matches('.')),
        )
        .env(
            "STRAIT_REPLICATION__ID",
            format!("bench-{}", prefix.trim_end_matches('.')),
        )
        .env("STRAIT_LOG_FORMAT", "text")
        .env("STRAIT_LOG", "info");
    c
}

/// A plain HTTP/1.0 GET on 127.0.0.1:port; (status, body).
pub fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).context("while connecting to strait's HTTP port")?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status")?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Sum over all label sets of metric `name` in a Prometheus text page.
pub fn metric_sum(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// Fails unless running as root, which network namespaces (tools/wan/link.sh) need.
pub fn require_root() -> Result<()> {
    let uid = Command::new("id").arg("-u").output().context("while running id -u")?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        bail!("needs root for network namespaces (tools/wan/link.sh)");
    }
    Ok(())
}

/// An emulated WAN link from `tools/wan/link.sh`, torn down on drop.
pub struct Link {
    pub name: String,
    pub far: String,
    /// The near-side TUN device (in this namespace): its tx counters are the bytes sent towards
    /// the far side.
    pub near_dev: String,
    script: PathBuf,
}

impl Link {
    pub fn up(repo: &Path, name: &str, rate: &str, delay_ms: u32) -> Result<Link> {
        let script = repo.join("tools/wan/link.sh");
        // A leftover from an aborted run would make `ip netns add` fail.
        let _ = Command::new("bash").arg(&script).args(["down", name]).output();
        let out = Command::new("bash")
            .arg(&script)
            .args(["up", name, rate, &delay_ms.to_string()])
            .output()
            .context("while running tools/wan/link.sh")?;
        let link = Link {
            name: name.to_owned(),
            far: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            near_dev: format!("{}a", &name[..name.len().min(10)]),
            script,
        };
        if !out.status.success() {
            bail!("link.sh up failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(link)
    }

    /// (tx_bytes, tx_packets) of the near-side device.
    pub fn tx(&self) -> Result<(u64, u64)> {
        let read = |f: &str| -> Result<u64> {
            let p = format!("/sys/class/net/{}/statistics/{f}", self.near_dev);
            Ok(std::fs::read_to_string(&p)
                .with_context(|| format!("while reading {p}"))?
                .trim()
                .parse()?)
        };
        Ok((read("tx_bytes")?, read("tx_packets")?))
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .args(["down", &self.name])
            .output();
    }
}
