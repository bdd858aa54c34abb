//! Taking over from MirrorMaker 2 on Apache Kafka: MM2 (dedicated mode, from the Maven jars)
//! replicates part of a topic while the source keeps growing; it is stopped; strait starts
//! with `on_missing_checkpoint = "align"` and no checkpoint. On the target, after MM2's last
//! record, every source record follows exactly once and in order; no source record is missing.
//! Checked with librdkafka.

mod common;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::growing::{read_all_keys, total, two_clusters, Writer};
use common::{Kafka, Strait};
use strait::config::OnMissingCheckpoint;

const PARTITIONS: i32 = 2;

/// MM2 for one topic src -> dst, identity policy (the target topic keeps its name), internal
/// topics with one replica, offsets flushed every second.
fn mm2_properties(source: &Kafka, target: &Kafka, topic: &str) -> String {
    format!(
        "clusters = src, dst
src.bootstrap.servers = {source}
dst.bootstrap.servers = {target}
src->dst.enabled = true
src->dst.topics = {topic}
dst->src.enabled = false
replication.policy.class = org.apache.kafka.connect.mirror.IdentityReplicationPolicy
tasks.max = {PARTITIONS}
sync.topic.acls.enabled = false
sync.topic.configs.enabled = false
emit.checkpoints.enabled = false
emit.heartbeats.enabled = false
sync.group.offsets.enabled = false
plugin.discovery = service_load
replication.factor = 1
offset-syncs.topic.replication.factor = 1
checkpoints.topic.replication.factor = 1
heartbeats.topic.replication.factor = 1
offset.storage.replication.factor = 1
status.storage.replication.factor = 1
config.storage.replication.factor = 1
dst.offset.flush.interval.ms = 1000
dst.scheduled.rebalance.max.delay.ms = 1000
",
        source = source.plain_bootstrap(),
        target = target.plain_bootstrap(),
    )
}

/// MirrorMaker 2 as a child process, killed on drop.
struct Mm2(Child);

impl Mm2 {
    fn start(props: &std::path::Path, log: &std::path::Path) -> Mm2 {
        // The classpath of the jars scripts/install-deps.sh resolved.
        let out = Command::new("bash")
            .arg("-c")
            .arg(". tools/kafka/env.sh && printf %s \"$KAFKA_CP\"")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("read the Kafka classpath");
        let classpath = String::from_utf8(out.stdout).expect("utf-8 classpath");
        let log = std::fs::File::create(log).expect("MM2 log file");
        let child = Command::new("java")
            .args(["-Xms128M", "-Xmx512M", "-cp", &classpath])
            .arg(format!(
                "-Dlog4j2.configurationFile={}/tools/kafka/log4j2-tools.properties",
                env!("CARGO_MANIFEST_DIR")
            ))
            .arg("org.apache.kafka.connect.mirror.MirrorMaker")
            .arg(props)
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start MirrorMaker 2");
        Mm2(child)
    }

    fn assert_running(&mut self, log: &std::path::Path) {
        if let Ok(Some(status)) = self.0.try_wait() {
            panic!(
                "MirrorMaker 2 exited ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }
}

impl Drop for Mm2 {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strait_takes_over_from_mirrormaker_2_without_a_gap_or_a_duplicate() {
    let Some((source, target, topic)) = two_clusters("takeover", PARTITIONS).await else {
        return;
    };
    let writer = Writer::start(&source, &topic, PARTITIONS);
    let dir = tempfile::tempdir().expect("temp dir");
    let (props, log) = (dir.path().join("mm2.properties"), dir.path().join("mm2.log"));
    std::fs::write(&props, mm2_properties(&source, &target, &topic)).expect("MM2 config");
    let mut mm2 = Mm2::start(&props, &log);
    common::eventually("MirrorMaker 2 replicates", Duration::from_secs(180), || {
        mm2.assert_running(&log);
        async { total(&target, &topic, PARTITIONS).await >= 600 }
    })
    .await;
    // MirrorMaker 2 stops for good (SIGKILL: what it wrote stays, nothing more comes).
    drop(mm2);
    let by_mm2 = common::high_watermarks(&target.plain_bootstrap(), &topic, PARTITIONS).await;

    // strait, no checkpoint, told to align; the source keeps growing meanwhile.
    let mut config = common::config(&source.bootstrap(), &target.bootstrap(), &topic);
    config.on_missing_checkpoint = OnMissingCheckpoint::Align;
    let strait = Strait::start(config);
    let before = total(&target, &topic, PARTITIONS).await;
    common::eventually(
        "strait goes on after MirrorMaker 2",
        Duration::from_secs(120),
        || async { total(&target, &topic, PARTITIONS).await >= before + 600 },
    )
    .await;
    let sent = writer.stop().await;
    let on_target = read_all_keys(&target, &topic, &sent).await;
    strait.stop().await;

    for (p, s) in &sent {
        let t = &on_target[p];
        let mm2_end = usize::try_from(by_mm2[p]).expect("an offset");
        assert!(
            mm2_end > 0 && mm2_end < s.len(),
            "{topic}/{p}: MM2 wrote {mm2_end} of {}",
            s.len()
        );
        // Where MM2's last record is in the source.
        let last = &t[mm2_end - 1];
        let at = s
            .iter()
            .position(|r| r == last)
            .expect("MM2's last record is a source record");
        assert_eq!(
            t[mm2_end..].iter().collect::<Vec<_>>(),
            s[at + 1..].iter().collect::<Vec<_>>(),
            "{topic}/{p}: after MM2's last record (source offset {at}) the target is not every later source record once, in order"
        );
        let keys: HashSet<&Option<Vec<u8>>> = t.iter().map(|r| &r.key).collect();
        let missing = s.iter().filter(|r| !keys.contains(&r.key)).count();
        assert_eq!(
            missing, 0,
            "{topic}/{p}: {missing} source records missing on the target"
        );
        eprintln!(
            "{topic}/{p}: MirrorMaker 2 wrote {mm2_end} records (up to source offset {at}), strait the next {}",
            t.len() - mm2_end
        );
    }
}
