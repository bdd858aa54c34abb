//! Peak RSS while replicating a backlog over many partitions.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::{Report, MB, MIB};
use crate::corpus;
use crate::harness::{self, Broker, Proc};
use crate::Cli;

/// Peak RSS while replicating a backlog spread over many partitions.
pub(super) async fn run(cli: &Cli, bin: &Path, source: &Broker, logs: &Path, report: &mut Report) -> Result<()> {
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
