//! Fetches of many partitions share requests: one Fetch in flight per broker connection, holding
//! every partition that asked while the previous one was out. A broker answers the requests of
//! one connection one at a time, so a fetch per partition would queue each partition's long poll
//! behind the others'; one request per broker returns as soon as any of its partitions has data.
//! Callers still ask for one partition and get that partition's answer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kafka_protocol::messages::fetch_response::PartitionData;
use tokio::sync::{mpsc, oneshot};

use super::conn::Conn;
use super::error::{Error, Result};
use super::TopicPartition;

/// Partitions waiting for the next request, across all brokers: one per partition reader.
const QUEUE: usize = 4096;
/// Most bytes the requests to one broker ask for together, split between its connections;
/// partitions that do not fit get an empty answer and ask again. An answer is held whole until
/// every partition in it is unpacked, outside the fetch buffer's count, so this is kept well
/// below Kafka's own consumer default (50 MiB).
pub(crate) const BROKER_MAX_BYTES: i64 = 16 * 1024 * 1024;

/// One partition's place in the next request to its leader.
struct Want {
    conn: Arc<Conn>,
    tp: TopicPartition,
    offset: i64,
    max_bytes: i32,
    max_wait_ms: i32,
    reply: oneshot::Sender<Result<PartitionData>>,
}

/// The queue of partitions to fetch; its task ends when the queue is dropped.
#[derive(Debug)]
pub(crate) struct Fetches {
    tx: mpsc::Sender<Want>,
}

impl Fetches {
    /// Starts the task that gathers wants into requests of at most `request_max_bytes`. Needs a
    /// tokio runtime.
    pub(crate) fn start(request_max_bytes: i64) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(gather(rx, request_max_bytes));
        Self { tx }
    }

    /// Fetches `tp` from `offset` on `conn` (its leader) in the next request to that broker.
    pub(crate) async fn fetch(
        &self,
        conn: Arc<Conn>,
        tp: &TopicPartition,
        offset: i64,
        max_bytes: i32,
        max_wait_ms: i32,
    ) -> Result<PartitionData> {
        let broker = conn.broker().to_owned();
        let (reply, answer) = oneshot::channel();
        let want = Want {
            conn,
            tp: tp.clone(),
            offset,
            max_bytes,
            max_wait_ms,
            reply,
        };
        let gone = || Error::ConnectionLost {
            broker: broker.clone(),
            source: Some(Arc::new(std::io::Error::other("the fetch queue stopped"))),
        };
        self.tx.send(want).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// Groups wants by connection and keeps one request in flight per connection.
async fn gather(mut rx: mpsc::Receiver<Want>, request_max_bytes: i64) {
    let mut waiting: HashMap<usize, Vec<Want>> = HashMap::new();
    let mut busy: HashSet<usize> = HashSet::new();
    let (done_tx, mut done_rx) = mpsc::channel::<usize>(QUEUE);
    loop {
        tokio::select! {
            want = rx.recv() => {
                let Some(want) = want else { return };
                let mut add = |w: Want| waiting.entry(Arc::as_ptr(&w.conn) as usize).or_default().push(w);
                add(want);
                while let Ok(w) = rx.try_recv() {
                    add(w);
                }
            }
            Some(key) = done_rx.recv() => {
                busy.remove(&key);
            }
        }
        for (key, wants) in waiting.iter_mut() {
            if wants.is_empty() || !busy.insert(*key) {
                continue;
            }
            let batch = std::mem::take(wants);
            let done = done_tx.clone();
            let key = *key;
            tokio::spawn(async move {
                send(batch, request_max_bytes).await;
                let _ = done.send(key).await;
            });
        }
        waiting.retain(|_, w| !w.is_empty());
    }
}

/// Sends one request for `wants` (all on the same connection) and hands each its answer.
async fn send(wants: Vec<Want>, request_max_bytes: i64) {
    let Some(conn) = wants.first().map(|w| Arc::clone(&w.conn)) else {
        return;
    };
    let parts: Vec<(&TopicPartition, i64, i32)> = wants.iter().map(|w| (&w.tp, w.offset, w.max_bytes)).collect();
    let max_wait_ms = wants.iter().map(|w| w.max_wait_ms).max().unwrap_or(0);
    let request = super::requests::build_shared_fetch(&parts, max_wait_ms, request_max_bytes);
    let response = match conn.send(&request).await {
        Ok((response, _)) => response,
        Err(e) => {
            for w in wants {
                let _ = w.reply.send(Err(e.clone()));
            }
            return;
        }
    };
    let top_level = response.error_code;
    let mut answers: HashMap<(String, i32), PartitionData> = HashMap::new();
    for t in response.responses {
        for p in t.partitions {
            answers.insert((t.topic.0.to_string(), p.partition_index), p);
        }
    }
    for w in wants {
        let answer = match answers.remove(&(w.tp.topic.clone(), w.tp.partition)) {
            Some(p) => {
                let code = if p.error_code != 0 { p.error_code } else { top_level };
                Ok(p.with_error_code(code))
            }
            None if top_level != 0 => Ok(PartitionData::default()
                .with_partition_index(w.tp.partition)
                .with_error_code(top_level)),
            None => Err(Error::MissingInResponse {
                broker: conn.broker().to_owned(),
                api: kafka_protocol::messages::ApiKey::Fetch,
                resource: format!("{}/{}", w.tp.topic, w.tp.partition),
            }),
        };
        let _ = w.reply.send(answer);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_broker::{answer, api_versions, read_request};
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::messages::fetch_response::FetchableTopicResponse;
    use kafka_protocol::messages::{ApiKey, FetchResponse};
    use kafka_protocol::protocol::{Decodable, HeaderVersion};
    use std::sync::Mutex;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;
    use tokio::sync::Notify;

    /// A broker that records the partitions of every Fetch and holds its first answer until
    /// `release` is notified; every partition gets an empty answer.
    async fn broker(requests: Arc<Mutex<Vec<Vec<i32>>>>, first: Arc<Notify>, release: Arc<Notify>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            while let Some((api, version, header, mut frame)) = read_request(&mut s).await {
                let id = header.correlation_id;
                let out = if api == ApiKey::ApiVersions {
                    api_versions(&mut s, id, version, &[(ApiKey::Fetch, 4, 12)]).await;
                    continue;
                } else {
                    let request = kafka_protocol::messages::FetchRequest::decode(&mut frame, version).expect("fetch");
                    let topics: Vec<FetchableTopicResponse> = request
                        .topics
                        .iter()
                        .map(|t| {
                            FetchableTopicResponse::default()
                                .with_topic(t.topic.clone())
                                .with_partitions(
                                    t.partitions
                                        .iter()
                                        .map(|p| {
                                            PartitionData::default()
                                                .with_partition_index(p.partition)
                                                .with_records(Some(Bytes::new()))
                                        })
                                        .collect(),
                                )
                        })
                        .collect();
                    let seen: Vec<i32> = request
                        .topics
                        .iter()
                        .flat_map(|t| t.partitions.iter().map(|p| p.partition))
                        .collect();
                    let is_first = {
                        let mut r = requests.lock().expect("lock");
                        r.push(seen);
                        r.len() == 1
                    };
                    if is_first {
                        first.notify_one();
                        release.notified().await;
                    }
                    answer(
                        id,
                        &FetchResponse::default().with_responses(topics),
                        version,
                        FetchResponse::header_version(version),
                    )
                };
                s.write_all(&out).await.expect("write");
            }
        });
        addr
    }

    #[tokio::test]
    async fn partitions_asking_while_a_fetch_is_out_share_the_next_request() {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (first, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let addr = broker(Arc::clone(&requests), Arc::clone(&first), Arc::clone(&release)).await;
        let conn = Arc::new(
            Conn::connect(&addr, "test", std::time::Duration::from_secs(5))
                .await
                .expect("connect"),
        );
        let fetches = Arc::new(Fetches::start(BROKER_MAX_BYTES));
        let fetch = |p: i32| {
            let (fetches, conn) = (Arc::clone(&fetches), Arc::clone(&conn));
            tokio::spawn(async move {
                fetches
                    .fetch(conn, &TopicPartition::new("spans", p), 0, 1 << 20, 100)
                    .await
                    .map(|d| d.partition_index)
            })
        };
        let p0 = fetch(0);
        first.notified().await;
        // While partition 0's request is out, three more partitions ask, in two waves (each
        // wave reaches the gathering task before the next starts).
        let mut later: Vec<_> = (1..3).map(fetch).collect();
        tokio::task::yield_now().await;
        later.push(fetch(3));
        tokio::task::yield_now().await;
        release.notify_one();
        assert_eq!(p0.await.expect("task").expect("answer"), 0);
        for (i, t) in later.into_iter().enumerate() {
            assert_eq!(t.await.expect("task").expect("answer"), i as i32 + 1);
        }
        let requests = requests.lock().expect("lock").clone();
        assert_eq!(
            requests,
            vec![vec![0], vec![1, 2, 3]],
            "one request in flight, the rest gathered"
        );
    }
}
