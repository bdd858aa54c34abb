//! The wire layer: strait's own Kafka client over `kafka-protocol` message types.
//!
//! It owns sockets, framing, correlation ids and pipelining ([`conn`]), API version negotiation
//! ([`versions`]), cluster metadata and leader routing ([`cluster`]) and the typed requests the
//! replicator needs ([`client`]). It never looks inside record batches: `records` travel as raw
//! bytes in both directions, and [`crate::batch`] owns their format.

mod backoff;
mod client;
mod cluster;
mod conn;
mod dial;
mod error;
mod fetches;
mod frame;
mod gather;
mod groups;
mod lists;
mod pace;
mod produces;
mod requests;
pub mod retry;
mod sasl;
mod security;
#[cfg(test)]
mod test_broker;
mod tls;
mod versions;

pub use backoff::{Backoff, ReconnectGate};
pub use client::PendingProduce;
pub use cluster::{Cluster, ClusterMetadata, TopicMetadata};
pub use conn::{Conn, InFlight};
pub use error::{Error, Result};
pub use fetches::Wait;
pub use groups::{Committed, GroupState};
pub use kafka_protocol::error::ResponseError;
pub use kafka_protocol::messages::ApiKey;
pub use pace::{Pace, CHUNK_BYTES};
pub use requests::{
    known_topic_id, DescribedConfigs, FetchedPartition, OffsetSpec, ProduceAck, ProducerIdentity, TopicConfig,
    TopicSpec,
};
pub use security::Security;

use std::fmt;

/// A topic's id (KIP-516): a topic deleted and created again under the same name gets a new
/// one. Never all zero for a real topic (the zero id means "unknown").
pub type TopicId = [u8; 16];

/// Versions of Fetch up to this one name topics; later ones name them by [`TopicId`].
pub(crate) const FETCH_BY_NAME_MAX_VERSION: i16 = 12;

/// A topic and one of its partitions.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// Builds a topic-partition.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}
