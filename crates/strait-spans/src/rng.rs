//! A tiny deterministic PRNG (SplitMix64) plus the few distributions the span generator
//! needs.
//!
//! It owns reproducibility: every draw is integer arithmetic or basic IEEE-754 operations
//! (`+ - * /`, `sqrt`, `round`), which are correctly rounded everywhere, so the same seed gives
//! the same spans on every platform. It must not call libm transcendental functions (`exp`,
//! `ln`, `cos`), whose last-ulp results differ between platforms; [`exp`] is implemented here
//! for that reason.

/// SplitMix64 (Steele, Lea and Flood 2014): full 2^64 period, any seed (including 0) is fine.
#[derive(Clone, Debug)]
pub(super) struct Rng {
    state: u64,
}

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A non-zero value: Jaeger treats zero span and trace ids as absent.
    pub(super) fn nonzero_u64(&mut self) -> u64 {
        loop {
            let v = self.next_u64();
            if v != 0 {
                return v;
            }
        }
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2^-32 for our `n`).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub(super) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// Uniform index into a slice of length `len` (`len > 0`).
    pub(super) fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    pub(super) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub(super) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    pub(super) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Approximately standard normal: Irwin–Hall sum of four uniforms, rescaled to unit
    /// variance. Bounded to ±3.46σ, which conveniently rules out absurd outliers.
    pub(super) fn normal(&mut self) -> f64 {
        let sum = self.unit() + self.unit() + self.unit() + self.unit();
        (sum - 2.0) * 1.732_050_807_568_877_2
    }

    /// A log-normal duration in whole microseconds (at least 1) with the given median.
    pub(super) fn lognormal_micros(&mut self, median_micros: f64, sigma: f64) -> i64 {
        let v = median_micros * exp(sigma * self.normal());
        (v.round() as i64).max(1)
    }

    /// Lowercase alphanumerics from `alphabet`, `len` of them.
    pub(super) fn push_chars(&mut self, out: &mut String, alphabet: &[u8], len: usize) {
        for _ in 0..len {
            out.push(char::from(*self.pick(alphabet)));
        }
    }
}

/// `e^x` from basic IEEE operations only, so results are bit-identical on every platform.
/// Accurate to a few ulps for `|x| <= 300`; inputs are clamped to that range.
pub(super) fn exp(x: f64) -> f64 {
    const LN_2: f64 = std::f64::consts::LN_2;
    const LOG2_E: f64 = std::f64::consts::LOG2_E;
    let x = x.clamp(-300.0, 300.0);
    let k = (x * LOG2_E).round();
    let r = x - k * LN_2; // |r| <= ln2/2
    let mut term = 1.0;
    let mut sum = 1.0;
    for i in 1..=13 {
        term *= r / f64::from(i);
        sum += term;
    }
    // 2^k is exact: k is within the normal exponent range after the clamp.
    let scale = f64::from_bits(((k as i64 + 1023) as u64) << 52);
    sum * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // First outputs of SplitMix64 seeded with 1234567 (reference implementation by Vigna).
        let mut r = Rng::new(1_234_567);
        assert_eq!(r.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(r.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn exp_matches_std_closely() {
        for i in -200..=200 {
            let x = f64::from(i) * 0.05;
            let ours = exp(x);
            let std = x.exp();
            assert!(((ours - std) / std).abs() < 1e-14, "x={x} ours={ours} std={std}");
        }
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = Rng::new(7);
        for n in 1..50u64 {
            for _ in 0..100 {
                assert!(r.below(n) < n);
            }
        }
        assert_eq!(r.range(5, 5), 5);
    }

    #[test]
    fn lognormal_median_is_about_right() {
        let mut r = Rng::new(42);
        let mut v: Vec<i64> = (0..4001).map(|_| r.lognormal_micros(1000.0, 0.8)).collect();
        v.sort_unstable();
        let median = v[2000];
        assert!((800..1250).contains(&median), "median {median}");
    }
}
