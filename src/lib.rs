//! strait: a cross-cluster Kafka replicator that moves record batches, not records.
//!
//! # Layout
//!
//! ```text
//!  source cluster                                                     target cluster
//!  ┌──────────┐  Fetch (raw bytes)  ┌────────────┐ records ┌──────────┐ Produce ┌──────────┐
//!  │ leader p │ ──────────────────► │ SourceRead │ ──────► │ Batcher  │ ──────► │ leader p │
//!  └──────────┘  kafka::Cluster     │ (batch::   │ bounded │ (batch:: │ acks=all└──────────┘
//!                                   │  parse,    │ channel │  builder,│
//!                                   │  txn filt.)│         │  zstd)   │
//!                                   └────────────┘         └──────────┘
//! ```
//!
//! - [`config`]: the configuration tree, its figment layers and validation.
//! - [`auth`]: SASL credential providers: MSK IAM tokens, cached and refreshed before expiry.
//! - [`kafka`]: the wire layer over `kafka-protocol`: connections, version negotiation,
//!   metadata and leader routing, typed requests.
//! - [`batch`]: the pure record-batch v2 codec (parse, verify, decompress, merge, recompress).
//! - [`replicate`]: topic discovery, partition assignment and the per-partition tasks.
//! - [`http`]: the operations endpoint (`/metrics`, `/livez`, `/readyz`, `/status`).
//! - [`spans`]: a seeded generator of Jaeger spans for demos, tests and benches.

pub mod auth;
pub mod batch;
pub mod budget;
pub mod checkpoint;
pub mod config;
pub mod demo;
pub mod http;
pub mod kafka;
pub mod pipeline;
pub mod replicate;
pub mod report;
pub mod spans;
pub mod telemetry;

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
