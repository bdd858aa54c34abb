//! Replication through an emulated WAN link: a rate limit (tbf), 25 ms each way (the project's
//! TUN delay line, since this kernel has no netem) and a 10 s cut in the middle. Every record
//! must arrive, once, byte-identical. Needs root and ip/tc (network namespaces); under CI their
//! absence fails the test.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{Kafka, Rec, Strait};

/// An emulated link, torn down on drop.
struct Link {
    name: String,
    script: PathBuf,
}

impl Link {
    fn up(name: &str, rate: &str, delay_ms: u32) -> Option<(Link, String)> {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/wan/link.sh");
        let out = Command::new("bash")
            .arg(&script)
            .args(["up", name, rate, &delay_ms.to_string()])
            .output()
            .ok()?;
        let link = Link {
            name: name.to_owned(),
            script,
        };
        if !out.status.success() {
            eprintln!("link.sh up failed: {}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
        let far = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Some((link, far))
    }

    fn set(&self, action: &str) {
        let ok = Command::new("bash")
            .arg(&self.script)
            .args([action, &self.name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "link.sh {action} failed");
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .args(["down", &self.name])
            .status();
    }
}

/// A source broker here and a target broker behind an emulated link (`prefix` names it).
async fn across_a_link(prefix: &str, rate: &str, delay_ms: u32) -> Option<(Link, Kafka, Kafka)> {
    let name = format!("{prefix}{}", std::process::id() % 100_000);
    let Some((link, far)) = Link::up(&name, rate, delay_ms) else {
        common::unavailable("network namespaces with ip/tc (root) for the WAN emulation");
        return None;
    };
    let source = Kafka::single().await?;
    let target = Kafka::in_netns(&name, &far).await?;
    Some((link, source, target))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_survives_a_slow_distant_link_and_a_ten_second_cut() {
    let Some((link, source, target)) = across_a_link("sw", "4mbit", 25).await else {
        return;
    };
    let topic = common::topic("wan");
    common::create_topic(&source.bootstrap(), &topic, 2, &[]).await;
    let p = common::producer(&source.bootstrap(), &[("linger.ms", "5"), ("compression.type", "lz4")]);
    let mut sent: BTreeMap<i32, Vec<Rec>> = BTreeMap::new();
    for i in 0..1500 {
        let part = (i % 2) as i32;
        let r = common::tricky(part, "wan", i);
        common::send(&p, &topic, part, &r).await;
        sent.entry(part).or_default().push(r);
    }
    let counts: BTreeMap<i32, usize> = sent.iter().map(|(p, v)| (*p, v.len())).collect();
    let total: usize = counts.values().sum();

    let mut cfg = common::config(&source.bootstrap(), &target.bootstrap(), &topic);
    cfg.budget.bytes_per_sec = 200_000;
    cfg.batch.max_bytes = 64 * 1024;
    let strait = Strait::start(cfg);
    let progress = strait.progress.clone();
    common::eventually_sync("some records across the link", Duration::from_secs(60), || {
        progress.totals().records > 100
    })
    .await;
    link.set("cut");
    // The cut lasts 10 s of wall time by definition.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = progress.totals().records;
    link.set("heal");
    common::eventually_sync("every record across the link", Duration::from_secs(180), || {
        let snap = progress.snapshot();
        counts.iter().all(|(p, n)| {
            snap.iter()
                .any(|(tp, s)| tp.partition == *p && s.next_source_offset >= *n as i64)
        })
    })
    .await;
    assert!(during < total as u64, "the cut happened while data was still flowing");
    strait.stop().await;

    let got = common::consume(&target.bootstrap(), &topic, &counts, Duration::from_secs(60));
    for (part, want) in &sent {
        assert_eq!(&got[part], want, "partition {part}: every record once, in order");
    }
}

/// A black-holed path (every packet dropped, nothing reset) for longer than the request
/// timeout: requests to the target time out, their connections are closed rather than reused,
/// and once the path heals replication goes on by itself, every record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_path_longer_than_the_request_timeout_heals_by_itself() {
    let Some((link, source, target)) = across_a_link("sb", "20mbit", 5).await else {
        return;
    };
    common::metrics::recorder();
    let topic = common::topic("blackhole");
    common::create_topic(&source.bootstrap(), &topic, 1, &[]).await;
    let p = common::producer(&source.bootstrap(), &[("linger.ms", "5")]);
    let mut sent = Vec::new();
    for i in 0..400 {
        let r = common::tricky(0, "blackhole", i);
        common::send(&p, &topic, 0, &r).await;
        sent.push(r);
    }

    let mut cfg = common::config(&source.bootstrap(), &target.bootstrap(), &topic);
    cfg.target.request_timeout_ms = 3_000;
    cfg.checkpoint.interval_ms = 500;
    let strait = Strait::start(cfg);
    let progress = strait.progress.clone();
    common::eventually_sync("the first records across the link", Duration::from_secs(60), || {
        progress.totals().records >= 400
    })
    .await;
    let target_errors = || {
        common::metrics::sum(
            &common::metrics::render(),
            "strait_request_errors_total",
            &[("cluster", "target")],
        )
        .unwrap_or(0.0)
    };
    let errors_before = target_errors();
    link.set("cut");
    // Records written while the path is black-holed wait on the source.
    for i in 400..800 {
        let r = common::tricky(0, "blackhole", i);
        common::send(&p, &topic, 0, &r).await;
        sent.push(r);
    }
    // The premise: strait's requests to the target failed while the path was cut (a produce
    // times out after 3 s; what follows cannot connect).
    common::eventually_sync(
        "requests to the black-holed target failing",
        Duration::from_secs(60),
        || target_errors() > errors_before,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = progress.totals().records;
    link.set("heal");
    let healed = std::time::Instant::now();
    common::eventually_sync("every record across the healed link", Duration::from_secs(180), || {
        progress.totals().records >= 800
    })
    .await;
    eprintln!(
        "replication caught up {:.1} s after the path healed (request timeout 3 s)",
        healed.elapsed().as_secs_f64()
    );
    assert!(during < 800, "the cut happened while records were waiting");
    strait.stop().await;
    let got = common::consume(
        &target.bootstrap(),
        &topic,
        &BTreeMap::from([(0, 800)]),
        Duration::from_secs(60),
    );
    assert_eq!(got[&0], sent, "every record once, in order");
}
