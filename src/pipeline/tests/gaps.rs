//! What the source position passes without writing: records the source deleted before they
//! were read (a counted gap), aborted transactions and markers, and a batch the target refuses.

use super::*;

#[tokio::test(start_paused = true)]
async fn a_source_gap_is_counted_and_the_rest_is_replicated() {
    let mut rig = Rig::new(OnForeignWriter::Halt);
    rig.source.append(&rig.tp, 7, &leak(&values(0..10)));
    rig.source.append(&rig.tp, 7, &leak(&values(10..20)));
    // Checkpointed at 4, but the source deleted everything below 10 since.
    rig.target.append(&rig.tp, 900, &leak(&values(0..4)));
    rig.source.delete_before(&rig.tp, 10);
    let task = rig.start(Some(checkpoint_at(Position { source: 4, target: 4 }, Some(Vec::new()))));
    rig.until_target_end(14).await;
    rig.stop(task).await.expect("stopped cleanly");
    let mut expected = values(0..4);
    expected.extend(values(10..20));
    assert_eq!(rig.target_values(), expected);
    let status = rig.progress.get(&rig.tp).expect("reported");
    assert_eq!(status.gap_records, 6);
    assert_eq!(rig.acked().at, Position { source: 20, target: 14 });
}

#[tokio::test(start_paused = true)]
async fn a_first_start_keeps_the_source_position_it_found_while_the_target_does_not_answer() {
    // A partition never replicated, its target topic not yet answered for (just created on a
    // busy node, or the link cut): the source deletes records meanwhile. They were there when
    // the partition started, so they are a counted gap, not skipped by starting later at the
    // log start of then.
    let mut rig = Rig::new(OnForeignWriter::Halt);
    rig.source.append(&rig.tp, 7, &leak(&values(0..10)));
    rig.target.hide_topic("spans");
    let task = rig.start(None);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(rig.target.unseen_answers() >= 5, "premise: the target did not answer");
    assert_eq!(rig.progress.get(&rig.tp).expect("reported").next_source_offset, 0);
    rig.source.delete_before(&rig.tp, 6);
    rig.source.append(&rig.tp, 7, &leak(&values(10..12)));
    rig.target.reveal_topic("spans");
    rig.until_target_end(6).await;
    rig.stop(task).await.expect("stopped cleanly");
    assert_eq!(rig.target_values(), values(6..12));
    assert_eq!(rig.progress.get(&rig.tp).expect("reported").gap_records, 6);
    assert_eq!(rig.acked().at, Position { source: 12, target: 6 });
}

#[tokio::test(start_paused = true)]
async fn a_fetch_answered_from_past_its_offset_counts_the_gap_it_jumps() {
    let mut rig = Rig::new(OnForeignWriter::Halt);
    rig.source.append(&rig.tp, 7, &leak(&values(0..10)));
    rig.source.append(&rig.tp, 7, &leak(&values(10..20)));
    rig.target.append(&rig.tp, 900, &leak(&values(0..4)));
    rig.source.delete_before(&rig.tp, 10);
    // No OffsetOutOfRange: the answer starts at the log start, which says how far it jumped.
    rig.source.answer_below_start_with_later_records();
    let task = rig.start(Some(checkpoint_at(Position { source: 4, target: 4 }, Some(Vec::new()))));
    rig.until_target_end(14).await;
    rig.stop(task).await.expect("stopped cleanly");
    assert_eq!(rig.target_values(), [values(0..4), values(10..20)].concat());
    assert_eq!(rig.progress.get(&rig.tp).expect("reported").gap_records, 6);
    assert_eq!(rig.acked().at, Position { source: 20, target: 14 });
}

/// Source offsets 0..10: values 0..3, an aborted transaction of two records and its marker,
/// values 3..5, and (ending in dropped records) an aborted record and its marker.
pub(super) fn with_aborted_transactions(rig: &Rig) {
    rig.source.append(&rig.tp, 7, &leak(&values(0..3)));
    let aborted = rig
        .source
        .append_transactional(&rig.tp, 8, &[b"aborted-1", b"aborted-2"]);
    rig.source.append_marker(&rig.tp, 8, false, aborted);
    rig.source.append(&rig.tp, 7, &leak(&values(3..5)));
    let tail = rig.source.append_transactional(&rig.tp, 9, &[b"aborted-3"]);
    rig.source.append_marker(&rig.tp, 9, false, tail);
}

#[tokio::test(start_paused = true)]
async fn aborted_transactions_and_markers_are_dropped_and_the_position_passes_them() {
    let mut rig = Rig::new(OnForeignWriter::Halt);
    // Ends in dropped records: the position must still reach the source's end.
    with_aborted_transactions(&rig);
    let task = rig.start(None);
    rig.until_target_end(5).await;
    // The position moves past the trailing aborted records with nothing more to write.
    rig.until_acked(Position { source: 10, target: 5 }).await;
    rig.stop(task).await.expect("stopped cleanly");
    assert_eq!(rig.target_values(), values(0..5));
    assert_eq!(rig.acked().at, Position { source: 10, target: 5 });
}

#[tokio::test(start_paused = true)]
async fn a_batch_the_target_refuses_as_too_large_halts_with_its_offset() {
    let mut rig = Rig::new(OnForeignWriter::Halt);
    rig.source.append(&rig.tp, 7, &leak(&values(0..4)));
    rig.target.fault(Fault {
        error: partition_error(&rig.tp, ApiKey::Produce, ResponseError::MessageTooLarge),
        lands: Lands::Never,
    });
    let task = rig.start(None);
    match task.await.expect("no panic") {
        Err(Error::RecordTooLarge { offset, .. }) => assert_eq!(offset, 0),
        other => panic!("expected a too-large halt, got {other:?}"),
    }
    assert_eq!(rig.target.end(&rig.tp), 0);
    rig.assert_memory_back();
}

/// A rig whose partitions start as `on_missing_checkpoint` and `start_from` say.
#[tokio::test(start_paused = true)]
async fn interleaved_transactions_split_across_fetch_answers_keep_only_committed_records() {
    let mut rig = Rig::new(OnForeignWriter::Halt);
    // One batch per fetch answer: every transaction is split across answers.
    let mut settings = (*rig.settings).clone();
    settings.fetch_max_bytes = 1;
    rig.settings = Arc::new(settings);
    let tp = rig.tp.clone();
    rig.source.append(&tp, 7, &[b"plain-0", b"plain-1"]);
    let aborted = rig.source.append_transactional(&tp, 8, &[b"aborted-2", b"aborted-3"]);
    rig.source
        .append_transactional(&tp, 9, &[b"committed-4", b"committed-5"]);
    rig.source.append(&tp, 7, &[b"plain-6"]);
    rig.source.append_transactional(&tp, 8, &[b"aborted-7", b"aborted-8"]);
    rig.source.append_marker(&tp, 8, false, aborted);
    rig.source.append_marker(&tp, 9, true, 4);
    rig.source.append(&tp, 7, &[b"plain-11"]);
    let task = rig.start(None);
    rig.until_acked(Position { source: 12, target: 6 }).await;
    rig.stop(task).await.expect("stopped cleanly");
    let expected: Vec<Vec<u8>> = [
        "plain-0",
        "plain-1",
        "committed-4",
        "committed-5",
        "plain-6",
        "plain-11",
    ]
    .iter()
    .map(|v| v.as_bytes().to_vec())
    .collect();
    assert_eq!(rig.target_values(), expected);
    rig.assert_memory_back();
}
