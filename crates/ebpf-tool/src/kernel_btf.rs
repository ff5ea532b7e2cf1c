//! Where the running kernel keeps a task's ids and comm: the offsets of `tgid`, `pid` and
//! `comm` in its `struct task_struct`, read from its BTF (/sys/kernel/btf/vmlinux).
//!
//! With them the kernel programs read those fields with plain loads through the task's BTF
//! pointer (the verifier checks each load against the same BTF) instead of one helper call
//! each; on this machine that is most of a record's cost besides the ring buffer itself.
//!
//! A scanner rather than aya's `Btf`: that parses all ~6 MB into types and names (~50 ms,
//! ~10 MB); walking the type section for one struct takes about a millisecond. Since Linux
//! 6.16 the file can be mapped, which costs nothing; before, it is read (sysfs hands it out
//! 4 KiB per call: ~10 ms). It is read on its own thread while the target's symbols are
//! (`start_reading`).

use std::{fs::File, ops::Deref, path::Path, sync::OnceLock};

/// The kernel's BTF, as the kernel exports it.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const BTF_MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;
const TYPE_HEADER_LEN: usize = 12;

// BTF_KIND_* values, from include/uapi/linux/btf.h.
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// Byte offsets of the fields the kernel programs read from the current task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskFields {
    pub tgid: u32,
    pub pid: u32,
    pub comm: u32,
}

/// The BTF ids of the kernel functions uprobe session programs call (Linux 6.13+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionKfuncs {
    pub is_return: u32,
    pub cookie: u32,
}

/// What the programs need to know of the running kernel, read in one pass over its BTF.
#[derive(Debug, Clone, Copy, Default)]
struct Facts {
    task_fields: Option<TaskFields>,
    session_kfuncs: Option<SessionKfuncs>,
}

static FACTS: OnceLock<Facts> = OnceLock::new();

/// Starts reading the running kernel's BTF on another thread, so `task_fields` and
/// `session_kfuncs` find it read.
pub fn start_reading() {
    std::thread::spawn(|| FACTS.get_or_init(read_facts));
}

/// The running kernel's offsets, or `None` when it has no BTF or its `task_struct` does not
/// look as expected (then the programs use helpers, which always work). Waits for
/// `start_reading`'s thread if it is still at it; the file is closed when this returns.
pub fn task_fields() -> Option<TaskFields> {
    FACTS.get_or_init(read_facts).task_fields
}

/// The ids of `bpf_session_is_return` and `bpf_session_cookie`, or `None` when the
/// kernel has no such functions (then entries and returns are paired in maps).
pub fn session_kfuncs() -> Option<SessionKfuncs> {
    FACTS.get_or_init(read_facts).session_kfuncs
}

/// The file's bytes: mapped where the kernel allows it, else read.
enum Contents {
    Mapped(memmap2::Mmap),
    Read(Vec<u8>),
}

impl Deref for Contents {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Contents::Mapped(map) => map,
            Contents::Read(bytes) => bytes,
        }
    }
}

fn read_facts() -> Facts {
    let Ok(file) = File::open(Path::new(VMLINUX_BTF)) else {
        return Facts::default();
    };
    // SAFETY: a private read-only mapping of a file nobody writes (the kernel's own BTF).
    let contents = match unsafe { memmap2::MmapOptions::new().map_copy_read_only(&file) } {
        Ok(map) => Contents::Mapped(map),
        Err(_) => match std::fs::read(VMLINUX_BTF) {
            Ok(bytes) => Contents::Read(bytes),
            Err(_) => return Facts::default(),
        },
    };
    match Btf::parse(&contents) {
        Some(btf) => Facts {
            task_fields: task_fields_in(&btf),
            session_kfuncs: session_kfuncs_in(&btf),
        },
        None => Facts::default(),
    }
}

/// Finds the session kfuncs among raw BTF's functions.
pub fn parse_session_kfuncs(raw: &[u8]) -> Option<SessionKfuncs> {
    session_kfuncs_in(&Btf::parse(raw)?)
}

fn session_kfuncs_in(btf: &Btf) -> Option<SessionKfuncs> {
    let (mut is_return, mut cookie) = (None, None);
    for (index, &at) in btf.starts.iter().enumerate() {
        let header = btf.header_at(at as usize)?;
        if header.kind != KIND_FUNC {
            continue;
        }
        let id = u32::try_from(index + 1).ok()?;
        match btf.name(header.name_off) {
            Some(b"bpf_session_is_return") => is_return = Some(id),
            Some(b"bpf_session_cookie") => cookie = Some(id),
            _ => continue,
        }
        if let (Some(is_return), Some(cookie)) = (is_return, cookie) {
            return Some(SessionKfuncs { is_return, cookie });
        }
    }
    None
}

/// One type's header in the type section.
#[derive(Clone, Copy)]
struct TypeHeader {
    name_off: u32,
    kind: u32,
    vlen: usize,
    kind_flag: bool,
    /// `size` for structs, unions and ints; `type` for references.
    size_or_type: u32,
}

struct Btf<'a> {
    types: &'a [u8],
    strings: &'a [u8],
    /// Where each type starts in `types`, by id - 1 (id 0 is `void`, not stored).
    starts: Vec<u32>,
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

impl<'a> Btf<'a> {
    fn parse(btf: &'a [u8]) -> Option<Btf<'a>> {
        let magic = u16::from_ne_bytes(btf.get(0..2)?.try_into().ok()?);
        if magic != BTF_MAGIC {
            return None;
        }
        let hdr_len = u32_at(btf, 4)? as usize;
        if hdr_len < HEADER_LEN {
            return None;
        }
        let section = |off_at: usize, len_at: usize| -> Option<&'a [u8]> {
            let start = hdr_len.checked_add(u32_at(btf, off_at)? as usize)?;
            btf.get(start..start.checked_add(u32_at(btf, len_at)? as usize)?)
        };
        let types = section(8, 12)?;
        let strings = section(16, 20)?;
        let mut btf = Btf {
            types,
            strings,
            starts: Vec::with_capacity(types.len() / 32),
        };
        let mut at = 0;
        while at < types.len() {
            let header = btf.header_at(at)?;
            btf.starts.push(u32::try_from(at).ok()?);
            at = at
                .checked_add(TYPE_HEADER_LEN)?
                .checked_add(trailing_len(header)?)?;
        }
        Some(btf)
    }

    fn header_at(&self, at: usize) -> Option<TypeHeader> {
        let info = u32_at(self.types, at + 4)?;
        Some(TypeHeader {
            name_off: u32_at(self.types, at)?,
            kind: (info >> 24) & 0x1f,
            vlen: (info & 0xffff) as usize,
            kind_flag: info >> 31 != 0,
            size_or_type: u32_at(self.types, at + 8)?,
        })
    }

    fn name(&self, name_off: u32) -> Option<&'a [u8]> {
        let rest = self.strings.get(name_off as usize..)?;
        Some(&rest[..rest.iter().position(|&b| b == 0)?])
    }

    /// Start of type `id`'s header; `None` for `void` and unknown ids.
    fn start_of(&self, id: u32) -> Option<usize> {
        Some(*self.starts.get((id as usize).checked_sub(1)?)? as usize)
    }

    /// Type `id` with typedefs and qualifiers looked through.
    fn resolve(&self, mut id: u32) -> Option<(usize, TypeHeader)> {
        for _ in 0..16 {
            let at = self.start_of(id)?;
            let header = self.header_at(at)?;
            match header.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = header.size_or_type
                }
                _ => return Some((at, header)),
            }
        }
        None
    }

    /// Whether type `id` is a 4-byte integer (what `pid_t` is).
    fn is_int32(&self, id: u32) -> bool {
        self.resolve(id)
            .is_some_and(|(_, h)| h.kind == KIND_INT && h.size_or_type == 4)
    }

    /// Whether type `id` is an array of `len` one-byte integers (`char comm[16]`).
    fn is_byte_array(&self, id: u32, len: u32) -> bool {
        let Some((at, header)) = self.resolve(id) else {
            return false;
        };
        let element = u32_at(self.types, at + TYPE_HEADER_LEN);
        let nelems = u32_at(self.types, at + TYPE_HEADER_LEN + 8);
        header.kind == KIND_ARRAY
            && nelems == Some(len)
            && element.is_some_and(|e| {
                self.resolve(e)
                    .is_some_and(|(_, h)| h.kind == KIND_INT && h.size_or_type == 1)
            })
    }
}

/// Bytes that follow a type's header, by kind (include/uapi/linux/btf.h).
fn trailing_len(header: TypeHeader) -> Option<usize> {
    let vlen = header.vlen;
    Some(match header.kind {
        KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
        KIND_ARRAY => 12,
        KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
        KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
        KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
        | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
        _ => return None, // a kind newer than this code: its length is unknown
    })
}

/// Finds `task_struct` in raw BTF and checks the three fields' types: `tgid` and `pid`
/// 4-byte integers at 4-byte offsets, `comm` 16 bytes at an 8-byte offset (the programs
/// copy it in two 8-byte loads).
pub fn parse_task_fields(raw: &[u8]) -> Option<TaskFields> {
    task_fields_in(&Btf::parse(raw)?)
}

fn task_fields_in(btf: &Btf) -> Option<TaskFields> {
    for &at in &btf.starts {
        let at = at as usize;
        let header = btf.header_at(at)?;
        if header.kind != KIND_STRUCT || btf.name(header.name_off) != Some(b"task_struct") {
            continue;
        }
        let (mut tgid, mut pid, mut comm) = (None, None, None);
        for member in 0..header.vlen {
            let m = at + TYPE_HEADER_LEN + 12 * member;
            let name = btf.name(u32_at(btf.types, m)?)?;
            let type_id = u32_at(btf.types, m + 4)?;
            let raw_offset = u32_at(btf.types, m + 8)?;
            let (bits, bitfield) = if header.kind_flag {
                (raw_offset & 0xff_ffff, raw_offset >> 24 != 0)
            } else {
                (raw_offset, false)
            };
            if bitfield || !bits.is_multiple_of(8) {
                continue;
            }
            let offset = bits / 8;
            match name {
                b"tgid" if offset.is_multiple_of(4) && btf.is_int32(type_id) => tgid = Some(offset),
                b"pid" if offset.is_multiple_of(4) && btf.is_int32(type_id) => pid = Some(offset),
                b"comm" if offset.is_multiple_of(8) && btf.is_byte_array(type_id, 16) => {
                    comm = Some(offset)
                }
                _ => {}
            }
        }
        return Some(TaskFields {
            tgid: tgid?,
            pid: pid?,
            comm: comm?,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds raw BTF from (name, info, size_or_type, trailing words) types.
    struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
    }

    impl Builder {
        fn new() -> Builder {
            Builder {
                types: Vec::new(),
                strings: vec![0],
            }
        }

        fn name(&mut self, name: &str) -> u32 {
            let off = self.strings.len() as u32;
            self.strings.extend(name.as_bytes());
            self.strings.push(0);
            off
        }

        fn push(&mut self, name: &str, kind: u32, vlen: u32, size_or_type: u32, words: &[u32]) {
            let name_off = if name.is_empty() { 0 } else { self.name(name) };
            for word in [name_off, kind << 24 | vlen, size_or_type]
                .iter()
                .chain(words)
            {
                self.types.extend(word.to_ne_bytes());
            }
        }

        fn build(&self) -> Vec<u8> {
            let mut raw = Vec::new();
            raw.extend(BTF_MAGIC.to_ne_bytes());
            raw.extend([1u8, 0]);
            for word in [
                HEADER_LEN as u32,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strings.len() as u32,
            ] {
                raw.extend(word.to_ne_bytes());
            }
            raw.extend(&self.types);
            raw.extend(&self.strings);
            raw
        }
    }

    /// ids: 1 int, 2 char, 3 pid_t, 4 char[16], 5 task_struct.
    fn kernel_like(comm_bits: u32) -> Vec<u8> {
        let mut b = Builder::new();
        b.push("int", KIND_INT, 0, 4, &[32]);
        b.push("char", KIND_INT, 0, 1, &[8]);
        b.push("pid_t", KIND_TYPEDEF, 0, 1, &[]);
        b.push("", KIND_ARRAY, 0, 0, &[2, 1, 16]);
        let (state, pid, tgid, comm) = (
            b.name("__state"),
            b.name("pid"),
            b.name("tgid"),
            b.name("comm"),
        );
        b.push(
            "task_struct",
            KIND_STRUCT,
            4,
            4096,
            &[
                state,
                1,
                0,
                pid,
                3,
                2464 * 8,
                tgid,
                3,
                2468 * 8,
                comm,
                4,
                comm_bits,
            ],
        );
        b.build()
    }

    #[test]
    fn finds_the_fields_of_task_struct() {
        assert_eq!(
            parse_task_fields(&kernel_like(3016 * 8)),
            Some(TaskFields {
                tgid: 2468,
                pid: 2464,
                comm: 3016
            })
        );
    }

    #[test]
    fn refuses_a_comm_it_cannot_copy_in_two_loads() {
        assert_eq!(parse_task_fields(&kernel_like(3012 * 8)), None);
    }

    #[test]
    fn refuses_what_is_not_btf() {
        assert_eq!(parse_task_fields(b""), None);
        assert_eq!(parse_task_fields(&[0u8; 64]), None);
        let mut truncated = kernel_like(3016 * 8);
        truncated.truncate(40);
        assert_eq!(parse_task_fields(&truncated), None);
    }

    /// The running kernel's own BTF, when it has one: the offsets are where its comm is.
    #[test]
    fn reads_the_running_kernel() {
        if !Path::new(VMLINUX_BTF).exists() {
            return; // no BTF here: the programs use helpers
        }
        let fields = task_fields().expect("task_struct in the kernel's BTF");
        assert!(
            fields.comm.is_multiple_of(8)
                && fields.pid.is_multiple_of(4)
                && fields.tgid.is_multiple_of(4)
        );
        assert_ne!(fields.pid, fields.tgid);
    }

    #[test]
    fn finds_the_session_kfuncs_by_name() {
        let mut b = Builder::new();
        b.push("int", KIND_INT, 0, 4, &[32]);
        for name in ["bpf_session_cookie", "other", "bpf_session_is_return"] {
            b.push(name, KIND_FUNC, 0, 1, &[]);
        }
        assert_eq!(
            parse_session_kfuncs(&b.build()),
            Some(SessionKfuncs {
                is_return: 4,
                cookie: 2
            })
        );
    }
}
