//! The kernel's aggregates as the plain data the printer renders: the count table and
//! histograms of this run, and the stack files (`--folded`, `--flamegraph`).

use std::{
    fs::{File, OpenOptions},
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use ebpf_tool_common::{GROUP_UNREADABLE_MARK, GroupKey, HIST_ARG, HIST_LATENCY};

use super::{Plan, Run};
use crate::{
    cli::GroupBy,
    events::until_nul,
    loader::{Aggregates, LoadError},
    output::{
        hist::Histogram,
        printer::{HistOf, HistTable, Tables},
        stacks::{self, StackRow},
        table::{self, CountRow, Group},
    },
    values::request::ValueType,
};

/// The count table and histograms, as they stand now (cumulative since attach).
pub fn tables(run: &Run, aggregates: &Aggregates) -> Result<Tables, LoadError> {
    let (plan, labels) = (&run.plan, &run.targets.labels);
    let name = |probe: u32| {
        labels
            .get(probe as usize)
            .cloned()
            .unwrap_or_else(|| format!("probe{probe}"))
    };
    let mut tables = Tables::default();
    if plan.count {
        let mut rows = count_rows(&plan.group_by, aggregates, &name)?;
        table::merge_rows(&mut rows);
        table::sort_rows(&mut rows);
        tables.counts = Some((group_name(&plan.group_by), rows));
    }
    if plan.group_by != GroupBy::Func {
        // Histograms per group: as many as the groups seen, sorted by function and group.
        let key = group_name(&plan.group_by).unwrap_or_default();
        let mut grouped: Vec<HistTable> = aggregates
            .group_hists()?
            .into_iter()
            .map(|(group, per_cpu)| HistTable {
                func: name(group.probe_id),
                group: Some((key.clone(), group_of(&plan.group_by, &group))),
                of: if group.which as usize == HIST_LATENCY {
                    HistOf::Latency
                } else {
                    HistOf::Value(plan.hist_key().unwrap_or_default())
                },
                hist: Histogram::from_per_cpu_slots(&per_cpu),
                show_empty: false,
            })
            .collect();
        grouped.sort_by(|a, b| (&a.func, &a.group).cmp(&(&b.func, &b.group)));
        tables.hists = merge_hists(grouped);
        return Ok(tables);
    }
    // One function (or the sites of one USDT probe): its table shows even when empty.
    let show_empty = labels.windows(2).all(|w| w[0] == w[1]);
    for (probe, label) in labels.iter().enumerate() {
        if let Some(key) = plan.hist_key() {
            tables.hists.push(HistTable {
                func: label.clone(),
                group: None,
                of: HistOf::Value(key),
                hist: Histogram::from_per_cpu_slots(&aggregates.hist_slots(probe, HIST_ARG)?),
                show_empty,
            });
        }
        if plan.latency {
            tables.hists.push(HistTable {
                func: label.clone(),
                group: None,
                of: HistOf::Latency,
                hist: Histogram::from_per_cpu_slots(&aggregates.hist_slots(probe, HIST_LATENCY)?),
                show_empty,
            });
        }
    }
    tables.hists = merge_hists(std::mem::take(&mut tables.hists));
    Ok(tables)
}

/// Histograms of one name, group and value added into one (the sites of a USDT probe),
/// in the order first seen.
fn merge_hists(tables: Vec<HistTable>) -> Vec<HistTable> {
    let mut merged: Vec<HistTable> = Vec::with_capacity(tables.len());
    for table in tables {
        match merged
            .iter_mut()
            .find(|m| m.func == table.func && m.group == table.group && m.of == table.of)
        {
            Some(kept) => kept.hist.add(&table.hist),
            None => merged.push(table),
        }
    }
    merged
}

/// The name a group column or histogram title uses: `pid`, `comm`, `arg0`.
fn group_name(group_by: &GroupBy) -> Option<String> {
    Some(match group_by {
        GroupBy::Func => return None,
        GroupBy::Pid => "pid".into(),
        GroupBy::Tid => "tid".into(),
        GroupBy::Comm => "comm".into(),
        GroupBy::Value(value) => value.key(),
    })
}

/// A kernel group key as shown.
fn group_of(group_by: &GroupBy, key: &GroupKey) -> Group {
    if key.text[GROUP_UNREADABLE_MARK] != 0 {
        return Group::Unreadable;
    }
    match group_by {
        GroupBy::Func => Group::Number(String::new()),
        GroupBy::Pid | GroupBy::Tid => Group::Number(key.value.to_string()),
        GroupBy::Comm => Group::Name(until_nul(&key.text[..16]).to_vec()),
        GroupBy::Value(value) => match value.ty {
            ValueType::Str => Group::Text(until_nul(&key.text).to_vec()),
            ValueType::Hex => Group::Number(format!("{:#x}", key.value)),
            ValueType::Int { bytes, signed } => Group::Number(int_text(key.value, bytes, signed)),
            _ => Group::Number(key.value.to_string()),
        },
    }
}

/// An integer of `bytes` bytes as its type prints it.
fn int_text(raw: u64, bytes: u8, signed: bool) -> String {
    let bits = 8 * u32::from(bytes);
    if !signed {
        return raw.to_string();
    }
    // Sign-extend from the value's width.
    let shift = 64 - bits;
    (((raw << shift) as i64) >> shift).to_string()
}

fn count_rows(
    group_by: &GroupBy,
    aggregates: &Aggregates,
    name: &impl Fn(u32) -> String,
) -> Result<Vec<CountRow>, LoadError> {
    if *group_by == GroupBy::Func {
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
            group: Some(group_of(group_by, &key)),
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

/// What a scrape of `--metrics` gets: the tables as they are now, what could not be
/// recorded, and the tool's own cost.
pub fn metrics_text(run: &Run, aggregates: &Aggregates) -> Result<String, LoadError> {
    let tables = tables(run, aggregates)?;
    let mut snapshot =
        crate::metrics::Snapshot::of_tables(&run.targets.binary.to_string_lossy(), &tables);
    let losses = aggregates.losses()?;
    snapshot.lost = vec![
        ("ringbuf_full", losses.ringbuf_full),
        ("counts_full", losses.counts_full),
        ("stacks_failed", losses.stacks_failed),
        ("return_unpaired", losses.unpaired),
        ("value_unreadable", losses.unreadable),
        ("never_returned", losses.abandoned),
    ];
    snapshot.probes_attached = run.targets.functions.len() as u64;
    (snapshot.resident_bytes, snapshot.cpu_seconds) = crate::metrics::own_usage();
    Ok(snapshot.encode())
}
