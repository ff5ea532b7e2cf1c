//! The line table and the inlining tree: addresses of a source line, where inlined copies
//! of a function start, and where a function's prologue ends.

use gimli::{AttributeValue, Reader as _};

use super::{DebugInfo, DwarfError};

/// `file.c:123` (a file name or path suffix, a line): a source line, not a function.
pub fn parse_source_line(text: &str) -> Option<(&str, u64)> {
    let (file, line) = text.rsplit_once(':')?;
    let line: u64 = line.parse().ok()?;
    let (_, extension) = file.rsplit_once('.')?;
    (!file.is_empty()
        && !extension.is_empty()
        && extension.bytes().all(|b| b.is_ascii_alphanumeric())
        && !file.contains(':'))
    .then_some((file, line))
}

impl DebugInfo {
    /// Every address the line table marks as the start of a statement of `line` in a
    /// file whose path is `file` or ends with `/file`.
    pub fn line_addresses(&self, file: &str, line: u64) -> Result<Vec<u64>, DwarfError> {
        let bad = |e: gimli::Error| DwarfError::Bad {
            path: self.path.clone(),
            why: e.to_string(),
        };
        let matches = |path: &str| path == file || path.ends_with(&format!("/{file}"));
        let mut addresses = Vec::new();
        let mut headers = self.dwarf.units();
        while let Some(header) = headers.next().map_err(bad)? {
            let unit = self.dwarf.unit(header).map_err(bad)?;
            let Some(program) = unit.line_program.clone() else {
                continue;
            };
            let mut rows = program.rows();
            while let Some((header, row)) = rows.next_row().map_err(bad)? {
                if !row.is_stmt() || row.end_sequence() || row.line().map(|l| l.get()) != Some(line)
                {
                    continue;
                }
                let Some(entry) = row.file(header) else {
                    continue;
                };
                let mut path = String::new();
                if let Some(dir) = entry.directory(header)
                    && let Ok(dir) = self.dwarf.attr_string(&unit, dir)
                {
                    path.push_str(&dir.to_string_lossy().unwrap_or_default());
                    path.push('/');
                }
                if let Ok(name) = self.dwarf.attr_string(&unit, entry.path_name()) {
                    let name = name.to_string_lossy().unwrap_or_default();
                    if name.starts_with('/') {
                        path = name.into_owned();
                    } else {
                        path.push_str(&name);
                    }
                }
                if matches(&path) {
                    addresses.push(row.address());
                }
            }
        }
        addresses.sort_unstable();
        addresses.dedup();
        Ok(addresses)
    }

    /// Where the function starting at `low_pc` is past its prologue (parameters stored
    /// in their slots): the line table's `prologue_end` there, else its first statement
    /// on another line, as perf and bpftrace choose.
    pub fn prologue_end(&self, low_pc: u64) -> Option<u64> {
        let mut flagged: Option<u64> = None;
        let mut rows: Vec<(u64, u64)> = Vec::new();
        let mut headers = self.dwarf.units();
        while let Ok(Some(header)) = headers.next() {
            let Ok(unit) = self.dwarf.unit(header) else {
                continue;
            };
            let Some(program) = unit.line_program.clone() else {
                continue;
            };
            let mut iter = program.rows();
            while let Ok(Some((_, row))) = iter.next_row() {
                let address = row.address();
                if row.end_sequence() || address < low_pc || address >= low_pc + 0x1000 {
                    continue;
                }
                if row.prologue_end() && address > low_pc {
                    flagged = Some(flagged.map_or(address, |f| f.min(address)));
                }
                if row.is_stmt() {
                    rows.push((address, row.line().map_or(0, |l| l.get())));
                }
            }
        }
        if flagged.is_some() {
            return flagged;
        }
        rows.sort_unstable();
        let first_line = rows.iter().find(|(a, _)| *a == low_pc)?.1;
        rows.iter()
            .find(|(a, line)| *a > low_pc && *line != first_line)
            .map(|(a, _)| *a)
    }

    /// Where each inlined copy of the function `name` starts.
    pub fn inlined_copies(&self, name: &str) -> Result<Vec<u64>, DwarfError> {
        let bad = |e: gimli::Error| DwarfError::Bad {
            path: self.path.clone(),
            why: e.to_string(),
        };
        let mut starts = Vec::new();
        for unit in self.all_units().map_err(bad)? {
            let mut entries = unit.entries();
            while let Some((_, entry)) = entries.next_dfs().map_err(bad)? {
                if entry.tag() != gimli::DW_TAG_inlined_subroutine {
                    continue;
                }
                let Some(AttributeValue::UnitRef(origin)) = entry
                    .attr_value(gimli::DW_AT_abstract_origin)
                    .map_err(bad)?
                else {
                    continue;
                };
                let origin = unit.entry(origin).map_err(bad)?;
                if self.name_of(&unit, &origin).map_err(bad)?.as_deref() != Some(name) {
                    continue;
                }
                let low_pc = self
                    .address_attr(&unit, entry, gimli::DW_AT_low_pc)
                    .map_err(bad)?;
                // DWARF 5 may give the entry as an offset from low_pc.
                let entry_pc = match entry.attr_value(gimli::DW_AT_entry_pc).map_err(bad)? {
                    Some(AttributeValue::Udata(offset)) => low_pc.map(|l| l + offset),
                    Some(value) => self.dw().attr_address(&unit, value).map_err(bad)?,
                    None => None,
                };
                let start = match entry_pc.or(low_pc) {
                    Some(start) => Some(start),
                    None => {
                        let mut ranges = self.dw().die_ranges(&unit, entry).map_err(bad)?;
                        ranges.next().map_err(bad)?.map(|r| r.begin)
                    }
                };
                starts.extend(start);
            }
        }
        self.current.set(0);
        starts.sort_unstable();
        starts.dedup();
        Ok(starts)
    }
}
