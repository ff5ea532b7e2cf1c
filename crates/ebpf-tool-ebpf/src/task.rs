//! The running task: its ids and comm, and the task filters (pid, tid, uid, comm, and
//! never ebpf-tool itself).

use core::ptr::read_volatile;

use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
    generated::{self, bpf_get_current_task_btf},
};
use ebpf_tool_common::{COMM_LEN, by, flags};

use crate::maps::{Cfg, has};

/// The running task. Under `TASK_FIELDS` its ids and comm are plain loads through its
/// BTF pointer at offsets the loader read from the kernel's BTF (the verifier checks
/// each against the type); otherwise each costs a helper call.
#[derive(Clone, Copy)]
pub struct Task(*const u8);

impl Task {
    /// For runs that look at no task field: costs nothing.
    pub const UNUSED: Task = Task(core::ptr::null());

    #[inline(always)]
    pub fn current(cfg: Cfg) -> Task {
        if has(cfg, flags::TASK_FIELDS) {
            // SAFETY: a helper without arguments; it returns a trusted, non-null
            // pointer to the current task.
            Task(unsafe { bpf_get_current_task_btf() } as *const u8)
        } else {
            Task::UNUSED
        }
    }

    /// (tgid, tid): what users call pid and tid.
    #[inline(always)]
    pub fn ids(self, cfg: Cfg) -> (u32, u32) {
        if cfg.flags & flags::TASK_FIELDS != 0 {
            // SAFETY: `self.0` is the current task (TASK_FIELDS); the offsets are those
            // of its `tgid` and `pid` fields, and the verifier checks them against BTF.
            unsafe {
                (
                    read_volatile(self.0.add(cfg.task_tgid_off as usize).cast::<u32>()),
                    read_volatile(self.0.add(cfg.task_pid_off as usize).cast::<u32>()),
                )
            }
        } else {
            let pid_tgid = bpf_get_current_pid_tgid();
            ((pid_tgid >> 32) as u32, pid_tgid as u32)
        }
    }

    /// Writes the task's comm into `out` (8-byte aligned, `COMM_LEN` bytes).
    #[inline(always)]
    pub fn comm_into(self, cfg: Cfg, out: *mut [u8; COMM_LEN]) {
        if cfg.flags & flags::TASK_FIELDS != 0 {
            // SAFETY: as in `ids`; the loader sets TASK_FIELDS only for an 8-aligned
            // `comm`, and `out` is 8-aligned in every record and key it is used for.
            unsafe {
                let from = self.0.add(cfg.task_comm_off as usize).cast::<u64>();
                let to = out.cast::<u64>();
                *to = read_volatile(from);
                *to.add(1) = read_volatile(from.add(1));
            }
        } else {
            // SAFETY: the helper writes at most COMM_LEN bytes into `out`.
            unsafe { generated::bpf_get_current_comm(out.cast(), COMM_LEN as u32) };
        }
    }
}

/// Whether anything in this run looks at the task's ids.
#[inline(always)]
pub fn needs_ids(cfg: Cfg) -> bool {
    cfg.tool_tgid != 0
        || cfg.target_tgid != 0
        || cfg.target_tid != 0
        || cfg.flags & (flags::EMIT_EVENTS | flags::PAIR_RETURNS | flags::STACKS) != 0
        || (cfg.flags & flags::COUNT != 0 && cfg.count_by != by::FUNC)
        || cfg.flags & flags::GROUP_HISTS != 0
}

/// Whether anything in this run looks at the task (its ids or its comm).
#[inline(always)]
pub fn needed(cfg: Cfg) -> bool {
    needs_ids(cfg) || has(cfg, flags::FILTER_COMM)
}

/// The task filters, which hold alike at entry and at return.
#[inline(always)]
pub fn wanted(cfg: Cfg, task: Task, tgid: u32, tid: u32) -> bool {
    if cfg.tool_tgid != 0 && tgid == cfg.tool_tgid {
        return false; // never trace ourselves
    }
    if cfg.target_tgid != 0 && tgid != cfg.target_tgid {
        return false;
    }
    if cfg.target_tid != 0 && tid != cfg.target_tid {
        return false;
    }
    if cfg.target_uid != u32::MAX && bpf_get_current_uid_gid() as u32 != cfg.target_uid {
        return false;
    }
    // SAFETY: the helper takes no arguments and only reads the current task.
    if cfg.flags & flags::FILTER_CGROUP != 0
        && unsafe { bpf_get_current_cgroup_id() } != cfg.target_cgroup
    {
        return false;
    }
    if cfg.flags & flags::FILTER_COMM != 0 {
        let mut comm = [0u64; COMM_LEN / 8];
        task.comm_into(cfg, comm.as_mut_ptr().cast());
        // SAFETY: the same 16 bytes, viewed as the byte array they hold.
        if unsafe { *comm.as_ptr().cast::<[u8; COMM_LEN]>() } != cfg.comm {
            return false;
        }
    }
    true
}
