//! In-memory partitions behind [`Fetch`] and [`Produce`], for the pipeline's unit tests: raw
//! batches at their offsets, an idempotent producer's sequence check, log starts that move,
//! scripted produce faults, deleted topics and a fetch that panics.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::wire::{Claim, Claims, Fetch, Produce, TopicState};
use crate::batch::{self, BuildOptions, Compression, Record};
use crate::kafka::{
    self, ApiKey, FetchedPartition, OffsetSpec, ProduceAck, ProducerIdentity, ResponseError, TopicId, TopicPartition,
    Wait,
};

/// A record at `offset` with `value`, no key and no headers.
pub(crate) fn record(offset: i64, value: &'static [u8]) -> Record {
    Record {
        offset,
        timestamp: 1_700_000_000_000 + offset,
        key: None,
        value: Some(Bytes::from_static(value)),
        headers: Bytes::from_static(&[0]),
    }
}

/// A scripted answer for the next produce.
#[derive(Debug)]
pub(crate) struct Fault {
    /// The error the answer carries.
    pub(crate) error: kafka::Error,
    /// Whether the batch is written all the same (the answer was lost, not the batch).
    pub(crate) lands: Lands,
}

/// What becomes of the batch of a produce answered with a [`Fault`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lands {
    /// Written at once: only the answer was lost.
    Now,
    /// Not written.
    Never,
    /// Written when the test says so ([`FakeCluster::release_held`]): a request that timed
    /// out and still waits in the broker.
    Later,
    /// Written at once but above the high watermark, which stays where it was until
    /// [`FakeCluster::raise_watermark`]: a follower is lost and not yet out of the in-sync
    /// replicas. Readers do not see it; the producer state has it.
    AboveWatermark,
}

#[derive(Debug, Default)]
struct Log {
    start: i64,
    end: i64,
    batches: Vec<(i64, Bytes)>,
    aborted: Vec<(i64, i64)>,
    /// Producer id → (epoch, next sequence).
    producers: HashMap<i64, (i16, i32)>,
    /// Producer id → its last five batches: (first sequence, last sequence, base offset), as a
    /// broker keeps them to answer a duplicate.
    recent: HashMap<i64, VecDeque<(i32, i32, i64)>>,
    /// The high watermark while it lags the log end.
    watermark: Option<i64>,
}

impl Log {
    /// What readers see of the log: up to the high watermark.
    fn visible_end(&self) -> i64 {
        self.watermark.map_or(self.end, |w| w.min(self.end))
    }
}

#[derive(Debug, Default)]
struct State {
    logs: HashMap<TopicPartition, Log>,
    faults: VecDeque<Fault>,
    next_producer_id: i64,
    faults_hit: usize,
    /// A batch whose produce was answered with a fault, to land later.
    held: Option<(TopicPartition, Bytes)>,
    /// Topics deleted: their partitions answer UnknownTopicOrPartition.
    deleted: HashSet<String>,
    /// Topics created but not yet in the metadata: their partitions answer
    /// UnknownTopicOrPartition and the metadata does not name them ([`TopicState::Unseen`]).
    unseen: HashSet<String>,
    /// Topics whose `cleanup.policy` includes `compact`.
    compacted: HashSet<String>,
    /// Metadata answers that a topic is unseen.
    unseen_answers: usize,
    /// Topic ids, where a test gave them: a fetch pinned to another id answers UnknownTopicId.
    ids: HashMap<String, TopicId>,
    /// Fetches still to answer UnknownTopicOrPartition although the topic exists (a leader
    /// move: the broker asked no longer hosts the partition).
    unknown_answers: usize,
    /// A fetch below the log start is answered from the log start, with no error (as some
    /// brokers do), instead of OffsetOutOfRange.
    below_start_answers_later: bool,
    /// The message every fetch panics with, once set.
    fetch_panic: Option<&'static str>,
    /// Fetches that panicked.
    fetch_panics: usize,
    /// How long a produce's answer takes (its batch is written at once).
    answer_after: std::time::Duration,
}

/// A cluster of in-memory partitions.
#[derive(Debug, Default)]
pub(crate) struct FakeCluster {
    state: Mutex<State>,
    appended: Notify,
    /// When set, every answer with records is a slice of a response this large, as the Kafka
    /// client's answer is when it alone has records in a response.
    response_bytes: std::sync::atomic::AtomicUsize,
    /// Fetches that waited until something was readable.
    asleep: std::sync::atomic::AtomicUsize,
    /// Answers without records after a long poll.
    empty_answers: std::sync::atomic::AtomicUsize,
    /// Calls of `list_ends` (each one request per leader on a real cluster).
    list_ends_asked: std::sync::atomic::AtomicUsize,
    /// While set, every request fails as a cut link does (a connect refused), and counts.
    down: std::sync::atomic::AtomicBool,
    /// Requests refused while down.
    refused: std::sync::atomic::AtomicUsize,
    /// Notified at each refusal.
    refusal: Notify,
    /// Notified when the cluster comes back ([`Self::set_down`] with `false`).
    reconnected: Notify,
}

pub(crate) fn partition_error(tp: &TopicPartition, api: ApiKey, code: ResponseError) -> kafka::Error {
    kafka::Error::Partition {
        api,
        topic: tp.topic.clone(),
        partition: tp.partition,
        code,
        message: None,
    }
}

impl FakeCluster {
    /// Appends `values` as one uncompressed batch of producer `producer` (epoch 0; no
    /// idempotence check).
    pub(crate) fn append(&self, tp: &TopicPartition, producer: i64, values: &[&'static [u8]]) -> i64 {
        self.append_batch(tp, producer, false, Compression::None, statics(values))
    }

    /// Appends `values` as one batch of a transaction of `producer`.
    pub(crate) fn append_transactional(&self, tp: &TopicPartition, producer: i64, values: &[&'static [u8]]) -> i64 {
        self.append_batch(tp, producer, true, Compression::None, statics(values))
    }

    /// Appends `values` as one batch compressed with `compression`.
    pub(crate) fn append_compressed(&self, tp: &TopicPartition, values: Vec<Bytes>, compression: Compression) -> i64 {
        self.append_batch(tp, 1, false, compression, values)
    }

    /// Fetches that waited until something was readable, and answers that came back empty after
    /// a long poll.
    pub(crate) fn sleeps_and_empty_answers(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.asleep.load(Relaxed), self.empty_answers.load(Relaxed))
    }

    /// Cuts the cluster off (`true`: every request fails with a connect error) or brings it
    /// back, which wakes those waiting to retry, as a real cluster's reconnect does.
    pub(crate) fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
        if !down {
            self.reconnected.notify_waiters();
        }
    }

    /// Waits until at least `n` requests were refused while down.
    pub(crate) async fn refused(&self, n: usize) {
        loop {
            let refusal = self.refusal.notified();
            if self.refused.load(std::sync::atomic::Ordering::SeqCst) >= n {
                return;
            }
            refusal.await;
        }
    }

    /// A connect error while down.
    fn reachable(&self) -> kafka::Result<()> {
        if !self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        self.refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.refusal.notify_waiters();
        Err(kafka::Error::Connect {
            broker: "fake".into(),
            source: std::sync::Arc::new(std::io::ErrorKind::ConnectionRefused.into()),
        })
    }

    /// Calls of `list_ends` so far.
    pub(crate) fn list_ends_asked(&self) -> usize {
        self.list_ends_asked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Answers with records from now on are slices of a response of `bytes`.
    pub(crate) fn answer_in_responses_of(&self, bytes: usize) {
        self.response_bytes.store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    fn append_batch(
        &self,
        tp: &TopicPartition,
        producer: i64,
        transactional: bool,
        compression: Compression,
        values: Vec<Bytes>,
    ) -> i64 {
        let mut st = self.state.lock();
        let log = st.logs.entry(tp.clone()).or_default();
        let base = log.end;
        let count = values.len() as i64;
        let records: Vec<Record> = values
            .into_iter()
            .enumerate()
            .map(|(i, v)| Record::new(base + i as i64, 1_700_000_000_000 + base + i as i64, None, Some(v)))
            .collect();
        let opts = BuildOptions {
            compression,
            producer_id: producer,
            producer_epoch: 0,
            transactional,
            ..BuildOptions::default()
        };
        let bytes = batch::encode_batch(base, &records, &opts).expect("encodes");
        log.end += count;
        log.batches.push((base, bytes));
        drop(st);
        self.appended.notify_waiters();
        base
    }

    /// Appends a transaction marker of `producer` and, for an abort, records the aborted range
    /// from `first`.
    pub(crate) fn append_marker(&self, tp: &TopicPartition, producer: i64, commit: bool, first: i64) {
        let mut st = self.state.lock();
        let log = st.logs.entry(tp.clone()).or_default();
        let base = log.end;
        log.batches.push((
            base,
            batch::encode_control_batch(base, producer, 0, commit, 1_700_000_000_000),
        ));
        log.end += 1;
        if !commit {
            log.aborted.push((producer, first));
        }
    }

    /// Deletes everything below `offset` (retention, DeleteRecords).
    pub(crate) fn delete_before(&self, tp: &TopicPartition, offset: i64) {
        let mut st = self.state.lock();
        let log = st.logs.entry(tp.clone()).or_default();
        log.start = offset;
        log.batches.retain(|(_, b)| next_offset(b) > offset);
    }

    /// Deletes `topic`: every request for its partitions answers UnknownTopicOrPartition.
    pub(crate) fn delete_topic(&self, topic: &str) {
        self.state.lock().deleted.insert(topic.to_owned());
        self.appended.notify_waiters();
    }

    /// Gives `topic` the id `id`.
    pub(crate) fn set_topic_id(&self, topic: &str, id: TopicId) {
        self.state.lock().ids.insert(topic.to_owned(), id);
    }

    /// Deletes `topic` and creates it again, empty, with the id `id`.
    pub(crate) fn recreate_topic(&self, topic: &str, id: TopicId) {
        let mut st = self.state.lock();
        st.logs.retain(|tp, _| tp.topic != topic);
        st.ids.insert(topic.to_owned(), id);
        drop(st);
        self.appended.notify_waiters();
    }

    /// From now on a fetch below the log start is answered from the log start with no error.
    pub(crate) fn answer_below_start_with_later_records(&self) {
        self.state.lock().below_start_answers_later = true;
    }

    /// Produce answers come `after` their batches are written (a long round trip).
    pub(crate) fn answer_after(&self, after: std::time::Duration) {
        self.state.lock().answer_after = after;
    }

    /// The next `n` fetches answer UnknownTopicOrPartition while the topic still exists.
    pub(crate) fn unknown_topic_answers(&self, n: usize) {
        self.state.lock().unknown_answers = n;
    }

    /// Fetches still to answer UnknownTopicOrPartition.
    pub(crate) fn unknown_answers_left(&self) -> usize {
        self.state.lock().unknown_answers
    }

    /// Every fetch from now on panics with `message` (a bug in the data path).
    pub(crate) fn panic_on_fetch(&self, message: &'static str) {
        self.state.lock().fetch_panic = Some(message);
        self.appended.notify_waiters();
    }

    /// Fetches that panicked.
    pub(crate) fn fetch_panics(&self) -> usize {
        self.state.lock().fetch_panics
    }

    /// Whether `topic` is (still, or already) known.
    fn knows(&self, topic: &str) -> bool {
        let st = self.state.lock();
        !st.deleted.contains(topic) && !st.unseen.contains(topic)
    }

    /// `topic` was just created and its metadata has not reached the broker: unknown, and not
    /// named, until [`Self::reveal_topic`].
    pub(crate) fn compact_topic(&self, topic: &str) {
        self.state.lock().compacted.insert(topic.to_owned());
    }

    pub(crate) fn hide_topic(&self, topic: &str) {
        self.state.lock().unseen.insert(topic.to_owned());
    }

    /// The metadata names `topic` from now on.
    pub(crate) fn reveal_topic(&self, topic: &str) {
        self.state.lock().unseen.remove(topic);
        self.appended.notify_waiters();
    }

    /// Metadata answers so far that a topic is not named yet.
    pub(crate) fn unseen_answers(&self) -> usize {
        self.state.lock().unseen_answers
    }

    /// The next produce is answered with `fault`.
    pub(crate) fn fault(&self, fault: Fault) {
        self.state.lock().faults.push_back(fault);
    }

    /// Scripted faults that were hit.
    pub(crate) fn faults_hit(&self) -> usize {
        self.state.lock().faults_hit
    }

    /// Every record of `tp` with the producer id of its batch, control batches left out.
    pub(crate) fn records(&self, tp: &TopicPartition) -> Vec<(i64, Record)> {
        let st = self.state.lock();
        let Some(log) = st.logs.get(tp) else { return Vec::new() };
        let mut out = Vec::new();
        for (_, bytes) in &log.batches {
            for b in batch::batches(bytes.clone()) {
                let b = b.expect("parses");
                if b.header.is_control() {
                    continue;
                }
                out.extend(
                    b.records()
                        .expect("decodes")
                        .into_iter()
                        .map(|r| (b.header.producer_id, r)),
                );
            }
        }
        out
    }

    /// The batches of `tp` as they were written.
    pub(crate) fn batches(&self, tp: &TopicPartition) -> Vec<Bytes> {
        let st = self.state.lock();
        st.logs
            .get(tp)
            .map_or_else(Vec::new, |l| l.batches.iter().map(|(_, b)| b.clone()).collect())
    }

    pub(crate) fn end(&self, tp: &TopicPartition) -> i64 {
        self.state.lock().logs.get(tp).map_or(0, |l| l.end)
    }

    /// Waits until `tp` ends at `end` or later.
    pub(crate) async fn until_end(&self, tp: &TopicPartition, end: i64) {
        loop {
            let appended = self.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            if self.end(tp) >= end {
                return;
            }
            appended.await;
        }
    }

    /// The high watermark catches up with the log end (the lost follower left the in-sync
    /// replicas).
    pub(crate) fn raise_watermark(&self, tp: &TopicPartition) {
        if let Some(log) = self.state.lock().logs.get_mut(tp) {
            log.watermark = None;
        }
        self.appended.notify_waiters();
    }

    /// Writes the held batch now (as its produce would have); returns where it landed.
    pub(crate) fn release_held(&self) -> kafka::Result<ProduceAck> {
        let mut st = self.state.lock();
        let (tp, batch) = st.held.take().expect("a batch is held");
        let written = Self::write(&mut st, &tp, batch);
        drop(st);
        self.appended.notify_waiters();
        written
    }

    fn produce_now(&self, tp: &TopicPartition, batch: Bytes) -> kafka::Result<ProduceAck> {
        let mut st = self.state.lock();
        if st.deleted.contains(&tp.topic) {
            return Err(partition_error(
                tp,
                ApiKey::Produce,
                ResponseError::UnknownTopicOrPartition,
            ));
        }
        let fault = st.faults.pop_front();
        st.faults_hit += usize::from(fault.is_some());
        match fault {
            Some(Fault {
                error,
                lands: Lands::Never,
            }) => Err(error),
            Some(Fault {
                error,
                lands: Lands::Later,
            }) => {
                st.held = Some((tp.clone(), batch));
                Err(error)
            }
            Some(Fault {
                error,
                lands: Lands::AboveWatermark,
            }) => {
                let log = st.logs.entry(tp.clone()).or_default();
                log.watermark.get_or_insert(log.end);
                let written = Self::write(&mut st, tp, batch);
                drop(st);
                self.appended.notify_waiters();
                written.and(Err(error))
            }
            Some(Fault {
                error,
                lands: Lands::Now,
            }) => {
                let written = Self::write(&mut st, tp, batch);
                drop(st);
                self.appended.notify_waiters();
                written.and(Err(error))
            }
            None => {
                let written = Self::write(&mut st, tp, batch);
                drop(st);
                self.appended.notify_waiters();
                written
            }
        }
    }

    /// Appends a produced batch, checked as an idempotent producer's.
    fn write(st: &mut State, tp: &TopicPartition, batch: Bytes) -> kafka::Result<ProduceAck> {
        let header = batch::batches(batch.clone())
            .next()
            .expect("one batch")
            .expect("parses")
            .header;
        let count = header.last_offset_delta + 1;
        let log = st.logs.entry(tp.clone()).or_default();
        let (epoch, next) = log
            .producers
            .get(&header.producer_id)
            .copied()
            .unwrap_or((header.producer_epoch, 0));
        if epoch != header.producer_epoch || header.base_sequence > next {
            return Err(partition_error(
                tp,
                ApiKey::Produce,
                ResponseError::OutOfOrderSequenceNumber,
            ));
        }
        let last_sequence = header.base_sequence.wrapping_add(header.last_offset_delta) & i32::MAX;
        if let Some(&(_, _, base_offset)) = log.recent.get(&header.producer_id).and_then(|r| {
            r.iter()
                .find(|(f, l, _)| *f == header.base_sequence && *l == last_sequence)
        }) {
            // A duplicate of one of the last five batches: acknowledged where it lies.
            return Ok(ProduceAck {
                base_offset,
                throttle_ms: 0,
            });
        }
        if header.base_sequence < next {
            return Err(partition_error(
                tp,
                ApiKey::Produce,
                ResponseError::OutOfOrderSequenceNumber,
            ));
        }
        let base = log.end;
        let mut bytes = batch.to_vec();
        bytes[0..8].copy_from_slice(&base.to_be_bytes());
        log.batches.push((base, Bytes::from(bytes)));
        log.end += i64::from(count);
        log.producers
            .insert(header.producer_id, (epoch, (next + count) & i32::MAX));
        let recent = log.recent.entry(header.producer_id).or_default();
        recent.push_back((header.base_sequence, last_sequence, base));
        if recent.len() > 5 {
            recent.pop_front();
        }
        Ok(ProduceAck {
            base_offset: base,
            throttle_ms: 0,
        })
    }

    fn fetch_now(
        &self,
        tp: &TopicPartition,
        pinned: Option<TopicId>,
        offset: i64,
        max_bytes: i32,
    ) -> kafka::Result<Option<FetchedPartition>> {
        let mut st = self.state.lock();
        if let Some(message) = st.fetch_panic {
            st.fetch_panics += 1;
            drop(st);
            panic!("{message}");
        }
        if st.deleted.contains(&tp.topic) || st.unknown_answers > 0 {
            st.unknown_answers = st.unknown_answers.saturating_sub(1);
            return Err(partition_error(
                tp,
                ApiKey::Fetch,
                ResponseError::UnknownTopicOrPartition,
            ));
        }
        if pinned.is_some_and(|pinned| st.ids.get(&tp.topic).is_some_and(|id| *id != pinned)) {
            return Err(partition_error(tp, ApiKey::Fetch, ResponseError::UnknownTopicId));
        }
        let log = st.logs.get(tp);
        let (start, end) = log.map_or((0, 0), |l| (l.start, l.visible_end()));
        let offset = match offset < start && st.below_start_answers_later {
            true => start,
            false => offset,
        };
        if offset < start || offset > end {
            return Err(partition_error(tp, ApiKey::Fetch, ResponseError::OffsetOutOfRange));
        }
        let Some(log) = log.filter(|_| offset < end) else {
            return Ok(None);
        };
        let mut records = Vec::new();
        for (_, b) in log
            .batches
            .iter()
            .filter(|(base, b)| next_offset(b) > offset && *base < end)
        {
            if !records.is_empty() && records.len() + b.len() > max_bytes.max(0) as usize {
                break;
            }
            records.extend_from_slice(b);
        }
        let len = records.len();
        let response = self.response_bytes.load(std::sync::atomic::Ordering::Relaxed).max(len);
        records.resize(response, 0);
        Ok(Some(FetchedPartition {
            high_watermark: end,
            last_stable_offset: end,
            log_start_offset: start,
            records: Bytes::from(records).slice(..len),
            aborted: log.aborted.clone(),
            retained: response,
        }))
    }
}

fn statics(values: &[&'static [u8]]) -> Vec<Bytes> {
    values.iter().map(|v| Bytes::from_static(v)).collect()
}

fn next_offset(batch: &Bytes) -> i64 {
    batch::batches(batch.clone())
        .next()
        .and_then(|b| b.ok())
        .map_or(0, |b| b.header.next_offset())
}

impl Fetch for FakeCluster {
    fn name(&self) -> &str {
        "fake"
    }

    async fn fetch(
        &self,
        tp: &TopicPartition,
        topic_id: Option<TopicId>,
        offset: i64,
        max_bytes: i32,
        wait: Wait,
    ) -> kafka::Result<FetchedPartition> {
        self.reachable()?;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(wait.max_wait_ms().max(0) as u64);
        if matches!(wait, Wait::UntilReadable(_)) {
            self.asleep.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        loop {
            let appended = self.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            if let Some(answer) = self.fetch_now(tp, topic_id, offset, max_bytes)? {
                return Ok(answer);
            }
            // Until readable: every change to the cluster wakes the fetch to look again.
            if matches!(wait, Wait::UntilReadable(_)) {
                appended.await;
                continue;
            }
            if tokio::time::timeout_at(deadline, appended).await.is_err() {
                self.empty_answers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let end = self.state.lock().logs.get(tp).map_or(0, Log::visible_end);
                return Ok(FetchedPartition {
                    high_watermark: end,
                    last_stable_offset: end,
                    log_start_offset: self.state.lock().logs.get(tp).map_or(0, |l| l.start),
                    ..FetchedPartition::default()
                });
            }
        }
    }

    async fn list_offset(&self, tp: &TopicPartition, spec: OffsetSpec) -> kafka::Result<i64> {
        self.reachable()?;
        if !self.knows(&tp.topic) {
            return Err(partition_error(
                tp,
                ApiKey::ListOffsets,
                ResponseError::UnknownTopicOrPartition,
            ));
        }
        let st = self.state.lock();
        let log = st.logs.get(tp);
        Ok(match spec {
            OffsetSpec::Earliest => log.map_or(0, |l| l.start),
            OffsetSpec::Latest => log.map_or(0, Log::visible_end),
            OffsetSpec::Timestamp(ms) => {
                let Some(log) = log else { return Ok(-1) };
                let end = log.visible_end();
                log.batches
                    .iter()
                    .filter(|(base, _)| *base < end)
                    .flat_map(|(_, b)| batch::batches(b.clone()))
                    .filter_map(Result::ok)
                    .filter(|b| !b.header.is_control())
                    .flat_map(|b| b.records().unwrap_or_default())
                    .find(|r| r.timestamp >= ms && r.offset >= log.start)
                    .map_or(-1, |r| r.offset)
            }
        })
    }

    async fn list_ends(&self, tps: &[TopicPartition]) -> Vec<kafka::Result<i64>> {
        self.list_ends_asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut ends = Vec::with_capacity(tps.len());
        for tp in tps {
            ends.push(self.list_offset(tp, OffsetSpec::Latest).await);
        }
        ends
    }

    fn invalidate(&self, _tp: &TopicPartition) {}

    fn reconnected(&self) -> Option<&tokio::sync::Notify> {
        Some(&self.reconnected)
    }

    async fn topic_state(&self, topic: &str) -> kafka::Result<TopicState> {
        self.reachable()?;
        let mut st = self.state.lock();
        Ok(if st.unseen.contains(topic) {
            st.unseen_answers += 1;
            TopicState::Unseen
        } else if st.deleted.contains(topic) {
            TopicState::Missing
        } else {
            TopicState::Present(st.ids.get(topic).copied())
        })
    }

    async fn compacted(&self, topic: &str) -> kafka::Result<bool> {
        self.reachable()?;
        Ok(self.state.lock().compacted.contains(topic))
    }
}

impl Produce for FakeCluster {
    type Ack = Pin<Box<dyn Future<Output = kafka::Result<ProduceAck>> + Send>>;

    async fn init_producer_id(&self, _timeout_ms: i32) -> kafka::Result<ProducerIdentity> {
        self.reachable()?;
        let mut st = self.state.lock();
        st.next_producer_id += 1;
        Ok(ProducerIdentity {
            id: 1000 + st.next_producer_id,
            epoch: 0,
        })
    }

    async fn start_produce(&self, tp: &TopicPartition, batch: Bytes, _timeout_ms: i32) -> kafka::Result<Self::Ack> {
        self.reachable()?;
        let answer = self.produce_now(tp, batch);
        let after = self.state.lock().answer_after;
        Ok(Box::pin(async move {
            tokio::time::sleep(after).await;
            answer
        }))
    }
}

/// The claims of a checkpoint topic, in memory: each partition's newest.
#[derive(Debug, Default)]
pub(crate) struct FakeClaims {
    claims: Mutex<HashMap<TopicPartition, Claim>>,
    reads: std::sync::atomic::AtomicUsize,
}

impl FakeClaims {
    /// Another strait claims `tp` with writer epoch `epoch`, naming producer `writer`.
    pub(crate) fn claim(&self, tp: &TopicPartition, epoch: i64, writer: i64) {
        let claim = Claim {
            writer_epoch: epoch,
            writers: vec![ProducerIdentity { id: writer, epoch: 0 }],
        };
        self.claims.lock().insert(tp.clone(), claim);
    }

    /// How often the claims were read.
    pub(crate) fn reads(&self) -> usize {
        self.reads.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Claims for FakeClaims {
    async fn newest(&self, tp: &TopicPartition) -> Result<Option<Claim>, crate::checkpoint::Error> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(self.claims.lock().get(tp).cloned())
    }
}
