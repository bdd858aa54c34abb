//! What each zstd level costs and gives, on this machine and this data: compression speed
//! (uncompressed bytes per second spent compressing) and ratio (uncompressed / compressed
//! bytes) per level. Pure: measurements are passed in, no clock is read here.
//!
//! Two sources, kept apart:
//! - the seed, measured once at start-up on a generated sample at every level
//!   ([`super::calibrate`]). It has the shape (how much slower level 15 is than level 3, how
//!   much smaller), on this machine, but not the real data's absolute figures;
//! - what real batches measured at the levels they were compressed with (`compress_nanos`,
//!   bytes in and out), decayed by volume so recent batches count most, and by age so a level
//!   not used for a while gives its estimate back to its neighbours.
//!
//! The estimate at a level is the real one where that level has enough of it; elsewhere the
//! seed scaled by the real/seed correction, interpolated linearly between the nearest levels
//! that have both (and held flat beyond them). So one level measured on real data moves the
//! whole curve, and a machine slowed by other work at level 9 also slows the estimate of
//! level 12. Without a seed, levels between two measured ones are interpolated geometrically
//! (speed falls about exponentially with the level) and levels outside them have no estimate.

use std::time::Duration;

/// zstd's highest level.
pub const MAX_LEVEL: i32 = 22;
const LEVELS: usize = MAX_LEVEL as usize;

/// Uncompressed bytes a level needs before its own measurement counts: below it the timer's
/// resolution and the per-call overhead dominate.
const MIN_EVIDENCE_BYTES: f64 = 64.0 * 1024.0;
/// Each level's measurements are halved whenever this much newer input has arrived at it:
/// a few batches of 1 MiB, so the estimate follows a machine that gets busier within seconds.
const HALF_LIFE_BYTES: f64 = 4.0 * 1024.0 * 1024.0;
/// Measurements of the levels not used in a control period are multiplied by this at its end:
/// after about a minute unused, a level's own figures fall below [`MIN_EVIDENCE_BYTES`] and it
/// is estimated from the levels in use again.
const AGE_DECAY: f64 = 0.9;

/// One compression measured: `uncompressed` bytes became `compressed` at `level` in `took`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub level: i32,
    pub uncompressed: u64,
    pub compressed: u64,
    pub took: Duration,
}

/// Speed and ratio at one level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Uncompressed bytes per second of compression time.
    pub speed: f64,
    /// Uncompressed bytes per compressed byte.
    pub ratio: f64,
}

impl Estimate {
    /// Seconds of compression per second needed to keep a link of `wire_per_sec` full: the
    /// uncompressed bytes that fill it divided by the speed.
    pub fn cpu_for(&self, wire_per_sec: f64) -> f64 {
        wire_per_sec * self.ratio / self.speed
    }
}

/// Running sums at one level.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    uncompressed: f64,
    compressed: f64,
    secs: f64,
}

impl Sums {
    fn add(&mut self, s: &Sample) {
        if self.uncompressed >= HALF_LIFE_BYTES {
            self.scale(0.5);
        }
        self.uncompressed += s.uncompressed as f64;
        self.compressed += s.compressed as f64;
        self.secs += s.took.as_secs_f64();
    }

    fn scale(&mut self, by: f64) {
        self.uncompressed *= by;
        self.compressed *= by;
        self.secs *= by;
    }

    fn estimate(&self) -> Option<Estimate> {
        if self.uncompressed < MIN_EVIDENCE_BYTES || self.compressed <= 0.0 {
            return None;
        }
        Some(Estimate {
            // A batch compressed faster than the clock ticks still took some time.
            speed: self.uncompressed / self.secs.max(1e-9),
            ratio: self.uncompressed / self.compressed,
        })
    }
}

/// Per-level estimates of speed and ratio.
#[derive(Debug, Clone, Default)]
pub struct LevelModel {
    seed: [Option<Estimate>; LEVELS],
    real: [Sums; LEVELS],
    /// Levels that received real measurements since the last [`LevelModel::age`].
    used: [bool; LEVELS],
}

fn index(level: i32) -> Option<usize> {
    (1..=MAX_LEVEL).contains(&level).then(|| (level - 1) as usize)
}

impl LevelModel {
    /// Sets the seed from a calibration: one sample per level (later samples of the same level
    /// replace earlier ones).
    pub fn seed(&mut self, samples: &[Sample]) {
        for s in samples {
            let mut sums = Sums::default();
            sums.add(s);
            if let (Some(i), Some(e)) = (index(s.level), sums.estimate()) {
                self.seed[i] = Some(e);
            }
        }
    }

    /// Whether a seed is set.
    pub fn is_seeded(&self) -> bool {
        self.seed.iter().any(Option::is_some)
    }

    /// Adds a measurement from a real batch.
    pub fn record(&mut self, sample: &Sample) {
        if let Some(i) = index(sample.level) {
            self.real[i].add(sample);
            self.used[i] = true;
        }
    }

    /// Ends a control period: the levels not used in it count a little less.
    pub fn age(&mut self) {
        for (sums, used) in self.real.iter_mut().zip(self.used.iter_mut()) {
            if !std::mem::take(used) {
                sums.scale(AGE_DECAY);
            }
        }
    }

    /// The level's own real measurement, if it has enough.
    fn real_at(&self, level: i32) -> Option<Estimate> {
        index(level).and_then(|i| self.real[i].estimate())
    }

    /// The seed at `level`, interpolated between seeded levels around it.
    fn seed_at(&self, level: i32) -> Option<Estimate> {
        let i = index(level)?;
        if let Some(e) = self.seed[i] {
            return Some(e);
        }
        let below = (0..i).rev().find_map(|j| self.seed[j].map(|e| (j, e)))?;
        let above = (i + 1..LEVELS).find_map(|j| self.seed[j].map(|e| (j, e)))?;
        Some(between(i, below, above))
    }

    /// Speed and ratio expected at `level`; `None` when nothing measured says.
    pub fn estimate(&self, level: i32) -> Option<Estimate> {
        if let Some(real) = self.real_at(level) {
            return Some(real);
        }
        let i = index(level)?;
        match self.seed_at(level) {
            Some(seed) => {
                // Real / seed at the levels that have both, nearest on each side.
                let correction = |j: usize| {
                    let level = j as i32 + 1;
                    let (real, seed) = (self.real_at(level)?, self.seed_at(level)?);
                    Some((j, real.speed / seed.speed, real.ratio / seed.ratio))
                };
                let below = (0..i).rev().find_map(correction);
                let above = (i + 1..LEVELS).find_map(correction);
                let (speed, ratio) = match (below, above) {
                    (None, None) => (1.0, 1.0),
                    (Some((_, s, r)), None) | (None, Some((_, s, r))) => (s, r),
                    (Some((j, s0, r0)), Some((k, s1, r1))) => {
                        let t = (i - j) as f64 / (k - j) as f64;
                        (s0 + (s1 - s0) * t, r0 + (r1 - r0) * t)
                    }
                };
                Some(Estimate {
                    speed: seed.speed * speed,
                    ratio: seed.ratio * ratio,
                })
            }
            None => {
                let below = (0..i).rev().find_map(|j| self.real_at(j as i32 + 1).map(|e| (j, e)))?;
                let above = (i + 1..LEVELS).find_map(|j| self.real_at(j as i32 + 1).map(|e| (j, e)))?;
                Some(between(i, below, above))
            }
        }
    }

    /// The highest level in `min..=max` whose compression keeps a link of `wire_per_sec` full
    /// within `cpu_secs_per_sec` of compression time per second; `None` when no level there
    /// has an estimate that fits.
    pub fn fitting(&self, wire_per_sec: f64, cpu_secs_per_sec: f64, min: i32, max: i32) -> Option<i32> {
        (min..=max).rev().find(|&l| {
            self.estimate(l)
                .is_some_and(|e| e.cpu_for(wire_per_sec) <= cpu_secs_per_sec)
        })
    }
}

/// Level `i` between two known ones: speed geometrically (it falls about exponentially with
/// the level), ratio linearly.
fn between(i: usize, (j, lo): (usize, Estimate), (k, hi): (usize, Estimate)) -> Estimate {
    let t = (i - j) as f64 / (k - j) as f64;
    Estimate {
        speed: lo.speed * (hi.speed / lo.speed).powf(t),
        ratio: lo.ratio + (hi.ratio - lo.ratio) * t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1_000_000;

    /// `mb` MB at `level` compressed `ratio` times at `speed_mb` MB/s.
    fn sample(level: i32, mb: u64, ratio: f64, speed_mb: f64) -> Sample {
        let uncompressed = mb * MB;
        Sample {
            level,
            uncompressed,
            compressed: (uncompressed as f64 / ratio) as u64,
            took: Duration::from_secs_f64(mb as f64 / speed_mb),
        }
    }

    fn close(a: f64, b: f64) -> bool {
        // Compressed sizes are whole bytes: a relative error of a few millionths.
        (a - b).abs() <= 1e-4 * b.abs().max(1.0)
    }

    #[test]
    fn a_level_with_its_own_measurements_uses_them() {
        let mut m = LevelModel::default();
        m.record(&sample(3, 2, 8.0, 100.0));
        let e = m.estimate(3).expect("measured");
        assert!(close(e.speed, 100.0 * MB as f64), "{e:?}");
        assert!(close(e.ratio, 8.0), "{e:?}");
        // Nothing on either side of it: no guess for other levels.
        assert_eq!(m.estimate(4), None);
        assert_eq!(m.estimate(2), None);
    }

    #[test]
    fn too_little_input_is_not_a_measurement() {
        let mut m = LevelModel::default();
        m.record(&Sample {
            level: 5,
            uncompressed: 1000,
            compressed: 100,
            took: Duration::from_micros(3),
        });
        assert_eq!(m.estimate(5), None);
    }

    #[test]
    fn levels_between_measured_ones_are_interpolated() {
        let mut m = LevelModel::default();
        m.record(&sample(3, 2, 8.0, 100.0));
        m.record(&sample(7, 2, 10.0, 25.0));
        let e = m.estimate(5).expect("between 3 and 7");
        // Halfway: speed the geometric mean, ratio the arithmetic one.
        assert!(close(e.speed, 50.0 * MB as f64), "{e:?}");
        assert!(close(e.ratio, 9.0), "{e:?}");
        assert_eq!(m.estimate(8), None);
    }

    #[test]
    fn the_seed_is_scaled_by_what_real_batches_measure() {
        let mut m = LevelModel::default();
        m.seed(&[
            sample(1, 1, 4.0, 400.0),
            sample(3, 1, 5.0, 200.0),
            sample(19, 1, 7.0, 4.0),
        ]);
        // Unscaled before any real batch; level 10 between the seeded 3 and 19.
        let e = m.estimate(3).expect("seeded");
        assert!(close(e.speed, 200.0 * MB as f64) && close(e.ratio, 5.0), "{e:?}");
        assert!(m.estimate(10).is_some());
        // Real data at level 3 is twice as compressible and the machine half as fast as the
        // sample said: every level follows.
        m.record(&sample(3, 4, 10.0, 100.0));
        let e = m.estimate(19).expect("seeded");
        assert!(close(e.speed, 2.0 * MB as f64), "{e:?}");
        assert!(close(e.ratio, 14.0), "{e:?}");
        // Level 1 has its own figures: the correction interpolates between 1 and 3.
        m.record(&sample(1, 4, 4.0, 400.0));
        let e = m.estimate(2).expect("seeded");
        let seed2 = (400.0f64 * 200.0).sqrt() * MB as f64;
        assert!(close(e.speed, seed2 * 0.75), "{e:?}");
    }

    #[test]
    fn fitting_is_the_highest_level_within_the_cpu_share() {
        let mut m = LevelModel::default();
        // Speeds from 400 MB/s at level 1, 30% less each level up; ratio 5 to 10.
        let seed: Vec<Sample> = (1..=19)
            .map(|l| sample(l, 1, 5.0 + f64::from(l - 1) * 5.0 / 18.0, 400.0 * 0.7f64.powi(l - 1)))
            .collect();
        m.seed(&seed);
        let wire = 0.2 * MB as f64;
        let fit = m.fitting(wire, 1.0, 1, 19).expect("some level fits");
        let e = m.estimate(fit).expect("estimated");
        assert!(e.cpu_for(wire) <= 1.0);
        let next = m.estimate(fit + 1).expect("estimated");
        assert!(next.cpu_for(wire) > 1.0, "{fit}: {next:?}");
        // Bounds are respected.
        assert_eq!(m.fitting(wire, 1.0, 1, fit - 2), Some(fit - 2));
        // Nothing fits a huge link.
        assert_eq!(m.fitting(1e15, 1.0, 1, 19), None);
    }

    #[test]
    fn unused_levels_fade_back_to_their_neighbours() {
        let mut m = LevelModel::default();
        m.seed(&[sample(3, 1, 5.0, 200.0), sample(9, 1, 6.0, 50.0)]);
        m.record(&sample(9, 1, 6.0, 10.0));
        let slow = m.estimate(9).expect("measured");
        assert!(close(slow.speed, 10.0 * MB as f64), "{slow:?}");
        // Level 3 keeps being used and is as fast as seeded; level 9 is not used for a while.
        for _ in 0..60 {
            m.record(&sample(3, 1, 5.0, 200.0));
            m.age();
        }
        let e = m.estimate(9).expect("seeded");
        assert!(close(e.speed, 50.0 * MB as f64), "{e:?}");
    }
}
