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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_survives_a_slow_distant_link_and_a_ten_second_cut() {
    let name = format!("sw{}", std::process::id() % 100_000);
    let Some((link, far)) = Link::up(&name, "4mbit", 25) else {
        common::unavailable("network namespaces with ip/tc (root) for the WAN emulation");
        return;
    };
    let Some(source) = Kafka::single().await else {
        return;
    };
    let Some(target) = Kafka::in_netns(&name, &far).await else {
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
