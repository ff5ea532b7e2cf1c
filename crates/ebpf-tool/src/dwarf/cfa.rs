//! Where the canonical frame address is at an instruction, from the file's `.eh_frame`:
//! what a frame-base offset (`DW_OP_fbreg` with `DW_AT_frame_base DW_OP_call_frame_cfa`)
//! is relative to. At a function's entry it is the stack pointer plus 8; past the
//! prologue it is usually the frame pointer plus 16, or the stack pointer plus the frame.

use gimli::{BaseAddresses, CfaRule, EhFrame, LittleEndian, UnwindContext, UnwindSection as _};
use object::{Object as _, ObjectSection as _};

/// The `.eh_frame` of one file.
pub struct FrameTable {
    data: Vec<u8>,
    bases: BaseAddresses,
}

impl FrameTable {
    pub fn read(file: &object::File<'_>) -> Option<FrameTable> {
        let section = file.section_by_name(".eh_frame")?;
        let data = section.uncompressed_data().ok()?.into_owned();
        let mut bases = BaseAddresses::default().set_eh_frame(section.address());
        if let Some(text) = file.section_by_name(".text") {
            bases = bases.set_text(text.address());
        }
        if let Some(hdr) = file.section_by_name(".eh_frame_hdr") {
            bases = bases.set_eh_frame_hdr(hdr.address());
        }
        Some(FrameTable { data, bases })
    }

    /// The CFA at link-time address `pc` as (register, offset).
    pub fn cfa_at(&self, pc: u64) -> Option<(u8, i64)> {
        let eh_frame = EhFrame::new(&self.data, LittleEndian);
        let mut context = Box::new(UnwindContext::new());
        let row = eh_frame
            .unwind_info_for_address(&self.bases, &mut context, pc, EhFrame::cie_from_offset)
            .ok()?;
        match row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } => Some((register.0 as u8, *offset)),
            CfaRule::Expression(_) => None,
        }
    }
}
