//! In-kernel aggregation, at entry: counts (`--count`, by function or pid/tid/comm),
//! histograms (`--hist`, and `--latency` at return) and user stacks (`--stacks`), all in
//! per-CPU maps so no record crosses the ring.

use aya_ebpf::{
    bindings::{BPF_F_USER_STACK, BPF_NOEXIST},
    helpers::bpf_probe_read_user,
    maps::PerCpuHashMap,
    programs::{ProbeContext, tracing::StackIdContext as _},
};
use ebpf_tool_common::{
    COMM_LEN, CountKey, HIST_BUCKETS, HIST_COUNT, HIST_MAX, HIST_MIN, HIST_SUM, HISTS_PER_PROBE,
    ProbeSpec, StackKey, by, flags, lost,
};

use crate::{
    maps::{COUNTS, Cfg, FUNC_COUNTS, HISTS, STACK_COUNTS, STACKS, count_lost},
    task::Task,
    values::{Regs, evaluate},
};

/// Who made the call being aggregated.
#[derive(Clone, Copy)]
pub struct Caller {
    pub task: Task,
    pub tgid: u32,
    pub tid: u32,
    pub probe_id: u32,
}

/// The aggregations done at entry.
#[inline(always)]
pub fn at_entry(cfg: Cfg, ctx: &ProbeContext, caller: Caller, regs: Regs, spec: &ProbeSpec) {
    if cfg.flags & flags::COUNT != 0 {
        count_call(cfg, caller);
    }
    if cfg.flags & flags::HIST_VALUE != 0 {
        match evaluate(regs, &spec.hist) {
            Ok(value) => hist_add(caller.probe_id, ebpf_tool_common::HIST_ARG, value),
            Err(_) => count_lost(lost::UNREADABLE),
        }
    }
    if cfg.flags & flags::STACKS != 0 {
        stack(cfg, ctx, caller);
    }
}

#[inline(always)]
fn stack(cfg: Cfg, ctx: &ProbeContext, caller: Caller) {
    match ctx.get_stackid(&STACKS, BPF_F_USER_STACK as u64) {
        Ok(id) => {
            let direct = if cfg.flags & flags::CALLER_AT_ENTRY != 0 {
                return_address(ctx)
            } else {
                0
            };
            let mut key = StackKey {
                caller: direct,
                probe_id: caller.probe_id,
                stack_id: id as i32,
                tgid: caller.tgid,
                _pad: 0,
                comm: [0; COMM_LEN],
            };
            caller.task.comm_into(cfg, &mut key.comm);
            add_to(&STACK_COUNTS, &key, lost::STACKS_FAILED);
        }
        Err(_) => count_lost(lost::STACKS_FAILED),
    }
}

/// Where the probed function will return to, read at its entry: on x86-64 the word at
/// the stack pointer, on AArch64 the link register.
#[inline(always)]
fn return_address(ctx: &ProbeContext) -> u64 {
    // SAFETY: the kernel hands the program the probed task's saved registers.
    let regs = unsafe { &*ctx.regs };
    #[cfg(bpf_target_arch = "x86_64")]
    {
        // SAFETY: a fault-tolerant read of the task's own stack.
        unsafe { bpf_probe_read_user(regs.rsp as *const u64) }.unwrap_or(0)
    }
    #[cfg(bpf_target_arch = "aarch64")]
    {
        regs.regs[30]
    }
    #[cfg(not(any(bpf_target_arch = "x86_64", bpf_target_arch = "aarch64")))]
    {
        let _ = regs;
        0
    }
}

#[inline(always)]
fn count_call(cfg: Cfg, caller: Caller) {
    if cfg.count_by == by::FUNC {
        if let Some(slot) = FUNC_COUNTS.get_ptr_mut(caller.probe_id) {
            // SAFETY: a per-CPU slot; preemption is off while the program runs.
            unsafe { *slot += 1 };
        }
        return;
    }
    let mut key = CountKey {
        probe_id: caller.probe_id,
        id: 0,
        comm: [0; COMM_LEN],
    };
    match cfg.count_by {
        by::PID => key.id = caller.tgid,
        by::TID => key.id = caller.tid,
        _ => caller.task.comm_into(cfg, &mut key.comm),
    }
    add_to(&COUNTS, &key, lost::COUNTS_FULL);
}

/// `map[key] += 1` on a per-CPU hash; a full table is counted, never ignored.
#[inline(always)]
fn add_to<K>(map: &PerCpuHashMap<K, u64>, key: &K, when_full: u32) {
    if let Some(slot) = map.get_ptr_mut(key) {
        // SAFETY: this CPU's value of the entry; preemption is off.
        unsafe { *slot += 1 };
        return;
    }
    if map.insert(key, 1u64, BPF_NOEXIST as u64).is_ok() {
        return;
    }
    // Another CPU created the entry between our lookup and insert: retry once.
    match map.get_ptr_mut(key) {
        // SAFETY: as above.
        Some(slot) => unsafe { *slot += 1 },
        None => count_lost(when_full),
    }
}

/// Adds `value` to histogram `which` of probe `probe_id`.
#[inline(always)]
pub fn hist_add(probe_id: u32, which: usize, value: u64) {
    let index = probe_id * HISTS_PER_PROBE as u32 + which as u32;
    let Some(hist) = HISTS.get_ptr_mut(index) else {
        return;
    };
    // SAFETY: this CPU's copy of the histogram; preemption is off.
    let hist = unsafe { &mut *hist };
    if let Some(bucket) = hist.get_mut(log2_bucket(value)) {
        *bucket += 1;
    }
    hist[HIST_COUNT] += 1;
    hist[HIST_SUM] = hist[HIST_SUM].wrapping_add(value);
    // Stored inverted so the zero a fresh slot starts with means "no minimum yet".
    if !value > hist[HIST_MIN] {
        hist[HIST_MIN] = !value;
    }
    if value > hist[HIST_MAX] {
        hist[HIST_MAX] = value;
    }
}

/// 0 for 0, else 1 + floor(log2(value)): bucket b holds [2^(b-1), 2^b).
#[inline(always)]
fn log2_bucket(value: u64) -> usize {
    if value == 0 {
        return 0;
    }
    let (mut v, mut bits) = (value, 1usize);
    for shift in [32u32, 16, 8, 4, 2, 1] {
        if v >> shift != 0 {
            v >>= shift;
            bits += shift as usize;
        }
    }
    if bits > HIST_BUCKETS - 1 {
        HIST_BUCKETS - 1
    } else {
        bits
    }
}
