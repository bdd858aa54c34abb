use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;

/// Result of the wire layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

use std::sync::Arc;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A source error shared by every copy of the error that carries it.
pub(crate) type SharedError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the wire layer. Each names the broker or the topic-partition it concerns.
///
/// Cloning is cheap: sources are shared, so one failed request can answer each of its
/// requesters with the same error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The TCP connection could not be opened.
    #[error("cannot connect to broker {broker}")]
    Connect {
        broker: String,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The connection broke while a request was outstanding.
    #[error("connection to broker {broker} lost")]
    ConnectionLost {
        broker: String,
        #[source]
        source: Option<Arc<std::io::Error>>,
    },
    /// No answer within the request timeout.
    #[error("{api:?} request to broker {broker} timed out after {timeout_ms} ms")]
    Timeout {
        broker: String,
        api: ApiKey,
        timeout_ms: u64,
    },
    /// The broker speaks no version of the API that strait can use.
    #[error("broker {broker} does not support {api:?} in any version strait speaks ({ours}); it offers {theirs}")]
    UnsupportedApi {
        broker: String,
        api: ApiKey,
        ours: String,
        theirs: String,
    },
    /// A request could not be encoded.
    #[error("cannot encode {api:?} request")]
    Encode {
        api: ApiKey,
        #[source]
        source: SharedError,
    },
    /// A response could not be decoded.
    #[error("malformed {api:?} response from broker {broker}")]
    Decode {
        broker: String,
        api: ApiKey,
        #[source]
        source: SharedError,
    },
    /// A response frame above the size limit: a corrupt stream or a non-Kafka peer.
    #[error("response frame of {size} bytes from broker {broker} exceeds the {limit} byte limit")]
    FrameTooLarge { broker: String, size: usize, limit: usize },
    /// The broker answered with a Kafka error code for a topic-partition.
    #[error("{api:?} for {topic}/{partition} failed with {code:?}{}", detail(message))]
    Partition {
        api: ApiKey,
        topic: String,
        partition: i32,
        code: ResponseError,
        message: Option<String>,
    },
    /// The broker answered with a Kafka error code for a topic or the whole request.
    #[error("{api:?} for {resource} failed with {code:?}{}", detail(message))]
    Request {
        api: ApiKey,
        resource: String,
        code: ResponseError,
        message: Option<String>,
    },
    /// The broker's answer did not mention what was asked for.
    #[error("{api:?} response from broker {broker} has no entry for {resource}")]
    MissingInResponse {
        broker: String,
        api: ApiKey,
        resource: String,
    },
    /// Metadata names no leader for the partition.
    #[error("no leader known for {topic}/{partition}")]
    NoLeader { topic: String, partition: i32 },
    /// Metadata names a leader whose address is unknown.
    #[error("broker {node_id} is the leader for a partition but not in the metadata")]
    UnknownBroker { node_id: i32 },
    /// The TLS handshake with a broker failed: its certificate was refused, or it refused ours.
    #[error("{cluster} cluster, broker {broker}: TLS handshake failed: {reason}; fix: {fix}")]
    Tls {
        cluster: String,
        broker: String,
        reason: String,
        fix: String,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// SASL authentication with a broker was refused or failed.
    #[error("{cluster} cluster, broker {broker}: SASL {mechanism} authentication failed: {reason}; fix: {fix}")]
    Auth {
        cluster: String,
        broker: String,
        mechanism: &'static str,
        reason: String,
        fix: String,
        /// The broker's error code, when it sent one.
        code: Option<ResponseError>,
    },
    /// No bearer token for SASL: the token service is unreachable or failing. Retried like an
    /// unreachable broker.
    #[error("{cluster} cluster, broker {broker}: no SASL token: {reason}; fix: {fix}")]
    TokenUnavailable {
        cluster: String,
        broker: String,
        reason: String,
        fix: String,
    },
    /// A CA, certificate or key file named by a `tls.*` key cannot be used.
    #[error("{key} = {path:?} {problem}: fix the file or the key")]
    TlsSetup {
        key: String,
        path: String,
        problem: String,
        #[source]
        source: Option<SharedError>,
    },
    /// None of the bootstrap servers answered.
    #[error("no bootstrap server of {cluster} cluster ({servers}) answered")]
    Bootstrap {
        cluster: String,
        servers: String,
        #[source]
        source: Box<Error>,
    },
}

fn detail(message: &Option<String>) -> String {
    message
        .as_deref()
        .filter(|m| !m.is_empty())
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

impl Error {
    /// The Kafka error code behind this error, if the broker sent one.
    pub fn code(&self) -> Option<ResponseError> {
        match self {
            Self::Partition { code, .. } | Self::Request { code, .. } => Some(*code),
            Self::Auth { code, .. } => *code,
            Self::Bootstrap { source, .. } => source.code(),
            _ => None,
        }
    }

    /// Whether the same request may succeed later: transport faults, and the error codes that
    /// Kafka itself marks retriable.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Connect { .. }
            | Self::ConnectionLost { .. }
            | Self::Timeout { .. }
            | Self::NoLeader { .. }
            | Self::UnknownBroker { .. }
            | Self::MissingInResponse { .. }
            | Self::TokenUnavailable { .. } => true,
            Self::Bootstrap { source, .. } => source.is_retriable(),
            Self::Partition { code, .. } | Self::Request { code, .. } => {
                code.is_retriable() || matches!(code, ResponseError::BrokerNotAvailable)
            }
            // A rotated certificate or password may fix these after start-up; at start-up the
            // replicator checks `is_security_failure` first and stops instead.
            Self::Tls { .. } | Self::Auth { .. } => true,
            Self::UnsupportedApi { .. }
            | Self::Encode { .. }
            | Self::Decode { .. }
            | Self::FrameTooLarge { .. }
            | Self::TlsSetup { .. } => false,
        }
    }

    /// Whether TLS or authentication refused the connection: retrying with the same settings
    /// will not help.
    pub fn is_security_failure(&self) -> bool {
        match self {
            Self::Tls { .. } | Self::Auth { .. } | Self::TlsSetup { .. } => true,
            Self::Bootstrap { source, .. } => source.is_security_failure(),
            _ => false,
        }
    }

    /// The process exit code for this error at start-up (sysexits.h): 77 (`EX_NOPERM`) when
    /// authentication was refused, 69 (`EX_UNAVAILABLE`) when the cluster cannot be reached or
    /// its TLS handshake failed, 64 (`EX_USAGE`) for an unusable TLS file; `None` otherwise.
    pub fn exit_code(&self) -> Option<u8> {
        match self {
            Self::Auth { .. } => Some(77),
            Self::Tls { .. }
            | Self::Connect { .. }
            | Self::ConnectionLost { .. }
            | Self::Timeout { .. }
            | Self::TokenUnavailable { .. } => Some(69),
            Self::TlsSetup { .. } => Some(64),
            Self::Bootstrap { source, .. } => source.exit_code(),
            _ => None,
        }
    }

    /// Whether a broker is taking the partition or coordinator up: a leader just elected, a
    /// topic just created, a coordinator loading its log. That takes seconds, so a retry waits
    /// at most [`crate::kafka::retry::SETTLING_CAP`], not the cap of an outage.
    pub fn settles_soon(&self) -> bool {
        matches!(
            self.code(),
            Some(
                ResponseError::NotLeaderOrFollower
                    | ResponseError::LeaderNotAvailable
                    | ResponseError::CoordinatorLoadInProgress
            )
        )
    }

    /// Whether the cached leader for the partition is likely wrong, so metadata must be refreshed
    /// before a retry.
    pub fn needs_metadata_refresh(&self) -> bool {
        match self {
            Self::Connect { .. }
            | Self::ConnectionLost { .. }
            | Self::Timeout { .. }
            | Self::NoLeader { .. }
            | Self::UnknownBroker { .. } => true,
            Self::Partition { code, .. } => matches!(
                code,
                ResponseError::NotLeaderOrFollower
                    | ResponseError::LeaderNotAvailable
                    | ResponseError::UnknownTopicOrPartition
                    | ResponseError::FencedLeaderEpoch
                    | ResponseError::UnknownLeaderEpoch
                    | ResponseError::ReplicaNotAvailable
                    | ResponseError::BrokerNotAvailable
            ),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(code: ResponseError) -> Error {
        Error::Partition {
            api: ApiKey::Produce,
            topic: "spans".into(),
            partition: 3,
            code,
            message: None,
        }
    }

    #[test]
    fn classification_follows_kafka_codes() {
        let cases = [
            (ResponseError::NotLeaderOrFollower, true, true),
            (ResponseError::UnknownTopicOrPartition, true, true),
            (ResponseError::RequestTimedOut, true, false),
            (ResponseError::MessageTooLarge, false, false),
            (ResponseError::CorruptMessage, true, false),
            (ResponseError::TopicAuthorizationFailed, false, false),
            (ResponseError::OffsetOutOfRange, false, false),
        ];
        for (code, retriable, refresh) in cases {
            let e = partition(code);
            assert_eq!(e.is_retriable(), retriable, "{code:?}");
            assert_eq!(e.needs_metadata_refresh(), refresh, "{code:?}");
        }
    }

    #[test]
    fn a_clone_shares_its_source_and_reads_the_same() {
        use std::error::Error as _;
        let lost = Error::ConnectionLost {
            broker: "b-1:9092".into(),
            source: Some(Arc::new(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "pipe closed",
            ))),
        };
        let e = Error::Bootstrap {
            cluster: "source".into(),
            servers: "b-1:9092".into(),
            source: Box::new(lost),
        };
        let copy = e.clone();
        assert_eq!(copy.to_string(), e.to_string());
        let chain = |e: &Error| {
            let mut texts = vec![e.to_string()];
            let mut next = e.source();
            while let Some(s) = next {
                texts.push(s.to_string());
                next = s.source();
            }
            texts
        };
        assert_eq!(
            chain(&copy),
            [
                "no bootstrap server of source cluster (b-1:9092) answered",
                "connection to broker b-1:9092 lost",
                "pipe closed"
            ]
        );
        match (&e, &copy) {
            (Error::Bootstrap { source: a, .. }, Error::Bootstrap { source: b, .. }) => match (&**a, &**b) {
                (Error::ConnectionLost { source: Some(a), .. }, Error::ConnectionLost { source: Some(b), .. }) => {
                    assert!(Arc::ptr_eq(a, b), "the I/O error is shared, not rebuilt");
                    assert_eq!(b.kind(), std::io::ErrorKind::BrokenPipe);
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        assert_eq!(copy.exit_code(), Some(69));
    }

    #[test]
    fn messages_carry_coordinates() {
        let e = Error::Partition {
            api: ApiKey::Fetch,
            topic: "spans".into(),
            partition: 7,
            code: ResponseError::CorruptMessage,
            message: Some("bad crc".into()),
        };
        let text = e.to_string();
        assert!(text.contains("spans/7"), "{text}");
        assert!(text.contains("bad crc"), "{text}");
    }
}
