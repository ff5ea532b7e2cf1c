//! File -> function offsets: reads an ELF file's symbols from everywhere they may be
//! (`.symtab`, `.dynsym`, MiniDebugInfo, separate debug files), demangles them, and
//! resolves what a user writes as FUNCTION (a name, a demangled C++ or Rust path, a glob,
//! `FUNC+OFFSET`, an address) to the file offsets the kernel puts uprobes on.

mod code;
mod debuginfo;
mod demangle;
mod elf;
pub mod exits;
mod go_symbols;
pub mod golang;
mod ifunc;
pub mod probe_site;
mod resolve;
mod same_code;

use std::{
    ops::Range,
    path::{Path, PathBuf},
};

use object::ReadCache;

pub use code::{NoReturnSites, ReturnSites};
pub use debuginfo::DEBUG_ROOT;
use demangle::demangle_all;
pub use demangle::{demangle, without_parameters};
pub use resolve::Resolution;

/// Where a symbol was found; errors name the sources they searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SymbolSource {
    Symtab,
    Dynsym,
    MiniDebugInfo,
    DebugFile,
    /// A Go program's own function table (`.gopclntab`).
    GoPclntab,
    /// A USDT probe's note (`.note.stapsdt`).
    UsdtNote,
}

impl SymbolSource {
    pub fn name(self) -> &'static str {
        match self {
            SymbolSource::Symtab => ".symtab",
            SymbolSource::Dynsym => ".dynsym",
            SymbolSource::MiniDebugInfo => "MiniDebugInfo (.gnu_debugdata)",
            SymbolSource::DebugFile => "the separate debug file",
            SymbolSource::GoPclntab => "Go's function table (.gopclntab)",
            SymbolSource::UsdtNote => "USDT notes (.note.stapsdt)",
        }
    }
}

/// A place to put a probe: a function, and how far into it (0 = its entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSymbol {
    /// The name as the symbol table has it (mangled for C++ and Rust).
    pub name: String,
    /// The readable name when `name` is mangled.
    pub demangled: Option<String>,
    /// Link-time address of the probe point.
    pub address: u64,
    pub size: u64,
    /// Where the probe point lies in the file: what the kernel wants.
    pub file_offset: u64,
    /// Bytes from the function's start to the probe point (`FUNC+OFFSET`).
    pub offset_in_function: u64,
    /// A glibc IFUNC whose implementation was resolved (`file_offset` is the
    /// implementation's, not the resolver's).
    pub ifunc: bool,
    pub source: SymbolSource,
    /// How it takes its arguments and returns.
    pub call: CallConv,
}

/// A function's calling convention, which decides where `-a N` and the return value are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallConv {
    /// The platform's C ABI (System V on x86-64).
    #[default]
    C,
    /// Go's register ABI (ABIInternal, Go 1.17+ on amd64): integer words in RAX, RBX,
    /// RCX, RDI, RSI, R8-R11, the goroutine in R14.
    GoRegisters,
    /// Go's stack ABI (ABI0): assembly functions, and all functions before Go 1.17.
    GoStack,
    /// A USDT site: each argument where its note says (`Targets::usdt_args`).
    Usdt,
}

impl FunctionSymbol {
    /// The name to show: demangled when mangled, with `+0x..` when inside the function.
    pub fn label(&self) -> String {
        let name = self.demangled.as_deref().unwrap_or(&self.name);
        match self.offset_in_function {
            0 => name.to_owned(),
            offset => format!("{name}+{offset:#x}"),
        }
    }

    /// True when the probe sits on the function's first instruction.
    pub fn at_entry(&self) -> bool {
        self.offset_in_function == 0
    }
}

/// Why a function could not be resolved to a probe-able offset.
#[derive(Debug, thiserror::Error)]
pub enum SymbolError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not an ELF file")]
    NotElf { path: PathBuf },
    #[error("{path} is a malformed or unsupported ELF file: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error(
        "function '{symbol}' not found in {path} (searched {searched}){}",
        crate::suggest::did_you_mean(.suggestions)
    )]
    NotFound {
        symbol: String,
        path: PathBuf,
        searched: String,
        suggestions: Vec<String>,
    },
    #[error(
        "{path} has no symbols left (stripped, no MiniDebugInfo, no debug file found{}); install its debug symbols (Debian: the -dbgsym package), or trace an address (0x...)",
        .build_id.as_ref().map(|id| format!(" under {}/.build-id/{}/{}.debug", debuginfo::DEBUG_ROOT, &id[..2.min(id.len())], id.get(2..).unwrap_or(""))).unwrap_or_default()
    )]
    NoSymbols {
        path: PathBuf,
        build_id: Option<String>,
    },
    #[error("'{symbol}' in {path} is {what}, not a function")]
    NotAFunction {
        symbol: String,
        path: PathBuf,
        what: &'static str,
    },
    #[error("no function in {path} matches '{pattern}' (searched {searched})")]
    NoMatch {
        pattern: String,
        path: PathBuf,
        searched: String,
    },
    #[error("offset {offset:#x} is outside '{symbol}', which is {size} bytes long")]
    OffsetOutside {
        symbol: String,
        offset: u64,
        size: u64,
    },
    #[error("address {address:#x} is not in the code of {path}")]
    AddressOutside { address: u64, path: PathBuf },
    #[error(
        "offset {offset:#x} is inside an instruction of '{symbol}', not at its start (instructions start at {near}); a probe there would corrupt the code"
    )]
    InsideInstruction {
        symbol: String,
        offset: u64,
        near: String,
    },
    #[error("cannot probe '{symbol}' in {path}: {why}")]
    Unprobeable {
        symbol: String,
        path: PathBuf,
        why: String,
    },
    #[error(
        "none of the {count} functions matching '{pattern}' in {path} can be probed safely: {why}"
    )]
    NoneProbeable {
        pattern: String,
        count: usize,
        path: PathBuf,
        why: String,
    },
    #[error("FUNCTION is {len} bytes long; names longer than {MAX_NAME_BYTES} bytes are refused")]
    NameTooLong { len: usize },
    #[error(
        "'{symbol}' in {path} is a GNU IFUNC: the implementation is picked when the program starts, and ebpf-tool could not resolve it ({why}); trace an implementation by name instead (see --list)"
    )]
    Ifunc {
        symbol: String,
        path: PathBuf,
        why: String,
    },
}

/// FUNCTION longer than this is refused before any work: the longest mangled C++ names
/// seen in real libraries are about 2,000 bytes, and matching and suggesting cost grow
/// with the name.
pub const MAX_NAME_BYTES: usize = 4096;

/// Every function symbol of one ELF file, from every source found.
#[derive(Debug)]
pub struct Symbols {
    path: PathBuf,
    code: code::Code,
    machine: u16,
    text: Vec<(Range<u64>, u64)>,
    /// Sorted by (name, address); one entry per (name, address).
    functions: Vec<FunctionSymbol>,
    /// Named symbols that are not functions, with what they are, for a precise error.
    non_functions: Vec<(String, &'static str)>,
    searched: Vec<SymbolSource>,
    build_id: Option<String>,
    go: bool,
    go_version: Option<golang::GoVersion>,
    /// Cold parts of functions, by the function's symbol name.
    cold_parts: std::collections::HashMap<String, Vec<ColdPart>>,
    unwinds: Option<&'static str>,
    /// The separate debug file whose symbols were read, if any.
    debug_file: Option<PathBuf>,
}

impl Symbols {
    /// Reads every function symbol of the ELF file at `path`, and of the debug
    /// information it points to.
    pub fn read(path: &Path) -> Result<Self, SymbolError> {
        Self::read_with_debug_root(path, Path::new(debuginfo::DEBUG_ROOT))
    }

    /// As `read`, looking for separate debug files under `debug_root`.
    pub fn read_with_debug_root(path: &Path, debug_root: &Path) -> Result<Self, SymbolError> {
        let read_err = |source| SymbolError::Read {
            path: path.to_owned(),
            source,
        };
        let file = crate::files::open_regular(path).map_err(read_err)?;
        // Read, not mapped: a file truncated while we read it must give an error, not the
        // SIGBUS a mapping would.
        let cache = ReadCache::new(file);
        let main = elf::parse(&cache).map_err(|e| elf_error(path, e))?;
        let code = code::Code::File(cache.into_inner());
        Self::from_contents(path, main, code, debug_root)
    }

    /// Reads the symbols of an ELF image already in memory (`path` names it in messages
    /// and locates debug files). Never panics on malformed input: the fuzz target and
    /// the corrupt-file tests call this.
    pub fn from_image(path: &Path, image: &[u8], debug_root: &Path) -> Result<Self, SymbolError> {
        let main = elf::parse(image).map_err(|e| elf_error(path, e))?;
        Self::from_contents(path, main, code::Code::Image(image.to_vec()), debug_root)
    }

    fn from_contents(
        path: &Path,
        main: elf::ElfContents,
        code: code::Code,
        debug_root: &Path,
    ) -> Result<Self, SymbolError> {
        let mut symbols = Symbols {
            path: path.to_owned(),
            code,
            machine: main.machine,
            text: main.text.clone(),
            functions: Vec::new(),
            non_functions: Vec::new(),
            searched: Vec::new(),
            build_id: debuginfo::build_id_hex(&main.pointers),
            go: main.go,
            go_version: main.go_version,
            cold_parts: Default::default(),
            unwinds: main.unwinds,
            debug_file: None,
        };
        symbols.add(&main.symtab, SymbolSource::Symtab);
        symbols.add(&main.dynsym, SymbolSource::Dynsym);
        if let Some(image) = main
            .pointers
            .debugdata
            .as_deref()
            .and_then(debuginfo::decompress_debugdata)
        {
            match elf::parse(&image[..]) {
                Ok(mini) => symbols.add(&mini.symtab, SymbolSource::MiniDebugInfo),
                Err(err) => log::debug!("ignoring malformed MiniDebugInfo: {err:?}"),
            }
        }
        if let Some(debug_file) = debuginfo::find_debug_file(path, &main.pointers, debug_root) {
            match crate::files::open_regular(&debug_file).map(|f| elf::parse(&ReadCache::new(f))) {
                Ok(Ok(debug)) => {
                    symbols.add(&debug.symtab, SymbolSource::DebugFile);
                    symbols.debug_file = Some(debug_file);
                }
                other => log::debug!("ignoring {}: {other:?}", debug_file.display()),
            }
        }
        symbols.add_go(&main);
        symbols
            .functions
            .sort_by(|a, b| (&a.name, a.address).cmp(&(&b.name, b.address)));
        symbols
            .functions
            .dedup_by(|a, b| a.name == b.name && a.address == b.address);
        Ok(symbols)
    }

    /// Adds the function symbols of one table; addresses map to offsets through this
    /// file's segments (debug files share the file's layout).
    fn add(&mut self, table: &[elf::RawSymbol], source: SymbolSource) {
        if table.is_empty() {
            return;
        }
        self.searched.push(source);
        let first_new = self.functions.len();
        for symbol in table {
            let is_function =
                symbol.kind == object::elf::STT_FUNC || symbol.kind == object::elf::STT_GNU_IFUNC;
            // A FUNC with no size is a label in assembly, not something with a body to
            // probe and return from (an IFUNC's size is its resolver's, irrelevant).
            if symbol.kind == object::elf::STT_FUNC && symbol.size == 0 {
                self.non_functions.push((
                    symbol.name.clone(),
                    "a zero-size symbol (a label with no function body)",
                ));
                continue;
            }
            // GCC and clang move a function's unlikely paths into `NAME.cold[.N]`, typed
            // FUNC but entered by a jump from the middle of NAME: a probe there counts a
            // path, not calls, and a return probe would overwrite whatever is on the stack.
            if symbol.kind == object::elf::STT_FUNC
                && let Some(parent) = cold_fragment_of(&symbol.name)
            {
                if let Some(file_offset) = elf::file_offset(&self.text, symbol.address) {
                    let parts = self.cold_parts.entry(parent.to_owned()).or_default();
                    if !parts.iter().any(|p| p.address == symbol.address) {
                        parts.push(ColdPart {
                            address: symbol.address,
                            size: symbol.size,
                            file_offset,
                        });
                    }
                }
                self.non_functions.push((
                    symbol.name.clone(),
                    "the cold part of a function, split off by the compiler: entered by a jump, never called",
                ));
                continue;
            }
            let offset = elf::file_offset(&self.text, symbol.address);
            match (is_function, offset) {
                (true, Some(file_offset)) => self.functions.push(FunctionSymbol {
                    name: symbol.name.clone(),
                    demangled: None, // below, for all at once
                    address: symbol.address,
                    size: symbol.size,
                    file_offset,
                    offset_in_function: 0,
                    ifunc: symbol.kind == object::elf::STT_GNU_IFUNC,
                    source,
                    call: CallConv::C,
                }),
                (true, None) => self
                    .non_functions
                    .push((symbol.name.clone(), "outside the code")),
                (false, _) => self
                    .non_functions
                    .push((symbol.name.clone(), describe_type(symbol.kind))),
            }
        }
        demangle_all(&mut self.functions[first_new..]);
    }

    /// True for a program built by the Go toolchain.
    pub fn is_go(&self) -> bool {
        self.go
    }

    /// The Go release a Go program was built with, when it says.
    pub fn go_version(&self) -> Option<golang::GoVersion> {
        self.go_version
    }

    /// What unwinds through this file's functions ("C++ exception", "Rust panic"), if
    /// its code uses such a language's unwinder.
    pub fn unwinds(&self) -> Option<&'static str> {
        self.unwinds
    }

    /// Every function, sorted by name.
    pub fn functions(&self) -> &[FunctionSymbol] {
        &self.functions
    }

    /// Link-time address ranges of the executable segments: where code of this file lies.
    /// The separate debug file found for this one (build id or debuglink), if any.
    pub fn debug_file(&self) -> Option<&Path> {
        self.debug_file.as_deref()
    }

    /// The sources that had symbols, for messages ("searched .symtab and .dynsym").
    pub fn searched(&self) -> String {
        match self.searched.as_slice() {
            [] => "no symbol tables: the file is stripped".into(),
            sources => sources
                .iter()
                .map(|t| t.name())
                .collect::<Vec<_>>()
                .join(" and "),
        }
    }

    /// The probe-able functions whose name (raw or demangled) matches `pattern` (a glob,
    /// or a substring when it has no wildcard), one per address, sorted by label.
    pub fn list(&self, pattern: Option<&str>) -> Vec<&FunctionSymbol> {
        let matcher = pattern.map(resolve::NameMatcher::for_listing);
        let matched = self
            .functions
            .iter()
            .filter(|f| matcher.as_ref().is_none_or(|m| m.matches(f)))
            .collect();
        let mut found = resolve::distinct(matched);
        found.sort_by_key(|f| f.label());
        found
    }

    fn non_function(&self, name: &str) -> Option<&'static str> {
        self.non_functions
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, what)| *what)
    }
}

fn elf_error(path: &Path, err: elf::ElfError) -> SymbolError {
    match err {
        elf::ElfError::NotElf => SymbolError::NotElf {
            path: path.to_owned(),
        },
        elf::ElfError::Malformed(reason) => SymbolError::Malformed {
            path: path.to_owned(),
            reason,
        },
    }
}

/// `NAME.cold` or `NAME.cold.N`: a compiler-split cold fragment of NAME.
/// Returns NAME.
fn cold_fragment_of(name: &str) -> Option<&str> {
    let base = match name.rsplit_once('.') {
        Some((head, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => head,
        _ => name,
    };
    base.strip_suffix(".cold")
        .filter(|parent| !parent.is_empty())
}

/// A compiler-split cold part of a function (`NAME.cold`): its unlikely paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColdPart {
    pub address: u64,
    pub size: u64,
    pub file_offset: u64,
}

fn describe_type(st_type: u8) -> &'static str {
    use object::elf::*;
    match st_type {
        STT_OBJECT => "a data object",
        STT_TLS => "a thread-local variable",
        STT_SECTION => "a section",
        STT_FILE => "a file name",
        STT_COMMON => "a common block",
        _ => "not typed as a function",
    }
}

#[cfg(test)]
mod tests {
    use super::cold_fragment_of;

    #[test]
    fn tells_cold_fragments_from_functions_and_clones() {
        for (cold, parent) in [
            ("main.cold", "main"),
            ("_Z15fixture_throwerl.cold", "_Z15fixture_throwerl"),
            ("parse.cold.12", "parse"),
            ("f.part.0.cold", "f.part.0"),
        ] {
            assert_eq!(cold_fragment_of(cold), Some(parent), "{cold}");
        }
        for function in [
            "cold",
            "main",
            "f.part.0",
            "g.isra.3",
            "h.constprop.0",
            "coldest",
        ] {
            assert_eq!(cold_fragment_of(function), None, "{function}");
        }
    }
}
