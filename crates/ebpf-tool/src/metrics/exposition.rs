//! A run's tables as Prometheus metrics, built from the in-kernel maps at scrape time:
//! calls as counters, latency and argument histograms with their power-of-two bounds
//! (seconds for latency), what could not be counted, and the tool's own cost. Encoded by
//! prometheus-client in the Prometheus text format (`promtool check metrics` accepts it).

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _, NoLabelSet},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::output::{
    hist::{Histogram, to_log2_rows},
    printer::{HistOf, Tables},
    table::Group,
};

/// Labels of one series, in order.
type Labels = Vec<(String, String)>;

/// Everything one scrape exposes, copied out of the run.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub calls: Vec<(Labels, u64)>,
    pub latency: Vec<(Labels, Histogram)>,
    pub values: Vec<(Labels, Histogram)>,
    /// `(cause, count)`: records and calls that could not be recorded.
    pub lost: Vec<(&'static str, u64)>,
    pub probes_attached: u64,
    /// The tool's own resident memory and CPU time.
    pub resident_bytes: u64,
    pub cpu_seconds: f64,
}

impl Snapshot {
    /// The series of `tables` for the traced `binary`.
    pub fn of_tables(binary: &str, tables: &Tables) -> Snapshot {
        let base = |func: &str| -> Labels {
            vec![
                ("binary".to_owned(), binary.to_owned()),
                ("func".to_owned(), func.to_owned()),
            ]
        };
        let mut snapshot = Snapshot::default();
        if let Some((group_key, rows)) = &tables.counts {
            for row in rows {
                let mut labels = base(&row.func);
                if let (Some(key), Some(group)) = (group_key, &row.group) {
                    labels.push((key.clone(), label_value(group)));
                }
                snapshot.calls.push((labels, row.count));
            }
        }
        for table in &tables.hists {
            let mut labels = base(&table.func);
            if let HistOf::Value(arg) = &table.of {
                labels.push(("arg".to_owned(), arg.clone()));
            }
            if let Some((key, group)) = &table.group {
                labels.push((key.clone(), label_value(group)));
            }
            match table.of {
                HistOf::Latency => snapshot.latency.push((labels, table.hist.clone())),
                HistOf::Value(_) => snapshot.values.push((labels, table.hist.clone())),
            }
        }
        snapshot
    }

    /// The exposition text.
    pub fn encode(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// A group's value as a label: numbers as digits, strings as they are.
fn label_value(group: &Group) -> String {
    match group.json() {
        serde_json::Value::String(text) => text,
        serde_json::Value::Null => "(unreadable)".to_owned(),
        other => other.to_string(),
    }
}

/// `(upper bound, count)` per power-of-two row (the encoder adds them up): row 0 holds 0,
/// row b holds `[2^(b-1), 2^b)`, so its bound is `2^b - 1`, divided by `per_unit` (1e9
/// to show nanoseconds as seconds; a division prints shorter than a product).
fn buckets(hist: &Histogram, per_unit: f64) -> Vec<(f64, u64)> {
    let rows = to_log2_rows(&hist.fine);
    let last = rows.iter().rposition(|&n| n > 0).unwrap_or(0);
    let mut out: Vec<(f64, u64)> = rows[..=last]
        .iter()
        .enumerate()
        .map(|(b, &n)| {
            let bound = if b == 0 {
                0.0
            } else {
                (2f64.powi(b as i32) - 1.0) / per_unit
            };
            (bound, n)
        })
        .collect();
    out.push((f64::INFINITY, 0));
    out
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if !self.calls.is_empty() {
            let mut family = encoder.encode_descriptor(
                "ebpf_tool_calls",
                "Calls counted in the kernel (--count)",
                None,
                MetricType::Counter,
            )?;
            for (labels, count) in &self.calls {
                ConstCounter::new(*count).encode(family.encode_family(labels)?)?;
            }
        }
        for (name, help, series, per_unit) in [
            (
                "ebpf_tool_latency_seconds",
                "Call latency, entry to return (--latency)",
                &self.latency,
                1e9,
            ),
            (
                "ebpf_tool_arg_value",
                "An argument's values (--hist)",
                &self.values,
                1.0,
            ),
        ] {
            if series.is_empty() {
                continue;
            }
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for (labels, hist) in series {
                family
                    .encode_family(labels)?
                    .encode_histogram::<NoLabelSet>(
                        hist.sum as f64 / per_unit,
                        hist.count,
                        &buckets(hist, per_unit),
                        None,
                    )?;
            }
        }
        let mut lost = encoder.encode_descriptor(
            "ebpf_tool_lost_events",
            "Records and calls that could not be recorded, by cause",
            None,
            MetricType::Counter,
        )?;
        for (cause, count) in &self.lost {
            let labels = [("cause", *cause)];
            ConstCounter::new(*count).encode(lost.encode_family(&labels)?)?;
        }
        ConstGauge::new(self.probes_attached as i64).encode(encoder.encode_descriptor(
            "ebpf_tool_probes_attached",
            "Probes attached",
            None,
            MetricType::Gauge,
        )?)?;
        ConstGauge::new(self.resident_bytes as i64).encode(encoder.encode_descriptor(
            "process_resident_memory_bytes",
            "Resident memory of ebpf-tool",
            None,
            MetricType::Gauge,
        )?)?;
        ConstCounter::new(self.cpu_seconds).encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "CPU time ebpf-tool has used",
            None,
            MetricType::Counter,
        )?)?;
        Ok(())
    }
}

/// This process's resident memory (bytes) and CPU time (seconds), from /proc.
pub fn own_usage() -> (u64, f64) {
    let page = 4096u64;
    let resident = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page);
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = after.split_whitespace().collect();
            let user: f64 = fields.get(11)?.parse().ok()?;
            let system: f64 = fields.get(12)?.parse().ok()?;
            Some((user + system) / ticks)
        })
        .unwrap_or(0.0);
    (resident, cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_encode_with_help_and_type() {
        let mut hist = Histogram {
            fine: vec![0; ebpf_tool_common::HIST_BUCKETS],
            count: 0,
            sum: 0,
            min: 0,
            max: 0,
        };
        for v in [1u64, 3, 3] {
            hist.fine[ebpf_tool_common::hist_bucket(v)] += 1;
            hist.count += 1;
            hist.sum += v;
        }
        let snapshot = Snapshot {
            calls: vec![(vec![("func".into(), "malloc".into())], 37)],
            values: vec![(vec![("func".into(), "f".into())], hist)],
            lost: vec![("ringbuf_full", 2)],
            probes_attached: 1,
            ..Default::default()
        };
        let text = snapshot.encode();
        assert!(
            text.contains("# TYPE ebpf_tool_calls_total counter"),
            "{text}"
        );
        assert!(
            text.contains("ebpf_tool_calls_total{func=\"malloc\"} 37"),
            "{text}"
        );
        assert!(
            text.contains("ebpf_tool_arg_value_bucket{func=\"f\",le=\"1\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ebpf_tool_arg_value_bucket{func=\"f\",le=\"3\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("ebpf_tool_arg_value_bucket{func=\"f\",le=\"+Inf\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("ebpf_tool_arg_value_count{func=\"f\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("ebpf_tool_lost_events_total{cause=\"ringbuf_full\"} 2"),
            "{text}"
        );
    }
}
