//! The libraries a program will load, found the way the dynamic loader finds them: each
//! object's `DT_NEEDED` names, searched in its `DT_RPATH` (when it has no `DT_RUNPATH`),
//! `$LD_LIBRARY_PATH`, its `DT_RUNPATH`, `/etc/ld.so.cache` and the default directories,
//! with `$ORIGIN` meaning the object's own directory. So `-c ./app libssl SSL_write`
//! probes the libssl that app will run, even one beside it that no cache knows.

use std::{
    collections::{HashSet, VecDeque},
    path::{Path, PathBuf},
};

use object::{
    Endianness,
    elf::{DT_NEEDED, DT_RPATH, DT_RUNPATH, FileHeader64},
    read::elf::{Dyn as _, FileHeader as _, SectionHeader as _},
};

use super::LdCache;

/// Libraries looked at, at most: a loader's graph, not an unbounded walk.
const MAX_OBJECTS: usize = 512;
const DEFAULT_DIRS: [&str; 4] = [
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib",
];

/// What one object asks of the loader.
#[derive(Debug, Default)]
struct Dynamic {
    needed: Vec<String>,
    rpath: Vec<String>,
    runpath: Vec<String>,
}

/// The library `name` (a soname, or a short name as `libssl`/`ssl`) among those
/// `program` loads, directly or through other libraries; the first found, breadth-first.
pub fn find_needed(program: &Path, name: &str) -> Option<PathBuf> {
    let cache = LdCache::load_system().unwrap_or_default();
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([program.to_owned()]);
    while let Some(object) = queue.pop_front() {
        if seen.len() >= MAX_OBJECTS || !seen.insert(object.clone()) {
            continue;
        }
        let Some(dynamic) = read_dynamic(&object) else {
            continue;
        };
        for soname in &dynamic.needed {
            let Some(found) = locate(soname, &object, &dynamic, &cache) else {
                continue;
            };
            if names(soname, name) {
                return Some(found);
            }
            queue.push_back(found);
        }
    }
    None
}

/// Whether a user's `name` means `soname`, as ld.so.cache lookups take it.
fn names(soname: &str, name: &str) -> bool {
    if soname == name {
        return true;
    }
    let stem = name.strip_suffix(".so").unwrap_or(name);
    let with_lib = if stem.starts_with("lib") {
        stem.to_owned()
    } else {
        format!("lib{stem}")
    };
    soname.starts_with(&format!("{with_lib}.so"))
}

fn locate(soname: &str, by: &Path, dynamic: &Dynamic, cache: &LdCache) -> Option<PathBuf> {
    if soname.contains('/') {
        return Some(PathBuf::from(soname));
    }
    let origin = by.parent().unwrap_or(Path::new("/"));
    let expand = |dir: &String| {
        PathBuf::from(
            dir.replace("${ORIGIN}", &origin.to_string_lossy())
                .replace("$ORIGIN", &origin.to_string_lossy()),
        )
    };
    let library_path: Vec<String> = std::env::var("LD_LIBRARY_PATH")
        .map(|p| p.split([':', ';']).map(str::to_owned).collect())
        .unwrap_or_default();
    let rpath = if dynamic.runpath.is_empty() {
        &dynamic.rpath[..]
    } else {
        &[]
    };
    let searched = rpath
        .iter()
        .chain(&library_path)
        .chain(&dynamic.runpath)
        .filter(|dir| !dir.is_empty())
        .map(expand)
        .map(|dir| dir.join(soname))
        .find(|candidate| candidate.is_file());
    searched.or_else(|| cache.find_exact(soname)).or_else(|| {
        DEFAULT_DIRS
            .iter()
            .map(|dir| Path::new(dir).join(soname))
            .find(|candidate| candidate.is_file())
    })
}

/// The `DT_NEEDED`, `DT_RPATH` and `DT_RUNPATH` strings of a 64-bit ELF file.
fn read_dynamic(path: &Path) -> Option<Dynamic> {
    let data = crate::files::read_regular(path, 1 << 30).ok()?;
    let header = FileHeader64::<Endianness>::parse(&*data).ok()?;
    let endian = header.endian().ok()?;
    let sections = header.sections(endian, &*data).ok()?;
    let section = sections
        .iter()
        .find(|s| s.sh_type(endian) == object::elf::SHT_DYNAMIC)?;
    let entries = section.dynamic(endian, &*data).ok()??.0;
    let strings = sections
        .strings(endian, &*data, section.link(endian))
        .ok()?;
    let mut dynamic = Dynamic::default();
    for entry in entries {
        let tag = entry.tag32(endian);
        let Some(tag) = tag else { continue };
        let text = || {
            let bytes = strings.get(entry.d_val(endian) as u32).ok()?;
            Some(String::from_utf8_lossy(bytes).into_owned())
        };
        match tag {
            DT_NEEDED => dynamic.needed.extend(text()),
            DT_RPATH => dynamic
                .rpath
                .extend(text().iter().flat_map(|t| split_dirs(t))),
            DT_RUNPATH => dynamic
                .runpath
                .extend(text().iter().flat_map(|t| split_dirs(t))),
            _ => {}
        }
    }
    Some(dynamic)
}

fn split_dirs(text: &str) -> Vec<String> {
    text.split(':').map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_mean_sonames() {
        assert!(names("libssl.so.3", "libssl"));
        assert!(names("libssl.so.3", "ssl"));
        assert!(names("libssl.so.3", "libssl.so.3"));
        assert!(!names("libssl3.so", "libssl"));
        assert!(!names("libcrypto.so.3", "libssl"));
    }

    #[test]
    fn the_shell_loads_libc() {
        let found = find_needed(Path::new("/bin/sh"), "libc").expect("sh needs libc");
        assert!(found.to_string_lossy().contains("libc.so"), "{found:?}");
        assert!(find_needed(Path::new("/bin/sh"), "libnothing").is_none());
    }
}
