//! Histograms as the kernel fills them (`HIST_SLOTS` per-CPU slots: log-linear buckets,
//! 16 per power of two, then count, sum, min, max), merged over CPUs, with percentiles
//! interpolated inside their bucket (within ~3%) and the libbpf-tools/bpftrace rendering
//! by powers of two.

use std::io::{self, Write};

use ebpf_tool_common::{
    HIST_BUCKETS, HIST_COUNT, HIST_MAX, HIST_MIN, HIST_SLOTS, HIST_SUM, hist_bucket_range,
};
use serde::{Serialize, Serializer};

/// Rows of the text rendering (and of JSON's `buckets`): row `b` counts values in
/// `[2^(b-1), 2^b)`, row 0 counts zeros.
pub const LOG2_ROWS: usize = 65;

/// One histogram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Histogram {
    /// The kernel's buckets (`ebpf_tool_common::hist_bucket`); shown by powers of two.
    #[serde(rename = "buckets", serialize_with = "log2_rows")]
    pub fine: Vec<u64>,
    pub count: u64,
    pub sum: u64,
    pub min: u64,
    pub max: u64,
}

impl Histogram {
    /// Adds `other`'s samples (the same kind of histogram) to these.
    pub fn add(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        if self.fine.len() < other.fine.len() {
            self.fine.resize(other.fine.len(), 0);
        }
        for (mine, theirs) in self.fine.iter_mut().zip(&other.fine) {
            *mine += theirs;
        }
        self.min = if self.count == 0 {
            other.min
        } else {
            self.min.min(other.min)
        };
        self.max = self.max.max(other.max);
        self.count += other.count;
        self.sum += other.sum;
    }
}

fn log2_rows<S: Serializer>(fine: &[u64], serializer: S) -> Result<S::Ok, S::Error> {
    to_log2_rows(fine).serialize(serializer)
}

/// Fine buckets summed by power of two (a fine bucket lies inside one).
pub fn to_log2_rows(fine: &[u64]) -> Vec<u64> {
    let mut rows = vec![0; LOG2_ROWS];
    for (bucket, &n) in fine.iter().enumerate() {
        if n > 0 {
            rows[log2_row(hist_bucket_range(bucket).0)] += n;
        }
    }
    rows
}

impl Histogram {
    /// Merges one histogram's slots from every CPU (`per_cpu[cpu][slot]`).
    pub fn from_per_cpu_slots(per_cpu: &[Vec<u64>]) -> Histogram {
        let mut hist = Histogram {
            fine: vec![0; HIST_BUCKETS],
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        };
        for slots in per_cpu {
            if slots.len() < HIST_SLOTS {
                continue;
            }
            for (total, n) in hist.fine.iter_mut().zip(&slots[..HIST_BUCKETS]) {
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

    /// The value below which `percent`% of the samples fall: found in its bucket, placed
    /// inside it as if the bucket's samples were spread evenly, clamped to the observed
    /// min and max.
    pub fn percentile(&self, percent: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((percent / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, &n) in self.fine.iter().enumerate() {
            if seen + n >= rank {
                let (low, high) = hist_bucket_range(bucket);
                let within = (rank - seen) as f64 / n as f64;
                let value = low as f64 + (high - low) as f64 * within;
                return (value as u64).clamp(self.min, self.max);
            }
            seen += n;
        }
        self.max
    }

    /// The libbpf-tools rendering: `low -> high : count |****|`, one row per power of
    /// two from the first to the last non-empty one.
    pub fn write_text(&self, out: &mut impl Write, unit: &str) -> io::Result<()> {
        let rows = to_log2_rows(&self.fine);
        let Some(first) = rows.iter().position(|&n| n > 0) else {
            return writeln!(out, "     (no samples)");
        };
        let last = rows.iter().rposition(|&n| n > 0).unwrap_or(first);
        let peak = rows.iter().copied().max().unwrap_or(1).max(1);
        let width = row_high(last).to_string().len().max(5);
        writeln!(
            out,
            "{unit:>column$} : count     distribution",
            column = width * 2 + 4
        )?;
        for (row, &n) in rows.iter().enumerate().take(last + 1).skip(first) {
            let stars = ((n * 40) / peak) as usize;
            writeln!(
                out,
                "{:>width$} -> {:<width$} : {:<9} |{:<40}|",
                row_low(row),
                row_high(row),
                n,
                "*".repeat(stars),
            )?;
        }
        Ok(())
    }
}

/// The power-of-two row of `value`: 0 for 0, else 1 + floor(log2(value)).
pub fn log2_row(value: u64) -> usize {
    (64 - value.leading_zeros()) as usize
}

/// Smallest value of row `row`.
pub fn row_low(row: usize) -> u64 {
    match row {
        0 => 0,
        r => 1u64 << (r - 1),
    }
}

/// Largest value of row `row`.
pub fn row_high(row: usize) -> u64 {
    match row {
        0 => 0,
        64.. => u64::MAX,
        r => (1u64 << r) - 1,
    }
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
    use ebpf_tool_common::hist_bucket;

    use super::*;

    /// Slots for one CPU holding `values`, as the kernel would fill them.
    fn slots(values: &[u64]) -> Vec<u64> {
        let mut s = vec![0; HIST_SLOTS];
        for &v in values {
            s[hist_bucket(v)] += 1;
            s[HIST_COUNT] += 1;
            s[HIST_SUM] += v;
            s[HIST_MIN] = s[HIST_MIN].max(!v);
            s[HIST_MAX] = s[HIST_MAX].max(v);
        }
        s
    }

    #[test]
    fn buckets_are_sixteen_per_power_of_two() {
        for v in 0..16 {
            assert_eq!(hist_bucket(v), v as usize);
        }
        assert_eq!(hist_bucket(16), 16);
        assert_eq!(hist_bucket(31), 31);
        assert_eq!(hist_bucket(32), 32);
        assert_eq!(hist_bucket(33), 32, "32..=33 share a bucket of width 2");
        assert_eq!(hist_bucket(u64::MAX), HIST_BUCKETS - 1);
        let mut next = 0u64;
        for b in 0..HIST_BUCKETS {
            let (low, high) = hist_bucket_range(b);
            assert_eq!(low, next, "buckets tile the values: {b}");
            assert_eq!((hist_bucket(low), hist_bucket(high)), (b, b));
            if b >= 16 {
                // At most a sixteenth of its value wide.
                assert!((high - low + 1) * 16 <= low, "{b}: {low}..={high}");
            }
            next = high.wrapping_add(1);
        }
        assert_eq!(next, 0, "the last bucket ends at u64::MAX");
    }

    #[test]
    fn percentiles_land_within_a_few_percent() {
        // 50.1-50.3 ms: log2 buckets said 67 ms for these.
        let samples: Vec<u64> = (0..100).map(|i| 50_100_000 + i * 2_000).collect();
        let hist = Histogram::from_per_cpu_slots(&[slots(&samples)]);
        for p in [50.0, 90.0, 99.0] {
            let got = hist.percentile(p) as f64;
            assert!((got / 50_200_000.0 - 1.0).abs() < 0.01, "p{p} = {got}");
        }
        // Spread over a decade: within 3% of the exact rank's value.
        let samples: Vec<u64> = (1..=1000).map(|i| i * 997).collect();
        let hist = Histogram::from_per_cpu_slots(&[slots(&samples[..500]), slots(&samples[500..])]);
        for p in [10.0, 50.0, 90.0, 99.0] {
            let exact = samples[(p as usize * 10) - 1] as f64;
            let got = hist.percentile(p) as f64;
            assert!((got / exact - 1.0).abs() < 0.03, "p{p}: {got} vs {exact}");
        }
        assert_eq!((hist.count, hist.min, hist.max), (1000, 997, 997_000));
        assert_eq!(hist.percentile(100.0), 997_000);
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
