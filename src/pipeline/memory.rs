//! The pipeline's memory bounds: the fetch buffer shared by every partition's fetch stage, and
//! the batch memory shared by every sink (records in builders and compressed batches until the
//! target acknowledges them). Both are semaphores counted in [`BUFFER_UNIT`]s; [`BatchMemory`]
//! is one sink's share of the second.
//!
//! What the fetch buffer counts, and what keeps that count honest:
//!
//! - A chunk holds units for everything it keeps alive: decompressed records, their list, and,
//!   when records of uncompressed batches point into the fetch answer, all the memory that
//!   answer keeps alive. A partition's answer may be a slice of a response shared with other
//!   partitions, and a slice keeps its whole buffer. The Kafka client copies the answers out of
//!   a response in which more than one partition has records, so none pins the others'; an
//!   answer alone with records keeps the response and counts it whole
//!   (`FetchedPartition::retained`). The chunk's permit is dropped with the chunk, on every path
//!   (re-batched, an error, a cancellation); records in a builder then count in batch memory.
//!   The other choice, one permit for the whole response shared by its slices, would have the
//!   client take fetch-buffer units for a response already in memory, where it cannot wait for
//!   them; copying costs a memcpy of a shared response's records.
//! - No batch may decompress to more than the whole fetch buffer, enforced while decompressing
//!   (`RawBatch::records_within`): such a batch could never be counted, and it halts its
//!   partition with `Error::BatchTooLarge` (topic, partition, offset, compressed size, cap)
//!   while the others go on. The cap is the whole buffer, not a partition's share of it: a
//!   fetch reserves what its answer is expected to take and waits until the buffer can cover
//!   what the answer really takes (fetched again once that is reserved), so one partition may
//!   use the whole buffer for a large batch, and a share would halt genuine batches as the
//!   partition count grows. Decompression runs on the runtime's worker threads, so what is
//!   decompressed before it is counted is at most one batch, at most the buffer's size, per
//!   worker thread.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Both memory bounds are counted in units of this many bytes.
pub(crate) const BUFFER_UNIT: usize = 1024;

/// Buffer units covering `bytes`.
pub(crate) fn buffer_units(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(BUFFER_UNIT).max(1)).unwrap_or(u32::MAX)
}

/// One sink's share of the batch memory: what its builder holds, plus what a chunk being pushed
/// still needs. Compressed batches on the wire carry their own permits ([`Self::split_built`]).
#[derive(Debug)]
pub(super) struct BatchMemory {
    pool: Arc<Semaphore>,
    /// The pool's size in units: no reservation asks for more.
    pool_units: u32,
    held: Option<OwnedSemaphorePermit>,
}

impl BatchMemory {
    pub(super) fn new(pool: Arc<Semaphore>, pool_units: u32) -> Self {
        Self {
            pool,
            pool_units,
            held: None,
        }
    }

    fn units(&self, bytes: usize) -> u32 {
        buffer_units(bytes).min(self.pool_units)
    }

    /// Takes memory for `bytes` at once if it is free.
    pub(super) fn try_reserve(&mut self, bytes: usize) -> bool {
        match Arc::clone(&self.pool).try_acquire_many_owned(self.units(bytes)) {
            Ok(permit) => {
                self.hold(permit);
                true
            }
            Err(_) => false,
        }
    }

    /// Gives back everything held, and returns the wait for memory for `bytes`
    /// (acknowledgements, here or on other partitions, give some back); what it yields goes to
    /// [`Self::hold`]. The caller has sent what its builder held first, so no partition waits
    /// while holding memory it could free.
    pub(super) fn release_and_wait(
        &mut self,
        bytes: usize,
    ) -> impl std::future::Future<Output = Option<OwnedSemaphorePermit>> + 'static {
        self.held = None;
        let (pool, units) = (Arc::clone(&self.pool), self.units(bytes));
        // The semaphore is never closed.
        async move { pool.acquire_many_owned(units).await.ok() }
    }

    /// Adds memory taken to what is held.
    pub(super) fn hold(&mut self, permit: OwnedSemaphorePermit) {
        match self.held.as_mut() {
            Some(held) => held.merge(permit),
            None => self.held = Some(permit),
        }
    }

    /// Keeps only what `bytes` in the builder need (nothing when it is empty).
    pub(super) fn trim(&mut self, bytes: usize) {
        if bytes == 0 {
            self.held = None;
            return;
        }
        let keep = buffer_units(bytes) as usize;
        if let Some(held) = self.held.as_mut() {
            if held.num_permits() > keep {
                drop(held.split(held.num_permits() - keep));
            }
        }
    }

    /// A batch was built from `uncompressed` bytes of records into `wire` bytes: the records'
    /// memory is free again but for the compressed batch, returned to be held until the target
    /// acknowledges it; the rest stays held for the records still to be pushed.
    pub(super) fn split_built(&mut self, uncompressed: usize, wire: usize) -> Option<OwnedSemaphorePermit> {
        let mut built = take_permits(&mut self.held, buffer_units(uncompressed) as usize);
        let on_the_wire = take_permits(&mut built, buffer_units(wire) as usize);
        drop(built);
        on_the_wire
    }

    /// Units held.
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.held.as_ref().map_or(0, OwnedSemaphorePermit::num_permits)
    }
}

/// Takes up to `n` permits out of `held` (all of it when it has no more).
fn take_permits(held: &mut Option<OwnedSemaphorePermit>, n: usize) -> Option<OwnedSemaphorePermit> {
    let permits = held.as_ref()?.num_permits();
    if n >= permits {
        return held.take();
    }
    held.as_mut()?.split(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_units_round_up_and_never_reach_zero() {
        assert_eq!(buffer_units(0), 1);
        assert_eq!(buffer_units(1), 1);
        assert_eq!(buffer_units(1024), 1);
        assert_eq!(buffer_units(1025), 2);
        assert_eq!(buffer_units(128 << 20), 131_072);
    }

    #[tokio::test]
    async fn batch_memory_is_given_back_on_every_path() {
        let pool = Arc::new(Semaphore::new(100));
        let mut m = BatchMemory::new(Arc::clone(&pool), 100);
        assert!(m.try_reserve(40 * 1024));
        assert_eq!(pool.available_permits(), 60);
        // Built: 30 units of records compressed into 5; 10 stay for records still to push.
        let wire = m.split_built(30 * 1024, 5 * 1024).expect("held");
        assert_eq!((wire.num_permits(), m.held()), (5, 10));
        assert_eq!(pool.available_permits(), 85);
        drop(wire);
        assert_eq!(pool.available_permits(), 90);
        // More than is free: everything held goes back first, then the wait.
        assert!(!m.try_reserve(95 * 1024));
        let permit = m.release_and_wait(95 * 1024).await.expect("open");
        m.hold(permit);
        assert_eq!((m.held(), pool.available_permits()), (95, 5));
        m.trim(2 * 1024);
        assert_eq!(pool.available_permits(), 98);
        m.trim(0);
        assert_eq!(pool.available_permits(), 100);
        // A reservation larger than the pool asks for the whole pool, not forever.
        let permit = m.release_and_wait(1 << 30).await.expect("open");
        m.hold(permit);
        assert_eq!(m.held(), 100);
        drop(m);
        assert_eq!(pool.available_permits(), 100);
    }
}
