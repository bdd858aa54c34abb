//! What Fetch, ListOffsets and Produce share ([`super::fetches`], [`super::lists`],
//! [`super::produces`]): callers ask about one partition each, a task gathers the questions by
//! broker connection, and each connection has one request at a time on its way, holding every
//! question asked while the previous one was (answered for fetches and lists; for produces,
//! until the writer started on it). A broker answers a connection's requests one at a time, so one request per
//! partition would queue each behind all the others.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::conn::Conn;
use super::error::{Error, Result};
use super::TopicPartition;

/// Questions waiting for the next request, across all brokers.
pub(super) const QUEUE: usize = 4096;

/// One partition's question `Q` (what a request asks of it), on the connection to its leader,
/// and where its answer `A` goes.
pub(super) struct Question<Q, A> {
    pub(super) conn: Arc<Conn>,
    pub(super) tp: TopicPartition,
    pub(super) asks: Q,
    pub(super) reply: oneshot::Sender<Result<A>>,
}

impl<Q, A> Question<Q, A> {
    /// The caller stopped waiting (shutdown, a halted partition): the question is withdrawn.
    pub(super) fn withdrawn(&self) -> bool {
        self.reply.is_closed()
    }
}

/// Takes a request's questions from those waiting, leaving the others for the next one.
type Split<Q, A> = fn(Vec<Question<Q, A>>) -> (Vec<Question<Q, A>>, Vec<Question<Q, A>>);

/// Asks `asks` of `tp` on `conn` (its leader) in the next request to that broker, through
/// `queue`, and waits for the answer. A stopped queue is a lost connection to the broker;
/// dropping the future withdraws the question.
pub(super) async fn ask<Q, A>(
    queue: &mpsc::Sender<Question<Q, A>>,
    conn: Arc<Conn>,
    tp: &TopicPartition,
    asks: Q,
    what: &str,
) -> Result<A> {
    let broker = conn.broker().to_owned();
    let answer = put(queue, conn, tp, asks, what).await?;
    answer.await.map_err(|_| stopped(&broker, what))?
}

/// Queues `asks` of `tp` on `conn` for the next request to that broker, through `queue`, and
/// returns where the answer will come: questions queued one after another are asked in that
/// order. Dropping the receiver withdraws the question if it has not gone yet.
pub(super) async fn put<Q, A>(
    queue: &mpsc::Sender<Question<Q, A>>,
    conn: Arc<Conn>,
    tp: &TopicPartition,
    asks: Q,
    what: &str,
) -> Result<oneshot::Receiver<Result<A>>> {
    let broker = conn.broker().to_owned();
    let (reply, answer) = oneshot::channel();
    let question = Question {
        conn,
        tp: tp.clone(),
        asks,
        reply,
    };
    queue.send(question).await.map_err(|_| stopped(&broker, what))?;
    Ok(answer)
}

/// The error of a question whose queue stopped before it was answered.
pub(super) fn stopped(broker: &str, what: &str) -> Error {
    Error::ConnectionLost {
        broker: broker.to_owned(),
        source: Some(Arc::new(std::io::Error::other(format!("the {what} queue stopped")))),
    }
}

/// Gathers questions by connection and keeps one `send` going per connection until the queue
/// is dropped. `split` takes a request's questions from those waiting (the rest wait
/// for the next one); `send` sends them and returns those to ask again once the connection may
/// take another request (after the answer, or earlier when answers are handed on).
pub(super) async fn gather<Q, A, S, F>(mut rx: mpsc::Receiver<Question<Q, A>>, split: Split<Q, A>, send: S)
where
    Q: Send + 'static,
    A: Send + 'static,
    S: Fn(Vec<Question<Q, A>>) -> F,
    F: Future<Output = Vec<Question<Q, A>>> + Send + 'static,
{
    let mut waiting: HashMap<usize, Vec<Question<Q, A>>> = HashMap::new();
    let mut busy: HashSet<usize> = HashSet::new();
    let (done_tx, mut done_rx) = mpsc::channel::<(usize, Vec<Question<Q, A>>)>(QUEUE);
    let key = |q: &Question<Q, A>| Arc::as_ptr(&q.conn) as usize;
    loop {
        tokio::select! {
            question = rx.recv() => {
                let Some(question) = question else { return };
                waiting.entry(key(&question)).or_default().push(question);
                while let Ok(q) = rx.try_recv() {
                    waiting.entry(key(&q)).or_default().push(q);
                }
            }
            Some((key, again)) = done_rx.recv() => {
                busy.remove(&key);
                if !again.is_empty() {
                    waiting.entry(key).or_default().extend(again);
                }
            }
        }
        for (key, questions) in waiting.iter_mut() {
            questions.retain(|q| !q.withdrawn());
            if questions.is_empty() || !busy.insert(*key) {
                continue;
            }
            let (batch, later) = split(std::mem::take(questions));
            *questions = later;
            let done = done_tx.clone();
            let key = *key;
            let sent = send(batch);
            tokio::spawn(async move {
                let again = sent.await;
                let _ = done.send((key, again)).await;
            });
        }
        waiting.retain(|_, q| !q.is_empty());
    }
}

/// The questions of one request, at most one per partition (a request names a partition once;
/// a partition in a fresh-first catch-up is read at two offsets) and at most `max`, in order;
/// the others wait for the next request.
pub(super) fn once_each<W>(questions: Vec<W>, max: usize, tp: impl Fn(&W) -> &TopicPartition) -> (Vec<W>, Vec<W>) {
    let mut named = HashSet::new();
    questions
        .into_iter()
        .partition(|q| named.len() < max && named.insert(tp(q).clone()))
}
