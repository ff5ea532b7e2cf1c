//! Ring-buffer records: one constructor for them all (`emit`), which writes the head,
//! the return words, the values and the byte slots the run's layout has, and wakes the
//! reader once per batch.

use core::ptr::addr_of_mut;

use aya_ebpf::bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use ebpf_tool_common::{
    EVENT_HEAD_SIZE, EventHead, Frame, KIND_UNSEEN_ENTRY, MAX_VALUES, ProbeSpec, RET_FAULT,
    SLOT_BYTES, SLOT_FAULT, at_return, bytes, lost, record_size, slots_offset, values_offset,
};

use crate::{
    maps::{Cfg, EVENTS, PENDING, count_lost},
    task::Task,
    values::{Regs, SlotRead, evaluate, fill_slot},
};

/// Who and when: the head of a record.
pub struct Call {
    pub kind: u8,
    pub tgid: u32,
    pub tid: u32,
    pub probe_id: u32,
    pub timestamp_ns: u64,
}

/// Where a record's values come from.
#[derive(Clone, Copy)]
pub enum Values<'a> {
    /// Read now from the probed function's registers and memory (at entry).
    Live(Regs),
    /// Saved at entry (at the return of a paired call).
    Saved(&'a Frame),
    /// Not known (a return whose entry was not seen).
    Unknown,
}

/// The return of a call: its value (read with `ProbeSpec::ret` from the registers at
/// return) and latency.
#[derive(Clone, Copy)]
pub struct Return {
    pub regs: Regs,
    pub latency_ns: u64,
}

/// Reserves, fills and submits one record. Its size is a constant of the run, as the
/// verifier requires.
#[inline(always)]
pub fn emit(
    cfg: Cfg,
    task: Task,
    call: &Call,
    spec: &ProbeSpec,
    values: Values<'_>,
    ret: Option<Return>,
) {
    let count = cfg.spec.count;
    let slots = cfg.spec.slots;
    let size = record_size(call.kind, count, slots);
    let Some(mut record) = EVENTS.reserve_bytes(size, 0) else {
        count_lost(lost::RINGBUF_FULL);
        return;
    };
    let base = record.as_mut_ptr();
    let mut faults: u16 = 0;
    let mut truncated: u8 = 0;
    // SAFETY: `reserve_bytes` handed out `size` exclusive bytes, 8-aligned; every write
    // below is inside the layout `record_size` measured for this run.
    unsafe {
        let head = base.cast::<EventHead>();
        (*head).timestamp_ns = call.timestamp_ns;
        (*head).tgid = call.tgid;
        (*head).tid = call.tid;
        (*head).probe_id = call.probe_id;
        (*head).kind = call.kind;
        task.comm_into(cfg, addr_of_mut!((*head).comm));
        let mut ret_value = 0;
        if let Some(ret) = ret
            && at_return(call.kind)
        {
            let words = base.add(EVENT_HEAD_SIZE).cast::<u64>();
            ret_value = match evaluate(ret.regs, &spec.ret) {
                Ok(value) => value,
                Err(_) => {
                    faults |= 1 << RET_FAULT;
                    count_lost(lost::UNREADABLE);
                    0
                }
            };
            *words = ret_value;
            *words.add(1) = ret.latency_ns;
        }
        let out = base.add(values_offset(call.kind)).cast::<u64>();
        for i in 0..MAX_VALUES {
            if i as u32 >= count {
                break;
            }
            let value = match values {
                Values::Live(regs) => match evaluate(regs, &spec.values[i]) {
                    Ok(value) => value,
                    Err(_) => {
                        faults |= 1 << i;
                        count_lost(lost::UNREADABLE);
                        0
                    }
                },
                Values::Saved(frame) => frame.values[i],
                Values::Unknown => 0,
            };
            *out.add(i) = value;
        }
        if let Values::Saved(frame) = values {
            faults |= frame.faults;
        }
        if slots > 0 && call.kind != KIND_UNSEEN_ENTRY {
            let slot_base = base.add(slots_offset(call.kind, count));
            for i in 0..MAX_VALUES {
                if i as u32 >= count {
                    break;
                }
                let value_spec = &spec.values[i];
                if value_spec.bytes == bytes::NONE || faults & (1 << i) != 0 {
                    continue;
                }
                let len_index = value_spec.len_from as usize;
                let len = if len_index < MAX_VALUES && (len_index as u32) < count {
                    *out.add(len_index)
                } else {
                    0
                };
                fill(
                    slot_base,
                    value_spec.slot,
                    slots,
                    value_spec,
                    *out.add(i),
                    len,
                    &mut faults,
                    &mut truncated,
                );
            }
            if spec.ret.bytes != bytes::NONE && ret.is_some() && faults & (1 << RET_FAULT) == 0 {
                fill(
                    slot_base,
                    spec.ret.slot,
                    slots,
                    &spec.ret,
                    ret_value,
                    0,
                    &mut faults,
                    &mut truncated,
                );
            }
        }
        (*head).faults = faults;
        (*head).truncated = truncated;
    }
    record.submit(wakeup_flags(cfg));
}

/// Fills byte slot `slot` (of `slots`) from `value`, noting a fault or a cut.
///
/// # Safety
/// `slot_base` must point to `slots` slots of `SLOT_BYTES`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn fill(
    slot_base: *mut u8,
    slot: u8,
    slots: u32,
    spec: &ebpf_tool_common::ValueSpec,
    value: u64,
    len: u64,
    faults: &mut u16,
    truncated: &mut u8,
) {
    let slot = slot as usize;
    if slot >= ebpf_tool_common::MAX_SLOTS || slot as u32 >= slots {
        return;
    }
    // SAFETY: slot < slots, within the caller's slots.
    match unsafe { fill_slot(slot_base.add(slot * SLOT_BYTES), spec, value, len) } {
        SlotRead::Whole => {}
        SlotRead::Truncated => *truncated |= 1 << slot,
        SlotRead::Unreadable => {
            *faults |= 1 << (SLOT_FAULT as usize + slot);
            count_lost(lost::UNREADABLE);
        }
    }
}

/// Wake the reader once this CPU has written a batch (`Config::wakeup_every`); it also
/// drains on a timer. A per-CPU count costs less than asking the ring how full it is.
#[inline(always)]
fn wakeup_flags(cfg: Cfg) -> u64 {
    if let Some(pending) = PENDING.get_ptr_mut(0) {
        // SAFETY: this CPU's counter; preemption is off while the program runs.
        unsafe {
            *pending += 1;
            if *pending >= cfg.wakeup_every {
                *pending = 0;
                return BPF_RB_FORCE_WAKEUP as u64;
            }
        }
    }
    BPF_RB_NO_WAKEUP as u64
}
