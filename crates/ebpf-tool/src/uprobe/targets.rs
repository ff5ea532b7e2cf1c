//! A plan's names resolved: BINARY to the real file, FUNCTION to the functions and file
//! offsets the probes go on, and what the resolution found worth saying. This is where
//! files are read (the target, its symbols, its debug files); the kernel is not touched.

use std::{num::NonZeroU32, path::PathBuf};

use super::{Plan, ReturnProbes};
use crate::{
    symbols::{FunctionSymbol, NoReturnSites, SymbolError, Symbols, golang::GoVersion},
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
        "{path} is a Go program: a uretprobe rewrites the return address on the stack, and Go moves goroutine stacks, which would crash it; drop --uretprobes (returns are then seen at return instructions)"
    )]
    GoUretprobes { path: PathBuf },
    #[error(
        "{path} was built with Go {}.{}, which keeps the goroutine out of registers: --ret and --latency cannot pair returns with their calls (Go 1.17+ can); trace entries only",
        version.0, version.1
    )]
    GoTooOldForReturns { path: PathBuf, version: GoVersion },
    #[error("no return of '{function}' can be probed: {why}")]
    NoReturnSites {
        function: String,
        why: NoReturnSites,
    },
    #[error(transparent)]
    Usdt(#[from] crate::usdt::UsdtError),
    #[error("USDT probes mark a point, not a call: --ret and --latency do not apply")]
    UsdtReturns,
    #[error(transparent)]
    Dwarf(#[from] crate::dwarf::DwarfError),
    #[error("{line}: the line table has no statement there")]
    NoSuchLine { line: String },
}

/// Where one function's probes go, as file offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbePoints {
    /// The entry probe: the function's probe point, or past a Go stack check.
    pub entry: u64,
    /// With return sites: its return instructions (empty with uretprobes).
    pub returns: Vec<u64>,
}

impl ProbePoints {
    /// Where `function`'s probes go in the file `symbols` read; with `sites`, returns are
    /// seen at its return instructions.
    pub fn of(
        symbols: &Symbols,
        function: &FunctionSymbol,
        sites: bool,
    ) -> Result<(ProbePoints, usize), NoReturnSites> {
        let entry = symbols.entry_probe_offset(function);
        if !sites {
            return Ok((
                ProbePoints {
                    entry,
                    returns: Vec::new(),
                },
                0,
            ));
        }
        let found = symbols.return_sites(function)?;
        let unseen = found.other_exits + usize::from(!found.complete);
        Ok((
            ProbePoints {
                entry,
                returns: found.offsets,
            },
            unseen,
        ))
    }
}

/// The probe points of a run.
#[derive(Debug, Clone)]
pub struct Targets {
    /// The real file the probes go on.
    pub binary: PathBuf,
    /// The functions to probe; an event's `probe_id` indexes this list.
    pub functions: Vec<FunctionSymbol>,
    /// Where each function's probes go (`points[probe_id]`).
    pub points: Vec<ProbePoints>,
    /// Returns are seen at return instructions (`--ret-sites`), not by uretprobes.
    pub return_sites: bool,
    /// How events name each function (`labels[probe_id]`): demangled, with any offset.
    pub labels: Vec<String>,
    /// What resolving FUNCTION found worth saying (globs, overloads, IFUNCs).
    pub notes: Vec<String>,
    /// Functions FUNCTION matched that are not probed, by label, with why.
    pub skipped: Vec<(String, String)>,
    /// Risks of this run to the traced program, printed as warnings.
    pub warnings: Vec<String>,
    /// ebpf-tool maps the file itself, so its own calls could hit the probes.
    pub mapped_by_self: bool,
    /// Most of the file's functions set up frame pointers (`--unwind auto` walks them).
    pub frame_pointers: bool,
    /// USDT runs: each probe's (site's) arguments, by probe id; empty for uprobes.
    pub usdt_args: Vec<Vec<Result<crate::usdt::UsdtArg, crate::usdt::ArgError>>>,
    /// USDT runs: each site's semaphore (file offset of its reference counter, 0 for
    /// none), by probe id; empty for uprobes.
    pub semaphores: Vec<u64>,
    /// Values named from the source (`r->len`), each function's spec for each, by probe
    /// id; empty when none is asked for.
    pub named: Vec<Vec<(String, ebpf_tool_common::ValueSpec)>>,
}

impl Targets {
    pub fn resolve(plan: &Plan) -> Result<Targets, TargetsError> {
        let pid = plan.tasks.pid;
        if let Some(pid) = pid
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            return Err(TargetsError::NoSuchProcess { pid: pid.get() });
        }
        let binary = match plan
            .command
            .as_deref()
            .and_then(|c| loaded_by(c, &plan.binary_arg))
        {
            Some(library) => library,
            None => resolve_binary(&plan.binary_arg, pid)?,
        };
        let symbols = Symbols::read_with_debug_root(&binary, &plan.debug_root)?;
        let mut warnings = Vec::new();
        let mut notes = Vec::new();
        let return_sites =
            plan.returns && return_sites(plan, &symbols, &binary, &mut notes, &mut warnings)?;
        let expanded = super::source_targets::expand(
            &symbols,
            &binary,
            &plan.debug_root,
            &plan.function_args,
        )?;
        notes.extend(expanded.notes);
        let resolution = symbols.resolve_all(&expanded.specs)?;
        notes.splice(0..0, resolution.notes);
        let mut skipped: Vec<(String, String)> = resolution
            .unprobeable
            .into_iter()
            .map(|(function, why)| (function.label(), why.to_string()))
            .collect();
        if plan.returns
            && let Some(inside) = resolution.functions.iter().find(|f| !f.at_entry())
        {
            return Err(TargetsError::ReturnNeedsEntry {
                label: inside.label(),
            });
        }
        let mut functions = Vec::new();
        let mut points = Vec::new();
        let mut leave_unseen = 0;
        let mut no_sites = None;
        for function in resolution.functions {
            match ProbePoints::of(&symbols, &function, return_sites) {
                Ok((at, unseen)) => {
                    leave_unseen += usize::from(unseen > 0);
                    functions.push(function);
                    points.push(at);
                }
                Err(why) => {
                    skipped.push((
                        function.label(),
                        format!("its returns cannot be seen: {why}"),
                    ));
                    no_sites.get_or_insert((function.label(), why));
                }
            }
        }
        if functions.is_empty()
            && let Some((function, why)) = no_sites
        {
            return Err(TargetsError::NoReturnSites { function, why });
        }
        let frame_pointers = plan.stacks.is_none() || symbols.keeps_frame_pointers();
        // Freed on another thread: the tables of a large library (librustc_driver's
        // 81,000 functions) take ~50 ms to free, which the attach need not wait for.
        std::thread::spawn(move || drop(symbols));
        if leave_unseen > 0 {
            notes.push(format!(
                "{leave_unseen} of the functions can also leave by a tail jump (or by code the \
                 probes cannot sit on): calls that do are not shown, and are counted as never \
                 seen returning"
            ));
        }
        Ok(Targets {
            // Source lines and inlined copies under the name the user wrote.
            labels: functions
                .iter()
                .map(|f| {
                    expanded
                        .labels
                        .get(&f.address)
                        .cloned()
                        .unwrap_or_else(|| f.label())
                })
                .collect(),
            mapped_by_self: target::mapped_by_self(&binary),
            frame_pointers,
            usdt_args: Vec::new(),
            semaphores: Vec::new(),
            named: Vec::new(),
            binary,
            functions,
            points,
            return_sites,
            notes,
            skipped,
            warnings,
        })
    }

    /// True when every probe sits on a function's first instruction.
    pub fn all_at_entry(&self) -> bool {
        self.functions.iter().all(FunctionSymbol::at_entry)
    }
}

/// Whether returns are seen at return instructions, saying why when it was not asked for.
fn return_sites(
    plan: &Plan,
    symbols: &Symbols,
    binary: &std::path::Path,
    notes: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Result<bool, TargetsError> {
    if symbols.is_go() {
        if let Some(version) = symbols.go_version().filter(|v| !v.passes_registers()) {
            return Err(TargetsError::GoTooOldForReturns {
                path: binary.to_owned(),
                version,
            });
        }
        if plan.return_probes == ReturnProbes::Uretprobes {
            return Err(TargetsError::GoUretprobes {
                path: binary.to_owned(),
            });
        }
        if plan.return_probes == ReturnProbes::Auto {
            notes.push(
                "Go program: returns are seen at each return instruction, paired with their \
                 calls by goroutine (uretprobes would crash it when a goroutine's stack moves)"
                    .into(),
            );
        }
        return Ok(true);
    }
    let Some(unwinding) = symbols.unwinds() else {
        return Ok(plan.return_probes == ReturnProbes::Sites);
    };
    Ok(match plan.return_probes {
        ReturnProbes::Sites => true,
        ReturnProbes::Auto => {
            notes.push(format!(
                "{} uses unwinding ({unwinding}s): returns are seen at each return instruction, \
                 not by uretprobes, which abort the program when one unwinds through them \
                 (--uretprobes to use them anyway)",
                binary.display()
            ));
            true
        }
        ReturnProbes::Uretprobes => {
            warnings.push(format!(
                "{} uses unwinding: a {unwinding} that propagates out of a function traced \
                 with uretprobes aborts the program (the unwinder cannot step through the \
                 kernel's uretprobe trampoline); drop --uretprobes to see returns at return \
                 instructions instead",
                binary.display()
            ));
            false
        }
    })
}

/// BINARY as the traced process sees it with `-p`, else as we do.
/// With `-c`, a library name as the command will load it (its DT_NEEDED, RPATH/RUNPATH,
/// the cache): a name with a `/` is a path and left to `resolve_binary`.
pub(super) fn loaded_by(command: &[String], name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return None;
    }
    let program = command.first()?;
    let program = if program.contains('/') {
        PathBuf::from(program)
    } else {
        target::search_path(program)?
    };
    target::find_needed(&program, name)
}

pub fn resolve_binary(binary: &str, pid: Option<NonZeroU32>) -> Result<PathBuf, TargetError> {
    match pid {
        Some(pid) => target::resolve_for_process(binary, pid.get()),
        None => target::resolve(binary),
    }
}
