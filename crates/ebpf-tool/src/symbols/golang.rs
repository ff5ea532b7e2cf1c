//! What a Go binary says about itself: its Go version (`.go.buildinfo`) and its function
//! table (`.gopclntab`: every function's name, entry and end, and whether it is written
//! in assembly). The table survives `strip` and `-ldflags='-s -w'`, so stripped Go
//! programs (Debian's own `go` command) can be traced by name; the version and the
//! assembly flag decide each function's calling convention: Go 1.17+ passes integer
//! arguments in registers (ABIInternal), assembly functions keep the stack (ABI0).
//!
//! Layouts read: Go 1.16-1.17 (magic 0xfffffffa), 1.18-1.19 (0xfffffff0), 1.20+
//! (0xfffffff1). Every read is bounds-checked: a malformed table gives fewer names, never
//! a panic.

/// One function of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoFunction {
    pub name: String,
    /// Link-time address of its entry.
    pub entry: u64,
    /// Where the next function starts: its code ends before.
    pub end: u64,
    /// Written in assembly: called with the stack ABI (ABI0).
    pub assembly: bool,
}

/// A Go release, as (major, minor): (1, 19).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoVersion(pub u32, pub u32);

impl GoVersion {
    /// Go 1.17 brought the register-based calling convention to amd64.
    pub fn passes_registers(self) -> bool {
        self >= GoVersion(1, 17)
    }
}

const MAGIC_116: u32 = 0xffff_fffa;
const MAGIC_118: u32 = 0xffff_fff0;
const MAGIC_120: u32 = 0xffff_fff1;
/// `_func.flag`: the function is written in assembly.
const FUNC_FLAG_ASM: u8 = 4;

/// A bounds-checked little-endian reader over a byte slice.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&self, at: usize) -> Option<u8> {
        self.0.get(at).copied()
    }
    fn u32(&self, at: usize) -> Option<u32> {
        Some(u32::from_le_bytes(self.0.get(at..at + 4)?.try_into().ok()?))
    }
    fn u64(&self, at: usize) -> Option<u64> {
        Some(u64::from_le_bytes(self.0.get(at..at + 8)?.try_into().ok()?))
    }
    fn word(&self, at: usize, size: usize) -> Option<u64> {
        match size {
            8 => self.u64(at),
            4 => self.u32(at).map(u64::from),
            _ => None,
        }
    }
    fn cstr(&self, at: usize) -> Option<&str> {
        let rest = self.0.get(at..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&rest[..end]).ok()
    }
}

/// The functions of a `.gopclntab` section's contents; empty when it is not one this
/// reads. `text_start` is the address of `.text`, for tables older than Go 1.18 that do
/// not record it (unused otherwise).
pub fn functions(table: &[u8]) -> Vec<GoFunction> {
    parse(table).unwrap_or_default()
}

fn parse(table: &[u8]) -> Option<Vec<GoFunction>> {
    let b = Bytes(table);
    let magic = b.u32(0)?;
    let ptr = b.u8(7)? as usize;
    if b.u8(4)? != 0 || b.u8(5)? != 0 || !(ptr == 4 || ptr == 8) {
        return None;
    }
    let word = |i: usize| b.word(8 + i * ptr, ptr);
    let nfunc = word(0)? as usize;
    // Header words after nfunc: [nfiles, textStart (1.18+), funcnameOffset, cuOffset,
    // filetabOffset, pctabOffset, pclnOffset].
    let (text_start, funcname_off, pcln_off, entry_is_offset) = match magic {
        MAGIC_118 | MAGIC_120 => (word(2)?, word(3)? as usize, word(7)? as usize, true),
        MAGIC_116 => (0, word(2)? as usize, word(6)? as usize, false),
        _ => return None,
    };
    // functab: nfunc + 1 (entry, funcoff) pairs, 32-bit each since 1.18, words before.
    let pair = if entry_is_offset { 8 } else { 2 * ptr };
    if nfunc == 0 || nfunc > table.len() / pair {
        return None;
    }
    let entry = |i: usize| -> Option<(u64, usize)> {
        let at = pcln_off + i * pair;
        if entry_is_offset {
            Some((text_start + b.u32(at)? as u64, b.u32(at + 4)? as usize))
        } else {
            Some((b.word(at, ptr)?, b.word(at + ptr, ptr)? as usize))
        }
    };
    let mut functions = Vec::with_capacity(nfunc);
    for i in 0..nfunc {
        let Some((start, func_off)) = entry(i) else {
            break;
        };
        let Some((end, _)) = entry(i + 1) else {
            break;
        };
        // _func: entry (uint32 since 1.18, a word before), nameOff int32, ... flag.
        let func = pcln_off + func_off;
        let (name_at, flag_at) = if entry_is_offset {
            // entryOff, nameOff, args, deferreturn, pcsp, pcfile, pcln, npcdata, cuOffset
            // (, startLine since 1.20), funcID, flag.
            let flag = if magic == MAGIC_120 {
                func + 41
            } else {
                func + 37
            };
            (func + 4, Some(flag))
        } else {
            (func + ptr, None)
        };
        let Some(name_off) = b.u32(name_at) else {
            continue;
        };
        let Some(name) = b.cstr(funcname_off + name_off as usize) else {
            continue;
        };
        if name.is_empty() || end < start {
            continue;
        }
        let assembly = flag_at
            .and_then(|at| b.u8(at))
            .is_some_and(|flag| flag & FUNC_FLAG_ASM != 0);
        functions.push(GoFunction {
            name: name.to_owned(),
            entry: start,
            end,
            assembly,
        });
    }
    Some(functions)
}

/// The Go version recorded in `.go.buildinfo` (Go 1.18+ keeps it inline; older ones
/// point at it, and `read_at` reads memory at a link-time address), if readable.
pub fn version(
    buildinfo: &[u8],
    read_at: impl Fn(u64, usize) -> Option<Vec<u8>>,
) -> Option<GoVersion> {
    const MAGIC: &[u8] = b"\xff Go buildinf:";
    if !buildinfo.starts_with(MAGIC) {
        return None;
    }
    let b = Bytes(buildinfo);
    let ptr = b.u8(14)? as usize;
    let flags = b.u8(15)?;
    let text = if flags & 2 != 0 {
        // Inline: a varint length, then the bytes, at offset 32.
        let len = b.u8(32)? as usize;
        buildinfo.get(33..33 + len)?.to_vec()
    } else {
        // A pointer to a Go string header (data pointer, length).
        let header = read_at(b.word(16, ptr)?, 2 * ptr)?;
        let header = Bytes(&header);
        read_at(header.word(0, ptr)?, header.word(ptr, ptr)? as usize)?
    };
    parse_version(std::str::from_utf8(&text).ok()?)
}

/// "go1.19.8" -> (1, 19).
fn parse_version(text: &str) -> Option<GoVersion> {
    let rest = text.strip_prefix("go")?;
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    Some(GoVersion(
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Go 1.18-style table with two functions, the second in assembly.
    fn table_118() -> Vec<u8> {
        let mut t = vec![0u8; 0x200];
        t[0..4].copy_from_slice(&MAGIC_118.to_le_bytes());
        t[6] = 1; // minLC
        t[7] = 8; // ptrSize
        let put =
            |t: &mut Vec<u8>, at: usize, v: u64| t[at..at + 8].copy_from_slice(&v.to_le_bytes());
        put(&mut t, 8, 2); // nfunc
        put(&mut t, 24, 0x401000); // textStart
        put(&mut t, 32, 0x100); // funcnameOffset
        put(&mut t, 64, 0x60); // pclnOffset, past the header's 9 words
        let put32 =
            |t: &mut Vec<u8>, at: usize, v: u32| t[at..at + 4].copy_from_slice(&v.to_le_bytes());
        // functab at 0x60: (0x0, 0x20), (0x30, 0x50), end (0x80, 0)
        for (i, (entry, off)) in [(0u32, 0x20u32), (0x30, 0x50), (0x80, 0)]
            .iter()
            .enumerate()
        {
            put32(&mut t, 0x60 + 8 * i, *entry);
            put32(&mut t, 0x64 + 8 * i, *off);
        }
        // _func at pcln + 0x20 and + 0x50: nameOff at +4, flag at +37.
        put32(&mut t, 0x80 + 4, 0);
        put32(&mut t, 0xb0 + 4, 10);
        t[0xb0 + 37] = FUNC_FLAG_ASM;
        t[0x100..0x10a].copy_from_slice(b"main.main\0");
        t[0x10a..0x118].copy_from_slice(b"runtime.memm\0\0");
        t
    }

    #[test]
    fn reads_names_bounds_and_the_assembly_flag() {
        let functions = functions(&table_118());
        assert_eq!(
            functions,
            [
                GoFunction {
                    name: "main.main".into(),
                    entry: 0x401000,
                    end: 0x401030,
                    assembly: false
                },
                GoFunction {
                    name: "runtime.memm".into(),
                    entry: 0x401030,
                    end: 0x401080,
                    assembly: true
                },
            ]
        );
    }

    #[test]
    fn garbage_gives_nothing_and_never_panics() {
        assert!(functions(b"").is_empty());
        assert!(functions(&[0xff; 64]).is_empty());
        let table = table_118();
        for len in 0..table.len() {
            let _ = functions(&table[..len]);
        }
        let mut huge = table_118();
        huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(functions(&huge).is_empty());
    }

    #[test]
    fn versions() {
        let mut info = b"\xff Go buildinf:\x08\x02".to_vec();
        info.resize(32, 0);
        info.push(8);
        info.extend_from_slice(b"go1.19.8");
        assert_eq!(version(&info, |_, _| None), Some(GoVersion(1, 19)));
        assert!(GoVersion(1, 19).passes_registers());
        assert!(!GoVersion(1, 16).passes_registers());
        assert_eq!(parse_version("go1.21rc2"), Some(GoVersion(1, 21)));
        assert_eq!(version(b"nope", |_, _| None), None);
    }
}
