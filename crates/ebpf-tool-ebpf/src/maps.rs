//! The run's settings (`CONFIG`) and every map the programs use.

use core::ptr::read_volatile;

use aya_ebpf::{
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf, StackTrace},
};
use ebpf_tool_common::{
    CALL_SLOT_COUNT, CallStack, Config, DeepKey, EVENTS_RING_BYTES, Frame, GroupKey, HIST_SLOTS,
    ProbeSpec, StackKey, lost,
};

/// This run's settings; the loader overwrites the whole struct before load.
#[unsafe(no_mangle)]
static CONFIG: Config = Config::DEFAULT;

/// This run's settings. Read once per program run and passed down: each read is a
/// volatile load of the pointer (it keeps the compiler from folding the default value
/// in), after which the compiler may reuse the fields it loaded; the verifier knows
/// them as the constants the loader wrote (the map is frozen read-only).
#[inline(always)]
pub fn config() -> Cfg {
    // SAFETY: the loader has replaced the default value, and the map holding it is
    // frozen read-only.
    unsafe { &*read_volatile(&&raw const CONFIG) }
}

/// The run's settings, as every step gets them.
pub type Cfg = &'static Config;

#[inline(always)]
pub fn has(cfg: Cfg, flag: u32) -> bool {
    cfg.flags & flag != 0
}

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_RING_BYTES, 0);

/// Records written on each CPU since it last woke the reader.
#[map]
pub static PENDING: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// What could not be recorded, by cause (`lost::*`), per CPU so counting never contends.
#[map]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(lost::SLOTS, 0);

/// Each probe's values, by probe id, under `SPEC_PER_PROBE` (loader-sized and filled).
#[map]
pub static SPECS: Array<ProbeSpec> = Array::with_max_entries(1, 0);

/// Call stacks of threads inside probed calls, at `tid & call_slot_mask`, each held by
/// one thread at a time (`CallStack::owner`) and given back when its depth is 0.
#[map]
pub static CALL_SLOTS: Array<CallStack> = Array::with_max_entries(CALL_SLOT_COUNT, 0);

/// Call stacks of threads (or goroutines) whose slot another holds, by owner. LRU, so
/// threads that die mid-call cannot fill it.
#[map]
pub static CALLS: LruHashMap<u64, CallStack> = LruHashMap::with_max_entries(16384, 0);

/// Frames of calls nested deeper than `MAX_DEPTH` (recursion), by owner and stack
/// pointer. LRU, so frames of calls that never returned cannot fill it.
#[map]
pub static DEEP_CALLS: LruHashMap<DeepKey, Frame> = LruHashMap::with_max_entries(1, 0);

/// A zeroed `CallStack` to insert from: too big for the 512-byte BPF stack.
#[map]
pub static EMPTY_CALL_STACK: PerCpuArray<CallStack> = PerCpuArray::with_max_entries(1, 0);

/// `--count` by function: one slot per probe on each CPU, CPU after CPU (slot
/// `cpu * probes + probe`; the loader sizes it). A plain array the tool maps into its
/// memory, not a per-CPU one: the kernel allocates a per-CPU array's slots one by one
/// (140 ms for a glob's 81,000 probes here) and the tool read them with a syscall each.
#[map]
pub static FUNC_COUNTS: Array<u64> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// `BPF_F_MMAPABLE` (include/uapi/linux/bpf.h): an array userspace can `mmap`.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;

/// `--count --by pid|tid|comm`.
#[map]
pub static COUNTS: PerCpuHashMap<GroupKey, u64> = PerCpuHashMap::with_max_entries(65536, 0);

/// Log-linear histograms, `Config::hists_per_probe` per probe (loader-sized); one value is a whole
/// histogram so an update is one lookup.
#[map]
pub static HISTS: PerCpuArray<[u64; HIST_SLOTS]> = PerCpuArray::with_max_entries(1, 0);

/// Histograms per group (`--latency`/`--hist` with `--by`), keyed as `COUNTS` is plus
/// which histogram (loader-sized).
#[map]
pub static GROUP_HISTS: PerCpuHashMap<GroupKey, [u64; HIST_SLOTS]> =
    PerCpuHashMap::with_max_entries(1, 0);

/// A zeroed histogram to insert from: too big for the 512-byte BPF stack.
#[map]
pub static EMPTY_HIST: PerCpuArray<[u64; HIST_SLOTS]> = PerCpuArray::with_max_entries(1, 0);

/// The group of each call in progress whose latency is grouped, by its owner and stack
/// pointer at entry (the pairing's key). LRU, so calls that never return age out.
#[map]
pub static ENTRY_GROUPS: LruHashMap<DeepKey, GroupKey> = LruHashMap::with_max_entries(1, 0);

/// User stacks for `--stacks` (loader-sized).
#[map]
pub static STACKS: StackTrace = StackTrace::with_max_entries(1, 0);

/// Registers and stack windows for userspace unwinding (`STACKS_DWARF`; loader-sized).
#[map]
pub static STACK_SAMPLES: RingBuf = RingBuf::with_byte_size(4096, 0);

#[map]
pub static STACK_COUNTS: PerCpuHashMap<StackKey, u64> = PerCpuHashMap::with_max_entries(1, 0);

/// One more thing that could not be recorded, by cause.
#[inline(always)]
pub fn count_lost(slot: u32) {
    count_lost_n(slot, 1);
}

/// `n` more things that could not be recorded, by cause.
#[inline(always)]
pub fn count_lost_n(slot: u32, n: u64) {
    if let Some(lost) = LOST.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot; preemption is off while the program runs.
        unsafe { *lost += n };
    }
}

/// The values probe `probe_id` reads: the run's one spec, or its own.
#[inline(always)]
pub fn spec_of(cfg: Cfg, probe_id: u32) -> Option<&'static ProbeSpec> {
    if has(cfg, ebpf_tool_common::flags::SPEC_PER_PROBE) {
        SPECS.get(probe_id)
    } else {
        Some(&cfg.spec)
    }
}
