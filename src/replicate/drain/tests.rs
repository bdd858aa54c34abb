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
    assert_eq!(total_drain_eta_secs(&lags(&[(0, 590)]), &m.rates(), None), None);
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
    assert_eq!(total_drain_eta_secs(&lags(&[(0, 500), (1, 500)]), &r, None), Some(5.0));
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
    assert_eq!(drain_model(&mut [p, p], cost, 100.0), Some(6.0));
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
    let eta = drain_model(&mut deep, records_only, 100_000.0).expect("draining");
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
    let modelled = drain_model(&mut partitions, SPANS, 225_000.0).expect("draining");
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
    let total = total_drain_eta_secs(&lag, &rates, None).expect("draining");
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
    assert_eq!(m.small_batch(), None, "one sample is no window");
    m.sample(secs(10), sent(0..100, 1, 1, SPANS));
    assert_eq!(m.small_batch(), None, "10 s of a 30 s window is too short to say");
    m.sample(secs(30), sent(0..100, 1, 1, SPANS));
    let small = m.small_batch().expect("100 one-record batches seen");
    assert_eq!(small.records, 1.0);
    assert_eq!(small.wire_bytes, SPANS.batch(1.0));
    // Cut, then a drain of full batches only: what was measured stays.
    m.sample(secs(60), sent(0..100, 1, 1, SPANS));
    for s in 0..40 {
        m.sample(secs(100 + s), sent(0..100, 1 + s, 20, SPANS));
    }
    assert_eq!(m.small_batch(), Some(small));
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
    assert_eq!(m.small_batch(), Some(small));
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

#[test]
fn with_full_batches_only_the_anchor_gives_the_drain_the_real_cost_gives() {
    // The real cost: 395 B a batch, 170 B a record. The window holds only 22-record
    // batches, so a fit alone puts all of it on the records (188 B each) and the end of the
    // drain, where batches shrink to a record or two, at less than it costs.
    let real = BatchCost {
        per_batch: 395.0,
        per_record: 170.0,
    };
    let (mut rates, mut lag) = (BTreeMap::new(), BTreeMap::new());
    for i in 0..2_000 {
        let r = DrainRate {
            growth_per_sec: 0.02,
            ..sending(real, 0.05, 22.0)
        };
        rates.insert(tp(i), r);
        lag.insert(tp(i), if i % 3 == 0 { 60 } else { 2 });
    }
    let wire: f64 = rates.values().map(|r| r.wire_bytes_per_sec).sum();
    let mut truth: Vec<Draining> = lag
        .values()
        .map(|&l| Draining {
            lag: l as f64,
            growth_per_sec: 0.02,
            batch: 22.0,
        })
        .collect();
    let truth = drain_model(&mut truth, real, wire).expect("draining");
    let small = SmallBatch {
        records: 1.0,
        wire_bytes: real.batch(1.0),
    };
    let anchored = total_drain_eta_secs(&lag, &rates, Some(small)).expect("draining");
    let free = total_drain_eta_secs(&lag, &rates, None).expect("draining");
    assert!(
        (anchored - truth).abs() < truth * 0.01,
        "anchored {anchored} vs {truth}"
    );
    assert!(
        (free - truth).abs() > truth * 0.1,
        "free {free} vs {truth}: the premise"
    );
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
    assert_eq!(drain_model(&mut p, SPANS, 100_000.0), None);
    assert_eq!(drain_model(&mut p, SPANS, 0.0), None);
}
