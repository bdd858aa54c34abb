//! An idle partition's task sleeps until its source has something to read: no wake-up at every
//! long poll, and records, or a stop, still reach it at once.

use super::*;

/// Replicates ten records, then lets the partition sit idle for ten minutes.
async fn idle_after_ten(rig: &mut Rig) -> tokio::task::JoinHandle<super::super::Result<()>> {
    rig.source.append(&rig.tp, 7, &leak(&values(0..10)));
    let task = rig.start(None);
    rig.until_target_end(10).await;
    // With 50 ms long polls, 12,000 empty answers if the task woke at each.
    tokio::time::sleep(Duration::from_secs(600)).await;
    let (asleep, empty) = rig.source.sleeps_and_empty_answers();
    assert!(asleep >= 1, "the premise: the task went to sleep");
    assert!(empty <= 8, "woken {empty} times while idle");
    // Asleep, it holds none of the fetch buffer: thousands of idle partitions must not take it
    // from the busy ones.
    assert_eq!(rig.settings.buffer.available_permits(), MEMORY_UNITS as usize);
    task
}

#[tokio::test(start_paused = true)]
async fn an_idle_partition_sleeps_until_records_come_and_then_replicates_them() {
    let mut rig = Rig::new(OnForeignWriter::Halt);
    let task = idle_after_ten(&mut rig).await;
    rig.source.append(&rig.tp, 7, &leak(&values(10..20)));
    rig.until_target_end(20).await;
    rig.stop(task).await.expect("stopped cleanly");
    assert_eq!(rig.target_values(), values(0..20));
    assert_eq!(rig.acked().at, Position { source: 20, target: 20 });
    rig.assert_memory_back();
}

#[tokio::test(start_paused = true)]
async fn a_sleeping_partition_stops_at_once() {
    let mut rig = Rig::new(OnForeignWriter::Halt);
    let task = idle_after_ten(&mut rig).await;
    let stopped = tokio::time::timeout(Duration::from_secs(1), rig.stop(task)).await;
    stopped.expect("stopped within a second").expect("stopped cleanly");
    rig.assert_memory_back();
}
