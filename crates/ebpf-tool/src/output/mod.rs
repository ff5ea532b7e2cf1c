//! Renderers: plain data in, text or JSON out. Nothing here touches the kernel.

pub mod args;
pub mod escape;
pub mod hist;
pub mod json;
pub mod printer;
pub mod sink;
pub mod stacks;
pub mod table;
pub mod text;

use args::{ArgSpec, ArgType};
use ebpf_tool_common::{EVENT_STR_TRUNCATED, EVENT_STR_UNREADABLE, MAX_ARGS, MAX_STR_ARGS};

/// What each event line shows besides pid, tid, comm and function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFormat {
    /// The arguments, in the order given.
    pub args: Vec<ArgSpec>,
    pub ret: bool,
    pub latency: bool,
}

impl EventFormat {
    /// The kernel's string slot of each argument read as a string (`--args N:str`), in the
    /// order the kernel fills them: the order they appear in `args`.
    pub fn string_args(&self) -> Vec<usize> {
        let mut indexes: Vec<usize> = Vec::new();
        for spec in &self.args {
            if spec.ty == ArgType::Str && !indexes.contains(&spec.index) {
                indexes.push(spec.index);
            }
        }
        indexes
    }

    /// Which string slot holds argument `index`, if it is read as a string.
    fn string_slot(&self, index: usize) -> Option<usize> {
        self.string_args().iter().position(|&i| i == index)
    }
}

/// An argument's value as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgValue<'a> {
    Integer(args::Integer),
    Hex(u64),
    Str {
        bytes: &'a [u8],
        truncated: bool,
    },
    /// A string that could not be read (a bad pointer, a page not faulted in): never shown
    /// as an empty string.
    Unreadable,
}

/// The arguments of one record as `(index, value)`, following `format`.
pub fn arg_values<'a>(
    format: &EventFormat,
    record: &crate::events::Record<'a>,
) -> impl Iterator<Item = (usize, ArgValue<'a>)> {
    let event = record.event;
    format.args.iter().map(move |spec| {
        let raw = event.args[spec.index.min(MAX_ARGS - 1)];
        let value = match spec.ty {
            ArgType::Hex => ArgValue::Hex(raw),
            ArgType::Str => match format.string_slot(spec.index) {
                Some(slot)
                    if slot < MAX_STR_ARGS && event.flags & (EVENT_STR_UNREADABLE << slot) != 0 =>
                {
                    ArgValue::Unreadable
                }
                Some(slot) if slot < MAX_STR_ARGS => ArgValue::Str {
                    bytes: record.strings[slot],
                    truncated: event.flags & (EVENT_STR_TRUNCATED << slot) != 0,
                },
                _ => ArgValue::Hex(raw),
            },
            ty => ArgValue::Integer(ty.integer(raw).expect("integer types")),
        };
        (spec.index, value)
    })
}
