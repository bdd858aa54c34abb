//! Fetches of many partitions share requests: one Fetch in flight per broker connection, holding
//! every partition that asked while the previous one was out. A broker answers the requests of
//! one connection one at a time, so a fetch per partition would queue each partition's long poll
//! behind the others'; one request per broker returns as soon as any of its partitions has data.
//! Callers still ask for one partition and get that partition's answer.
//!
//! The partitions' records in a response are slices of its one buffer, and a `Bytes` slice
//! keeps all of it alive: records of uncompressed batches point into it until they are
//! re-batched, which would keep the whole response alive while the fetch buffer counts only
//! their share. So when more than one partition has records in a response, every answer's
//! records are copied out and hold only themselves; an answer alone with records keeps the
//! response, counted whole ([`Answer::retained`], which the fetch stage counts against the
//! fetch buffer for as long as records point into it). The copy costs one memcpy of a shared
//! response's records (less than the CRC check every fetched byte gets anyway).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kafka_protocol::messages::fetch_response::PartitionData;
use tokio::sync::{mpsc, oneshot};

use super::conn::Conn;
use super::error::{Error, Result};
use super::{TopicId, TopicPartition};

/// Partitions waiting for the next request, across all brokers: one per partition reader.
const QUEUE: usize = 4096;
/// Most bytes the requests to one broker ask for together, split between its connections;
/// partitions that do not fit get an empty answer and ask again. A response is in memory whole
/// while it is split among its partitions, before the fetch buffer counts it, so this is kept
/// well below Kafka's own consumer default (50 MiB).
pub(crate) const BROKER_MAX_BYTES: i64 = 16 * 1024 * 1024;

/// One partition's place in the next request to its leader.
struct Want {
    conn: Arc<Conn>,
    tp: TopicPartition,
    /// The topic's id when known: the fetch then reads that topic only, not one created again
    /// under its name.
    id: Option<TopicId>,
    offset: i64,
    max_bytes: i32,
    max_wait_ms: i32,
    reply: oneshot::Sender<Result<Answer>>,
}

/// One partition's part of a shared response.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) data: PartitionData,
    /// Bytes of memory its records keep alive: the whole response's records when they are a
    /// slice of it, 0 when they are their own.
    pub(crate) retained: usize,
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

    /// Fetches `tp` (of topic `id`, when known) from `offset` on `conn` (its leader) in the next
    /// request to that broker.
    pub(crate) async fn fetch(
        &self,
        conn: Arc<Conn>,
        tp: &TopicPartition,
        id: Option<TopicId>,
        offset: i64,
        max_bytes: i32,
        max_wait_ms: i32,
    ) -> Result<Answer> {
        let broker = conn.broker().to_owned();
        let (reply, answer) = oneshot::channel();
        let want = Want {
            conn,
            tp: tp.clone(),
            id,
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
    let parts: Vec<_> = wants.iter().map(|w| (&w.tp, w.id, w.offset, w.max_bytes)).collect();
    let max_wait_ms = wants.iter().map(|w| w.max_wait_ms).max().unwrap_or(0);
    let request = super::requests::build_shared_fetch(&parts, max_wait_ms, request_max_bytes);
    let cap = super::requests::fetch_version_cap(wants.iter().map(|w| w.id));
    let response = match conn.send_at_most(&request, cap).await {
        Ok((response, _)) => response,
        Err(e) => {
            for w in wants {
                let _ = w.reply.send(Err(e.clone()));
            }
            return;
        }
    };
    let top_level = response.error_code;
    // Versions 13+ name each topic of the response by id only.
    let names: HashMap<TopicId, &str> = wants
        .iter()
        .filter_map(|w| w.id.map(|id| (id, w.tp.topic.as_str())))
        .collect();
    let mut answers: HashMap<(String, i32), PartitionData> = HashMap::new();
    for t in response.responses {
        let name = match names.get(t.topic_id.as_bytes()) {
            Some(name) if t.topic.is_empty() => (*name).to_owned(),
            _ => t.topic.0.to_string(),
        };
        for p in t.partitions {
            answers.insert((name.clone(), p.partition_index), p);
        }
    }
    let holder = unshare(&mut answers);
    for w in wants {
        let key = (w.tp.topic.clone(), w.tp.partition);
        let answer = match answers.remove(&key) {
            Some(p) => {
                let code = if p.error_code != 0 { p.error_code } else { top_level };
                let retained = holder.as_ref().filter(|(k, _)| *k == key).map_or(0, |(_, n)| *n);
                Ok(Answer {
                    data: p.with_error_code(code),
                    retained,
                })
            }
            None if top_level != 0 => Ok(Answer {
                data: PartitionData::default()
                    .with_partition_index(w.tp.partition)
                    .with_error_code(top_level),
                retained: 0,
            }),
            None => Err(Error::MissingInResponse {
                broker: conn.broker().to_owned(),
                api: kafka_protocol::messages::ApiKey::Fetch,
                resource: format!("{}/{}", w.tp.topic, w.tp.partition),
            }),
        };
        let _ = w.reply.send(answer);
    }
}

/// When more than one answer has records, copies every answer's records out of the response,
/// so none keeps the others' alive. Returns the one answer left a slice of the response, if
/// any, and the response's records bytes, which it keeps alive.
fn unshare(answers: &mut HashMap<(String, i32), PartitionData>) -> Option<((String, i32), usize)> {
    let len = |p: &PartitionData| p.records.as_ref().map_or(0, bytes::Bytes::len);
    let mut with_records = answers.iter().filter(|(_, p)| len(p) > 0);
    let (first, second) = (
        with_records.next().map(|(k, p)| (k.clone(), len(p))),
        with_records.next(),
    );
    if second.is_none() {
        return first;
    }
    for p in answers.values_mut() {
        p.records = p.records.as_deref().map(bytes::Bytes::copy_from_slice);
    }
    None
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

    /// The version of every Fetch a test broker read, with the topics it named.
    type Asked = Arc<Mutex<Vec<(i16, Vec<String>)>>>;

    /// A broker that records the partitions of every Fetch and holds its first answer until
    /// `release` is notified; partition `p` gets `records(p)`. It speaks Fetch up to
    /// `max_version`, and records the versions asked in `versions`.
    async fn broker(
        requests: Arc<Mutex<Vec<Vec<i32>>>>,
        first: Arc<Notify>,
        release: Arc<Notify>,
        records: fn(i32) -> Bytes,
        max_version: i16,
        versions: Asked,
    ) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            while let Some((api, version, header, mut frame)) = read_request(&mut s).await {
                let id = header.correlation_id;
                let out = if api == ApiKey::ApiVersions {
                    api_versions(&mut s, id, version, &[(ApiKey::Fetch, 4, max_version)]).await;
                    continue;
                } else {
                    let request = kafka_protocol::messages::FetchRequest::decode(&mut frame, version).expect("fetch");
                    let topics_asked = request
                        .topics
                        .iter()
                        .map(|t| format!("{}{:?}", t.topic.0, t.topic_id.as_bytes().first()))
                        .collect();
                    versions.lock().expect("lock").push((version, topics_asked));
                    let topics: Vec<FetchableTopicResponse> = request
                        .topics
                        .iter()
                        .map(|t| {
                            FetchableTopicResponse::default()
                                .with_topic(t.topic.clone())
                                .with_topic_id(t.topic_id)
                                .with_partitions(
                                    t.partitions
                                        .iter()
                                        .map(|p| {
                                            PartitionData::default()
                                                .with_partition_index(p.partition)
                                                .with_records(Some(records(p.partition)))
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

    /// Partition 0 asks alone; while its request is out, partitions 1 to 3 ask, in two waves
    /// (each wave reaches the gathering task before the next starts). Their answers, in order.
    async fn fetch_two_requests(
        requests: &Arc<Mutex<Vec<Vec<i32>>>>,
        records: fn(i32) -> Bytes,
    ) -> Vec<Result<Answer>> {
        let versions = Arc::new(Mutex::new(Vec::new()));
        fetch_two_requests_of(requests, records, 12, &versions, |_| None).await
    }

    /// [`fetch_two_requests`] from a broker that speaks Fetch up to `max_version`, partition
    /// `p` pinned to topic id `id(p)`.
    async fn fetch_two_requests_of(
        requests: &Arc<Mutex<Vec<Vec<i32>>>>,
        records: fn(i32) -> Bytes,
        max_version: i16,
        versions: &Asked,
        id: fn(i32) -> Option<TopicId>,
    ) -> Vec<Result<Answer>> {
        let (first, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let addr = broker(
            Arc::clone(requests),
            Arc::clone(&first),
            Arc::clone(&release),
            records,
            max_version,
            Arc::clone(versions),
        )
        .await;
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
                    .fetch(conn, &TopicPartition::new("spans", p), id(p), 0, 1 << 20, 100)
                    .await
            })
        };
        let mut all = vec![fetch(0)];
        first.notified().await;
        all.extend((1..3).map(fetch));
        tokio::task::yield_now().await;
        all.push(fetch(3));
        tokio::task::yield_now().await;
        release.notify_one();
        let mut answers = Vec::new();
        for t in all {
            answers.push(t.await.expect("task"));
        }
        answers
    }

    #[tokio::test]
    async fn partitions_asking_while_a_fetch_is_out_share_the_next_request() {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let answers = fetch_two_requests(&requests, |_| Bytes::new()).await;
        for (i, answer) in answers.into_iter().enumerate() {
            assert_eq!(answer.expect("answer").data.partition_index, i as i32);
        }
        let requests = requests.lock().expect("lock").clone();
        assert_eq!(
            requests,
            vec![vec![0], vec![1, 2, 3]],
            "one request in flight, the rest gathered"
        );
    }

    /// Records of `len(p)` bytes for partition `p`.
    fn records_of(p: i32) -> Bytes {
        Bytes::from(vec![b'r'; [500, 3000, 10, 0][p as usize]])
    }

    #[tokio::test]
    async fn answers_of_a_shared_response_do_not_keep_it_alive() {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let answers = fetch_two_requests(&requests, records_of).await;
        assert_eq!(requests.lock().expect("lock").clone(), vec![vec![0], vec![1, 2, 3]]);
        let answers: Vec<Answer> = answers.into_iter().map(|a| a.expect("answer")).collect();
        // Partition 0, alone with records in its response, keeps it and counts it whole.
        let retained: Vec<usize> = answers.iter().map(|a| a.retained).collect();
        assert_eq!(retained, vec![500, 0, 0, 0]);
        let records: Vec<Bytes> = answers.into_iter().map(|a| a.data.records.expect("records")).collect();
        // The premise: partitions 1 and 2 shared one response, both with records.
        assert_eq!(
            records.iter().map(Bytes::len).collect::<Vec<_>>(),
            vec![500, 3000, 10, 0]
        );
        // Each holds its own bytes: none keeps the response (or the others) alive.
        for (p, r) in records.iter().enumerate().filter(|(_, r)| !r.is_empty()) {
            assert!(r.is_unique(), "partition {p}'s records share their buffer");
        }
    }

    #[tokio::test]
    async fn partitions_with_topic_ids_are_fetched_by_id_and_the_others_by_name() {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let versions = Arc::new(Mutex::new(Vec::new()));
        // Partition 0 alone, pinned: by id. Partitions 1 to 3 together, one without an id: by name.
        let pinned = |p: i32| (p != 2).then_some([7; 16]);
        let answers = fetch_two_requests_of(&requests, records_of, 17, &versions, pinned).await;
        for (i, answer) in answers.into_iter().enumerate() {
            let answer = answer.expect("every answer found, by id or by name");
            assert_eq!(answer.data.partition_index, i as i32);
            assert_eq!(answer.data.records.map(|r| r.len()), Some(records_of(i as i32).len()));
        }
        let versions = versions.lock().expect("lock").clone();
        assert_eq!(
            versions,
            vec![
                (17, vec!["Some(7)".to_owned()]),
                (12, vec!["spansSome(0)".to_owned(), "spansSome(0)".to_owned()]),
            ],
            "by id (no name on the wire) at 17; by name at 12 when one partition has no id"
        );
    }
}
