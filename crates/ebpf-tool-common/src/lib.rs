//! Every byte that crosses the kernel/user boundary: the ring-buffer record and the names
//! of the globals the loader sets before load. `#![no_std]` so the eBPF crate can use it.
#![no_std]

/// Length of a task's `comm` (the kernel's `TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// How many integer argument registers a record carries (x86-64 System V passes six).
pub const MAX_ARGS: usize = 6;

/// Size of the event ring buffer in bytes; a power of two and a multiple of the page size,
/// as the kernel requires. 8 MiB holds about 75,000 records of slack for bursts.
pub const EVENTS_RING_BYTES: u32 = 8 << 20;

/// `CallEvent::kind` of a record written on function entry.
pub const KIND_ENTRY: u32 = 0;
/// `CallEvent::kind` of a record written on function return.
pub const KIND_RETURN: u32 = 1;

/// Names of the read-only globals in the eBPF object, set by the loader before load so the
/// hot path reads a constant instead of looking up a map.
pub mod globals {
    /// Thread-group id of ebpf-tool itself: its calls are never reported.
    pub const TOOL_TGID: &str = "TOOL_TGID";
    /// When non-zero, only this thread group is reported.
    pub const TARGET_TGID: &str = "TARGET_TGID";
}

/// One probed call, as the kernel writes it into the ring buffer.
///
/// Largest fields first and only fixed-width integers, so the layout has no padding and is
/// the same in both halves.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallEvent {
    /// `bpf_ktime_get_ns()` when the probe fired (CLOCK_MONOTONIC).
    pub timestamp_ns: u64,
    /// The first `MAX_ARGS` integer argument registers (entry records).
    pub args: [u64; MAX_ARGS],
    /// The return value register (return records).
    pub ret: u64,
    /// Thread-group id, what users call the pid.
    pub tgid: u32,
    /// Thread id.
    pub tid: u32,
    /// Which attached function fired: the attach cookie, an index into the loader's list.
    pub probe_id: u32,
    /// `KIND_ENTRY` or `KIND_RETURN`.
    pub kind: u32,
    /// The task's `comm`, NUL-padded.
    pub comm: [u8; COMM_LEN],
}

/// Size of one record; userspace checks every record against it before decoding.
pub const CALL_EVENT_SIZE: usize = core::mem::size_of::<CallEvent>();

// No padding: the sum of the fields is the size of the struct.
const _: () = assert!(CALL_EVENT_SIZE == 8 + 8 * MAX_ARGS + 8 + 4 * 4 + COMM_LEN);

// SAFETY: `CallEvent` is `repr(C)`, `Copy`, made only of integers and has no padding (checked
// above), so every bit pattern of the right size is a valid value.
#[cfg(feature = "user")]
unsafe impl aya::Pod for CallEvent {}
