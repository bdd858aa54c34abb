//! Retrying a request of the data path, and naming a failed one.

use tokio_util::sync::CancellationToken;

use super::error::Error;
use super::wire::Fetch;
use crate::kafka::retry::{Retried, Until};
use crate::kafka::{self, Backoff, OffsetSpec, ResponseError, TopicPartition};
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

/// The partition's topic was deleted (`side`: source or target), as the partition's error;
/// `source` is the last answer about it.
pub(super) fn deleted(side: &'static str, tp: &TopicPartition, offset: i64, source: crate::kafka::Error) -> Error {
    let setting = if side == "target" {
        "on_target_reset = \"replicate_again\" (STRAIT_ON_TARGET_RESET) to write the source again from its checkpoint"
    } else {
        "on_topic_recreated = \"start_over\" (STRAIT_ON_TOPIC_RECREATED) to replicate the new topic from start_from"
    };
    Error::TopicDeleted {
        side,
        setting,
        topic: tp.topic.clone(),
        partition: tp.partition,
        offset,
        source: Box::new(source),
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
    let retried = kafka::retry::retry(Backoff::default(), Until::Cancelled(cancel), op, on_retry).await;
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

/// Metadata answers in a row that a topic does not exist before it is taken as deleted: with the
/// retries' backoff (100 ms doubling) they span about 1.5 s.
const DELETED_CONFIRMATIONS: u32 = 4;

/// [`retry`], for a request whose topic may be deleted meanwhile: `Ok(Some(Err(e)))` when it
/// was, `e` the last answer.
///
/// UnknownTopicOrPartition (UnknownTopicId by id) alone does not tell: a broker that no longer
/// hosts the partition after a leader move answers it too, and then it is retried like any
/// retriable error. Only when the cluster's metadata, asked right after, answers that the topic
/// does not exist, [`DELETED_CONFIRMATIONS`] times in a row across the retries' backoff (a
/// broker whose metadata lags a topic just created says so for a moment), is it taken as
/// deleted. Any other metadata answer (the topic, another error, no answer) leaves the request
/// retried.
pub(super) async fn retry_while_topic_exists<C: Fetch, T, F, Fut>(
    cancel: &CancellationToken,
    cluster: &C,
    tp: &TopicPartition,
    action: &str,
    mut op: F,
) -> Result<Option<Result<T, crate::kafka::Error>>, crate::kafka::Error>
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
    let missing_in_a_row = std::sync::atomic::AtomicU32::new(0);
    retry(cancel, cluster, tp, action, || {
        let attempt = op();
        let missing_in_a_row = &missing_in_a_row;
        async move {
            use std::sync::atomic::Ordering::Relaxed;
            match attempt.await {
                Err(e) if unknown(&e) => match cluster.topic_exists(&tp.topic).await {
                    Ok(false) if missing_in_a_row.fetch_add(1, Relaxed) + 1 >= DELETED_CONFIRMATIONS => Ok(Err(e)),
                    Ok(false) => Err(e),
                    _ => {
                        missing_in_a_row.store(0, Relaxed);
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
    let listed = retry_while_topic_exists(cancel, cluster, tp, "list offsets", || cluster.list_offset(tp, spec)).await;
    match listed {
        Ok(Some(Ok(at))) => Ok(Some(at)),
        Ok(Some(Err(gone))) => Err(deleted(role, tp, offset, gone)),
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
