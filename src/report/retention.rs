//! Retention risk: how long until the source's retention may delete records strait has not yet
//! replicated, and when to warn about it.
//!
//! Everything here is pure. The figures are computed from a partition's status and the clock at
//! read time, so they keep moving while nothing else does (the link to the target is down and no
//! batch is acknowledged). [`RiskWatch`] turns them into one warning per partition per crossing
//! of `alerts.retention_headroom_secs`. Reading topic configs from the source is
//! `replicate::topics::read_retention`'s job; the health monitor sets the gauges and logs the
//! crossings, `/status` and the progress line read the figures.

use std::collections::HashSet;

use crate::kafka::{TopicConfig, TopicPartition};

/// Kafka's default `retention.ms` (7 days). It is assumed when the source does not report a
/// topic's own value: a cluster without DescribeConfigs (librdkafka's mock cluster), a broker
/// that reports only explicitly set configs, or a topic that never set it. A broker-wide
/// `log.retention.*` override is only seen where the broker reports effective values (Kafka does).
pub const KAFKA_DEFAULT_RETENTION_MS: i64 = 7 * 24 * 3_600_000;

/// A source topic's time-based retention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// Records older than this many milliseconds may be deleted.
    Ms(i64),
    /// `retention.ms = -1`: time never deletes anything, so there is no retention risk.
    Infinite,
}

impl Default for Retention {
    /// Kafka's default, [`KAFKA_DEFAULT_RETENTION_MS`].
    fn default() -> Self {
        Retention::Ms(KAFKA_DEFAULT_RETENTION_MS)
    }
}

impl Retention {
    /// From a topic's configs: `retention.ms`, where a negative value (Kafka allows -1) means
    /// infinite; missing or not a number means Kafka's default.
    pub fn from_configs(configs: &TopicConfig) -> Self {
        match configs.get("retention.ms").and_then(|v| v.trim().parse::<i64>().ok()) {
            Some(ms) if ms < 0 => Retention::Infinite,
            Some(ms) => Retention::Ms(ms),
            None => Retention::default(),
        }
    }

    /// Milliseconds, or `None` when infinite.
    pub fn ms(self) -> Option<i64> {
        match self {
            Retention::Ms(ms) => Some(ms),
            Retention::Infinite => None,
        }
    }
}

/// The retention figures of one partition at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RiskFigures {
    /// Records on the source not yet acknowledged by the target.
    pub lag_records: i64,
    /// Age of the oldest source record not yet acknowledged by the target, in milliseconds:
    /// 0 when caught up, `None` when lagging but no timestamp is known yet.
    pub oldest_unacked_age_ms: Option<i64>,
    /// Seconds until the source's retention may delete that record (negative: it is already
    /// past retention); the whole retention when caught up; `None` when retention is infinite
    /// or the age is unknown.
    pub headroom_secs: Option<f64>,
    /// Lagging with a headroom under the alert threshold.
    pub at_risk: bool,
}

impl RiskFigures {
    /// The figures at `now_ms` of a partition lagging by `lag_records`, whose oldest
    /// unacknowledged record has timestamp `oldest_unacked_ms`, on a topic with `retention`, for
    /// an alert threshold of `threshold_secs` (0 = never at risk).
    pub fn at(
        lag_records: i64,
        oldest_unacked_ms: Option<i64>,
        retention: Retention,
        now_ms: i64,
        threshold_secs: u64,
    ) -> Self {
        let oldest_unacked_age_ms = if lag_records <= 0 {
            Some(0)
        } else {
            // A negative timestamp is Kafka's "none"; a future one (clock skew) is age 0.
            oldest_unacked_ms
                .filter(|&ts| ts >= 0)
                .map(|ts| now_ms.saturating_sub(ts).max(0))
        };
        let headroom_secs = match (retention.ms(), oldest_unacked_age_ms) {
            (Some(retention), Some(age)) => Some(retention.saturating_sub(age) as f64 / 1000.0),
            _ => None,
        };
        let at_risk = threshold_secs > 0 && lag_records > 0 && headroom_secs.is_some_and(|h| h < threshold_secs as f64);
        RiskFigures {
            lag_records,
            oldest_unacked_age_ms,
            headroom_secs,
            at_risk,
        }
    }
}

/// The retention figures over all partitions.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Summary {
    /// Partitions at risk.
    pub(crate) at_risk: usize,
    /// The smallest known headroom, in seconds.
    pub(crate) min_headroom_secs: Option<f64>,
}

impl Summary {
    /// Counts and minimum over the figures of every partition.
    pub(crate) fn of(figures: impl IntoIterator<Item = RiskFigures>) -> Self {
        figures.into_iter().fold(Summary::default(), |mut sum, f| {
            sum.at_risk += usize::from(f.at_risk);
            if let Some(h) = f.headroom_secs {
                sum.min_headroom_secs = Some(sum.min_headroom_secs.map_or(h, |m| m.min(h)));
            }
            sum
        })
    }
}

/// A change worth a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Crossing {
    /// The partition just became at risk.
    Entered,
    /// A partition that was at risk is safe again (caught up, or its headroom is back above the
    /// threshold by a margin).
    Cleared,
}

/// Remembers which partitions were warned about, so a partition is warned about once per
/// crossing of the threshold rather than at every tick.
#[derive(Debug)]
pub(crate) struct RiskWatch {
    threshold_secs: u64,
    warned: HashSet<TopicPartition>,
}

impl RiskWatch {
    /// A watch for `alerts.retention_headroom_secs` (0 = disabled: nothing is ever at risk).
    pub(crate) fn new(threshold_secs: u64) -> Self {
        Self {
            threshold_secs,
            warned: HashSet::new(),
        }
    }

    /// The threshold in seconds (0 = disabled).
    pub(crate) fn threshold_secs(&self) -> u64 {
        self.threshold_secs
    }

    /// Notes the current figures of `tp`. A warned partition is re-armed only once it caught up
    /// or its headroom is back above the threshold plus a tenth, so a headroom hovering at the
    /// threshold does not warn at every tick.
    pub(crate) fn observe(&mut self, tp: &TopicPartition, figures: &RiskFigures) -> Option<Crossing> {
        if figures.at_risk {
            return self.warned.insert(tp.clone()).then_some(Crossing::Entered);
        }
        let rearm_above = self.threshold_secs as f64 * 1.1;
        let safe = self.threshold_secs == 0
            || figures.lag_records <= 0
            || figures.headroom_secs.is_none_or(|h| h >= rearm_above);
        (safe && self.warned.remove(tp)).then_some(Crossing::Cleared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: i64 = 3_600_000;
    const NOW: i64 = 1_800_000_000_000;

    fn configs(pairs: &[(&str, &str)]) -> TopicConfig {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn retention_comes_from_the_topic_or_kafkas_default() {
        let table: &[(&[(&str, &str)], Retention)] = &[
            (&[("retention.ms", "7200000")], Retention::Ms(2 * HOUR_MS)),
            (&[("retention.ms", "-1")], Retention::Infinite),
            (&[("retention.ms", "0")], Retention::Ms(0)),
            // Some brokers report only what was set; the mock cluster nothing at all.
            (
                &[("cleanup.policy", "delete")],
                Retention::Ms(KAFKA_DEFAULT_RETENTION_MS),
            ),
            (&[], Retention::Ms(7 * 24 * HOUR_MS)),
            (&[("retention.ms", "soon")], Retention::default()),
        ];
        for (pairs, want) in table {
            assert_eq!(Retention::from_configs(&configs(pairs)), *want, "{pairs:?}");
        }
    }

    #[test]
    fn headroom_is_retention_minus_the_age_of_the_oldest_unacknowledged_record() {
        let two_hours = Retention::Ms(2 * HOUR_MS);
        let f = RiskFigures::at(500, Some(NOW - 110 * 60_000), two_hours, NOW, 3600);
        assert_eq!(f.oldest_unacked_age_ms, Some(110 * 60_000));
        assert_eq!(f.headroom_secs, Some(600.0));
        assert!(f.at_risk);
        // Far from retention: not at risk.
        let f = RiskFigures::at(500, Some(NOW - 60_000), two_hours, NOW, 3600);
        assert_eq!(f.headroom_secs, Some(7140.0));
        assert!(!f.at_risk);
        // Past retention: negative, and at risk.
        let f = RiskFigures::at(1, Some(NOW - 3 * HOUR_MS), two_hours, NOW, 3600);
        assert_eq!(f.headroom_secs, Some(-3600.0));
        assert!(f.at_risk);
    }

    #[test]
    fn infinite_retention_has_no_headroom_and_no_risk() {
        let f = RiskFigures::at(500, Some(0), Retention::Infinite, NOW, 3600);
        assert_eq!(f.oldest_unacked_age_ms, Some(NOW));
        assert_eq!(f.headroom_secs, None);
        assert!(!f.at_risk);
    }

    #[test]
    fn missing_retention_means_seven_days() {
        let retention = Retention::from_configs(&TopicConfig::new());
        let f = RiskFigures::at(1, Some(NOW - 24 * HOUR_MS), retention, NOW, 3600);
        assert_eq!(f.headroom_secs, Some(6.0 * 24.0 * 3600.0));
        assert!(!f.at_risk);
    }

    #[test]
    fn caught_up_is_the_whole_retention_and_never_at_risk() {
        // A stale timestamp does not matter once everything is acknowledged.
        let f = RiskFigures::at(0, Some(NOW - 3 * HOUR_MS), Retention::Ms(2 * HOUR_MS), NOW, 3600);
        assert_eq!(f.oldest_unacked_age_ms, Some(0));
        assert_eq!(f.headroom_secs, Some(7200.0));
        assert!(!f.at_risk);
        // Even when retention is shorter than the threshold.
        let f = RiskFigures::at(0, None, Retention::Ms(HOUR_MS / 2), NOW, 3600);
        assert_eq!(f.headroom_secs, Some(1800.0));
        assert!(!f.at_risk);
    }

    #[test]
    fn while_nothing_is_acknowledged_the_age_grows_and_the_headroom_shrinks_with_the_clock() {
        let oldest = Some(NOW - 100 * 60_000);
        let retention = Retention::Ms(2 * HOUR_MS);
        let before = RiskFigures::at(42, oldest, retention, NOW, 3600);
        let later = RiskFigures::at(42, oldest, retention, NOW + 15 * 60_000, 3600);
        assert_eq!(before.oldest_unacked_age_ms, Some(100 * 60_000));
        assert_eq!(later.oldest_unacked_age_ms, Some(115 * 60_000));
        assert_eq!(before.headroom_secs, Some(1200.0));
        assert_eq!(later.headroom_secs, Some(300.0));
    }

    #[test]
    fn unknown_or_future_timestamps() {
        let retention = Retention::Ms(2 * HOUR_MS);
        let f = RiskFigures::at(5, None, retention, NOW, 3600);
        assert_eq!(
            (f.oldest_unacked_age_ms, f.headroom_secs, f.at_risk),
            (None, None, false)
        );
        let f = RiskFigures::at(5, Some(-1), retention, NOW, 3600);
        assert_eq!(f.headroom_secs, None, "-1 is Kafka's no-timestamp");
        let f = RiskFigures::at(5, Some(NOW + 60_000), retention, NOW, 3600);
        assert_eq!(f.oldest_unacked_age_ms, Some(0), "clock skew is not a negative age");
    }

    #[test]
    fn threshold_zero_disables_the_risk() {
        let f = RiskFigures::at(5, Some(NOW - 3 * HOUR_MS), Retention::Ms(2 * HOUR_MS), NOW, 0);
        assert_eq!(f.headroom_secs, Some(-3600.0));
        assert!(!f.at_risk);
        let mut watch = RiskWatch::new(0);
        assert_eq!(watch.observe(&TopicPartition::new("spans", 0), &f), None);
    }

    #[test]
    fn summary_counts_the_risk_and_finds_the_smallest_known_headroom() {
        let retention = Retention::Ms(2 * HOUR_MS);
        let figures = [
            RiskFigures::at(5, Some(NOW - 110 * 60_000), retention, NOW, 3600),
            RiskFigures::at(5, Some(NOW - 100 * 60_000), retention, NOW, 3600),
            RiskFigures::at(0, None, retention, NOW, 3600),
            RiskFigures::at(5, Some(0), Retention::Infinite, NOW, 3600),
            RiskFigures::at(5, None, retention, NOW, 3600),
        ];
        let sum = Summary::of(figures);
        assert_eq!(sum.at_risk, 2);
        assert_eq!(sum.min_headroom_secs, Some(600.0));
        assert_eq!(Summary::of([]), Summary::default());
    }

    #[test]
    fn a_partition_is_warned_about_once_per_crossing() {
        let tp = TopicPartition::new("spans", 3);
        let other = TopicPartition::new("spans", 4);
        let retention = Retention::Ms(2 * HOUR_MS);
        let oldest = Some(NOW - 110 * 60_000);
        let mut watch = RiskWatch::new(3600);
        let tick = |minutes: i64, lag: i64, oldest: Option<i64>| {
            RiskFigures::at(lag, oldest, retention, NOW + minutes * 60_000, 3600)
        };

        assert_eq!(watch.observe(&tp, &tick(0, 10, oldest)), Some(Crossing::Entered));
        // Still at risk at the next ticks: no new warning, for this partition only.
        assert_eq!(watch.observe(&tp, &tick(1, 10, oldest)), None);
        assert_eq!(watch.observe(&tp, &tick(2, 10, oldest)), None);
        assert_eq!(watch.observe(&other, &tick(2, 10, oldest)), Some(Crossing::Entered));
        // Draining: the oldest record is younger, headroom just above the threshold, within the
        // margin: not cleared, and not warned again when it dips back.
        let hovering = Some(NOW - 59 * 60_000);
        assert_eq!(watch.observe(&tp, &tick(0, 10, hovering)), None);
        assert_eq!(watch.observe(&tp, &tick(2, 10, hovering)), None);
        // Caught up: cleared once.
        assert_eq!(watch.observe(&tp, &tick(3, 0, hovering)), Some(Crossing::Cleared));
        assert_eq!(watch.observe(&tp, &tick(4, 0, hovering)), None);
        // A new crossing warns again.
        assert_eq!(watch.observe(&tp, &tick(5, 10, oldest)), Some(Crossing::Entered));
        // Headroom well above the threshold while still lagging also clears.
        assert_eq!(watch.observe(&tp, &tick(5, 10, Some(NOW))), Some(Crossing::Cleared));
        assert_eq!(watch.threshold_secs(), 3600);
    }
}
