//! The bench's sections, each measured in this run and reported as rows of one table. A section
//! that cannot run reports "n/a: reason" and the others go on.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::corpus::{self, Regrouped};
use crate::harness::{self, Broker};
use crate::Cli;

mod catchup;
mod cut;
mod mirrors;
mod mm2;
mod probe;
mod report;
mod rtt;
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
        format!(
            "brokers: Apache Kafka {} from the Maven jars, one KRaft node per cluster (tools/kafka/node.sh, heap 1g, \
             compression.type=producer, log.retention.ms=-1), data on {}",
            harness::kafka_version(&harness::repo_root()),
            std::env::temp_dir().display()
        ),
        load_average("at the start"),
    ]
}

fn load_average(when: &str) -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "load average {when} (1, 5, 15 min; other work shares the machine): {}",
        l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    )
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
    let repo = harness::repo_root();
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
        "span records (Jaeger protobuf, strait_spans::demo::produce_spans)",
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

    if cli.skip_limits || cli.skip_perf_tools {
        report.na("broker limits", "Kafka's perf tools", "skipped");
    } else if let Err(e) = perf_tools(&repo, &source, &target, &corpus, &mut report).await {
        report.na("broker limits", "Kafka's perf tools", format!("{e:#}"));
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
    let mm2_figs = if cli.skip_mm2 {
        report.na("mirrors (unthrottled)", "MirrorMaker 2", "skipped (--skip-mm2)");
        None
    } else {
        match mm2::run(cli, &repo, &source, &target, &corpus, &logs, &mut report).await {
            Ok(f) => Some(f),
            Err(e) => {
                report.na("mirrors (unthrottled)", "MirrorMaker 2", format!("{e:#}"));
                None
            }
        }
    };
    ratios(&mut report, strait_figs, slower_limit, naive, rdk);
    if let Some(s) = &strait_figs {
        mirrors::compare(
            &mut report,
            "strait / MirrorMaker 2",
            s,
            mm2_figs.ok_or("no MirrorMaker 2 figures"),
            3.0,
            1.0 / 3.0,
            ("target >= 3x", "target <= 0.33"),
        );
        if let Some(m) = &mm2_figs {
            let r = s.peak_rss_mib / m.peak_rss_mib;
            report.add(
                "ratios",
                "strait / MirrorMaker 2: peak RSS vs target",
                format!("{r:.2}"),
                report::verdict(r <= 0.25, "target <= 0.25"),
            );
        }
    }

    // Bytes of the target's log segments per source key+value byte, strait and MM2 alike.
    let mut logged = Vec::new();
    for (name, topic, ran) in [
        ("strait", "strait.spans", strait_figs.is_some()),
        ("MirrorMaker 2 (zstd)", corpus.topic.as_str(), mm2_figs.is_some()),
        ("tuned librdkafka mirror (zstd)", "rdkafka.spans", rdk.is_some()),
    ] {
        if !ran {
            continue;
        }
        match target.log_bytes(topic, corpus.partitions) {
            Ok(b) => {
                let r = b as f64 / corpus.payload_bytes as f64;
                report.add(
                    "wire bytes per source byte",
                    format!("{name}: target log segment bytes / source key+value bytes"),
                    format!("{r:.4}"),
                    format!("{:.1} MB in the .log files of target topic {topic}", b as f64 / MB),
                );
                logged.push((name, r));
            }
            Err(e) => report.na(
                "wire bytes per source byte",
                format!("{name}: target log bytes"),
                format!("{e:#}"),
            ),
        }
    }
    if let (Some((_, s)), Some((_, m))) = (
        logged.iter().find(|(n, _)| *n == "strait"),
        logged.iter().find(|(n, _)| n.starts_with("MirrorMaker")),
    ) {
        report.add(
            "ratios",
            "strait / MirrorMaker 2: wire bytes per source byte",
            format!("{:.2}", s / m),
            report::verdict(s < m, "target < 1 (fewer bytes than MM2 with zstd)"),
        );
    }

    // Wire bytes per source byte.
    wire_ratio(
        &mut report,
        &regrouped,
        strait_stored,
        strait_metric_ratio,
        cli.skip_bound,
    );

    // Records duplicated after one kill -9 and a restart.
    if cli.skip_kill {
        report.na("kill -9 mid-run, then a restart", "all", "skipped (--skip-kill)");
    } else {
        let b = bin.as_ref().ok().map(|b| b.as_path());
        if let Err(e) = mm2::duplicates(cli, &repo, b, &source, &corpus, &logs, &mut report).await {
            report.na("kill -9 mid-run, then a restart", "section", format!("{e:#}"));
        }
    }

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

    // One partition over a long round trip.
    match (&bin, cli.skip_rtt) {
        (_, true) => report.na(rtt::S, "all", "skipped (--skip-rtt)"),
        (Err(_), _) => report.na(rtt::S, "all", "no strait binary"),
        (Ok(bin), false) => {
            if let Err(e) = rtt::run(cli, &repo, bin, &source, &logs, &mut report).await {
                report.na(rtt::S, "section", format!("{e:#}"));
            }
        }
    }

    // Many partitions: RSS, start-up, idle CPU.
    match (&bin, cli.skip_wide) {
        (_, true) => report.na("many partitions", "all", "skipped (--skip-wide)"),
        (Err(_), _) => report.na("many partitions", "all", "no strait binary"),
        (Ok(bin), false) => {
            if let Err(e) = wide::run(cli, bin, &source, &logs, &mut report).await {
                report.na("many partitions", "section", format!("{e:#}"));
            }
        }
    }
    // A 6-hour cut in compressed time.
    match (&bin, cli.skip_cut) {
        (_, true) => report.na(cut::S, "all", "skipped (--skip-cut)"),
        (Err(_), _) => report.na(cut::S, "all", "no strait binary"),
        (Ok(bin), false) => {
            if let Err(e) = cut::run(cli, &repo, bin, &logs, &mut report).await {
                report.na(cut::S, "section", format!("{e:#}"));
            }
        }
    }
    // Fresh spans first after a cut.
    match (&bin, cli.skip_catchup) {
        (_, true) => report.na(catchup::S, "all", "skipped (--skip-catchup)"),
        (Err(_), _) => report.na(catchup::S, "all", "no strait binary"),
        (Ok(bin), false) => {
            if let Err(e) = catchup::run(cli, &repo, bin, &logs, &mut report).await {
                report.na(catchup::S, "section", format!("{e:#}"));
            }
        }
    }
    report
        .header
        .push(format!("whole run: {:.0} s", started.elapsed().as_secs_f64()));
    report.header.push(load_average("at the end"));
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

/// The brokers' limits as Kafka's own perf tools see them: ProducerPerformance into the target,
/// ConsumerPerformance of the corpus from the source (each a JVM of its own).
async fn perf_tools(
    repo: &Path,
    source: &Broker,
    target: &Broker,
    corpus: &corpus::Corpus,
    report: &mut Report,
) -> Result<()> {
    let home = harness::kafka_home(repo)?;
    let java = |class: &str| {
        let mut c = Command::new("java");
        c.arg("-Xmx512m")
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                repo.join("tools/kafka/log4j2-tools.properties").display()
            ))
            .arg("-cp")
            .arg(format!("{}/libs/*", home.display()))
            .arg(class);
        c
    };
    let size = corpus.payload_per_record().round() as u64;
    harness::create_topic(&target.cluster(), "perf.spans", corpus.partitions).await?;
    let mut c = java("org.apache.kafka.tools.ProducerPerformance");
    c.args(["--topic", "perf.spans", "--bootstrap-server", &target.bootstrap()])
        .args([
            "--num-records",
            &corpus.records.to_string(),
            "--record-size",
            &size.to_string(),
        ])
        .args(["--throughput", "-1", "--command-property"])
        .args(["acks=1", "compression.type=lz4", "batch.size=1048576", "linger.ms=50"]);
    let out = tokio::task::block_in_place(|| c.output()).context("while running ProducerPerformance")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("records sent"))
        .with_context(|| {
            format!(
                "no summary from ProducerPerformance: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let mib: f64 = line
        .split('(')
        .nth(1)
        .and_then(|r| r.split(" MB/sec").next())
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("unparsed ProducerPerformance summary {line:?}"))?;
    report.add(
        "broker limits",
        "produce-only to the target, Kafka's ProducerPerformance",
        format!("{:.1} MB/s", mib * MIB / MB),
        format!(
            "{} records of {size} B (its random payload, not spans), lz4, batch.size 1 MiB, linger 50 ms, acks=1",
            corpus.records
        ),
    );
    let mut c = java("org.apache.kafka.tools.ConsumerPerformance");
    c.args(["--topic", &corpus.topic, "--bootstrap-server", &source.bootstrap()])
        .args(["--num-records", &corpus.records.to_string(), "--timeout", "120000"])
        .args(["--command-property", "max.partition.fetch.bytes=8388608"]);
    let out = tokio::task::block_in_place(|| c.output()).context("while running ConsumerPerformance")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec,
    // rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
    let fields: Vec<&str> = text
        .lines()
        .rev()
        .find(|l| l.split(", ").count() >= 10 && !l.starts_with("start.time"))
        .with_context(|| {
            format!(
                "no result from ConsumerPerformance: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?
        .split(", ")
        .collect();
    let fetch_mib: f64 = fields[8].trim().parse().context("unparsed fetch.MB.sec")?;
    report.add(
        "broker limits",
        "fetch-only from the source, Kafka's ConsumerPerformance",
        format!("{:.1} MB/s", fetch_mib * MIB / MB),
        format!(
            "the corpus' {} records, fetch.MB.sec (after the group join), max.partition.fetch.bytes 8 MiB",
            fields[4].trim()
        ),
    );
    Ok(())
}
