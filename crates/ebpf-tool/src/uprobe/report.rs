//! Turns the kernel's aggregates into the tables a run prints (counts, histograms,
//! stacks) and the closing summary, as text or JSON.

use std::io::{self, Write};

use ebpf_tool_common::{HIST_ARG, HIST_LATENCY, by};

use super::Plan;
use crate::{
    cli::CountBy,
    events::comm_bytes,
    loader::{Aggregates, LoadError, Losses},
    output::{
        hist::{Histogram, human_ns},
        json::{self, Summary},
        stacks::{self, StackRow},
        table::{self, CountRow},
    },
};

/// How many stacks the text report lists.
const TOP_STACKS: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Kernel(#[from] LoadError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The count table and histograms, as they stand now (cumulative since attach).
pub fn write_tables(
    out: &mut impl Write,
    plan: &Plan,
    aggregates: &Aggregates,
) -> Result<(), ReportError> {
    if let Some(count_by) = plan.count_by {
        let mut rows = count_rows(plan, aggregates, count_by)?;
        table::sort_rows(&mut rows);
        let group = match count_by {
            CountBy::Func => None,
            CountBy::Pid => Some("pid"),
            CountBy::Tid => Some("tid"),
            CountBy::Comm => Some("comm"),
        };
        if plan.json {
            json::write_counts(out, group, &rows)?;
        } else {
            table::write_text(out, group.map(str::to_uppercase).as_deref(), &rows)?;
        }
    }
    for (probe, label) in plan.labels.iter().enumerate() {
        if let Some(index) = plan.hist_arg {
            let hist = Histogram::from_per_cpu_slots(&aggregates.hist_slots(probe, HIST_ARG)?);
            let of = format!("arg{index}");
            if plan.json {
                json::write_hist(out, label, &of, &hist)?;
            } else if hist.count > 0 || plan.functions.len() == 1 {
                writeln!(out, "\n{label} {of}: {} calls", hist.count)?;
                hist.write_text(out, "value")?;
            }
        }
        if plan.latency {
            let hist = Histogram::from_per_cpu_slots(&aggregates.hist_slots(probe, HIST_LATENCY)?);
            if plan.json {
                json::write_hist(out, label, "latency_ns", &hist)?;
            } else if hist.count > 0 || plan.functions.len() == 1 {
                writeln!(
                    out,
                    "\n{label} latency: count={} min={} avg={} p50={} p99={} max={} (percentiles estimated from log2 buckets)",
                    hist.count,
                    human_ns(hist.min),
                    human_ns(hist.average()),
                    human_ns(hist.percentile(50.0)),
                    human_ns(hist.percentile(99.0)),
                    human_ns(hist.max),
                )?;
                hist.write_text(out, "ns")?;
            }
        }
    }
    Ok(())
}

fn count_rows(
    plan: &Plan,
    aggregates: &Aggregates,
    count_by: CountBy,
) -> Result<Vec<CountRow>, ReportError> {
    let name = |probe: u32| {
        plan.labels
            .get(probe as usize)
            .cloned()
            .unwrap_or_else(|| format!("probe{probe}"))
    };
    if count_by == CountBy::Func {
        return Ok(aggregates
            .func_counts()?
            .into_iter()
            .enumerate()
            .filter(|(_, count)| *count > 0)
            .map(|(probe, count)| CountRow {
                func: name(probe as u32),
                group: None,
                count,
            })
            .collect());
    }
    Ok(aggregates
        .counts()?
        .into_iter()
        .map(|(key, count)| CountRow {
            func: name(key.probe_id),
            group: Some(match plan.config.count_by {
                by::COMM => String::from_utf8_lossy(comm_bytes(&key.comm)).into_owned(),
                _ => key.id.to_string(),
            }),
            count,
        })
        .collect())
}

/// The stacks report: top stacks on `out`, and the folded / flame graph files.
pub fn write_stacks(
    out: &mut impl Write,
    plan: &mut Plan,
    rows: Vec<StackRow>,
) -> Result<(), ReportError> {
    let rows = stacks::merge_and_sort(rows);
    if plan.json {
        json::write_stacks(out, &rows)?;
    } else {
        let total: u64 = rows.iter().map(|r| r.count).sum();
        writeln!(
            out,
            "\n{} distinct stacks, {total} calls; most frequent first:\n",
            rows.len()
        )?;
        stacks::write_text(out, &rows, TOP_STACKS)?;
    }
    let Some(files) = plan.stacks.as_mut() else {
        return Ok(());
    };
    if let Some((path, file)) = files.folded.as_mut() {
        let mut writer = io::BufWriter::new(file);
        for line in stacks::folded_lines(&rows) {
            writeln!(writer, "{line}")?;
        }
        writer.flush()?;
        eprintln!("ebpf-tool: wrote folded stacks to {}", path.display());
    }
    if let Some((path, file)) = files.flamegraph.as_mut() {
        let title = format!("{} in {}", plan.function_arg, plan.binary.display());
        stacks::write_flamegraph(io::BufWriter::new(file), &rows, &title)?;
        eprintln!("ebpf-tool: wrote flame graph to {}", path.display());
    }
    Ok(())
}

/// The one-line summary: on stdout as JSON, or on stderr as text (stdout stays parseable).
pub fn write_summary(
    out: &mut impl Write,
    plan: &Plan,
    summary: &Summary,
    losses: &Losses,
) -> io::Result<()> {
    if plan.json {
        return json::write_summary(out, summary);
    }
    let mut line = format!(
        "ebpf-tool: {} events seen, {} printed, {} lost",
        summary.seen, summary.printed, summary.lost
    );
    if losses.counts_full > 0 {
        line.push_str(&format!(
            ", {} calls not counted (count table full)",
            losses.counts_full
        ));
    }
    if losses.stacks_failed > 0 {
        line.push_str(&format!(", {} stacks not captured", losses.stacks_failed));
    }
    if losses.unreadable > 0 {
        line.push_str(&format!(
            ", {} string arguments unreadable",
            losses.unreadable
        ));
    }
    if losses.unpaired > 0 {
        line.push_str(&format!(
            ", {} returns without a seen entry",
            losses.unpaired
        ));
    }
    eprintln!("{line}");
    if summary.lost > 0 {
        eprintln!(
            "ebpf-tool: warning: {} calls were not reported because the ring buffer was full",
            summary.lost
        );
    }
    Ok(())
}
