//! Stack addresses -> function names, with blazesym, in the address space of the process
//! that made the call. A process's mappings are only readable while it lives, so stacks
//! are symbolized as soon as they appear (the run loop calls `update` often) and kept.
//!
//! A process that exited before that still gets its frames in the traced binary named:
//! the innermost frame is the probed function's entry, whose link-time address is known,
//! which gives the binary's load address; the other frames in it are symbolized from the
//! file.

use std::{collections::HashMap, ops::Range, path::PathBuf};

use blazesym::{
    Pid,
    symbolize::{
        Input, Symbolized, Symbolizer,
        source::{Elf, Process, Source},
    },
};

use crate::{
    events::comm_bytes,
    loader::{Aggregates, LoadError},
    output::stacks::StackRow,
};

/// Identifies one stack: the process, the kernel's stack id and the direct caller.
type StackIdentity = (u32, i32, u64);

/// Symbolized stacks, kept from the moment they were seen.
pub struct StackSymbolizer {
    symbolizer: Symbolizer,
    frames: HashMap<StackIdentity, Vec<String>>,
    /// The traced file, and each probe's link-time function address (by probe id).
    binary: PathBuf,
    entry_addresses: Vec<u64>,
    text_ranges: Vec<Range<u64>>,
}

impl StackSymbolizer {
    /// `entry_addresses[probe_id]` is each probed function's link-time address and
    /// `text_ranges` the binary's code, both from its symbol tables.
    pub fn new(binary: PathBuf, entry_addresses: Vec<u64>, text_ranges: Vec<Range<u64>>) -> Self {
        StackSymbolizer {
            symbolizer: Symbolizer::builder().enable_demangling(true).build(),
            frames: HashMap::new(),
            binary,
            entry_addresses,
            text_ranges,
        }
    }

    /// Symbolizes every stack in the kernel's table not symbolized yet.
    pub fn update(&mut self, aggregates: &Aggregates) -> Result<(), LoadError> {
        for (key, _) in aggregates.stack_counts()? {
            let id = (key.tgid, key.stack_id, key.caller);
            if self.frames.contains_key(&id) || key.stack_id < 0 {
                continue;
            }
            let mut addresses = aggregates.stack_addresses(key.stack_id as u32)?;
            // The walk starts at the probed instruction and goes on from the caller's
            // caller: put the direct caller back in between.
            if key.caller != 0 && !addresses.is_empty() {
                addresses.insert(1, key.caller);
            }
            let entry = self.entry_addresses.get(key.probe_id as usize).copied();
            let names = self.symbolize(key.tgid, &addresses, entry);
            self.frames.insert(id, names);
        }
        Ok(())
    }

    /// One row per (function, pid, stack) with its count; `functions[probe_id]` names the
    /// probed function.
    pub fn rows(
        &self,
        aggregates: &Aggregates,
        functions: &[String],
    ) -> Result<Vec<StackRow>, LoadError> {
        let mut rows = Vec::new();
        for (key, count) in aggregates.stack_counts()? {
            let frames = self
                .frames
                .get(&(key.tgid, key.stack_id, key.caller))
                .cloned()
                .unwrap_or_else(|| vec!["[stack not symbolized: process exited]".to_owned()]);
            rows.push(StackRow {
                func: functions
                    .get(key.probe_id as usize)
                    .cloned()
                    .unwrap_or_default(),
                comm: String::from_utf8_lossy(comm_bytes(&key.comm)).into_owned(),
                count,
                frames,
            });
        }
        Ok(rows)
    }

    fn symbolize(&self, pid: u32, addresses: &[u64], entry: Option<u64>) -> Vec<String> {
        let source = Source::Process(Process::new(Pid::from(pid)));
        let mut names: Vec<Option<String>> = match self
            .symbolizer
            .symbolize(&source, Input::AbsAddr(addresses))
        {
            Ok(symbols) => symbols.iter().map(symbol_name).collect(),
            Err(err) => {
                log::debug!("symbolizing a stack of pid {pid} failed: {err}");
                vec![None; addresses.len()]
            }
        };
        if let (Some(entry), Some(&first)) = (entry, addresses.first())
            && names.iter().any(Option::is_none)
        {
            self.fill_from_binary(&mut names, addresses, first.wrapping_sub(entry));
        }
        names
            .into_iter()
            .zip(addresses)
            .map(|(name, address)| name.unwrap_or_else(|| format!("[unknown] {address:#x}")))
            .collect()
    }

    /// Names frames left unknown from the traced binary itself, given its load bias.
    fn fill_from_binary(&self, names: &mut [Option<String>], addresses: &[u64], bias: u64) {
        let offsets: Vec<u64> = addresses.iter().map(|a| a.wrapping_sub(bias)).collect();
        let source = Source::Elf(Elf::new(self.binary.clone()));
        let Ok(symbols) = self
            .symbolizer
            .symbolize(&source, Input::VirtOffset(&offsets))
        else {
            return;
        };
        for ((name, symbol), offset) in names.iter_mut().zip(&symbols).zip(&offsets) {
            // Frames outside the binary's code belong to other files (libc, ...).
            if name.is_none() && self.text_ranges.iter().any(|r| r.contains(offset)) {
                *name = symbol_name(symbol);
            }
        }
    }
}

fn symbol_name(symbol: &Symbolized<'_>) -> Option<String> {
    match symbol {
        Symbolized::Sym(sym) => Some(sym.name.to_string()),
        Symbolized::Unknown(_) => None,
    }
}
