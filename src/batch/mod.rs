//! The Kafka `RecordBatch` v2 codec: iterate, verify, decompress, parse, merge and recompress.
//!
//! This module owns the byte layout of record batches (magic 2) and nothing else. It is pure:
//! no IO, no sockets, no tokio, no clocks, no logging. Everything here works on [`bytes::Bytes`]
//! handed in by the wire layer and hands back `Bytes` for the produce path.
//!
//! The flow through it is:
//!
//! ```text
//! fetch `records` bytes ──batches()──► RawBatch (CRC + magic verified, header parsed)
//!                                        │ TxnFilter::keep (read_committed semantics)
//!                                        ▼
//!                           RawBatch::records() ──► Vec<Record> (zero-copy slices)
//!                                        │ BatchBuilder::try_push
//!                                        ▼
//!                           BatchBuilder::finish() ──► BuiltBatch (compressed, CRC set)
//! ```
//!
//! What it must not do: decide policy. Which offsets to skip, what to do with an oversized
//! record or with a batch that cannot be parsed are the caller's decisions.
//!
//! Files by concern:
//! - `wire`: varints and big-endian reads that never panic.
//! - `header`: the 61-byte batch header, attribute bits, [`Compression`], the CRC seal.
//! - `compression`: decompression of what real clients write, compression for every codec.
//! - `record`: [`Record`] and the per-record encoding.
//! - `iter`: [`batches`], [`BatchIter`], [`RawBatch`], [`ControlType`].
//! - `builder`: [`BatchBuilder`], [`encode_batch`], [`encode_control_batch`].
//! - `txn`: [`TxnFilter`].

mod builder;
mod compression;
mod header;
mod iter;
mod record;
mod txn;
mod wire;

#[cfg(test)]
mod roundtrip_tests;

pub use builder::{encode_batch, encode_control_batch, BatchBuilder, BuildOptions, BuiltBatch};
pub use compression::MAX_DECOMPRESSED_BYTES;
pub use header::{BatchHeader, Compression, HEADER_LEN, LOG_OVERHEAD};
pub use iter::{batches, BatchIter, ControlType, RawBatch};
pub use record::Record;
pub use txn::TxnFilter;

/// Result alias for the batch codec.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while reading or writing record batches.
///
/// Variants that concern a fetched batch carry its `base_offset`, so a caller can log the
/// partition coordinates together with the exact place of the damage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The stored CRC32C does not match the bytes from `attributes` to the end of the batch.
    #[error("crc mismatch in batch at offset {base_offset}: stored {stored:#010x}, computed {computed:#010x}")]
    Crc {
        /// First offset of the batch.
        base_offset: i64,
        /// The CRC found in the batch header.
        stored: u32,
        /// The CRC computed over the batch bytes.
        computed: u32,
    },
    /// The batch is not a v2 record batch (magic 0 and 1 are legacy message sets).
    #[error("unsupported record batch magic {magic} at offset {base_offset}, only magic 2 is supported")]
    UnsupportedMagic {
        /// First offset of the batch (or of the legacy message).
        base_offset: i64,
        /// The magic byte found.
        magic: i8,
    },
    /// The batch framing or header is inconsistent.
    #[error("corrupt batch at offset {base_offset}: {reason}")]
    Corrupt {
        /// First offset of the batch.
        base_offset: i64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A record inside an otherwise well-framed batch is malformed.
    #[error("corrupt record {index} in batch at offset {base_offset}: {reason}")]
    CorruptRecord {
        /// First offset of the batch.
        base_offset: i64,
        /// Zero-based position of the record inside the batch.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The stored header bytes of one record are malformed.
    #[error("malformed headers in record at offset {offset}: {reason}")]
    Headers {
        /// Offset of the record.
        offset: i64,
        /// What is wrong.
        reason: &'static str,
    },
    /// Attribute bits 0-2 name a codec this build does not know.
    #[error("unknown compression codec {codec} in batch at offset {base_offset}")]
    UnknownCodec {
        /// First offset of the batch.
        base_offset: i64,
        /// The codec id from the attributes.
        codec: i16,
    },
    /// The codec rejected the compressed records.
    #[error("failed to decompress {codec} records in batch at offset {base_offset}")]
    Decompress {
        /// First offset of the batch.
        base_offset: i64,
        /// The codec named by the batch.
        codec: Compression,
        /// What the codec reported.
        #[source]
        source: std::io::Error,
    },
    /// The records section decompresses to more than the cap allowed for it (at most
    /// [`MAX_DECOMPRESSED_BYTES`](compression::MAX_DECOMPRESSED_BYTES)): a decompression bomb,
    /// or a batch larger than the memory set aside for it. Found while decompressing.
    #[error("records of batch at offset {base_offset} decompress to more than {cap} bytes")]
    TooLarge {
        /// First offset of the batch.
        base_offset: i64,
        /// The most its records section was allowed to take, in bytes.
        cap: usize,
    },
    /// The codec failed while compressing an outgoing batch.
    #[error("failed to compress records with {codec}")]
    Compress {
        /// The codec asked for.
        codec: Compression,
        /// What the codec reported.
        #[source]
        source: std::io::Error,
    },
    /// A codec name that Kafka does not define.
    #[error("unknown compression codec name {name:?}, expected one of none, gzip, snappy, lz4, zstd")]
    UnknownCodecName {
        /// The name given.
        name: String,
    },
    /// `BatchBuilder::finish` was called with no records in the builder.
    #[error("cannot finish an empty batch")]
    EmptyBatch,
    /// A record cannot be represented in the batch being encoded.
    #[error("cannot encode record at offset {offset}: {reason}")]
    Encode {
        /// Offset of the record.
        offset: i64,
        /// What is wrong.
        reason: &'static str,
    },
}
