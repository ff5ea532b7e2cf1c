//! Programs for the kernel's uprobe_multi link (Linux 6.6+): one link puts a probe on many
//! offsets of a file, and closing it removes them all at once. Per-function perf-event
//! links cost a synchronize step each on detach (~100 ms here), which makes globs over
//! hundreds of functions unusable; this is what makes them fast.
//!
//! aya 0.14 cannot load a program for this link type (it must be loaded with the expected
//! attach type `BPF_TRACE_UPROBE_MULTI`), so this module takes the program from the
//! embedded object with aya-obj, relocates its map references to the maps aya already
//! created (so both paths share `EVENTS`, `CONFIG`, ...) and its calls to the `.text`
//! functions it uses, and loads it itself (`sys`).

use std::{
    collections::{HashMap, HashSet},
    os::fd::{AsRawFd as _, OwnedFd},
};

use super::sys::{self, Insn};

/// Why a program could not be prepared or loaded.
#[derive(Debug, thiserror::Error)]
pub enum MultiError {
    #[error("the eBPF object is malformed: {0}")]
    Object(String),
    #[error("the program refers to map '{0}', which was not created")]
    UnknownMap(String),
    #[error("the kernel refused the uprobe_multi program: {source}{log}")]
    Load { source: std::io::Error, log: String },
    #[error("creating the uprobe_multi link failed: {0}")]
    Link(#[source] std::io::Error),
    #[error(transparent)]
    Kfunc(#[from] super::kfuncs::KfuncError),
}

impl MultiError {
    /// The verifier refused the program (it said why): not a kernel without the link.
    pub fn verifier_refused(&self) -> bool {
        matches!(self, MultiError::Load { log, .. } if !log.is_empty())
    }

    /// The errno of a failed link creation, to tell "kernel lacks uprobe_multi" from "one
    /// of these offsets cannot be probed".
    pub fn link_errno(&self) -> Option<i32> {
        match self {
            MultiError::Link(e) => e.raw_os_error(),
            _ => None,
        }
    }
}

/// Loads program `name` from the eBPF object `object` for links of `attach_type`
/// (uprobe_multi or uprobe session), with its map references bound to `maps` (map or
/// data-section name -> fd) and its kfunc calls to the running kernel's functions.
pub fn load_program(
    object: &[u8],
    name: &str,
    maps: &HashMap<String, OwnedFd>,
    attach_type: u32,
) -> Result<OwnedFd, MultiError> {
    let bad = |what: String| MultiError::Object(what);
    let mut obj = aya_obj::Object::parse(object).map_err(|e| bad(e.to_string()))?;
    let text_sections: HashSet<usize> = obj.functions.keys().map(|(section, _)| *section).collect();
    let parsed_maps = std::mem::take(&mut obj.maps);
    let mut bound = Vec::with_capacity(parsed_maps.len());
    for (map_name, map) in &parsed_maps {
        let fd = maps
            .get(map_name)
            .ok_or_else(|| MultiError::UnknownMap(map_name.clone()))?;
        bound.push((map_name.as_str(), fd.as_raw_fd(), map));
    }
    obj.relocate_maps(bound.into_iter(), &text_sections)
        .map_err(|e| bad(e.to_string()))?;
    obj.relocate_calls(&text_sections)
        .map_err(|e| bad(e.to_string()))?;
    let program = obj
        .programs
        .get(name)
        .ok_or_else(|| bad(format!("no program '{name}'")))?;
    let function = obj
        .functions
        .get(&program.function_key())
        .ok_or_else(|| bad(format!("no code for program '{name}'")))?;
    let mut insns: Vec<Insn> = function
        .instructions
        .iter()
        .map(|insn| {
            // SAFETY: bpf_insn is the kernel's 8-byte instruction, which `Insn` mirrors
            // field for field (code, regs, off, imm).
            unsafe { std::mem::transmute_copy::<aya_obj::generated::bpf_insn, Insn>(insn) }
        })
        .collect();
    super::kfuncs::patch(&mut insns, crate::kernel_btf::session_kfuncs())?;
    let license = obj.license.to_str().unwrap_or("GPL");
    sys::load_program(name, &insns, license, attach_type).map_err(|refused| MultiError::Load {
        source: refused.source,
        log: refused.log,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn bpf_insn_is_eight_bytes_like_ours() {
        assert_eq!(
            size_of::<aya_obj::generated::bpf_insn>(),
            size_of::<super::Insn>()
        );
    }
}
