//! Every metric strait exports: names (as constants, so dashboards and alerts have one source of
//! truth), descriptions, and the Prometheus exporter. Names are `strait_<thing>_<unit>[_total]`,
//! labelled by `topic` and `partition`, never by offset.

use std::net::SocketAddr;

use metrics::{describe_counter, describe_gauge, Unit};

/// Records acknowledged by the target.
pub const RECORDS_REPLICATED: &str = "strait_records_replicated_total";
/// Uncompressed record bytes read from source batches.
pub const SOURCE_BYTES: &str = "strait_source_bytes_total";
/// Bytes of the record batches sent to the target.
pub const WIRE_BYTES: &str = "strait_wire_bytes_total";
/// Records on the source not yet acknowledged by the target.
pub const LAG_RECORDS: &str = "strait_lag_records";
/// Records lost on the source before strait read them (retention, DeleteRecords).
pub const SOURCE_GAP_RECORDS: &str = "strait_source_gap_records_total";
/// 1 while a partition is halted on an error that needs an operator.
pub const PARTITION_HALTED: &str = "strait_partition_halted";
/// Checkpoint writes that failed.
pub const CHECKPOINT_ERRORS: &str = "strait_checkpoint_errors_total";

/// Errors of the telemetry setup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The exporter could not listen.
    #[error("cannot serve metrics on {addr}: set http.listen (STRAIT_HTTP__LISTEN) to a free address")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: metrics_exporter_prometheus::BuildError,
    },
}

/// Installs the Prometheus exporter on `addr` (serving `/metrics`) and describes every metric.
/// Must run inside the tokio runtime.
pub fn install(addr: SocketAddr) -> Result<(), Error> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|source| Error::Listen { addr, source })?;
    describe();
    Ok(())
}

fn describe() {
    describe_counter!(RECORDS_REPLICATED, Unit::Count, "Records acknowledged by the target");
    describe_counter!(
        SOURCE_BYTES,
        Unit::Bytes,
        "Uncompressed record bytes read from the source"
    );
    describe_counter!(WIRE_BYTES, Unit::Bytes, "Record batch bytes sent to the target");
    describe_gauge!(
        LAG_RECORDS,
        Unit::Count,
        "Source records not yet acknowledged by the target"
    );
    describe_counter!(
        SOURCE_GAP_RECORDS,
        Unit::Count,
        "Source records deleted before strait read them"
    );
    describe_gauge!(
        PARTITION_HALTED,
        Unit::Count,
        "1 while the partition is halted on an error"
    );
    describe_counter!(CHECKPOINT_ERRORS, Unit::Count, "Checkpoint writes that failed");
}

/// Labels for a topic-partition.
pub fn labels(topic: &str, partition: i32) -> [(&'static str, String); 2] {
    [("topic", topic.to_owned()), ("partition", partition.to_string())]
}
