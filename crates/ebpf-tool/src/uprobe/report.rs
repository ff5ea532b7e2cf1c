//! The kernel's aggregates as the plain data the printer renders: the count table and
//! histograms of this run, and the stack files (`--folded`, `--flamegraph`).

use std::{
    fs::{File, OpenOptions},
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use ebpf_tool_common::{HIST_ARG, HIST_LATENCY};

use super::{Plan, Run};
use crate::{
    cli::CountBy,
    events::comm_bytes,
    loader::{Aggregates, LoadError},
    output::{
        hist::Histogram,
        printer::{HistOf, HistTable, Tables},
        stacks::{self, StackRow},
        table::{self, CountRow},
    },
};

/// The count table and histograms, as they stand now (cumulative since attach).
pub fn tables(run: &Run, aggregates: &Aggregates) -> Result<Tables, LoadError> {
    let (plan, labels) = (&run.plan, &run.targets.labels);
    let mut tables = Tables::default();
    if let Some(count_by) = plan.count_by {
        let mut rows = count_rows(labels, aggregates, count_by)?;
        table::sort_rows(&mut rows);
        let group = match count_by {
            CountBy::Func => None,
            CountBy::Pid => Some("pid"),
            CountBy::Tid => Some("tid"),
            CountBy::Comm => Some("comm"),
        };
        tables.counts = Some((group, rows));
    }
    let show_empty = labels.len() == 1;
    for (probe, label) in labels.iter().enumerate() {
        if let Some(key) = plan.hist_key() {
            tables.hists.push(HistTable {
                func: label.clone(),
                of: HistOf::Value(key),
                hist: Histogram::from_per_cpu_slots(&aggregates.hist_slots(probe, HIST_ARG)?),
                show_empty,
            });
        }
        if plan.latency {
            tables.hists.push(HistTable {
                func: label.clone(),
                of: HistOf::Latency,
                hist: Histogram::from_per_cpu_slots(&aggregates.hist_slots(probe, HIST_LATENCY)?),
                show_empty,
            });
        }
    }
    Ok(tables)
}

fn count_rows(
    labels: &[String],
    aggregates: &Aggregates,
    count_by: CountBy,
) -> Result<Vec<CountRow>, LoadError> {
    let name = |probe: u32| {
        labels
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
            group: Some(match count_by {
                CountBy::Comm => String::from_utf8_lossy(comm_bytes(&key.comm)).into_owned(),
                _ => key.id.to_string(),
            }),
            count,
        })
        .collect())
}

#[derive(Debug, thiserror::Error)]
pub enum OutputFileError {
    #[error("{path} already exists; remove it or choose another name (it is never overwritten)")]
    Exists { path: PathBuf },
    #[error("cannot create {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
}

/// Fails when an output file of the plan already exists: checked before attaching, so
/// the mistake costs no probe.
pub fn check_output_files(plan: &Plan) -> Result<(), OutputFileError> {
    for path in plan
        .stacks
        .iter()
        .flat_map(|f| [&f.folded, &f.flamegraph])
        .flatten()
    {
        if path.symlink_metadata().is_ok() {
            return Err(OutputFileError::Exists { path: path.clone() });
        }
    }
    Ok(())
}

/// The output files, created now that the run has started: never following a planted
/// symlink (O_EXCL fails on any existing name) and never clobbering.
pub struct StackFileHandles {
    folded: Option<(PathBuf, File)>,
    flamegraph: Option<(PathBuf, File)>,
}

pub fn create_output_files(plan: &Plan) -> Result<StackFileHandles, OutputFileError> {
    let files = plan.stacks.as_ref();
    let create = |path: &Option<PathBuf>| path.as_deref().map(create_new).transpose();
    Ok(StackFileHandles {
        folded: create(&files.and_then(|f| f.folded.clone()))?,
        flamegraph: create(&files.and_then(|f| f.flamegraph.clone()))?,
    })
}

fn create_new(path: &Path) -> Result<(PathBuf, File), OutputFileError> {
    match OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(file) => Ok((path.to_owned(), file)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(OutputFileError::Exists {
            path: path.to_owned(),
        }),
        Err(source) => Err(OutputFileError::Create {
            path: path.to_owned(),
            source,
        }),
    }
}

impl StackFileHandles {
    /// Writes the folded stacks and the flame graph; returns what was written where.
    pub fn write(self, run: &Run, rows: &[StackRow]) -> io::Result<Vec<String>> {
        let mut wrote = Vec::new();
        if let Some((path, file)) = self.folded {
            let mut writer = io::BufWriter::new(file);
            for line in stacks::folded_lines(rows) {
                writeln!(writer, "{line}")?;
            }
            writer.flush()?;
            wrote.push(format!(
                "ebpf-tool: wrote folded stacks to {}",
                path.display()
            ));
        }
        if let Some((path, file)) = self.flamegraph {
            let title = format!(
                "{} in {}",
                run.plan.function_arg,
                run.targets.binary.display()
            );
            stacks::write_flamegraph(io::BufWriter::new(file), rows, &title)?;
            wrote.push(format!(
                "ebpf-tool: wrote flame graph to {}",
                path.display()
            ));
        }
        Ok(wrote)
    }
}
