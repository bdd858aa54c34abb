//! Compression and decompression of the records section of a batch, for every Kafka codec.
//!
//! Decompression accepts what real clients write:
//! - gzip: one or more gzip members (`MultiGzDecoder`).
//! - snappy: raw snappy (librdkafka, Sarama, franz-go) and xerial framing (the Java client:
//!   `"\x82SNAPPY\0"`, two big-endian `i32` version fields, then `[u32 BE length][raw block]...`).
//! - lz4: the LZ4 frame format with independent blocks (Java's `Lz4BlockOutputStream`, librdkafka).
//! - zstd: one or more frames, with or without a content size (streaming decoder).
//!
//! Output is capped at [`MAX_DECOMPRESSED_BYTES`], or at the lower cap the caller passes (the
//! pipeline passes its fetch buffer), and the cap is enforced while decompressing, so a hostile
//! or broken batch cannot exhaust memory. Compression writes what the Java producer writes (xerial snappy, lz4 frames with
//! 64 KiB independent blocks and no checksums, gzip at level 6), so every broker and client can
//! read the result.

use std::io::{self, Cursor, Read, Write};

use super::header::Compression;
use super::wire::u32_at;
use super::{Error, Result};

/// Largest records section a batch may decompress to (256 MiB); anything larger is rejected.
pub const MAX_DECOMPRESSED_BYTES: usize = 256 << 20;

/// The most a snappy block can expand: 64 bytes from a 3-byte copy tag, rounded up.
const SNAPPY_MAX_RATIO: usize = 22;

const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// Magic plus the `version` and `compatible version` big-endian `i32`s.
const XERIAL_HEADER_LEN: usize = 16;
/// Version fields the Java client (xerial snappy-java) writes.
const XERIAL_VERSION: i32 = 1;
const XERIAL_COMPATIBLE_VERSION: i32 = 1;
/// Uncompressed chunk size of xerial's `SnappyOutputStream`, which Kafka uses with defaults.
const XERIAL_BLOCK: usize = 32 * 1024;

/// Largest ratio a single deflate stream can reach; bounds the capacity hint for gzip.
const DEFLATE_MAX_RATIO: usize = 1032;

/// Decompresses a records section.
///
/// `Compression::None` is not handled here: the caller slices the original bytes instead.
#[cfg(test)]
pub(crate) fn decompress(codec: Compression, input: &[u8], base_offset: i64) -> Result<Vec<u8>> {
    decompress_capped(codec, input, base_offset, MAX_DECOMPRESSED_BYTES)
}

/// [`decompress`] with an explicit output cap: more than `cap` bytes of output is
/// [`Error::TooLarge`], found while decompressing, so no more than `cap` bytes (plus the copy of
/// the last read) are ever allocated for it. The pipeline passes its fetch buffer's size.
pub(crate) fn decompress_capped(codec: Compression, input: &[u8], base_offset: i64, cap: usize) -> Result<Vec<u8>> {
    let io_err = |source: io::Error| Error::Decompress {
        base_offset,
        codec,
        source,
    };
    match codec {
        Compression::None => Ok(input.to_vec()),
        Compression::Gzip => {
            // ISIZE of the last member: a good capacity hint for the common one-member case.
            let hint = input
                .len()
                .checked_sub(4)
                .and_then(|at| input.get(at..))
                .and_then(|tail| tail.try_into().ok())
                .map_or(0, |b: [u8; 4]| u32::from_le_bytes(b) as usize)
                .min(input.len().saturating_mul(DEFLATE_MAX_RATIO));
            read_capped(flate2::bufread::MultiGzDecoder::new(input), hint, cap, base_offset)
                .map_err(|e| e.into_error(io_err))
        }
        Compression::Snappy => snappy_decompress(input, cap, base_offset),
        Compression::Lz4 => read_capped(
            lz4_flex::frame::FrameDecoder::new(input),
            input.len().saturating_mul(4),
            cap,
            base_offset,
        )
        .map_err(|e| e.into_error(io_err)),
        Compression::Zstd => {
            let hint = match zstd::zstd_safe::get_frame_content_size(input) {
                Ok(Some(n)) => usize::try_from(n).unwrap_or(usize::MAX),
                _ => input.len().saturating_mul(4),
            };
            let decoder = zstd::stream::read::Decoder::with_buffer(input).map_err(io_err)?;
            read_capped(decoder, hint, cap, base_offset).map_err(|e| e.into_error(io_err))
        }
    }
}

/// Why a capped read stopped.
enum ReadError {
    Io(io::Error),
    TooLarge(Error),
}

impl ReadError {
    fn into_error(self, io_err: impl FnOnce(io::Error) -> Error) -> Error {
        match self {
            ReadError::Io(e) => io_err(e),
            ReadError::TooLarge(e) => e,
        }
    }
}

fn too_large(base_offset: i64, cap: usize) -> Error {
    Error::TooLarge { base_offset, cap }
}

/// A thread's scratch buffer above this capacity is freed after use rather than kept: with
/// one per runtime thread, what they hold stays small next to the fetch and batch buffers.
const SCRATCH_KEEP: usize = 8 << 20;

thread_local! {
    /// The thread's scratch buffer for decompressed records and compressed batches, which are
    /// then copied out at their exact size. Allocating each output once, at its final size,
    /// leaves no grown-then-shrunk blocks behind: those fragment the allocator's heap, which
    /// then holds far more memory than the data in use (measured: RSS 274 MiB for a 180 MB
    /// heap peak at 1,000 partitions).
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on the thread's scratch buffer, emptied first. `f` copies out what it keeps.
pub(crate) fn with_scratch<T, E>(f: impl FnOnce(&mut Vec<u8>) -> Result<T, E>) -> Result<T, E> {
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => {
            scratch.clear();
            let out = f(&mut scratch);
            if scratch.capacity() > SCRATCH_KEEP {
                *scratch = Vec::new();
            }
            out
        }
        // Only `f` itself asking for the scratch again could get here.
        Err(_) => f(&mut Vec::new()),
    })
}

/// Reads a decoder to its end, refusing output beyond `cap` bytes.
fn read_capped(reader: impl Read, hint: usize, cap: usize, base_offset: i64) -> Result<Vec<u8>, ReadError> {
    with_scratch(|out| {
        out.reserve(hint.min(cap));
        reader.take(cap as u64 + 1).read_to_end(out).map_err(ReadError::Io)?;
        if out.len() > cap {
            return Err(ReadError::TooLarge(too_large(base_offset, cap)));
        }
        Ok(out.to_vec())
    })
}

fn snappy_decompress(input: &[u8], cap: usize, base_offset: i64) -> Result<Vec<u8>> {
    let snap_err = |e: snap::Error| Error::Decompress {
        base_offset,
        codec: Compression::Snappy,
        source: io::Error::from(e),
    };
    let mut decoder = snap::raw::Decoder::new();
    let mut append_block = |block: &[u8], out: &mut Vec<u8>| -> Result<()> {
        let len = snap::raw::decompress_len(block).map_err(snap_err)?;
        let start = out.len();
        if len > cap.saturating_sub(start) {
            return Err(too_large(base_offset, cap));
        }
        // A snappy block expands at most ~21x (a 3-byte copy of 64 bytes): a larger declared
        // length is a lie, refused before it allocates.
        if len > block.len().saturating_mul(SNAPPY_MAX_RATIO) {
            return Err(Error::Corrupt {
                base_offset,
                reason: "snappy block declares more output than it can encode",
            });
        }
        out.resize(start + len, 0);
        let written = decoder.decompress(block, &mut out[start..]).map_err(snap_err)?;
        out.truncate(start + written);
        Ok(())
    };
    with_scratch(|out| {
        if input.starts_with(&XERIAL_MAGIC) {
            xerial_blocks(input, base_offset, |block| append_block(block, out))?;
        } else {
            append_block(input, out)?;
        }
        Ok(out.to_vec())
    })
}

/// Calls `each` with every raw snappy block of a xerial-framed stream.
fn xerial_blocks(input: &[u8], base_offset: i64, mut each: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let codec_err = |reason: &'static str| Error::Decompress {
        base_offset,
        codec: Compression::Snappy,
        source: io::Error::new(io::ErrorKind::InvalidData, reason),
    };
    let mut pos = 0;
    while pos < input.len() {
        // snappy-java also reads streams concatenated with their headers repeated.
        if input[pos..].starts_with(&XERIAL_MAGIC) {
            pos = pos
                .checked_add(XERIAL_HEADER_LEN)
                .filter(|&end| end <= input.len())
                .ok_or_else(|| codec_err("truncated xerial snappy header"))?;
            continue;
        }
        let len = u32_at(input, pos).ok_or_else(|| codec_err("truncated xerial chunk length"))?;
        let start = pos + 4;
        let block = usize::try_from(len)
            .ok()
            .and_then(|len| input.get(start..start.checked_add(len)?))
            .ok_or_else(|| codec_err("xerial chunk longer than the input"))?;
        each(block)?;
        pos = start + block.len();
    }
    Ok(())
}

/// zstd contexts kept between batches, each with the level it is set to. Contexts are costly
/// to create and hold megabytes each, so builders (partitions) share them rather than keep one
/// each, and they are not tied to threads either (the checkpoint writer compresses on the
/// runtime's threads, batches on the threads of `budget::compress`). Batches compress at most
/// two per core at a time, one large and one small (`budget::compress::CompressGate`), so
/// about that many are ever in use; at most [`zstd_pool_cap`] are kept.
static ZSTD_POOL: parking_lot::Mutex<Vec<(i32, zstd::bulk::Compressor<'static>)>> =
    parking_lot::const_mutex(Vec::new());

/// Contexts kept in [`ZSTD_POOL`]: two per core (large and small batches), and one more for
/// the checkpoint writer.
fn zstd_pool_cap() -> usize {
    2 * std::thread::available_parallelism().map_or(2, |n| n.get()) + 1
}

/// A zstd context at `level` in `slot`: the one it holds, set to `level`, or a new one.
fn zstd_at<'s>(
    slot: &'s mut Option<(i32, zstd::bulk::Compressor<'static>)>,
    level: i32,
) -> io::Result<&'s mut zstd::bulk::Compressor<'static>> {
    let entry = match slot.take() {
        Some((current, mut compressor)) => {
            if current != level {
                compressor.set_compression_level(level)?;
            }
            (level, compressor)
        }
        None => (level, zstd::bulk::Compressor::new(level)?),
    };
    Ok(&mut slot.insert(entry).1)
}

/// Reusable compression state, held by a `BatchBuilder` across batches.
pub(crate) struct Compressors {
    /// Made on first use: it holds a 2 KiB table inline, and every partition's builder (its
    /// task's future) holds a `Compressors`.
    snappy: Option<Box<snap::raw::Encoder>>,
}

impl std::fmt::Debug for Compressors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressors").finish_non_exhaustive()
    }
}

impl Compressors {
    pub(crate) fn new() -> Self {
        Compressors { snappy: None }
    }

    /// Appends the compressed form of `input` to `out`.
    pub(crate) fn compress(
        &mut self,
        codec: Compression,
        zstd_level: i32,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let wrap = |source: io::Error| Error::Compress { codec, source };
        match codec {
            Compression::None => {
                out.extend_from_slice(input);
                Ok(())
            }
            Compression::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::new(6));
                encoder.write_all(input).map_err(wrap)?;
                encoder.finish().map_err(wrap)?;
                Ok(())
            }
            Compression::Snappy => self.snappy_xerial(input, out).map_err(wrap),
            Compression::Lz4 => {
                let info = lz4_flex::frame::FrameInfo::new()
                    .block_size(lz4_flex::frame::BlockSize::Max64KB)
                    .block_mode(lz4_flex::frame::BlockMode::Independent);
                let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, out);
                encoder.write_all(input).map_err(wrap)?;
                encoder.finish().map_err(|e| wrap(io::Error::from(e)))?;
                Ok(())
            }
            Compression::Zstd => {
                let mut slot = ZSTD_POOL.lock().pop();
                let compressed = zstd_at(&mut slot, zstd_level).and_then(|compressor| {
                    out.reserve(zstd::zstd_safe::compress_bound(input.len()));
                    let mut cursor = Cursor::new(out);
                    let end = cursor.get_ref().len() as u64;
                    cursor.set_position(end);
                    compressor.compress_to_buffer(input, &mut cursor).map(|_| ())
                });
                if let Some(context) = slot {
                    let mut pool = ZSTD_POOL.lock();
                    if pool.len() < zstd_pool_cap() {
                        pool.push(context);
                    }
                }
                compressed.map_err(wrap)
            }
        }
    }

    fn snappy_xerial(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        out.extend_from_slice(&XERIAL_MAGIC);
        out.extend_from_slice(&XERIAL_VERSION.to_be_bytes());
        out.extend_from_slice(&XERIAL_COMPATIBLE_VERSION.to_be_bytes());
        for chunk in input.chunks(XERIAL_BLOCK) {
            let len_at = out.len();
            let start = len_at + 4;
            out.resize(start + snap::raw::max_compress_len(chunk.len()), 0);
            let written = self
                .snappy
                .get_or_insert_with(|| Box::new(snap::raw::Encoder::new()))
                .compress(chunk, &mut out[start..])?;
            out.truncate(start + written);
            let len = u32::try_from(written)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "snappy chunk too large"))?;
            out[len_at..start].copy_from_slice(&len.to_be_bytes());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn compress(codec: Compression, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Compressors::new()
            .compress(codec, 3, input, &mut out)
            .expect("compression of test data");
        out
    }

    fn sample() -> Vec<u8> {
        (0..200_000u32).flat_map(|i| (i % 251).to_be_bytes()).collect()
    }

    #[test]
    fn every_codec_round_trips() {
        let data = sample();
        for codec in Compression::ALL {
            let packed = compress(codec, &data);
            let unpacked = decompress(codec, &packed, 7).expect("decompress own output");
            assert_eq!(unpacked, data, "{codec}");
        }
    }

    fn scratch_capacity() -> usize {
        SCRATCH.with(|s| s.borrow().capacity())
    }

    #[test]
    fn the_scratch_buffer_is_reused_and_never_leaks_between_calls() {
        let big = vec![b'x'; 2 << 20];
        let small = sample();
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let (big_packed, small_packed) = (compress(codec, &big), compress(codec, &small));
            assert_eq!(decompress(codec, &big_packed, 0).expect("big"), big, "{codec}");
            // Kept for the next call on this thread...
            assert!(scratch_capacity() >= big.len(), "{codec}");
            // ...which sees none of the previous output.
            let unpacked = decompress(codec, &small_packed, 0).expect("small");
            assert_eq!(unpacked, small, "{codec}");
            assert_eq!(unpacked.capacity(), unpacked.len(), "{codec}: exact-size copy");
            // A refused batch leaves nothing behind for the next one either.
            assert!(decompress_capped(codec, &big_packed, 0, 1 << 20).is_err(), "{codec}");
            assert_eq!(
                decompress(codec, &small_packed, 0).expect("after error"),
                small,
                "{codec}"
            );
        }
    }

    #[test]
    fn a_scratch_buffer_above_the_keep_limit_is_freed() {
        let huge = vec![b'y'; SCRATCH_KEEP + (1 << 20)];
        let packed = compress(Compression::Lz4, &huge);
        assert_eq!(
            decompress(Compression::Lz4, &packed, 0).expect("huge").len(),
            huge.len()
        );
        assert!(scratch_capacity() <= SCRATCH_KEEP, "{}", scratch_capacity());
    }

    #[test]
    fn compression_appends_after_existing_bytes() {
        let data = sample();
        for codec in Compression::ALL {
            let mut out = vec![0xAA; 61];
            Compressors::new()
                .compress(codec, 1, &data, &mut out)
                .expect("compress");
            assert!(out[..61].iter().all(|&b| b == 0xAA), "{codec} kept the prefix");
            assert_eq!(decompress(codec, &out[61..], 0).expect("decompress"), data);
        }
    }

    #[test]
    fn snappy_raw_and_xerial_are_both_read() {
        let data = sample();
        let raw = snap::raw::Encoder::new().compress_vec(&data).expect("raw snappy");
        assert_eq!(decompress(Compression::Snappy, &raw, 0).expect("raw"), data);

        let xerial = compress(Compression::Snappy, &data);
        assert!(xerial.starts_with(&XERIAL_MAGIC));
        assert_eq!(&xerial[8..16], &[0, 0, 0, 1, 0, 0, 0, 1]);
        assert_eq!(decompress(Compression::Snappy, &xerial, 0).expect("xerial"), data);

        // Two xerial streams back to back, as snappy-java reads them.
        let mut doubled = xerial.clone();
        doubled.extend_from_slice(&xerial);
        let mut expected = data.clone();
        expected.extend_from_slice(&data);
        assert_eq!(decompress(Compression::Snappy, &doubled, 0).expect("concat"), expected);
    }

    #[test]
    fn xerial_chunk_layout_matches_snappy_java() {
        // Hand-laid stream: header, then one chunk holding raw snappy of "hello".
        let block = snap::raw::Encoder::new().compress_vec(b"hello").expect("raw");
        let mut stream = XERIAL_MAGIC.to_vec();
        stream.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        stream.extend_from_slice(&(block.len() as u32).to_be_bytes());
        stream.extend_from_slice(&block);
        assert_eq!(
            decompress(Compression::Snappy, &stream, 0).expect("hand-laid"),
            b"hello"
        );
    }

    #[test]
    fn lz4_frame_descriptor_is_what_kafka_accepts() {
        let packed = compress(Compression::Lz4, b"some records");
        assert_eq!(&packed[..4], &[0x04, 0x22, 0x4d, 0x18], "lz4 frame magic");
        // FLG: version 01, independent blocks, no checksums, no content size.
        assert_eq!(packed[4], 0b0110_0000);
        // BD: 64 KiB maximum block size.
        assert_eq!(packed[5], 0x40);
    }

    #[test]
    fn multi_member_gzip_and_multi_frame_zstd() {
        let mut gz = compress(Compression::Gzip, b"abc");
        gz.extend_from_slice(&compress(Compression::Gzip, b"def"));
        assert_eq!(decompress(Compression::Gzip, &gz, 0).expect("gzip"), b"abcdef");

        let mut zs = compress(Compression::Zstd, b"abc");
        zs.extend_from_slice(&compress(Compression::Zstd, b"def"));
        assert_eq!(decompress(Compression::Zstd, &zs, 0).expect("zstd"), b"abcdef");
    }

    #[test]
    fn zstd_stream_without_content_size() {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
        encoder.write_all(b"streamed records").expect("write");
        let packed = encoder.finish().expect("finish");
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&packed).ok(),
            Some(None),
            "the streaming encoder leaves the size out"
        );
        assert_eq!(
            decompress(Compression::Zstd, &packed, 0).expect("zstd"),
            b"streamed records"
        );
    }

    #[test]
    fn decompression_bombs_are_refused() {
        const CAP: usize = 1 << 20;
        let zeros = vec![0u8; CAP + 1];
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let packed = compress(codec, &zeros);
            assert_eq!(
                decompress_capped(codec, &packed, 0, CAP + 1).expect("at the cap").len(),
                CAP + 1
            );
            let err = decompress_capped(codec, &packed, 99, CAP).expect_err("over the cap");
            assert!(
                matches!(
                    err,
                    Error::TooLarge {
                        base_offset: 99,
                        cap: CAP
                    }
                ),
                "{codec}: {err}"
            );
        }
        // A raw snappy block whose preamble claims more than the cap is refused up front.
        let mut claim = Vec::new();
        let mut n = (MAX_DECOMPRESSED_BYTES + 1) as u64;
        while n >= 0x80 {
            claim.push((n as u8) | 0x80);
            n >>= 7;
        }
        claim.push(n as u8);
        assert!(matches!(
            decompress(Compression::Snappy, &claim, 5),
            Err(Error::TooLarge { base_offset: 5, .. })
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let err = decompress(codec, b"definitely not compressed", 3).expect_err("garbage");
            assert!(
                matches!(&err, Error::Decompress { base_offset: 3, codec: c, .. } if *c == codec),
                "{codec}: {err:?}"
            );
        }
        let mut truncated_xerial = XERIAL_MAGIC.to_vec();
        truncated_xerial.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 1]);
        assert!(decompress(Compression::Snappy, &truncated_xerial, 0).is_err());
    }

    #[test]
    fn zstd_context_follows_level_changes() {
        let data = sample();
        let mut compressors = Compressors::new();
        for level in [1, 19, 3, 3, -5] {
            let mut out = Vec::new();
            compressors
                .compress(Compression::Zstd, level, &data, &mut out)
                .expect("compress");
            assert_eq!(decompress(Compression::Zstd, &out, 0).expect("decompress"), data);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn decompress_never_panics(codec in 1i16..5, bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let codec = Compression::from_id(codec).expect("ids 1-4 exist");
            let _ = decompress(codec, &bytes, 0);
        }
    }

    #[test]
    fn snappy_declared_length_is_bounded_by_the_block() {
        // Found by fuzzing: 4 bytes declaring ~240 MiB of output.
        let err = decompress(Compression::Snappy, &[0xff, 0xff, 0xff, 0x77], 0).expect_err("corrupt");
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    }
}
