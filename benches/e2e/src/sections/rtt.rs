//! One partition over a long round trip: a backlog on a single source partition replicated to a
//! target behind an emulated link with ample bandwidth, once with the delay and once without it
//! on the same kind of link (the difference is the round trip's effect).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::report::verdict;
use super::{Report, MB};
use crate::corpus;
use crate::harness::{self, Broker, Link, Proc};
use crate::Cli;

pub(super) const S: &str = "one partition over a long round trip";
/// Source key+value MB/s one partition must sustain over the long round trip.
const TARGET_MB_PER_SEC: f64 = 40.0;
/// Seconds after the first replicated record that are not steady state (connections, the zstd
/// level's first adjustments).
const WARM_UP_SECS: f64 = 3.0;

/// The one-partition backlog as the source stores it.
struct Backlog {
    records: u64,
    /// Key + value bytes.
    payload: u64,
    /// Bytes of the stored (lz4) batches.
    stored: u64,
}

/// What one run measured over its steady state.
struct Run {
    secs: f64,
    drained: bool,
    records_per_sec: f64,
    wire_per_sec: f64,
    link_per_sec: f64,
    level: f64,
    strait_cores: f64,
    delay_line_cores: f64,
    produce_ms: f64,
    fetch_ms: f64,
    /// Produce requests answered per second.
    batches_per_sec: f64,
}

pub(super) async fn run(
    cli: &Cli,
    repo: &Path,
    bin: &Path,
    source: &Broker,
    logs: &Path,
    report: &mut Report,
) -> Result<()> {
    harness::require_root()?;
    let topic = "one";
    let (written, write_secs) = corpus::write(&source.bootstrap(), topic, 1, cli.rtt_corpus_mb as f64 * MB, 3).await?;
    let raw = corpus::fetch_all(&source.cluster(), topic, 1).await?;
    if raw.records != written {
        bail!("the source holds {} records of the {written} written", raw.records);
    }
    let backlog = Backlog {
        records: raw.records,
        payload: tokio::task::block_in_place(|| corpus::payload_bytes(&raw.batches[0]))?,
        stored: raw.stored_bytes,
    };
    drop(raw);
    report.add(
        S,
        "setup",
        format!("{:.1} MB key+value", backlog.payload as f64 / MB),
        format!(
            "{} span records in ONE partition ({:.1} MB of lz4 batches, written in {write_secs:.0} s); link {} \
             (tbf + TUN delay line), target broker inside the namespace, no budget",
            backlog.records,
            backlog.stored as f64 / MB,
            cli.rtt_link_rate
        ),
    );
    // Kafka's brokers fix their sockets' receive buffer at 100 KiB (socket.receive.buffer.bytes),
    // which caps one connection at about 100 KiB per round trip whatever the client does; -1
    // leaves it to the OS's autotuning, the setting for a target across a WAN.
    let runs = [
        (cli.rtt_delay_ms, true, "target socket.receive.buffer.bytes=-1"),
        (cli.rtt_delay_ms, false, "target broker's default socket buffers"),
        (0, true, "no delay"),
    ];
    for (delay, autotuned, what) in runs {
        let rtt = format!("{} ms RTT, {what}", 2 * delay);
        match measure(cli, repo, bin, source, topic, &backlog, delay, autotuned, logs).await {
            Ok(r) => {
                let kv = r.records_per_sec * backlog.payload as f64 / backlog.records as f64;
                let log = r.records_per_sec * backlog.stored as f64 / backlog.records as f64;
                let met = kv >= TARGET_MB_PER_SEC * MB;
                report.add(
                    S,
                    format!("{rtt}: source key+value at steady state"),
                    format!("{:.1} MB/s", kv / MB),
                    format!(
                        "{}; {:.0} s from {WARM_UP_SECS:.0} s after the first record{}; {:.0} records/s",
                        if delay > 0 {
                            verdict(met, "target >= 40 MB/s").to_string()
                        } else {
                            "the same kind of link without the delay".to_owned()
                        },
                        r.secs,
                        if r.drained { ", until the backlog drained" } else { "" },
                        r.records_per_sec
                    ),
                );
                report.add(
                    S,
                    format!("{rtt}: source log bytes"),
                    format!("{:.1} MB/s", log / MB),
                    "the lz4 batches as the source stores them",
                );
                report.add(
                    S,
                    format!("{rtt}: wire"),
                    format!("{:.1} MB/s", r.wire_per_sec / MB),
                    format!(
                        "strait_wire_bytes_total; {:.1} MB/s on the near TUN device incl. headers and fetch requests; zstd level {}",
                        r.link_per_sec / MB,
                        r.level
                    ),
                );
                report.add(
                    S,
                    format!("{rtt}: where the time goes"),
                    format!("produce {:.0} ms", r.produce_ms),
                    format!(
                        "mean produce round trip; {:.1} batches/s of {:.2} MB key+value each; mean fetch {:.0} ms; \
                         strait {:.2} cores, delay line {:.2} cores",
                        r.batches_per_sec,
                        kv / r.batches_per_sec / MB,
                        r.fetch_ms,
                        r.strait_cores,
                        r.delay_line_cores
                    ),
                );
            }
            Err(e) => report.na(S, rtt, format!("{e:#}")),
        }
    }
    Ok(())
}

/// One sample of the run: seconds since the start, then the counters.
#[derive(Clone, Copy, Default)]
struct Sample {
    t: f64,
    replicated: f64,
    wire: f64,
    link: f64,
    strait_cpu: f64,
    delay_line_cpu: f64,
    produce: (f64, f64),
    fetch: (f64, f64),
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    cli: &Cli,
    repo: &Path,
    bin: &Path,
    source: &Broker,
    topic: &str,
    backlog: &Backlog,
    delay: u32,
    autotuned: bool,
    logs: &Path,
) -> Result<Run> {
    let name = format!("rt{}{delay}{}", std::process::id() % 100_000, u8::from(autotuned));
    let link = Link::up(repo, &name, &cli.rtt_link_rate, delay)?;
    let delay_line = std::fs::read_to_string(format!("/tmp/strait-wan-{name}/pid"))
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        .context("no pid of the delay line")?;
    let extra: &[(&str, &str)] = if autotuned {
        &[
            ("socket.receive.buffer.bytes", "-1"),
            ("socket.send.buffer.bytes", "-1"),
        ]
    } else {
        &[]
    };
    let far = Broker::start_with(&format!("rtt{delay}"), Some(&name), &link.far, extra).await?;
    let http = harness::free_port()?;
    let prefix = format!("rtt{delay}{}.", u8::from(autotuned));
    let cmd = harness::strait_command(bin, &source.bootstrap(), &far.bootstrap(), topic, &prefix, http);
    let mut p = Proc::spawn(
        "strait (one partition)",
        cmd,
        &logs.join(format!("strait-rtt{delay}-{}.log", u8::from(autotuned))),
    )?;
    let ticks = harness::clock_ticks();
    let start = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut level;
    let mut drained = false;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        p.check_alive()?;
        let Ok((200, page)) = harness::http_get(http, "/metrics") else {
            continue;
        };
        let m = |n: &str| harness::metric_sum(&page, n);
        let s = Sample {
            t: start.elapsed().as_secs_f64(),
            replicated: m("strait_records_replicated_total"),
            wire: m("strait_wire_bytes_total"),
            link: link.tx()?.0 as f64,
            strait_cpu: harness::cpu_seconds(p.pid(), ticks)?,
            delay_line_cpu: harness::cpu_seconds(delay_line, ticks)?,
            produce: (
                m("strait_produce_latency_seconds_sum"),
                m("strait_produce_latency_seconds_count"),
            ),
            fetch: (
                m("strait_fetch_latency_seconds_sum"),
                m("strait_fetch_latency_seconds_count"),
            ),
        };
        level = m("strait_zstd_level");
        samples.push(s);
        if s.replicated >= backlog.records as f64 {
            drained = true;
            break;
        }
        let first = samples.iter().find(|s| s.replicated > 0.0).map(|s| s.t);
        match first {
            Some(t0) if s.t - t0 >= WARM_UP_SECS + cli.rtt_secs as f64 => break,
            None if s.t > 120.0 => bail!("strait replicated nothing in 120 s; log tail: {}", p.log_tail(8)),
            _ => {}
        }
    }
    let _ = tokio::task::block_in_place(|| p.stop(Duration::from_secs(5)));
    drop(far);
    drop(link);
    let Some(first) = samples.iter().find(|s| s.replicated > 0.0) else {
        bail!("nothing replicated");
    };
    let from = samples
        .iter()
        .find(|s| s.t >= first.t + WARM_UP_SECS)
        .copied()
        .context("the run ended within its warm-up")?;
    // The draining tail is not steady state: end at the last sample before 98% of the backlog.
    let to = samples
        .iter()
        .rev()
        .find(|s| s.replicated < 0.98 * backlog.records as f64)
        .copied()
        .filter(|s| s.t > from.t)
        .context("the backlog drained within the warm-up: write a larger one (--rtt-corpus-mb)")?;
    let dt = to.t - from.t;
    let mean_ms = |a: (f64, f64), b: (f64, f64)| {
        if b.1 > a.1 {
            (b.0 - a.0) / (b.1 - a.1) * 1000.0
        } else {
            f64::NAN
        }
    };
    Ok(Run {
        secs: dt,
        drained,
        records_per_sec: (to.replicated - from.replicated) / dt,
        wire_per_sec: (to.wire - from.wire) / dt,
        link_per_sec: (to.link - from.link) / dt,
        level,
        strait_cores: (to.strait_cpu - from.strait_cpu) / dt,
        delay_line_cores: (to.delay_line_cpu - from.delay_line_cpu) / dt,
        produce_ms: mean_ms(from.produce, to.produce),
        fetch_ms: mean_ms(from.fetch, to.fetch),
        batches_per_sec: (to.produce.1 - from.produce.1) / dt,
    })
}
