//! Memory against hostile or huge source batches: a batch that decompresses to more than the
//! fetch buffer halts its partition alone, and a slice of a shared fetch response is counted as
//! the whole response for as long as it is held.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::super::fetch::Fetcher;
use super::super::unpack::Fetched;
use super::{Rig, MEMORY_UNITS};
use crate::batch::Compression;
use crate::config::OnForeignWriter;
use crate::kafka::TopicPartition;
use crate::pipeline::memory::BUFFER_UNIT;
use crate::pipeline::Error;

/// 64 records of 128 KiB of zeros: 8 MiB once decompressed, twice the test's fetch buffer.
fn bomb() -> Vec<Bytes> {
    (0..64).map(|_| Bytes::from(vec![0u8; 128 << 10])).collect()
}

#[tokio::test(start_paused = true)]
async fn a_batch_larger_than_the_fetch_buffer_halts_its_partition_and_the_others_go_on() {
    let mut healthy = Rig::new(OnForeignWriter::Halt);
    let mut bombed = Rig {
        tp: TopicPartition::new("spans", 1),
        source: Arc::clone(&healthy.source),
        target: Arc::clone(&healthy.target),
        settings: Arc::clone(&healthy.settings),
        ..Rig::new(OnForeignWriter::Halt)
    };
    let cap = MEMORY_UNITS as usize * BUFFER_UNIT;
    let values = bomb();
    assert!(
        values.iter().map(Bytes::len).sum::<usize>() > cap,
        "the premise: larger than the buffer"
    );
    healthy.source.append_compressed(&bombed.tp, values, Compression::Zstd);
    healthy.source.append(&bombed.tp, 1, &[b"after"]);
    healthy.source.append(&healthy.tp, 1, &[b"a", b"b", b"c"]);

    let halted = bombed.start(None);
    let running = healthy.start(None);
    let result = tokio::time::timeout(Duration::from_secs(600), halted).await;
    let result = result.expect("the bombed partition halts").expect("no panic");
    match result {
        Err(Error::BatchTooLarge {
            ref topic,
            partition: 1,
            offset: 0,
            compressed,
            cap: c,
        }) if topic == "spans" && c == cap && compressed < 64 << 10 => {}
        other => panic!("expected BatchTooLarge for spans/1 at offset 0: {other:?}"),
    }
    let text = result.expect_err("halted").to_string();
    assert!(
        text.contains("spans/1 at offset 0") && text.contains(&cap.to_string()),
        "{text}"
    );
    assert_eq!(
        bombed.target.end(&bombed.tp),
        0,
        "nothing of the bombed partition was written"
    );

    // The other partition replicates, before and after the halt.
    healthy.until_target_end(3).await;
    healthy.source.append(&healthy.tp, 1, &[b"d", b"e"]);
    healthy.until_target_end(5).await;
    assert_eq!(
        healthy.target_values(),
        vec![b"a".to_vec(), b"b".into(), b"c".into(), b"d".into(), b"e".into()]
    );
    healthy.stop(running).await.expect("clean stop");
    // The halted partition gave back what it reserved for the bomb.
    healthy.assert_memory_back();
}

#[tokio::test(start_paused = true)]
async fn a_slice_of_a_shared_response_is_counted_whole_until_it_is_dropped() {
    const RESPONSE: usize = 1 << 20;
    let rig = Rig::new(OnForeignWriter::Halt);
    rig.source.answer_in_responses_of(RESPONSE);
    rig.source.append(&rig.tp, 1, &[b"a", b"b", b"c"]);
    let (tx, mut rx) = mpsc::channel(2);
    let source = Arc::clone(&rig.source);
    let fetcher = Fetcher::new(
        rig.tp.clone(),
        None,
        source,
        Arc::clone(&rig.settings),
        rig.cancel.clone(),
        0,
        tx,
    );
    let run = tokio::spawn(fetcher.run());
    let Some(Ok(Fetched::Records(chunk))) = rx.recv().await.map(|m| *m) else {
        panic!("no records");
    };
    // The premise: a few bytes of records, a slice of a 1 MiB response.
    assert_eq!(chunk.records.len(), 3);
    let slice = chunk.records[0].value.as_ref().map_or(0, Bytes::len);
    assert_eq!(slice, 1);
    let held = |rig: &Rig| MEMORY_UNITS as usize - rig.settings.buffer.available_permits();
    assert!(
        held(&rig) >= RESPONSE / BUFFER_UNIT,
        "the chunk holds {} units, less than the whole response it pins",
        held(&rig)
    );
    drop(chunk);
    // Only the next fetch's small reservation is left.
    assert!(
        held(&rig) < RESPONSE / BUFFER_UNIT / 2,
        "{} units still held",
        held(&rig)
    );
    rig.cancel.cancel();
    run.await.expect("no panic");
    rig.assert_memory_back();
}
