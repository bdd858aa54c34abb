//! `groups.*`: which source consumer groups have their committed offsets translated and
//! committed on the target, and how often. The sync itself lives in [`crate::groups`].

use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::topics::{compile, patterns};
use super::Result;

/// Consumer group offset sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupsConfig {
    /// Regexes; a source consumer group is synced if one of them matches its whole id. Empty
    /// (the default): no group is synced.
    #[serde(deserialize_with = "patterns")]
    pub include: Vec<String>,
    /// Regexes; a group matching one of them (whole id) is never synced.
    #[serde(deserialize_with = "patterns")]
    pub exclude: Vec<String>,
    /// Seconds between two syncs (>= 1).
    pub interval_secs: u64,
    /// Whether a sync may move a group's committed offset on the target backwards.
    pub allow_rewind: bool,
    /// Most offset map runs kept per partition (>= 1): the bound on what the map holds.
    pub offset_map_max_runs: usize,
}

impl Default for GroupsConfig {
    fn default() -> Self {
        GroupsConfig {
            include: Vec::new(),
            exclude: Vec::new(),
            interval_secs: 30,
            allow_rewind: false,
            offset_map_max_runs: crate::offsets::DEFAULT_MAX_RUNS,
        }
    }
}

impl GroupsConfig {
    /// Compiles the patterns, each anchored as `^(?:pattern)$`.
    pub fn filter(&self) -> Result<GroupFilter> {
        Ok(GroupFilter {
            include: compile("groups.include", &self.include)?,
            exclude: compile("groups.exclude", &self.exclude)?,
            literals: self.include.iter().filter(|p| is_literal(p)).cloned().collect(),
        })
    }

    /// [`Self::interval_secs`] as a duration.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs)
    }
}

/// The compiled form of the group patterns.
#[derive(Debug, Clone)]
pub struct GroupFilter {
    include: Vec<Regex>,
    exclude: Vec<Regex>,
    /// Include patterns that name one group: asked about even when a listing does not show it
    /// (Kafka lists only the groups the principal may describe).
    literals: Vec<String>,
}

/// Whether a pattern matches exactly one id, itself (no regex syntax).
fn is_literal(pattern: &str) -> bool {
    !pattern.is_empty()
        && pattern
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':'))
}

/// strait's own consumer groups (the positions mirrored on the source) start with this; they
/// are never synced, whatever `groups.include` says.
pub const STRAIT_GROUP_PREFIX: &str = "strait.";

impl GroupFilter {
    /// Whether `group` is included and not excluded (strait's own groups never are).
    pub fn matches(&self, group: &str) -> bool {
        !group.starts_with(STRAIT_GROUP_PREFIX)
            && self.include.iter().any(|re| re.is_match(group))
            && !self.exclude.iter().any(|re| re.is_match(group))
    }

    /// The group ids `groups.include` names literally (and `groups.exclude` does not exclude).
    pub fn literals(&self) -> impl Iterator<Item = &str> {
        self.literals.iter().map(String::as_str).filter(|g| self.matches(g))
    }

    /// Whether any group can match at all.
    pub fn is_empty(&self) -> bool {
        self.include.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_match_whole_ids_and_none_by_default() {
        assert!(GroupsConfig::default().filter().expect("compiles").is_empty());
        let f = GroupsConfig {
            include: vec!["jaeger-.*".into()],
            exclude: vec![".*-test".into()],
            ..GroupsConfig::default()
        }
        .filter()
        .expect("compiles");
        assert!(f.matches("jaeger-ingester"));
        assert!(!f.matches("jaeger-ingester-test"));
        assert!(!f.matches("my-jaeger-ingester"));
        let f = GroupsConfig {
            include: vec!["ingester-1".into(), "jaeger.*".into(), "ingester-2".into()],
            exclude: vec!["ingester-2".into()],
            ..GroupsConfig::default()
        }
        .filter()
        .expect("compiles");
        assert_eq!(f.literals().collect::<Vec<_>>(), vec!["ingester-1"]);
        // strait's own position groups, never, even when everything is included.
        let all = GroupsConfig {
            include: vec![".*".into()],
            ..GroupsConfig::default()
        }
        .filter()
        .expect("compiles");
        assert!(all.matches("ingester-1"));
        assert!(!all.matches("strait.cluster-abc"));
    }
}
