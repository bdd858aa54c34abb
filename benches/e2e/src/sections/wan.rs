//! The budget over an emulated WAN link, and end-to-end latency when not backlogged.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use super::report::verdict;
use super::{Report, MB, TCP_IP_HEADER};
use crate::corpus::Corpus;
use crate::harness::{self, Broker, Link, Proc};
use crate::Cli;

/// Budget utilization and overshoot over an emulated 50 ms link, then latency when caught up.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run(
    cli: &Cli,
    repo: &Path,
    bin: &Path,
    source: &Broker,
    corpus: &Corpus,
    logs: &Path,
    report: &mut Report,
    budget_ratio: &mut Option<(f64, f64)>,
) -> Result<()> {
    const S: &str = "budget over a 50 ms link";
    harness::require_root()?;
    let name = format!("sb{}", std::process::id() % 100_000);
    let link = Link::up(repo, &name, &cli.link_rate, 25)?;
    let far = Broker::start("wan", Some(&name), &link.far).await?;
    let budget = cli.budget_bytes_per_sec;
    report.add(
        S,
        "setup",
        format!("budget {budget} B/s"),
        format!(
            "link {} with 25 ms each way (tbf + TUN delay line), target broker inside the namespace; counter: tx of {}",
            cli.link_rate, link.near_dev
        ),
    );

    // Backlogged: the whole corpus waits on the source.
    let http = harness::free_port()?;
    let mut cmd = harness::strait_command(bin, &source.bootstrap(), &far.bootstrap(), "spans", "wan.", http);
    cmd.env("STRAIT_BUDGET__BYTES_PER_SEC", budget.to_string());
    let (bytes0, packets0) = link.tx()?;
    let mut p = Proc::spawn("strait (budget)", cmd, &logs.join("strait-budget.log"))?;
    let start = Instant::now();
    let mut samples: Vec<(f64, u64, u64)> = vec![(0.0, bytes0, packets0)];
    let mut first_byte: Option<usize> = None;
    let mut last_scrape = Instant::now();
    let mut drained = false;
    let mut page = String::new();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Err(e) = p.check_alive() {
            report.problem(format!("budgeted run: {e:#}"));
            return Err(e);
        }
        let (b, k) = link.tx()?;
        samples.push((start.elapsed().as_secs_f64(), b, k));
        if first_byte.is_none() && b > bytes0 {
            first_byte = Some(samples.len() - 2);
        }
        if last_scrape.elapsed() >= Duration::from_secs(1) {
            last_scrape = Instant::now();
            if let Ok((200, body)) = harness::http_get(http, "/metrics") {
                let replicated = harness::metric_sum(&body, "strait_records_replicated_total");
                page = body;
                if replicated >= corpus.records as f64 {
                    drained = true;
                    break;
                }
            }
        }
        if let Some(i) = first_byte {
            if samples[samples.len() - 1].0 - samples[i].0 >= cli.budget_secs as f64 {
                break;
            }
        }
        if first_byte.is_none() && start.elapsed() > Duration::from_secs(60) {
            bail!("strait sent nothing over the link in 60 s; log tail: {}", p.log_tail(8));
        }
    }
    if let Ok((200, body)) = harness::http_get(http, "/metrics") {
        page = body;
    }
    let _ = tokio::task::block_in_place(|| p.stop(Duration::from_secs(5)));
    let Some(i0) = first_byte else {
        bail!("no byte crossed the link");
    };
    let s = &samples[i0..];
    let (t0, b0, k0) = s[0];
    let Some(&(t1, b1, k1)) = s.last() else {
        bail!("no samples");
    };
    let payload = |b: u64, k: u64, b_: u64, k_: u64| (b_ - b).saturating_sub(TCP_IP_HEADER * (k_ - k)) as f64;
    let dt = t1 - t0;
    let util_raw = (b1 - b0) as f64 / (budget as f64 * dt);
    let util_payload = payload(b0, k0, b1, k1) / (budget as f64 * dt);
    report.add(
        S,
        "utilization from the first byte (TCP payload)",
        format!("{:.1}%", util_payload * 100.0),
        format!(
            "{}; {dt:.0} s; interface bytes minus {TCP_IP_HEADER} B/packet of IP+TCP headers{}",
            verdict(util_payload >= 0.97, "target >= 97%"),
            if drained { "; backlog drained early" } else { "" }
        ),
    );
    report.add(
        S,
        "utilization from the first byte (interface bytes incl. headers)",
        format!("{:.1}%", util_raw * 100.0),
        "tx_bytes of the near-side TUN device, sampled every 100 ms",
    );
    // Worst 10 s window, sliding by one sample.
    let mut worst_raw: f64 = 0.0;
    let mut worst_payload: f64 = 0.0;
    let mut windows = 0;
    let mut j = 0;
    for i in 0..s.len() {
        while j < s.len() && s[j].0 - s[i].0 < 10.0 {
            j += 1;
        }
        if j >= s.len() {
            break;
        }
        let w = s[j].0 - s[i].0;
        windows += 1;
        worst_raw = worst_raw.max((s[j].1 - s[i].1) as f64 / (budget as f64 * w));
        worst_payload = worst_payload.max(payload(s[i].1, s[i].2, s[j].1, s[j].2) / (budget as f64 * w));
    }
    if windows == 0 {
        report.na(S, "worst 10 s window", "measured less than 10 s");
    } else {
        report.add(
            S,
            "worst 10 s window (TCP payload)",
            format!("{:+.1}%", (worst_payload - 1.0) * 100.0),
            format!(
                "{}; {windows} windows sliding by 100 ms",
                verdict(worst_payload <= 1.02, "target <= +2%")
            ),
        );
        report.add(
            S,
            "worst 10 s window (interface bytes incl. headers)",
            format!("{:+.1}%", (worst_raw - 1.0) * 100.0),
            "",
        );
    }
    let wire = harness::metric_sum(&page, "strait_wire_bytes_total");
    let src = harness::metric_sum(&page, "strait_source_bytes_total");
    let level = harness::metric_sum(&page, "strait_zstd_level");
    if src > 0.0 {
        *budget_ratio = Some((wire / src, level));
        report.add(
            S,
            "strait's own wire counter over the same run",
            format!(
                "{:.1}% of budget",
                wire / (budget as f64 * start.elapsed().as_secs_f64()) * 100.0
            ),
            format!("{:.1} MB of spans replicated", src / MB),
        );
    }

    // Not backlogged: timestamped records at a low rate, read on the far side.
    match latency(cli, bin, source, &far, budget, logs).await {
        Ok((n, sent, p50, p99, max)) => report.add(
            S,
            "p99 end-to-end latency, not backlogged",
            format!("{p99:.0} ms"),
            format!(
                "{}; p50 {p50:.0} ms, max {max:.0} ms, {n}/{sent} records; record timestamp -> librdkafka read on the far side",
                verdict(p99 <= 1000.0, "target <= 1 s")
            ),
        ),
        Err(e) => report.na(S, "p99 end-to-end latency", format!("{e:#}")),
    }
    drop(far);
    drop(link);
    Ok(())
}

pub(super) async fn latency(
    cli: &Cli,
    bin: &Path,
    source: &Broker,
    far: &Broker,
    budget: u64,
    logs: &Path,
) -> Result<(usize, u64, f64, f64, f64)> {
    let src = source.cluster();
    harness::create_topic(&src, "lat", 1).await?;
    let http = harness::free_port()?;
    let mut cmd = harness::strait_command(bin, &source.bootstrap(), &far.bootstrap(), "lat", "wanlat.", http);
    cmd.env("STRAIT_BUDGET__BYTES_PER_SEC", budget.to_string());
    let mut p = Proc::spawn("strait (latency)", cmd, &logs.join("strait-latency.log"))?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", source.bootstrap())
        .set("linger.ms", "0")
        .set("acks", "all")
        .create()
        .context("while creating the latency producer")?;
    let now_ms = || chrono::Utc::now().timestamp_millis();
    let send = |key: &'static str| {
        let ts = now_ms();
        let payload = format!("{ts}");
        let producer = producer.clone();
        async move {
            producer
                .send(
                    FutureRecord::to("lat")
                        .partition(0)
                        .key(key)
                        .payload(&payload)
                        .timestamp(ts),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
                .context("latency produce")
        }
    };
    send("warm").await?;
    // Wait for strait to carry the first record (target topic created, connections up).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        p.check_alive()?;
        if let Ok((200, page)) = harness::http_get(http, "/metrics") {
            if harness::metric_sum(&page, "strait_records_replicated_total") >= 1.0 {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!(
                "strait did not replicate the first latency record in 60 s; log tail: {}",
                p.log_tail(8)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let far_bootstrap = far.bootstrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let reader = std::thread::spawn(move || -> Result<Vec<f64>> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", far_bootstrap)
            .set("group.id", "strait-e2e-latency")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "10")
            .create()
            .context("while creating the latency consumer")?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("wanlat.lat", 0, Offset::Beginning)?;
        consumer.assign(&tpl)?;
        let mut lat = Vec::new();
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(20)) {
                let read = chrono::Utc::now().timestamp_millis();
                if m.key() == Some(b"lat".as_slice()) {
                    if let Some(ts) = m.timestamp().to_millis() {
                        lat.push((read - ts) as f64);
                    }
                }
            }
        }
        Ok(lat)
    });
    let interval = Duration::from_micros(1_000_000 / cli.latency_rate.max(1));
    let mut tick = tokio::time::interval(interval);
    let mut sent = 0u64;
    let end = Instant::now() + Duration::from_secs(cli.latency_secs);
    let mut pending = tokio::task::JoinSet::new();
    while Instant::now() < end {
        tick.tick().await;
        pending.spawn(send("lat"));
        sent += 1;
    }
    while let Some(r) = pending.join_next().await {
        r.context("latency produce task panicked")??;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut lat = reader
        .join()
        .map_err(|_| anyhow::anyhow!("latency reader panicked"))??;
    let _ = tokio::task::block_in_place(|| p.stop(Duration::from_secs(5)));
    if lat.is_empty() {
        bail!("no latency record arrived on the far side");
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let q = |f: f64| lat[((lat.len() as f64 * f).ceil() as usize).clamp(1, lat.len()) - 1];
    Ok((lat.len(), sent, q(0.5), q(0.99), lat[lat.len() - 1]))
}
