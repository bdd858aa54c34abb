//! The threads batches are compressed on: a fixed set, started with the first batch and kept
//! as long as the level control that owns them (the replicator's life).
//!
//! Compressing a batch takes up to a second of CPU, which may not run on the runtime's worker
//! threads (their other tasks, the paced socket writers among them, would stall meanwhile).
//! Running it in `block_in_place` instead hands the worker's tasks to a new thread from the
//! runtime's blocking pool for every batch: at 5,000 busy partitions that was 25 threads alive
//! at once, each with its own allocator heap and scratch buffer holding memory. Here the work
//! goes to threads that already exist, as many as batches may compress at once (the callers'
//! slots bound that), and comes back through a one-shot channel the calling task awaits.
//!
//! A panic in a job is caught on its thread (which goes on) and resumed in the caller, so it
//! takes the same path as any other panic of the partition's task.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

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
    /// that still run; or the threads gone), it runs here instead: in `block_in_place` on a
    /// multi-thread runtime, inline on any other.
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
            match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
                Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(job),
                _ => job(),
            }
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
}
