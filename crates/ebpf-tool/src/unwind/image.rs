//! A process's code as it was mapped when the process was first seen: each executable
//! file mapping with its load bias, and a framehop unwinder over them. Kept after the
//! process exits, so its stacks are still unwound and named at the end of the run.

use std::{collections::HashMap, ops::Range, path::PathBuf, sync::Arc};

use framehop::{
    FrameAddress, Module, Unwinder as _,
    x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64},
};

use super::object::{Bytes, ObjectInfo};

/// Frames followed at most (the kernel's `PERF_MAX_STACK_DEPTH`).
const MAX_FRAMES: usize = 127;

/// Files read once for every process that maps them, by (device, inode).
pub type ObjectCache = HashMap<(String, u64), Option<Arc<ObjectInfo>>>;

/// One executable mapping of a file.
struct Loaded {
    range: Range<u64>,
    bias: u64,
    object: Arc<ObjectInfo>,
}

pub struct ProcessImage {
    loaded: Vec<Loaded>,
    unwinder: UnwinderX86_64<Bytes>,
}

/// A frame of an unwound stack: where it is, and whether it is a return address (to be
/// looked up one byte back, inside the call).
#[derive(Debug, Clone, Copy)]
pub struct FrameAt {
    pub address: u64,
    pub lookup: u64,
}

impl ProcessImage {
    /// Reads `/proc/PID/maps`; each file is opened through `/proc/PID/map_files`, so the
    /// very file mapped is read (another mount namespace, a deleted or replaced file).
    pub fn read(pid: u32, objects: &mut ObjectCache) -> Option<ProcessImage> {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
        let mut image = ProcessImage {
            loaded: Vec::new(),
            unwinder: UnwinderX86_64::new(),
        };
        for line in maps.lines() {
            let Some(mapping) = Mapping::parse(line) else {
                continue;
            };
            let object = objects
                .entry((mapping.device.clone(), mapping.inode))
                .or_insert_with(|| {
                    let through = PathBuf::from(format!(
                        "/proc/{pid}/map_files/{:x}-{:x}",
                        mapping.start, mapping.end
                    ));
                    // The path too: the process may have gone since its maps were read.
                    ObjectInfo::read(&through, &mapping.path)
                        .or_else(|| ObjectInfo::read(&mapping.path, &mapping.path))
                        .map(Arc::new)
                })
                .clone();
            let Some(object) = object else { continue };
            let Some(bias) = object.bias(mapping.start, mapping.offset) else {
                continue;
            };
            if object.text_range().is_some() {
                image.unwinder.add_module(Module::new(
                    object.file_name.clone(),
                    mapping.start..mapping.end,
                    bias,
                    object.unwind.clone(),
                ));
            }
            image.loaded.push(Loaded {
                range: mapping.start..mapping.end,
                bias,
                object,
            });
        }
        // A process that has exited (a zombie) shows no mappings at all.
        (!image.loaded.is_empty()).then_some(image)
    }

    /// What is left of a process that exited before its mappings were read: the traced
    /// file alone, at the load bias its probed function's address gives (page-aligned,
    /// as every bias is). Its frames are unwound and named; the walk ends where the
    /// stack leaves it.
    pub fn of_file(object: Arc<ObjectInfo>, bias: u64) -> ProcessImage {
        let bias = bias & !0xfff;
        let start = object.segments.iter().map(|s| s.vaddr).min().unwrap_or(0);
        let end = object
            .segments
            .iter()
            .map(|s| s.vaddr + s.filesz)
            .max()
            .unwrap_or(0);
        let range = start.wrapping_add(bias)..end.wrapping_add(bias);
        let mut unwinder = UnwinderX86_64::new();
        unwinder.add_module(Module::new(
            object.file_name.clone(),
            range.clone(),
            bias,
            object.unwind.clone(),
        ));
        ProcessImage {
            loaded: vec![Loaded {
                range,
                bias,
                object,
            }],
            unwinder,
        }
    }

    /// Whether `address` is in code this image knows (false after a `dlopen` it missed).
    pub fn knows(&self, address: u64) -> bool {
        self.loaded.iter().any(|l| l.range.contains(&address))
    }

    /// The frames from `ip` outwards, reading the stack through `read_stack`.
    pub fn unwind(
        &self,
        (ip, sp, bp): (u64, u64, u64),
        cache: &mut CacheX86_64,
        read_stack: &mut impl FnMut(u64) -> Result<u64, ()>,
    ) -> Vec<FrameAt> {
        let mut frames = Vec::new();
        let mut iter =
            self.unwinder
                .iter_frames(ip, UnwindRegsX86_64::new(ip, sp, bp), cache, read_stack);
        while frames.len() < MAX_FRAMES {
            match iter.next() {
                Ok(Some(frame)) => frames.push(FrameAt {
                    address: match frame {
                        FrameAddress::InstructionPointer(a) => a,
                        FrameAddress::ReturnAddress(a) => a.get(),
                    },
                    lookup: frame.address_for_lookup(),
                }),
                Ok(None) | Err(_) => break,
            }
        }
        frames
    }

    /// A frame's names: with debug info, each call inlined there (`name (file.c:12)
    /// [inlined]`) and then its function with its line (`name (file.c:40)`); else its
    /// function, demangled; else `file+0xOFFSET`; else the bare address, for code no file
    /// holds (JIT, anonymous memory).
    pub fn names(&self, frame: FrameAt) -> Vec<String> {
        let Some(loaded) = self.loaded.iter().find(|l| l.range.contains(&frame.lookup)) else {
            return vec![format!("[unknown] {:#x}", frame.address)];
        };
        let svma = frame.lookup.wrapping_sub(loaded.bias);
        let symbol = loaded.object.function_at(svma);
        let sources = loaded.object.source_frames(svma);
        if !sources.is_empty() {
            let last = sources.len() - 1;
            return sources
                .into_iter()
                .enumerate()
                .map(|(i, source)| {
                    let name = match (i == last, symbol, source.function) {
                        // The outermost is the function the symbol table names.
                        (true, Some(symbol), _) => symbol.to_owned(),
                        (_, _, Some(function)) => function,
                        (_, Some(symbol), None) => symbol.to_owned(),
                        (_, None, None) => "[inlined]".to_owned(),
                    };
                    let located = match source.location {
                        Some(location) => format!("{name} ({location})"),
                        None => name,
                    };
                    if i == last {
                        located
                    } else {
                        format!("{located} [inlined]")
                    }
                })
                .collect();
        }
        vec![self.name_without_lines(loaded, frame, svma, symbol)]
    }

    fn name_without_lines(
        &self,
        loaded: &Loaded,
        frame: FrameAt,
        svma: u64,
        symbol: Option<&str>,
    ) -> String {
        if let Some(name) = symbol {
            return name.to_owned();
        }
        let offset = loaded
            .object
            .file_offset(frame.address.wrapping_sub(loaded.bias))
            .unwrap_or(svma);
        format!("{}+{offset:#x}", loaded.object.file_name)
    }
}

/// A line of `/proc/PID/maps` for an executable file mapping.
struct Mapping {
    start: u64,
    end: u64,
    offset: u64,
    device: String,
    inode: u64,
    path: PathBuf,
}

impl Mapping {
    fn parse(line: &str) -> Option<Mapping> {
        let mut fields = line.split_ascii_whitespace();
        let (start, end) = fields.next()?.split_once('-')?;
        let perms = fields.next()?;
        let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
        let device = fields.next()?.to_owned();
        let inode: u64 = fields.next()?.parse().ok()?;
        let path: String = fields.collect::<Vec<_>>().join(" ");
        if !perms.contains('x') || inode == 0 || !path.starts_with('/') {
            return None;
        }
        Some(Mapping {
            start: u64::from_str_radix(start, 16).ok()?,
            end: u64::from_str_radix(end, 16).ok()?,
            offset,
            device,
            inode,
            path: PathBuf::from(path.trim_end_matches(" (deleted)")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_for_code_only() {
        let code = Mapping::parse(
            "7f1c2a428000-7f1c2a5bd000 r-xp 00028000 fe:01 1234 /usr/lib/x86_64-linux-gnu/libc.so.6",
        )
        .unwrap();
        assert_eq!(
            (code.start, code.end, code.offset, code.inode),
            (0x7f1c2a428000, 0x7f1c2a5bd000, 0x28000, 1234)
        );
        assert!(
            Mapping::parse("7f1c2a5bd000-7f1c2a615000 r--p 001bd000 fe:01 1234 /usr/lib/libc.so.6")
                .is_none()
        );
        assert!(Mapping::parse("7ffd1000-7ffd2000 r-xp 00000000 00:00 0 [vdso]").is_none());
    }
}
