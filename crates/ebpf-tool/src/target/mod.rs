//! Name -> file: turns what the user wrote as BINARY into the real file a uprobe attaches
//! to (uprobes attach to an inode, so symlinks are resolved).
//!
//! Accepted forms: a path (absolute or relative), a program on `$PATH`, and a library name
//! found through `/etc/ld.so.cache` (`libc`, `c`, `libc.so.6`).

mod ld_cache;

use std::{
    env, fs,
    io::Read as _,
    path::{Path, PathBuf},
};

pub use ld_cache::LdCache;

/// Why BINARY could not be turned into a traceable file.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("binary not found: {path} does not exist")]
    Missing { path: PathBuf },
    #[error("binary not found: '{name}' is not a file, a program on $PATH or a library in {cache}")]
    NotFound { name: String, cache: &'static str },
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
    match LdCache::load_system() {
        Ok(cache) => match cache.find(binary).as_slice() {
            [] => {}
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
    })
}

/// The first executable regular file called `name` in a `$PATH` directory.
fn search_path(name: &str) -> Option<PathBuf> {
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
    let meta = fs::metadata(path).map_err(|source| unreadable(path, source))?;
    if !meta.is_file() {
        return Err(TargetError::NotAFile {
            path: path.to_owned(),
        });
    }
    let mut magic = [0u8; 4];
    let mut file = fs::File::open(path).map_err(|source| unreadable(path, source))?;
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
