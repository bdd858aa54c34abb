//! Fresh spans first after a cut (issue 18, item 2): strait replicates a span topic to a target
//! behind the emulated link (50 ms round trip, `--catchup-link-rate`) under a budget, with
//! `catchup.mode = "fresh_first"`, while a producer writes spans timestamped now at a steady
//! rate. The link is cut for `--catchup-cut-secs`, then restored. Measured: the end-to-end
//! latency of the spans written from 10 s after the link's return until the backlog is drained
//! (librdkafka reads the target over the link's other direction, from where the target ended at
//! the cut, and takes the time it reads each record minus the record's timestamp: the link's
//! way back is included), the seconds the backlog took and the link's use over them (TCP payload
//! at the link against the budget, from the return to the last partition's backlog acknowledged
//! as strait logs it), and, as the premise, how many partitions split.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};
use strait_spans::{Encoding, SpanGenerator};

use super::probe::{first_reconnect_after, logged_after, partition_values, running, set_cut, status_total, watermarks};
use super::report::verdict;
use super::{Report, TCP_IP_HEADER};
use crate::harness::{self, Broker, Link, Proc};
use crate::Cli;

pub(super) const S: &str = "fresh first after a cut";
const TOPIC: &str = "fresh";
const TARGET_TOPIC: &str = "dc1.fresh";
/// Spans written this long after the link's return on must reach the target within
/// [`LATENCY_TARGET_SECS`].
const SETTLE_SECS: f64 = 10.0;
const LATENCY_TARGET_SECS: f64 = 2.0;
/// Share of the budget the whole drain must use.
const DRAIN_TARGET: f64 = 0.97;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Once `written` is set to 1, writes spans at `bytes_per_sec` of key+value, timestamped now,
/// round robin over the partitions, until `stop`; `written` counts them (from 1).
fn produce(
    bootstrap: String,
    partitions: i32,
    bytes_per_sec: f64,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
) -> Result<()> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "20")
        .create()
        .context("while creating the span producer")?;
    while written.load(Ordering::Relaxed) == 0 && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut g = SpanGenerator::new(29, chrono::Utc::now().timestamp_micros());
    let start = Instant::now();
    let mut bytes = 0f64;
    let mut i: i64 = 0;
    while !stop.load(Ordering::Relaxed) {
        if bytes >= start.elapsed().as_secs_f64() * bytes_per_sec {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let partition = (i % i64::from(partitions)) as i32;
        i += 1;
        let span = g.next_span();
        let key = span.key();
        let value = span.encode(Encoding::Protobuf);
        bytes += (key.len() + value.len()) as f64;
        let record: BaseRecord<'_, str, [u8]> = BaseRecord::to(TOPIC)
            .partition(partition)
            .key(key.as_str())
            .payload(value.as_slice())
            .timestamp(now_ms());
        crate::baseline::send(&producer, record)?;
        written.fetch_add(1, Ordering::Relaxed);
    }
    producer
        .flush(Duration::from_secs(30))
        .context("while flushing the span producer")?;
    Ok(())
}

/// What the reader of the target saw: for each record written at or after `since_ms`, its
/// timestamp and how long after it the record was read (ms).
#[derive(Default)]
struct Seen {
    latencies: Vec<(i64, i64)>,
    records: u64,
}

/// Reads `TARGET_TOPIC` on `bootstrap` from `from` (per partition) until `stop`.
fn read_target(
    bootstrap: String,
    from: BTreeMap<i32, i64>,
    since_ms: i64,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "strait-bench-fresh")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        .create()
        .context("while creating the target reader")?;
    let mut tpl = TopicPartitionList::new();
    for (p, offset) in &from {
        tpl.add_partition_offset(TARGET_TOPIC, *p, Offset::Offset(*offset))
            .context("while assigning the target reader")?;
    }
    consumer.assign(&tpl).context("while assigning the target reader")?;
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let read = now_ms();
                let ts = m.timestamp().to_millis().unwrap_or(0);
                let mut s = seen
                    .lock()
                    .map_err(|_| anyhow::anyhow!("the reader's lock is poisoned"))?;
                s.records += 1;
                if ts >= since_ms {
                    s.latencies.push((ts, read - ts));
                }
            }
            Some(Err(e)) => eprintln!("target reader: {e}"),
            None => {}
        }
    }
    Ok(())
}

/// The link's payload at `t` seconds from the return, interpolated between the samples of
/// `trace` around it (the last sample past the end).
fn payload_at(trace: &[(f64, f64)], t: f64) -> f64 {
    match trace.windows(2).find(|w| w[1].0 >= t) {
        Some(w) if w[1].0 > w[0].0 => w[0].1 + (w[1].1 - w[0].1) * (t - w[0].0).max(0.0) / (w[1].0 - w[0].0),
        Some(w) => w[1].1,
        None => trace.last().map_or(0.0, |s| s.1),
    }
}

/// The `q` quantile (0..=1) of `v` (sorted here).
fn quantile(v: &mut [i64], q: f64) -> Option<i64> {
    v.sort_unstable();
    let last = v.len().checked_sub(1)?;
    Some(v[((last as f64) * q).round() as usize])
}

pub(super) async fn run(cli: &Cli, repo: &Path, bin: &Path, logs: &Path, report: &mut Report) -> Result<()> {
    harness::require_root()?;
    let parts = cli.catchup_partitions.max(1);
    let source = Broker::start("frsrc", None, "127.0.0.1").await?;
    let name = format!("fr{}", std::process::id() % 100_000);
    let link = Link::up(repo, &name, &cli.catchup_link_rate, 25)?;
    let far = Broker::start("frdst", Some(&name), &link.far).await?;
    harness::create_topic(&source.cluster(), TOPIC, parts).await?;
    let budget = cli.catchup_budget_bytes_per_sec;
    report.add(
        S,
        "setup",
        format!("{parts} partitions, cut {} s", cli.catchup_cut_secs),
        format!(
            "spans written at {} kB/s key+value throughout; budget {budget} B/s; link {} with 25 ms each way; \
             catchup.mode fresh_first, catchup.fresh_after_secs {}",
            cli.catchup_source_kb_per_sec, cli.catchup_link_rate, cli.catchup_fresh_after_secs
        ),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let producer = {
        let (b, s, w) = (source.bootstrap(), stop.clone(), written.clone());
        let rate = cli.catchup_source_kb_per_sec as f64 * 1000.0;
        std::thread::spawn(move || produce(b, parts, rate, s, w))
    };
    let result = measure(cli, repo, bin, parts, &source, &far, &link, logs, report, &written).await;
    stop.store(true, Ordering::Relaxed);
    let produced = producer
        .join()
        .map_err(|_| anyhow::anyhow!("the span producer panicked"))?;
    result?;
    produced?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    cli: &Cli,
    repo: &Path,
    bin: &Path,
    parts: i32,
    source: &Broker,
    far: &Broker,
    link: &Link,
    logs: &Path,
    report: &mut Report,
    written: &AtomicU64,
) -> Result<()> {
    let budget = cli.catchup_budget_bytes_per_sec as f64;
    let http = harness::free_port()?;
    let mut cmd = harness::strait_command(bin, &source.bootstrap(), &far.bootstrap(), TOPIC, "dc1.", http);
    cmd.env(
        "STRAIT_BUDGET__BYTES_PER_SEC",
        cli.catchup_budget_bytes_per_sec.to_string(),
    )
    .env("STRAIT_CATCHUP__MODE", "fresh_first")
    .env(
        "STRAIT_CATCHUP__FRESH_AFTER_SECS",
        cli.catchup_fresh_after_secs.to_string(),
    );
    let mut p = Proc::spawn("strait (fresh first)", cmd, &logs.join("strait-catchup.log"))?;
    let tick = |d: u64| tokio::time::sleep(Duration::from_millis(d));
    let max = Duration::from_secs(cli.cut_max_drain_secs);

    // Every partition running, then the producer starts, then caught up for 20 s.
    let t0 = Instant::now();
    loop {
        tick(1000).await;
        p.check_alive()?;
        if let Ok((_, status)) = harness::http_get(http, "/status") {
            if running(&status) >= parts as usize {
                break;
            }
        }
        if t0.elapsed() > max {
            bail!("strait did not have all {parts} partitions running in {max:?}");
        }
    }
    written.store(1, Ordering::Relaxed);
    let t1 = Instant::now();
    loop {
        tick(1000).await;
        p.check_alive()?;
        let status = harness::http_get(http, "/status").map(|(_, b)| b).unwrap_or_default();
        let rate = written.load(Ordering::Relaxed) as f64 / t1.elapsed().as_secs_f64();
        let lag = status_total(&status, "lag_records");
        if lag.is_some_and(|l| l <= rate) && t1.elapsed() > Duration::from_secs(20) {
            break;
        }
        if t1.elapsed() > max {
            bail!("strait did not catch up before the cut; log tail: {}", p.log_tail(8));
        }
    }
    let records_per_sec = written.load(Ordering::Relaxed) as f64 / t1.elapsed().as_secs_f64();
    // Where the target ends at the cut (nothing lands while it lasts).
    let (_, target_before) = watermarks(&far.bootstrap(), TARGET_TOPIC, parts)?;
    let from: BTreeMap<i32, i64> = {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", far.bootstrap())
            .create()
            .context("while creating a watermark reader")?;
        let mut from = BTreeMap::new();
        for part in 0..parts {
            let (_, hi) = c
                .fetch_watermarks(TARGET_TOPIC, part, Duration::from_secs(30))
                .context("while reading the target's ends")?;
            from.insert(part, hi);
        }
        from
    };

    set_cut(repo, link, true)?;
    tick(cli.catchup_cut_secs * 1000).await;
    p.check_alive()?;
    let (_, source_at_heal) = watermarks(&source.bootstrap(), TOPIC, parts)?;
    set_cut(repo, link, false)?;
    let heal = Instant::now();
    let heal_ms = now_ms();
    let heal_wall = chrono::Utc::now();
    let payload = |(bytes, packets): (u64, u64)| bytes.saturating_sub(TCP_IP_HEADER * packets) as f64;
    let link_at_heal = payload(link.tx()?);
    // The link's payload every 0.1 s of the drain, seconds from the return.
    let mut trace = vec![(0.0, link_at_heal)];

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let reader = {
        let (b, s, seen) = (far.bootstrap(), stop.clone(), seen.clone());
        std::thread::spawn(move || read_target(b, from, heal_ms, s, seen))
    };
    // Drained: every partition in one range again, and the lag under 2 s of production.
    let mut split_seen = 0usize;
    let mut ticks = 0u64;
    let drained = loop {
        tick(100).await;
        trace.push((heal.elapsed().as_secs_f64(), payload(link.tx()?)));
        ticks += 1;
        if !ticks.is_multiple_of(5) {
            continue;
        }
        p.check_alive()?;
        let status = harness::http_get(http, "/status").map(|(_, b)| b).unwrap_or_default();
        let splits = partition_values(&status, "catchup_split");
        split_seen = split_seen.max(splits.iter().filter(|s| s.is_some()).count());
        let one_range = splits.len() == parts as usize && splits.iter().all(Option::is_none);
        let lag = status_total(&status, "lag_records");
        if one_range && split_seen > 0 && lag.is_some_and(|l| l <= 2.0 * records_per_sec) {
            break Some(heal.elapsed().as_secs_f64());
        }
        if heal.elapsed() > max {
            break None;
        }
    };
    let end_ms = now_ms();
    // Spans written up to the drain's end get up to 5 s more to arrive.
    tick(5000).await;
    stop.store(true, Ordering::Relaxed);
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("the target reader panicked"))??;
    p.stop(Duration::from_secs(30));
    // The drain's end as strait logged it: the last partition's backlog acknowledged up to the
    // split (its sink stops for the merge). The poll above sees that up to half a second late
    // plus `/status`'s refresh, and would count the time between, when the link carries new
    // spans only, as drain time.
    let logged_end = logged_after(
        &p.log,
        heal_wall,
        &["reconciling both ranges", "the backlog is drained"],
    )
    .last()
    .copied()
    .filter(|&end| drained.is_some_and(|polled| end <= polled));

    let seen = seen
        .lock()
        .map_err(|_| anyhow::anyhow!("the reader's lock is poisoned"))?;
    let settle_ms = heal_ms + (SETTLE_SECS * 1000.0) as i64;
    let mut settled: Vec<i64> = seen
        .latencies
        .iter()
        .filter(|(ts, _)| (settle_ms..end_ms).contains(ts))
        .map(|(_, l)| *l)
        .collect();
    let mut early: Vec<i64> = seen
        .latencies
        .iter()
        .filter(|(ts, _)| *ts < settle_ms)
        .map(|(_, l)| *l)
        .collect();
    let p99 = quantile(&mut settled, 0.99);
    let p50 = quantile(&mut settled, 0.5);
    let early_p99 = quantile(&mut early, 0.99);
    let backlog = source_at_heal - target_before;
    report.add(
        S,
        "p99 end-to-end latency of new spans, from 10 s after the return",
        p99.map_or("none read".to_owned(), |l| format!("{:.2} s", l as f64 / 1000.0)),
        format!(
            "{}; {} spans written from 10 s after the return to the drain's end, read on the target by librdkafka \
             (read time minus record timestamp, over the link's way back); p50 {}; spans of the first 10 s: p99 {}; \
             {split_seen} of {parts} partitions split (the premise)",
            verdict(
                p99.is_some_and(|l| l as f64 / 1000.0 <= LATENCY_TARGET_SECS) && split_seen > 0,
                "target <= 2 s while the backlog drains"
            ),
            settled.len(),
            p50.map_or("-".to_owned(), |l| format!("{:.2} s", l as f64 / 1000.0)),
            early_p99.map_or("-".to_owned(), |l| format!("{:.2} s", l as f64 / 1000.0)),
        ),
    );
    match drained {
        Some(polled) => {
            let polled_share = (payload_at(&trace, polled) - link_at_heal) / polled / budget;
            let (secs, use_share) = match logged_end {
                Some(end) => (end, (payload_at(&trace, end) - link_at_heal) / end / budget),
                None => (polled, polled_share),
            };
            report.add(
                S,
                "link use from the return to the drain's end",
                format!("{:.1}% of budget", use_share * 100.0),
                format!(
                    "{}; TCP payload at the link over {secs:.1} s, to {}; to the drain seen on /status ({polled:.1} s): \
                     {:.1}%; backlog {backlog} records at the return ({records_per_sec:.0} spans/s written \
                     throughout); {} records read back",
                    verdict(use_share >= DRAIN_TARGET, "target >= 97%"),
                    if logged_end.is_some() {
                        "the last backlog acknowledged (strait's log)"
                    } else {
                        "the drain seen on /status (no end in strait's log)"
                    },
                    polled_share * 100.0,
                    seen.records
                ),
            );
        }
        None => report.add(
            S,
            "link use from the return to the drain's end",
            "not drained",
            format!("{} s after the return; log tail: {}", max.as_secs(), p.log_tail(6)),
        ),
    }
    // Where the drain's share of the budget goes: the return (before the first connection),
    // and each second of the drain.
    let reconnected = first_reconnect_after(&p.log, heal_wall);
    let last = logged_end.or(drained).unwrap_or(0.0);
    let per_sec: Vec<String> = (1..=last.ceil() as u32)
        .map(|k| {
            let (from, to) = (f64::from(k - 1), f64::from(k).min(last));
            let bytes = payload_at(&trace, to) - payload_at(&trace, from);
            format!("{:.0}", bytes / (to - from).max(1e-3) / budget * 100.0)
        })
        .collect();
    report.add(
        S,
        "link use after the return, per second",
        reconnected.map_or("no connection logged".to_owned(), |s| {
            format!("first target connection {s:.2} s after the return")
        }),
        format!(
            "% of budget in each second from the return to the drain's end (TCP payload at the link, read every 0.1 s): {}",
            per_sec.join(" ")
        ),
    );
    Ok(())
}
