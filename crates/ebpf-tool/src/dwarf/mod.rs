//! Debug info (DWARF, through gimli) for what users write from the source: arguments by
//! name and field (`-a r`, `-a 'r->hdr.kind'`, `-a 'argv[1]'`) and signatures
//! (`--list -v`). Read from the file itself or the separate debug file resolution found
//! (build id, debuglink). A value becomes an argument spec: where the parameter is at the
//! probed address (its location expression or location list), then each `->`, `.` and
//! `[N]` as a read or an offset, the type deciding width, sign and display.

mod cfa;
mod expr;
mod lines;
mod location;
mod split;
#[cfg(test)]
mod tests;
mod types;

use std::{path::Path, sync::Arc};

use gimli::{AttributeValue, EndianArcSlice, Operation, Reader as _, RunTimeEndian};
use object::{Object as _, ObjectSection as _};

pub use types::Ty;

use crate::{symbols::Symbols, values::access::parse_access};

type R = EndianArcSlice<RunTimeEndian>;

/// Why debug info cannot answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DwarfError {
    #[error(
        "no debug info for {path} (looked in the file, its build-id and debuglink files under /usr/lib/debug)"
    )]
    Missing { path: String },
    #[error("the debug info of {path} cannot be read: {why}")]
    Bad { path: String, why: String },
    #[error("{function} is not described by the debug info")]
    NoFunction { function: String },
    #[error("{function} has no parameter '{name}' (it has: {})", .params.join(", "))]
    NoParameter {
        function: String,
        name: String,
        params: Vec<String>,
    },
    #[error("'{name}' is optimized out at the probed address of {function}")]
    OptimizedOut { function: String, name: String },
    #[error("'{name}': {why}")]
    Unsupported { name: String, why: String },
}

/// One function's parameters as the debug info describes them.
#[derive(Debug, Clone)]
pub struct Parameter {
    pub name: String,
    pub ty: Ty,
    /// Where it is at the function's entry.
    pub location: Option<Place>,
    /// A struct held in pieces (two registers, as Rust passes `&str`): each piece's
    /// place (None: not described there) and size in bytes, in order.
    pub pieces: Vec<(Option<Place>, u64)>,
}

/// Where a value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// In a register (DWARF numbering, as the argument model's).
    Register(u8),
    /// In memory at a register plus an offset.
    Memory { base: u8, offset: i64 },
    /// The value is a register plus an offset (no memory read).
    Computed { base: u8, offset: i64 },
}

/// A function as the debug info sees it.
#[derive(Debug, Clone)]
pub struct FunctionInfo {
    pub name: String,
    pub return_type: Ty,
    pub parameters: Vec<Parameter>,
    /// The parameters' places are those at the function's first instruction.
    pub at_entry: bool,
}

impl FunctionInfo {
    /// Each struct parameter (or pointer to one) with its fields and their offsets:
    /// `r: struct req { unsigned int len @0, struct hdr *hdr @8 }`.
    pub fn struct_fields(&self) -> Vec<String> {
        self.parameters
            .iter()
            .filter_map(|p| {
                let ty = match &p.ty {
                    Ty::Pointer(to) => to.as_ref(),
                    other => other,
                };
                let Ty::Struct { name, members, .. } = ty else {
                    return None;
                };
                let fields: Vec<String> = members
                    .iter()
                    .map(|(field, offset, ty)| {
                        format!("{} @{offset}", join_type(&ty.name(), field))
                    })
                    .collect();
                Some(format!(
                    "{}: struct {name} {{ {} }}",
                    p.name,
                    fields.join(", ")
                ))
            })
            .collect()
    }

    /// `name(type a, type b)` as C writes it.
    pub fn signature(&self) -> String {
        let params: Vec<String> = self
            .parameters
            .iter()
            .map(|p| join_type(&p.ty.name(), &p.name))
            .collect();
        format!(
            "{}({})",
            join_type(&self.return_type.name(), &self.name),
            params.join(", ")
        )
    }
}

/// `int` + `n` -> `int n`; `char *` + `s` -> `char *s`.
fn join_type(ty: &str, name: &str) -> String {
    if ty.ends_with('*') {
        format!("{ty}{name}")
    } else {
        format!("{ty} {name}")
    }
}

/// The DWARF of one file.
pub struct DebugInfo {
    dwarf: gimli::Dwarf<R>,
    path: String,
    /// The traced file's own `.eh_frame`, for frame-base offsets past the entry.
    frames: Option<cfa::FrameTable>,
    /// Split DWARF: each skeleton unit's `.dwo`, with the skeleton's offset.
    splits: Vec<(gimli::DebugInfoOffset, gimli::Dwarf<R>)>,
    /// Which DWARF the walk is in: 0 the file's, i + 1 `splits[i]`.
    current: std::cell::Cell<usize>,
}

impl DebugInfo {
    /// The debug info for `binary`: its own `.debug_info`, else its separate debug file
    /// (under /usr/lib/debug).
    pub fn load(binary: &Path) -> Result<DebugInfo, DwarfError> {
        Self::load_with_root(binary, Path::new(crate::symbols::DEBUG_ROOT))
    }

    /// As `load`, looking in `root` (`--debuginfo DIR`) first.
    pub fn load_with_root(binary: &Path, root: &Path) -> Result<DebugInfo, DwarfError> {
        let shown = binary.display().to_string();
        let frames = || {
            let data = crate::files::read_regular(binary, 1 << 31).ok()?;
            let file = object::File::parse(&*data).ok()?;
            cfa::FrameTable::read(&file)
        };
        if let Some(mut info) = Self::load_file(binary, &shown)? {
            info.frames = frames();
            return Ok(info);
        }
        let debug_file = Symbols::read_with_debug_root(binary, root)
            .ok()
            .and_then(|s| s.debug_file().map(Path::to_owned));
        if let Some(file) = debug_file
            && let Some(mut info) = Self::load_file(&file, &shown)?
        {
            info.frames = frames();
            return Ok(info);
        }
        Err(DwarfError::Missing { path: shown })
    }

    fn load_file(path: &Path, shown: &str) -> Result<Option<DebugInfo>, DwarfError> {
        let bad = |why: String| DwarfError::Bad {
            path: shown.to_owned(),
            why,
        };
        let data = crate::files::read_regular(path, 1 << 31).map_err(|e| bad(e.to_string()))?;
        let file = object::File::parse(&*data).map_err(|e| bad(e.to_string()))?;
        if file.section_by_name(".debug_info").is_none() {
            return Ok(None);
        }
        let endian = if file.is_little_endian() {
            RunTimeEndian::Little
        } else {
            RunTimeEndian::Big
        };
        let load = |id: gimli::SectionId| -> Result<R, gimli::Error> {
            let bytes: Arc<[u8]> = file
                .section_by_name(id.name())
                .and_then(|s| s.uncompressed_data().ok())
                .map_or_else(|| Arc::from(&[][..]), |d| Arc::from(d.as_ref()));
            Ok(EndianArcSlice::new(bytes, endian))
        };
        let dwarf = gimli::Dwarf::load(load).map_err(|e| bad(e.to_string()))?;
        let splits = split::load_splits(&dwarf, path, endian);
        Ok(Some(DebugInfo {
            dwarf,
            path: shown.to_owned(),
            frames: None,
            splits,
            current: std::cell::Cell::new(0),
        }))
    }

    /// The function whose code starts at link-time `low_pc`, with its parameters where
    /// they are at `pc` (its entry, or a place inside it); `name` for messages.
    pub fn function(&self, name: &str, low_pc: u64, pc: u64) -> Result<FunctionInfo, DwarfError> {
        let bad = |e: gimli::Error| DwarfError::Bad {
            path: self.path.clone(),
            why: e.to_string(),
        };
        let mut found = None;
        self.walk_functions(&mut |address, unit, offset| {
            if address == low_pc {
                found = Some(self.function_info(unit, offset, pc));
                return true;
            }
            false
        })
        .map_err(bad)?;
        match found {
            Some(info) => info.map_err(bad),
            None => Err(DwarfError::NoFunction {
                function: name.to_owned(),
            }),
        }
    }

    /// Every described function with code, for `--list -v`.
    pub fn functions(&self) -> Vec<(u64, FunctionInfo)> {
        let mut out = Vec::new();
        let _ = self.walk_functions(&mut |address, unit, offset| {
            if let Ok(info) = self.function_info(unit, offset, address) {
                out.push((address, info));
            }
            false
        });
        out
    }

    /// Calls `visit` with each subprogram that has code; stops when it returns true.
    fn walk_functions(
        &self,
        visit: &mut dyn FnMut(u64, &gimli::Unit<R>, gimli::UnitOffset) -> bool,
    ) -> gimli::Result<()> {
        for unit in self.all_units()? {
            let mut entries = unit.entries();
            while let Some((_, entry)) = entries.next_dfs()? {
                if entry.tag() != gimli::DW_TAG_subprogram {
                    continue;
                }
                let Some(low_pc) = self.address_attr(&unit, entry, gimli::DW_AT_low_pc)? else {
                    continue;
                };
                if visit(low_pc, &unit, entry.offset()) {
                    return Ok(());
                }
            }
        }
        self.current.set(0);
        Ok(())
    }

    /// The DWARF the walk is in.
    fn dw(&self) -> &gimli::Dwarf<R> {
        match self.current.get() {
            0 => &self.dwarf,
            i => &self.splits[i - 1].1,
        }
    }

    /// Every unit, the split ones (with their skeleton's attributes) after the file's;
    /// `current` follows as each is handed out.
    fn all_units(&self) -> gimli::Result<impl Iterator<Item = gimli::Unit<R>> + '_> {
        let mut units: Vec<(usize, gimli::Unit<R>)> = Vec::new();
        let mut headers = self.dwarf.units();
        while let Some(header) = headers.next()? {
            units.push((0, self.dwarf.unit(header)?));
        }
        for (i, (skeleton_offset, dwo)) in self.splits.iter().enumerate() {
            let skeleton = self
                .dwarf
                .unit(self.dwarf.debug_info.header_from_offset(*skeleton_offset)?)?;
            let mut headers = dwo.units();
            while let Some(header) = headers.next()? {
                let mut unit = dwo.unit(header)?;
                unit.copy_relocated_attributes(&skeleton);
                units.push((i + 1, unit));
            }
        }
        Ok(units.into_iter().map(move |(which, unit)| {
            self.current.set(which);
            unit
        }))
    }

    fn function_info(
        &self,
        unit: &gimli::Unit<R>,
        offset: gimli::UnitOffset,
        pc: u64,
    ) -> gimli::Result<FunctionInfo> {
        let mut tree = unit.entries_tree(Some(offset))?;
        let root = tree.root()?;
        let entry = root.entry();
        let name = self.name_of(unit, entry)?.unwrap_or_default();
        let low_pc = self
            .address_attr(unit, entry, gimli::DW_AT_low_pc)?
            .unwrap_or(0);
        let frame_base_is_cfa = matches!(
            entry.attr_value(gimli::DW_AT_frame_base)?,
            Some(AttributeValue::Exprloc(ref e)) if matches!(
                e.clone().operations(unit.encoding()).next(),
                Ok(Some(Operation::CallFrameCFA))
            )
        );
        // Frame-base offsets are from the CFA, which is rsp + 8 at the entry and wherever
        // the unwind table says past it.
        let cfa = if pc == low_pc {
            Some((ebpf_tool_common::reg::x86_64::RSP, 8))
        } else {
            self.frames.as_ref().and_then(|f| f.cfa_at(pc))
        }
        .filter(|_| frame_base_is_cfa);
        let return_type = match entry.attr_value(gimli::DW_AT_type)? {
            Some(AttributeValue::UnitRef(t)) => types::resolve(self, unit, t, 0)?,
            _ => Ty::Void,
        };
        let mut parameters = Vec::new();
        let mut children = root.children();
        while let Some(child) = children.next()? {
            let entry = child.entry();
            if entry.tag() != gimli::DW_TAG_formal_parameter {
                continue;
            }
            let name = self.name_of(unit, entry)?.unwrap_or_default();
            let ty = match entry.attr_value(gimli::DW_AT_type)? {
                Some(AttributeValue::UnitRef(t)) => types::resolve(self, unit, t, 0)?,
                _ => Ty::Unknown,
            };
            let expression = match entry.attr_value(gimli::DW_AT_location)? {
                Some(AttributeValue::Exprloc(expression)) => Some(expression),
                Some(other) => match self.dw().attr_locations(unit, other)? {
                    Some(mut list) => {
                        let mut found = None;
                        while let Some(entry) = list.next()? {
                            if entry.range.begin <= pc && pc < entry.range.end {
                                found = Some(entry.data);
                                break;
                            }
                        }
                        found
                    }
                    None => None,
                },
                None => None,
            };
            let location = expression
                .clone()
                .and_then(|e| location::place_of(e, unit.encoding(), cfa));
            let pieces = expression
                .map(|e| location::pieces_of(e, unit.encoding(), cfa))
                .unwrap_or_default();
            parameters.push(Parameter {
                name,
                ty,
                location,
                pieces,
            });
        }
        Ok(FunctionInfo {
            name,
            return_type,
            parameters,
            at_entry: pc == low_pc,
        })
    }

    fn address_attr(
        &self,
        unit: &gimli::Unit<R>,
        entry: &gimli::DebuggingInformationEntry<R>,
        name: gimli::DwAt,
    ) -> gimli::Result<Option<u64>> {
        match entry.attr_value(name)? {
            Some(value) => self.dw().attr_address(unit, value),
            None => Ok(None),
        }
    }

    fn name_of(
        &self,
        unit: &gimli::Unit<R>,
        entry: &gimli::DebuggingInformationEntry<R>,
    ) -> gimli::Result<Option<String>> {
        match entry.attr_value(gimli::DW_AT_name)? {
            Some(value) => Ok(Some(
                self.dw()
                    .attr_string(unit, value)?
                    .to_string_lossy()?
                    .into_owned(),
            )),
            None => Ok(None),
        }
    }
}

/// Named values for every probed function: each function's spec for each text, and
/// how each is shown (the first function's type: a glob's functions must agree).
pub struct NamedSpecs {
    pub specs: Vec<Vec<(String, ebpf_tool_common::ValueSpec)>>,
    pub shown: Vec<(String, crate::values::request::ValueType)>,
    /// Values of enum type, with their enumerators.
    pub enums: Vec<(String, Vec<(i64, String)>)>,
}

/// Resolves `texts` (`r->len`, `argv[1]`) in each probed place: `(label, its function's
/// link-time address, the probe's)`.
pub fn resolve_named(
    info: &DebugInfo,
    functions: &[(String, u64, u64)],
    texts: &[String],
) -> Result<NamedSpecs, DwarfError> {
    let mut specs = Vec::new();
    let mut shown = Vec::new();
    let mut enums = Vec::new();
    for (index, (label, low_pc, pc)) in functions.iter().enumerate() {
        let function = info.function(label, *low_pc, *pc)?;
        let mut these = Vec::new();
        for text in texts {
            let access = parse_access(text).ok_or_else(|| DwarfError::Unsupported {
                name: text.clone(),
                why: "not a parameter name".into(),
            })?;
            let compiled = expr::compile(&function, &access, text);
            // A pointer-and-length pair (Rust's `&str`, `&[u8]`): shown as the bytes.
            if compiled.is_err()
                && let (Some(data), Some(length)) = (
                    parse_access(&format!("{text}.data_ptr")),
                    parse_access(&format!("{text}.length")),
                )
                && let (Ok((pointer, _, _)), Ok((len, _, _))) = (
                    expr::compile(&function, &data, text),
                    expr::compile(&function, &length, &format!("{text}.length")),
                )
            {
                if index == 0 {
                    shown.push((text.clone(), crate::values::request::ValueType::GoStr));
                }
                these.push((text.clone(), pointer));
                these.push((format!("{text}.length"), len));
                continue;
            }
            let (spec, ty, source_type) = compiled?;
            if index == 0 {
                shown.push((text.clone(), ty));
                if let Ty::Enum { values, .. } = source_type {
                    enums.push((text.clone(), values));
                }
            }
            these.push((text.clone(), spec));
        }
        specs.push(these);
    }
    Ok(NamedSpecs {
        specs,
        shown,
        enums,
    })
}

pub use lines::parse_source_line;
