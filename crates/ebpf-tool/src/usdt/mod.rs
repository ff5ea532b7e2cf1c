//! USDT (statically defined tracing) probes: the `.note.stapsdt` notes `sys/sdt.h` puts
//! in a binary, one per site: its address, the `.stapsdt.base` the linker saw (to adjust
//! for prelinking), its semaphore's address (0 without one), provider, name and argument
//! specs. Addresses become file offsets through the loadable segments, as uprobes and
//! the kernel's reference counters (`ref_ctr_offset`) take them.

pub mod args;

use std::path::Path;

use object::{Object as _, ObjectSection as _, ObjectSegment as _};

pub use args::{ArgError, UsdtArg};

/// The note type of a SystemTap probe descriptor.
const NT_STAPSDT: u32 = 3;

/// One place a probe fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsdtSite {
    /// Link-time address of the site (its `nop`).
    pub address: u64,
    pub file_offset: u64,
    /// File offset of the semaphore (a 16-bit counter), 0 when the probe has none.
    pub semaphore_offset: u64,
    /// Each argument, or why its spec cannot be read (an error only when asked for).
    pub args: Vec<Result<UsdtArg, ArgError>>,
    /// The specs as written, for `--list`.
    pub args_text: String,
}

/// A probe: `provider:name` and every site of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsdtProbe {
    pub provider: String,
    pub name: String,
    pub sites: Vec<UsdtSite>,
}

impl UsdtProbe {
    pub fn label(&self) -> String {
        format!("{}:{}", self.provider, self.name)
    }

    pub fn has_semaphore(&self) -> bool {
        self.sites.iter().any(|s| s.semaphore_offset != 0)
    }
}

/// Why a file's probes could not be read or found.
#[derive(Debug, thiserror::Error)]
pub enum UsdtError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not an ELF file this can read: {why}")]
    Parse { path: String, why: String },
    #[error("{path} has no USDT probes (no .note.stapsdt section)")]
    NoNotes { path: String },
    #[error("no USDT probe '{wanted}' in {path}{}", crate::suggest::did_you_mean(.suggestions))]
    NotFound {
        wanted: String,
        path: String,
        suggestions: Vec<String>,
    },
    #[error("USDT probe name '{wanted}' is in several providers of {path}; pick one: {}", .candidates.join(", "))]
    Ambiguous {
        wanted: String,
        path: String,
        candidates: Vec<String>,
    },
}

/// Every probe of the file at `path`, by `provider:name`, sites in file order.
pub fn read_probes(path: &Path) -> Result<Vec<UsdtProbe>, UsdtError> {
    let shown = path.display().to_string();
    let data = crate::files::read_regular(path, 1 << 31).map_err(|source| UsdtError::Read {
        path: shown.clone(),
        source,
    })?;
    let file = object::File::parse(&*data).map_err(|e| UsdtError::Parse {
        path: shown.clone(),
        why: e.to_string(),
    })?;
    let notes = file
        .section_by_name(".note.stapsdt")
        .ok_or_else(|| UsdtError::NoNotes {
            path: shown.clone(),
        })?;
    let notes_data = notes.data().map_err(|e| UsdtError::Parse {
        path: shown.clone(),
        why: e.to_string(),
    })?;
    // Where .stapsdt.base really is, against where each note says it was linked.
    let base = file.section_by_name(".stapsdt.base").map(|s| s.address());
    let segments: Vec<(u64, u64, u64)> = file
        .segments()
        .map(|s| (s.address(), s.file_range().0, s.file_range().1))
        .collect();
    let to_offset = |address: u64| {
        segments
            .iter()
            .find(|(vaddr, _, size)| (*vaddr..vaddr + size).contains(&address))
            .map(|(vaddr, offset, _)| address - vaddr + offset)
    };
    let little = file.is_little_endian();
    let mut probes: Vec<UsdtProbe> = Vec::new();
    for note in Notes::new(notes_data, little) {
        if note.kind != NT_STAPSDT || note.name != b"stapsdt" {
            continue;
        }
        let Some(desc) = StapsdtDesc::parse(note.desc, little) else {
            continue;
        };
        let adjust = |address: u64| match base {
            Some(actual) if desc.base != 0 => address.wrapping_add(actual).wrapping_sub(desc.base),
            _ => address,
        };
        let address = adjust(desc.pc);
        let Some(file_offset) = to_offset(address) else {
            continue;
        };
        let semaphore_offset = if desc.semaphore == 0 {
            0
        } else {
            to_offset(adjust(desc.semaphore)).unwrap_or(0)
        };
        let site = UsdtSite {
            address,
            file_offset,
            semaphore_offset,
            args: desc
                .args
                .split_ascii_whitespace()
                .map(args::parse_arg)
                .collect(),
            args_text: desc.args.clone(),
        };
        match probes
            .iter_mut()
            .find(|p| p.provider == desc.provider && p.name == desc.name)
        {
            Some(probe) => probe.sites.push(site),
            None => probes.push(UsdtProbe {
                provider: desc.provider,
                name: desc.name,
                sites: vec![site],
            }),
        }
    }
    Ok(probes)
}

/// The probes `wanted` means: `provider:name`, `name` alone (unique across providers),
/// or a glob on either form (`python:*`, `*:gc__*`, `gc__*`).
pub fn select<'a>(
    probes: &'a [UsdtProbe],
    wanted: &str,
    path: &Path,
) -> Result<Vec<&'a UsdtProbe>, UsdtError> {
    let shown = path.display().to_string();
    let (provider, name) = match wanted.split_once(':') {
        Some((provider, name)) => (Some(provider), name),
        None => (None, wanted),
    };
    let matches = |pattern: &str, text: &str| {
        glob::Pattern::new(pattern).map_or(pattern == text, |p| p.matches(text))
    };
    let found: Vec<&UsdtProbe> = probes
        .iter()
        .filter(|p| {
            provider.is_none_or(|want| matches(want, &p.provider)) && matches(name, &p.name)
        })
        .collect();
    let is_glob = wanted.contains(['*', '?', '[']);
    if provider.is_none() && !is_glob && found.len() > 1 {
        return Err(UsdtError::Ambiguous {
            wanted: wanted.to_owned(),
            path: shown,
            candidates: found.iter().map(|p| p.label()).collect(),
        });
    }
    if found.is_empty() {
        let labels: Vec<String> = probes.iter().map(UsdtProbe::label).collect();
        let names: Vec<&str> = probes.iter().map(|p| p.name.as_str()).collect();
        let mut suggestions = crate::suggest::closest(wanted, labels.iter().map(String::as_str));
        for close in crate::suggest::closest(name, names.into_iter()) {
            for probe in probes.iter().filter(|p| p.name == close) {
                let label = probe.label();
                if !suggestions.contains(&label) {
                    suggestions.push(label);
                }
            }
        }
        suggestions.truncate(5);
        return Err(UsdtError::NotFound {
            wanted: wanted.to_owned(),
            path: shown,
            suggestions,
        });
    }
    Ok(found)
}

/// `-a` requests for a USDT run: an argument asked for by number alone is shown signed
/// when its note says so (`-4@%eax` of -1 prints -1).
pub fn with_note_signs(
    requests: &[crate::values::request::ValueRequest],
    sites: &[Vec<Result<UsdtArg, ArgError>>],
) -> Vec<crate::values::request::ValueRequest> {
    use crate::values::request::{Location, ValueType};
    requests
        .iter()
        .map(|request| {
            let mut request = request.clone();
            if let (Location::Arg(n), false) = (&request.location, request.typed) {
                let signed = sites
                    .iter()
                    .any(|s| matches!(s.get(*n), Some(Ok(a)) if a.spec.signed != 0));
                request.ty = ValueType::Int { bytes: 8, signed };
            }
            request
        })
        .collect()
}

/// What a USDT run shows without `-a`: every argument the probes have (as many as the
/// site with the fewest, at most a record's worth), each with its note's width and sign.
pub fn default_layout(
    sites: &[Vec<Result<UsdtArg, ArgError>>],
) -> Result<crate::values::ValueLayout, crate::values::ValueError> {
    use crate::values::request::{Location, ValueRequest, ValueType};
    let count = sites
        .iter()
        .map(Vec::len)
        .min()
        .unwrap_or(0)
        .min(ebpf_tool_common::MAX_VALUES);
    let requests: Vec<ValueRequest> = (0..count)
        .map(|n| {
            let signed = sites
                .iter()
                .any(|s| matches!(&s[n], Ok(a) if a.spec.signed != 0));
            ValueRequest {
                location: Location::Arg(n),
                ty: ValueType::Int { bytes: 8, signed },
                typed: false,
            }
        })
        .collect();
    if requests.is_empty() {
        return Ok(crate::values::ValueLayout::without_values());
    }
    crate::values::ValueLayout::new(&requests)
}

/// The fields of a stapsdt note's descriptor.
struct StapsdtDesc {
    pc: u64,
    base: u64,
    semaphore: u64,
    provider: String,
    name: String,
    args: String,
}

impl StapsdtDesc {
    fn parse(desc: &[u8], little: bool) -> Option<StapsdtDesc> {
        let word = |at: usize| -> Option<u64> {
            let bytes: [u8; 8] = desc.get(at..at + 8)?.try_into().ok()?;
            Some(if little {
                u64::from_le_bytes(bytes)
            } else {
                u64::from_be_bytes(bytes)
            })
        };
        let mut strings = desc.get(24..)?.split(|&b| b == 0);
        let mut text = || {
            strings
                .next()
                .map(|s| String::from_utf8_lossy(s).into_owned())
        };
        Some(StapsdtDesc {
            pc: word(0)?,
            base: word(8)?,
            semaphore: word(16)?,
            provider: text()?,
            name: text()?,
            args: text().unwrap_or_default(),
        })
    }
}

/// An ELF note: name, type, descriptor.
struct Note<'a> {
    name: &'a [u8],
    kind: u32,
    desc: &'a [u8],
}

/// The notes of a note section, each padded to 4 bytes (as 64-bit ELF's stapsdt notes are).
struct Notes<'a> {
    data: &'a [u8],
    little: bool,
}

impl<'a> Notes<'a> {
    fn new(data: &'a [u8], little: bool) -> Self {
        Notes { data, little }
    }
}

impl<'a> Iterator for Notes<'a> {
    type Item = Note<'a>;

    fn next(&mut self) -> Option<Note<'a>> {
        let u32_at = |at: usize| -> Option<u32> {
            let bytes: [u8; 4] = self.data.get(at..at + 4)?.try_into().ok()?;
            Some(if self.little {
                u32::from_le_bytes(bytes)
            } else {
                u32::from_be_bytes(bytes)
            })
        };
        let (namesz, descsz, kind) = (u32_at(0)? as usize, u32_at(4)? as usize, u32_at(8)?);
        let pad = |n: usize| n.div_ceil(4) * 4;
        let name_end = 12usize.checked_add(namesz)?;
        let desc_start = 12usize.checked_add(pad(namesz))?;
        let desc_end = desc_start.checked_add(descsz)?;
        let name = self.data.get(12..name_end)?;
        let desc = self.data.get(desc_start..desc_end)?;
        self.data = self.data.get(pad(desc_end).min(self.data.len())..)?;
        Some(Note {
            name: name.strip_suffix(&[0]).unwrap_or(name),
            kind,
            desc,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(pc: u64, base: u64, sema: u64, strings: &[&str]) -> Vec<u8> {
        let mut desc = Vec::new();
        for word in [pc, base, sema] {
            desc.extend_from_slice(&word.to_le_bytes());
        }
        for s in strings {
            desc.extend_from_slice(s.as_bytes());
            desc.push(0);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&8u32.to_le_bytes());
        out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        out.extend_from_slice(&NT_STAPSDT.to_le_bytes());
        out.extend_from_slice(b"stapsdt\0");
        out.extend_from_slice(&desc);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    #[test]
    fn hand_written_notes_parse() {
        let mut data = note(0x1130, 0x2004, 0, &["app", "start", "-4@%edi 8@-80(%rbx)"]);
        data.extend(note(0x1150, 0x2004, 0x4010, &["app", "done", ""]));
        let notes: Vec<_> = Notes::new(&data, true).collect();
        assert_eq!(notes.len(), 2);
        let first = StapsdtDesc::parse(notes[0].desc, true).unwrap();
        assert_eq!((first.pc, first.base, first.semaphore), (0x1130, 0x2004, 0));
        assert_eq!(
            (first.provider.as_str(), first.name.as_str()),
            ("app", "start")
        );
        assert_eq!(args::parse_args(&first.args).unwrap().len(), 2);
        let second = StapsdtDesc::parse(notes[1].desc, true).unwrap();
        assert_eq!(
            (second.name.as_str(), second.semaphore, second.args.as_str()),
            ("done", 0x4010, "")
        );
    }

    #[test]
    fn truncated_notes_end_the_walk() {
        let data = note(1, 2, 3, &["p", "n", ""]);
        for len in 0..data.len() {
            let _ = Notes::new(&data[..len], true).count();
        }
    }

    fn probe(provider: &str, name: &str) -> UsdtProbe {
        UsdtProbe {
            provider: provider.into(),
            name: name.into(),
            sites: Vec::new(),
        }
    }

    #[test]
    fn probes_are_chosen_by_full_name_short_name_or_glob() {
        let probes = [
            probe("python", "gc__start"),
            probe("python", "gc__done"),
            probe("libstdcxx", "throw"),
            probe("other", "throw"),
        ];
        let path = Path::new("/x");
        let labels = |wanted: &str| -> Vec<String> {
            select(&probes, wanted, path)
                .unwrap()
                .iter()
                .map(|p| p.label())
                .collect()
        };
        assert_eq!(labels("python:gc__start"), ["python:gc__start"]);
        assert_eq!(labels("gc__done"), ["python:gc__done"]);
        assert_eq!(labels("python:*"), ["python:gc__start", "python:gc__done"]);
        assert_eq!(labels("*:gc__*"), ["python:gc__start", "python:gc__done"]);
        let err = select(&probes, "throw", path).unwrap_err().to_string();
        assert!(err.contains("libstdcxx:throw, other:throw"), "{err}");
        let err = select(&probes, "gc_start", path).unwrap_err().to_string();
        assert!(err.contains("did you mean 'python:gc__start'"), "{err}");
    }
}
