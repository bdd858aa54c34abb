//! strait: a cross-cluster Kafka replicator that moves record batches, not records.
//!
//! # Layout
//!
//! ```text
//!  main ─► http ─► replicate (discovery, topics, ownership, checkpointer, health)
//!                      │
//!                      ▼
//!                  pipeline (per partition: fetch ─► unpack ─► batch ─► send ─► ack)
//!                      │
//!        ┌─────────────┼──────────────┬──────────┬──────────┐
//!        ▼             ▼              ▼          ▼          ▼
//!     report      checkpoint       budget      kafka      batch, config, telemetry
//! ```
//!
//! - [`config`]: the configuration tree, its figment layers and validation.
//! - [`auth`]: SASL credential providers: MSK IAM tokens, cached and refreshed before expiry.
//! - [`kafka`]: the wire layer over `kafka-protocol`: connections, version negotiation,
//!   metadata and leader routing, typed requests.
//! - [`batch`]: the pure record-batch v2 codec (parse, verify, decompress, merge, recompress).
//! - [`pipeline`]: one partition's data path as stages, behind two wire traits.
//! - [`replicate`]: topic discovery, target topics, partition ownership, the checkpointer and
//!   health; it runs one pipeline per owned source partition.
//! - [`report`]: what each partition reports (progress, retention risk), read by logs and HTTP.
//! - [`http`]: the operations endpoint (`/metrics`, `/livez`, `/readyz`, `/status`).
//!
//! The demo data (a seeded Jaeger span generator, and the `strait-demo` client that writes and
//! counts spans on real clusters) is the workspace crate `strait-spans` (`crates/strait-spans`).
//! It depends on this library; this library does not depend on it.

pub mod auth;
pub mod batch;
pub mod budget;
pub mod checkpoint;
pub mod config;
pub mod groups;
pub mod http;
pub mod kafka;
pub mod offsets;
pub mod pipeline;
pub mod replicate;
pub mod report;
pub mod telemetry;
mod tls_roots;
pub mod verify;

/// Formats an error with its whole `source()` chain on one line, for log lines and messages.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        text.push_str(": ");
        text.push_str(&s.to_string());
        cur = s.source();
    }
    text
}
