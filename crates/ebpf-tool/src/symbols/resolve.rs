//! FUNCTION as the user wrote it -> the functions to probe. Accepted forms:
//! `malloc`, `malloc@@GLIBC_2.2.5`, `geo::Circle::area` (every overload),
//! `geo::scale(double)` (one), `mycrate::module::function` (Rust, legacy or v0),
//! globs (`SSL_*`, `*alloc`), `FUNC+OFFSET`, and a hex address (`0x1139`).

use std::collections::{HashMap, HashSet};

use super::{
    FunctionSymbol, SymbolError, Symbols, demangle::same_signature, demangle::without_parameters,
    ifunc,
};
use crate::suggest;

/// The functions a FUNCTION resolved to, and what the user should know about how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// One per distinct probe point.
    pub functions: Vec<FunctionSymbol>,
    /// Lines worth printing (several overloads matched, an IFUNC resolved, ...).
    pub notes: Vec<String>,
    /// Functions matched but left out because no probe can sit safely on their first
    /// instruction, with why (globs and overloads only: a function named alone is an
    /// error instead).
    pub unprobeable: Vec<(FunctionSymbol, super::probe_site::Unprobeable)>,
}

/// Matches symbol names (raw, demangled, or demangled without parameters).
pub(super) enum NameMatcher {
    Glob(glob::Pattern),
    Exact(String),
    Substring(String),
}

impl NameMatcher {
    /// `--list` patterns: a glob when they have a wildcard, else a substring.
    pub(super) fn for_listing(pattern: &str) -> Self {
        match glob_of(pattern) {
            Some(glob) => NameMatcher::Glob(glob),
            None => NameMatcher::Substring(pattern.to_owned()),
        }
    }

    pub(super) fn matches(&self, function: &FunctionSymbol) -> bool {
        let names = || {
            let demangled = function.demangled.as_deref();
            [
                Some(function.name.as_str()),
                demangled,
                demangled.map(without_parameters),
            ]
            .into_iter()
            .flatten()
        };
        match self {
            // `*` alone: every name matches, no need to try three per function.
            NameMatcher::Glob(glob) if glob.as_str().bytes().all(|b| b == b'*') => true,
            NameMatcher::Glob(glob) => names().any(|n| glob.matches(n)),
            NameMatcher::Substring(s) => names().any(|n| n.contains(s.as_str())),
            NameMatcher::Exact(wanted) => {
                function.name == *wanted
                    || function.demangled.as_deref().is_some_and(|d| {
                        without_parameters(d) == wanted || same_signature(d, wanted)
                    })
            }
        }
    }
}

fn glob_of(text: &str) -> Option<glob::Pattern> {
    if text.contains(['*', '?']) {
        glob::Pattern::new(text).ok()
    } else {
        None
    }
}

/// `0x1f3a` or `1234`.
fn parse_number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

impl Symbols {
    /// Resolves several FUNCTIONs (`malloc free 'str*'`) into one set of probe points:
    /// each must resolve on its own; a point two of them share is probed once, and said.
    pub fn resolve_all(&self, specs: &[String]) -> Result<Resolution, SymbolError> {
        let mut all = Resolution {
            functions: Vec::new(),
            notes: Vec::new(),
            unprobeable: Vec::new(),
        };
        for spec in specs {
            let resolution = self.resolve(spec)?;
            all.functions.extend(resolution.functions);
            all.notes.extend(resolution.notes);
            all.unprobeable.extend(resolution.unprobeable);
        }
        all.functions = self.merge_same_code(all.functions, &mut all.notes);
        let probed: HashSet<u64> = all.functions.iter().map(|f| f.file_offset).collect();
        all.unprobeable
            .retain(|(f, _)| !probed.contains(&f.file_offset));
        all.unprobeable
            .dedup_by(|a, b| a.0.file_offset == b.0.file_offset);
        Ok(all)
    }

    /// Resolves FUNCTION to probe points on which a probe is safe.
    pub fn resolve(&self, spec: &str) -> Result<Resolution, SymbolError> {
        if spec.len() > super::MAX_NAME_BYTES {
            return Err(SymbolError::NameTooLong { len: spec.len() });
        }
        let mut resolution = self.resolve_names(spec)?;
        let (safe, unsafe_): (Vec<_>, Vec<_>) = resolution
            .functions
            .drain(..)
            .map(|f| {
                let verdict = self.check_site(&f);
                (f, verdict)
            })
            .partition(|(_, verdict)| verdict.is_ok());
        resolution.functions = safe.into_iter().map(|(f, _)| f).collect();
        resolution.unprobeable = unsafe_
            .into_iter()
            .map(|(f, verdict)| (f, verdict.expect_err("partitioned")))
            .collect();
        match (
            resolution.functions.is_empty(),
            resolution.unprobeable.as_slice(),
        ) {
            (true, [(function, why)]) => {
                let hint = match why.length {
                    Some(len) => format!(
                        "; the next instruction, {}+{:#x}, may be probed instead",
                        function.demangled.as_deref().unwrap_or(&function.name),
                        function.offset_in_function + len as u64
                    ),
                    None => String::new(),
                };
                Err(SymbolError::Unprobeable {
                    symbol: function.label(),
                    path: self.path.clone(),
                    why: format!("{why}{hint}"),
                })
            }
            (true, [(_, why), ..]) => Err(SymbolError::NoneProbeable {
                pattern: spec.to_owned(),
                count: resolution.unprobeable.len(),
                path: self.path.clone(),
                why: why.to_string(),
            }),
            _ => Ok(resolution),
        }
    }

    /// FUNCTION -> the probe points it names, before checking them.
    fn resolve_names(&self, spec: &str) -> Result<Resolution, SymbolError> {
        let spec = spec.trim();
        if let Some(address) = spec
            .strip_prefix("0x")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
        {
            return self.resolve_address(address);
        }
        if self.functions.is_empty() && self.searched.is_empty() {
            return Err(SymbolError::NoSymbols {
                path: self.path.clone(),
                build_id: self.build_id.clone(),
            });
        }
        // FUNC+OFFSET; "operator+" has nothing numeric after its '+'.
        if let Some((name, offset)) = spec.rsplit_once('+')
            && !name.is_empty()
            && let Some(offset) = parse_number(offset)
        {
            return self.resolve_offset(name, offset);
        }
        if let Some(glob) = glob_of(spec) {
            return self.resolve_glob(spec, &NameMatcher::Glob(glob));
        }
        self.resolve_name(spec)
    }

    fn resolve_name(&self, spec: &str) -> Result<Resolution, SymbolError> {
        // A version suffix (malloc@@GLIBC_2.2.5) names the same function.
        let name = match spec.split_once('@') {
            Some((base, _)) if !base.is_empty() && !spec.contains("::") => base,
            _ => spec,
        };
        let raw: Vec<&FunctionSymbol> = self.functions.iter().filter(|f| f.name == name).collect();
        let matched = if raw.is_empty() {
            let matcher = NameMatcher::Exact(name.to_owned());
            self.functions
                .iter()
                .filter(|f| matcher.matches(f))
                .collect()
        } else {
            raw
        };
        if matched.is_empty() {
            return Err(self.not_found(name));
        }
        let mut notes = Vec::new();
        let mut functions = Vec::new();
        for function in distinct(matched) {
            functions.push(self.entry_of(function, &mut notes)?);
        }
        if functions.len() > 1 {
            notes.insert(
                0,
                format!(
                    "'{name}' matches {} functions (overloads or same-named local functions); attaching to all",
                    functions.len()
                ),
            );
        }
        Ok(Resolution {
            functions,
            notes,
            unprobeable: Vec::new(),
        })
    }

    fn resolve_glob(
        &self,
        pattern: &str,
        matcher: &NameMatcher,
    ) -> Result<Resolution, SymbolError> {
        let matched: Vec<&FunctionSymbol> = self
            .functions
            .iter()
            .filter(|f| matcher.matches(f))
            .collect();
        let mut notes = Vec::new();
        let mut functions = Vec::new();
        let mut skipped = Vec::new();
        for function in distinct(matched) {
            match self.entry_of(function, &mut Vec::new()) {
                Ok(resolved) => functions.push(resolved),
                Err(_) => skipped.push(function.name.clone()),
            }
        }
        // Two IFUNCs may pick one implementation (memcpy, memmove): one probe each place.
        let functions = self.merge_same_code(functions, &mut notes);
        if functions.is_empty() {
            return Err(SymbolError::NoMatch {
                pattern: pattern.to_owned(),
                path: self.path.clone(),
                searched: self.searched(),
            });
        }
        notes.push(format!("'{pattern}' matches {} functions", functions.len()));
        if !skipped.is_empty() {
            notes.push(format!(
                "skipped {} GNU IFUNCs whose implementation could not be resolved: {}",
                skipped.len(),
                skipped.join(", ")
            ));
        }
        Ok(Resolution {
            functions,
            notes,
            unprobeable: Vec::new(),
        })
    }

    fn resolve_offset(&self, name: &str, offset: u64) -> Result<Resolution, SymbolError> {
        let mut resolution = self.resolve_name(name)?;
        for function in &mut resolution.functions {
            if function.ifunc {
                return Err(SymbolError::Ifunc {
                    symbol: name.to_owned(),
                    path: self.path.clone(),
                    why: "an offset into an IFUNC has no meaning".into(),
                });
            }
            if offset >= function.size {
                return Err(SymbolError::OffsetOutside {
                    symbol: function.label(),
                    offset,
                    size: function.size,
                });
            }
            self.check_boundary(function, offset)?;
            function.address += offset;
            function.file_offset += offset;
            function.offset_in_function = offset;
        }
        Ok(resolution)
    }

    fn resolve_address(&self, address: u64) -> Result<Resolution, SymbolError> {
        let mut notes = Vec::new();
        let Some(file_offset) = super::elf::file_offset(&self.text, address) else {
            return Err(SymbolError::AddressOutside {
                address,
                path: self.path.clone(),
            });
        };
        let containing = self
            .functions
            .iter()
            .filter(|f| !f.ifunc && address >= f.address && address - f.address < f.size.max(1))
            .min_by_key(|f| address - f.address);
        let function = match containing {
            Some(f) => {
                self.check_boundary(f, address - f.address)?;
                FunctionSymbol {
                    address,
                    file_offset,
                    offset_in_function: address - f.address,
                    ..f.clone()
                }
            }
            None => {
                notes.push(format!(
                    "no function of {} contains {address:#x}: ebpf-tool cannot check that an instruction starts there",
                    self.path.display()
                ));
                FunctionSymbol {
                    name: format!("{address:#x}"),
                    demangled: None,
                    address,
                    size: 0,
                    file_offset,
                    offset_in_function: 0,
                    ifunc: false,
                    source: super::SymbolSource::Symtab,
                    call: super::CallConv::C,
                }
            }
        };
        Ok(Resolution {
            functions: vec![function],
            notes,
            unprobeable: Vec::new(),
        })
    }

    /// The probe point at a function's entry; an IFUNC is replaced by the implementation
    /// this machine's programs will run.
    fn entry_of(
        &self,
        function: &FunctionSymbol,
        notes: &mut Vec<String>,
    ) -> Result<FunctionSymbol, SymbolError> {
        if !function.ifunc {
            return Ok(function.clone());
        }
        let implementation =
            ifunc::resolve(&self.path, &function.name).map_err(|why| SymbolError::Ifunc {
                symbol: function.name.clone(),
                path: self.path.clone(),
                why,
            })?;
        let address = self
            .text
            .iter()
            .find(|(range, offset)| {
                implementation >= *offset && implementation - offset < range.end - range.start
            })
            .map_or(implementation, |(range, offset)| {
                implementation - offset + range.start
            });
        notes.push(format!(
            "'{}' is a GNU IFUNC: tracing the implementation this CPU uses, at file offset {implementation:#x}",
            function.name
        ));
        Ok(FunctionSymbol {
            address,
            file_offset: implementation,
            ..function.clone()
        })
    }

    fn not_found(&self, name: &str) -> SymbolError {
        if let Some(what) = self.non_function(name) {
            return SymbolError::NotAFunction {
                symbol: name.to_owned(),
                path: self.path.clone(),
                what,
            };
        }
        let names = self.functions.iter().flat_map(|f| {
            let demangled = f.demangled.as_deref().map(without_parameters);
            [Some(f.name.as_str()), demangled].into_iter().flatten()
        });
        SymbolError::NotFound {
            symbol: name.to_owned(),
            path: self.path.clone(),
            searched: self.searched(),
            suggestions: suggest::closest(name, names),
        }
    }
}

/// One symbol per address: aliases (`malloc`, `__libc_malloc`, `__GI___libc_malloc`) are
/// one function, named by its best name (see `name_rank`). Keeps the order of first sight.
pub(super) fn distinct(matched: Vec<&FunctionSymbol>) -> Vec<&FunctionSymbol> {
    let mut best: HashMap<u64, &FunctionSymbol> = HashMap::new();
    let mut order = Vec::new();
    for function in matched {
        match best.entry(function.address) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                order.push(function.address);
                slot.insert(function);
            }
            std::collections::hash_map::Entry::Occupied(mut slot) => {
                if name_rank(function) < name_rank(slot.get()) {
                    slot.insert(function);
                }
            }
        }
    }
    order.into_iter().map(|address| best[&address]).collect()
}

/// Lower is a better name for an address: exported (`.dynsym`) first, then fewer leading
/// underscores, no compiler suffix (`.part.0`, `.constprop.0`), shorter.
fn name_rank(function: &FunctionSymbol) -> (bool, usize, bool, usize, &str) {
    let name = function.name.as_str();
    (
        function.source != super::SymbolSource::Dynsym,
        name.len() - name.trim_start_matches('_').len(),
        name.contains('.'),
        name.len(),
        name,
    )
}

impl Symbols {
    /// The sized function whose code holds link-time `address`.
    pub fn function_containing(&self, address: u64) -> Option<&FunctionSymbol> {
        self.functions
            .iter()
            .filter(|f| {
                f.offset_in_function == 0 && f.address <= address && address < f.address + f.size
            })
            .min_by_key(|f| f.size)
    }
}
