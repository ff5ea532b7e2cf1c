//! The run's `Config`: a read-only global the loader fills before load, so the verifier
//! sees its fields as constants and prunes the branches a run does not use.

use crate::{
    record::{CALL_SLOT_COUNT, COMM_LEN},
    spec::ProbeSpec,
};

/// Size of the event ring buffer in bytes; a power of two and a multiple of the page size,
/// as the kernel requires. 2 MiB holds about 17,000 records: 17 ms at a million calls a
/// second, several times the reader's wake-up interval. The reader's mapping of it counts
/// twice in its memory, so bigger is not free.
pub const EVENTS_RING_BYTES: u32 = 2 << 20;

/// The ring buffer's size when a run prints no per-call lines (one page, the minimum).
pub const EVENTS_RING_BYTES_UNUSED: u32 = 4096;

/// Records wait in the ring buffer without waking the reader until about this share of
/// it is pending (1/`WAKEUP_FRACTION`); the reader also drains on a short timer. Waking a
/// reader per record is what makes per-event tracers cost microseconds per call.
pub const WAKEUP_FRACTION: u32 = 8;

/// Name of the `Config` global in the eBPF object.
pub const CONFIG_GLOBAL: &str = "CONFIG";

/// `Config::flags` bits.
pub mod flags {
    /// Write one ring-buffer record per call.
    pub const EMIT_EVENTS: u32 = 1;
    /// Pair entries with returns (`--ret`, `--latency`): record at return.
    pub const PAIR_RETURNS: u32 = 1 << 1;
    /// Count calls in the kernel (`--count`).
    pub const COUNT: u32 = 1 << 2;
    /// Fill the latency histograms.
    pub const HIST_LATENCY: u32 = 1 << 3;
    /// Fill the value histograms with `ProbeSpec::hist`.
    pub const HIST_VALUE: u32 = 1 << 4;
    /// Only tasks whose comm equals `Config::comm`.
    pub const FILTER_COMM: u32 = 1 << 5;
    /// Only calls whose `ProbeSpec::filter` compares true.
    pub const FILTER_VALUE: u32 = 1 << 6;
    /// Each probe has its own `ProbeSpec` in the `SPECS` map (by probe id) instead of the
    /// one in `Config::spec` (USDT sites, say, each with their own locations).
    pub const SPEC_PER_PROBE: u32 = 1 << 7;
    /// Capture the user stack of each call (`--stacks`).
    pub const STACKS: u32 = 1 << 8;
    /// Every probe sits on a function's first instruction, so the word at the stack
    /// pointer is the return address (the direct caller, for stacks).
    pub const CALLER_AT_ENTRY: u32 = 1 << 9;
    /// Take timestamps (JSON output, latencies); plain text needs none, and reading the
    /// clock is one of the dearest steps of a record.
    pub const TIMESTAMPS: u32 = 1 << 10;
    /// `Config::task_*_off` hold the offsets of `task_struct` fields in this kernel: the
    /// ids and comm are read with plain loads through the task's BTF pointer instead of a
    /// helper call each.
    pub const TASK_FIELDS: u32 = 1 << 11;
    /// Histograms are kept per group (`--latency`/`--hist` with `--by`) in `GROUP_HISTS`,
    /// keyed as `COUNTS` is; a latency's group is taken at entry (`ENTRY_GROUPS`).
    pub const GROUP_HISTS: u32 = 1 << 12;
    /// Only tasks in the cgroup (v2) `Config::target_cgroup`: a command run by `-c` and
    /// every process it starts.
    pub const FILTER_CGROUP: u32 = 1 << 13;
    /// `--stacks` by copying registers and a window of the user stack into
    /// `STACK_SAMPLES`, for userspace to unwind with the binaries' unwind tables.
    pub const STACKS_DWARF: u32 = 1 << 14;
}

/// `FilterSpec::op` values.
pub mod op {
    pub const EQ: u32 = 0;
    pub const NE: u32 = 1;
    pub const LT: u32 = 2;
    pub const LE: u32 = 3;
    pub const GT: u32 = 4;
    pub const GE: u32 = 5;
}

/// `Config::count_by` values: what `--count` (and grouped histograms) group calls by,
/// besides the function.
pub mod by {
    pub const FUNC: u32 = 0;
    pub const PID: u32 = 1;
    pub const TID: u32 = 2;
    pub const COMM: u32 = 3;
    /// The number `ProbeSpec::group` reads.
    pub const VALUE: u32 = 4;
    /// The string `ProbeSpec::group` points to.
    pub const STRING: u32 = 5;
}

/// Per-run settings, fixed before load. The kernel reads them from a frozen read-only map,
/// so the verifier sees constants and prunes the branches a run does not use.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The values every probe reads (unless `SPEC_PER_PROBE`), and the record layout
    /// (`count`, `slots`) every probe's records have.
    pub spec: ProbeSpec,
    /// ebpf-tool's own tgid, whose calls are never reported; 0 when ebpf-tool cannot call
    /// the traced file at all (it does not map it), which spares the hot path a helper.
    pub tool_tgid: u32,
    /// Only this thread group, when non-zero.
    pub target_tgid: u32,
    /// Only this thread, when non-zero.
    pub target_tid: u32,
    /// Only this uid, unless `u32::MAX`.
    pub target_uid: u32,
    /// `flags::*` bits.
    pub flags: u32,
    /// `by::*`.
    pub count_by: u32,
    /// How many probes are attached; with one, its id is 0 and no cookie is read.
    pub probes: u32,
    /// Wake the reader after this many records from one CPU (see `WAKEUP_FRACTION`).
    pub wakeup_every: u32,
    /// Offsets in `struct task_struct` of `tgid`, `pid` and `comm`, under `TASK_FIELDS`.
    pub task_tgid_off: u32,
    pub task_pid_off: u32,
    pub task_comm_off: u32,
    /// A thread's slot in `CALL_SLOTS` is `tid & call_slot_mask` (slots - 1).
    pub call_slot_mask: u32,
    /// Histograms per probe in `HISTS`: one each for `--latency` and `--hist`.
    pub hists_per_probe: u32,
    /// Stack bytes copied per sample under `STACKS_DWARF`, in `STACK_CHUNK`s.
    pub stack_chunks: u32,
    /// The cgroup id to match under `FILTER_CGROUP`.
    pub target_cgroup: u64,
    /// The comm to match under `FILTER_COMM`, NUL-padded.
    pub comm: [u8; COMM_LEN],
}

impl Config {
    pub const DEFAULT: Config = Config {
        spec: ProbeSpec::EMPTY,
        tool_tgid: 0,
        target_tgid: 0,
        target_tid: 0,
        target_uid: u32::MAX,
        flags: flags::EMIT_EVENTS,
        count_by: by::FUNC,
        probes: 1,
        wakeup_every: 1,
        task_tgid_off: 0,
        task_pid_off: 0,
        task_comm_off: 0,
        call_slot_mask: CALL_SLOT_COUNT - 1,
        hists_per_probe: 1,
        stack_chunks: 0,
        target_cgroup: 0,
        comm: [0; COMM_LEN],
    };
}

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}

const _: () = assert!(
    core::mem::size_of::<Config>() == core::mem::size_of::<ProbeSpec>() + 4 * 14 + 8 + COMM_LEN
);
