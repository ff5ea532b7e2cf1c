//! `ebpf-tool uprobe --list BINARY [PATTERN]`: the functions that can be traced, the way
//! `bpftrace -l` and `perf probe -F` list them, with file offsets. Needs no privilege.

use std::{
    io::{self, BufWriter, Write},
    num::NonZeroU32,
};

use super::targets::resolve_binary;
use crate::{
    cli::UprobeArgs,
    output::escape::{printable, write_printable},
    symbols::Symbols,
};

/// Prints `OFFSET  NAME` per function (demangled names; IFUNCs marked), sorted by name.
pub fn list(args: &UprobeArgs) -> anyhow::Result<()> {
    let binary = resolve_binary(&args.binary, args.pid.and_then(NonZeroU32::new))?;
    let symbols = Symbols::read(&binary)?;
    let functions = symbols.list(args.functions.first().map(String::as_str));
    // -v: signatures from the debug info, by function address.
    let signatures: std::collections::HashMap<u64, crate::dwarf::FunctionInfo> = if args.verbose {
        let root = args
            .debuginfo
            .clone()
            .unwrap_or_else(|| crate::symbols::DEBUG_ROOT.into());
        let info = crate::dwarf::DebugInfo::load_with_root(&binary, &root)?;
        info.functions().into_iter().collect()
    } else {
        Default::default()
    };
    let mut out = BufWriter::new(io::stdout().lock());
    let written = (|| -> io::Result<()> {
        for function in &functions {
            write!(out, "{:#010x}  ", function.file_offset)?;
            match signatures.get(&function.address) {
                Some(info) if function.offset_in_function == 0 => {
                    write_printable(&mut out, &info.signature())?;
                    if args.fields {
                        for fields in info.struct_fields() {
                            out.write_all(b"\n            ")?;
                            write_printable(&mut out, &fields)?;
                        }
                    }
                }
                _ => write_printable(&mut out, &function.label())?,
            }
            if function.ifunc {
                out.write_all(b"  [ifunc]")?;
            }
            out.write_all(b"\n")?;
        }
        out.flush()
    })();
    match written {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        other => other?,
    }
    eprintln!(
        "{} functions in {} (from {})",
        functions.len(),
        printable(&binary.to_string_lossy()),
        symbols.searched()
    );
    Ok(())
}

/// `ebpf-tool usdt --list BINARY [PATTERN]`: every USDT probe as `provider:name`, with
/// its sites, whether a semaphore guards it, and its first site's argument specs (as
/// `tplist` and `bpftrace -l 'usdt:...'` show them).
pub fn list_usdt(args: &UprobeArgs) -> anyhow::Result<()> {
    let binary = resolve_binary(&args.binary, args.pid.and_then(NonZeroU32::new))?;
    let probes = crate::usdt::read_probes(&binary)?;
    let pattern = args.functions.first().map(String::as_str);
    let shown: Vec<&crate::usdt::UsdtProbe> = match pattern {
        None => probes.iter().collect(),
        Some(pattern) if pattern.contains(['*', '?', '[']) || pattern.contains(':') => {
            crate::usdt::select(&probes, pattern, &binary)?
        }
        Some(part) => probes.iter().filter(|p| p.label().contains(part)).collect(),
    };
    let mut out = BufWriter::new(io::stdout().lock());
    let written = (|| -> io::Result<()> {
        for probe in &shown {
            write_printable(&mut out, &probe.label())?;
            let sites = probe.sites.len();
            write!(out, "  {sites} site{}", if sites == 1 { "" } else { "s" })?;
            if probe.has_semaphore() {
                out.write_all(b"  [semaphore]")?;
            }
            if let Some(site) = probe.sites.first()
                && !site.args_text.is_empty()
            {
                out.write_all(b"  args: ")?;
                write_printable(&mut out, &site.args_text)?;
            }
            out.write_all(b"\n")?;
        }
        out.flush()
    })();
    match written {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        other => other?,
    }
    eprintln!(
        "{} USDT probes in {}",
        shown.len(),
        printable(&binary.to_string_lossy())
    );
    Ok(())
}
