//! More than one strait process writing a partition, on Apache Kafka while the source keeps
//! growing: two processes started with the same configuration, and a shard count changed under
//! load (two shards, then three more with the new count before the old ones stop). A process
//! that starts a partition claims it with a newer writer epoch in the checkpoint topic and goes
//! on; an older one stops writing each partition at its next write, with an error that says it
//! was fenced. Nothing is lost; the records written twice are the fenced process's last
//! in-flight batches, bounded by its window, and reported in
//! `strait_target_duplicate_records_total`. Checked with librdkafka on the target.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use common::growing::{read_all_keys, total, two_clusters, Writer};
use common::{Kafka, Rec, Running, StraitCmd};

/// The largest batch strait builds here, and the smallest record the writer sends: together
/// with the window of five batches per partition they bound what a fenced process can still
/// land.
const BATCH_MAX_BYTES: usize = 16_384;
const MIN_RECORD_BYTES: usize = 60;

fn spawn_strait(source: &Kafka, target: &Kafka, topic: &str, shard: (u32, u32), log: &std::path::Path) -> Running {
    StraitCmd::new(&["run"])
        .env("STRAIT_SOURCE__BOOTSTRAP_SERVERS", source.bootstrap())
        .env("STRAIT_TARGET__BOOTSTRAP_SERVERS", target.bootstrap())
        .env("STRAIT_TOPICS__INCLUDE", topic)
        .env("STRAIT_TOPICS__REFRESH_SECS", "1")
        .env("STRAIT_BATCH__LINGER_MS", "10")
        .env("STRAIT_FETCH__MAX_WAIT_MS", "100")
        .env("STRAIT_BATCH__MAX_BYTES", BATCH_MAX_BYTES.to_string())
        .env("STRAIT_CHECKPOINT__INTERVAL_MS", "300")
        .env("STRAIT_SHARD__INDEX", shard.0.to_string())
        .env("STRAIT_SHARD__COUNT", shard.1.to_string())
        .env("STRAIT_LOG", "info")
        .spawn_logging_to(log)
}

fn fenced_lines(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("fenced: another strait process"))
        .count()
}

/// Reads the target until it holds every record `sent`; checks that none is lost, that the
/// first copies are the source in order, and that every copy is a source record. Returns the
/// records written twice.
async fn verify(target: &Kafka, topic: &str, sent: &BTreeMap<i32, Vec<Rec>>) -> usize {
    let on_target = read_all_keys(target, topic, sent).await;
    let mut duplicates = 0;
    for (p, s) in sent {
        let t = &on_target[p];
        let mut seen = HashSet::new();
        let mut first_arrivals = Vec::new();
        for r in t {
            if seen.insert(r.key.clone()) {
                first_arrivals.push(r);
            } else {
                duplicates += 1;
            }
        }
        let lost = s.iter().filter(|r| !seen.contains(&r.key)).count();
        assert_eq!(lost, 0, "{topic}/{p}: {lost} source records lost");
        assert_eq!(
            first_arrivals,
            s.iter().collect::<Vec<_>>(),
            "{topic}/{p}: the target's first copies are not the source, in order"
        );
        assert!(
            t.iter().all(|r| s.contains(r)),
            "{topic}/{p}: a target record is no source record"
        );
    }
    duplicates
}

/// `strait_target_duplicate_records_total` of a running process.
async fn duplicates_counted(strait: &Running) -> f64 {
    strait
        .get("/metrics")
        .await
        .and_then(|(_, text)| common::metrics::sum(&text, "strait_target_duplicate_records_total", &[]))
        .unwrap_or(0.0)
}

/// Checks the end state once the newer processes (`newer`) alone write: every record `sent`
/// is on the target ([`verify`]); the records written twice are no more than the fenced
/// processes' windows of five batches per partition can hold, and the newer processes
/// counted at least as many; none of them was fenced or halted a partition. Returns the
/// records written twice, the bound and the count.
async fn outcome(
    target: &Kafka,
    topic: &str,
    sent: &BTreeMap<i32, Vec<Rec>>,
    newer: &[&Running],
) -> (usize, usize, f64) {
    let duplicates = verify(target, topic, sent).await;
    let bound = sent.len() * 5 * (BATCH_MAX_BYTES / MIN_RECORD_BYTES);
    assert!(
        duplicates <= bound,
        "{duplicates} records written twice, more than the fenced processes' windows ({bound})"
    );
    let mut counted = 0.0;
    for s in newer {
        counted += duplicates_counted(s).await;
        assert_eq!(fenced_lines(&s.log()), 0, "a newer process was fenced:\n{}", s.log());
        assert!(
            s.log_lines(&["partition halted;"]).is_empty(),
            "a newer process halted a partition:\n{}",
            s.log()
        );
    }
    assert!(
        counted as usize >= duplicates,
        "{duplicates} records on the target twice, {counted} counted by the newer processes"
    );
    (duplicates, bound, counted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_with_the_same_config_fences_the_first_and_nothing_is_lost() {
    const PARTITIONS: i32 = 2;
    let Some((source, target, topic)) = two_clusters("fence", PARTITIONS).await else {
        return;
    };
    let writer = Writer::start(&source, &topic, PARTITIONS);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut a = spawn_strait(&source, &target, &topic, (0, 1), &dir.path().join("a.log"));
    common::eventually("the first process replicates", Duration::from_secs(120), || {
        a.assert_running("while replicating alone");
        async { total(&target, &topic, PARTITIONS).await >= 400 }
    })
    .await;

    // The second process, same configuration.
    let started = Instant::now();
    let mut b = spawn_strait(&source, &target, &topic, (0, 1), &dir.path().join("b.log"));
    common::eventually(
        "the first process is fenced on every partition",
        Duration::from_secs(120),
        || {
            a.assert_running("while being fenced");
            b.assert_running("while fencing");
            std::future::ready(fenced_lines(&a.log()) >= PARTITIONS as usize)
        },
    )
    .await;
    eprintln!(
        "first process fenced on all {PARTITIONS} partitions {:.1} s after the second started",
        started.elapsed().as_secs_f64()
    );
    // The second goes on with new records, past whatever the first still landed.
    let before = total(&target, &topic, PARTITIONS).await;
    common::eventually("the second process goes on", Duration::from_secs(120), || {
        b.assert_running("after the fence");
        async { total(&target, &topic, PARTITIONS).await >= before + 400 }
    })
    .await;
    let sent = writer.stop().await;
    let (duplicates, bound, counted) = outcome(&target, &topic, &sent, &[&b]).await;
    eprintln!(
        "{} records per partition, all on the target; {duplicates} written twice by the fenced process (bound {bound}, counted {counted})",
        sent[&0].len()
    );
    b.terminate(Duration::from_secs(30)).await;
    a.terminate(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_count_changed_under_load_loses_nothing() {
    const PARTITIONS: i32 = 6;
    let Some((source, target, topic)) = two_clusters("reshard", PARTITIONS).await else {
        return;
    };
    let writer = Writer::start(&source, &topic, PARTITIONS);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut old: Vec<Running> = (0..2)
        .map(|i| {
            spawn_strait(
                &source,
                &target,
                &topic,
                (i, 2),
                &dir.path().join(format!("old-{i}.log")),
            )
        })
        .collect();
    common::eventually("two shards replicate", Duration::from_secs(120), || async {
        total(&target, &topic, PARTITIONS).await >= 1200
    })
    .await;
    // Three shards start with the new count while the two old ones still run.
    let mut new: Vec<Running> = (0..3)
        .map(|i| {
            spawn_strait(
                &source,
                &target,
                &topic,
                (i, 3),
                &dir.path().join(format!("new-{i}.log")),
            )
        })
        .collect();
    common::eventually(
        "the old shards are fenced on every partition",
        Duration::from_secs(120),
        || {
            for s in old.iter_mut().chain(new.iter_mut()) {
                s.assert_running("during the reshard");
            }
            std::future::ready(old.iter().map(|s| fenced_lines(&s.log())).sum::<usize>() >= PARTITIONS as usize)
        },
    )
    .await;
    for s in &mut old {
        s.terminate(Duration::from_secs(30)).await;
    }
    let before = total(&target, &topic, PARTITIONS).await;
    common::eventually("the new shards go on", Duration::from_secs(120), || async {
        total(&target, &topic, PARTITIONS).await >= before + 1200
    })
    .await;
    let sent = writer.stop().await;
    let (duplicates, bound, counted) = outcome(&target, &topic, &sent, &new.iter().collect::<Vec<_>>()).await;
    eprintln!(
        "reshard 2 -> 3 under load: {} records per partition, all on the target; {duplicates} written twice (bound {bound}, counted {counted})",
        sent[&0].len()
    );
    for s in &mut new {
        s.terminate(Duration::from_secs(30)).await;
    }
}
