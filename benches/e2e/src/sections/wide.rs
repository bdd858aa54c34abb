//! Many partitions: peak RSS and start-up while replicating a backlog spread over them, then,
//! restarted once every partition has caught up, start-up, RSS and CPU with all of them idle.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;

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

/// Peak RSS and start-up with a backlog, then start-up, RSS and idle CPU after a restart.
pub(super) async fn run(cli: &Cli, bin: &Path, source: &Broker, logs: &Path, report: &mut Report) -> Result<()> {
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
    let mut all_running: Option<f64> = None;
    let mut last_scrape = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Err(e) = p.check_alive() {
            report.problem(format!("wide run: {e:#}"));
            return Err(e);
        }
        peak_rss = peak_rss.max(harness::vm_bytes(p.pid(), "VmRSS").unwrap_or(0));
        if last_scrape.elapsed() >= Duration::from_secs(1) {
            last_scrape = Instant::now();
            if let Ok((200, page)) = harness::http_get(http, "/metrics") {
                replicated = harness::metric_sum(&page, "strait_records_replicated_total");
            }
            if all_running.is_none() && running_partitions(http) >= parts as usize {
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
    let done = replicated >= records as f64;
    let peak = hwm.max(peak_rss) as f64 / MIB;
    report.add(
        S,
        "strait peak RSS, backlog",
        format!("{peak:.1} MiB"),
        format!(
            "{} (target <= 256 MiB); VmHWM of the strait process",
            met(peak <= 256.0)
        ),
    );
    report.add(
        S,
        "start-up, backlog",
        all_running.map_or("never".to_owned(), |s| format!("{s:.1} s")),
        format!(
            "{} (target <= 30 s): from spawn until /status shows all {parts} partitions running",
            met(all_running.is_some_and(|s| s <= 30.0))
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
    if done {
        tokio::task::block_in_place(|| idle(cli, bin, source, &target, logs, report))?;
    } else {
        report.na(S, "idle partitions", "the backlog was not drained: no idle restart");
    }
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
