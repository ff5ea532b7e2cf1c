//! Kernel half of `ebpf-tool uprobe`: `hello_uprobe` runs on function entry and
//! `hello_uretprobe` on return; each writes one `CallEvent` into the `EVENTS` ring buffer.
//!
//! The hot path does as little as it can: two constant compares to filter, one reservation,
//! plain stores. Per-run settings are globals the loader rewrites before load.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::{
        helpers::{
            bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns,
            generated::bpf_get_attach_cookie,
        },
        macros::{map, uprobe, uretprobe},
        maps::{PerCpuArray, RingBuf},
        programs::{ProbeContext, RetProbeContext},
    };
    use ebpf_tool_common::{CallEvent, EVENTS_RING_BYTES, KIND_ENTRY, KIND_RETURN, MAX_ARGS};

    /// Set by the loader to ebpf-tool's own tgid: a tracer must never trace itself.
    #[unsafe(no_mangle)]
    static TOOL_TGID: u32 = 0;

    /// Set by the loader when the user asked for one process; 0 means every process.
    #[unsafe(no_mangle)]
    static TARGET_TGID: u32 = 0;

    #[map]
    static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_RING_BYTES, 0);

    /// Records that did not fit in `EVENTS`, per CPU so counting costs no contention.
    #[map]
    static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

    #[uprobe]
    pub fn hello_uprobe(ctx: ProbeContext) -> u32 {
        let mut args = [0u64; MAX_ARGS];
        for (n, arg) in args.iter_mut().enumerate() {
            *arg = ctx.arg(n).unwrap_or(0);
        }
        record(&ctx, KIND_ENTRY, |event| {
            event.args = args;
            event.ret = 0;
        });
        0
    }

    #[uretprobe]
    pub fn hello_uretprobe(ctx: RetProbeContext) -> u32 {
        let ret: u64 = ctx.ret();
        record(&ctx, KIND_RETURN, |event| {
            event.args = [0; MAX_ARGS];
            event.ret = ret;
        });
        0
    }

    /// Filters the current task, then reserves, fills and submits one record.
    #[inline(always)]
    fn record<C: aya_ebpf::EbpfContext>(ctx: &C, kind: u32, fill: impl FnOnce(&mut CallEvent)) {
        let pid_tgid = bpf_get_current_pid_tgid();
        let tgid = (pid_tgid >> 32) as u32;
        // SAFETY: plain reads of globals the loader fixed before load; volatile so the
        // compiler does not fold them to their zero initialisers.
        let (tool, target) = unsafe {
            (
                core::ptr::read_volatile(&TOOL_TGID),
                core::ptr::read_volatile(&TARGET_TGID),
            )
        };
        if tgid == tool || (target != 0 && tgid != target) {
            return;
        }
        let Some(mut entry) = EVENTS.reserve::<CallEvent>(0) else {
            count_lost();
            return;
        };
        // SAFETY: `reserve` handed out exclusive, suitably sized and aligned memory; every
        // field is written below before submit, so no stale bytes reach userspace.
        let event = unsafe { &mut *entry.as_mut_ptr() };
        event.timestamp_ns = unsafe { bpf_ktime_get_ns() };
        event.tgid = tgid;
        event.tid = pid_tgid as u32;
        // SAFETY: the helper only reads the program context it is given.
        event.probe_id = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u32;
        event.kind = kind;
        event.comm = bpf_get_current_comm().unwrap_or([0; 16]);
        fill(event);
        entry.submit(0);
    }

    #[inline(always)]
    fn count_lost() {
        if let Some(lost) = LOST.get_ptr_mut(0) {
            // SAFETY: a per-CPU slot, only touched by this CPU with preemption disabled.
            unsafe { *lost += 1 };
        }
    }

    #[cfg(not(test))]
    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }

    /// GPL-compatible, because `bpf_probe_read_user` and friends are GPL-only helpers.
    #[unsafe(link_section = "license")]
    #[unsafe(no_mangle)]
    static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
}

/// On the host this binary is an empty stub, so workspace-wide `cargo check` works.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
