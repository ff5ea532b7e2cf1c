//! The only place that talks to the kernel's program, map and link APIs (through aya, and
//! `multi` for the uprobe_multi link aya lacks). Loads the embedded kernel object with
//! this run's `Config`, attaches probes by file offset, owns the links (dropping the
//! `Loader` detaches every probe) and reads the aggregation maps back.

mod multi;

use std::{
    collections::HashMap,
    os::fd::{AsFd as _, OwnedFd},
    path::PathBuf,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Map, MapData, PerCpuArray, PerCpuHashMap, RingBuf, StackTraceMap},
    programs::{
        ProgramError, UProbe,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope},
    },
};
use ebpf_tool_common::{
    CALL_SLOT_COUNT, CONFIG_GLOBAL, Config, CountKey, EVENTS_RING_BYTES, EVENTS_RING_BYTES_UNUSED,
    HIST_SLOTS, HISTS_PER_PROBE, KIND_CALL, KIND_ENTRY, StackKey, WAKEUP_FRACTION, by, flags, lost,
    maps, record_size,
};

use crate::{kernel, kernel_btf};

/// The kernel programs, built by build.rs from `crates/ebpf-tool-ebpf`.
static KERNEL_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/uprobe"));

const ENTRY_PROGRAM: &str = "hello_uprobe";
const RETURN_PROGRAM: &str = "hello_uretprobe";
/// Programs that do nothing: the cost floor benchmarks compare against.
const NOOP_ENTRY_PROGRAM: &str = "noop_uprobe";
const NOOP_RETURN_PROGRAM: &str = "noop_uretprobe";

/// Distinct stacks kept under `--stacks`.
const MAX_STACKS: u32 = 16384;
/// Distinct (function, pid|tid|comm) keys `--count --by` can tell apart; more are counted
/// as "not counted", never dropped silently.
const MAX_COUNT_KEYS: u32 = 65536;
/// Threads that can be inside probed calls at once under `--ret`/`--latency` without a
/// slot of their own in `CALL_SLOTS` (an LRU map).
const MAX_THREADS_IN_CALLS: u32 = 16384;

/// `EBPF_TOOL_TASK_FIELDS=off` makes the programs read task ids and comm through helpers
/// even where the kernel's BTF gives the fields' offsets (to test that path).
pub const TASK_FIELDS_VAR: &str = "EBPF_TOOL_TASK_FIELDS";

/// `EBPF_TOOL_CALL_SLOTS=N` (a power of two up to `CALL_SLOT_COUNT`) gives threads only N
/// slots to share, so tests can make them collide and take the `CALLS` fallback.
pub const CALL_SLOTS_VAR: &str = "EBPF_TOOL_CALL_SLOTS";

/// Slots in `CALL_SLOTS` for this run.
fn call_slot_count() -> u32 {
    std::env::var(CALL_SLOTS_VAR)
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|n| n.is_power_of_two() && *n <= CALL_SLOT_COUNT)
        .unwrap_or(CALL_SLOT_COUNT)
}

/// What only the running machine can fill in: where its kernel keeps task fields, and how
/// many records each CPU writes before waking the reader.
fn complete_for_this_machine(config: &Config, ring_bytes: u32, call_slots: u32) -> Config {
    let mut config = *config;
    config.call_slot_mask = call_slots - 1;
    let has = |flag: u32| config.flags & flag != 0;
    let kind = if has(flags::PAIR_RETURNS) {
        KIND_CALL
    } else {
        KIND_ENTRY
    };
    // Each record also takes the ring's 8-byte header.
    let record = record_size(kind, config.record_args, config.str_arg_count) + 8;
    let cpus = aya::util::nr_cpus().unwrap_or(1).max(1);
    let batch = ring_bytes as usize / WAKEUP_FRACTION as usize / record / cpus;
    config.wakeup_every = batch.clamp(1, u32::MAX as usize) as u32;
    let turned_off = std::env::var(TASK_FIELDS_VAR).is_ok_and(|v| v == "off");
    if !turned_off
        && kernel::has_task_btf_pointer(kernel::KernelVersion::current())
        && let Some(fields) = kernel_btf::task_fields()
        && multi::task_fields_readable(&[fields.tgid, fields.pid], &[fields.comm, fields.comm + 8])
    {
        config.flags |= flags::TASK_FIELDS;
        config.task_tgid_off = fields.tgid;
        config.task_pid_off = fields.pid;
        config.task_comm_off = fields.comm;
    }
    log::debug!(
        "task fields read {}",
        if config.flags & flags::TASK_FIELDS != 0 {
            "through the task's BTF pointer"
        } else {
            "through helpers"
        }
    );
    config
}

/// An `EbpfLoader` that does not parse the kernel's BTF.
///
/// `EbpfLoader::new()` in aya 0.14 eagerly reads and parses /sys/kernel/btf/vmlinux
/// (~6 MB here: ~50 ms and ~10 MB of peak memory), before `.btf(None)` can say it is not
/// needed; nothing in these programs uses CO-RE. So the loader is built while opening a
/// file is impossible (RLIMIT_NOFILE lowered to the lowest free descriptor, for that one
/// call on this thread before any other starts): the read fails at once, aya takes "no
/// BTF", and the limit is put back.
fn loader_without_kernel_btf() -> EbpfLoader<'static> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit/dup/close on our own process with valid arguments.
    let lowered = unsafe {
        let lowest_free = libc::dup(0);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
            && lowest_free >= 0
            && libc::close(lowest_free) == 0
            && libc::setrlimit(
                libc::RLIMIT_NOFILE,
                &libc::rlimit {
                    rlim_cur: lowest_free as libc::rlim_t,
                    rlim_max: limit.rlim_max,
                },
            ) == 0
    };
    let mut loader = EbpfLoader::new();
    if lowered {
        // SAFETY: restores the limit read above.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    }
    loader.btf(None);
    loader
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
    hists: PerCpuArray<MapData, [u64; HIST_SLOTS]>,
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
    pub unreadable: u64,
}

impl Aggregates {
    pub fn losses(&self) -> Result<Losses, LoadError> {
        let slot = |n: u32| -> Result<u64, LoadError> { Ok(self.lost.get(&n, 0)?.iter().sum()) };
        Ok(Losses {
            ringbuf_full: slot(lost::RINGBUF_FULL)?,
            counts_full: slot(lost::COUNTS_FULL)?,
            stacks_failed: slot(lost::STACKS_FAILED)?,
            unpaired: slot(lost::UNPAIRED)?,
            unreadable: slot(lost::UNREADABLE)?,
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

    /// One histogram's slots on every CPU: `[cpu][slot]`.
    pub fn hist_slots(&self, probe: usize, which: usize) -> Result<Vec<Vec<u64>>, LoadError> {
        let index = (probe * HISTS_PER_PROBE + which) as u32;
        Ok(self
            .hists
            .get(&index, 0)?
            .iter()
            .map(|slots| slots.to_vec())
            .collect())
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

/// How probes are attached: `EBPF_TOOL_ATTACH=perf` forces one perf-event link per
/// function (the fallback), `multi` forbids the fallback; unset picks uprobe_multi when
/// the kernel has it.
pub const ATTACH_MODE_VAR: &str = "EBPF_TOOL_ATTACH";

/// What attaching did.
#[derive(Debug, Default)]
pub struct AttachReport {
    /// Points attached.
    pub attached: usize,
    /// Points the kernel refused, by index into the request, with why.
    pub failed: Vec<(usize, LoadError)>,
    /// True when one uprobe_multi link carries them.
    pub multi: bool,
}

/// Loaded programs and their attachments. Drop it to detach everything.
pub struct Loader {
    ebpf: Ebpf,
    scope: UProbeScope,
    pid: u32,
    /// Every map's fd, by the name the object gives it, for programs loaded by `multi`.
    map_fds: HashMap<String, OwnedFd>,
    /// Programs loaded for uprobe_multi links: entry, return.
    multi_programs: [Option<OwnedFd>; 2],
    /// uprobe_multi links; closing one detaches all its probes.
    multi_links: Vec<OwnedFd>,
    /// Perf-event links made through aya, by the program that owns them.
    perf_links: Vec<(ProbeKind, aya::programs::uprobe::UProbeLinkId)>,
    /// Attach the do-nothing programs instead (benchmark floor).
    noop: bool,
}

impl Loader {
    /// Loads the kernel object for `probes` functions and takes its maps out as `Channels`.
    /// With `noop`, the programs attached are ones that do nothing (benchmark floor).
    pub fn load(config: &Config, probes: usize, noop: bool) -> Result<(Self, Channels), LoadError> {
        let probes_u32 = probes.max(1) as u32;
        let hists = probes_u32 * HISTS_PER_PROBE as u32;
        let has = |flag: u32| config.flags & flag != 0;
        // Maps a run does not use get one slot: big hash maps are preallocated, and
        // creating a 65536-entry per-CPU one costs ~80 ms of start-up.
        let sized = |used: bool, entries: u32| if used { entries } else { 1 };
        let stack_slots = sized(has(flags::STACKS), MAX_STACKS);
        let count_slots = sized(
            has(flags::COUNT) && config.count_by != by::FUNC,
            MAX_COUNT_KEYS,
        );
        let hashed_calls = sized(has(flags::PAIR_RETURNS), MAX_THREADS_IN_CALLS);
        let call_slots = sized(has(flags::PAIR_RETURNS), call_slot_count());
        let ring_bytes = if has(flags::EMIT_EVENTS) {
            EVENTS_RING_BYTES
        } else {
            EVENTS_RING_BYTES_UNUSED
        };
        let config = complete_for_this_machine(config, ring_bytes, call_slots);
        let mut ebpf = loader_without_kernel_btf()
            .override_global(CONFIG_GLOBAL, &config, true)
            .map_max_entries(maps::FUNC_COUNTS, probes_u32)
            .map_max_entries(maps::HISTS, hists)
            .map_max_entries(maps::EVENTS, ring_bytes)
            .map_max_entries(maps::STACKS, stack_slots)
            .map_max_entries(maps::STACK_COUNTS, stack_slots)
            .map_max_entries(maps::COUNTS, count_slots)
            .map_max_entries(maps::CALLS, hashed_calls)
            .map_max_entries(maps::CALL_SLOTS, call_slots)
            .load(KERNEL_OBJECT)
            .map_err(LoadError::Object)?;
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
        let loader = Self {
            ebpf,
            scope,
            pid: config.target_tgid,
            map_fds,
            multi_programs: [None, None],
            multi_links: Vec::new(),
            perf_links: Vec::new(),
            noop,
        };
        Ok((loader, Channels { events, aggregates }))
    }

    /// Attaches the entry or return program at every point (all in one file): through
    /// one uprobe_multi link when the kernel supports it, else one perf-event link each.
    /// Points the kernel refuses are reported, not fatal.
    pub fn attach(
        &mut self,
        kind: ProbeKind,
        points: &[AttachPoint],
    ) -> Result<AttachReport, LoadError> {
        let mode = std::env::var(ATTACH_MODE_VAR).unwrap_or_default();
        let same_file = points.windows(2).all(|w| w[0].path == w[1].path);
        if mode != "perf" && same_file && !points.is_empty() {
            match self.attach_multi(kind, points) {
                Ok(report) => return Ok(report),
                Err(err) if mode == "multi" => return Err(LoadError::Multi(err)),
                Err(err) => {
                    log::debug!("uprobe_multi unavailable, one link per function instead: {err}")
                }
            }
        }
        self.attach_perf(kind, points)
    }

    fn attach_multi(
        &mut self,
        kind: ProbeKind,
        points: &[AttachPoint],
    ) -> Result<AttachReport, multi::MultiError> {
        let slot = kind as usize;
        if self.multi_programs[slot].is_none() {
            let name = program_name(kind, self.noop);
            self.multi_programs[slot] =
                Some(multi::load_program(KERNEL_OBJECT, name, &self.map_fds)?);
        }
        let mut report = AttachReport {
            multi: true,
            ..Default::default()
        };
        // Sites the kernel would refuse were left out when FUNCTION was resolved
        // (symbols::probe_site); a refusal here is a kernel that disagrees.
        let started = std::time::Instant::now();
        let plain: Vec<usize> = (0..points.len()).collect();
        if !plain.is_empty() {
            self.attach_multi_bisecting(kind, points, &plain, &mut report)?;
        }
        log::debug!(
            "{} points in one link, {} refused, in {:?}",
            report.attached,
            report.failed.len(),
            started.elapsed()
        );
        Ok(report)
    }

    /// One link for `indexes`; when the kernel refuses it, halves until each refused
    /// point is found alone (a function whose first instruction cannot be probed must not
    /// take the others down).
    fn attach_multi_bisecting(
        &mut self,
        kind: ProbeKind,
        points: &[AttachPoint],
        indexes: &[usize],
        report: &mut AttachReport,
    ) -> Result<(), multi::MultiError> {
        let program = self.multi_programs[kind as usize]
            .as_ref()
            .expect("loaded above");
        let offsets: Vec<u64> = indexes.iter().map(|&i| points[i].offset).collect();
        let cookies: Vec<u64> = indexes.iter().map(|&i| points[i].cookie).collect();
        let path = &points[indexes[0]].path;
        match multi::attach(
            program.as_fd(),
            path,
            &offsets,
            &cookies,
            kind == ProbeKind::Return,
            self.pid,
        ) {
            Ok(link) => {
                self.multi_links.push(link);
                report.attached += indexes.len();
                Ok(())
            }
            // Nothing attached yet and everything refused: the kernel lacks the link type.
            Err(err)
                if report.attached == 0 && report.failed.is_empty() && is_unsupported(&err) =>
            {
                Err(err)
            }
            Err(err) if indexes.len() == 1 => {
                let i = indexes[0];
                report.failed.push((
                    i,
                    LoadError::Refused {
                        path: points[i].path.clone(),
                        offset: points[i].offset,
                        why: describe_errno(err.link_errno()),
                    },
                ));
                Ok(())
            }
            Err(_) => {
                let (left, right) = indexes.split_at(indexes.len() / 2);
                self.attach_multi_bisecting(kind, points, left, report)?;
                self.attach_multi_bisecting(kind, points, right, report)
            }
        }
    }

    /// Removes every probe and keeps the programs and maps, so the run can go on and
    /// attach again (a traced file that changed).
    pub fn detach_all(&mut self) {
        self.multi_links.clear();
        for (kind, link) in std::mem::take(&mut self.perf_links) {
            let name = program_name(kind, self.noop);
            if let Some(program) = self
                .ebpf
                .program_mut(name)
                .and_then(|p| <&mut UProbe>::try_from(p).ok())
                && let Err(err) = program.detach(link)
            {
                log::warn!("detaching a probe failed: {err}");
            }
        }
    }

    /// One perf-event link per point, through aya.
    fn attach_perf(
        &mut self,
        kind: ProbeKind,
        points: &[AttachPoint],
    ) -> Result<AttachReport, LoadError> {
        let name = program_name(kind, self.noop);
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
        let mut report = AttachReport::default();
        for (index, point) in points.iter().enumerate() {
            let attach_point = UProbeAttachPoint {
                location: UProbeAttachLocation::AbsoluteOffset(point.offset),
                cookie: Some(point.cookie),
            };
            match program.attach(attach_point, &point.path, self.scope) {
                Ok(link) => {
                    self.perf_links.push((kind, link));
                    report.attached += 1;
                }
                Err(source) => {
                    let errno = errno_of(&source);
                    let error = match errno {
                        Some(_) => LoadError::Refused {
                            path: point.path.clone(),
                            offset: point.offset,
                            why: describe_errno(errno),
                        },
                        None => LoadError::Attach {
                            path: point.path.clone(),
                            offset: point.offset,
                            source,
                        },
                    };
                    report.failed.push((index, error));
                }
            }
        }
        Ok(report)
    }
}

fn program_name(kind: ProbeKind, noop: bool) -> &'static str {
    match (kind, noop) {
        (ProbeKind::Entry, false) => ENTRY_PROGRAM,
        (ProbeKind::Return, false) => RETURN_PROGRAM,
        (ProbeKind::Entry, true) => NOOP_ENTRY_PROGRAM,
        (ProbeKind::Return, true) => NOOP_RETURN_PROGRAM,
    }
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

/// Errors that mean "this kernel has no uprobe_multi", not "this offset is bad".
fn is_unsupported(err: &multi::MultiError) -> bool {
    matches!(
        err.link_errno(),
        Some(libc::EINVAL | libc::EOPNOTSUPP | libc::ENOSYS | libc::EPERM)
    )
}

/// The kernel-internal ENOTSUPP, which uprobes return for instructions they cannot
/// single-step.
const ENOTSUPP: i32 = 524;

fn errno_of(err: &ProgramError) -> Option<i32> {
    let mut source: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io.raw_os_error();
        }
        source = e.source();
    }
    None
}

fn describe_errno(errno: Option<i32>) -> String {
    match errno {
        Some(ENOTSUPP) => {
            "the kernel cannot put a uprobe on its first instruction (ENOTSUPP: uprobes cannot single-step it, e.g. an AVX or lock-prefixed instruction)".into()
        }
        Some(libc::EINVAL) => "the kernel refused the offset (EINVAL; not an instruction boundary?)".into(),
        Some(errno) => std::io::Error::from_raw_os_error(errno).to_string(),
        None => "unknown error".into(),
    }
}
