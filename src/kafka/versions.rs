//! API version negotiation: the highest version both strait and the broker speak.

use std::collections::HashMap;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Request, VersionRange};

/// The highest version of each API that strait uses. Capped where a newer version changes
/// semantics strait does not handle (topic ids instead of names in Produce 13+). Fetch 13+
/// names topics by id: a fetch pinned to the id its partition started with cannot read a topic
/// deleted and created again under the same name (the broker answers UNKNOWN_TOPIC_ID); a fetch
/// without a known id is sent at 12 at most ([`BrokerVersions::pick_at_most`]).
pub(crate) fn strait_max(api: ApiKey) -> i16 {
    match api {
        ApiKey::Fetch => 17,
        ApiKey::Produce => 12,
        ApiKey::Metadata => 12,
        ApiKey::ListOffsets => 8,
        ApiKey::ApiVersions => 3,
        // One group per request, topics by name.
        ApiKey::FindCoordinator => 3,
        ApiKey::OffsetFetch => 7,
        ApiKey::OffsetCommit => 8,
        _ => i16::MAX,
    }
}

/// What one broker said it supports, from its ApiVersions answer.
#[derive(Clone, Debug, Default)]
pub(crate) struct BrokerVersions {
    ranges: HashMap<i16, VersionRange>,
}

impl BrokerVersions {
    pub(crate) fn new(ranges: impl IntoIterator<Item = (i16, VersionRange)>) -> Self {
        Self {
            ranges: ranges.into_iter().collect(),
        }
    }

    /// The broker's own range for an API, if it offers it at all.
    pub(crate) fn broker_range(&self, key: i16) -> Option<VersionRange> {
        self.ranges.get(&key).copied()
    }

    /// The version to use for request type `R`, or `Err((ours, theirs))` when the ranges do not
    /// overlap.
    pub(crate) fn pick<R: Request>(&self) -> Result<i16, (VersionRange, Option<VersionRange>)> {
        self.pick_at_most::<R>(i16::MAX)
    }

    /// [`Self::pick`], at most `cap`: for a request that needs an older version's semantics.
    pub(crate) fn pick_at_most<R: Request>(&self, cap: i16) -> Result<i16, (VersionRange, Option<VersionRange>)> {
        let api = ApiKey::try_from(R::KEY).ok();
        let ours = VersionRange {
            min: R::VERSIONS.min,
            max: api
                .map_or(R::VERSIONS.max, |a| R::VERSIONS.max.min(strait_max(a)))
                .min(cap),
        };
        let theirs = self.broker_range(R::KEY);
        match theirs.map(|t| ours.intersect(&t)) {
            Some(common) if !common.is_empty() => Ok(common.max),
            _ => Err((ours, theirs)),
        }
    }

    /// Whether the broker serves this API in a version strait speaks.
    pub(crate) fn supports<R: Request>(&self) -> bool {
        self.pick::<R>().is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{CreateTopicsRequest, FetchRequest, ProduceRequest};

    #[test]
    fn picks_highest_common_version() {
        let v = BrokerVersions::new([
            (ApiKey::Fetch as i16, VersionRange { min: 0, max: 16 }),
            (ApiKey::Produce as i16, VersionRange { min: 0, max: 7 }),
        ]);
        assert_eq!(v.pick::<FetchRequest>(), Ok(16));
        assert_eq!(v.pick_at_most::<FetchRequest>(12), Ok(12), "by name: 12 at most");
        assert_eq!(v.pick::<ProduceRequest>(), Ok(7));
        assert!(v.pick::<CreateTopicsRequest>().is_err());
        assert!(!v.supports::<CreateTopicsRequest>());
    }

    #[test]
    fn disjoint_ranges_are_refused() {
        let v = BrokerVersions::new([(ApiKey::Fetch as i16, VersionRange { min: 0, max: 3 })]);
        let (ours, theirs) = v.pick::<FetchRequest>().expect_err("fetch 4 is strait's minimum");
        assert_eq!(ours.min, 4);
        assert_eq!(theirs.map(|t| t.max), Some(3));
    }
}
