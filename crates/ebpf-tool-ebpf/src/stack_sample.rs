//! `--unwind dwarf`: the registers an unwinder starts from and the top of the user stack,
//! copied into `STACK_SAMPLES` for userspace to unwind with each binary's `.eh_frame`.
//! The kernel's own user-stack walk follows frame pointers, which code built without
//! them (Debian's, most distributions') does not keep.

use aya_ebpf::{helpers::generated::bpf_probe_read_user, programs::ProbeContext};
use ebpf_tool_common::{COMM_LEN, MAX_STACK_BYTES, STACK_CHUNK, StackSample, lost};

use crate::{
    maps::{Cfg, STACK_SAMPLES, count_lost},
    task::Task,
};

const MAX_CHUNKS: u32 = (MAX_STACK_BYTES / STACK_CHUNK) as u32;

/// Records a sample of the call of probe `probe_id` by `task` (thread group `tgid`).
#[inline(always)]
pub fn sample(cfg: Cfg, ctx: &ProbeContext, task: Task, tgid: u32, probe_id: u32) {
    let Some(mut entry) = STACK_SAMPLES.reserve::<StackSample>(0) else {
        count_lost(lost::STACKS_FAILED);
        return;
    };
    let sample = entry.as_mut_ptr();
    // SAFETY: the kernel hands the program the probed task's saved registers; `sample`
    // points at a reserved record of the right size.
    unsafe {
        let regs = &*ctx.regs;
        let (ip, sp, bp) = registers(regs);
        let base = sp & !(STACK_CHUNK as u64 - 1);
        (*sample).ip = ip;
        (*sample).sp = sp;
        (*sample).bp = bp;
        (*sample).base = base;
        (*sample).tgid = tgid;
        (*sample).probe_id = probe_id;
        (*sample)._pad = 0;
        let comm = &mut *core::ptr::addr_of_mut!((*sample).comm);
        *comm = [0; COMM_LEN];
        task.comm_into(cfg, comm);
        // Chunk by chunk, aligned, until one faults: the stack's top is page-aligned,
        // so the last good chunk ends at it; a shorter window is still unwound.
        let stack = core::ptr::addr_of_mut!((*sample).stack).cast::<u8>();
        let chunks = cfg.stack_chunks.min(MAX_CHUNKS);
        let mut copied = 0u32;
        for i in 0..MAX_CHUNKS {
            if i >= chunks {
                break;
            }
            let offset = (i as usize) * STACK_CHUNK;
            let read = bpf_probe_read_user(
                stack.add(offset).cast(),
                STACK_CHUNK as u32,
                (base + offset as u64) as *const _,
            );
            if read != 0 {
                break;
            }
            copied += 1;
        }
        (*sample).len = copied * STACK_CHUNK as u32;
    }
    entry.submit(0);
}

#[inline(always)]
fn registers(regs: &aya_ebpf::bindings::pt_regs) -> (u64, u64, u64) {
    #[cfg(bpf_target_arch = "x86_64")]
    {
        (regs.rip, regs.rsp, regs.rbp)
    }
    #[cfg(bpf_target_arch = "aarch64")]
    {
        (regs.pc, regs.sp, regs.regs[29])
    }
    #[cfg(not(any(bpf_target_arch = "x86_64", bpf_target_arch = "aarch64")))]
    {
        let _ = regs;
        (0, 0, 0)
    }
}
