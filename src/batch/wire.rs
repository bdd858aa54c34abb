//! Primitive wire encodings used inside record batches: zigzag varints and big-endian integers.
//!
//! Every reader takes a slice and a cursor and returns `None` instead of panicking when the
//! input is short or malformed, because these functions see untrusted bytes first.

/// Longest legal varint (32-bit zigzag) encoding, as enforced by Kafka's `ByteUtils.readVarint`.
const MAX_VARINT_BYTES: usize = 5;
/// Longest legal varlong (64-bit zigzag) encoding.
const MAX_VARLONG_BYTES: usize = 10;

/// Reads an unsigned LEB128 value of at most `max_bytes` bytes.
#[inline]
fn read_unsigned(buf: &[u8], pos: &mut usize, max_bytes: usize) -> Option<u64> {
    let first = *buf.get(*pos)?;
    if first < 0x80 {
        *pos += 1;
        return Some(u64::from(first));
    }
    let mut value = u64::from(first & 0x7f);
    let mut shift = 7u32;
    let mut i = *pos + 1;
    loop {
        if i - *pos >= max_bytes {
            return None;
        }
        let byte = *buf.get(i)?;
        i += 1;
        value |= u64::from(byte & 0x7f).wrapping_shl(shift);
        if byte < 0x80 {
            *pos = i;
            return Some(value);
        }
        shift += 7;
    }
}

/// Reads a zigzag varint (Kafka `varint`, 32-bit).
#[inline]
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Option<i32> {
    // Like Kafka, bits beyond 32 in the fifth byte are dropped rather than rejected.
    let raw = read_unsigned(buf, pos, MAX_VARINT_BYTES)? as u32;
    Some(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// Reads a zigzag varlong (Kafka `varlong`, 64-bit).
#[inline]
pub(crate) fn read_varlong(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let raw = read_unsigned(buf, pos, MAX_VARLONG_BYTES)?;
    Some(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

#[inline]
fn zigzag32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

#[inline]
fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
fn write_unsigned(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
fn unsigned_len(v: u64) -> usize {
    // Each byte carries 7 bits; zero still takes one byte.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends a zigzag varint.
#[inline]
pub(crate) fn write_varint(out: &mut Vec<u8>, v: i32) {
    write_unsigned(out, u64::from(zigzag32(v)));
}

/// Appends a zigzag varlong.
#[inline]
pub(crate) fn write_varlong(out: &mut Vec<u8>, v: i64) {
    write_unsigned(out, zigzag64(v));
}

/// Encoded length of a zigzag varint.
#[inline]
pub(crate) fn varint_len(v: i32) -> usize {
    unsigned_len(u64::from(zigzag32(v)))
}

/// Encoded length of a zigzag varlong.
#[inline]
pub(crate) fn varlong_len(v: i64) -> usize {
    unsigned_len(zigzag64(v))
}

/// Reads `N` bytes at `at`, if present.
#[inline]
fn array_at<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

#[inline]
pub(crate) fn i16_at(buf: &[u8], at: usize) -> Option<i16> {
    array_at(buf, at).map(i16::from_be_bytes)
}

#[inline]
pub(crate) fn i32_at(buf: &[u8], at: usize) -> Option<i32> {
    array_at(buf, at).map(i32::from_be_bytes)
}

#[inline]
pub(crate) fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    array_at(buf, at).map(u32::from_be_bytes)
}

#[inline]
pub(crate) fn i64_at(buf: &[u8], at: usize) -> Option<i64> {
    array_at(buf, at).map(i64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn varint_table() {
        // (value, encoding) pairs from the Kafka protocol guide's zigzag examples.
        let cases: &[(i32, &[u8])] = &[
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (-2, &[0x03]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (168, &[0xd0, 0x02]),
            (i32::MAX, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i32::MIN, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for &(value, bytes) in cases {
            let mut out = Vec::new();
            write_varint(&mut out, value);
            assert_eq!(out, bytes, "encoding {value}");
            assert_eq!(varint_len(value), bytes.len());
            let mut pos = 0;
            assert_eq!(read_varint(bytes, &mut pos), Some(value));
            assert_eq!(pos, bytes.len());
        }
    }

    #[test]
    fn malformed_varints_are_rejected() {
        let mut pos = 0;
        assert_eq!(read_varint(&[], &mut pos), None);
        assert_eq!(read_varint(&[0x80], &mut pos), None);
        assert_eq!(read_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], &mut pos), None);
        assert_eq!(read_varlong(&[0xff; 11], &mut pos), None);
        assert_eq!(pos, 0, "failed reads leave the cursor alone");
    }

    proptest! {
        #[test]
        fn varlong_round_trip(v in any::<i64>()) {
            let mut out = Vec::new();
            write_varlong(&mut out, v);
            prop_assert_eq!(out.len(), varlong_len(v));
            let mut pos = 0;
            prop_assert_eq!(read_varlong(&out, &mut pos), Some(v));
            prop_assert_eq!(pos, out.len());
        }

        #[test]
        fn varint_round_trip(v in any::<i32>()) {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            prop_assert_eq!(out.len(), varint_len(v));
            let mut pos = 0;
            prop_assert_eq!(read_varint(&out, &mut pos), Some(v));
        }

        #[test]
        fn readers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..16), start in 0usize..20) {
            let mut pos = start;
            let _ = read_varint(&bytes, &mut pos);
            let mut pos = start;
            let _ = read_varlong(&bytes, &mut pos);
            let _ = (i16_at(&bytes, start), i32_at(&bytes, start), u32_at(&bytes, start), i64_at(&bytes, start));
        }
    }
}
