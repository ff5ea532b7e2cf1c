//! The bytes of the traced file's code, read where a probe goes: to decode the
//! instruction at a probe site (`probe_site`) and to find instruction boundaries for
//! `FUNC+OFFSET` and addresses.

use std::{fs::File, os::unix::fs::FileExt as _};

use super::{CallConv, FunctionSymbol, SymbolError, Symbols, exits, probe_site};

/// The most bytes an x86-64 instruction can have.
const MAX_INSN_BYTES: usize = 15;

/// The biggest function whose code is decoded for its returns.
const MAX_FUNCTION_BYTES: u64 = 16 << 20;

/// Where probes see a function's calls end (`--ret-sites`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReturnSites {
    /// File offsets of its return instructions.
    pub offsets: Vec<u64>,
    /// Ways out other than a return: tail jumps, and returns a probe cannot sit on.
    pub other_exits: usize,
    /// False when returns reached only through jump tables may be missing.
    pub complete: bool,
}

/// Why a function's returns cannot be probed where they happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoReturnSites {
    #[error("return instructions are found in x86-64 code only")]
    Machine,
    #[error("its size is unknown, so its code cannot be read to its end")]
    NoSize,
    #[error("it is bigger than {} MiB", MAX_FUNCTION_BYTES >> 20)]
    TooBig,
    #[error(
        "it has no return instruction a probe can sit on (it ends in tail jumps, or never returns)"
    )]
    None,
}

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

    /// Where `function`'s calls are seen returning: its return instructions (see
    /// `exits`), each checked as a probe site.
    pub fn return_sites(&self, function: &FunctionSymbol) -> Result<ReturnSites, NoReturnSites> {
        if self.machine != object::elf::EM_X86_64 {
            return Err(NoReturnSites::Machine);
        }
        match function.size {
            0 => return Err(NoReturnSites::NoSize),
            size if size > MAX_FUNCTION_BYTES => return Err(NoReturnSites::TooBig),
            _ => {}
        }
        // The body, then any cold parts the compiler split off (they may return too).
        let cold = self
            .cold_parts
            .get(&function.name)
            .map_or(&[][..], Vec::as_slice);
        let mut pieces = vec![(function.address, function.file_offset, function.size)];
        pieces.extend(
            cold.iter()
                .filter(|c| c.size > 0 && c.size <= MAX_FUNCTION_BYTES)
                .map(|c| (c.address, c.file_offset, c.size)),
        );
        let code: Vec<Vec<u8>> = pieces
            .iter()
            .map(|&(_, offset, size)| self.code.read(offset, size as usize))
            .collect();
        let parts: Vec<exits::Part> = pieces
            .iter()
            .zip(&code)
            .map(|(&(address, _, _), code)| exits::Part { code, address })
            .collect();
        let found = exits::exits_x86_64(&parts);
        let mut sites = ReturnSites {
            other_exits: found.tail_jumps,
            complete: found.complete,
            ..ReturnSites::default()
        };
        for address in found.returns {
            let Some((piece, code)) = pieces.iter().zip(&code).find(|((start, _, _), code)| {
                (*start..*start + code.len() as u64).contains(&address)
            }) else {
                continue;
            };
            let at = (address - piece.0) as usize;
            let end = (at + MAX_INSN_BYTES).min(code.len());
            match probe_site::check_x86_64(&code[at..end], address) {
                Ok(_) => sites.offsets.push(piece.1 + at as u64),
                Err(_) => sites.other_exits += 1,
            }
        }
        if sites.offsets.is_empty() {
            return Err(NoReturnSites::None);
        }
        Ok(sites)
    }

    /// Where `function`'s entry probe goes (a file offset): its probe point, or for a Go
    /// function the start of its body, past the stack check that runs the entry again
    /// once the stack has grown (a probe on the entry would see those calls twice).
    pub fn entry_probe_offset(&self, function: &FunctionSymbol) -> u64 {
        let go = matches!(function.call, CallConv::GoRegisters | CallConv::GoStack);
        if !go || !function.at_entry() || self.machine != object::elf::EM_X86_64 {
            return function.file_offset;
        }
        let code = self.code.read(function.file_offset, 64);
        let Some(skip) = exits::go_body_start_x86_64(&code, function.address) else {
            return function.file_offset;
        };
        let body = &code[skip as usize..];
        match probe_site::check_x86_64(body, function.address + skip) {
            Ok(_) => function.file_offset + skip,
            Err(_) => function.file_offset,
        }
    }
}

/// Functions sampled to tell whether a file keeps frame pointers.
const FRAME_POINTER_SAMPLE: usize = 200;

impl Symbols {
    /// Whether the file's code keeps frame pointers: a good share of its functions (a
    /// sample) set one up, `mov %rsp,%rbp`, near their start (compilers delay it past
    /// early exits, and leave it out of leaf functions). Code built without frame
    /// pointers (most distributions') almost never does, and a frame-pointer walk then
    /// stops or wanders after the first frame.
    pub fn keeps_frame_pointers(&self) -> bool {
        if self.machine != object::elf::EM_X86_64 {
            return true;
        }
        let sized: Vec<&FunctionSymbol> =
            self.functions().iter().filter(|f| f.size >= 16).collect();
        if sized.is_empty() {
            return true;
        }
        let step = sized.len().div_ceil(FRAME_POINTER_SAMPLE);
        let (mut with, mut all) = (0, 0);
        for function in sized.iter().step_by(step) {
            let start = self
                .code
                .read(function.file_offset, 32.min(function.size as usize));
            all += 1;
            if start.windows(3).any(|w| w == [0x48, 0x89, 0xe5]) {
                with += 1;
            }
        }
        log::debug!(
            "{}: {with} of {all} sampled functions set up a frame pointer",
            self.path.display()
        );
        with * 4 >= all
    }
}
