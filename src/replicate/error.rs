use crate::kafka;

/// Result of the replication engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the replication engine around the partitions: clusters, topics, the checkpoint
/// topic and start-up. A partition's own errors are [`crate::pipeline::Error`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A cluster-wide request (metadata, topic admin) failed.
    #[error("{cluster} cluster: {action} failed")]
    Cluster {
        cluster: &'static str,
        action: String,
        #[source]
        source: Box<kafka::Error>,
    },
    /// The target topic has fewer partitions than the source and cannot be grown.
    #[error(
        "target topic {target_topic} has {target_partitions} partitions but source topic {source_topic} has \
         {source_partitions}: strait does not remap partitions; add partitions to the target topic"
    )]
    FewerPartitions {
        source_topic: String,
        target_topic: String,
        source_partitions: i32,
        target_partitions: i32,
    },
    /// The target topic is missing and the target cluster cannot create it.
    #[error(
        "target topic {topic} does not exist and the target cluster does not serve CreateTopics: create it \
         with {partitions} partitions"
    )]
    CannotCreate { topic: String, partitions: i32 },
    /// A config value failed to compile (validation checks it first).
    #[error("configuration")]
    Config {
        #[source]
        source: crate::config::Error,
    },
    /// The checkpoint topic could not be prepared or read.
    #[error("checkpoint store failed")]
    CheckpointStore {
        #[source]
        source: crate::checkpoint::Error,
    },
    /// A cluster refused strait at start-up: TLS handshake, authentication, or an unusable
    /// TLS file. The source names the cluster, the broker, the step and the fix.
    #[error("cannot start")]
    StartupRefused {
        #[source]
        source: Box<kafka::Error>,
    },
}

impl Error {
    /// The process exit code this error calls for (sysexits.h): 69 for a refused TLS handshake,
    /// 77 for refused authentication, 64 for an unusable TLS file; `None` for errors that are not
    /// about reaching a cluster. An unreachable cluster is no error of `run`: it is retried.
    pub fn exit_code(&self) -> Option<u8> {
        match self {
            Error::StartupRefused { source } => Some(source.exit_code().unwrap_or(69)),
            _ => None,
        }
    }
}
