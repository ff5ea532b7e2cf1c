//! Name -> file: turns what the user wrote as BINARY into the real file a uprobe attaches
//! to (uprobes attach to an inode, so symlinks are resolved).
//!
//! Accepted forms: a path (absolute or relative), a program on `$PATH`, and a library name
//! found through `/etc/ld.so.cache` (`libc`, `c`, `libc.so.6`). With a pid, names are
//! looked up first in what that process has mapped (/proc/PID/maps), and paths are
//! resolved inside its mount namespace (/proc/PID/root), so a file that exists only in a
//! container is found by its in-container path.

mod ld_cache;
mod needed;
pub mod watch;

use std::{
    collections::VecDeque,
    env,
    ffi::OsString,
    fs,
    io::Read as _,
    os::unix::fs::MetadataExt as _,
    path::{Component, Path, PathBuf},
};

pub use ld_cache::LdCache;
pub use needed::find_needed;

/// Why BINARY could not be turned into a traceable file.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("binary not found: {path} does not exist")]
    Missing { path: PathBuf },
    #[error("binary not found: '{name}' is not a file, a program on $PATH or a library in {cache}{}", crate::suggest::did_you_mean(.suggestions))]
    NotFound {
        name: String,
        cache: &'static str,
        /// Library names of the cache close to `name` (`libsqlite` -> `libsqlite3`).
        suggestions: Vec<String>,
    },
    #[error("'{name}' names several libraries; pick one by path: {}", .candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    Ambiguous {
        name: String,
        candidates: Vec<PathBuf>,
    },
    #[error("{path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not an ELF file (it does not start with \\x7fELF)")]
    NotElf { path: PathBuf },
}

/// Finds the file BINARY names and checks that it is a readable ELF file.
pub fn resolve(binary: &str) -> Result<PathBuf, TargetError> {
    let path = locate(binary)?;
    let real = fs::canonicalize(&path).map_err(|source| unreadable(&path, source))?;
    check_elf(&real)?;
    Ok(real)
}

/// As `resolve`, as process `pid` sees BINARY: its mapped files first, then paths inside
/// its mount namespace. Returns a path this process can open: the plain path when it names
/// the same file here, else one through /proc/PID/root (a file only in a container).
pub fn resolve_for_process(binary: &str, pid: u32) -> Result<PathBuf, TargetError> {
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    let inside = if binary.contains('/') {
        PathBuf::from(binary)
    } else if let Some(mapped) = mapped_file(pid, binary) {
        mapped
    } else {
        let cache = LdCache::load(&root.join("etc/ld.so.cache")).unwrap_or_default();
        match cache
            .find_in(binary, |p| resolve_in_root(&root, p).ok())
            .as_slice()
        {
            // Not a library the process can see: a program on our $PATH, say.
            [] => return resolve(binary),
            [one] => one.clone(),
            many => {
                return Err(TargetError::Ambiguous {
                    name: binary.to_owned(),
                    candidates: many.to_vec(),
                });
            }
        }
    };
    let inside = if inside.is_absolute() {
        inside
    } else {
        // A relative path means what it means to the user, in our working directory.
        return resolve(binary);
    };
    let real = resolve_in_root(&root, &inside).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => TargetError::Missing {
            path: inside.clone(),
        },
        _ => unreadable(&inside, source),
    })?;
    let through_root = root.join(real.strip_prefix("/").unwrap_or(&real));
    let path = if same_file(&real, &through_root) {
        real
    } else {
        through_root
    };
    check_elf(&path)?;
    Ok(path)
}

/// True when this process has `path` mapped (it is our own libc, say), so our own calls
/// could hit a probe on it and must be filtered out.
pub fn mapped_by_self(path: &Path) -> bool {
    let Ok(meta) = fs::metadata(path) else {
        return true; // unknown: filter to be safe
    };
    let Ok(maps) = fs::read_to_string("/proc/self/maps") else {
        return true;
    };
    maps.lines().any(|line| {
        let mut fields = line.split_whitespace().skip(3);
        let (Some(dev), Some(inode)) = (fields.next(), fields.next()) else {
            return false;
        };
        let Some((major, minor)) = dev.split_once(':') else {
            return false;
        };
        let (Ok(major), Ok(minor), Ok(inode)) = (
            u32::from_str_radix(major, 16),
            u32::from_str_radix(minor, 16),
            inode.parse::<u64>(),
        ) else {
            return false;
        };
        inode == meta.ino() && libc::makedev(major, minor) == meta.dev()
    })
}

/// True when both paths name one inode.
fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// A file mapped by `pid` whose name is `name` or a library of that name (`libc` ->
/// libc.so.6), as the process sees its path.
fn mapped_file(pid: u32, name: &str) -> Option<PathBuf> {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let stem = name.strip_suffix(".so").unwrap_or(name);
    let library = if stem.starts_with("lib") {
        format!("{stem}.so")
    } else {
        format!("lib{stem}.so")
    };
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| path.starts_with('/'))
        .map(Path::new)
        .find(|path| {
            path.file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|file| {
                    file == name || file.starts_with(&format!("{library}.")) || file == library
                })
        })
        .map(Path::to_owned)
}

/// Resolves `path` (absolute, as seen inside `root`) following symlinks the way the kernel
/// would inside that root: absolute link targets restart at `root`, not at ours.
pub fn resolve_in_root(root: &Path, path: &Path) -> std::io::Result<PathBuf> {
    const MAX_LINKS: usize = 40;
    let mut pending: VecDeque<OsString> = components(path);
    let mut resolved = PathBuf::from("/");
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        match part.to_str() {
            Some("..") => {
                resolved.pop();
                continue;
            }
            Some(".") => continue,
            _ => {}
        }
        let candidate = resolved.join(&part);
        let host = root.join(candidate.strip_prefix("/").unwrap_or(&candidate));
        let meta = fs::symlink_metadata(&host)?;
        if !meta.file_type().is_symlink() {
            resolved = candidate;
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(std::io::Error::other("too many levels of symbolic links"));
        }
        let target = fs::read_link(&host)?;
        let mut rest = components(&target);
        rest.extend(pending);
        pending = rest;
        if target.is_absolute() {
            resolved = PathBuf::from("/");
        }
    }
    Ok(resolved)
}

fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

fn locate(binary: &str) -> Result<PathBuf, TargetError> {
    let as_path = Path::new(binary);
    if binary.contains('/') {
        return match as_path.try_exists() {
            Ok(true) => Ok(as_path.to_owned()),
            Ok(false) => Err(TargetError::Missing {
                path: as_path.to_owned(),
            }),
            Err(source) => Err(unreadable(as_path, source)),
        };
    }
    if let Some(found) = search_path(binary) {
        return Ok(found);
    }
    let mut suggestions = Vec::new();
    match LdCache::load_system() {
        Ok(cache) => match cache.find(binary).as_slice() {
            [] => suggestions = cache.close_names(binary),
            [one] => return Ok(one.clone()),
            many => {
                return Err(TargetError::Ambiguous {
                    name: binary.to_owned(),
                    candidates: many.to_vec(),
                });
            }
        },
        Err(err) => log::debug!("ld.so.cache unreadable: {err}"),
    }
    // Last: a file of that name in the working directory, as `./name` would be.
    if as_path.is_file() {
        return Ok(as_path.to_owned());
    }
    Err(TargetError::NotFound {
        name: binary.to_owned(),
        cache: ld_cache::SYSTEM_CACHE,
        suggestions,
    })
}

/// The first executable regular file called `name` in a `$PATH` directory.
pub fn search_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            fs::metadata(candidate)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

fn check_elf(path: &Path) -> Result<(), TargetError> {
    let mut file = crate::files::open_regular(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::InvalidInput {
            TargetError::NotAFile {
                path: path.to_owned(),
            }
        } else {
            unreadable(path, source)
        }
    })?;
    let mut magic = [0u8; 4];
    match file.read_exact(&mut magic) {
        Ok(()) if magic == *b"\x7fELF" => Ok(()),
        Ok(()) => Err(TargetError::NotElf {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(TargetError::NotElf {
            path: path.to_owned(),
        }),
        Err(source) => Err(unreadable(path, source)),
    }
}

fn unreadable(path: &Path, source: std::io::Error) -> TargetError {
    TargetError::Unreadable {
        path: path.to_owned(),
        source,
    }
}
