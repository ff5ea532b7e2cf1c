//! The argument model, userspace half. A run shows values (`-a`) and may filter and
//! histogram on them; each is a location plus a type (`request`), which a source of
//! locations turns into the `ValueSpec` the kernel interprets (`abi`: the C calling
//! convention today). The layout — which values a record carries, in which order, which
//! fill byte slots — is the same for every probe of a run; the locations may differ per
//! probe (per USDT site, per Go function), so `ProbeSpec`s are built per probe from it.

pub mod abi;
pub mod access;
pub mod registers;
pub mod request;

use ebpf_tool_common::{FilterSpec, MAX_SLOTS, MAX_VALUES, ProbeSpec, ValueSpec, bytes};

use abi::{Abi, spec_of};
use request::{FilterRequest, Location, ValueRequest, ValueType};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValueError {
    #[error(
        "at most {MAX_VALUES} values per call can be shown (with the lengths of buffers), got {got}"
    )]
    TooManyValues { got: usize },
    #[error("at most {MAX_SLOTS} arguments can be read as strings or buffers, got {got}")]
    TooManySlots { got: usize },
    #[error("'{name}' is not a register of this machine")]
    UnknownRegister { name: String },
    #[error("'{key}' needs more than {} memory reads", ebpf_tool_common::MAX_HOPS)]
    TooDeep { key: String },
    #[error("an offset in '{key}' does not fit in 32 bits")]
    OffsetTooLarge { key: String },
    #[error(
        "argument word {n} is passed on the stack, where this function's calling convention does not say (Go: words 0-8 are in registers)"
    )]
    NoSuchArgument { n: usize },
    #[error("{why}")]
    UsdtArgument { why: String },
    #[error(
        "'{text}' names a value from the source: it needs the debug info of the probed function"
    )]
    NoDebugInfoValue { text: String },
    #[error("arg{n}: this USDT probe has {count} argument(s) (arg0..)")]
    UsdtArgumentCount { n: usize, count: usize },
    #[error(
        "this function returns its results on the stack (Go assembly, ABI0): --ret cannot show them"
    )]
    NoReturnRegister,
    #[error(
        "'{key}': gostr reads a Go string from two argument words (pointer, length) and needs an argument number, as in -a 0:gostr"
    )]
    GoStringNeedsArgument { key: String },
    #[error("--ret shows a number (u64, i64, u32, i32, u16, i16, u8, i8, hex) or a C string (str)")]
    ReturnType,
}

/// How a value is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    Unsigned,
    Signed,
    Hex,
    /// An IEEE float of 4 or 8 bytes.
    Float {
        bytes: u8,
    },
    /// The string in the value's byte slot.
    Str {
        slot: usize,
    },
    /// The bytes in the value's slot; their number is value `len_value`.
    Buf {
        slot: usize,
        len_value: usize,
    },
}

/// One value a record carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownValue {
    /// The key it is printed under (`arg0`, `+8(arg0)`).
    pub key: String,
    pub display: Display,
    /// Carried only for another value (a buffer's length nobody asked to see).
    pub hidden: bool,
    /// An enum's enumerators (from debug info): the value is shown by name.
    pub names: Option<EnumNames>,
    request: ValueRequest,
}

/// Enumerator values and names, kept for the whole run.
pub type EnumNames = &'static [(i64, String)];

/// The values of a run's records, in the kernel's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueLayout {
    pub values: Vec<ShownValue>,
    pub slots: usize,
    /// The return value, when shown (`--ret [TYPE]`).
    pub ret: Option<ShownReturn>,
}

/// How the return value is read and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShownReturn {
    pub ty: ValueType,
    pub display: Display,
}

impl ValueLayout {
    /// The layout that shows `requests` (`arg0` when there are none, as the spec's lines
    /// have it). Asking twice for the same value shows it once.
    /// A layout that shows nothing (a USDT probe without arguments).
    pub fn without_values() -> ValueLayout {
        ValueLayout {
            values: Vec::new(),
            slots: 0,
            ret: None,
        }
    }

    pub fn new(requests: &[ValueRequest]) -> Result<ValueLayout, ValueError> {
        let default = [ValueRequest {
            location: Location::Arg(0),
            ty: ValueType::U64,
            typed: false,
        }];
        let requests = if requests.is_empty() {
            &default[..]
        } else {
            requests
        };
        let mut layout = ValueLayout {
            values: Vec::new(),
            slots: 0,
            ret: None,
        };
        for request in requests {
            if layout
                .values
                .iter()
                .any(|v| !v.hidden && v.request == *request)
            {
                continue;
            }
            let display = match request.ty {
                ValueType::Int { signed: true, .. } => Display::Signed,
                ValueType::Int { .. } => Display::Unsigned,
                ValueType::Hex => Display::Hex,
                ValueType::Float { bytes } => Display::Float { bytes },
                ValueType::Str => Display::Str {
                    slot: layout.take_slot(),
                },
                ValueType::Buf { .. } | ValueType::GoStr => Display::Buf {
                    slot: layout.take_slot(),
                    len_value: 0, // below, once this value has its index
                },
            };
            layout.values.push(ShownValue {
                key: request.key(),
                display,
                hidden: false,
                names: None,
                request: request.clone(),
            });
            let len_at = match (request.ty, &request.location) {
                (ValueType::Buf { len_arg }, _) => Some(Location::Arg(len_arg)),
                (ValueType::GoStr, Location::Arg(n)) => Some(Location::Arg(n + 1)),
                // A pointer-and-length pair from debug info (Rust `&str`): its length field.
                (ValueType::GoStr, Location::Named(text)) => {
                    Some(Location::Named(format!("{text}.length")))
                }
                (ValueType::GoStr, _) => {
                    return Err(ValueError::GoStringNeedsArgument { key: request.key() });
                }
                _ => None,
            };
            if let Some(len_at) = len_at {
                let buf = layout.values.len() - 1;
                let len = layout.length_value(len_at);
                if let Display::Buf { len_value, .. } = &mut layout.values[buf].display {
                    *len_value = len;
                }
            }
        }
        if layout.slots > MAX_SLOTS {
            return Err(ValueError::TooManySlots { got: layout.slots });
        }
        if layout.values.len() > MAX_VALUES {
            return Err(ValueError::TooManyValues {
                got: layout.values.len(),
            });
        }
        Ok(layout)
    }

    /// Shows the return value as `ty` (a string takes a byte slot).
    pub fn with_return(mut self, ty: ValueType) -> Result<ValueLayout, ValueError> {
        let display = match ty {
            ValueType::Int { signed: true, .. } => Display::Signed,
            ValueType::Int { .. } => Display::Unsigned,
            ValueType::Hex => Display::Hex,
            ValueType::Float { bytes } => Display::Float { bytes },
            ValueType::Str => Display::Str {
                slot: self.take_slot(),
            },
            ValueType::Buf { .. } | ValueType::GoStr => return Err(ValueError::ReturnType),
        };
        if self.slots > MAX_SLOTS {
            return Err(ValueError::TooManySlots { got: self.slots });
        }
        self.ret = Some(ShownReturn { ty, display });
        Ok(self)
    }

    fn take_slot(&mut self) -> usize {
        self.slots += 1;
        self.slots - 1
    }

    /// The index of a value holding argument `n` as a number: one already shown, or a
    /// hidden one added for the purpose.
    fn length_value(&mut self, location: Location) -> usize {
        let wanted = ValueRequest {
            location,
            ty: ValueType::U64,
            typed: false,
        };
        let same =
            |v: &ShownValue| v.request.location == wanted.location && v.request.ty == wanted.ty;
        if let Some(i) = self.values.iter().position(same) {
            return i;
        }
        self.values.push(ShownValue {
            key: wanted.key(),
            display: Display::Unsigned,
            hidden: true,
            names: None,
            request: wanted,
        });
        self.values.len() - 1
    }

    /// The values printed, in order, with their index in the record.
    /// Shows the value printed under `key` by its enumerators' names.
    pub fn name_values(&mut self, key: &str, names: EnumNames) {
        for value in self.values.iter_mut().filter(|v| v.key == key) {
            value.names = Some(names);
        }
    }

    pub fn shown(&self) -> impl Iterator<Item = (usize, &ShownValue)> {
        self.values.iter().enumerate().filter(|(_, v)| !v.hidden)
    }
}

/// What a run computes in the kernel besides the layout's values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras {
    /// `--by VALUE`: what calls are grouped by.
    pub group: Option<ValueRequest>,
    pub filter: Option<FilterRequest>,
    /// `--hist`: the value histogrammed.
    pub hist: Option<ValueRequest>,
}

/// The kernel's `ProbeSpec` for one probe: the layout's values, the return value, the
/// filter and the histogram's value, located by `abi`.
pub fn probe_spec(
    abi: &dyn Abi,
    layout: &ValueLayout,
    extras: &Extras,
) -> Result<ProbeSpec, ValueError> {
    let mut spec = ProbeSpec::EMPTY;
    for (i, value) in layout.values.iter().enumerate() {
        let mut located = spec_of(abi, &value.request)?;
        match value.display {
            Display::Str { slot } => {
                located.bytes = bytes::CSTR;
                located.slot = slot as u8;
            }
            Display::Buf { slot, len_value } => {
                located.bytes = bytes::BUF;
                located.slot = slot as u8;
                located.len_from = len_value as u8;
            }
            _ => {}
        }
        spec.values[i] = located;
    }
    spec.count = layout.values.len() as u32;
    spec.slots = layout.slots as u32;
    // The return value as `--ret TYPE` reads it (a signed word by default).
    spec.ret = match (abi.return_register(), layout.ret) {
        (Some(reg), None) => ValueSpec::register(reg, 8, true),
        (Some(reg), Some(ret)) => {
            let mut located = ValueSpec::register(reg, ret.ty.bytes(), ret.ty.signed());
            if let Display::Str { slot } = ret.display {
                located.bytes = bytes::CSTR;
                located.slot = slot as u8;
            }
            located
        }
        (None, Some(_)) => return Err(ValueError::NoReturnRegister),
        (None, None) => ValueSpec::NONE,
    };
    if let Some(filter) = &extras.filter {
        let mut value = spec_of(abi, &filter.value)?;
        if filter.negative {
            value.signed = 1;
        }
        spec.filter = FilterSpec {
            rhs: filter.rhs,
            value,
            op: filter.op,
            _pad: 0,
        };
    }
    if let Some(hist) = &extras.hist {
        spec.hist = spec_of(abi, hist)?;
    }
    if let Some(group) = &extras.group {
        spec.group = spec_of(abi, group)?;
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(args: &[&str]) -> ValueLayout {
        let requests: Vec<ValueRequest> = args.iter().map(|a| a.parse().unwrap()).collect();
        ValueLayout::new(&requests).unwrap()
    }

    #[test]
    fn no_request_shows_arg0() {
        let l = layout(&[]);
        assert_eq!(l.values.len(), 1);
        assert_eq!(l.values[0].key, "arg0");
        assert_eq!(l.slots, 0);
    }

    #[test]
    fn strings_take_slots_and_buffers_bring_their_length() {
        let l = layout(&["0:str", "1:buf:2", "1:hex"]);
        assert_eq!(l.slots, 2);
        let keys: Vec<&str> = l.values.iter().map(|v| v.key.as_str()).collect();
        assert_eq!(keys, ["arg0", "arg1", "arg2", "arg1"]);
        assert!(l.values[2].hidden);
        assert_eq!(
            l.values[1].display,
            Display::Buf {
                slot: 1,
                len_value: 2
            }
        );
        assert_eq!(l.shown().count(), 3);
        // The length already shown is reused.
        let l = layout(&["2", "1:buf:2"]);
        assert_eq!(l.values.len(), 2);
        assert_eq!(
            l.values[1].display,
            Display::Buf {
                slot: 0,
                len_value: 0
            }
        );
    }

    #[test]
    fn duplicates_are_shown_once_and_limits_hold() {
        assert_eq!(layout(&["0", "0", "arg0"]).values.len(), 1);
        let strings: Vec<ValueRequest> = ["0:str", "1:str", "2:str"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(
            ValueLayout::new(&strings),
            Err(ValueError::TooManySlots { got: 3 })
        );
        let many: Vec<ValueRequest> = (0..9).map(|n| n.to_string().parse().unwrap()).collect();
        assert_eq!(
            ValueLayout::new(&many),
            Err(ValueError::TooManyValues { got: 9 })
        );
    }

    #[test]
    fn the_probe_spec_places_slots_and_the_filter() {
        let l = layout(&["0:str", "1:buf:2"]);
        let extras = Extras {
            group: None,
            filter: Some("arg2:i32 < 0".parse().unwrap()),
            hist: Some("2".parse().unwrap()),
        };
        let spec = probe_spec(&abi::SysV64, &l, &extras).unwrap();
        assert_eq!((spec.count, spec.slots), (3, 2));
        assert_eq!(
            (spec.values[0].bytes, spec.values[0].slot),
            (bytes::CSTR, 0)
        );
        assert_eq!(
            (
                spec.values[1].bytes,
                spec.values[1].slot,
                spec.values[1].len_from
            ),
            (bytes::BUF, 1, 2)
        );
        assert_eq!((spec.filter.value.size, spec.filter.value.signed), (4, 1));
        assert_eq!(spec.hist.base, ebpf_tool_common::reg::x86_64::RDX);
        assert_eq!(spec.ret.base, ebpf_tool_common::reg::x86_64::RAX);
    }
}
