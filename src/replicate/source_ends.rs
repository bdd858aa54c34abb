//! The source's end of every partition replicated here, asked every [`SOURCE_ENDS_EVERY`] in
//! one ListOffsets per source broker.
//!
//! A partition's fetch answers carry its high watermark, but only while it is fetched. After an
//! outage the shared fetch buffer is full of the partitions read first, and the others wait for
//! buffer with the high watermark they had before the cut: their lag, the total lag and the
//! drain ETA (the lag over the net drain rate, replication minus the source's growth) were too
//! small by everything the source took in meanwhile, and the source's growth read as zero. With
//! this task every partition's end is at most a period old, fetched or not.
//!
//! An end read here only raises `source_high_watermark`: a fetch answer is as fresh, and the
//! last stable offset this reads (read_committed, as strait fetches) is at most the high
//! watermark, so lowering would only undo a fresher answer.
//!
//! # Cost
//!
//! One request per source broker per period naming every partition it leads here (about 12
//! bytes a partition: 60 kB for 5,000), all brokers at once; no timer per partition.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::kafka::TopicPartition;
use crate::pipeline::Fetch;
use crate::report::Progress;
use crate::telemetry;

/// How often the source's ends are asked: the drain window is 30 s, so its growth rate rests on
/// a few readings.
pub(super) const SOURCE_ENDS_EVERY: Duration = Duration::from_secs(5);

/// Asks the source's end of every partition in `progress` every `every`, until `cancel`.
pub(super) async fn run<F: Fetch>(source: Arc<F>, progress: Arc<Progress>, every: Duration, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let tps = progress.partitions();
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = refresh(&*source, &progress, &tps) => {}
        }
    }
}

/// What one round of [`refresh`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Refreshed {
    /// Partitions whose end moved past what `progress` held.
    pub(super) raised: usize,
    /// Partitions the source gave no end for (leader unknown, broker down, topic gone).
    pub(super) failed: usize,
}

/// Reads the ends of `tps` once and raises each partition's `source_high_watermark` (and its lag
/// gauge) to it.
pub(super) async fn refresh<F: Fetch>(source: &F, progress: &Progress, tps: &[TopicPartition]) -> Refreshed {
    let ends = source.list_ends(tps).await;
    let mut done = Refreshed::default();
    for (tp, end) in tps.iter().zip(ends) {
        let end = match end {
            Ok(end) => end,
            Err(e) => {
                done.failed += 1;
                tracing::debug!(topic = %tp.topic, partition = tp.partition, error = %e, "source end not read");
                continue;
            }
        };
        let raised = progress.update(tp, |s| {
            (end > s.source_high_watermark).then(|| {
                s.source_high_watermark = end;
                s.lag_records()
            })
        });
        if let Some(lag) = raised {
            done.raised += 1;
            metrics::gauge!(telemetry::LAG_RECORDS, &telemetry::labels(&tp.topic, tp.partition)).set(lag as f64);
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::fake::FakeCluster;

    #[tokio::test]
    async fn an_unfetched_partition_shows_what_the_source_took_in_and_a_fresher_answer_stays() {
        let source = FakeCluster::default();
        let (unread, fetched, gone) = (
            TopicPartition::new("spans", 0),
            TopicPartition::new("spans", 1),
            TopicPartition::new("deleted", 0),
        );
        source.delete_topic("deleted");
        for _ in 0..3 {
            source.append(&unread, 1, &[b"a", b"b"]);
        }
        source.append(&fetched, 1, &[b"c"]);
        let progress = Progress::default();
        // Where the partitions' last fetches left them: `unread` before the source took in 6
        // records, `fetched` with an end past the source's (a fresher answer than the request).
        progress.update(&unread, |s| s.next_source_offset = 0);
        progress.update(&fetched, |s| s.source_high_watermark = 4);
        progress.update(&gone, |s| s.source_high_watermark = 2);
        let tps = progress.partitions();
        assert_eq!(tps.len(), 3);
        assert_eq!(
            progress.get(&unread).expect("known").lag_records(),
            0,
            "premise: the lag is stale"
        );

        let done = refresh(&source, &progress, &tps).await;

        assert_eq!(done, Refreshed { raised: 1, failed: 1 });
        assert_eq!(source.list_ends_asked(), 1, "one request for all partitions");
        assert_eq!(progress.get(&unread).expect("known").source_high_watermark, 6);
        assert_eq!(progress.get(&unread).expect("known").lag_records(), 6);
        assert_eq!(
            progress.get(&fetched).expect("known").source_high_watermark,
            4,
            "never lowered"
        );
        assert_eq!(
            progress.get(&gone).expect("known").source_high_watermark,
            2,
            "an error leaves it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_ends_are_asked_every_period_until_cancelled() {
        let source = Arc::new(FakeCluster::default());
        let tp = TopicPartition::new("spans", 0);
        let progress = Arc::new(Progress::default());
        progress.update(&tp, |s| s.next_source_offset = 0);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(
            Arc::clone(&source),
            Arc::clone(&progress),
            SOURCE_ENDS_EVERY,
            cancel.clone(),
        ));
        tokio::time::sleep(SOURCE_ENDS_EVERY / 2).await;
        assert_eq!(source.list_ends_asked(), 1, "asked at once");
        source.append(&tp, 1, &[b"a", b"b", b"c"]);
        tokio::time::sleep(SOURCE_ENDS_EVERY).await;
        assert_eq!(source.list_ends_asked(), 2);
        assert_eq!(progress.get(&tp).expect("known").lag_records(), 3);
        cancel.cancel();
        task.await.expect("the task ends when cancelled");
        tokio::time::sleep(SOURCE_ENDS_EVERY * 3).await;
        assert_eq!(source.list_ends_asked(), 2, "nothing after cancel");
    }
}
