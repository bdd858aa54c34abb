//! The `strait-demo` binary: writes seeded Jaeger spans to a cluster, or counts them. The
//! quickstart and compose's `spans` service run it; it is not part of the replicator's image.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use strait_spans::{demo, Encoding};

#[derive(Debug, Parser)]
#[command(
    name = "strait-demo",
    about = "Demo data for strait: write Jaeger spans to a cluster, or count them",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write seeded Jaeger spans to a topic (created when missing).
    Produce {
        /// Comma-separated host:port of the cluster.
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        /// Topic to write.
        #[arg(long, default_value = "jaeger-spans")]
        topic: String,
        /// Partitions, when the topic is created.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Number of spans.
        #[arg(long, default_value_t = 10_000)]
        count: u64,
        /// Generator seed: the same seed gives the same spans.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// protobuf (Jaeger's default) or json.
        #[arg(long, default_value = "protobuf")]
        encoding: Encoding,
    },
    /// Count the records of a topic and how many decode as Jaeger spans.
    Count {
        /// Comma-separated host:port of the cluster.
        #[arg(long, default_value = "127.0.0.1:9093")]
        bootstrap: String,
        /// Topic to read.
        #[arg(long, default_value = "jaeger-spans")]
        topic: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr as strait's do (STRAIT_LOG_FORMAT, STRAIT_LOG).
    if let Err(e) = strait::telemetry::init_logs_from_env() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    match runtime().and_then(|rt| rt.block_on(run(cli.command))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("while starting the async runtime")
}

fn split(s: &str) -> Vec<String> {
    s.split(',')
        .map(|x| x.trim().to_owned())
        .filter(|x| !x.is_empty())
        .collect()
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Produce {
            bootstrap,
            topic,
            partitions,
            count,
            seed,
            encoding,
        } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("while reading the clock")?
                .as_micros() as i64;
            let n = demo::produce_spans(&split(&bootstrap), &topic, partitions, count, seed, encoding, now)
                .await
                .with_context(|| format!("while writing spans to {topic} on {bootstrap}"))?;
            println!("wrote {n} spans to {topic} on {bootstrap}");
        }
        Command::Count { bootstrap, topic } => {
            let c = demo::count_spans(&split(&bootstrap), &topic)
                .await
                .with_context(|| format!("while reading {topic} on {bootstrap}"))?;
            println!(
                "{topic} on {bootstrap}: {} records, {} valid Jaeger spans{}",
                c.records,
                c.spans,
                c.example.map(|e| format!(" (e.g. {e})")).unwrap_or_default()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn produce_defaults_and_encoding() {
        let cli = Cli::try_parse_from(["strait-demo", "produce", "--encoding", "json", "--count", "5"])
            .expect("valid command line");
        match cli.command {
            Command::Produce {
                bootstrap,
                topic,
                count,
                encoding,
                ..
            } => {
                assert_eq!(bootstrap, "127.0.0.1:9092");
                assert_eq!(topic, "jaeger-spans");
                assert_eq!(count, 5);
                assert_eq!(encoding, Encoding::Json);
            }
            other => panic!("parsed as {other:?}"),
        }
        assert!(Cli::try_parse_from(["strait-demo", "produce", "--encoding", "avro"]).is_err());
    }

    #[test]
    fn split_trims_and_drops_empty() {
        assert_eq!(split(" a:1, b:2 ,,"), ["a:1", "b:2"]);
    }
}
