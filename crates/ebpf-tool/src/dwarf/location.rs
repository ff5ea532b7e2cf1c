//! Location expressions at one address, reduced to where a value is: a register, memory
//! at a register plus an offset (the CFA for frame-base offsets), a computed value, or
//! pieces of a struct held in registers.

use gimli::Operation;

use super::{Place, R};

/// Where a location expression puts a value at the function's entry, for the forms a
/// parameter has there: a register, a frame-base (CFA) or register offset, an entry value.
pub(super) fn place_of(
    expression: gimli::Expression<R>,
    encoding: gimli::Encoding,
    cfa: Option<(u8, i64)>,
) -> Option<Place> {
    let ops = operations(expression, encoding)?;
    place_of_ops(&ops, encoding, cfa)
}

fn operations(
    expression: gimli::Expression<R>,
    encoding: gimli::Encoding,
) -> Option<Vec<Operation<R>>> {
    let mut iter = expression.operations(encoding);
    let mut ops = Vec::new();
    while let Some(op) = iter.next().ok()? {
        ops.push(op);
    }
    Some(ops)
}

pub(super) fn place_of_ops(
    ops: &[Operation<R>],
    encoding: gimli::Encoding,
    cfa: Option<(u8, i64)>,
) -> Option<Place> {
    let place = match ops.first()?.clone() {
        Operation::Register { register } => Place::Register(register.0 as u8),
        Operation::RegisterOffset {
            register, offset, ..
        } => Place::Memory {
            base: register.0 as u8,
            offset,
        },
        // With DW_AT_frame_base DW_OP_call_frame_cfa: from the CFA at this address.
        Operation::FrameOffset { offset } => match cfa {
            Some((base, cfa_offset)) => Place::Memory {
                base,
                offset: cfa_offset + offset,
            },
            None => return None,
        },
        Operation::EntryValue { expression } => {
            let mut inner = gimli::Expression(expression).operations(encoding);
            match inner.next().ok()?? {
                Operation::Register { register } => Place::Register(register.0 as u8),
                _ => return None,
            }
        }
        _ => return None,
    };
    match (place, ops.get(1), ops.len()) {
        (place, None, 1) => Some(place),
        (Place::Register(_), Some(Operation::StackValue), 2) => Some(place),
        (Place::Memory { base, offset }, Some(Operation::StackValue), 2) => {
            Some(Place::Computed { base, offset })
        }
        _ => None,
    }
}

/// The pieces of a location made of `DW_OP_piece`s: each piece's own place (None for an
/// empty piece: that part is not described) and size; empty when not in pieces.
pub(super) fn pieces_of(
    expression: gimli::Expression<R>,
    encoding: gimli::Encoding,
    cfa: Option<(u8, i64)>,
) -> Vec<(Option<Place>, u64)> {
    let Some(ops) = operations(expression, encoding) else {
        return Vec::new();
    };
    let mut pieces = Vec::new();
    let mut part: Vec<Operation<R>> = Vec::new();
    for op in ops {
        match op {
            Operation::Piece {
                size_in_bits,
                bit_offset: None,
            } => {
                let place = if part.is_empty() {
                    None
                } else {
                    place_of_ops(&part, encoding, cfa)
                };
                pieces.push((place, size_in_bits / 8));
                part.clear();
            }
            other => part.push(other),
        }
    }
    pieces
}
