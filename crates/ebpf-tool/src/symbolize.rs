//! Frame-pointer stacks (`--unwind fp`, walked by the kernel) -> function names, in the
//! address space of the process that made the call, with the same namer as DWARF stacks
//! (`unwind`): functions only, demangled, else `file+0xOFFSET`. A process's mappings are
//! only readable while it lives, so they are read the first time one of its stacks
//! appears (the run loop calls `update` often) and kept.
//!
//! A process that exited before that still gets its frames in the traced binary named:
//! the innermost frame is the probed function's entry, whose link-time address is known,
//! which gives the binary's load address.

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use crate::{
    events::comm_bytes,
    loader::{Aggregates, LoadError},
    output::stacks::StackRow,
    unwind::{FrameAt, ObjectCache, ObjectInfo, ProcessImage},
};

/// Identifies one stack: the process, the kernel's stack id and the direct caller.
type StackIdentity = (u32, i32, u64);

/// Symbolized stacks, kept from the moment they were seen.
pub struct StackSymbolizer {
    objects: ObjectCache,
    processes: HashMap<u32, Option<ProcessImage>>,
    frames: HashMap<StackIdentity, Vec<String>>,
    /// The traced file (read when first needed), and each probe's link-time function
    /// address (by probe id).
    binary: PathBuf,
    binary_info: Option<Option<Arc<ObjectInfo>>>,
    entry_addresses: Vec<u64>,
}

impl StackSymbolizer {
    /// `entry_addresses[probe_id]` is each probed function's link-time address.
    pub fn new(binary: PathBuf, entry_addresses: Vec<u64>) -> Self {
        StackSymbolizer {
            objects: ObjectCache::new(),
            processes: HashMap::new(),
            frames: HashMap::new(),
            binary,
            binary_info: None,
            entry_addresses,
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

    fn symbolize(&mut self, pid: u32, addresses: &[u64], entry: Option<u64>) -> Vec<String> {
        // Every frame but the first is a return address: named from the call before it.
        let frames = addresses.iter().enumerate().map(|(i, &address)| FrameAt {
            address,
            lookup: if i == 0 {
                address
            } else {
                address.wrapping_sub(1)
            },
        });
        let objects = &mut self.objects;
        if let Some(image) = self
            .processes
            .entry(pid)
            .or_insert_with(|| ProcessImage::read(pid, objects))
        {
            return frames.flat_map(|frame| image.names(frame)).collect();
        }
        // The process has gone: name what lies in the traced binary from its load bias.
        let binary = &self.binary;
        let info = self
            .binary_info
            .get_or_insert_with(|| ObjectInfo::read(binary, binary).map(Arc::new))
            .clone();
        let image = match (info, entry, addresses.first()) {
            (Some(info), Some(entry), Some(&first)) => {
                Some(ProcessImage::of_file(info, first.wrapping_sub(entry)))
            }
            _ => None,
        };
        frames
            .flat_map(|frame| match &image {
                Some(image) if image.knows(frame.lookup) => image.names(frame),
                _ => vec![format!("[unknown] {:#x}", frame.address)],
            })
            .collect()
    }
}
