//! Fresh-first catch-up through the whole task: the ranges split, both are written, a crash at
//! any point resumes both from the checkpoint, and they merge back into one range.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;

const BACKLOG: usize = 400;
const FRESH: usize = 40;

fn fresh_first_rig() -> Rig {
    let mut rig = Rig::new(OnForeignWriter::Halt);
    // Small batches: each one spends the budget, so the ranges interleave.
    rig.max_batch_bytes = 4096;
    rig.settings = Arc::new(TaskSettings {
        fresh_after: Some(Duration::from_secs(60)),
        // A narrow link: the catch-up lasts long enough to be seen and crashed in.
        budget: Arc::new(crate::budget::Budget::new(500, 500, Vec::new())),
        ..(*settings(OnForeignWriter::Halt)).clone()
    });
    rig
}

/// Record `i`'s value: its number, then 160 bytes that compress poorly (so batches cost the
/// budget time).
fn value(i: usize) -> &'static [u8] {
    let mut x = i as u64 ^ 0x9e37_79b9_7f4a_7c15;
    let noise: String = (0..20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("{:08x}", x as u32)
        })
        .collect();
    Box::leak(format!("record-{i:05}-{noise}").into_bytes().into_boxed_slice())
}

/// Appends records `from..to` to the source, 10 per batch. The fake's timestamps are years
/// old: the backlog is older than `fresh_after`.
fn append(rig: &Rig, from: usize, to: usize) {
    let all: Vec<&'static [u8]> = (from..to).map(value).collect();
    for chunk in all.chunks(10) {
        rig.source.append(&rig.tp, 7, chunk);
    }
}

/// Waits (paused time) until the published state is in a catch-up.
async fn until_catching_up(rig: &Rig) {
    for _ in 0..10_000 {
        if rig.tap.current().is_some_and(|a| a.fresh.is_some()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("the partition never entered fresh-first: {:?}", rig.tap.current());
}

/// Every source value on the target exactly once.
fn assert_each_once(rig: &Rig, total: usize) {
    let mut seen: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for v in rig.target_values() {
        *seen.entry(v).or_default() += 1;
    }
    let twice: Vec<_> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(v, _)| String::from_utf8_lossy(v))
        .collect();
    assert!(twice.is_empty(), "written more than once: {twice:?}");
    let missing: Vec<usize> = (0..total).filter(|i| !seen.contains_key(value(*i))).collect();
    assert!(missing.is_empty(), "missing: {missing:?}");
    assert_eq!(seen.len(), total);
}

#[tokio::test(start_paused = true)]
async fn an_old_backlog_splits_writes_both_ranges_once_and_merges_back() {
    let mut rig = fresh_first_rig();
    append(&rig, 0, BACKLOG);
    let task = rig.start(None);
    until_catching_up(&rig).await;
    let acked = rig.acked();
    let fresh = acked.fresh.clone().expect("in a catch-up");
    assert_eq!(fresh.split, BACKLOG as i64, "the split is the source's end at entry");
    // New records arrive during the catch-up.
    append(&rig, BACKLOG, BACKLOG + FRESH);
    rig.until_target_end((BACKLOG + FRESH) as i64).await;
    // Merged back: one range at the source's end.
    rig.until_acked(Position {
        source: (BACKLOG + FRESH) as i64,
        target: (BACKLOG + FRESH) as i64,
    })
    .await;
    assert_eq!(rig.acked().fresh, None, "one range again");
    let status = rig.progress.get(&rig.tp).expect("reported");
    assert_eq!((status.catchup_split, status.fresh_next_offset), (None, None));
    rig.stop(task).await.expect("stopped cleanly");
    assert_each_once(&rig, BACKLOG + FRESH);
    // Fresh first: a new record is on the target before the backlog's last; each range in
    // source order.
    let order: Vec<usize> = rig
        .target_values()
        .iter()
        .map(|v| {
            (0..BACKLOG + FRESH)
                .find(|i| value(*i) == v.as_slice())
                .expect("a source value")
        })
        .collect();
    let first_fresh = order.iter().position(|i| *i >= BACKLOG).expect("fresh records");
    let last_backlog = order.iter().rposition(|i| *i < BACKLOG).expect("backlog records");
    assert!(
        first_fresh < last_backlog,
        "fresh records waited for the backlog: {order:?}"
    );
    for range in [0..BACKLOG, BACKLOG..BACKLOG + FRESH] {
        let within: Vec<usize> = order.iter().copied().filter(|i| range.contains(i)).collect();
        assert!(within.windows(2).all(|w| w[0] < w[1]), "out of order within {range:?}");
    }
    // The offset map marks the catch-up: offsets inside it translate to where it began.
    let map = rig.tap.map();
    let end = crate::offsets::End {
        source: (BACKLOG + FRESH) as i64,
        target: (BACKLOG + FRESH) as i64,
    };
    assert_eq!(map.translate(100, end), crate::offsets::Translation::Before(0));
}

#[tokio::test(start_paused = true)]
async fn new_records_go_out_while_a_backlog_batch_waits_for_the_budget() {
    let rig = fresh_first_rig();
    let budget = Arc::clone(&rig.settings.budget);
    // The premise: a backlog batch waits longer for the budget than the new records may take.
    let allowed = Duration::from_secs(1);
    let backlog_wait = Duration::from_secs_f64(rig.max_batch_bytes as f64 / budget.bytes_per_sec() as f64);
    assert!(backlog_wait > 4 * allowed, "{backlog_wait:?}");
    let mut rig = rig;
    append(&rig, 0, BACKLOG);
    let task = rig.start(None);
    until_catching_up(&rig).await;
    let mut waited = false;
    for _ in 0..20_000 {
        if budget.waiting() > 0 {
            waited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(waited, "no backlog batch ever waited for the budget");
    append(&rig, BACKLOG, BACKLOG + 10);
    let appended = tokio::time::Instant::now();
    let newest = value(BACKLOG + 9).to_vec();
    while !rig.target_values().contains(&newest) {
        assert!(
            appended.elapsed() < allowed,
            "new records still not on the target after {allowed:?}: they wait behind the backlog"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rig.stop(task).await.expect("stopped cleanly");
}

#[tokio::test(start_paused = true)]
async fn new_records_have_slots_of_their_own_in_the_window() {
    let mut rig = fresh_first_rig();
    // No budget: the window is all that holds the backlog back, and answers take 10 s.
    rig.settings = Arc::new(TaskSettings {
        budget: Arc::new(crate::budget::Budget::unlimited()),
        ..(*rig.settings).clone()
    });
    rig.target.answer_after(Duration::from_secs(10));
    append(&rig, 0, BACKLOG);
    let task = rig.start(None);
    until_catching_up(&rig).await;
    // The premise: the backlog's batches fill its slots (four, the fifth kept for new
    // records) and none is answered yet.
    let started = tokio::time::Instant::now();
    while rig.target.end(&rig.tp) < 4 * 20 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the backlog's first batches were answered first"
    );
    let backlog_sent = rig.target.end(&rig.tp);
    // Five batches of new records, 20 ms apart (the linger is 5 ms).
    let appended = tokio::time::Instant::now();
    for i in 0..5 {
        append(&rig, BACKLOG + 10 * i, BACKLOG + 10 * (i + 1));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let newest = value(BACKLOG + 49).to_vec();
    while !rig.target_values().contains(&newest) {
        assert!(
            appended.elapsed() < Duration::from_secs(2),
            "new records waited for an answer to the backlog's batches"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        rig.target.end(&rig.tp),
        backlog_sent + 50,
        "only the new records went out meanwhile (the backlog's slots stayed full)"
    );
    rig.stop(task).await.expect("stopped cleanly");
}

#[tokio::test(start_paused = true)]
async fn crashes_during_a_catch_up_lose_nothing_and_write_nothing_twice() {
    let mut rig = fresh_first_rig();
    append(&rig, 0, BACKLOG);
    let mut task = rig.start(None);
    until_catching_up(&rig).await;
    let mut total = BACKLOG;
    let mut crashed_in_catch_up = 0;
    for round in 0..6 {
        append(&rig, total, total + 10);
        total += 10;
        // Let it write some, then crash (no flush, no final checkpoint).
        tokio::time::sleep(Duration::from_millis(300 + round * 700)).await;
        task.abort();
        let _ = task.await;
        let checkpoint = rig.acked().to_record("test", &rig.tp, 0);
        if checkpoint.fresh.is_some() {
            crashed_in_catch_up += 1;
        }
        task = rig.start(Some(checkpoint));
    }
    assert!(
        crashed_in_catch_up >= 2,
        "only {crashed_in_catch_up} crashes hit a catch-up"
    );
    rig.until_target_end(total as i64).await;
    rig.until_acked(Position {
        source: total as i64,
        target: rig.target.end(&rig.tp),
    })
    .await;
    rig.stop(task).await.expect("stopped cleanly");
    assert_each_once(&rig, total);
    assert_eq!(rig.target.end(&rig.tp), total as i64, "nothing else on the target");
}

#[tokio::test(start_paused = true)]
async fn entering_after_foreign_records_in_the_tail_writes_past_them_without_a_resync() {
    let mut rig = fresh_first_rig();
    rig.settings = Arc::new(TaskSettings {
        on_foreign_writer: OnForeignWriter::Skip,
        ..(*rig.settings).clone()
    });
    append(&rig, 0, BACKLOG);
    // Another producer wrote to the target beyond the checkpoint.
    rig.target
        .append(&rig.tp, 99, &[b"foreign-1", b"foreign-2", b"foreign-3"]);
    let task = rig.start(Some(checkpoint_at(Position { source: 0, target: 0 }, Some(Vec::new()))));
    until_catching_up(&rig).await;
    append(&rig, BACKLOG, BACKLOG + FRESH);
    let end = (BACKLOG + FRESH) as i64 + 3;
    rig.until_target_end(end).await;
    rig.until_acked(Position {
        source: (BACKLOG + FRESH) as i64,
        target: end,
    })
    .await;
    rig.stop(task).await.expect("stopped cleanly");
    // Three identities: the backlog's, the fresh range's, the merged range's. A first batch
    // that landed past where it was expected would have taken new ones.
    assert_eq!(rig.acked().writers.identities().len(), 3, "{:?}", rig.acked().writers);
    let values = rig.target_values();
    assert_eq!(
        &values[..3],
        &[b"foreign-1".to_vec(), b"foreign-2".to_vec(), b"foreign-3".to_vec()]
    );
    let mut rest: Vec<Vec<u8>> = values[3..].to_vec();
    rest.sort();
    let mut want: Vec<Vec<u8>> = (0..BACKLOG + FRESH).map(|i| value(i).to_vec()).collect();
    want.sort();
    assert_eq!(rest, want, "every source record once");
}

#[tokio::test(start_paused = true)]
async fn entering_with_its_own_records_in_the_tail_absorbs_them_in_the_backlog() {
    let mut rig = fresh_first_rig();
    append(&rig, 0, BACKLOG);
    // A previous run wrote 0..12 as producer 900 but checkpointed only up to 5: its answer was
    // lost, as across a cut.
    let crashed = ProducerIdentity { id: 900, epoch: 0 };
    let written: Vec<&'static [u8]> = (0..12).map(value).collect();
    rig.target.append(&rig.tp, 900, &written);
    let task = rig.start(Some(checkpoint_at(
        Position { source: 5, target: 5 },
        Some(vec![crashed]),
    )));
    until_catching_up(&rig).await;
    let fresh = rig.acked().fresh.expect("in a catch-up");
    assert!(
        fresh.at.target >= 12,
        "new records go after what the target holds: {fresh:?}"
    );
    append(&rig, BACKLOG, BACKLOG + FRESH);
    let end = (BACKLOG + FRESH) as i64;
    rig.until_target_end(end).await;
    rig.until_acked(Position {
        source: end,
        target: end,
    })
    .await;
    rig.stop(task).await.expect("stopped cleanly");
    assert_each_once(&rig, BACKLOG + FRESH);
    // The crashed run's, the backlog's, the fresh range's and the merged range's identities:
    // no batch landed where it was not expected.
    assert_eq!(rig.acked().writers.identities().len(), 4, "{:?}", rig.acked().writers);
    let status = rig.progress.get(&rig.tp).expect("reported");
    assert_eq!(
        status.records,
        (BACKLOG + FRESH - 5) as u64,
        "7 absorbed, the rest written"
    );
}

#[tokio::test(start_paused = true)]
async fn backlog_records_the_source_deletes_during_a_catch_up_are_an_exact_gap() {
    const BIG: usize = 2000;
    let mut rig = fresh_first_rig();
    // Little memory: strait cannot have read the whole backlog ahead when the source deletes
    // most of it.
    rig.settings = Arc::new(TaskSettings {
        budget: Arc::new(crate::budget::Budget::new(5000, 5000, Vec::new())),
        buffer: Arc::new(Semaphore::new(64)),
        buffer_units: 64,
        batch_memory: Arc::new(Semaphore::new(64)),
        batch_memory_units: 64,
        fetch_max_bytes: 16 * 1024,
        ..(*rig.settings).clone()
    });
    append(&rig, 0, BIG);
    let task = rig.start(None);
    until_catching_up(&rig).await;
    append(&rig, BIG, BIG + FRESH);
    let deleted_below: usize = 1500;
    rig.source.delete_before(&rig.tp, deleted_below as i64);
    let end = (BIG + FRESH) as i64;
    for _ in 0..60_000 {
        let done = rig
            .tap
            .current()
            .is_some_and(|a| a.fresh.is_none() && a.at.source == end);
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rig.stop(task).await.expect("stopped cleanly");
    let acked = rig.acked();
    assert_eq!(
        (acked.fresh.is_none(), acked.at.source),
        (true, end),
        "drained and merged"
    );
    let on_target: Vec<usize> = rig
        .target_values()
        .iter()
        .map(|v| {
            (0..BIG + FRESH)
                .find(|i| value(*i) == v.as_slice())
                .expect("a source value")
        })
        .collect();
    let written_deleted = on_target.iter().filter(|i| **i < deleted_below).count();
    let status = rig.progress.get(&rig.tp).expect("reported");
    // Every deleted record is either on the target (read before the deletion) or in the gap.
    assert_eq!(
        status.gap_records as usize + written_deleted,
        deleted_below,
        "{status:?}"
    );
    assert!(status.gap_records > 0, "the premise: records were lost to retention");
    // Everything the source still holds is on the target once.
    for i in deleted_below..BIG + FRESH {
        assert_eq!(on_target.iter().filter(|o| **o == i).count(), 1, "record {i}");
    }
    assert_eq!(on_target.len(), written_deleted + BIG + FRESH - deleted_below);
}

#[tokio::test(start_paused = true)]
async fn a_compacted_topic_stays_oldest_first() {
    let mut rig = fresh_first_rig();
    rig.source.compact_topic(&rig.tp.topic);
    append(&rig, 0, BACKLOG);
    let task = rig.start(None);
    append(&rig, BACKLOG, BACKLOG + FRESH);
    let end = (BACKLOG + FRESH) as i64;
    // Watched all along: never two ranges.
    for _ in 0..60_000 {
        let acked = rig.tap.current();
        assert!(
            acked.as_ref().is_none_or(|a| a.fresh.is_none()),
            "split a compacted topic: {acked:?}"
        );
        if acked.is_some_and(|a| a.at.source == end) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rig.stop(task).await.expect("stopped cleanly");
    assert_eq!(rig.acked().at.source, end);
    let values: Vec<Vec<u8>> = (0..BACKLOG + FRESH).map(|i| value(i).to_vec()).collect();
    assert_eq!(rig.target_values(), values, "source order");
}
