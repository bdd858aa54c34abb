//! Retrying a request of the data path, and naming a failed one.

use tokio_util::sync::CancellationToken;

use super::error::Error;
use super::wire::{Fetch, TopicState};
use crate::kafka::retry::{Retried, Until};
use crate::kafka::{self, Backoff, OffsetSpec, ResponseError, TopicId, TopicPartition};
use crate::telemetry;

/// A failed request of `cluster` for `tp` at `offset`, as the partition's error.
pub(super) fn kafka_err(
    cluster: &'static str,
    action: &'static str,
    tp: &TopicPartition,
    offset: i64,
    source: crate::kafka::Error,
) -> Error {
    Error::Kafka {
        cluster,
        action,
        topic: tp.topic.clone(),
        partition: tp.partition,
        offset,
        source: Box::new(source),
    }
}

/// The setting that goes on once a `side` topic exists again under its name.
fn going_on(side: &'static str) -> &'static str {
    if side == "target" {
        "on_target_reset = \"replicate_again\" (STRAIT_ON_TARGET_RESET) to write the source again from its checkpoint"
    } else {
        "on_topic_recreated = \"start_over\" (STRAIT_ON_TOPIC_RECREATED) to replicate the new topic from its beginning"
    }
}

/// The partition's error for a topic found deleted (`last` is the last answer about it), or
/// deleted and created again, under it.
pub(super) fn lost(side: &'static str, tp: &TopicPartition, offset: i64, gone: Gone) -> Error {
    let (topic, partition, setting) = (tp.topic.clone(), tp.partition, going_on(side));
    match gone {
        Gone::Deleted(last) => Error::TopicDeleted {
            side,
            setting,
            topic,
            partition,
            offset,
            source: Box::new(last),
        },
        Gone::Recreated => Error::RecreatedWhileReplicating {
            side,
            setting,
            topic,
            partition,
            offset,
        },
    }
}

/// Runs `op` until it succeeds, fails with a non-retriable error, or `cancel` fires (`Ok(None)`).
/// Retriable failures refresh the partition's leader when the error says it moved, and are logged
/// once per distinct cause rather than once per attempt.
pub(super) async fn retry<C: Fetch, T, F, Fut>(
    cancel: &CancellationToken,
    cluster: &C,
    tp: &TopicPartition,
    action: &str,
    op: F,
) -> Result<Option<T>, crate::kafka::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::kafka::Error>>,
{
    let mut last_cause: Option<String> = None;
    let on_retry = |e: &crate::kafka::Error, _attempt, _delay| {
        count_error(cluster.name(), action, e);
        metrics::counter!(telemetry::RETRIES, "cluster" => cluster.name().to_owned(), "api" => action.to_owned())
            .increment(1);
        if e.needs_metadata_refresh() {
            cluster.invalidate(tp);
        }
        let cause = e.to_string();
        if last_cause.as_deref() != Some(cause.as_str()) {
            tracing::warn!(cluster = cluster.name(), topic = %tp.topic, partition = tp.partition, action, error = %crate::error_chain(e), "retrying");
            last_cause = Some(cause);
        }
    };
    let until = match cluster.reconnected() {
        Some(woken) => Until::Woken { cancel, woken },
        None => Until::Cancelled(cancel),
    };
    let retried = kafka::retry::retry(Backoff::default(), until, op, on_retry).await;
    match retried {
        Retried::Done(v) => {
            if last_cause.is_some() {
                tracing::info!(cluster = cluster.name(), topic = %tp.topic, partition = tp.partition, action, "recovered");
            }
            Ok(Some(v))
        }
        Retried::Cancelled => Ok(None),
        Retried::Failed { error, .. } => {
            count_error(cluster.name(), action, &error);
            Err(error)
        }
    }
}

/// How long metadata answers in a row must say that a topic does not exist before it is taken
/// as deleted. A broker whose metadata lags a topic just created says so for a moment; and a
/// topic deleted and created again by an operator (two commands, seconds apart) is then seen as
/// recreated, which says more than "deleted" and reads nothing of the new topic either.
const DELETED_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a request's topic is no longer the one it was about.
#[derive(Debug)]
pub(super) enum Gone {
    /// Deleted: the last answer about it.
    Deleted(crate::kafka::Error),
    /// Deleted and created again: the cluster's metadata names the topic with another id than
    /// the one the request was pinned to.
    Recreated,
}

/// [`retry`], for a request whose topic may be deleted (or deleted and created again)
/// meanwhile: `Ok(Some(Err(gone)))` when it was.
///
/// UnknownTopicOrPartition (UnknownTopicId by id) alone does not tell: a broker that no longer
/// hosts the partition after a leader move answers it too, and so does one whose metadata lags
/// a topic just created; then it is retried like any retriable error. Only when the cluster's
/// metadata, asked right after, answers that the topic does not exist, every time for
/// [`DELETED_AFTER`] across the retries' backoff, is it taken as deleted. When the metadata names
/// the topic with another id than `pinned` (ids are never reused), it was created again: no
/// confirmation is needed. Any other metadata answer (the pinned id, another error, no answer)
/// leaves the request retried.
pub(super) async fn retry_while_topic_exists<C: Fetch, T, F, Fut>(
    cancel: &CancellationToken,
    cluster: &C,
    tp: &TopicPartition,
    pinned: Option<TopicId>,
    action: &str,
    mut op: F,
) -> Result<Option<Result<T, Gone>>, crate::kafka::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::kafka::Error>>,
{
    let unknown = |e: &crate::kafka::Error| {
        matches!(
            e.code(),
            Some(ResponseError::UnknownTopicOrPartition | ResponseError::UnknownTopicId)
        )
    };
    // Since when every metadata answer said the topic does not exist.
    let missing_since = parking_lot::Mutex::new(None::<tokio::time::Instant>);
    retry(cancel, cluster, tp, action, || {
        let attempt = op();
        let missing_since = &missing_since;
        async move {
            match attempt.await {
                // Boxed: rare, and otherwise part of every request's future for the task's life.
                Err(e) if unknown(&e) => match Box::pin(cluster.topic_state(&tp.topic)).await {
                    Ok(TopicState::Missing) => {
                        let since = *missing_since.lock().get_or_insert_with(tokio::time::Instant::now);
                        match since.elapsed() >= DELETED_AFTER {
                            true => Ok(Err(Gone::Deleted(e))),
                            false => Err(e),
                        }
                    }
                    Ok(TopicState::Present(Some(now))) if pinned.is_some_and(|p| p != now) => Ok(Err(Gone::Recreated)),
                    _ => {
                        *missing_since.lock() = None;
                        Err(e)
                    }
                },
                answer => answer.map(Ok),
            }
        }
    })
    .await
}

/// The log start or end of `tp` on the source ([`list_offset`]).
pub(super) async fn list_source_offset<C: Fetch>(
    cancel: &CancellationToken,
    source: &C,
    tp: &TopicPartition,
    spec: OffsetSpec,
    offset: i64,
) -> Result<Option<i64>, Error> {
    list_offset(cancel, source, "source", tp, spec, offset).await
}

/// The log start or end of `tp` on `cluster` (`role`: source or target), retried until it
/// answers or the topic is found deleted ([`retry_while_topic_exists`]): a target topic deleted
/// under a running partition halts it at its next reconcile instead of being retried for ever.
/// `offset` is where the partition is, for the error. `None` when cancelled first.
pub(super) async fn list_offset<C: Fetch>(
    cancel: &CancellationToken,
    cluster: &C,
    role: &'static str,
    tp: &TopicPartition,
    spec: OffsetSpec,
    offset: i64,
) -> Result<Option<i64>, Error> {
    let listed = retry_while_topic_exists(cancel, cluster, tp, None, "list offsets", || {
        cluster.list_offset(tp, spec)
    })
    .await;
    match listed {
        Ok(Some(Ok(at))) => Ok(Some(at)),
        Ok(Some(Err(gone))) => Err(lost(role, tp, offset, gone)),
        Ok(None) => Ok(None),
        Err(e) => Err(kafka_err(role, "list offsets", tp, offset, e)),
    }
}

/// Counts a failed request by cluster, request and Kafka error code (or the transport fault).
fn count_error(cluster: &str, api: &str, e: &crate::kafka::Error) {
    let code = e
        .code()
        .map_or_else(|| transport_fault(e).to_owned(), |c| format!("{c:?}"));
    metrics::counter!(telemetry::REQUEST_ERRORS, "cluster" => cluster.to_owned(), "api" => api.to_owned(), "code" => code)
        .increment(1);
}

fn transport_fault(e: &crate::kafka::Error) -> &'static str {
    match e {
        crate::kafka::Error::Timeout { .. } => "timeout",
        crate::kafka::Error::ConnectionLost { .. } => "connection_lost",
        crate::kafka::Error::Connect { .. } | crate::kafka::Error::Bootstrap { .. } => "connect",
        _ => "other",
    }
}
