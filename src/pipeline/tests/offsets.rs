//! The offset map the ack stage records: every source offset translates to the target position
//! of the first kept record at or after it, across dropped records and a resume.

use super::*;
use crate::offsets::End;

fn translations(rig: &Rig, upto: i64) -> Vec<i64> {
    let at = rig.acked().at;
    let end = End {
        source: at.source,
        target: at.target,
    };
    let map = rig.tap.map();
    (0..upto).map(|o| map.translate(o, end).offset()).collect()
}

#[tokio::test(start_paused = true)]
async fn dropped_records_shift_the_translation_exactly() {
    let mut rig = Rig::new(OnForeignWriter::Halt);
    super::gaps::with_aborted_transactions(&rig);
    let task = rig.start(None);
    rig.until_acked(Position { source: 10, target: 5 }).await;
    rig.stop(task).await.expect("stopped cleanly");
    // Kept: source 0, 1, 2, 6, 7 at target 0..5; 3..6 and 8..10 are dropped.
    assert_eq!(translations(&rig, 11), vec![0, 1, 2, 3, 3, 3, 3, 4, 5, 5, 5]);
    let map = rig.tap.map();
    assert_eq!(map.len(), 2, "{:?}", map.runs().collect::<Vec<_>>());
}
