//! Keys and values of the aggregation maps, the map names, and the loss counters.

use crate::record::COMM_LEN;

/// Sub-buckets per power of two of a histogram (log-linear, as HDR histograms are):
/// each bucket is at most 1/16 of its value wide, so percentiles land within ~3%.
pub const HIST_SUB_BITS: u32 = 4;
const HIST_SUBS: u64 = 1 << HIST_SUB_BITS;
/// Buckets of a histogram: values below 16 have one each; then each power of two
/// `[2^o, 2^(o+1))` has 16 of equal width (see `hist_bucket`).
pub const HIST_BUCKETS: usize = ((64 - HIST_SUB_BITS as usize) + 1) * HIST_SUBS as usize;
/// Slots after the buckets of each histogram: count, sum, min, max.
pub const HIST_STATS: usize = 4;
/// Slots per histogram: one `HISTS` value is `[u64; HIST_SLOTS]`.
pub const HIST_SLOTS: usize = HIST_BUCKETS + HIST_STATS;
pub const HIST_COUNT: usize = HIST_BUCKETS;
pub const HIST_SUM: usize = HIST_BUCKETS + 1;
pub const HIST_MIN: usize = HIST_BUCKETS + 2;
pub const HIST_MAX: usize = HIST_BUCKETS + 3;
/// Which histograms a probe has: `HISTS[probe_id * Config::hists_per_probe + which]`,
/// where the latency histogram comes first when there is one.
pub const HIST_LATENCY: usize = 0;
pub const HIST_ARG: usize = 1;

/// The bucket of `value`: itself below 16; else, with `o = floor(log2(value))`, the
/// 16th of `[2^o, 2^(o+1))` it falls in. The kernel and the reader share this.
#[inline(always)]
pub fn hist_bucket(value: u64) -> usize {
    if value < HIST_SUBS {
        return value as usize;
    }
    let (mut rest, mut log2) = (value, 0u32);
    for shift in [32u32, 16, 8, 4, 2, 1] {
        if rest >> shift != 0 {
            rest >>= shift;
            log2 += shift;
        }
    }
    let sub = (value >> (log2 - HIST_SUB_BITS)) & (HIST_SUBS - 1);
    ((log2 - HIST_SUB_BITS + 1) as u64 * HIST_SUBS + sub) as usize
}

/// The smallest and largest value of bucket `bucket`.
pub fn hist_bucket_range(bucket: usize) -> (u64, u64) {
    let subs = HIST_SUBS as usize;
    if bucket < subs {
        return (bucket as u64, bucket as u64);
    }
    let log2 = (bucket / subs) as u32 + HIST_SUB_BITS - 1;
    let sub = (bucket % subs) as u64;
    let width = 1u64 << (log2 - HIST_SUB_BITS);
    let low = (HIST_SUBS + sub) << (log2 - HIST_SUB_BITS);
    (low, low + (width - 1))
}

/// Bytes of a string a group key holds (`--by argN:str`), NUL included.
pub const GROUP_TEXT: usize = 64;

/// Key of `COUNTS` (`--count --by ...`) and `GROUP_HISTS` (`--latency`/`--hist --by
/// ...`): a probe and what its calls are grouped by; fields not grouped by are zero.
/// 8-aligned so the kernel can copy a comm in two 8-byte loads.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GroupKey {
    pub probe_id: u32,
    /// In `GROUP_HISTS`, which histogram (`HIST_LATENCY`, `HIST_ARG`); 0 in `COUNTS`.
    pub which: u32,
    /// The pid, the tid or the value grouped by.
    pub value: u64,
    /// The comm, or the string grouped by (NUL-padded).
    pub text: [u8; GROUP_TEXT],
}

/// `GroupKey::text[GROUP_UNREADABLE_MARK]` is 1 for a group whose value could not be
/// read (a string always ends in NUL before it).
pub const GROUP_UNREADABLE_MARK: usize = GROUP_TEXT - 1;

impl GroupKey {
    pub const EMPTY: GroupKey = GroupKey {
        probe_id: 0,
        which: 0,
        value: 0,
        text: [0; GROUP_TEXT],
    };
}

impl Default for GroupKey {
    fn default() -> Self {
        Self::EMPTY
    }
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

/// The stack window is copied in pieces of this size, each from an address aligned to
/// it, so the copy ends exactly where the stack's mapping does.
pub const STACK_CHUNK: usize = 512;
/// At most this much user stack per sample (`--stack-bytes`).
pub const MAX_STACK_BYTES: usize = 32 * 1024;
/// Stack samples in flight between the kernel and the unwinder.
pub const STACK_RING_BYTES: u32 = 16 << 20;

/// A call's registers and the top of its user stack, for unwinding in userspace: what
/// perf's `--call-graph dwarf` records. `stack` holds `len` bytes from `base` (the stack
/// pointer rounded down to `STACK_CHUNK`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StackSample {
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
    pub base: u64,
    pub tgid: u32,
    pub probe_id: u32,
    pub len: u32,
    pub _pad: u32,
    pub comm: [u8; COMM_LEN],
    pub stack: [u8; MAX_STACK_BYTES],
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
    pub const STACK_SAMPLES: &str = "STACK_SAMPLES";
    pub const SPECS: &str = "SPECS";
    pub const GROUP_HISTS: &str = "GROUP_HISTS";
    pub const ENTRY_GROUPS: &str = "ENTRY_GROUPS";
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
