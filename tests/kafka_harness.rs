//! The test clusters themselves: a node that cannot start fails the test with the node's log
//! path and the last lines of its log, never a skip or a hang.

mod common;

use common::{Kafka, KafkaSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_fails_to_start_fails_the_test_with_its_log() {
    if !common::kafka::installed() {
        common::unavailable("Apache Kafka is not installed (~/.cache/strait/kafka-*)");
        return;
    }
    // A value Kafka validates when the node starts.
    let start = tokio::spawn(Kafka::start(KafkaSpec::default().prop("num.network.threads", "0")));
    let Err(err) = start.await else {
        panic!("a cluster whose node cannot start must fail the test");
    };
    assert!(err.is_panic(), "{err}");
    let payload = err.into_panic();
    let msg = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default();
    assert!(msg.contains("Apache Kafka node 1 exited"), "{msg}");
    assert!(msg.contains("broker.log, last lines:"), "{msg}");
    assert!(
        msg.contains("num.network.threads"),
        "the log's last lines name the cause: {msg}"
    );
}
