//! DWARF types, reduced to what reading and showing a value needs: width and sign of
//! integers, pointers and what they point to, struct members and their offsets, arrays,
//! enumerators. Typedefs and qualifiers are seen through.

use gimli::AttributeValue;

use super::{DebugInfo, R};

/// Pointers are followed this deep when types are read (a list node points to itself).
const MAX_DEPTH: usize = 6;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ty {
    Void,
    /// A type this does not read (or deeper than `MAX_DEPTH`).
    Unknown,
    Int {
        name: String,
        size: u8,
        signed: bool,
        /// `char`, `signed char`, `unsigned char`: a pointer to it is a string.
        is_char: bool,
    },
    Bool {
        size: u8,
    },
    Float {
        name: String,
        size: u8,
    },
    Pointer(Box<Ty>),
    Struct {
        name: String,
        size: u64,
        members: Vec<(String, u64, Ty)>,
    },
    Array {
        element: Box<Ty>,
        count: Option<u64>,
    },
    Enum {
        name: String,
        size: u8,
        values: Vec<(i64, String)>,
    },
}

impl Ty {
    /// As C writes it.
    pub fn name(&self) -> String {
        match self {
            Ty::Void => "void".into(),
            Ty::Unknown => "?".into(),
            Ty::Int { name, .. } | Ty::Float { name, .. } => name.clone(),
            Ty::Bool { .. } => "bool".into(),
            Ty::Pointer(to) => format!("{} *", to.name()),
            Ty::Struct { name, .. } => format!("struct {name}"),
            Ty::Array { element, count } => {
                format!(
                    "{}[{}]",
                    element.name(),
                    count.map_or(String::new(), |c| c.to_string())
                )
            }
            Ty::Enum { name, .. } => format!("enum {name}"),
        }
    }

    /// Bytes a value of this type takes.
    pub fn size(&self) -> u64 {
        match self {
            Ty::Int { size, .. }
            | Ty::Bool { size }
            | Ty::Float { size, .. }
            | Ty::Enum { size, .. } => u64::from(*size),
            Ty::Pointer(_) => 8,
            Ty::Struct { size, .. } => *size,
            Ty::Array { element, count } => element.size() * count.unwrap_or(0),
            Ty::Void | Ty::Unknown => 0,
        }
    }
}

pub(super) fn resolve(
    info: &DebugInfo,
    unit: &gimli::Unit<R>,
    offset: gimli::UnitOffset,
    depth: usize,
) -> gimli::Result<Ty> {
    if depth > MAX_DEPTH {
        return Ok(Ty::Unknown);
    }
    let entry = unit.entry(offset)?;
    let name = || -> gimli::Result<String> { Ok(info.name_of(unit, &entry)?.unwrap_or_default()) };
    let size = entry
        .attr_value(gimli::DW_AT_byte_size)?
        .and_then(|v| v.udata_value())
        .unwrap_or(0);
    let inner = |depth: usize| -> gimli::Result<Ty> {
        match entry.attr_value(gimli::DW_AT_type)? {
            Some(AttributeValue::UnitRef(t)) => resolve(info, unit, t, depth),
            _ => Ok(Ty::Void),
        }
    };
    Ok(match entry.tag() {
        gimli::DW_TAG_typedef
        | gimli::DW_TAG_const_type
        | gimli::DW_TAG_volatile_type
        | gimli::DW_TAG_restrict_type
        | gimli::DW_TAG_atomic_type => inner(depth)?,
        gimli::DW_TAG_base_type => {
            let encoding = match entry.attr_value(gimli::DW_AT_encoding)? {
                Some(AttributeValue::Encoding(e)) => e,
                _ => gimli::DW_ATE_signed,
            };
            match encoding {
                gimli::DW_ATE_boolean => Ty::Bool { size: size as u8 },
                gimli::DW_ATE_float => Ty::Float {
                    name: name()?,
                    size: size as u8,
                },
                gimli::DW_ATE_signed | gimli::DW_ATE_signed_char => Ty::Int {
                    name: name()?,
                    size: size as u8,
                    signed: true,
                    is_char: encoding == gimli::DW_ATE_signed_char,
                },
                _ => Ty::Int {
                    name: name()?,
                    size: size as u8,
                    signed: false,
                    is_char: encoding == gimli::DW_ATE_unsigned_char,
                },
            }
        }
        gimli::DW_TAG_pointer_type
        | gimli::DW_TAG_reference_type
        | gimli::DW_TAG_rvalue_reference_type => Ty::Pointer(Box::new(inner(depth + 1)?)),
        gimli::DW_TAG_structure_type | gimli::DW_TAG_class_type | gimli::DW_TAG_union_type => {
            let mut members = Vec::new();
            let mut tree = unit.entries_tree(Some(offset))?;
            let mut children = tree.root()?.children();
            while let Some(child) = children.next()? {
                let member = child.entry();
                if member.tag() != gimli::DW_TAG_member {
                    continue;
                }
                let at = member
                    .attr_value(gimli::DW_AT_data_member_location)?
                    .and_then(|v| v.udata_value())
                    .unwrap_or(0);
                let ty = match member.attr_value(gimli::DW_AT_type)? {
                    Some(AttributeValue::UnitRef(t)) => resolve(info, unit, t, depth + 1)?,
                    _ => Ty::Unknown,
                };
                let member_name = info.name_of(unit, member)?.unwrap_or_default();
                members.push((member_name, at, ty));
            }
            Ty::Struct {
                name: name()?,
                size,
                members,
            }
        }
        gimli::DW_TAG_array_type => {
            let mut count = None;
            let mut tree = unit.entries_tree(Some(offset))?;
            let mut children = tree.root()?.children();
            while let Some(child) = children.next()? {
                let range = child.entry();
                if range.tag() == gimli::DW_TAG_subrange_type {
                    count = range
                        .attr_value(gimli::DW_AT_count)?
                        .and_then(|v| v.udata_value())
                        .or(range
                            .attr_value(gimli::DW_AT_upper_bound)?
                            .and_then(|v| v.udata_value())
                            .map(|u| u + 1));
                    break;
                }
            }
            Ty::Array {
                element: Box::new(inner(depth)?),
                count,
            }
        }
        gimli::DW_TAG_enumeration_type => {
            let mut values = Vec::new();
            let mut tree = unit.entries_tree(Some(offset))?;
            let mut children = tree.root()?.children();
            while let Some(child) = children.next()? {
                let e = child.entry();
                if e.tag() != gimli::DW_TAG_enumerator {
                    continue;
                }
                let value = match e.attr_value(gimli::DW_AT_const_value)? {
                    Some(AttributeValue::Sdata(v)) => v,
                    Some(AttributeValue::Udata(v)) => v as i64,
                    Some(AttributeValue::Data1(v)) => i64::from(v as i8),
                    Some(AttributeValue::Data2(v)) => i64::from(v as i16),
                    Some(AttributeValue::Data4(v)) => i64::from(v as i32),
                    Some(AttributeValue::Data8(v)) => v as i64,
                    _ => continue,
                };
                values.push((value, info.name_of(unit, e)?.unwrap_or_default()));
            }
            Ty::Enum {
                name: name()?,
                size: size.max(4) as u8,
                values,
            }
        }
        _ => Ty::Unknown,
    })
}
