//! Where a function's calls end, read from its machine code (x86-64): its return
//! instructions, where `--ret-sites` puts probes instead of a uretprobe, and its tail
//! jumps, by which calls leave without a return of their own. Also where a Go
//! function's body starts, past the stack check that re-enters the function after the
//! stack has grown.
//!
//! A probe in the middle of an instruction corrupts the program, so a return site must
//! be an instruction start for certain. Instructions are found two ways: following the
//! control flow from the entry (certain, but blind to code reached only through jump
//! tables) and decoding the bytes in a line from the entry (sees everything, but could
//! fall out of step on data inside the code). Where the line agrees with every
//! instruction the flow found, the line's returns are used; where it does not, only the
//! flow's, and the function is marked incomplete.

use std::{
    collections::{BTreeSet, HashSet},
    ops::Range,
};

use iced_x86::{Code, Decoder, DecoderOptions, FlowControl, Instruction, OpKind, Register};

/// How a function's calls end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exits {
    /// Addresses of its return instructions, in order.
    pub returns: Vec<u64>,
    /// Jumps (conditional or not) to code outside the function: calls that leave by
    /// them return from another function, unseen.
    pub tail_jumps: usize,
    /// False when decoding in a line disagreed with the control flow: returns reached
    /// only through jump tables may be missing.
    pub complete: bool,
}

/// A piece of a function's code: its body, or a cold part the compiler split off (GCC's
/// `NAME.cold`), which is entered by jumps from the body and may return itself.
#[derive(Debug, Clone, Copy)]
pub struct Part<'a> {
    pub code: &'a [u8],
    pub address: u64,
}

impl Part<'_> {
    fn range(&self) -> Range<u64> {
        self.address..self.address + self.code.len() as u64
    }
}

/// The exits of a function made of `parts`, the first its body (entered at its start).
pub fn exits_x86_64(parts: &[Part]) -> Exits {
    let Some(body) = parts.first() else {
        return Exits::default();
    };
    let line: Vec<Instruction> = parts.iter().flat_map(decode_line).collect();
    let flow = follow_flow(parts, body.address);
    let line_starts: HashSet<u64> = line.iter().map(Instruction::ip).collect();
    let complete = flow.iter().all(|insn| line_starts.contains(&insn.ip()));
    let chosen: Vec<Instruction> = if complete { line } else { flow };
    let mut exits = Exits {
        complete,
        ..Exits::default()
    };
    let inside = |target: u64| parts.iter().any(|p| p.range().contains(&target));
    for insn in &chosen {
        if is_return(insn) {
            exits.returns.push(insn.ip());
        } else if leaves(insn, &inside) {
            exits.tail_jumps += 1;
        }
    }
    exits
}

fn is_return(insn: &Instruction) -> bool {
    matches!(
        insn.code(),
        Code::Retnq | Code::Retnq_imm16 | Code::Retnw | Code::Retnw_imm16
    )
}

/// A jump whose target is outside the function: a direct one out of its parts, or an
/// indirect one through memory (a tail call through the GOT or a table of functions).
/// A jump through a register stays inside: that is how jump tables are dispatched.
fn leaves(insn: &Instruction, inside: &impl Fn(u64) -> bool) -> bool {
    match insn.flow_control() {
        FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch => {
            direct_target(insn).is_some_and(|target| !inside(target))
        }
        FlowControl::IndirectBranch => insn.op0_kind() == OpKind::Memory,
        _ => false,
    }
}

fn direct_target(insn: &Instruction) -> Option<u64> {
    match insn.op0_kind() {
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
            Some(insn.near_branch_target())
        }
        _ => None,
    }
}

/// Every instruction of a part, in a line; stops at undecodable bytes.
fn decode_line(part: &Part) -> Vec<Instruction> {
    let mut decoder = Decoder::with_ip(64, part.code, part.address, DecoderOptions::NONE);
    let mut out = Vec::new();
    while decoder.can_decode() {
        let insn = decoder.decode();
        if insn.is_invalid() {
            break;
        }
        out.push(insn);
    }
    out
}

/// The instructions reachable from `entry` by following jumps within the parts and
/// falling through (calls return), sorted by address.
fn follow_flow(parts: &[Part], entry: u64) -> Vec<Instruction> {
    let mut seen = BTreeSet::new();
    let mut found = Vec::new();
    let mut pending = vec![entry];
    while let Some(start) = pending.pop() {
        let mut at = start;
        while let Some(part) = parts.iter().find(|p| p.range().contains(&at)) {
            if !seen.insert(at) {
                break;
            }
            let offset = (at - part.address) as usize;
            let mut decoder = Decoder::with_ip(64, &part.code[offset..], at, DecoderOptions::NONE);
            let insn = decoder.decode();
            if insn.is_invalid() {
                break;
            }
            found.push(insn);
            match insn.flow_control() {
                FlowControl::Return | FlowControl::IndirectBranch | FlowControl::Exception => {
                    break;
                }
                FlowControl::UnconditionalBranch => {
                    pending.extend(direct_target(&insn));
                    break;
                }
                FlowControl::ConditionalBranch => pending.extend(direct_target(&insn)),
                FlowControl::Interrupt if insn.code() == Code::Int3 => break,
                _ if insn.code() == Code::Ud2 => break,
                _ => {}
            }
            at = insn.next_ip();
        }
    }
    found.sort_by_key(Instruction::ip);
    found
}

/// Where a Go function's body starts: past its stack check (`cmp rsp, 16(r14)`, or
/// `lea -N(rsp), r12; cmp r12, 16(r14)`, then `jbe`), whose slow path grows the stack and
/// jumps back to the entry, so a probe on the entry would see such calls twice. The
/// stack pointer and the argument registers there are still the entry's. None when the
/// function has no stack check (it starts with its body).
pub fn go_body_start_x86_64(code: &[u8], entry: u64) -> Option<u64> {
    let mut decoder = Decoder::with_ip(64, code, entry, DecoderOptions::NONE);
    for _ in 0..4 {
        if !decoder.can_decode() {
            return None;
        }
        let insn = decoder.decode();
        if insn.is_invalid() || insn.code() != Code::Cmp_r64_rm64 && !is_frame_arith(&insn) {
            return None;
        }
        if insn.code() == Code::Cmp_r64_rm64
            && insn.memory_base() == Register::R14
            && insn.memory_displacement64() == 16
        {
            let jump = decoder.decode();
            let is_jbe = matches!(jump.code(), Code::Jbe_rel8_64 | Code::Jbe_rel32_64);
            return is_jbe.then(|| jump.next_ip() - entry);
        }
    }
    None
}

/// The instructions Go puts before a stack check to compute the frame's lowest address.
fn is_frame_arith(insn: &Instruction) -> bool {
    matches!(
        insn.code(),
        Code::Lea_r64_m | Code::Mov_r64_rm64 | Code::Mov_rm64_r64 | Code::Sub_rm64_imm32
    ) || insn.flow_control() == FlowControl::ConditionalBranch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(code: &[u8], address: u64) -> Part<'_> {
        Part { code, address }
    }

    #[test]
    fn returns_and_tail_jumps() {
        // 0: test %edi,%edi; 2: je +3 (-> 7); 4: mov %edi,%eax; 6: ret;
        // 7: jmp far away (tail call)
        let code = [
            0x85, 0xff, 0x74, 0x03, 0x89, 0xf8, 0xc3, 0xe9, 0x00, 0x10, 0x00, 0x00,
        ];
        let exits = exits_x86_64(&[part(&code, 0x1000)]);
        assert_eq!(exits.returns, [0x1006]);
        assert_eq!(exits.tail_jumps, 1);
        assert!(exits.complete);
    }

    #[test]
    fn a_c3_inside_an_instruction_is_no_return() {
        // mov $0xc3c3c3c3,%eax; ret
        let code = [0xb8, 0xc3, 0xc3, 0xc3, 0xc3, 0xc3];
        assert_eq!(exits_x86_64(&[part(&code, 0)]).returns, [5]);
    }

    #[test]
    fn out_of_step_bytes_fall_back_to_the_flow() {
        // jmp +1 (over a stray byte); the stray 0xb8 swallows the ret in a line
        // decode; the flow finds it.
        let code = [0xeb, 0x01, 0xb8, 0xc3, 0x90, 0x90, 0x90, 0x90];
        let exits = exits_x86_64(&[part(&code, 0)]);
        assert_eq!(exits.returns, [3]);
        assert!(!exits.complete);
    }

    #[test]
    fn a_cold_part_is_the_function_s_own() {
        // body: test %edi,%edi; jne cold (0x2000); ret.  cold: mov %edi,%eax; ret
        let body = [0x85, 0xff, 0x0f, 0x85, 0xfa, 0x0f, 0x00, 0x00, 0xc3];
        let cold = [0x89, 0xf8, 0xc3];
        let exits = exits_x86_64(&[part(&body, 0x1000), part(&cold, 0x2000)]);
        assert_eq!(exits.returns, [0x1008, 0x2002]);
        assert_eq!(exits.tail_jumps, 0);
        assert!(exits.complete);
    }

    #[test]
    fn go_stack_checks_are_skipped() {
        // cmp 0x10(%r14),%rsp; jbe +0x20; push %rbp
        let small = [0x49, 0x3b, 0x66, 0x10, 0x76, 0x20, 0x55];
        assert_eq!(go_body_start_x86_64(&small, 0x4000), Some(6));
        // lea -0x100(%rsp),%r12; cmp 0x10(%r14),%r12; jbe rel32
        let big = [
            0x4c, 0x8d, 0xa4, 0x24, 0x00, 0xff, 0xff, 0xff, 0x4d, 0x3b, 0x66, 0x10, 0x0f, 0x86,
            0x10, 0x00, 0x00, 0x00, 0x55,
        ];
        assert_eq!(go_body_start_x86_64(&big, 0x4000), Some(18));
        // A function without a check: push %rbp; mov %rsp,%rbp
        assert_eq!(go_body_start_x86_64(&[0x55, 0x48, 0x89, 0xe5], 0), None);
    }
}
