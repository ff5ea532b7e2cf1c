//! Keys and values of the aggregation maps, the map names, and the loss counters.

use crate::record::COMM_LEN;

/// Buckets of a log2 histogram: bucket `b` holds values `v` with `64 - clz(v) == b`
/// (0 holds 0, 1 holds 1, 2 holds 2..=3, ..., 64 holds 2^63..).
pub const HIST_BUCKETS: usize = 65;
/// Slots after the buckets of each histogram: count, sum, min, max.
pub const HIST_STATS: usize = 4;
/// Slots per histogram: one `HISTS` value is `[u64; HIST_SLOTS]`.
pub const HIST_SLOTS: usize = HIST_BUCKETS + HIST_STATS;
pub const HIST_COUNT: usize = HIST_BUCKETS;
pub const HIST_SUM: usize = HIST_BUCKETS + 1;
pub const HIST_MIN: usize = HIST_BUCKETS + 2;
pub const HIST_MAX: usize = HIST_BUCKETS + 3;
/// Which histogram of a probe: `HISTS[probe_id * HISTS_PER_PROBE + which]`.
pub const HISTS_PER_PROBE: usize = 2;
pub const HIST_LATENCY: usize = 0;
pub const HIST_ARG: usize = 1;

/// Key of `COUNTS` under `--count --by pid|tid|comm`; fields not grouped by are zero.
/// 8-aligned so the kernel can copy the comm in two 8-byte loads.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CountKey {
    pub probe_id: u32,
    /// The pid or tid, when grouped by it.
    pub id: u32,
    pub comm: [u8; COMM_LEN],
}

/// Key of `STACK_COUNTS`: one user stack of one process reaching one function. The pid
/// is kept so userspace can symbolize the addresses in that process's address space.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StackKey {
    /// The return address at function entry (`[rsp]` on x86-64): the direct caller, which a
    /// frame-pointer walk from entry misses because the callee has not pushed its frame yet.
    pub caller: u64,
    pub probe_id: u32,
    pub stack_id: i32,
    pub tgid: u32,
    pub _pad: u32,
    pub comm: [u8; COMM_LEN],
}

/// Depth of a captured user stack (the kernel's `PERF_MAX_STACK_DEPTH`).
pub const STACK_DEPTH: usize = 127;

/// Names of maps, shared so a rename cannot split the halves.
pub mod maps {
    pub const EVENTS: &str = "EVENTS";
    pub const LOST: &str = "LOST";
    pub const CALLS: &str = "CALLS";
    pub const CALL_SLOTS: &str = "CALL_SLOTS";
    pub const DEEP_CALLS: &str = "DEEP_CALLS";
    pub const PENDING: &str = "PENDING";
    pub const COUNTS: &str = "COUNTS";
    pub const FUNC_COUNTS: &str = "FUNC_COUNTS";
    pub const HISTS: &str = "HISTS";
    pub const STACKS: &str = "STACKS";
    pub const STACK_COUNTS: &str = "STACK_COUNTS";
    pub const SPECS: &str = "SPECS";
}

/// Slots of the per-CPU `LOST` array.
pub mod lost {
    /// Records that found the ring buffer full.
    pub const RINGBUF_FULL: u32 = 0;
    /// Calls that found the `COUNTS` table full.
    pub const COUNTS_FULL: u32 = 1;
    /// Stacks that could not be stored.
    pub const STACKS_FAILED: u32 = 2;
    /// Calls too deeply nested (or missing their entry) to be timed.
    pub const UNPAIRED: u32 = 3;
    /// Values (and strings) that could not be read.
    pub const UNREADABLE: u32 = 4;
    /// Calls whose return was never seen (left by longjmp, an exception, a tail jump
    /// or a panic): their frames were dropped.
    pub const ABANDONED: u32 = 5;
    pub const SLOTS: u32 = 6;
}
