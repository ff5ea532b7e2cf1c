//! `ebpf-tool usdt`: PROBE (`provider:name`, a name, a glob) resolved to every site of
//! every matching probe in BINARY. Each site is a probe of its own in the kernel, since
//! each has its own argument locations; its label is the probe's, so tables add sites up.

use super::{Plan, ProbePoints, Targets, TargetsError, resolve_binary};
use crate::{
    symbols::{CallConv, FunctionSymbol, SymbolSource, Symbols},
    target, usdt,
};

pub fn resolve(plan: &Plan) -> Result<Targets, TargetsError> {
    if plan.returns {
        return Err(TargetsError::UsdtReturns);
    }
    let pid = plan.tasks.pid;
    if let Some(pid) = pid
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
    {
        return Err(TargetsError::NoSuchProcess { pid: pid.get() });
    }
    let binary = match plan
        .command
        .as_deref()
        .and_then(|c| super::targets::loaded_by(c, &plan.binary_arg))
    {
        Some(library) => library,
        None => resolve_binary(&plan.binary_arg, pid)?,
    };
    let probes = usdt::read_probes(&binary)?;
    let mut chosen: Vec<&usdt::UsdtProbe> = Vec::new();
    for wanted in &plan.function_args {
        for probe in usdt::select(&probes, wanted, &binary)? {
            if !chosen.iter().any(|c| c.label() == probe.label()) {
                chosen.push(probe);
            }
        }
    }
    let mut targets = Targets {
        binary: binary.clone(),
        functions: Vec::new(),
        points: Vec::new(),
        return_sites: false,
        labels: Vec::new(),
        notes: Vec::new(),
        skipped: Vec::new(),
        warnings: Vec::new(),
        mapped_by_self: target::mapped_by_self(&binary),
        frame_pointers: plan.stacks.is_none()
            || Symbols::read(&binary).is_ok_and(|s| s.keeps_frame_pointers()),
        usdt_args: Vec::new(),
        semaphores: Vec::new(),
        named: Vec::new(),
    };
    for probe in &chosen {
        let label = probe.label();
        for site in &probe.sites {
            targets.functions.push(FunctionSymbol {
                name: label.clone(),
                demangled: None,
                address: site.address,
                size: 1,
                file_offset: site.file_offset,
                offset_in_function: 0,
                ifunc: false,
                source: SymbolSource::UsdtNote,
                call: CallConv::Usdt,
            });
            targets.points.push(ProbePoints {
                entry: site.file_offset,
                returns: Vec::new(),
            });
            targets.labels.push(label.clone());
            targets.usdt_args.push(site.args.clone());
            targets.semaphores.push(site.semaphore_offset);
        }
    }
    let sites = targets.functions.len();
    if chosen.len() > 1 || sites > chosen.len() {
        targets.notes.push(format!(
            "{} USDT probe{} at {sites} site{}",
            chosen.len(),
            if chosen.len() == 1 { "" } else { "s" },
            if sites == 1 { "" } else { "s" },
        ));
    }
    if chosen.iter().any(|p| p.has_semaphore()) {
        targets.notes.push(
            "Semaphores are raised by the kernel while attached (in running processes and new ones), and drop when ebpf-tool exits"
                .to_owned(),
        );
    }
    Ok(targets)
}
