//! The only place that talks to the kernel's program, map and link APIs: loads the
//! embedded kernel object with this run's `Config` (completed for this machine:
//! `machine`), writes per-probe specs, attaches probes by file offset (`attach`: one
//! uprobe_multi link, or perf-event links through aya), owns the links (dropping the
//! `Loader` detaches every probe) and hands out the maps results come from
//! (`aggregates`). `sys` and `multi` do the bpf(2) calls aya 0.14 does not.

mod aggregates;
mod attach;
mod kfuncs;
mod machine;
mod multi;
pub mod sys;

use std::{
    collections::HashMap,
    os::fd::{AsFd as _, OwnedFd},
    path::PathBuf,
};

use aya::{
    Ebpf,
    maps::{Array, Map, MapData, PerCpuArray, PerCpuHashMap, RingBuf, StackTraceMap},
    programs::{ProgramError, uprobe::UProbeScope},
};
use ebpf_tool_common::{
    CALL_SLOT_COUNT, CONFIG_GLOBAL, Config, EVENTS_RING_BYTES, EVENTS_RING_BYTES_UNUSED,
    HIST_SLOTS, ProbeSpec, STACK_RING_BYTES, by, flags, maps,
};

use aggregates::FuncCounts;
pub use aggregates::{Aggregates, Losses};
pub use attach::{AttachPoint, AttachReport};

use crate::tuning::{AttachMode, Tuning};

/// The kernel programs, built by build.rs from `crates/ebpf-tool-ebpf`.
static KERNEL_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/uprobe"));

const ENTRY_PROGRAM: &str = "hello_uprobe";
const RETURN_PROGRAM: &str = "hello_uretprobe";
const RETURN_SITE_PROGRAM: &str = "hello_retsite";
const ENTRY_RETURN_SITE_PROGRAM: &str = "hello_entry_retsite";
/// Programs that do nothing: the cost floor benchmarks compare against.
const SESSION_PROGRAM: &str = "hello_session";
const NOOP_ENTRY_PROGRAM: &str = "noop_uprobe";
const NOOP_RETURN_PROGRAM: &str = "noop_uretprobe";

/// The most kernel memory histograms may take (each is per CPU).
const MAX_HIST_BYTES: u64 = 512 << 20;
/// Distinct stacks kept under `--stacks`.
const MAX_STACKS: u32 = 16384;
/// Distinct (function, pid|tid|comm) keys `--count --by` can tell apart; more are counted
/// as "not counted", never dropped silently.
const MAX_COUNT_KEYS: u32 = 65536;
/// Histograms `--latency`/`--hist --by` can keep (function, group, kind); more groups
/// are counted as "not counted". Each is ~8 KB per CPU.
const MAX_GROUP_HISTS: u32 = 2048;
/// Threads that can be inside probed calls at once under `--ret`/`--latency` without a
/// slot of their own in `CALL_SLOTS` (an LRU map).
const MAX_THREADS_IN_CALLS: u32 = 16384;
/// Calls in progress nested deeper than a call stack keeps (`MAX_DEPTH`), over all
/// threads: recursion.
const MAX_DEEP_CALLS: u32 = 16384;

/// What a probe sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// A function's entry.
    Entry,
    /// Its return, by a uretprobe on its entry.
    Return,
    /// Its return, by a probe on one of its return instructions (`--ret-sites`).
    ReturnSite,
    /// Both: a function whose first instruction returns.
    EntryReturnSite,
    /// Entry and return of `--latency` in one program on a uprobe session link, the
    /// call's start time in its session cookie.
    Session,
}

impl ProbeKind {
    const ALL: usize = 5;
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "USDT semaphores need the kernel's uprobe_multi link (Linux 6.6+), which this kernel refused"
    )]
    SemaphoresNeedMulti,
    #[error("loading the eBPF object failed: {0}")]
    Object(#[source] aya::EbpfError),
    #[error("the eBPF object has no program '{0}' (is the build out of date?)")]
    MissingProgram(&'static str),
    #[error("the eBPF object has no map '{0}' (is the build out of date?)")]
    MissingMap(&'static str),
    #[error("the kernel refused program '{program}': {why}")]
    Program { program: &'static str, why: String },
    #[error("attaching to {path} at offset {offset:#x} failed: {source}")]
    Attach {
        path: PathBuf,
        offset: u64,
        #[source]
        source: ProgramError,
    },
    #[error("reading a map failed: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("cannot probe {path} at offset {offset:#x}: {why}")]
    Refused {
        path: PathBuf,
        offset: u64,
        why: String,
    },
    #[error(transparent)]
    Multi(#[from] multi::MultiError),
    #[error(
        "histograms for {probes} functions would take {mib} MiB of kernel memory (one per CPU each); narrow FUNCTION, or count instead (--count)"
    )]
    HistogramsTooBig { probes: usize, mib: u64 },
    #[error("mapping the call counts into memory failed: {0}")]
    MapCounts(#[source] std::io::Error),
    #[error("{expected} probe specs were needed, {got} given")]
    Specs { expected: usize, got: usize },
}

/// Where results come out. Lives on after the probes are detached, so the last records can
/// still be drained and the aggregates read.
pub struct Channels {
    pub events: RingBuf<MapData>,
    /// Registers and stack windows to unwind, under `STACKS_DWARF`.
    pub stack_samples: Option<RingBuf<MapData>>,
    pub aggregates: Aggregates,
}

/// Loaded programs and their attachments. Drop it to detach everything.
pub struct Loader {
    ebpf: Ebpf,
    /// The settings the programs were loaded with: the run's, completed for this machine.
    config: Config,
    scope: UProbeScope,
    pid: u32,
    attach_mode: AttachMode,
    /// Every map's fd, by the name the object gives it, for programs loaded by `multi`.
    map_fds: HashMap<String, OwnedFd>,
    /// Programs loaded for uprobe_multi links, by `ProbeKind`.
    multi_programs: [Option<OwnedFd>; ProbeKind::ALL],
    /// uprobe_multi links; closing one detaches all its probes.
    multi_links: Vec<OwnedFd>,
    /// Perf-event links made through aya, by the program that owns them.
    perf_links: Vec<(ProbeKind, aya::programs::uprobe::UProbeLinkId)>,
    /// Attach the do-nothing programs instead (benchmark floor).
    noop: bool,
    /// `--latency` with only an in-kernel histogram pairs entries and returns in uprobe
    /// sessions (`ProbeKind::Session`) where the kernel has them.
    sessions: bool,
}

impl Loader {
    /// Loads the kernel object for `probes` probes and takes its maps out as `Channels`.
    /// Under `SPEC_PER_PROBE`, `specs[probe]` is what each probe reads. With `noop`, the
    /// programs attached are ones that do nothing (benchmark floor).
    pub fn load(
        config: &Config,
        probes: usize,
        specs: &[ProbeSpec],
        noop: bool,
        tuning: &Tuning,
    ) -> Result<(Self, Channels), LoadError> {
        let probes_u32 = probes.max(1) as u32;
        let has = |flag: u32| config.flags & flag != 0;
        if has(flags::SPEC_PER_PROBE) && specs.len() != probes {
            return Err(LoadError::Specs {
                expected: probes,
                got: specs.len(),
            });
        }
        // Maps a run does not use get one slot: big hash maps are preallocated, and
        // creating a 65536-entry per-CPU one costs ~80 ms of start-up.
        let sized = |used: bool, entries: u32| if used { entries } else { 1 };
        let dwarf_stacks = has(flags::STACKS_DWARF);
        let stack_slots = sized(has(flags::STACKS) && !dwarf_stacks, MAX_STACKS);
        let count_slots = sized(
            has(flags::COUNT) && config.count_by != by::FUNC,
            MAX_COUNT_KEYS,
        );
        let group_hists = sized(has(flags::GROUP_HISTS), MAX_GROUP_HISTS);
        let entry_groups = sized(
            has(flags::GROUP_HISTS) && has(flags::HIST_LATENCY),
            MAX_THREADS_IN_CALLS,
        );
        let hashed_calls = sized(has(flags::PAIR_RETURNS), MAX_THREADS_IN_CALLS);
        let call_slots = sized(
            has(flags::PAIR_RETURNS),
            tuning.call_slots.unwrap_or(CALL_SLOT_COUNT),
        );
        let hists = has(flags::HIST_LATENCY) || has(flags::HIST_VALUE);
        let hist_slots = sized(hists, probes_u32 * config.hists_per_probe.max(1));
        let possible_cpus = aya::util::nr_cpus().map_or(1, |n| n as u32);
        let hist_bytes = u64::from(hist_slots + group_hists)
            * (HIST_SLOTS * 8) as u64
            * u64::from(possible_cpus);
        if hist_bytes > MAX_HIST_BYTES {
            return Err(LoadError::HistogramsTooBig {
                probes,
                mib: hist_bytes >> 20,
            });
        }
        let ring_bytes = if has(flags::EMIT_EVENTS) {
            EVENTS_RING_BYTES
        } else {
            EVENTS_RING_BYTES_UNUSED
        };
        let config = machine::complete(config, ring_bytes, call_slots, tuning);
        let mut ebpf = machine::loader_without_kernel_btf()
            .override_global(CONFIG_GLOBAL, &config, true)
            .map_max_entries(maps::FUNC_COUNTS, probes_u32 * possible_cpus)
            .map_max_entries(maps::HISTS, hist_slots)
            .map_max_entries(maps::EVENTS, ring_bytes)
            .map_max_entries(maps::STACKS, stack_slots)
            .map_max_entries(maps::STACK_COUNTS, stack_slots)
            .map_max_entries(
                maps::STACK_SAMPLES,
                if dwarf_stacks {
                    STACK_RING_BYTES
                } else {
                    EVENTS_RING_BYTES_UNUSED
                },
            )
            .map_max_entries(maps::COUNTS, count_slots)
            .map_max_entries(maps::GROUP_HISTS, group_hists)
            .map_max_entries(maps::ENTRY_GROUPS, entry_groups)
            .map_max_entries(maps::CALLS, hashed_calls)
            .map_max_entries(maps::CALL_SLOTS, call_slots)
            .map_max_entries(
                maps::DEEP_CALLS,
                sized(has(flags::PAIR_RETURNS), MAX_DEEP_CALLS),
            )
            .map_max_entries(maps::SPECS, sized(has(flags::SPEC_PER_PROBE), probes_u32))
            .load(KERNEL_OBJECT)
            .map_err(LoadError::Object)?;
        if has(flags::SPEC_PER_PROBE) {
            let mut table: Array<_, ProbeSpec> = Array::try_from(
                ebpf.map_mut(maps::SPECS)
                    .ok_or(LoadError::MissingMap(maps::SPECS))?,
            )?;
            for (probe, spec) in specs.iter().enumerate() {
                table.set(probe as u32, spec, 0)?;
            }
        }
        let map_fds = ebpf
            .maps()
            .filter_map(|(name, map)| {
                Some((
                    name.to_owned(),
                    map_data(map)?.fd().as_fd().try_clone_to_owned().ok()?,
                ))
            })
            .collect();
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(LoadError::MissingMap(name));
        let events = RingBuf::try_from(take(maps::EVENTS)?)?;
        let stack_samples = if dwarf_stacks {
            Some(RingBuf::try_from(take(maps::STACK_SAMPLES)?)?)
        } else {
            None
        };
        let aggregates = Aggregates {
            lost: PerCpuArray::try_from(take(maps::LOST)?)?,
            func_counts: match take(maps::FUNC_COUNTS)? {
                aya::maps::Map::Array(data) => {
                    FuncCounts::map(data, probes, possible_cpus as usize)?
                }
                _ => return Err(LoadError::MissingMap(maps::FUNC_COUNTS)),
            },
            counts: PerCpuHashMap::try_from(take(maps::COUNTS)?)?,
            group_hists: PerCpuHashMap::try_from(take(maps::GROUP_HISTS)?)?,
            hists: PerCpuArray::try_from(take(maps::HISTS)?)?,
            stacks: StackTraceMap::try_from(take(maps::STACKS)?)?,
            stack_counts: PerCpuHashMap::try_from(take(maps::STACK_COUNTS)?)?,
            hists_per_probe: config.hists_per_probe.max(1) as usize,
            has_latency_hist: has(flags::HIST_LATENCY),
            call_slots: Array::try_from(take(maps::CALL_SLOTS)?)?,
            calls: aya::maps::HashMap::try_from(take(maps::CALLS)?)?,
        };
        let scope = match std::num::NonZeroU32::new(config.target_tgid) {
            Some(pid) => UProbeScope::OneProcess(pid),
            None => UProbeScope::AllProcesses,
        };
        let loader = Self {
            ebpf,
            config,
            scope,
            pid: config.target_tgid,
            attach_mode: tuning.attach,
            map_fds,
            multi_programs: Default::default(),
            multi_links: Vec::new(),
            perf_links: Vec::new(),
            noop,
            sessions: sessions_fit(&config, noop, tuning),
        };
        Ok((
            loader,
            Channels {
                events,
                stack_samples,
                aggregates,
            },
        ))
    }

    /// The settings the programs were really loaded with.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

fn program_name(kind: ProbeKind, noop: bool) -> &'static str {
    match (kind, noop) {
        (ProbeKind::Entry, false) => ENTRY_PROGRAM,
        (ProbeKind::Return, false) => RETURN_PROGRAM,
        (ProbeKind::ReturnSite, false) => RETURN_SITE_PROGRAM,
        (ProbeKind::EntryReturnSite, false) => ENTRY_RETURN_SITE_PROGRAM,
        (ProbeKind::Session, false) => SESSION_PROGRAM,
        (
            ProbeKind::Entry
            | ProbeKind::ReturnSite
            | ProbeKind::EntryReturnSite
            | ProbeKind::Session,
            true,
        ) => NOOP_ENTRY_PROGRAM,
        (ProbeKind::Return, true) => NOOP_RETURN_PROGRAM,
    }
}

impl Loader {
    /// Whether this run's `--latency` uses uprobe sessions (attach `ProbeKind::Session`
    /// instead of an entry and a return probe).
    pub fn sessions(&self) -> bool {
        self.sessions
    }
}

/// Whether this run's returns can be seen by uprobe sessions: only a latency histogram is
/// wanted (no record per call, no groups: those need the call's values at the return),
/// links are uprobe_multi, and the kernel has session links and their kfuncs.
fn sessions_fit(config: &Config, noop: bool, tuning: &Tuning) -> bool {
    let has = |flag: u32| config.flags & flag != 0;
    tuning.sessions
        && !noop
        && tuning.attach != AttachMode::Perf
        && has(flags::PAIR_RETURNS)
        && has(flags::HIST_LATENCY)
        && !has(flags::EMIT_EVENTS)
        && !has(flags::GROUP_HISTS)
        && crate::kernel_btf::session_kfuncs().is_some()
        && sys::program_loads(&sys::RETURN_ZERO, sys::BPF_TRACE_UPROBE_SESSION, 0).is_ok()
}

/// The data of the map kinds this object uses.
fn map_data(map: &Map) -> Option<&MapData> {
    match map {
        Map::Array(data)
        | Map::PerCpuArray(data)
        | Map::PerCpuHashMap(data)
        | Map::LruHashMap(data)
        | Map::HashMap(data)
        | Map::RingBuf(data)
        | Map::StackTraceMap(data) => Some(data),
        _ => None,
    }
}
