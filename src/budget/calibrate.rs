//! The start-up calibration of the level model: compresses a generated sample once at every
//! level the control may use and times each in CPU time, as real batches are ([`super::cpu`]),
//! on a blocking thread. Levels 1 to 19 took 876 ms of wall time on a shared 2-core machine
//! with a load average near 10.
//!
//! The sample imitates what strait mostly carries (tracing spans: ids, names from a small set,
//! timestamps, tags) and is 384 KiB, above zstd's 256 KiB boundary, so every level compresses
//! it with the parameters it uses on full 1 MiB batches. Its absolute ratio and speed are not
//! the real data's; the model corrects them from real batches ([`super::model`]).

use super::cpu::CpuTimer;
use super::model::Sample;

/// Bytes of the calibration sample.
const SAMPLE_BYTES: usize = 384 * 1024;

/// The calibration failed: zstd refused the level.
#[derive(Debug, thiserror::Error)]
#[error("zstd calibration failed at level {level}")]
pub struct CalibrateError {
    level: i32,
    #[source]
    source: std::io::Error,
}

/// Compresses the sample at each of `levels`, timed in the thread's CPU time.
pub(super) fn calibrate(levels: std::ops::RangeInclusive<i32>) -> Result<Vec<Sample>, CalibrateError> {
    let data = sample(SAMPLE_BYTES);
    levels
        .map(|level| {
            let started = CpuTimer::start();
            let out = zstd::bulk::compress(&data, level).map_err(|source| CalibrateError { level, source })?;
            Ok(Sample {
                level,
                uncompressed: data.len() as u64,
                compressed: out.len() as u64,
                took: started.elapsed(),
            })
        })
        .collect()
}

/// About `bytes` of span-like records, the same every time.
fn sample(bytes: usize) -> Vec<u8> {
    const SERVICES: [&str; 6] = ["frontend", "checkout", "cart", "payment", "shipping", "catalog"];
    const OPERATIONS: [&str; 8] = [
        "HTTP GET /api/items",
        "HTTP POST /api/cart",
        "SELECT items",
        "redis GET",
        "grpc.Charge",
        "render",
        "kafka.produce",
        "auth.verify",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut out = Vec::with_capacity(bytes + 512);
    let mut start: u64 = 1_764_806_400_000_000;
    let mut trace = next();
    while out.len() < bytes {
        let r = next();
        if r % 8 == 0 {
            trace = next();
        }
        start += r % 5_000;
        let service = SERVICES[(r >> 8) as usize % SERVICES.len()];
        let operation = OPERATIONS[(r >> 16) as usize % OPERATIONS.len()];
        let line = format!(
            "{{\"traceId\":\"{trace:016x}{:016x}\",\"spanId\":\"{:016x}\",\"operationName\":\"{operation}\",\
             \"startTime\":{start},\"duration\":{},\"process\":{{\"serviceName\":\"{service}\",\
             \"tags\":{{\"hostname\":\"{service}-{}\",\"version\":\"1.{}.0\"}}}},\
             \"tags\":{{\"http.status_code\":{},\"span.kind\":\"server\",\"component\":\"net/http\"}}}}\n",
            trace.rotate_left(17),
            next(),
            next() % 250_000,
            (r >> 24) % 4,
            (r >> 32) % 3,
            [200, 200, 200, 404, 500][(r >> 40) as usize % 5],
        );
        out.extend_from_slice(line.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_is_the_same_every_time_and_compressible() {
        let a = sample(SAMPLE_BYTES);
        assert_eq!(a, sample(SAMPLE_BYTES));
        assert!(a.len() >= SAMPLE_BYTES);
        let packed = zstd::bulk::compress(&a, 3).expect("zstd level 3");
        let ratio = a.len() as f64 / packed.len() as f64;
        // Spans compress a few times, not a thousand.
        assert!((2.0..30.0).contains(&ratio), "{ratio}");
    }

    #[test]
    fn calibration_measures_each_level_asked() {
        let samples = calibrate(1..=3).expect("levels 1 to 3");
        let levels: Vec<i32> = samples.iter().map(|s| s.level).collect();
        assert_eq!(levels, [1, 2, 3]);
        assert!(samples
            .iter()
            .all(|s| s.compressed > 0 && s.compressed < s.uncompressed));
    }
}
