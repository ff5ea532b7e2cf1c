//! Can a uprobe sit on this instruction without changing what the program computes?
//!
//! A uprobe replaces an instruction with a breakpoint; on a hit the kernel either emulates
//! the instruction (branches, calls, pushes, NOPs) or single-steps a copy of it in a page
//! of its own and fixes the instruction pointer up afterwards. x86-64's kernel
//! (`arch/x86/kernel/uprobes.c`) decides which by looking at the instruction's first
//! opcode byte as if it were a one-byte legacy opcode, and that is wrong for VEX- and
//! EVEX-encoded instructions, whose opcode byte belongs to another opcode map. Measured
//! on Linux 6.18 with `tests/fixtures/probe_sites.S` (every class below, registers and
//! results compared with an untraced run):
//!
//! - a VEX/EVEX opcode byte of 70..7f (`vpbroadcastb`: 78/7a, `vzeroupper`: 77,
//!   `vpcmpeqb`: 74), e8, e9 or eb (`vpsubsb`, `vpsubsw`, `vpor`) is emulated as a
//!   conditional jump, call or jump: the instruction never runs (glibc's `strchr` on
//!   AVX-512 machines starts with `62 e2 7d 28 7a ce`, `vpbroadcastb %esi,%ymm17`);
//! - 90 (`kmovw %k1,%k2`) is skipped as a NOP;
//! - 9d (`vfnmadd132ss`) is treated as `popf`: the trap flag stays set and the program
//!   dies of SIGTRAP;
//! - c2 (`vcmpps`), like c3/ca/cb, leaves the instruction pointer in the kernel's page:
//!   the program runs on from there and crashes;
//! - every other VEX/EVEX instruction (RIP-relative, masked, AVX-512 registers included)
//!   is single-stepped correctly, as are legacy instructions, which the kernel was written
//!   for.
//!
//! So this module models the kernel's own analysis and allows a site only where that
//! analysis runs the instruction as the CPU would. It also predicts what the kernel
//! refuses outright (lock and ES/CS/SS/DS prefixes, its table of unsupported opcodes):
//! asking costs the kernel a synchronize (~40 ms) per refusal, which globs cannot afford.

use std::fmt;

use iced_x86::{Code, Decoder, DecoderOptions, EncodingKind, Formatter as _, GasFormatter};

/// Why no probe may be placed on an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unprobeable {
    /// The instruction as `objdump` would print it, or its bytes when it cannot be decoded.
    pub instruction: String,
    /// Its length, when it could be decoded: where the next instruction starts.
    pub length: Option<usize>,
    pub why: Why,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Not a valid x86-64 instruction (data, or the middle of an instruction).
    Undecodable,
    /// The kernel refuses it (ENOTSUPP): `what` says which rule.
    KernelRefuses(&'static str),
    /// A VEX/EVEX instruction whose opcode byte the kernel mistakes for a legacy one.
    KernelMisreads { opcode: u8, taken_for: &'static str },
    /// An encoding the kernel's decoder does not know (XOP, 3DNow!, MVEX).
    UnknownEncoding(&'static str),
    /// A system call: children of fork/clone would return into the kernel's
    /// single-step page, which they do not have.
    SystemCall,
    /// `xbegin`: its abort address would point into the kernel's single-step page.
    Transaction,
}

impl fmt::Display for Unprobeable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let insn = &self.instruction;
        match self.why {
            Why::Undecodable => write!(f, "{insn} is not a valid x86-64 instruction"),
            Why::KernelRefuses(rule) => write!(f, "the kernel cannot probe `{insn}` ({rule})"),
            Why::KernelMisreads { opcode, taken_for } => write!(
                f,
                "`{insn}` is VEX/EVEX-encoded with opcode byte {opcode:#04x}, which the kernel's \
                 uprobes take for {taken_for}: the traced program would compute wrong results or \
                 crash"
            ),
            Why::UnknownEncoding(which) => write!(
                f,
                "`{insn}` is {which}-encoded, which the kernel's instruction decoder does not know"
            ),
            Why::SystemCall => write!(
                f,
                "`{insn}` is a system call: a child made by fork or clone would return into the \
                 kernel's single-step page, which it does not have"
            ),
            Why::Transaction => write!(
                f,
                "`{insn}` starts a transaction whose abort address would point into the kernel's single-step page"
            ),
        }
    }
}

/// Checks the instruction at the start of `code` (the bytes at the probe address, up to
/// 15 of them) for x86-64; returns its length when a probe there is safe.
pub fn check_x86_64(code: &[u8], address: u64) -> Result<usize, Unprobeable> {
    let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
    let insn = decoder.decode();
    if insn.is_invalid() {
        let shown: Vec<String> = code.iter().take(8).map(|b| format!("{b:02x}")).collect();
        return Err(Unprobeable {
            instruction: format!("bytes {}", shown.join(" ")),
            length: None,
            why: Why::Undecodable,
        });
    }
    let length = insn.len();
    let bytes = &code[..length];
    let refuse = |why| {
        let mut text = String::new();
        GasFormatter::new().format(&insn, &mut text);
        Err(Unprobeable {
            instruction: text,
            length: Some(length),
            why,
        })
    };
    let encoding = match insn.encoding() {
        EncodingKind::Legacy => Encoding::Legacy,
        EncodingKind::VEX | EncodingKind::EVEX => Encoding::Vex,
        EncodingKind::XOP => return refuse(Why::UnknownEncoding("XOP")),
        EncodingKind::D3NOW => return refuse(Why::UnknownEncoding("3DNow!")),
        _ => return refuse(Why::UnknownEncoding("MVEX")),
    };
    match insn.code() {
        Code::Syscall | Code::Sysenter | Code::Int_imm8 | Code::Int1 | Code::Int3 => {
            return refuse(Why::SystemCall);
        }
        Code::Xbegin_rel16 | Code::Xbegin_rel32 => return refuse(Why::Transaction),
        _ => {}
    }
    let Some(layout) = Layout::of(bytes, encoding) else {
        return refuse(Why::Undecodable);
    };
    if let Some(why) = kernel_verdict(&layout) {
        return refuse(why);
    }
    Ok(length)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Legacy,
    /// VEX or EVEX: one opcode byte after the prefix, in a map the prefix names.
    Vex,
}

/// The parts of an instruction the kernel's analysis looks at, found the way its decoder
/// finds them.
#[derive(Debug, Clone, Copy)]
struct Layout {
    encoding: Encoding,
    /// Legacy prefixes (not REX), in order.
    prefixes: [u8; 4],
    prefix_count: usize,
    /// `OPCODE1` and, for legacy two-byte opcodes, `OPCODE2`.
    opcode1: u8,
    opcode2: Option<u8>,
    /// Opcode bytes the kernel counts (1, 2 or 3).
    opcode_len: usize,
    modrm: Option<u8>,
}

const LEGACY_PREFIXES: [u8; 11] = [
    0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3,
];

impl Layout {
    fn of(bytes: &[u8], encoding: Encoding) -> Option<Layout> {
        let mut at = 0;
        let mut prefixes = [0u8; 4];
        let mut prefix_count = 0;
        while at < bytes.len() && LEGACY_PREFIXES.contains(&bytes[at]) {
            if prefix_count < prefixes.len() {
                prefixes[prefix_count] = bytes[at];
            }
            prefix_count += 1;
            at += 1;
        }
        if bytes.get(at).is_some_and(|b| b & 0xf0 == 0x40) {
            at += 1; // REX
        }
        let (opcode1, opcode2, opcode_len, modrm_at) = match encoding {
            Encoding::Legacy => {
                let first = *bytes.get(at)?;
                if first == 0x0f {
                    let second = *bytes.get(at + 1)?;
                    let len = if matches!(second, 0x38 | 0x3a) { 3 } else { 2 };
                    (first, Some(second), len, at + len)
                } else {
                    (first, None, 1, at + 1)
                }
            }
            Encoding::Vex => {
                // c5 xx OP, c4 xx xx OP, 62 xx xx xx OP.
                let skip = match *bytes.get(at)? {
                    0xc5 => 2,
                    0xc4 => 3,
                    _ => 4,
                };
                (*bytes.get(at + skip)?, None, 1, at + skip + 1)
            }
        };
        Some(Layout {
            encoding,
            prefixes,
            prefix_count: prefix_count.min(4),
            opcode1,
            opcode2,
            opcode_len,
            modrm: bytes.get(modrm_at).copied(),
        })
    }

    fn has_prefix(&self, prefix: u8) -> bool {
        self.prefixes[..self.prefix_count].contains(&prefix)
    }

    fn modrm_reg(&self) -> Option<u8> {
        self.modrm.map(|m| (m >> 3) & 7)
    }
}

/// `good_insns_64` of the kernel: one-byte opcodes it agrees to probe in 64-bit code.
/// (Two-byte opcodes all pass: 0f itself is marked good, which the kernel checks first.)
const GOOD_64: [u16; 16] = [
    // bit n of row r: opcode r*16 + n
    0b1011_1111_0011_1111, // 00: not 06 07 0e
    0b0011_1111_0011_1111, // 10: not 16 17 1e 1f
    0b0111_1111_0111_1111, // 20: not 27 2f
    0b0111_1111_0111_1111, // 30: not 37 3f
    0xffff,                // 40
    0xffff,                // 50
    0b0000_1111_1111_1000, // 60: not 60 61 62 6c-6f
    0xffff,                // 70
    0b1111_1111_1111_1011, // 80: not 82
    0b1111_1011_1111_1111, // 90: not 9a
    0xffff,                // a0
    0xffff,                // b0
    0b0000_1111_1111_1111, // c0: not cc-cf
    0b1111_1111_1000_1111, // d0: not d4 d5 d6
    0b0000_1011_0000_1111, // e0: not e4-e7 ea ec-ef
    0b1111_0011_1110_1101, // f0: not f1 f4 fa fb
];

fn good_64(opcode: u8) -> bool {
    GOOD_64[(opcode >> 4) as usize] & (1 << (opcode & 0xf)) != 0
}

/// What the kernel does with the instruction, reduced to "fine" (`None`) or why not.
fn kernel_verdict(insn: &Layout) -> Option<Why> {
    // is_prefix_bad()
    if [0x26, 0x2e, 0x36, 0x3e].iter().any(|&p| insn.has_prefix(p)) {
        return Some(Why::KernelRefuses("an ES, CS, SS or DS segment prefix"));
    }
    if insn.has_prefix(0xf0) {
        return Some(Why::KernelRefuses("a LOCK prefix"));
    }
    // insn_masking_exception(): pop ss, mov to ss
    if insn.opcode1 == 0x17 || (insn.opcode1 == 0x8e && insn.modrm_reg() == Some(2)) {
        return Some(Why::KernelRefuses(
            "it loads SS, which masks the single-step trap",
        ));
    }
    if !good_64(insn.opcode1) {
        return Some(Why::KernelRefuses(
            "its opcode is in the kernel's list of instructions uprobes do not support",
        ));
    }
    match insn.encoding {
        Encoding::Legacy => {
            // Branches the kernel emulates refuse a 16-bit operand-size override.
            let branch = matches!(insn.opcode1, 0x70..=0x7f | 0xe8 | 0xe9 | 0xeb)
                || (insn.opcode_len == 2
                    && insn.opcode2.is_some_and(|op| (0x80..=0x8f).contains(&op)));
            if branch && insn.has_prefix(0x66) {
                return Some(Why::KernelRefuses(
                    "a branch with a 16-bit operand-size prefix",
                ));
            }
            None
        }
        Encoding::Vex => vex_misread(insn),
    }
}

/// The ways the kernel's one-byte reading of a VEX/EVEX opcode goes wrong.
fn vex_misread(insn: &Layout) -> Option<Why> {
    let opcode = insn.opcode1;
    let taken_for = match opcode {
        0x70..=0x7f => "a conditional jump (it is emulated, never run)",
        0xe8 => "a call (it is emulated, never run)",
        0xe9 | 0xeb => "a jump (it is emulated, never run)",
        0x90 => "a NOP (it is skipped)",
        0x9d => "popf (the trap flag is left set and the program gets SIGTRAP)",
        0xc2 | 0xc3 | 0xca | 0xcb => {
            "a return (the instruction pointer is not moved back from the kernel's page)"
        }
        0xff if matches!(insn.modrm_reg(), Some(2..=5)) => {
            "an indirect call or jump (the instruction pointer is fixed up wrongly)"
        }
        _ => return None,
    };
    Some(Why::KernelMisreads { opcode, taken_for })
}

/// Decodes `code` (a function's bytes, starting at its entry `address`) up to `offset`:
/// the offsets at which instructions start, the last one at or past `offset` (so an
/// instruction starts at `offset` exactly when it is the last). Stops at undecodable bytes.
pub fn instruction_starts_x86_64(code: &[u8], address: u64, offset: u64) -> Vec<u64> {
    let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
    let mut starts = vec![0u64];
    let mut at = 0u64;
    while at < offset && decoder.can_decode() {
        let insn = decoder.decode();
        if insn.is_invalid() {
            break;
        }
        at += insn.len() as u64;
        starts.push(at);
    }
    starts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(bytes: &[u8]) -> Result<usize, Why> {
        check_x86_64(bytes, 0x1000).map_err(|e| e.why)
    }

    fn misread(bytes: &[u8]) -> bool {
        matches!(verdict(bytes), Err(Why::KernelMisreads { .. }))
    }

    #[test]
    fn legacy_instructions_are_fine() {
        for (bytes, len) in [
            (&[0x89, 0xf8][..], 2),                              // mov %edi,%eax
            (&[0x55], 1),                                        // push %rbp
            (&[0x41, 0x54], 2),                                  // push %r12
            (&[0xf3, 0x0f, 0x1e, 0xfa], 4),                      // endbr64
            (&[0x0f, 0x1f, 0x44, 0x00, 0x00], 5),                // nopl
            (&[0x48, 0x8b, 0x05, 0x10, 0x00, 0x00, 0x00], 7),    // mov x(%rip),%rax
            (&[0x64, 0x48, 0x8b, 0x04, 0x25, 0x28, 0, 0, 0], 9), // mov %fs:0x28,%rax
            (&[0x75, 0x05], 2),                                  // jne
            (&[0xe8, 0, 0, 0, 0], 5),                            // call
            (&[0xc3], 1),                                        // ret
            (&[0x9d], 1),                                        // popf
            (&[0x0f, 0x58, 0xd1], 3),                            // addps
        ] {
            assert_eq!(verdict(bytes), Ok(len), "{bytes:02x?}");
        }
    }

    #[test]
    fn what_the_kernel_refuses_is_refused_without_asking() {
        for bytes in [
            &[0xf0, 0x48, 0x0f, 0xc1, 0x05, 0, 0, 0, 0][..], // lock xadd
            &[0x3e, 0x48, 0x8b, 0x04, 0x24],                 // ds mov
            &[0xc5, 0xfe, 0x6f, 0x1d, 0, 0, 0, 0],           // vmovdqu (6f: ins/outs in the table)
            &[0x62, 0xa1, 0xfe, 0x48, 0x6f, 0xc8],           // vmovdqu64 %zmm16,%zmm17
            &[0x66, 0xe8, 0, 0, 0, 0],                       // call with 66
            &[0xcc],                                         // int3
        ] {
            assert!(
                matches!(verdict(bytes), Err(Why::KernelRefuses(_) | Why::SystemCall)),
                "{bytes:02x?}: {:?}",
                verdict(bytes)
            );
        }
    }

    #[test]
    fn vex_and_evex_opcodes_the_kernel_misreads() {
        assert!(misread(&[0x62, 0xe2, 0x7d, 0x28, 0x7a, 0xce])); // vpbroadcastb %esi,%ymm17 (strchr)
        assert!(misread(&[0xc4, 0xe2, 0x7d, 0x78, 0xd9])); // vpbroadcastb %xmm1,%ymm3
        assert!(misread(&[0xc5, 0xf8, 0x77])); // vzeroupper
        assert!(misread(&[0xc5, 0xec, 0xc2, 0xd9, 0x01])); // vcmpps
        assert!(misread(&[0xc5, 0xed, 0xeb, 0xd9])); // vpor
        assert!(misread(&[0xc5, 0xed, 0xe8, 0xd9])); // vpsubsb
        assert!(misread(&[0xc4, 0xe2, 0x69, 0x9d, 0xd9])); // vfnmadd132ss
        assert!(misread(&[0xc5, 0xf8, 0x90, 0xd1])); // kmovw %k1,%k2
        assert!(misread(&[0x62, 0xb1, 0x75, 0x20, 0x74, 0xd8])); // vpcmpeqb -> k3
    }

    #[test]
    fn other_vex_and_evex_instructions_are_fine() {
        for bytes in [
            &[0xc5, 0xec, 0x58, 0xd9][..],                     // vaddps
            &[0xc5, 0xec, 0x57, 0xd9],                         // vxorps
            &[0xc5, 0xec, 0x58, 0x1d, 0, 0, 0, 0],             // vaddps x(%rip)
            &[0xc5, 0xf8, 0x92, 0xd7],                         // kmovw %edi,%k2
            &[0xc4, 0xe2, 0xf0, 0xf2, 0xc7],                   // andn
            &[0x62, 0xe1, 0x6d, 0x48, 0xfe, 0xc9],             // vpaddd %zmm1,%zmm2,%zmm17
            &[0x62, 0xe1, 0x75, 0x48, 0xfe, 0x0d, 0, 0, 0, 0], // vpaddd x(%rip)
            &[0x62, 0xe3, 0x6d, 0x48, 0x25, 0xc9, 0x96],       // vpternlogd
        ] {
            assert!(verdict(bytes).is_ok(), "{bytes:02x?}: {:?}", verdict(bytes));
        }
    }

    #[test]
    fn system_calls_and_garbage_are_refused() {
        assert_eq!(verdict(&[0x0f, 0x05]), Err(Why::SystemCall));
        assert_eq!(verdict(&[0xc7, 0xf8, 0, 0, 0, 0]), Err(Why::Transaction));
        assert_eq!(verdict(&[0x06]), Err(Why::Undecodable)); // push %es: invalid in 64-bit code
        assert_eq!(verdict(&[]), Err(Why::Undecodable));
        let err = check_x86_64(&[0x62, 0xe2, 0x7d, 0x28, 0x7a, 0xce], 0).unwrap_err();
        assert!(
            err.to_string().contains("vpbroadcastb %esi,%ymm17"),
            "{err}"
        );
    }

    #[test]
    fn finds_instruction_boundaries() {
        // push %rbp; mov %rsp,%rbp; mov %edi,%eax; ret
        let code = [0x55, 0x48, 0x89, 0xe5, 0x89, 0xf8, 0xc3];
        let at = |offset| instruction_starts_x86_64(&code, 0, offset).last() == Some(&offset);
        for offset in [0, 1, 4, 6] {
            assert!(at(offset), "{offset}");
        }
        for offset in [2, 3, 5, 9] {
            assert!(!at(offset), "{offset}");
        }
        assert_eq!(instruction_starts_x86_64(&code, 0, 5), [0, 1, 4, 6]);
    }
}
