//! The argument model: where a value a run shows lives and how to read it, as the kernel
//! program interprets it. Every source of values builds these (the C ABI's registers for
//! `-a N`, perf-style fetch arguments, later USDT notes, Go's register ABI and DWARF
//! locations); the kernel program has one interpreter for them all.
//!
//! A value is computed as `address = reg[base] + reg[index] * scale + displacement`;
//! with no reads that is the value itself (a register, a constant), else it is read from
//! user memory `reads` times, adding `after[i]` to what read `i` gave before the next
//! read (a field of a struct behind a pointer), the last read `size` bytes wide. The
//! result is narrowed to `size` bytes and sign-extended when `signed`.

/// Values one record carries.
pub const MAX_VALUES: usize = 8;
/// Byte slots (strings, buffers) one record carries.
pub const MAX_SLOTS: usize = 2;
/// Memory reads one value may chain.
pub const MAX_HOPS: usize = 4;
/// Bytes of each slot; a string keeps at most `SLOT_BYTES - 1` and its NUL.
pub const SLOT_BYTES: usize = 128;

/// Register numbers: DWARF's, so debug-info locations need no translation.
pub mod reg {
    /// No register: contributes 0.
    pub const NONE: u8 = 0xff;
    /// x86-64 (System V DWARF numbering).
    pub mod x86_64 {
        pub const RAX: u8 = 0;
        pub const RDX: u8 = 1;
        pub const RCX: u8 = 2;
        pub const RBX: u8 = 3;
        pub const RSI: u8 = 4;
        pub const RDI: u8 = 5;
        pub const RBP: u8 = 6;
        pub const RSP: u8 = 7;
        pub const R8: u8 = 8;
        pub const R9: u8 = 9;
        pub const R10: u8 = 10;
        pub const R11: u8 = 11;
        pub const R12: u8 = 12;
        pub const R13: u8 = 13;
        pub const R14: u8 = 14;
        pub const R15: u8 = 15;
        /// The instruction pointer (DWARF's return-address column).
        pub const RIP: u8 = 16;
        pub const COUNT: usize = 17;
    }
    /// AArch64: x0..x30 are 0..30.
    pub mod aarch64 {
        pub const X0: u8 = 0;
        pub const LR: u8 = 30;
        pub const SP: u8 = 31;
        pub const PC: u8 = 32;
        pub const COUNT: usize = 33;
    }
}

/// `ValueSpec::bytes`: what, besides the value, goes into the record.
pub mod bytes {
    pub const NONE: u8 = 0;
    /// The NUL-terminated string the value points to, into slot `slot`.
    pub const CSTR: u8 = 1;
    /// `values[len_from]` bytes at the value (capped at `SLOT_BYTES`), into slot `slot`.
    pub const BUF: u8 = 2;
}

/// Where one shown value lives and how to read it. 40 bytes, largest fields first.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueSpec {
    pub displacement: i64,
    /// Added to the result of read `i` before read `i + 1`.
    pub after: [i32; MAX_HOPS],
    /// `reg::*` numbers, or `reg::NONE`.
    pub base: u8,
    pub index: u8,
    pub scale: u8,
    /// Memory reads, at most `MAX_HOPS`; 0 for a register or a constant.
    pub reads: u8,
    /// Width in bytes of the value (1, 2, 4, 8).
    pub size: u8,
    /// 1: sign-extend from `size` bytes.
    pub signed: u8,
    /// `bytes::*`.
    pub bytes: u8,
    /// With `bytes::BUF`: the index of the value that holds the length.
    pub len_from: u8,
    /// The byte slot, with `bytes::CSTR` and `bytes::BUF`.
    pub slot: u8,
    pub _pad: [u8; 7],
}

impl ValueSpec {
    /// A value that reads nothing (the spec of an unused position).
    pub const NONE: ValueSpec = ValueSpec {
        displacement: 0,
        after: [0; MAX_HOPS],
        base: reg::NONE,
        index: reg::NONE,
        scale: 0,
        reads: 0,
        size: 8,
        signed: 0,
        bytes: bytes::NONE,
        len_from: 0,
        slot: 0,
        _pad: [0; 7],
    };

    /// Register `reg`, `size` bytes wide.
    pub const fn register(reg: u8, size: u8, signed: bool) -> ValueSpec {
        ValueSpec {
            base: reg,
            size,
            signed: signed as u8,
            ..ValueSpec::NONE
        }
    }
}

/// `--filter`: the value compared, the operator (`op::*`) and the right-hand side (two's
/// complement when the value is signed).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterSpec {
    pub rhs: u64,
    pub value: ValueSpec,
    pub op: u32,
    pub _pad: u32,
}

/// What the kernel computes on each hit of one probe.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    /// The values shown, in order: `values[..count]`.
    pub values: [ValueSpec; MAX_VALUES],
    /// The return value, read at return (`--ret`).
    pub ret: ValueSpec,
    /// The value `--hist` counts.
    pub hist: ValueSpec,
    /// What calls are grouped by under `by::VALUE` / `by::STRING` (`--by argN[:str]`).
    pub group: ValueSpec,
    pub filter: FilterSpec,
    pub count: u32,
    /// Byte slots the values fill (the run's record layout).
    pub slots: u32,
    /// `pair_by::*`: what a return is paired with its entry by.
    pub pair_by: u32,
    pub _pad: u32,
}

/// `ProbeSpec::pair_by`: whose calls a return pairs with.
pub mod pair_by {
    /// The thread's (C, C++, Rust...).
    pub const THREAD: u32 = 0;
    /// The goroutine's (Go's register ABI): the `g` in R14, which may run on another
    /// thread at the return than at the entry; its stack may have moved, so stack
    /// positions are measured from the top of the goroutine's stack (`g.stack.hi`).
    pub const GOROUTINE: u32 = 1;
}

impl ProbeSpec {
    pub const EMPTY: ProbeSpec = ProbeSpec {
        values: [ValueSpec::NONE; MAX_VALUES],
        ret: ValueSpec::NONE,
        hist: ValueSpec::NONE,
        group: ValueSpec::NONE,
        filter: FilterSpec {
            rhs: 0,
            value: ValueSpec::NONE,
            op: 0,
            _pad: 0,
        },
        count: 0,
        slots: 0,
        pair_by: pair_by::THREAD,
        _pad: 0,
    };
}

const _: () = assert!(core::mem::size_of::<ValueSpec>() == 40);
const _: () = assert!(core::mem::size_of::<FilterSpec>() == 56);
const _: () = assert!(core::mem::size_of::<ProbeSpec>() == 40 * (MAX_VALUES + 3) + 56 + 16);
