//! Kernel half of ebpf-tool: `hello_uprobe` runs at a probe (a function's entry, or any
//! instruction), `hello_uretprobe` at a function's return. What they do is chosen by
//! `CONFIG`, a read-only global the loader fills before load: the verifier sees its
//! fields as constants and drops the branches a run does not use, so a plain trace pays
//! for none of the other modes.
//!
//! - plain: one record per call into `EVENTS` at entry (`record`), with the values the
//!   run's `ProbeSpec` describes (`values`);
//! - `--ret`/`--latency`: entry saves the values and a timestamp on the thread's (or
//!   goroutine's) call stack (`pairing`), return pops it and writes one record with
//!   values, return value and latency; returns are seen by uretprobes, or by
//!   `hello_retsite` on the functions' return instructions;
//! - `--count`, `--hist`, `--latency` histograms and `--stacks` aggregate in per-CPU maps
//!   (`aggregate`) without any record, so they cost no ring-buffer traffic.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Inline assembly for the two atomic instructions Rust's BPF target does not offer.
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

#[cfg(target_arch = "bpf")]
mod aggregate;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod pairing;
#[cfg(target_arch = "bpf")]
mod record;
#[cfg(target_arch = "bpf")]
mod session;
#[cfg(target_arch = "bpf")]
mod stack_sample;
#[cfg(target_arch = "bpf")]
mod task;
#[cfg(target_arch = "bpf")]
mod values;

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::{
        EbpfContext,
        helpers::{bpf_ktime_get_ns, generated::bpf_get_attach_cookie},
        macros::{uprobe, uretprobe},
        programs::{ProbeContext, RetProbeContext},
    };
    use ebpf_tool_common::{HIST_LATENCY, KIND_CALL, KIND_ENTRY, KIND_UNSEEN_ENTRY, flags};

    use crate::{
        aggregate::{self, Caller},
        maps::{Cfg, ENTRY_GROUPS, config, has, spec_of},
        pairing::{self, Popped},
        record::{Call, Return, Values, emit},
        session,
        task::{self, Task},
        values::{Regs, filter_holds},
    };

    #[uprobe]
    pub fn hello_uprobe(ctx: ProbeContext) -> u32 {
        let cfg = config();
        entered(cfg, &ctx, cookie(cfg, &ctx), false);
        0
    }

    /// Entry and return of `--latency` in one program, on a uprobe session link (Linux
    /// 6.13+): the entry keeps its time in the call's session cookie, which the kernel
    /// hands back at that call's return, so no call stack is kept in maps. An entry that
    /// is not wanted (another process, a --filter that fails) returns 1: the kernel then
    /// skips its return altogether.
    #[uprobe]
    pub fn hello_session(ctx: ProbeContext) -> u32 {
        let cfg = config();
        let probe_id = cookie(cfg, &ctx);
        let start = session::cookie();
        if !session::is_return() {
            if !entered(cfg, &ctx, probe_id, true) {
                return 1;
            }
            // SAFETY: the kernel's 8-byte cookie of this call, valid during the program.
            unsafe { *start = timestamp(cfg) };
            return 0;
        }
        // SAFETY: as above; written at this call's entry.
        let latency_ns = timestamp(cfg).saturating_sub(unsafe { *start });
        aggregate::hist_add(cfg, probe_id, HIST_LATENCY, latency_ns);
        0
    }

    /// A call of probe `probe_id` entered: aggregates it, saves it for its return, or
    /// records it. In a `session` it only says whether the call is wanted: the session
    /// program keeps its time itself.
    #[inline(always)]
    fn entered(cfg: Cfg, ctx: &ProbeContext, probe_id: u32, session: bool) -> bool {
        // Each step runs only when this run's CONFIG needs it; the verifier prunes the
        // rest, so `--count` on one function costs little more than the floor.
        let task = if task::needed(cfg) {
            Task::current(cfg)
        } else {
            Task::UNUSED
        };
        let (tgid, tid) = if task::needs_ids(cfg) {
            task.ids(cfg)
        } else {
            (0, 0)
        };
        if !task::wanted(cfg, task, tgid, tid) {
            return false;
        }
        let Some(spec) = spec_of(cfg, probe_id) else {
            return false;
        };
        let regs = Regs(ctx.regs);
        let wanted = !has(cfg, flags::FILTER_VALUE) || filter_holds(regs, &spec.filter);
        let group = if wanted {
            let caller = Caller {
                task,
                tgid,
                tid,
                probe_id,
            };
            aggregate::at_entry(cfg, ctx, caller, regs, spec)
        } else {
            None
        };
        if session {
            return wanted;
        }
        if has(cfg, flags::PAIR_RETURNS) {
            if let Some(key) = pairing::call_key(spec, regs, tid, regs.stack_pointer()) {
                pairing::push(cfg, key, regs, spec, wanted, timestamp(cfg));
                if has(cfg, flags::GROUP_HISTS)
                    && has(cfg, flags::HIST_LATENCY)
                    && let Some(group) = group
                {
                    let _ = ENTRY_GROUPS.insert(&key.deep(), &group, 0);
                }
            }
            return wanted;
        }
        if wanted && has(cfg, flags::EMIT_EVENTS) {
            let call = Call {
                kind: KIND_ENTRY,
                tgid,
                tid,
                probe_id,
                timestamp_ns: timestamp(cfg),
            };
            emit(cfg, task, &call, spec, Values::Live(regs), None);
        }
        wanted
    }

    /// A return seen by a uretprobe: it runs after the return popped its address.
    #[uretprobe]
    pub fn hello_uretprobe(ctx: RetProbeContext) -> u32 {
        let cfg = config();
        returned(cfg, Regs(ctx.regs), cookie(cfg, &ctx), pairing::RETURN_POPS)
    }

    /// A return seen by a probe on a return instruction (`--ret-sites`): it runs before
    /// the return, with the stack pointer as the entry left it.
    #[uprobe]
    pub fn hello_retsite(ctx: ProbeContext) -> u32 {
        let cfg = config();
        returned(cfg, Regs(ctx.regs), cookie(cfg, &ctx), 0)
    }

    /// A function whose first instruction is its return (`ret` alone): entry and return
    /// at one probe, so their order cannot depend on which probe the kernel runs first.
    #[uprobe]
    pub fn hello_entry_retsite(ctx: ProbeContext) -> u32 {
        let cfg = config();
        let probe_id = cookie(cfg, &ctx);
        entered(cfg, &ctx, probe_id, false);
        returned(cfg, Regs(ctx.regs), probe_id, 0)
    }

    /// The return of a call of probe `probe_id`: pops its frame, times it, records it.
    /// `pops` is how far the stack pointer has moved since the entry.
    #[inline(always)]
    fn returned(cfg: Cfg, regs: Regs, probe_id: u32, pops: u64) -> u32 {
        let task = Task::current(cfg);
        let (tgid, tid) = task.ids(cfg);
        if !task::wanted(cfg, task, tgid, tid) {
            return 0;
        }
        let now = timestamp(cfg);
        let Some(spec) = spec_of(cfg, probe_id) else {
            return 0;
        };
        let Some(key) = pairing::call_key(spec, regs, tid, regs.stack_pointer().wrapping_sub(pops))
        else {
            return 0;
        };
        match pairing::pop(cfg, key) {
            Popped::Paired(frame) => {
                if frame.wanted == 0 {
                    return 0;
                }
                let latency_ns = now.saturating_sub(frame.timestamp_ns);
                if has(cfg, flags::HIST_LATENCY) {
                    if has(cfg, flags::GROUP_HISTS) {
                        let deep = key.deep();
                        // SAFETY: a map value, copied out before it is deleted.
                        if let Some(group) = unsafe { ENTRY_GROUPS.get(&deep) }.copied() {
                            let _ = ENTRY_GROUPS.remove(&deep);
                            aggregate::group_hist_add(&group, HIST_LATENCY, latency_ns);
                        }
                    } else {
                        aggregate::hist_add(cfg, probe_id, HIST_LATENCY, latency_ns);
                    }
                }
                if has(cfg, flags::EMIT_EVENTS) {
                    let call = Call {
                        kind: KIND_CALL,
                        tgid,
                        tid,
                        probe_id,
                        timestamp_ns: frame.timestamp_ns,
                    };
                    let ret = Return { regs, latency_ns };
                    emit(cfg, task, &call, spec, Values::Saved(&frame), Some(ret));
                }
            }
            Popped::Unseen => {
                // Without the entry the filter cannot be applied: report only when there
                // is none, marked so nobody mistakes the missing values for real ones.
                if !has(cfg, flags::FILTER_VALUE) && has(cfg, flags::EMIT_EVENTS) {
                    let call = Call {
                        kind: KIND_UNSEEN_ENTRY,
                        tgid,
                        tid,
                        probe_id,
                        timestamp_ns: now,
                    };
                    let ret = Return {
                        regs,
                        latency_ns: 0,
                    };
                    emit(cfg, task, &call, spec, Values::Unknown, Some(ret));
                }
            }
        }
        0
    }

    /// `bpf_ktime_get_ns()` when this run shows time, else 0 without reading the clock.
    #[inline(always)]
    fn timestamp(cfg: Cfg) -> u64 {
        if has(cfg, flags::TIMESTAMPS) {
            // SAFETY: a helper without arguments.
            unsafe { bpf_ktime_get_ns() }
        } else {
            0
        }
    }

    /// Which probe fired: its attach cookie, read only when there are several.
    #[inline(always)]
    fn cookie<C: EbpfContext>(cfg: Cfg, ctx: &C) -> u32 {
        if cfg.probes <= 1 {
            return 0;
        }
        // SAFETY: the helper only reads the program context it is given.
        unsafe { bpf_get_attach_cookie(ctx.as_ptr()) as u32 }
    }

    /// The cost floor for benchmarks: a probe whose program does nothing.
    #[uprobe]
    pub fn noop_uprobe(_ctx: ProbeContext) -> u32 {
        0
    }

    /// The cost floor of a return probe.
    #[uretprobe]
    pub fn noop_uretprobe(_ctx: RetProbeContext) -> u32 {
        0
    }

    #[cfg(not(test))]
    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }

    /// GPL-compatible: `bpf_probe_read_user*` and `bpf_get_stackid` are GPL-only helpers.
    #[unsafe(link_section = "license")]
    #[unsafe(no_mangle)]
    static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
}

/// On the host this binary is an empty stub, so workspace-wide `cargo check` works.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
