//! Produce requests of many partitions share requests, as a Kafka producer's do: on each
//! connection the next produce request is built once the writer starts on the previous one, and
//! holds one batch of every partition that queued one meanwhile. It then waits, ready, while
//! the previous one is written (at the budget's pace on target connections). After a WAN cut thousands of partitions send
//! their first batches at once; one request each, the broker would take them one at a time
//! from the connection (it answers a connection's requests in order, one after another) and the
//! link would carry thousands of request headers. Shared, they take a few requests, written at
//! the budget's pace, and each partition still gets its own acknowledgement.
//!
//! Order: a partition's batches queued one after another go in successive requests on its
//! connection (a request carries one batch per partition); a request is queued on the
//! connection only once the previous one is in the writer's hands, and requests on a
//! connection are written and answered in order, so the idempotent producer's sequences
//! arrive in order.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::conn::Conn;
use super::error::Result;
use super::gather;
use super::requests::{build_produce_each, process_produce_each, ProduceAck};
use super::TopicPartition;

/// Most bytes of batches one request carries (a first batch goes whatever its size). Small: a
/// request is answered as a whole, and a batch queued behind it on a paced connection waits for
/// all of it, so gathering is for many small batches (thousands of partitions after a cut), and
/// large ones (a catch-up's backlog, 100 kB and more each) still go one per request.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// One partition's batch.
pub(super) struct Batch {
    records: Bytes,
    timeout_ms: i32,
}

/// One partition's batch, on its connection, and where its acknowledgement goes.
type Put = gather::Question<Batch, ProduceAck>;

/// Where a queued batch's acknowledgement comes.
pub(crate) type Acked = oneshot::Receiver<Result<ProduceAck>>;

/// The queue of batches to produce; its task ends when the queue is dropped.
#[derive(Debug)]
pub(crate) struct Produces {
    tx: mpsc::Sender<Put>,
}

impl Produces {
    /// Starts the task that gathers batches into requests. Needs a tokio runtime.
    pub(crate) fn start() -> Self {
        let (tx, rx) = mpsc::channel(gather::QUEUE);
        tokio::spawn(gather::gather(rx, take, send));
        Self { tx }
    }

    /// Queues `records` for `tp` on `conn` (its lane to the leader) for the next produce request
    /// on that connection, acks=all, and returns where its acknowledgement will come. Dropping
    /// the receiver before the request is built withdraws the batch.
    pub(crate) async fn produce(
        &self,
        conn: Arc<Conn>,
        tp: &TopicPartition,
        records: Bytes,
        timeout_ms: i32,
    ) -> Result<Acked> {
        gather::put(&self.tx, conn, tp, Batch { records, timeout_ms }, "produce").await
    }
}

/// The batches of one request: one per partition, in the order queued, up to
/// [`MAX_REQUEST_BYTES`]; the others wait for the next request.
fn take(puts: Vec<Put>) -> (Vec<Put>, Vec<Put>) {
    split(puts, MAX_REQUEST_BYTES, |p| &p.tp, |p| p.asks.records.len())
}

/// `items` in the order given, split into those of one request (one per partition, at most
/// `max_bytes` together unless the first alone is larger) and those left for the next, a
/// partition's in their order.
fn split<W>(
    items: Vec<W>,
    max_bytes: usize,
    tp: impl Fn(&W) -> &TopicPartition,
    size: impl Fn(&W) -> usize,
) -> (Vec<W>, Vec<W>) {
    let mut named = std::collections::HashSet::new();
    let mut bytes = 0;
    let mut first = true;
    items.into_iter().partition(|w| {
        // A partition's first item decides: once one is left, so are its later ones.
        let first_of_its_partition = named.insert(tp(w).clone());
        let fits = first || bytes + size(w) <= max_bytes;
        if first_of_its_partition && fits {
            bytes += size(w);
            first = false;
            true
        } else {
            false
        }
    })
}

/// Queues one request of `puts` (all on the same connection), hands each partition its
/// acknowledgement when the answer comes, and returns once the writer starts on the request:
/// the next one may then be queued behind it, in order.
async fn send(puts: Vec<Put>) -> Vec<Put> {
    let Some(conn) = puts.first().map(|p| Arc::clone(&p.conn)) else {
        return Vec::new();
    };
    let timeout_ms = puts.iter().map(|p| p.asks.timeout_ms).max().unwrap_or_default();
    let parts: Vec<(&TopicPartition, Bytes)> = puts.iter().map(|p| (&p.tp, p.asks.records.clone())).collect();
    let request = build_produce_each(&parts, timeout_ms);
    drop(parts);
    let (tps, replies): (Vec<TopicPartition>, Vec<_>) = puts.into_iter().map(|p| (p.tp, p.reply)).unzip();
    let queued = conn.enqueue_started(&request).await;
    drop(request);
    match queued {
        Ok((in_flight, started)) => {
            let broker = conn.broker().to_owned();
            tokio::spawn(async move {
                match in_flight.response().await {
                    Ok((response, _)) => {
                        for (reply, ack) in replies.into_iter().zip(process_produce_each(&response, &broker, &tps)) {
                            let _ = reply.send(ack);
                        }
                    }
                    Err(e) => {
                        for reply in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            });
            // Unsent when the connection failed first: its answer says so.
            let _ = started.await;
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::super::security::Security;
    use super::super::test_broker::serve;
    use super::super::Pace;
    use super::*;
    use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
    use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio::sync::Notify;

    /// A socket pace that holds every write while shut, and says when it first held one.
    #[derive(Debug, Default)]
    struct Gate {
        shut: AtomicBool,
        held: Notify,
    }

    impl Pace for Gate {
        fn delay(&self) -> Duration {
            if self.shut.load(Ordering::SeqCst) {
                self.held.notify_one();
                Duration::from_millis(5)
            } else {
                Duration::ZERO
            }
        }

        fn spent(&self, _: usize) {}
    }

    /// The (partition, batch) pairs of every produce request a test broker read.
    type Seen = Arc<Mutex<Vec<Vec<(i32, Bytes)>>>>;

    /// A broker on one connection that answers each partition of its n-th produce request
    /// (from 0) with base offset `n * 100 + partition`, partition 7 with NOT_LEADER_OR_FOLLOWER.
    async fn broker(seen: Seen) -> String {
        serve(ApiKey::Produce, 3, 9, move |_, request: ProduceRequest| {
            let parts: Vec<(i32, Bytes)> = request
                .topic_data
                .iter()
                .flat_map(|t| {
                    t.partition_data
                        .iter()
                        .map(|p| (p.index, p.records.clone().unwrap_or_default()))
                })
                .collect();
            let n = {
                let mut seen = seen.lock().expect("lock");
                seen.push(parts);
                seen.len() as i64 - 1
            };
            let topics = request
                .topic_data
                .iter()
                .map(|t| {
                    let partitions = t.partition_data.iter().map(|p| {
                        let answered = PartitionProduceResponse::default().with_index(p.index);
                        if p.index == 7 {
                            answered.with_error_code(6)
                        } else {
                            answered.with_base_offset(n * 100 + i64::from(p.index))
                        }
                    });
                    TopicProduceResponse::default()
                        .with_name(t.name.clone())
                        .with_partition_responses(partitions.collect())
                })
                .collect();
            async move { ProduceResponse::default().with_responses(topics) }
        })
        .await
    }

    #[tokio::test]
    async fn batches_queued_while_a_request_is_written_share_the_next_one_in_order() {
        let seen: Seen = Arc::new(Mutex::new(Vec::new()));
        let addr = broker(Arc::clone(&seen)).await;
        let gate = Arc::new(Gate::default());
        let pace: Arc<dyn Pace> = Arc::clone(&gate) as Arc<dyn Pace>;
        let conn = Conn::connect_with(
            &addr,
            "test",
            Duration::from_secs(5),
            &Security::plaintext(),
            Some(pace),
        )
        .await
        .expect("connect");
        let conn = Arc::new(conn);
        let produces = Produces::start();
        let batch = |b: &'static [u8]| Bytes::from_static(b);
        let put = |p: i32, records: Bytes| {
            let conn = Arc::clone(&conn);
            let produces = &produces;
            async move {
                produces
                    .produce(conn, &TopicPartition::new("spans", p), records, 30_000)
                    .await
            }
        };
        // The first request is held at the socket.
        gate.shut.store(true, Ordering::SeqCst);
        let mut acks = vec![put(0, batch(b"a")).await.expect("queued")];
        gate.held.notified().await;
        // Meanwhile: three partitions, one of them twice, and one the broker refuses.
        for (p, records) in [(1, b"b"), (2, b"c"), (2, b"d"), (7, b"e")] {
            acks.push(put(p, batch(records)).await.expect("queued"));
        }
        gate.shut.store(false, Ordering::SeqCst);
        let mut answers = Vec::new();
        for ack in acks {
            answers.push(ack.await.expect("answered"));
        }
        let offsets: Vec<Option<i64>> = answers.iter().map(|a| a.as_ref().ok().map(|a| a.base_offset)).collect();
        assert_eq!(offsets, vec![Some(0), Some(101), Some(102), Some(202), None]);
        let refused = answers[4].as_ref().expect_err("refused");
        assert_eq!(
            refused.code(),
            Some(kafka_protocol::error::ResponseError::NotLeaderOrFollower)
        );
        // Three requests: the first alone; those queued while it was held in one, partition 2
        // once; its second batch, in order, in the next.
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(
            seen,
            vec![
                vec![(0, batch(b"a"))],
                vec![(1, batch(b"b")), (2, batch(b"c")), (7, batch(b"e"))],
                vec![(2, batch(b"d"))],
            ]
        );
    }

    #[test]
    fn a_request_holds_one_batch_per_partition_up_to_its_size() {
        let tp = |p| TopicPartition::new("spans", p);
        let split = |items: Vec<(TopicPartition, usize)>| {
            let (now, later) = split(items, 100, |w| &w.0, |w| w.1);
            let parts =
                |v: Vec<(TopicPartition, usize)>| v.into_iter().map(|w| (w.0.partition, w.1)).collect::<Vec<_>>();
            (parts(now), parts(later))
        };
        // Partition 1 twice: its second batch waits; 31 more bytes would pass 100: they wait,
        // and so does the same partition's next batch, small as it is; a smaller batch of
        // another partition still fits.
        let (now, later) = split(vec![
            (tp(0), 40),
            (tp(1), 30),
            (tp(1), 5),
            (tp(2), 31),
            (tp(2), 1),
            (tp(3), 30),
        ]);
        assert_eq!(now, vec![(0, 40), (1, 30), (3, 30)]);
        assert_eq!(later, vec![(1, 5), (2, 31), (2, 1)]);
        // A first batch larger than a request goes alone.
        let (now, later) = split(vec![(tp(0), 500), (tp(1), 1)]);
        assert_eq!((now, later), (vec![(0, 500)], vec![(1, 1)]));
    }
}
