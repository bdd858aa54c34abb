//! Batch size from the round trip to the target. One partition has at most
//! [`MAX_IN_FLIGHT`] batches on the wire, so over a long round trip it moves at most
//! `MAX_IN_FLIGHT * batch size` per round trip: at 100 ms and 1 MiB batches, about 50 MB/s of
//! records, less the broker's own time. When the round trip is long, batches grow (up to the
//! target's `max.message.bytes` and the batch memory) so the window keeps [`PARTITION_RATE`];
//! the window itself stays at five, which keeps the idempotent producer's ordering. Pure.

use std::time::Duration;

/// Produce requests of one partition on the wire at once (the sender's window). Kafka keeps the
/// order of up to five in flight for an idempotent producer.
pub(super) const MAX_IN_FLIGHT: usize = 5;

/// Uncompressed record bytes per second one partition's window is sized for: twice the 40 MB/s
/// a single partition must sustain, leaving room for the broker's append time in each round trip.
pub(super) const PARTITION_RATE: f64 = 80e6;
/// Sizes move in steps of this many bytes, so jitter in the round trip does not resize the
/// batch builder on every batch.
const STEP: usize = 256 * 1024;

/// The round trip to the target: the shortest produce answer since the pipeline started.
/// Never the recent ones only: when the link carries less than the window, answers queue behind
/// each other and take longer the larger the batches, and an estimate that followed them would
/// grow the batches, which would lengthen the answers again, up to the ceiling (seen on a link
/// limited by the broker's 100 KiB socket buffer: produce answers went from 0.4 s to 2.8 s).
/// The first answer, with nothing queued before it, bounds the estimate once and for all.
#[derive(Debug, Default)]
pub(super) struct RoundTrip {
    shortest: Option<Duration>,
}

impl RoundTrip {
    pub(super) fn record(&mut self, took: Duration) {
        self.shortest = Some(self.shortest.map_or(took, |s| s.min(took)));
    }

    /// `None` before the first answer.
    pub(super) fn estimate(&self) -> Option<Duration> {
        self.shortest
    }
}

/// Uncompressed bytes of the next batch: `configured` (`batch.max_bytes`, within the target's
/// `max.message.bytes`) unless [`MAX_IN_FLIGHT`] such batches per `round_trip` carry less than
/// [`PARTITION_RATE`]; then enough to, in [`STEP`]s, at most `ceiling` (see [`ceiling`]).
/// Under a budget the budget is what limits the rate: `configured`.
pub(super) fn batch_bytes(configured: usize, ceiling: usize, round_trip: Option<Duration>, budgeted: bool) -> usize {
    let Some(rtt) = round_trip else {
        return configured;
    };
    if budgeted {
        return configured;
    }
    let needed = (PARTITION_RATE * rtt.as_secs_f64() / MAX_IN_FLIGHT as f64) as usize;
    let stepped = needed.div_ceil(STEP).saturating_mul(STEP);
    stepped.clamp(configured, ceiling.max(configured))
}

/// The largest batch a long round trip may grow batches to: the target's `max.message.bytes`
/// less [`COMPRESSION_SLACK`] (what zstd or lz4 may add to incompressible records), and a
/// quarter of `batch.buffer_max_bytes`, so several partitions still share the batch memory.
pub(crate) fn ceiling(target_max_message_bytes: usize, batch_buffer_max_bytes: usize) -> usize {
    target_max_message_bytes
        .saturating_sub(COMPRESSION_SLACK)
        .min(batch_buffer_max_bytes / 4)
}

/// Bytes a compressed batch may exceed its uncompressed size by (frame and block headers).
const COMPRESSION_SLACK: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn a_short_round_trip_keeps_the_configured_size() {
        // 5 ms: 80 MB/s needs 80 kB batches, well under batch.max_bytes.
        assert_eq!(batch_bytes(MIB, 8 * MIB, ms(5), false), MIB);
        assert_eq!(batch_bytes(MIB, 8 * MIB, None, false), MIB);
    }

    #[test]
    fn a_100_ms_round_trip_grows_batches_so_five_carry_the_partition_rate() {
        let b = batch_bytes(MIB, 8 * MIB, ms(100), false);
        // 80 MB/s * 0.1 s / 5 = 1.6 MB, rounded up to 256 KiB steps.
        assert_eq!(b, 7 * STEP);
        assert!(b as f64 * MAX_IN_FLIGHT as f64 / 0.1 >= PARTITION_RATE);
        assert!(b as f64 * MAX_IN_FLIGHT as f64 / 0.1 >= 40e6 * 2.0);
    }

    #[test]
    fn growth_stops_at_the_ceiling() {
        assert_eq!(batch_bytes(MIB, 4 * MIB, ms(2000), false), 4 * MIB);
        // A ceiling under batch.max_bytes never shrinks the configured size.
        assert_eq!(batch_bytes(MIB, MIB / 2, ms(2000), false), MIB);
    }

    #[test]
    fn under_a_budget_the_configured_size_stays() {
        assert_eq!(batch_bytes(MIB, 8 * MIB, ms(500), true), MIB);
    }

    #[test]
    fn the_ceiling_is_the_target_limit_less_slack_and_a_quarter_of_the_batch_memory() {
        assert_eq!(ceiling(8 * MIB, 64 * MIB), 8 * MIB - COMPRESSION_SLACK);
        // Kafka's default max.message.bytes: no room to grow past 1 MiB.
        assert!(ceiling(1_048_588, 64 * MIB) < MIB);
        assert_eq!(ceiling(64 * MIB, 16 * MIB), 4 * MIB);
    }

    #[test]
    fn the_round_trip_is_the_shortest_answer_and_never_grows() {
        let mut r = RoundTrip::default();
        assert_eq!(r.estimate(), None);
        r.record(Duration::from_millis(400));
        r.record(Duration::from_millis(110));
        r.record(Duration::from_millis(250));
        assert_eq!(r.estimate(), ms(110));
        // Answers that queued behind larger batches do not grow the batches again.
        for _ in 0..100 {
            r.record(Duration::from_millis(2_800));
        }
        assert_eq!(r.estimate(), ms(110));
        assert_eq!(batch_bytes(MIB, 8 * MIB, r.estimate(), false), 7 * STEP);
    }
}
