//! Register names as assemblers and USDT notes write them (`%rdi`, `%edi`, `%di`, `%dil`,
//! `%r8d`, `x0`, `w0`), to DWARF register numbers and the width the name reads.

use ebpf_tool_common::reg::{aarch64, x86_64::*};

/// A register and how many bytes of it a name means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamedRegister {
    pub number: u8,
    pub size: u8,
}

/// The x86-64 register `name` (with or without `%`), in any of its widths.
pub fn x86_64(name: &str) -> Option<NamedRegister> {
    let name = name.strip_prefix('%').unwrap_or(name).to_ascii_lowercase();
    const LEGACY: [(u8, [&str; 4]); 8] = [
        (RAX, ["rax", "eax", "ax", "al"]),
        (RBX, ["rbx", "ebx", "bx", "bl"]),
        (RCX, ["rcx", "ecx", "cx", "cl"]),
        (RDX, ["rdx", "edx", "dx", "dl"]),
        (RSI, ["rsi", "esi", "si", "sil"]),
        (RDI, ["rdi", "edi", "di", "dil"]),
        (RBP, ["rbp", "ebp", "bp", "bpl"]),
        (RSP, ["rsp", "esp", "sp", "spl"]),
    ];
    for (number, names) in LEGACY {
        if let Some(width) = names.iter().position(|n| *n == name) {
            return Some(NamedRegister {
                number,
                size: [8, 4, 2, 1][width],
            });
        }
    }
    if name == "rip" {
        return Some(NamedRegister {
            number: RIP,
            size: 8,
        });
    }
    // r8..r15 with the suffixes d (32), w (16), b or l (8).
    let rest = name.strip_prefix('r')?;
    let digits = rest.trim_end_matches(['d', 'w', 'b', 'l']);
    let n: u8 = digits.parse().ok()?;
    if !(8..=15).contains(&n) {
        return None;
    }
    let size = match &rest[digits.len()..] {
        "" => 8,
        "d" => 4,
        "w" => 2,
        "b" | "l" => 1,
        _ => return None,
    };
    Some(NamedRegister {
        number: R8 + (n - 8),
        size,
    })
}

/// The AArch64 register `name`: `x0`..`x30` (8 bytes), `w0`..`w30` (4), `sp`, `lr`.
pub fn aarch64(name: &str) -> Option<NamedRegister> {
    let name = name.to_ascii_lowercase();
    match name.as_str() {
        "sp" => {
            return Some(NamedRegister {
                number: aarch64::SP,
                size: 8,
            });
        }
        "lr" => {
            return Some(NamedRegister {
                number: aarch64::LR,
                size: 8,
            });
        }
        _ => {}
    }
    let (size, digits) = match name.split_at_checked(1)? {
        ("x", d) => (8, d),
        ("w", d) => (4, d),
        _ => return None,
    };
    let n: u8 = digits.parse().ok()?;
    (n <= 30).then_some(NamedRegister { number: n, size })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_x86_64_width_names_its_register() {
        for (name, number, size) in [
            ("%rdi", RDI, 8),
            ("%edi", RDI, 4),
            ("di", RDI, 2),
            ("%dil", RDI, 1),
            ("%al", RAX, 1),
            ("%r8", R8, 8),
            ("%r8d", R8, 4),
            ("%r11w", R11, 2),
            ("%r15b", R15, 1),
            ("%rip", RIP, 8),
            ("%RSP", RSP, 8),
        ] {
            assert_eq!(x86_64(name), Some(NamedRegister { number, size }), "{name}");
        }
        for bad in ["%r16", "%r7", "%xmm0", "%eip", "", "%r8q"] {
            assert_eq!(x86_64(bad), None, "{bad}");
        }
    }

    #[test]
    fn aarch64_names() {
        assert_eq!(aarch64("x3"), Some(NamedRegister { number: 3, size: 8 }));
        assert_eq!(
            aarch64("w30"),
            Some(NamedRegister {
                number: 30,
                size: 4
            })
        );
        assert_eq!(aarch64("sp").unwrap().number, aarch64::SP);
        assert_eq!(aarch64("x31"), None);
    }
}
