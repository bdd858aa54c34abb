//! strait and the baseline mirrors, unthrottled on the same corpus, and the ratios between them.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::report::verdict;
use super::{Report, GB, MB, MIB};
use crate::baseline::Mirror;
use crate::corpus::{self, Corpus};
use crate::harness::{self, Broker, Proc};
use crate::Cli;

/// One mirror's figures over its measured interval.
#[derive(Debug, Clone, Copy)]
pub(super) struct MirrorFigures {
    pub(super) mb_per_sec: f64,
    pub(super) cpu_secs_per_gb: f64,
    pub(super) peak_rss_mib: f64,
    pub(super) moved: u64,
    pub(super) secs: f64,
    pub(super) completed: bool,
    /// Cores the mirror and the two brokers used over the measured interval.
    pub(super) mirror_cores: f64,
    pub(super) broker_cores: f64,
}

/// Runs one baseline mirror unless its `--skip-*` flag is set, and reports its figures.
/// `run` is [`run_baseline`] for `kind`, awaited only when the mirror is not skipped.
pub(super) async fn baseline(
    cli: &Cli,
    kind: Mirror,
    run: impl std::future::Future<Output = Result<MirrorFigures>>,
    report: &mut Report,
) -> Option<MirrorFigures> {
    let (short, long, flag, skip) = match kind {
        Mirror::Naive => (
            "naive rskafka mirror",
            "naive rskafka mirror (record by record)",
            "--skip-naive",
            cli.skip_naive,
        ),
        Mirror::Rdkafka => (
            "tuned librdkafka mirror",
            "tuned librdkafka mirror (1 MiB, linger 50 ms, zstd)",
            "--skip-rdkafka",
            cli.skip_rdkafka,
        ),
    };
    if skip {
        report.na("mirrors (unthrottled)", short, format!("skipped ({flag})"));
        return None;
    }
    match run.await {
        Ok(f) => {
            add_mirror(report, long, &f);
            Some(f)
        }
        Err(e) => {
            report.na("mirrors (unthrottled)", short, format!("{e:#}"));
            None
        }
    }
}

pub(super) fn add_mirror(report: &mut Report, name: &str, f: &MirrorFigures) {
    let note = if f.completed {
        format!("all {} records in {:.1} s", f.moved, f.secs)
    } else {
        format!(
            "stopped after {:.0} s with {} records moved (rate over that interval)",
            f.secs, f.moved
        )
    };
    report.add(
        "mirrors (unthrottled)",
        format!("{name}: source MB/s"),
        format!("{:.1} MB/s", f.mb_per_sec),
        note,
    );
    report.add(
        "mirrors (unthrottled)",
        format!("{name}: CPU-seconds per GB"),
        format!("{:.2} s/GB", f.cpu_secs_per_gb),
        "user+system of its own process, /proc/PID/stat",
    );
    report.add(
        "mirrors (unthrottled)",
        format!("{name}: cores used, mirror + both brokers"),
        format!("{:.2} + {:.2}", f.mirror_cores, f.broker_cores),
        format!(
            "of {} on this machine: where the time went (brokers and mirror share the cores)",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        ),
    );
    report.add(
        "mirrors (unthrottled)",
        format!("{name}: peak RSS"),
        format!("{:.1} MiB", f.peak_rss_mib),
        "VmHWM",
    );
}

/// Watches a mirror process fill `target_topic`: from the first record seen on the target to
/// the last (or `max_secs`), sampling its CPU at both ends.
pub(super) async fn measure(
    p: &mut Proc,
    brokers: [&Broker; 2],
    dst: &strait::kafka::Cluster,
    target_topic: &str,
    corpus: &Corpus,
    max_secs: u64,
) -> Result<MirrorFigures> {
    let ticks = harness::clock_ticks();
    let spawned = Instant::now();
    let mut first: Option<(Instant, i64, f64, f64)> = None;
    let broker_cpu = || -> Result<f64> {
        Ok(harness::cpu_seconds(brokers[0].pid(), ticks)? + harness::cpu_seconds(brokers[1].pid(), ticks)?)
    };
    let total = corpus.records as i64;
    loop {
        p.check_alive()?;
        let n = harness::end_offsets(dst, target_topic, corpus.partitions).await;
        let now = Instant::now();
        match first {
            None if n > 0 => first = Some((now, n, harness::cpu_seconds(p.pid(), ticks)?, broker_cpu()?)),
            // MirrorMaker 2 takes tens of seconds to start its workers on a loaded machine.
            None if spawned.elapsed() > Duration::from_secs(180) => {
                bail!(
                    "{}: no record on the target 180 s after start; log tail: {}",
                    p.name,
                    p.log_tail(8)
                )
            }
            _ => {}
        }
        if let Some((t0, n0, cpu0, brokers0)) = first {
            let done = n >= total;
            if done || now.duration_since(t0) > Duration::from_secs(max_secs) {
                let cpu1 = harness::cpu_seconds(p.pid(), ticks)?;
                let brokers1 = broker_cpu()?;
                let hwm = harness::vm_bytes(p.pid(), "VmHWM")?;
                let secs = now.duration_since(t0).as_secs_f64().max(1e-3);
                let moved_payload = (n - n0).max(0) as f64 * corpus.payload_per_record();
                if n > total {
                    bail!(
                        "{}: the target holds {n} records, more than the {total} of the source",
                        p.name
                    );
                }
                return Ok(MirrorFigures {
                    mb_per_sec: moved_payload / MB / secs,
                    cpu_secs_per_gb: (cpu1 - cpu0) / (moved_payload / GB).max(1e-9),
                    peak_rss_mib: hwm as f64 / MIB,
                    moved: n as u64,
                    secs,
                    completed: done,
                    mirror_cores: (cpu1 - cpu0) / secs,
                    broker_cores: (brokers1 - brokers0) / secs,
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

type StraitRun = (MirrorFigures, Option<(u64, u64)>, Option<f64>);

pub(super) async fn run_strait_unthrottled(
    cli: &Cli,
    bin: &Path,
    source: &Broker,
    target: &Broker,
    corpus: &Corpus,
    logs: &Path,
    report: &mut Report,
) -> Result<StraitRun> {
    let http = harness::free_port()?;
    let cmd = harness::strait_command(bin, &source.bootstrap(), &target.bootstrap(), "spans", "strait.", http);
    let mut p = Proc::spawn("strait", cmd, &logs.join("strait-unthrottled.log"))?;
    let dst = target.cluster();
    let figs = measure(
        &mut p,
        [source, target],
        &dst,
        "strait.spans",
        corpus,
        cli.max_mirror_secs,
    )
    .await;
    let figs = match figs {
        Ok(f) => f,
        Err(e) => {
            report.problem(format!(
                "unthrottled run on {} records: {e:#} (log: {})",
                corpus.records,
                p.log.display()
            ));
            return Err(e);
        }
    };
    add_mirror(report, "strait", &figs);
    let ratio = match harness::http_get(http, "/metrics") {
        Ok((200, page)) => {
            let wire = harness::metric_sum(&page, "strait_wire_bytes_total");
            let src = harness::metric_sum(&page, "strait_source_bytes_total");
            (src > 0.0).then(|| wire / src)
        }
        _ => None,
    };
    let exited = tokio::task::block_in_place(|| p.stop(Duration::from_secs(30)));
    if !exited {
        report.problem(format!(
            "strait did not exit within 30 s of SIGTERM after replicating (log: {})",
            p.log.display()
        ));
    } else if let Ok(Some(status)) = p.child.try_wait() {
        if !status.success() {
            report.problem(format!(
                "strait exited with {status} after SIGTERM (log: {})",
                p.log.display()
            ));
        }
    }
    let stored = match corpus::stored(&dst, "strait.spans", corpus.partitions).await {
        Ok((records, bytes)) => {
            if figs.completed && records != corpus.records {
                report.problem(format!(
                    "target strait.spans holds {records} records by batch headers, the source {}",
                    corpus.records
                ));
            }
            Some((records, bytes))
        }
        Err(e) => {
            report.na(
                "wire bytes per source byte",
                "strait, read from the target",
                format!("{e:#}"),
            );
            None
        }
    };
    Ok((figs, stored, ratio))
}

pub(super) async fn run_baseline(
    cli: &Cli,
    kind: Mirror,
    source: &Broker,
    target: &Broker,
    corpus: &Corpus,
    logs: &Path,
) -> Result<MirrorFigures> {
    let name = match kind {
        Mirror::Naive => "naive",
        Mirror::Rdkafka => "rdkafka",
    };
    let target_topic = format!("{name}.spans");
    let dst = target.cluster();
    harness::create_topic(&dst, &target_topic, corpus.partitions).await?;
    let me = std::env::current_exe().context("while locating the bench binary")?;
    let mut cmd = Command::new(me);
    cmd.args([
        "mirror",
        name,
        "--source",
        &source.bootstrap(),
        "--target",
        &target.bootstrap(),
    ])
    .args(["--topic", &corpus.topic, "--target-topic", &target_topic])
    .args(["--partitions", &corpus.partitions.to_string()]);
    let mut p = Proc::spawn(name, cmd, &logs.join(format!("{name}.log")))?;
    let f = measure(
        &mut p,
        [source, target],
        &dst,
        &target_topic,
        corpus,
        cli.max_mirror_secs,
    )
    .await;
    p.stop(Duration::from_secs(1));
    f
}

pub(super) fn ratios(
    report: &mut Report,
    strait: Option<MirrorFigures>,
    limit: Option<f64>,
    naive: Option<MirrorFigures>,
    rdk: Option<MirrorFigures>,
) {
    const S: &str = "ratios";
    let Some(s) = strait else {
        report.na(S, "strait vs limits and baselines", "no strait figures");
        return;
    };
    match limit {
        Some(l) => report.add(
            S,
            "strait / slower broker limit",
            format!("{:.0}%", s.mb_per_sec / l * 100.0),
            verdict(s.mb_per_sec / l >= 0.9, "target >= 90%"),
        ),
        None => report.na(S, "strait / slower broker limit", "no broker limits"),
    }
    // Mirror and brokers share the machine's cores: what they spend per GB together bounds
    // the rate whatever the pipeline does.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let gb_per_sec = s.mb_per_sec / 1000.0;
    if gb_per_sec > 0.0 {
        let brokers_per_gb = s.broker_cores / gb_per_sec;
        let per_gb = s.cpu_secs_per_gb + brokers_per_gb;
        let ceiling = cores / per_gb * 1000.0;
        report.add(
            S,
            "CPU ceiling: all cores busy at strait's and the brokers' CPU per GB",
            format!("{ceiling:.0} MB/s"),
            format!(
                "{cores:.0} cores / ({:.2} strait + {brokers_per_gb:.2} brokers) CPU-s per GB; strait reached {:.0}% of it",
                s.cpu_secs_per_gb,
                s.mb_per_sec / ceiling * 100.0
            ),
        );
        if let Some(l) = limit {
            report.add(
                S,
                "cores 90% of the slower broker limit would take at these CPU costs",
                format!("{:.1}", 0.9 * l / 1000.0 * per_gb),
                format!("this machine has {cores:.0}; the broker limits were measured with a broker alone on them"),
            );
        }
    }
    let naive = naive.ok_or("no naive figures");
    compare(
        report,
        "strait / naive rskafka",
        &s,
        naive,
        3.0,
        1.0 / 3.0,
        ("target >= 3x", "target <= 0.33"),
    );
    let rdk = rdk.ok_or("no librdkafka figures");
    compare(
        report,
        "strait / tuned librdkafka",
        &s,
        rdk,
        0.95,
        1.05,
        ("target: on par (>= 0.95x)", "target: on par (<= 1.05)"),
    );
}

/// strait's throughput, CPU per GB and peak RSS as ratios to one baseline's, against the
/// throughput floor and CPU ceiling of the targets.
pub(super) fn compare(
    report: &mut Report,
    name: &str,
    s: &MirrorFigures,
    other: Result<MirrorFigures, &str>,
    min_speedup: f64,
    max_cpu: f64,
    (speed_target, cpu_target): (&str, &str),
) {
    const S: &str = "ratios";
    let o = match other {
        Ok(o) => o,
        Err(why) => return report.na(S, name.to_owned(), why),
    };
    let speedup = s.mb_per_sec / o.mb_per_sec;
    let cpu = s.cpu_secs_per_gb / o.cpu_secs_per_gb;
    report.add(
        S,
        format!("{name}: throughput"),
        format!("{speedup:.2}x"),
        verdict(speedup >= min_speedup, speed_target),
    );
    report.add(
        S,
        format!("{name}: CPU per GB"),
        format!("{cpu:.2}"),
        verdict(cpu <= max_cpu, cpu_target),
    );
    report.add(
        S,
        format!("{name}: peak RSS"),
        format!("{:.2}", s.peak_rss_mib / o.peak_rss_mib),
        "",
    );
}
