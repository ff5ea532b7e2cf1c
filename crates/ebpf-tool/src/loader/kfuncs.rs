//! Turns the kernel programs' placeholder calls into kernel-function (kfunc) calls: a
//! `call` with source register `BPF_PSEUDO_KFUNC_CALL` and the function's BTF id in the
//! running kernel as its immediate (what libbpf does for `__ksym` externs, which Rust and
//! bpf-linker cannot emit yet; see the kernel crate's `session` module).

use ebpf_tool_common::kfunc;

use super::sys::Insn;
use crate::kernel_btf::SessionKfuncs;

const CALL_OPCODE: u8 = 0x85;
/// `BPF_PSEUDO_KFUNC_CALL`: the immediate is a BTF id, `off` the BTF's fd index (0:
/// vmlinux).
const PSEUDO_KFUNC_CALL: u8 = 2;

/// Why a program's kfunc calls could not be patched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KfuncError {
    #[error("the program calls kernel function {0}, which this kernel does not have")]
    Missing(&'static str),
}

/// Rewrites every placeholder call in `insns`; `session` holds the ids when the kernel has
/// the session functions. Programs without placeholders are left as they are.
pub fn patch(insns: &mut [Insn], session: Option<SessionKfuncs>) -> Result<(), KfuncError> {
    for insn in insns.iter_mut() {
        if insn.code != CALL_OPCODE || insn.regs >> 4 != 0 {
            continue;
        }
        let id = match insn.imm {
            kfunc::SESSION_IS_RETURN => session
                .map(|s| s.is_return)
                .ok_or(KfuncError::Missing("bpf_session_is_return"))?,
            kfunc::SESSION_COOKIE => session
                .map(|s| s.cookie)
                .ok_or(KfuncError::Missing("bpf_session_cookie"))?,
            _ => continue,
        };
        insn.regs = (PSEUDO_KFUNC_CALL << 4) | (insn.regs & 0x0f);
        insn.off = 0;
        insn.imm = id as i32;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(imm: i32) -> Insn {
        Insn {
            code: CALL_OPCODE,
            regs: 0,
            off: 0,
            imm,
        }
    }

    #[test]
    fn placeholders_become_kfunc_calls_and_helpers_stay() {
        let mut insns = [
            call(kfunc::SESSION_COOKIE),
            call(5),
            call(kfunc::SESSION_IS_RETURN),
        ];
        let ids = SessionKfuncs {
            is_return: 700,
            cookie: 701,
        };
        patch(&mut insns, Some(ids)).unwrap();
        assert_eq!((insns[0].regs, insns[0].imm), (0x20, 701));
        assert_eq!((insns[1].regs, insns[1].imm), (0x00, 5));
        assert_eq!((insns[2].regs, insns[2].imm), (0x20, 700));
    }

    #[test]
    fn a_kernel_without_them_is_an_error_only_for_programs_that_call_them() {
        assert!(patch(&mut [call(5)], None).is_ok());
        assert_eq!(
            patch(&mut [call(kfunc::SESSION_COOKIE)], None),
            Err(KfuncError::Missing("bpf_session_cookie"))
        );
    }
}
