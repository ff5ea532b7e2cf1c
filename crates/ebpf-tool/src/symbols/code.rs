//! The bytes of the traced file's code, read where a probe goes: to decode the
//! instruction at a probe site (`probe_site`) and to find instruction boundaries for
//! `FUNC+OFFSET` and addresses.

use std::{fs::File, os::unix::fs::FileExt as _};

use super::{FunctionSymbol, SymbolError, Symbols, probe_site};

/// The most bytes an x86-64 instruction can have.
const MAX_INSN_BYTES: usize = 15;

/// Where the bytes of the file's code are read from, to check probe sites.
#[derive(Debug)]
pub(super) enum Code {
    File(File),
    Image(Vec<u8>),
}

impl Code {
    /// Up to `len` bytes at `offset` (fewer at the end of the file).
    pub(super) fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        let got = match self {
            Code::File(file) => {
                let mut got = 0;
                while got < len {
                    match file.read_at(&mut buf[got..], offset + got as u64) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n,
                    }
                }
                got
            }
            Code::Image(image) => {
                let start = (offset as usize).min(image.len());
                let end = start.saturating_add(len).min(image.len());
                buf[..end - start].copy_from_slice(&image[start..end]);
                end - start
            }
        };
        buf.truncate(got);
        buf
    }
}

impl Symbols {
    /// Whether a probe may sit at `function`'s probe point (see `probe_site`): the
    /// instruction there must be one the kernel's uprobes run correctly.
    pub fn check_site(&self, function: &FunctionSymbol) -> Result<(), probe_site::Unprobeable> {
        if self.machine != object::elf::EM_X86_64 {
            return Ok(());
        }
        let code = self.code.read(function.file_offset, MAX_INSN_BYTES);
        probe_site::check_x86_64(&code, function.address).map(|_| ())
    }

    /// Checks that `offset` bytes into `function` (at its entry) an instruction starts;
    /// the error lists the instruction starts around it.
    pub(super) fn check_boundary(
        &self,
        function: &FunctionSymbol,
        offset: u64,
    ) -> Result<(), SymbolError> {
        let inside = |near: String| SymbolError::InsideInstruction {
            symbol: function.label(),
            offset,
            near,
        };
        match self.machine {
            object::elf::EM_X86_64 => {
                let code = self
                    .code
                    .read(function.file_offset, offset as usize + MAX_INSN_BYTES);
                let starts = probe_site::instruction_starts_x86_64(&code, function.address, offset);
                if starts.last() == Some(&offset) {
                    return Ok(());
                }
                let near: Vec<String> = starts
                    .iter()
                    .rev()
                    .take(4)
                    .rev()
                    .map(|o| format!("+{o:#x}"))
                    .collect();
                Err(inside(near.join(", ")))
            }
            object::elf::EM_AARCH64 if !offset.is_multiple_of(4) => {
                Err(inside("multiples of 4 on AArch64".into()))
            }
            _ => Ok(()),
        }
    }
}
