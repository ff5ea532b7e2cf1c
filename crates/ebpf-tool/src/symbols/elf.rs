//! Reads `.symtab` and `.dynsym` of one ELF file into a list of functions with the file
//! offsets a uprobe attaches to (libbpf's rule: offset = addr - p_vaddr + p_offset of the
//! executable PT_LOAD segment holding addr).

use std::{
    collections::HashMap,
    fs::File,
    ops::Range,
    path::{Path, PathBuf},
};

use object::{
    Endianness, Object as _, ObjectSymbol as _, elf,
    read::elf::{ElfFile64, ProgramHeader as _, Sym as _},
};

use super::{SymbolError, suggest};

/// Which table a symbol came from; errors name the tables they searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymbolSource {
    Symtab,
    Dynsym,
}

impl SymbolSource {
    pub fn name(self) -> &'static str {
        match self {
            SymbolSource::Symtab => ".symtab",
            SymbolSource::Dynsym => ".dynsym",
        }
    }
}

/// A function that can carry a uprobe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSymbol {
    pub name: String,
    /// Virtual address as linked (`st_value`).
    pub address: u64,
    pub size: u64,
    /// Where the function's first instruction lies in the file: what the kernel wants.
    pub file_offset: u64,
    /// A glibc IFUNC: `address` is the resolver, not the implementation that will run.
    pub ifunc: bool,
    pub source: SymbolSource,
}

/// The symbols of one ELF file.
#[derive(Debug)]
pub struct Symbols {
    path: PathBuf,
    /// Link-time address ranges of the executable segments.
    text: Vec<Range<u64>>,
    functions: Vec<FunctionSymbol>,
    /// Named symbols that are not functions, with what they are, for a precise error.
    non_functions: HashMap<String, &'static str>,
    searched: Vec<SymbolSource>,
}

/// An executable `PT_LOAD` segment: the address range it maps and where it starts in the file.
struct TextSegment {
    vaddr: u64,
    memsz: u64,
    offset: u64,
}

impl Symbols {
    /// Reads every function symbol of the ELF file at `path`.
    pub fn read(path: &Path) -> Result<Self, SymbolError> {
        let read_err = |source| SymbolError::Read {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(read_err)?;
        // SAFETY: the mapping is private and read-only; a file changed underneath us can
        // only give wrong symbols, which the ELF parser bounds-checks.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(read_err)?;
        Self::parse(path, &map)
    }

    /// Parses an ELF image already in memory; `path` is only used in messages.
    pub fn parse(path: &Path, data: &[u8]) -> Result<Self, SymbolError> {
        if !data.starts_with(&elf::ELFMAG) {
            return Err(SymbolError::NotElf {
                path: path.to_owned(),
            });
        }
        let malformed = |reason: String| SymbolError::Malformed {
            path: path.to_owned(),
            reason,
        };
        // e_ident[EI_CLASS], the fifth byte, says 32- or 64-bit.
        if data.get(4) != Some(&elf::ELFCLASS64) {
            return Err(malformed("only 64-bit ELF files are supported".into()));
        }
        let file = ElfFile64::<Endianness>::parse(data).map_err(|e| malformed(e.to_string()))?;
        let endian = file.endian();
        let segments: Vec<TextSegment> = file
            .elf_program_headers()
            .iter()
            .filter(|ph| ph.p_type(endian) == elf::PT_LOAD && ph.p_flags(endian) & elf::PF_X != 0)
            .map(|ph| TextSegment {
                vaddr: ph.p_vaddr(endian),
                memsz: ph.p_memsz(endian),
                offset: ph.p_offset(endian),
            })
            .collect();

        let mut symbols = Symbols {
            path: path.to_owned(),
            text: segments
                .iter()
                .map(|s| s.vaddr..s.vaddr + s.memsz)
                .collect(),
            functions: Vec::new(),
            non_functions: HashMap::new(),
            searched: Vec::new(),
        };
        let tables = [
            (SymbolSource::Symtab, file.symbols()),
            (SymbolSource::Dynsym, file.dynamic_symbols()),
        ];
        for (source, table) in tables {
            let mut any = false;
            for symbol in table {
                any = true;
                let raw = symbol.elf_symbol();
                if raw.st_shndx(endian) == elf::SHN_UNDEF {
                    continue; // an import, defined in another file
                }
                let Ok(name) = symbol.name() else { continue };
                if name.is_empty() {
                    continue;
                }
                let address = raw.st_value(endian);
                let kind = raw.st_type();
                if kind != elf::STT_FUNC && kind != elf::STT_GNU_IFUNC {
                    symbols
                        .non_functions
                        .entry(name.to_owned())
                        .or_insert(describe_type(kind));
                    continue;
                }
                let size = raw.st_size(endian);
                let Some(file_offset) = file_offset(&segments, address) else {
                    symbols
                        .non_functions
                        .entry(name.to_owned())
                        .or_insert("outside the code");
                    continue;
                };
                symbols.functions.push(FunctionSymbol {
                    name: name.to_owned(),
                    address,
                    size,
                    file_offset,
                    ifunc: kind == elf::STT_GNU_IFUNC,
                    source,
                });
            }
            if any {
                symbols.searched.push(source);
            }
        }
        // The same function often sits in both tables: keep one entry per (name, address).
        symbols
            .functions
            .sort_by(|a, b| (&a.name, a.address).cmp(&(&b.name, b.address)));
        symbols
            .functions
            .dedup_by(|a, b| a.name == b.name && a.address == b.address);
        Ok(symbols)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Link-time address ranges of the executable segments: where code of this file lies.
    pub fn text_ranges(&self) -> &[Range<u64>] {
        &self.text
    }

    /// Every function, sorted by name.
    pub fn functions(&self) -> &[FunctionSymbol] {
        &self.functions
    }

    /// The tables that had any symbols, for messages ("searched .symtab and .dynsym").
    pub fn searched(&self) -> String {
        match self.searched.as_slice() {
            [] => "no symbol tables: the file is stripped".into(),
            tables => tables
                .iter()
                .map(|t| t.name())
                .collect::<Vec<_>>()
                .join(" and "),
        }
    }

    /// The functions named exactly `wanted` (a version suffix such as `@@GLIBC_2.2.5` is
    /// ignored). Several distinct addresses come back when local functions share a name.
    pub fn lookup(&self, wanted: &str) -> Result<Vec<&FunctionSymbol>, SymbolError> {
        let name = wanted.split('@').next().unwrap_or(wanted);
        let found: Vec<&FunctionSymbol> =
            self.functions.iter().filter(|f| f.name == name).collect();
        if !found.is_empty() {
            return Ok(found);
        }
        if let Some(what) = self.non_functions.get(name) {
            return Err(SymbolError::NotAFunction {
                symbol: name.to_owned(),
                path: self.path.clone(),
                what,
            });
        }
        Err(SymbolError::NotFound {
            symbol: name.to_owned(),
            path: self.path.clone(),
            searched: self.searched(),
            suggestions: suggest::closest(name, self.functions.iter().map(|f| f.name.as_str())),
        })
    }
}

fn file_offset(segments: &[TextSegment], address: u64) -> Option<u64> {
    segments
        .iter()
        .find(|s| address >= s.vaddr && address - s.vaddr < s.memsz)
        .map(|s| address - s.vaddr + s.offset)
}

fn describe_type(st_type: u8) -> &'static str {
    match st_type {
        elf::STT_OBJECT => "a data object",
        elf::STT_TLS => "a thread-local variable",
        elf::STT_SECTION => "a section",
        elf::STT_FILE => "a file name",
        elf::STT_COMMON => "a common block",
        _ => "not typed as a function",
    }
}
