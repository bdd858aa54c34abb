//! `Config::validate`: the rules a well-typed config must also satisfy, checked before any
//! socket is opened.
//!
//! Each rule returns an [`Error::Invalid`] or [`Error::Regex`] naming the key, the value and the
//! fix. The first broken rule is reported, in the order the keys appear in the config tree.

use std::net::SocketAddr;

use super::topics::{invalid_topic_chars, MAX_TOPIC_LEN};
use super::{ClusterConfig, Config, Error, Result};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Kafka carries timeouts and sizes as `int32` on the wire.
const WIRE_MAX: u64 = i32::MAX as u64;

/// Longest linger or fetch wait we accept: beyond a minute replication just looks stuck.
const MAX_WAIT_MS: u64 = 60_000;

const EXAMPLE_BOOTSTRAP: &str = r#"e.g. "broker-1:9092,broker-2:9092""#;

/// The keys of one side, so messages name `source.*` or `target.*` precisely.
struct ClusterKeys {
    bootstrap_servers: &'static str,
    client_id: &'static str,
    request_timeout_ms: &'static str,
    connections_per_broker: &'static str,
}

const SOURCE: ClusterKeys = ClusterKeys {
    bootstrap_servers: "source.bootstrap_servers",
    client_id: "source.client_id",
    request_timeout_ms: "source.request_timeout_ms",
    connections_per_broker: "source.connections_per_broker",
};

const TARGET: ClusterKeys = ClusterKeys {
    bootstrap_servers: "target.bootstrap_servers",
    client_id: "target.client_id",
    request_timeout_ms: "target.request_timeout_ms",
    connections_per_broker: "target.connections_per_broker",
};

impl Config {
    /// Checks the rules that types alone cannot express, including cross-field ones.
    pub fn validate(&self) -> Result<()> {
        check_bootstrap_given(self)?;
        check_cluster(&SOURCE, &self.source)?;
        check_cluster(&TARGET, &self.target)?;
        super::security::check("source", &self.source.tls, &self.source.sasl)?;
        super::security::check("target", &self.target.tls, &self.target.sasl)?;
        for (side, cluster) in [("source", &self.source), ("target", &self.target)] {
            super::security::check_plaintext(side, &cluster.tls, &cluster.sasl, cluster.allow_plaintext_credentials)?;
        }
        check_topics(self)?;
        check_groups(self)?;
        if self.catchup.fresh_after_secs == 0 {
            return Err(Error::invalid(
                "catchup.fresh_after_secs",
                0,
                "is out of range: every partition with one record to send would count as after an outage",
                "use at least 1 second, e.g. 60",
            ));
        }
        check_not_self_replicating(self)?;
        check_batch_and_fetch(self)?;
        check_zstd_level(self.compression.zstd_level)?;
        check_budget(self)?;
        self.http.socket_addr()?;
        check_topic_name("checkpoint.topic", &self.checkpoint.topic)?;
        check_checkpoint_interval(self.checkpoint.interval_ms)?;
        check_topic_name("heartbeats.topic", &self.heartbeats.topic)?;
        if !(10..=3_600_000).contains(&self.heartbeats.interval_ms) {
            return Err(Error::invalid(
                "heartbeats.interval_ms",
                self.heartbeats.interval_ms,
                "is out of range",
                "use 10 to 3600000 milliseconds, e.g. 1000",
            ));
        }
        check_retention_headroom(self.alerts.retention_headroom_secs)?;
        check_shard(self)
    }
}

/// Longest retention headroom alert: beyond a year every lagging partition would be at risk.
const MAX_RETENTION_HEADROOM_SECS: u64 = 365 * 24 * 3600;

fn check_retention_headroom(secs: u64) -> Result<()> {
    if secs > MAX_RETENTION_HEADROOM_SECS {
        return Err(Error::invalid(
            "alerts.retention_headroom_secs",
            secs,
            "is out of range",
            format!(
                "use 0 to disable, or up to {MAX_RETENTION_HEADROOM_SECS} seconds; 3600 leaves an hour to \
                 raise the budget or the source topic's retention.ms"
            ),
        ));
    }
    Ok(())
}

fn check_checkpoint_interval(interval_ms: u64) -> Result<()> {
    if !(100..=600_000).contains(&interval_ms) {
        return Err(Error::invalid(
            "checkpoint.interval_ms",
            interval_ms,
            "is out of range",
            "use 100 to 600000 milliseconds; 1000 keeps at most a second of work to redo after a crash",
        ));
    }
    Ok(())
}

/// Both sides name their brokers; the error names every side that does not.
fn check_bootstrap_given(config: &Config) -> Result<()> {
    let keys: Vec<&'static str> = [(&SOURCE, &config.source), (&TARGET, &config.target)]
        .into_iter()
        .filter(|(_, c)| c.bootstrap_servers.trim().is_empty())
        .map(|(k, _)| k.bootstrap_servers)
        .collect();
    if keys.is_empty() {
        Ok(())
    } else {
        Err(Error::MissingBootstrap { keys })
    }
}

fn check_cluster(keys: &ClusterKeys, cluster: &ClusterConfig) -> Result<()> {
    let key = keys.bootstrap_servers;
    let value = format!("{:?}", cluster.bootstrap_servers);
    let brokers = cluster.bootstrap();
    if brokers.is_empty() {
        return Err(Error::invalid(
            key,
            value,
            "is empty",
            format!("list at least one broker as host:port, separated by commas, {EXAMPLE_BOOTSTRAP}"),
        ));
    }
    for broker in &brokers {
        if let Err(problem) = check_host_port(broker) {
            return Err(Error::invalid(
                key,
                value,
                format!("has an invalid entry {broker:?} ({problem})"),
                format!("list brokers as host:port, separated by commas, {EXAMPLE_BOOTSTRAP}"),
            ));
        }
    }
    if cluster.client_id.trim().is_empty() {
        return Err(Error::invalid(
            keys.client_id,
            format!("{:?}", cluster.client_id),
            "is empty",
            "name this process to the brokers, e.g. \"strait\"",
        ));
    }
    let timeout = cluster.request_timeout_ms;
    if timeout == 0 || timeout > WIRE_MAX {
        return Err(Error::invalid(
            keys.request_timeout_ms,
            timeout,
            "is out of range",
            format!("use a timeout from 1 to {WIRE_MAX} milliseconds, e.g. 30000"),
        ));
    }
    if !(1..=16).contains(&cluster.connections_per_broker) {
        return Err(Error::invalid(
            keys.connections_per_broker,
            cluster.connections_per_broker,
            "is out of range",
            "use from 1 to 16 connections, e.g. 4",
        ));
    }
    Ok(())
}

/// Checks one `host:port` entry; `Err` says what is wrong with it.
fn check_host_port(entry: &str) -> Result<(), &'static str> {
    if entry.contains("://") {
        return Err("drop the scheme: strait wants host:port, not a URL");
    }
    let Some((host, port)) = entry.rsplit_once(':') else {
        return Err("no port: add one, e.g. :9092");
    };
    if host.is_empty() {
        return Err("empty host");
    }
    let bracketed = host.starts_with('[') && host.ends_with(']');
    if host.contains(':') && !bracketed {
        return Err("an IPv6 host needs brackets, e.g. [::1]:9092");
    }
    let plain_host = |h: &str| {
        h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    if !bracketed && !plain_host(host) {
        return Err("the host has characters a hostname cannot have");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err("the port is not a number from 1 to 65535"),
    }
}

/// On one cluster, replicated copies must not be replicated again: with no prefix every topic
/// would be copied onto itself, with a prefix `t` → `p.t` → `p.p.t` … unless `p.*` is excluded.
fn check_not_self_replicating(config: &Config) -> Result<()> {
    let normalized = |c: &ClusterConfig| {
        let mut brokers: Vec<String> = c.bootstrap().iter().map(|b| b.to_ascii_lowercase()).collect();
        brokers.sort();
        brokers
    };
    if normalized(&config.source) != normalized(&config.target) {
        return Ok(());
    }
    let prefix = &config.topics.prefix;
    let value = format!("{:?}", config.target.bootstrap_servers);
    if prefix.is_empty() {
        return Err(Error::invalid(
            "target.bootstrap_servers",
            value,
            "is the same cluster as source.bootstrap_servers while topics.prefix is empty",
            "point target at another cluster, or set topics.prefix so topics are not replicated \
             onto themselves",
        ));
    }
    // A probe name stands for any copy: if it is replicated, copies are copied again.
    let filter = config.topic_filter()?;
    let probe = filter.target_name("x");
    if filter.matches(&probe) {
        return Err(Error::invalid(
            "target.bootstrap_servers",
            value,
            format!(
                "is the same cluster as source.bootstrap_servers and topics.include also matches \
                 the copies (e.g. {probe:?})"
            ),
            format!(
                "add \"{}.*\" to topics.exclude, or point target at another cluster",
                regex::escape(prefix)
            ),
        ));
    }
    Ok(())
}

fn check_groups(config: &Config) -> Result<()> {
    let groups = &config.groups;
    groups.filter()?;
    if groups.interval_secs == 0 {
        return Err(Error::invalid(
            "groups.interval_secs",
            0,
            "is out of range",
            "use at least 1 second, e.g. 30",
        ));
    }
    if groups.offset_map_max_runs == 0 {
        return Err(Error::invalid(
            "groups.offset_map_max_runs",
            0,
            "is out of range: no committed offset could be translated",
            "use at least 1, e.g. 1000",
        ));
    }
    Ok(())
}

fn check_topics(config: &Config) -> Result<()> {
    let topics = &config.topics;
    if topics.include.is_empty() {
        return Err(Error::invalid(
            "topics.include",
            "[]",
            "is empty, so nothing would be replicated",
            "list at least one regex, e.g. \".*\" for every topic",
        ));
    }
    let filter = config.topic_filter()?;
    if topics.refresh_secs == 0 {
        return Err(Error::invalid(
            "topics.refresh_secs",
            0,
            "is out of range",
            "use at least 1 second, e.g. 30",
        ));
    }
    if topics.replication_factor == 0 || topics.replication_factor < -1 {
        return Err(Error::invalid(
            "topics.replication_factor",
            topics.replication_factor,
            "is out of range",
            "use -1 for the target broker's default.replication.factor, or 1 or more, e.g. 3",
        ));
    }
    let prefix = &topics.prefix;
    let bad = invalid_topic_chars(prefix);
    if !bad.is_empty() {
        return Err(Error::invalid(
            "topics.prefix",
            format!("{prefix:?}"),
            format!("contains {bad:?}, which Kafka does not allow in topic names"),
            "use only ASCII letters, digits, '.', '_' and '-'",
        ));
    }
    if prefix.len() >= MAX_TOPIC_LEN {
        return Err(Error::invalid(
            "topics.prefix",
            format!("{prefix:?}"),
            format!(
                "is {} characters long, leaving no room for the source name within Kafka's \
                 {MAX_TOPIC_LEN}-character limit",
                prefix.len()
            ),
            "use a short prefix, e.g. \"dr.\"",
        ));
    }
    let checkpoint = &config.checkpoint.topic;
    if let Some(source) = checkpoint.strip_prefix(prefix.as_str()) {
        if !source.is_empty() && filter.matches(source) {
            return Err(Error::invalid(
                "topics.prefix",
                format!("{prefix:?}"),
                format!(
                    "would replicate source topic {source:?} into the checkpoint topic \
                     {checkpoint:?}"
                ),
                format!(
                    "change topics.prefix or checkpoint.topic, or add \"{}\" to topics.exclude",
                    regex::escape(source)
                ),
            ));
        }
    }
    Ok(())
}

fn check_batch_and_fetch(config: &Config) -> Result<()> {
    let batch_max = config.batch.max_bytes;
    if !(KIB..=64 * MIB).contains(&batch_max) {
        return Err(Error::invalid(
            "batch.max_bytes",
            batch_max,
            "is out of range",
            format!("use from {KIB} (1 KiB) to {} (64 MiB), e.g. 1048576", 64 * MIB),
        ));
    }
    if config.batch.buffer_max_bytes < batch_max {
        return Err(Error::invalid(
            "batch.buffer_max_bytes",
            config.batch.buffer_max_bytes,
            "cannot hold one batch of batch.max_bytes",
            format!(
                "use at least batch.max_bytes ({batch_max}); {}",
                if batch_max <= 32 * MIB {
                    "the default, 33554432 (32 MiB), suits 5,000 partitions"
                } else {
                    "several times it, so that partitions share the batch memory"
                }
            ),
        ));
    }
    if config.batch.linger_ms > MAX_WAIT_MS {
        return Err(Error::invalid(
            "batch.linger_ms",
            config.batch.linger_ms,
            "is out of range",
            format!("use from 0 to {MAX_WAIT_MS} milliseconds, e.g. 100"),
        ));
    }
    let fetch_max = config.fetch.max_bytes;
    if !(KIB..=1024 * MIB).contains(&fetch_max) {
        return Err(Error::invalid(
            "fetch.max_bytes",
            fetch_max,
            "is out of range",
            format!("use from {KIB} (1 KiB) to {} (1 GiB), e.g. 1048576", 1024 * MIB),
        ));
    }
    let buffer = config.fetch.buffer_max_bytes;
    if buffer < MIB {
        return Err(Error::invalid(
            "fetch.buffer_max_bytes",
            buffer,
            "is below 1 MiB",
            "use at least 1048576; the default, 33554432 (32 MiB), suits 5,000 partitions",
        ));
    }
    if config.fetch.max_wait_ms > MAX_WAIT_MS {
        return Err(Error::invalid(
            "fetch.max_wait_ms",
            config.fetch.max_wait_ms,
            "is out of range",
            format!("use from 0 to {MAX_WAIT_MS} milliseconds, e.g. 50"),
        ));
    }
    Ok(())
}

fn check_budget(config: &Config) -> Result<()> {
    let c = &config.compression;
    for (key, level, auto) in [
        ("compression.min_level", c.min_level, false),
        ("compression.max_level", c.max_level, true),
    ] {
        let valid = (1..=22).contains(&level) || (auto && level == 0);
        if !valid {
            return Err(Error::invalid(
                key,
                level,
                "is out of range",
                if auto {
                    "use a zstd level from 1 to 22, or 0 for the highest the CPU sustains"
                } else {
                    "use a zstd level from 1 to 22"
                },
            ));
        }
    }
    if c.max_level != 0 && c.min_level > c.max_level {
        return Err(Error::invalid(
            "compression.min_level",
            c.min_level,
            format!("is above compression.max_level = {}", c.max_level),
            "make min_level at most max_level",
        ));
    }
    // budget.weights were parsed as they were read.
    Ok(())
}

fn check_zstd_level(level: i32) -> Result<()> {
    if !(1..=22).contains(&level) {
        let problem = if level <= 0 {
            "is out of range (zstd's 0 and negative \"fast\" levels are not supported)"
        } else {
            "is out of range"
        };
        return Err(Error::invalid(
            "compression.zstd_level",
            level,
            problem,
            "use a level from 1 (fastest) to 22 (smallest)",
        ));
    }
    Ok(())
}

fn check_topic_name(key: &'static str, name: &str) -> Result<()> {
    let value = format!("{name:?}");
    let bad = invalid_topic_chars(name);
    let problem = if name.is_empty() {
        "is empty".to_owned()
    } else if name == "." || name == ".." {
        "is not a topic name Kafka accepts".to_owned()
    } else if !bad.is_empty() {
        format!("contains {bad:?}, which Kafka does not allow in topic names")
    } else if name.len() > MAX_TOPIC_LEN {
        format!("is longer than Kafka's {MAX_TOPIC_LEN}-character limit")
    } else {
        return Ok(());
    };
    Err(Error::invalid(
        key,
        value,
        problem,
        "use up to 249 ASCII letters, digits, '.', '_' and '-', e.g. \"strait-checkpoints\"",
    ))
}

fn check_shard(config: &Config) -> Result<()> {
    let shard = &config.shard;
    if shard.count == 0 {
        return Err(Error::invalid(
            "shard.count",
            0,
            "is out of range",
            "use the number of strait processes sharing this replication, at least 1",
        ));
    }
    if shard.index >= shard.count {
        return Err(Error::invalid(
            "shard.index",
            shard.index,
            format!("is not below shard.count = {}", shard.count),
            format!(
                "use an index from 0 to {} and give each process a distinct one, or raise \
                 shard.count",
                shard.count - 1
            ),
        ));
    }
    Ok(())
}

/// Parses `listen` or explains how to fix it.
pub(super) fn parse_listen(listen: &str) -> Result<SocketAddr> {
    listen.parse().map_err(|_| {
        Error::invalid(
            "http.listen",
            format!("{listen:?}"),
            "is not a socket address",
            "use ip:port, e.g. \"0.0.0.0:9090\" or \"[::]:9090\" (host names are not resolved)",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults with both clusters named: the smallest valid config.
    fn configured() -> Config {
        let mut c = Config::default();
        c.source.bootstrap_servers = "127.0.0.1:9092".into();
        c.target.bootstrap_servers = "127.0.0.1:9093".into();
        c
    }

    #[test]
    fn defaults_with_both_clusters_named_are_valid() {
        configured().validate().expect("defaults validate");
    }

    #[test]
    fn missing_bootstrap_servers_name_every_missing_side_and_its_variable() {
        let err = Config::default().validate().expect_err("no brokers named");
        assert_eq!(err.exit_code(), 64);
        let msg = err.to_string();
        for needle in [
            "source.bootstrap_servers and target.bootstrap_servers not set",
            "STRAIT_SOURCE__BOOTSTRAP_SERVERS and STRAIT_TARGET__BOOTSTRAP_SERVERS",
        ] {
            assert!(msg.contains(needle), "lacks {needle:?}: {msg}");
        }
        let mut only_target_missing = configured();
        only_target_missing.target.bootstrap_servers = " ".into();
        let msg = only_target_missing.validate().expect_err("no target").to_string();
        assert!(msg.starts_with("target.bootstrap_servers not set"), "{msg}");
        assert!(
            msg.contains("STRAIT_TARGET__BOOTSTRAP_SERVERS") && !msg.contains("SOURCE"),
            "{msg}"
        );
    }

    #[test]
    fn host_port_table() {
        let ok = [
            "broker:9092",
            "10.0.0.1:9092",
            "[::1]:9092",
            "b-1.kafka.eu-west-1.amazonaws.com:9098",
        ];
        for entry in ok {
            assert_eq!(check_host_port(entry), Ok(()), "{entry}");
        }
        let bad = [
            ("broker", "no port"),
            (":9092", "empty host"),
            ("broker:abc", "port"),
            ("broker:0", "port"),
            ("broker:70000", "port"),
            ("::1:9092", "brackets"),
            ("PLAINTEXT://broker:9092", "scheme"),
            ("bro ker:9092", "host"),
        ];
        for (entry, fragment) in bad {
            let problem = check_host_port(entry).expect_err(entry);
            assert!(problem.contains(fragment), "{entry}: {problem}");
        }
    }

    #[test]
    fn bootstrap_trims_and_drops_empty_entries() {
        let c = ClusterConfig {
            bootstrap_servers: " a:1, ,b:2,".into(),
            ..ClusterConfig::default()
        };
        assert_eq!(c.bootstrap(), ["a:1", "b:2"]);
    }

    /// Each broken config must name its key, its env var and a fix.
    #[test]
    fn every_rule_names_key_env_var_and_fix() {
        type Mutate = fn(&mut Config);
        let table: &[(Mutate, &str, &str)] = &[
            (
                |c| c.source.bootstrap_servers = " , ".into(),
                "source.bootstrap_servers",
                "at least one broker",
            ),
            (
                |c| c.source.bootstrap_servers = "kafka:abc".into(),
                "source.bootstrap_servers",
                "host:port",
            ),
            (
                |c| c.target.bootstrap_servers = "kafka".into(),
                "target.bootstrap_servers",
                "host:port",
            ),
            (
                |c| c.target.client_id = "".into(),
                "target.client_id",
                "name this process",
            ),
            (
                |c| c.source.request_timeout_ms = 0,
                "source.request_timeout_ms",
                "use a timeout",
            ),
            (
                |c| c.target.connections_per_broker = 0,
                "target.connections_per_broker",
                "from 1 to 16",
            ),
            (
                |c| c.source.connections_per_broker = 17,
                "source.connections_per_broker",
                "from 1 to 16",
            ),
            (
                |c| c.target.bootstrap_servers = c.source.bootstrap_servers.clone(),
                "target.bootstrap_servers",
                "set topics.prefix",
            ),
            (|c| c.topics.include = vec![], "topics.include", "at least one regex"),
            (
                |c| c.topics.include = vec!["(".into()],
                "topics.include",
                "fix or remove it",
            ),
            (
                |c| c.topics.refresh_secs = 0,
                "topics.refresh_secs",
                "at least 1 second",
            ),
            (
                |c| c.topics.prefix = "dr/".into(),
                "topics.prefix",
                "only ASCII letters",
            ),
            (|c| c.topics.prefix = "p".repeat(249), "topics.prefix", "short prefix"),
            (
                |c| c.topics.prefix = "strait-".into(),
                "topics.prefix",
                "checkpoint.topic",
            ),
            (|c| c.batch.max_bytes = 1023, "batch.max_bytes", "1 KiB"),
            (|c| c.batch.max_bytes = 64 * MIB + 1, "batch.max_bytes", "64 MiB"),
            (|c| c.batch.linger_ms = 60_001, "batch.linger_ms", "0 to 60000"),
            (
                |c| c.batch.buffer_max_bytes = c.batch.max_bytes - 1,
                "batch.buffer_max_bytes",
                "the default, 33554432 (32 MiB), suits",
            ),
            // Batches above the default bound: the hint does not offer the default.
            (
                |c| c.batch.max_bytes = 40 * MIB,
                "batch.buffer_max_bytes",
                "use at least batch.max_bytes (41943040); several times it",
            ),
            (|c| c.fetch.max_bytes = 0, "fetch.max_bytes", "1 KiB"),
            (|c| c.fetch.max_wait_ms = 60_001, "fetch.max_wait_ms", "0 to 60000"),
            (
                |c| c.compression.zstd_level = 0,
                "compression.zstd_level",
                "from 1 (fastest) to 22",
            ),
            (
                |c| c.compression.zstd_level = -5,
                "compression.zstd_level",
                "from 1 (fastest) to 22",
            ),
            (
                |c| c.compression.zstd_level = 23,
                "compression.zstd_level",
                "from 1 (fastest) to 22",
            ),
            (
                |c| c.compression.max_level = -1,
                "compression.max_level",
                "or 0 for the highest the CPU sustains",
            ),
            (|c| c.compression.min_level = 0, "compression.min_level", "from 1 to 22"),
            (
                |c| {
                    c.compression.min_level = 9;
                    c.compression.max_level = 5
                },
                "compression.min_level",
                "at most max_level",
            ),
            (|c| c.http.listen = "localhost:9090".into(), "http.listen", "ip:port"),
            (
                |c| c.checkpoint.topic = "".into(),
                "checkpoint.topic",
                "e.g. \"strait-checkpoints\"",
            ),
            (
                |c| c.checkpoint.topic = "cp topic".into(),
                "checkpoint.topic",
                "ASCII letters",
            ),
            (
                |c| c.alerts.retention_headroom_secs = MAX_RETENTION_HEADROOM_SECS + 1,
                "alerts.retention_headroom_secs",
                "use 0 to disable",
            ),
            (|c| c.shard.count = 0, "shard.count", "at least 1"),
            (
                |c| {
                    c.shard.count = 2;
                    c.shard.index = 2
                },
                "shard.index",
                "give each process a distinct one",
            ),
        ];
        for (mutate, key, fix) in table {
            let mut config = configured();
            mutate(&mut config);
            let err = config.validate().expect_err(key);
            let msg = err.to_string();
            let env = super::super::env_var_for(key);
            assert!(msg.starts_with(key), "{key}: {msg}");
            assert!(msg.contains(&env), "{key}: {msg} lacks {env}");
            assert!(msg.contains(fix), "{key}: {msg} lacks {fix:?}");
            assert_eq!(err.exit_code(), 64);
        }
    }

    #[test]
    fn max_level_zero_is_the_measured_ceiling() {
        let mut config = configured();
        assert_eq!(config.compression.max_level, 0);
        config.validate().expect("max_level 0 is valid");
        assert_eq!(config.compression.bounds(), (1, crate::config::AUTO_MAX_LEVEL));
        // With the measured ceiling, a min_level above 19 is still a valid pair.
        config.compression.min_level = 21;
        config.compression.zstd_level = 21;
        config.validate().expect("min_level 21 with max_level 0");
        assert_eq!(config.compression.bounds(), (21, 21));
        // An explicit ceiling is kept, widened to the start level.
        config.compression.min_level = 1;
        config.compression.max_level = 9;
        config.compression.zstd_level = 12;
        assert_eq!(config.compression.bounds(), (1, 12));
    }

    #[test]
    fn zstd_message_is_exact() {
        let mut config = configured();
        config.compression.zstd_level = 0;
        assert_eq!(
            config.validate().expect_err("level 0").to_string(),
            "compression.zstd_level = 0 is out of range (zstd's 0 and negative \"fast\" levels are \
             not supported): use a level from 1 (fastest) to 22 (smallest); set \
             STRAIT_COMPRESSION__ZSTD_LEVEL or compression.zstd_level in the TOML file"
        );
    }

    #[test]
    fn prefix_collision_only_when_the_source_name_is_replicated() {
        let mut config = configured();
        config.topics.prefix = "strait-".into();
        config.topics.exclude = vec!["checkpoints".into()];
        config.validate().expect("the colliding source topic is excluded");
        config.topics.exclude.clear();
        let msg = config.validate().expect_err("collision").to_string();
        assert!(msg.contains(r#"source topic "checkpoints""#), "{msg}");
    }

    #[test]
    fn same_cluster_needs_a_prefix_and_excluded_copies() {
        let mut config = configured();
        config.target.bootstrap_servers = " 127.0.0.1:9092 ".into();
        config.topics.prefix = "copy.".into();
        let msg = config.validate().expect_err("copies of copies").to_string();
        assert!(msg.contains(r#"add "copy\..*" to topics.exclude"#), "{msg}");
        config.topics.exclude = vec![r"copy\..*".into()];
        config.validate().expect("prefixed copies are excluded");
    }
}
