//! The `STRAIT_*` environment layer, and the list of known keys it is checked against.
//!
//! `STRAIT_SOURCE__BOOTSTRAP_SERVERS` sets `source.bootstrap_servers`: strip the prefix,
//! lowercase, and `__` separates levels, as figment's `Env::prefixed("STRAIT_").split("__")`
//! does. This is a figment provider of its own rather than `Env` for three reasons:
//!
//! - it reads the pairs it is handed, so tests never touch the process environment;
//! - it types each value by its key: `STRAIT_SOURCE__CLIENT_ID=123` stays the string `"123"` and
//!   `STRAIT_TOPICS__INCLUDE=[a-z]+` stays a regex, where `Env` would guess an integer or an array;
//! - it reports unknown `STRAIT_*` variables, with the closest known name, instead of dropping them.
//!
//! `STRAIT_<KEY>_FILE=/path` sets `<KEY>` to the file's contents (one trailing newline removed),
//! for secrets mounted as files. The known keys are the leaves of `Config::default()` serialized,
//! so this list cannot drift from the structs. This module must not read `std::env` itself.

use std::path::PathBuf;

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

use super::error::closest;
use super::{Config, Error, Result};

/// Prefix of every variable strait reads.
pub const ENV_PREFIX: &str = "STRAIT_";

/// Variables that share the prefix but are read by `main`, not by this layer.
pub const RESERVED_ENV_VARS: &[&str] = &["STRAIT_CONFIG", "STRAIT_LOG", "STRAIT_LOG_FORMAT"];

/// Suffix that makes a variable name a file holding the value.
const FILE_SUFFIX: &str = "_file";

/// Metadata name of the env layer; [`Error`] uses it to tell which layer a bad value came from.
pub(super) const PROVIDER_NAME: &str = "STRAIT_* environment variables";

/// The environment variable that sets dotted `key`: `batch.max_bytes` → `STRAIT_BATCH__MAX_BYTES`.
pub fn env_var_for(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase().replace('.', "__"))
}

/// Every configuration key, dotted (`source.bootstrap_servers`), in sorted order.
pub fn known_keys() -> Vec<String> {
    let mut keys: Vec<String> = leaves().into_iter().map(|(key, _)| key).collect();
    keys.sort();
    keys
}

/// How an env string becomes a value for a given key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeafKind {
    /// Kept verbatim: strings, enums, and lists (their deserializer splits the string).
    Text,
    /// Parsed the way figment parses env values, so `abc` fails with figment's type error.
    Scalar,
}

/// `(dotted key, kind)` for every leaf of the default config.
fn leaves() -> Vec<(String, LeafKind)> {
    fn walk(prefix: &str, dict: &Dict, out: &mut Vec<(String, LeafKind)>) {
        for (name, value) in dict {
            let key = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            match value {
                Value::Dict(_, child) => walk(&key, child, out),
                Value::Num(..) | Value::Bool(..) => out.push((key, LeafKind::Scalar)),
                _ => out.push((key, LeafKind::Text)),
            }
        }
    }
    let root = Value::serialize(Config::default())
        .expect("Config::default() serializes: it holds only strings, numbers and lists");
    let mut out = Vec::new();
    if let Value::Dict(_, dict) = root {
        walk("", &dict, &mut out);
    }
    out
}

/// The env layer: the `STRAIT_*` pairs that name known keys, as a nested figment dict.
#[derive(Debug)]
pub(super) struct EnvLayer {
    dict: Dict,
}

impl EnvLayer {
    /// Builds the layer from `(name, value)` pairs and returns a warning per unknown variable.
    pub(super) fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Result<(Self, Vec<String>)> {
        let leaves = leaves();
        let kind_of = |key: &str| leaves.iter().find(|(k, _)| k == key).map(|(_, kind)| *kind);
        let mut dict = Dict::new();
        let mut direct = Vec::new();
        let mut from_files: Vec<(String, String)> = Vec::new();
        let mut warnings = Vec::new();

        for (name, raw) in pairs {
            let upper = name.to_ascii_uppercase();
            let Some(rest) = upper.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if RESERVED_ENV_VARS.contains(&upper.as_str()) {
                continue;
            }
            let key = rest.to_ascii_lowercase().replace("__", ".");
            let (key, kind, raw) = if let Some(kind) = kind_of(&key) {
                direct.push((key.clone(), name));
                (key, kind, raw)
            } else if let Some((stem, kind)) = key
                .strip_suffix(FILE_SUFFIX)
                .and_then(|stem| Some((stem, kind_of(stem)?)))
            {
                let path = PathBuf::from(&raw);
                let contents = std::fs::read_to_string(&path).map_err(|source| Error::ValueFile {
                    var: name.clone(),
                    key: stem.to_owned(),
                    path,
                    source,
                })?;
                let value = contents.strip_suffix('\n').unwrap_or(&contents);
                let value = value.strip_suffix('\r').unwrap_or(value).to_owned();
                from_files.push((stem.to_owned(), name));
                (stem.to_owned(), kind, value)
            } else {
                warnings.push(unknown_var_warning(&name));
                continue;
            };
            merge(&mut dict, figment::util::nest(&key, typed(kind, raw)));
        }

        if let Some((file_var, var)) = from_files
            .iter()
            .find_map(|(key, file_var)| direct.iter().find(|(k, _)| k == key).map(|(_, var)| (file_var, var)))
        {
            return Err(Error::EnvConflict {
                var: var.clone(),
                file_var: file_var.clone(),
            });
        }
        warnings.sort();
        Ok((EnvLayer { dict }, warnings))
    }
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named(PROVIDER_NAME).interpolater(|_: &Profile, keys: &[&str]| env_var_for(&keys.join(".")))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

fn typed(kind: LeafKind, raw: String) -> Value {
    match kind {
        LeafKind::Text => Value::from(raw),
        LeafKind::Scalar => match raw.trim().parse::<Value>() {
            Ok(value) => value,
            Err(never) => match never {},
        },
    }
}

/// Deep-merges `from` (a nested dict value) into `into`; later values win.
fn merge(into: &mut Dict, from: Value) {
    let Value::Dict(_, from) = from else { return };
    for (name, value) in from {
        let merged = match (into.remove(&name), value) {
            (Some(Value::Dict(tag, mut existing)), value @ Value::Dict(..)) => {
                merge(&mut existing, value);
                Value::Dict(tag, existing)
            }
            (_, value) => value,
        };
        into.insert(name, merged);
    }
}

/// `unknown variable STRAIT_X; did you mean STRAIT_Y?`, or a pointer to the reference file.
fn unknown_var_warning(name: &str) -> String {
    match suggest(name) {
        Some(best) => format!("unknown variable {name}; did you mean {best}?"),
        None => format!("unknown variable {name} is ignored; config/strait.toml lists every STRAIT_* variable"),
    }
}

/// The known variable `name` most plausibly meant: a typo of one (Jaro-Winkler), or the right leaf
/// in the wrong section (`STRAIT_ZSTD_LEVEL` → `STRAIT_COMPRESSION__ZSTD_LEVEL`).
fn suggest(name: &str) -> Option<String> {
    let upper = name.to_ascii_uppercase();
    let given = upper.strip_prefix(ENV_PREFIX)?;
    // Compare without the shared prefix, which would otherwise make every name look close.
    let known: Vec<String> = known_keys()
        .iter()
        .map(|k| env_var_for(k))
        .chain(RESERVED_ENV_VARS.iter().map(|v| (*v).to_owned()))
        .map(|v| v[ENV_PREFIX.len()..].to_owned())
        .collect();
    if let Some(best) = closest(given, known.iter().map(String::as_str)) {
        return Some(format!("{ENV_PREFIX}{best}"));
    }
    let leaf = given.rsplit("__").next().unwrap_or(given);
    let same_leaf: Vec<String> = known
        .iter()
        .filter(|k| k.rsplit("__").next() == Some(leaf))
        .map(|k| format!("{ENV_PREFIX}{k}"))
        .collect();
    (!same_leaf.is_empty()).then(|| same_leaf.join(" or "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operator interface: renaming any of these is a breaking change.
    const SPEC_KEYS: &[&str] = &[
        "alerts.retention_headroom_secs",
        "batch.buffer_max_bytes",
        "batch.linger_ms",
        "batch.max_bytes",
        "budget.burst_bytes",
        "budget.bytes_per_sec",
        "budget.per_shard",
        "budget.weights",
        "catchup.fresh_after_secs",
        "catchup.mode",
        "checkpoint.interval_ms",
        "checkpoint.source_group",
        "checkpoint.topic",
        "compression.codec",
        "compression.max_level",
        "compression.min_level",
        "compression.zstd_level",
        "fetch.buffer_max_bytes",
        "fetch.max_bytes",
        "fetch.max_wait_ms",
        "groups.allow_rewind",
        "groups.exclude",
        "groups.include",
        "groups.interval_secs",
        "groups.offset_map_max_runs",
        "heartbeats.enabled",
        "heartbeats.interval_ms",
        "heartbeats.topic",
        "http.listen",
        "on_foreign_writer",
        "on_missing_checkpoint",
        "on_target_reset",
        "on_topic_recreated",
        "replication.id",
        "shard.count",
        "shard.index",
        "shard.orphan_after_secs",
        "shutdown_grace_secs",
        "source.allow_plaintext_credentials",
        "source.bootstrap_servers",
        "source.client_id",
        "source.connections_per_broker",
        "source.request_timeout_ms",
        "source.sasl.aws_region",
        "source.sasl.mechanism",
        "source.sasl.oauth_ca_file",
        "source.sasl.oauth_client_id",
        "source.sasl.oauth_client_secret",
        "source.sasl.oauth_client_secret_file",
        "source.sasl.oauth_scope",
        "source.sasl.oauth_token_endpoint_url",
        "source.sasl.password",
        "source.sasl.password_file",
        "source.sasl.username",
        "source.tls.ca_file",
        "source.tls.cert_file",
        "source.tls.enabled",
        "source.tls.key_file",
        "source.tls.server_name",
        "start_from",
        "target.allow_plaintext_credentials",
        "target.bootstrap_servers",
        "target.client_id",
        "target.connections_per_broker",
        "target.request_timeout_ms",
        "target.sasl.aws_region",
        "target.sasl.mechanism",
        "target.sasl.oauth_ca_file",
        "target.sasl.oauth_client_id",
        "target.sasl.oauth_client_secret",
        "target.sasl.oauth_client_secret_file",
        "target.sasl.oauth_scope",
        "target.sasl.oauth_token_endpoint_url",
        "target.sasl.password",
        "target.sasl.password_file",
        "target.sasl.username",
        "target.tls.ca_file",
        "target.tls.cert_file",
        "target.tls.enabled",
        "target.tls.key_file",
        "target.tls.server_name",
        "topics.exclude",
        "topics.include",
        "topics.prefix",
        "topics.refresh_secs",
        "topics.replication_factor",
        "topics.target_configs",
        "verify.interval_secs",
    ];

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn known_keys_are_exactly_the_operator_interface() {
        assert_eq!(known_keys(), SPEC_KEYS);
    }

    #[test]
    fn env_var_names() {
        assert_eq!(
            env_var_for("source.bootstrap_servers"),
            "STRAIT_SOURCE__BOOTSTRAP_SERVERS"
        );
        assert_eq!(env_var_for("start_from"), "STRAIT_START_FROM");
    }

    #[test]
    fn suggestions() {
        let table = [
            (
                "STRAIT_SOURCE__BOOTSTRAP_SERVER",
                Some("STRAIT_SOURCE__BOOTSTRAP_SERVERS"),
            ),
            (
                "STRAIT_SOURCE_BOOTSTRAP_SERVERS",
                Some("STRAIT_SOURCE__BOOTSTRAP_SERVERS"),
            ),
            ("STRAIT_TOPIC__INCLUDE", Some("STRAIT_TOPICS__INCLUDE")),
            ("STRAIT_BATCH__LINGER", Some("STRAIT_BATCH__LINGER_MS")),
            ("STRAIT_LOGS", Some("STRAIT_LOG")),
            ("STRAIT_ZSTD_LEVEL", Some("STRAIT_COMPRESSION__ZSTD_LEVEL")),
            ("STRAIT_NOTHING_LIKE_IT", None),
        ];
        for (name, want) in table {
            assert_eq!(suggest(name).as_deref(), want, "{name}");
        }
    }

    #[test]
    fn unknown_vars_warn_and_reserved_or_foreign_vars_do_not() {
        let (layer, warnings) = EnvLayer::from_pairs(pairs(&[
            ("STRAIT_SOURCE__BOOTSTRAP_SERVER", "x:1"),
            ("STRAIT_CONFIG", "/etc/strait.toml"),
            ("STRAIT_LOG", "debug"),
            ("STRAIT_LOG_FORMAT", "json"),
            ("PATH", "/bin"),
        ]))
        .expect("no file variables");
        assert_eq!(
            warnings,
            ["unknown variable STRAIT_SOURCE__BOOTSTRAP_SERVER; did you mean \
              STRAIT_SOURCE__BOOTSTRAP_SERVERS?"]
        );
        assert!(layer.dict.is_empty());
    }

    #[test]
    fn values_are_typed_by_key() {
        let (layer, _) = EnvLayer::from_pairs(pairs(&[
            ("STRAIT_SOURCE__CLIENT_ID", "123"),
            ("STRAIT_TOPICS__INCLUDE", "[a-z]+"),
            ("STRAIT_BATCH__LINGER_MS", " 5 "),
        ]))
        .expect("no file variables");
        let find = |path: &str| Value::from(layer.dict.clone()).find(path);
        assert_eq!(
            find("source.client_id").and_then(|v| v.into_string()).as_deref(),
            Some("123")
        );
        assert_eq!(
            find("topics.include").and_then(|v| v.into_string()).as_deref(),
            Some("[a-z]+")
        );
        assert_eq!(find("batch.linger_ms").and_then(|v| v.to_u128()), Some(5));
    }
}
