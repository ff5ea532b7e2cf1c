//! `--ret`/`--latency`: each thread's (or goroutine's) probed calls in progress, so a
//! return pairs with its own entry. A thread's call stack lives in its slot of
//! `CALL_SLOTS` (claimed with an atomic compare-and-exchange, given back at depth 0), or
//! in `CALLS` when another thread holds that slot; frames nested deeper than the stack
//! keeps go in `DEEP_CALLS`. Frames keep the entry's stack pointer: a return pairs only
//! with its own frame, and frames of calls that left without returning are dropped and
//! counted.

use core::ptr::{addr_of_mut, read_volatile};

use aya_ebpf::helpers::bpf_probe_read_user;
use ebpf_tool_common::{
    CallStack, DeepKey, Frame, MAX_DEPTH, MAX_VALUES, ProbeSpec, flags, lost, pair_by, reg::x86_64,
};

use crate::{
    maps::{CALL_SLOTS, CALLS, Cfg, DEEP_CALLS, EMPTY_CALL_STACK, count_lost, count_lost_n, has},
    values::{Regs, evaluate},
};

/// Bytes a return takes off the stack: x86-64's `ret` pops the return address,
/// AArch64's leaves the stack as the call found it. A uretprobe runs after the pop; a
/// probe on the return instruction itself, before it.
pub const RETURN_POPS: u64 = if cfg!(bpf_target_arch = "x86_64") {
    8
} else {
    0
};

/// Whose call stack a call goes on, and where in the stack it was.
#[derive(Clone, Copy)]
pub struct CallKey {
    /// A thread id, or a goroutine's `g`.
    pub owner: u64,
    /// The stack pointer at the call's entry, in a measure that only grows downwards
    /// with the calls (a goroutine's: from the top of its stack, which moves).
    pub sp: u64,
}

impl CallKey {
    /// The key of this call in maps kept per call in progress.
    #[inline(always)]
    pub fn deep(self) -> DeepKey {
        DeepKey {
            owner: self.owner,
            stack_pointer: self.sp,
        }
    }
}

/// Where measured goroutine stack positions start: far above any distance from a
/// stack's top, so deeper calls keep smaller values, as real stack pointers do.
const GOROUTINE_BASE: u64 = 1 << 62;

/// The key of the call whose entry-time stack pointer is `entry_sp` (the stack pointer
/// at the entry, or the same position recomputed at the return). None for a goroutine
/// whose `g` cannot be read.
#[inline(always)]
pub fn call_key(spec: &ProbeSpec, regs: Regs, tid: u32, entry_sp: u64) -> Option<CallKey> {
    if spec.pair_by != pair_by::GOROUTINE {
        return Some(CallKey {
            owner: tid as u64,
            sp: entry_sp,
        });
    }
    let g = regs.get(x86_64::R14);
    // SAFETY: a fault-tolerant read of `g.stack.hi`, the second word of the goroutine.
    let hi = unsafe { bpf_probe_read_user((g + 8) as *const u64) }.ok()?;
    Some(CallKey {
        owner: g,
        sp: GOROUTINE_BASE.wrapping_sub(hi.wrapping_sub(entry_sp)),
    })
}

/// The slot of `CALL_SLOTS` an owner uses: a thread id's low bits, or a mix of a `g`
/// pointer's bits (they are 16-aligned and close together).
#[inline(always)]
fn slot_index(cfg: Cfg, owner: u64) -> u32 {
    let mixed = (owner ^ (owner >> 4) ^ (owner >> 16)) as u32;
    mixed & cfg.call_slot_mask
}

/// Who holds a slot (0: nobody). Read plainly: only the holder itself acts on seeing
/// its own tid, and others only try to claim.
#[inline(always)]
fn holder(stack: *mut CallStack) -> u64 {
    // SAFETY: a field of a map value, which lives as long as the program.
    unsafe { read_volatile(addr_of_mut!((*stack).owner)) }
}

/// `*word = new` if `*word == old`, atomically; returns what `*word` was. Rust's BPF
/// target has no read-modify-write atomics, the instruction set does (BPF_CMPXCHG).
///
/// # Safety
/// `word` must be valid for reads and writes.
#[inline(always)]
unsafe fn compare_exchange(word: *mut u64, old: u64, new: u64) -> u64 {
    let previous: u64;
    // SAFETY: the caller vouches for `word`; the instruction touches nothing else.
    unsafe {
        core::arch::asm!(
            "r0 = cmpxchg_64({word} + 0, r0, {new})",
            word = in(reg) word,
            new = in(reg) new,
            inout("r0") old => previous,
            options(nostack),
        )
    };
    previous
}

/// `*word = new`, atomically and fully ordered (BPF_XCHG).
///
/// # Safety
/// `word` must be valid for reads and writes.
#[inline(always)]
unsafe fn exchange(word: *mut u64, new: u64) {
    // SAFETY: as above.
    unsafe {
        core::arch::asm!(
            "{value} = xchg_64({word} + 0, {value})",
            word = in(reg) word,
            value = inout(reg) new => _,
            options(nostack),
        )
    };
}

/// Where this thread pushes a call: its slot if it holds it or can claim it (free),
/// else its `CALLS` entry, created empty when missing.
#[inline(always)]
fn stack_to_push(cfg: Cfg, owner: u64) -> Option<*mut CallStack> {
    if let Some(slot) = CALL_SLOTS.get_ptr_mut(slot_index(cfg, owner)) {
        let held_by = holder(slot);
        if held_by == owner {
            return Some(slot);
        }
        // SAFETY: the slot's owner word, in a live map value.
        if held_by == 0 && unsafe { compare_exchange(addr_of_mut!((*slot).owner), 0, owner) } == 0 {
            // SAFETY: claimed just now: this thread alone writes it until it gives it
            // back, which it does only at depth 0.
            unsafe { (*slot).depth = 0 };
            return Some(slot);
        }
    }
    if let Some(stack) = CALLS.get_ptr_mut(owner) {
        return Some(stack);
    }
    let empty = EMPTY_CALL_STACK.get_ptr(0)?;
    // SAFETY: a per-CPU value that is never written, so it stays zeroed.
    CALLS.insert(owner, unsafe { &*empty }, 0).ok()?;
    CALLS.get_ptr_mut(owner)
}

/// Where this thread's innermost call was pushed, and whether that is its slot. A
/// thread's frames in its slot are always newer than those in `CALLS` (it only uses
/// `CALLS` while it does not hold the slot), so popping the slot first keeps the order.
#[inline(always)]
fn stack_to_pop(cfg: Cfg, owner: u64) -> Option<(*mut CallStack, bool)> {
    if let Some(slot) = CALL_SLOTS.get_ptr_mut(slot_index(cfg, owner))
        && holder(slot) == owner
    {
        return Some((slot, true));
    }
    CALLS.get_ptr_mut(owner).map(|stack| (stack, false))
}

/// Frees a slot whose depth is back to 0 for any thread to claim.
#[inline(always)]
fn give_back(stack: *mut CallStack) {
    // An exchange, not a store: it orders this thread's last writes to the slot before
    // the release, on any architecture.
    // SAFETY: the slot's owner word, in a live map value.
    unsafe { exchange(addr_of_mut!((*stack).owner), 0) };
}

/// Pops the frames of calls that left without returning (longjmp, an exception
/// unwinding through them), which no return will ever pop: left in place they would
/// fill the stack. A live frame always lies higher in the stack than the calls made
/// inside it, so at an entry with stack pointer `sp` every frame at or below `sp` is
/// dead (`inclusive`), and at a return every frame below its entry's. Frames deeper
/// than `MAX_DEPTH` lie below the deepest one kept here: they are all dead once `sp`
/// is at or above it (their `DEEP_CALLS` entries age out).
#[inline(always)]
fn drop_abandoned_frames(stack: &mut CallStack, sp: u64, inclusive: bool) {
    if stack.depth as usize > MAX_DEPTH {
        match stack.frames.last() {
            Some(deepest) if deepest.stack_pointer <= sp => {
                count_lost_n(lost::ABANDONED, (stack.depth as usize - MAX_DEPTH) as u64);
                stack.depth = MAX_DEPTH as u32;
            }
            _ => return,
        }
    }
    for _ in 0..MAX_DEPTH {
        let top = (stack.depth as usize).wrapping_sub(1);
        match stack.frames.get(top) {
            Some(frame) if frame.stack_pointer < sp || (inclusive && frame.stack_pointer == sp) => {
                stack.depth -= 1;
                count_lost(lost::ABANDONED);
            }
            _ => return,
        }
    }
}

/// Saves a call at its entry: when, its stack pointer, and (for records) its values.
#[inline(always)]
pub fn push(cfg: Cfg, key: CallKey, regs: Regs, spec: &ProbeSpec, wanted: bool, timestamp_ns: u64) {
    let Some(stack) = stack_to_push(cfg, key.owner) else {
        return; // its return will be counted as unpaired
    };
    // SAFETY: its owner's own stack; only the owner pushes and pops it, and uprobe
    // handlers of one thread (or goroutine, which runs on one thread at a time) never
    // run concurrently.
    let stack = unsafe { &mut *stack };
    let sp = key.sp;
    drop_abandoned_frames(stack, sp, true);
    let depth = stack.depth as usize;
    stack.depth += 1;
    if let Some(frame) = stack.frames.get_mut(depth) {
        fill(cfg, frame, regs, spec, wanted, timestamp_ns, sp);
        return;
    }
    // Deeper than the stack keeps (recursion): the frame goes in DEEP_CALLS, found by
    // its stack pointer at the return.
    let mut frame = Frame::default();
    fill(cfg, &mut frame, regs, spec, wanted, timestamp_ns, sp);
    let deep = DeepKey {
        owner: key.owner,
        stack_pointer: sp,
    };
    let _ = DEEP_CALLS.insert(&deep, &frame, 0);
}

/// A call's frame: when, where, and (for records) its values.
#[inline(always)]
fn fill(
    cfg: Cfg,
    frame: &mut Frame,
    regs: Regs,
    spec: &ProbeSpec,
    wanted: bool,
    timestamp_ns: u64,
    sp: u64,
) {
    frame.timestamp_ns = timestamp_ns;
    frame.stack_pointer = sp;
    frame.faults = 0;
    if has(cfg, flags::EMIT_EVENTS) {
        let count = cfg.spec.count;
        for i in 0..MAX_VALUES {
            if i as u32 >= count {
                break;
            }
            frame.values[i] = match evaluate(regs, &spec.values[i]) {
                Ok(value) => value,
                Err(_) => {
                    frame.faults |= 1 << i;
                    count_lost(lost::UNREADABLE);
                    0
                }
            };
        }
    }
    frame.wanted = wanted as u32;
}

/// What popping found for a return.
pub enum Popped {
    /// The call's own frame (a copy: once the slot is given back another thread may
    /// overwrite it).
    Paired(Frame),
    /// Its entry was not seen (attached mid-call).
    Unseen,
}

/// Pops the frame of the returning call (`key.sp`: its entry's stack position).
#[inline(always)]
pub fn pop(cfg: Cfg, key: CallKey) -> Popped {
    let Some((stack, in_slot)) = stack_to_pop(cfg, key.owner) else {
        count_lost(lost::UNPAIRED);
        return Popped::Unseen;
    };
    // SAFETY: its owner's own stack (its slot, or its CALLS entry); see `push`.
    let stack = unsafe { &mut *stack };
    let entry_sp = key.sp;
    drop_abandoned_frames(stack, entry_sp, false);
    let popped = if stack.depth == 0 {
        Popped::Unseen
    } else {
        match stack.frames.get(stack.depth as usize - 1) {
            // An outer call's frame: this return's entry was not recorded. Leave the
            // frame for its own return rather than pair it with the wrong one.
            Some(frame) if frame.stack_pointer > entry_sp => Popped::Unseen,
            Some(frame) => {
                stack.depth -= 1;
                Popped::Paired(*frame)
            }
            None => {
                // Deeper than the stack keeps: its frame is in DEEP_CALLS.
                stack.depth -= 1;
                let deep = DeepKey {
                    owner: key.owner,
                    stack_pointer: entry_sp,
                };
                // SAFETY: a map value, copied out before it is deleted.
                match unsafe { DEEP_CALLS.get(&deep) }.copied() {
                    Some(frame) => {
                        let _ = DEEP_CALLS.remove(&deep);
                        Popped::Paired(frame)
                    }
                    None => Popped::Unseen,
                }
            }
        }
    };
    // Only now: once given back, another thread may overwrite the frame read above.
    if in_slot && stack.depth == 0 {
        give_back(stack);
    }
    if let Popped::Unseen = popped {
        count_lost(lost::UNPAIRED);
    }
    popped
}
