//! What only the running machine can fill in before load: where its kernel keeps the
//! task fields the programs read, how many records each CPU writes before waking the
//! reader, how many call slots there are; and an aya loader that does not parse the
//! kernel's BTF.

use aya::EbpfLoader;
use ebpf_tool_common::{Config, KIND_CALL, KIND_ENTRY, WAKEUP_FRACTION, flags, record_size};

use super::sys;
use crate::{kernel, kernel_btf, tuning::Tuning};

/// `config` completed for this machine, given the ring's size and the call slots.
pub fn complete(config: &Config, ring_bytes: u32, call_slots: u32, tuning: &Tuning) -> Config {
    let mut config = *config;
    config.call_slot_mask = call_slots - 1;
    let kind = if config.flags & flags::PAIR_RETURNS != 0 {
        KIND_CALL
    } else {
        KIND_ENTRY
    };
    // Each record also takes the ring's 8-byte header.
    let record = record_size(kind, config.spec.count, config.spec.slots) + 8;
    let cpus = aya::util::nr_cpus().unwrap_or(1).max(1);
    let batch = ring_bytes as usize / WAKEUP_FRACTION as usize / record / cpus;
    config.wakeup_every = batch.clamp(1, u32::MAX as usize) as u32;
    if tuning.task_fields
        && kernel::has_task_btf_pointer(kernel::KernelVersion::current())
        && let Some(fields) = kernel_btf::task_fields()
        && sys::task_fields_readable(&[fields.tgid, fields.pid], &[fields.comm, fields.comm + 8])
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
pub fn loader_without_kernel_btf() -> EbpfLoader<'static> {
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
