//! Leader changes on 3-node Apache Kafka clusters, source and target, with replication factor 3
//! and `min.insync.replicas=2`, while a librdkafka producer (acks=all, idempotent) keeps writing
//! to the source and strait replicates: the target's partition leader is killed with SIGKILL,
//! a source leader is stopped with a controlled shutdown, then every node of the target and then
//! of the source is restarted in turn. In the end the target holds exactly the source's records,
//! in order: none lost, none duplicated (read back with librdkafka).
//!
//! strait creates missing target topics with the target's `default.replication.factor`
//! (`CreateTopics` with replication factor -1) and does not copy `min.insync.replicas`, so the
//! test creates the target topic itself with replication factor 3. Both clusters also default
//! to 3 replicas, which is what strait's checkpoint topic gets.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use common::{Kafka, KafkaSpec, Rec, Strait};

const PARTITIONS: i32 = 3;

/// A 3-node cluster whose topics default to 3 replicas and 2 in-sync ones, and whose
/// controller moves leadership back to the preferred replica within seconds of its return.
async fn three_nodes() -> Option<Kafka> {
    Kafka::start(
        KafkaSpec::default()
            .nodes(3)
            .prop("default.replication.factor", "3")
            .prop("min.insync.replicas", "2")
            .prop("unclean.leader.election.enable", "false")
            .prop("auto.leader.rebalance.enable", "true")
            .prop("leader.imbalance.check.interval.seconds", "2")
            .prop("leader.imbalance.per.broker.percentage", "0"),
    )
    .await
}

/// One partition as librdkafka's metadata shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Placement {
    leader: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
}

/// Every partition of every topic (or of `topic`), from the plaintext listener.
async fn placements(bootstrap: &str, topic: Option<&str>) -> Option<BTreeMap<(String, i32), Placement>> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.map(str::to_owned));
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = common::client_config(&bootstrap).create().ok()?;
        let md = consumer.fetch_metadata(topic.as_deref(), Duration::from_secs(3)).ok()?;
        let mut out = BTreeMap::new();
        for t in md.topics() {
            if t.error().is_some() {
                return None;
            }
            for p in t.partitions() {
                out.insert(
                    (t.name().to_owned(), p.id()),
                    Placement {
                        leader: p.leader(),
                        replicas: p.replicas().to_vec(),
                        isr: p.isr().to_vec(),
                    },
                );
            }
        }
        Some(out)
    })
    .await
    .ok()
    .flatten()
}

/// The leader of `topic`'s partitions (node id), or `None` while metadata cannot say.
async fn leaders(k: &Kafka, topic: &str) -> Option<BTreeMap<i32, i32>> {
    let all = placements(&k.plain_bootstrap(), Some(topic)).await?;
    Some(all.into_iter().map(|((_, p), pl)| (p, pl.leader)).collect())
}

/// Waits until every partition of the cluster has all its replicas in sync and is led by its
/// preferred replica: what an operator waits for before touching the next node.
async fn wait_healthy(k: &Kafka, what: &str) {
    let bootstrap = k.plain_bootstrap();
    common::eventually(
        &format!("{what}: every partition fully in sync and led by its preferred replica"),
        Duration::from_secs(120),
        || {
            let bootstrap = bootstrap.clone();
            async move {
                placements(&bootstrap, None).await.is_some_and(|all| {
                    !all.is_empty()
                        && all
                            .values()
                            .all(|p| p.isr.len() == p.replicas.len() && p.replicas.first() == Some(&p.leader))
                })
            }
        },
    )
    .await;
}

/// Waits until no partition of `topic` is led by `node` (or leaderless); returns the leaders.
async fn wait_leadership_moved(k: &Kafka, topic: &str, node: i32, what: &str) -> BTreeMap<i32, i32> {
    common::eventually(
        &format!("{what}: new leaders for {topic} off node {node}"),
        Duration::from_secs(60),
        || async move {
            match leaders(k, topic).await {
                Some(l) if l.len() == PARTITIONS as usize && l.values().all(|n| *n != node && *n >= 0) => Ok(l),
                other => Err(other),
            }
        },
    )
    .await
}

/// Waits until strait has replicated `more` records beyond `from` (it goes on through faults).
async fn wait_progress(strait: &Strait, from: u64, more: u64, what: &str) -> u64 {
    common::eventually_sync(
        &format!("{more} more records replicated {what}"),
        Duration::from_secs(90),
        || strait.progress.totals().records >= from + more,
    )
    .await;
    strait.progress.totals().records
}

/// What happened to leadership in one fault, for the report and the assertions.
#[derive(Debug)]
struct Move {
    fault: String,
    before: BTreeMap<i32, i32>,
    after: BTreeMap<i32, i32>,
}

impl Move {
    /// Partitions led by `node` before the fault whose leader changed.
    fn moved_off(&self, node: i32) -> usize {
        self.before
            .iter()
            .filter(|(p, l)| **l == node && self.after.get(p).is_some_and(|a| *a != node))
            .count()
    }
}

/// Stops node `i` (SIGKILL or controlled shutdown), waits for its partitions of `topic` to get
/// new leaders and for strait to go on replicating, then starts it again and waits until the
/// cluster is whole. Returns the leadership change seen.
async fn bounce(k: &mut Kafka, i: usize, kill: bool, topic: &str, strait: &Strait, fault: &str) -> Move {
    let node = k.node_id(i);
    let before = leaders(k, topic).await.expect("leaders before the fault");
    let at = strait.progress.totals().records;
    let started = Instant::now();
    // The node calls block: let the runtime's other workers carry strait meanwhile.
    tokio::task::block_in_place(|| if kill { k.kill_node(i) } else { k.stop_node(i) });
    let after = wait_leadership_moved(k, topic, node, fault).await;
    wait_progress(strait, at, 200, &format!("while {fault} is down")).await;
    k.start_node(i).await;
    wait_healthy(k, fault).await;
    eprintln!(
        "{fault} (node {node}): leaders {before:?} -> {after:?}, whole again after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Move {
        fault: fault.to_owned(),
        before,
        after,
    }
}

/// The node index whose id leads `partition` of `topic`.
async fn leader_index(k: &Kafka, topic: &str, partition: i32) -> usize {
    let id = leaders(k, topic).await.expect("leaders")[&partition];
    (0..k.len())
        .find(|i| k.node_id(*i) == id)
        .expect("leader is a node of the cluster")
}

/// Reads `topic` on `bootstrap` until each partition holds `want` records (or the bound passes).
async fn read_all(bootstrap: &str, topic: &str, want: &BTreeMap<i32, i64>) -> BTreeMap<i32, Vec<Rec>> {
    let (bootstrap, topic, want) = (bootstrap.to_owned(), topic.to_owned(), want.clone());
    tokio::task::spawn_blocking(move || {
        let partitions: Vec<i32> = want.keys().copied().collect();
        common::consume_until(&bootstrap, &topic, &partitions, Duration::from_secs(120), |got| {
            want.iter().all(|(p, n)| got.get(p).map_or(0, |r| r.len() as i64) >= *n)
        })
    })
    .await
    .expect("consumer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_kill_controlled_shutdown_and_rolling_restarts_lose_and_duplicate_nothing() {
    let started = Instant::now();
    let (source, target) = tokio::join!(three_nodes(), three_nodes());
    let (Some(mut source), Some(mut target)) = (source, target) else {
        return;
    };
    eprintln!(
        "two 3-node clusters started at once, ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let topic = common::topic("leaders");
    let rf3 = [("min.insync.replicas", "2")];
    common::create_topic_rf(&source.plain_bootstrap(), &topic, PARTITIONS, 3, &rf3).await;
    common::create_topic_rf(
        &target.plain_bootstrap(),
        &topic,
        PARTITIONS,
        3,
        &[("min.insync.replicas", "2"), ("compression.type", "producer")],
    )
    .await;

    // The source grows during the whole test: acks=all, idempotent, about 150 records/s.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (bootstrap, topic, writing) = (source.plain_bootstrap(), topic.clone(), Arc::clone(&writing));
        tokio::spawn(async move {
            let producer = common::producer(
                &bootstrap,
                &[
                    ("acks", "all"),
                    ("enable.idempotence", "true"),
                    ("linger.ms", "5"),
                    ("message.timeout.ms", "300000"),
                ],
            );
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_millis() as i64;
            let mut pending = Vec::new();
            let mut i = 0usize;
            while writing.load(Ordering::Relaxed) {
                for p in 0..PARTITIONS {
                    let key = format!("{p}-{i}");
                    let value = format!("span {i} of partition {p}").repeat(1 + i % 7);
                    let r = Rec::new(
                        Some(key.as_bytes()),
                        Some(value.as_bytes()),
                        &[("seq", Some(key.as_bytes()))],
                        now + i as i64,
                    );
                    pending.push(common::enqueue(&producer, &topic, p, &r));
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let mut failed = Vec::new();
            for d in pending {
                if let Err(e) = d.await.expect("delivery report").map_err(|(e, _)| e) {
                    failed.push(e.to_string());
                }
            }
            (i, failed)
        })
    };

    let strait = Strait::start(common::config(&source.bootstrap(), &target.bootstrap(), &topic));
    wait_progress(&strait, 0, 300, "before the first fault").await;
    wait_healthy(&target, "target before the faults").await;
    wait_healthy(&source, "source before the faults").await;

    let mut moves = Vec::new();
    // (a) SIGKILL of the target leader of partition 0, mid-produce.
    let i = leader_index(&target, &topic, 0).await;
    moves.push((
        target.node_id(i),
        bounce(&mut target, i, true, &topic, &strait, "kill -9 of a target leader").await,
    ));
    // (b) Controlled shutdown of the source leader of partition 1.
    let i = leader_index(&source, &topic, 1).await;
    moves.push((
        source.node_id(i),
        bounce(
            &mut source,
            i,
            false,
            &topic,
            &strait,
            "controlled shutdown of a source leader",
        )
        .await,
    ));
    // (c) Rolling restarts: every target node in turn, then every source node.
    for i in 0..target.len() {
        let fault = format!("rolling restart of target node {}", target.node_id(i));
        moves.push((
            target.node_id(i),
            bounce(&mut target, i, false, &topic, &strait, &fault).await,
        ));
    }
    for i in 0..source.len() {
        let fault = format!("rolling restart of source node {}", source.node_id(i));
        moves.push((
            source.node_id(i),
            bounce(&mut source, i, false, &topic, &strait, &fault).await,
        ));
    }

    writing.store(false, Ordering::Relaxed);
    let (rounds, failed) = writer.await.expect("writer");
    assert!(failed.is_empty(), "the source producer lost records: {failed:?}");

    // The faults were hit: each one moved leadership of the topic off the node it stopped.
    for (node, m) in &moves {
        assert!(
            m.moved_off(*node) >= 1,
            "{}: no partition led by node {node} moved: {m:?}",
            m.fault
        );
    }

    // Ground truth is the source as librdkafka reads it back.
    let source_ends = common::high_watermarks(&source.plain_bootstrap(), &topic, PARTITIONS).await;
    let source_recs = read_all(&source.plain_bootstrap(), &topic, &source_ends).await;
    for (p, n) in &source_ends {
        assert_eq!(source_recs[p].len() as i64, *n, "source {topic}/{p} read back");
    }
    let target_recs = read_all(&target.plain_bootstrap(), &topic, &source_ends).await;

    // strait's source ends (one ListOffsets per leader, as /status and the drain ETA read them)
    // agree with librdkafka's, with the partitions led by more than one node.
    wait_healthy(&source, "source at the end").await;
    let led_by = leaders(&source, &topic).await.expect("source leaders");
    let nodes: std::collections::BTreeSet<i32> = led_by.values().copied().collect();
    assert!(nodes.len() >= 2, "premise: partitions led by several nodes: {led_by:?}");
    let cluster = strait::kafka::Cluster::new(
        "source",
        source.plain_bootstrap().split(',').map(str::to_owned).collect(),
        "check",
        Duration::from_secs(10),
    );
    let tps: Vec<strait::kafka::TopicPartition> = (0..PARTITIONS)
        .map(|p| strait::kafka::TopicPartition::new(&topic, p))
        .collect();
    let ends = cluster.list_ends(&tps).await;
    for (tp, end) in tps.iter().zip(ends) {
        let end = end.unwrap_or_else(|e| panic!("{topic}/{}: {e}", tp.partition));
        assert_eq!(end, source_ends[&tp.partition], "{topic}/{} end", tp.partition);
    }
    strait.stop().await;
    let target_ends = common::high_watermarks(&target.plain_bootstrap(), &topic, PARTITIONS).await;
    for p in 0..PARTITIONS {
        let (s, t) = (&source_recs[&p], &target_recs[&p]);
        let on_target: std::collections::HashSet<&Option<Vec<u8>>> = t.iter().map(|r| &r.key).collect();
        let lost = s.iter().filter(|r| !on_target.contains(&r.key)).count();
        let extra = t.len().saturating_sub(s.len());
        assert_eq!(
            (lost, extra),
            (0, 0),
            "{topic}/{p}: {lost} records lost, {extra} extra on the target"
        );
        assert_eq!(t, s, "{topic}/{p}: the target differs from the source (order)");
        assert_eq!(
            target_ends[&p], source_ends[&p],
            "{topic}/{p}: records beyond the source's on the target"
        );
    }
    eprintln!(
        "{} records per partition written in {rounds} rounds, all replicated exactly once through {} faults in {:.1} s",
        source_ends[&0],
        moves.len(),
        started.elapsed().as_secs_f64()
    );
}
