//! Where a partition starts without a usable checkpoint (`on_missing_checkpoint`, `start_from`),
//! and the halts before anything is written: a recreated source, a target ahead of or behind
//! what the checkpoint says.

use super::*;

fn rig_starting(on_missing_checkpoint: OnMissingCheckpoint, start_from: StartFrom) -> Rig {
    let mut rig = Rig::new(OnForeignWriter::Halt);
    let mut settings = (*rig.settings).clone();
    settings.on_missing_checkpoint = on_missing_checkpoint;
    rig.settings = Arc::new(settings);
    rig.start_from = start_from;
    rig
}

#[tokio::test(start_paused = true)]
async fn align_goes_on_right_after_the_source_records_the_target_already_holds() {
    let mut rig = rig_starting(OnMissingCheckpoint::Align, StartFrom::Earliest);
    rig.source.append(&rig.tp, 7, &leak(&values(0..20)));
    rig.source.append(&rig.tp, 7, &leak(&values(20..30)));
    // Another tool copied the first 13 records (same values and timestamps), in batches of
    // its own.
    rig.target.append(&rig.tp, 99, &leak(&values(0..5)));
    rig.target.append(&rig.tp, 99, &leak(&values(5..13)));
    let task = rig.start(None);
    rig.until_target_end(30).await;
    rig.stop(task).await.expect("stopped cleanly");
    assert_eq!(rig.target_values(), values(0..30), "every source record once, in order");
    assert_eq!(rig.acked().at, Position { source: 30, target: 30 });
}

#[tokio::test(start_paused = true)]
async fn align_halts_when_the_target_holds_records_the_source_does_not() {
    let mut rig = rig_starting(OnMissingCheckpoint::Align, StartFrom::Earliest);
    rig.source.append(&rig.tp, 7, &leak(&values(0..20)));
    rig.target.append(&rig.tp, 99, &leak(&values(100..103)));
    let task = rig.start(None);
    match task.await.expect("no panic") {
        Err(e @ Error::AlignFailed { first: 0, end: 3, .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("not found in the source") && text.contains("append"),
                "{text}"
            );
        }
        other => panic!("expected an alignment halt, got {other:?}"),
    }
    assert_eq!(rig.target.end(&rig.tp), 3, "nothing written");
}

#[tokio::test(start_paused = true)]
async fn start_from_latest_skips_what_the_source_held_and_earliest_copies_it() {
    for (start_from, want) in [
        (StartFrom::Latest, values(10..15)),
        (StartFrom::Earliest, values(0..15)),
    ] {
        let mut rig = rig_starting(OnMissingCheckpoint::Halt, start_from);
        rig.source.append(&rig.tp, 7, &leak(&values(0..10)));
        let task = rig.start(None);
        if start_from == StartFrom::Latest {
            // The fresh start is claimed before anything is read: then the position is fixed.
            rig.until_acked(Position { source: 10, target: 0 }).await;
        }
        rig.source.append(&rig.tp, 7, &leak(&values(10..15)));
        rig.until_target_end(want.len() as i64).await;
        rig.stop(task).await.expect("stopped cleanly");
        assert_eq!(rig.target_values(), want, "{start_from:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn start_from_a_timestamp_starts_at_the_first_record_that_new() {
    // The fake stamps record n with 1_700_000_000_000 + n.
    let mut rig = rig_starting(OnMissingCheckpoint::Halt, StartFrom::Timestamp(1_700_000_000_007));
    rig.source.append(&rig.tp, 7, &leak(&values(0..10)));
    let task = rig.start(None);
    rig.until_target_end(3).await;
    rig.stop(task).await.expect("stopped cleanly");
    assert_eq!(rig.target_values(), values(7..10));
}

#[tokio::test(start_paused = true)]
async fn a_recreated_source_topic_halts_or_starts_over_as_configured() {
    use crate::checkpoint::TopicIds;
    let ids = |source: u8| TopicIds {
        source: [source; 16],
        target: [9; 16],
    };
    let recreated = |mode: OnTopicRecreated| {
        let mut rig = Rig::new(OnForeignWriter::Halt);
        let mut settings = (*rig.settings).clone();
        settings.on_topic_recreated = mode;
        rig.settings = Arc::new(settings);
        // The old topic's 5 records are on the target, checkpointed; the new topic has 10.
        rig.target.append(&rig.tp, 1001, &leak(&values(0..5)));
        rig.source.append(&rig.tp, 7, &leak(&values(20..30)));
        rig.topic_ids = Some(ids(2));
        let mut checkpoint = checkpoint_at(Position { source: 5, target: 5 }, Some(vec![]));
        checkpoint.topic_ids = Some(ids(1));
        let task = rig.start(Some(checkpoint));
        (rig, task)
    };
    let (rig, task) = recreated(OnTopicRecreated::Halt);
    match task.await.expect("no panic") {
        Err(e @ Error::TopicRecreated { side: "source", .. }) => {
            assert!(e.to_string().contains("on_topic_recreated"), "{e}");
        }
        other => panic!("expected a recreated-topic halt, got {other:?}"),
    }
    assert_eq!(rig.target.end(&rig.tp), 5, "nothing written");
    // Told to start over: the new topic from its beginning, after the old records;
    // its first five records are not skipped for the old checkpoint's offsets.
    let (rig, task) = recreated(OnTopicRecreated::StartOver);
    rig.until_target_end(15).await;
    rig.stop(task).await.expect("stopped cleanly");
    assert_eq!(rig.target_values(), [values(0..5), values(20..30)].concat());
    assert_eq!(rig.acked().topic_ids, Some(ids(2)), "checkpoints name the new topic");
}

#[tokio::test(start_paused = true)]
async fn a_target_with_records_and_no_checkpoint_halts_before_writing() {
    let mut rig = Rig::new(OnForeignWriter::Halt);
    rig.source.append(&rig.tp, 7, &leak(&values(0..4)));
    rig.target.append(&rig.tp, 555, &[b"old"]);
    let task = rig.start(None);
    match task.await.expect("no panic") {
        Err(Error::MissingCheckpoint { first, end, .. }) => assert_eq!((first, end), (0, 1)),
        other => panic!("expected a missing-checkpoint halt, got {other:?}"),
    }
    assert_eq!(rig.target.end(&rig.tp), 1);
}

#[tokio::test(start_paused = true)]
async fn a_target_behind_its_checkpoint_halts() {
    let mut rig = Rig::new(OnForeignWriter::Halt);
    rig.source.append(&rig.tp, 7, &leak(&values(0..4)));
    let task = rig.start(Some(checkpoint_at(Position { source: 4, target: 4 }, Some(Vec::new()))));
    match task.await.expect("no panic") {
        Err(Error::TargetBehind { checkpoint, end, .. }) => assert_eq!((checkpoint, end), (4, 0)),
        other => panic!("expected a target-behind halt, got {other:?}"),
    }
}
