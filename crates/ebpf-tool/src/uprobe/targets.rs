//! A plan's names resolved: BINARY to the real file, FUNCTION to the functions and file
//! offsets the probes go on, and what the resolution found worth saying. This is where
//! files are read (the target, its symbols, its debug files); the kernel is not touched.

use std::{num::NonZeroU32, ops::Range, path::PathBuf};

use super::Plan;
use crate::{
    symbols::{FunctionSymbol, SymbolError, Symbols},
    target::{self, TargetError},
};

#[derive(Debug, thiserror::Error)]
pub enum TargetsError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Symbol(#[from] SymbolError),
    #[error("no process with pid {pid}")]
    NoSuchProcess { pid: u32 },
    #[error(
        "--ret and --latency need probes at function entries; '{label}' is inside its function (a uretprobe there would pair with the wrong call)"
    )]
    ReturnNeedsEntry { label: String },
    #[error(
        "{path} is a Go program: --ret and --latency need uretprobes, which rewrite return addresses on the stack, and Go moves goroutine stacks, which would crash it; trace entries only (arguments, --count, --hist, --stacks)"
    )]
    GoReturnProbes { path: PathBuf },
}

/// The probe points of a run.
#[derive(Debug, Clone)]
pub struct Targets {
    /// The real file the probes go on.
    pub binary: PathBuf,
    /// The functions to probe; an event's `probe_id` indexes this list.
    pub functions: Vec<FunctionSymbol>,
    /// How events name each function (`labels[probe_id]`): demangled, with any offset.
    pub labels: Vec<String>,
    /// Link-time address ranges of the binary's code, for naming stack frames.
    pub text_ranges: Vec<Range<u64>>,
    /// What resolving FUNCTION found worth saying (globs, overloads, IFUNCs).
    pub notes: Vec<String>,
    /// Functions FUNCTION matched that are not probed, by label, with why.
    pub skipped: Vec<(String, String)>,
    /// Risks of this run to the traced program, printed as warnings.
    pub warnings: Vec<String>,
    /// ebpf-tool maps the file itself, so its own calls could hit the probes.
    pub mapped_by_self: bool,
}

impl Targets {
    pub fn resolve(plan: &Plan) -> Result<Targets, TargetsError> {
        let pid = plan.tasks.pid;
        if let Some(pid) = pid
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            return Err(TargetsError::NoSuchProcess { pid: pid.get() });
        }
        let binary = resolve_binary(&plan.binary_arg, pid)?;
        let symbols = Symbols::read(&binary)?;
        if plan.returns && symbols.is_go() {
            return Err(TargetsError::GoReturnProbes { path: binary });
        }
        let mut warnings = Vec::new();
        if plan.returns
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
        let resolution = symbols.resolve(&plan.function_arg)?;
        let functions = resolution.functions;
        if plan.returns
            && let Some(inside) = functions.iter().find(|f| !f.at_entry())
        {
            return Err(TargetsError::ReturnNeedsEntry {
                label: inside.label(),
            });
        }
        Ok(Targets {
            labels: functions.iter().map(FunctionSymbol::label).collect(),
            mapped_by_self: target::mapped_by_self(&binary),
            binary,
            functions,
            text_ranges: symbols.text_ranges(),
            notes: resolution.notes,
            skipped: resolution
                .unprobeable
                .into_iter()
                .map(|(function, why)| (function.label(), why.to_string()))
                .collect(),
            warnings,
        })
    }

    /// True when every probe sits on a function's first instruction.
    pub fn all_at_entry(&self) -> bool {
        self.functions.iter().all(FunctionSymbol::at_entry)
    }
}

/// BINARY as the traced process sees it with `-p`, else as we do.
pub fn resolve_binary(binary: &str, pid: Option<NonZeroU32>) -> Result<PathBuf, TargetError> {
    match pid {
        Some(pid) => target::resolve_for_process(binary, pid.get()),
        None => target::resolve(binary),
    }
}
