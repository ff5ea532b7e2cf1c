//! `--unwind dwarf`: stacks of code built without frame pointers. The kernel program
//! copies each call's registers and the top of its stack (`StackSample`); here each
//! sample is unwound with the unwind tables of the files its process maps (framehop over
//! `.eh_frame`/`.debug_frame`), its frames named, and the stacks counted. A process's
//! mappings are read the first time it is seen and kept, so the stacks of processes that
//! have exited by the end of the run are still whole and named.

mod image;
mod object;

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use aya::maps::{MapData, RingBuf};
use ebpf_tool_common::{COMM_LEN, StackSample};
use framehop::x86_64::CacheX86_64;

use crate::{events::comm_bytes, output::stacks::StackRow};
pub use image::{FrameAt, ObjectCache, ProcessImage};
pub use object::ObjectInfo;

/// Processes remembered at most; past it, the oldest seen are forgotten.
const MAX_PROCESSES: usize = 4096;

/// A stack as counted: the probe, the process name, the frames innermost first.
type StackIdentity = (u32, String, Vec<String>);

/// Unwound, named, counted stacks of one run.
pub struct DwarfStacks {
    /// The traced file and each probe's link-time address (by probe id): what stacks of
    /// processes that exited unseen are unwound with.
    binary: PathBuf,
    binary_info: Option<Option<Arc<ObjectInfo>>>,
    entry_addresses: Vec<u64>,
    objects: ObjectCache,
    processes: HashMap<u32, Option<ProcessImage>>,
    seen_order: Vec<u32>,
    cache: CacheX86_64,
    counts: HashMap<StackIdentity, u64>,
    /// Samples whose process had gone before it could be read.
    pub unknown_process: u64,
}

impl DwarfStacks {
    pub fn new(binary: PathBuf, entry_addresses: Vec<u64>) -> Self {
        DwarfStacks {
            binary,
            binary_info: None,
            entry_addresses,
            objects: ObjectCache::new(),
            processes: HashMap::new(),
            seen_order: Vec::new(),
            cache: CacheX86_64::new(),
            counts: HashMap::new(),
            unknown_process: 0,
        }
    }

    /// Unwinds and counts every sample waiting in the ring; true when it is empty.
    pub fn take(&mut self, ring: &mut RingBuf<MapData>, budget: usize) -> bool {
        for _ in 0..budget {
            let Some(item) = ring.next() else {
                return true;
            };
            if let Some(sample) = Sample::parse(&item) {
                self.add(&sample);
            }
        }
        false
    }

    fn add(&mut self, sample: &Sample<'_>) {
        self.read_image(sample.tgid, false);
        if self
            .image_of(sample.tgid)
            .is_some_and(|i| !i.knows(sample.ip))
        {
            // Code loaded since (dlopen): read the mappings again.
            self.read_image(sample.tgid, true);
        }
        let image = self
            .processes
            .get(&sample.tgid)
            .and_then(Option::as_ref)
            .filter(|image| image.knows(sample.ip));
        let frames = match image {
            Some(image) => {
                let mut read_stack = |address: u64| sample.word_at(address);
                let frames = image.unwind(
                    (sample.ip, sample.sp, sample.bp),
                    &mut self.cache,
                    &mut read_stack,
                );
                frames.into_iter().flat_map(|f| image.names(f)).collect()
            }
            None => {
                self.unknown_process += 1;
                self.unwind_in_binary(sample)
            }
        };
        let comm = String::from_utf8_lossy(comm_bytes(&sample.comm)).into_owned();
        *self
            .counts
            .entry((sample.probe_id, comm, frames))
            .or_default() += 1;
    }

    /// A sample of a process that exited before its mappings were read.
    fn unwind_in_binary(&mut self, sample: &Sample<'_>) -> Vec<String> {
        let binary = &self.binary;
        let info = self
            .binary_info
            .get_or_insert_with(|| ObjectInfo::read(binary, binary).map(Arc::new))
            .clone();
        let entry = self.entry_addresses.get(sample.probe_id as usize);
        let (Some(info), Some(&entry)) = (info, entry) else {
            return vec![format!(
                "[process {} exited before it was read]",
                sample.tgid
            )];
        };
        let image = ProcessImage::of_file(info, sample.ip.wrapping_sub(entry));
        let mut read_stack = |address: u64| sample.word_at(address);
        let frames = image.unwind(
            (sample.ip, sample.sp, sample.bp),
            &mut self.cache,
            &mut read_stack,
        );
        let mut names: Vec<String> = frames.iter().flat_map(|f| image.names(*f)).collect();
        if frames.last().is_some_and(|f| !image.knows(f.lookup)) || frames.is_empty() {
            names.push(format!(
                "[process {} exited: frames outside {} unknown]",
                sample.tgid,
                image_file(binary)
            ));
        }
        names
    }

    fn image_of(&self, pid: u32) -> Option<&ProcessImage> {
        self.processes.get(&pid)?.as_ref()
    }

    /// Reads the image of process `pid` at first sight (or again when `reread`).
    fn read_image(&mut self, pid: u32, reread: bool) {
        if reread || !self.processes.contains_key(&pid) {
            if !self.processes.contains_key(&pid) {
                self.seen_order.push(pid);
                if self.seen_order.len() > MAX_PROCESSES {
                    let oldest = self.seen_order.remove(0);
                    self.processes.remove(&oldest);
                }
            }
            let image = ProcessImage::read(pid, &mut self.objects);
            // A re-read of a process that has gone keeps what was known.
            if image.is_some() || !reread {
                self.processes.insert(pid, image);
            }
        }
    }

    /// One row per (function, comm, stack) with its count; `functions[probe_id]` names
    /// the probed function.
    pub fn rows(&self, functions: &[String]) -> Vec<StackRow> {
        self.counts
            .iter()
            .map(|((probe_id, comm, frames), count)| StackRow {
                func: functions
                    .get(*probe_id as usize)
                    .cloned()
                    .unwrap_or_default(),
                comm: comm.clone(),
                count: *count,
                frames: frames.clone(),
            })
            .collect()
    }
}

fn image_file(path: &std::path::Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// A `StackSample` read in place from the ring.
struct Sample<'a> {
    ip: u64,
    sp: u64,
    bp: u64,
    base: u64,
    tgid: u32,
    probe_id: u32,
    comm: [u8; COMM_LEN],
    stack: &'a [u8],
}

impl<'a> Sample<'a> {
    fn parse(bytes: &'a [u8]) -> Option<Sample<'a>> {
        use std::mem::offset_of;
        let u64_at = |at: usize| Some(u64::from_ne_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
        let u32_at = |at: usize| Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
        let len = u32_at(offset_of!(StackSample, len))? as usize;
        let stack_at = offset_of!(StackSample, stack);
        let comm_at = offset_of!(StackSample, comm);
        Some(Sample {
            ip: u64_at(offset_of!(StackSample, ip))?,
            sp: u64_at(offset_of!(StackSample, sp))?,
            bp: u64_at(offset_of!(StackSample, bp))?,
            base: u64_at(offset_of!(StackSample, base))?,
            tgid: u32_at(offset_of!(StackSample, tgid))?,
            probe_id: u32_at(offset_of!(StackSample, probe_id))?,
            comm: bytes.get(comm_at..comm_at + COMM_LEN)?.try_into().ok()?,
            stack: bytes.get(stack_at..stack_at + len)?,
        })
    }

    /// The stack word at `address`, when the copied window holds it.
    fn word_at(&self, address: u64) -> Result<u64, ()> {
        let at = address.checked_sub(self.base).ok_or(())? as usize;
        let bytes = self.stack.get(at..at + 8).ok_or(())?;
        Ok(u64::from_ne_bytes(bytes.try_into().map_err(|_| ())?))
    }
}
