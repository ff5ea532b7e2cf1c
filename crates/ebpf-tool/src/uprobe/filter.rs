//! `--filter` expressions: `argN[:TYPE] OP VALUE`, evaluated in the kernel.

use ebpf_tool_common::op;

use crate::output::args::{ArgType, parse_index};

/// A parsed argument filter, ready for `Config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgFilter {
    pub index: usize,
    /// `op::*`.
    pub op: u32,
    /// The value as the kernel compares it (two's complement when signed).
    pub value: u64,
    pub signed: bool,
    /// The argument's width in bits, from its type (64 when untyped).
    pub bits: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad --filter '{expr}': {why} (expected e.g. 'arg0 > 4096' or 'arg1:i64 < 0')")]
pub struct FilterError {
    pub expr: String,
    pub why: String,
}

const OPERATORS: [(&str, u32); 6] = [
    ("==", op::EQ),
    ("!=", op::NE),
    ("<=", op::LE),
    (">=", op::GE),
    ("<", op::LT),
    (">", op::GT),
];

impl std::str::FromStr for ArgFilter {
    type Err = FilterError;

    fn from_str(expr: &str) -> Result<Self, Self::Err> {
        let error = |why: String| FilterError {
            expr: expr.to_owned(),
            why,
        };
        // Two-character operators are listed first so "<=" is not read as "<".
        let (lhs, op, rhs) = OPERATORS
            .iter()
            .find_map(|(text, op)| {
                expr.split_once(text)
                    .map(|(lhs, rhs)| (lhs.trim(), *op, rhs.trim()))
            })
            .ok_or_else(|| error("no comparison operator (==, !=, <, <=, >, >=)".into()))?;
        let (arg, ty) = match lhs.split_once(':') {
            Some((arg, ty)) => (
                arg,
                Some(ArgType::parse(ty).ok_or_else(|| error(format!("unknown type '{ty}'")))?),
            ),
            None => (lhs, None),
        };
        let index = parse_index(arg).map_err(error)?;
        if ty == Some(ArgType::Str) {
            return Err(error("strings cannot be compared in the kernel".into()));
        }
        let (value, negative) =
            parse_number(rhs).ok_or_else(|| error(format!("'{rhs}' is not a number")))?;
        let signed = negative || ty.is_some_and(ArgType::is_signed);
        Ok(ArgFilter {
            index,
            op,
            value,
            signed,
            bits: ty.map_or(64, ArgType::bits),
        })
    }
}

/// Decimal or 0x-hex, optionally negative; returns the two's-complement bits.
fn parse_number(text: &str) -> Option<(u64, bool)> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let magnitude = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => digits.parse::<u64>().ok()?,
    };
    if negative {
        let value = 0i64.checked_sub_unsigned(magnitude)?;
        Some((value as u64, true))
    } else {
        Some((magnitude, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(expr: &str) -> ArgFilter {
        expr.parse().unwrap()
    }

    #[test]
    fn parses_each_operator() {
        assert_eq!(
            filter("arg0 > 4096"),
            ArgFilter {
                index: 0,
                op: op::GT,
                value: 4096,
                signed: false,
                bits: 64
            }
        );
        assert_eq!(filter("arg1>=0x10").op, op::GE);
        assert_eq!(filter("arg1>=0x10").value, 16);
        assert_eq!(filter("2 <= 7").op, op::LE);
        assert_eq!(filter("arg3 < 1").op, op::LT);
        assert_eq!(filter("arg4 == 5").op, op::EQ);
        assert_eq!(filter("arg5 != 5").op, op::NE);
    }

    #[test]
    fn negative_values_and_signed_types_compare_signed() {
        let f = filter("arg0 < -1");
        assert!(f.signed);
        assert_eq!(f.value as i64, -1);
        assert!(filter("arg0:i32 < 0").signed);
        assert_eq!(filter("arg0:i32 < 0").bits, 32);
        assert_eq!(filter("arg0:u8 == 1").bits, 8);
        assert!(!filter("arg0:u64 < 5").signed);
    }

    #[test]
    fn refuses_nonsense() {
        for bad in [
            "arg0",
            "arg9 > 1",
            "arg0 > x",
            "arg0:str == 1",
            "arg0:f > 1",
            "> 3",
        ] {
            assert!(bad.parse::<ArgFilter>().is_err(), "{bad}");
        }
    }
}
