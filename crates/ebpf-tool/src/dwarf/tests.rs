//! The location evaluator against hand-built DWARF (gimli's writer): a parameter in a
//! register, one at a frame-base offset (from the CFA), one whose location list names
//! another register past the entry, a struct in two register pieces, and the types that
//! decide how each is read.

use gimli::write::{
    Address, AttributeValue, Dwarf, EndianVec, Expression, Location, LocationList, Sections, Unit,
};
use gimli::{Encoding, Format, LittleEndian, Register};

use super::*;
use crate::values::access::parse_access;

const LOW_PC: u64 = 0x1000;
const INSIDE: u64 = 0x1010;

/// One CU: `long f(struct req *r, int n, long on_stack, struct pair p)`.
fn hand_built() -> DebugInfo {
    let encoding = Encoding {
        format: Format::Dwarf32,
        version: 5,
        address_size: 8,
    };
    let mut dwarf = Dwarf::new();
    let unit_id = dwarf
        .units
        .add(Unit::new(encoding, gimli::write::LineProgram::none()));
    let unit = dwarf.units.get_mut(unit_id);
    let root = unit.root();
    let name = |unit: &mut Unit, id, text: &str| {
        unit.get_mut(id).set(
            gimli::DW_AT_name,
            AttributeValue::String(text.as_bytes().to_vec()),
        )
    };
    let base = |unit: &mut Unit, text: &str, size: u8, encoding| {
        let id = unit.add(root, gimli::DW_TAG_base_type);
        name(unit, id, text);
        unit.get_mut(id)
            .set(gimli::DW_AT_byte_size, AttributeValue::Data1(size));
        unit.get_mut(id)
            .set(gimli::DW_AT_encoding, AttributeValue::Encoding(encoding));
        id
    };
    let int = base(unit, "int", 4, gimli::DW_ATE_signed);
    let long = base(unit, "long", 8, gimli::DW_ATE_signed);
    let unsigned = base(unit, "unsigned int", 4, gimli::DW_ATE_unsigned);
    let req = unit.add(root, gimli::DW_TAG_structure_type);
    name(unit, req, "req");
    unit.get_mut(req)
        .set(gimli::DW_AT_byte_size, AttributeValue::Data1(16));
    let member = |unit: &mut Unit, parent, text: &str, ty, at: u8| {
        let id = unit.add(parent, gimli::DW_TAG_member);
        name(unit, id, text);
        unit.get_mut(id)
            .set(gimli::DW_AT_type, AttributeValue::UnitRef(ty));
        unit.get_mut(id)
            .set(gimli::DW_AT_data_member_location, AttributeValue::Data1(at));
    };
    member(unit, req, "pad", long, 0);
    member(unit, req, "len", unsigned, 8);
    let req_ptr = unit.add(root, gimli::DW_TAG_pointer_type);
    unit.get_mut(req_ptr)
        .set(gimli::DW_AT_byte_size, AttributeValue::Data1(8));
    unit.get_mut(req_ptr)
        .set(gimli::DW_AT_type, AttributeValue::UnitRef(req));
    let pair = unit.add(root, gimli::DW_TAG_structure_type);
    name(unit, pair, "pair");
    unit.get_mut(pair)
        .set(gimli::DW_AT_byte_size, AttributeValue::Data1(16));
    member(unit, pair, "a", long, 0);
    member(unit, pair, "b", long, 8);

    let f = unit.add(root, gimli::DW_TAG_subprogram);
    name(unit, f, "f");
    unit.get_mut(f).set(
        gimli::DW_AT_low_pc,
        AttributeValue::Address(Address::Constant(LOW_PC)),
    );
    unit.get_mut(f)
        .set(gimli::DW_AT_high_pc, AttributeValue::Udata(0x40));
    let mut cfa = Expression::new();
    cfa.op(gimli::DW_OP_call_frame_cfa);
    unit.get_mut(f)
        .set(gimli::DW_AT_frame_base, AttributeValue::Exprloc(cfa));
    unit.get_mut(f)
        .set(gimli::DW_AT_type, AttributeValue::UnitRef(long));
    let param = |unit: &mut Unit, text: &str, ty, location: AttributeValue| {
        let id = unit.add(f, gimli::DW_TAG_formal_parameter);
        name(unit, id, text);
        unit.get_mut(id)
            .set(gimli::DW_AT_type, AttributeValue::UnitRef(ty));
        unit.get_mut(id).set(gimli::DW_AT_location, location);
    };
    let mut in_rdi = Expression::new();
    in_rdi.op_reg(Register(5));
    param(unit, "r", req_ptr, AttributeValue::Exprloc(in_rdi));
    // n: in rsi at the entry, in rbx from INSIDE on.
    let mut in_rsi = Expression::new();
    in_rsi.op_reg(Register(4));
    let mut in_rbx = Expression::new();
    in_rbx.op_reg(Register(3));
    let list = unit.locations.add(LocationList(vec![
        Location::StartEnd {
            begin: Address::Constant(LOW_PC),
            end: Address::Constant(INSIDE),
            data: in_rsi,
        },
        Location::StartEnd {
            begin: Address::Constant(INSIDE),
            end: Address::Constant(LOW_PC + 0x40),
            data: in_rbx,
        },
    ]));
    param(unit, "n", int, AttributeValue::LocationListRef(list));
    // on_stack: the 7th argument, 8 bytes above the CFA... which is rsp + 8 at the entry.
    let mut above = Expression::new();
    above.op_fbreg(8);
    param(unit, "on_stack", long, AttributeValue::Exprloc(above));
    // p: a struct in two pieces, rdx then rcx.
    let mut pieces = Expression::new();
    pieces.op_reg(Register(1));
    pieces.op_piece(8);
    pieces.op_reg(Register(2));
    pieces.op_piece(8);
    param(unit, "p", pair, AttributeValue::Exprloc(pieces));

    let mut sections = Sections::new(EndianVec::new(LittleEndian));
    dwarf.write(&mut sections).unwrap();
    let read = gimli::Dwarf::load(|id| -> Result<R, gimli::Error> {
        let bytes: std::sync::Arc<[u8]> = sections.get(id).map_or_else(
            || std::sync::Arc::from(&[][..]),
            |w| std::sync::Arc::from(w.slice()),
        );
        Ok(EndianArcSlice::new(bytes, RunTimeEndian::Little))
    })
    .unwrap();
    DebugInfo {
        dwarf: read,
        path: "hand-built".into(),
        frames: None,
        splits: Vec::new(),
        current: std::cell::Cell::new(0),
    }
}

fn spec(
    info: &FunctionInfo,
    text: &str,
) -> Result<
    (
        ebpf_tool_common::ValueSpec,
        crate::values::request::ValueType,
    ),
    DwarfError,
> {
    let (spec, ty, _) = expr::compile(info, &parse_access(text).unwrap(), text)?;
    Ok((spec, ty))
}

#[test]
fn locations_at_the_entry_and_inside() {
    use ebpf_tool_common::reg::x86_64::*;
    let info = hand_built();
    let entry = info.function("f", LOW_PC, LOW_PC).unwrap();
    assert_eq!(
        entry.signature(),
        "long f(struct req *r, int n, long on_stack, struct pair p)"
    );

    let (s, ty) = spec(&entry, "r->len").unwrap();
    assert_eq!((s.base, s.reads, s.displacement, s.size), (RDI, 1, 8, 4));
    assert_eq!(
        ty,
        crate::values::request::ValueType::Int {
            bytes: 4,
            signed: false
        }
    );
    let (s, _) = spec(&entry, "n").unwrap();
    assert_eq!((s.base, s.reads, s.size, s.signed), (RSI, 0, 4, 1));
    let (s, _) = spec(&entry, "on_stack").unwrap();
    assert_eq!(
        (s.base, s.displacement, s.reads),
        (RSP, 16, 1),
        "CFA (rsp + 8) + 8"
    );
    let (s, _) = spec(&entry, "p.b").unwrap();
    assert_eq!((s.base, s.reads), (RCX, 0), "the second piece");

    // Past the entry the location list says rbx; the frame-base offset needs the CFA
    // there, which only an unwind table can say: without one, it is not guessed.
    let inside = info.function("f", LOW_PC, INSIDE).unwrap();
    let (s, _) = spec(&inside, "n").unwrap();
    assert_eq!(s.base, RBX);
    assert!(matches!(
        spec(&inside, "on_stack"),
        Err(DwarfError::OptimizedOut { .. })
    ));
}
