//! The bench's sections, each measured in this run and reported as rows of one table. A section
//! that cannot run reports "n/a: reason" and the others go on.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::corpus::{self, Regrouped};
use crate::harness::{self, Broker};
use crate::Cli;

mod mirrors;
mod report;
mod wan;
mod wide;

use crate::baseline::Mirror;
use mirrors::{baseline, ratios, run_baseline, run_strait_unthrottled};
pub use report::Report;

const MB: f64 = 1e6;
const GB: f64 = 1e9;
const MIB: f64 = 1024.0 * 1024.0;
/// IPv4 + TCP header with the timestamp option, per packet on the TUN device (no link header).
const TCP_IP_HEADER: u64 = 52;

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
    let mut report = Report::new(machine());
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
    let baseline_run = |kind| run_baseline(cli, kind, &source, &target, &corpus, &logs);
    let naive = baseline(cli, Mirror::Naive, baseline_run(Mirror::Naive), &mut report).await;
    let rdk = baseline(cli, Mirror::Rdkafka, baseline_run(Mirror::Rdkafka), &mut report).await;
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
            if let Err(e) = wan::run(cli, &repo, bin, &source, &corpus, &logs, &mut report, &mut budget_ratio).await {
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
            vs_bound(
                format!("zstd level at the end {level}"),
                ratio,
                bound,
                "the zstd-19 bound (target: within 8%)",
            ),
        );
    }
    drop(target);

    // RSS at 1,000 partitions.
    match (&bin, cli.skip_wide) {
        (_, true) => report.na("1,000 partitions", "all", "skipped (--skip-wide)"),
        (Err(_), _) => report.na("1,000 partitions", "all", "no strait binary"),
        (Ok(bin), false) => {
            if let Err(e) = wide::run(cli, bin, &source, &logs, &mut report).await {
                report.na("1,000 partitions", "section", format!("{e:#}"));
            }
        }
    }
    report
        .header
        .push(format!("whole run: {:.0} s", started.elapsed().as_secs_f64()));
    Ok(report)
}

/// `note`, followed by how far `ratio` is above or below the bound when there is one.
fn vs_bound(note: String, ratio: f64, bound: Option<f64>, bound_name: &str) -> String {
    match bound {
        Some(b) => format!("{note}; {:+.1}% vs {bound_name}", (ratio / b - 1.0) * 100.0),
        None => note,
    }
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
            vs_bound(
                "stored batch bytes / uncompressed 1 MiB batches".to_owned(),
                r,
                bound,
                "bound",
            ),
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
