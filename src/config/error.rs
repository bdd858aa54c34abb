//! The config module's one error type.
//!
//! Every message names the key, the bad value and the fix, because the operator reading it has
//! only the message and an env file open. All variants are usage errors: [`Error::exit_code`] is
//! 64 (`EX_USAGE`) for each of them.

use std::fmt;
use std::path::{Path, PathBuf};

use figment::error::{Kind, OneOf};

use super::env::{env_var_for, PROVIDER_NAME};

/// Result alias for the config module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `EX_USAGE` from sysexits(3): the command was used incorrectly.
const EX_USAGE: i32 = 64;

/// Everything that can go wrong while loading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file named by `--config` / `STRAIT_CONFIG` cannot be opened.
    #[error(
        "config file {} cannot be read: check the --config flag or STRAIT_CONFIG, or unset them \
         to run on defaults and STRAIT_* variables",
        path.display()
    )]
    ReadFile {
        /// The path as given.
        path: PathBuf,
        /// Why it could not be opened.
        #[source]
        source: std::io::Error,
    },

    /// The config file is not valid TOML.
    #[error("config file {} is not valid TOML: {message}; fix the syntax", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML parser's description of the problem.
        message: String,
    },

    /// A value has the wrong type or an unknown key was given (reported by figment).
    #[error("{key}: {} (from {origin}); {fix}", describe(kind))]
    Extract {
        /// Dotted key, e.g. `batch.max_bytes`.
        key: String,
        /// What figment found wrong, e.g. `invalid type: found string "abc", expected usize`.
        kind: Box<Kind>,
        /// Which layer supplied the value.
        origin: Origin,
        /// How to fix it.
        fix: String,
    },

    /// A `STRAIT_<KEY>_FILE` variable names a file that cannot be read.
    #[error(
        "{var} = {} cannot be read: point {var} at a readable file holding the value of {key}, \
         or set {} instead",
        path.display(),
        env_var_for(key)
    )]
    ValueFile {
        /// The `*_FILE` variable.
        var: String,
        /// The key it sets.
        key: String,
        /// The file it names.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },

    /// Both `STRAIT_<KEY>` and `STRAIT_<KEY>_FILE` are set.
    #[error("{var} and {file_var} are both set: unset one of them")]
    EnvConflict {
        /// The direct variable.
        var: String,
        /// The `*_FILE` variable.
        file_var: String,
    },

    /// No broker to bootstrap from on one side or both: there is no default, because a
    /// default of localhost would quietly point a pod at nothing.
    #[error(
        "{} not set: strait needs the brokers of both clusters; set {} (host:port, \
         comma-separated, e.g. \"broker-1:9092,broker-2:9092\"), or {} in the TOML file",
        keys.join(" and "),
        keys.iter().map(|k| env_var_for(k)).collect::<Vec<_>>().join(" and "),
        keys.join(" and ")
    )]
    MissingBootstrap {
        /// `source.bootstrap_servers`, `target.bootstrap_servers`, or both.
        keys: Vec<&'static str>,
    },

    /// A value is well-typed but breaks a rule checked by `Config::validate`.
    #[error(
        "{key} = {value} {problem}: {fix}; set {} or {key} in the TOML file",
        env_var_for(key)
    )]
    Invalid {
        /// Dotted key.
        key: &'static str,
        /// The offending value, rendered as the operator would write it.
        value: String,
        /// What is wrong, e.g. `is out of range`.
        problem: String,
        /// How to fix it.
        fix: String,
    },

    /// A topic pattern is not a valid regular expression.
    #[error(
        "{key}[{index}] = {pattern:?} is not a valid regular expression: fix or remove it \
         (each pattern must match a whole topic name); set {} or {key} in the TOML file",
        env_var_for(key)
    )]
    Regex {
        /// `topics.include` or `topics.exclude`.
        key: &'static str,
        /// Position of the pattern in the list.
        index: usize,
        /// The pattern as given.
        pattern: String,
        /// What the regex compiler said.
        #[source]
        source: regex::Error,
    },
}

impl Error {
    /// Process exit code for this error: 64 (`EX_USAGE`) for every config error.
    pub fn exit_code(&self) -> i32 {
        EX_USAGE
    }

    /// Builds an [`Error::Invalid`].
    pub(super) fn invalid(
        key: &'static str,
        value: impl fmt::Display,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Error::Invalid {
            key,
            value: value.to_string(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// Translates figment's error into one that names the key, the layer and the fix.
    ///
    /// Only the first error is kept: figment reports one per bad value and the first is enough to
    /// get the operator moving.
    pub(super) fn from_figment(error: figment::Error, file: Option<&Path>) -> Self {
        let error = error
            .into_iter()
            .next()
            .unwrap_or_else(|| Kind::Message(String::new()).into());
        let mut key = error.path.join(".");
        let origin = match error.metadata.as_ref() {
            Some(md) if md.name == PROVIDER_NAME => Origin::Env(env_var_for(&key)),
            Some(md) => match md.source.as_ref().and_then(|s| s.file_path()) {
                Some(path) => Origin::File(path.to_path_buf()),
                None => Origin::Default,
            },
            None => Origin::Default,
        };
        match error.kind {
            // The env layer only emits known keys, so unknown ones come from the file. The
            // struct's tag may still point at the defaults layer, hence no trust in `origin`.
            Kind::UnknownField(field, expected) => {
                let fix = match closest(&field, expected.iter().copied()) {
                    Some(best) => format!("did you mean `{best}`? rename or remove it"),
                    None => "remove it: see config/strait.toml for every key".to_owned(),
                };
                // figment's path already ends with the field; add it only if it does not.
                if error.path.last() != Some(&field) {
                    key = if key.is_empty() {
                        field.clone()
                    } else {
                        format!("{key}.{field}")
                    };
                }
                let origin = file.map_or(Origin::Default, |p| Origin::File(p.to_path_buf()));
                Error::Extract {
                    key,
                    kind: Box::new(Kind::UnknownField(field, expected)),
                    origin,
                    fix,
                }
            }
            Kind::Message(message) if key.is_empty() && file.is_some() => {
                let path = file.map(Path::to_path_buf).unwrap_or_default();
                Error::Parse {
                    message: syntax_error(&message, &path),
                    path,
                }
            }
            kind => {
                if key.is_empty() {
                    key = "(root)".to_owned();
                }
                let fix = match &origin {
                    Origin::Env(var) => format!("set {var} to a valid value or unset it"),
                    Origin::File(path) => format!("fix {key} in {}", path.display()),
                    Origin::Default => "this is a bug in strait's defaults: please report it".into(),
                };
                Error::Extract {
                    key,
                    kind: Box::new(kind),
                    origin,
                    fix,
                }
            }
        }
    }
}

/// The TOML parser's `message` without the source line it quotes, which may hold a secret
/// (`password = "...` with its closing quote missing), and with the dotted key written on that
/// line, so the operator still knows where to look.
///
/// The parser writes `TOML parse error at line L, column C`, then the line between `|` gutters
/// with a caret under the column, then what was wrong (keys and expected tokens only).
fn syntax_error(message: &str, file: &Path) -> String {
    let mut lines = message.lines();
    let Some(at) = lines.next().and_then(|l| l.trim().strip_prefix("TOML parse error at ")) else {
        return "the parser's message is not shown, as it may quote a secret; check the file with a TOML linter"
            .to_owned();
    };
    let what: Vec<&str> = lines
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l
                    .trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ')
                    .starts_with('|')
        })
        .collect();
    let line = at
        .strip_prefix("line ")
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.trim().parse::<usize>().ok());
    let key = line.and_then(|n| key_on_line(file, n));
    let place = match key {
        Some(key) => format!("{at} (key {key})"),
        None => at.to_owned(),
    };
    format!("{place}: {}", what.join(", "))
}

/// The dotted key assigned on 1-based line `n` of `file`, its table included: `[source.sasl]`
/// then `password = ...` is `source.sasl.password`. None when the line assigns no plain key.
fn key_on_line(file: &Path, n: usize) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let mut table = String::new();
    for (i, line) in text.lines().enumerate().take(n) {
        let line = line.trim();
        if i + 1 < n {
            if let Some(header) = line.strip_prefix('[').and_then(|h| h.split(']').next()) {
                table = header.trim_matches(['[', ' ']).to_owned();
            }
            continue;
        }
        let (key, _) = line.split_once('=')?;
        let key = key.trim();
        let plain = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        return match (plain, table.is_empty()) {
            (false, _) => None,
            (true, true) => Some(key.to_owned()),
            (true, false) => Some(format!("{table}.{key}")),
        };
    }
    None
}

/// figment's description of `kind`, without the doubled backticks it puts around lists.
fn describe(kind: &Kind) -> String {
    match kind {
        Kind::UnknownField(found, expected) => {
            format!("unknown field `{found}`, expected {}", OneOf(expected))
        }
        Kind::UnknownVariant(found, expected) => {
            format!("unknown variant `{found}`, expected {}", OneOf(expected))
        }
        other => other.to_string(),
    }
}

/// The layer a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Built-in defaults.
    Default,
    /// The TOML file at this path.
    File(PathBuf),
    /// This `STRAIT_*` variable.
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("built-in defaults"),
            Origin::File(path) => write!(f, "config file {}", path.display()),
            Origin::Env(var) => write!(f, "environment variable {var}"),
        }
    }
}

/// The candidate closest to `word`, if any is close enough to be a plausible typo.
pub(super) fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}
