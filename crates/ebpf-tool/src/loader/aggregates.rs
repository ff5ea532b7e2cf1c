//! Reading the kernel's per-CPU aggregation maps back, summed over CPUs: losses, counts,
//! histograms and stacks. Lives on after the probes are detached, so the last figures
//! can still be read.

use std::os::fd::{AsFd as _, AsRawFd as _};

use aya::maps::{Array, HashMap, MapData, PerCpuArray, PerCpuHashMap, StackTraceMap};
use ebpf_tool_common::{CallStack, GroupKey, HIST_ARG, HIST_SLOTS, StackKey, lost};

use super::LoadError;

/// The kernel's per-CPU aggregation maps.
pub struct Aggregates {
    pub(super) lost: PerCpuArray<MapData, u64>,
    pub(super) func_counts: FuncCounts,
    pub(super) counts: PerCpuHashMap<MapData, GroupKey, u64>,
    pub(super) hists: PerCpuArray<MapData, [u64; HIST_SLOTS]>,
    pub(super) group_hists: PerCpuHashMap<MapData, GroupKey, [u64; HIST_SLOTS]>,
    pub(super) stacks: StackTraceMap<MapData>,
    pub(super) stack_counts: PerCpuHashMap<MapData, StackKey, u64>,
    /// The call stacks of `--ret`/`--latency`, read at the end for calls still open.
    pub(super) call_slots: Array<MapData, CallStack>,
    pub(super) calls: HashMap<MapData, u64, CallStack>,
    pub(super) hists_per_probe: usize,
    /// A latency histogram comes first in each probe's; without it the value one is.
    pub(super) has_latency_hist: bool,
}

/// The `LOST` slots, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Losses {
    pub ringbuf_full: u64,
    pub counts_full: u64,
    pub stacks_failed: u64,
    pub unpaired: u64,
    pub unreadable: u64,
    pub abandoned: u64,
}

/// One histogram's bucket counts on each CPU.
pub type PerCpuSlots = Vec<Vec<u64>>;

impl Aggregates {
    pub fn losses(&self) -> Result<Losses, LoadError> {
        let slot = |n: u32| -> Result<u64, LoadError> { Ok(self.lost.get(&n, 0)?.iter().sum()) };
        Ok(Losses {
            ringbuf_full: slot(lost::RINGBUF_FULL)?,
            counts_full: slot(lost::COUNTS_FULL)?,
            stacks_failed: slot(lost::STACKS_FAILED)?,
            unpaired: slot(lost::UNPAIRED)?,
            unreadable: slot(lost::UNREADABLE)?,
            abandoned: slot(lost::ABANDONED)?,
        })
    }

    /// Calls entered and not returned from (so far): still running, or left in a way no
    /// probe sees (their process exited, or called exit() inside them).
    pub fn calls_in_progress(&self) -> Result<u64, LoadError> {
        let mut open = 0;
        for slot in 0..self.call_slots.len() {
            let stack = self.call_slots.get(&slot, 0)?;
            if stack.owner != 0 {
                open += u64::from(stack.depth);
            }
        }
        for entry in self.calls.iter() {
            let (_, stack) = entry?;
            open += u64::from(stack.depth);
        }
        Ok(open)
    }

    /// Calls per probe (`--count --by func`), indexed by probe id.
    pub fn func_counts(&self) -> Result<Vec<u64>, LoadError> {
        Ok(self.func_counts.sums())
    }

    /// Calls per (probe, pid|tid|comm) key.
    pub fn counts(&self) -> Result<Vec<(GroupKey, u64)>, LoadError> {
        let mut rows = Vec::new();
        for entry in self.counts.iter() {
            let (key, per_cpu) = entry?;
            rows.push((key, per_cpu.iter().sum()));
        }
        Ok(rows)
    }

    /// One histogram's slots on every CPU: `[cpu][slot]`.
    pub fn hist_slots(&self, probe: usize, which: usize) -> Result<Vec<Vec<u64>>, LoadError> {
        let which = if which == HIST_ARG && !self.has_latency_hist {
            0
        } else {
            which
        };
        let index = (probe * self.hists_per_probe + which) as u32;
        Ok(self
            .hists
            .get(&index, 0)?
            .iter()
            .map(|slots| slots.to_vec())
            .collect())
    }

    /// Histograms per (probe, group, which), each as its slots on every CPU.
    pub fn group_hists(&self) -> Result<Vec<(GroupKey, PerCpuSlots)>, LoadError> {
        let mut out = Vec::new();
        for entry in self.group_hists.iter() {
            let (key, per_cpu) = entry?;
            out.push((key, per_cpu.iter().map(|slots| slots.to_vec()).collect()));
        }
        Ok(out)
    }

    /// Calls per (probe, stack, pid).
    pub fn stack_counts(&self) -> Result<Vec<(StackKey, u64)>, LoadError> {
        let mut rows = Vec::new();
        for entry in self.stack_counts.iter() {
            let (key, per_cpu) = entry?;
            rows.push((key, per_cpu.iter().sum()));
        }
        Ok(rows)
    }

    /// The instruction pointers of a stored user stack, innermost first.
    pub fn stack_addresses(&self, stack_id: u32) -> Result<Vec<u64>, LoadError> {
        let trace = self.stacks.get(&stack_id, 0)?;
        Ok(trace.frames().iter().map(|frame| frame.ip).collect())
    }
}

/// `FUNC_COUNTS`, mapped into this process: every probe's count on every CPU is read
/// with plain loads, at the end and at each metrics scrape, without a syscall.
pub struct FuncCounts {
    /// Keeps the map alive as long as the mapping.
    _map: MapData,
    mapping: memmap2::Mmap,
    probes: usize,
    /// Slots per CPU: the probes, at least one.
    stride: usize,
    cpus: usize,
}

impl FuncCounts {
    pub(super) fn map(map: MapData, probes: usize, cpus: usize) -> Result<FuncCounts, LoadError> {
        let stride = probes.max(1);
        let bytes = stride * cpus * size_of::<u64>();
        // SAFETY: a shared read-only mapping of a BPF_F_MMAPABLE array of `bytes` bytes,
        // which the kernel keeps until both the map and the mapping are gone; its words
        // are read with volatile loads below, as the programs write them concurrently.
        let mapping = unsafe {
            memmap2::MmapOptions::new()
                .len(bytes)
                .map(map.fd().as_fd().as_raw_fd())
        }
        .map_err(LoadError::MapCounts)?;
        Ok(FuncCounts {
            _map: map,
            mapping,
            probes,
            stride,
            cpus,
        })
    }

    /// Each probe's count summed over CPUs.
    fn sums(&self) -> Vec<u64> {
        let words = self.mapping.as_ptr().cast::<u64>();
        let mut sums = vec![0u64; self.probes];
        for cpu in 0..self.cpus {
            for (probe, sum) in sums.iter_mut().enumerate() {
                // SAFETY: in bounds (stride * cpus words mapped, probes <= stride) and
                // 8-aligned (a page).
                *sum += unsafe { words.add(cpu * self.stride + probe).read_volatile() };
            }
        }
        sums
    }
}
