//! Turns the parsed flags into a validated plan: the real file, the resolved functions
//! with their offsets, the kernel `Config`, and what to print. Everything here is checked
//! before the kernel is touched, so a mistake costs no probe.

use std::{
    num::NonZeroU32,
    path::{Path, PathBuf},
    time::Duration,
};

use ebpf_tool_common::{COMM_LEN, Config, MAX_STR_ARGS, by, flags};

use super::filter::{ArgFilter, FilterError};
use crate::{
    cli::{CountBy, UprobeArgs},
    output::{
        EventFormat,
        args::{ArgSpec, ArgSpecError, ArgType},
    },
    symbols::{FunctionSymbol, SymbolError, Symbols},
    target::{self, TargetError},
};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Symbol(#[from] SymbolError),
    #[error("no process with pid {pid}")]
    NoSuchProcess { pid: u32 },
    #[error(transparent)]
    ArgSpec(#[from] ArgSpecError),
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("at most {MAX_STR_ARGS} arguments can be read as strings, got {got}")]
    TooManyStrings { got: usize },
    #[error("--comm '{comm}' is {len} bytes; process names (comm) are at most {} bytes", COMM_LEN - 1)]
    CommTooLong { comm: String, len: usize },
    #[error("--interval needs something to report: --count, --hist or --latency")]
    IntervalWithoutTable,
    #[error(
        "--ret and --latency need probes at function entries; '{label}' is inside its function (a uretprobe there would pair with the wrong call)"
    )]
    ReturnNeedsEntry { label: String },
    #[error(
        "{path} is a Go program: --ret and --latency need uretprobes, which rewrite return addresses on the stack, and Go moves goroutine stacks, which would crash it; trace entries only (arguments, --count, --hist, --stacks)"
    )]
    GoReturnProbes { path: PathBuf },
}

/// Where `--stacks` results go besides the terminal; created (never overwritten) only
/// once the probes are attached, so a run that fails leaves no empty file behind.
#[derive(Debug, Default)]
pub struct StackFiles {
    pub folded: Option<PathBuf>,
    pub flamegraph: Option<PathBuf>,
}

/// What to attach where, what the kernel does on each hit, and what to print.
#[derive(Debug)]
pub struct Plan {
    /// BINARY as the user wrote it, for messages.
    pub binary_arg: String,
    /// FUNCTION as the user wrote it.
    pub function_arg: String,
    /// The real file the probes go on.
    pub binary: PathBuf,
    /// The functions to probe; an event's `probe_id` indexes this list.
    pub functions: Vec<FunctionSymbol>,
    /// Link-time address ranges of the binary's code, for naming stack frames.
    pub text_ranges: Vec<std::ops::Range<u64>>,
    /// What resolving FUNCTION found worth saying (globs, overloads, IFUNCs).
    pub notes: Vec<String>,
    /// Functions FUNCTION matched that are not probed, by label, with why.
    pub skipped: Vec<(String, String)>,
    /// Risks of this run to the traced program, printed as warnings.
    pub warnings: Vec<String>,
    /// How events name each function (`labels[probe_id]`): demangled, with any offset.
    pub labels: Vec<String>,
    /// `None` runs until Ctrl+C or SIGTERM.
    pub duration: Option<Duration>,
    pub pid: Option<NonZeroU32>,
    /// The kernel programs' settings.
    pub config: Config,
    /// Also attach the return probe (`--ret`, `--latency`).
    pub attach_return: bool,
    /// One line per call (no aggregate mode asked for).
    pub per_event: bool,
    pub format: EventFormat,
    pub json: bool,
    /// `--count`, grouped by this.
    pub count_by: Option<CountBy>,
    /// `--hist N`.
    pub hist_arg: Option<usize>,
    pub latency: bool,
    /// `--stacks`, with its output files.
    pub stacks: Option<StackFiles>,
    pub interval: Option<Duration>,
    /// Attach the do-nothing programs (benchmark floor).
    pub noop: bool,
}

impl Plan {
    pub fn from_args(args: &UprobeArgs) -> Result<Self, PlanError> {
        let pid = args.pid.and_then(NonZeroU32::new);
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            return Err(PlanError::NoSuchProcess { pid: pid.get() });
        }
        let format = event_format(args)?;
        let config = kernel_config(args, &format, pid)?;
        if args.interval.is_some() && !(args.count || args.hist.is_some() || args.latency) {
            return Err(PlanError::IntervalWithoutTable);
        }
        let binary = resolve_binary(&args.binary, pid)?;
        let symbols = Symbols::read(&binary)?;
        let function_arg = args.function.clone().unwrap_or_default();
        if config.flags & flags::PAIR_RETURNS != 0 && symbols.is_go() {
            return Err(PlanError::GoReturnProbes { path: binary });
        }
        let mut warnings = Vec::new();
        if config.flags & flags::PAIR_RETURNS != 0
            && let Some(unwinding) = symbols.unwinds()
        {
            warnings.push(format!(
                "{} uses unwinding: a {unwinding} that propagates out of a function traced \
                 with --ret/--latency aborts the program (the unwinder cannot step through the \
                 kernel's uretprobe trampoline); trace only entries of functions that may be \
                 unwound through",
                binary.display()
            ));
        }
        let resolution = symbols.resolve(&function_arg)?;
        let functions = resolution.functions;
        if config.flags & flags::PAIR_RETURNS != 0
            && let Some(inside) = functions.iter().find(|f| !f.at_entry())
        {
            return Err(PlanError::ReturnNeedsEntry {
                label: inside.label(),
            });
        }
        let mut config = config;
        if functions.iter().all(FunctionSymbol::at_entry) {
            config.flags |= flags::CALLER_AT_ENTRY;
        }
        config.probes = functions.len() as u32;
        if !target::mapped_by_self(&binary) {
            // ebpf-tool cannot call into a file it has not mapped: no self-filter needed.
            config.tool_tgid = 0;
        }
        let stacks = if args.stacks {
            Some(StackFiles {
                folded: args.folded.clone(),
                flamegraph: args.flamegraph.clone(),
            })
        } else {
            None
        };
        Ok(Plan {
            binary_arg: args.binary.clone(),
            function_arg,
            binary,
            labels: functions.iter().map(FunctionSymbol::label).collect(),
            functions,
            text_ranges: symbols.text_ranges(),
            notes: resolution.notes,
            skipped: resolution
                .unprobeable
                .into_iter()
                .map(|(function, why)| (function.label(), why.to_string()))
                .collect(),
            warnings,
            duration: (args.duration > 0).then(|| Duration::from_secs(args.duration)),
            pid,
            attach_return: config.flags & flags::PAIR_RETURNS != 0,
            per_event: config.flags & flags::EMIT_EVENTS != 0,
            config,
            format,
            json: args.json,
            count_by: args.count.then_some(args.by),
            hist_arg: args.hist.map(|n| n as usize),
            latency: args.latency,
            stacks,
            interval: args.interval.map(Duration::from_secs),
            noop: args.noop,
        })
    }
}

/// BINARY as the traced process sees it with `-p`, else as we do.
pub fn resolve_binary(binary: &str, pid: Option<NonZeroU32>) -> Result<PathBuf, TargetError> {
    match pid {
        Some(pid) => target::resolve_for_process(binary, pid.get()),
        None => target::resolve(binary),
    }
}

fn event_format(args: &UprobeArgs) -> Result<EventFormat, PlanError> {
    let specs = if args.args.is_empty() {
        vec![ArgSpec {
            index: 0,
            ty: ArgType::U64,
        }]
    } else {
        args.args
            .iter()
            .map(|spec| spec.parse::<ArgSpec>())
            .collect::<Result<_, _>>()?
    };
    let format = EventFormat {
        args: specs,
        ret: args.ret,
        latency: args.latency,
    };
    let strings = format.string_args().len();
    if strings > MAX_STR_ARGS {
        return Err(PlanError::TooManyStrings { got: strings });
    }
    Ok(format)
}

fn kernel_config(
    args: &UprobeArgs,
    format: &EventFormat,
    pid: Option<NonZeroU32>,
) -> Result<Config, PlanError> {
    let mut config = Config {
        tool_tgid: std::process::id(),
        target_tgid: pid.map_or(0, NonZeroU32::get),
        target_tid: args.tid.unwrap_or(0),
        target_uid: args.uid.unwrap_or(u32::MAX),
        flags: 0,
        ..Config::DEFAULT
    };
    let aggregate_only =
        args.count || args.hist.is_some() || args.stacks || args.quiet || args.noop;
    if !aggregate_only {
        config.flags |= flags::EMIT_EVENTS;
    }
    if args.ret || args.latency {
        config.flags |= flags::PAIR_RETURNS;
    }
    if args.latency {
        config.flags |= flags::HIST_LATENCY | flags::TIMESTAMPS;
    }
    if args.count {
        config.flags |= flags::COUNT;
        config.count_by = match args.by {
            CountBy::Func => by::FUNC,
            CountBy::Pid => by::PID,
            CountBy::Tid => by::TID,
            CountBy::Comm => by::COMM,
        };
    }
    if let Some(index) = args.hist {
        config.flags |= flags::HIST_ARG;
        config.hist_arg_index = index;
    }
    if args.stacks {
        config.flags |= flags::STACKS;
    }
    if let Some(comm) = &args.comm {
        if comm.len() >= COMM_LEN {
            return Err(PlanError::CommTooLong {
                comm: comm.clone(),
                len: comm.len(),
            });
        }
        config.flags |= flags::FILTER_COMM;
        config.comm[..comm.len()].copy_from_slice(comm.as_bytes());
    }
    if let Some(expr) = &args.filter {
        let filter: ArgFilter = expr.parse()?;
        config.flags |= flags::FILTER_ARG;
        if filter.signed {
            config.flags |= flags::FILTER_ARG_SIGNED;
        }
        config.arg_filter_index = filter.index as u32;
        config.arg_filter_op = filter.op;
        config.arg_filter_value = filter.value;
        config.arg_filter_bits = filter.bits;
    }
    if config.flags & flags::EMIT_EVENTS != 0 {
        // Records carry the argument registers up to the last one shown (string
        // arguments' pointers too: returns read the strings from the saved registers).
        config.record_args = format
            .args
            .iter()
            .map(|spec| spec.index as u32 + 1)
            .max()
            .unwrap_or(0);
        if args.json {
            config.flags |= flags::TIMESTAMPS;
        }
        let strings = format.string_args();
        config.str_arg_count = strings.len() as u32;
        for (slot, index) in strings.into_iter().enumerate() {
            config.str_args[slot] = index as u32;
        }
    }
    Ok(config)
}
