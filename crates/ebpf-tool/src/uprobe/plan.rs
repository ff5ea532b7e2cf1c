//! The flags of `ebpf-tool uprobe` as a validated request: what to trace, what the
//! kernel computes on each hit, what to print. Pure data and decisions: no file is
//! opened and no environment read here (`targets` resolves names, `kernel_config` turns
//! both into the kernel's settings), so every rule is a unit test away.

use std::{num::NonZeroU32, path::PathBuf, time::Duration};

use ebpf_tool_common::COMM_LEN;

use crate::{
    cli::{GroupBy, UprobeArgs},
    output::EventFormat,
    values::{Extras, ValueError, ValueLayout, request::ValueRequest},
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error(transparent)]
    Values(#[from] ValueError),
    #[error("--comm '{comm}' is {len} bytes; process names (comm) are at most {} bytes", COMM_LEN - 1)]
    CommTooLong { comm: String, len: usize },
    #[error("--interval needs something to report: --count, --hist or --latency")]
    IntervalWithoutTable,
    #[error("--by groups what is counted or timed: it needs --count, --latency or --hist")]
    GroupWithoutTable,
    #[error("--pid 0 is not a process")]
    NoPid,
    #[error(
        "--ret-sites and --uretprobes say how returns are probed: they need --ret or --latency"
    )]
    ReturnProbesWithoutReturns,
    #[error("-c '{command}' does not split into words: {why}")]
    BadCommand { command: String, why: &'static str },
}

/// Where `--stacks` results go besides the terminal; created (never overwritten) only
/// once the probes are attached, so a run that fails leaves no empty file behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StackFiles {
    pub folded: Option<PathBuf>,
    pub flamegraph: Option<PathBuf>,
    /// How stacks are walked.
    pub unwind: crate::cli::Unwind,
    /// Stack bytes copied per call for DWARF unwinding.
    pub stack_bytes: u32,
}

/// Which tasks a run looks at, filtered in the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    pub pid: Option<NonZeroU32>,
    pub tid: Option<u32>,
    pub uid: Option<u32>,
    /// NUL-padded, as the kernel keeps a comm.
    pub comm: Option<[u8; COMM_LEN]>,
}

/// How a run sees returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnProbes {
    /// Return sites where a uretprobe is unsafe (Go, code that unwinds), else uretprobes.
    Auto,
    /// Probes on the return instructions (`--ret-sites`).
    Sites,
    /// Uretprobes, even in code that unwinds (`--uretprobes`).
    Uretprobes,
}

/// A validated `ebpf-tool uprobe` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// BINARY as the user wrote it.
    pub binary_arg: String,
    /// FUNCTION as the user wrote it, space-separated when several.
    pub function_arg: String,
    /// Each FUNCTION.
    pub function_args: Vec<String>,
    pub tasks: TaskFilter,
    /// `None` runs until Ctrl+C or SIGTERM.
    pub duration: Option<Duration>,
    pub interval: Option<Duration>,
    /// What each event line shows.
    pub format: EventFormat,
    /// The filter and the histogram's value.
    pub extras: Extras,
    /// One line per call (no aggregate mode asked for).
    pub per_event: bool,
    /// Also probe the returns (`--ret`, `--latency`).
    pub returns: bool,
    /// How returns are seen.
    pub return_probes: ReturnProbes,
    pub latency: bool,
    /// `--count`: calls counted in the kernel.
    pub count: bool,
    /// What counts and histograms are grouped by (`--by`).
    pub group_by: GroupBy,
    /// `--stacks`, with its output files.
    pub stacks: Option<StackFiles>,
    pub json: bool,
    /// Attach the do-nothing programs (benchmark floor).
    pub noop: bool,
    /// `-c CMD` / `-- CMD ARGS`: the command to run and trace, as words.
    pub command: Option<Vec<String>>,
    /// `ebpf-tool usdt`: FUNCTIONs are USDT probes.
    pub usdt: bool,
    /// `--metrics`: where Prometheus scrapes the run.
    pub metrics: Option<std::net::SocketAddr>,
    /// Where separate debug files are looked for first (`--debuginfo`).
    pub debug_root: PathBuf,
}

/// The command of `-c 'CMD ARGS'` (split as a shell splits words, without expanding
/// anything) or of `-- CMD ARGS`.
fn command_words(args: &UprobeArgs) -> Result<Option<Vec<String>>, PlanError> {
    if !args.command_args.is_empty() {
        return Ok(Some(args.command_args.clone()));
    }
    let Some(command) = &args.command else {
        return Ok(None);
    };
    let bad = |why| PlanError::BadCommand {
        command: command.clone(),
        why,
    };
    let words =
        shlex::split(command).ok_or_else(|| bad("unbalanced quotes or a trailing backslash"))?;
    if words.is_empty() {
        return Err(bad("it is empty"));
    }
    Ok(Some(words))
}

impl Plan {
    pub fn from_args(args: &UprobeArgs) -> Result<Self, PlanError> {
        if args.interval.is_some() && !(args.count || args.hist.is_some() || args.latency) {
            return Err(PlanError::IntervalWithoutTable);
        }
        if args.by != GroupBy::Func && !(args.count || args.latency || args.hist.is_some()) {
            return Err(PlanError::GroupWithoutTable);
        }
        if (args.ret_sites || args.uretprobes) && !(args.ret.is_some() || args.latency) {
            return Err(PlanError::ReturnProbesWithoutReturns);
        }
        let comm = match &args.comm {
            Some(comm) if comm.len() >= COMM_LEN => {
                return Err(PlanError::CommTooLong {
                    comm: comm.clone(),
                    len: comm.len(),
                });
            }
            Some(comm) => {
                let mut padded = [0u8; COMM_LEN];
                padded[..comm.len()].copy_from_slice(comm.as_bytes());
                Some(padded)
            }
            None => None,
        };
        let mut layout = ValueLayout::new(&args.args)?;
        if let Some(ty) = args.ret {
            layout = layout.with_return(ty)?;
        }
        let aggregate_only = args.metrics.is_some()
            || args.count
            || args.hist.is_some()
            || args.stacks
            || args.quiet
            || args.noop;
        Ok(Plan {
            binary_arg: args.binary.clone(),
            function_arg: args.functions.join(" "),
            function_args: args.functions.clone(),
            tasks: TaskFilter {
                pid: match args.pid {
                    Some(pid) => Some(NonZeroU32::new(pid).ok_or(PlanError::NoPid)?),
                    None => None,
                },
                tid: args.tid,
                uid: args.uid,
                comm,
            },
            duration: (args.duration > 0).then(|| Duration::from_secs(args.duration)),
            interval: args.interval.map(Duration::from_secs),
            format: EventFormat {
                usdt: false,
                layout,
                latency: args.latency,
            },
            extras: Extras {
                group: match &args.by {
                    GroupBy::Value(value) => Some(value.clone()),
                    _ => None,
                },
                filter: args.filter.clone(),
                hist: args.hist.clone(),
            },
            per_event: !aggregate_only,
            returns: args.ret.is_some() || args.latency,
            return_probes: match (args.ret_sites, args.uretprobes) {
                (true, _) => ReturnProbes::Sites,
                (_, true) => ReturnProbes::Uretprobes,
                _ => ReturnProbes::Auto,
            },
            latency: args.latency,
            // An exporter with no table asked for exports counts.
            count: args.count || (args.metrics.is_some() && !args.latency && args.hist.is_none()),
            metrics: args.metrics,
            group_by: args.by.clone(),
            stacks: args.stacks.then(|| StackFiles {
                folded: args.folded.clone(),
                flamegraph: args.flamegraph.clone(),
                unwind: args.unwind,
                stack_bytes: args.stack_bytes,
            }),
            json: args.json,
            noop: args.noop,
            command: command_words(args)?,
            usdt: false,
            debug_root: args
                .debuginfo
                .clone()
                .unwrap_or_else(|| PathBuf::from(crate::symbols::DEBUG_ROOT)),
        })
    }

    /// The name a histogram of `--hist` is printed under.
    pub fn hist_key(&self) -> Option<String> {
        self.extras.hist.as_ref().map(ValueRequest::key)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    fn plan(line: &str) -> Result<Plan, PlanError> {
        let cli = Cli::try_parse_from(line.split_whitespace()).unwrap();
        let (Command::Uprobe(args) | Command::Usdt(args)) = cli.command else {
            panic!("not a tracing command: {line}")
        };
        Plan::from_args(&args)
    }

    #[test]
    fn modes_decide_what_is_printed_and_probed() {
        let p = plan("ebpf-tool uprobe libc malloc").unwrap();
        assert!(p.per_event && !p.returns && !p.count);
        assert_eq!(p.format.layout.values.len(), 1, "arg0 by default");
        let p = plan("ebpf-tool uprobe libc malloc --latency -q").unwrap();
        assert!(!p.per_event && p.returns && p.latency);
        let p = plan("ebpf-tool uprobe libc malloc --count --by comm").unwrap();
        assert_eq!((p.count, &p.group_by), (true, &GroupBy::Comm));
        assert!(!p.per_event);
        let p = plan("ebpf-tool uprobe libc open --latency --by arg0:str").unwrap();
        assert!(matches!(&p.group_by, GroupBy::Value(v) if v.key() == "arg0"));
        assert!(p.extras.group.is_some());
        assert_eq!(
            plan("ebpf-tool uprobe libc open --by arg0"),
            Err(PlanError::GroupWithoutTable)
        );
        let p = plan("ebpf-tool uprobe libc read -a 0,1:str --filter arg2>=4096 --hist 2").unwrap();
        assert_eq!(p.format.layout.slots, 1);
        assert_eq!(p.hist_key().as_deref(), Some("arg2"));
        assert!(p.extras.filter.is_some());
        assert!(!p.per_event, "--hist is an aggregate");
    }

    #[test]
    fn bad_combinations_are_refused() {
        assert_eq!(
            plan("ebpf-tool uprobe libc malloc --interval 1"),
            Err(PlanError::IntervalWithoutTable)
        );
        assert!(matches!(
            plan("ebpf-tool uprobe libc malloc --comm abcdefghijklmnopq"),
            Err(PlanError::CommTooLong { len: 17, .. })
        ));
        assert!(matches!(
            plan("ebpf-tool uprobe libc f -a 0:str,1:str,2:str"),
            Err(PlanError::Values(ValueError::TooManySlots { got: 3 }))
        ));
    }

    #[test]
    fn the_comm_filter_is_padded_as_the_kernel_keeps_it() {
        let p = plan("ebpf-tool uprobe libc malloc --comm bash").unwrap();
        let comm = p.tasks.comm.unwrap();
        assert_eq!(&comm[..5], b"bash\0");
        assert_eq!(comm.len(), COMM_LEN);
    }
}
