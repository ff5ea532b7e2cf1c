//! In-kernel aggregation, at entry: counts (`--count`, by function or pid/tid/comm),
//! histograms (`--hist`, and `--latency` at return) and user stacks (`--stacks`), all in
//! per-CPU maps so no record crosses the ring.

use aya_ebpf::helpers::generated::{bpf_get_smp_processor_id, bpf_probe_read_user_str};
use aya_ebpf::{
    bindings::{BPF_F_USER_STACK, BPF_NOEXIST},
    helpers::bpf_probe_read_user,
    maps::PerCpuHashMap,
    programs::{ProbeContext, tracing::StackIdContext as _},
};
use ebpf_tool_common::{
    COMM_LEN, GROUP_TEXT, GROUP_UNREADABLE_MARK, GroupKey, HIST_ARG, HIST_COUNT, HIST_MAX,
    HIST_MIN, HIST_SLOTS, HIST_SUM, ProbeSpec, StackKey, by, flags, hist_bucket, lost,
};

use crate::{
    maps::{
        COUNTS, Cfg, EMPTY_HIST, FUNC_COUNTS, GROUP_HISTS, HISTS, STACK_COUNTS, STACKS, count_lost,
    },
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

/// Whether this run groups calls by a key: counts by pid/tid/comm/value, or
/// histograms per group.
#[inline(always)]
pub fn grouped(cfg: Cfg) -> bool {
    (cfg.flags & flags::COUNT != 0 && cfg.count_by != by::FUNC)
        || cfg.flags & flags::GROUP_HISTS != 0
}

/// The aggregations done at entry; returns the call's group when the run groups (a
/// latency is added to its group's histogram at the return).
#[inline(always)]
pub fn at_entry(
    cfg: Cfg,
    ctx: &ProbeContext,
    caller: Caller,
    regs: Regs,
    spec: &ProbeSpec,
) -> Option<GroupKey> {
    let group = if grouped(cfg) {
        Some(group_key(cfg, caller, regs, spec))
    } else {
        None
    };
    if cfg.flags & flags::COUNT != 0 {
        count_call(cfg, caller, group.as_ref());
    }
    if cfg.flags & flags::HIST_VALUE != 0 {
        match evaluate(regs, &spec.hist) {
            Ok(value) => match &group {
                Some(group) if cfg.flags & flags::GROUP_HISTS != 0 => {
                    group_hist_add(group, HIST_ARG, value)
                }
                _ => hist_add(cfg, caller.probe_id, HIST_ARG, value),
            },
            Err(_) => count_lost(lost::UNREADABLE),
        }
    }
    if cfg.flags & flags::STACKS_DWARF != 0 {
        crate::stack_sample::sample(cfg, ctx, caller.task, caller.tgid, caller.probe_id);
    } else if cfg.flags & flags::STACKS != 0 {
        stack(cfg, ctx, caller);
    }
    group
}

/// What `caller`'s call is grouped under (`Config::count_by`).
#[inline(always)]
fn group_key(cfg: Cfg, caller: Caller, regs: Regs, spec: &ProbeSpec) -> GroupKey {
    let mut key = GroupKey::EMPTY;
    key.probe_id = caller.probe_id;
    match cfg.count_by {
        by::PID => key.value = caller.tgid as u64,
        by::TID => key.value = caller.tid as u64,
        by::COMM => caller.task.comm_into(cfg, key.text.as_mut_ptr().cast()),
        by::VALUE => match evaluate(regs, &spec.group) {
            Ok(value) => key.value = value,
            Err(_) => unreadable(&mut key),
        },
        by::STRING => {
            let read = match evaluate(regs, &spec.group) {
                // SAFETY: the helper writes at most GROUP_TEXT bytes into the key's text.
                Ok(pointer) => unsafe {
                    bpf_probe_read_user_str(
                        key.text.as_mut_ptr().cast(),
                        GROUP_TEXT as u32,
                        pointer as *const _,
                    )
                },
                Err(_) => -1,
            };
            if read < 0 {
                unreadable(&mut key);
            }
        }
        _ => {}
    }
    key
}

/// Marks a group whose value could not be read, and counts it.
#[inline(always)]
fn unreadable(key: &mut GroupKey) {
    key.text = [0; GROUP_TEXT];
    key.text[GROUP_UNREADABLE_MARK] = 1;
    count_lost(lost::UNREADABLE);
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
fn count_call(cfg: Cfg, caller: Caller, group: Option<&GroupKey>) {
    match group {
        Some(key) if cfg.count_by != by::FUNC => add_to(&COUNTS, key, lost::COUNTS_FULL),
        _ => {
            // SAFETY: a helper without arguments.
            let cpu = unsafe { bpf_get_smp_processor_id() };
            let slot = cpu
                .wrapping_mul(cfg.probes.max(1))
                .wrapping_add(caller.probe_id);
            if let Some(slot) = FUNC_COUNTS.get_ptr_mut(slot) {
                // SAFETY: this CPU's slot of the probe; preemption is off while the
                // program runs, so no other program writes it meanwhile.
                unsafe { *slot += 1 };
            }
        }
    }
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

/// Adds `value` to histogram `which` (`HIST_LATENCY`, `HIST_ARG`) of probe `probe_id`.
#[inline(always)]
pub fn hist_add(cfg: Cfg, probe_id: u32, which: usize, value: u64) {
    // The latency histogram comes first; a value histogram is first when there is none.
    let which = if which == HIST_ARG && cfg.flags & flags::HIST_LATENCY == 0 {
        0
    } else {
        which as u32
    };
    let index = probe_id * cfg.hists_per_probe + which;
    if let Some(hist) = HISTS.get_ptr_mut(index) {
        // SAFETY: this CPU's copy of the histogram; preemption is off.
        add_sample(unsafe { &mut *hist }, value);
    }
}

/// Adds `value` to histogram `which` of `group`, creating it (zeroed) on first use; a
/// full table is counted.
#[inline(always)]
pub fn group_hist_add(group: &GroupKey, which: usize, value: u64) {
    let mut key = *group;
    key.which = which as u32;
    let hist = match GROUP_HISTS.get_ptr_mut(&key) {
        Some(hist) => hist,
        None => {
            let Some(empty) = EMPTY_HIST.get_ptr(0) else {
                return;
            };
            // SAFETY: a per-CPU value that is never written, so it stays zeroed.
            let _ = GROUP_HISTS.insert(&key, unsafe { &*empty }, BPF_NOEXIST as u64);
            match GROUP_HISTS.get_ptr_mut(&key) {
                Some(hist) => hist,
                None => {
                    count_lost(lost::COUNTS_FULL);
                    return;
                }
            }
        }
    };
    // SAFETY: this CPU's copy of the histogram; preemption is off.
    add_sample(unsafe { &mut *hist }, value);
}

/// One sample into a histogram's buckets and stats.
#[inline(always)]
fn add_sample(hist: &mut [u64; HIST_SLOTS], value: u64) {
    if let Some(bucket) = hist.get_mut(hist_bucket(value)) {
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
