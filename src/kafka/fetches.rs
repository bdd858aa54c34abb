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
//!
//! An idle partition sleeps here rather than in its reader: a fetch that asks to wait until
//! something is readable ([`Wait::UntilReadable`]) stays registered with its broker's requests
//! while its answers say there is nothing to read at its offset, and its caller is woken only by
//! records, an error or a log start that passed the offset. Thousands of idle partitions then
//! cost one entry each in a long poll per connection, not a wake-up, a channel send and a leader
//! lookup each per poll.

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use tokio::sync::mpsc;

use super::conn::Conn;
use super::error::{Error, Result};
use super::gather;
use super::{TopicId, TopicPartition};

/// Most bytes the requests to one broker ask for together, split between its connections;
/// partitions that do not fit get an empty answer and ask again. A response is in memory whole
/// while it is split among its partitions, before the fetch buffer counts it, so this is kept
/// well below Kafka's own consumer default (50 MiB).
pub(crate) const BROKER_MAX_BYTES: i64 = 16 * 1024 * 1024;

/// How long a fetch of one partition waits for records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// One long poll of up to this many milliseconds: the answer comes then, empty or not.
    Poll(i32),
    /// Long polls of up to this many milliseconds, asked again for as long as the partition has
    /// nothing readable at the offset: the answer comes with records, an error, a log start
    /// past the offset, or a redirect. The caller sleeps meanwhile.
    UntilReadable(i32),
}

impl Wait {
    /// The long poll of one request, in milliseconds.
    pub(crate) fn max_wait_ms(self) -> i32 {
        match self {
            Self::Poll(ms) | Self::UntilReadable(ms) => ms,
        }
    }
}

/// What a fetch asks of one partition.
struct FetchAt {
    /// The topic's id when known: the fetch then reads that topic only, not one created again
    /// under its name.
    id: Option<TopicId>,
    offset: i64,
    max_bytes: i32,
    wait: Wait,
}

/// One partition's place in the next request to its leader.
type Want = gather::Question<FetchAt, Answer>;

/// Whether a fetch from `offset` that waits as `wait` says sleeps through `answer`: it waits
/// until readable, and the answer has no error, no records, nothing readable at the offset (the
/// stable end, within the high watermark, is not past it), the log start not past it, and no
/// redirect.
fn sleeps_through(wait: Wait, offset: i64, answer: &PartitionData) -> bool {
    let visible_end = super::requests::visible_end(answer.high_watermark, answer.last_stable_offset);
    matches!(wait, Wait::UntilReadable(_))
        && answer.error_code == 0
        && answer.preferred_read_replica.0 < 0
        && answer.records.as_ref().is_none_or(bytes::Bytes::is_empty)
        && visible_end <= offset
        && answer.log_start_offset <= offset
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
        let (tx, rx) = mpsc::channel(gather::QUEUE);
        // A request names a partition once (one in a fresh-first catch-up is read at two
        // offsets): the other want waits for the next request. Wants that slept through an
        // answer go into the next request to the same connection.
        let split = |wants| gather::once_each(wants, usize::MAX, |w: &Want| &w.tp);
        tokio::spawn(gather::gather(rx, split, move |wants| send(wants, request_max_bytes)));
        Self { tx }
    }

    /// Fetches `tp` (of topic `id`, when known) from `offset` on `conn` (its leader) in the next
    /// request to that broker. With [`Wait::UntilReadable`], the want stays in the requests to
    /// that broker until an answer is worth waking for; dropping the future withdraws it.
    pub(crate) async fn fetch(
        &self,
        conn: Arc<Conn>,
        tp: &TopicPartition,
        id: Option<TopicId>,
        offset: i64,
        max_bytes: i32,
        wait: Wait,
    ) -> Result<Answer> {
        let at = FetchAt {
            id,
            offset,
            max_bytes,
            wait,
        };
        gather::ask(&self.tx, conn, tp, at, "fetch").await
    }
}

/// Sends one request for `wants` (all on the same connection) and hands each its answer, except
/// those that sleep through theirs: they are returned, to be asked again.
async fn send(wants: Vec<Want>, request_max_bytes: i64) -> Vec<Want> {
    let Some(conn) = wants.first().map(|w| Arc::clone(&w.conn)) else {
        return Vec::new();
    };
    let parts: Vec<_> = wants
        .iter()
        .map(|w| (&w.tp, w.asks.id, w.asks.offset, w.asks.max_bytes))
        .collect();
    let max_wait_ms = wants.iter().map(|w| w.asks.wait.max_wait_ms()).max().unwrap_or(0);
    let request = super::requests::build_shared_fetch(&parts, max_wait_ms, request_max_bytes);
    drop(parts);
    let cap = super::requests::fetch_version_cap(wants.iter().map(|w| w.asks.id));
    let response = match conn.send_at_most(&request, cap).await {
        Ok((response, _)) => response,
        Err(e) => {
            for w in wants {
                let _ = w.reply.send(Err(e.clone()));
            }
            return Vec::new();
        }
    };
    let top_level = response.error_code;
    let mut slots = place(&wants, response.responses);
    let holder = unshare(&mut slots);
    let mut asleep = Vec::new();
    for (i, (w, slot)) in wants.into_iter().zip(slots).enumerate() {
        let answer = match slot {
            Some(p) if top_level == 0 && sleeps_through(w.asks.wait, w.asks.offset, &p) && !w.withdrawn() => {
                asleep.push(w);
                continue;
            }
            Some(p) => {
                let code = if p.error_code != 0 { p.error_code } else { top_level };
                let retained = holder.filter(|(k, _)| *k == i).map_or(0, |(_, n)| n);
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
    asleep
}

/// Each want's part of a response, in the wants' order: `None` where the response has none.
fn place(wants: &[Want], topics: Vec<FetchableTopicResponse>) -> Vec<Option<PartitionData>> {
    // Versions 13+ name each topic of the response by id only.
    let names: HashMap<TopicId, &str> = wants
        .iter()
        .filter_map(|w| w.asks.id.map(|id| (id, w.tp.topic.as_str())))
        .collect();
    let index: HashMap<(&str, i32), usize> = wants
        .iter()
        .enumerate()
        .map(|(i, w)| ((w.tp.topic.as_str(), w.tp.partition), i))
        .collect();
    let mut slots: Vec<Option<PartitionData>> = std::iter::repeat_with(|| None).take(wants.len()).collect();
    for t in topics {
        let name = match names.get(t.topic_id.as_bytes()) {
            Some(name) if t.topic.is_empty() => name,
            _ => t.topic.0.as_str(),
        };
        for p in t.partitions {
            if let Some(&i) = index.get(&(name, p.partition_index)) {
                slots[i] = Some(p);
            }
        }
    }
    slots
}

/// When more than one answer has records, copies every answer's records out of the response,
/// so none keeps the others' alive. Returns the one answer left a slice of the response, if
/// any (its place), and the response's records bytes, which it keeps alive.
fn unshare(answers: &mut [Option<PartitionData>]) -> Option<(usize, usize)> {
    let len = |p: &PartitionData| p.records.as_ref().map_or(0, bytes::Bytes::len);
    let mut with_records = answers
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.as_ref().map(|p| (i, len(p))))
        .filter(|(_, n)| *n > 0);
    let (first, second) = (with_records.next(), with_records.next());
    if second.is_none() {
        return first;
    }
    for p in answers.iter_mut().flatten() {
        p.records = p.records.as_deref().map(bytes::Bytes::copy_from_slice);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse};
    use std::sync::Mutex;
    use tokio::sync::Notify;

    #[test]
    fn a_request_names_a_partition_once_and_the_second_want_waits_for_the_next() {
        let tp = |t: &str, p| TopicPartition::new(t, p);
        let wants = vec![
            tp("spans", 0),
            tp("spans", 1),
            tp("spans", 0),
            tp("logs", 0),
            tp("spans", 0),
        ];
        let (now, later) = gather::once_each(wants, usize::MAX, |w| w);
        assert_eq!(now, vec![tp("spans", 0), tp("spans", 1), tp("logs", 0)]);
        assert_eq!(later, vec![tp("spans", 0), tp("spans", 0)]);
        let (next, last) = gather::once_each(later, usize::MAX, |w| w);
        assert_eq!((next.len(), last.len()), (1, 1));
    }

    /// The version of every Fetch a test broker read, with the topics it named.
    type Asked = Arc<Mutex<Vec<(i16, Vec<String>)>>>;

    /// A broker on one connection: it answers ApiVersions (Fetch up to `max_version`) and every
    /// Fetch, decoded, with what `fetch` makes of it.
    async fn serve<F, Fut>(max_version: i16, fetch: F) -> String
    where
        F: FnMut(i16, FetchRequest) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = FetchResponse> + Send,
    {
        super::super::test_broker::serve(ApiKey::Fetch, 4, max_version, fetch).await
    }

    /// The partitions a Fetch asks for, in its order.
    fn partitions_of(request: &FetchRequest) -> Vec<i32> {
        request
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.partition))
            .collect()
    }

    /// A response to `request` naming its topics as it does, partition `p` answered `of(p)`.
    fn respond(request: &FetchRequest, of: impl Fn(i32) -> PartitionData) -> FetchResponse {
        let topics = request.topics.iter().map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| of(p.partition).with_partition_index(p.partition));
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_topic_id(t.topic_id)
                .with_partitions(partitions.collect())
        });
        FetchResponse::default().with_responses(topics.collect())
    }

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
        serve(max_version, move |version, request| {
            let topics_asked = request
                .topics
                .iter()
                .map(|t| format!("{}{:?}", t.topic.0, t.topic_id.as_bytes().first()))
                .collect();
            versions.lock().expect("lock").push((version, topics_asked));
            let is_first = {
                let mut r = requests.lock().expect("lock");
                r.push(partitions_of(&request));
                r.len() == 1
            };
            let (first, release) = (Arc::clone(&first), Arc::clone(&release));
            async move {
                if is_first {
                    first.notify_one();
                    release.notified().await;
                }
                respond(&request, |p| PartitionData::default().with_records(Some(records(p))))
            }
        })
        .await
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
                    .fetch(
                        conn,
                        &TopicPartition::new("spans", p),
                        id(p),
                        0,
                        1 << 20,
                        Wait::Poll(100),
                    )
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

    #[test]
    fn only_a_fetch_waiting_until_readable_sleeps_and_only_through_nothing_to_read() {
        let idle = || {
            PartitionData::default()
                .with_high_watermark(10)
                .with_last_stable_offset(10)
                .with_log_start_offset(0)
        };
        let (until, poll) = (Wait::UntilReadable(50), Wait::Poll(50));
        assert_eq!(
            idle().preferred_read_replica.0,
            -1,
            "the premise: no redirect by default"
        );
        assert!(sleeps_through(until, 10, &idle()));
        assert!(!sleeps_through(poll, 10, &idle()), "a long poll answers whatever comes");
        // Each of these is worth waking for.
        assert!(!sleeps_through(
            until,
            10,
            &idle().with_records(Some(Bytes::from_static(b"r")))
        ));
        assert!(!sleeps_through(until, 10, &idle().with_error_code(6)));
        assert!(!sleeps_through(
            until,
            10,
            &idle().with_preferred_read_replica(kafka_protocol::messages::BrokerId(2))
        ));
        assert!(
            !sleeps_through(until, 10, &idle().with_log_start_offset(11)),
            "retention passed the offset"
        );
        // Records wait past the offset (the response's bytes went to other partitions).
        assert!(!sleeps_through(until, 5, &idle()));
        // Held back by an open transaction: nothing readable yet, the high watermark aside.
        assert!(sleeps_through(until, 10, &idle().with_high_watermark(20)));
        assert!(!sleeps_through(
            until,
            10,
            &idle().with_high_watermark(20).with_last_stable_offset(15)
        ));
    }

    /// A broker answering every Fetch with `answer_of(n, partition)`, `n` counting its Fetch
    /// requests from 1; it records the partitions of each.
    async fn scripted_broker(
        requests: Arc<Mutex<Vec<Vec<i32>>>>,
        answer_of: fn(usize, i32) -> PartitionData,
    ) -> String {
        serve(12, move |_, request| {
            let n = {
                let mut r = requests.lock().expect("lock");
                r.push(partitions_of(&request));
                r.len()
            };
            std::future::ready(respond(&request, |p| answer_of(n, p)))
        })
        .await
    }

    async fn connect(addr: &str) -> Arc<Conn> {
        Arc::new(
            Conn::connect(addr, "test", std::time::Duration::from_secs(5))
                .await
                .expect("connect"),
        )
    }

    #[tokio::test]
    async fn a_fetch_waiting_until_readable_sleeps_through_empty_answers_and_wakes_with_records() {
        let requests = Arc::new(Mutex::new(Vec::new()));
        // Partition 0 is idle at 5 until the fourth request, which brings its records.
        let addr = scripted_broker(Arc::clone(&requests), |n, p| {
            let idle = PartitionData::default()
                .with_high_watermark(5)
                .with_last_stable_offset(5);
            match (p, n) {
                (0, 4..) => idle
                    .with_high_watermark(6)
                    .with_last_stable_offset(6)
                    .with_records(Some(Bytes::from_static(b"records"))),
                _ => idle,
            }
        })
        .await;
        let conn = connect(&addr).await;
        let fetches = Fetches::start(BROKER_MAX_BYTES);
        let tp = TopicPartition::new("spans", 0);
        let polled = fetches
            .fetch(Arc::clone(&conn), &tp, None, 5, 1 << 20, Wait::Poll(1))
            .await
            .expect("answer");
        assert!(
            polled.data.records.is_none_or(|r| r.is_empty()),
            "a long poll answers empty"
        );
        let first = requests.lock().expect("lock").len();
        let woken = fetches
            .fetch(conn, &tp, None, 5, 1 << 20, Wait::UntilReadable(1))
            .await
            .expect("answer");
        assert_eq!(woken.data.records.as_deref(), Some(&b"records"[..]));
        let requests = requests.lock().expect("lock").clone();
        assert_eq!(first, 1);
        assert_eq!(requests.len(), 4, "it slept through the second and third answers");
        assert!(requests.iter().all(|r| r == &vec![0]), "{requests:?}");
    }

    #[tokio::test]
    async fn a_sleeping_fetch_dropped_by_its_caller_leaves_the_requests() {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let addr = scripted_broker(Arc::clone(&requests), |_, _| PartitionData::default()).await;
        let conn = connect(&addr).await;
        let fetches = Arc::new(Fetches::start(BROKER_MAX_BYTES));
        let asleep = {
            let (fetches, conn) = (Arc::clone(&fetches), Arc::clone(&conn));
            tokio::spawn(async move {
                let tp = TopicPartition::new("spans", 0);
                fetches.fetch(conn, &tp, None, 0, 1 << 20, Wait::UntilReadable(1)).await
            })
        };
        // The premise: it slept through answers, asked again each time.
        while requests.lock().expect("lock").len() < 3 {
            tokio::task::yield_now().await;
        }
        asleep.abort();
        assert!(asleep.await.is_err_and(|e| e.is_cancelled()));
        let tp = TopicPartition::new("spans", 1);
        for _ in 0..2 {
            fetches
                .fetch(Arc::clone(&conn), &tp, None, 0, 1 << 20, Wait::Poll(1))
                .await
                .expect("answer");
        }
        let requests = requests.lock().expect("lock").clone();
        assert_eq!(requests.last(), Some(&vec![1]), "withdrawn: {requests:?}");
    }
}
