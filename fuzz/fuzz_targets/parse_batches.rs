//! Fuzzes the read path of `strait::batch` with arbitrary fetch `records` bytes.
//!
//! The first byte picks the aborted-transactions list for `TxnFilter`; the rest is the fetch.
//! Nothing may panic, loop forever or allocate without bound; every yielded batch is parsed,
//! its control type read, its headers decoded, and its records merged into a builder.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use strait::batch::{batches, BatchBuilder, BuildOptions, TxnFilter};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, records)) = data.split_first() else {
        return;
    };
    let aborted = [(i64::from(selector & 0x0f), i64::from(selector >> 4))];
    let mut filter = TxnFilter::new(aborted);
    let mut builder = BatchBuilder::new(64 * 1024);
    let mut iter = batches(Bytes::copy_from_slice(records));
    for batch in iter.by_ref() {
        let Ok(batch) = batch else { break };
        let _ = batch.control_type();
        let _ = filter.keep(&batch);
        let Ok(parsed) = batch.records() else { continue };
        assert_eq!(parsed.len() as i64, i64::from(batch.header.record_count));
        for record in parsed {
            let _ = record.header_list();
            if let Err(record) = builder.try_push(record) {
                if !builder.is_empty() {
                    let _ = builder.finish(&BuildOptions::default());
                }
                let _ = builder.try_push(record);
            }
        }
    }
    assert!(iter.truncated_tail() <= records.len());
    if !builder.is_empty() {
        let built = builder.finish(&BuildOptions::default()).expect("uncompressed finish of pushed records");
        let reparsed: usize = batches(built.bytes)
            .map(|b| b.expect("own batch verifies").records().expect("own records parse").len())
            .sum();
        assert_eq!(reparsed, built.record_count as usize);
    }
});
