//! The bpf(2) calls aya 0.14 does not make for us: loading a program with an expected
//! attach type (uprobe_multi programs need `BPF_TRACE_UPROBE_MULTI`) and creating a
//! uprobe_multi link, with their attribute structs laid out as the kernel reads them.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
    os::unix::ffi::OsStrExt as _,
    path::Path,
};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_KPROBE: u32 = 2;
pub const BPF_TRACE_UPROBE_MULTI: u32 = 48;
/// Entry and return in one program, with a cookie per call (Linux 6.13+).
pub const BPF_TRACE_UPROBE_SESSION: u32 = 57;
const BPF_F_UPROBE_MULTI_RETURN: u32 = 1;
/// `BPF_JMP | BPF_CALL`.
pub const CALL_OPCODE: u8 = 0x85;

/// One BPF instruction, as the kernel reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Insn {
    pub code: u8,
    /// dst register in the low nibble, src in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

/// The head of `union bpf_attr` for BPF_PROG_LOAD, up to `expected_attach_type`; the
/// kernel treats the fields we do not pass as zero.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for BPF_LINK_CREATE with its `uprobe_multi` member.
#[repr(C)]
#[derive(Default)]
struct UprobeMultiLinkAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    path: u64,
    offsets: u64,
    ref_ctr_offsets: u64,
    cookies: u64,
    cnt: u32,
    multi_flags: u32,
    pid: u32,
    _pad: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a live, correctly laid out bpf_attr prefix of the given size; the
    // pointers inside it point to buffers that outlive the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success BPF_PROG_LOAD and BPF_LINK_CREATE return a new fd we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) })
}

/// A program the kernel refused, with the end of the verifier's log.
#[derive(Debug)]
pub struct Refused {
    pub source: io::Error,
    /// The last lines of the verifier log, ` (verifier: ...)`, or empty.
    pub log: String,
}

/// Loads a kprobe-type program from `insns`; `attach_type` is its expected attach type
/// (0 for none). On failure the program is loaded once more with a verifier log, only to
/// explain why.
pub fn load_program(
    name: &str,
    insns: &[Insn],
    license: &str,
    attach_type: u32,
) -> Result<OwnedFd, Refused> {
    let license = CString::new(license).unwrap_or_default();
    let mut prog_name = [0u8; 16];
    for (slot, byte) in prog_name.iter_mut().zip(name.bytes().take(15)) {
        *slot = byte;
    }
    let load = |log: &mut Vec<u8>| {
        let mut attr = ProgLoadAttr {
            prog_name,
            ..kprobe_attr(insns, &license, attach_type)
        };
        if !log.is_empty() {
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
        }
        bpf(BPF_PROG_LOAD, &mut attr)
    };
    match load(&mut Vec::new()) {
        Ok(fd) => Ok(fd),
        Err(source) => {
            let mut log = vec![0u8; 1 << 20];
            let _ = load(&mut log);
            let log = verifier_summary(&String::from_utf8_lossy(&log));
            Err(Refused { source, log })
        }
    }
}

/// BPF_PROG_LOAD of a kprobe-type program; `license` must outlive the call.
fn kprobe_attr(insns: &[Insn], license: &CString, attach_type: u32) -> ProgLoadAttr {
    ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_KPROBE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        expected_attach_type: attach_type,
        ..Default::default()
    }
}

/// Whether the kernel loads a kprobe-type program of `insns` with this expected attach
/// type and `prog_flags` (`BPF_F_SLEEPABLE`): how `ebpf-tool features` asks the kernel
/// rather than guessing from its version. The program is dropped at once.
pub fn program_loads(insns: &[Insn], attach_type: u32, prog_flags: u32) -> io::Result<()> {
    let license = CString::new("GPL").unwrap_or_default();
    let mut attr = ProgLoadAttr {
        prog_flags,
        ..kprobe_attr(insns, &license, attach_type)
    };
    bpf(BPF_PROG_LOAD, &mut attr).map(drop)
}

/// `union bpf_attr` for BPF_MAP_CREATE, its first fields.
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

/// Whether the kernel creates a map of `map_type` (dropped at once).
pub fn map_creates(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
) -> io::Result<()> {
    let mut attr = MapCreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_flags: 0,
    };
    bpf(0 /* BPF_MAP_CREATE */, &mut attr).map(drop)
}

/// The end of a verifier log, where it says why, as ` (verifier: ...)` on one line (a
/// whole log can be megabytes); the whole log goes to the debug log.
pub fn verifier_summary(log: &str) -> String {
    let log = log.trim_end_matches('\0');
    log::debug!("verifier log:\n{log}");
    let tail: Vec<&str> = log
        .lines()
        .rev()
        .filter(|l| !l.trim().is_empty())
        .take(3)
        .collect();
    if tail.is_empty() {
        return String::new();
    }
    let mut text = tail.into_iter().rev().collect::<Vec<_>>().join(" / ");
    if text.len() > 600 {
        let mut cut = text.len() - 600;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        text.replace_range(..cut, "...");
    }
    format!(" (verifier: {text})")
}

/// `r0 = 0; exit`: the smallest program, to ask whether the kernel loads a kind.
pub const RETURN_ZERO: [Insn; 2] = [
    Insn {
        code: 0xb7,
        regs: 0,
        off: 0,
        imm: 0,
    },
    Insn {
        code: 0x95,
        regs: 0,
        off: 0,
        imm: 0,
    },
];

/// What a uprobe_multi link runs its program at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultiLink {
    /// The offsets themselves.
    Entry,
    /// The returns of the functions at the offsets (uretprobes).
    Return,
    /// Both, one program with a cookie per call (a session).
    Session,
}

/// Attaches `program` at every offset of `path` through one uprobe_multi link (at the
/// entries, returns or both, as `link` says), tagging each with its cookie; only in `pid`
/// when non-zero.
pub fn attach_uprobe_multi(
    program: BorrowedFd<'_>,
    path: &Path,
    offsets: &[u64],
    cookies: &[u64],
    ref_ctr_offsets: &[u64],
    link: MultiLink,
    pid: u32,
) -> io::Result<OwnedFd> {
    let path = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut attr = UprobeMultiLinkAttr {
        prog_fd: program.as_raw_fd() as u32,
        attach_type: match link {
            MultiLink::Session => BPF_TRACE_UPROBE_SESSION,
            MultiLink::Entry | MultiLink::Return => BPF_TRACE_UPROBE_MULTI,
        },
        path: path.as_ptr() as u64,
        offsets: offsets.as_ptr() as u64,
        cookies: cookies.as_ptr() as u64,
        // Null when no point has a semaphore: the kernel then reads no array.
        ref_ctr_offsets: if ref_ctr_offsets.iter().any(|&o| o != 0) {
            ref_ctr_offsets.as_ptr() as u64
        } else {
            0
        },
        cnt: offsets.len() as u32,
        multi_flags: if link == MultiLink::Return {
            BPF_F_UPROBE_MULTI_RETURN
        } else {
            0
        },
        pid,
        ..Default::default()
    };
    bpf(BPF_LINK_CREATE, &mut attr)
}

/// Whether the kernel lets a uprobe program read the current task's 32-bit fields at
/// `words` and 64-bit fields at `double_words` (byte offsets) through its BTF pointer, the
/// way the real programs do: a few instructions loaded and dropped. Turns a verifier
/// that disagrees into the helper fallback instead of a failed run.
pub fn task_fields_readable(words: &[u32], double_words: &[u32]) -> bool {
    const BPF_FUNC_GET_CURRENT_TASK_BTF: i32 = 158;
    let insn = |code: u8, regs: u8, off: i16, imm: i32| Insn {
        code,
        regs,
        off,
        imm,
    };
    // r6 = current task; for each field: r2 = r6 + offset; r1 = *(size *)(r2 + 0).
    let mut insns = vec![
        insn(CALL_OPCODE, 0, 0, BPF_FUNC_GET_CURRENT_TASK_BTF),
        insn(0xbf, 0x06, 0, 0), // r6 = r0
    ];
    let loads = words
        .iter()
        .map(|&o| (o, 0x61))
        .chain(double_words.iter().map(|&o| (o, 0x79)));
    for (offset, load) in loads {
        let Ok(offset) = i32::try_from(offset) else {
            return false;
        };
        insns.push(insn(0xbf, 0x62, 0, 0)); // r2 = r6
        insns.push(insn(0x07, 0x02, 0, offset)); // r2 += offset
        insns.push(insn(load, 0x21, 0, 0)); // r1 = *(r2 + 0)
    }
    insns.push(insn(0xb7, 0x00, 0, 0)); // r0 = 0
    insns.push(insn(0x95, 0, 0, 0)); // exit
    load_program("task_fields", &insns, "GPL", 0).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_layouts_match_the_kernel_abi() {
        assert_eq!(size_of::<Insn>(), 8);
        assert_eq!(size_of::<ProgLoadAttr>(), 72);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::offset_of!(UprobeMultiLinkAttr, path), 16);
        assert_eq!(std::mem::offset_of!(UprobeMultiLinkAttr, cnt), 48);
        assert_eq!(std::mem::offset_of!(UprobeMultiLinkAttr, pid), 56);
    }

    /// Needs root (loading a program); where the kernel has BTF, its task_struct's fields
    /// must be readable, and an offset past the struct must not be.
    #[test]
    fn the_kernel_lets_programs_read_the_task_fields_it_describes() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                std::env::var_os("EBPF_TOOL_REQUIRE_PRIVILEGED").is_none(),
                "needs root"
            );
            return;
        }
        let Some(fields) = crate::kernel_btf::task_fields() else {
            return; // no BTF: the programs use helpers
        };
        assert!(task_fields_readable(
            &[fields.tgid, fields.pid],
            &[fields.comm, fields.comm + 8]
        ));
        assert!(!task_fields_readable(&[1 << 20], &[]));
    }
}
