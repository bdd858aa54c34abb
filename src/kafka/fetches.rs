//! Fetches of many partitions share requests: one Fetch in flight per broker connection, holding
//! every partition that asked while the previous one was out. A broker answers the requests of
//! one connection one at a time, so a fetch per partition would queue each partition's long poll
//! behind the others'; one request per broker returns as soon as any of its partitions has data.
//! Callers still ask for one partition and get that partition's answer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::FetchRequest;
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{mpsc, oneshot};

use super::conn::Conn;
use super::error::{Error, Result};
use super::TopicPartition;

/// Partitions waiting for the next request, across all brokers: one per partition reader.
const QUEUE: usize = 4096;
/// Most bytes one request asks for (Kafka's own consumer default is 50 MiB); partitions that
/// do not fit get an empty answer and ask again.
const REQUEST_MAX_BYTES: i64 = 64 * 1024 * 1024;
const READ_COMMITTED: i8 = 1;

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
    /// Starts the task that gathers wants into requests. Needs a tokio runtime.
    pub(crate) fn start() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(gather(rx));
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
            source: Some(std::io::Error::other("the fetch queue stopped")),
        };
        self.tx.send(want).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// Groups wants by connection and keeps one request in flight per connection.
async fn gather(mut rx: mpsc::Receiver<Want>) {
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
                send(batch).await;
                let _ = done.send(key).await;
            });
        }
        waiting.retain(|_, w| !w.is_empty());
    }
}

/// Sends one request for `wants` (all on the same connection) and hands each its answer.
async fn send(wants: Vec<Want>) {
    let Some(conn) = wants.first().map(|w| Arc::clone(&w.conn)) else {
        return;
    };
    let mut topics: Vec<FetchTopic> = Vec::new();
    let mut total: i64 = 0;
    for w in &wants {
        total += i64::from(w.max_bytes);
        let partition = FetchPartition::default()
            .with_partition(w.tp.partition)
            .with_fetch_offset(w.offset)
            .with_partition_max_bytes(w.max_bytes);
        match topics.iter_mut().find(|t| t.topic.0.as_str() == w.tp.topic) {
            Some(t) => t.partitions.push(partition),
            None => topics.push(
                FetchTopic::default()
                    .with_topic(kafka_protocol::messages::TopicName(StrBytes::from_string(
                        w.tp.topic.clone(),
                    )))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    let request = FetchRequest::default()
        .with_max_wait_ms(wants.iter().map(|w| w.max_wait_ms).max().unwrap_or(0))
        .with_min_bytes(1)
        .with_max_bytes(total.min(REQUEST_MAX_BYTES) as i32)
        .with_isolation_level(READ_COMMITTED)
        .with_topics(topics);
    let response = match conn.send(&request).await {
        Ok((response, _)) => response,
        Err(e) => {
            for w in wants {
                let _ = w.reply.send(Err(e.duplicate()));
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
