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
    let mut out = BufWriter::new(io::stdout().lock());
    let written = (|| -> io::Result<()> {
        for function in &functions {
            write!(out, "{:#010x}  ", function.file_offset)?;
            write_printable(&mut out, &function.label())?;
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
