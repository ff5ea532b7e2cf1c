//! `--args` specs (`0`, `1:hex`, `0:str`, `2:i32`): which registers to show and how.

use std::{fmt, str::FromStr};

use ebpf_tool_common::MAX_ARGS;

/// How an argument register is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgType {
    U64,
    I64,
    U32,
    I32,
    U16,
    I16,
    U8,
    I8,
    Hex,
    /// A pointer to a NUL-terminated string, read from the process's memory.
    Str,
}

impl ArgType {
    const NAMES: [(&'static str, ArgType); 10] = [
        ("u64", ArgType::U64),
        ("i64", ArgType::I64),
        ("u32", ArgType::U32),
        ("i32", ArgType::I32),
        ("u16", ArgType::U16),
        ("i16", ArgType::I16),
        ("u8", ArgType::U8),
        ("i8", ArgType::I8),
        ("hex", ArgType::Hex),
        ("str", ArgType::Str),
    ];

    pub fn parse(name: &str) -> Option<ArgType> {
        Self::NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, t)| *t)
    }

    /// Width in bits of an integer of this type (64 for hex, strings: pointers).
    pub fn bits(self) -> u32 {
        match self {
            ArgType::U32 | ArgType::I32 => 32,
            ArgType::U16 | ArgType::I16 => 16,
            ArgType::U8 | ArgType::I8 => 8,
            _ => 64,
        }
    }

    pub fn is_signed(self) -> bool {
        matches!(
            self,
            ArgType::I64 | ArgType::I32 | ArgType::I16 | ArgType::I8
        )
    }

    /// The register narrowed (and sign-extended) to this type; `None` for `Str`/`Hex`.
    pub fn integer(self, raw: u64) -> Option<Integer> {
        Some(match self {
            ArgType::U64 => Integer::Unsigned(raw),
            ArgType::U32 => Integer::Unsigned(raw as u32 as u64),
            ArgType::U16 => Integer::Unsigned(raw as u16 as u64),
            ArgType::U8 => Integer::Unsigned(raw as u8 as u64),
            ArgType::I64 => Integer::Signed(raw as i64),
            ArgType::I32 => Integer::Signed(raw as i32 as i64),
            ArgType::I16 => Integer::Signed(raw as i16 as i64),
            ArgType::I8 => Integer::Signed(raw as i8 as i64),
            ArgType::Hex | ArgType::Str => return None,
        })
    }
}

/// A register value after narrowing to its declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integer {
    Unsigned(u64),
    Signed(i64),
}

impl fmt::Display for Integer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Integer::Unsigned(v) => write!(f, "{v}"),
            Integer::Signed(v) => write!(f, "{v}"),
        }
    }
}

/// One `--args` entry: which register and how to show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgSpec {
    pub index: usize,
    pub ty: ArgType,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad argument spec '{spec}': {why}")]
pub struct ArgSpecError {
    pub spec: String,
    pub why: String,
}

/// Parses `N` or `argN`: an argument register index below `MAX_ARGS`.
pub fn parse_index(text: &str) -> Result<usize, String> {
    let digits = text.trim().strip_prefix("arg").unwrap_or(text.trim());
    match digits.parse::<usize>() {
        Ok(n) if n < MAX_ARGS => Ok(n),
        Ok(n) => Err(format!(
            "argument {n} is out of range: registers carry arguments 0 to {}",
            MAX_ARGS - 1
        )),
        Err(_) => Err(format!(
            "'{text}' is not an argument number (0 to {})",
            MAX_ARGS - 1
        )),
    }
}

impl FromStr for ArgSpec {
    type Err = ArgSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let error = |why: String| ArgSpecError {
            spec: spec.to_owned(),
            why,
        };
        let (index, ty) = match spec.split_once(':') {
            Some((index, ty)) => (index, Some(ty)),
            None => (spec, None),
        };
        let index = parse_index(index).map_err(error)?;
        let ty = match ty {
            None => ArgType::U64,
            Some(name) => ArgType::parse(name).ok_or_else(|| {
                let names: Vec<&str> = ArgType::NAMES.iter().map(|(n, _)| *n).collect();
                error(format!(
                    "unknown type '{name}' (use one of {})",
                    names.join(", ")
                ))
            })?,
        };
        Ok(ArgSpec { index, ty })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_index_and_type() {
        assert_eq!(
            "0".parse(),
            Ok(ArgSpec {
                index: 0,
                ty: ArgType::U64
            })
        );
        assert_eq!(
            "1:hex".parse(),
            Ok(ArgSpec {
                index: 1,
                ty: ArgType::Hex
            })
        );
        assert_eq!(
            "arg2:i32".parse(),
            Ok(ArgSpec {
                index: 2,
                ty: ArgType::I32
            })
        );
        assert_eq!(
            "5:STR".parse(),
            Ok(ArgSpec {
                index: 5,
                ty: ArgType::Str
            })
        );
    }

    #[test]
    fn refuses_bad_specs_with_the_reason() {
        let err = "6".parse::<ArgSpec>().unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
        let err = "0:float".parse::<ArgSpec>().unwrap_err();
        assert!(err.to_string().contains("unknown type 'float'"), "{err}");
        assert!("x".parse::<ArgSpec>().is_err());
        assert!("".parse::<ArgSpec>().is_err());
    }

    #[test]
    fn narrows_and_sign_extends() {
        assert_eq!(ArgType::I32.integer(0xffff_ffff), Some(Integer::Signed(-1)));
        assert_eq!(
            ArgType::U32.integer(0x1_0000_0005),
            Some(Integer::Unsigned(5))
        );
        assert_eq!(ArgType::I8.integer(0x80), Some(Integer::Signed(-128)));
        assert_eq!(ArgType::I64.integer(u64::MAX).unwrap().to_string(), "-1");
        assert_eq!(ArgType::Str.integer(1), None);
    }
}
