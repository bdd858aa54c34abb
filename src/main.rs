//! The `strait` binary: parses the command line, loads and validates config, starts telemetry,
//! runs the chosen command and maps the outcome to an exit code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use strait::config::Config;
use strait::replicate::Replicator;

/// Exit code for a configuration error (EX_USAGE in sysexits.h).
const EXIT_CONFIG: u8 = 64;

/// The static binary (musl, what the image ships) allocates with mimalloc. musl's allocator
/// gives every freed block above about 128 KiB back to the kernel at once and maps a new one
/// for the next: each batch, fetch answer and record buffer of the data path cost an `mmap`,
/// page faults on first touch and an `munmap` with a TLB flush on every core. Profiled in a
/// catch-up's first seconds, that was about half of strait's CPU (compression a third), on a
/// machine whose cores it shares with the brokers. glibc's allocator raises its mapping
/// threshold to the blocks it sees freed, so glibc builds keep it.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's settings for strait, which it reads from the environment once, as the process
/// loads: freed pages go back to the kernel at once (not after 1 s), threads keep no spare
/// pages per size class, and arenas are committed as they are used. With mimalloc's defaults
/// the bench's 5,000 partitions with a backlog peaked at 523 MiB of RSS (musl's allocator
/// 163-209 MiB, issue 18's bound 256 MiB); with these, 212-238 MiB, and a catch-up keeps the CPU
/// the allocator saves. A setting the environment already has is left as it is.
#[cfg(any(test, target_env = "musl"))]
const ALLOCATOR_SETTINGS: [(&str, &str); 3] = [
    ("MIMALLOC_PURGE_DELAY", "0"),
    ("MIMALLOC_PAGE_FULL_RETAIN", "0"),
    ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
];

/// The [`ALLOCATOR_SETTINGS`] that `is_set` says the environment lacks.
#[cfg(any(test, target_env = "musl"))]
fn missing_allocator_settings(is_set: impl Fn(&str) -> bool) -> Vec<(&'static str, &'static str)> {
    ALLOCATOR_SETTINGS
        .into_iter()
        .filter(|(name, _)| !is_set(name))
        .collect()
}

/// Starts the binary again in this process (`exec`: same pid, same arguments) with the
/// [`ALLOCATOR_SETTINGS`] the environment lacks, so mimalloc reads them as it loads; nothing to
/// do when it has them all. Should `exec` fail, strait goes on with mimalloc's defaults.
#[cfg(target_env = "musl")]
fn with_allocator_settings() {
    use std::os::unix::process::CommandExt;
    let missing = missing_allocator_settings(|name| std::env::var_os(name).is_some());
    if missing.is_empty() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let error = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .envs(missing)
        .exec();
    eprintln!("warning: cannot start again with the allocator's settings ({error}): going on with its defaults");
}

#[derive(Debug, Parser)]
#[command(name = "strait", about = "Cross-cluster Kafka replicator", version)]
struct Cli {
    /// TOML config file; env vars (STRAIT_*) override it.
    #[arg(long, env = "STRAIT_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replicate until SIGTERM or SIGINT.
    Run,
    /// Dry run: print which source topics match, their target names and what would be created
    /// or changed on the target. Writes nothing.
    Plan,
    /// Connect to both clusters with the full config (TLS, SASL, ApiVersions, Metadata on every
    /// broker) and list the topics that would be replicated. Exit 0 only when all passes.
    Check,
    /// Compare every replicated partition's source and target record by record (key, value,
    /// headers, timestamp), up to its checkpoint; print a table. Exit 0 when all are equal, 1
    /// with the first differing offsets otherwise. Reads each side once, the target within
    /// the WAN budget.
    Verify,
    /// List the source consumer groups `groups.include` selects, their committed offsets, the
    /// target offsets they translate to through the offset maps in the checkpoint topic, and
    /// what a sync would do. Writes nothing unless --apply. Exit 1 when a group could not be read.
    Groups {
        /// Commit the translated offsets on the target (groups with members there are left alone).
        #[arg(long)]
        apply: bool,
    },
    /// Print the version.
    Version,
    /// Ask the running strait's /readyz (on http.listen, loopback when it listens on every
    /// interface): exit 0 when it answers 200, 1 otherwise. For container health checks in
    /// images without a shell.
    Healthcheck,
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Moved: the demo client is the `strait-demo` binary.
    #[command(hide = true)]
    Demo {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the annotated reference config: every key with its default, its env var and what
    /// it does.
    Reference,
}

/// How long `healthcheck` waits for each step (connect, send, answer).
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    #[cfg(target_env = "musl")]
    with_allocator_settings();
    let cli = Cli::parse();
    if let Err(e) = strait::telemetry::init_logs_from_env() {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    match cli.command {
        Command::Version => {
            println!("strait {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Config {
            command: ConfigCommand::Reference,
        } => {
            print!("{}", strait::config::REFERENCE_TOML);
            ExitCode::SUCCESS
        }
        Command::Healthcheck => healthcheck(cli.config),
        Command::Run => run(cli.config),
        Command::Plan => plan(cli.config),
        Command::Check => check(cli.config),
        Command::Verify => verify(cli.config),
        Command::Groups { apply } => groups(cli.config, apply),
        Command::Demo { args } => {
            eprintln!(
                "error: `strait demo` moved to its own binary; run: strait-demo {}",
                if args.is_empty() {
                    "--help".to_owned()
                } else {
                    args.join(" ")
                }
            );
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Loads and validates the config (before any socket opens), logs its warnings, and compiles
/// the topic filter; a bad config prints why and gives exit code 64.
fn load_config(path: Option<&std::path::Path>) -> Result<(Config, strait::config::TopicFilter), ExitCode> {
    let fail = |e: &dyn std::error::Error| {
        eprintln!("error: {}", strait::error_chain(e));
        ExitCode::from(EXIT_CONFIG)
    };
    let (config, warnings) = Config::load(path).map_err(|e| fail(&e))?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    let filter = config.topic_filter().map_err(|e| fail(&e))?;
    Ok((config, filter))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("while starting the async runtime")
}

fn run(config_path: Option<PathBuf>) -> ExitCode {
    // Validate everything before any socket opens.
    let (config, filter) = match load_config(config_path.as_deref()) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let shutdown = CancellationToken::new();
            tokio::spawn(wait_for_signal(shutdown.clone()));
            let listen = config.http.socket_addr().context("while reading http.listen")?;
            let metrics = strait::telemetry::install().context("while starting the metrics recorder")?;
            tracing::info!(source = %config.source.bootstrap_servers, target = %config.target.bootstrap_servers,
                http = %listen, "strait starting");
            let info = strait::http::StatusInfo {
                source_bootstrap: config.source.bootstrap_servers.clone(),
                target_bootstrap: config.target.bootstrap_servers.clone(),
                retention_headroom_alert_secs: config.alerts.retention_headroom_secs,
                codec: config.compression.codec,
            };
            let replicator = Replicator::new(config, filter);
            tokio::spawn(reload_budget(config_path.clone(), replicator.budget()));
            let endpoints = strait::http::Endpoints {
                metrics,
                progress: replicator.progress(),
                health: replicator.health(),
                liveness: Default::default(),
                budget: replicator.budget(),
                level: replicator.level(),
                info,
            };
            // Dropped (and so stopped) when `run` returns.
            let _http = strait::http::HttpServer::start(listen, endpoints)
                .await
                .context("while starting the HTTP endpoint")?;
            replicator.run(shutdown).await.context("while replicating")
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            failure_code(&e)
        }
    }
}

/// GETs /readyz from the strait that the same config runs: 0 when ready, 1 for anything else
/// (not ready, not answering, config unreadable), with the reason on stderr.
fn healthcheck(config_path: Option<PathBuf>) -> ExitCode {
    let listen = match Config::load(config_path.as_deref()).and_then(|(c, _)| c.http.socket_addr()) {
        Ok(listen) => listen,
        Err(e) => {
            eprintln!("unhealthy: {}", strait::error_chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let addr = strait::http::probe::local_target(listen);
    match strait::http::probe::get(addr, "/readyz", HEALTHCHECK_TIMEOUT) {
        Ok((200, body)) => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!("unhealthy: {addr}/readyz answered {status}: {}", body.trim_end());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: {}", strait::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// 69 TLS refused, 77 authentication refused (sysexits.h), else 1. (`run` retries an
/// unreachable cluster; `check` reports it with its own exit 69.)
fn failure_code(e: &anyhow::Error) -> ExitCode {
    let code = e
        .chain()
        .find_map(|c| c.downcast_ref::<strait::replicate::Error>())
        .and_then(strait::replicate::Error::exit_code);
    code.map_or(ExitCode::FAILURE, ExitCode::from)
}

fn check(config_path: Option<PathBuf>) -> ExitCode {
    let (config, filter) = match load_config(config_path.as_deref()) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let report = match runtime() {
        Ok(rt) => rt.block_on(strait::replicate::check(&config, &filter)),
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    print!("{report}");
    ExitCode::from(report.exit_code())
}

fn verify(config_path: Option<PathBuf>) -> ExitCode {
    let (config, filter) = match load_config(config_path.as_deref()) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let work = async {
        strait::replicate::verify(&config, &filter)
            .await
            .context("while reading both clusters")
    };
    print_report(
        work,
        |r| r.exit_code(),
        |e| {
            // Not 1: that means the clusters differ.
            let code = failure_code(e);
            if code == ExitCode::FAILURE {
                ExitCode::from(70)
            } else {
                code
            }
        },
    )
}

/// Runs a one-shot command and prints its report; exits with the report's code, or prints the
/// error and exits with `on_error`'s.
fn print_report<R: std::fmt::Display>(
    work: impl std::future::Future<Output = anyhow::Result<R>>,
    code: impl Fn(&R) -> u8,
    on_error: impl Fn(&anyhow::Error) -> ExitCode,
) -> ExitCode {
    match runtime().and_then(|rt| rt.block_on(work)) {
        Ok(report) => {
            print!("{report}");
            ExitCode::from(code(&report))
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            on_error(&e)
        }
    }
}

fn groups(config_path: Option<PathBuf>, apply: bool) -> ExitCode {
    let (config, _) = match load_config(config_path.as_deref()) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    if config.groups.include.is_empty() {
        eprintln!(
            "error: groups.include selects no consumer group: set it (STRAIT_GROUPS__INCLUDE), e.g. \"jaeger-.*\""
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    let work = async {
        strait::replicate::groups(&config, apply)
            .await
            .context("while reading both clusters")
    };
    print_report(work, |r| r.exit_code(), failure_code)
}

fn plan(config_path: Option<PathBuf>) -> ExitCode {
    let (config, filter) = match load_config(config_path.as_deref()) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            strait::replicate::plan(&config, &filter)
                .await
                .context("while reading both clusters")
        })
    });
    match result {
        Ok(plan) => {
            println!(
                "source {} -> target {}",
                config.source.bootstrap_servers, config.target.bootstrap_servers
            );
            print!("{plan}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// How often the config file is read again to see whether it changed.
const CONFIG_POLL: std::time::Duration = std::time::Duration::from_secs(5);

/// Re-reads the config (file and env) on SIGHUP, and when the config file's content changes
/// (read every [`CONFIG_POLL`]: a mounted ConfigMap changes with no signal), and applies a
/// changed budget and changed budget weights at once. Other settings need a restart.
async fn reload_budget(config_path: Option<PathBuf>, budget: std::sync::Arc<strait::budget::Budget>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())
        .inspect_err(
            |e| tracing::warn!(error = %e, "cannot install the SIGHUP handler: the config file is still watched"),
        )
        .ok();
    let mut watch = config_path.as_deref().map(strait::config::FileWatch::new);
    let mut tick = tokio::time::interval(CONFIG_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unreadable = false;
    loop {
        let why = tokio::select! {
            Some(()) = async { hup.as_mut()?.recv().await } => "SIGHUP",
            _ = tick.tick(), if watch.is_some() => {
                let Some(w) = watch.as_mut() else { continue };
                match w.changed() {
                    Ok(changed) => {
                        unreadable = false;
                        if !changed {
                            continue;
                        }
                        "config file changed"
                    }
                    Err(e) => {
                        if !std::mem::replace(&mut unreadable, true) {
                            tracing::warn!(path = %w.path().display(), error = %e, "cannot read the config file; the budget in force is kept");
                        }
                        continue;
                    }
                }
            }
            else => return,
        };
        apply_budget(why, config_path.as_deref(), &budget);
    }
}

/// Reads the config again and applies its budget and weights; an invalid config changes nothing.
fn apply_budget(why: &str, config_path: Option<&std::path::Path>, budget: &strait::budget::Budget) {
    let c = match Config::load(config_path) {
        Ok((c, _)) => c,
        Err(e) => {
            tracing::warn!(reason = why, error = %strait::error_chain(&e), "config invalid: budget unchanged");
            return;
        }
    };
    let (bytes_per_sec, burst_bytes) = c.budget.share(c.shard.count);
    let before = budget.bytes_per_sec();
    budget.set(bytes_per_sec, burst_bytes);
    if let Err(e) = budget.set_weights(c.budget.weights.clone()) {
        tracing::warn!(reason = why, error = %e, "budget weights unchanged");
    }
    tracing::info!(reason = why, from = before, bytes_per_sec, total_bytes_per_sec = c.budget.bytes_per_sec,
        weights = ?budget.weights(), "budget applied");
}

async fn wait_for_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            tracing::error!("cannot install signal handlers; stop strait with SIGKILL");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    shutdown.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_allocator_settings_the_environment_lacks_are_added() {
        let all = missing_allocator_settings(|_| false);
        assert_eq!(all, ALLOCATOR_SETTINGS);
        assert!(missing_allocator_settings(|_| true).is_empty(), "all set: no exec");
        // An operator's own purge delay stays; the other two are added.
        let missing = missing_allocator_settings(|name| name == "MIMALLOC_PURGE_DELAY");
        assert_eq!(
            missing,
            [("MIMALLOC_PAGE_FULL_RETAIN", "0"), ("MIMALLOC_ARENA_EAGER_COMMIT", "0")]
        );
    }
}
