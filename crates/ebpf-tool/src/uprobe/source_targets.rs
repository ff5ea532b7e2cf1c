//! FUNCTIONs that debug info resolves: a source line (`app.c:123`: every statement start
//! the line table has for it, in every function and inlined copy) and the inlined copies
//! of a function (as well as its out-of-line body). Each becomes `CALLER+OFFSET`, which
//! symbol resolution then checks like any other (an instruction start, a safe site), and
//! is labelled as the user wrote it, so tables add its places up.

use std::collections::HashMap;

use super::TargetsError;
use crate::{
    dwarf::{DebugInfo, parse_source_line},
    symbols::Symbols,
};

/// What FUNCTION arguments become.
pub struct Expanded {
    /// For symbol resolution.
    pub specs: Vec<String>,
    /// Link-time site address -> the label to show (`app.c:123`, `inlined_fn`).
    pub labels: HashMap<u64, String>,
    pub notes: Vec<String>,
}

fn is_plain_name(arg: &str) -> bool {
    !arg.contains(['*', '?', '[', '+', ':', '(']) && !arg.starts_with("0x")
}

pub fn expand(
    symbols: &Symbols,
    binary: &std::path::Path,
    debug_root: &std::path::Path,
    args: &[String],
) -> Result<Expanded, TargetsError> {
    let mut expanded = Expanded {
        specs: Vec::new(),
        labels: HashMap::new(),
        notes: Vec::new(),
    };
    let mut info: Option<Option<DebugInfo>> = None;
    for arg in args {
        if let Some((file, line)) = parse_source_line(arg) {
            let debug = match info
                .get_or_insert_with(|| DebugInfo::load_with_root(binary, debug_root).ok())
            {
                Some(debug) => debug,
                None => {
                    return Err(DebugInfo::load_with_root(binary, debug_root).err().map_or(
                        TargetsError::NoSuchLine { line: arg.clone() },
                        TargetsError::Dwarf,
                    ));
                }
            };
            // One place per function: the line's first statement start in it (a line
            // the compiler split into several statements is still one hit per pass).
            let mut first: HashMap<u64, (String, u64)> = HashMap::new();
            for address in debug.line_addresses(file, line)? {
                if let Some(function) = symbols.function_containing(address) {
                    let entry = first
                        .entry(function.address)
                        .or_insert((function.name.clone(), address));
                    entry.1 = entry.1.min(address);
                }
            }
            let mut places = 0;
            let mut chosen: Vec<(u64, (String, u64))> = first.into_iter().collect();
            chosen.sort_by_key(|(start, _)| *start);
            for (start, (name, address)) in chosen {
                expanded.specs.push(at(&name, address - start));
                expanded.labels.insert(address, arg.clone());
                places += 1;
            }
            if places == 0 {
                return Err(TargetsError::NoSuchLine { line: arg.clone() });
            }
            expanded.notes.push(format!(
                "{arg}: {places} place{} in the code",
                if places == 1 { "" } else { "s" }
            ));
            continue;
        }
        if !is_plain_name(arg) {
            expanded.specs.push(arg.clone());
            continue;
        }
        let has_body = symbols.resolve(arg).is_ok();
        let copies =
            match info.get_or_insert_with(|| DebugInfo::load_with_root(binary, debug_root).ok()) {
                Some(debug) => debug.inlined_copies(arg).unwrap_or_default(),
                None => Vec::new(),
            };
        if has_body || copies.is_empty() {
            expanded.specs.push(arg.clone());
        }
        let mut placed = 0;
        for address in &copies {
            let Some(caller) = symbols.function_containing(*address) else {
                continue;
            };
            expanded
                .specs
                .push(at(&caller.name, address - caller.address));
            expanded.labels.insert(*address, arg.clone());
            placed += 1;
        }
        if placed > 0 {
            expanded.notes.push(format!(
                "{arg}: {} out-of-line body and {placed} inlined cop{}",
                if has_body { "its" } else { "no" },
                if placed == 1 { "y" } else { "ies" }
            ));
        }
    }
    Ok(expanded)
}

fn at(function: &str, offset: u64) -> String {
    if offset == 0 {
        function.to_owned()
    } else {
        format!("{function}+{offset:#x}")
    }
}
