//! Many partitions: peak RSS and start-up while replicating a backlog spread over them, then,
//! restarted once every partition has caught up, start-up, RSS and CPU with all of them idle.

use std::path::Path;
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use strait::kafka::TopicSpec;

use super::{Report, MB, MIB};
use crate::corpus;
use crate::harness::{self, Broker, Proc};
use crate::Cli;

const S: &str = "many partitions";
/// How long the idle process's CPU is measured.
const IDLE_WINDOW: Duration = Duration::from_secs(30);

/// Partitions in state "running" on strait's `/status` (pretty-printed JSON); none when it
/// does not answer.
fn running_partitions(http: u16) -> usize {
    match harness::http_get(http, "/status") {
        Ok((200, page)) => page
            .lines()
            .map(|l| l.split_whitespace().collect::<String>())
            .filter(|l| l.trim_end_matches(',') == "\"state\":\"running\"")
            .count(),
        _ => 0,
    }
}

fn met(ok: bool) -> &'static str {
    if ok {
        "MET"
    } else {
        "NOT MET"
    }
}

/// One backlog run: strait replicating the whole wide topic to `prefix`'s target topic.
struct Backlog {
    /// Peak RSS (`VmHWM`, and `VmRSS` sampled every 200 ms), MiB.
    peak: f64,
    /// Seconds from spawn until `/status` shows every partition running.
    all_running: Option<f64>,
    /// Seconds from spawn until the target broker holds a log for every partition of the
    /// target topic (its data directory, sampled every 200 ms).
    logs_created: Option<f64>,
    replicated: f64,
    elapsed: f64,
}

impl Backlog {
    /// Whether all `records` were replicated.
    fn drained(&self, records: u64) -> bool {
        self.replicated >= records as f64
    }
}

/// Runs strait on the wide topic to `prefix`'s target topic until it replicated `records`.
async fn backlog(
    cli: &Cli,
    bin: &Path,
    source: &Broker,
    target: &Broker,
    log: &Path,
    prefix: &str,
    records: u64,
) -> Result<Backlog> {
    let parts = cli.wide_partitions as usize;
    let target_topic = format!("{prefix}wide");
    let http = harness::free_port()?;
    let cmd = harness::strait_command(bin, &source.bootstrap(), &target.bootstrap(), "wide", prefix, http);
    let mut p = Proc::spawn("strait (wide)", cmd, log)?;
    let start = Instant::now();
    let mut peak_rss = 0u64;
    let mut replicated = 0f64;
    let mut all_running: Option<f64> = None;
    let mut logs_created: Option<f64> = None;
    let mut last_scrape = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        p.check_alive()?;
        peak_rss = peak_rss.max(harness::vm_bytes(p.pid(), "VmRSS").unwrap_or(0));
        if logs_created.is_none() && target.partition_logs(&target_topic) >= parts {
            logs_created = Some(start.elapsed().as_secs_f64());
        }
        if last_scrape.elapsed() >= Duration::from_secs(1) {
            last_scrape = Instant::now();
            if let Ok((200, page)) = harness::http_get(http, "/metrics") {
                replicated = harness::metric_sum(&page, "strait_records_replicated_total");
            }
            if all_running.is_none() && running_partitions(http) >= parts {
                all_running = Some(start.elapsed().as_secs_f64());
            }
        }
        if replicated >= records as f64 || start.elapsed() > Duration::from_secs(cli.wide_max_secs) {
            break;
        }
    }
    let hwm = harness::vm_bytes(p.pid(), "VmHWM")?;
    let elapsed = start.elapsed().as_secs_f64();
    let _ = tokio::task::block_in_place(|| p.stop(Duration::from_secs(10)));
    Ok(Backlog {
        peak: hwm.max(peak_rss) as f64 / MIB,
        all_running,
        logs_created,
        replicated,
        elapsed,
    })
}

/// The "replicated while measured" row of a backlog run into `which` target topic.
fn replicated(report: &mut Report, which: &str, b: &Backlog, records: u64, payload: f64) {
    report.add(
        S,
        format!("replicated while measured, {which}"),
        format!("{:.0}/{} records", b.replicated, records),
        format!(
            "{} in {:.0} s from start ({:.1} MB/s)",
            if b.drained(records) { "all" } else { "stopped early" },
            b.elapsed,
            b.replicated * payload / records as f64 / MB / b.elapsed
        ),
    );
}

fn secs(s: Option<f64>) -> String {
    s.map_or("never".to_owned(), |s| format!("{s:.1} s"))
}

/// Peak RSS and start-up with a backlog (strait creating the target topic; then into a target
/// topic its broker has already taken up), and start-up, RSS and idle CPU after a restart.
///
/// A new topic of thousands of partitions is not writable at once: its broker creates the
/// partitions' logs one after the other (~280 a second on this machine's node when idle), so
/// the first run's start-up is mostly the broker's. The second run's target topic exists and
/// every log is created before strait starts: its start-up is strait's own, and only it is
/// judged against the 30 s target.
pub(super) async fn run(cli: &Cli, bin: &Path, source: &Broker, logs: &Path, report: &mut Report) -> Result<()> {
    let parts = cli.wide_partitions;
    let target = Broker::start("wide", None, "127.0.0.1").await?;
    let payload = parts as f64 * cli.wide_mb_per_partition * MB;
    let (records, secs_written) = corpus::write(&source.bootstrap(), "wide", parts, payload, 2).await?;
    report.add(
        S,
        "backlog used",
        format!("{:.0} MB", payload / MB),
        format!(
            "{parts} partitions x {} MB of key+value, {records} spans; written in {secs_written:.0} s",
            cli.wide_mb_per_partition
        ),
    );
    let created = backlog(
        cli,
        bin,
        source,
        &target,
        &logs.join("strait-wide.log"),
        "wide.",
        records,
    )
    .await;
    let created = match created {
        Ok(c) => c,
        Err(e) => {
            report.problem(format!("wide run: {e:#}"));
            return Err(e);
        }
    };
    report.add(
        S,
        "start-up, backlog, target topic created by strait",
        secs(created.all_running),
        format!(
            "not judged, the target broker's pace: from spawn until /status shows all {parts} partitions running; the target broker held a log for every partition {} after spawn (its data directory, sampled every 0.2 s), and a partition cannot be written before its log exists: strait had all running {} after that; strait's own start-up (target <= 30 s) is the ready topic's row",
            secs(created.logs_created),
            secs(created.all_running.zip(created.logs_created).map(|(all, logs)| all - logs)),
        ),
    );
    replicated(report, "target topic created by strait", &created, records, payload);
    if created.drained(records) {
        tokio::task::block_in_place(|| idle(cli, bin, source, &target, logs, report))?;
    } else {
        report.na(S, "idle partitions", "the backlog was not drained: no idle restart");
    }
    // The same backlog again, into a target topic created and taken up before strait starts.
    let topic = "wide2.wide";
    let spec = TopicSpec {
        name: topic.to_owned(),
        partitions: parts,
        replication_factor: -1,
        configs: BTreeMap::new(),
    };
    let t0 = Instant::now();
    for (name, r) in harness::cluster(&target.bootstrap())
        .create_topics(&[spec], 60_000)
        .await?
    {
        r.with_context(|| format!("while creating {name} on the wide run's target"))?;
    }
    while target.partition_logs(topic) < parts as usize {
        if t0.elapsed() > Duration::from_secs(cli.wide_max_secs) {
            anyhow::bail!(
                "the target broker did not create {topic}'s {parts} partition logs within {} s",
                cli.wide_max_secs
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let taken_up = t0.elapsed().as_secs_f64();
    let ready = backlog(
        cli,
        bin,
        source,
        &target,
        &logs.join("strait-wide-ready.log"),
        "wide2.",
        records,
    )
    .await?;
    report.add(
        S,
        "start-up, backlog, target topic ready",
        secs(ready.all_running),
        format!(
            "{} (target <= 30 s): from spawn until /status shows all {parts} partitions running; the target topic created by the bench before (its broker took {taken_up:.1} s to create the {parts} partition logs)",
            met(ready.all_running.is_some_and(|s| s <= 30.0)),
        ),
    );
    replicated(report, "target topic ready", &ready, records, payload);
    let peak = created.peak.max(ready.peak);
    report.add(
        S,
        "strait peak RSS, backlog",
        format!("{peak:.1} MiB"),
        format!(
            "{} (target <= 256 MiB); VmHWM of the strait process, the higher of both runs ({:.1} MiB creating the target topic, {:.1} MiB into the ready one)",
            met(peak <= 256.0),
            created.peak,
            ready.peak
        ),
    );
    drop(target);
    Ok(())
}

/// Restarts strait on the caught-up partitions: start-up to all running, then RSS and CPU
/// while every partition is idle.
fn idle(cli: &Cli, bin: &Path, source: &Broker, target: &Broker, logs: &Path, report: &mut Report) -> Result<()> {
    let parts = cli.wide_partitions as usize;
    let http = harness::free_port()?;
    let cmd = harness::strait_command(bin, &source.bootstrap(), &target.bootstrap(), "wide", "wide.", http);
    let mut p = Proc::spawn("strait (wide, idle)", cmd, &logs.join("strait-wide-idle.log"))?;
    let start = Instant::now();
    let up = loop {
        std::thread::sleep(Duration::from_millis(250));
        p.check_alive()?;
        if running_partitions(http) >= parts {
            break Some(start.elapsed().as_secs_f64());
        }
        if start.elapsed() > Duration::from_secs(cli.wide_max_secs) {
            break None;
        }
    };
    report.add(
        S,
        "start-up, idle",
        up.map_or("never".to_owned(), |s| format!("{s:.1} s")),
        format!(
            "{} (target <= 30 s): restarted on {parts} caught-up partitions, until all are running",
            met(up.is_some_and(|s| s <= 30.0))
        ),
    );
    if up.is_some() {
        // Let the start-up's own work (resume, first checkpoints) settle before measuring.
        std::thread::sleep(Duration::from_secs(5));
        let ticks = harness::clock_ticks();
        let cpu0 = harness::cpu_seconds(p.pid(), ticks)?;
        let t0 = Instant::now();
        std::thread::sleep(IDLE_WINDOW);
        let cpu = (harness::cpu_seconds(p.pid(), ticks)? - cpu0) / t0.elapsed().as_secs_f64();
        report.add(
            S,
            "CPU while idle",
            format!("{:.1}% of a core", cpu * 100.0),
            format!(
                "{} (target <= 5%): user+system over {} s, {parts} idle partitions",
                met(cpu <= 0.05),
                IDLE_WINDOW.as_secs()
            ),
        );
    }
    let hwm = harness::vm_bytes(p.pid(), "VmHWM")? as f64 / MIB;
    report.add(
        S,
        "strait peak RSS, idle",
        format!("{hwm:.1} MiB"),
        format!(
            "{} (target <= 256 MiB); VmHWM of the restarted process",
            met(hwm <= 256.0)
        ),
    );
    let _ = p.stop(Duration::from_secs(10));
    Ok(())
}
