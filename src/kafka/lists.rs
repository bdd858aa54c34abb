//! ListOffsets of many partitions share requests: one in flight per broker connection, holding
//! every partition that asked while the previous one was out. When a cut ends, thousands of
//! partitions reconcile at once and each asks the target where its partition ends; asked one
//! request each, they would queue behind each other on the connection (a broker answers a
//! connection's requests one at a time) and send the link thousands of request headers before
//! the first batch of data. Shared, they take a request or two. Callers still ask for one
//! partition and get that partition's answer.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::conn::Conn;
use super::error::Result;
use super::gather;
use super::{OffsetSpec, TopicPartition};

/// Most partitions one request asks for (about 16 bytes each); the others wait for the next.
const MAX_PER_REQUEST: usize = 10_000;

/// One partition's question, on the connection to its leader.
type Ask = gather::Question<OffsetSpec, i64>;

/// The queue of partitions to list; its task ends when the queue is dropped.
#[derive(Debug)]
pub(crate) struct Lists {
    tx: mpsc::Sender<Ask>,
}

impl Lists {
    /// Starts the task that gathers questions into requests. Needs a tokio runtime.
    pub(crate) fn start() -> Self {
        let (tx, rx) = mpsc::channel(gather::QUEUE);
        // A request names a partition once; the other questions wait for the next one.
        let split = |asks| gather::once_each(asks, MAX_PER_REQUEST, |a: &Ask| &a.tp);
        tokio::spawn(gather::gather(rx, split, send));
        Self { tx }
    }

    /// The offset `spec` asks of `tp`, from `conn` (its leader), in the next request to that
    /// broker. Dropping the future withdraws the question.
    pub(crate) async fn list(&self, conn: Arc<Conn>, tp: &TopicPartition, spec: OffsetSpec) -> Result<i64> {
        gather::ask(&self.tx, conn, tp, spec, "list offsets").await
    }
}

/// Sends one request for `asks` (all on the same connection) and hands each its answer.
async fn send(asks: Vec<Ask>) -> Vec<Ask> {
    let Some(conn) = asks.first().map(|a| Arc::clone(&a.conn)) else {
        return Vec::new();
    };
    let parts: Vec<(&TopicPartition, OffsetSpec)> = asks.iter().map(|a| (&a.tp, a.asks)).collect();
    let request = super::requests::build_list_offsets_each(&parts);
    drop(parts);
    match conn.send(&request).await {
        Ok((response, _)) => {
            let tps: Vec<TopicPartition> = asks.iter().map(|a| a.tp.clone()).collect();
            let answers = super::requests::process_list_offsets_many(&response, conn.broker(), &tps);
            for (a, answer) in asks.into_iter().zip(answers) {
                let _ = a.reply.send(answer);
            }
        }
        Err(e) => {
            for a in asks {
                let _ = a.reply.send(Err(e.clone()));
            }
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::super::test_broker::serve;
    use super::*;
    use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
    use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, ListOffsetsResponse};
    use std::sync::Mutex;
    use tokio::sync::Notify;

    /// The (partition, timestamp) pairs of every ListOffsets a test broker read.
    type Asked = Arc<Mutex<Vec<Vec<(i32, i64)>>>>;

    /// A broker on one connection that answers every partition's ListOffsets with
    /// `partition * 100 + timestamp` (partition 7: NOT_LEADER_OR_FOLLOWER), holding its first
    /// answer until `release` is notified.
    async fn broker(asked: Asked, first: Arc<Notify>, release: Arc<Notify>) -> String {
        serve(ApiKey::ListOffsets, 1, 7, move |_, request: ListOffsetsRequest| {
            let parts: Vec<(i32, i64)> = request
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| (p.partition_index, p.timestamp)))
                .collect();
            let is_first = {
                let mut a = asked.lock().expect("lock");
                a.push(parts);
                a.len() == 1
            };
            let (first, release) = (Arc::clone(&first), Arc::clone(&release));
            async move {
                if is_first {
                    first.notify_one();
                    release.notified().await;
                }
                let topics = request
                    .topics
                    .iter()
                    .map(|t| {
                        let partitions = t.partitions.iter().map(|p| {
                            let answered =
                                ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                            if p.partition_index == 7 {
                                answered.with_error_code(6)
                            } else {
                                answered.with_offset(i64::from(p.partition_index) * 100 + p.timestamp)
                            }
                        });
                        ListOffsetsTopicResponse::default()
                            .with_name(t.name.clone())
                            .with_partitions(partitions.collect())
                    })
                    .collect();
                ListOffsetsResponse::default().with_topics(topics)
            }
        })
        .await
    }

    #[tokio::test]
    async fn partitions_that_ask_while_a_request_is_out_share_the_next_one() {
        let asked: Asked = Arc::new(Mutex::new(Vec::new()));
        let (first, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let addr = broker(Arc::clone(&asked), Arc::clone(&first), Arc::clone(&release)).await;
        let conn = Arc::new(
            Conn::connect(&addr, "test", std::time::Duration::from_secs(5))
                .await
                .expect("connect"),
        );
        let lists = Arc::new(Lists::start());
        let list = |p: i32, spec: OffsetSpec| {
            let (lists, conn) = (Arc::clone(&lists), Arc::clone(&conn));
            tokio::spawn(async move { lists.list(conn, &TopicPartition::new("spans", p), spec).await })
        };
        let mut all = vec![list(0, OffsetSpec::Latest)];
        first.notified().await;
        // While the first request is out: four partitions, one of them twice, each at its own
        // spec, and one whose broker answers an error for it.
        all.push(list(1, OffsetSpec::Earliest));
        all.push(list(2, OffsetSpec::Timestamp(5)));
        all.push(list(2, OffsetSpec::Latest));
        all.push(list(7, OffsetSpec::Latest));
        // Each ask reaches the gathering task before the request goes.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        release.notify_one();
        let mut answers = Vec::new();
        for task in all {
            answers.push(task.await.expect("join"));
        }
        let offsets: Vec<Option<i64>> = answers.iter().map(|a| a.as_ref().ok().copied()).collect();
        assert_eq!(offsets, vec![Some(-1), Some(98), Some(205), Some(199), None]);
        assert!(answers[4].is_err(), "{:?}", answers[4]);
        // Three requests: the first alone; the four that asked meanwhile in one, partition 2
        // once; its second question in the next.
        let asked = asked.lock().expect("lock").clone();
        assert_eq!(asked.len(), 3, "{asked:?}");
        assert_eq!(asked[0], vec![(0, -1)]);
        let mut second = asked[1].clone();
        second.sort_unstable();
        assert_eq!(second, vec![(1, -2), (2, 5), (7, -1)]);
        assert_eq!(asked[2], vec![(2, -1)]);
    }
}
