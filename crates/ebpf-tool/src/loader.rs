//! The only place that calls aya's program, map and link APIs. Loads the embedded kernel
//! object with this run's `Config`, attaches probes by file offset, owns the links
//! (dropping the `Loader` detaches every probe) and reads the aggregation maps back.

use std::path::PathBuf;

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, PerCpuHashMap, RingBuf, StackTraceMap},
    programs::{
        ProgramError, UProbe,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope},
    },
};
use ebpf_tool_common::{
    CONFIG_GLOBAL, Config, CountKey, HIST_SLOTS, HISTS_PER_PROBE, StackKey, lost, maps,
};

/// The kernel programs, built by build.rs from `crates/ebpf-tool-ebpf`.
static KERNEL_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/uprobe"));

const ENTRY_PROGRAM: &str = "hello_uprobe";
const RETURN_PROGRAM: &str = "hello_uretprobe";

/// Distinct stacks kept under `--stacks`.
const MAX_STACKS: u32 = 16384;

/// Entry or return of a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Entry,
    Return,
}

/// One place to put a probe: a file and an offset in it. `cookie` comes back in every
/// event from that probe, so events name their function without a lookup in the kernel.
#[derive(Debug, Clone)]
pub struct AttachPoint {
    pub path: PathBuf,
    pub offset: u64,
    pub cookie: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("loading the eBPF object failed: {0}")]
    Object(#[source] aya::EbpfError),
    #[error("the eBPF object has no program '{0}' (is the build out of date?)")]
    MissingProgram(&'static str),
    #[error("the eBPF object has no map '{0}' (is the build out of date?)")]
    MissingMap(&'static str),
    #[error("the kernel refused program '{program}': {source}")]
    Program {
        program: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("attaching to {path} at offset {offset:#x} failed: {source}")]
    Attach {
        path: PathBuf,
        offset: u64,
        #[source]
        source: ProgramError,
    },
    #[error("reading a map failed: {0}")]
    Map(#[from] aya::maps::MapError),
}

/// Where results come out. Lives on after the probes are detached, so the last records can
/// still be drained and the aggregates read.
pub struct Channels {
    pub events: RingBuf<MapData>,
    pub aggregates: Aggregates,
}

/// The kernel's per-CPU aggregation maps, summed over CPUs when read.
pub struct Aggregates {
    lost: PerCpuArray<MapData, u64>,
    func_counts: PerCpuArray<MapData, u64>,
    counts: PerCpuHashMap<MapData, CountKey, u64>,
    hists: PerCpuArray<MapData, u64>,
    stacks: StackTraceMap<MapData>,
    stack_counts: PerCpuHashMap<MapData, StackKey, u64>,
    probes: usize,
}

/// The `LOST` slots, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Losses {
    pub ringbuf_full: u64,
    pub counts_full: u64,
    pub stacks_failed: u64,
    pub unpaired: u64,
}

impl Aggregates {
    pub fn losses(&self) -> Result<Losses, LoadError> {
        let slot = |n: u32| -> Result<u64, LoadError> { Ok(self.lost.get(&n, 0)?.iter().sum()) };
        Ok(Losses {
            ringbuf_full: slot(lost::RINGBUF_FULL)?,
            counts_full: slot(lost::COUNTS_FULL)?,
            stacks_failed: slot(lost::STACKS_FAILED)?,
            unpaired: slot(lost::UNPAIRED)?,
        })
    }

    /// Calls per probe (`--count --by func`), indexed by probe id.
    pub fn func_counts(&self) -> Result<Vec<u64>, LoadError> {
        (0..self.probes as u32)
            .map(|probe| Ok(self.func_counts.get(&probe, 0)?.iter().sum()))
            .collect()
    }

    /// Calls per (probe, pid|tid|comm) key.
    pub fn counts(&self) -> Result<Vec<(CountKey, u64)>, LoadError> {
        let mut rows = Vec::new();
        for entry in self.counts.iter() {
            let (key, per_cpu) = entry?;
            rows.push((key, per_cpu.iter().sum()));
        }
        Ok(rows)
    }

    /// One histogram's slots on every CPU: `[cpu][slot]`, empty when it has no samples.
    pub fn hist_slots(&self, probe: usize, which: usize) -> Result<Vec<Vec<u64>>, LoadError> {
        let base = ((probe * HISTS_PER_PROBE + which) * HIST_SLOTS) as u32;
        let count = self
            .hists
            .get(&(base + ebpf_tool_common::HIST_COUNT as u32), 0)?;
        if count.iter().all(|&n| n == 0) {
            return Ok(Vec::new());
        }
        let cpus = count.iter().count();
        let mut per_cpu = vec![vec![0u64; HIST_SLOTS]; cpus];
        for slot in 0..HIST_SLOTS as u32 {
            for (cpu, value) in self.hists.get(&(base + slot), 0)?.iter().enumerate() {
                per_cpu[cpu][slot as usize] = *value;
            }
        }
        Ok(per_cpu)
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

/// Loaded programs and their attachments. Drop it to detach everything.
pub struct Loader {
    ebpf: Ebpf,
    scope: UProbeScope,
}

impl Loader {
    /// Loads the kernel object for `probes` functions and takes its maps out as `Channels`.
    pub fn load(config: &Config, probes: usize) -> Result<(Self, Channels), LoadError> {
        let probes_u32 = probes.max(1) as u32;
        let hist_slots = probes_u32 * (HISTS_PER_PROBE * HIST_SLOTS) as u32;
        let stacks = config.flags & ebpf_tool_common::flags::STACKS != 0;
        let stack_slots = if stacks { MAX_STACKS } else { 1 };
        let mut ebpf = EbpfLoader::new()
            // Nothing in the programs needs CO-RE relocation; skipping kernel BTF saves
            // parsing several megabytes at start-up.
            .btf(None)
            .override_global(CONFIG_GLOBAL, config, true)
            .map_max_entries(maps::FUNC_COUNTS, probes_u32)
            .map_max_entries(maps::HISTS, hist_slots)
            .map_max_entries(maps::STACKS, stack_slots)
            .map_max_entries(maps::STACK_COUNTS, stack_slots)
            .load(KERNEL_OBJECT)
            .map_err(LoadError::Object)?;
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(LoadError::MissingMap(name));
        let events = RingBuf::try_from(take(maps::EVENTS)?)?;
        let aggregates = Aggregates {
            lost: PerCpuArray::try_from(take(maps::LOST)?)?,
            func_counts: PerCpuArray::try_from(take(maps::FUNC_COUNTS)?)?,
            counts: PerCpuHashMap::try_from(take(maps::COUNTS)?)?,
            hists: PerCpuArray::try_from(take(maps::HISTS)?)?,
            stacks: StackTraceMap::try_from(take(maps::STACKS)?)?,
            stack_counts: PerCpuHashMap::try_from(take(maps::STACK_COUNTS)?)?,
            probes,
        };
        let scope = match std::num::NonZeroU32::new(config.target_tgid) {
            Some(pid) => UProbeScope::OneProcess(pid),
            None => UProbeScope::AllProcesses,
        };
        Ok((Self { ebpf, scope }, Channels { events, aggregates }))
    }

    /// Attaches the entry or return program at every point; returns how many.
    pub fn attach(&mut self, kind: ProbeKind, points: &[AttachPoint]) -> Result<usize, LoadError> {
        let name = match kind {
            ProbeKind::Entry => ENTRY_PROGRAM,
            ProbeKind::Return => RETURN_PROGRAM,
        };
        let program_error = |source| LoadError::Program {
            program: name,
            source,
        };
        let program: &mut UProbe = self
            .ebpf
            .program_mut(name)
            .ok_or(LoadError::MissingProgram(name))?
            .try_into()
            .map_err(program_error)?;
        if program.fd().is_err() {
            program.load().map_err(program_error)?;
        }
        for point in points {
            let attach_point = UProbeAttachPoint {
                location: UProbeAttachLocation::AbsoluteOffset(point.offset),
                cookie: Some(point.cookie),
            };
            program
                .attach(attach_point, &point.path, self.scope)
                .map_err(|source| LoadError::Attach {
                    path: point.path.clone(),
                    offset: point.offset,
                    source,
                })?;
        }
        Ok(points.len())
    }
}
