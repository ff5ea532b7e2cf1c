//! Renderers: plain data in, text or JSON out. Nothing here touches the kernel.

pub mod escape;
pub mod hist;
pub mod json;
pub mod printer;
pub mod sink;
pub mod stacks;
pub mod table;
pub mod text;

use ebpf_tool_common::{RET_FAULT, SLOT_BYTES, SLOT_FAULT};

use crate::{
    events::{Record, until_nul},
    values::{Display, ValueLayout},
};

/// What each event line shows besides pid, tid, comm and function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFormat {
    /// The values records carry, and how each is shown.
    pub layout: ValueLayout,
    pub latency: bool,
    /// USDT probes: lines say `usdt triggered!` and `probe=`, JSON `"probe"`.
    pub usdt: bool,
}

/// A value as shown.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgValue<'a> {
    Unsigned(u64),
    Signed(i64),
    Hex(u64),
    /// A string, or a buffer's bytes; `truncated` when there was more than a slot holds.
    Bytes {
        bytes: &'a [u8],
        truncated: bool,
    },
    /// A value (or the string behind it) that could not be read: a bad pointer, a page
    /// not faulted in. Never shown as a number or an empty string.
    Unreadable,
    /// A string pointer that is NULL (a function returning no string).
    Null,
    /// An enum's value by its enumerator's name.
    Name(&'static str),
    Float(f64),
}

/// The return value a record shows, as `--ret TYPE` says; None when not shown.
pub fn return_value<'a>(format: &EventFormat, record: &Record<'a>) -> Option<ArgValue<'a>> {
    let ret = format.layout.ret?;
    let event = record.event;
    if event.faults & (1 << RET_FAULT) != 0 {
        return Some(ArgValue::Unreadable);
    }
    let raw = event.ret;
    Some(match ret.display {
        Display::Unsigned => ArgValue::Unsigned(sized(raw, ret.ty.bytes())),
        Display::Signed => ArgValue::Signed(raw as i64),
        Display::Hex => ArgValue::Hex(raw),
        Display::Float { bytes: 4 } => ArgValue::Float(f64::from(f32::from_bits(raw as u32))),
        Display::Float { .. } => ArgValue::Float(f64::from_bits(raw)),
        Display::Str { slot } | Display::Buf { slot, .. } => {
            if raw == 0 {
                ArgValue::Null
            } else if event.faults & (1 << (SLOT_FAULT as usize + slot)) != 0 {
                ArgValue::Unreadable
            } else {
                ArgValue::Bytes {
                    bytes: until_nul(record.slots[slot]),
                    truncated: event.truncated & (1 << slot) != 0,
                }
            }
        }
    })
}

/// `raw` cut to `bytes` bytes (the kernel zero-extends; this keeps it exact).
fn sized(raw: u64, bytes: u8) -> u64 {
    match bytes {
        8 => raw,
        n => raw & ((1u64 << (8 * n as u32)) - 1),
    }
}

/// The values a record shows, as `(key, value)`, following `format`.
pub fn arg_values<'a, 'f>(
    format: &'f EventFormat,
    record: &Record<'a>,
) -> impl Iterator<Item = (&'f str, ArgValue<'a>)> + use<'a, 'f> {
    let event = record.event;
    let slots = record.slots;
    format.layout.shown().map(move |(i, value)| {
        let raw = event.values[i];
        let slot_faulted = |slot: usize| event.faults & (1 << (SLOT_FAULT as usize + slot)) != 0;
        let shown = if event.faults & (1 << i) != 0 {
            ArgValue::Unreadable
        } else {
            match value.display {
                Display::Unsigned | Display::Signed
                    if let Some(name) = value
                        .names
                        .and_then(|names| names.iter().find(|(v, _)| *v == raw as i64)) =>
                {
                    ArgValue::Name(name.1.as_str())
                }
                Display::Unsigned => ArgValue::Unsigned(raw),
                Display::Signed => ArgValue::Signed(raw as i64),
                Display::Hex => ArgValue::Hex(raw),
                Display::Float { bytes: 4 } => {
                    ArgValue::Float(f64::from(f32::from_bits(raw as u32)))
                }
                Display::Float { .. } => ArgValue::Float(f64::from_bits(raw)),
                Display::Str { slot } if slot_faulted(slot) => ArgValue::Unreadable,
                Display::Str { slot } => ArgValue::Bytes {
                    bytes: until_nul(slots[slot]),
                    truncated: event.truncated & (1 << slot) != 0,
                },
                Display::Buf { slot, .. } if slot_faulted(slot) => ArgValue::Unreadable,
                Display::Buf { slot, len_value } => {
                    let len = (event.values[len_value] as usize).min(SLOT_BYTES);
                    ArgValue::Bytes {
                        bytes: &slots[slot][..len.min(slots[slot].len())],
                        truncated: event.truncated & (1 << slot) != 0,
                    }
                }
            }
        };
        (value.key.as_str(), shown)
    })
}
