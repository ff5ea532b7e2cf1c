//! Every byte that crosses the kernel/user boundary: the run's `Config` (a read-only
//! global the loader fills before load), the ring-buffer records, and the keys of the
//! aggregation maps. `#![no_std]` so the eBPF crate can use it.
#![no_std]

/// Length of a task's `comm` (the kernel's `TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// How many integer argument registers a record carries (x86-64 System V passes six).
pub const MAX_ARGS: usize = 6;

/// How many arguments one run may read as C strings.
pub const MAX_STR_ARGS: usize = 2;

/// Bytes kept of each string argument, the terminating NUL included.
pub const STR_CAP: usize = 128;

/// Size of the event ring buffer in bytes; a power of two and a multiple of the page size,
/// as the kernel requires. 2 MiB holds about 17,000 records: 17 ms at a million calls a
/// second, several times the reader's wake-up interval. The reader's mapping of it counts
/// twice in its memory, so bigger is not free.
pub const EVENTS_RING_BYTES: u32 = 2 << 20;

/// The ring buffer's size when a run prints no per-call lines (one page, the minimum).
pub const EVENTS_RING_BYTES_UNUSED: u32 = 4096;

/// Records wait in the ring buffer without waking the reader until this many bytes are
/// pending; the reader also drains on a short timer. Waking a reader per record is what
/// makes per-event tracers cost microseconds per call.
pub const WAKEUP_BYTES: u64 = 256 << 10;

/// Nesting depth of one thread's probed calls that `--ret`/`--latency` can pair up;
/// deeper calls are still counted, but not timed.
pub const MAX_DEPTH: usize = 8;

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
/// Which histogram of a function: `HISTS[probe_id * HISTS_PER_PROBE + which]`.
pub const HISTS_PER_PROBE: usize = 2;
pub const HIST_LATENCY: usize = 0;
pub const HIST_ARG: usize = 1;

/// `CallEvent::kind`: written on entry, with the arguments (plain tracing).
pub const KIND_ENTRY: u32 = 0;
/// `CallEvent::kind`: written on return, with the arguments saved at entry, the return
/// value and the latency (`--ret`, `--latency`).
pub const KIND_CALL: u32 = 1;

/// `CallEvent::flags`: string argument `i` was cut at `STR_CAP - 1` bytes.
pub const EVENT_STR_TRUNCATED: u32 = 1;
/// `CallEvent::flags`: the entry of this call was not seen (attached mid-call, or nested
/// deeper than `MAX_DEPTH`): no arguments, no latency.
pub const EVENT_NO_ENTRY: u32 = 1 << 8;

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
    /// Fill the argument histograms with `args[hist_arg_index]`.
    pub const HIST_ARG: u32 = 1 << 4;
    /// Only tasks whose comm equals `Config::comm`.
    pub const FILTER_COMM: u32 = 1 << 5;
    /// Only calls whose argument passes `arg_filter_*`.
    pub const FILTER_ARG: u32 = 1 << 6;
    /// Compare the filtered argument as a signed number.
    pub const FILTER_ARG_SIGNED: u32 = 1 << 7;
    /// Capture the user stack of each call (`--stacks`).
    pub const STACKS: u32 = 1 << 8;
    /// Every probe sits on a function's first instruction, so the word at the stack
    /// pointer is the return address (the direct caller, for stacks).
    pub const CALLER_AT_ENTRY: u32 = 1 << 9;
}

/// `Config::arg_filter_op` values.
pub mod op {
    pub const EQ: u32 = 0;
    pub const NE: u32 = 1;
    pub const LT: u32 = 2;
    pub const LE: u32 = 3;
    pub const GT: u32 = 4;
    pub const GE: u32 = 5;
}

/// `Config::count_by` values: what `--count` groups calls by, besides the function.
pub mod by {
    pub const FUNC: u32 = 0;
    pub const PID: u32 = 1;
    pub const TID: u32 = 2;
    pub const COMM: u32 = 3;
}

/// Name of the `Config` global in the eBPF object.
pub const CONFIG_GLOBAL: &str = "CONFIG";

/// Per-run settings, fixed before load. The kernel reads them from a frozen read-only map,
/// so the verifier sees constants and prunes the branches a run does not use.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Right-hand side of the argument filter.
    pub arg_filter_value: u64,
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
    pub arg_filter_index: u32,
    /// `op::*`.
    pub arg_filter_op: u32,
    pub hist_arg_index: u32,
    /// Argument indexes read as strings: `str_args[i]` for `i < str_arg_count`.
    pub str_arg_count: u32,
    pub str_args: [u32; MAX_STR_ARGS],
    /// How many functions are probed; with one, its id is 0 and no cookie is read.
    pub probes: u32,
    pub _pad: u32,
    /// The comm to match under `FILTER_COMM`, NUL-padded.
    pub comm: [u8; COMM_LEN],
}

impl Config {
    pub const DEFAULT: Config = Config {
        arg_filter_value: 0,
        tool_tgid: 0,
        target_tgid: 0,
        target_tid: 0,
        target_uid: u32::MAX,
        flags: flags::EMIT_EVENTS,
        count_by: by::FUNC,
        arg_filter_index: 0,
        arg_filter_op: op::EQ,
        hist_arg_index: 0,
        str_arg_count: 0,
        str_args: [0; MAX_STR_ARGS],
        probes: 1,
        _pad: 0,
        comm: [0; COMM_LEN],
    };
}

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// One probed call, as the kernel writes it into the ring buffer.
///
/// Largest fields first and only fixed-width integers, so the layout has no padding and is
/// the same in both halves.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallEvent {
    /// `bpf_ktime_get_ns()` at entry (CLOCK_MONOTONIC).
    pub timestamp_ns: u64,
    /// The first `MAX_ARGS` integer argument registers at entry.
    pub args: [u64; MAX_ARGS],
    /// The return value register (`KIND_CALL` records).
    pub ret: u64,
    /// Entry to return, in nanoseconds (`KIND_CALL` records).
    pub latency_ns: u64,
    /// Thread-group id, what users call the pid.
    pub tgid: u32,
    /// Thread id.
    pub tid: u32,
    /// Which attached function: the attach cookie, an index into the loader's list.
    pub probe_id: u32,
    /// `KIND_ENTRY` or `KIND_CALL`.
    pub kind: u32,
    /// `EVENT_*` bits.
    pub flags: u32,
    /// Stack id in `STACKS` when stacks are captured, else a negative error.
    pub stack_id: i32,
    /// The task's `comm`, NUL-padded.
    pub comm: [u8; COMM_LEN],
}

/// A `CallEvent` followed by the string arguments, each NUL-terminated within `STR_CAP`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CallEventWithStrings {
    pub event: CallEvent,
    pub strings: [[u8; STR_CAP]; MAX_STR_ARGS],
}

/// Size of a record without strings.
pub const CALL_EVENT_SIZE: usize = core::mem::size_of::<CallEvent>();
/// Size of a record with strings.
pub const CALL_EVENT_WITH_STRINGS_SIZE: usize = core::mem::size_of::<CallEventWithStrings>();

// No padding: the sum of the fields is the size of the struct.
const _: () = assert!(CALL_EVENT_SIZE == 8 + 8 * MAX_ARGS + 8 + 8 + 4 * 6 + COMM_LEN);
const _: () = assert!(CALL_EVENT_WITH_STRINGS_SIZE == CALL_EVENT_SIZE + STR_CAP * MAX_STR_ARGS);
const _: () = assert!(core::mem::size_of::<Config>() == 8 + 4 * 12 + 4 * MAX_STR_ARGS + COMM_LEN);

/// One call saved at entry until its return (`--ret`, `--latency`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Frame {
    pub timestamp_ns: u64,
    pub args: [u64; MAX_ARGS],
    /// 1 when the call passed the argument filter at entry.
    pub wanted: u32,
    pub stack_id: i32,
}

/// A thread's probed calls in progress, innermost last. `depth` may exceed `MAX_DEPTH`;
/// frames beyond it are not kept.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CallStack {
    pub depth: u32,
    pub _pad: u32,
    pub frames: [Frame; MAX_DEPTH],
}

/// Key of `COUNTS` under `--count --by pid|tid|comm`; fields not grouped by are zero.
#[repr(C)]
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
    pub const COUNTS: &str = "COUNTS";
    pub const FUNC_COUNTS: &str = "FUNC_COUNTS";
    pub const HISTS: &str = "HISTS";
    pub const STACKS: &str = "STACKS";
    pub const STACK_COUNTS: &str = "STACK_COUNTS";
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
    pub const SLOTS: u32 = 4;
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY (all): `repr(C)`, `Copy`, made only of integers and arrays of integers with
    // no padding (asserted above for the records; Config, CountKey, StackKey and Frame are
    // laid out largest-first with 4-byte fields after 8-byte ones), so any bit pattern of
    // the right size is a valid value.
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for CallEvent {}
    unsafe impl aya::Pod for CountKey {}
    unsafe impl aya::Pod for StackKey {}
    unsafe impl aya::Pod for Frame {}
    unsafe impl aya::Pod for CallStack {}
}
