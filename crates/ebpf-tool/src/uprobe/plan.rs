//! Turns the parsed flags into a validated plan: the real file, the resolved functions
//! with their offsets, the process filter. Everything here is checked before the kernel
//! is touched, so a mistake costs no probe.

use std::{num::NonZeroU32, path::PathBuf, time::Duration};

use crate::{
    cli::UprobeArgs,
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
}

/// What to attach where, and for how long.
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
    /// `None` runs until Ctrl+C or SIGTERM.
    pub duration: Option<Duration>,
    pub pid: Option<NonZeroU32>,
}

impl Plan {
    pub fn from_args(args: &UprobeArgs) -> Result<Self, PlanError> {
        let pid = args.pid.and_then(NonZeroU32::new);
        if let Some(pid) = pid {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                return Err(PlanError::NoSuchProcess { pid: pid.get() });
            }
        }
        let binary = target::resolve(&args.binary)?;
        let symbols = Symbols::read(&binary)?;
        let functions = symbols
            .lookup(&args.function)?
            .into_iter()
            .cloned()
            .collect();
        Ok(Plan {
            binary_arg: args.binary.clone(),
            function_arg: args.function.clone(),
            binary,
            functions,
            duration: (args.duration > 0).then(|| Duration::from_secs(args.duration)),
            pid,
        })
    }
}
