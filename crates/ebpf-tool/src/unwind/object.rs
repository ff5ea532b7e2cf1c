//! One ELF file as an unwinder and a namer need it: its unwind tables (`.eh_frame`,
//! `.eh_frame_hdr`, `.debug_frame`) and code for framehop, its loadable segments (to turn
//! a mapping into a load bias, and an address into a file offset), and its functions by
//! address, from the resolver every other part uses (`.symtab`, `.dynsym`,
//! MiniDebugInfo, debug files): functions only, never a data object.

use std::{ops::Range, path::Path, sync::Arc};

use object::{Object as _, ObjectSection as _, ObjectSegment as _};

use crate::symbols::Symbols;

/// Files bigger than this are not read for unwinding (their frames stay unnamed).
const MAX_OBJECT_BYTES: u64 = 1 << 31;

/// Section bytes shared by every process that maps the file.
pub type Bytes = Arc<[u8]>;

/// A loadable segment: file bytes `offset..offset + filesz` at `vaddr`.
#[derive(Debug, Clone, Copy)]
pub struct Segment {
    pub vaddr: u64,
    pub offset: u64,
    pub filesz: u64,
}

/// A function's link-time range and its name as people read it.
#[derive(Debug, Clone)]
struct Function {
    start: u64,
    end: u64,
    name: String,
}

pub struct ObjectInfo {
    /// The file name, for frames no function covers (`libfoo.so+0x1234`).
    pub file_name: String,
    pub segments: Vec<Segment>,
    pub unwind: framehop::ExplicitModuleSectionInfo<Bytes>,
    functions: Vec<Function>,
    /// DWARF, from the file or its separate debug file: source lines, inlined calls.
    dwarf: Option<addr2line::Loader>,
}

/// What debug info says of an address: the calls inlined there (innermost first), then
/// the function itself, each with its source location.
pub struct SourceFrame {
    pub function: Option<String>,
    pub location: Option<String>,
}

impl ObjectInfo {
    /// Reads `path` (a `/proc/PID/map_files` entry, or a path), named `shown`.
    pub fn read(path: &Path, shown: &Path) -> Option<ObjectInfo> {
        let data = crate::files::read_regular(path, MAX_OBJECT_BYTES).ok()?;
        let file = object::File::parse(&*data).ok()?;
        let section = |name: &str| {
            let section = file.section_by_name(name)?;
            let bytes: Bytes = section.uncompressed_data().ok()?.as_ref().into();
            Some((section.address()..section.address() + section.size(), bytes))
        };
        let (text_svma, text) = section(".text").unzip();
        let (eh_frame_svma, eh_frame) = section(".eh_frame").unzip();
        let (eh_frame_hdr_svma, eh_frame_hdr) = section(".eh_frame_hdr").unzip();
        let debug_frame = section(".debug_frame").map(|(_, bytes)| bytes);
        let segments: Vec<Segment> = file
            .segments()
            .map(|s| Segment {
                vaddr: s.address(),
                offset: s.file_range().0,
                filesz: s.file_range().1,
            })
            .collect();
        let symbols = Symbols::from_image(shown, &data, Path::new("/usr/lib/debug")).ok();
        let dwarf_file = if file.section_by_name(".debug_info").is_some() {
            Some(path.to_owned())
        } else {
            symbols
                .as_ref()
                .and_then(|s| s.debug_file())
                .map(Path::to_owned)
        };
        let dwarf = dwarf_file.and_then(|f| addr2line::Loader::new(f).ok());
        let mut functions: Vec<Function> = symbols
            .map(|symbols| {
                symbols
                    .functions()
                    .iter()
                    .filter(|f| f.size > 0)
                    .map(|f| Function {
                        start: f.address,
                        end: f.address + f.size,
                        name: f.demangled.clone().unwrap_or_else(|| f.name.clone()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        functions.sort_by_key(|f| (f.start, std::cmp::Reverse(f.end)));
        Some(ObjectInfo {
            file_name: shown.file_name().map_or_else(
                || shown.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            segments,
            unwind: framehop::ExplicitModuleSectionInfo {
                base_svma: 0,
                text_svma,
                text,
                eh_frame_svma,
                eh_frame,
                eh_frame_hdr_svma,
                eh_frame_hdr,
                debug_frame,
                ..Default::default()
            },
            functions,
            dwarf,
        })
    }

    /// Source frames at link-time address `svma` (empty without debug info).
    pub fn source_frames(&self, svma: u64) -> Vec<SourceFrame> {
        let Some(dwarf) = &self.dwarf else {
            return Vec::new();
        };
        let Ok(mut frames) = dwarf.find_frames(svma) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while let Ok(Some(frame)) = frames.next() {
            let function = frame
                .function
                .as_ref()
                .and_then(|f| f.demangle().ok())
                .map(|name| name.into_owned());
            let location = frame.location.and_then(|l| {
                let file = Path::new(l.file?)
                    .file_name()?
                    .to_string_lossy()
                    .into_owned();
                Some(match l.line {
                    Some(line) => format!("{file}:{line}"),
                    None => file,
                })
            });
            out.push(SourceFrame { function, location });
        }
        out
    }

    /// The load bias of a mapping of this file at `start` from file offset `offset`.
    pub fn bias(&self, start: u64, offset: u64) -> Option<u64> {
        let segment = self
            .segments
            .iter()
            .find(|s| (s.offset & !0xfff) <= offset && offset < s.offset + s.filesz.max(1))?;
        Some(
            start
                .wrapping_sub(offset)
                .wrapping_add(segment.offset)
                .wrapping_sub(segment.vaddr),
        )
    }

    /// The innermost function holding link-time address `svma`.
    pub fn function_at(&self, svma: u64) -> Option<&str> {
        let after = self.functions.partition_point(|f| f.start <= svma);
        self.functions[..after]
            .iter()
            .rev()
            .take(8)
            .find(|f| svma < f.end)
            .map(|f| f.name.as_str())
    }

    /// The file offset of link-time address `svma`, when a segment holds it.
    pub fn file_offset(&self, svma: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| (s.vaddr..s.vaddr + s.filesz).contains(&svma))
            .map(|s| svma - s.vaddr + s.offset)
    }

    /// Link-time range of the code, for framehop's module.
    pub fn text_range(&self) -> Option<Range<u64>> {
        self.unwind.text_svma.clone()
    }
}
