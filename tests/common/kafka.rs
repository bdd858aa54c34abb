//! Apache Kafka clusters for the tests: KRaft nodes (each broker and controller) started from
//! the jars `scripts/install-deps.sh` resolved, through `tools/kafka/node.sh`, the same runner
//! the quickstart and the bench use.
//!
//! Every node has three listeners on loopback ports of its own: `CLIENT` with the security a
//! test asks for (what strait connects to), `INTERNAL` in plaintext (between the nodes, and for
//! the test's own setup and checks with librdkafka) and `CONTROLLER`. A cluster is ready when
//! librdkafka's Metadata through `INTERNAL` lists every node and strait's own client gets
//! Metadata through `CLIENT` (when the test gave a way to pass its security). Nodes run in
//! process groups of their own and are killed with them on drop; `node.sh` also kills its node
//! when the test binary is gone, so a shared cluster held in a static never outlives the run.
//!
//! A node or cluster that cannot start fails the test (under `CI`, also when Kafka is not
//! installed) with the node's log path and the last lines of its log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::{ci, client_config, unavailable};

/// How long a cluster may take to answer Metadata after its nodes were started. A node needs
/// about 4 s alone on 2 cores, more when tests start several at once.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Security of the `CLIENT` listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Plaintext => "PLAINTEXT",
            Protocol::Ssl => "SSL",
            Protocol::SaslPlaintext => "SASL_PLAINTEXT",
            Protocol::SaslSsl => "SASL_SSL",
        }
    }

    fn tls(self) -> bool {
        matches!(self, Protocol::Ssl | Protocol::SaslSsl)
    }

    fn sasl(self) -> bool {
        matches!(self, Protocol::SaslPlaintext | Protocol::SaslSsl)
    }
}

/// The broker's own certificate (PEM files) and the CA it trusts for client certificates.
#[derive(Clone, Debug)]
pub struct BrokerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// `ssl.client.auth=required`: the broker itself refuses clients without a certificate.
    pub client_auth: bool,
}

/// What a test cluster looks like.
#[derive(Clone, Debug)]
pub struct KafkaSpec {
    pub nodes: usize,
    pub protocol: Protocol,
    pub tls: Option<BrokerTls>,
    /// SASL mechanisms on `CLIENT`: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, `OAUTHBEARER`
    /// (Kafka's unsecured JWS validator: any unsigned token with a `sub` is accepted).
    pub mechanisms: Vec<String>,
    /// Users for PLAIN (in the JAAS config) and SCRAM (created when the storage is formatted).
    pub users: Vec<(String, String)>,
    /// The StandardAuthorizer; `ANONYMOUS` (the plaintext listeners) is a super user.
    pub authorizer: bool,
    /// More broker properties, e.g. `connections.max.reauth.ms`.
    pub props: Vec<(String, String)>,
    /// Network namespace and address the nodes run in and listen on (WAN tests).
    pub netns: Option<(String, String)>,
}

impl Default for KafkaSpec {
    fn default() -> Self {
        KafkaSpec {
            nodes: 1,
            protocol: Protocol::Plaintext,
            tls: None,
            mechanisms: Vec::new(),
            users: Vec::new(),
            authorizer: false,
            props: Vec::new(),
            netns: None,
        }
    }
}

impl KafkaSpec {
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = n;
        self
    }

    pub fn prop(mut self, key: &str, value: &str) -> Self {
        self.props.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// One KRaft node: its ports, folder and process.
struct Node {
    id: usize,
    client_port: u16,
    internal_port: u16,
    controller_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// An Apache Kafka cluster of 1 or 3 nodes, killed on drop.
pub struct Kafka {
    spec: KafkaSpec,
    nodes: Vec<Node>,
    cluster_id: String,
    _dir: tempfile::TempDir,
}

/// The repository root (tests run with the package root as working directory).
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `scripts/install-deps.sh` installed Kafka's jars.
pub fn installed() -> bool {
    let out = Command::new("bash")
        .arg("-c")
        .arg(". tools/kafka/env.sh && kafka_installed")
        .current_dir(repo())
        .status();
    out.is_ok_and(|s| s.success())
}

use super::ports::free_port;

/// A KRaft cluster id: 16 random bytes in unpadded base64url, as Kafka's `random-uuid` prints,
/// starting with a letter (the format tool would read a leading `-` as an option).
fn cluster_id() -> String {
    loop {
        let id = random_uuid();
        if id.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return id;
        }
    }
}

fn random_uuid() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes: [u8; 16] = rand::random();
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
    if n > 0 {
        out.push(ALPHABET[((bits << (6 - n)) & 63) as usize] as char);
    }
    out
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Kafka {
    /// Starts a cluster, or returns `None` (after [`unavailable`]: a failure under `CI`) when
    /// Kafka is not installed.
    pub async fn start(spec: KafkaSpec) -> Option<Kafka> {
        if !installed() {
            unavailable("Apache Kafka is not installed (~/.cache/strait/kafka-*)");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let nodes = (1..=spec.nodes)
            .map(|id| Node {
                id,
                client_port: free_port(),
                internal_port: free_port(),
                controller_port: free_port(),
                dir: dir.path().join(format!("node-{id}")),
                child: None,
            })
            .collect();
        let mut k = Kafka {
            spec,
            nodes,
            cluster_id: cluster_id(),
            _dir: dir,
        };
        for i in 0..k.nodes.len() {
            k.write_config(i);
        }
        for i in 0..k.nodes.len() {
            k.spawn(i);
        }
        k.wait_ready().await;
        Some(k)
    }

    fn host(&self) -> &str {
        self.spec.netns.as_ref().map_or("127.0.0.1", |(_, h)| h.as_str())
    }

    fn write_config(&self, i: usize) {
        let node = &self.nodes[i];
        let host = self.host();
        let spec = &self.spec;
        let replicas = spec.nodes.min(3);
        let min_isr = if replicas >= 3 { 2 } else { 1 };
        let voters = self
            .nodes
            .iter()
            .map(|n| format!("{}@{host}:{}", n.id, n.controller_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut props: Vec<(String, String)> = vec![
            ("process.roles".into(), "broker,controller".into()),
            ("node.id".into(), node.id.to_string()),
            ("controller.quorum.voters".into(), voters),
            (
                "listeners".into(),
                format!(
                    "CLIENT://{host}:{},INTERNAL://{host}:{},CONTROLLER://{host}:{}",
                    node.client_port, node.internal_port, node.controller_port
                ),
            ),
            (
                "advertised.listeners".into(),
                format!(
                    "CLIENT://{host}:{},INTERNAL://{host}:{}",
                    node.client_port, node.internal_port
                ),
            ),
            (
                "listener.security.protocol.map".into(),
                format!(
                    "CLIENT:{},INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    spec.protocol.name()
                ),
            ),
            ("controller.listener.names".into(), "CONTROLLER".into()),
            ("inter.broker.listener.name".into(), "INTERNAL".into()),
            ("log.dirs".into(), node.dir.join("data").display().to_string()),
            ("num.partitions".into(), "1".into()),
            ("default.replication.factor".into(), "1".into()),
            ("offsets.topic.replication.factor".into(), replicas.to_string()),
            ("offsets.topic.num.partitions".into(), "4".into()),
            ("transaction.state.log.replication.factor".into(), replicas.to_string()),
            ("transaction.state.log.min.isr".into(), min_isr.to_string()),
            ("transaction.state.log.num.partitions".into(), "4".into()),
            (
                "share.coordinator.state.topic.replication.factor".into(),
                replicas.to_string(),
            ),
            ("share.coordinator.state.topic.min.isr".into(), min_isr.to_string()),
            ("group.initial.rebalance.delay.ms".into(), "0".into()),
            // Tests write records stamped years ago: no time retention unless a topic sets
            // one, and then it runs every second.
            ("log.retention.ms".into(), "-1".into()),
            ("log.retention.check.interval.ms".into(), "1000".into()),
            ("log.initial.task.delay.ms".into(), "1000".into()),
        ];
        if let Some(tls) = spec.tls.as_ref().filter(|_| spec.protocol.tls()) {
            // One PEM file with the key and the certificate, as Kafka's PEM keystore reads it.
            let keystore = node.dir.join("keystore.pem");
            let key = std::fs::read_to_string(&tls.key).expect("broker key");
            let cert = std::fs::read_to_string(&tls.cert).expect("broker cert");
            std::fs::create_dir_all(&node.dir).expect("node dir");
            std::fs::write(&keystore, format!("{key}\n{cert}")).expect("keystore");
            props.extend([
                ("ssl.keystore.type".into(), "PEM".into()),
                ("ssl.keystore.location".into(), keystore.display().to_string()),
                ("ssl.truststore.type".into(), "PEM".into()),
                ("ssl.truststore.location".into(), tls.ca.display().to_string()),
                (
                    "ssl.client.auth".into(),
                    if tls.client_auth { "required" } else { "none" }.into(),
                ),
            ]);
        }
        if spec.protocol.sasl() {
            props.push(("sasl.enabled.mechanisms".into(), spec.mechanisms.join(",")));
            for m in &spec.mechanisms {
                let jaas = match m.as_str() {
                    "PLAIN" => {
                        let users: String = spec.users.iter().map(|(u, p)| format!(" user_{u}=\"{p}\"")).collect();
                        format!("org.apache.kafka.common.security.plain.PlainLoginModule required{users};")
                    }
                    "OAUTHBEARER" => "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required \
                                      unsecuredLoginStringClaim_sub=\"broker\";"
                        .to_owned(),
                    _ => "org.apache.kafka.common.security.scram.ScramLoginModule required;".to_owned(),
                };
                props.push((
                    format!("listener.name.client.{}.sasl.jaas.config", m.to_lowercase()),
                    jaas,
                ));
            }
        }
        if spec.authorizer {
            props.extend([
                (
                    "authorizer.class.name".into(),
                    "org.apache.kafka.metadata.authorizer.StandardAuthorizer".into(),
                ),
                ("super.users".into(), "User:ANONYMOUS".into()),
                ("allow.everyone.if.no.acl.found".into(), "false".into()),
            ]);
        }
        props.extend(spec.props.iter().cloned());
        let text: String = props.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::create_dir_all(&node.dir).expect("node dir");
        std::fs::write(node.dir.join("server.properties"), text).expect("server.properties");
        std::fs::write(node.dir.join("cluster-id"), &self.cluster_id).expect("cluster-id");
        let scram: Vec<String> = spec
            .mechanisms
            .iter()
            .filter(|m| m.starts_with("SCRAM-"))
            .flat_map(|m| {
                spec.users
                    .iter()
                    .flat_map(move |(u, p)| ["--add-scram".to_owned(), format!("{m}=[name={u},password={p}]")])
            })
            .collect();
        let format_args: String = scram.iter().map(|a| format!("{a}\n")).collect();
        std::fs::write(node.dir.join("format-args"), format_args).expect("format-args");
    }

    fn spawn(&mut self, i: usize) {
        let netns = self.spec.netns.clone();
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.dir.join("broker.log"))
            .expect("broker log");
        let script = repo().join("tools/kafka/node.sh");
        let mut command = match &netns {
            Some((ns, _)) => {
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
        use std::os::unix::process::CommandExt;
        let child = command
            .arg(&node.dir)
            .arg(std::process::id().to_string())
            .env(
                "KAFKA_HEAP",
                std::env::var("STRAIT_TEST_KAFKA_HEAP").unwrap_or_else(|_| "384m".into()),
            )
            // Tests start many short-lived nodes: the client compiler alone starts them faster.
            .env("KAFKA_JVM_EXTRA", "-XX:TieredStopAtLevel=1")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn tools/kafka/node.sh");
        node.child = Some(child);
    }

    /// Waits until every node is registered and answers Metadata; fails with the logs if a
    /// node exits or the cluster is not ready in time.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let plain = self.plain_bootstrap();
        let want = self.nodes.iter().filter(|n| n.child.is_some()).count();
        loop {
            for i in 0..self.nodes.len() {
                let exited = self.nodes[i].child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                if let Some(status) = exited {
                    panic!(
                        "Apache Kafka node {} exited with {status}: {}",
                        self.nodes[i].id,
                        self.node_log(i)
                    );
                }
            }
            let bootstrap = plain.clone();
            let brokers = tokio::task::spawn_blocking(move || {
                let consumer: BaseConsumer = client_config(&bootstrap).create().ok()?;
                let md = consumer.fetch_metadata(None, Duration::from_secs(2)).ok()?;
                Some(md.brokers().len())
            })
            .await
            .ok()
            .flatten();
            if brokers.is_some_and(|n| n >= want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Apache Kafka cluster not ready after {READY_TIMEOUT:?} ({want} nodes): {}",
                (0..self.nodes.len())
                    .map(|i| self.node_log(i))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The path of node `i`'s log and its last lines, for failure messages.
    pub fn node_log(&self, i: usize) -> String {
        let path = self.nodes[i].dir.join("broker.log");
        format!("log {}, last lines:\n{}", path.display(), tail(&path, 30))
    }

    /// The whole log of node `i`.
    pub fn node_log_text(&self, i: usize) -> String {
        std::fs::read_to_string(self.nodes[i].dir.join("broker.log")).unwrap_or_default()
    }

    /// Logs of every node.
    pub fn log(&self) -> String {
        (0..self.nodes.len())
            .map(|i| self.node_log(i))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The `CLIENT` listeners (what strait connects to).
    pub fn bootstrap(&self) -> String {
        self.addresses(|n| n.client_port)
    }

    /// The plaintext `INTERNAL` listeners, for the test's own setup and checks.
    pub fn plain_bootstrap(&self) -> String {
        self.addresses(|n| n.internal_port)
    }

    fn addresses(&self, port: impl Fn(&Node) -> u16) -> String {
        let host = self.host();
        self.nodes
            .iter()
            .map(|n| format!("{host}:{}", port(n)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The first node's `CLIENT` port.
    pub fn port(&self) -> u16 {
        self.nodes[0].client_port
    }

    /// How many nodes the cluster has.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The node id (1-based) at index `i`.
    pub fn node_id(&self, i: usize) -> i32 {
        self.nodes[i].id as i32
    }

    /// Kills node `i` with SIGKILL (its whole process group).
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            // The whole group: the runner, the JVM and its watch loop. Bash's own `kill` with
            // `--`: procps' `kill -KILL -PGID` can be read as a signal to every process.
            let _ = Command::new("bash")
                .args(["-c", "kill -KILL -- \"-$0\" 2>/dev/null", &c.id().to_string()])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops node `i` with SIGTERM: Kafka's controlled shutdown (leadership moves first).
    /// Waits for it to exit, up to a minute, then kills it.
    pub fn stop_node(&mut self, i: usize) {
        if let Some(c) = self.nodes[i].child.as_mut() {
            // The node's runner forwards nothing: signal the JVM itself, the group's java.
            let _ = Command::new("pkill")
                .args(["-TERM", "-g", &c.id().to_string(), "java"])
                .status();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if c.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        self.kill_node(i);
    }

    /// Starts node `i` again on its ports and data, and waits until the cluster has every
    /// running node again.
    pub async fn start_node(&mut self, i: usize) {
        self.spawn(i);
        self.wait_ready().await;
    }

    /// Kills every node.
    pub fn kill(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
    }

    /// Kills every node and starts them again on the same ports and data.
    pub async fn restart(&mut self) {
        self.kill();
        for i in 0..self.nodes.len() {
            self.spawn(i);
        }
        self.wait_ready().await;
    }

    /// Runs one of Kafka's command-line tools (a main class, e.g.
    /// `org.apache.kafka.tools.AclCommand`) against the plaintext listener's cluster; panics
    /// with its output when it fails.
    pub fn tool(&self, class: &str, args: &[&str]) -> String {
        let mut c = Command::new("bash");
        c.arg("-c")
            .arg(". tools/kafka/env.sh && kafka_class \"$@\"")
            .arg("kafka-tool")
            .arg(class)
            .args(args)
            .current_dir(repo());
        let out = c.output().expect("run a Kafka tool");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{class} {args:?} failed: {text}");
        text
    }

    /// Adds ACLs with Kafka's `AclCommand` (arguments after `--add`), e.g.
    /// `["--allow-principal", "User:strait", "--operation", "Read", "--topic", "t"]`.
    pub fn add_acl(&self, args: &[&str]) {
        let bootstrap = self.plain_bootstrap();
        let mut all = vec!["--bootstrap-server", bootstrap.as_str(), "--add", "--force"];
        all.extend_from_slice(args);
        self.tool("org.apache.kafka.tools.AclCommand", &all);
    }

    /// Whether the suite requires Kafka here (under CI a missing install fails the test).
    pub fn required() -> bool {
        ci()
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Kafka {
    /// One plaintext node: what most tests need. `None` only outside CI without Kafka.
    pub async fn single() -> Option<Kafka> {
        Kafka::start(KafkaSpec::default()).await
    }

    /// One plaintext node inside network namespace `netns`, listening on `host` there (the
    /// far end of an emulated WAN link from `tools/wan/link.sh`).
    pub async fn in_netns(netns: &str, host: &str) -> Option<Kafka> {
        Kafka::start(KafkaSpec {
            netns: Some((netns.to_owned(), host.to_owned())),
            ..KafkaSpec::default()
        })
        .await
    }
}
