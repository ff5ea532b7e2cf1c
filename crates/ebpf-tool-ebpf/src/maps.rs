//! The run's settings (`CONFIG`) and every map the programs use.

use core::ptr::read_volatile;

use aya_ebpf::{
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf, StackTrace},
};
use ebpf_tool_common::{
    CALL_SLOT_COUNT, CallStack, Config, CountKey, EVENTS_RING_BYTES, HIST_SLOTS, HISTS_PER_PROBE,
    ProbeSpec, StackKey, lost,
};

/// This run's settings; the loader overwrites the whole struct before load.
#[unsafe(no_mangle)]
static CONFIG: Config = Config::DEFAULT;

#[inline(always)]
pub fn config() -> &'static Config {
    // SAFETY: a volatile read keeps the compiler from folding the default value in;
    // the loader has replaced it, and the map holding it is frozen read-only.
    unsafe { &*read_volatile(&&raw const CONFIG) }
}

#[inline(always)]
pub fn has(flag: u32) -> bool {
    config().flags & flag != 0
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

/// Call stacks of threads whose slot another thread holds. LRU, so threads that die
/// mid-call cannot fill it.
#[map]
pub static CALLS: LruHashMap<u32, CallStack> = LruHashMap::with_max_entries(16384, 0);

/// A zeroed `CallStack` to insert from: too big for the 512-byte BPF stack.
#[map]
pub static EMPTY_CALL_STACK: PerCpuArray<CallStack> = PerCpuArray::with_max_entries(1, 0);

/// `--count` by function: one slot per probe (the loader sizes it).
#[map]
pub static FUNC_COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// `--count --by pid|tid|comm`.
#[map]
pub static COUNTS: PerCpuHashMap<CountKey, u64> = PerCpuHashMap::with_max_entries(65536, 0);

/// Log2 histograms, `HISTS_PER_PROBE` per probe (loader-sized); one value is a whole
/// histogram so an update is one lookup.
#[map]
pub static HISTS: PerCpuArray<[u64; HIST_SLOTS]> =
    PerCpuArray::with_max_entries(HISTS_PER_PROBE as u32, 0);

/// User stacks for `--stacks` (loader-sized).
#[map]
pub static STACKS: StackTrace = StackTrace::with_max_entries(1, 0);

#[map]
pub static STACK_COUNTS: PerCpuHashMap<StackKey, u64> = PerCpuHashMap::with_max_entries(1, 0);

/// One more thing that could not be recorded, by cause.
#[inline(always)]
pub fn count_lost(slot: u32) {
    if let Some(n) = LOST.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot; preemption is off while the program runs.
        unsafe { *n += 1 };
    }
}

/// The values probe `probe_id` reads: the run's one spec, or its own.
#[inline(always)]
pub fn spec_of(probe_id: u32) -> Option<&'static ProbeSpec> {
    if has(ebpf_tool_common::flags::SPEC_PER_PROBE) {
        SPECS.get(probe_id)
    } else {
        Some(&config().spec)
    }
}
