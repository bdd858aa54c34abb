//! Offset translation when the target order is not the source order: a committed source offset
//! `c` ("every record below `c` was read") maps to the lowest target offset of a replicated
//! record at or after `c`, so that a consumer started there misses nothing; the records below
//! `c` it then reads again are counted.

use crate::offsets::Run;

/// A committed source offset translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Translated {
    /// The target offset to start at.
    pub(crate) offset: i64,
    /// Records below the committed offset at or after `offset`: read a second time. 0 with one
    /// range (the translation is exact).
    pub(crate) reread: i64,
}

/// Translates source offset `committed` through the offset map `runs` of every range (any
/// order; each run `len` records at consecutive offsets on both sides), with `end_target` the
/// target offset the next record written lands at.
pub(crate) fn first_unread<'a>(
    runs: impl IntoIterator<Item = &'a Run> + Clone,
    committed: i64,
    end_target: i64,
) -> Translated {
    let offset = runs
        .clone()
        .into_iter()
        .filter(|r| r.len > 0 && r.source + r.len > committed)
        .map(|r| r.target + (committed - r.source).max(0))
        .min()
        .unwrap_or(end_target);
    let reread = runs
        .into_iter()
        .map(|r| {
            let below = (committed - r.source).clamp(0, r.len.max(0));
            let before = (offset - r.target).clamp(0, r.len.max(0));
            (below - before).max(0)
        })
        .sum();
    Translated { offset, reread }
}
