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

/// Records wait in the ring buffer without waking the reader until about this share of
/// it is pending (1/`WAKEUP_FRACTION`); the reader also drains on a short timer. Waking a
/// reader per record is what makes per-event tracers cost microseconds per call.
pub const WAKEUP_FRACTION: u32 = 8;

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

/// `EventHead::kind`: written on entry, with the arguments (plain tracing).
pub const KIND_ENTRY: u16 = 0;
/// `EventHead::kind`: written on return, with the arguments saved at entry, the return
/// value and the latency (`--ret`, `--latency`).
pub const KIND_CALL: u16 = 1;

/// `EventHead::flags`: string argument `i` was cut at `STR_CAP - 1` bytes.
pub const EVENT_STR_TRUNCATED: u16 = 1;
/// `EventHead::flags`: string argument `i` could not be read (a bad pointer, or a page
/// not faulted in): its bytes are empty but it is not an empty string.
pub const EVENT_STR_UNREADABLE: u16 = 1 << 4;
/// `EventHead::flags`: the entry of this call was not seen (attached mid-call, or nested
/// deeper than `MAX_DEPTH`): no arguments, no latency.
pub const EVENT_NO_ENTRY: u16 = 1 << 8;

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
    /// Take timestamps (JSON output, latencies); plain text needs none, and reading the
    /// clock is one of the dearest steps of a record.
    pub const TIMESTAMPS: u32 = 1 << 10;
    /// `Config::task_*_off` hold the offsets of `task_struct` fields in this kernel: the
    /// ids and comm are read with plain loads through the task's BTF pointer instead of a
    /// helper call each.
    pub const TASK_FIELDS: u32 = 1 << 11;
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
    /// How many argument registers a record carries (the first ones): as many as output
    /// shows as numbers.
    pub record_args: u32,
    /// Wake the reader after this many records from one CPU (see `WAKEUP_FRACTION`).
    pub wakeup_every: u32,
    /// Offsets in `struct task_struct` of `tgid`, `pid` and `comm`, under `TASK_FIELDS`.
    pub task_tgid_off: u32,
    pub task_pid_off: u32,
    pub task_comm_off: u32,
    /// A thread's slot in `CALL_SLOTS` is `tid & call_slot_mask` (slots - 1).
    pub call_slot_mask: u32,
    /// Width in bits (8, 16, 32, 64) of the filtered argument: the register is narrowed
    /// (and sign-extended under `FILTER_ARG_SIGNED`) to it before comparing, as `-a N:i32`
    /// shows it.
    pub arg_filter_bits: u32,
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
        record_args: 0,
        wakeup_every: 1,
        task_tgid_off: 0,
        task_pid_off: 0,
        task_comm_off: 0,
        call_slot_mask: CALL_SLOT_COUNT - 1,
        arg_filter_bits: 64,
        comm: [0; COMM_LEN],
    };
}

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The start of every ring-buffer record. After it come, in this order and only as the
/// run needs them: for `KIND_CALL` records the return value and the latency (one `u64`
/// each, `RETURN_WORDS`); the first `Config::record_args` argument registers (`u64`);
/// `Config::str_arg_count` string arguments of `STR_CAP` bytes. Trimming what a run does
/// not show keeps a plain record within one cache line: what crosses between CPUs is the
/// main cost of a record.
///
/// Largest fields first and only fixed-width integers, so the layout has no padding and is
/// the same in both halves.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHead {
    /// `bpf_ktime_get_ns()` at entry (CLOCK_MONOTONIC) under `flags::TIMESTAMPS`, else 0.
    pub timestamp_ns: u64,
    /// Thread-group id, what users call the pid.
    pub tgid: u32,
    /// Thread id.
    pub tid: u32,
    /// Which attached function: the attach cookie, an index into the loader's list.
    pub probe_id: u32,
    /// `KIND_ENTRY` or `KIND_CALL`.
    pub kind: u16,
    /// `EVENT_*` bits.
    pub flags: u16,
    /// The task's `comm`, NUL-padded.
    pub comm: [u8; COMM_LEN],
}

pub const EVENT_HEAD_SIZE: usize = core::mem::size_of::<EventHead>();
/// `u64`s after the head of a `KIND_CALL` record: return value, latency.
pub const RETURN_WORDS: usize = 2;

// No padding: the sum of the fields is the size of the struct.
const _: () = assert!(EVENT_HEAD_SIZE == 8 + 4 * 3 + 2 * 2 + COMM_LEN);
const _: () = assert!(EVENT_HEAD_SIZE.is_multiple_of(8));
const _: () = assert!(core::mem::size_of::<Config>() == 8 + 4 * 18 + 4 * MAX_STR_ARGS + COMM_LEN);

/// Offset of the first argument register in a record of `kind`.
pub const fn args_offset(kind: u16) -> usize {
    if kind == KIND_CALL {
        EVENT_HEAD_SIZE + 8 * RETURN_WORDS
    } else {
        EVENT_HEAD_SIZE
    }
}

/// Offset of the first string in a record of `kind` carrying `args` registers.
pub const fn strings_offset(kind: u16, args: u32) -> usize {
    args_offset(kind) + 8 * args as usize
}

/// Size of a record of `kind` carrying `args` registers and `strings` strings.
pub const fn record_size(kind: u16, args: u32, strings: u32) -> usize {
    strings_offset(kind, args) + STR_CAP * strings as usize
}

/// One call saved at entry until its return (`--ret`, `--latency`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Frame {
    pub timestamp_ns: u64,
    /// The stack pointer at entry: a return matches the frame with its own, and frames
    /// deeper than a return's belong to calls that left without returning (longjmp, an
    /// exception unwinding through them).
    pub stack_pointer: u64,
    pub args: [u64; MAX_ARGS],
    /// 1 when the call passed the argument filter at entry.
    pub wanted: u32,
    pub _pad: u32,
}

/// A thread's probed calls in progress, innermost last. `depth` may exceed `MAX_DEPTH`;
/// frames beyond it are not kept.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CallStack {
    /// In `CALL_SLOTS`, the thread that holds this slot (0: free); unused in `CALLS`.
    /// 64 bits because the BPF target has no 32-bit atomics.
    pub owner: u64,
    pub depth: u32,
    pub _pad: u32,
    pub frames: [Frame; MAX_DEPTH],
}

/// Entries of `CALL_SLOTS`, the array that holds a thread's `CallStack` at index
/// `tid % CALL_SLOT_COUNT` (`Config::call_slot_mask`) while the thread is inside probed calls (a power of two). An
/// array lookup costs the verifier-inlined equivalent of an index; a hash lookup is what
/// made pairing entries with returns dear. Threads whose slot is held by another thread
/// use the `CALLS` hash map instead.
pub const CALL_SLOT_COUNT: u32 = 4096;

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
    pub const PENDING: &str = "PENDING";
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
    /// String arguments that could not be read.
    pub const UNREADABLE: u32 = 4;
    pub const SLOTS: u32 = 5;
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY (all): `repr(C)`, `Copy`, made only of integers and arrays of integers with
    // no padding (asserted above for the records; Config, CountKey, StackKey and Frame are
    // laid out largest-first with 4-byte fields after 8-byte ones), so any bit pattern of
    // the right size is a valid value.
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for CountKey {}
    unsafe impl aya::Pod for StackKey {}
    unsafe impl aya::Pod for Frame {}
    unsafe impl aya::Pod for CallStack {}
}
