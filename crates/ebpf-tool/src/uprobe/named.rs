//! `-a 'r->len'`, `--filter 'len > 4096'`: values named from the source, located in each
//! probed function's debug info before the kernel settings are built.

use super::{Plan, Targets};
use crate::{
    dwarf::DwarfError,
    values::{
        ValueError, ValueLayout,
        request::{Location, ValueRequest},
    },
};

#[derive(Debug, thiserror::Error)]
pub enum NamedError {
    #[error(transparent)]
    Dwarf(#[from] DwarfError),
    #[error(transparent)]
    Values(#[from] ValueError),
}

/// Values named from the source (`-a 'r->len'`, `--filter 'len > 4096'`): located in
/// each function's debug info, shown as their type says (unless typed with `:TYPE`).
pub fn resolve_named_values(
    plan: &mut Plan,
    targets: &mut Targets,
    args: &[ValueRequest],
) -> Result<(), NamedError> {
    let named = |r: &ValueRequest| match &r.location {
        Location::Named(text) => Some(text.clone()),
        _ => None,
    };
    let mut texts: Vec<String> = args.iter().filter_map(named).collect();
    texts.extend(plan.extras.filter.as_ref().and_then(|f| named(&f.value)));
    texts.extend(plan.extras.hist.as_ref().and_then(named));
    texts.extend(plan.extras.group.as_ref().and_then(named));
    texts.sort();
    texts.dedup();
    if texts.is_empty() {
        return Ok(());
    }
    // Unoptimized code stores its parameters in the prologue: where a value is not there
    // yet at the entry, the probe moves past the prologue (not with --ret: a return
    // needs the entry).
    // Read once: a glob's functions all come from this file.
    let info = crate::dwarf::DebugInfo::load_with_root(&targets.binary, &plan.debug_root)?;
    if !plan.returns {
        for i in 0..targets.functions.len() {
            let f = &targets.functions[i];
            if f.offset_in_function != 0 {
                continue;
            }
            let one = [(targets.labels[i].clone(), f.address, f.address)];
            let not_yet = matches!(
                crate::dwarf::resolve_named(&info, &one, &texts),
                Err(DwarfError::Unsupported { ref why, .. }) if why.contains("has not written yet")
            );
            if !not_yet {
                continue;
            }
            let Some(past) = info
                .prologue_end(f.address)
                .filter(|&p| p > f.address && p < f.address + f.size)
            else {
                continue;
            };
            let delta = past - f.address;
            let f = &mut targets.functions[i];
            f.address += delta;
            f.file_offset += delta;
            f.offset_in_function = delta;
            targets.points[i].entry += delta;
            targets.notes.push(format!(
                "{}: probed past its prologue (+{delta:#x}), where its parameters are stored",
                targets.labels[i]
            ));
        }
    }
    // Each probe's own address: a source line or FUNC+OFFSET reads the values where they
    // are there, not where they were at the entry.
    let functions: Vec<(String, u64, u64)> = targets
        .labels
        .iter()
        .zip(&targets.functions)
        .map(|(label, f)| (label.clone(), f.address - f.offset_in_function, f.address))
        .collect();
    let named = crate::dwarf::resolve_named(&info, &functions, &texts)?;
    targets.named = named.specs;
    let shown = named.shown;
    let requests: Vec<ValueRequest> = args
        .iter()
        .map(|request| {
            let mut request = request.clone();
            if let (Location::Named(text), false) = (&request.location, request.typed)
                && let Some((_, ty)) = shown.iter().find(|(t, _)| t == text)
            {
                request.ty = *ty;
            }
            request
        })
        .collect();
    let ret = plan.format.layout.ret;
    plan.format.layout = ValueLayout::new(&requests)?;
    plan.format.layout.ret = ret;
    for (text, enumerators) in named.enums {
        // Kept for the whole run, as the layout is.
        let names: &'static [(i64, String)] = Box::leak(enumerators.into_boxed_slice());
        plan.format.layout.name_values(&text, names);
    }
    Ok(())
}
