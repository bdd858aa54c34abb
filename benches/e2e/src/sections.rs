//! The bench's sections, each measured in this run and reported as rows of one table. A section
//! that cannot run reports "n/a: reason" and the others go on.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::corpus::{self, Corpus, Regrouped};
use crate::harness::{self, Broker, Link, Proc};
use crate::Cli;

const MB: f64 = 1e6;
const GB: f64 = 1e9;
const MIB: f64 = 1024.0 * 1024.0;
/// IPv4 + TCP header with the timestamp option, per packet on the TUN device (no link header).
const TCP_IP_HEADER: u64 = 52;

struct Row {
    section: &'static str,
    figure: String,
    value: String,
    note: String,
}

/// The table, plus problems seen in strait.
#[derive(Default)]
pub struct Report {
    rows: Vec<Row>,
    problems: Vec<String>,
    header: Vec<String>,
}

impl Report {
    fn add(
        &mut self,
        section: &'static str,
        figure: impl Into<String>,
        value: impl Into<String>,
        note: impl Into<String>,
    ) {
        let row = Row {
            section,
            figure: figure.into(),
            value: value.into(),
            note: note.into(),
        };
        eprintln!("[{}] {}: {}  {}", row.section, row.figure, row.value, row.note);
        self.rows.push(row);
    }

    fn na(&mut self, section: &'static str, figure: impl Into<String>, reason: impl std::fmt::Display) {
        self.add(section, figure, format!("n/a: {reason}"), "");
    }

    fn problem(&mut self, p: String) {
        eprintln!("STRAIT PROBLEM: {p}");
        self.problems.push(p);
    }

    pub fn render(&self) -> String {
        let w_fig = self.rows.iter().map(|r| r.figure.len()).max().unwrap_or(10);
        let w_val = self.rows.iter().map(|r| r.value.len()).max().unwrap_or(10).min(60);
        let mut out = String::new();
        for h in &self.header {
            out.push_str(h);
            out.push('\n');
        }
        // Rows grouped by section, sections in order of first appearance.
        let mut order: Vec<&str> = Vec::new();
        for r in &self.rows {
            if !order.contains(&r.section) {
                order.push(r.section);
            }
        }
        let mut rows: Vec<&Row> = self.rows.iter().collect();
        rows.sort_by_key(|r| order.iter().position(|s| *s == r.section));
        let mut section = "";
        for r in rows {
            if r.section != section {
                section = r.section;
                out.push_str(&format!("\n== {section}\n"));
            }
            out.push_str(format!("  {:<w_fig$}  {:>w_val$}  {}\n", r.figure, r.value, r.note).trim_end());
            out.push('\n');
        }
        if !self.problems.is_empty() {
            out.push_str("\n== strait problems seen in this run\n");
            for p in &self.problems {
                out.push_str(&format!("  - {p}\n"));
            }
        }
        out
    }
}

/// One mirror's figures over its measured interval.
#[derive(Debug, Clone, Copy)]
struct MirrorFigures {
    mb_per_sec: f64,
    cpu_secs_per_gb: f64,
    peak_rss_mib: f64,
    moved: u64,
    secs: f64,
    completed: bool,
    /// Cores the mirror and the two brokers used over the measured interval.
    mirror_cores: f64,
    broker_cores: f64,
}

fn machine() -> Vec<String> {
    let sh = |c: &str| {
        Command::new("sh")
            .args(["-c", c])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    vec![
        format!("strait end-to-end bench, {}", sh("date -u '+%Y-%m-%d %H:%M UTC'")),
        format!(
            "machine: {} cores (nproc), {}, {}, kernel {}",
            sh("nproc"),
            sh("lscpu | sed -n 's/^Model name: *//p' | head -1"),
            sh("free -g | awk '/Mem:/{print $2\" GB RAM\"}'"),
            sh("uname -r")
        ),
        format!("broker: {}", sh("nisshi --version 2>/dev/null || echo nisshi")),
    ]
}

fn repo_root() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    p.canonicalize().unwrap_or(p)
}

/// The strait binary to measure: `--strait-bin`, else a release build of this repository.
fn strait_binary(cli: &Cli, repo: &Path) -> Result<PathBuf> {
    if let Some(p) = &cli.strait_bin {
        return Ok(p.clone());
    }
    eprintln!(
        "building strait: cargo build --release --bin strait (in {})",
        repo.display()
    );
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "--bin", "strait", "--manifest-path"])
        .arg(repo.join("Cargo.toml"))
        .status()
        .context("while running cargo build")?;
    if !status.success() {
        bail!("cargo build --release of strait failed ({status})");
    }
    Ok(repo.join("target/release/strait"))
}

fn log_dir() -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("strait-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&d).with_context(|| format!("while creating {}", d.display()))?;
    Ok(d)
}

pub async fn run_all(cli: &Cli) -> Result<Report> {
    let started = Instant::now();
    let mut report = Report {
        header: machine(),
        ..Report::default()
    };
    let repo = repo_root();
    let logs = log_dir()?;
    report
        .header
        .push(format!("logs of strait and the mirrors: {}", logs.display()));
    let bin = strait_binary(cli, &repo);
    if let Err(e) = &bin {
        report.na("setup", "strait binary", format!("{e:#}"));
    }
    let source = Broker::start("src", None, "127.0.0.1")
        .await
        .context("while starting the source broker")?;
    let target = Broker::start("dst", None, "127.0.0.1")
        .await
        .context("while starting the target broker")?;
    let src = source.cluster();
    let dst = target.cluster();

    // The span corpus.
    let (written, write_secs) = corpus::write(
        &source.bootstrap(),
        "spans",
        cli.partitions,
        cli.corpus_mb as f64 * MB,
        1,
    )
    .await?;
    let mut corpus = corpus::fetch_all(&src, "spans", cli.partitions).await?;
    if corpus.records != written {
        bail!("the source holds {} records of the {written} written", corpus.records);
    }
    // The fetch-only figure is the fastest of three passes (one pass takes well under a second).
    if !cli.skip_limits {
        for _ in 0..2 {
            let again = corpus::fetch_all(&src, "spans", cli.partitions).await?;
            corpus.fetch_secs = corpus.fetch_secs.min(again.fetch_secs);
        }
    }
    let sample = if cli.skip_bound {
        0
    } else {
        cli.bound_sample_mb * 1_000_000
    };
    let t = Instant::now();
    let regrouped = tokio::task::block_in_place(|| corpus::analyse(&mut corpus, sample))?;
    eprintln!("corpus analysed in {:.1} s", t.elapsed().as_secs_f64());
    let per_record = corpus.payload_per_record();
    report.add(
        "corpus",
        "span records (Jaeger protobuf, strait::demo::produce_spans)",
        format!("{}", corpus.records),
        format!(
            "{} partitions, {:.0} B key+value per record",
            corpus.partitions, per_record
        ),
    );
    report.add(
        "corpus",
        "key+value bytes (the MB and GB below)",
        format!("{:.1} MB", corpus.payload_bytes as f64 / MB),
        format!(
            "stored on the source as lz4 batches: {:.1} MB; written in {:.1} s",
            corpus.stored_bytes as f64 / MB,
            write_secs
        ),
    );

    // Broker limits.
    let mut slower_limit: Option<f64> = None;
    if cli.skip_limits {
        report.na("broker limits", "fetch-only / produce-only", "skipped (--skip-limits)");
    } else {
        let fetch_rate = corpus.payload_bytes as f64 / MB / corpus.fetch_secs;
        report.add(
            "broker limits",
            "fetch-only from the source",
            format!("{fetch_rate:.1} MB/s"),
            format!(
                "{:.0} records/s; best of 3 passes; strait's Cluster::fetch, 1 MiB per request, all partitions concurrently",
                corpus.records as f64 / corpus.fetch_secs
            ),
        );
        let ticks = harness::clock_ticks();
        let target_cpu = || harness::cpu_seconds(target.pid(), ticks);
        let produce = async {
            harness::create_topic(&dst, "limit.spans", cli.partitions).await?;
            let cpu0 = target_cpu()?;
            let secs = corpus::produce_all(&dst, &corpus, "limit.spans").await?;
            Ok::<_, anyhow::Error>((secs, target_cpu()? - cpu0))
        }
        .await;
        match produce {
            Ok((secs, cpu)) => {
                let rate = corpus.payload_bytes as f64 / MB / secs;
                report.add(
                    "broker limits",
                    "produce-only to the target",
                    format!("{rate:.1} MB/s"),
                    format!(
                        "{:.0} records/s; the source's lz4 batches as they are, 4 in flight per partition; \
                         the target broker used {:.2} cores",
                        corpus.records as f64 / secs,
                        cpu / secs
                    ),
                );
                slower_limit = Some(fetch_rate.min(rate));
            }
            Err(e) => report.na("broker limits", "produce-only to the target", format!("{e:#}")),
        }
    }

    // strait unthrottled and the baselines.
    let mut strait_figs = None;
    let mut strait_stored = None;
    let mut strait_metric_ratio = None;
    match (&bin, cli.skip_strait) {
        (_, true) => report.na("mirrors (unthrottled)", "strait", "skipped (--skip-strait)"),
        (Err(_), _) => report.na("mirrors (unthrottled)", "strait", "no strait binary (see setup)"),
        (Ok(bin), false) => {
            match run_strait_unthrottled(cli, bin, &source, &target, &corpus, &logs, &mut report).await {
                Ok((figs, stored, ratio)) => {
                    strait_figs = Some(figs);
                    strait_stored = stored;
                    strait_metric_ratio = ratio;
                }
                Err(e) => report.na("mirrors (unthrottled)", "strait", format!("{e:#}")),
            }
        }
    }
    let mut naive = None;
    if cli.skip_naive {
        report.na(
            "mirrors (unthrottled)",
            "naive rskafka mirror",
            "skipped (--skip-naive)",
        );
    } else {
        match run_baseline(cli, baseline_kind("naive"), &source, &target, &corpus, &logs).await {
            Ok(f) => {
                add_mirror(&mut report, "naive rskafka mirror (record by record)", &f);
                naive = Some(f);
            }
            Err(e) => report.na("mirrors (unthrottled)", "naive rskafka mirror", format!("{e:#}")),
        }
    }
    let mut rdk = None;
    if cli.skip_rdkafka {
        report.na(
            "mirrors (unthrottled)",
            "tuned librdkafka mirror",
            "skipped (--skip-rdkafka)",
        );
    } else {
        match run_baseline(cli, baseline_kind("rdkafka"), &source, &target, &corpus, &logs).await {
            Ok(f) => {
                add_mirror(&mut report, "tuned librdkafka mirror (1 MiB, linger 50 ms, zstd)", &f);
                rdk = Some(f);
            }
            Err(e) => report.na("mirrors (unthrottled)", "tuned librdkafka mirror", format!("{e:#}")),
        }
    }
    ratios(&mut report, strait_figs, slower_limit, naive, rdk);

    // Wire bytes per source byte.
    wire_ratio(
        &mut report,
        &regrouped,
        strait_stored,
        strait_metric_ratio,
        cli.skip_bound,
    );

    // Budget over the emulated link.
    let mut budget_ratio = None;
    match (&bin, cli.skip_wan) {
        (_, true) => report.na("budget over a 50 ms link", "all", "skipped (--skip-wan)"),
        (Err(_), _) => report.na("budget over a 50 ms link", "all", "no strait binary"),
        (Ok(bin), false) => {
            if let Err(e) = wan(cli, &repo, bin, &source, &corpus, &logs, &mut report, &mut budget_ratio).await {
                report.na("budget over a 50 ms link", "section", format!("{e:#}"));
            }
        }
    }
    if let Some((ratio, level)) = budget_ratio {
        let bound = bound_ratio(&regrouped);
        report.add(
            "wire bytes per source byte",
            "strait backlogged under the budget (its metrics)",
            format!("{ratio:.4}"),
            match bound {
                Some(b) => format!(
                    "zstd level at the end {level}; {:+.1}% vs the zstd-19 bound (target: within 8%)",
                    (ratio / b - 1.0) * 100.0
                ),
                None => format!("zstd level at the end {level}"),
            },
        );
    }
    drop(target);

    // RSS at 1,000 partitions.
    match (&bin, cli.skip_wide) {
        (_, true) => report.na("1,000 partitions", "all", "skipped (--skip-wide)"),
        (Err(_), _) => report.na("1,000 partitions", "all", "no strait binary"),
        (Ok(bin), false) => {
            if let Err(e) = wide(cli, bin, &source, &logs, &mut report).await {
                report.na("1,000 partitions", "section", format!("{e:#}"));
            }
        }
    }
    report
        .header
        .push(format!("whole run: {:.0} s", started.elapsed().as_secs_f64()));
    Ok(report)
}

fn baseline_kind(name: &str) -> crate::baseline::Mirror {
    if name == "naive" {
        crate::baseline::Mirror::Naive
    } else {
        crate::baseline::Mirror::Rdkafka
    }
}

fn add_mirror(report: &mut Report, name: &str, f: &MirrorFigures) {
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
async fn measure(
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
            None if spawned.elapsed() > Duration::from_secs(60) => {
                bail!(
                    "{}: no record on the target 60 s after start; log tail: {}",
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

async fn run_strait_unthrottled(
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

async fn run_baseline(
    cli: &Cli,
    kind: crate::baseline::Mirror,
    source: &Broker,
    target: &Broker,
    corpus: &Corpus,
    logs: &Path,
) -> Result<MirrorFigures> {
    let name = match kind {
        crate::baseline::Mirror::Naive => "naive",
        crate::baseline::Mirror::Rdkafka => "rdkafka",
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

fn ratios(
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
    match naive {
        Some(n) => {
            report.add(
                S,
                "strait / naive rskafka: throughput",
                format!("{:.1}x", s.mb_per_sec / n.mb_per_sec),
                verdict(s.mb_per_sec / n.mb_per_sec >= 3.0, "target >= 3x"),
            );
            report.add(
                S,
                "strait / naive rskafka: CPU per GB",
                format!("{:.2}", s.cpu_secs_per_gb / n.cpu_secs_per_gb),
                verdict(s.cpu_secs_per_gb / n.cpu_secs_per_gb <= 1.0 / 3.0, "target <= 0.33"),
            );
            report.add(
                S,
                "strait / naive rskafka: peak RSS",
                format!("{:.2}", s.peak_rss_mib / n.peak_rss_mib),
                "",
            );
        }
        None => report.na(S, "strait / naive rskafka", "no naive figures"),
    }
    match rdk {
        Some(r) => {
            report.add(
                S,
                "strait / tuned librdkafka: throughput",
                format!("{:.2}x", s.mb_per_sec / r.mb_per_sec),
                verdict(s.mb_per_sec / r.mb_per_sec >= 0.95, "target: on par (>= 0.95x)"),
            );
            report.add(
                S,
                "strait / tuned librdkafka: CPU per GB",
                format!("{:.2}", s.cpu_secs_per_gb / r.cpu_secs_per_gb),
                verdict(
                    s.cpu_secs_per_gb / r.cpu_secs_per_gb <= 1.05,
                    "target: on par (<= 1.05)",
                ),
            );
            report.add(
                S,
                "strait / tuned librdkafka: peak RSS",
                format!("{:.2}", s.peak_rss_mib / r.peak_rss_mib),
                "",
            );
        }
        None => report.na(S, "strait / tuned librdkafka", "no librdkafka figures"),
    }
}

fn verdict(met: bool, target: &str) -> String {
    format!("{} ({target})", if met { "MET" } else { "NOT MET" })
}

fn bound_ratio(g: &Regrouped) -> Option<f64> {
    (g.uncompressed_sample > 0).then(|| g.zstd19_sample as f64 / g.uncompressed_sample as f64)
}

fn wire_ratio(
    report: &mut Report,
    g: &Regrouped,
    stored: Option<(u64, u64)>,
    metric_ratio: Option<f64>,
    skip_bound: bool,
) {
    const S: &str = "wire bytes per source byte";
    let bound = bound_ratio(g);
    match bound {
        Some(b) => report.add(
            S,
            "bound: zstd level 19 on 1 MiB batches",
            format!("{b:.4}"),
            format!(
                "strait's batch builder over {:.0} MB of the corpus' records (a sample)",
                g.uncompressed_sample as f64 / MB
            ),
        ),
        None if skip_bound => report.na(S, "bound: zstd level 19 on 1 MiB batches", "skipped (--skip-bound)"),
        None => report.na(S, "bound: zstd level 19 on 1 MiB batches", "empty sample"),
    }
    if let Some((_, bytes)) = stored {
        let r = bytes as f64 / g.uncompressed_all as f64;
        report.add(
            S,
            "strait unthrottled (adaptive level from 3), read from the target",
            format!("{r:.4}"),
            match bound {
                Some(b) => format!(
                    "stored batch bytes / uncompressed 1 MiB batches; {:+.1}% vs bound",
                    (r / b - 1.0) * 100.0
                ),
                None => "stored batch bytes / uncompressed 1 MiB batches".to_owned(),
            },
        );
    }
    if let Some(r) = metric_ratio {
        report.add(
            S,
            "strait unthrottled, its own metrics",
            format!("{r:.4}"),
            "strait_wire_bytes_total / strait_source_bytes_total",
        );
    }
}

/// Budget utilization and overshoot over an emulated 50 ms link, then latency when caught up.
#[allow(clippy::too_many_arguments)]
async fn wan(
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
    let uid = Command::new("id").arg("-u").output().context("while running id -u")?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        bail!("needs root for network namespaces (tools/wan/link.sh)");
    }
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

async fn latency(
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

/// Peak RSS while replicating a backlog spread over many partitions.
async fn wide(cli: &Cli, bin: &Path, source: &Broker, logs: &Path, report: &mut Report) -> Result<()> {
    const S: &str = "1,000 partitions";
    let parts = cli.wide_partitions;
    let target = Broker::start("wide", None, "127.0.0.1").await?;
    let payload = parts as f64 * cli.wide_mb_per_partition * MB;
    let (records, secs) = corpus::write(&source.bootstrap(), "wide", parts, payload, 2).await?;
    report.add(
        S,
        "backlog used",
        format!("{:.0} MB", payload / MB),
        format!(
            "{parts} partitions x {} MB of key+value, {records} spans; written in {secs:.0} s",
            cli.wide_mb_per_partition
        ),
    );
    let http = harness::free_port()?;
    let cmd = harness::strait_command(bin, &source.bootstrap(), &target.bootstrap(), "wide", "wide.", http);
    let mut p = Proc::spawn("strait (wide)", cmd, &logs.join("strait-wide.log"))?;
    let start = Instant::now();
    let mut peak_rss = 0u64;
    let mut replicated = 0f64;
    let mut last_scrape = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Err(e) = p.check_alive() {
            report.problem(format!("1,000-partition run: {e:#}"));
            return Err(e);
        }
        peak_rss = peak_rss.max(harness::vm_bytes(p.pid(), "VmRSS").unwrap_or(0));
        if last_scrape.elapsed() >= Duration::from_secs(1) {
            last_scrape = Instant::now();
            if let Ok((200, page)) = harness::http_get(http, "/metrics") {
                replicated = harness::metric_sum(&page, "strait_records_replicated_total");
            }
        }
        if replicated >= records as f64 || start.elapsed() > Duration::from_secs(cli.wide_max_secs) {
            break;
        }
    }
    let hwm = harness::vm_bytes(p.pid(), "VmHWM")?;
    let elapsed = start.elapsed().as_secs_f64();
    let _ = tokio::task::block_in_place(|| p.stop(Duration::from_secs(10)));
    let done = replicated >= records as f64;
    report.add(
        S,
        "strait peak RSS",
        format!("{:.1} MiB", hwm.max(peak_rss) as f64 / MIB),
        format!(
            "{} (target <= 256 MiB); VmHWM of the strait process",
            if hwm.max(peak_rss) as f64 / MIB <= 256.0 {
                "MET"
            } else {
                "NOT MET"
            }
        ),
    );
    report.add(
        S,
        "replicated while measured",
        format!("{:.0}/{} records", replicated, records),
        format!(
            "{} in {elapsed:.0} s from start ({:.1} MB/s)",
            if done { "all" } else { "stopped early" },
            replicated * payload / records as f64 / MB / elapsed
        ),
    );
    drop(target);
    Ok(())
}
