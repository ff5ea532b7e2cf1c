//! What a user asks to see, as written on the command line, before any ABI or debug
//! information says where it lives: `-a` values and the `--filter` comparison. Parsed by
//! clap's value parsers (`FromStr`), so a bad value is a usage error (exit 2).
//!
//! Grammar (perf probe's fetch-argument syntax, plus argument numbers):
//!
//! ```text
//! VALUE    := LOCATION [":" TYPE]
//! LOCATION := N | "argN" | "%REG" | OFFSET "(" LOCATION ")"
//! OFFSET   := ["+" | "-"] (decimal | 0xhex)     memory at LOCATION + OFFSET
//! TYPE     := u64 | i64 | u32 | i32 | u16 | i16 | u8 | i8 | hex | str | buf:N | gostr
//! FILTER   := LOCATION [":" TYPE] OP NUMBER     OP: == != < <= > >=
//! ```
//!
//! `-a 2` is the third integer argument; `-a '+8(+16(arg0)):u32'` reads the pointer at
//! arg0 + 16 and shows the 32-bit value 8 bytes past where it points; `-a 1:buf:2` shows
//! arg2 bytes at arg1.

use std::{fmt, str::FromStr};

use ebpf_tool_common::{MAX_HOPS, op};

/// The most arguments a number may name: the C ABI passes the first 6 (x86-64) or 8
/// (AArch64) in registers and the rest on the stack.
pub const MAX_ARG_INDEX: usize = 31;

/// Where a value is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The Nth integer argument, wherever the function's ABI puts it.
    Arg(usize),
    /// A register, by name as written (`%rdi`).
    Register(String),
    /// Memory at the inner location's value plus `offset`.
    Deref { offset: i64, inner: Box<Location> },
    /// A parameter by name, with fields and elements (`r->hdr.kind`, `argv[1]`), found
    /// in the debug info of each probed function.
    Named(String),
}

impl Location {
    /// Memory reads this location takes.
    pub fn reads(&self) -> usize {
        match self {
            Location::Deref { inner, .. } => 1 + inner.reads(),
            _ => 0,
        }
    }

    /// The argument this location starts from, if it does.
    pub fn root_arg(&self) -> Option<usize> {
        match self {
            Location::Arg(n) => Some(*n),
            Location::Deref { inner, .. } => inner.root_arg(),
            Location::Register(_) | Location::Named(_) => None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Arg(n) => write!(f, "arg{n}"),
            Location::Register(name) => write!(f, "%{}", name.trim_start_matches('%')),
            Location::Deref { offset, inner } if *offset < 0 => write!(f, "-{}({inner})", -offset),
            Location::Deref { offset, inner } => write!(f, "+{offset}({inner})"),
            Location::Named(text) => f.write_str(text),
        }
    }
}

/// How a value is read and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Int {
        bytes: u8,
        signed: bool,
    },
    Hex,
    /// An IEEE float of `bytes` (4 or 8), read from memory.
    Float {
        bytes: u8,
    },
    /// A NUL-terminated string the value points to.
    Str,
    /// As many bytes at the value as argument `len_arg` says.
    Buf {
        len_arg: usize,
    },
    /// A Go string: the pointer in this argument word, the length in the next.
    GoStr,
}

impl ValueType {
    pub const U64: ValueType = ValueType::Int {
        bytes: 8,
        signed: false,
    };

    const NAMES: [(&'static str, ValueType); 13] = [
        ("u64", ValueType::U64),
        ("f32", ValueType::Float { bytes: 4 }),
        ("f64", ValueType::Float { bytes: 8 }),
        (
            "i64",
            ValueType::Int {
                bytes: 8,
                signed: true,
            },
        ),
        (
            "u32",
            ValueType::Int {
                bytes: 4,
                signed: false,
            },
        ),
        (
            "i32",
            ValueType::Int {
                bytes: 4,
                signed: true,
            },
        ),
        (
            "u16",
            ValueType::Int {
                bytes: 2,
                signed: false,
            },
        ),
        (
            "i16",
            ValueType::Int {
                bytes: 2,
                signed: true,
            },
        ),
        (
            "u8",
            ValueType::Int {
                bytes: 1,
                signed: false,
            },
        ),
        (
            "i8",
            ValueType::Int {
                bytes: 1,
                signed: true,
            },
        ),
        ("hex", ValueType::Hex),
        ("str", ValueType::Str),
        ("gostr", ValueType::GoStr),
    ];

    pub fn parse(text: &str) -> Result<ValueType, String> {
        if let Some(len) = text.strip_prefix("buf:") {
            let len_arg = parse_arg_number(len)
                .ok_or_else(|| format!("'{len}' in buf:{len} is not an argument number"))?;
            return Ok(ValueType::Buf { len_arg });
        }
        Self::NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(text))
            .map(|(_, t)| *t)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::NAMES.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown type '{text}' (use one of {}, buf:N)",
                    names.join(", ")
                )
            })
    }

    /// Bytes read for the value itself (a pointer for strings and buffers).
    pub fn bytes(self) -> u8 {
        match self {
            ValueType::Int { bytes, .. } | ValueType::Float { bytes } => bytes,
            _ => 8,
        }
    }

    pub fn signed(self) -> bool {
        matches!(self, ValueType::Int { signed: true, .. })
    }
}

/// One `-a` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueRequest {
    pub location: Location,
    pub ty: ValueType,
    /// The type was written (`:u64`), not taken by default: a register name's own width
    /// (`%edi`: 4 bytes) gives way only to a written type.
    pub typed: bool,
}

impl ValueRequest {
    /// The key the value is printed under: `arg2`, or the location as written.
    pub fn key(&self) -> String {
        self.location.to_string()
    }
}

/// Why a `-a` or `--filter` value does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RequestError(String);

impl FromStr for ValueRequest {
    type Err = RequestError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        // The type follows the last ':' outside parentheses (buf:N has one of its own).
        let (location, ty) = split_type(text);
        let location = parse_location(location, 0).map_err(RequestError)?;
        let typed = ty.is_some();
        let ty = match ty {
            Some(ty) => ValueType::parse(ty).map_err(RequestError)?,
            None => ValueType::U64,
        };
        Ok(ValueRequest {
            location,
            ty,
            typed,
        })
    }
}

/// `LOCATION[:TYPE]` -> (LOCATION, TYPE).
fn split_type(text: &str) -> (&str, Option<&str>) {
    let close = text.rfind(')').map_or(0, |i| i + 1);
    match text[close..].find(':') {
        Some(i) => (&text[..close + i], Some(&text[close + i + 1..])),
        None => (text, None),
    }
}

fn parse_arg_number(text: &str) -> Option<usize> {
    let digits = text.strip_prefix("arg").unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn parse_location(text: &str, depth: usize) -> Result<Location, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("a value is missing: expected N, argN, %REG or OFFSET(LOCATION)".into());
    }
    if let Some(n) = parse_arg_number(text) {
        if n > MAX_ARG_INDEX {
            return Err(format!(
                "argument {n} is out of range (0 to {MAX_ARG_INDEX})"
            ));
        }
        return Ok(Location::Arg(n));
    }
    if let Some(name) = text.strip_prefix('%') {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!("'{text}' is not a register name"));
        }
        return Ok(Location::Register(name.to_owned()));
    }
    if let Some(open) = text.find('(')
        && text.ends_with(')')
    {
        if depth >= MAX_HOPS {
            return Err(format!("at most {MAX_HOPS} memory reads per value"));
        }
        let offset = parse_signed(&text[..open])
            .ok_or_else(|| format!("'{}' is not an offset (e.g. +8, -0x10)", &text[..open]))?;
        let inner = parse_location(&text[open + 1..text.len() - 1], depth + 1)?;
        return Ok(Location::Deref {
            offset,
            inner: Box::new(inner),
        });
    }
    if super::access::parse_access(text).is_some() {
        return Ok(Location::Named(text.to_owned()));
    }
    Err(format!(
        "'{text}' is not an argument number (0 to {MAX_ARG_INDEX}), a register (%rdi), OFFSET(LOCATION) or a parameter name (r, r->len, argv[1])"
    ))
}

/// `+8`, `-0x10`, `16`, `` (0).
fn parse_signed(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() {
        return Some(0);
    }
    let (negative, digits) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let magnitude = parse_unsigned(digits)?;
    let value = i64::try_from(magnitude).ok()?;
    Some(if negative { -value } else { value })
}

fn parse_unsigned(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// `--filter`: a value compared with a number, in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRequest {
    pub value: ValueRequest,
    /// `op::*`.
    pub op: u32,
    /// The number as the kernel compares it (two's complement when negative).
    pub rhs: u64,
    /// The number was written negative: the comparison is signed even when untyped.
    pub negative: bool,
}

const OPERATORS: [(&str, u32); 6] = [
    ("==", op::EQ),
    ("!=", op::NE),
    ("<=", op::LE),
    (">=", op::GE),
    ("<", op::LT),
    (">", op::GT),
];

impl FromStr for FilterRequest {
    type Err = RequestError;

    fn from_str(expr: &str) -> Result<Self, Self::Err> {
        let error = |why: String| {
            RequestError(format!(
                "bad --filter '{expr}': {why} (expected e.g. 'arg0 > 4096' or 'arg1:i32 < 0')"
            ))
        };
        // Two-character operators are listed first so "<=" is not read as "<"; the
        // arrows of `r->len` are not operators (masked before searching).
        let masked = expr.replace("->", "\u{1}\u{1}");
        let (lhs, op, rhs) = OPERATORS
            .iter()
            .find_map(|(text, op)| {
                masked
                    .find(text)
                    .map(|at| (expr[..at].trim(), *op, expr[at + text.len()..].trim()))
            })
            .ok_or_else(|| error("no comparison operator (==, !=, <, <=, >, >=)".into()))?;
        let value: ValueRequest = lhs.parse().map_err(|e: RequestError| error(e.0))?;
        if !matches!(value.ty, ValueType::Int { .. } | ValueType::Hex) {
            return Err(error(
                "strings and buffers cannot be compared in the kernel".into(),
            ));
        }
        let negative = rhs.starts_with('-');
        let magnitude = parse_unsigned(rhs.trim_start_matches('-'))
            .ok_or_else(|| error(format!("'{rhs}' is not a number")))?;
        let rhs = if negative {
            0i64.checked_sub_unsigned(magnitude)
                .ok_or_else(|| error(format!("'{rhs}' is out of range")))? as u64
        } else {
            magnitude
        };
        Ok(FilterRequest {
            value,
            op,
            rhs,
            negative,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> ValueRequest {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn argument_numbers_and_types() {
        assert_eq!(
            value("0"),
            ValueRequest {
                location: Location::Arg(0),
                ty: ValueType::U64,
                typed: false
            }
        );
        assert_eq!(
            value("arg2:i32").ty,
            ValueType::Int {
                bytes: 4,
                signed: true
            }
        );
        assert_eq!(value("1:HEX").ty, ValueType::Hex);
        assert_eq!(value("5:str").ty, ValueType::Str);
        assert_eq!(value("7").location, Location::Arg(7));
        assert_eq!(value("1:buf:2").ty, ValueType::Buf { len_arg: 2 });
        assert_eq!(value("1:buf:arg2").ty, ValueType::Buf { len_arg: 2 });
        assert_eq!(value("arg3").key(), "arg3");
    }

    #[test]
    fn registers_and_memory() {
        assert_eq!(value("%rdi").location, Location::Register("rdi".into()));
        let nested = value("+8(+16(arg0)):u32");
        assert_eq!(nested.location.reads(), 2);
        assert_eq!(nested.location.root_arg(), Some(0));
        assert_eq!(nested.key(), "+8(+16(arg0))");
        assert_eq!(
            nested.ty,
            ValueType::Int {
                bytes: 4,
                signed: false
            }
        );
        assert_eq!(
            value("-0x10(%rbp)").location,
            Location::Deref {
                offset: -16,
                inner: Box::new(Location::Register("rbp".into()))
            }
        );
        assert_eq!(value("(arg1)").location.reads(), 1);
    }

    #[test]
    fn bad_values_say_why() {
        for (bad, why) in [
            ("32", "out of range"),
            ("0:float", "unknown type 'float'"),
            ("x-", "not an argument number"),
            ("", "missing"),
            ("+8(+8(+8(+8(+8(arg0)))))", "at most 4 memory reads"),
            ("zz(arg0)", "not an offset"),
            ("%", "not a register"),
            ("1:buf:x", "not an argument number"),
        ] {
            let err = bad.parse::<ValueRequest>().unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn names_from_the_source_are_values() {
        for text in ["x", "r->len", "r->hdr.kind", "argv[1]"] {
            let request: ValueRequest = text.parse().unwrap();
            assert_eq!(request.location, Location::Named(text.into()));
            assert_eq!(request.location.to_string(), text);
        }
        let f: FilterRequest = "r->len > 4096".parse().unwrap();
        assert_eq!((f.op, f.rhs), (op::GT, 4096));
        assert_eq!(f.value.location, Location::Named("r->len".into()));
    }

    #[test]
    fn filters() {
        let f: FilterRequest = "arg0 > 4096".parse().unwrap();
        assert_eq!((f.op, f.rhs, f.negative), (op::GT, 4096, false));
        let f: FilterRequest = "arg1:i32 < -1".parse().unwrap();
        assert_eq!((f.op, f.rhs as i64, f.negative), (op::LT, -1, true));
        assert_eq!("arg1>=0x10".parse::<FilterRequest>().unwrap().op, op::GE);
        assert_eq!(
            "+8(arg0):u8 == 1"
                .parse::<FilterRequest>()
                .unwrap()
                .value
                .location
                .reads(),
            1
        );
        for bad in [
            "arg0",
            "arg40 > 1",
            "arg0 > x",
            "arg0:str == 1",
            "arg0:f > 1",
            "> 3",
        ] {
            assert!(bad.parse::<FilterRequest>().is_err(), "{bad}");
        }
    }
}
