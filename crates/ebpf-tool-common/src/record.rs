//! The ring-buffer record, and the frames `--ret`/`--latency` keep between a call's
//! entry and its return.

use crate::spec::{MAX_SLOTS, MAX_VALUES, SLOT_BYTES};

/// Length of a task's `comm` (the kernel's `TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// `EventHead::kind`: written on entry, with the values (plain tracing).
pub const KIND_ENTRY: u8 = 0;
/// `EventHead::kind`: written on return, with the values saved at entry, the return
/// value and the latency (`--ret`, `--latency`).
pub const KIND_CALL: u8 = 1;
/// `EventHead::kind`: a return whose entry was not seen (attached mid-call, or nested
/// deeper than `MAX_DEPTH`): no values, no latency.
pub const KIND_UNSEEN_ENTRY: u8 = 2;

/// `EventHead::faults`: bit `i` for value `i` that could not be read (a bad pointer),
/// bit `SLOT_FAULT + s` for byte slot `s`, `RET_FAULT` for the return value.
pub const SLOT_FAULT: u16 = MAX_VALUES as u16;
pub const RET_FAULT: u16 = 15;

/// The start of every ring-buffer record. After it come, in this order and only as the
/// run needs them: for `KIND_CALL` records the return value and the latency (one `u64`
/// each, `RETURN_WORDS`); `ProbeSpec::count` values (`u64`); `ProbeSpec::slots` byte
/// slots of `SLOT_BYTES`. Trimming what a run does not show keeps a plain record within
/// one cache line: what crosses between CPUs is the main cost of a record.
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
    /// Which attached probe: the attach cookie, an index into the loader's list.
    pub probe_id: u32,
    /// `KIND_*`.
    pub kind: u8,
    /// Bit `s`: byte slot `s` was cut at its size (a string that went on).
    pub truncated: u8,
    /// Which values could not be read (see `SLOT_FAULT`, `RET_FAULT`).
    pub faults: u16,
    /// The task's `comm`, NUL-padded.
    pub comm: [u8; COMM_LEN],
}

pub const EVENT_HEAD_SIZE: usize = core::mem::size_of::<EventHead>();
/// `u64`s after the head of a `KIND_CALL` record: return value, latency.
pub const RETURN_WORDS: usize = 2;

// No padding: the sum of the fields is the size of the struct.
const _: () = assert!(EVENT_HEAD_SIZE == 8 + 4 * 3 + 1 + 1 + 2 + COMM_LEN);
const _: () = assert!(EVENT_HEAD_SIZE.is_multiple_of(8));

/// True for the kinds written at return.
pub const fn at_return(kind: u8) -> bool {
    kind == KIND_CALL || kind == KIND_UNSEEN_ENTRY
}

/// Offset of the first value in a record of `kind`.
pub const fn values_offset(kind: u8) -> usize {
    if at_return(kind) {
        EVENT_HEAD_SIZE + 8 * RETURN_WORDS
    } else {
        EVENT_HEAD_SIZE
    }
}

/// Offset of the first byte slot in a record of `kind` carrying `values` values.
pub const fn slots_offset(kind: u8, values: u32) -> usize {
    values_offset(kind) + 8 * values as usize
}

/// Size of a record of `kind` carrying `values` values and `slots` byte slots.
pub const fn record_size(kind: u8, values: u32, slots: u32) -> usize {
    slots_offset(kind, values) + SLOT_BYTES * slots as usize
}

/// Nesting depth of one thread's probed calls kept in its `CallStack`; deeper calls
/// (recursion) are kept in `DEEP_CALLS`, by owner and stack pointer.
pub const MAX_DEPTH: usize = 8;

/// A call deeper than `MAX_DEPTH`, as `DEEP_CALLS` finds its frame.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DeepKey {
    /// `CallStack::owner`: a thread id or a goroutine.
    pub owner: u64,
    /// `Frame::stack_pointer`.
    pub stack_pointer: u64,
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
    pub values: [u64; MAX_VALUES],
    /// `EventHead::faults` of the values read at entry.
    pub faults: u16,
    pub _pad: u16,
    /// 1 when the call passed the filter at entry.
    pub wanted: u32,
}

/// A thread's probed calls in progress, innermost last. `depth` may exceed `MAX_DEPTH`;
/// frames beyond it are in `DEEP_CALLS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CallStack {
    /// In `CALL_SLOTS`, whose calls these are: a thread id, or a goroutine's `g` (see
    /// `pair_by`); 0 when free. Unused in `CALLS`. 64 bits because the BPF target has no
    /// 32-bit atomics (and a `g` is a pointer).
    pub owner: u64,
    pub depth: u32,
    pub _pad: u32,
    pub frames: [Frame; MAX_DEPTH],
}

/// Entries of `CALL_SLOTS`, the array that holds a thread's `CallStack` at index
/// `tid % CALL_SLOT_COUNT` (`Config::call_slot_mask`) while the thread is inside probed
/// calls (a power of two). An array lookup costs the verifier-inlined equivalent of an
/// index; a hash lookup is what made pairing entries with returns dear. Threads whose
/// slot is held by another thread use the `CALLS` hash map instead.
pub const CALL_SLOT_COUNT: u32 = 4096;

const _: () = assert!(MAX_SLOTS <= 8 && MAX_VALUES <= 8);
