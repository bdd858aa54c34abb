//! `topics.*`: which source topics are replicated and what they are called on the target.
//!
//! Owns the pattern-list syntax (a TOML array, or one string of comma-separated regexes, which is
//! what `STRAIT_TOPICS__INCLUDE` carries), the compiled [`TopicFilter`] and Kafka's topic-name
//! rules. It must not talk to a cluster: discovery lives in `replicate`.

use std::fmt;
use std::time::Duration;

use regex::Regex;
use serde::de::{Deserializer, IntoDeserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::target_configs::TargetConfigRule;
use super::{Error, Result};

/// Longest topic name Kafka accepts.
pub(super) const MAX_TOPIC_LEN: usize = 249;

/// Kafka's own topics (`__consumer_offsets`, `__transaction_state`) start with this; they are
/// never replicated, whatever `topics.include` says.
pub const INTERNAL_TOPIC_PREFIX: &str = "__";

/// Which topics to replicate, and how to name them on the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    /// Regexes; a source topic is replicated if one of them matches its whole name.
    #[serde(deserialize_with = "patterns")]
    pub include: Vec<String>,
    /// Regexes; a topic matching one of them (whole name) is skipped even if included.
    #[serde(deserialize_with = "patterns")]
    pub exclude: Vec<String>,
    /// Prepended to every source topic name to form the target topic name.
    pub prefix: String,
    /// How often the source topic list is re-read to pick up new topics, in seconds (>= 1).
    pub refresh_secs: u64,
    /// Replicas of each partition of a target topic strait creates; -1 for the target
    /// broker's `default.replication.factor`.
    pub replication_factor: i16,
    /// `REGEX:CONFIG=VALUE` rules setting configs on the target topics strait creates, over the
    /// ones copied from the source; the regex matches whole target topic names. Every matching
    /// rule applies; for one config, the first matching rule wins. Existing topics are never
    /// altered. Parsed as they are read: a bad rule fails the load.
    #[serde(deserialize_with = "rules")]
    pub target_configs: Vec<TargetConfigRule>,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            include: vec![".*".to_owned()],
            exclude: Vec::new(),
            prefix: String::new(),
            refresh_secs: 30,
            replication_factor: -1,
            target_configs: Vec::new(),
        }
    }
}

impl TopicsConfig {
    /// Compiles the patterns, each anchored as `^(?:pattern)$`.
    ///
    /// The filter does not know the checkpoint topic; prefer `Config::topic_filter`, which also
    /// excludes it.
    pub fn filter(&self) -> Result<TopicFilter> {
        Ok(TopicFilter {
            include: compile("topics.include", &self.include)?,
            exclude: compile("topics.exclude", &self.exclude)?,
            excluded_names: Vec::new(),
            prefix: self.prefix.clone(),
        })
    }

    /// [`Self::refresh_secs`] as a duration.
    pub fn refresh_interval(&self) -> Duration {
        Duration::from_secs(self.refresh_secs)
    }
}

/// The compiled form of [`TopicsConfig`]: decides which source topics are replicated.
#[derive(Debug, Clone)]
pub struct TopicFilter {
    include: Vec<Regex>,
    exclude: Vec<Regex>,
    excluded_names: Vec<String>,
    prefix: String,
}

impl TopicFilter {
    /// True if `topic` is included, not excluded, not internal (`__*`) and not explicitly
    /// excluded with [`Self::excluding`].
    pub fn matches(&self, topic: &str) -> bool {
        !topic.starts_with(INTERNAL_TOPIC_PREFIX)
            && !self.excluded_names.iter().any(|name| name == topic)
            && self.include.iter().any(|re| re.is_match(topic))
            && !self.exclude.iter().any(|re| re.is_match(topic))
    }

    /// The target topic for `source_topic`: `topics.prefix` followed by the source name.
    pub fn target_name(&self, source_topic: &str) -> String {
        format!("{}{source_topic}", self.prefix)
    }

    /// Never match `topic`, e.g. strait's own checkpoint topic.
    pub fn excluding(mut self, topic: impl Into<String>) -> Self {
        self.excluded_names.push(topic.into());
        self
    }
}

pub(super) fn compile(key: &'static str, patterns: &[String]) -> Result<Vec<Regex>> {
    patterns
        .iter()
        .enumerate()
        .map(|(index, pattern)| {
            // Compile the pattern as written first, so the error points into the operator's
            // text and an unbalanced `)` cannot escape the anchoring group.
            Regex::new(pattern)
                .and_then(|_| Regex::new(&format!("^(?:{pattern})$")))
                .map_err(|source| Error::Regex {
                    key,
                    index,
                    pattern: pattern.clone(),
                    source,
                })
        })
        .collect()
}

/// The characters of `name` that Kafka rejects in a topic name (outside `[a-zA-Z0-9._-]`).
pub(super) fn invalid_topic_chars(name: &str) -> String {
    name.chars()
        .filter(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        .collect()
}

/// Splits `a,b{1,3},[x,y]` into `a`, `b{1,3}`, `[x,y]`: only commas outside `{}`, `[]`, `()`
/// separate, `\,` never does. Pieces are trimmed and empty ones dropped.
pub(super) fn split_patterns(list: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize; // open ( and {
    let mut class_depth = 0usize; // open [
    let mut since_open = 0usize; // chars since the last [, to spot a literal ] in []] or [^]]
    let mut prev = '\0';
    let mut chars = list.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                current.push(c);
                if let Some(escaped) = chars.next() {
                    current.push(escaped);
                }
                since_open += 2;
                prev = '\\';
                continue;
            }
            '[' => {
                class_depth += 1;
                current.push(c);
                since_open = 0;
                prev = c;
                continue;
            }
            ']' if class_depth > 0 && !(since_open == 0 || (since_open == 1 && prev == '^')) => {
                class_depth -= 1;
            }
            '(' | '{' if class_depth == 0 => depth += 1,
            ')' | '}' if class_depth == 0 => depth = depth.saturating_sub(1),
            ',' if class_depth == 0 && depth == 0 => {
                push_piece(&mut out, &current);
                current.clear();
                prev = c;
                continue;
            }
            _ => {}
        }
        current.push(c);
        since_open += 1;
        prev = c;
    }
    push_piece(&mut out, &current);
    out
}

fn push_piece(out: &mut Vec<String>, piece: &str) {
    let piece = piece.trim();
    if !piece.is_empty() {
        out.push(piece.to_owned());
    }
}

/// Accepts a list of strings, or one string of comma-separated patterns.
pub(super) fn patterns<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct Patterns;

    impl<'de> Visitor<'de> for Patterns {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of regexes, or one string of comma-separated regexes")
        }

        fn visit_str<E: serde::de::Error>(self, list: &str) -> Result<Self::Value, E> {
            Ok(split_patterns(list))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(pattern) = seq.next_element::<String>()? {
                out.push(pattern);
            }
            Ok(out)
        }
    }

    deserializer.deserialize_any(Patterns)
}

/// Accepts a list of rules, or one string of comma-separated rules (what `STRAIT_BUDGET__WEIGHTS`
/// and `STRAIT_TOPICS__TARGET_CONFIGS` carry), split the way topic patterns are, so a comma
/// inside a regex (`a{1,3}=2`) does not split it. Each rule is parsed by its own type.
pub(super) fn rules<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Rules<T>(std::marker::PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for Rules<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of rules, or one string of comma-separated rules")
        }

        fn visit_str<E: serde::de::Error>(self, list: &str) -> Result<Self::Value, E> {
            split_patterns(list)
                .iter()
                .map(|entry| T::deserialize(IntoDeserializer::<E>::into_deserializer(entry.as_str())))
                .collect()
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(rule) = seq.next_element::<T>()? {
                out.push(rule);
            }
            Ok(out)
        }
    }

    deserializer.deserialize_any(Rules(std::marker::PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_table() {
        let table: &[(&str, &[&str])] = &[
            ("", &[]),
            (" , ,", &[]),
            (".*", &[".*"]),
            ("a, b ,c", &["a", "b", "c"]),
            ("orders-.*,payments", &["orders-.*", "payments"]),
            ("a{1,3},b", &["a{1,3}", "b"]),
            ("[x,y]z,w", &["[x,y]z", "w"]),
            ("(a|b,c),d", &["(a|b,c)", "d"]),
            (r"a\,b,c", &[r"a\,b", "c"]),
            ("[],]x,y", &["[],]x", "y"]),
            ("[^],]x,y", &["[^],]x", "y"]),
            ("[(],x", &["[(]", "x"]),
        ];
        for (input, want) in table {
            assert_eq!(split_patterns(input), *want, "{input:?}");
        }
    }

    fn filter(include: &[&str], exclude: &[&str], prefix: &str) -> TopicFilter {
        TopicsConfig {
            include: include.iter().map(|s| (*s).to_owned()).collect(),
            exclude: exclude.iter().map(|s| (*s).to_owned()).collect(),
            prefix: prefix.to_owned(),
            ..TopicsConfig::default()
        }
        .filter()
        .expect("valid patterns")
    }

    #[test]
    fn patterns_match_whole_names() {
        let f = filter(&["orders", "pay.*"], &["pay-test"], "");
        assert!(f.matches("orders"));
        assert!(!f.matches("orders-eu"));
        assert!(!f.matches("old-orders"));
        assert!(f.matches("payments"));
        assert!(!f.matches("pay-test"));
    }

    #[test]
    fn alternation_is_anchored_as_a_whole() {
        let f = filter(&["a|b"], &[], "");
        assert!(f.matches("a") && f.matches("b"));
        assert!(!f.matches("ab") && !f.matches("xb"));
    }

    #[test]
    fn internal_and_excluded_names_never_match() {
        let f = filter(&[".*"], &[], "").excluding("strait-checkpoints");
        assert!(!f.matches("__consumer_offsets"));
        assert!(!f.matches("__transaction_state"));
        assert!(!f.matches("strait-checkpoints"));
        assert!(f.matches("anything"));
    }

    #[test]
    fn target_name_prepends_prefix() {
        assert_eq!(filter(&[".*"], &[], "dr.").target_name("orders"), "dr.orders");
        assert_eq!(filter(&[".*"], &[], "").target_name("orders"), "orders");
    }

    #[test]
    fn bad_regex_names_list_and_position() {
        let topics = TopicsConfig {
            exclude: vec!["ok".into(), "(unclosed".into()],
            ..TopicsConfig::default()
        };
        let err = topics.filter().expect_err("unclosed group");
        let msg = err.to_string();
        assert!(
            msg.starts_with(r#"topics.exclude[1] = "(unclosed" is not a valid regular expression"#),
            "{msg}"
        );
        assert!(msg.contains("STRAIT_TOPICS__EXCLUDE"), "{msg}");
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn invalid_chars() {
        assert_eq!(invalid_topic_chars("dr.orders_1-x"), "");
        assert_eq!(invalid_topic_chars("dr/ord ers"), "/ ");
    }
}
