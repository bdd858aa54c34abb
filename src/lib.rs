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
//!
//! The demo data (a seeded Jaeger span generator, and the `strait-demo` client that writes and
//! counts spans on real clusters) is the workspace crate `strait-spans` (`crates/strait-spans`).
//! It depends on this library; this library does not depend on it.

pub mod auth;
pub mod batch;
pub mod budget;
pub mod checkpoint;
pub mod config;
pub mod http;
pub mod kafka;
pub mod replicate;
pub mod telemetry;
