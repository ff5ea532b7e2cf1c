//! The argument model's interpreter (see `ebpf_tool_common::spec`): computes a
//! `ValueSpec` from the probed task's registers and memory, and copies the bytes a value
//! points to into a record's slot. Bounded (at most `MAX_HOPS` reads) and branchy in a way
//! the verifier prunes: a run with one spec has it in the frozen `CONFIG`, so every field
//! tested here is a constant and only the path of that spec stays.

use core::ptr::{addr_of, read_volatile};

use aya_ebpf::{
    bindings::pt_regs,
    helpers::{bpf_probe_read_user, generated::bpf_probe_read_user_str},
};
use ebpf_tool_common::{FilterSpec, MAX_HOPS, SLOT_BYTES, ValueSpec, bytes, op};

/// The probed task's saved registers.
#[derive(Clone, Copy)]
pub struct Regs(pub *const pt_regs);

impl Regs {
    /// Register `n` by its DWARF number; 0 for `reg::NONE` and unknown numbers. Each arm
    /// is its own volatile load at a constant offset: the verifier refuses a context
    /// pointer plus a computed offset, which is what a table of offsets would become.
    #[inline(always)]
    pub fn get(self, n: u8) -> u64 {
        let r = self.0;
        // SAFETY: the kernel hands the program the probed task's saved registers.
        #[cfg(bpf_target_arch = "x86_64")]
        unsafe {
            match n {
                0 => read_volatile(addr_of!((*r).rax)),
                1 => read_volatile(addr_of!((*r).rdx)),
                2 => read_volatile(addr_of!((*r).rcx)),
                3 => read_volatile(addr_of!((*r).rbx)),
                4 => read_volatile(addr_of!((*r).rsi)),
                5 => read_volatile(addr_of!((*r).rdi)),
                6 => read_volatile(addr_of!((*r).rbp)),
                7 => read_volatile(addr_of!((*r).rsp)),
                8 => read_volatile(addr_of!((*r).r8)),
                9 => read_volatile(addr_of!((*r).r9)),
                10 => read_volatile(addr_of!((*r).r10)),
                11 => read_volatile(addr_of!((*r).r11)),
                12 => read_volatile(addr_of!((*r).r12)),
                13 => read_volatile(addr_of!((*r).r13)),
                14 => read_volatile(addr_of!((*r).r14)),
                15 => read_volatile(addr_of!((*r).r15)),
                16 => read_volatile(addr_of!((*r).rip)),
                _ => 0,
            }
        }
        // SAFETY: as above.
        #[cfg(bpf_target_arch = "aarch64")]
        unsafe {
            macro_rules! x {
                ($($i:literal)*) => {
                    match n {
                        $($i => read_volatile(addr_of!((*r).regs[$i])),)*
                        31 => read_volatile(addr_of!((*r).sp)),
                        32 => read_volatile(addr_of!((*r).pc)),
                        _ => 0,
                    }
                };
            }
            x!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30)
        }
        #[cfg(not(any(bpf_target_arch = "x86_64", bpf_target_arch = "aarch64")))]
        {
            let _ = (r, n);
            0
        }
    }

    /// The stack pointer (0 where unknown, which makes every frame match).
    #[inline(always)]
    pub fn stack_pointer(self) -> u64 {
        #[cfg(bpf_target_arch = "x86_64")]
        {
            self.get(ebpf_tool_common::reg::x86_64::RSP)
        }
        #[cfg(bpf_target_arch = "aarch64")]
        {
            self.get(ebpf_tool_common::reg::aarch64::SP)
        }
        #[cfg(not(any(bpf_target_arch = "x86_64", bpf_target_arch = "aarch64")))]
        {
            0
        }
    }
}

/// A value that could not be read: a bad pointer, or a page the task has not touched.
pub struct Unreadable;

/// Computes `spec` for the task whose registers are `regs`.
#[inline(always)]
pub fn evaluate(regs: Regs, spec: &ValueSpec) -> Result<u64, Unreadable> {
    let mut address = regs
        .get(spec.base)
        .wrapping_add(regs.get(spec.index).wrapping_mul(spec.scale as u64))
        .wrapping_add(spec.displacement as u64);
    if spec.reads == 0 {
        return Ok(narrow(address, spec.size, spec.signed));
    }
    for hop in 0..MAX_HOPS {
        let last = hop + 1 >= spec.reads as usize;
        let value = read_user(address, if last { spec.size } else { 8 })?;
        if last {
            return Ok(narrow(value, spec.size, spec.signed));
        }
        address = value.wrapping_add(spec.after[hop] as i64 as u64);
    }
    Err(Unreadable)
}

/// `size` bytes of user memory at `address`, zero-extended.
#[inline(always)]
fn read_user(address: u64, size: u8) -> Result<u64, Unreadable> {
    // SAFETY (all): fault-tolerant reads of user memory into a value of the read's size.
    let value = unsafe {
        match size {
            1 => bpf_probe_read_user(address as *const u8).map(|v| v as u64),
            2 => bpf_probe_read_user(address as *const u16).map(|v| v as u64),
            4 => bpf_probe_read_user(address as *const u32).map(|v| v as u64),
            _ => bpf_probe_read_user(address as *const u64),
        }
    };
    value.map_err(|_| Unreadable)
}

/// `value` cut to `size` bytes, sign-extended when `signed`.
#[inline(always)]
fn narrow(value: u64, size: u8, signed: u8) -> u64 {
    match (size, signed != 0) {
        (1, false) => value as u8 as u64,
        (1, true) => value as i8 as i64 as u64,
        (2, false) => value as u16 as u64,
        (2, true) => value as i16 as i64 as u64,
        (4, false) => value as u32 as u64,
        (4, true) => value as i32 as i64 as u64,
        _ => value,
    }
}

/// Whether `filter` holds for the task whose registers are `regs`. An unreadable value
/// passes no filter.
#[inline(always)]
pub fn filter_holds(regs: Regs, filter: &FilterSpec) -> bool {
    let Ok(value) = evaluate(regs, &filter.value) else {
        return false;
    };
    let ord = if filter.value.signed != 0 {
        (value as i64).cmp(&(filter.rhs as i64))
    } else {
        value.cmp(&filter.rhs)
    };
    use core::cmp::Ordering::*;
    match filter.op {
        op::EQ => ord == Equal,
        op::NE => ord != Equal,
        op::LT => ord == Less,
        op::LE => ord != Greater,
        op::GT => ord == Greater,
        _ => ord != Less,
    }
}

/// How filling a byte slot went.
pub enum SlotRead {
    Whole,
    /// There was more than the slot holds.
    Truncated,
    Unreadable,
}

/// Copies what `spec` says about `value` (the string it points to, or `len` bytes at it)
/// into the `SLOT_BYTES` at `slot`.
///
/// # Safety
/// `slot` must point to `SLOT_BYTES` writable bytes.
#[inline(always)]
pub unsafe fn fill_slot(slot: *mut u8, spec: &ValueSpec, value: u64, len: u64) -> SlotRead {
    if spec.bytes == bytes::BUF {
        let n = if len > SLOT_BYTES as u64 {
            SLOT_BYTES as u32
        } else {
            len as u32
        };
        if n > 0 {
            // SAFETY: at most SLOT_BYTES bytes into the caller's slot, fault-tolerant.
            let read = unsafe {
                aya_ebpf::helpers::generated::bpf_probe_read_user(
                    slot.cast(),
                    n,
                    value as *const core::ffi::c_void,
                )
            };
            if read < 0 {
                return SlotRead::Unreadable;
            }
        }
        return if len > SLOT_BYTES as u64 {
            SlotRead::Truncated
        } else {
            SlotRead::Whole
        };
    }
    // SAFETY: a fault-tolerant read into exactly SLOT_BYTES bytes.
    let len = unsafe { bpf_probe_read_user_str(slot.cast(), SLOT_BYTES as u32, value as *const _) };
    if len < 0 {
        // SAFETY: within the caller's slot.
        unsafe { *slot = 0 };
        return SlotRead::Unreadable;
    }
    if len as usize != SLOT_BYTES {
        return SlotRead::Whole;
    }
    // The helper stopped at the cap; the string went on if its next byte does.
    // SAFETY: a fault-tolerant read of one user byte.
    let next = unsafe { bpf_probe_read_user((value + SLOT_BYTES as u64 - 1) as *const u8) };
    if next.unwrap_or(0) != 0 {
        SlotRead::Truncated
    } else {
        SlotRead::Whole
    }
}
