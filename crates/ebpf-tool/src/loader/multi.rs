//! The kernel's uprobe_multi link (Linux 6.6+): one link puts a probe on many offsets of a
//! file, and closing it removes them all at once. Per-function perf-event links cost a
//! synchronize step each on detach (~100 ms here), which makes globs over hundreds of
//! functions unusable; this is what makes them fast.
//!
//! aya 0.14 cannot load a program for this link type (the program must be loaded with
//! expected attach type `BPF_TRACE_UPROBE_MULTI`), so this module loads the same kernel
//! programs itself: it takes a program's instructions from the embedded object, points
//! its map references at the maps aya already created (so both paths share `EVENTS`,
//! `CONFIG`, ...), appends the `.text` subprograms it calls, and issues `BPF_PROG_LOAD`
//! and `BPF_LINK_CREATE` directly.

use std::{
    collections::HashMap,
    ffi::CString,
    io,
    os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
    os::unix::ffi::OsStrExt as _,
    path::Path,
};

use object::{Object as _, ObjectSection as _, ObjectSymbol as _, RelocationTarget};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_KPROBE: u32 = 2;
const BPF_TRACE_UPROBE_MULTI: u32 = 48;
const BPF_F_UPROBE_MULTI_RETURN: u32 = 1;
const BPF_PSEUDO_MAP_FD: u8 = 1;
const BPF_PSEUDO_MAP_VALUE: u8 = 2;
const BPF_PSEUDO_CALL: u8 = 1;
/// `BPF_JMP | BPF_CALL`.
const CALL_OPCODE: u8 = 0x85;
const INSN_SIZE: usize = 8;

/// One BPF instruction, as the kernel reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct Insn {
    code: u8,
    /// dst register in the low nibble, src in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    fn set_src(&mut self, src: u8) {
        self.regs = (self.regs & 0x0f) | (src << 4);
    }

    fn src(&self) -> u8 {
        self.regs >> 4
    }
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

/// Why a program could not be prepared or loaded.
#[derive(Debug, thiserror::Error)]
pub enum MultiError {
    #[error("the eBPF object is malformed: {0}")]
    Object(String),
    #[error("the program refers to map '{0}', which was not created")]
    UnknownMap(String),
    #[error("the kernel refused the uprobe_multi program: {source}{log}")]
    Load { source: io::Error, log: String },
    #[error("creating the uprobe_multi link failed: {0}")]
    Link(#[source] io::Error),
}

impl MultiError {
    /// The errno of a failed link creation, to tell "kernel lacks uprobe_multi" from "one
    /// of these offsets cannot be probed".
    pub fn link_errno(&self) -> Option<i32> {
        match self {
            MultiError::Link(e) => e.raw_os_error(),
            _ => None,
        }
    }
}

/// Loads program `name` from the eBPF object `object` for uprobe_multi links, with its map
/// references bound to `maps` (map or data-section name -> fd).
pub fn load_program(
    object: &[u8],
    name: &str,
    maps: &HashMap<String, OwnedFd>,
) -> Result<OwnedFd, MultiError> {
    let bad = |what: String| MultiError::Object(what);
    let file = object::File::parse(object).map_err(|e| bad(e.to_string()))?;
    let symbol = file
        .symbols()
        .find(|s| s.name() == Ok(name))
        .ok_or_else(|| bad(format!("no program '{name}'")))?;
    let section_index = symbol
        .section_index()
        .ok_or_else(|| bad(format!("'{name}' has no section")))?;
    let section = file
        .section_by_index(section_index)
        .map_err(|e| bad(e.to_string()))?;
    let code = section.data().map_err(|e| bad(e.to_string()))?;
    let start = symbol.address() as usize;
    let end = start + symbol.size() as usize;
    let mut insns = decode(
        code.get(start..end)
            .ok_or_else(|| bad(format!("'{name}' lies outside its section")))?,
    );
    let text = file.section_by_name(".text");
    // The subprograms in .text (memcpy, memset, outlined helpers), as instruction ranges.
    let text_functions: Vec<(usize, usize)> = match &text {
        Some(text) => file
            .symbols()
            .filter(|s| {
                s.section_index() == Some(text.index())
                    && s.kind() == object::SymbolKind::Text
                    && s.size() > 0
            })
            .map(|s| {
                (
                    s.address() as usize / INSN_SIZE,
                    s.size() as usize / INSN_SIZE,
                )
            })
            .collect(),
        None => Vec::new(),
    };
    let text_code = match &text {
        Some(text) => decode(text.data().map_err(|e| bad(e.to_string()))?),
        None => Vec::new(),
    };

    // Relocate the program, then append each subprogram it (transitively) calls, once:
    // the verifier rejects code that nothing reaches.
    let mut calls = relocate(&file, &section, start..end, 0, &mut insns, maps)?;
    let mut placed: HashMap<usize, usize> = HashMap::new(); // .text start -> index in insns
    while let Some((at, target)) = calls.pop() {
        let &(function_start, len) = text_functions
            .iter()
            .find(|(s, l)| (*s..s + l).contains(&target))
            .ok_or_else(|| {
                bad(format!(
                    "call into .text at instruction {target}, outside any function"
                ))
            })?;
        let base = match placed.get(&function_start) {
            Some(&base) => base,
            None => {
                let base = insns.len();
                placed.insert(function_start, base);
                insns.extend_from_slice(
                    text_code
                        .get(function_start..function_start + len)
                        .ok_or_else(|| bad("subprogram outside .text".into()))?,
                );
                let text = text.as_ref().expect("text_functions came from it");
                let bytes = function_start * INSN_SIZE..(function_start + len) * INSN_SIZE;
                calls.extend(relocate(&file, text, bytes, base, &mut insns, maps)?);
                base
            }
        };
        let callee = base + (target - function_start);
        insns[at].imm = (callee as i64 - at as i64 - 1) as i32;
    }

    let license = CString::new("Dual MIT/GPL").expect("no NUL");
    let mut prog_name = [0u8; 16];
    for (slot, byte) in prog_name.iter_mut().zip(name.bytes().take(15)) {
        *slot = byte;
    }
    let load = |log: &mut Vec<u8>| {
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_KPROBE,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            expected_attach_type: BPF_TRACE_UPROBE_MULTI,
            prog_name,
            ..Default::default()
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
            // Load again with a verifier log, only to explain the failure.
            let mut log = vec![0u8; 1 << 20];
            let _ = load(&mut log);
            let text = String::from_utf8_lossy(&log);
            let tail: Vec<&str> = text.trim_end_matches('\0').lines().rev().take(3).collect();
            let log = if tail.is_empty() {
                String::new()
            } else {
                format!(
                    " (verifier: {})",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                )
            };
            Err(MultiError::Load { source, log })
        }
    }
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
    let license = CString::new("GPL").expect("no NUL");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_KPROBE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    bpf(BPF_PROG_LOAD, &mut attr).is_ok()
}

/// Applies the relocations of `section` within `bytes` to `insns` (where that code starts
/// at instruction `base`): map references get the fds in `maps`. Returns the calls into
/// .text still to place, as (instruction index in `insns`, callee's .text instruction).
fn relocate(
    file: &object::File<'_>,
    section: &object::Section<'_, '_>,
    bytes: std::ops::Range<usize>,
    base: usize,
    insns: &mut [Insn],
    maps: &HashMap<String, OwnedFd>,
) -> Result<Vec<(usize, usize)>, MultiError> {
    let bad = |what: String| MultiError::Object(what);
    let in_text = section.name() == Ok(".text");
    let mut calls = Vec::new();
    let mut relocated = std::collections::HashSet::new();
    for (offset, relocation) in section.relocations() {
        let offset = offset as usize;
        if !bytes.contains(&offset) {
            continue;
        }
        let index = base + (offset - bytes.start) / INSN_SIZE;
        let RelocationTarget::Symbol(target) = relocation.target() else {
            continue;
        };
        let target = file
            .symbol_by_index(target)
            .map_err(|e| bad(e.to_string()))?;
        let target_section = target
            .section_index()
            .and_then(|i| file.section_by_index(i).ok())
            .ok_or_else(|| {
                bad(format!(
                    "relocation to '{}' has no section",
                    target.name().unwrap_or("?")
                ))
            })?;
        let section_name = target_section.name().unwrap_or("");
        let insn = *insns
            .get(index)
            .ok_or_else(|| bad("relocation outside the code".into()))?;
        relocated.insert(index);
        if insn.code == CALL_OPCODE && insn.src() == BPF_PSEUDO_CALL {
            // libbpf's rule: callee = symbol's instruction index + imm + 1.
            let callee = (target.address() as usize / INSN_SIZE) as i64 + insn.imm as i64 + 1;
            calls.push((index, callee as usize));
        } else if section_name == "maps" {
            let map_name = target.name().map_err(|e| bad(e.to_string()))?;
            let fd = maps
                .get(map_name)
                .ok_or_else(|| MultiError::UnknownMap(map_name.to_owned()))?;
            insns[index].set_src(BPF_PSEUDO_MAP_FD);
            insns[index].imm = fd.as_raw_fd();
        } else if let Some(fd) = maps.get(section_name) {
            // A global in a data section: that section's map, at the symbol's offset plus
            // any constant offset the instruction pair already holds.
            let value_offset = target.address() as i64 + insn.imm as i64;
            insns[index].set_src(BPF_PSEUDO_MAP_VALUE);
            insns[index].imm = fd.as_raw_fd();
            let next = insns
                .get_mut(index + 1)
                .ok_or_else(|| bad("truncated ld_imm64".into()))?;
            next.imm = value_offset as i32;
        } else {
            return Err(bad(format!(
                "unsupported relocation to section '{section_name}'"
            )));
        }
    }
    // Calls between functions of .text that the linker left relative, without relocation.
    if in_text {
        let first = bytes.start / INSN_SIZE;
        for (n, insn) in insns[base..base + bytes.len() / INSN_SIZE]
            .iter()
            .enumerate()
        {
            if insn.code == CALL_OPCODE
                && insn.src() == BPF_PSEUDO_CALL
                && !relocated.contains(&(base + n))
            {
                let callee = (first + n) as i64 + insn.imm as i64 + 1;
                calls.push((base + n, callee as usize));
            }
        }
    }
    Ok(calls)
}

fn decode(code: &[u8]) -> Vec<Insn> {
    code.chunks_exact(INSN_SIZE)
        .map(|c| Insn {
            code: c[0],
            regs: c[1],
            off: i16::from_le_bytes([c[2], c[3]]),
            imm: i32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect()
}

/// Attaches `program` at every offset of `path` through one uprobe_multi link (a return
/// probe when `on_return`), tagging each with its cookie; only in `pid` when non-zero.
pub fn attach(
    program: BorrowedFd<'_>,
    path: &Path,
    offsets: &[u64],
    cookies: &[u64],
    on_return: bool,
    pid: u32,
) -> Result<OwnedFd, MultiError> {
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| MultiError::Link(io::Error::other(e)))?;
    let mut attr = UprobeMultiLinkAttr {
        prog_fd: program.as_raw_fd() as u32,
        attach_type: BPF_TRACE_UPROBE_MULTI,
        path: path.as_ptr() as u64,
        offsets: offsets.as_ptr() as u64,
        cookies: cookies.as_ptr() as u64,
        cnt: offsets.len() as u32,
        multi_flags: if on_return {
            BPF_F_UPROBE_MULTI_RETURN
        } else {
            0
        },
        pid,
        ..Default::default()
    };
    bpf(BPF_LINK_CREATE, &mut attr).map_err(MultiError::Link)
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

    #[test]
    fn decodes_little_endian_instructions() {
        let insns = decode(&[0x85, 0x10, 0x02, 0x00, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(insns.len(), 1);
        assert_eq!(
            (insns[0].code, insns[0].src(), insns[0].off, insns[0].imm),
            (CALL_OPCODE, 1, 2, -1)
        );
    }
}
