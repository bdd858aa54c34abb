//! Where batches compress, and how many at once: [`CompressGate`] holds the slots, and
//! [`Threads`] the fixed set of threads the work runs on, started with the first batch and kept
//! as long as the gate (the replicator's life).
//!
//! Compressing a batch takes up to a second of CPU, which may not run on the runtime's worker
//! threads (their other tasks, the paced socket writers among them, would stall meanwhile).
//! Running it in `block_in_place` instead hands the worker's tasks to a new thread from the
//! runtime's blocking pool for every batch: at 5,000 busy partitions that was 25 threads alive
//! at once, each with its own allocator heap and scratch buffer holding memory. Here the work
//! goes to threads that already exist, as many as batches may compress at once (the slots
//! bound that), and comes back through a one-shot channel the calling task awaits.
//!
//! A panic in a job is caught on its thread (which goes on) and resumed in the caller, so it
//! takes the same path as any other panic of the partition's task.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::{oneshot, Semaphore};

/// Batches smaller than this take a slot of their own kind (see [`CompressGate::run`]).
const SMALL_BATCH_BYTES: usize = 64 * 1024;

/// The slots batches compress in and the threads they compress on.
#[derive(Debug)]
pub(crate) struct CompressGate {
    /// One permit per core: large batches compressing at once.
    large: Semaphore,
    /// As many more for batches under [`SMALL_BATCH_BYTES`], so they do not queue behind large
    /// ones, yet thousands of partitions' small batches do not compress at once either (each
    /// holds a zstd context of megabytes and a thread).
    small: Semaphore,
    /// One thread per slot of either kind, started with the first batch compressed on a
    /// multi-thread runtime. `None` if the system refused a thread then: batches compress in
    /// `block_in_place` for the rest of the run (logged once).
    threads: OnceLock<Option<Threads>>,
    cores: usize,
}

impl CompressGate {
    pub(crate) fn new(cores: usize) -> Self {
        Self {
            large: Semaphore::new(cores),
            small: Semaphore::new(cores),
            threads: OnceLock::new(),
            cores,
        }
    }

    /// Runs `compress` (one batch's compression of `bytes`: up to a second for 1 MiB at the
    /// highest zstd levels on a busy machine) once fewer batches of its kind than cores are
    /// compressing, and on a multi-thread runtime on one of the threads, so the worker's other
    /// tasks (the paced socket writers, the control loop) go on meanwhile instead of stalling
    /// and losing budget. Elsewhere (tests' current-thread runtimes) it runs inline. A batch
    /// under [`SMALL_BATCH_BYTES`] (a few milliseconds at any level: new records of a
    /// catch-up, live traffic) takes a slot of its own kind, so it does not queue behind
    /// large ones.
    pub(crate) async fn run<T, F>(&self, bytes: usize, compress: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let slots = if bytes < SMALL_BATCH_BYTES {
            &self.small
        } else {
            &self.large
        };
        // The semaphores are never closed.
        let _slot = slots.acquire().await.ok();
        let threads = if multi_thread() {
            self.threads
                .get_or_init(|| Threads::start(2 * self.cores, "strait-zstd"))
                .as_ref()
        } else {
            None
        };
        match threads {
            Some(threads) => threads.run(compress).await,
            None => in_place(compress),
        }
    }
}

fn multi_thread() -> bool {
    matches!(
        Handle::try_current().map(|h| h.runtime_flavor()),
        Ok(RuntimeFlavor::MultiThread)
    )
}

/// Runs `job` where the caller is: in `block_in_place` on a multi-thread runtime (the worker's
/// other tasks move meanwhile), inline on any other.
fn in_place<T>(job: impl FnOnce() -> T) -> T {
    if multi_thread() {
        tokio::task::block_in_place(job)
    } else {
        job()
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads that run blocking jobs for async callers.
#[derive(Debug)]
pub(crate) struct Threads {
    jobs: SyncSender<Job>,
}

impl Threads {
    /// Starts `count` threads named `name-N`; `None` when the system refuses a thread (the
    /// caller then runs its jobs where it is). They end once `Threads` is dropped and their
    /// current job is done.
    pub(crate) fn start(count: usize, name: &str) -> Option<Self> {
        let count = count.max(1);
        let (jobs, queue) = sync_channel::<Job>(count);
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..count {
            let queue = Arc::clone(&queue);
            let spawned = std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || work(&queue));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, threads = count, "cannot start the compression threads: compressing on the runtime's threads");
                return None;
            }
        }
        Some(Self { jobs })
    }

    /// Runs `job` on one of the threads and waits for its result. Should the queue refuse it
    /// (twice as many jobs as threads, running and queued: only when callers gave up on jobs
    /// that still run; or the threads gone), it runs here instead ([`in_place`]).
    pub(crate) async fn run<T, F>(&self, job: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T, Box<dyn Any + Send>>>();
        let job: Job = Box::new(move || {
            // The caller may be gone (its task dropped): then nobody wants the result.
            let _ = tx.send(catch_unwind(AssertUnwindSafe(job)));
        });
        if let Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) = self.jobs.try_send(job) {
            in_place(job);
        }
        match rx.await {
            Ok(Ok(value)) => value,
            Ok(Err(panic)) => resume_unwind(panic),
            // Every job sends before it is dropped; a thread that ends drops only what it
            // never took, and the queue is only dropped with `self`.
            Err(_) => resume_unwind(Box::new("a compression job was dropped without running")),
        }
    }
}

/// A thread's loop: takes the next job and runs it, until the sender is dropped.
fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        let next = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        match next {
            // Jobs catch their own panics.
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_job_runs_on_a_named_thread_of_the_set_and_its_result_comes_back() {
        let threads = Threads::start(2, "strait-test").expect("threads start");
        let name = threads.run(|| std::thread::current().name().map(str::to_owned)).await;
        assert!(
            name.is_some_and(|n| n.starts_with("strait-test-")),
            "ran on a thread of the set"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_panicking_job_panics_in_its_caller_and_the_thread_goes_on() {
        let threads = Arc::new(Threads::start(1, "strait-test").expect("threads start"));
        let t = Arc::clone(&threads);
        let caught = tokio::spawn(async move { t.run(|| -> u8 { panic!("boom") }).await }).await;
        assert!(caught.is_err_and(|e| e.is_panic()), "the panic reached the caller");
        // The one thread is still there to run the next job.
        let name = threads.run(|| std::thread::current().name().map(str::to_owned)).await;
        assert_eq!(name.as_deref(), Some("strait-test-0"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_job_the_full_queue_refuses_runs_in_the_caller() {
        let threads = Arc::new(Threads::start(1, "strait-test").expect("threads start"));
        // The thread blocks in the first job until released; the queue holds one more.
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (started, running) = std::sync::mpsc::channel::<()>();
        let t = Arc::clone(&threads);
        let first = tokio::spawn(async move {
            t.run(move || {
                let _ = started.send(());
                let _ = wait.recv();
            })
            .await
        });
        tokio::task::block_in_place(|| running.recv_timeout(std::time::Duration::from_secs(60)))
            .expect("the first job runs");
        threads.jobs.try_send(Box::new(|| ())).expect("the queue holds one job");
        // The premise: the queue is full.
        assert!(threads.jobs.try_send(Box::new(|| ())).is_err(), "the queue is full");
        let here = std::thread::current().id();
        let ran_on = threads.run(move || std::thread::current().id()).await;
        assert_eq!(ran_on, here, "the refused job ran in the caller");
        release.send(()).expect("released");
        first.await.expect("first job");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn on_a_multi_thread_runtime_a_batch_compresses_on_a_compression_thread_holding_its_slot() {
        let c = Arc::new(CompressGate::new(2));
        let large = c.large.available_permits();
        let control = Arc::clone(&c);
        let (name, free_meanwhile) = c
            .run(1 << 20, move || {
                let name = std::thread::current().name().map(str::to_owned);
                (name, control.large.available_permits())
            })
            .await;
        assert!(
            name.as_deref().is_some_and(|n| n.starts_with("strait-zstd-")),
            "compressed on {name:?}"
        );
        assert_eq!(free_meanwhile, large - 1, "the batch held a slot while compressing");
        assert_eq!(c.large.available_permits(), large, "and gave it back");
    }

    #[tokio::test]
    async fn small_batches_do_not_queue_behind_large_ones_for_compression() {
        let c = CompressGate::new(2);
        // Every slot held by a large batch that does not finish.
        let permits = c.large.available_permits();
        let held = c.large.acquire_many(permits as u32).await.expect("open");
        assert_eq!(c.run(4 * 1024, || 7).await, 7);
        // Polled once: a large batch waits for a slot.
        let large = tokio::select! {
            biased;
            v = c.run(1 << 20, || 8) => Some(v),
            () = std::future::ready(()) => None,
        };
        assert_eq!(large, None, "a large batch went without a slot");
        drop(held);
        assert_eq!(c.run(1 << 20, || 9).await, 9);
        // Small batches are bounded too: with their slots all held, the next one waits.
        let permits = c.small.available_permits();
        assert!(permits >= 1);
        let held = c.small.acquire_many(permits as u32).await.expect("open");
        let small = tokio::select! {
            biased;
            v = c.run(4 * 1024, || 10) => Some(v),
            () = std::future::ready(()) => None,
        };
        assert_eq!(small, None, "a small batch went past the bound");
        drop(held);
        assert_eq!(c.run(4 * 1024, || 11).await, 11);
    }
}
