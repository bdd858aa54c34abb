//! Configuration: the [`Config`] tree, its three figment layers, and validation.
//!
//! Layers, lowest precedence first:
//!
//! 1. built-in defaults, [`Config::default()`];
//! 2. the TOML file named by `--config` / `STRAIT_CONFIG` (`main` resolves which and passes it);
//! 3. `STRAIT_*` environment variables, `__` between levels: `STRAIT_SOURCE__BOOTSTRAP_SERVERS`
//!    sets `source.bootstrap_servers`. `STRAIT_CONFIG`, `STRAIT_LOG` and `STRAIT_LOG_FORMAT` belong to `main`.
//!
//! `config/strait.toml` lists every key with its default and its variable; a test keeps it equal
//! to [`Config::default()`]. Unknown keys in the file are errors; unknown `STRAIT_*` variables are
//! warnings returned to the caller, who logs them (this module does not log).
//!
//! This module owns parsing and checking, and must not open sockets or resolve host names:
//! everything here runs before the first connection, so a bad config fails fast with exit 64.

mod env;
mod error;
mod groups;
mod oauth;
mod rule_text;
mod secret;
mod security;
mod target_configs;
mod topics;
mod validate;
mod watch;
mod weights;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub use env::{env_var_for, known_keys, ENV_PREFIX, RESERVED_ENV_VARS};
pub use error::{Error, Origin, Result};
pub use groups::{GroupFilter, GroupsConfig, STRAIT_GROUP_PREFIX};
pub use secret::Secret;
pub use security::{SaslConfig, SaslMechanism, TlsConfig};
pub use target_configs::{target_config_overrides, TargetConfigError, TargetConfigRule};
pub use topics::{TopicFilter, TopicsConfig, INTERNAL_TOPIC_PREFIX};
pub use watch::FileWatch;
pub use weights::{WeightError, WeightRule};

/// The whole configuration. Field names are the operator interface: keep them stable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The cluster strait reads from.
    pub source: ClusterConfig,
    /// The cluster strait writes to; it also holds the checkpoint topic.
    pub target: ClusterConfig,
    /// Which topics are replicated and what they are called on the target.
    pub topics: TopicsConfig,
    /// Where a partition with no checkpoint starts reading, at the replication's very first
    /// start; anything that appears later starts at its beginning.
    pub start_from: StartFrom,
    /// How fetched records are regrouped into produce batches.
    pub batch: BatchConfig,
    /// How much is fetched from the source at a time.
    pub fetch: FetchConfig,
    /// How batches are recompressed for the target.
    pub compression: CompressionConfig,
    /// The WAN bandwidth budget.
    pub budget: BudgetConfig,
    /// The HTTP server for /livez, /readyz, /metrics and /status.
    pub http: HttpConfig,
    /// Where replication progress is stored on the target.
    pub checkpoint: CheckpointConfig,
    /// Which share of the partitions this process replicates.
    pub shard: ShardConfig,
    /// Heartbeat records written to the source and replicated, to measure the whole path.
    pub heartbeats: HeartbeatsConfig,
    /// When strait warns that replication is falling behind dangerously.
    pub alerts: AlertsConfig,
    /// Comparing the target with the source again while replicating.
    pub verify: VerifyConfig,
    /// What a partition writes first after an outage: its oldest records, or its new ones.
    pub catchup: CatchUpConfig,
    /// Translating committed consumer-group offsets to the target.
    pub groups: GroupsConfig,
    /// Identity of this replication flow (names its checkpoints).
    pub replication: ReplicationConfig,
    /// What to do when a target partition is behind its checkpoint.
    pub on_target_reset: OnTargetReset,
    /// What to do when a target partition holds records strait did not write.
    pub on_foreign_writer: OnForeignWriter,
    /// What to do when a target partition already holds records and has no checkpoint.
    pub on_missing_checkpoint: OnMissingCheckpoint,
    /// What to do when a topic was recreated since its partition's checkpoint.
    pub on_topic_recreated: OnTopicRecreated,
    /// On SIGTERM, how long to flush in-flight batches and write checkpoints before aborting,
    /// in seconds.
    pub shutdown_grace_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            source: ClusterConfig::default(),
            target: ClusterConfig {
                connections_per_broker: 2,
                ..ClusterConfig::default()
            },
            topics: TopicsConfig::default(),
            start_from: StartFrom::default(),
            batch: BatchConfig::default(),
            fetch: FetchConfig::default(),
            compression: CompressionConfig::default(),
            budget: BudgetConfig::default(),
            http: HttpConfig::default(),
            checkpoint: CheckpointConfig::default(),
            shard: ShardConfig::default(),
            heartbeats: HeartbeatsConfig::default(),
            alerts: AlertsConfig::default(),
            verify: VerifyConfig::default(),
            catchup: CatchUpConfig::default(),
            groups: GroupsConfig::default(),
            shutdown_grace_secs: 30,
            replication: ReplicationConfig::default(),
            on_target_reset: OnTargetReset::default(),
            on_foreign_writer: OnForeignWriter::default(),
            on_missing_checkpoint: OnMissingCheckpoint::default(),
            on_topic_recreated: OnTopicRecreated::default(),
        }
    }
}

/// The annotated reference configuration (`config/strait.toml`): every key with its default,
/// its variable and what it does. `strait config reference` prints it.
pub const REFERENCE_TOML: &str = include_str!("../../config/strait.toml");

impl Config {
    /// Loads from the three layers, reading `STRAIT_*` from the process environment, and
    /// validates. Returns the warnings (unknown `STRAIT_*` variables) for the caller to log.
    pub fn load(path: Option<&Path>) -> Result<(Config, Vec<String>)> {
        // Variables whose name is not UTF-8 cannot be ours; skip them rather than panic.
        let env = std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value.to_string_lossy().into_owned())));
        Self::load_from(path, env)
    }

    /// [`Config::load`] with the environment given as `(name, value)` pairs.
    pub fn load_from(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, Vec<String>)> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = path {
            // figment silently skips a missing file; one named explicitly must exist.
            std::fs::File::open(path).map_err(|source| Error::ReadFile {
                path: path.to_path_buf(),
                source,
            })?;
            figment = figment.merge(Toml::file_exact(path));
        }
        let (env_layer, mut warnings) = env::EnvLayer::from_pairs(env)?;
        let figment = figment.merge(env_layer);
        let config: Config = figment.extract().map_err(|e| Error::from_figment(e, path))?;
        config.validate()?;
        warnings.extend(ignored_level_keys(&config, &figment));
        for (side, cluster) in [("source", &config.source), ("target", &config.target)] {
            warnings.extend(security::plaintext_warning(
                side,
                &cluster.tls,
                &cluster.sasl,
                cluster.allow_plaintext_credentials,
            ));
        }
        Ok((config, warnings))
    }

    /// The topic filter, also excluding strait's own checkpoint topic.
    pub fn topic_filter(&self) -> Result<TopicFilter> {
        Ok(self.topics.filter()?.excluding(self.checkpoint.topic.clone()))
    }

    /// [`Self::shutdown_grace_secs`] as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

/// The zstd level keys given in the file or the environment while `compression.codec` is not
/// zstd: they are ignored, which the operator should hear about.
fn ignored_level_keys(config: &Config, figment: &Figment) -> Option<String> {
    let codec = config.compression.codec;
    if codec == Codec::Zstd {
        return None;
    }
    let set: Vec<&str> = [
        "compression.zstd_level",
        "compression.min_level",
        "compression.max_level",
    ]
    .into_iter()
    .filter(|key| {
        figment
            .find_metadata(key)
            .is_some_and(|md| md.name == env::PROVIDER_NAME || md.source.as_ref().and_then(|s| s.file_path()).is_some())
    })
    .collect();
    (!set.is_empty()).then(|| {
        format!(
            "{} set while compression.codec = {codec}: the zstd level keys are ignored (they apply to \
             compression.codec = \"zstd\" only); remove them or set compression.codec = \"zstd\"",
            set.join(", ")
        )
    })
}

/// How to reach one cluster; used for both `source` and `target`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Comma-separated `host:port` list of brokers to bootstrap from. Required: no default.
    pub bootstrap_servers: String,
    /// Client id sent with every request, as seen in broker logs and quotas.
    pub client_id: String,
    /// How long to wait for any one response before failing the request, in milliseconds.
    pub request_timeout_ms: u64,
    /// Connections to each broker (1 to 16) that partitions' fetches and produce requests are
    /// spread over, a partition always on the same one. A Kafka broker handles one
    /// connection's requests one at a time, so several let it serve several partitions at once.
    /// One more per broker carries the idle partitions' long polls.
    pub connections_per_broker: u16,
    /// TLS to every broker of this cluster.
    pub tls: TlsConfig,
    /// SASL authentication on every connection to this cluster.
    pub sasl: SaslConfig,
    /// Let SASL send a password or bearer token (PLAIN, OAUTHBEARER, AWS_MSK_IAM) to this
    /// cluster without TLS, which is refused otherwise; also silences the warning for SCRAM
    /// without TLS. Only for a network nobody else can read.
    pub allow_plaintext_credentials: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            bootstrap_servers: String::new(),
            client_id: "strait".to_owned(),
            request_timeout_ms: 30_000,
            connections_per_broker: 4,
            tls: TlsConfig::default(),
            sasl: SaslConfig::default(),
            allow_plaintext_credentials: false,
        }
    }
}

impl ClusterConfig {
    /// The bootstrap brokers: entries trimmed, empty ones dropped.
    pub fn bootstrap(&self) -> Vec<String> {
        self.bootstrap_servers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// [`Self::request_timeout_ms`] as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// Where a partition with no checkpoint starts: `"earliest"`, `"latest"` or
/// `"timestamp:<ms>"`. Only at a replication's very first start (no checkpoint of its
/// replication id for any partition the process owns), for the partitions there then: a topic or
/// partition that appears later, or has no checkpoint at a restart, starts at its beginning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum StartFrom {
    /// The log start offset: copy everything still retained.
    #[default]
    Earliest,
    /// The high watermark: copy only what is produced from now on.
    Latest,
    /// The first record whose timestamp is at or after this one (ms since the Unix epoch);
    /// the high watermark when none is that new.
    Timestamp(i64),
}

impl TryFrom<String> for StartFrom {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        let bad = || {
            format!(
                "start_from is {s:?}: use \"earliest\", \"latest\" or \"timestamp:<ms>\" with a time in milliseconds \
                 since the Unix epoch, e.g. \"timestamp:1767225600000\""
            )
        };
        match s.trim().to_ascii_lowercase().as_str() {
            "earliest" => Ok(StartFrom::Earliest),
            "latest" => Ok(StartFrom::Latest),
            other => other
                .strip_prefix("timestamp:")
                .and_then(|ms| ms.trim().parse::<i64>().ok())
                .filter(|ms| *ms >= 0)
                .map(StartFrom::Timestamp)
                .ok_or_else(bad),
        }
    }
}

impl From<StartFrom> for String {
    fn from(s: StartFrom) -> String {
        match s {
            StartFrom::Earliest => "earliest".to_owned(),
            StartFrom::Latest => "latest".to_owned(),
            StartFrom::Timestamp(ms) => format!("timestamp:{ms}"),
        }
    }
}

/// Produce batching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Largest produce batch, in uncompressed bytes (1 KiB to 64 MiB).
    pub max_bytes: usize,
    /// How long to wait for more records before sending a partial batch, in milliseconds
    /// (at most 60000).
    pub linger_ms: u64,
    /// Memory for batches across all partitions, in bytes: records being re-batched and
    /// compressed batches waiting for the target's acknowledgement (at least `max_bytes`).
    /// When it is full, a partition sends what it has and waits, so many partitions make
    /// smaller batches instead of more memory.
    pub buffer_max_bytes: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_bytes: 1024 * 1024,
            linger_ms: 100,
            buffer_max_bytes: 32 * 1024 * 1024,
        }
    }
}

impl BatchConfig {
    /// [`Self::linger_ms`] as a duration.
    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms)
    }
}

/// Source fetching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchConfig {
    /// Most bytes fetched per partition per request (1 KiB to 1 GiB); a larger first batch is
    /// still returned whole.
    pub max_bytes: usize,
    /// How long the broker may hold a fetch waiting for data, in milliseconds (at most 60000).
    /// Partitions share one fetch request per connection, and a partition that asks while an
    /// idle request is held waits for it: keep this short. Idle partitions sleep apart, on a
    /// connection of their own per broker, in long polls of at least 500 ms.
    pub max_wait_ms: u64,
    /// Fetched data held in memory across all partitions, in bytes, until it is re-batched;
    /// bounds memory whatever the backlog and the partition count (at least 1 MiB).
    pub buffer_max_bytes: usize,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            max_bytes: 1024 * 1024,
            max_wait_ms: 50,
            buffer_max_bytes: 32 * 1024 * 1024,
        }
    }
}

impl FetchConfig {
    /// [`Self::max_wait_ms`] as a duration.
    pub fn max_wait(&self) -> Duration {
        Duration::from_millis(self.max_wait_ms)
    }
}

/// Recompression for the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionConfig {
    /// Codec of every data batch written to the target (the checkpoint topic stays zstd). The
    /// level keys below apply to zstd only.
    pub codec: Codec,
    /// zstd level, from 1 (fastest) to 22 (smallest); where the adaptive control starts (under
    /// a budget, raised once calibrated to the highest level the CPU sustains at the budget).
    pub zstd_level: i32,
    /// Lowest level the adaptive control goes down to.
    pub min_level: i32,
    /// Highest level the adaptive control goes up to; 0 = the highest level the measured CPU
    /// sustains at the budget, up to [`AUTO_MAX_LEVEL`].
    pub max_level: i32,
}

/// The highest level `compression.max_level = 0` lets the control reach: zstd's highest level
/// below the "ultra" ones (20 to 22), which need much more memory per context for a ratio
/// within about 1% of level 19 on 1 MiB batches.
pub const AUTO_MAX_LEVEL: i32 = 19;

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            codec: Codec::Zstd,
            zstd_level: 3,
            min_level: 1,
            max_level: 0,
        }
    }
}

impl CompressionConfig {
    /// The bounds of the adaptive level `(min, max)`, both widened to include `zstd_level`;
    /// `max_level = 0` gives [`AUTO_MAX_LEVEL`], the level control then keeping to what the
    /// measured CPU sustains.
    pub fn bounds(&self) -> (i32, i32) {
        let max = match self.max_level {
            0 => AUTO_MAX_LEVEL.max(self.min_level),
            set => set,
        };
        (self.min_level.min(self.zstd_level), max.max(self.zstd_level))
    }
}

/// The codec of target batches, by Kafka's `compression.type` name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// zstd at the adaptive level (Kafka clients 2.1 and later read it).
    #[default]
    Zstd,
    /// LZ4 frames, as the Java producer writes them.
    Lz4,
    /// gzip at level 6.
    Gzip,
    /// snappy with the Java client's xerial framing.
    Snappy,
    /// Uncompressed.
    None,
}

impl Codec {
    /// The name Kafka uses in `compression.type`, as the config spells it.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Zstd => "zstd",
            Codec::Lz4 => "lz4",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::None => "none",
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The WAN bandwidth budget.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    /// Bytes per second all of strait's shards together may send to the target; 0 = no limit.
    /// Each of `shard.count` processes takes an equal share ([`Self::share`]) unless `per_shard`.
    pub bytes_per_sec: u64,
    /// Bytes that may go out at once after an idle spell, across all shards like
    /// `bytes_per_sec`; 0 = a tenth of a second of budget.
    pub burst_bytes: u64,
    /// Whether `bytes_per_sec` and `burst_bytes` are each shard's own rather than the total.
    pub per_shard: bool,
    /// `REGEX=WEIGHT` rules splitting the budget between backlogged topics (target names);
    /// unmatched topics share weight 1. Parsed as they are read: a bad rule fails the load.
    #[serde(deserialize_with = "topics::rules")]
    pub weights: Vec<WeightRule>,
}

impl BudgetConfig {
    /// This process's part of the budget, `(bytes_per_sec, burst_bytes)`: the totals split
    /// evenly among `shards` processes (never down to 0, which would mean unlimited), or the
    /// values as given when `per_shard`. An even split suits shards of similar load, which the
    /// hash assignment of partitions gives; a shard that needs more takes `per_shard`.
    pub fn share(&self, shards: u32) -> (u64, u64) {
        let split = |total: u64| match (self.per_shard, total) {
            (true, _) | (_, 0) => total,
            (false, t) => (t / u64::from(shards.max(1))).max(1),
        };
        (split(self.bytes_per_sec), split(self.burst_bytes))
    }
}

/// The HTTP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on, as `ip:port` (host names are not resolved).
    pub listen: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "0.0.0.0:9090".to_owned(),
        }
    }
}

impl HttpConfig {
    /// [`Self::listen`] parsed; `Config::validate` has already checked it parses.
    pub fn socket_addr(&self) -> Result<SocketAddr> {
        validate::parse_listen(&self.listen)
    }
}

/// Checkpoint storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// strait's own topic on the target cluster; never replicated.
    pub topic: String,
    /// How often acknowledged progress is written, in milliseconds (also at shutdown).
    pub interval_ms: u64,
    /// Also commit the replicated positions, every 5 s, to the consumer group
    /// `strait.<replication id>` on the source: the source's own tools then show strait's lag,
    /// and a process started while the target is unreachable shows lag and retention headroom
    /// from it. Advisory only: strait never resumes from it.
    pub source_group: bool,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            topic: "strait-checkpoints".to_owned(),
            interval_ms: 1000,
            source_group: true,
        }
    }
}

/// Identity of this replication flow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationConfig {
    /// Names this flow's checkpoints, so two deployments can share one target. Empty: derived
    /// from the source cluster id.
    pub id: String,
}

/// What to do when a target partition is behind its checkpoint (topic deleted and recreated,
/// data lost on the target).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTargetReset {
    /// Stop the partition with an error: an operator decides.
    #[default]
    Halt,
    /// Forget the checkpoint and replicate the partition again from its beginning.
    ReplicateAgain,
}

/// What to do when a target partition holds records another producer wrote beyond strait's
/// checkpoint: anything in a batch whose producer identity strait did not record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnForeignWriter {
    /// Stop the partition with an error naming the foreign batch: an operator decides.
    #[default]
    Halt,
    /// Leave the foreign records in place, count them, and replicate every source record after
    /// them.
    Skip,
}

/// What to do when a target partition already holds records but no checkpoint of this
/// replication flow covers it (the checkpoint topic was deleted, `replication.id` changed, or
/// another tool such as MirrorMaker 2 filled the target): starting blind would duplicate
/// (`start_from = "earliest"`) or skip (`"latest"`) records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnMissingCheckpoint {
    /// Stop the partition with an error that explains the choices: an operator decides.
    #[default]
    Halt,
    /// Write after what the target holds, from `start_from` on the source (from its beginning
    /// for a partition that appeared after the replication's first start).
    Append,
    /// Find where the target's content ends in the source (its last records, matched by key,
    /// value, headers and timestamp) and go on right after it: the way to take over from
    /// MirrorMaker 2 or a lost checkpoint topic without a gap or a duplicate.
    Align,
}

/// What a partition does when its source or target topic was deleted and created again since
/// its checkpoint (the topic id changed): the checkpoint's offsets are of the old log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTopicRecreated {
    /// Stop the partition with an error that says how to go on.
    #[default]
    Halt,
    /// Forget the checkpoint: replicate the new topic from its beginning, after what the target
    /// holds.
    StartOver,
}

/// Heartbeats: a small record written to a source topic at a fixed interval and replicated
/// like any other, so end-to-end latency and liveness are measured even when no spans flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatsConfig {
    /// Whether strait writes heartbeats.
    pub enabled: bool,
    /// The source topic they go to (created with one partition when missing); replicated even
    /// when `topics.include` does not name it.
    pub topic: String,
    /// Milliseconds between heartbeats.
    pub interval_ms: u64,
}

impl Default for HeartbeatsConfig {
    fn default() -> Self {
        HeartbeatsConfig {
            enabled: false,
            topic: "strait-heartbeats".to_owned(),
            interval_ms: 1000,
        }
    }
}

/// The continuous check of `run`: every `interval_secs`, each owned partition's records from
/// where the last round ended up to its latest checkpoint are compared, source against target,
/// as `strait verify` does (key, value, headers, timestamp). Reading the target spends the WAN
/// budget.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// Seconds between rounds; 0 = off.
    pub interval_secs: u64,
}

/// What a partition writes first when its backlog is old (after an outage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatchUpConfig {
    /// `oldest_first` (every partition in source order) or `fresh_first`.
    pub mode: CatchUpMode,
    /// With `fresh_first`: a partition whose oldest record not replicated is older than this
    /// many seconds writes its new records first and drains the backlog behind them.
    pub fresh_after_secs: u64,
}

impl Default for CatchUpConfig {
    fn default() -> Self {
        CatchUpConfig {
            mode: CatchUpMode::default(),
            fresh_after_secs: 60,
        }
    }
}

/// The order a partition with a backlog writes in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUpMode {
    /// Source order, always.
    #[default]
    OldestFirst,
    /// New records first after an outage, the backlog behind them: records out of source
    /// order within a target partition until the backlog is drained.
    FreshFirst,
}

/// Alert thresholds: a partition past one is flagged on `/status`, counted in a metric, and
/// logged once per crossing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// A lagging partition is at retention risk when the source topic's `retention.ms` may
    /// delete its oldest record not yet replicated within this many seconds; 0 = never.
    pub retention_headroom_secs: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            retention_headroom_secs: 3600,
        }
    }
}

/// Splitting the partitions among several strait processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardConfig {
    /// This process's shard, from 0 to `count - 1`.
    pub index: u32,
    /// How many processes share the partitions (at least 1).
    pub count: u32,
    /// With several shards: a partition this shard does not own is reported orphaned when its
    /// source moves past a checkpoint older than this (or it has records and no checkpoint for
    /// this long); 0 = off. Raised to 3 checkpoint intervals and 2 topic refreshes
    /// ([`Config::orphan_after`]).
    pub orphan_after_secs: u64,
}

/// Default of `shard.orphan_after_secs`.
pub const DEFAULT_ORPHAN_AFTER_SECS: u64 = 300;

impl Config {
    /// The threshold of the orphan watch: `shard.orphan_after_secs`, raised to 3 checkpoint
    /// intervals and 2 topic refreshes (a live owner checkpoints every interval and picks up a
    /// new partition within a refresh, so a shorter one would report replicated partitions);
    /// `None` when the watch does not run (one shard, or 0).
    pub fn orphan_after(&self) -> Option<Duration> {
        if self.shard.count <= 1 || self.shard.orphan_after_secs == 0 {
            return None;
        }
        let floor_ms = (3 * self.checkpoint.interval_ms).max(2000 * self.topics.refresh_secs);
        Some(Duration::from_millis(
            (self.shard.orphan_after_secs * 1000).max(floor_ms),
        ))
    }
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig {
            index: 0,
            count: 1,
            orphan_after_secs: DEFAULT_ORPHAN_AFTER_SECS,
        }
    }
}

#[cfg(test)]
// figment::Jail's closures must return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests;
