//! `-a` values written as in the source: `name`, `name->field`, `name.field`,
//! `name[N]`, chained (`r->hdr.kind`, `argv[1]`), compiled against a function's debug
//! info into the argument model's spec and the type to show it as.

use ebpf_tool_common::{MAX_HOPS, ValueSpec, reg};

use super::{DwarfError, FunctionInfo, Place, Ty};
use crate::values::{
    access::{Access, Step},
    request::ValueType,
};

/// What is being computed: a value, or the address of one still to be read.
enum Current {
    Value(ValueSpec),
    /// At the address the spec computes plus `pending`.
    Address(ValueSpec, i64),
}

impl Current {
    fn address_of(spec: ValueSpec, offset: i64) -> Current {
        Current::Address(spec, offset)
    }

    /// Reads the value at the address (`size` bytes).
    fn load(self, text: &str, size: u8) -> Result<ValueSpec, DwarfError> {
        match self {
            Current::Value(spec) => Ok(spec),
            Current::Address(mut spec, pending) => {
                if spec.reads as usize >= MAX_HOPS {
                    return Err(unsupported(text, "more than four memory reads"));
                }
                if spec.reads == 0 {
                    spec.displacement = spec.displacement.wrapping_add(pending);
                } else {
                    let hop = spec.reads as usize - 1;
                    spec.after[hop] = spec.after[hop]
                        .checked_add(
                            i32::try_from(pending)
                                .map_err(|_| unsupported(text, "an offset too large"))?,
                        )
                        .ok_or_else(|| unsupported(text, "an offset too large"))?;
                }
                spec.reads += 1;
                spec.size = size;
                Ok(spec)
            }
        }
    }
}

fn unsupported(text: &str, why: &str) -> DwarfError {
    DwarfError::Unsupported {
        name: text.to_owned(),
        why: why.to_owned(),
    }
}

/// The spec reading `access` at `function`'s entry, and the type to show it as.
pub fn compile(
    function: &FunctionInfo,
    access: &Access,
    text: &str,
) -> Result<(ValueSpec, ValueType, Ty), DwarfError> {
    let parameter = function
        .parameters
        .iter()
        .find(|p| p.name == access.root)
        .ok_or_else(|| DwarfError::NoParameter {
            function: function.name.clone(),
            name: access.root.clone(),
            params: function.parameters.iter().map(|p| p.name.clone()).collect(),
        })?;
    let optimized_out = || DwarfError::OptimizedOut {
        function: function.name.clone(),
        name: text.to_owned(),
    };
    let mut steps: &[Step] = &access.steps;
    let mut ty = parameter.ty.clone();
    // A struct held in pieces (registers): its first field names the piece to start from.
    let place = match (parameter.location, steps.first()) {
        (Some(place), _) => place,
        (None, Some(Step::Dot(field))) if !parameter.pieces.is_empty() => {
            let (offset, member) = member(&ty, field, text)?;
            let mut at = 0i64;
            let mut found = None;
            for (piece, size) in &parameter.pieces {
                if at == offset {
                    found = Some(piece.ok_or_else(optimized_out)?);
                    break;
                }
                at += *size as i64;
            }
            steps = &steps[1..];
            ty = member;
            found.ok_or_else(|| {
                unsupported(text, "the field does not start a piece of its struct")
            })?
        }
        (None, _) => return Err(optimized_out()),
    };
    // At the entry, the function's own frame does not exist yet: a parameter kept in a
    // slot of it (code built without optimization) has not been stored there. Arguments
    // the caller passed on the stack (above the return address) are there already.
    if let Place::Memory { base, offset } = place
        && function.at_entry
        && (base == reg::x86_64::RBP || (base == reg::x86_64::RSP && offset < 8))
    {
        return Err(unsupported(
            text,
            "at the function's entry it lives in a stack slot the function has not written yet (code built without optimization); probe past the prologue: a source line (FILE:LINE) or FUNC+OFFSET",
        ));
    }
    let mut current = match place {
        // DWARF numbers the SSE registers from 17: pt_regs, all a uprobe program sees,
        // has none of them.
        Place::Register(r) if r as usize >= reg::x86_64::COUNT => {
            return Err(unsupported(
                text,
                "it is in an SSE register (floating point), which uprobe programs cannot read",
            ));
        }
        Place::Register(r) => Current::Value(ValueSpec::register(r, 8, false)),
        Place::Memory { base, offset } => Current::address_of(
            ValueSpec {
                base,
                ..ValueSpec::NONE
            },
            offset,
        ),
        Place::Computed { base, offset } => Current::Value(ValueSpec {
            base,
            displacement: offset,
            ..ValueSpec::NONE
        }),
    };
    for step in steps {
        let (next, offset) = match (step, &ty) {
            (Step::Arrow(field), Ty::Pointer(to)) => {
                let (offset, member) = member(to, field, text)?;
                current = Current::address_of(current.load(text, 8)?, 0);
                (member, offset)
            }
            (Step::Dot(field), Ty::Struct { .. }) => {
                let (offset, member) = member(&ty, field, text)?;
                (member, offset)
            }
            (Step::Index(n), Ty::Pointer(to)) => {
                current = Current::address_of(current.load(text, 8)?, 0);
                ((**to).clone(), (*n * to.size()) as i64)
            }
            (Step::Index(n), Ty::Array { element, .. }) => {
                ((**element).clone(), (*n * element.size()) as i64)
            }
            (Step::Arrow(_), _) => {
                return Err(unsupported(text, "'->' needs a pointer to a struct"));
            }
            (Step::Dot(_), _) => return Err(unsupported(text, "'.' needs a struct")),
            (Step::Index(_), _) => {
                return Err(unsupported(text, "'[N]' needs an array or a pointer"));
            }
        };
        current = match current {
            Current::Address(spec, pending) => Current::Address(spec, pending + offset),
            Current::Value(_) => {
                return Err(unsupported(
                    text,
                    "a struct held in registers is not read field by field",
                ));
            }
        };
        ty = next;
    }
    let (size, shown) = match &ty {
        Ty::Int { size, signed, .. } => (
            *size,
            ValueType::Int {
                bytes: *size,
                signed: *signed,
            },
        ),
        Ty::Bool { size } => (
            *size,
            ValueType::Int {
                bytes: *size,
                signed: false,
            },
        ),
        Ty::Enum { size, values, .. } => {
            let signed = values.iter().any(|(v, _)| *v < 0);
            (
                *size,
                ValueType::Int {
                    bytes: *size,
                    signed,
                },
            )
        }
        Ty::Pointer(to) if matches!(**to, Ty::Int { is_char: true, .. }) => (8, ValueType::Str),
        Ty::Pointer(_) => (8, ValueType::Hex),
        Ty::Float { size, .. } if *size == 4 || *size == 8 => {
            (*size, ValueType::Float { bytes: *size })
        }
        Ty::Float { .. } => return Err(unsupported(text, "only 4- and 8-byte floats are read")),
        Ty::Struct { name, members, .. } => {
            let fields: Vec<&str> = members.iter().map(|(n, _, _)| n.as_str()).collect();
            return Err(unsupported(
                text,
                &format!("is a struct {name}: name a field ({})", fields.join(", ")),
            ));
        }
        Ty::Array { .. } => return Err(unsupported(text, "is an array: name an element ([N])")),
        Ty::Void | Ty::Unknown => return Err(unsupported(text, "its type is not one this reads")),
    };
    let mut spec = current.load(text, size)?;
    spec.size = size;
    if let ValueType::Int { signed, .. } = shown {
        spec.signed = u8::from(signed);
    }
    // A register is read whole and narrowed by `size`.
    if spec.reads == 0 && spec.base != reg::NONE {
        spec.size = size;
    }
    Ok((spec, shown, ty))
}

fn member(ty: &Ty, field: &str, text: &str) -> Result<(i64, Ty), DwarfError> {
    let Ty::Struct { name, members, .. } = ty else {
        return Err(unsupported(text, "'->' and '.' need a struct"));
    };
    members
        .iter()
        .find(|(n, _, _)| n == field)
        .map(|(_, offset, ty)| (*offset as i64, ty.clone()))
        .ok_or_else(|| {
            let fields: Vec<&str> = members.iter().map(|(n, _, _)| n.as_str()).collect();
            unsupported(
                text,
                &format!(
                    "struct {name} has no field '{field}' (it has: {})",
                    fields.join(", ")
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{dwarf::Parameter, values::access::parse_access};

    fn int(size: u8, signed: bool) -> Ty {
        Ty::Int {
            name: "int".into(),
            size,
            signed,
            is_char: false,
        }
    }

    #[test]
    fn fields_two_pointers_deep_compile_to_reads() {
        let hdr = Ty::Struct {
            name: "hdr".into(),
            size: 16,
            members: vec![
                ("pad".into(), 0, int(8, false)),
                ("kind".into(), 12, int(4, true)),
            ],
        };
        let req = Ty::Struct {
            name: "req".into(),
            size: 24,
            members: vec![
                ("len".into(), 0, int(4, false)),
                ("hdr".into(), 8, Ty::Pointer(Box::new(hdr))),
            ],
        };
        let function = FunctionInfo {
            name: "handle".into(),
            return_type: Ty::Void,
            at_entry: true,
            parameters: vec![Parameter {
                name: "r".into(),
                ty: Ty::Pointer(Box::new(req)),
                location: Some(Place::Register(reg::x86_64::RDI)),
                pieces: Vec::new(),
            }],
        };
        let (spec, ty, _) = compile(&function, &parse_access("r->len").unwrap(), "r->len").unwrap();
        assert_eq!(
            (spec.base, spec.reads, spec.displacement, spec.size),
            (reg::x86_64::RDI, 1, 0, 4)
        );
        assert_eq!(
            ty,
            ValueType::Int {
                bytes: 4,
                signed: false
            }
        );
        let (spec, ty, _) =
            compile(&function, &parse_access("r->hdr->kind").unwrap(), "x").unwrap();
        assert_eq!(
            (
                spec.reads,
                spec.displacement,
                spec.after[0],
                spec.size,
                spec.signed
            ),
            (2, 8, 12, 4, 1)
        );
        assert_eq!(
            ty,
            ValueType::Int {
                bytes: 4,
                signed: true
            }
        );
        let err = compile(&function, &parse_access("r->nope").unwrap(), "r->nope").unwrap_err();
        assert!(
            err.to_string()
                .contains("has no field 'nope' (it has: len, hdr)"),
            "{err}"
        );
        let err = compile(&function, &parse_access("q").unwrap(), "q").unwrap_err();
        assert!(
            err.to_string().contains("no parameter 'q' (it has: r)"),
            "{err}"
        );
    }
}
