//! No broker answer can make strait allocate more than a small multiple of its size, panic or
//! abort: every response type strait decodes, at every version, fed hostile frames (a huge
//! array or string length at every position) and random bytes, under a heap profiler that
//! counts every byte allocated while decoding.
//!
//! kafka-protocol 0.18 reserves `Vec::with_capacity(n)` for an array length `n` read from the
//! wire; strait builds it from `vendor/kafka-protocol`, where the reservation is bounded by the
//! bytes left in the frame (see vendor/README.md). Without that patch this test aborts on the
//! first hostile frame (a multi-gigabyte reservation).
//!
//! `HOSTILE_CASES` (default 300) sets how many random frames per type and version; the longer
//! run in the README used 20,000.

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Message};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// What a decode may allocate: a small multiple of the frame plus a constant for the structs
/// of an empty answer.
fn bound(frame_len: usize) -> u64 {
    64 * frame_len as u64 + 64 * 1024
}

/// Bytes allocated while decoding `frame` as `T` at `version`.
fn allocated<T: Decodable>(frame: &[u8], version: i16) -> u64 {
    let mut bytes = Bytes::copy_from_slice(frame);
    let before = dhat::HeapStats::get().total_bytes;
    let decoded = T::decode(&mut bytes, version);
    let after = dhat::HeapStats::get().total_bytes;
    drop(decoded);
    after - before
}

/// Frames that put a huge length (i32::MAX, and u32::MAX as an unsigned varint) at each
/// position of the first 64 bytes, after bytes of `fill`.
fn hostile_frames() -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    for fill in [0x00u8, 0x01, 0x7f] {
        for at in 0..64 {
            let mut f = vec![fill; at];
            f.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
            f.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
            f.extend(std::iter::repeat_n(fill, 32));
            frames.push(f);
        }
    }
    // Every byte a length: huge arrays nested in huge arrays.
    frames.push([0x7f, 0xff, 0xff, 0xff].repeat(256));
    frames.push(vec![0xff; 1024]);
    frames
}

/// A small deterministic generator (xorshift), so the random frames are the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn frame(&mut self) -> Vec<u8> {
        let len = (self.next() % 2048) as usize;
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// The worst allocated/frame ratio seen for one response type (frames of 256 bytes and more),
/// and the most bytes one decode allocated, over all its versions.
fn check<T: Decodable + Message>(name: &str, cases: usize, worst: &mut Vec<(String, f64, u64)>) {
    let mut rng = Rng(0x5eed_0000 ^ T::VERSIONS.max as u64 ^ name.len() as u64);
    let (mut ratio, mut most) = (0f64, 0u64);
    for version in T::VERSIONS.min..=T::VERSIONS.max {
        let frames = hostile_frames().into_iter().chain((0..cases).map(|_| rng.frame()));
        for frame in frames {
            let got = allocated::<T>(&frame, version);
            assert!(
                got <= bound(frame.len()),
                "{name} v{version}: decoding {} bytes allocated {got} bytes (bound {})",
                frame.len(),
                bound(frame.len())
            );
            most = most.max(got);
            // Below a few hundred bytes the structs of an empty answer dominate.
            if frame.len() >= 256 {
                ratio = ratio.max(got as f64 / frame.len() as f64);
            }
        }
    }
    worst.push((name.to_owned(), ratio, most));
}

#[test]
fn no_response_allocates_beyond_a_small_multiple_of_its_frame() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let cases: usize = std::env::var("HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut worst = Vec::new();
    check::<ResponseHeader>("ResponseHeader", cases, &mut worst);
    check::<ApiVersionsResponse>("ApiVersions", cases, &mut worst);
    check::<SaslHandshakeResponse>("SaslHandshake", cases, &mut worst);
    check::<SaslAuthenticateResponse>("SaslAuthenticate", cases, &mut worst);
    check::<MetadataResponse>("Metadata", cases, &mut worst);
    check::<FetchResponse>("Fetch", cases, &mut worst);
    check::<ProduceResponse>("Produce", cases, &mut worst);
    check::<ListOffsetsResponse>("ListOffsets", cases, &mut worst);
    check::<InitProducerIdResponse>("InitProducerId", cases, &mut worst);
    check::<CreateTopicsResponse>("CreateTopics", cases, &mut worst);
    check::<CreatePartitionsResponse>("CreatePartitions", cases, &mut worst);
    check::<DescribeConfigsResponse>("DescribeConfigs", cases, &mut worst);
    check::<FindCoordinatorResponse>("FindCoordinator", cases, &mut worst);
    check::<ListGroupsResponse>("ListGroups", cases, &mut worst);
    check::<OffsetFetchResponse>("OffsetFetch", cases, &mut worst);
    check::<DescribeGroupsResponse>("DescribeGroups", cases, &mut worst);
    check::<OffsetCommitResponse>("OffsetCommit", cases, &mut worst);
    for (name, ratio, most) in &worst {
        eprintln!("{name:<18} at most {ratio:>5.1} bytes allocated per frame byte (frames >= 256 bytes), {most} bytes in one decode");
    }
    // Premise: the hostile frames reached array decoding (something was allocated at all).
    assert!(worst.iter().any(|(_, _, most)| *most > 0), "{worst:?}");
}
