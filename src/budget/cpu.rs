//! What compression costs in CPU time, not wall time. After a cut, many partitions' batches
//! compress at once, more of them than there are cores; timed by the wall clock (when small
//! batches did not wait for a compression slot), each counted the time it waited for a core
//! too, and the sum reached 130% of the cores while the link carried 250 kB/s. The level
//! control took that for compression being the bottleneck and lowered the level five times
//! through the drain. The calling thread's CPU time counts only the work done.

use std::time::{Duration, Instant};

/// A measurement of the calling thread's CPU time; the wall clock where the platform has no
/// per-thread clock.
#[derive(Debug, Clone, Copy)]
pub enum CpuTimer {
    Cpu(Duration),
    Wall(Instant),
}

impl CpuTimer {
    /// Starts measuring the calling thread.
    pub fn start() -> Self {
        thread_cpu_time().map_or_else(|| CpuTimer::Wall(Instant::now()), CpuTimer::Cpu)
    }

    /// CPU time the calling thread spent since [`CpuTimer::start`] (on the same thread).
    pub fn elapsed(&self) -> Duration {
        match self {
            CpuTimer::Cpu(started) => thread_cpu_time().map_or(Duration::ZERO, |now| now.saturating_sub(*started)),
            CpuTimer::Wall(started) => started.elapsed(),
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn thread_cpu_time() -> Option<Duration> {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Some(Duration::new(
        u64::try_from(t.tv_sec).ok()?,
        u32::try_from(t.tv_nsec).ok()?,
    ))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn thread_cpu_time() -> Option<Duration> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleep_costs_no_cpu_and_work_does() {
        let timer = CpuTimer::start();
        std::thread::sleep(Duration::from_millis(200));
        let slept = timer.elapsed();
        assert!(
            slept < Duration::from_millis(50),
            "asleep for 200 ms, counted {slept:?}"
        );
        // Work: counted, and never more than the wall time it took on one thread.
        let data: Vec<u8> = (0..1u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let wall = Instant::now();
        let timer = CpuTimer::start();
        let packed = zstd::bulk::compress(&data, 9).expect("zstd");
        let worked = timer.elapsed();
        let took = wall.elapsed();
        assert!(!packed.is_empty());
        assert!(worked > Duration::ZERO, "compressing 1 MiB counted no CPU time");
        assert!(
            worked <= took + Duration::from_millis(1),
            "{worked:?} of CPU in {took:?}"
        );
    }
}
