//! MirrorMaker 2 beside strait: dedicated mode (`org.apache.kafka.connect.mirror.MirrorMaker`)
//! from the Apache Kafka jars, with the config below written by the bench into its log
//! directory; its figures measured like the other mirrors'; and the records each mirror
//! duplicates on the target after one `kill -9` mid-run and a restart.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::mirrors::{add_mirror, measure, MirrorFigures};
use super::Report;
use crate::corpus::Corpus;
use crate::harness::{self, Broker, Proc};
use crate::Cli;

pub(super) const NAME: &str = "MirrorMaker 2 (dedicated, zstd, 1 MiB batches, linger 100 ms)";

/// MM2's config, as a careful operator would tune it for throughput: one flow src->dst for
/// the one topic, identity policy (the target topic keeps its name), one task per partition,
/// zstd with 1 MiB batches and 100 ms linger, large fetches, ACL sync and checkpoints off,
/// replication factor 1 for every internal topic (one-node brokers), offsets flushed every
/// 10 s instead of 60 s, lost tasks reassigned after 10 s instead of 5 min, and plugins found
/// from their manifests (a faster start, as MM2's own warning advises). The `dst.` worker
/// settings reach the src->dst worker (its log shows them). Delivery is
/// MM2's default, at least once (exactly-once source support is not enabled).
pub(super) fn properties(source: &str, target: &str, topic: &str, partitions: i32) -> String {
    format!(
        "clusters = src, dst
src.bootstrap.servers = {source}
dst.bootstrap.servers = {target}
src->dst.enabled = true
src->dst.topics = {topic}
dst->src.enabled = false
replication.policy.class = org.apache.kafka.connect.mirror.IdentityReplicationPolicy
tasks.max = {partitions}
sync.topic.acls.enabled = false
emit.checkpoints.enabled = false
sync.group.offsets.enabled = false
plugin.discovery = service_load
replication.factor = 1
offset-syncs.topic.replication.factor = 1
checkpoints.topic.replication.factor = 1
heartbeats.topic.replication.factor = 1
offset.storage.replication.factor = 1
status.storage.replication.factor = 1
config.storage.replication.factor = 1
dst.offset.flush.interval.ms = 10000
dst.scheduled.rebalance.max.delay.ms = 10000
dst.producer.compression.type = zstd
dst.producer.batch.size = 1048576
dst.producer.linger.ms = 100
dst.producer.max.request.size = 8388608
dst.producer.buffer.memory = 67108864
src.consumer.fetch.max.bytes = 52428800
src.consumer.max.partition.fetch.bytes = 8388608
src.consumer.max.poll.records = 2000
"
    )
}

/// Warnings to the process' output, plus the producer and worker configs MM2 logs at start
/// (so the log shows which settings took effect).
const LOG4J2: &str = "status = error
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = out
logger.pc.name = org.apache.kafka.clients.producer.ProducerConfig
logger.pc.level = INFO
logger.dc.name = org.apache.kafka.connect.runtime.distributed.DistributedConfig
logger.dc.level = INFO
";

/// Writes the config into `logs` and returns the command that runs MM2 on it: the JVM flags of
/// Kafka's `connect-mirror-maker.sh` (heap 256 MiB to 2 GiB, G1).
fn command(repo: &Path, logs: &Path, name: &str, props: &str) -> Result<(Command, PathBuf)> {
    let home = harness::kafka_home(repo)?;
    let path = logs.join(format!("{name}.properties"));
    std::fs::write(&path, props).with_context(|| format!("while writing {}", path.display()))?;
    let log4j = logs.join("mm2-log4j2.properties");
    std::fs::write(&log4j, LOG4J2).context("while writing the MM2 log4j2 config")?;
    let mut c = Command::new("java");
    c.args([
        "-Xms256M",
        "-Xmx2G",
        "-server",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
    ])
    .args([
        "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent",
    ])
    .arg("-Djava.awt.headless=true")
    .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
    .arg("-cp")
    .arg(format!("{}/libs/*", home.display()))
    .arg("org.apache.kafka.connect.mirror.MirrorMaker")
    .arg(&path);
    Ok((c, path))
}

/// MM2 unthrottled on the corpus into `target` (topic `corpus.topic`, identity policy).
pub(super) async fn run(
    cli: &Cli,
    repo: &Path,
    source: &Broker,
    target: &Broker,
    corpus: &Corpus,
    logs: &Path,
    report: &mut Report,
) -> Result<MirrorFigures> {
    let props = properties(
        &source.bootstrap(),
        &target.bootstrap(),
        &corpus.topic,
        corpus.partitions,
    );
    let (cmd, path) = command(repo, logs, "mm2", &props)?;
    report.header.push(format!(
        "MirrorMaker 2 config (written to {}): {}",
        path.display(),
        props.lines().collect::<Vec<_>>().join("; ")
    ));
    let mut p = Proc::spawn("MirrorMaker 2", cmd, &logs.join("mm2.log"))?;
    let dst = target.cluster();
    let f = measure(
        &mut p,
        [source, target],
        &dst,
        &corpus.topic,
        corpus,
        cli.max_mirror_secs,
    )
    .await;
    let _ = tokio::task::block_in_place(|| p.stop(Duration::from_secs(10)));
    let f = f?;
    add_mirror(report, NAME, &f);
    Ok(f)
}

/// Records on `topic` of `bootstrap` read back with librdkafka (read_committed): (total,
/// distinct by a hash of key and value).
pub(super) fn count(bootstrap: &str, topic: &str, partitions: i32) -> Result<(u64, u64)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "strait-e2e-count")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "8388608")
        .create()
        .context("while creating the counting consumer")?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .context("while building the assignment")?;
    }
    c.assign(&tpl).context("while assigning partitions")?;
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut eof = HashSet::new();
    let mut idle = Instant::now();
    while eof.len() < partitions as usize {
        match c.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                total += 1;
                let mut h = std::collections::hash_map::DefaultHasher::new();
                m.key().hash(&mut h);
                m.payload().hash(&mut h);
                seen.insert(h.finish());
                eof.remove(&m.partition());
                idle = Instant::now();
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            Some(Err(e)) => bail!("while reading {topic}: {e}"),
            None if idle.elapsed() > Duration::from_secs(30) => {
                bail!("reading {topic}: no record for 30 s with {total} read")
            }
            None => {}
        }
    }
    Ok((total, seen.len() as u64))
}

/// Runs a mirror, kills it with SIGKILL once the target holds `kill_at` of the corpus, restarts
/// it, and waits until the target holds the whole corpus and stops growing.
async fn kill_cycle(
    name: &str,
    spawn: &dyn Fn() -> Result<Proc>,
    dst: &strait::kafka::Cluster,
    target_topic: &str,
    corpus: &Corpus,
    kill_at: f64,
) -> Result<(i64, String)> {
    let total = corpus.records as i64;
    let mut p = spawn()?;
    let start = Instant::now();
    let at_kill = loop {
        p.check_alive()?;
        let n = harness::end_offsets(dst, target_topic, corpus.partitions).await;
        if n as f64 >= kill_at * total as f64 {
            break n;
        }
        if start.elapsed() > Duration::from_secs(300) {
            bail!("{name}: only {n} of {total} records on the target after 300 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = p.child.kill();
    let _ = p.child.wait();
    let mut p = spawn()?;
    let restarted = Instant::now();
    let mut last = (
        harness::end_offsets(dst, target_topic, corpus.partitions).await,
        Instant::now(),
    );
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        p.check_alive()?;
        let n = harness::end_offsets(dst, target_topic, corpus.partitions).await;
        if n != last.0 {
            last = (n, Instant::now());
        } else if n >= total && last.1.elapsed() > Duration::from_secs(15) {
            break;
        }
        if restarted.elapsed() > Duration::from_secs(600) {
            bail!("{name}: the target did not settle at or above {total} records within 600 s of the restart (at {n})");
        }
    }
    let _ = tokio::task::block_in_place(|| p.stop(Duration::from_secs(10)));
    Ok((at_kill, format!("killed at {at_kill} of {total} records on the target")))
}

/// The duplicates row: strait and MM2, each killed once with SIGKILL mid-run and restarted, into
/// a fresh target broker; every record on the target read back with librdkafka.
#[allow(clippy::too_many_arguments)]
pub(super) async fn duplicates(
    cli: &Cli,
    repo: &Path,
    bin: Option<&Path>,
    source: &Broker,
    corpus: &Corpus,
    logs: &Path,
    report: &mut Report,
) -> Result<()> {
    const S: &str = "kill -9 mid-run, then a restart";
    let target = Broker::start("k9", None, "127.0.0.1").await?;
    let dst = target.cluster();
    let src_boot = source.bootstrap();
    let (src_total, src_distinct) = tokio::task::block_in_place(|| count(&src_boot, &corpus.topic, corpus.partitions))?;
    if src_total != corpus.records || src_distinct != corpus.records {
        report.add(
            S,
            "source records (total / distinct)",
            format!("{src_total} / {src_distinct}"),
            "distinct by key and value",
        );
    }
    let kill_at = 0.4;
    let mut rows = Vec::new();
    if let Some(bin) = bin {
        let http = harness::free_port()?;
        let runs = std::cell::Cell::new(0);
        let spawn = || {
            runs.set(runs.get() + 1);
            let cmd = harness::strait_command(bin, &src_boot, &target.bootstrap(), &corpus.topic, "strait.", http);
            Proc::spawn(
                "strait (kill -9)",
                cmd,
                &logs.join(format!("strait-k9-run{}.log", runs.get())),
            )
        };
        rows.push((
            "strait",
            kill_cycle("strait", &spawn, &dst, "strait.spans", corpus, kill_at).await,
            "strait.spans",
        ));
    } else {
        report.na(S, "strait", "no strait binary");
    }
    if cli.skip_mm2 {
        report.na(S, "MirrorMaker 2", "skipped (--skip-mm2)");
    } else {
        let props = properties(&src_boot, &target.bootstrap(), &corpus.topic, corpus.partitions);
        let runs = std::cell::Cell::new(0);
        let spawn = || {
            let (cmd, _) = command(repo, logs, "mm2-k9", &props)?;
            runs.set(runs.get() + 1);
            let log = logs.join(format!("mm2-k9-run{}.log", runs.get()));
            Proc::spawn("MirrorMaker 2 (kill -9)", cmd, &log)
        };
        rows.push((
            "MirrorMaker 2",
            kill_cycle("MirrorMaker 2", &spawn, &dst, &corpus.topic, corpus, kill_at).await,
            corpus.topic.as_str(),
        ));
    }
    let boot = target.bootstrap();
    for (name, cycle, topic) in rows {
        match cycle {
            Err(e) => report.na(S, format!("{name}: records duplicated on the target"), format!("{e:#}")),
            Ok((_, note)) => {
                let (total, distinct) = tokio::task::block_in_place(|| count(&boot, topic, corpus.partitions))?;
                let dup = total - distinct;
                let lost = src_distinct.saturating_sub(distinct);
                report.add(
                    S,
                    format!("{name}: records duplicated on the target"),
                    format!("{dup}"),
                    format!(
                        "{note}; {total} records read back (librdkafka, read_committed), {distinct} distinct, {lost} lost"
                    ),
                );
            }
        }
    }
    Ok(())
}
