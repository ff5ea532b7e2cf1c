//! Reads one ELF image: its executable segments, its function symbols (`.symtab`,
//! `.dynsym`) and the pointers to more symbols elsewhere (build id, `.gnu_debuglink`,
//! MiniDebugInfo in `.gnu_debugdata`). Everything is bounds-checked by `object`: a
//! malformed file gives an error, never a panic.

use std::ops::Range;

use object::{
    Endianness, Object as _, ObjectSection as _, ReadRef, elf,
    read::elf::{
        ElfFile64, FileHeader as _, ProgramHeader as _, SectionHeader as _, Sym as _, SymbolTable,
    },
};

/// One symbol as a table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSymbol {
    pub name: String,
    pub address: u64,
    pub size: u64,
    /// `STT_*`.
    pub kind: u8,
}

/// Where more symbols for this file may be found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DebugPointers {
    /// `NT_GNU_BUILD_ID`, used by /usr/lib/debug/.build-id/xx/yyyy.debug.
    pub build_id: Option<Vec<u8>>,
    /// `.gnu_debuglink`: a debug file's name and the CRC32 of its contents.
    pub debuglink: Option<(String, u32)>,
    /// `.gnu_debugdata`: an xz-compressed ELF holding a `.symtab` (MiniDebugInfo).
    pub debugdata: Option<Vec<u8>>,
}

/// What one ELF image holds.
#[derive(Debug, Default)]
pub struct ElfContents {
    /// Link-time address ranges of executable `PT_LOAD` segments, with their file offsets.
    pub text: Vec<(Range<u64>, u64)>,
    pub symtab: Vec<RawSymbol>,
    pub dynsym: Vec<RawSymbol>,
    pub pointers: DebugPointers,
    /// Built by the Go toolchain (it leaves `.go.buildinfo` / `.gopclntab`).
    pub go: bool,
    /// What unwinds through this code, when it uses a language's unwinding personality:
    /// "C++ exception" (`__gxx_personality_v0`) or "Rust panic" (`rust_eh_personality`).
    pub unwinds: Option<&'static str>,
    /// `e_machine`: which instruction set the code is for (`EM_X86_64`, `EM_AARCH64`).
    pub machine: u16,
    /// A Go program's function table (`.gopclntab`), which stripping leaves.
    pub go_functions: Vec<super::golang::GoFunction>,
    /// The Go version it was built with, when recorded.
    pub go_version: Option<super::golang::GoVersion>,
}

/// Why an image could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElfError {
    NotElf,
    Malformed(String),
}

/// Parses an ELF image: in memory, or read piece by piece from a file (`object::ReadCache`),
/// which a file truncated underneath turns into an error rather than the SIGBUS a mapping
/// would raise.
pub fn parse<'data, R: ReadRef<'data>>(data: R) -> Result<ElfContents, ElfError> {
    let ident = data.read_bytes_at(0, 5).map_err(|()| ElfError::NotElf)?;
    if !ident.starts_with(&elf::ELFMAG) {
        return Err(ElfError::NotElf);
    }
    // e_ident[EI_CLASS], the fifth byte, says 32- or 64-bit.
    if ident[4] != elf::ELFCLASS64 {
        return Err(ElfError::Malformed(
            "only 64-bit ELF files are supported".into(),
        ));
    }
    let file =
        ElfFile64::<Endianness, R>::parse(data).map_err(|e| ElfError::Malformed(e.to_string()))?;
    let endian = file.endian();
    let machine = file.elf_header().e_machine(endian);
    let text = file
        .elf_program_headers()
        .iter()
        .filter(|ph| ph.p_type(endian) == elf::PT_LOAD && ph.p_flags(endian) & elf::PF_X != 0)
        .map(|ph| {
            let start = ph.p_vaddr(endian);
            (
                start..start.saturating_add(ph.p_memsz(endian)),
                ph.p_offset(endian),
            )
        })
        .collect();
    let sections = file.elf_section_table();
    // Each table's names are read as one block: name by name through a `ReadCache`, the
    // 80,000 symbols of a large library took a second.
    let table = |symbols: &SymbolTable<'data, elf::FileHeader64<Endianness>, R>| {
        let strings = sections
            .section(symbols.string_section())
            .ok()
            .and_then(|section| section.data(endian, data).ok())
            .unwrap_or(&[]);
        let name_of = |raw: &elf::Sym64<Endianness>| -> Option<&str> {
            let rest = strings.get(raw.st_name(endian) as usize..)?;
            let name = &rest[..rest.iter().position(|&b| b == 0)?];
            std::str::from_utf8(name).ok().filter(|n| !n.is_empty())
        };
        let mut unwinds = None;
        let defined = symbols
            .symbols()
            .iter()
            .filter_map(|raw| {
                let name = name_of(raw)?;
                // Imports count here: a program that only references the personality
                // routine still has frames unwound through by exceptions thrown elsewhere.
                match name {
                    "__gxx_personality_v0" => unwinds = unwinds.or(Some("C++ exception")),
                    "rust_eh_personality" => unwinds = unwinds.or(Some("Rust panic")),
                    _ => {}
                }
                if raw.st_shndx(endian) == elf::SHN_UNDEF {
                    return None; // an import, defined in another file
                }
                Some(RawSymbol {
                    name: name.to_owned(),
                    address: raw.st_value(endian),
                    size: raw.st_size(endian),
                    kind: raw.st_type(),
                })
            })
            .collect::<Vec<_>>();
        (defined, unwinds)
    };
    let (symtab, symtab_unwinds) = table(file.elf_symbol_table());
    let (dynsym, dynsym_unwinds) = table(file.elf_dynamic_symbol_table());
    let pointers = DebugPointers {
        build_id: file.build_id().ok().flatten().map(<[u8]>::to_vec),
        debuglink: file
            .gnu_debuglink()
            .ok()
            .flatten()
            .and_then(|(name, crc)| Some((std::str::from_utf8(name).ok()?.to_owned(), crc))),
        debugdata: file
            .section_by_name(".gnu_debugdata")
            .and_then(|section| section.data().ok())
            .map(<[u8]>::to_vec),
    };
    let go = [".go.buildinfo", ".gopclntab", ".note.go.buildid"]
        .iter()
        .any(|name| file.section_by_name(name).is_some());
    let section = |name: &str| file.section_by_name(name).and_then(|s| s.data().ok());
    let go_functions = section(".gopclntab")
        .map(super::golang::functions)
        .unwrap_or_default();
    let read_at = |address: u64, len: usize| -> Option<Vec<u8>> {
        file.sections().find_map(|s| {
            let start = s.address();
            if address < start || address.checked_add(len as u64)? > start + s.size() {
                return None;
            }
            let at = (address - start) as usize;
            Some(s.data().ok()?.get(at..at + len)?.to_vec())
        })
    };
    let go_version =
        section(".go.buildinfo").and_then(|info| super::golang::version(info, read_at));
    let unwinds = symtab_unwinds.or(dynsym_unwinds);
    Ok(ElfContents {
        text,
        symtab,
        dynsym,
        pointers,
        go,
        unwinds,
        machine,
        go_functions,
        go_version,
    })
}

/// The file offset of a link-time address, if an executable segment maps it.
pub fn file_offset(text: &[(Range<u64>, u64)], address: u64) -> Option<u64> {
    text.iter()
        .find(|(range, _)| range.contains(&address))
        .map(|(range, offset)| address - range.start + offset)
}
