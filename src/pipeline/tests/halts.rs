//! Partitions that stop on what no retry fixes, shown as halted like any other halt: a panic in
//! the task, a source topic deleted while it is replicated. And what looks like a deletion but
//! is not: UnknownTopicOrPartition from a broker while the topic still exists.

use super::*;
use crate::replicate::{Health, Side};
use crate::report::PartitionState;

/// The readiness of a process whose clusters answer and whose checkpoints are loaded.
fn readiness(progress: &Progress) -> crate::replicate::Readiness {
    let health = Health::default();
    health.record_probe(Side::Source, Ok(()));
    health.record_probe(Side::Target, Ok(()));
    health.set_checkpoints_loaded();
    health.checkpoint_current();
    health.readiness(progress)
}

/// A task replicating ten records, all written and acknowledged.
async fn replicating_ten() -> (Rig, tokio::task::JoinHandle<super::super::Result<()>>) {
    let mut rig = Rig::new(OnForeignWriter::Halt);
    rig.source.append(&rig.tp, 7, &leak(&values(0..10)));
    let task = rig.start(None);
    rig.until_acked(Position { source: 10, target: 10 }).await;
    (rig, task)
}

/// The halt message of the partition.
fn halted_because(rig: &Rig) -> String {
    match rig.progress.get(&rig.tp).expect("reported").state {
        PartitionState::Halted(why) => why,
        other => panic!("expected the partition halted, it is {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_task_halts_the_partition_with_its_message() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let (rig, task) = replicating_ten().await;
    assert!(readiness(&rig.progress).ready, "premise: ready while replicating");
    rig.source.panic_on_fetch("fetched an answer out of thin air");
    let joined = tokio::time::timeout(Duration::from_secs(600), task)
        .await
        .expect("the task ended");
    assert_eq!(rig.source.fetch_panics(), 1, "premise: the fetch panicked");
    let result = joined.expect("the panic is caught in the task, not left to the runtime");
    let why = halted_because(&rig);
    assert!(
        why.contains("panicked") && why.contains("fetched an answer out of thin air") && why.contains("offset 10"),
        "{why}"
    );
    let ready = readiness(&rig.progress);
    assert!(!ready.ready, "{ready:?}");
    assert!(
        ready
            .reasons
            .iter()
            .any(|r| r.contains("spans") && r.contains("thin air")),
        "{ready:?}"
    );
    let text = metrics.render();
    let gauge = r#"strait_partition_halted{topic="spans",partition="0"} 1"#;
    assert!(text.lines().any(|l| l == gauge), "{gauge:?} missing from\n{text}");
    match result {
        Err(Error::Panicked {
            topic,
            partition: 0,
            offset: 10,
            message,
        }) => assert_eq!(
            (topic.as_str(), message.as_str()),
            ("spans", "fetched an answer out of thin air")
        ),
        other => panic!("expected a panic halt, got {other:?}"),
    }
    rig.assert_memory_back();
}

#[tokio::test(start_paused = true)]
async fn a_deleted_source_topic_halts_its_partition_naming_where_it_stopped() {
    let (rig, task) = replicating_ten().await;
    rig.source.delete_topic("spans");
    let joined = tokio::time::timeout(Duration::from_secs(3600), task)
        .await
        .expect("the partition halts instead of retrying for ever");
    let e = joined.expect("no panic").expect_err("halted");
    assert!(
        matches!(&e, Error::TopicDeleted { side: "source", topic, partition: 0, offset: 10, .. } if topic == "spans"),
        "{e:?}"
    );
    let text = crate::error_chain(&e);
    assert!(
        text.contains("spans") && text.contains("deleted") && text.contains("offset 10"),
        "{text}"
    );
    assert!(halted_because(&rig).contains("deleted"));
    assert_eq!(rig.target_values(), values(0..10), "everything read was written");
}

#[tokio::test(start_paused = true)]
async fn a_deleted_target_topic_halts_its_partition_instead_of_retrying() {
    let (rig, task) = replicating_ten().await;
    rig.target.delete_topic("spans");
    rig.source.append(&rig.tp, 7, &leak(&values(10..20)));
    let joined = tokio::time::timeout(Duration::from_secs(3600), task)
        .await
        .expect("the partition halts instead of retrying for ever");
    let e = joined.expect("no panic").expect_err("halted");
    assert!(
        matches!(&e, Error::TopicDeleted { side: "target", topic, partition: 0, offset: 10, .. } if topic == "spans"),
        "{e:?}"
    );
    let why = halted_because(&rig);
    assert!(
        why.contains("target topic spans was deleted") && why.contains("on_target_reset"),
        "{why}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_target_topic_not_yet_in_the_metadata_is_waited_for_not_taken_as_deleted() {
    let mut rig = Rig::new(OnForeignWriter::Halt);
    rig.source.append(&rig.tp, 7, &leak(&values(0..10)));
    // Just created: the target's metadata does not name it yet, for far longer than a deletion
    // takes to be believed (10 s of answers that the topic does not exist).
    rig.target.hide_topic("spans");
    let task = rig.start(None);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!task.is_finished(), "not halted: {:?}", rig.progress.get(&rig.tp));
    assert!(
        rig.target.unseen_answers() >= 5,
        "premise: {} answers",
        rig.target.unseen_answers()
    );
    assert_eq!(rig.target.end(&rig.tp), 0);
    rig.target.reveal_topic("spans");
    rig.until_target_end(10).await;
    rig.stop(task).await.expect("stopped cleanly");
    assert_eq!(rig.target_values(), values(0..10));
}

#[tokio::test(start_paused = true)]
async fn unknown_topic_answers_while_the_topic_exists_are_retried() {
    let mut rig = Rig::new(OnForeignWriter::Halt);
    rig.source.append(&rig.tp, 7, &leak(&values(0..10)));
    rig.source.unknown_topic_answers(3);
    let task = rig.start(None);
    rig.until_target_end(10).await;
    assert_eq!(
        rig.source.unknown_answers_left(),
        0,
        "premise: the unknown answers were given"
    );
    rig.source.append(&rig.tp, 7, &leak(&values(10..20)));
    rig.until_target_end(20).await;
    rig.stop(task).await.expect("stopped cleanly");
    assert_eq!(rig.target_values(), values(0..20));
}

/// A task replicating ten records of a source topic with id `[1; 16]`, told the ids when
/// `pinned`, then the topic deleted and created again with 20 records of its own.
async fn source_recreated_under_a_running_task(
    pinned: bool,
) -> (Rig, tokio::task::JoinHandle<super::super::Result<()>>) {
    let mut rig = Rig::new(OnForeignWriter::Halt);
    rig.source.set_topic_id("spans", [1; 16]);
    rig.topic_ids = pinned.then_some(crate::checkpoint::TopicIds {
        source: [1; 16],
        target: [9; 16],
    });
    rig.source.append(&rig.tp, 7, &leak(&values(0..10)));
    let task = rig.start(None);
    rig.until_acked(Position { source: 10, target: 10 }).await;
    rig.source.recreate_topic("spans", [2; 16]);
    rig.source.append(&rig.tp, 8, &leak(&values(100..120)));
    (rig, task)
}

#[tokio::test(start_paused = true)]
async fn a_source_topic_recreated_while_replicating_halts_before_reading_the_new_one() {
    // The premise: read by name, the new topic's records from offset 10 on are taken for the
    // old one's, and its first ten are skipped without a gap.
    let (rig, task) = source_recreated_under_a_running_task(false).await;
    rig.until_target_end(20).await;
    rig.stop(task).await.expect("stopped cleanly");
    assert_eq!(rig.target_values(), [values(0..10), values(110..120)].concat());

    // Pinned to the topic id it started with, the task halts instead, nothing of the new
    // topic written, and says how to go on.
    let (rig, task) = source_recreated_under_a_running_task(true).await;
    let joined = tokio::time::timeout(Duration::from_secs(3600), task)
        .await
        .expect("the partition halts instead of retrying for ever");
    let e = joined.expect("no panic").expect_err("halted");
    assert!(
        matches!(&e, Error::RecreatedWhileReplicating { side: "source", topic, partition: 0, offset: 10, .. } if topic == "spans"),
        "{e:?}"
    );
    let why = halted_because(&rig);
    assert!(
        why.contains("created again") && why.contains("on_topic_recreated"),
        "{why}"
    );
    assert_eq!(rig.target_values(), values(0..10), "nothing of the new topic written");
    rig.assert_memory_back();
}
