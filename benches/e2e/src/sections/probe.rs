//! Reading the state of a bench run: watermarks with librdkafka, strait's `/status` and
//! `/metrics` pages, and cutting or restoring the emulated link.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::harness::Link;

/// (log start offset, high watermark) summed over `topic`'s partitions, read with librdkafka
/// (16 readers at once: across the link each answer takes a round trip).
pub(super) fn watermarks(bootstrap: &str, topic: &str, partitions: i32) -> Result<(i64, i64)> {
    let readers = 16.min(partitions).max(1);
    let handles: Vec<_> = (0..readers)
        .map(|r| {
            let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
            std::thread::spawn(move || -> Result<(i64, i64)> {
                let c: BaseConsumer = ClientConfig::new()
                    .set("bootstrap.servers", bootstrap)
                    .create()
                    .context("while creating a watermark reader")?;
                let mut sum = (0, 0);
                for p in (r..partitions).step_by(readers as usize) {
                    let (lo, hi) = c
                        .fetch_watermarks(&topic, p, Duration::from_secs(30))
                        .with_context(|| format!("while reading the watermarks of {topic}/{p}"))?;
                    sum.0 += lo;
                    sum.1 += hi;
                }
                Ok(sum)
            })
        })
        .collect();
    let mut sum = (0, 0);
    for h in handles {
        let (lo, hi) = h.join().map_err(|_| anyhow::anyhow!("a watermark reader panicked"))??;
        sum.0 += lo;
        sum.1 += hi;
    }
    Ok(sum)
}

/// Cuts (every packet dropped both ways) or restores the emulated link.
pub(super) fn set_cut(repo: &Path, link: &Link, cut: bool) -> Result<()> {
    let out = std::process::Command::new("bash")
        .arg(repo.join("tools/wan/link.sh"))
        .args([if cut { "cut" } else { "heal" }, &link.name])
        .output()
        .context("while running tools/wan/link.sh")?;
    if !out.status.success() {
        bail!("link.sh failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Partitions in state `running` on a `/status` page.
pub(super) fn running(page: &str) -> usize {
    page.matches("\"state\": \"running\"").count()
}

/// Sum of metric `name` over the series whose labels contain `label` (e.g. `topic="cutgap"`).
pub(super) fn metric_where(page: &str, name: &str, label: &str) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{') && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// Smallest value of metric `name` over the series whose labels contain `label`.
pub(super) fn metric_min_where(page: &str, name: &str, label: &str) -> Option<f64> {
    page.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{') && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .reduce(f64::min)
}

/// The value of `key` for each partition of `/status`'s `partitions` list, in order (None:
/// null or not a number).
pub(super) fn partition_values(page: &str, key: &str) -> Vec<Option<f64>> {
    let partitions = page.find("\"partitions\": [").map_or("", |at| &page[at..]);
    let pat = format!("\"{key}\":");
    partitions
        .match_indices(&pat)
        .map(|(at, _)| {
            let value = partitions[at + pat.len()..].trim_start();
            let end = value.find([',', '\n', '}']).unwrap_or(value.len());
            value[..end].trim().parse::<f64>().ok()
        })
        .collect()
}

/// The number after `"key":` in the `totals` object of strait's `/status` (None: null).
pub(super) fn status_total(page: &str, key: &str) -> Option<f64> {
    let totals = &page[page.find("\"totals\"")?..];
    let rest = &totals[totals.find(&format!("\"{key}\""))? + key.len() + 2..];
    let value = rest.trim_start_matches([':', ' ']);
    let end = value.find([',', '\n', '}']).unwrap_or(value.len());
    value[..end].trim().parse().ok()
}

/// Seconds from `heal` to the first line of strait's text log at `log` saying a target
/// connection opened again after failed attempts.
pub(super) fn first_reconnect_after(log: &Path, heal: chrono::DateTime<chrono::Utc>) -> Option<f64> {
    logged_after(log, heal, &["connected again", "cluster=target"])
        .first()
        .copied()
}

/// Seconds from `heal` to each line of strait's text log at `log` (in order) logged at or
/// after it that contains every one of `needles`.
pub(super) fn logged_after(log: &Path, heal: chrono::DateTime<chrono::Utc>, needles: &[&str]) -> Vec<f64> {
    let Ok(text) = std::fs::read_to_string(log) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .filter_map(|l| chrono::DateTime::parse_from_rfc3339(l.split_whitespace().next()?).ok())
        .map(|t| {
            (t.with_timezone(&chrono::Utc) - heal)
                .num_microseconds()
                .unwrap_or(i64::MAX) as f64
                / 1e6
        })
        .filter(|&secs| secs >= 0.0)
        .collect()
}
