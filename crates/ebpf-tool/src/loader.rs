//! The only place that calls aya's program and link APIs. Loads the embedded kernel
//! object with this run's settings as globals, attaches probes by file offset, and owns
//! the links: dropping the `Loader` detaches every probe.

use std::{num::NonZeroU32, path::PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{
        ProgramError, UProbe,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope},
    },
};
use ebpf_tool_common::globals;

/// The kernel programs, built by build.rs from `crates/ebpf-tool-ebpf`.
static KERNEL_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/uprobe"));

const ENTRY_PROGRAM: &str = "hello_uprobe";
const RETURN_PROGRAM: &str = "hello_uretprobe";

/// Per-run settings baked into the programs before load.
#[derive(Debug, Clone, Copy)]
pub struct KernelSettings {
    /// ebpf-tool's own tgid, never reported.
    pub tool_tgid: u32,
    /// Only this process, when set.
    pub target_tgid: Option<NonZeroU32>,
}

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
    #[error("map error: {0}")]
    Map(#[from] aya::maps::MapError),
}

/// Where events and loss counts come out. Both live on after the probes are detached, so
/// the last records can still be drained and counted.
pub struct Channels {
    pub events: RingBuf<MapData>,
    pub lost: LossCounter,
}

/// The kernel's per-CPU count of records that found the ring buffer full.
pub struct LossCounter(PerCpuArray<MapData, u64>);

impl LossCounter {
    /// Records the kernel could not reserve room for, summed over CPUs.
    pub fn lost(&self) -> Result<u64, LoadError> {
        let per_cpu = self.0.get(&0, 0)?;
        Ok(per_cpu.iter().sum())
    }
}

/// Loaded programs and their attachments. Drop it to detach everything.
pub struct Loader {
    ebpf: Ebpf,
    settings: KernelSettings,
}

impl Loader {
    /// Loads the kernel object and takes its maps out as `Channels`.
    pub fn load(settings: KernelSettings) -> Result<(Self, Channels), LoadError> {
        let target = settings.target_tgid.map_or(0, NonZeroU32::get);
        let mut ebpf = EbpfLoader::new()
            // Nothing in the programs needs CO-RE relocation; skipping kernel BTF saves
            // parsing several megabytes at start-up.
            .btf(None)
            .override_global(globals::TOOL_TGID, &settings.tool_tgid, true)
            .override_global(globals::TARGET_TGID, &target, true)
            .load(KERNEL_OBJECT)
            .map_err(LoadError::Object)?;
        let events = ebpf
            .take_map("EVENTS")
            .ok_or(LoadError::MissingMap("EVENTS"))?;
        let lost = ebpf.take_map("LOST").ok_or(LoadError::MissingMap("LOST"))?;
        let channels = Channels {
            events: RingBuf::try_from(events)?,
            lost: LossCounter(PerCpuArray::try_from(lost)?),
        };
        Ok((Self { ebpf, settings }, channels))
    }

    /// Attaches the entry or return program at every point; returns how many.
    pub fn attach(&mut self, kind: ProbeKind, points: &[AttachPoint]) -> Result<usize, LoadError> {
        let name = match kind {
            ProbeKind::Entry => ENTRY_PROGRAM,
            ProbeKind::Return => RETURN_PROGRAM,
        };
        let scope = match self.settings.target_tgid {
            Some(pid) => UProbeScope::OneProcess(pid),
            None => UProbeScope::AllProcesses,
        };
        let program: &mut UProbe = self
            .ebpf
            .program_mut(name)
            .ok_or(LoadError::MissingProgram(name))?
            .try_into()
            .map_err(|source| LoadError::Program {
                program: name,
                source,
            })?;
        if program.fd().is_err() {
            program.load().map_err(|source| LoadError::Program {
                program: name,
                source,
            })?;
        }
        for point in points {
            let attach_point = UProbeAttachPoint {
                location: UProbeAttachLocation::AbsoluteOffset(point.offset),
                cookie: Some(point.cookie),
            };
            program
                .attach(attach_point, &point.path, scope)
                .map_err(|source| LoadError::Attach {
                    path: point.path.clone(),
                    offset: point.offset,
                    source,
                })?;
        }
        Ok(points.len())
    }
}
