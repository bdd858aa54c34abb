//! `topics.target_configs`: rules that set topic configs on the target topics strait creates,
//! over the ones copied from the source; parsed once as the config is read.
//!
//! A rule is `REGEX:CONFIG=VALUE`. The regex matches whole target topic names (after
//! `topics.prefix`, as `budget.weights` does); the rule's `:` is the first one followed by a
//! config name and `=`, so a regex may hold `:` (`(?i:spans)`) and a value may hold `:` and `=`.
//! In a value, `\,` stands for a comma, which would otherwise split the one-string form
//! (`STRAIT_TOPICS__TARGET_CONFIGS`).

use std::collections::BTreeMap;

use regex::Regex;

/// An example rule, for messages.
const EXAMPLE: &str = r#""dc1\.spans-.*:retention.ms=604800000""#;

/// strait keeps target topics at `compression.type=producer` so they store its batches as sent.
const COMPRESSION_TYPE: &str = "compression.type";

/// Errors of a `topics.target_configs` rule.
#[derive(Debug, thiserror::Error)]
pub enum TargetConfigError {
    /// A rule is not `REGEX:CONFIG=VALUE`.
    #[error("topics.target_configs entry {entry:?} {problem}")]
    Rule { entry: String, problem: &'static str },
    /// A rule's regex does not compile.
    #[error("topics.target_configs entry {entry:?} has an invalid regex")]
    Regex {
        entry: String,
        #[source]
        source: regex::Error,
    },
}

/// A parsed rule: target topics fully matching `regex` are created with `name=value`. In the
/// config it is the `REGEX:CONFIG=VALUE` text it was parsed from.
#[derive(Clone, Debug)]
pub struct TargetConfigRule {
    entry: String,
    regex: Regex,
    name: String,
    value: String,
}

super::rule_text::rule_text!(TargetConfigRule);

impl TargetConfigRule {
    /// What is wrong with `entry` and how to write a rule, on one line.
    fn explain(entry: &str, error: TargetConfigError) -> String {
        let fix = format!("write rules as REGEX:CONFIG=VALUE, e.g. {EXAMPLE}");
        match error {
            TargetConfigError::Rule { problem, .. } => format!("{entry:?} is not a valid rule: it {problem}; {fix}"),
            TargetConfigError::Regex { source, .. } => {
                format!(
                    "{entry:?} is not a valid rule ({}); {fix}",
                    super::rule_text::one_line(&source)
                )
            }
        }
    }

    /// Parses `REGEX:CONFIG=VALUE`.
    pub fn parse(entry: &str) -> Result<Self, TargetConfigError> {
        let bad = |problem| TargetConfigError::Rule {
            entry: entry.to_owned(),
            problem,
        };
        let split = entry.match_indices(':').find_map(|(at, _)| {
            let (pattern, rest) = (&entry[..at], &entry[at + 1..]);
            let (name, value) = rest.split_once('=')?;
            (!name.contains(':')).then_some((pattern, name, value))
        });
        let Some((pattern, name, value)) = split else {
            return Err(bad(if entry.contains(':') {
                "has no '=' between the config name and its value"
            } else {
                "has no ':' between the topic regex and CONFIG=VALUE"
            }));
        };
        let (pattern, name) = (pattern.trim(), name.trim());
        if pattern.is_empty() {
            return Err(bad("has an empty topic regex"));
        }
        if name.is_empty() {
            return Err(bad("has an empty config name"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(bad("has a config name with characters no Kafka topic config has"));
        }
        if name == COMPRESSION_TYPE {
            return Err(bad(
                "sets compression.type, which strait keeps at \"producer\" so the target stores its batches \
                 as sent: choose the codec of target batches with compression.codec",
            ));
        }
        // Compiled as written first, so an unbalanced `)` cannot escape the anchoring group.
        let regex = Regex::new(pattern)
            .and_then(|_| Regex::new(&format!("^(?:{pattern})$")))
            .map_err(|source| TargetConfigError::Regex {
                entry: entry.to_owned(),
                source,
            })?;
        Ok(Self {
            entry: entry.to_owned(),
            regex,
            name: name.to_owned(),
            value: value.trim().replace("\\,", ","),
        })
    }

    /// Whether the rule applies to the target topic `topic`.
    pub fn matches(&self, topic: &str) -> bool {
        self.regex.is_match(topic)
    }

    /// The config it sets.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value it sets.
    pub fn value(&self) -> &str {
        &self.value
    }
}

/// The configs `rules` set on a new target topic named `topic`: every matching rule applies,
/// and for a config several of them set, the first one in the list wins (as the first matching
/// `budget.weights` rule does).
pub fn target_config_overrides(rules: &[TargetConfigRule], topic: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for rule in rules.iter().filter(|r| r.matches(topic)) {
        out.entry(rule.name.clone()).or_insert_with(|| rule.value.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(entry: &str) -> (String, String, String) {
        let r = TargetConfigRule::parse(entry).expect(entry);
        let pattern = r.regex.as_str().to_owned();
        (pattern, r.name, r.value)
    }

    #[test]
    fn the_rule_splits_at_the_colon_before_the_config_name() {
        let table = [
            (
                "spans:retention.ms=604800000",
                ("^(?:spans)$", "retention.ms", "604800000"),
            ),
            (" dc1\\..* : retention.ms = 1 ", ("^(?:dc1\\..*)$", "retention.ms", "1")),
            // A regex with ':' and '{,}' in it; a value with ':' and '='.
            (
                "(?i:spans)-.{1,3}:segment.ms=60000",
                ("^(?:(?i:spans)-.{1,3})$", "segment.ms", "60000"),
            ),
            (
                "logs:follower.replication.throttled.replicas=0:1,1:2",
                ("^(?:logs)$", "follower.replication.throttled.replicas", "0:1,1:2"),
            ),
            (
                "logs:cleanup.policy=compact\\,delete",
                ("^(?:logs)$", "cleanup.policy", "compact,delete"),
            ),
            (
                "logs:message.downconversion.enable=",
                ("^(?:logs)$", "message.downconversion.enable", ""),
            ),
        ];
        for (entry, (pattern, name, value)) in table {
            assert_eq!(
                parsed(entry),
                (pattern.to_owned(), name.to_owned(), value.to_owned()),
                "{entry}"
            );
        }
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        let table = [
            ("spans", "has no ':'"),
            ("spans:retention.ms", "has no '='"),
            ("spans:=5", "has an empty config name"),
            (":retention.ms=5", "has an empty topic regex"),
            ("spans:retention ms=5", "characters no Kafka topic config has"),
            ("spans:compression.type=lz4", "compression.codec"),
        ];
        for (entry, want) in table {
            let err = TargetConfigRule::parse(entry).expect_err(entry).to_string();
            assert!(err.contains(want), "{entry}: {err}");
            assert!(err.contains(&format!("{entry:?}")), "names the rule: {err}");
        }
        assert!(matches!(
            TargetConfigRule::parse("spans(:retention.ms=1"),
            Err(TargetConfigError::Regex { .. })
        ));
        // An unbalanced ')' cannot escape the anchoring group.
        assert!(TargetConfigRule::parse("a)|(b:retention.ms=1").is_err());
    }

    #[test]
    fn every_matching_rule_applies_and_the_first_wins_per_config() {
        let rules: Vec<TargetConfigRule> = [
            "dc1\\.spans:retention.ms=604800000",
            "dc1\\..*:retention.ms=1000",
            "dc1\\..*:segment.ms=60000",
        ]
        .into_iter()
        .map(|e| TargetConfigRule::parse(e).expect(e))
        .collect();
        let got = |topic| target_config_overrides(&rules, topic);
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
        };
        assert_eq!(
            got("dc1.spans"),
            map(&[("retention.ms", "604800000"), ("segment.ms", "60000")])
        );
        assert_eq!(
            got("dc1.logs"),
            map(&[("retention.ms", "1000"), ("segment.ms", "60000")])
        );
        assert!(got("spans").is_empty(), "whole names only");
    }

    #[test]
    fn a_rule_reads_and_writes_as_its_text() {
        let rule: TargetConfigRule = serde_json::from_str(r#""spans:retention.ms=1""#).expect("rule");
        assert_eq!(serde_json::to_string(&rule).expect("text"), r#""spans:retention.ms=1""#);
        let bad = serde_json::from_str::<TargetConfigRule>(r#""spans""#).expect_err("no config");
        assert!(bad.to_string().contains("write rules as REGEX:CONFIG=VALUE"), "{bad}");
    }
}
