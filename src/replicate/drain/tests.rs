use super::*;

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("spans", p)
}

fn at(pairs: &[(i32, i64, i64)]) -> Positions {
    pairs
        .iter()
        .map(|&(p, next, high_watermark)| {
            let mark = Mark {
                next,
                high_watermark,
                ..Mark::default()
            };
            (tp(p), mark)
        })
        .collect()
}

fn lags(pairs: &[(i32, i64)]) -> BTreeMap<TopicPartition, i64> {
    pairs.iter().map(|&(p, lag)| (tp(p), lag)).collect()
}

/// A partition's rates when its batches of `batch` records cost `cost` each.
fn sending(cost: BatchCost, batches_per_sec: f64, batch: f64) -> DrainRate {
    DrainRate {
        records_per_sec: batches_per_sec * batch,
        batches_per_sec,
        wire_bytes_per_sec: batches_per_sec * (cost.per_batch + cost.per_record * batch),
        ..DrainRate::default()
    }
}

const SPANS: BatchCost = BatchCost {
    per_batch: 350.0,
    per_record: 140.0,
};

#[test]
fn the_eta_is_the_lag_over_the_net_rate_not_the_replication_rate() {
    // The source grows by 100 records/s, strait replicates 300/s: the 20,000-record lag
    // shrinks by 200/s and is gone in 100 s, not the 66.7 s the replication rate promises.
    let t0 = Instant::now();
    let mut m = DrainMeter::new(DRAIN_WINDOW);
    let (mut next, mut hwm) = (0i64, 20_000i64);
    for s in 0..=40u64 {
        m.sample(t0 + Duration::from_secs(s), at(&[(0, next, hwm)]));
        next += 300;
        hwm += 100;
    }
    let r = m.rates()[&tp(0)];
    assert_eq!((r.replicated_per_sec, r.growth_per_sec), (300.0, 100.0));
    let (next, hwm) = (next - 300, hwm - 100);
    let lag = hwm - next;
    let eta = drain_eta_secs(lag, r.net_per_sec()).expect("draining");
    assert_eq!(eta, lag as f64 / 200.0);
    // Follow the model to its end: the ETA says when the lag reaches 0.
    let steps = (lag as f64 / 200.0).ceil() as i64;
    assert_eq!(hwm + 100 * steps - (next + 300 * steps), 0);
    assert!(drain_eta_secs(lag, r.replicated_per_sec).expect("moving") < eta * 0.7);
}

#[test]
fn a_stale_high_watermark_s_jump_leaves_the_window() {
    // During an outage the high watermark was last seen at 1,000; the first fetch after
    // the link returns sees 61,000. Within the window that jump reads as growth; a window
    // later only the steady growth of 100/s is left.
    let t0 = Instant::now();
    let mut m = DrainMeter::new(DRAIN_WINDOW);
    m.sample(t0, at(&[(0, 1_000, 1_000)]));
    let mut hwm = 61_000;
    let mut next = 1_000;
    for s in 1..=60u64 {
        m.sample(t0 + Duration::from_secs(s), at(&[(0, next, hwm)]));
        next += 500;
        hwm += 100;
    }
    let r = m.rates()[&tp(0)];
    assert_eq!(r.growth_per_sec, 100.0);
    assert_eq!(r.net_per_sec(), 400.0);
}

#[test]
fn no_eta_while_the_lag_does_not_shrink_and_zero_when_caught_up() {
    assert_eq!(drain_eta_secs(0, 0.0), Some(0.0));
    assert_eq!(drain_eta_secs(500, 0.0), None);
    assert_eq!(drain_eta_secs(500, -50.0), None);
    assert_eq!(drain_eta_secs(500, 50.0), Some(10.0));
    // Cut off: nothing replicated while the source grows.
    let t0 = Instant::now();
    let mut m = DrainMeter::new(DRAIN_WINDOW);
    m.sample(t0, at(&[(0, 10, 100)]));
    m.sample(t0 + Duration::from_secs(10), at(&[(0, 10, 600)]));
    assert_eq!(
        total_drain_eta_secs(&lags(&[(0, 590)]), &m.rates(), BatchesSeen::default()),
        None
    );
}

#[test]
fn the_total_eta_sums_lags_and_net_rates_and_skips_partitions_new_in_the_window() {
    let t0 = Instant::now();
    let mut m = DrainMeter::new(DRAIN_WINDOW);
    m.sample(t0, at(&[(0, 0, 1_000), (1, 0, 2_000)]));
    m.sample(
        t0 + Duration::from_secs(10),
        at(&[(0, 1_000, 1_500), (1, 2_000, 2_500), (2, 0, 1_000_000)]),
    );
    let r = m.rates();
    assert!(!r.contains_key(&tp(2)), "a new partition has no rate yet");
    // Net: 50/s + 150/s = 200/s for a lag of 500 + 500.
    assert_eq!(
        total_drain_eta_secs(&lags(&[(0, 500), (1, 500)]), &r, BatchesSeen::default()),
        Some(5.0)
    );
}

#[test]
fn the_fit_tells_the_cost_of_a_batch_from_the_cost_of_a_record() {
    let rates = [
        sending(SPANS, 0.1, 1.0),
        sending(SPANS, 0.2, 2.0),
        sending(SPANS, 0.05, 9.0),
        sending(SPANS, 3.0, 500.0),
    ];
    let fit = BatchCost::fit(&rates).expect("batches were sent");
    assert!((fit.per_batch - 350.0).abs() < 1e-6, "{fit:?}");
    assert!((fit.per_record - 140.0).abs() < 1e-6, "{fit:?}");
    // Batches all alike: the parts cannot be told apart, so all of it is per record.
    let alike = [sending(SPANS, 0.1, 9.0), sending(SPANS, 0.3, 9.0)];
    let fit = BatchCost::fit(&alike).expect("batches were sent");
    assert_eq!(fit.per_batch, 0.0);
    assert!((fit.per_record - (350.0 / 9.0 + 140.0)).abs() < 1e-6, "{fit:?}");
    assert_eq!(BatchCost::fit(&[DrainRate::default()]), None, "nothing sent");
}

#[test]
fn rounds_of_one_batch_a_partition_add_up_to_every_batch_s_cost_over_the_link() {
    // Two partitions of 10 records, batches of 5, 100 B a batch + 10 B a record, 100 B/s,
    // nothing new: 4 batches of 150 B, 6 s.
    let cost = BatchCost {
        per_batch: 100.0,
        per_record: 10.0,
    };
    let p = Draining {
        lag: 10.0,
        growth_per_sec: 0.0,
        batch: 5.0,
    };
    assert_eq!(drain_model(&mut [p, p], &cost, 100.0), Some(6.0));
    // Without a cost per batch, one deep partition drains at the linear rate: 10,000
    // records at 1,000/s on the link less 200/s new is 12.5 s.
    let records_only = BatchCost {
        per_batch: 0.0,
        per_record: 100.0,
    };
    let mut deep = [Draining {
        lag: 10_000.0,
        growth_per_sec: 200.0,
        batch: 100.0,
    }];
    let eta = drain_model(&mut deep, &records_only, 100_000.0).expect("draining");
    assert!((eta - 12.5).abs() < 0.25, "{eta}");
}

#[test]
fn thousands_of_partitions_with_a_few_records_each_drain_slower_than_the_rate_now_says() {
    // As measured after a cut: 5,000 partitions 12 records behind, 9-record batches, 250
    // new records/s in all, the link carrying 225 kB/s. The records/s the link carries now
    // (9-record batches) put the end at ~60 s; as the batches shrink to what arrives in a
    // round, each record costs up to 490 B instead of 179 B.
    let p = Draining {
        lag: 12.0,
        growth_per_sec: 0.05,
        batch: 9.0,
    };
    let mut partitions = vec![p; 5_000];
    let rate_now = 225_000.0 / (SPANS.per_batch / 9.0 + SPANS.per_record);
    let linear = drain_eta_secs(60_000, rate_now - 250.0).expect("draining");
    let modelled = drain_model(&mut partitions, &SPANS, 225_000.0).expect("draining");
    assert!((55.0..65.0).contains(&linear), "{linear}");
    assert!(modelled > linear * 1.25, "modelled {modelled} vs linear {linear}");
    // It ends: the lag left is what arrives while the link carries it.
    let left: f64 = partitions.iter().map(|p| p.lag).sum();
    assert!(left < 250.0 * 2.0, "{left}");
    // The same through the window's rates: the cost is fitted from batches of two sizes,
    // the full batch is the larger (nine records), the link's rate is their sum.
    let mut rates = BTreeMap::new();
    let mut lag = BTreeMap::new();
    for i in 0..5_000 {
        let r = DrainRate {
            growth_per_sec: 0.05,
            ..sending(SPANS, 225_000.0 / 5_000.0 / 1_540.0, if i % 2 == 0 { 9.0 } else { 8.0 })
        };
        rates.insert(tp(i), r);
        lag.insert(tp(i), 12);
    }
    let total = total_drain_eta_secs(&lag, &rates, BatchesSeen::default()).expect("draining");
    assert!((total - modelled).abs() < modelled * 0.1, "{total} vs {modelled}");
}

/// Marks of partitions each having sent `batches` batches of `records` records at `cost`.
fn sent(parts: std::ops::Range<i32>, batches: u64, records: u64, cost: BatchCost) -> Positions {
    parts
        .map(|p| {
            let mark = Mark {
                records: batches * records,
                batches,
                wire_bytes: (batches as f64 * cost.batch(records as f64)).round() as u64,
                ..Mark::default()
            };
            (tp(p), mark)
        })
        .collect()
}

#[test]
fn the_small_batches_cost_is_learnt_while_caught_up_and_kept_through_a_drain() {
    let t0 = Instant::now();
    let mut m = DrainMeter::new(DRAIN_WINDOW);
    let secs = |s: u64| t0 + Duration::from_secs(s);
    // Caught up: 100 partitions send a one-record batch each every 30 s.
    m.sample(secs(0), sent(0..100, 0, 1, SPANS));
    assert_eq!(m.batches_seen().small, None, "one sample is no window");
    m.sample(secs(10), sent(0..100, 1, 1, SPANS));
    assert_eq!(
        m.batches_seen().small,
        None,
        "10 s of a 30 s window is too short to say"
    );
    m.sample(secs(30), sent(0..100, 1, 1, SPANS));
    let small = m.batches_seen().small.expect("100 one-record batches seen");
    assert_eq!(small.records, 1.0);
    assert_eq!(small.wire_bytes, SPANS.batch(1.0));
    // Cut, then a drain of full batches only: what was measured stays.
    m.sample(secs(60), sent(0..100, 1, 1, SPANS));
    for s in 0..40 {
        m.sample(secs(100 + s), sent(0..100, 1 + s, 20, SPANS));
    }
    assert_eq!(m.batches_seen().small, Some(small));
    // Too few small batches in a window do not replace it.
    let mut few = sent(0..100, 40, 20, SPANS);
    few.extend(sent(
        100..110,
        1,
        1,
        BatchCost {
            per_batch: 0.0,
            per_record: 1.0,
        },
    ));
    m.sample(secs(200), few.clone());
    let mut later = few;
    later.extend(sent(
        100..110,
        2,
        1,
        BatchCost {
            per_batch: 0.0,
            per_record: 1.0,
        },
    ));
    m.sample(secs(240), later);
    assert_eq!(m.batches_seen().small, Some(small));
}

#[test]
fn anchored_on_the_small_batches_cost_the_fit_predicts_both_ends() {
    // As measured in a drain after a cut: batches of 10-24 records fitted 534 B a batch
    // and 164 B a record, so a one-record batch at 698 B, where it cost 565 B.
    let window = BatchCost {
        per_batch: 534.0,
        per_record: 164.0,
    };
    let rates: Vec<DrainRate> = (0..50)
        .map(|i| sending(window, 0.2, if i % 2 == 0 { 10.0 } else { 22.0 }))
        .collect();
    let free = BatchCost::fit(&rates).expect("batches");
    assert!((free.batch(1.0) - 698.0).abs() < 1.0, "{free:?}");
    let small = SmallBatch {
        records: 1.0,
        wire_bytes: 565.0,
    };
    let anchored = BatchCost::fit_anchored(&rates, small).expect("batches");
    assert!((anchored.batch(1.0) - 565.0).abs() < 1e-6, "{anchored:?}");
    for n in [10.0, 22.0] {
        let (fit, real) = (anchored.batch(n), window.batch(n));
        assert!((fit - real).abs() < real * 0.03, "{n} records: {fit} vs {real}");
    }
    // An anchor the window contradicts (a small batch dearer than the full ones allow) is
    // not used.
    let dear = SmallBatch {
        records: 1.0,
        wire_bytes: 5_000.0,
    };
    assert_eq!(BatchCost::fit_anchored(&rates, dear), Some(free));
}

/// What batches of span records cost, measured: the mean size of batches of `n` records for
/// each `n` of `sizes`, encoded as strait writes them (zstd level 19, an idempotent producer's
/// header), from the demo generator's spans dealt round robin over 5,032 partitions as the cut
/// bench writes them (so a partition's records are every 5,032nd span).
fn span_batch_costs(sizes: &[usize]) -> Vec<(f64, f64)> {
    use crate::batch::{encode_batch, BuildOptions, Compression, Record};
    use strait_spans::{Encoding, SpanGenerator};
    const SLOTS: usize = 5_032;
    const KEPT: usize = 12;
    const EACH: usize = 24;
    let mut g = SpanGenerator::new(11, 1_700_000_000_000_000);
    let mut partitions: Vec<Vec<Record>> = vec![Vec::new(); KEPT];
    for i in 0..SLOTS * EACH {
        let span = g.next_span();
        if let Some(records) = partitions.get_mut(i % SLOTS) {
            records.push(Record {
                offset: (i / SLOTS) as i64,
                timestamp: 1_700_000_000_000 + (i / 250) as i64,
                key: Some(bytes::Bytes::from(span.key().into_bytes())),
                value: Some(bytes::Bytes::from(span.encode(Encoding::Protobuf))),
                headers: bytes::Bytes::new(),
            });
        }
    }
    let opts = BuildOptions {
        compression: Compression::Zstd,
        zstd_level: 19,
        producer_id: 7,
        producer_epoch: 0,
        base_sequence: 0,
        transactional: false,
    };
    sizes
        .iter()
        .map(|&n| {
            let sizes: Vec<usize> = partitions
                .iter()
                .flat_map(|records| records.chunks_exact(n))
                .map(|batch| encode_batch(0, batch, &opts).expect("encodes").len())
                .collect();
            (n as f64, sizes.iter().sum::<usize>() as f64 / sizes.len() as f64)
        })
        .collect()
}

/// A cost read off measured points, straight between them (and past the last one).
struct Measured(Vec<(f64, f64)>);

impl Price for Measured {
    fn batch(&self, records: f64) -> f64 {
        let points = &self.0;
        if records < 1.0 {
            return records * points[0].1;
        }
        let i = points
            .iter()
            .position(|&(n, _)| n >= records)
            .unwrap_or(points.len() - 1)
            .max(1);
        let ((n0, c0), (n1, c1)) = (points[i - 1], points[i]);
        c0 + (c1 - c0) * (records - n0) / (n1 - n0)
    }
}

#[test]
fn the_power_through_both_ends_follows_what_spans_cost() {
    let measured = span_batch_costs(&[1, 2, 3, 4, 6, 8, 12, 16, 22]);
    let (one, full) = (measured[0], measured[measured.len() - 1]);
    let small = SmallBatch {
        records: one.0,
        wire_bytes: one.1,
    };
    let power = PowerCost::through(small, full.0, full.1).expect("a power fits");
    // The line through the same two points.
    let slope = (full.1 - one.1) / (full.0 - one.0);
    let line = BatchCost {
        per_batch: one.1 - slope,
        per_record: slope,
    };
    let mut worst_line: f64 = 0.0;
    for &(n, cost) in &measured {
        let by_power = power.batch(n);
        assert!(
            (by_power - cost).abs() <= cost * 0.06,
            "{n} records: {by_power:.0} B, measured {cost:.0}"
        );
        worst_line = worst_line.max((cost - line.batch(n)) / cost);
    }
    // The premise: the cost is not a line; batches between the ends cost more than it says.
    assert!(worst_line > 0.12, "the line is off by {worst_line:.3} at most");
}

#[test]
fn with_full_batches_only_the_anchors_give_the_drain_what_spans_cost() {
    // As in a cut's drain a minute after the return: 5,000 partitions 9-10 records behind,
    // each sending full batches of 22 records at what spans cost (the link carries 250 kB/s
    // of them), 240 new records/s in all; the small batches' cost known from before the cut.
    let truth = Measured(span_batch_costs(&[1, 2, 3, 4, 6, 8, 12, 16, 22]));
    let small = SmallBatch {
        records: 1.0,
        wire_bytes: truth.batch(1.0),
    };
    let (mut rates, mut lag) = (BTreeMap::new(), BTreeMap::new());
    for i in 0..5_000 {
        let r = DrainRate {
            growth_per_sec: 0.048,
            records_per_sec: 0.0125 * 22.0,
            batches_per_sec: 0.0125,
            wire_bytes_per_sec: 0.0125 * truth.batch(22.0),
            ..DrainRate::default()
        };
        rates.insert(tp(i), r);
        lag.insert(tp(i), 9 + i64::from(i % 5 == 0));
    }
    let wire: f64 = rates.values().map(|r| r.wire_bytes_per_sec).sum();
    let draining = || -> Vec<Draining> {
        lag.values()
            .map(|&l| Draining {
                lag: l as f64,
                growth_per_sec: 0.048,
                batch: 22.0,
            })
            .collect()
    };
    let real = drain_model(&mut draining(), &truth, wire).expect("draining");
    let priced = total_drain_eta_secs(
        &lag,
        &rates,
        BatchesSeen {
            small: Some(small),
            full_records: None,
        },
    )
    .expect("draining");
    assert!(
        (priced - real).abs() < real * 0.05,
        "priced {priced:.1} s vs {real:.1} s"
    );
    // The premise: a line through the same ends (or the window's fit alone) ends it early.
    let line = BatchCost::fit_anchored(rates.values(), small).expect("batches");
    let by_line = drain_model(&mut draining(), &line, wire).expect("draining");
    assert!(by_line < real * 0.92, "by a line {by_line:.1} s vs {real:.1} s");
    let free = total_drain_eta_secs(&lag, &rates, BatchesSeen::default()).expect("draining");
    assert!(free < real * 0.92, "by the window alone {free:.1} s vs {real:.1} s");
}

#[test]
fn the_full_batch_is_what_most_partitions_still_lagging_send_not_the_mean() {
    // 80 partitions whose lag ran out send 1-record batches, 20 still send 9: the mean
    // (2.6) would take the drain for the end of it.
    let mut rates: Vec<DrainRate> = (0..80).map(|_| sending(SPANS, 0.1, 1.0)).collect();
    rates.extend((0..20).map(|_| sending(SPANS, 0.1, 9.0)));
    assert_eq!(full_batch(&rates), Some(9.0));
    assert_eq!(full_batch(&[sending(SPANS, 0.1, 0.5)]), Some(1.0), "at least a record");
    assert_eq!(full_batch(&[DrainRate::default()]), None);
}

#[test]
fn no_eta_when_the_live_records_alone_outgrow_the_link() {
    // 1,000 new records/s at >= 140 B each need more than a 100 kB/s link.
    let mut p = [Draining {
        lag: 50_000.0,
        growth_per_sec: 1_000.0,
        batch: 500.0,
    }];
    assert_eq!(drain_model(&mut p, &SPANS, 100_000.0), None);
    assert_eq!(drain_model(&mut p, &SPANS, 0.0), None);
}

/// Positions of partitions `parts`, each having sent `records` records in `batches` batches
/// since the start, and `lag` records behind.
fn lagging(parts: std::ops::Range<i32>, batches: u64, records: u64, lag: i64) -> Positions {
    parts
        .map(|p| {
            let mark = Mark {
                next: records as i64,
                high_watermark: records as i64 + lag,
                records,
                batches,
                ..Mark::default()
            };
            (tp(p), mark)
        })
        .collect()
}

#[test]
fn the_full_batch_is_kept_from_a_drain_s_middle_through_its_end() {
    let t0 = Instant::now();
    let mut m = DrainMeter::new(DRAIN_WINDOW);
    let secs = |s: u64| t0 + Duration::from_secs(s);
    // Caught up: one-record batches.
    m.sample(secs(0), lagging(0..100, 0, 0, 0));
    m.sample(secs(30), lagging(0..100, 30, 30, 0));
    assert_eq!(m.batches_seen().full_records, Some(1.0));
    // Draining: 22-record batches.
    m.sample(secs(40), lagging(0..100, 30, 30, 500));
    m.sample(secs(70), lagging(0..100, 40, 250, 300));
    assert_eq!(m.batches_seen().full_records, Some(22.0));
    // The drain's end: the lag ran out, the window's batches shrink to 3 records.
    m.sample(secs(100), lagging(0..100, 50, 280, 1));
    m.sample(secs(120), lagging(0..100, 60, 310, 0));
    let shrunk = full_batch(m.rates().values()).expect("batches");
    assert!(shrunk < 5.0, "the premise: the window's batch shrank to {shrunk}");
    assert_eq!(m.batches_seen().full_records, Some(22.0), "kept");
    // Caught up again: a minute later the drain's batches no longer count.
    m.sample(secs(150), lagging(0..100, 90, 340, 0));
    assert_eq!(
        m.batches_seen().full_records,
        Some(3.0),
        "the end's windows still count"
    );
    m.sample(secs(180), lagging(0..100, 120, 370, 0));
    assert_eq!(m.batches_seen().full_records, Some(1.0));
}

#[test]
fn at_a_drain_s_end_the_partitions_still_far_behind_send_full_batches() {
    // 20 s before a cut's drain ends: most of 5,000 partitions have a record left, 50 are 60
    // behind; over the window the batches shrank to 2-3 records, while a partition still
    // behind sends 22 at a time.
    let (mut rates, mut lag) = (BTreeMap::new(), BTreeMap::new());
    for i in 0..5_000 {
        let r = DrainRate {
            growth_per_sec: 0.05,
            ..sending(SPANS, 0.05, if i % 2 == 0 { 2.0 } else { 3.0 })
        };
        rates.insert(tp(i), r);
        lag.insert(tp(i), if i < 50 { 60 } else { 1 });
    }
    let wire: f64 = rates.values().map(|r| r.wire_bytes_per_sec).sum();
    let mut truth: Vec<Draining> = lag
        .values()
        .map(|&l| Draining {
            lag: l as f64,
            growth_per_sec: 0.05,
            batch: 22.0,
        })
        .collect();
    let truth = drain_model(&mut truth, &SPANS, wire).expect("draining");
    let eta = |full_records| {
        let seen = BatchesSeen {
            small: None,
            full_records,
        };
        total_drain_eta_secs(&lag, &rates, seen).expect("draining")
    };
    let kept = eta(Some(22.0));
    assert!((kept - truth).abs() < truth * 0.05, "kept {kept:.1} s vs {truth:.1} s");
    let shrunk = eta(None);
    assert!(
        shrunk > truth * 1.3,
        "the premise: shrunk {shrunk:.1} s vs {truth:.1} s"
    );
}
