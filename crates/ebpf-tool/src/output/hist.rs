//! Log2 histograms as the kernel fills them (`HIST_SLOTS` per-CPU slots), merged over
//! CPUs, with estimated percentiles and the libbpf-tools text rendering.

use std::io::{self, Write};

use ebpf_tool_common::{HIST_BUCKETS, HIST_COUNT, HIST_MAX, HIST_MIN, HIST_SLOTS, HIST_SUM};
use serde::Serialize;

/// One histogram: bucket `b` counts values in `[2^(b-1), 2^b)` (bucket 0 counts zeros).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Histogram {
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum: u64,
    pub min: u64,
    pub max: u64,
}

impl Histogram {
    /// Merges one histogram's slots from every CPU (`per_cpu[cpu][slot]`).
    pub fn from_per_cpu_slots(per_cpu: &[Vec<u64>]) -> Histogram {
        let mut hist = Histogram {
            buckets: vec![0; HIST_BUCKETS],
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        };
        for slots in per_cpu {
            if slots.len() < HIST_SLOTS {
                continue;
            }
            for (total, n) in hist.buckets.iter_mut().zip(&slots[..HIST_BUCKETS]) {
                *total += n;
            }
            hist.count += slots[HIST_COUNT];
            hist.sum = hist.sum.wrapping_add(slots[HIST_SUM]);
            // The kernel stores the minimum inverted so that 0 means "none yet".
            if slots[HIST_COUNT] > 0 {
                hist.min = hist.min.min(!slots[HIST_MIN]);
            }
            hist.max = hist.max.max(slots[HIST_MAX]);
        }
        if hist.count == 0 {
            hist.min = 0;
        }
        hist
    }

    pub fn average(&self) -> u64 {
        self.sum.checked_div(self.count).unwrap_or(0)
    }

    /// The value below which `percent`% of the samples fall, estimated as the top of the
    /// bucket where that rank lands, clamped to the observed min and max.
    pub fn percentile(&self, percent: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((percent / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_high(bucket).clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// The libbpf-tools rendering: `low -> high : count |****|`, from the first to the
    /// last non-empty bucket.
    pub fn write_text(&self, out: &mut impl Write, unit: &str) -> io::Result<()> {
        let Some(first) = self.buckets.iter().position(|&n| n > 0) else {
            return writeln!(out, "     (no samples)");
        };
        let last = self.buckets.iter().rposition(|&n| n > 0).unwrap_or(first);
        let peak = self.buckets.iter().copied().max().unwrap_or(1).max(1);
        let width = bucket_high(last).to_string().len().max(5);
        writeln!(
            out,
            "{unit:>column$} : count     distribution",
            column = width * 2 + 4
        )?;
        for bucket in first..=last {
            let n = self.buckets[bucket];
            let stars = ((n * 40) / peak) as usize;
            writeln!(
                out,
                "{:>width$} -> {:<width$} : {:<9} |{:<40}|",
                bucket_low(bucket),
                bucket_high(bucket),
                n,
                "*".repeat(stars),
            )?;
        }
        Ok(())
    }
}

/// Smallest value counted in `bucket`.
pub fn bucket_low(bucket: usize) -> u64 {
    match bucket {
        0 => 0,
        b => 1u64 << (b - 1),
    }
}

/// Largest value counted in `bucket`.
pub fn bucket_high(bucket: usize) -> u64 {
    match bucket {
        0 => 0,
        64.. => u64::MAX,
        b => (1u64 << b) - 1,
    }
}

/// Which bucket the kernel puts `value` in (mirrors the eBPF code; used by tests).
pub fn bucket_of(value: u64) -> usize {
    (64 - value.leading_zeros()) as usize
}

/// A duration in nanoseconds in the largest unit that keeps it readable.
pub fn human_ns(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns}ns"),
        1_000..1_000_000 => format!("{:.2}us", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2}ms", ns as f64 / 1e6),
        _ => format!("{:.3}s", ns as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slots for one CPU holding `values`, as the kernel would fill them.
    fn slots(values: &[u64]) -> Vec<u64> {
        let mut s = vec![0; HIST_SLOTS];
        for &v in values {
            s[bucket_of(v)] += 1;
            s[HIST_COUNT] += 1;
            s[HIST_SUM] += v;
            s[HIST_MIN] = s[HIST_MIN].max(!v);
            s[HIST_MAX] = s[HIST_MAX].max(v);
        }
        s
    }

    #[test]
    fn buckets_are_powers_of_two() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1), 1);
        assert_eq!(bucket_of(2), 2);
        assert_eq!(bucket_of(3), 2);
        assert_eq!(bucket_of(4), 3);
        assert_eq!(bucket_of(u64::MAX), 64);
        for b in 1..64 {
            assert_eq!(bucket_of(bucket_low(b)), b);
            assert_eq!(bucket_of(bucket_high(b)), b);
        }
    }

    #[test]
    fn merges_cpus_and_estimates_percentiles() {
        let hist = Histogram::from_per_cpu_slots(&[slots(&[100, 200, 300]), slots(&[5000, 40])]);
        assert_eq!(hist.count, 5);
        assert_eq!(hist.sum, 5640);
        assert_eq!((hist.min, hist.max), (40, 5000));
        assert_eq!(hist.average(), 1128);
        // rank 3 of 5 lands in [128, 255]: the estimate is that bucket's top.
        assert_eq!(hist.percentile(50.0), 255);
        assert_eq!(hist.percentile(99.0), 5000); // clamped to the max seen
        assert_eq!(hist.percentile(1.0), 63);
    }

    #[test]
    fn renders_like_libbpf_tools() {
        let hist = Histogram::from_per_cpu_slots(&[slots(&[1, 2, 3, 3, 9])]);
        let mut out = Vec::new();
        hist.write_text(&mut out, "value").unwrap();
        let text = String::from_utf8(out).unwrap();
        let rows: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(
            rows,
            [
                "    1 -> 1     : 1         |*************                           |",
                "    2 -> 3     : 3         |****************************************|",
                "    4 -> 7     : 0         |                                        |",
                "    8 -> 15    : 1         |*************                           |",
            ]
        );
    }

    #[test]
    fn empty_histogram() {
        let hist = Histogram::from_per_cpu_slots(&[vec![0; HIST_SLOTS]]);
        assert_eq!((hist.count, hist.min, hist.percentile(50.0)), (0, 0, 0));
    }

    #[test]
    fn human_units() {
        assert_eq!(human_ns(999), "999ns");
        assert_eq!(human_ns(20_123_000), "20.12ms");
        assert_eq!(human_ns(1_500), "1.50us");
    }
}
