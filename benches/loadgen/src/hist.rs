//! A small HDR-style histogram: log-bucketed with 64 linear sub-buckets per
//! power of two (relative error < 1.6%), exact below 128. Values are u64 ns.

const SUB: u64 = 128;
const HALF: u64 = 64;
const NBUCKETS: usize = (SUB + 58 * HALF) as usize;

pub struct Hist {
    counts: Vec<u64>,
    n: u64,
    max: u64,
}

fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let e = 63 - v.leading_zeros() as u64; // msb position, >= 7
    let shift = e - 6; // v >> shift in [64, 128)
    (SUB + (shift - 1) * HALF + ((v >> shift) - HALF)) as usize
}

/// Representative (midpoint) value of bucket `i`.
fn value(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let shift = (i - SUB) / HALF + 1;
    let r = (i - SUB) % HALF;
    let lo = (HALF + r) << shift;
    lo + ((1u64 << shift) >> 1)
}

impl Default for Hist {
    fn default() -> Self {
        Hist { counts: vec![0; NBUCKETS], n: 0, max: 0 }
    }
}

impl Hist {
    pub fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.n += 1;
        self.max = self.max.max(v);
    }
    pub fn merge(&mut self, o: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.n += o.n;
        self.max = self.max.max(o.max);
    }
    pub fn count(&self) -> u64 {
        self.n
    }
    pub fn max(&self) -> u64 {
        self.max
    }
    /// Value at quantile q in [0, 1] (0 if empty).
    pub fn quantile(&self, q: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut cum = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cum += c;
            if cum >= rank {
                return value(i).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_monotonic_and_accurate() {
        let mut last = 0;
        let mut v = 1u64;
        while v < u64::MAX / 3 {
            let i = index(v);
            assert!(i >= last && i < NBUCKETS);
            last = i;
            let err = (value(i) as f64 - v as f64).abs() / v as f64;
            assert!(err < 0.016, "v={v} value={} err={err}", value(i));
            v = v + v / 7 + 1;
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Hist::default();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 5_000_000.0).abs() / 5_000_000.0 < 0.02);
        assert_eq!(h.max(), 10_000_000);
        assert_eq!(h.quantile(1.0), 10_000_000);
    }
}
