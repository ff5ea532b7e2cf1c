//! USDT argument specs as `sys/sdt.h` writes them into each site's note: `SIZE@LOCATION`,
//! SIZE negative for signed (`-4@%edi`, `8@%rax`, `8@-80(%rbx)`, `-4@112(%rsp)`,
//! `8@(%rax,%rdx,8)`, `4@$5`), turned into the argument model's `ValueSpec`: a register,
//! a constant, or one read at `base + index * scale + displacement`.

use ebpf_tool_common::{ValueSpec, reg};

use crate::values::registers;

/// One argument of one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsdtArg {
    /// Where it is and how wide; `size` and `signed` are the note's.
    pub spec: ValueSpec,
    /// As the note wrote it, for `--list`.
    pub text: String,
}

/// Why a spec could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("USDT argument '{text}': {why}")]
pub struct ArgError {
    pub text: String,
    pub why: &'static str,
}

/// All the arguments of a site: specs separated by spaces.
pub fn parse_args(text: &str) -> Result<Vec<UsdtArg>, ArgError> {
    text.split_ascii_whitespace().map(parse_arg).collect()
}

/// One `SIZE@LOCATION` (x86-64 AT&T syntax).
pub fn parse_arg(text: &str) -> Result<UsdtArg, ArgError> {
    let bad = |why| ArgError {
        text: text.to_owned(),
        why,
    };
    let (size, location) = match text.split_once('@') {
        Some((size, location)) => {
            let size: i32 = size.parse().map_err(|_| bad("its size is not a number"))?;
            (size, location)
        }
        // Old notes have no size: a 64-bit value.
        None => (8, text),
    };
    let width = size.unsigned_abs();
    if ![1, 2, 4, 8].contains(&width) {
        return Err(bad("its size is not 1, 2, 4 or 8 bytes"));
    }
    let mut spec =
        location_spec(location).ok_or_else(|| bad("its location is not one this reads"))?;
    spec.size = width as u8;
    spec.signed = u8::from(size < 0);
    Ok(UsdtArg {
        spec,
        text: text.to_owned(),
    })
}

fn location_spec(location: &str) -> Option<ValueSpec> {
    if let Some(constant) = location.strip_prefix('$') {
        return Some(ValueSpec {
            displacement: parse_int(constant)?,
            ..ValueSpec::NONE
        });
    }
    if location.starts_with('%') {
        let register = registers::x86_64(location)?;
        return Some(ValueSpec::register(register.number, register.size, false));
    }
    // DISP(%base), DISP(%base,%index,SCALE), (%base), DISP(,%index,SCALE)
    let open = location.find('(')?;
    let inner = location[open + 1..].strip_suffix(')')?;
    let displacement = match &location[..open] {
        "" => 0,
        disp => parse_int(disp)?,
    };
    let mut parts = inner.split(',').map(str::trim);
    let base = match parts.next()? {
        "" => reg::NONE,
        name => registers::x86_64(name)?.number,
    };
    // The instruction pointer's value here would be the probe's, not the next
    // instruction's that a %rip-relative operand means: not read rather than wrong.
    if base == reg::x86_64::RIP {
        return None;
    }
    let index = match parts.next() {
        None | Some("") => reg::NONE,
        Some(name) => registers::x86_64(name)?.number,
    };
    let scale: u8 = match parts.next() {
        None => 1,
        Some(scale) => scale.parse().ok().filter(|s| [1, 2, 4, 8].contains(s))?,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(ValueSpec {
        displacement,
        base,
        index,
        scale: if index == reg::NONE { 0 } else { scale },
        reads: 1,
        ..ValueSpec::NONE
    })
}

fn parse_int(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let value = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => i64::from_str_radix(hex, 16).ok()?,
        None => digits.parse().ok()?,
    };
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use ebpf_tool_common::reg::x86_64::*;

    use super::*;

    fn spec(text: &str) -> ValueSpec {
        parse_arg(text).unwrap().spec
    }

    #[test]
    fn registers_with_their_width_and_sign() {
        let s = spec("-4@%edi");
        assert_eq!((s.base, s.reads, s.size, s.signed), (RDI, 0, 4, 1));
        let s = spec("8@%rax");
        assert_eq!((s.base, s.reads, s.size, s.signed), (RAX, 0, 8, 0));
        let s = spec("2@%ax");
        assert_eq!((s.base, s.size), (RAX, 2));
        let s = spec("1@%al");
        assert_eq!((s.base, s.size), (RAX, 1));
        let s = spec("-4@%r8d");
        assert_eq!((s.base, s.size, s.signed), (R8, 4, 1));
        let s = spec("8@%r15");
        assert_eq!(s.base, R15);
    }

    #[test]
    fn memory_operands() {
        let s = spec("8@-80(%rbx)");
        assert_eq!((s.base, s.displacement, s.reads, s.size), (RBX, -80, 1, 8));
        let s = spec("-4@112(%rsp)");
        assert_eq!((s.base, s.displacement, s.size, s.signed), (RSP, 112, 4, 1));
        let s = spec("8@(%rax,%rdx,8)");
        assert_eq!((s.base, s.index, s.scale, s.displacement), (RAX, RDX, 8, 0));
        let s = spec("4@0x10(%rbp,%rcx)");
        assert_eq!(
            (s.base, s.index, s.scale, s.displacement),
            (RBP, RCX, 1, 16)
        );
        let s = spec("8@(%rdi)");
        assert_eq!((s.base, s.displacement, s.reads), (RDI, 0, 1));
    }

    #[test]
    fn constants_and_old_notes() {
        let s = spec("4@$5");
        assert_eq!(
            (s.base, s.displacement, s.reads, s.size),
            (reg::NONE, 5, 0, 4)
        );
        let s = spec("-8@$-1");
        assert_eq!((s.displacement, s.signed), (-1, 1));
        let s = spec("%rsi");
        assert_eq!((s.base, s.size), (RSI, 8));
    }

    #[test]
    fn what_is_refused_says_why() {
        for (text, why) in [
            ("3@%rax", "size"),
            ("8@%xmm0", "location"),
            ("8@foo(%rip)", "location"),
            ("8@8(%rax,%rbx,3)", "location"),
            ("x@%rax", "size"),
        ] {
            let err = parse_arg(text).unwrap_err();
            assert!(err.to_string().contains(why), "{text}: {err}");
        }
        assert_eq!(parse_args("-4@%edi 8@%rsi").unwrap().len(), 2);
    }
}
