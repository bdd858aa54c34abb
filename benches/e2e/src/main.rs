//! strait's end-to-end benchmark (issue 4, item 6; issue 12, item 5): in one run on local
//! one-node Apache Kafka brokers it measures the brokers' own limits, strait against a naive
//! rskafka mirror, a tuned librdkafka mirror and MirrorMaker 2, the records each duplicates
//! after a kill -9, wire bytes per source byte against the zstd-19 bound, the budget over an
//! emulated 50 ms link, and RSS at 1,000 partitions, and prints one table.
//!
//! strait runs as the real release binary (`target/release/strait run`), each baseline as a
//! subprocess of this binary (`strait-e2e mirror ...`), so CPU time and peak RSS read from
//! /proc are each process' own.

mod baseline;
mod corpus;
mod harness;
mod sections;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "strait-e2e", about = "strait end-to-end benchmark")]
pub struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Span corpus size, MB of key + value bytes (large enough that the unthrottled runs last
    /// seconds, not a few samples).
    #[arg(long, default_value_t = 1024)]
    corpus_mb: u64,
    /// Partitions of the corpus topic.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Longest a mirror is measured before its rate is taken from what it moved so far.
    #[arg(long, default_value_t = 60)]
    max_mirror_secs: u64,
    /// MB of regrouped records compressed at zstd 19 for the bound (a sample: level 19 runs
    /// at a few MB/s).
    #[arg(long, default_value_t = 32)]
    bound_sample_mb: u64,
    /// Rate of the emulated link (tc tbf syntax); 25 ms each way.
    #[arg(long, default_value = "10mbit")]
    link_rate: String,
    /// strait's budget over the emulated link.
    #[arg(long, default_value_t = 400_000)]
    budget_bytes_per_sec: u64,
    /// Seconds the budgeted, backlogged run is measured.
    #[arg(long, default_value_t = 60)]
    budget_secs: u64,
    /// Records per second written for the latency measurement.
    #[arg(long, default_value_t = 20)]
    latency_rate: u64,
    /// Seconds of the latency measurement.
    #[arg(long, default_value_t = 30)]
    latency_secs: u64,
    /// Partitions of the wide (RSS) run.
    #[arg(long, default_value_t = 1000)]
    wide_partitions: i32,
    /// Backlog per partition of the wide run, MB of key + value bytes.
    #[arg(long, default_value_t = 2.0)]
    wide_mb_per_partition: f64,
    /// Longest the wide run is measured.
    #[arg(long, default_value_t = 120)]
    wide_max_secs: u64,
    /// Skip the broker limits.
    #[arg(long)]
    skip_limits: bool,
    /// Skip strait unthrottled (and so the ratios and the wire bytes measured on the target).
    #[arg(long)]
    skip_strait: bool,
    /// Skip the naive rskafka mirror.
    #[arg(long)]
    skip_naive: bool,
    /// Skip the tuned librdkafka mirror.
    #[arg(long)]
    skip_rdkafka: bool,
    /// Skip MirrorMaker 2 (its unthrottled run and its kill -9 run).
    #[arg(long)]
    skip_mm2: bool,
    /// Skip the kill -9 runs (records duplicated after one kill -9 and a restart).
    #[arg(long)]
    skip_kill: bool,
    /// Skip the broker limits measured with Kafka's own perf tools (ProducerPerformance,
    /// ConsumerPerformance).
    #[arg(long)]
    skip_perf_tools: bool,
    /// Skip the zstd-19 bound.
    #[arg(long)]
    skip_bound: bool,
    /// Skip the budget over the emulated link (needs root).
    #[arg(long)]
    skip_wan: bool,
    /// Rate of the link of the one-partition run (tc tbf syntax): ample, so the round trip
    /// and strait's sizing are what limit it.
    #[arg(long, default_value = "1gbit")]
    rtt_link_rate: String,
    /// One-way delay of the one-partition run's link, ms (50: a 100 ms round trip).
    #[arg(long, default_value_t = 50)]
    rtt_delay_ms: u32,
    /// Backlog of the one-partition run, MB of key + value bytes.
    #[arg(long, default_value_t = 1024)]
    rtt_corpus_mb: u64,
    /// Longest each one-partition run is measured after its warm-up.
    #[arg(long, default_value_t = 60)]
    rtt_secs: u64,
    /// Skip the one-partition run over a long round trip (needs root).
    #[arg(long)]
    skip_rtt: bool,
    /// Skip the 1,000-partition RSS run.
    #[arg(long)]
    skip_wide: bool,
    /// Partitions behind the cut (all but 32 in one topic, 16 at retention risk, 16 past it).
    #[arg(long, default_value_t = 5000)]
    cut_partitions: i32,
    /// Seconds the link is cut: 6 hours compressed by 6 h / this (retention and the alert
    /// threshold are compressed alike).
    #[arg(long, default_value_t = 420)]
    cut_secs: u64,
    /// Source key+value kB/s written before, during and after the cut.
    #[arg(long, default_value_t = 120)]
    cut_source_kb_per_sec: u64,
    /// strait's budget over the cut link, wire bytes per second.
    #[arg(long, default_value_t = 250_000)]
    cut_budget_bytes_per_sec: u64,
    /// Rate of the cut link (tc tbf syntax); 25 ms each way.
    #[arg(long, default_value = "10mbit")]
    cut_link_rate: String,
    /// Seconds after the link's return when the drain ETA is read from /status.
    #[arg(long, default_value_t = 60)]
    cut_eta_at_secs: u64,
    /// Longest the catch-up before the cut, and the drain after it, are waited for.
    #[arg(long, default_value_t = 300)]
    cut_max_drain_secs: u64,
    /// strait's fetch.buffer_max_bytes and batch.buffer_max_bytes in the cut, MiB (0: strait's
    /// defaults): small enough that strait stops reading within the cut's first third, as it
    /// does within minutes of a real 6-hour cut.
    #[arg(long, default_value_t = 4)]
    cut_buffer_mib: u64,
    /// Skip the 6-hour cut in compressed time (needs root).
    #[arg(long)]
    skip_cut: bool,
    /// Seconds the link is cut before the fresh-first catch-up is measured.
    #[arg(long, default_value_t = 600)]
    catchup_cut_secs: u64,
    /// Partitions of the span topic in the fresh-first run.
    #[arg(long, default_value_t = 6)]
    catchup_partitions: i32,
    /// Source key+value kB/s written before, during and after the cut in the fresh-first run.
    #[arg(long, default_value_t = 300)]
    catchup_source_kb_per_sec: u64,
    /// strait's budget in the fresh-first run, wire bytes per second.
    #[arg(long, default_value_t = 1_000_000)]
    catchup_budget_bytes_per_sec: u64,
    /// Rate of the link in the fresh-first run (tc tbf syntax); 25 ms each way.
    #[arg(long, default_value = "10mbit")]
    catchup_link_rate: String,
    /// strait's catchup.fresh_after_secs in the fresh-first run.
    #[arg(long, default_value_t = 30)]
    catchup_fresh_after_secs: u64,
    /// Skip the fresh-first catch-up after a cut (needs root).
    #[arg(long)]
    skip_catchup: bool,
    /// The strait binary; default: `cargo build --release` of this repository, then
    /// `target/release/strait`.
    #[arg(long)]
    strait_bin: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Internal: run a baseline mirror until killed (the bench starts these itself).
    Mirror {
        #[arg(value_enum)]
        kind: baseline::Mirror,
        #[arg(long)]
        source: String,
        #[arg(long)]
        target: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        target_topic: String,
        #[arg(long)]
        partitions: i32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.mode {
        Some(Mode::Mirror {
            kind,
            ref source,
            ref target,
            ref topic,
            ref target_topic,
            partitions,
        }) => match rt.block_on(baseline::run(kind, source, target, topic, target_topic, partitions)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mirror failed: {e:#}");
                ExitCode::FAILURE
            }
        },
        None => match rt.block_on(sections::run_all(&cli)) {
            Ok(report) => {
                println!("{}", report.render());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("bench failed: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
