//! Comparing two streams of records in step ([`Lockstep`]): counts, the records that differ,
//! the first of them, and an order-sensitive digest of each side. Pure.

use sha2::{Digest, Sha256};

use crate::batch::Record;

/// What one side's digest takes of a record: its timestamp, key, value and headers (a null key
/// or value differs from an empty one; no headers read the same however encoded). Offsets are
/// left out: they differ between clusters.
fn feed(h: &mut Sha256, r: &Record) {
    h.update(r.timestamp.to_be_bytes());
    for field in [r.key.as_deref(), r.value.as_deref()] {
        match field {
            None => h.update((-1i64).to_be_bytes()),
            Some(b) => {
                h.update((b.len() as i64).to_be_bytes());
                h.update(b);
            }
        }
    }
    let headers: &[u8] = if r.headers.is_empty() { &[0] } else { &r.headers };
    h.update((headers.len() as i64).to_be_bytes());
    h.update(headers);
}

/// Two streams compared record by record, in order.
#[derive(Debug, Default)]
pub(crate) struct Lockstep {
    source: Sha256,
    target: Sha256,
    compared: u64,
    mismatched: u64,
    first_difference: Option<(i64, i64)>,
}

impl Lockstep {
    /// The next record of each side.
    pub(crate) fn pair(&mut self, source: &Record, target: &Record) {
        feed(&mut self.source, source);
        feed(&mut self.target, target);
        self.compared += 1;
        if !crate::pipeline::same_content(source, target) {
            self.mismatched += 1;
            self.first_difference.get_or_insert((source.offset, target.offset));
        }
    }

    pub(crate) fn compared(&self) -> u64 {
        self.compared
    }

    pub(crate) fn mismatched(&self) -> u64 {
        self.mismatched
    }

    /// The source and target offsets of the first pair that differs.
    pub(crate) fn first_difference(&self) -> Option<(i64, i64)> {
        self.first_difference
    }

    /// Each side's digest, hex.
    pub(crate) fn digests(self) -> (String, String) {
        let hex = |d: Sha256| d.finalize().iter().map(|b| format!("{b:02x}")).collect::<String>();
        (hex(self.source), hex(self.target))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn rec(offset: i64, value: &'static [u8], headers: &'static [u8]) -> Record {
        Record {
            offset,
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(value)),
            headers: Bytes::from_static(headers),
        }
    }

    #[test]
    fn equal_streams_give_equal_digests_whatever_the_offsets() {
        let mut l = Lockstep::default();
        l.pair(&rec(10, b"a", &[]), &rec(0, b"a", &[0]));
        l.pair(&rec(11, b"b", &[]), &rec(1, b"b", &[]));
        assert_eq!((l.compared(), l.mismatched(), l.first_difference()), (2, 0, None));
        let (s, t) = l.digests();
        assert_eq!(s, t);
        assert_eq!(s.len(), 64);
    }

    #[test]
    fn one_byte_of_one_header_is_one_mismatch_at_its_offsets() {
        let mut l = Lockstep::default();
        l.pair(
            &rec(10, b"a", &[2, 2, b'h', 2, b'x']),
            &rec(0, b"a", &[2, 2, b'h', 2, b'x']),
        );
        l.pair(
            &rec(11, b"b", &[2, 2, b'h', 2, b'x']),
            &rec(1, b"b", &[2, 2, b'h', 2, b'y']),
        );
        l.pair(&rec(12, b"c", &[]), &rec(2, b"c", &[]));
        assert_eq!(
            (l.compared(), l.mismatched(), l.first_difference()),
            (3, 1, Some((11, 1)))
        );
        let (s, t) = l.digests();
        assert_ne!(s, t);
    }

    #[test]
    fn the_digest_follows_the_order() {
        let digest = |values: &[&'static [u8]]| {
            let mut l = Lockstep::default();
            for (i, v) in values.iter().enumerate() {
                l.pair(&rec(i as i64, v, &[]), &rec(i as i64, v, &[]));
            }
            l.digests().0
        };
        assert_ne!(digest(&[b"a", b"b"]), digest(&[b"b", b"a"]));
        // A null value is not an empty one.
        let mut null = Lockstep::default();
        let r = Record {
            value: None,
            ..rec(0, b"", &[])
        };
        null.pair(&r, &rec(0, b"", &[]));
        assert_eq!(null.mismatched(), 1);
    }
}
