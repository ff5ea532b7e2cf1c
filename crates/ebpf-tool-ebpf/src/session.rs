//! The two kernel functions a uprobe session program calls (kfuncs, Linux 6.13+):
//! `bpf_session_is_return` and `bpf_session_cookie`.
//!
//! A kfunc call is a `call` whose source register says "kernel function" and whose
//! immediate is the function's BTF id in the running kernel. Rust and bpf-linker cannot
//! emit that relocation yet, so these calls are written as helper calls with placeholder
//! numbers no helper has, and the tool's loader rewrites each into the kfunc call
//! (`loader::kfuncs`) with the ids it read from /sys/kernel/btf/vmlinux. Unpatched, the
//! verifier refuses the program, which is loaded only when the kernel has both.

use ebpf_tool_common::kfunc;

/// A call of kernel function `$placeholder` (no arguments), its r0 as a u64. Like any
/// call it clobbers r1-r5.
macro_rules! kfunc_call {
    ($placeholder:path) => {{
        let r0: u64;
        // SAFETY: a call the loader turns into the kfunc `$placeholder` stands for, which
        // takes no arguments and only returns in r0.
        unsafe {
            core::arch::asm!(
                "call {id}",
                id = const $placeholder,
                lateout("r0") r0,
                lateout("r1") _, lateout("r2") _, lateout("r3") _, lateout("r4") _, lateout("r5") _,
                options(nostack),
            )
        };
        r0
    }};
}

/// Whether this run of the session program is at the return (else the entry).
#[inline(always)]
pub fn is_return() -> bool {
    // `bool bpf_session_is_return(void)`: a C bool, only its low byte is defined.
    kfunc_call!(kfunc::SESSION_IS_RETURN) & 0xff != 0
}

/// This call's cookie: 8 bytes the kernel keeps from its entry to its return.
#[inline(always)]
pub fn cookie() -> *mut u64 {
    // `__u64 *bpf_session_cookie(void)`.
    kfunc_call!(kfunc::SESSION_COOKIE) as *mut u64
}
